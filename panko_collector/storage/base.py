"""The storage contract: what every backend offers and what it returns.

The names mirror Panko's so that its users, tools and tests recognise them.
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from panko_collector.storage import models


def expiry_cutoff(ttl: int) -> datetime.datetime:
    """The time before which events are expired for a time to live of ``ttl``
    seconds, from now (naive UTC, as ``generated``).

    An expiry run computes it once and passes it to every call it makes
    (``clear_expired_data(..., cutoff=)``), so that all its chunks delete up
    to the same time, the one it reports.
    """
    return models.utcnow() - datetime.timedelta(seconds=ttl)


class TraitFilter(TypedDict, total=False):
    """One trait condition: ``key``, ``op`` and exactly one typed value."""

    key: str
    op: str  # lt | le | eq | ne | ge | gt (default eq)
    string: str
    integer: int
    float: float
    datetime: datetime.datetime


class Pagination(TypedDict, total=False):
    """Keyset pagination: at most ``limit`` events after ``marker`` in ``sort`` order."""

    limit: int | None
    marker: str | None
    sort: list[tuple[str, str]]


@dataclass(frozen=True)
class EventFilter:
    """Which events ``get_events`` returns; every given condition must hold.

    ``start_timestamp``/``end_timestamp`` are inclusive bounds on ``generated``;
    ``traits_filter`` conditions are ANDed; ``admin_proj`` limits the result to
    events of that project (see ``Connection.get_events``).
    """

    start_timestamp: datetime.datetime | None = None
    end_timestamp: datetime.datetime | None = None
    event_type: str | None = None
    message_id: str | None = None
    traits_filter: Sequence[TraitFilter] | None = None
    admin_proj: str | None = None


@dataclass(slots=True)
class FailedEvent:
    """An event the database refused, and why (its own fault, not an outage)."""

    event: models.Event
    reason: str


@dataclass(slots=True)
class RecordResult:
    """What ``record_events`` did with one batch.

    ``stored + duplicates + len(failed)`` equals the number of events given.
    """

    stored: int = 0
    duplicates: int = 0
    failed: list[FailedEvent] = field(default_factory=list)


class Connection(abc.ABC):
    """A storage backend. Methods raise ``StorageUnavailable`` on outages."""

    def __init__(self, url: str, conf: Any = None) -> None:
        self.url = url
        self.conf = conf

    @staticmethod
    def dress_url(url: str) -> str:
        """Return ``url`` with the driver this backend uses spelled out."""
        return url

    @abc.abstractmethod
    def dispose(self) -> None:
        """Close pooled database connections; the next call opens new ones.

        Call it at shutdown, and in a process forked from one that already
        used this object (connections must not be shared across a fork).
        """

    @abc.abstractmethod
    def upgrade(self) -> None:
        """Create or migrate the schema to the newest version."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Remove every event, trait and event type."""

    @abc.abstractmethod
    def record_events(self, events: Sequence[models.Event]) -> RecordResult:
        """Store a batch in one transaction, skipping message_ids already held."""

    @abc.abstractmethod
    def get_events(
        self, event_filter: EventFilter, pagination: Pagination | None = None
    ) -> Iterator[models.Event]:
        """Yield the events matching ``event_filter`` in pagination order."""

    @abc.abstractmethod
    def get_event_types(self) -> Iterator[str]:
        """Yield every stored event type name, ascending."""

    @abc.abstractmethod
    def get_trait_types(self, event_type: str) -> Iterator[dict[str, Any]]:
        """Yield ``{'name', 'data_type'}`` for each distinct trait of ``event_type``."""

    @abc.abstractmethod
    def get_traits(
        self, event_type: str, trait_type: str | None = None
    ) -> Iterable[models.Trait]:
        """Yield every trait of ``event_type``, optionally only those named ``trait_type``."""

    @abc.abstractmethod
    def clear_expired_data(self, ttl: int, max_count: int | None = None, *,
                           cutoff: datetime.datetime | None = None) -> int:
        """Delete events generated strictly before ``cutoff`` (by default
        ``expiry_cutoff(ttl)``), at most ``max_count``, oldest first; return
        how many went."""

    @abc.abstractmethod
    def count_expired(self, ttl: int, *, cutoff: datetime.datetime | None = None) -> int:
        """How many events ``clear_expired_data`` with the same arguments would
        delete now (for progress reports)."""
