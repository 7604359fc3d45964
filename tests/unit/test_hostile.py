"""Hostile input, without services: what the decoder refuses, what the
converter drops, what the storage rewrites for PostgreSQL."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
import yaml

from panko_collector.conversion.converter import Converter
from panko_collector.conversion.decoder import MAX_DEPTH, check_delivery, decode, decode_object
from panko_collector.conversion.definitions import parse_definitions
from panko_collector.errors import DecodeError
from panko_collector.storage import impl_sqlalchemy
from panko_collector.storage.models import Event, Trait

DEFINITIONS = """
- event_type: '*'
  traits:
    count: {type: int, fields: payload.count}
    ratio: {type: float, fields: payload.ratio}
    launched: {type: datetime, fields: payload.launched}
    name: {fields: payload.name}
    anywhere: {fields: payload..deep}
"""


def convert(payload: Any, **extra: Any) -> Event:
    conv = Converter(parse_definitions(yaml.safe_load(DEFINITIONS)))
    body = {"event_type": "x.y", "message_id": "m-1", "payload": payload,
            "timestamp": "2024-01-02 03:04:05", **extra}
    event = conv.convert(decode_object(body))
    assert event is not None
    return event


def traits(event: Event) -> dict[str, Any]:
    return {t.name: t.value for t in event.traits}


@pytest.mark.parametrize("kwargs, reason", [
    ({"size": 2_000_000}, "too-large"),
    ({"headers": {"compression": "application/x-gzip"}}, "compressed"),
    ({"content_encoding": "gzip"}, "compressed"),
    ({"content_encoding": "zlib"}, "compressed"),
    ({"content_encoding": "utf-16"}, "unsupported-encoding"),
    ({"content_type": "application/x-python-serialize"}, "unsupported-content-type"),
    ({"content_type": "application/x-yaml"}, "unsupported-content-type"),
])
def test_deliveries_refused_before_decoding(kwargs: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"size": 10, "content_type": "application/json",
                            "content_encoding": "utf-8", "headers": {},
                            "max_bytes": 1024 * 1024, **kwargs}
    with pytest.raises(DecodeError) as info:
        check_delivery(**args)
    assert info.value.reason == reason


@pytest.mark.parametrize("ctype, encoding", [
    ("application/json", "utf-8"), (None, None), ("", ""), ("application/json; charset=utf-8",
                                                           "UTF-8"),
    ("text/plain", "utf8"), ("application/octet-stream", "binary"),
])
def test_json_deliveries_pass(ctype: str | None, encoding: str | None) -> None:
    check_delivery(100, ctype, encoding, {"other": 1}, 1024)


def test_size_limit_zero_means_none() -> None:
    check_delivery(10**9, "application/json", "utf-8", None, 0)
    with pytest.raises(DecodeError):
        check_delivery(1025, "application/json", "utf-8", None, 1024)


@pytest.mark.parametrize("depth", [1000, 5000, 100_000])
def test_deep_nesting_is_a_decode_error_in_the_body_and_in_the_envelope(depth: int) -> None:
    deep = "[" * depth + "]" * depth
    for body in (f'{{"event_type": "x", "payload": {deep}}}',
                 json.dumps({"oslo.version": "2.0",
                             "oslo.message": f'{{"event_type": "x", "payload": {deep}}}'})):
        with pytest.raises(DecodeError) as info:
            decode(body.encode())
        assert info.value.reason == "too-deep"


@pytest.mark.parametrize("opening, closing", [("[", "]"), ('{"k": ', "}"), ('[{"k": ', "}]")])
def test_the_nesting_limit_is_exact_in_the_body_and_in_the_envelope(
        opening: str, closing: str) -> None:
    def body(levels: int) -> str:
        """A notification of ``levels`` levels of objects and arrays, its own included."""
        inner = levels - 1
        step = 2 if opening.startswith("[{") else 1
        assert inner % step == 0
        payload = opening * (inner // step) + "1" + closing * (inner // step)
        return f'{{"event_type": "x", "payload": {payload}}}'

    for levels in (MAX_DEPTH, MAX_DEPTH + 1) if opening != '[{"k": ' else (
            MAX_DEPTH - 1, MAX_DEPTH + 1):
        for text in (body(levels), json.dumps({"oslo.version": "2.0",
                                               "oslo.message": body(levels)})):
            if levels <= MAX_DEPTH:
                assert decode(text.encode()).event_type == "x"
            else:
                with pytest.raises(DecodeError) as info:
                    decode(text.encode())
                assert info.value.reason == "too-deep"


def test_nesting_up_to_the_limit_decodes_and_converts() -> None:
    payload: Any = {"deep": "bottom"}
    for _ in range(MAX_DEPTH - 3):
        payload = {"k": payload}
    body = json.dumps({"event_type": "x", "payload": payload})
    note = decode(body.encode())
    event = Converter(parse_definitions(yaml.safe_load(DEFINITIONS))).convert(note)
    assert event is not None
    assert traits(event)["anywhere"] == "bottom"


def test_many_brackets_but_shallow_pass() -> None:
    body = json.dumps({"event_type": "x", "payload": [[1]] * 5000})
    assert decode(body.encode()).payload == [[1]] * 5000


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30, "9" * 40, float("inf")])
def test_int_traits_beyond_64_bits_are_dropped_and_the_event_kept(value: Any) -> None:
    event = convert({"count": value, "name": "n"})
    assert traits(event) == {"name": "n"}
    impl_sqlalchemy.prepare_event(event)  # the storage takes it


def test_int_traits_at_the_64_bit_bounds_are_kept() -> None:
    assert traits(convert({"count": 2**63 - 1}))["count"] == 2**63 - 1
    assert traits(convert({"count": -(2**63)}))["count"] == -(2**63)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "NaN",
                                   "Infinity", "-inf", 10**400])
def test_non_finite_float_traits_are_dropped_and_the_event_kept(value: Any) -> None:
    event = convert({"ratio": value, "name": "n"})
    assert traits(event) == {"name": "n"}
    impl_sqlalchemy.prepare_event(event)


def test_nan_and_infinity_literals_in_json_reach_the_converter_and_are_dropped() -> None:
    body = b'{"event_type": "x", "payload": {"ratio": NaN, "count": Infinity, "name": "n"}}'
    event = Converter(parse_definitions(yaml.safe_load(DEFINITIONS))).convert(decode(body))
    assert event is not None
    assert traits(event) == {"name": "n"}


@pytest.mark.parametrize("stamp", ["10000-01-01 00:00:00", "-0001-01-01 00:00:00",
                                   "9999-12-31T23:59:60", "0000-00-00 00:00:00", "-1"])
def test_impossible_timestamps_cost_the_trait_not_the_event(stamp: str) -> None:
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    event = convert({"launched": stamp, "name": "n"}, timestamp=stamp)
    assert traits(event) == {"name": "n"}
    # The message's own time is unusable: the time it was received is used.
    assert event.generated >= before - datetime.timedelta(seconds=1)


def test_nul_and_sql_pass_the_converter_verbatim() -> None:
    name = "x'); DROP TABLE event; --\x00"
    event = convert({"name": name})
    assert traits(event)["name"] == name


def test_postgresql_rule_replaces_nul_everywhere_else_nothing() -> None:
    event = Event("id\x00", "type\x00.x", datetime.datetime(2024, 1, 1),
                  [Trait("a\x00b", Trait.TEXT_TYPE, "v\x00w"), Trait("n\x00", Trait.INT_TYPE, 5),
                   Trait("plain", Trait.TEXT_TYPE, "drop table")], {"raw": "\x00"})
    row = impl_sqlalchemy.prepare_event(event)
    assert row.traits[Trait.TEXT_TYPE]["a\x00b"] == "v\x00w"
    impl_sqlalchemy.replace_nul(row)
    r = impl_sqlalchemy.NUL_REPLACEMENT
    assert (row.message_id, row.event_type) == (f"id{r}", f"type{r}.x")
    assert row.traits[Trait.TEXT_TYPE] == {f"a{r}b": f"v{r}w", "plain": "drop table"}
    assert row.traits[Trait.INT_TYPE] == {f"n{r}": 5}
    assert "\x00" not in row.raw and "\\u0000" in row.raw
    # A NUL in a text value only, in a name only, beside a text value of None.
    row = impl_sqlalchemy.prepare_event(Event("id", "t", datetime.datetime(2024, 1, 1), [
        Trait("clean", Trait.TEXT_TYPE, "only\x00here"), Trait("none", Trait.NONE_TYPE, None)]))
    impl_sqlalchemy.replace_nul(row)
    assert row.traits[Trait.TEXT_TYPE] == {"clean": f"only{r}here", "none": None}
    row = impl_sqlalchemy.prepare_event(Event("id", "t", datetime.datetime(2024, 1, 1), [
        Trait("f\x00", Trait.FLOAT_TYPE, 1.5)]))
    impl_sqlalchemy.replace_nul(row)
    assert row.traits[Trait.FLOAT_TYPE] == {f"f{r}": 1.5}


def test_a_flood_of_distinct_event_types_keeps_the_cache_bounded() -> None:
    conv = Converter(parse_definitions(yaml.safe_load(DEFINITIONS)))
    for i in range(10_000):
        conv.convert(decode_object({"event_type": f"flood.{i}", "payload": {}}))
    assert len(conv._cache) <= 4096
    assert conv.convert(decode_object({"event_type": "x.y", "payload": {"name": "n"}}))
