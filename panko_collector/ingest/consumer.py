"""The worker loop: RabbitMQ messages in, committed events out, acks after commit.

One ``Consumer`` runs in each worker process. Its consumer thread owns the
broker connection: only it touches the channel (acks, publishes to the
dead-letter exchange). A single writer thread owns the storage connection
and runs ``record_events``, so that one batch is committed while the next one
fills. ``stop`` and ``request_reload`` merely set flags that the loop
honours at safe points.

Per message: decode -> check its priority -> convert -> add to the batch.
A batch is handed to the writer when it is full or old enough; once it is
committed, every message in it is acked (by one multiple ack). Undecodable
messages, messages the converter chokes on, and events the database refuses
are published to the dead-letter exchange with headers saying why and the
original's own (``dead_letters``), then acked. Dropped notifications
(definitions) and priorities we were not asked to store are acked and
counted.

Failures:

- database unavailable (``StorageUnavailable``): the writer keeps the batch
  and retries with capped exponential backoff and jitter until it succeeds,
  one WARNING per failed attempt; meanwhile the consumers are cancelled so
  no new messages come in (the prefetch bounds what was already on its
  way). Nothing is acked, lost or dead-lettered.
- broker connection lost: batches not yet acked are forgotten (the broker
  redelivers those messages to whoever consumes next; ``record_events``
  skips what was already committed) and the worker reconnects with backoff,
  trying every host of ``transport_url`` in turn.
- dead-letter queue full (the broker nacks the dead-letter publish, as a
  ``max-length`` policy with ``overflow: reject-publish`` makes it do): the
  original stays unacked, one ERROR names the queue, and the publish is
  retried with backoff while the other messages keep flowing.
- ``BrokerRefused`` (``QueueMismatch``, wrong credentials, missing vhost, a
  feature the broker denies) and any unexpected error leave ``run`` as
  exceptions: the worker process dies, the service manager starts a new
  one, and the unacked messages are redelivered.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, Protocol

import amqp.exceptions
import kombu
import kombu.exceptions
from oslo_config import cfg

from panko_collector import errors
from panko_collector.broker import dead_letters, read_ahead, topology, transport
from panko_collector.compat import kombu_hooks
from panko_collector.conversion import decoder
from panko_collector.ingest.batch import Batch
from panko_collector.metrics import DISABLED, Metrics
from panko_collector.storage import Connection, RecordResult, models

LOG = logging.getLogger(__name__)

#: Seconds between heartbeat checks and stop-flag checks while idle.
_TICK = 0.5
#: Seconds between checks for a finished write while one is in flight.
_POLL = 0.01
#: A starved queue's consumer is restarted with a new window only when the
#: window would at least double: each restart costs a few round trips and
#: turns what that consumer holds into slots no window can use until acked,
#: so small corrections would churn for nothing.
_GROWTH = 2


def share_windows(budget: int, demand: Mapping[str, float], floor: int) -> dict[str, int]:
    """Split ``budget`` prefetch slots between queues, in proportion to ``demand``.

    Every queue gets at least ``floor`` (lowered to what the budget allows)
    so that a quiet queue is still consumed and its first burst seen; the
    rest goes by demand (recent deliveries per queue), or evenly when
    nothing is known. The windows add up to exactly ``budget`` (largest
    remainders get the slots rounding leaves), so the worker may hold
    ``budget`` messages and no more. With fewer slots than queues every
    queue gets 1: a window of 0 would mean no limit at all.
    """
    names = list(demand)
    if budget < len(names):
        return dict.fromkeys(names, 1)
    floor = min(max(1, floor), budget // len(names))
    spare = budget - floor * len(names)
    weights = {q: max(0.0, d) for q, d in demand.items()}
    total = sum(weights.values())
    if total <= 0:
        weights, total = dict.fromkeys(names, 1.0), float(len(names))
    shares = {q: spare * w / total for q, w in weights.items()}
    windows = {q: floor + int(shares[q]) for q in names}
    left = budget - sum(windows.values())
    for q in sorted(names, key=lambda q: shares[q] - int(shares[q]), reverse=True)[:left]:
        windows[q] += 1
    return windows


def worth_rebalancing(current: Mapping[str, int], planned: Mapping[str, int],
                      starved: Iterable[str]) -> bool:
    """Whether a queue whose window filled up would get at least ``_GROWTH`` times it."""
    return any(planned.get(q, 0) >= _GROWTH * current.get(q, 0) for q in starved)


class Converter(Protocol):
    def convert(self, notification: Any, received: Any = None) -> models.Event | None: ...


Decode = Callable[[bytes], Any]


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
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class Backoff:
    """Capped exponential backoff with full jitter: uniform(0, min(cap, base * 2**n)).

    Jitter spreads the retries of many workers so that a database coming
    back is not hit by all of them at the same instant. ``floor`` keeps a
    minimum pause so that a hopeless retry never spins.
    """

    def __init__(self, base: float, cap: float, floor: float = 0.1) -> None:
        self.base, self.cap, self.floor = base, cap, floor
        self.attempts = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempts))
        self.attempts += 1
        return max(self.floor, random.uniform(ceiling / 2, ceiling))

    def reset(self) -> None:
        self.attempts = 0


def _first_line(exc: BaseException | None) -> str:
    """Drivers add hint paragraphs to their messages; one line per attempt is enough."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(eq=False)
