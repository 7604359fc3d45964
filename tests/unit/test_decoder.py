"""Decoding: the three shapes give one Notification; bad bodies a typed error."""

from __future__ import annotations

import datetime
import json
from typing import Any

import iso8601
import pytest
from hypothesis import given
from hypothesis import strategies as st

from panko_collector.conversion.decoder import Notification, decode, decode_object, parse_timestamp
from panko_collector.errors import DecodeError
from tests import corpus

FLAT = {
    "_context_request_id": "req-1",
    "_context_user_id": "u-1",
    "_context_project_id": "p-1",
    "event_type": "compute.instance.create.end",
    "publisher_id": "compute.host-1",
    "priority": "INFO",
    "message_id": "m-1",
    "timestamp": "2012-05-08 20:23:48.028195",
    "payload": {"instance_id": "i-1"},
    "_unique_id": "abc",
}


def to_listener(flat: dict[str, Any]) -> dict[str, Any]:
    """What oslo.messaging hands a notification endpoint, built from a flat message."""
    body: dict[str, Any] = {
        "ctxt": {k[len("_context_"):]: v for k, v in flat.items() if k.startswith("_context_")},
        "publisher_id": flat.get("publisher_id"),
        "event_type": flat.get("event_type"),
        "payload": flat.get("payload"),
        "metadata": {"message_id": flat.get("message_id"), "timestamp": flat.get("timestamp")},
    }
    if "priority" in flat:
        body["priority"] = flat["priority"]
    return body


def to_flat(listener: dict[str, Any]) -> dict[str, Any]:
    flat = {f"_context_{k}": v for k, v in (listener.get("ctxt") or {}).items()}
    for key in ("event_type", "publisher_id", "payload", "priority"):
        if key in listener:
            flat[key] = listener[key]
    for key, value in (listener.get("metadata") or {}).items():
        flat[key] = value
    return flat


def to_wire(flat: dict[str, Any]) -> bytes:
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(flat)}).encode()


def test_flat_message() -> None:
    n = decode(json.dumps(FLAT))
    assert n == Notification(
        message_id="m-1", event_type="compute.instance.create.end",
        publisher_id="compute.host-1", priority="info",
        timestamp=datetime.datetime(2012, 5, 8, 20, 23, 48, 28195),
        payload={"instance_id": "i-1"},
        context={"request_id": "req-1", "user_id": "u-1", "project_id": "p-1"},
        raw_timestamp="2012-05-08 20:23:48.028195",
    )


def test_three_shapes_decode_the_same() -> None:
    flat = decode(json.dumps(FLAT).encode())
    assert decode(to_wire(FLAT)) == flat
    assert decode_object(to_listener(FLAT)) == flat


def test_listener_body_round_trip() -> None:
    n = decode(to_wire(FLAT))
    body = n.listener_body()
    assert body == {
        "ctxt": {"request_id": "req-1", "user_id": "u-1", "project_id": "p-1"},
        "publisher_id": "compute.host-1", "event_type": "compute.instance.create.end",
        "payload": {"instance_id": "i-1"}, "priority": "info",
        "metadata": {"message_id": "m-1", "timestamp": "2012-05-08 20:23:48.028195"},
    }
    assert decode_object(body) == n


def test_listener_body_timestamp_argument() -> None:
    bare = decode_object({"event_type": "x", "payload": {}})
    assert bare.timestamp is None and bare.listener_body()["metadata"]["timestamp"] is None
    stamp = datetime.datetime(2020, 1, 2, 3, 4, 5, 6)
    assert bare.listener_body(stamp)["metadata"]["timestamp"] == "2020-01-02 03:04:05.000006"
    assert parse_timestamp(bare.listener_body(stamp)["metadata"]["timestamp"]) == stamp


