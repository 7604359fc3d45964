"""The pure parts of the SQL backend: URLs, timestamps, event preparation, query building."""

from __future__ import annotations

import datetime
import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panko_collector import errors, storage
from panko_collector.storage import impl_sqlalchemy, models
from panko_collector.storage.impl_sqlalchemy import Connection
from panko_collector.storage.sqlalchemy import filters, prepare
from panko_collector.storage.sqlalchemy import tables as sql_models
from panko_collector.storage.sqlalchemy.prepare import BadEvent, prepare_event

T = models.Trait


@pytest.mark.parametrize(("url", "dressed"), [
    ("mysql://u:p@db/panko?charset=utf8mb4", "mysql+pymysql://u:p@db/panko?charset=utf8mb4"),
    ("postgresql://u:p@db:5433/panko", "postgresql+psycopg://u:p@db:5433/panko"),
    ("mysql+mysqldb://u@db/panko", "mysql+mysqldb://u@db/panko"),
    ("postgresql+psycopg2://u@db/panko", "postgresql+psycopg2://u@db/panko"),
    ("sqlite:///panko-collector.sqlite", "sqlite:///panko-collector.sqlite"),
])
def test_dress_url(url: str, dressed: str) -> None:
    assert Connection.dress_url(url) == dressed


def test_get_connection_builds_the_sql_backend(tmp_path: object) -> None:
    conn = storage.get_connection("sqlite://")
    assert isinstance(conn, impl_sqlalchemy.Connection)


@given(st.datetimes(min_value=datetime.datetime(1900, 1, 1),
                    max_value=datetime.datetime(2999, 12, 31)))
def test_decimal_timestamps_round_trip_exactly(dt: datetime.datetime) -> None:
    d = sql_models.dt_to_decimal(dt)
    assert d.as_tuple().exponent == -6  # fits DECIMAL(20,6) with no rounding
    assert sql_models.decimal_to_dt(d) == dt


def test_decimal_timestamp_known_value() -> None:
    dt = datetime.datetime(2024, 3, 1, 12, 0, 0, 123456)
    assert sql_models.dt_to_decimal(dt) == decimal.Decimal("1709294400.123456")
    aware = dt.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert sql_models.dt_to_decimal(aware) == decimal.Decimal("1709290800.123456")


def _ev(*traits: models.Trait, **kw: object) -> models.Event:
    base = {"message_id": "m", "event_type": "t", "generated": datetime.datetime(2024, 1, 1),
            "traits": list(traits), "raw": {}}
    base.update(kw)
    return models.Event(**base)  # type: ignore[arg-type]


def test_prepare_cuts_text_merges_none_into_text_and_keeps_the_last_duplicate() -> None:
    row = prepare_event(_ev(T("a", T.TEXT_TYPE, "x" * 300), T("b", T.NONE_TYPE, None),
                            T("n", T.INT_TYPE, 1), T("n", T.INT_TYPE, 2),
                            T("c", T.TEXT_TYPE, 42)))
    assert row.traits[T.TEXT_TYPE] == {"a": "x" * 255, "b": None, "c": "42"}
    assert row.traits[T.INT_TYPE] == {"n": 2}
    assert row.raw == "{}"


@pytest.mark.parametrize(("event", "reason"), [
    (_ev(T("n", T.INT_TYPE, 2**63)), "64-bit"),
    (_ev(T("n", T.INT_TYPE, -(2**63) - 1)), "64-bit"),
    (_ev(T("n", T.INT_TYPE, "12")), "not an integer"),
    (_ev(T("f", T.FLOAT_TYPE, float("inf"))), "finite"),
    (_ev(T("d", T.DATETIME_TYPE, "2024-01-01")), "not a datetime"),
    (_ev(T("x" * 256, T.TEXT_TYPE, "v")), "too long"),
    (_ev(T("x", 9, "v")), "unknown trait type"),
    (_ev(message_id="m" * 51), "message_id"),
    (_ev(event_type=""), "event_type"),
    (_ev(generated="yesterday"), "generated"),
    (_ev(raw={"x": {1, 2}}), None),  # sets become strings through default=str
])
def test_prepare_refuses_what_no_database_would_take(event: models.Event,
                                                     reason: str | None) -> None:
    if reason is None:
        prepare_event(event)
        return
    with pytest.raises(BadEvent, match=reason):
        prepare_event(event)


