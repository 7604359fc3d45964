"""Plain data of the event store: events and their typed traits.

Names and type codes are Panko's, so its users and tools recognise them.
Datetimes are naive UTC throughout.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: Longest text a trait value, event type or trait name keeps: the schema's
#: VARCHAR(255). Longer text is cut, never refused.
TEXT_LIMIT = 255
#: The range of the integer trait column (BIGINT on every database).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def utcnow() -> datetime.datetime:
    """Now, as every datetime of the model is: naive, in UTC."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime.datetime) -> datetime.datetime:
    """``value`` as the model keeps datetimes: aware ones converted to naive UTC,
    naive ones taken to be UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value


@dataclass(slots=True)
class Trait:
    """One typed, named value of an event."""

    NONE_TYPE: ClassVar[int] = 0
    TEXT_TYPE: ClassVar[int] = 1
    INT_TYPE: ClassVar[int] = 2
    FLOAT_TYPE: ClassVar[int] = 3
    DATETIME_TYPE: ClassVar[int] = 4

    #: Panko's names of the types, as used by the API and trait filters.
    type_names: ClassVar[dict[int, str]] = {
        NONE_TYPE: "none",
        TEXT_TYPE: "string",
        INT_TYPE: "integer",
        FLOAT_TYPE: "float",
        DATETIME_TYPE: "datetime",
    }
    #: The names of the event definitions format (Ceilometer's), which the
    #: command-line tools also print; NONE-typed traits are stored as text.
    definition_names: ClassVar[dict[int, str]] = {
        NONE_TYPE: "text",
        TEXT_TYPE: "text",
        INT_TYPE: "int",
        FLOAT_TYPE: "float",
        DATETIME_TYPE: "datetime",
    }

    name: str
    dtype: int
    value: Any

    def as_dict(self) -> dict[str, Any]:
        """The trait as a plain dict (name, dtype, value)."""
        return {"name": self.name, "dtype": self.dtype, "value": self.value}


@dataclass(slots=True)
class Event:
    """One notification, as stored: its identity, type, time and traits.

    ``raw`` holds the whole notification when the configuration keeps it
    for this priority, else ``{}``.
    """

    message_id: str
    event_type: str
    generated: datetime.datetime
    traits: list[Trait] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The event as plain dicts and lists, its traits included."""
        return {
            "message_id": self.message_id,
            "event_type": self.event_type,
            "generated": self.generated,
            "traits": [t.as_dict() for t in self.traits],
            "raw": self.raw,
        }
