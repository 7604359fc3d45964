"""The read path: events by filter and page, event types, trait types and traits.

Every read runs in one transaction that is rolled back (nothing it does
is kept) and returns lists, so no cursor outlives the call. On PostgreSQL,
text in the query has its NUL replaced as the write path stored it, and
selective trait filters are turned into a list of event ids first
(``prefetch_ids``).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.engine import Connection, Engine

from panko_collector import errors
from panko_collector.storage import base, models
from panko_collector.storage.sqlalchemy import filters
from panko_collector.storage.sqlalchemy.prepare import fix_nul
from panko_collector.storage.sqlalchemy.tables import EVENT, EVENT_TYPE, STORED_TRAIT_TABLES

#: PostgreSQL reads: a trait filter that matches at most this many events is
#: turned into the list of their ids first (see ``prefetch_ids``).
PREFETCH_MAX = 20000
#: Event ids per statement when the traits of the events found are read.
_IDS_PER_QUERY = 500


def get_events(
    engine: Engine, event_filter: base.EventFilter, pagination: base.Pagination | None = None
) -> list[models.Event]:
    """The matching events in pagination order, their traits sorted by name and type.

    Raises ``InvalidMarker`` if ``pagination['marker']`` names no event
    that ``event_filter`` matches (a missing one, or one outside the filter
    or the caller's scope: the marker is looked up with the same filter),
    ``InvalidQuery`` for an unknown sort key, direction, operator or value type.
    ``event_filter`` and ``pagination`` are only read.
    """
    page: dict[str, Any] = dict(pagination or {})
    pg = engine.dialect.name == "postgresql"
    if pg:
        event_filter, page = filters.without_nul(event_filter, page)
    sort = filters.sort_keys(page.get("sort"))
    traits = [filters.trait_match(tf) for tf in event_filter.traits_filter or ()]
    with engine.connect() as conn:
        conds = filters.filter_conditions(event_filter)
        # A message id names one event at most: its trait filters are
        # tested on that row, not looked up first (two queries more).
        if pg and traits and not event_filter.message_id:
            # One snapshot for the id lookup and the events.
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            # psycopg prepares the statements run often; a generic plan
            # would not see the ids below, and parse them again per row.
            conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
            ids, traits = prefetch_ids(conn, traits)
            if ids is not None:
                # Untyped text, so that PostgreSQL reads it as an int[]
                # constant at planning (typed as text, the cast would run
                # per row, and the plan not see how many ids there are).
                conds.append(EVENT.c.id == sa.any_(sa.cast(
                    sa.bindparam("prefetched_ids", ids, type_=sa.types.NullType()),
                    pg_dialect.ARRAY(sa.Integer))))
        conds += [sa.exists().where(table.c.event_id == EVENT.c.id, *match)
                  for table, match in traits]
        query = (
            sa.select(EVENT.c.id, EVENT.c.message_id, EVENT.c.generated,
                      EVENT_TYPE.c.desc, EVENT.c.raw)
            .join(EVENT_TYPE, EVENT_TYPE.c.id == EVENT.c.event_type_id)
            .where(*conds)
        )
        marker = page.get("marker")
        if marker:
            # The marker must be one of the events this query returns: a
            # caller cannot probe, or page from, an event outside its scope.
            found = conn.execute(
                sa.select(EVENT.c.generated, EVENT.c.message_id)
                .join(EVENT_TYPE, EVENT_TYPE.c.id == EVENT.c.event_type_id)
                .where(*conds, EVENT.c.message_id == marker)).first()
            if found is None:
                raise errors.InvalidMarker(
                    f"marker {marker!r} names no event that matches the query")
            query = query.where(
                filters.after(sort, {"generated": found[0], "message_id": found[1]}))
        query = query.order_by(*filters.order_by(sort))
        limit = page.get("limit")
        if limit:
            query = query.limit(int(limit))
        found_events: dict[int, models.Event] = {}
        for id_, mid, generated, desc, raw in conn.execute(query):
            found_events[id_] = models.Event(mid, desc, generated, [],
                                             json.loads(raw) if raw else {})
        _add_traits(conn, found_events, pg)
        conn.rollback()
    return list(found_events.values())


def _add_traits(conn: Connection, events: dict[int, models.Event], pg: bool) -> None:
    """Read the traits of ``events`` (by event id) into them, sorted by name and type."""
    event_ids = list(events)
    for dtype, table in STORED_TRAIT_TABLES.items():
        for i in range(0, len(event_ids), _IDS_PER_QUERY):
            chunk = event_ids[i:i + _IDS_PER_QUERY]
            # On PostgreSQL one array parameter: the same statement
            # text whatever the number of ids, parsed once.
            in_chunk = (table.c.event_id == sa.any_(sa.bindparam(
                "event_ids", chunk, type_=pg_dialect.ARRAY(sa.Integer)))) if pg \
                else table.c.event_id.in_(chunk)
            for event_id, key, value in conn.execute(
                sa.select(table.c.event_id, table.c.key, table.c.value).where(in_chunk)
            ).all():
                events[event_id].traits.append(models.Trait(key, dtype, value))
    for ev in events.values():
        ev.traits.sort(key=lambda t: (t.name, t.dtype))


def prefetch_ids(
    conn: Connection, traits: list[tuple[sa.Table, list[Any]]]
) -> tuple[str | None, list[tuple[sa.Table, list[Any]]]]:
    """Resolve the trait filters that match few events to the ids of those events.

    Returns the ids matching every such filter, as a PostgreSQL array
    literal (None if no filter is selective enough), and the filters left
    to test row by row.

    Why: to return the first ``limit`` events in ``generated`` order,
    PostgreSQL either looks up every event a trait filter matches and sorts
    them, or walks the events in order and probes the trait index for each:
    both cost a random index descent per row, which adds up for a filter
    matching a small share of many events. Given the matching ids as a
    constant, it can walk the ``generated`` index and keep the rows whose
    id is in a hash of them (or look the ids up, when they are few):
    it knows how many there are, and sequential reads are cheap.
    """
    found: list[tuple[str, int]] = []
    rest = []
    for table, match in traits:
        ids = conn.execute(sa.select(sa.cast(sa.func.array(
            sa.select(table.c.event_id).where(*match).limit(PREFETCH_MAX + 1)
            .scalar_subquery()), sa.Text))).scalar_one()
        count = 0 if ids == "{}" else ids.count(",") + 1
        if count > PREFETCH_MAX:
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


def get_event_types(engine: Engine) -> list[str]:
    """Every stored event type name, ascending."""
    with engine.connect() as conn:
        names = list(conn.execute(
            sa.select(EVENT_TYPE.c.desc).order_by(EVENT_TYPE.c.desc)).scalars())
        conn.rollback()
    return [n for n in names if n is not None]


def get_trait_types(engine: Engine, event_type: str) -> list[dict[str, Any]]:
    """``{'name', 'data_type'}`` of each distinct trait of ``event_type``, by table, then name."""
    if engine.dialect.name == "postgresql":
        event_type = fix_nul(event_type)
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for dtype, table in STORED_TRAIT_TABLES.items():
            query = (
                sa.select(table.c.key).distinct()
                .join(EVENT, EVENT.c.id == table.c.event_id)
                .join(EVENT_TYPE, EVENT_TYPE.c.id == EVENT.c.event_type_id)
                .where(EVENT_TYPE.c.desc == event_type)
                .order_by(table.c.key)
            )
            out.extend({"name": k, "data_type": dtype} for k in conn.execute(query).scalars())
        conn.rollback()
    return out


def get_traits(
    engine: Engine, event_type: str, trait_type: str | None = None
) -> list[models.Trait]:
    """Every trait of ``event_type`` (only those named ``trait_type`` if given),
    by table, then name, then event."""
    if engine.dialect.name == "postgresql":
        event_type = fix_nul(event_type)
        trait_type = fix_nul(trait_type) if trait_type else trait_type
    out: list[models.Trait] = []
    with engine.connect() as conn:
        for dtype, table in STORED_TRAIT_TABLES.items():
            query = (
                sa.select(table.c.key, table.c.value)
                .join(EVENT, EVENT.c.id == table.c.event_id)
                .join(EVENT_TYPE, EVENT_TYPE.c.id == EVENT.c.event_type_id)
                .where(EVENT_TYPE.c.desc == event_type)
                .order_by(table.c.key, table.c.event_id)
            )
            if trait_type:
                query = query.where(table.c.key == trait_type)
            out.extend(models.Trait(k, dtype, v) for k, v in conn.execute(query))
        conn.rollback()
    return out