class _Write:
    """A batch handed to the writer thread, and its messages to ack after."""

    items: list[tuple[models.Event, Any]]
    events: list[models.Event]
    generation: int
    #: Queues whose half window was in the batch when it was handed over.
    starved: frozenset[str] = frozenset()
    future: Future[RecordResult] | None = None


class _Abandon(Exception):
    """Stop was requested while the database was down: leave without acking."""


class Consumer:
    """Consume the configured queues into ``storage`` until ``stop`` is called.

    ``run`` returns after a requested stop, once the current batch is written
    and acked (or, if the database is down at that moment, left unacked for
    the broker to redeliver). It raises ``BrokerRefused`` when RabbitMQ
    refuses us for good (credentials, vhost, queue declarations, a denied
    feature), and lets unexpected errors through so
    the worker dies and is replaced; it never raises for broker or database
    outages, which it waits out.
    """

    def __init__(
        self,
        conf: cfg.ConfigOpts,
        storage: Connection,
        converter: Converter,
        decode: Decode,
        *,
        converter_factory: Callable[[cfg.ConfigOpts], Converter | None] | None = None,
        name: str = "worker",
        on_consuming: Callable[[], None] | None = None,
        metrics: Metrics = DISABLED,
    ) -> None:
        self.conf = conf
        self.storage = storage
        self.converter = converter
        self.decode = decode
        self.converter_factory = converter_factory
        self.name = name
        #: Called each time consuming (re)starts, e.g. to report readiness.
        self.on_consuming = on_consuming
        self.metrics = metrics
        self.url = transport.parse_url(conf.transport_url)
        self.stats = Stats()
        self.totals = Stats()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._reload = threading.Event()
        # Fixed for the life of the consumer, like the queues it consumes: a
        # priority whose queue is consumed is stored, whatever a reload says.
        self.priorities = frozenset(p.lower() for p in conf.collector.priorities)
        self._apply_settings()
        self._batch: Batch[tuple[models.Event, kombu.Message]] = Batch(
            self.batch_size, self.batch_timeout
        )
        self._conn: kombu.Connection | None = None
        self._reader: read_ahead.ReadAhead | None = None
        self._channel: Any = None
        self._queues: list[kombu.Queue] = []
        #: One kombu consumer per queue: each has a window of its own.
        self._consumers: list[kombu.Consumer] = []
        self._producer: kombu.Producer | None = None
        #: Why consuming is paused: "storage" (the database is down),
        #: "budget" (too many messages of cancelled consumers still unacked
        #: to give every queue a window); None while consuming.
        self._paused: str | None = None
        self._serial = 0
        #: Deliveries waiting while another is handled or consume() starts.
        self._held: collections.deque[kombu.Message] = collections.deque()
        self._handling = False
        # One writer thread: it alone uses the storage connection.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="writer")
        self._inflight: _Write | None = None
        self._generation = 0
        self._storage_down = threading.Event()
        self._last_heartbeat = 0.0
        self._last_report = time.monotonic()
        #: (queue name, window) of each running consumer, by its tag prefix.
        self._windows: dict[str, tuple[str, int]] = {}
        #: Messages of the current batch per consumer (tag prefix), to see a window fill.
        self._in_batch: collections.Counter[str] = collections.Counter()
        #: Recent messages batched per queue name, halved at each batch: what
        #: the windows are shared by.
        self._demand: dict[str, float] = {}
        #: Dead letters the broker nacked: originals unacked, retried later.
        self._refused: list[tuple[kombu.Message, dict[str, Any]]] = []
        self._refused_backoff = Backoff(
            conf.oslo_messaging_rabbit.rabbit_retry_interval,
            conf.oslo_messaging_rabbit.rabbit_interval_max)
        self._refused_retry_at = 0.0
        self._refused_reported = True

    # -- control, from any thread -------------------------------------------

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to finish; wait until it has. True if it did in time."""
        self._stop.set()
        return self._stopped.wait(timeout)

    def request_reload(self) -> None:
        """Re-read the configuration and definitions at the next safe point."""
        self._reload.set()

    # -- the loop -------------------------------------------------------------

    def run(self) -> None:
        backoff = Backoff(
            self.conf.oslo_messaging_rabbit.rabbit_retry_interval,
            self.conf.oslo_messaging_rabbit.rabbit_interval_max,
        )
        try:
            while not self._stop.is_set():
                failure: errors.BrokerUnavailable | None = None
                try:
                    self._connect()
                    backoff.reset()
                    self._consume()
                except errors.BrokerUnavailable as exc:
                    failure = exc
                except _Abandon:
                    break
                finally:
                    self._close()
                if failure is not None:
                    self.metrics.broker_reconnect()
                    # Logged outside the except block: oslo.log would append
                    # the exception a second time.
                    # The channel that delivered these messages is gone, so
                    # they cannot be acked; the broker hands them out again.
                    # A write still in flight finishes (or gives up) unseen.
                    self._generation += 1
                    stale, self._inflight = self._inflight, None
                    lost = len(self._batch.take()) + (len(stale.items) if stale else 0)
                    delay = backoff.next()
                    LOG.warning(
                        "%s: broker unavailable (%s); %d unacked messages will be "
                        "redelivered; reconnecting in %.1fs",
                        self.name, failure, lost, delay,
                    )
                    self._stop.wait(delay)
        finally:
            self._writer.shutdown(wait=False, cancel_futures=True)
            self._report(final=True)
            self._stopped.set()

    def _connect(self) -> None:
        """Connect, declare, set prefetch and start consuming."""
        conn = transport.connection(self.conf, self.url)
        self._conn = conn
        # Came on a channel that is gone: the broker redelivers them.
        self._held.clear()
        self._refused.clear()
        self._in_batch.clear()
        try:
            transport.ensure_connected(conn, self.url)
            self._reader = (read_ahead.install(conn) if self.conf.collector.read_ahead
                            else None)
            channel = conn.channel()
            kombu_hooks.raw_bodies(channel)
            declared = topology.declare(self.conf, channel)
            self._channel = channel
            self._queues = declared
            self._producer = kombu.Producer(channel)
            self._start_consuming()
        except errors.BrokerRefused:
            raise
        except self._broker_errors() as exc:
            refused = transport.refusal(exc, self.url)
            if refused is not None:
                raise refused from exc
            raise errors.BrokerUnavailable(
                f"{self.url.masked()}: {transport.describe(exc)}") from exc
        info = conn.info()
        LOG.info(
            "%s: consuming %d queues on %s:%s/%s",
            self.name, len(declared), info.get("hostname"), info.get("port"),
            self.url.virtual_host,
        )
        if self.on_consuming is not None:
            self.on_consuming()

    def _broker_errors(self) -> tuple[type[BaseException], ...]:
        base: tuple[type[BaseException], ...] = (
            kombu.exceptions.OperationalError,
            ConnectionError,
            socket.error,
        )
        if self._conn is None:
            return base
        return base + tuple(self._conn.connection_errors) + tuple(self._conn.channel_errors)

    def _consume(self) -> None:
        """Drain deliveries until stopped; write on size or age; write at the end.

        Writing overlaps consuming: while the writer thread commits one
        batch, the next one fills (the prefetch of twice the batch size
        leaves room for exactly that); acks are sent from this thread once
        the commit is done.
        """
        assert self._conn is not None
        conn = self._conn
        try:
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._do_reload()
                self._collect()
                # Paused only while a write is actually failing: the flag may
                # be stale (a write given up after a broker loss), and an
                # empty batch would otherwise never probe the database again.
                if self._storage_down.is_set() and self._inflight is not None:
                    self._cancel("storage")
                # Waiting for acks that are not a write's: refused dead
                # letters accepted at last.
                if self._paused == "budget":
                    self._start_consuming()
                if self._inflight is None and (self._batch.due() or self._full_windows()):
                    self._submit()
                if self._inflight is not None:
                    timeout = _POLL  # to ack soon after the commit
                else:
                    left = self._batch.time_left()
                    timeout = _TICK if left is None else min(left, _TICK)
                with contextlib.suppress(TimeoutError):
                    read_ahead.drain(conn, self._reader, max(timeout, 0.005))
                self._tick()
            # Stop order: stop taking (cancel, so nothing new is delivered),
            # write what we hold and ack it (_flush_all), then close (run).
            self._cancel("stop")
            self._flush_all()
        except errors.BrokerUnavailable:
            raise
        except self._broker_errors() as exc:
            raise errors.BrokerUnavailable(str(exc) or type(exc).__name__) from exc

    def _full_windows(self) -> frozenset[str]:
        """The queues that sent half their window into the batch.

        With prefetch_count shared between several queues, a queue's window
        can be far below twice batch_size. Written once half its window is
        in, the batch is committed while the other half fills, as the
        default prefetch of twice batch_size does for one queue: written
        only when the window is full, the queue gets nothing during the
        commit, and after it the writer waits for the batch to fill again.
        Neither waits for batch_timeout.
        """
        return frozenset(q for key, (q, window) in self._windows.items()
                         if self._in_batch[key] >= (window + 1) // 2)

    def _tick(self) -> None:
        now = time.monotonic()
        if self._refused and not self._refused_reported:
            self._report_refused()
        if self._refused and now >= self._refused_retry_at:
            self._retry_refused()
        if self._conn is not None and now - self._last_heartbeat >= _TICK:
            self._last_heartbeat = now
            self._conn.heartbeat_check()
        if now - self._last_report >= self.summary_interval:
            self._report()

    def _cancel(self, why: str) -> None:
        """Cancel every consumer: the broker sends nothing more.

        What they delivered stays unacked on the channel and can still be
        acked, but RabbitMQ no longer counts it in any window (a consumer
        started later gets its whole window however much is unacked): it
        still counts in the worker's bound, see :meth:`_start_consuming`.
        """
        if self._consumers and self._paused is None:
            with self._holding():  # cancel() waits for CancelOk
                for consumer in self._consumers:
                    consumer.cancel()
                self._consumers = []
                self._windows = {}
                self._paused = why

    def _unacked(self) -> int:
        """Messages this worker holds unacked: batched, being written, waiting."""
        inflight = len(self._inflight.items) if self._inflight is not None else 0
        return len(self._batch) + inflight + len(self._held) + len(self._refused)

    def _rebalancing(self, write: _Write) -> dict[str, int] | None:
        """Before ``write`` is acked: cancel the consumers if their windows should change.

        Returns the windows they had, or None (nothing cancelled); ``_collect``
        starts them again with new windows once the batch is acked.

        Equal shares of prefetch_count leave a busy queue among quiet ones
        (notifications.info among seven priorities) a window of 142 at the
        defaults: batches of 71, seven times as many commits as batches of
        batch_size, while the quiet queues' shares sit unused. A consumer's
        window cannot change while it runs (basic.qos with global=false
        applies to consumers started after it), so every consumer is
        cancelled and started again with windows shared by recent demand.
        Cancelled before the ack that ends the starvation: acked first, the
        starved queue would at once be sent a window's worth more, which the
        cancelled consumer's messages would then take from the new windows
        until their own batch is acked. Cancelled first, the new windows get
        what the worker holds least: all but what came from the other queues
        during the commit.
        """
        if (not write.starved or self._paused is not None or self._stop.is_set()
                or write.generation != self._generation):
            return None
        current = {q: w for q, w in self._windows.values()}
        # ``write`` is out of _unacked() already: its messages are about to be acked.
        planned = share_windows(self.prefetch_count - self._unacked(), self._demand_now(),
                                self._floor())
        if not worth_rebalancing(current, planned, write.starved):
            return None
        self._cancel("budget")
        return current

    def _demand_now(self) -> dict[str, float]:
        return {q.name: self._demand.get(q.name, 0.0) for q in self._queues}

    def _floor(self) -> int:
        """The least window of a queue: a quiet queue keeps a small share."""
        return max(1, int(self.prefetch_count) // (8 * max(1, len(self._queues))))

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._reader = None
        self._producer = None
        self._channel = None
        self._consumers = []
        self._windows = {}
        if conn is not None:
            try:
                conn.release()
            except Exception:
                LOG.debug("%s: error while closing the broker connection", self.name,
                          exc_info=True)

    # -- per message ----------------------------------------------------------

    def _start_consuming(self) -> bool:
        """Start one consumer per queue; False if the bound leaves too little yet.

        Per consumer prefetch (global=false): RabbitMQ 4.3 refuses a
        per-channel limit. Each queue's consumer gets a window, and the
        windows add up to prefetch_count less what the worker already holds
        unacked from cancelled consumers (no window counts those any more),
        so the worker never holds more than prefetch_count messages. When
        that leaves less than one slot per queue, consuming waits for acks
        (``_collect`` and the loop call again while paused for that).

        ``consume()`` waits for a ConsumeOk while messages of the queues
        already consumed arrive; see :meth:`_deliver`.
        """
        assert self._channel is not None
        held = self._unacked()
        budget = self.prefetch_count - held
        if held and budget < len(self._queues):
            self._paused = self._paused or "budget"
            return False
        windows = share_windows(budget, self._demand_now(), self._floor())
        with self._holding():
            for queue in self._queues:
                self._serial += 1
                # kombu names the consumer tag prefix + a counter: the prefix
                # tells which consumer (and window) a delivery came from.
                prefix = f"{self.name}/{self._serial}/"
                # Applies to the consumers started after it: this one.
                self._channel.basic_qos(0, windows[queue.name], False)
                consumer = kombu.Consumer(self._channel, [queue], on_message=self._deliver,
                                          no_ack=False, auto_declare=False, tag_prefix=prefix)
                consumer.consume()
                self._consumers.append(consumer)
                self._windows[prefix] = (queue.name, windows[queue.name])
            self._paused = None
        return True

    @staticmethod
    def _consumer_key(message: kombu.Message) -> str:
        """The tag prefix of the consumer that delivered ``message``."""
        tag = str((message.delivery_info or {}).get("consumer_tag", ""))
        return tag.rpartition("/")[0] + "/"

    def _deliver(self, message: kombu.Message) -> None:
        """kombu's callback: handle ``message`` now, or after the one in hand.

        Handling a message may wait for the broker (the publisher confirm of
        a dead letter), and py-amqp dispatches deliveries from inside that
        wait. Handled there, a second dead letter would wait inside the first
        one's wait and take its confirm: the worker hung for ever. So a
        delivery that arrives while another is handled waits its turn (at
        most prefetch_count of them).
        """
        self._held.append(message)
        if not self._handling:
            self._handle_held()

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """Deliveries that arrive inside this block (while we wait for the
        broker) are handled after it; see :meth:`_deliver`."""
        was, self._handling = self._handling, True
        try:
            yield
        finally:
            self._handling = was
        if not was:
            self._handle_held()

    def _handle_held(self) -> None:
        self._handling = True
        try:
            while self._held:
                self._on_message(self._held.popleft())
        finally:
            self._handling = False

    def _on_message(self, message: kombu.Message) -> None:
        self.stats.messages += 1
        self.metrics.received(message.delivery_info)
        try:
            # Size, content type and compression first: the body is not even
            # parsed when any of them is wrong.
            decoder.check_delivery(len(message.body), message.content_type,
                                   message.content_encoding, message.headers,
                                   self.max_message_bytes)
            notification = self.decode(message.body)
        except errors.DecodeError as exc:
            self._dead_letter(message, exc.reason, exc.detail)
            return
        # A message without a priority field has the one its routing key names.
        priority = notification.priority or str(
            (message.delivery_info or {}).get("routing_key", "")
        ).rpartition(".")[2].lower()
        if priority not in self.priorities:
            message.ack()
            self.stats.ignored += 1
            self.metrics.ignored()
            return
        try:
            event = self.converter.convert(notification)
        except Exception as exc:
            LOG.warning("%s: conversion of %s failed: %r", self.name,
                        getattr(notification, "message_id", "?"), exc)
            self._dead_letter(message, "convert-failed", repr(exc))
            return
        if event is None:
            message.ack()
            self.stats.dropped += 1
            self.metrics.dropped()
            return
        self._batch.add((event, message))
        key = self._consumer_key(message)
        self._in_batch[key] += 1
        if key in self._windows:
            queue = self._windows[key][0]
            self._demand[queue] = self._demand.get(queue, 0.0) + 1

    def _dead_letter(self, message: kombu.Message, reason: str, error: str) -> None:
        """Publish a copy to the dead-letter exchange (confirmed), then ack the original."""
        assert self._producer is not None
        headers = dead_letters.headers(reason, error, message.delivery_info, message.headers,
                                       self._producer.channel.connection.frame_max)
        if self._send_dead_letter(message, headers):
            LOG.debug("%s: dead-lettered a message: %s: %s", self.name, reason, error)
        else:
            self._keep_refused(message, headers)

    def _send_dead_letter(self, message: kombu.Message, headers: dict[str, Any]) -> bool:
        """Publish the copy, then ack the original; False (nothing acked) if nacked."""
        with self._holding():
            try:
                self._publish_dead_letter(message, headers)
            except amqp.exceptions.MessageNacked:
                return False
            message.ack()
            self.stats.dead_lettered += 1
        self.metrics.dead_lettered(headers["reason"])
        return True

    def _keep_refused(self, message: kombu.Message, headers: dict[str, Any]) -> None:
        """The broker nacked the dead letter: keep the original unacked, retry later.

        Only a full dead-letter queue under a policy with ``overflow:
        reject-publish`` makes RabbitMQ nack. Acking the original would lose
        it; raising would kill the worker, and the redelivered message would
        kill the next one. The ERROR is logged by ``_tick``, outside the
        handler of the decode error that got us here (oslo.log would append
        that exception to the line).
        """
        self.metrics.dead_letter_refused()
        if not self._refused:
            self._refused_retry_at = time.monotonic() + self._refused_backoff.next()
            self._refused_reported = False
        self._refused.append((message, headers))

    def _report_refused(self) -> None:
        """One ERROR per episode of refused dead letters."""
        self._refused_reported = True
        LOG.error(
            "%s: RabbitMQ refused a dead letter (%s) for the dead-letter queue %r: it "
            "is full under its max-length/max-length-bytes policy with overflow "
            "reject-publish (rabbitmqctl list_queues -p %s name policy messages); the "
            "message stays unacked and is retried with backoff while the others are "
            "stored. Empty the queue or raise the policy's limit",
            self.name, self._refused[0][1]["reason"], self.conf.collector.dead_letter_queue,
            self.url.virtual_host or "/",
        )

    def _retry_refused(self) -> None:
        """Publish the refused dead letters again, in order, until one is refused."""
        refused, self._refused = self._refused, []
        done = 0
        while done < len(refused):
            if not self._send_dead_letter(*refused[done]):
                self.metrics.dead_letter_refused()
                # Ahead of any refused meanwhile (by deliveries held above).
                self._refused = refused[done:] + self._refused
                delay = self._refused_backoff.next()
                self._refused_retry_at = time.monotonic() + delay
                LOG.warning("%s: the dead-letter queue %r still refuses; %d messages "
                            "stay unacked, next try in %.1fs", self.name,
                            self.conf.collector.dead_letter_queue, len(self._refused), delay)
                return
            done += 1
        self._refused_backoff.reset()
        LOG.info("%s: the dead-letter queue %r accepts again: %d messages dead-lettered",
                 self.name, self.conf.collector.dead_letter_queue, done)

    def _publish_dead_letter(self, message: kombu.Message, headers: dict[str, Any]) -> None:
        assert self._producer is not None
        self._producer.publish(
            message.body,
            exchange=self.conf.collector.dead_letter_exchange,
            routing_key=headers["reason"],
            headers=headers,
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            delivery_mode=2,
            retry=False,
        )

    # -- writing --------------------------------------------------------------

    def _submit(self) -> None:
        """Hand the batch to the writer thread; its messages stay unacked."""
        starved = self._full_windows()
        items = self._batch.take()
        self._in_batch.clear()
        # Halved at each batch: the windows follow the last few batches' mix.
        self._demand = {q: d / 2 for q, d in self._demand.items()}
        events: dict[str, models.Event] = {}
        for event, _message in items:
            events.setdefault(event.message_id, event)
        write = _Write(items, list(events.values()), self._generation, starved)
        write.future = self._writer.submit(self._write, write)
        self._inflight = write

    def _collect(self, wait: bool = False) -> None:
        """Ack (or dead-letter) the messages of a finished write.

        Raises what the write raised: ``_Abandon`` when it gave up because
        of a stop during an outage, anything unexpected from the storage.
        """
        write = self._inflight
        if write is None or write.future is None:
            return
        if not wait and not write.future.done():
            return
        result = write.future.result()
        self._inflight = None
        current = self._rebalancing(write)
        self._settle(write, {f.event.message_id: f.reason for f in result.failed})
        self.stats.stored += result.stored
        # Redeliveries inside one batch count as duplicates too.
        duplicates = result.duplicates + len(write.items) - len(write.events)
        self.stats.duplicates += duplicates
        self.metrics.stored(result.stored, duplicates)
        if self._stop.is_set() or write.generation != self._generation:
            return
        if self._paused is not None:
            was = self._paused
            if not self._start_consuming():
                return
            if was == "storage":
                LOG.info("%s: database available again; consuming", self.name)
            elif current is not None:
                LOG.debug("%s: prefetch windows %s (were %s)", self.name,
                          {q: w for q, w in self._windows.values()}, current)

    def _settle(self, write: _Write, failed: dict[str, str]) -> None:
        """Dead-letter the refused messages of a committed batch, then ack the rest at once.

        One ``basic.ack(multiple=True)`` of the highest delivery tag among
        the stored ones settles every message still unacked on the channel
        up to it. That is exactly the batch's stored messages, because every
        other delivery with a lower tag is already settled: batches fill in
        delivery order and are written one at a time (the previous batch was
        settled before this one was handed over); dropped, ignored and
        undecodable messages are acked, or dead-lettered and acked, as they
        are handled; and the refused ones of this batch are dead-lettered
        and acked first, just below. The tag named must itself be unacked
        (RabbitMQ closes the channel on an unknown one), hence the highest
        of the stored ones, not of the batch. Tags are per channel: a batch
        of an earlier connection never gets here (``run`` forgets it), and
        the generation check keeps it that way. While dead letters refused
        by the broker wait unacked, the stored messages are acked one by one.
        """
        last = None
        stored = []
        for event, message in write.items:
            reason = failed.get(event.message_id)
            if reason is None:
                stored.append(message)
                if last is None or message.delivery_tag > last.delivery_tag:
                    last = message
            else:
                self._dead_letter(message, "store-failed", reason)
        if last is None or write.generation != self._generation:
            return
        if self._refused:
            # Refused dead letters are unacked below ``last``: a multiple
            # ack would settle them too, and they would be lost.
            for message in stored:
                message.ack()
        else:
            last.ack(multiple=True)

    def _flush_all(self) -> None:
        """Wait for the write in flight, then write and ack what is left."""
        self._collect(wait=True)
        if len(self._batch):
            self._submit()
            self._collect(wait=True)

    def _write(self, write: _Write) -> RecordResult:
        """In the writer thread: ``record_events``, retried until the database takes it.

        Raises ``_Abandon`` when a stop is requested (or the broker
        connection that delivered the batch is gone) while the database is
        unavailable: the messages are left unacked for the broker.
        """
        backoff = Backoff(self.storage_retry_interval, self.storage_retry_max)
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
                self._storage_down.clear()
                return result
            attempt += 1
            # Tells the consumer thread to stop taking messages.
            self._storage_down.set()
            if self._stop.is_set() or write.generation != self._generation:
                LOG.warning(
                    "%s: giving up a batch while the database is unavailable (%s); its "
                    "%d messages stay unacked and will be redelivered by the broker",
                    self.name, _first_line(failure), len(write.items),
                )
                raise _Abandon()
            self.metrics.storage_retry()
            delay = backoff.next()
            LOG.warning(
                "%s: writing %d events failed, attempt %d (%s); retrying in %.1fs",
                self.name, len(write.events), attempt, _first_line(failure), delay,
            )
            self._stop.wait(delay)

    # -- configuration ----------------------------------------------------------

    def _apply_settings(self) -> None:
        c = self.conf.collector
        self.batch_size = c.batch_size
        self.batch_timeout = c.batch_timeout
        self.prefetch_count = c.prefetch_count or 2 * c.batch_size
        self.summary_interval = c.summary_interval
        self.storage_retry_interval = c.storage_retry_interval
        self.storage_retry_max = c.storage_retry_max
        self.max_message_bytes = c.max_message_bytes

    def _do_reload(self) -> None:
        self._reload.clear()
        try:
            self.conf.reload_config_files()
        except Exception as exc:
            LOG.error("%s: reloading the configuration failed, keeping the old one: %s",
                      self.name, exc)
            return
        if self.converter_factory is not None:
            try:
                reloaded = self.converter_factory(self.conf)
            except errors.ConfigError as exc:
                LOG.error("%s: new event definitions rejected, keeping the old ones: %s",
                          self.name, exc)
            else:
                if reloaded is not None:  # None: nothing new to load
                    self.converter = reloaded
                    LOG.info("%s: event definitions reloaded", self.name)
        self._apply_settings()
        self._batch.max_size = self.batch_size
        self._batch.max_age = self.batch_timeout

    def _report(self, final: bool = False) -> None:
        now = time.monotonic()
        elapsed = max(now - self._last_report, 1e-9)
        s = self.stats
        if s.messages or final:
            LOG.info(
                "%s: %d messages in %.0fs (%.1f/s): %d events stored, %d duplicates, "
                "%d dropped, %d ignored priorities, %d dead-lettered",
                self.name, s.messages, elapsed, s.messages / elapsed, s.stored,
                s.duplicates, s.dropped, s.ignored, s.dead_lettered,
            )
        self.totals.add(s)
        self.stats = Stats()
        self._last_report = now
