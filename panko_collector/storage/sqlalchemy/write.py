"""The write path: one batch of events, one transaction, idempotent on message_id.

A batch is a handful of multi-row statements, one per table, whatever its
size; each database gets the fastest form it offers (PostgreSQL: the events
as four array parameters, the traits by COPY; SQLite: INSERT ... ON CONFLICT
... RETURNING; MySQL/MariaDB: a look-up of the ids already held, then plain
multi-row INSERTs).

Failures: an event the database refuses costs only itself. The batch is
inserted under a savepoint; when it fails, it is halved and each half tried
again, down to the single event at fault, all in the same transaction. An
outage ends the call with nothing committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from oslo_log import log
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from panko_collector import errors
from panko_collector.storage import base, models
from panko_collector.storage.sqlalchemy import errors as db_errors
from panko_collector.storage.sqlalchemy.prepare import BadEvent, Row, prepare_event, replace_nul
from panko_collector.storage.sqlalchemy.tables import EVENT, EVENT_TYPE, STORED_TRAIT_TABLES

LOG = log.getLogger(__name__)

_PG_INSERT_EVENTS = (
    "INSERT INTO event (message_id, generated, event_type_id, raw) "
    "SELECT * FROM unnest(%s::varchar[], %s::timestamp[], %s::integer[], %s::text[]) "
    "ON CONFLICT (message_id) DO NOTHING RETURNING id, message_id"
)


class EventTypeIds:
    """The ids of event types, by name, remembered once looked up or created.

    An id stays valid until expiry removes its type (which then calls
    ``forget``), or another process's expiry does: ``record_events`` notices
    that by the foreign key failing, forgets, and tries again.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def forget(self) -> None:
        """Drop every remembered id: the next batch looks them up again."""
        self._ids.clear()

    def get(self, engine: Engine, names: set[str]) -> dict[str, int]:
        """Ids of the event types ``names``, created if missing (safe under races)."""
        missing = sorted(n for n in names if n not in self._ids)
        if missing:
            with engine.begin() as conn:
                dialect = conn.dialect.name
                params = [{"desc": n} for n in missing]
                stmt: Any
                if dialect == "postgresql":
                    stmt = pg_dialect.insert(EVENT_TYPE).on_conflict_do_nothing(
                        index_elements=["desc"])
                elif dialect == "sqlite":
                    stmt = sqlite_dialect.insert(EVENT_TYPE).on_conflict_do_nothing()
                else:
                    ins = mysql_dialect.insert(EVENT_TYPE)
                    stmt = ins.on_duplicate_key_update(desc=ins.inserted.desc)
                conn.execute(stmt, params)
                for id_, desc in conn.execute(
                    sa.select(EVENT_TYPE.c.id, EVENT_TYPE.c.desc).where(
                        EVENT_TYPE.c.desc.in_(missing))
                ):
                    self._ids[desc] = id_
        return {n: self._ids[n] for n in names}


def record_events(
    engine: Engine, type_ids: EventTypeIds, events: Sequence[models.Event]
) -> base.RecordResult:
    """Store ``events`` in one transaction; see ``base.RecordResult``.

    Already stored message_ids, and repeats within ``events`` (the first
    one wins), count as duplicates. Events that cannot be stored are
    reported in ``failed`` with the reason; the others are committed.
    Raises ``StorageError`` when the database refuses every event for
    another reason than its data (a missing table, a privilege); library
    errors of an outage propagate untranslated, with nothing committed.
    """
    result = base.RecordResult()
    rows: list[Row] = []
    seen: set[str] = set()
    pg = engine.dialect.name == "postgresql"
    for event in events:
        if isinstance(event.message_id, str) and event.message_id in seen:
            result.duplicates += 1
            continue
        try:
            row = prepare_event(event)
        except BadEvent as exc:
            result.failed.append(base.FailedEvent(event, str(exc)))
            continue
        if pg:
            replace_nul(row)
        seen.add(row.message_id)
        rows.append(row)
    if not rows:
        return result
    # A cached event type may have been removed by a concurrent expiry
    # (its foreign key then fails): forget the cache and try once more.
    for attempt in range(2):
        ids = type_ids.get(engine, {r.event_type for r in rows})
        try:
            with engine.begin() as conn:
                stored, dups, failed = _store_isolating(conn, rows, ids)
            break
        except _StaleTypes:
            type_ids.forget()
            if attempt:
                raise errors.StorageError("event types keep vanishing") from None
    if failed and not stored and not dups and not any(is_data for _, is_data in failed):
        # Every row refused, none for its data: the database is at fault
        # (a missing table, a privilege), not the events.
        raise errors.StorageError(f"database refused every event: {failed[0][0].reason}")
    result.stored += stored
    result.duplicates += dups
    result.failed.extend(f for f, _ in failed)
    if result.failed:
        LOG.warning("%d of %d events could not be stored; first: %s",
                    len(result.failed), len(events), result.failed[0].reason)
    return result


class _StaleTypes(Exception):
    """A cached event type id no longer exists."""


