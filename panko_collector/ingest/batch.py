"""Size- and age-bounded batches: pure bookkeeping, no I/O.

A batch is due when it holds ``max_size`` items or its oldest item is
``max_age`` seconds old; the caller decides what writing it means. Time comes
from an injectable clock so tests need not sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batch(Generic[T]):
    """Items waiting to be written together.

    Nothing here fails: adding beyond ``max_size`` is allowed (the caller may
    have to keep a batch while the database is down) and simply keeps the
    batch due.
    """

    def __init__(
        self, max_size: int, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_age < 0:
            raise ValueError("max_age must not be negative")
        self.max_size = max_size
        self.max_age = max_age
        self._clock = clock
        self._items: list[T] = []
        self._started: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> list[T]:
        """The items so far, oldest first (the batch's own list: do not change it)."""
        return self._items

    def add(self, item: T) -> None:
        """Append ``item``; the first one starts the batch's age."""
        if self._started is None:
            self._started = self._clock()
        self._items.append(item)

    def age(self) -> float:
        """Seconds since the oldest item came in; 0 when empty."""
        return 0.0 if self._started is None else self._clock() - self._started

    def due(self) -> bool:
        """True when the batch should be written now."""
        if not self._items:
            return False
        return len(self._items) >= self.max_size or self.age() >= self.max_age

    def time_left(self) -> float | None:
        """Seconds until the batch is due by age; None when empty, 0 when due."""
        if not self._items:
            return None
        if len(self._items) >= self.max_size:
            return 0.0
        return max(0.0, self.max_age - self.age())

    def take(self) -> list[T]:
        """Return every item and start a new, empty batch."""
        items, self._items, self._started = self._items, [], None
        return items
