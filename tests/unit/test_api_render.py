"""The direct writer of events' JSON gives the bytes of the plain render + dumps."""

from __future__ import annotations

import datetime
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from panko_collector.api import render
from panko_collector.storage import models

T = models.Trait


def plain(events: list[models.Event]) -> str:
    """The definition: the documents built as objects, encoded as json.dumps does."""
    return json.dumps([render.event(e) for e in events])


def test_hand_picked_events_give_the_same_bytes() -> None:
    events = [
        models.Event(
            "5c7d9c4e-0d3e-4f0b-9d8e-1a2b3c4d5e6f", "compute.instance.create.end",
            datetime.datetime(2021, 3, 1, 12, 0, 0, 123456),
            [T("a_float", T.FLOAT_TYPE, 1e16), T("b_float", T.FLOAT_TYPE, 0.1),
             T("c_float", T.FLOAT_TYPE, float("nan")), T("d_float", T.FLOAT_TYPE, -float("inf")),
             T("e_int", T.INT_TYPE, 512), T("f_int", T.INT_TYPE, -(2**63)),
             T("g_when", T.DATETIME_TYPE, datetime.datetime(2021, 3, 1, 11, 59)),
             T("h_when", T.DATETIME_TYPE, datetime.datetime(2021, 3, 1, 11, 59, 0, 7)),
             T("i_text", T.TEXT_TYPE, "Zürich — 東京 \U0001f600"),
             T("j_text", T.TEXT_TYPE, 'quote " backslash \\ tab \t nul \x00 del \x7f'),
             T("k_none", T.NONE_TYPE, "kept as text"),
             T("l_odd", 9, "a type code the API does not know"),
             T("ñame", T.TEXT_TYPE, "")],
            {"payload": {"display_name": "vm-é", "n": 1.5, "l": [None, True, 2]},
             "priority": "INFO"}),
        # No microseconds: isoformat() leaves them out, as Panko did.
        models.Event("m2", "é.type", datetime.datetime(2021, 3, 1), [], {}),
        models.Event("m3", "x", datetime.datetime(1999, 12, 31, 23, 59, 59, 999999),
                     [T("t", T.TEXT_TYPE, "v")], {"raw": []}),
    ]
    assert render.events_json(events) == plain(events)
    assert render.events_json([]) == plain([]) == "[]"
    for e in events:
        assert render.event_json(e) == json.dumps(render.event(e))
    # ASCII only: non-ASCII is escaped, as Panko sent it.
    assert render.events_json(events).isascii()
    assert "\\u00fc" in render.events_json(events)


_text = st.text(max_size=12)
_datetimes = st.datetimes(min_value=datetime.datetime(1, 1, 1),
                          max_value=datetime.datetime(9999, 12, 31))
_traits = st.one_of(
    st.builds(T, _text, st.just(T.TEXT_TYPE), _text),
    st.builds(T, _text, st.just(T.INT_TYPE), st.integers()),
    st.builds(T, _text, st.just(T.FLOAT_TYPE), st.floats()),
    st.builds(T, _text, st.just(T.DATETIME_TYPE), _datetimes),
)
_raw = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(_text, children, max_size=3),
    max_leaves=10,
)
_events = st.builds(models.Event, _text, _text, _datetimes, st.lists(_traits, max_size=6),
                    st.dictionaries(_text, _raw, max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(_events, max_size=4))
def test_any_events_give_the_same_bytes(events: list[models.Event]) -> None:
    assert render.events_json(events) == plain(events)


def test_dumps_keeps_json_dumps_output() -> None:
    doc = {"z": 1, "a": ["é", 1.5, None, {"k": True}], "m": "\U0001f600"}
    assert render.dumps(doc) == json.dumps(doc)
