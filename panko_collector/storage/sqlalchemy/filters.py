"""From Panko's query terms to SQL conditions: filters, sort keys, keyset pages.

Pure: builds expressions and checks the terms, never talks to a database.
Terms that cannot be honoured (an unknown sort key or direction, operator,
or trait value type) raise ``InvalidQuery`` before any statement is sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from panko_collector import errors
from panko_collector.storage import base, models
from panko_collector.storage.sqlalchemy.prepare import fix_nul
from panko_collector.storage.sqlalchemy.tables import (
    EVENT,
    EVENT_TYPE,
    STORED_TRAIT_TABLES,
    TRAIT_TEXT,
)

#: Panko's order when the caller gives none.
DEFAULT_SORT: list[tuple[str, str]] = [("generated", "asc"), ("message_id", "asc")]
#: The columns events can be sorted by.
SORT_COLUMNS = {"generated": EVENT.c.generated, "message_id": EVENT.c.message_id}
#: The table a trait filter reads, by the key of its value (Panko's type names).
FILTER_TABLES = {models.Trait.type_names[code]: table
                 for code, table in STORED_TRAIT_TABLES.items()}
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "lt": lambda c, v: c < v,
    "le": lambda c, v: c <= v,
    "eq": lambda c, v: c == v,
    "ne": lambda c, v: c != v,
    "ge": lambda c, v: c >= v,
    "gt": lambda c, v: c > v,
}


def sort_keys(sort: Any) -> list[tuple[str, str]]:
    """Validated sort keys, with message_id appended so the order is total."""
    keys = [(str(k), str(d).lower()) for k, d in (sort or DEFAULT_SORT)]
    for k, d in keys:
        if k not in SORT_COLUMNS or d not in ("asc", "desc"):
            raise errors.InvalidQuery(f"cannot sort by {k!r} {d!r}: use generated or "
                                      "message_id, asc or desc")
    if "message_id" not in (k for k, _ in keys):
        keys.append(("message_id", keys[-1][1] if keys else "asc"))
    return keys


def order_by(sort: list[tuple[str, str]]) -> list[Any]:
    """ORDER BY clauses of validated ``sort`` keys."""
    return [SORT_COLUMNS[k].asc() if d == "asc" else SORT_COLUMNS[k].desc() for k, d in sort]


def after(sort: list[tuple[str, str]], marker: dict[str, Any]) -> Any:
    """Keyset condition: rows strictly after ``marker`` in ``sort`` order."""
    clauses = []
    for i, (key, direction) in enumerate(sort):
        equal = [SORT_COLUMNS[k] == marker[k] for k, _ in sort[:i]]
        col, value = SORT_COLUMNS[key], marker[key]
        beyond = col > value if direction == "asc" else col < value
        clauses.append(sa.and_(*equal, beyond))
    return sa.or_(*clauses)


def trait_match(tf: base.TraitFilter) -> tuple[sa.Table, list[Any]]:
    """The trait table one trait filter reads, and the conditions on its rows."""
    op = tf.get("op") or "eq"
    if op not in _OPS:
        raise errors.InvalidQuery(f"unknown trait filter operator {op!r}")
    typed = [k for k in FILTER_TABLES if k in tf]
    if len(typed) != 1 or "key" not in tf:
        raise errors.InvalidQuery(
            f"a trait filter needs 'key' and one of {sorted(FILTER_TABLES)}: {dict(tf)!r}")
    table = FILTER_TABLES[typed[0]]
    value = tf[typed[0]]  # type: ignore[literal-required]
    # 'ne' only matches events that have the key, as in Panko: the key is
    # required of the same row.
    return table, [table.c.key == tf["key"], _OPS[op](table.c.value, value)]


def filter_conditions(f: base.EventFilter) -> list[Any]:
    """WHERE clauses of an EventFilter, as Panko defined them, but its trait filters."""
    conds: list[Any] = []
    if f.start_timestamp is not None:
        conds.append(EVENT.c.generated >= f.start_timestamp)
    if f.end_timestamp is not None:
        conds.append(EVENT.c.generated <= f.end_timestamp)
    if f.event_type:
        conds.append(EVENT_TYPE.c.desc == f.event_type)
    if f.message_id:
        conds.append(EVENT.c.message_id == f.message_id)
    if f.admin_proj:
        text = TRAIT_TEXT
        has_project = sa.exists().where(text.c.event_id == EVENT.c.id,
                                        text.c.key == "project_id")
        # The databases test these in the order written: an event of another
        # project (most of them) is dismissed by its project_id row alone,
        # one index probe, before "has text traits" would cost a second.
        conds.append(sa.or_(
            sa.exists().where(text.c.event_id == EVENT.c.id, text.c.key == "project_id",
                              text.c.value == f.admin_proj),
            sa.and_(~has_project, sa.exists().where(text.c.event_id == EVENT.c.id)),
        ))
    return conds


def without_nul(
    f: base.EventFilter, page: dict[str, Any]
) -> tuple[base.EventFilter, dict[str, Any]]:
    """The filter and page with NUL replaced in their text, as PostgreSQL
    stores it (``prepare.replace_nul``): a filter finds what was stored from
    the same text, and PostgreSQL is never sent a NUL, which it refuses."""
    def fix(value: Any) -> Any:
        return fix_nul(value) if isinstance(value, str) else value

    traits = [{k: fix(v) for k, v in tf.items()} for tf in f.traits_filter or ()]
    fixed = dataclasses.replace(
        f, event_type=fix(f.event_type), message_id=fix(f.message_id),
        admin_proj=fix(f.admin_proj), traits_filter=traits)  # type: ignore[arg-type]
    return fixed, {**page, "marker": fix(page.get("marker"))}
