"""Trait values in the types of the event store, within its limits.

The definitions format names the types (``text``, ``int``, ``float``,
``datetime``: ``models.Trait.definition_names``); each type has one
coercion here. A coercion returns the stored form of a value or raises
``ValueError``/``TypeError``/``OverflowError`` when the value does not fit;
the converter then leaves that one trait out. The limits are the schema's
(``models.TEXT_LIMIT``, ``models.INT_MIN``/``INT_MAX``), so that a value the
database would refuse costs the trait here instead of the whole event.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any

from panko_collector.conversion.decoder import parse_timestamp
from panko_collector.storage.models import INT_MAX, INT_MIN, TEXT_LIMIT, Trait

#: Type names of the definitions format (compared case-insensitively) and
#: their type codes. NONE has no name of its own in the format: it is stored
#: as text.
TYPES: dict[str, int] = {
    name: dtype for dtype, name in Trait.definition_names.items() if dtype != Trait.NONE_TYPE
}


def to_text(value: Any) -> str:
    """The string form of ``value``, cut to ``TEXT_LIMIT`` characters (never refused)."""
    return (value if isinstance(value, str) else str(value))[:TEXT_LIMIT]


def to_int(value: Any) -> int:
    """``int(value)``; ValueError when it does not fit the 64-bit trait column,
    where the database would refuse the whole event."""
    number = int(value)
    if not INT_MIN <= number <= INT_MAX:
        raise ValueError(f"{_describe_int(number)} does not fit in a 64-bit integer")
    return number


def _describe_int(number: int) -> str:
    # A number of thousands of digits must not become a log line of thousands.
    return str(number) if abs(number) < 10**60 else f"a {number.bit_length()}-bit number"


def to_float(value: Any) -> float:
    """``float(value)``; ValueError for NaN and the infinities.

    PostgreSQL would keep them, MySQL cannot, SQLite turns NaN into NULL,
    and the storage refuses the event: the trait is dropped instead.
    """
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{number!r} is not a finite number")
    return number


def to_datetime(value: Any) -> datetime.datetime:
    """A timestamp string as naive UTC; TypeError for a non-string,
    ValueError for a string that is no timestamp."""
    if not isinstance(value, str):
        raise TypeError(f"a datetime must be a string, not {type(value).__name__}")
    parsed = parse_timestamp(value)
    if parsed is None:
        raise ValueError(f"unparseable datetime {value!r}")
    return parsed


#: The coercion of each type code that a definition can name.
CONVERTERS: dict[int, Callable[[Any], Any]] = {
    Trait.TEXT_TYPE: to_text,
    Trait.INT_TYPE: to_int,
    Trait.FLOAT_TYPE: to_float,
    Trait.DATETIME_TYPE: to_datetime,
}
