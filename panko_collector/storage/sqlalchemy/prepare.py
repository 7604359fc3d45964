"""From an event to the rows that store it: checks and conversions, no database.

An event no database would accept (a message id that does not fit, an
integer beyond 64 bits, a float that is not finite, a value of the wrong
type) is refused here with ``BadEvent``, the same way on every backend,
before any statement is sent; ``write.record_events`` reports it as failed
and stores the rest of its batch. Text is cut to ``models.TEXT_LIMIT``,
never refused.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from typing import Any

from panko_collector.storage import models
from panko_collector.storage.models import INT_MAX, INT_MIN, TEXT_LIMIT, to_naive_utc
from panko_collector.storage.sqlalchemy.tables import MESSAGE_ID_LIMIT

#: What PostgreSQL stores instead of NUL (U+0000), which its text type cannot hold.
NUL_REPLACEMENT = "\ufffd"

_TEXT = models.Trait.TEXT_TYPE


class BadEvent(Exception):
    """Raised while preparing an event that no database would accept."""


@dataclass(slots=True)
class Row:
    """An event checked and converted for insertion; ``traits`` per table,
    keyed by the ``models.Trait`` type code of the table (never NONE)."""

    event: models.Event
    message_id: str
    event_type: str
    generated: datetime.datetime
    raw: str
    traits: dict[int, dict[str, Any]] = field(default_factory=dict)


def trait_value(trait: models.Trait) -> tuple[int, Any]:
    """(type code of the table, value to store) of one trait; raises BadEvent
    if no database would take the value."""
    dtype, value = trait.dtype, trait.value
    if dtype in (models.Trait.NONE_TYPE, _TEXT):
        if value is not None:
            value = (value if isinstance(value, str) else str(value))[:TEXT_LIMIT]
        return _TEXT, value
    if value is None:
        return dtype, None
    if dtype == models.Trait.INT_TYPE:
        if isinstance(value, float) or not isinstance(value, int):
            raise BadEvent(f"trait {trait.name!r}: {value!r} is not an integer")
        if not INT_MIN <= value <= INT_MAX:
            raise BadEvent(f"trait {trait.name!r}: {value} does not fit in a 64-bit integer")
        return dtype, int(value)
    if dtype == models.Trait.FLOAT_TYPE:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadEvent(f"trait {trait.name!r}: {value!r} is not a number")
        if not math.isfinite(value):
            # PostgreSQL would keep it, MySQL cannot even parse it, SQLite makes
            # NaN a NULL: refuse it alike everywhere.
            raise BadEvent(f"trait {trait.name!r}: {value!r} is not a finite number")
        return dtype, float(value)
    if dtype == models.Trait.DATETIME_TYPE:
        if not isinstance(value, datetime.datetime):
            raise BadEvent(f"trait {trait.name!r}: {value!r} is not a datetime")
        return dtype, to_naive_utc(value)
    raise BadEvent(f"trait {trait.name!r}: unknown trait type {dtype!r}")


def prepare_event(event: models.Event) -> Row:
    """Check and convert one event for storage; raises BadEvent.

    Text is cut to ``models.TEXT_LIMIT`` characters, NONE-typed traits become
    text, and of two traits with the same name and table the last one wins.
    """
    if not isinstance(event.message_id, str) or not event.message_id:
        raise BadEvent(f"message_id {event.message_id!r} is not a non-empty string")
    if len(event.message_id) > MESSAGE_ID_LIMIT:
        raise BadEvent(f"message_id longer than {MESSAGE_ID_LIMIT} characters")
    if not isinstance(event.event_type, str) or not event.event_type:
        raise BadEvent(f"event_type {event.event_type!r} is not a non-empty string")
    if len(event.event_type) > TEXT_LIMIT:
        raise BadEvent(f"event_type longer than {TEXT_LIMIT} characters")
    if not isinstance(event.generated, datetime.datetime):
        raise BadEvent(f"generated {event.generated!r} is not a datetime")
    try:
        # Most events keep no raw notification ({} unless [event] store_raw).
        raw = "{}" if event.raw is None or (event.raw.__class__ is dict and not event.raw) \
            else json.dumps(event.raw, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BadEvent(f"raw cannot be encoded as JSON: {exc!r}"[:500]) from None
    row = Row(event, event.message_id, event.event_type, to_naive_utc(event.generated), raw)
    text: dict[str, Any] = {}
    row.traits[_TEXT] = text
    for trait in event.traits:
        name, value = trait.name, trait.value
        if name.__class__ is not str or not 0 < len(name) <= TEXT_LIMIT:
            raise BadEvent(f"trait name {name!r} is empty, not text or too long")
        # Text is most traits: handled inline, the batch path is hot.
        if trait.dtype == _TEXT and value.__class__ is str:
            text[name] = value[:TEXT_LIMIT]
            continue
        table, value = trait_value(trait)
        row.traits.setdefault(table, {})[name] = value
    return row


def fix_nul(text: str) -> str:
    """``text`` with every NUL replaced by ``NUL_REPLACEMENT``."""
    return text.replace("\x00", NUL_REPLACEMENT) if "\x00" in text else text


def replace_nul(row: Row) -> None:
    """Replace every NUL by ``NUL_REPLACEMENT`` in the row's message id, event
    type, trait names and text values (for PostgreSQL; other databases keep
    NUL as sent).

    ``raw`` needs nothing: it is JSON text, where NUL is the escape ``\\u0000``.
    """
    fix = fix_nul
    row.message_id, row.event_type = fix(row.message_id), fix(row.event_type)
    for table, traits in row.traits.items():
        # Joined, the names (and text values) are searched at C speed: this
        # runs on every event of a batch and finds nothing nearly always.
        if "\x00" in "".join(traits) or (table == _TEXT and "\x00" in "".join(
                filter(None, traits.values()))):
            fixed = {fix(name): (fix(value) if table == _TEXT and value is not None else value)
                     for name, value in traits.items()}
            traits.clear()
            traits.update(fixed)
