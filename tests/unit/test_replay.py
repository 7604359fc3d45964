"""What a replay selects and what it publishes, without a broker."""

from __future__ import annotations

import datetime
import json

from panko_collector.broker import replay

BODY = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps({
    "message_id": "m1", "event_type": "compute.instance.create.end", "priority": "INFO",
    "publisher_id": "compute.h1", "payload": {}, "timestamp": "2026-11-30 10:00:00.5"})})


def letter(reason: str = "too-large", body: bytes = BODY.encode(), **headers: str
           ) -> replay.DeadLetter:
    return replay.DeadLetter(1, body, {
        "content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 2,
        "application_headers": {"reason": reason, "error": "e", "original_exchange": "nova",
                                "original_routing_key": "notifications.info", **headers}})


def test_published_with_the_application_headers_only() -> None:
    props = letter(**{"x-trace": "abc", "x-delivery-count": "3"}).replay_properties()
    assert props == {"content_type": "application/json", "content_encoding": "utf-8",
                     "delivery_mode": 2, "application_headers": {"x-trace": "abc"}}
    assert "application_headers" not in letter().replay_properties()
    assert letter(original_compression="zlib").replay_properties()[
        "application_headers"] == {"compression": "zlib"}


def test_selection_by_reason_and_event_type_glob() -> None:
    too_large, not_json = letter(), letter("not-json", b"{not")
    assert replay.Selection()(not_json, None)
    by_reason = replay.Selection(frozenset({"too-large", "store-failed"}))
    assert by_reason(too_large, None) and not by_reason(not_json, None)
    by_type = replay.Selection(event_type="compute.*")
    assert by_type(too_large, "compute.instance.create.end")
    assert not by_type(too_large, "image.upload")
    assert not by_type(not_json, None)  # no event type: never matches a glob


def test_inventory_by_reason_and_event_type_with_oldest_and_newest() -> None:
    inv = replay.Inventory()
    for lt in (letter(), letter("not-json", b"{not"), letter(original_compression="zlib")):
        inv.add(lt, lt.notification())
    out = inv.as_json("dlq")
    assert out["count"] == 3
    assert out["reasons"]["too-large"] == {"count": 2, "oldest": "2026-11-30T10:00:00.500000",
                                           "newest": "2026-11-30T10:00:00.500000"}
    assert out["reasons"]["not-json"] == {"count": 1, "oldest": None, "newest": None}
    # A compressed body is never inflated, so it has no event type.
    assert out["event_types"] == {"compute.instance.create.end": 1, "(undecodable)": 2}
    assert inv.total.newest == datetime.datetime(2026, 11, 30, 10, 0, 0, 500000)


def test_summary_says_what_stayed_and_why() -> None:
    report = replay.Report("dlq", scanned=10, selected=4, replayed=3, seconds=2.0)
    report.failures["exchange 'x' does not exist"] += 1
    assert report.summary() == (
        "replayed 3 of 4 selected dead letters (looked at 10 in dlq) in 2.0 s, 2/s; "
        "1 could not be replayed and stay in the queue: exchange 'x' does not exist (1)")
    dry = replay.Report("dlq", dry_run=True, scanned=10, selected=4)
    assert dry.summary().startswith("would replay 4 of 4 selected")
