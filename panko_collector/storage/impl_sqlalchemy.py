"""The SQLAlchemy backend: Panko's schema on SQLite, PostgreSQL and MySQL/MariaDB.

Writes are batched: one call of ``record_events`` is one transaction made of
a handful of multi-row statements (on PostgreSQL the traits go in by COPY),
idempotent on ``message_id``. Reads follow Panko's semantics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.resources
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from oslo_config import cfg
from oslo_log import log
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.engine import Engine, make_url

from panko_collector import errors
from panko_collector.storage import base, models
from panko_collector.storage import sql_models as sm

LOG = log.getLogger(__name__)

#: Events deleted per transaction by ``clear_expired_data`` when conf has no opinion.
DEFAULT_DELETE_BATCH_SIZE = 10000

#: alembic revision that Panko's own (single) migration left in alembic_version.
PANKO_ALEMBIC_REVISION = "c3955547bff2"
#: Our revision that describes Panko's schema; adopted databases are stamped with it.
BASELINE_REVISION = "pc0001_panko_schema"

_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1
_TEXT_MAX = 255
_MESSAGE_ID_MAX = 50
#: PostgreSQL reads: a trait filter that matches at most this many events is
#: turned into the list of their ids first (see ``_prefetch_ids``).
_PREFETCH_MAX = 20000
_DEFAULT_SORT: list[tuple[str, str]] = [("generated", "asc"), ("message_id", "asc")]

_tables = sm.Base.metadata.tables
_event = _tables["event"]
_event_type = _tables["event_type"]
_text = _tables["trait_text"]
_int = _tables["trait_int"]
_float = _tables["trait_float"]
_datetime = _tables["trait_datetime"]

#: Trait tables with the type each one reports (NONE-typed traits live in trait_text).
_TRAIT_TABLES: list[tuple[sa.Table, int]] = [
    (_text, models.Trait.TEXT_TYPE),
    (_int, models.Trait.INT_TYPE),
    (_float, models.Trait.FLOAT_TYPE),
    (_datetime, models.Trait.DATETIME_TYPE),
]
#: Trait filter value keys (Panko's) and the table each one compares against.
_FILTER_TABLES = {"string": _text, "integer": _int, "float": _float, "datetime": _datetime}
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: c != v,
    "ge": lambda c, v: c >= v,
    "gt": lambda c, v: c > v,
}
# SQLite reports both outages and schema problems as OperationalError; only
# these messages mean "try again later".
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o")
_PG_INSERT_EVENTS = (
    "INSERT INTO event (message_id, generated, event_type_id, raw) "
    "SELECT * FROM unnest(%s::varchar[], %s::timestamp[], %s::integer[], %s::text[]) "
    "ON CONFLICT (message_id) DO NOTHING RETURNING id, message_id"
)


@dataclass(slots=True)
class _Row:
    """An event checked and converted for insertion; ``traits`` per table."""

    event: models.Event
    message_id: str
    event_type: str
    generated: datetime.datetime
    raw: str
    traits: dict[int, dict[str, Any]] = field(default_factory=dict)


class _BadEvent(Exception):
    """Raised while preparing an event that no database would accept."""


def _trait_value(trait: models.Trait) -> tuple[int, Any]:
    """Return (table code, value to store) for one trait; raise _BadEvent if impossible."""
    dtype, value = trait.dtype, trait.value
    if dtype in (models.Trait.NONE_TYPE, models.Trait.TEXT_TYPE):
        if value is not None:
            value = (value if isinstance(value, str) else str(value))[:_TEXT_MAX]
        return models.Trait.TEXT_TYPE, value
    if value is None:
        return dtype, None
    if dtype == models.Trait.INT_TYPE:
        if isinstance(value, float) or not isinstance(value, int):
            raise _BadEvent(f"trait {trait.name!r}: {value!r} is not an integer")
        if not _BIGINT_MIN <= value <= _BIGINT_MAX:
            raise _BadEvent(f"trait {trait.name!r}: {value} does not fit in a 64-bit integer")
        return dtype, int(value)
    if dtype == models.Trait.FLOAT_TYPE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _BadEvent(f"trait {trait.name!r}: {value!r} is not a number")
        if not math.isfinite(value):
            # PostgreSQL would keep it, MySQL cannot even parse it, SQLite makes
            # NaN a NULL: refuse it alike everywhere.
            raise _BadEvent(f"trait {trait.name!r}: {value!r} is not a finite number")
        return dtype, float(value)
    if dtype == models.Trait.DATETIME_TYPE:
        if not isinstance(value, datetime.datetime):
            raise _BadEvent(f"trait {trait.name!r}: {value!r} is not a datetime")
        return dtype, sm.to_naive_utc(value)
    raise _BadEvent(f"trait {trait.name!r}: unknown trait type {dtype!r}")


#: What PostgreSQL stores instead of NUL (U+0000), which its text type cannot hold.
NUL_REPLACEMENT = "\ufffd"


def _fix_nul(text: str) -> str:
    return text.replace("\x00", NUL_REPLACEMENT) if "\x00" in text else text


def replace_nul(row: _Row) -> None:
    """Replace every NUL by U+FFFD in the row's message id, event type, trait
    names and text values (for PostgreSQL; other databases keep NUL as sent).

    ``raw`` needs nothing: it is JSON text, where NUL is the escape ``\\u0000``.
    """
    fix = _fix_nul

    row.message_id, row.event_type = fix(row.message_id), fix(row.event_type)
    for table, traits in row.traits.items():
        # Joined, the names (and text values) are searched at C speed: this
        # runs on every event of a batch and finds nothing nearly always.
        if "\x00" in "".join(traits) or (table == models.Trait.TEXT_TYPE and "\x00" in "".join(
                filter(None, traits.values()))):
            fixed = {fix(name): (fix(value) if table == models.Trait.TEXT_TYPE
                                 and value is not None else value)
                     for name, value in traits.items()}
            traits.clear()
            traits.update(fixed)


def prepare_event(event: models.Event) -> _Row:
    """Check and convert one event for storage (pure; raises _BadEvent).

    Text is cut to 255 characters, NONE-typed traits become text, and of two
    traits with the same name and table the last one wins.
    """
    if not isinstance(event.message_id, str) or not event.message_id:
        raise _BadEvent(f"message_id {event.message_id!r} is not a non-empty string")
    if len(event.message_id) > _MESSAGE_ID_MAX:
        raise _BadEvent(f"message_id longer than {_MESSAGE_ID_MAX} characters")
    if not isinstance(event.event_type, str) or not event.event_type:
        raise _BadEvent(f"event_type {event.event_type!r} is not a non-empty string")
    if len(event.event_type) > _TEXT_MAX:
        raise _BadEvent(f"event_type longer than {_TEXT_MAX} characters")
    if not isinstance(event.generated, datetime.datetime):
        raise _BadEvent(f"generated {event.generated!r} is not a datetime")
    try:
        # Most events keep no raw notification ({} unless [event] store_raw).
        raw = "{}" if event.raw is None or (event.raw.__class__ is dict and not event.raw) \
            else json.dumps(event.raw, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _BadEvent(f"raw cannot be encoded as JSON: {exc!r}"[:500]) from None
    row = _Row(event, event.message_id, event.event_type, sm.to_naive_utc(event.generated), raw)
    text: dict[str, Any] = {}
    row.traits[models.Trait.TEXT_TYPE] = text
    for trait in event.traits:
        name, value = trait.name, trait.value
        if name.__class__ is not str or not 0 < len(name) <= _TEXT_MAX:
            raise _BadEvent(f"trait name {name!r} is empty, not text or too long")
        # Text is most traits: handled inline, the batch path is hot.
        if trait.dtype == models.Trait.TEXT_TYPE and value.__class__ is str:
            text[name] = value[:_TEXT_MAX]
            continue
        table, value = _trait_value(trait)
        row.traits.setdefault(table, {})[name] = value
    return row


class Connection(base.Connection):
    """Panko's event store in a SQL database reached through SQLAlchemy.

    Failures: an outage (connection refused, lost, timed out; SQLite busy)
    raises ``errors.StorageUnavailable`` with nothing committed, so the same
    call can be repeated later. An event the database refuses is reported in
    ``RecordResult.failed`` and the rest of its batch is stored. Anything
    else (a missing table, a programming error) raises ``errors.StorageError``.
    """

    def __init__(self, url: str, conf: Any = None) -> None:
        super().__init__(url, conf)
        self._engine = self._create_engine(self.dress_url(url))
        self._type_ids: dict[str, int] = {}
        self._delete_batch_size = DEFAULT_DELETE_BATCH_SIZE
        if conf is not None:
            with contextlib.suppress(AttributeError, cfg.NoSuchOptError, cfg.NoSuchGroupError):
                self._delete_batch_size = int(conf.database.events_delete_batch_size)

    # ----------------------------------------------------------------- engine

    @staticmethod
    def dress_url(url: str) -> str:
        """Spell out our drivers: PyMySQL for bare mysql://, psycopg 3 for bare postgresql://."""
        drivers = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql",
                   "postgresql": "postgresql+psycopg"}
        u = make_url(url)
        if u.drivername in drivers:
            return u.set(drivername=drivers[u.drivername]).render_as_string(hide_password=False)
        return url

    @staticmethod
    def _create_engine(url: str) -> Engine:
        u = make_url(url)
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if u.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
        engine = sa.create_engine(u, **kwargs)
        if engine.dialect.name == "sqlite":

            @sa.event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
                # pysqlite's own transaction handling breaks SAVEPOINT; take it over.
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @sa.event.listens_for(engine, "begin")
            def _sqlite_begin(conn: SAConnection) -> None:
                conn.exec_driver_sql("BEGIN")

        elif engine.dialect.name in sm.MYSQL_DIALECTS:

            @sa.event.listens_for(engine, "connect")
            def _mysql_connect(dbapi_conn: Any, _record: Any) -> None:
                # Strict mode: refuse out-of-range or over-long values instead of
                # silently clipping them, whatever the server's default.
                cur = dbapi_conn.cursor()
                cur.execute("SET SESSION sql_mode = 'TRADITIONAL'")
                cur.close()

        return engine

    def dispose(self) -> None:
        """Close every pooled connection (e.g. in a child process after fork)."""
        self._engine.dispose()

    # ----------------------------------------------------------------- errors

    def _kind(self, exc: BaseException) -> str:
        """Classify an exception: 'unavailable', 'data' (this row's fault) or 'other'."""
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return "unavailable"
        if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
            return "unavailable"
        orig: BaseException = exc
        if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
            orig = exc.orig
        dbapi = self._engine.dialect.loaded_dbapi
        if isinstance(orig, dbapi.OperationalError | dbapi.InterfaceError):
            if isinstance(orig, sqlite3.Error):
                return "unavailable" if any(
                    s in str(orig).lower() for s in _SQLITE_TRANSIENT) else "other"
            return "unavailable"
        if isinstance(orig, dbapi.DataError | dbapi.IntegrityError):
            return "data"
        if isinstance(orig, ValueError | TypeError | OverflowError | UnicodeError):
            return "data"  # refused by the driver while binding this row's values
        if isinstance(orig, ConnectionError | TimeoutError):
            return "unavailable"
        return "other"

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn library errors into ours: outages become ``StorageUnavailable``."""
        try:
            yield
        except errors.PankoCollectorError:
            raise
        except Exception as exc:
            if not isinstance(exc, sa_exc.SQLAlchemyError | self._engine.dialect.loaded_dbapi.Error
                              | ConnectionError | TimeoutError | ValueError):
                raise
            kind = self._kind(exc)
            if kind == "unavailable":
                raise errors.StorageUnavailable(f"database unavailable: {exc}") from exc
            raise errors.StorageError(f"database error: {exc}") from exc

    # ----------------------------------------------------------------- schema

    @staticmethod
    def _alembic_config(conn: SAConnection) -> AlembicConfig:
        config = AlembicConfig()
        location = importlib.resources.files("panko_collector.migrations")
        config.set_main_option("script_location", str(location))
        config.attributes["connection"] = conn
        return config

    def upgrade(self) -> None:
        """Create the schema, or migrate it to the newest revision.

        A database Panko created (its tables without our alembic revision,
        or Panko's own revision) is stamped with the baseline revision and
        then upgraded, without its rows being touched. A revision that is
        neither ours nor Panko's raises ``StorageError``.
        """
        with self._translated(), self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two dbsync at once would race to create the same tables.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7318120101)"))
            config = self._alembic_config(conn)
            ours = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
            current = set(MigrationContext.configure(conn).get_current_heads())
            tables = set(sa.inspect(conn).get_table_names())
            if not current and "event" in tables:
                LOG.info("Adopting the Panko database found at %s", self._engine.url)
                command.stamp(config, BASELINE_REVISION)
            elif current and not current <= ours:
                if current != {PANKO_ALEMBIC_REVISION}:
                    raise errors.StorageError(
                        f"the database is at alembic revision(s) {sorted(current)}, "
                        "which this panko-collector does not know; is it newer?")
                LOG.info("Adopting the Panko database (revision %s) found at %s",
                         PANKO_ALEMBIC_REVISION, self._engine.url)
                command.stamp(config, BASELINE_REVISION, purge=True)
            command.upgrade(config, "head")
        self._type_ids.clear()

    def clear(self) -> None:
        with self._translated(), self._engine.begin() as conn:
            for table in reversed(sm.Base.metadata.sorted_tables):
                conn.execute(table.delete())
        self._type_ids.clear()

    # ------------------------------------------------------------------ write

    def record_events(self, events: Sequence[models.Event]) -> base.RecordResult:
        """Store ``events`` in one transaction; see ``base.RecordResult``.

        Already stored message_ids, and repeats within ``events`` (the first
        one wins), count as duplicates. Events that cannot be stored are
        reported in ``failed`` with the reason; the others are committed.
        Raises ``StorageUnavailable`` (nothing committed) on an outage.
        """
        result = base.RecordResult()
        rows: list[_Row] = []
        seen: set[str] = set()
        for event in events:
            if isinstance(event.message_id, str) and event.message_id in seen:
                result.duplicates += 1
                continue
            try:
                row = prepare_event(event)
            except _BadEvent as exc:
                result.failed.append(base.FailedEvent(event, str(exc)))
                continue
            if self._engine.dialect.name == "postgresql":
                replace_nul(row)
            seen.add(row.message_id)
            rows.append(row)
        if not rows:
            return result
        with self._translated():
            # A cached event type may have been removed by a concurrent expiry
            # (its foreign key then fails): forget the cache and try once more.
            for attempt in range(2):
                type_ids = self._get_event_type_ids({r.event_type for r in rows})
                try:
                    with self._engine.begin() as conn:
                        stored, dups, failed = self._store_isolating(conn, rows, type_ids)
                    break
                except _StaleTypes:
                    self._type_ids.clear()
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

    def _get_event_type_ids(self, names: set[str]) -> dict[str, int]:
        """Ids of the event types ``names``, created if missing (safe under races)."""
        missing = sorted(n for n in names if n not in self._type_ids)
        if missing:
            with self._engine.begin() as conn:
                dialect = conn.dialect.name
                params = [{"desc": n} for n in missing]
                stmt: Any
                if dialect == "postgresql":
                    stmt = pg_dialect.insert(_event_type).on_conflict_do_nothing(
                        index_elements=["desc"])
                elif dialect == "sqlite":
                    stmt = sqlite_dialect.insert(_event_type).on_conflict_do_nothing()
                else:
                    ins = mysql_dialect.insert(_event_type)
                    stmt = ins.on_duplicate_key_update(desc=ins.inserted.desc)
                conn.execute(stmt, params)
                for id_, desc in conn.execute(
                    sa.select(_event_type.c.id, _event_type.c.desc).where(
                        _event_type.c.desc.in_(missing))
                ):
                    self._type_ids[desc] = id_
        return {n: self._type_ids[n] for n in names}

    def _store_isolating(
        self, conn: SAConnection, rows: list[_Row], type_ids: dict[str, int]
    ) -> tuple[int, int, list[tuple[base.FailedEvent, bool]]]:
        """Insert ``rows`` under a savepoint; on an error, halve and retry.

        Returns (stored, duplicates, failed), each failure with whether the
        database called it bad data. A batch of n events with k bad ones
        costs about k*log2(n) extra attempts, all inside one transaction.
        """
        try:
            with conn.begin_nested():
                stored, dups = self._insert(conn, rows, type_ids)
            return stored, dups, []
        except Exception as exc:
            kind = self._kind(exc)
            # The driver's own errors come unwrapped from the trait COPY,
            # which runs on the driver's cursor.
            dbapi_error = self._engine.dialect.loaded_dbapi.Error
            if kind == "unavailable" or not isinstance(
                    exc, sa_exc.SQLAlchemyError | dbapi_error | ValueError | TypeError
                    | OverflowError | UnicodeError):
                raise
            if _is_fk_violation(exc) and _every_type_suspect(conn, type_ids):
                raise _StaleTypes() from exc
            # Errors of another kind than bad data (a trigger, a check the
            # schema gained, a privilege) are isolated too, or one such event
            # would fail its batch at every redelivery; record_events tells a
            # refusal of every row (a problem of the database, not of the
            # events) apart afterwards.
            if len(rows) > 1:
                half = len(rows) // 2
                s1, d1, f1 = self._store_isolating(conn, rows[:half], type_ids)
                s2, d2, f2 = self._store_isolating(conn, rows[half:], type_ids)
                return s1 + s2, d1 + d2, f1 + f2
            (row,) = rows
            exists = conn.execute(
                sa.select(_event.c.id).where(_event.c.message_id == row.message_id)
            ).first()
            if exists is not None:  # a concurrent writer stored it meanwhile
                return 0, 1, []
            orig = getattr(exc, "orig", None) or exc
            reason = f"{type(orig).__name__}: {str(orig).strip().splitlines()[0][:300]}"
            return 0, 0, [(base.FailedEvent(row.event, reason), kind == "data")]

    def _insert(
        self, conn: SAConnection, rows: list[_Row], type_ids: dict[str, int]
    ) -> tuple[int, int]:
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
            ins: Any = sqlite_dialect.insert(_event)
            stmt = ins.on_conflict_do_nothing(index_elements=["message_id"]).returning(
                _event.c.id, _event.c.message_id)
            ids = dict((mid, id_) for id_, mid in conn.execute(stmt, params))
        else:
            mids = [r.message_id for r in rows]
            held = set(conn.execute(
                sa.select(_event.c.message_id).where(_event.c.message_id.in_(mids))).scalars())
            new = [p for p in params if p["message_id"] not in held]
            ids = {}
            if new:
                conn.execute(_event.insert(), new)
                ids = dict((mid, id_) for id_, mid in conn.execute(
                    sa.select(_event.c.id, _event.c.message_id).where(
                        _event.c.message_id.in_([p["message_id"] for p in new]))))
        # (event id, traits) of each trait table, for the events inserted now.
        per_table: dict[int, list[tuple[int, dict[str, Any]]]] = {1: [], 2: [], 3: [], 4: []}
        for r in rows:
            event_id = ids.get(r.message_id)
            if event_id is None:
                continue
            for code, traits in r.traits.items():
                if traits:
                    per_table[code].append((event_id, traits))
        tables = {1: _text, 2: _int, 3: _float, 4: _datetime}
        for code, traits_of in per_table.items():
            if not traits_of:
                continue
            if dialect == "postgresql":
                _copy_rows(conn, tables[code].name, traits_of)
            else:
                conn.execute(tables[code].insert(),
                             [{"event_id": e, "key": k, "value": v}
                              for e, traits in traits_of for k, v in traits.items()])
        return len(ids), len(rows) - len(ids)

    # ------------------------------------------------------------------- read

    def get_events(
        self, event_filter: base.EventFilter, pagination: base.Pagination | None = None
    ) -> Iterator[models.Event]:
        """Return the matching events in pagination order (see the module and issue 2).

        Raises ``InvalidMarker`` if ``pagination['marker']`` names no event
        that ``event_filter`` matches (a missing one, or one outside the filter
        or the caller's scope: the marker is looked up with the same filter),
        ``StorageError`` for an unknown sort key, direction, operator or value type.
        ``event_filter`` and ``pagination`` are only read.
        """
        page: dict[str, Any] = dict(pagination or {})
        if self._engine.dialect.name == "postgresql":
            event_filter, page = _filter_without_nul(event_filter, page)
        sort = _sort_keys(page.get("sort"))
        traits = [_trait_match(tf) for tf in event_filter.traits_filter or ()]
        with self._translated(), self._engine.connect() as conn:
            pg = conn.dialect.name == "postgresql"
            conds = _filter_conditions(event_filter)
            if pg and traits:
                # One snapshot for the id lookup and the events.
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                # psycopg prepares the statements run often; a generic plan
                # would not see the ids below, and parse them again per row.
                conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
                ids, traits = _prefetch_ids(conn, traits)
                if ids is not None:
                    # Untyped text, so that PostgreSQL reads it as an int[]
                    # constant at planning (typed as text, the cast would run
                    # per row, and the plan not see how many ids there are).
                    conds.append(_event.c.id == sa.any_(sa.cast(
                        sa.bindparam("prefetched_ids", ids, type_=sa.types.NullType()),
                        pg_dialect.ARRAY(sa.Integer))))
            conds += [sa.exists().where(table.c.event_id == _event.c.id, *match)
                      for table, match in traits]
            query = (
                sa.select(_event.c.id, _event.c.message_id, _event.c.generated,
                          _event_type.c.desc, _event.c.raw)
                .join(_event_type, _event_type.c.id == _event.c.event_type_id)
                .where(*conds)
            )
            marker = page.get("marker")
            if marker:
                # The marker must be one of the events this query returns: a
                # caller cannot probe, or page from, an event outside its scope.
                found = conn.execute(
                    sa.select(_event.c.generated, _event.c.message_id)
                    .join(_event_type, _event_type.c.id == _event.c.event_type_id)
                    .where(*conds, _event.c.message_id == marker)).first()
                if found is None:
                    raise errors.InvalidMarker(
                        f"marker {marker!r} names no event that matches the query")
                query = query.where(_after(sort, {"generated": found[0], "message_id": found[1]}))
            columns = {"generated": _event.c.generated, "message_id": _event.c.message_id}
            query = query.order_by(*(
                columns[k].asc() if d == "asc" else columns[k].desc() for k, d in sort))
            limit = page.get("limit")
            if limit:
                query = query.limit(int(limit))
            found_events: dict[int, models.Event] = {}
            for id_, mid, generated, desc, raw in conn.execute(query):
                found_events[id_] = models.Event(mid, desc, generated, [],
                                                 json.loads(raw) if raw else {})
            event_ids = list(found_events)
            for table, dtype in _TRAIT_TABLES:
                for chunk in _chunks(event_ids, 500):
                    # On PostgreSQL one array parameter: the same statement
                    # text whatever the number of ids, parsed once.
                    in_chunk = (table.c.event_id == sa.any_(sa.bindparam(
                        "event_ids", chunk, type_=pg_dialect.ARRAY(sa.Integer)))) if pg \
                        else table.c.event_id.in_(chunk)
                    for event_id, key, value in conn.execute(
                        sa.select(table.c.event_id, table.c.key, table.c.value).where(in_chunk)
                    ).all():
                        found_events[event_id].traits.append(models.Trait(key, dtype, value))
            for ev in found_events.values():
                ev.traits.sort(key=lambda t: (t.name, t.dtype))
            conn.rollback()
        return iter(list(found_events.values()))

    def get_event_types(self) -> Iterator[str]:
        with self._translated(), self._engine.connect() as conn:
            names = list(conn.execute(
                sa.select(_event_type.c.desc).order_by(_event_type.c.desc)).scalars())
            conn.rollback()
        return iter([n for n in names if n is not None])

    def get_trait_types(self, event_type: str) -> Iterator[dict[str, Any]]:
        if self._engine.dialect.name == "postgresql":
            event_type = _fix_nul(event_type)
        out: list[dict[str, Any]] = []
        with self._translated(), self._engine.connect() as conn:
            for table, dtype in _TRAIT_TABLES:
                query = (
                    sa.select(table.c.key).distinct()
                    .join(_event, _event.c.id == table.c.event_id)
                    .join(_event_type, _event_type.c.id == _event.c.event_type_id)
                    .where(_event_type.c.desc == event_type)
                    .order_by(table.c.key)
                )
                out.extend({"name": k, "data_type": dtype} for k in conn.execute(query).scalars())
            conn.rollback()
        return iter(out)

    def get_traits(
        self, event_type: str, trait_type: str | None = None
    ) -> Iterable[models.Trait]:
        if self._engine.dialect.name == "postgresql":
            event_type = _fix_nul(event_type)
            trait_type = _fix_nul(trait_type) if trait_type else trait_type
        out: list[models.Trait] = []
        with self._translated(), self._engine.connect() as conn:
            for table, dtype in _TRAIT_TABLES:
                query = (
                    sa.select(table.c.key, table.c.value)
                    .join(_event, _event.c.id == table.c.event_id)
                    .join(_event_type, _event_type.c.id == _event.c.event_type_id)
                    .where(_event_type.c.desc == event_type)
                    .order_by(table.c.key, table.c.event_id)
                )
                if trait_type:
                    query = query.where(table.c.key == trait_type)
                out.extend(models.Trait(k, dtype, v) for k, v in conn.execute(query))
            conn.rollback()
        return iter(out)

    # ----------------------------------------------------------------- expiry

    def clear_expired_data(self, ttl: int, max_count: int | None = None) -> int:
        """Delete events generated strictly before now - ``ttl`` seconds, oldest first.

        Works in chunks of ``[database] events_delete_batch_size`` events,
        each chunk (events with their traits) in its own short transaction,
        so concurrent inserts are never blocked for long; stops after
        ``max_count`` events. Then removes event types left without events.
        Returns the number of events deleted. An outage raises
        ``StorageUnavailable``; chunks committed before it stay deleted.
        """
        end = _cutoff(ttl)
        total = 0
        with self._translated():
            while max_count is None or total < max_count:
                size = self._delete_batch_size
                if max_count is not None:
                    size = min(size, max_count - total)
                with self._engine.begin() as conn:
                    ids = list(conn.execute(
                        sa.select(_event.c.id).where(_event.c.generated < end)
                        .order_by(_event.c.generated).limit(size)).scalars())
                    for chunk in _chunks(ids, 5000):
                        for table, _dtype in _TRAIT_TABLES:
                            conn.execute(table.delete().where(table.c.event_id.in_(chunk)))
                        conn.execute(_event.delete().where(_event.c.id.in_(chunk)))
                total += len(ids)
                if len(ids) < size:
                    break
            if total:
                self._delete_empty_event_types()
        # The caller (the expirer) logs one line per run, not per chunk.
        LOG.debug("%d expired events removed", total)
        return total

    def count_expired(self, ttl: int) -> int:
        """How many events ``clear_expired_data(ttl)`` would delete now."""
        with self._translated(), self._engine.connect() as conn:
            count: int = conn.execute(
                sa.select(sa.func.count()).select_from(_event)
                .where(_event.c.generated < _cutoff(ttl))).scalar_one()
            conn.rollback()
        return count

    def _delete_empty_event_types(self) -> None:
        """Remove the event types left without events, each on its own.

        A batch being written may have just started using one of them; its
        commit then makes the DELETE of that type fail. One statement for
        all of them would fail with it and keep every empty type, for good
        if no event expires after; one type at a time, only that one stays
        (the next run that deletes events removes it).
        """
        unused = ~sa.exists().where(_event.c.event_type_id == _event_type.c.id)
        with self._engine.connect() as conn:
            empty = list(conn.execute(sa.select(_event_type.c.id).where(unused)).scalars())
            conn.rollback()
        for type_id in empty:
            try:
                with self._engine.begin() as conn:
                    conn.execute(_event_type.delete().where(_event_type.c.id == type_id, unused))
            except sa_exc.IntegrityError:
                LOG.debug("event type %d is in use again; not removed", type_id)
        self._type_ids.clear()


class _StaleTypes(Exception):
    """A cached event type id no longer exists."""


def _is_fk_violation(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "foreign key" in text


def _every_type_suspect(conn: SAConnection, type_ids: dict[str, int]) -> bool:
    """True if some cached event type id is gone from the table."""
    with conn.begin_nested():
        present = set(conn.execute(
            sa.select(_event_type.c.id).where(_event_type.c.id.in_(list(type_ids.values())))
        ).scalars())
    return present != set(type_ids.values())


def _copy_rows(conn: SAConnection, table: str,
               traits_of: list[tuple[int, dict[str, Any]]]) -> None:
    """COPY (event id, name, value) rows into a PostgreSQL trait table, on the
    transaction's own connection.

    The rows are written as they are made, some 20 per event: no list of
    them is built first.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cur, cur.copy(
        f"COPY {table} (event_id, key, value) FROM STDIN") as copy:
        write = copy.write_row
        for event_id, traits in traits_of:
            for name, value in traits.items():
                write((event_id, name, value))


def _cutoff(ttl: int) -> datetime.datetime:
    """Events generated strictly before this naive UTC time are expired."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
        seconds=ttl)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _sort_keys(sort: Any) -> list[tuple[str, str]]:
    """Validated sort keys, with message_id appended so the order is total."""
    keys = [(str(k), str(d).lower()) for k, d in (sort or _DEFAULT_SORT)]
    for k, d in keys:
        if k not in ("generated", "message_id") or d not in ("asc", "desc"):
            raise errors.InvalidQuery(f"cannot sort by {k!r} {d!r}: use generated or "
                                      "message_id, asc or desc")
    if "message_id" not in (k for k, _ in keys):
        keys.append(("message_id", keys[-1][1] if keys else "asc"))
    return keys


def _filter_without_nul(
    f: base.EventFilter, page: dict[str, Any]
) -> tuple[base.EventFilter, dict[str, Any]]:
    """The filter and page with NUL replaced in their text, as PostgreSQL
    stores it (``replace_nul``): a filter finds what was stored from the same
    text, and PostgreSQL is never sent a NUL, which it refuses."""
    def fix(value: Any) -> Any:
        return _fix_nul(value) if isinstance(value, str) else value

    traits = [{k: fix(v) for k, v in tf.items()} for tf in f.traits_filter or ()]
    fixed = dataclasses.replace(
        f, event_type=fix(f.event_type), message_id=fix(f.message_id),
        admin_proj=fix(f.admin_proj), traits_filter=traits)  # type: ignore[arg-type]
    return fixed, {**page, "marker": fix(page.get("marker"))}


def _after(sort: list[tuple[str, str]], marker: dict[str, Any]) -> Any:
    """Keyset condition: rows strictly after ``marker`` in ``sort`` order."""
    columns = {"generated": _event.c.generated, "message_id": _event.c.message_id}
    clauses = []
    for i, (key, direction) in enumerate(sort):
        equal = [columns[k] == marker[k] for k, _ in sort[:i]]
        col, value = columns[key], marker[key]
        beyond = col > value if direction == "asc" else col < value
        clauses.append(sa.and_(*equal, beyond))
    return sa.or_(*clauses)


def _trait_match(tf: base.TraitFilter) -> tuple[sa.Table, list[Any]]:
    """The trait table one trait filter reads, and the conditions on its rows."""
    op = tf.get("op") or "eq"
    if op not in _OPS:
        raise errors.InvalidQuery(f"unknown trait filter operator {op!r}")
    typed = [k for k in _FILTER_TABLES if k in tf]
    if len(typed) != 1 or "key" not in tf:
        raise errors.InvalidQuery(
            f"a trait filter needs 'key' and one of {sorted(_FILTER_TABLES)}: {dict(tf)!r}")
    table = _FILTER_TABLES[typed[0]]
    value = tf[typed[0]]  # type: ignore[literal-required]
    # 'ne' only matches events that have the key, as in Panko: the key is
    # required of the same row.
    return table, [table.c.key == tf["key"], _OPS[op](table.c.value, value)]


def _prefetch_ids(
    conn: SAConnection, traits: list[tuple[sa.Table, list[Any]]]
) -> tuple[str | None, list[tuple[sa.Table, list[Any]]]]:
    """Resolve the trait filters that match few events to the ids of those events.

    Returns the ids matching every such filter, as a PostgreSQL array
    literal (None if no filter is selective enough), and the filters left
    to test row by row.

    Why: to return the first ``limit`` events in ``generated`` order,
    PostgreSQL either looks up every event a trait filter matches and sorts
    them, or walks the events in order and probes the trait index for each:
    both cost a random index descent per row, tens of milliseconds for a
    filter matching 1% of a million events. Given the matching ids as a
    constant, it can walk the ``generated`` index and keep the rows whose
    id is in a hash of them (or look the ids up, when they are few):
    it knows how many there are, and sequential reads are cheap.
    """
    found: list[tuple[str, int]] = []
    rest = []
    for table, match in traits:
        ids = conn.execute(sa.select(sa.cast(sa.func.array(
            sa.select(table.c.event_id).where(*match).limit(_PREFETCH_MAX + 1)
            .scalar_subquery()), sa.Text))).scalar_one()
        count = 0 if ids == "{}" else ids.count(",") + 1
        if count > _PREFETCH_MAX:
            rest.append((table, match))
        else:
            found.append((ids, count))
    if len(found) <= 1:
        return (found[0][0] if found else None), rest
    # Kept as the text PostgreSQL sent: they go back as they came.
    common = set(min(found, key=lambda f: f[1])[0][1:-1].split(","))
    for ids, _count in found:
        common.intersection_update(ids[1:-1].split(","))
    return "{" + ",".join(common) + "}", rest


def _filter_conditions(f: base.EventFilter) -> list[Any]:
    """WHERE clauses of an EventFilter, as Panko defined them, but its trait filters."""
    conds: list[Any] = []
    if f.start_timestamp is not None:
        conds.append(_event.c.generated >= f.start_timestamp)
    if f.end_timestamp is not None:
        conds.append(_event.c.generated <= f.end_timestamp)
    if f.event_type:
        conds.append(_event_type.c.desc == f.event_type)
    if f.message_id:
        conds.append(_event.c.message_id == f.message_id)
    if f.admin_proj:
        has_project = sa.exists().where(_text.c.event_id == _event.c.id,
                                        _text.c.key == "project_id")
        conds.append(sa.or_(
            sa.exists().where(_text.c.event_id == _event.c.id, _text.c.key == "project_id",
                              _text.c.value == f.admin_proj),
            sa.and_(sa.exists().where(_text.c.event_id == _event.c.id), ~has_project),
        ))
    return conds
