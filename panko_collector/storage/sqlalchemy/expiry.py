"""Deleting expired events, in chunks that never block writers for long.

Every function takes the cutoff itself, a naive UTC datetime: events
generated strictly before it are expired. The caller computes it once per
run, so that every chunk of a run deletes up to the same time.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from oslo_log import log
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from panko_collector.storage.sqlalchemy.tables import EVENT, EVENT_TYPE, STORED_TRAIT_TABLES

LOG = log.getLogger(__name__)

#: Event ids per DELETE statement: keeps the statements under every
#: database's limit of parameters.
_IDS_PER_DELETE = 5000


def clear_expired_data(engine: Engine, cutoff: datetime.datetime, batch_size: int,
                       max_count: int | None = None) -> int:
    """Delete events generated strictly before ``cutoff``, oldest first; return how many.

    Works in chunks of ``batch_size`` events, each chunk (events with their
    traits) in its own short transaction, so concurrent inserts are never
    blocked for long; stops after ``max_count`` events. Then removes event
    types left without events (``delete_empty_event_types``) if any event
    went. An error propagates untranslated; chunks committed before it stay
    deleted.
    """
    total = 0
    while max_count is None or total < max_count:
        size = batch_size if max_count is None else min(batch_size, max_count - total)
        with engine.begin() as conn:
            ids = list(conn.execute(
                sa.select(EVENT.c.id).where(EVENT.c.generated < cutoff)
                .order_by(EVENT.c.generated).limit(size)).scalars())
            for i in range(0, len(ids), _IDS_PER_DELETE):
                chunk = ids[i:i + _IDS_PER_DELETE]
                for table in STORED_TRAIT_TABLES.values():
                    conn.execute(table.delete().where(table.c.event_id.in_(chunk)))
                conn.execute(EVENT.delete().where(EVENT.c.id.in_(chunk)))
        total += len(ids)
        if len(ids) < size:
            break
    if total:
        delete_empty_event_types(engine)
    # The caller (the expirer) logs one line per run, not per chunk.
    LOG.debug("%d expired events removed", total)
    return total


def count_expired(engine: Engine, cutoff: datetime.datetime) -> int:
    """How many events ``clear_expired_data`` with this ``cutoff`` would delete now."""
    with engine.connect() as conn:
        count: int = conn.execute(
            sa.select(sa.func.count()).select_from(EVENT)
            .where(EVENT.c.generated < cutoff)).scalar_one()
        conn.rollback()
    return count


def delete_empty_event_types(engine: Engine) -> None:
    """Remove the event types left without events, each on its own.

    A batch being written may have just started using one of them; its
    commit then makes the DELETE of that type fail. One statement for
    all of them would fail with it and keep every empty type, for good
    if no event expires after; one type at a time, only that one stays
    (the next run that deletes events removes it).
    """
    unused = ~sa.exists().where(EVENT.c.event_type_id == EVENT_TYPE.c.id)
    with engine.connect() as conn:
        empty = list(conn.execute(sa.select(EVENT_TYPE.c.id).where(unused)).scalars())
        conn.rollback()
    for type_id in empty:
        try:
            with engine.begin() as conn:
                conn.execute(EVENT_TYPE.delete().where(EVENT_TYPE.c.id == type_id, unused))
        except sa_exc.IntegrityError:
            LOG.debug("event type %d is in use again; not removed", type_id)
