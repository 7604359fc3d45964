"""The worker loop: RabbitMQ messages in, committed events out, acks after commit.

One ``Consumer`` runs in each worker process and orchestrates the others:

- ``broker.session.Session`` (the consumer thread's only way to the broker):
  consumes, acks and publishes dead letters on a connection of its own;
- ``handling.classify`` decides what becomes of each delivery: store,
  dead-letter, drop (the definitions say so) or ignore (a priority we do
  not store);
- ``batch.Batch`` collects the events; ``writer.Writer`` commits a batch in
  its own thread while the next one fills, and ``writer.settle`` says how
  to ack a committed batch;
- ``windows`` shares the prefetch bound between the queues' consumers;
- ``stats.Summary`` counts and logs.

Only the consumer thread (the one in ``run``) touches the broker. ``stop``
and ``request_reload`` merely set flags that the loop honours at safe
points; the writer thread tells the loop that the database is down through
``Writer.storage_down``.

Failures:

- database unavailable (``StorageUnavailable``): the writer keeps the batch
  and retries with capped exponential backoff and jitter until it succeeds,
  one WARNING per failed attempt; meanwhile the consumers are cancelled so
  no new messages come in (the prefetch bounds what was already on its
  way). Nothing is acked, lost or dead-lettered.
- broker connection lost (either of the two): batches not yet acked are
  forgotten (the broker redelivers those messages to whoever consumes next;
  ``record_events`` skips what was already committed) and the worker
  reconnects with backoff, trying every host of ``transport_url`` in turn.
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

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from panko_collector import errors
from panko_collector.broker import dead_letters, transport
from panko_collector.broker.session import Session
from panko_collector.broker.topology import Topology
from panko_collector.ingest import handling
from panko_collector.ingest.batch import Batch
from panko_collector.ingest.handling import Converter, Decode, Delivery
from panko_collector.ingest.refused import RefusedDeadLetters
from panko_collector.ingest.settings import Settings
from panko_collector.ingest.stats import Stats, Summary
from panko_collector.ingest.windows import Windows, worth_rebalancing
from panko_collector.ingest.writer import Abandon, Backoff, Write, Writer, settle
from panko_collector.metrics import DISABLED, Metrics
from panko_collector.storage import Connection, models

LOG = logging.getLogger(__name__)

#: Seconds between heartbeat checks and stop-flag checks while idle.
_TICK = 0.5
#: Seconds between checks for a finished write while one is in flight.
_POLL = 0.01

_Item = tuple[models.Event, Delivery]


class Consumer:
    """Consume the configured queues into ``storage`` until ``stop`` is called.

    ``run`` returns after a requested stop, once the current batch is written
    and acked (or, if the database is down at that moment, left unacked for
    the broker to redeliver). It raises ``BrokerRefused`` when RabbitMQ
    refuses us for good (credentials, vhost, queue declarations, a denied
    feature), and lets unexpected errors through so the worker dies and is
    replaced; it never raises for broker or database outages, which it
    waits out.

    ``conf`` is read here and again on a reload only; the loop runs on the
    ``Settings`` built from it. ``converter_factory`` builds the converter
    of a reload (None: nothing new); ``on_consuming`` is called each time
    consuming (re)starts, e.g. to report readiness.
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
        self.converter = converter
        self.decode = decode
        self.converter_factory = converter_factory
        self.name = name
        self.on_consuming = on_consuming
        self.metrics = metrics
        self.url = transport.parse_url(conf.transport_url)
        self.settings = Settings.from_conf(conf)
        #: What to declare and consume: fixed for the life of the worker.
        self.topology = Topology.from_conf(conf)
        self.summary = Summary(name, LOG)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._reload = threading.Event()
        self._batch: Batch[_Item] = Batch(self.settings.batch_size, self.settings.batch_timeout)
        self._writer = Writer(storage, self.settings.writer, self._stop, name=name,
                              metrics=metrics)
        self._session: Session | None = None
        self._inflight: Write[Delivery] | None = None
        #: Why consuming is paused: "storage" (the database is down),
        #: "budget" (too many messages of cancelled consumers still unacked
        #: to give every queue a window), "stop"; None while consuming.
        self._paused: str | None = None
        self._last_heartbeat = 0.0
        #: The prefetch window of each running consumer, and the traffic they follow.
        self._windows = Windows(name)
        #: Dead letters the broker nacked: originals unacked, retried later.
        self._refused: RefusedDeadLetters[Delivery] = RefusedDeadLetters(
            Backoff(self.settings.broker_retry_interval, self.settings.broker_retry_max))

    # -- what tests and diagnostics look at ---------------------------------------

    @property
    def stats(self) -> Stats:
        """Counters since the last periodic summary."""
        return self.summary.stats

    @property
    def totals(self) -> Stats:
        """Counters of the summaries logged so far (all of them once ``run`` returned)."""
        return self.summary.totals

    @property
    def _conn(self) -> Any:
        """The consuming kombu connection while connected, else None."""
        return self._session.connection if self._session is not None else None

    @property
    def _reader(self) -> Any:
        """The read-ahead of the consuming connection, where installed."""
        return self._session.reader if self._session is not None else None

    # -- control, from any thread ---------------------------------------------------

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the loop to finish; wait until it has. True if it did in time.

        The loop stops taking messages, writes and acks what it holds (or,
        with the database down, gives it up unacked), closes the broker
        connections, and ``run`` returns. Safe from any thread, before
        ``run`` too (it then returns at once).
        """
        self._stop.set()
        return self._stopped.wait(timeout)

    def request_reload(self) -> None:
        """Re-read the configuration and definitions at the next safe point.

        Safe from any thread. An unreadable file or rejected definitions
        are logged and the old ones kept.
        """
        self._reload.set()

    # -- the loop -------------------------------------------------------------------

    def run(self) -> None:
        """Consume until ``stop``: connect, consume, write, ack; reconnect on outages.

        A lost broker connection forgets what was not acked (the broker
        redelivers it) and reconnects after a capped exponential backoff
        with jitter; a database outage is waited out inside (see
        ``Writer``). Raises ``BrokerRefused`` for a permanent refusal,
        ``LibraryIncompatible`` when a safety hook cannot be installed, and
        whatever unexpected the storage or the code raises: the worker dies
        and its unacked messages are redelivered.
        """
        backoff = Backoff(self.settings.broker_retry_interval, self.settings.broker_retry_max)
        try:
            while not self._stop.is_set():
                failure: errors.BrokerUnavailable | None = None
                try:
                    self._connect()
                    backoff.reset()
                    self._consume()
                except errors.BrokerUnavailable as exc:
                    failure = exc
                except Abandon:
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
                    self._writer.forget()
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
            self._writer.shutdown()
            self.summary.report(final=True)
            self._stopped.set()

    def _connect(self) -> None:
        """Connect, declare, set prefetch and start consuming."""
        # What was refused or batched came on a channel that is gone: the
        # broker redelivers it.
        self._refused.clear()
        self._windows.batch_lost()
        self._paused = None
        session = Session(self.conf, self.url, self.topology, self._on_message,
                          read_ahead=self.settings.read_ahead)
        self._session = session
        session.connect(start=self._start_consuming)
        LOG.info("%s: consuming %d queues on %s", self.name, len(session.queues),
                 session.describe())
        if self.on_consuming is not None:
            self.on_consuming()

    def _consume(self) -> None:
        """Drain deliveries until stopped; write on size or age; write at the end.

        Writing overlaps consuming: while the writer thread commits one
        batch, the next one fills (the prefetch of twice the batch size
        leaves room for exactly that); acks are sent from this thread once
        the commit is done.
        """
        session = self._session
        assert session is not None
        while not self._stop.is_set():
            if self._reload.is_set():
                self._do_reload()
            self._collect()
            # Paused only while a write is actually failing: the flag may
            # be stale (a write given up after a broker loss), and an
            # empty batch would otherwise never probe the database again.
            if self._writer.storage_down.is_set() and self._inflight is not None:
                self._cancel("storage")
            # Waiting for acks that are not a write's: refused dead
            # letters accepted at last.
            if self._paused == "budget":
                self._start_consuming()
            if self._inflight is None and (self._batch.due() or self._windows.full()):
                self._submit()
            if self._inflight is not None:
                timeout = _POLL  # to ack soon after the commit
            else:
                left = self._batch.time_left()
                timeout = _TICK if left is None else min(left, _TICK)
            session.drain(max(timeout, 0.005))
            self._tick()
        # Stop order:
        # 1. stop taking: cancel every consumer, so the broker sends nothing
        #    more (what arrives while it confirms is handled and batched);
        # 2. flush: wait for the write in flight, then write what is left;
        # 3. ack: each write is settled (dead letters, then acks) as it ends;
        # 4. close: ``run`` closes both connections (``_close``), which
        #    hands back to the broker whatever could not be acked.
        self._cancel("stop")
        self._flush_all()

    def _tick(self) -> None:
        now = time.monotonic()
        reason = self._refused.report_due()
        if reason is not None:
            self._report_refused(reason)
        if self._refused.retry_due():
            self._retry_refused()
        if self._session is not None and now - self._last_heartbeat >= _TICK:
            self._last_heartbeat = now
            self._session.heartbeat()
        if self.summary.due(self.settings.summary_interval, now):
            self.summary.report()

    def _close(self) -> None:
        session, self._session = self._session, None
        self._windows.stopped()
        if session is not None:
            session.close()

    # -- prefetch windows -------------------------------------------------------------

    def _start_consuming(self) -> bool:
        """Start one consumer per queue; False if the bound leaves too little yet.

        Per consumer prefetch (global=false): RabbitMQ 4.3 refuses a
        per-channel limit. Each queue's consumer gets a window, and the
        windows add up to prefetch_count less what the worker already holds
        unacked from cancelled consumers (no window counts those any more),
        so the worker never holds more than prefetch_count messages. When
        that leaves less than one slot per queue, consuming waits for acks
        (``_collect`` and the loop call again while paused for that).

        Deliveries of the consumers already started arrive while the next
        one waits for its ConsumeOk; they are handled there, as anywhere
        else (handling never starts or cancels a consumer).
        """
        session = self._session
        assert session is not None
        queues = session.queues
        held = self._unacked()
        budget = self.settings.prefetch_count - held
        if held and budget < len(queues):
            self._paused = self._paused or "budget"
            return False
        windows = self._windows.plan(budget, queues, self.settings.prefetch_count)
        for queue in queues:
            session.consume(queue, windows[queue], self._windows.start(queue, windows[queue]))
        self._paused = None
        return True

    def _cancel(self, why: str) -> None:
        """Cancel every consumer: the broker sends nothing more.

        What they delivered stays unacked on the channel and can still be
        acked, but RabbitMQ no longer counts it in any window (a consumer
        started later gets its whole window however much is unacked): it
        still counts in the worker's bound, see :meth:`_start_consuming`.
        """
        if self._windows.running and self._paused is None:
            assert self._session is not None
            self._session.cancel()
            self._windows.stopped()
            self._paused = why

    def _unacked(self) -> int:
        """Messages this worker holds unacked: batched, being written, refused dead letters."""
        inflight = len(self._inflight.items) if self._inflight is not None else 0
        return len(self._batch) + inflight + len(self._refused)

    def _rebalancing(self, write: Write[Delivery]) -> dict[str, int] | None:
        """Before ``write`` is acked: cancel the consumers if their windows should change.

        Returns the windows they had, or None (nothing cancelled); ``_collect``
        starts them again with new windows once the batch is acked.

        Equal shares of prefetch_count leave a busy queue among quiet ones
        (notifications.info among seven priorities) a small window: small
        batches, many more commits, while the quiet queues' shares sit
        unused. A consumer's window cannot change while it runs (basic.qos
        with global=false applies to consumers started after it), so every
        consumer is cancelled and started again with windows shared by
        recent demand. Cancelled before the ack that ends the starvation:
        acked first, the starved queue would at once be sent a window's
        worth more, which the cancelled consumer's messages would then take
        from the new windows until their own batch is acked. Cancelled
        first, the new windows get what the worker holds least: all but
        what came from the other queues during the commit.
        """
        if (not write.starved or self._paused is not None or self._stop.is_set()
                or not self._writer.current(write)):
            return None
        assert self._session is not None
        current = self._windows.current()
        # ``write`` is out of _unacked() already: its messages are about to be acked.
        planned = self._windows.plan(self.settings.prefetch_count - self._unacked(),
                                     self._session.queues, self.settings.prefetch_count)
        if not worth_rebalancing(current, planned, write.starved):
            return None
        self._cancel("budget")
        return current

    # -- per message ------------------------------------------------------------------

    def _on_message(self, message: Delivery) -> None:
        """The session's callback: classify one delivery and act on the outcome.

        Never starts or cancels a consumer (it may run while one starts or
        is cancelled). Raises only ``BrokerUnavailable`` (a dead letter or
        an ack could not be sent) and bugs.
        """
        self.summary.stats.messages += 1
        info = message.delivery_info or {}
        self.metrics.received(info)
        settings = self.settings
        outcome = handling.classify(
            message.body, message.content_type, message.content_encoding, message.headers,
            str(info.get("routing_key", "")), decode=self.decode,
            converter=self.converter, priorities=settings.priorities,
            max_bytes=settings.max_message_bytes)
        if type(outcome) is handling.Store:
            self._batch.add((outcome.event, message))
            self._windows.delivered(str(info.get("consumer_tag", "")))
        elif type(outcome) is handling.DeadLetter:
            if outcome.reason == "convert-failed":
                LOG.warning("%s: conversion of %s failed: %s", self.name,
                            outcome.message_id, outcome.detail)
            self._dead_letter(message, outcome.reason, outcome.detail)
        elif outcome is handling.IGNORE:
            self._ack(message)
            self.summary.stats.ignored += 1
            self.metrics.ignored()
        else:
            self._ack(message)
            self.summary.stats.dropped += 1
            self.metrics.dropped()

    def _ack(self, message: Delivery, multiple: bool = False) -> None:
        assert self._session is not None
        self._session.ack(message, multiple)

    # -- dead letters -------------------------------------------------------------------

    def _dead_letter(self, message: Delivery, reason: str, error: str) -> None:
        """Publish a copy to the dead-letter exchange (confirmed), then ack the original;
        keep the original unacked when the broker refuses the copy."""
        assert self._session is not None
        headers = dead_letters.headers(reason, error, message.delivery_info, message.headers,
                                       self._session.frame_max)
        if self._send_dead_letter(message, headers):
            LOG.debug("%s: dead-lettered a message: %s: %s", self.name, reason, error)
        else:
            self._keep_refused(message, headers)

    def _send_dead_letter(self, message: Delivery, headers: dict[str, Any]) -> bool:
        """Publish the copy, then ack the original; False (nothing acked) if nacked."""
        assert self._session is not None
        if not self._session.publish_dead_letter(message, headers,
                                                 self.settings.dead_letter_exchange):
            return False
        self._ack(message)
        self.summary.stats.dead_lettered += 1
        self.metrics.dead_lettered(headers["reason"])
        return True

    def _keep_refused(self, message: Delivery, headers: dict[str, Any]) -> None:
        """The broker nacked the dead letter: keep the original unacked, retry later
        (see ``refused``). The ERROR is logged by ``_tick``, outside any
        exception handler (oslo.log would append that exception to the line).
        """
        self.metrics.dead_letter_refused()
        self._refused.keep(message, headers)

    def _report_refused(self, reason: str) -> None:
        """One ERROR per episode of refused dead letters."""
        LOG.error(
            "%s: RabbitMQ refused a dead letter (%s) for the dead-letter queue %r: it "
            "is full under its max-length/max-length-bytes policy with overflow "
            "reject-publish (rabbitmqctl list_queues -p %s name policy messages); the "
            "message stays unacked and is retried with backoff while the others are "
            "stored. Empty the queue or raise the policy's limit",
            self.name, reason, self.settings.dead_letter_queue,
            self.url.virtual_host or "/",
        )

    def _retry_refused(self) -> None:
        """Publish the refused dead letters again, in order, until one is refused."""
        refused = self._refused.take()
        for done, (message, headers) in enumerate(refused):
            if not self._send_dead_letter(message, headers):
                self.metrics.dead_letter_refused()
                delay = self._refused.still_refused(refused[done:])
                LOG.warning("%s: the dead-letter queue %r still refuses; %d messages "
                            "stay unacked, next try in %.1fs", self.name,
                            self.settings.dead_letter_queue, len(self._refused), delay)
                return
        self._refused.accepted()
        LOG.info("%s: the dead-letter queue %r accepts again: %d messages dead-lettered",
                 self.name, self.settings.dead_letter_queue, len(refused))

    # -- writing ------------------------------------------------------------------------

    def _submit(self) -> None:
        """Hand the batch to the writer thread; its messages stay unacked."""
        starved = self._windows.full()
        items = self._batch.take()
        self._windows.batch_taken()
        self._inflight = self._writer.submit(items, starved)

    def _collect(self, wait: bool = False) -> None:
        """Settle the messages of a finished write; resume consuming if paused.

        Raises what the write raised: ``Abandon`` when it gave up because
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
        stats = self.summary.stats
        stats.stored += result.stored
        # Redeliveries inside one batch count as duplicates too.
        duplicates = result.duplicates + len(write.items) - len(write.events)
        stats.duplicates += duplicates
        self.metrics.stored(result.stored, duplicates)
        if self._stop.is_set() or not self._writer.current(write):
            return
        if self._paused is not None:
            was = self._paused
            if not self._start_consuming():
                return
            if was == "storage":
                LOG.info("%s: database available again; consuming", self.name)
            elif current is not None:
                LOG.debug("%s: prefetch windows %s (were %s)", self.name,
                          self._windows.current(), current)

    def _settle(self, write: Write[Delivery], failed: dict[str, str]) -> None:
        """Dead-letter the refused messages of a committed batch, then ack the rest
        (see ``writer.Settlement.acks`` for why one multiple ack is right)."""
        items = write.items
        plan = settle([(message.delivery_tag, event.message_id) for event, message in items],
                      failed)
        for position, reason in plan.dead_letters:
            self._dead_letter(items[position][1], "store-failed", reason)
        # Tags are per channel: a batch of an earlier connection is never
        # acked on this one (``run`` forgets it; the generation says so).
        if not self._writer.current(write):
            return
        positions, multiple = plan.acks(refused_waiting=bool(self._refused))
        for position in positions:
            self._ack(items[position][1], multiple)

    def _flush_all(self) -> None:
        """Wait for the write in flight, then write and ack what is left."""
        self._collect(wait=True)
        if len(self._batch):
            self._submit()
            self._collect(wait=True)

    # -- configuration --------------------------------------------------------------------

    def _do_reload(self) -> None:
        """Re-read the files; apply what may change without a restart.

        The priorities stored stay those the worker started with, like the
        queues it consumes.
        """
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
        self.settings = dataclasses.replace(Settings.from_conf(self.conf),
                                            priorities=self.settings.priorities)
        self._writer.settings = self.settings.writer
        self._batch.max_size = self.settings.batch_size
        self._batch.max_age = self.settings.batch_timeout

