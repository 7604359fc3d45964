"""What one worker counts, and the periodic INFO summary of it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

LOG = logging.getLogger(__name__)


@dataclass
class Stats:
    """Counters of one worker; reset after each periodic summary."""

    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0
    ignored: int = 0
    dead_lettered: int = 0

    def add(self, other: Stats) -> None:
        """Add ``other``'s counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Summary:
    """The counters since the last summary (``stats``) and since the start
    (``totals``), and the INFO line that reports them (on ``log``: the
    worker loop's own logger).

    Only the consumer thread counts and reports. Never raises.
    """

    def __init__(self, name: str, log: logging.Logger = LOG,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._log = log
        self.stats = Stats()
        self.totals = Stats()
        self._clock = clock
        self._last = clock()

    def due(self, interval: float, now: float) -> bool:
        """Whether ``interval`` seconds passed (at ``now``) since the last summary."""
        return now - self._last >= interval

    def report(self, final: bool = False) -> None:
        """Log one line (unless nothing came and this is not the final one),
        then start counting afresh."""
        now = self._clock()
        elapsed = max(now - self._last, 1e-9)
        s = self.stats
        if s.messages or final:
            self._log.info(
                "%s: %d messages in %.0fs (%.1f/s): %d events stored, %d duplicates, "
                "%d dropped, %d ignored priorities, %d dead-lettered",
                self.name, s.messages, elapsed, s.messages / elapsed, s.stored,
                s.duplicates, s.dropped, s.ignored, s.dead_lettered,
            )
        self.totals.add(s)
        self.stats = Stats()
        self._last = now
