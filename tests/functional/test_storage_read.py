"""get_events and friends against real databases, checked against plain Python."""

from __future__ import annotations

import copy
import datetime
import operator
from collections.abc import Iterator
from typing import Any

import pytest

from panko_collector import errors, storage
from panko_collector.storage import models
from tests.functional.storage_helpers import BASE, T, event, ids, open_storage

HOUR = datetime.timedelta(hours=1)
OPS = {"lt": operator.lt, "le": operator.le, "eq": operator.eq,
       "ne": operator.ne, "ge": operator.ge, "gt": operator.gt}
#: (trait name, trait type, filter key)
TRAIT_KINDS = [("name", T.TEXT_TYPE, "string"), ("count", T.INT_TYPE, "integer"),
               ("ratio", T.FLOAT_TYPE, "float"), ("when", T.DATETIME_TYPE, "datetime")]


def dataset() -> list[models.Event]:
    """12 events; some lack some traits; pairs share ``generated``; ids not in time order."""
    evs = []
    for i in range(12):
        traits = []
        if i % 4 != 3:
            traits.append(T("name", T.TEXT_TYPE, f"n{i % 5:02}"))
        if i % 3 != 2:
            traits.append(T("count", T.INT_TYPE, i * 10 - 30))
        if i % 5 != 4:
            traits.append(T("ratio", T.FLOAT_TYPE, (i % 6) / 4))
        if i % 2 == 0:
            traits.append(T("when", T.DATETIME_TYPE, BASE + i * HOUR + datetime.timedelta(
                microseconds=i)))
        evs.append(event(f"msg-{(i * 7) % 12:02}", traits,
                         event_type="b.end" if i % 2 else "a.start",
                         generated=BASE + datetime.timedelta(minutes=i // 2, microseconds=3),
                         raw={"i": i}))
    return evs


@pytest.fixture
def loaded(db_url: str) -> Iterator[tuple[storage.Connection, list[models.Event]]]:
    for conn in open_storage(db_url):
        evs = dataset()
        assert conn.record_events(evs).stored == len(evs)
        yield conn, evs


def in_order(evs: list[models.Event]) -> list[str]:
    return [e.message_id for e in sorted(evs, key=lambda e: (e.generated, e.message_id))]


def trait_value(ev: models.Event, name: str, dtype: int) -> Any:
    for t in ev.traits:
        if t.name == name and t.dtype == dtype:
            return t.value
    return None


def test_every_operator_on_every_trait_type(loaded: Any) -> None:
    conn, evs = loaded
    checked = 0
    for name, dtype, fkey in TRAIT_KINDS:
        values = sorted({v for e in evs if (v := trait_value(e, name, dtype)) is not None})
        for pivot in (values[0], values[len(values) // 2], values[-1]):
            for op, fn in OPS.items():
                flt = storage.EventFilter(traits_filter=[{"key": name, "op": op, fkey: pivot}])
                expected = in_order([e for e in evs if (v := trait_value(e, name, dtype))
                                     is not None and fn(v, pivot)])
                assert ids(conn.get_events(flt)) == expected, (name, op, pivot)
                checked += 1
    assert checked == 4 * 3 * 6
    # Without 'op' the comparison is equality.
    flt = storage.EventFilter(traits_filter=[{"key": "name", "string": "n01"}])
    assert ids(conn.get_events(flt)) == in_order(
        [e for e in evs if trait_value(e, "name", T.TEXT_TYPE) == "n01"])


def test_ne_only_matches_events_with_the_key(loaded: Any) -> None:
    conn, evs = loaded
    flt = storage.EventFilter(traits_filter=[{"key": "count", "op": "ne", "integer": 0}])
    got = ids(conn.get_events(flt))
    assert got == in_order(
        [e for e in evs if trait_value(e, "count", T.INT_TYPE) not in (None, 0)])
    flt = storage.EventFilter(traits_filter=[{"key": "absent", "op": "ne", "string": "x"}])
    assert ids(conn.get_events(flt)) == []


def test_filters_combine(loaded: Any) -> None:
    conn, evs = loaded
    start, end = BASE + datetime.timedelta(minutes=1), BASE + datetime.timedelta(minutes=4)
    flt = storage.EventFilter(
        start_timestamp=start.replace(microsecond=3),  # bounds are inclusive
        end_timestamp=end.replace(microsecond=3),
        event_type="a.start",
        traits_filter=[{"key": "count", "op": "ge", "integer": -10},
                       {"key": "ratio", "op": "lt", "float": 1.0}],
    )
    expected = in_order([
        e for e in evs if start.replace(microsecond=3) <= e.generated <= end.replace(
            microsecond=3) and e.event_type == "a.start"
        and (trait_value(e, "count", T.INT_TYPE) or -99) >= -10
        and trait_value(e, "ratio", T.FLOAT_TYPE) is not None
        and trait_value(e, "ratio", T.FLOAT_TYPE) < 1.0])
    assert expected  # the data make this non-trivial
    assert ids(conn.get_events(flt)) == expected
    one = evs[5].message_id
    assert ids(conn.get_events(storage.EventFilter(message_id=one))) == [one]
    assert ids(conn.get_events(storage.EventFilter(message_id=one, event_type="nope"))) == []
    # A show as the API makes it, with the caller's scoping as trait filters.
    shown = evs[4]
    name, count = trait_value(shown, "name", T.TEXT_TYPE), trait_value(shown, "count", T.INT_TYPE)
    assert name is not None and count is not None
    for value, expect in ((name, [shown.message_id]), ("n99", [])):
        assert ids(conn.get_events(storage.EventFilter(
            message_id=shown.message_id, traits_filter=[
                {"key": "name", "op": "eq", "string": value},
                {"key": "count", "op": "eq", "integer": count}]))) == expect
    # Exclusive of the microsecond before and after.
    t = evs[0].generated
    assert ids(conn.get_events(storage.EventFilter(
        end_timestamp=t - datetime.timedelta(microseconds=1)))) == []
    assert len(ids(conn.get_events(storage.EventFilter(start_timestamp=t, end_timestamp=t)))) == 2


@pytest.mark.parametrize("cap", [0, 2, 5, 1000])
def test_trait_filters_resolved_to_ids_or_row_by_row(
    pg_url: str, cap: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL turns the trait filters matching at most ``cap`` events into
    their ids first: with any cap, alone or mixed, the answers are the same."""
    from panko_collector.storage.sqlalchemy import read

    monkeypatch.setattr(read, "PREFETCH_MAX", cap)
    conn = storage.get_connection(pg_url)
    conn.upgrade()
    evs = dataset()
    conn.record_events(evs)
    filters = [
        [{"key": "name", "op": "eq", "string": "n01"}],
        [{"key": "count", "op": "gt", "integer": 0}],
        [{"key": "ratio", "op": "ne", "float": 0.25}],
        [{"key": "when", "op": "le", "datetime": BASE + 6 * HOUR}],
        [{"key": "name", "op": "eq", "string": "n01"},
         {"key": "count", "op": "gt", "integer": 0}],
        [{"key": "count", "op": "ge", "integer": -30},
         {"key": "ratio", "op": "lt", "float": 1.0},
         {"key": "name", "op": "ne", "string": "n00"}],
        [{"key": "name", "op": "eq", "string": "n01"},
         {"key": "name", "op": "eq", "string": "n02"}],             # nothing in common
    ]
    kinds = {name: (dtype, fkey) for name, dtype, fkey in TRAIT_KINDS}
    for traits in filters:
        def matches(e: models.Event, traits: list[dict[str, Any]] = traits) -> bool:
            for tf in traits:
                dtype, fkey = kinds[tf["key"]]
                v = trait_value(e, tf["key"], dtype)
                if v is None or not OPS[tf["op"]](v, tf[fkey]):
                    return False
            return True

        flt = storage.EventFilter(traits_filter=traits)  # type: ignore[arg-type]
        expected = in_order([e for e in evs if matches(e)])
        assert ids(conn.get_events(flt)) == expected, traits
        desc = {"sort": [("generated", "desc"), ("message_id", "desc")]}
        assert ids(conn.get_events(flt, {**desc, "limit": 2})) == expected[::-1][:2], traits
        if len(expected) > 2:
            page = {**desc, "limit": 2, "marker": expected[-2]}
            assert ids(conn.get_events(flt, page)) == expected[::-1][2:4], traits
    conn.dispose()


def test_events_come_back_whole(loaded: Any) -> None:
    conn, evs = loaded
    by_id = {e.message_id: e for e in conn.get_events(storage.EventFilter())}
    for e in evs:
        got = by_id[e.message_id]
        assert (got.event_type, got.generated, got.raw) == (e.event_type, e.generated, e.raw)
        assert [t.name for t in got.traits] == sorted(t.name for t in e.traits)
        assert sorted((t.name, t.dtype, t.value) for t in got.traits) == sorted(
            (t.name, t.dtype, t.value) for t in e.traits)


SORTS: list[list[tuple[str, str]] | None] = [
    None,
    [("generated", "asc"), ("message_id", "asc")],
    [("generated", "desc")],
    [("message_id", "asc")],
    [("message_id", "desc")],
    [("generated", "asc"), ("message_id", "desc")],
    [("generated", "desc"), ("message_id", "asc")],
]


def python_sort(evs: list[models.Event], sort: list[tuple[str, str]] | None) -> list[str]:
    keys = list(sort or [("generated", "asc"), ("message_id", "asc")])
    if "message_id" not in (k for k, _ in keys):
        keys.append(("message_id", keys[-1][1]))
    out = list(evs)
    for key, direction in reversed(keys):  # stable sorts, least significant first
        out.sort(key=lambda e, k=key: getattr(e, k), reverse=direction == "desc")
    return [e.message_id for e in out]


@pytest.mark.parametrize("sort", SORTS)
def test_keyset_pagination(loaded: Any, sort: list[tuple[str, str]] | None) -> None:
    conn, evs = loaded
    expected = python_sort(evs, sort)
    everything = storage.EventFilter()
    base_page: storage.Pagination = {"limit": None}
    if sort is not None:
        base_page["sort"] = sort
    assert ids(conn.get_events(everything, base_page)) == expected
    seen: list[str] = []
    marker = None
    for _ in range(10):
        page: storage.Pagination = {"limit": 5, "marker": marker}
        if sort is not None:
            page["sort"] = list(sort)
        before = copy.deepcopy(page)
        got = ids(conn.get_events(everything, page))
        assert page == before  # never modified
        assert got == expected[len(seen):len(seen) + 5]
        seen += got
        if len(got) < 5:
            break
        marker = got[-1]
    assert seen == expected


def test_pagination_with_a_filter_and_unknown_marker(loaded: Any) -> None:
    conn, evs = loaded
    flt = storage.EventFilter(event_type="b.end")
    expected = in_order([e for e in evs if e.event_type == "b.end"])
    first = ids(conn.get_events(flt, {"limit": 2}))
    rest = ids(conn.get_events(flt, {"marker": first[-1]}))
    assert first + rest == expected
    with pytest.raises(errors.InvalidMarker):
        conn.get_events(flt, {"marker": "no-such-message"})
    # A stored event outside the filter is no marker either: a caller scoped
    # by the filter cannot page from, or learn of, an event it cannot see.
    other = next(e.message_id for e in evs if e.event_type != "b.end")
    with pytest.raises(errors.InvalidMarker):
        conn.get_events(flt, {"marker": other})
    outside = next(e.message_id for e in evs if trait_value(e, "name", T.TEXT_TYPE) != "n01")
    by_trait = storage.EventFilter(traits_filter=[{"key": "name", "string": "n01"}])
    with pytest.raises(errors.InvalidMarker):
        conn.get_events(by_trait, {"marker": outside})
    with pytest.raises(errors.InvalidQuery):
        conn.get_events(flt, {"sort": [("raw", "asc")]})
    with pytest.raises(errors.InvalidQuery):
        conn.get_events(storage.EventFilter(traits_filter=[{"key": "x", "op": "like",
                                                            "string": "y"}]))


def test_filter_objects_are_reusable_and_untouched(loaded: Any) -> None:
    conn, _evs = loaded
    tf = [{"key": "count", "op": "gt", "integer": 0}, {"key": "name", "string": "n01"}]
    flt = storage.EventFilter(traits_filter=tf)  # type: ignore[arg-type]
    snapshot = copy.deepcopy(tf)
    page: storage.Pagination = {"limit": 3, "sort": [("message_id", "desc")]}
    page_snapshot = copy.deepcopy(page)
    first = ids(conn.get_events(flt, page))
    assert first and ids(conn.get_events(flt, page)) == first
    assert tf == snapshot and page == page_snapshot


def test_admin_proj_visibility(db_url: str) -> None:
    for conn in open_storage(db_url):
        conn.record_events([
            event("mine", [T("project_id", T.TEXT_TYPE, "p1"), T("x", T.INT_TYPE, 1)]),
            event("theirs", [T("project_id", T.TEXT_TYPE, "p2")]),
            event("no-project", [T("host", T.TEXT_TYPE, "h")]),
            event("no-text-traits", [T("x", T.INT_TYPE, 1)]),
            event("no-traits"),
            event("project-not-text", [T("project_id", T.INT_TYPE, 1), T("h", T.TEXT_TYPE, "h")]),
        ])
        got = ids(conn.get_events(storage.EventFilter(admin_proj="p1")))
        assert got == ["mine", "no-project", "project-not-text"]
        assert len(ids(conn.get_events(storage.EventFilter()))) == 6
        # Another project's event is no marker for this project's pages.
        with pytest.raises(errors.InvalidMarker):
            conn.get_events(storage.EventFilter(admin_proj="p1"), {"marker": "theirs"})
        assert ids(conn.get_events(storage.EventFilter(admin_proj="p1"),
                                   {"marker": "mine"})) == ["no-project", "project-not-text"]


def test_event_types_trait_types_and_traits(loaded: Any) -> None:
    conn, evs = loaded
    assert list(conn.get_event_types()) == ["a.start", "b.end"]
    types = list(conn.get_trait_types("a.start"))
    assert sorted((t["name"], t["data_type"]) for t in types) == [
        ("count", 2), ("name", 1), ("ratio", 3), ("when", 4)]
    assert {t["name"] for t in conn.get_trait_types("b.end")} == {"count", "name", "ratio"}
    assert list(conn.get_trait_types("unknown")) == []
    traits = list(conn.get_traits("a.start"))
    expected = [(t.name, t.dtype, t.value) for e in evs if e.event_type == "a.start"
                for t in e.traits]
    assert sorted((t.name, t.dtype, t.value) for t in traits) == sorted(expected)
    counts = list(conn.get_traits("a.start", "count"))
    assert sorted(t.value for t in counts) == sorted(
        v for e in evs if e.event_type == "a.start"
        if (v := trait_value(e, "count", T.INT_TYPE)) is not None)
    assert all(t.name == "count" and t.dtype == T.INT_TYPE for t in counts)


def test_clear_empties_everything(loaded: Any) -> None:
    conn, evs = loaded
    conn.clear()
    assert ids(conn.get_events(storage.EventFilter())) == []
    assert list(conn.get_event_types()) == []
    assert conn.record_events(evs[:2]).stored == 2  # the type cache was dropped too


def test_text_with_nul_finds_what_was_stored(db_url: str) -> None:
    """PostgreSQL cannot hold NUL: it stores U+FFFD instead, and reads
    replace it alike, so every database answers a filter with NUL the same."""
    for conn in open_storage(db_url):
        conn.record_events([event("m\x00", [T("state", T.TEXT_TYPE, "a\x00b"),
                                             T("project_id", T.TEXT_TYPE, "p\x00")],
                                  event_type="t\x00")])
        for flt in (storage.EventFilter(traits_filter=[{"key": "state", "string": "a\x00b"}]),
                    storage.EventFilter(event_type="t\x00", message_id="m\x00"),
                    storage.EventFilter(admin_proj="p\x00")):
            assert len(ids(conn.get_events(flt))) == 1, flt
        assert ids(conn.get_events(storage.EventFilter(traits_filter=[
            {"key": "state\x00", "string": "x\x00"}]))) == []
        with pytest.raises(errors.InvalidMarker):
            conn.get_events(storage.EventFilter(), {"marker": "x\x00"})
        assert ids(conn.get_events(storage.EventFilter(), {"marker": "m\x00"})) == []
        assert [t["name"] for t in conn.get_trait_types("t\x00")] == ["project_id", "state"]
        assert len(list(conn.get_traits("t\x00", "state"))) == 1
