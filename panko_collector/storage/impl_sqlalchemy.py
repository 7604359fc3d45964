"""The SQLAlchemy backend: Panko's schema on SQLite, PostgreSQL and MySQL/MariaDB.

``Connection`` is the name and signature Panko's storage contract gives the
backend; it holds the engine and the event type cache, reads the
configuration once, and delegates the work to ``storage.sqlalchemy``:

- ``engine``: URL dressing, engine creation, each database's session set-up;
- ``errors``: what a database error means, and its translation into ours;
- ``schema``: creating, migrating and adopting the schema, emptying it;
- ``prepare``: checking and converting an event into rows (pure);
- ``write``: ``record_events``, its dialect branches and isolation of bad events;
- ``filters``: Panko's query terms as SQL conditions (pure);
- ``read``: ``get_events`` and the other reads, with PostgreSQL's id prefetch;
- ``expiry``: deleting expired events in chunks, then empty event types;
- ``tables``: the tables, their column types and handles on them.

Every call here turns the library's errors into ours (``errors.translated``).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from oslo_config import cfg

from panko_collector.storage import base, models
from panko_collector.storage.sqlalchemy import engine as engine_
from panko_collector.storage.sqlalchemy import errors as db_errors
from panko_collector.storage.sqlalchemy import expiry, read, schema, write
from panko_collector.storage.sqlalchemy.prepare import (
    NUL_REPLACEMENT,
    prepare_event,
    replace_nul,
)

# prepare_event, replace_nul and NUL_REPLACEMENT are also reached here, in
# Panko's backend module, by code that checks what the backend would store.
__all__ = ["DEFAULT_DELETE_BATCH_SIZE", "NUL_REPLACEMENT", "Connection", "prepare_event",
           "replace_nul"]

#: Events deleted per transaction by ``clear_expired_data`` when conf has no opinion.
DEFAULT_DELETE_BATCH_SIZE = 10000


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
        self._engine = engine_.create_engine(self.dress_url(url))
        self._type_ids = write.EventTypeIds()
        self._delete_batch_size = DEFAULT_DELETE_BATCH_SIZE
        if conf is not None:
            with contextlib.suppress(AttributeError, cfg.NoSuchOptError, cfg.NoSuchGroupError):
                self._delete_batch_size = int(conf.database.events_delete_batch_size)

    @staticmethod
    def dress_url(url: str) -> str:
        """Spell out our drivers: PyMySQL for bare mysql://, psycopg 3 for bare postgresql://."""
        return engine_.dress_url(url)

    @staticmethod
    def _alembic_config(conn: Any) -> Any:
        """An alembic configuration of our migrations that runs them on ``conn``."""
        return schema.alembic_config(conn)

    def _kind(self, exc: BaseException) -> str:
        """Classify an exception: 'unavailable', 'data' (this row's fault) or 'other'."""
        return db_errors.kind(exc, self._engine.dialect)

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        """Turn library errors into ours: outages become ``StorageUnavailable``."""
        return db_errors.translated(self._engine.dialect)

    def dispose(self) -> None:
        """Close every pooled connection (e.g. in a child process after fork)."""
        self._engine.dispose()

    def upgrade(self) -> None:
        """Create the schema, or migrate it to the newest revision.

        A database Panko created is adopted in place (``schema.upgrade``); a
        revision that is neither ours nor Panko's raises ``StorageError``.
        """
        with self._translated():
            schema.upgrade(self._engine)
        self._type_ids.forget()

    def clear(self) -> None:
        """Remove every event, trait and event type."""
        with self._translated():
            schema.clear(self._engine)
        self._type_ids.forget()

    def record_events(self, events: Sequence[models.Event]) -> base.RecordResult:
        """Store ``events`` in one transaction; see ``base.RecordResult``.

        Already stored message_ids, and repeats within ``events`` (the first
        one wins), count as duplicates. Events that cannot be stored are
        reported in ``failed`` with the reason; the others are committed.
        Raises ``StorageUnavailable`` (nothing committed) on an outage.
        """
        with self._translated():
            return write.record_events(self._engine, self._type_ids, events)

    def get_events(
        self, event_filter: base.EventFilter, pagination: base.Pagination | None = None
    ) -> Iterator[models.Event]:
        """Return the matching events in pagination order (see ``read.get_events``).

        Raises ``InvalidMarker`` if ``pagination['marker']`` names no event
        that ``event_filter`` matches, ``StorageError`` for an unknown sort
        key, direction, operator or value type.
        """
        with self._translated():
            return iter(read.get_events(self._engine, event_filter, pagination))

    def get_event_types(self) -> Iterator[str]:
        """Return every stored event type name, ascending."""
        with self._translated():
            return iter(read.get_event_types(self._engine))

    def get_trait_types(self, event_type: str) -> Iterator[dict[str, Any]]:
        """Return ``{'name', 'data_type'}`` of each distinct trait of ``event_type``."""
        with self._translated():
            return iter(read.get_trait_types(self._engine, event_type))

    def get_traits(
        self, event_type: str, trait_type: str | None = None
    ) -> Iterable[models.Trait]:
        """Return every trait of ``event_type``, or only those named ``trait_type``."""
        with self._translated():
            return iter(read.get_traits(self._engine, event_type, trait_type))

    def clear_expired_data(self, ttl: int, max_count: int | None = None, *,
                           cutoff: datetime.datetime | None = None) -> int:
        """Delete events generated strictly before ``cutoff``, oldest first.

        ``cutoff`` defaults to ``base.expiry_cutoff(ttl)``, computed once for
        the call; a caller that spreads one run over several calls (the
        expirer, chunk by chunk) passes the same cutoff to each. Works in
        chunks of ``[database] events_delete_batch_size`` events, each in its
        own short transaction, and stops after ``max_count`` events. Then
        removes event types left without events. Returns the number of
        events deleted. An outage raises ``StorageUnavailable``; chunks
        committed before it stay deleted.
        """
        if cutoff is None:
            cutoff = base.expiry_cutoff(ttl)
        with self._translated():
            deleted = expiry.clear_expired_data(
                self._engine, cutoff, self._delete_batch_size, max_count)
        if deleted:
            # Empty event types may have gone with the events.
            self._type_ids.forget()
        return deleted

    def count_expired(self, ttl: int, *, cutoff: datetime.datetime | None = None) -> int:
        """How many events ``clear_expired_data(ttl, cutoff=cutoff)`` would delete now."""
        if cutoff is None:
            cutoff = base.expiry_cutoff(ttl)
        with self._translated():
            return expiry.count_expired(self._engine, cutoff)