def test_64_bit_limits_are_accepted() -> None:
    row = prepare_event(_ev(T("lo", T.INT_TYPE, -(2**63)), T("hi", T.INT_TYPE, 2**63 - 1)))
    assert row.traits[T.INT_TYPE] == {"lo": -(2**63), "hi": 2**63 - 1}


def test_sort_keys() -> None:
    sk = filters.sort_keys
    assert sk(None) == [("generated", "asc"), ("message_id", "asc")]
    assert sk([("generated", "desc")]) == [("generated", "desc"), ("message_id", "desc")]
    assert sk([("message_id", "ASC")]) == [("message_id", "asc")]
    with pytest.raises(errors.InvalidQuery):
        sk([("raw", "asc")])
    with pytest.raises(errors.InvalidQuery):
        sk([("generated", "up")])


def test_sqlite_errors_are_told_apart() -> None:
    import sqlite3

    from sqlalchemy import exc as sa_exc

    conn = Connection("sqlite://")

    def wrapped(e: sqlite3.Error, code: int) -> Exception:
        # By its code, as SQLite sets it; the words mean nothing.
        e.sqlite_errorcode = code
        return sa_exc.OperationalError("SELECT 1", {}, e)

    busy = sqlite3.OperationalError("la base est verrouillée")
    assert conn._kind(wrapped(busy, sqlite3.SQLITE_BUSY)) == "unavailable"
    schema = sqlite3.OperationalError("database is locked")
    assert conn._kind(wrapped(schema, sqlite3.SQLITE_ERROR)) == "other"
    assert conn._kind(sa_exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("x"))) == "data"
    assert conn._kind(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates")) == "data"
    assert conn._kind(RuntimeError("bug")) == "other"


@pytest.mark.parametrize(("trait", "stored"), [
    (T("t", T.TEXT_TYPE, "x" * 300), (T.TEXT_TYPE, "x" * 255)),
    (T("t", T.NONE_TYPE, 12), (T.TEXT_TYPE, "12")),
    (T("t", T.NONE_TYPE, None), (T.TEXT_TYPE, None)),
    (T("i", T.INT_TYPE, None), (T.INT_TYPE, None)),
    (T("i", T.INT_TYPE, models.INT_MAX), (T.INT_TYPE, models.INT_MAX)),
    (T("f", T.FLOAT_TYPE, 2), (T.FLOAT_TYPE, 2.0)),
    (T("d", T.DATETIME_TYPE, datetime.datetime(2024, 3, 1, 13, tzinfo=datetime.timezone(
        datetime.timedelta(hours=1)))), (T.DATETIME_TYPE, datetime.datetime(2024, 3, 1, 12))),
])
def test_trait_values_go_to_their_table_converted(trait: models.Trait,
                                                  stored: tuple[int, object]) -> None:
    result = prepare.trait_value(trait)
    assert result == stored
    assert type(result[1]) is type(stored[1])


@pytest.mark.parametrize(("trait", "reason"), [
    (T("i", T.INT_TYPE, 1.0), "not an integer"),
    (T("i", T.INT_TYPE, models.INT_MIN - 1), "64-bit"),
    (T("f", T.FLOAT_TYPE, True), "not a number"),
    (T("f", T.FLOAT_TYPE, "1.5"), "not a number"),
    (T("f", T.FLOAT_TYPE, float("nan")), "finite"),
    (T("f", T.FLOAT_TYPE, float("-inf")), "finite"),
    (T("d", T.DATETIME_TYPE, 1709294400), "not a datetime"),
    (T("x", 5, "v"), "unknown trait type"),
])
def test_trait_values_no_database_would_take_are_refused(trait: models.Trait,
                                                         reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        prepare.trait_value(trait)


def test_fix_nul() -> None:
    r = prepare.NUL_REPLACEMENT
    assert prepare.fix_nul("a\x00b\x00") == f"a{r}b{r}"
    text = "clean"
    assert prepare.fix_nul(text) is text


def test_filters_without_nul_fix_every_text_and_leave_the_rest() -> None:
    r = prepare.NUL_REPLACEMENT
    when = datetime.datetime(2024, 1, 1)
    f = storage.EventFilter(start_timestamp=when, event_type="t\x00", message_id="m\x00",
                            admin_proj="p\x00", traits_filter=[
                                {"key": "k\x00", "op": "eq", "string": "v\x00"},
                                {"key": "n", "integer": 3}])
    page = {"limit": 5, "marker": "m\x00"}
    fixed, fixed_page = filters.without_nul(f, page)
    assert (fixed.event_type, fixed.message_id, fixed.admin_proj) == (f"t{r}", f"m{r}", f"p{r}")
    assert fixed.start_timestamp == when
    assert list(fixed.traits_filter or ()) == [{"key": f"k{r}", "op": "eq", "string": f"v{r}"},
                                               {"key": "n", "integer": 3}]
    assert fixed_page == {"limit": 5, "marker": f"m{r}"}
    # Only read: the caller's filter and page are unchanged.
    assert f.event_type == "t\x00" and page["marker"] == "m\x00"


def test_trait_filters_read_the_table_of_their_value_type() -> None:
    assert set(filters.FILTER_TABLES) == {"string", "integer", "float", "datetime"}
    for name, table in (("string", "trait_text"), ("integer", "trait_int"),
                        ("float", "trait_float"), ("datetime", "trait_datetime")):
        tf: storage.TraitFilter = {"key": "k", name: 1}  # type: ignore[misc]
        got, conds = filters.trait_match(tf)
        assert got.name == table
        assert len(conds) == 2  # the key, and the value (eq by default)


@pytest.mark.parametrize("tf", [
    {"key": "k", "op": "like", "string": "v"},
    {"key": "k"},
    {"string": "v"},
    {"key": "k", "string": "v", "integer": 1},
])
def test_malformed_trait_filters_are_invalid_queries(tf: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidQuery):
        filters.trait_match(tf)  # type: ignore[arg-type]


def test_filter_conditions_one_per_given_term() -> None:
    assert filters.filter_conditions(storage.EventFilter()) == []
    when = datetime.datetime(2024, 1, 1)
    f = storage.EventFilter(start_timestamp=when, end_timestamp=when, event_type="t",
                            message_id="m", admin_proj="p")
    assert len(filters.filter_conditions(f)) == 5


def _sql(clause: object) -> str:
    from sqlalchemy.dialects import sqlite

    return str(clause.compile(dialect=sqlite.dialect(),  # type: ignore[attr-defined]
                              compile_kwargs={"literal_binds": True}))


def test_keyset_condition_follows_each_sort_direction() -> None:
    marker = {"generated": datetime.datetime(2024, 1, 1), "message_id": "m"}
    asc = _sql(filters.after(filters.sort_keys(None), marker))
    assert asc == ("event.generated > '2024-01-01 00:00:00.000000' OR "
                   "event.generated = '2024-01-01 00:00:00.000000' AND event.message_id > 'm'")
    desc = _sql(filters.after(filters.sort_keys([("message_id", "desc")]), marker))
    assert desc == "event.message_id < 'm'"
    assert [_sql(c) for c in filters.order_by([("generated", "desc"), ("message_id", "asc")])
            ] == ["event.generated DESC", "event.message_id ASC"]


def test_expiry_cutoff_is_ttl_before_the_models_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.datetime(2026, 6, 1, 12)
    monkeypatch.setattr(models, "utcnow", lambda: now)
    assert storage.expiry_cutoff(3600) == datetime.datetime(2026, 6, 1, 11)
