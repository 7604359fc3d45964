"""Writing batches: the writer thread, its retries, and how a committed batch is settled.

One ``Writer`` per worker owns the storage connection and runs
``record_events`` in a thread of its own, so that one batch is committed
while the consumer thread fills the next. Only the consumer thread touches
the broker: the writer hands the result back (a ``Future``), and the
consumer thread settles the batch with ``settle``: it dead-letters what the
database refused and acks the rest.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from panko_collector import errors
from panko_collector.ingest.settings import WriterSettings
from panko_collector.metrics import DISABLED, Metrics
from panko_collector.storage import Connection, RecordResult, models

LOG = logging.getLogger(__name__)

M = TypeVar("M")


class Backoff:
    """Capped exponential backoff with jitter: uniform(c/2, c), c = min(cap, base * 2**n).

    Jitter spreads the retries of many workers so that a database or a
    broker coming back is not hit by all of them at the same instant.
    ``floor`` keeps a minimum pause so that a hopeless retry never spins.
    """

    def __init__(self, base: float, cap: float, floor: float = 0.1,
                 uniform: Any = random.uniform) -> None:
        self.base, self.cap, self.floor = base, cap, floor
        self.attempts = 0
        self._uniform = uniform

    def next(self) -> float:
        """The pause before the next attempt; each call doubles the next ceiling."""
        ceiling = min(self.cap, self.base * (2**self.attempts))
        self.attempts += 1
        return float(max(self.floor, self._uniform(ceiling / 2, ceiling)))

    def reset(self) -> None:
        """After a success: the next pause is short again."""
        self.attempts = 0


def first_line(exc: BaseException | None) -> str:
    """Drivers add hint paragraphs to their messages; one line per attempt is enough."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Abandon(Exception):
    """A stop was requested (or the broker connection that delivered the
    batch is gone) while the database was down: leave without acking."""


@dataclass(eq=False)
class Write(Generic[M]):
    """A batch handed to the writer thread, and its messages to settle after."""

    items: list[tuple[models.Event, M]]
    #: The events, once each (a redelivery within the batch counts once).
    events: list[models.Event]
    #: The broker connection (``Writer.generation``) the messages came on.
    generation: int
    #: Queues whose half window was in the batch when it was handed over.
    starved: frozenset[str] = frozenset()
    future: Future[RecordResult] | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """How to settle a committed batch; positions index the batch's items."""

    #: (position, reason) of the messages whose events the database refused.
    dead_letters: tuple[tuple[int, str], ...]
    #: Positions of the stored messages, in batch order.
    stored: tuple[int, ...]
    #: Position of the stored message with the highest delivery tag; None: none stored.
    last: int | None

    def acks(self, refused_waiting: bool) -> tuple[tuple[int, ...], bool]:
        """The positions to ack and whether with ``multiple``, once the dead
        letters are sent.

        One ``basic.ack(multiple=True)`` of the highest delivery tag among
        the stored messages settles every message still unacked on the
        channel up to it. That is exactly the batch's stored messages,
        because every other delivery with a lower tag is settled already:
        batches fill in delivery order and are written one at a time (the
        previous batch was settled before this one was handed over);
        dropped, ignored and undecodable messages are acked, or
        dead-lettered and acked, as they are handled; and this batch's
        refused events are dead-lettered and acked first. The tag named must
        itself be unacked (RabbitMQ closes the channel on an unknown one),
        hence the highest stored one, not the batch's. While dead letters
        the broker refused wait unacked (``refused_waiting``), a multiple
        ack would settle them too and lose them: the stored messages are
        then acked one by one.
        """
        if self.last is None:
            return (), False
        if refused_waiting:
            return self.stored, False
        return (self.last,), True


def settle(batch: Sequence[tuple[int, str]], failed: Mapping[str, str]) -> Settlement:
    """Plan the settlement of a committed batch of (delivery tag, message id)
    pairs, given the reasons of the message ids the database refused.

    Pure. Every message of a refused id is dead-lettered (redeliveries of
    one id in a batch alike); the others are stored.
    """
    dead: list[tuple[int, str]] = []
    stored: list[int] = []
    last: int | None = None
    last_tag = 0
    for position, (tag, message_id) in enumerate(batch):
        reason = failed.get(message_id)
        if reason is None:
            stored.append(position)
            if last is None or tag > last_tag:
                last, last_tag = position, tag
        else:
            dead.append((position, reason))
    return Settlement(tuple(dead), tuple(stored), last)


class Writer:
    """The writer thread of one worker: the only user of the storage connection.

    ``generation`` names the broker connection the consumer takes messages
    on; ``forget`` moves it on when that connection is lost, and a write of
    an older generation gives up as soon as the database fails it (its
    messages cannot be acked any more: the broker redelivers them).
    ``storage_down`` is set while writes fail, for the consumer thread to
    stop taking messages.
    """

    def __init__(self, storage: Connection, settings: WriterSettings, stop: threading.Event,
                 *, name: str = "worker", metrics: Metrics = DISABLED) -> None:
        self.storage = storage
        self.settings = settings
        self.name = name
        self.metrics = metrics
        self.generation = 0
        self.storage_down = threading.Event()
        self._stop = stop
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="writer")

    def submit(self, items: list[tuple[models.Event, M]],
               starved: frozenset[str] = frozenset()) -> Write[M]:
        """Start writing ``items``' events in the writer thread; never blocks.

        Each message id is written once: a message redelivered within a
        batch is one event.
        """
        events: dict[str, models.Event] = {}
        for event, _message in items:
            events.setdefault(event.message_id, event)
        write = Write(items, list(events.values()), self.generation, starved)
        write.future = self._executor.submit(self._write, write)
        return write

    def forget(self) -> None:
        """The broker connection is gone: writes in flight are of no use any more."""
        self.generation += 1

    def current(self, write: Write[Any]) -> bool:
        """Whether ``write``'s messages came on the broker connection still open."""
        return write.generation == self.generation

    def shutdown(self) -> None:
        """Let the thread end after the write in flight; never waits for it."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _write(self, write: Write[Any]) -> RecordResult:
        """In the writer thread: ``record_events``, retried until the database takes it.

        Retries ``StorageUnavailable`` with capped exponential backoff and
        jitter, one WARNING per failed attempt. Raises ``Abandon`` when a
        stop is requested (or the broker connection that delivered the
        batch is gone) while the database is unavailable: the messages are
        left unacked for the broker. Anything else ``record_events`` raises
        passes through, to the consumer thread.
        """
        settings = self.settings
        backoff = Backoff(settings.retry_interval, settings.retry_max)
        attempt = 0
        while True:
            failure: errors.StorageUnavailable | None = None
            started = time.monotonic()
            try:
                result = self.storage.record_events(write.events)
            except errors.StorageUnavailable as exc:
                failure = exc
            else:
                self.metrics.committed(len(write.events), time.monotonic() - started)
                self.metrics.events_committed(write.events, result.failed)
                self.storage_down.clear()
                return result
            attempt += 1
            self.storage_down.set()
            if self._stop.is_set() or not self.current(write):
                LOG.warning(
                    "%s: giving up a batch while the database is unavailable (%s); its "
                    "%d messages stay unacked and will be redelivered by the broker",
                    self.name, first_line(failure), len(write.items),
                )
                raise Abandon()
            self.metrics.storage_retry()
            delay = backoff.next()
            LOG.warning(
                "%s: writing %d events failed, attempt %d (%s); retrying in %.1fs",
                self.name, len(write.events), attempt, first_line(failure), delay,
            )
            self._stop.wait(delay)
