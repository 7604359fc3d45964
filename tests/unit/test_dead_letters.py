"""The headers of a dead letter, and the headers its replay gets back, without a broker."""

from __future__ import annotations

import datetime
import logging

import pytest

from panko_collector.broker import dead_letters

INFO = {"exchange": "nova", "routing_key": "notifications.info"}
X_DEATH = [{"count": 2, "reason": "rejected", "queue": "q", "exchange": "",
            "routing-keys": ["q"], "time": datetime.datetime(2026, 11, 30, 10, 0)}]


def test_the_originals_are_nested_so_one_named_like_ours_changes_nothing() -> None:
    original = {"reason": "theirs", "error": 7, "original_exchange": "x", "x-death": X_DEATH,
                "compression": "application/x-gzip", "x-trace": b"\xff"}
    headers = dead_letters.headers("compressed", "e" * 5000, INFO, original, 131072)
    assert headers == {
        "reason": "compressed", "error": "e" * dead_letters.ERROR_CHARS,
        "original_exchange": "nova", "original_routing_key": "notifications.info",
        "original_compression": "application/x-gzip", "original_headers": original,
    }
    assert headers["original_headers"] is not original  # a copy: ours never leak into it
    assert dead_letters.replay_headers(headers) == original


def test_a_message_without_headers_has_an_empty_table_and_gets_none_back() -> None:
    headers = dead_letters.headers("not-json", "e", None, None, 0)
    assert headers == {"reason": "not-json", "error": "e", "original_exchange": "",
                       "original_routing_key": "", "original_headers": {}}
    assert dead_letters.replay_headers(headers) == {}


def test_the_broker_delivery_count_is_not_replayed() -> None:
    headers = dead_letters.headers("not-json", "e", INFO, {"x-delivery-count": 3, "a": 1},
                                   131072)
    assert headers["original_headers"] == {"x-delivery-count": 3, "a": 1}  # as it came
    assert dead_letters.replay_headers(headers) == {"a": 1}


def test_headers_too_large_for_a_frame_are_left_out_with_their_size(
        caplog: pytest.LogCaptureFixture) -> None:
    fits = {"big": "x" * (4096 - 1500)}
    assert "original_headers" in dead_letters.headers("not-json", "e", INFO, fits, 4096)
    big = {"big": "x" * 4000}
    with caplog.at_level(logging.WARNING):
        headers = dead_letters.headers("not-json", "e", INFO, big, 4096)
    assert "original_headers" not in headers
    assert headers["original_headers_omitted"] == 4 + 1 + 3 + 1 + 4 + 4000
    assert "4096 bytes" in caplog.text
    # No limit negotiated: everything is kept.
    assert dead_letters.headers("not-json", "e", INFO, big, 0)["original_headers"] == big


def test_a_dead_letter_from_before_original_headers_gives_back_what_is_not_ours() -> None:
    old = {"reason": "too-large", "error": "e", "original_exchange": "nova",
           "original_routing_key": "notifications.info", "original_compression": b"zlib",
           "x-trace": "abc", "x-delivery-count": 4}
    assert dead_letters.replay_headers(old) == {"x-trace": "abc", "compression": "zlib"}
