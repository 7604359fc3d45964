"""Property tests: whatever arrives, decode and convert give an event, None, or DecodeError."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panko_collector.conversion.converter import Converter
from panko_collector.conversion.decoder import Notification, decode, decode_object
from panko_collector.conversion.definitions import load_definitions
from panko_collector.errors import DecodeError
from panko_collector.storage.models import Event, Trait
from tests import corpus

DATA = Path(__file__).resolve().parent / "data"
WHEN = datetime.datetime(2024, 1, 1)

EVENT_TYPES = ["compute.instance.create.end", "compute.instance.update", "image.update",
               "volume.create.end", "port.create.end", "dns.zone.create", "x", "*"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=20) | st.sampled_from(["", "2012-05-08 20:23:48.028195",
                                                      "active", "abc", "40", "1e3"]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10) | st.sampled_from(
        ["state", "tenant_id", "host", "instance_id", "nova_object.data", "key", "value",
         "image_meta", "glance_metadata", "volume_attachment", "created_at", "launched_at",
         "memory_mb", "size", "fixed_ips", "version", "address"]), children, max_size=5),
    max_leaves=25,
)


@st.composite
def notifications(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {}
    fields = {
        "event_type": st.sampled_from(EVENT_TYPES) | json_values,
        "publisher_id": st.sampled_from(["compute.host-1", "image.localhost"]) | json_values,
        "priority": st.sampled_from(["INFO", "error", "Sample"]) | json_values,
        "payload": json_values,
        "message_id": st.text(max_size=8) | json_values,
        "timestamp": scalars,
        "ctxt": json_values,
        "metadata": json_values,
        "_context_request_id": json_values,
        "_context_user_id": json_values,
    }
    for key, strategy in fields.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    if draw(st.booleans()):
        if draw(st.booleans()):
            return {"oslo.version": draw(st.sampled_from(["2.0", "1.0", 2])),
                    "oslo.message": json.dumps(body)}
        return {"oslo.version": "2.0", "oslo.message": draw(json_values)}
    return body


@pytest.fixture(scope="module")
def converters() -> list[Converter]:
    files = [DATA / "all_constructs.yaml"]
    shipped = corpus.definitions_file()
    if shipped.is_file():
        files.append(shipped)
    out = []
    for path in files:
        defs = load_definitions(str(path))
        out.append(Converter(defs, store_raw=["info"], on_trait_error=lambda *a: None))
        out.append(Converter(defs, drop_unmatched=True))
    return out


def check_event(event: Event | None, notification: Notification) -> None:
    if event is None:
        return
    assert isinstance(event, Event)
    assert event.message_id == notification.message_id and isinstance(event.message_id, str)
    assert isinstance(event.generated, datetime.datetime) and event.generated.tzinfo is None
    for trait in event.traits:
        assert isinstance(trait, Trait)
        if trait.dtype == Trait.TEXT_TYPE:
            assert isinstance(trait.value, str) and len(trait.value) <= 255
        elif trait.dtype == Trait.INT_TYPE:
            assert isinstance(trait.value, int)
        elif trait.dtype == Trait.FLOAT_TYPE:
            assert isinstance(trait.value, float)
        else:
            assert trait.dtype == Trait.DATETIME_TYPE
            assert isinstance(trait.value, datetime.datetime) and trait.value.tzinfo is None
    assert isinstance(event.raw, dict)


def run(converters: list[Converter], produce: Any) -> None:
    try:
        notification = produce()
    except DecodeError as exc:
        assert exc.reason and exc.detail
        return
    assert isinstance(notification, Notification)
    for converter in converters:
        check_event(converter.convert(notification, WHEN), notification)


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(notifications())
def test_arbitrary_notification_objects(converters: list[Converter], obj: Any) -> None:
    run(converters, lambda: decode_object(obj))
    run(converters, lambda: decode(json.dumps(obj).encode()))


@SETTINGS
@given(json_values)
def test_arbitrary_json(converters: list[Converter], obj: Any) -> None:
    run(converters, lambda: decode(json.dumps(obj)))


@SETTINGS
@given(st.binary(max_size=200) | st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from([b'{"event_type": "x", "payload": ',
                     b'{"oslo.version": "2.0", "oslo.message": ',
                     b'{"event_type": "compute.instance.update", "payload": {"state": ']),
    st.binary(max_size=60)))
def test_arbitrary_bytes(converters: list[Converter], body: bytes) -> None:
    run(converters, lambda: decode(body))


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text(converters: list[Converter], body: str) -> None:
    run(converters, lambda: decode(body))