def _store_isolating(
    conn: Connection, rows: list[Row], type_ids: dict[str, int]
) -> tuple[int, int, list[tuple[base.FailedEvent, bool]]]:
    """Insert ``rows`` under a savepoint; on an error, halve and retry.

    Returns (stored, duplicates, failed), each failure with whether the
    database called it bad data. A batch of n events with k bad ones
    costs about k*log2(n) extra attempts, all inside one transaction.
    """
    try:
        with conn.begin_nested():
            stored, dups = _insert(conn, rows, type_ids)
        return stored, dups, []
    except Exception as exc:
        kind = db_errors.kind(exc, conn.dialect)
        # The driver's own errors come unwrapped from the trait COPY,
        # which runs on the driver's cursor.
        dbapi_error = conn.dialect.loaded_dbapi.Error
        if kind == "unavailable" or not isinstance(
                exc, sa_exc.SQLAlchemyError | dbapi_error | ValueError | TypeError
                | OverflowError | UnicodeError):
            raise
        if db_errors.is_foreign_key_violation(exc) and _every_type_suspect(conn, type_ids):
            raise _StaleTypes() from exc
        # Errors of another kind than bad data (a trigger, a check the
        # schema gained, a privilege) are isolated too, or one such event
        # would fail its batch at every redelivery; record_events tells a
        # refusal of every row (a problem of the database, not of the
        # events) apart afterwards.
        if len(rows) > 1:
            half = len(rows) // 2
            s1, d1, f1 = _store_isolating(conn, rows[:half], type_ids)
            s2, d2, f2 = _store_isolating(conn, rows[half:], type_ids)
            return s1 + s2, d1 + d2, f1 + f2
        (row,) = rows
        exists = conn.execute(
            sa.select(EVENT.c.id).where(EVENT.c.message_id == row.message_id)
        ).first()
        if exists is not None:  # a concurrent writer stored it meanwhile
            return 0, 1, []
        orig = getattr(exc, "orig", None) or exc
        reason = f"{type(orig).__name__}: {str(orig).strip().splitlines()[0][:300]}"
        return 0, 0, [(base.FailedEvent(row.event, reason), kind == "data")]


def _every_type_suspect(conn: Connection, type_ids: dict[str, int]) -> bool:
    """True if some cached event type id is gone from the table."""
    with conn.begin_nested():
        present = set(conn.execute(
            sa.select(EVENT_TYPE.c.id).where(EVENT_TYPE.c.id.in_(list(type_ids.values())))
        ).scalars())
    return present != set(type_ids.values())


def _insert(conn: Connection, rows: list[Row], type_ids: dict[str, int]) -> tuple[int, int]:
    """Insert events not stored yet and their traits; return (stored, duplicates)."""
    dialect = conn.dialect.name
    params = [
        {"message_id": r.message_id, "generated": r.generated,
         "event_type_id": type_ids[r.event_type], "raw": r.raw}
        for r in rows
    ]
    if dialect == "postgresql":
        # One statement with four array parameters: no per-row placeholders
        # to render and parse. ON CONFLICT skips message_ids already stored
        # (also by a concurrent writer); RETURNING gives the new ids.
        result = conn.exec_driver_sql(
            _PG_INSERT_EVENTS,
            ([p["message_id"] for p in params], [p["generated"] for p in params],
             [p["event_type_id"] for p in params], [p["raw"] for p in params]))
        ids = dict((mid, id_) for id_, mid in result)
    elif dialect == "sqlite":
        ins: Any = sqlite_dialect.insert(EVENT)
        stmt = ins.on_conflict_do_nothing(index_elements=["message_id"]).returning(
            EVENT.c.id, EVENT.c.message_id)
        ids = dict((mid, id_) for id_, mid in conn.execute(stmt, params))
    else:
        mids = [r.message_id for r in rows]
        held = set(conn.execute(
            sa.select(EVENT.c.message_id).where(EVENT.c.message_id.in_(mids))).scalars())
        new = [p for p in params if p["message_id"] not in held]
        ids = {}
        if new:
            conn.execute(EVENT.insert(), new)
            ids = dict((mid, id_) for id_, mid in conn.execute(
                sa.select(EVENT.c.id, EVENT.c.message_id).where(
                    EVENT.c.message_id.in_([p["message_id"] for p in new]))))
    # (event id, traits) of each trait table, for the events inserted now.
    per_table: dict[int, list[tuple[int, dict[str, Any]]]] = {
        code: [] for code in STORED_TRAIT_TABLES}
    for r in rows:
        event_id = ids.get(r.message_id)
        if event_id is None:
            continue
        for code, traits in r.traits.items():
            if traits:
                per_table[code].append((event_id, traits))
    for code, traits_of in per_table.items():
        if not traits_of:
            continue
        table = STORED_TRAIT_TABLES[code]
        if dialect == "postgresql":
            _copy_rows(conn, table.name, traits_of)
        else:
            conn.execute(table.insert(),
                         [{"event_id": e, "key": k, "value": v}
                          for e, traits in traits_of for k, v in traits.items()])
    return len(ids), len(rows) - len(ids)


def _copy_rows(conn: Connection, table: str,
               traits_of: list[tuple[int, dict[str, Any]]]) -> None:
    """COPY (event id, name, value) rows into a PostgreSQL trait table, on the
    transaction's own connection.

    The rows are written as they are made: no list of them is built first.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cur, cur.copy(
            f"COPY {table} (event_id, key, value) FROM STDIN") as copy:
        write = copy.write_row
        for event_id, traits in traits_of:
            for name, value in traits.items():
                write((event_id, name, value))
