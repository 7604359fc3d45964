"""The pure parts of the SQL backend: URLs, timestamp encoding, event preparation."""

from __future__ import annotations

import datetime
import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panko_collector import errors, storage
from panko_collector.storage import impl_sqlalchemy, models
from panko_collector.storage.impl_sqlalchemy import Connection
from panko_collector.storage.sqlalchemy import filters
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