@pytest.mark.parametrize("body, reason", [
    (b"\xff\xfe{}", "not-utf8"),
    (b'{"event_type": "a\xc3"}', "not-utf8"),
    (b'{"event_type": "x", "payload": "\\ud800"}', "not-utf8"),
    ("{\"event_type\": \"x\", \"payload\": \"\ud800\"}", "not-utf8"),
    (b"", "not-json"),
    (b"{nope", "not-json"),
    (b"[" * 100000, "too-deep"),
    (b"[1, 2]", "not-object"),
    (b'"text"', "not-object"),
    (b"null", "not-object"),
    (b"{}", "no-event-type"),
    (b'{"event_type": null}', "no-event-type"),
    (b'{"event_type": ""}', "no-event-type"),
    (b'{"event_type": 5}', "no-event-type"),
    (b'{"oslo.version": "3.0", "oslo.message": "{}"}', "bad-envelope"),
    (b'{"oslo.version": "2.0", "oslo.message": {}}', "bad-envelope"),
    (b'{"oslo.version": "2.0", "oslo.message": "{nope"}', "not-json"),
    (b'{"oslo.version": "2.0", "oslo.message": "[]"}', "not-object"),
    (b'{"event_type": "x", "ctxt": []}', "bad-context"),
    (b'{"event_type": "x", "ctxt": {}, "metadata": 3}', "bad-metadata"),
])
def test_rejected_bodies(body: bytes | str, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(body)
    assert info.value.reason == reason
    assert info.value.detail


def test_surrogate_pairs_are_fine() -> None:
    n = decode(b'{"event_type": "x", "payload": "\\ud83d\\ude00"}')
    assert n.payload == "\U0001f600"


def test_one_envelope_key_alone_is_a_flat_message() -> None:
    # oslo.messaging reads a dict as an envelope only when both keys exist.
    n = decode_object({"oslo.version": "2.0", "event_type": "x"})
    assert n.event_type == "x"


def test_priority_and_odd_fields() -> None:
    n = decode_object({"event_type": "x", "priority": "ERROR", "publisher_id": 12,
                       "message_id": 7})
    assert (n.priority, n.publisher_id, n.message_id) == ("error", "12", "7")
    assert decode_object({"event_type": "x", "priority": None}).priority == ""
    assert decode_object({"event_type": "x", "ctxt": None}).context == {}


def test_flat_message_with_metadata_key_stays_flat() -> None:
    n = decode_object({"event_type": "x", "_context_user_id": "u", "metadata": {"a": 1},
                       "message_id": "m"})
    assert n.context == {"user_id": "u"} and n.message_id == "m"


def test_derived_message_id_is_deterministic_and_content_bound() -> None:
    a = decode_object({"event_type": "x", "payload": {"a": 1, "b": 2}})
    b = decode(b'{"payload": {"b": 2, "a": 1}, "event_type": "x"}')
    c = decode_object({"event_type": "x", "payload": {"a": 1, "b": 3}})
    assert a.message_id == b.message_id != c.message_id
    assert len(a.message_id) == 36
    flat = {k: v for k, v in FLAT.items() if k != "message_id"}
    assert decode(to_wire(flat)).message_id == decode_object(to_listener(flat)).message_id


@pytest.mark.parametrize("text, expected", [
    ("2012-05-08 20:23:48.028195", datetime.datetime(2012, 5, 8, 20, 23, 48, 28195)),
    ("2012-05-08 20:23:48", datetime.datetime(2012, 5, 8, 20, 23, 48)),
    ("2012-05-08T20:23:48.5", datetime.datetime(2012, 5, 8, 20, 23, 48, 500000)),
    ("2012-10-29T13:42:11Z", datetime.datetime(2012, 10, 29, 13, 42, 11)),
    ("2016-08-19 10:20:49+00:00", datetime.datetime(2016, 8, 19, 10, 20, 49)),
    ("2016-08-19T10:20:49.1234567+02:00", datetime.datetime(2016, 8, 19, 8, 20, 49, 123456)),
    ("2016-08-19T22:20:49-05:30", datetime.datetime(2016, 8, 20, 3, 50, 49)),
    ("2016-08-19", datetime.datetime(2016, 8, 19)),
    ("2015-09-24 12:47:.634363", None),
    ("2016-02-30 00:00:00", None),
    ("yesterday", None),
    ("[[[[DT_1]]]]", None),
    ("٢٠١٢-05-08 20:23:48", None),
    ("", None),
    (1234567890, None),
    (None, None),
])
def test_parse_timestamp(text: Any, expected: datetime.datetime | None) -> None:
    assert parse_timestamp(text) == expected


def _iso8601_reference(text: str) -> datetime.datetime | None:
    """oslo.utils' normalize_time(parse_isotime(text)), which Ceilometer uses."""
    try:
        parsed = iso8601.parse_date(text)
    except iso8601.ParseError:
        return None
    offset = parsed.utcoffset()
    return parsed.replace(tzinfo=None) - offset if offset else parsed.replace(tzinfo=None)


@given(st.datetimes(min_value=datetime.datetime(1900, 1, 1)),
       st.sampled_from([" ", "T"]), st.integers(0, 9), st.sampled_from(["", "Z", "+00:00",
                                                                          "-00:00", "+01:30"]))
def test_fast_timestamps_agree_with_iso8601(when: datetime.datetime, sep: str, digits: int,
                                            zone: str) -> None:
    text = when.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{when.microsecond:06d}{'123'}"[:digits]
    text += zone
    assert parse_timestamp(text) == _iso8601_reference(text)


@given(st.text(alphabet="0123456789-:T .Z+٣[x_", max_size=32))
def test_any_timestamp_text_agrees_with_iso8601(text: str) -> None:
    assert parse_timestamp(text) == _iso8601_reference(text)


def test_corpus_is_complete(corpus_dir: Any) -> None:
    cases = list(corpus.notifications())
    assert len(cases) == 584
    assert not any("$ref" in json.dumps(n) for _, n in cases)


def test_whole_corpus_decodes_alike_in_every_shape(corpus_dir: Any) -> None:
    for label, original in corpus.notifications():
        n = decode(json.dumps(original).encode())
        listener = n.listener_body()
        flat = to_flat(listener)
        assert decode(to_wire(flat)) == n, label
        assert decode(json.dumps(flat)) == n, label
        assert decode(json.dumps(listener)) == n, label
        assert n.event_type == original["event_type"], label
