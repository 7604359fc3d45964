"""What becomes of one delivery (``handling.classify``): every outcome,
with the real decoder and a converter of the test's own, no broker."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from panko_collector.conversion import decoder
from panko_collector.ingest import handling
from panko_collector.ingest.handling import DROP, IGNORE, DeadLetter, Store
from panko_collector.storage import models

PRIORITIES = frozenset({"info", "error"})


class Converter:
    """Keeps the message id; 'drop.*' is dropped, 'boom.*' raises."""

    def convert(self, n: Any, received: Any = None) -> models.Event | None:
        if n.event_type.startswith("drop."):
            return None
        if n.event_type.startswith("boom."):
            raise RuntimeError("converter bug")
        return models.Event(n.message_id, n.event_type, datetime.datetime(2026, 1, 1))


def body(priority: str | None = "INFO", event_type: str = "compute.instance.create.end",
         message_id: str = "m-1") -> bytes:
    note: dict[str, Any] = {"message_id": message_id, "publisher_id": "compute.host1",
                            "event_type": event_type, "payload": {},
                            "timestamp": "2026-01-01 00:00:00.000000"}
    if priority is not None:
        note["priority"] = priority
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(note)}).encode()


def classify(raw: bytes, *, content_type: str | None = "application/json",
             content_encoding: str | None = "utf-8", headers: dict[str, Any] | None = None,
             routing_key: str = "notifications.info", max_bytes: int = 1 << 20,
             priorities: frozenset[str] = PRIORITIES) -> handling.Outcome:
    return handling.classify(raw, content_type, content_encoding, headers, routing_key,
                             decode=decoder.decode, converter=Converter(),
                             priorities=priorities, max_bytes=max_bytes)


def test_a_notification_of_a_stored_priority_is_stored() -> None:
    outcome = classify(body())
    assert type(outcome) is Store
    assert outcome.event.message_id == "m-1"


def test_too_large_is_dead_lettered_unparsed() -> None:
    outcome = classify(b"x" * 101, max_bytes=100)
    assert outcome == DeadLetter("too-large", outcome.detail)  # type: ignore[union-attr]
    assert "101 bytes" in outcome.detail  # type: ignore[union-attr]
    # 0: no limit.
    assert type(classify(body(), max_bytes=0)) is Store


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"content_type": "application/x-python-serialize"}, "unsupported-content-type"),
    ({"content_encoding": "gzip"}, "compressed"),
    ({"headers": {"compression": "application/x-gzip"}}, "compressed"),
    ({"content_encoding": "latin-1"}, "unsupported-encoding"),
])
def test_deliveries_refused_before_decoding(kwargs: dict[str, Any], reason: str) -> None:
    outcome = classify(body(), **kwargs)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == reason
    assert outcome.message_id == ""


def test_not_json_and_a_bad_envelope_are_dead_lettered_with_the_decoder_reason() -> None:
    not_json = classify(b"{not json")
    assert isinstance(not_json, DeadLetter) and not_json.reason == "not-json"
    envelope = classify(json.dumps({"oslo.version": "2.0", "oslo.message": "[1]"}).encode())
    assert isinstance(envelope, DeadLetter)
    assert envelope.reason not in ("not-json", "convert-failed")


def test_a_priority_not_stored_is_ignored() -> None:
    assert classify(body(priority="DEBUG")) is IGNORE
    assert classify(body(priority="Error")) != IGNORE  # case does not matter


def test_without_a_priority_field_the_routing_key_names_it() -> None:
    assert type(classify(body(priority=None), routing_key="notifications.ERROR")) is Store
    assert classify(body(priority=None), routing_key="notifications.debug") is IGNORE
    assert classify(body(priority=None), routing_key="") is IGNORE
    # The field wins over the routing key.
    assert classify(body(priority="debug"), routing_key="notifications.info") is IGNORE


def test_a_converter_raising_is_dead_lettered_as_convert_failed() -> None:
    outcome = classify(body(event_type="boom.x", message_id="m-9"))
    assert outcome == DeadLetter("convert-failed", repr(RuntimeError("converter bug")), "m-9")


def test_a_converter_returning_none_drops() -> None:
    assert classify(body(event_type="drop.x")) is DROP


def test_the_priority_is_checked_before_converting() -> None:
    # An ignored priority never reaches the converter (which would raise here).
    assert classify(body(priority="debug", event_type="boom.x")) is IGNORE
