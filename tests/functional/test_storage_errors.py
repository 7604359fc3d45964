"""Database errors are told apart by their codes, whatever their words say.

The servers here speak English (this PostgreSQL has no locale but C, so
``SET lc_messages`` cannot switch its language): each test replaces the
message of every real driver error with words that mean nothing, as a
server in another language would, and leaves the codes as they came.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from panko_collector import storage
from panko_collector.storage.sqlalchemy import errors as sql_errors
from tests.functional.storage_helpers import T, event, ids, open_storage

MEANINGLESS = "Fehler: etwas ist schiefgegangen"


def meaningless(error: BaseException) -> BaseException:
    """``error`` with its message replaced; codes (SQLSTATE, errno, SQLite's) kept."""
    args = error.args
    if args and type(args[0]) is int:  # PyMySQL: (errno, message)
        error.args = (args[0], MEANINGLESS)
    else:
        error.args = (MEANINGLESS,)
    return error


def speak_nonsense(conn: storage.Connection) -> None:
    """Every driver error ``conn`` meets from now on has a meaningless message."""

    @sa.event.listens_for(conn._engine, "handle_error")  # type: ignore[attr-defined]
    def _replace(context: Any) -> None:
        meaningless(context.original_exception)


@pytest.fixture
def conn(db_url: str) -> Iterator[storage.Connection]:
    yield from open_storage(db_url)


def test_an_event_type_expired_behind_the_cache_is_created_again(
        conn: storage.Connection) -> None:
    """Expiry removes an event type a writer still caches the id of: the
    writer's next events of that type are stored, not refused."""
    speak_nonsense(conn)
    assert conn.record_events([event("m1", event_type="gone.soon")]).stored == 1
    expirer = storage.get_connection(conn.url)
    assert expirer.clear_expired_data(0) == 1  # the event, then its empty type
    expirer.dispose()
    r = conn.record_events([event("m2", [T("i", T.INT_TYPE, 1)], event_type="gone.soon")])
    assert (r.stored, r.failed) == (1, [])
    assert ids(conn.get_events(storage.EventFilter(event_type="gone.soon"))) == ["m2"]


def _raised(engine: sa.Engine, *statements: str) -> BaseException:
    """The driver error the last statement raises, its message made meaningless."""
    with engine.connect() as c:
        for statement in statements[:-1]:
            c.exec_driver_sql(statement)
        with pytest.raises(sa.exc.DBAPIError) as info:
            c.exec_driver_sql(statements[-1])
        c.rollback()
    assert info.value.orig is not None
    assert str(meaningless(info.value.orig)) in (MEANINGLESS, f"({info.value.orig.args[0]}, "
                                                 f"{MEANINGLESS!r})")
    return info.value


def test_codes_of_real_errors(conn: storage.Connection) -> None:
    engine = conn._engine  # type: ignore[attr-defined]
    missing_parent = "INSERT INTO event (message_id, generated, event_type_id, raw) " \
        "VALUES ('m', '2024-01-01 00:00:00', 999999, '{}')"
    if engine.dialect.name == "mysql":
        missing_parent = missing_parent.replace("'2024-01-01 00:00:00'", "1704067200")
    fk = _raised(engine, missing_parent)
    assert sql_errors.is_foreign_key_violation(fk)
    assert conn._kind(fk) == "data"  # type: ignore[attr-defined]

    quote = "`" if engine.dialect.name == "mysql" else '"'
    new_type = f"INSERT INTO event_type ({quote}desc{quote}) VALUES ('t')"
    duplicate = _raised(engine, new_type, new_type)
    assert not sql_errors.is_foreign_key_violation(duplicate)
    assert conn._kind(duplicate) == "data"  # type: ignore[attr-defined]

    no_table = _raised(engine, "SELECT * FROM no_such_table")
    assert not sql_errors.is_foreign_key_violation(no_table)
    assert conn._kind(no_table) == "other"  # type: ignore[attr-defined]


def test_a_locked_sqlite_database_is_an_outage(tmp_path: Any) -> None:
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        waiter = sqlite3.connect(path, timeout=0)
        with pytest.raises(sqlite3.OperationalError) as info:
            waiter.execute("INSERT INTO t VALUES (1)")
        waiter.close()
    finally:
        holder.close()
    conn = storage.get_connection(f"sqlite:///{path}")
    error = sa.exc.OperationalError("INSERT", {}, meaningless(info.value))
    assert conn._kind(error) == "unavailable"  # type: ignore[attr-defined]
    with pytest.raises(sqlite3.OperationalError) as info:
        sqlite3.connect(tmp_path / "no" / "such" / "dir.sqlite")
    error = sa.exc.OperationalError("connect", {}, meaningless(info.value))
    assert conn._kind(error) == "unavailable"  # type: ignore[attr-defined]


def test_a_refused_mariadb_connection_is_an_outage() -> None:
    conn = storage.get_connection("mysql://root@127.0.0.1:1/nothing")
    with pytest.raises(sa.exc.OperationalError) as info, \
            conn._engine.connect():  # type: ignore[attr-defined]
        pass
    assert info.value.orig is not None
    meaningless(info.value.orig)
    assert sql_errors.classify(info.value.orig, "mysql") == "unavailable"
    assert conn._kind(info.value) == "unavailable"  # type: ignore[attr-defined]
