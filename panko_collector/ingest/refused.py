"""Dead letters the broker refused, kept with their originals unacked until it takes them.

RabbitMQ nacks a dead letter only when the dead-letter queue is full under
a ``max-length``/``max-length-bytes`` policy with ``overflow:
reject-publish``. Acking the original then would lose it; raising would
kill the worker, and the redelivered message would kill the next one. So
the original stays unacked, the publish is retried with backoff while the
other messages keep flowing, and the operator gets one ERROR per episode
(from the first refusal to the queue accepting again). Pure bookkeeping:
the consumer publishes and logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from panko_collector.ingest.writer import Backoff

M = TypeVar("M")


class RefusedDeadLetters(Generic[M]):
    """The refused (message, dead-letter headers) pairs, oldest first, and
    when to try them again."""

    def __init__(self, backoff: Backoff, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: list[tuple[M, dict[str, Any]]] = []
        self._backoff = backoff
        self._clock = clock
        self._retry_at = 0.0
        self._reported = True

    def __len__(self) -> int:
        return len(self._items)

    def keep(self, message: M, headers: dict[str, Any]) -> None:
        """The broker refused ``message``'s dead letter: keep it for a retry.

        The first one of an episode schedules the retry and makes an ERROR due.
        """
        if not self._items:
            self._retry_at = self._clock() + self._backoff.next()
            self._reported = False
        self._items.append((message, headers))

    def report_due(self) -> str | None:
        """The reason of the first refused dead letter when this episode's
        ERROR is yet to be logged (once), else None."""
        if self._items and not self._reported:
            self._reported = True
            return str(self._items[0][1]["reason"])
        return None

    def retry_due(self) -> bool:
        """Whether dead letters wait and their backoff has run out."""
        return bool(self._items) and self._clock() >= self._retry_at

    def take(self) -> list[tuple[M, dict[str, Any]]]:
        """Every refused dead letter, oldest first, for a retry."""
        items, self._items = self._items, []
        return items

    def still_refused(self, rest: Sequence[tuple[M, dict[str, Any]]]) -> float:
        """A retry was refused again: keep ``rest`` (the ones not sent) ahead
        of any refused meanwhile; returns the pause before the next try."""
        self._items = list(rest) + self._items
        delay = self._backoff.next()
        self._retry_at = self._clock() + delay
        return delay

    def accepted(self) -> None:
        """Every one was taken at last: the episode is over."""
        self._backoff.reset()

    def clear(self) -> None:
        """The channel they came on is gone: the broker redelivers the originals."""
        self._items.clear()
