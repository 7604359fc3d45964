"""Dead letters: see what waits in the dead-letter queue, and send a selection home.

The consumer publishes what it cannot store to ``[collector]
dead_letter_exchange`` with the body as it came, the original's content type
and encoding, and the headers ``dead_letters`` describes: why, where from,
and the original's application headers in a table of their own. Replaying a
dead letter publishes that body, byte for byte, with the dead letter's
properties (content type, encoding, delivery mode) and exactly the
original's application headers (less ``x-delivery-count``, which the broker
sets on a redelivery), to ``original_exchange`` with
``original_routing_key``. A dead letter whose original headers were too
large to keep is not replayed.

How nothing is lost, whatever happens to this process (SIGKILL included):

- The dead-letter queue is read by ``basic.consume`` with manual acks and no
  prefetch limit, so every message present at the start is delivered once
  and stays unacked, owned by the broker, until we settle it.
- A selected message is published with ``mandatory`` set on a connection of
  its own with publisher confirms, up to ``_Target.WINDOW`` before waiting
  for their confirms; only when the broker has confirmed a copy (and not
  returned it as unroutable) is its dead letter acked, by its own delivery
  tag. Killed in between, the messages of that window are in both queues,
  once each; the collector stores each once (``message_id``).
- Every other message (not selected, over ``--limit``, refused by the broker,
  or the whole queue for ``--list`` and ``--dry-run``) is never acked: when
  our connection closes, or dies, the broker requeues it. A classic queue
  (what the collector declares) puts a requeued message back at its
  original position, so those stay in their order, each once. A quorum queue
  returns them in their order ahead of what was never delivered too, but
  counts the return as a delivery (``x-delivery-count``, RabbitMQ 3.x to
  4.2): with an ``x-delivery-limit`` (a default of 20 since RabbitMQ 4.0),
  every listing or replay run spends one of them.
- Only the messages present when the run starts are looked at (the queue's
  ready count then): a message that goes back to the collector and is
  dead-lettered again lands behind them and waits for the next run.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import fnmatch
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import amqp
import amqp.exceptions
import kombu.exceptions
from oslo_config import cfg

from panko_collector import errors
from panko_collector.broker import dead_letters, transport
from panko_collector.conversion import decoder

LOG = logging.getLogger(__name__)

#: Seconds without a delivery after which the queue is asked whether anything is left.
_IDLE = 1.0
#: Event type shown for a body that does not decode.
UNDECODABLE = "(undecodable)"


@dataclass(slots=True)
class DeadLetter:
    """One delivery from the dead-letter queue."""

    delivery_tag: int
    body: bytes
    properties: dict[str, Any]

    @property
    def headers(self) -> dict[str, Any]:
        """The message's AMQP application headers (``{}`` when it has none)."""
        return dict(self.properties.get("application_headers") or {})

    def header(self, name: str) -> str | None:
        """One header as text (bytes decoded, undecodable bytes replaced), or None."""
        value = self.headers.get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return None if value is None else str(value)

    @property
    def reason(self) -> str:
        """Why the collector dead-lettered it (``not-json``, ``convert-failed``...)."""
        return self.header("reason") or "(none)"

    def notification(self) -> decoder.Notification | None:
        """The decoded body, or None when it does not decode (or is compressed)."""
        if self.header("original_compression"):
            return None  # never inflated: a small body can be a bomb
        try:
            return decoder.decode(self.body)
        except errors.DecodeError:
            return None

    def replay_properties(self) -> dict[str, Any]:
        """The properties to publish with: the dead letter's, with the
        original's application headers instead of its own."""
        headers = dead_letters.replay_headers(self.headers)
        props = {k: v for k, v in self.properties.items() if k != "application_headers"}
        if headers:
            props["application_headers"] = headers
        return props


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to replay: any of ``reasons`` (all when empty) and
    an event type matching the glob ``event_type`` (any when None; a body
    that does not decode has no event type, so it never matches one)."""

    reasons: frozenset[str] = frozenset()
    event_type: str | None = None

    @property
    def needs_body(self) -> bool:
        """Whether choosing needs the decoded body: only to match an event type."""
        return self.event_type is not None

    def __call__(self, letter: DeadLetter, event_type: str | None) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.event_type is None:
            return True
        return event_type is not None and fnmatch.fnmatchcase(event_type, self.event_type)


@dataclass(slots=True)
class _Span:
    count: int = 0
    oldest: datetime.datetime | None = None
    newest: datetime.datetime | None = None

    def add(self, timestamp: datetime.datetime | None) -> None:
        self.count += 1
        if timestamp is not None:
            if self.oldest is None or timestamp < self.oldest:
                self.oldest = timestamp
            if self.newest is None or timestamp > self.newest:
                self.newest = timestamp

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count,
                "oldest": self.oldest.isoformat() if self.oldest else None,
                "newest": self.newest.isoformat() if self.newest else None}


@dataclass
class Inventory:
    """Counts of dead letters by reason and by event type, with the oldest and
    newest notification timestamps (of the bodies that decode)."""

    total: _Span = field(default_factory=_Span)
    reasons: dict[str, _Span] = field(default_factory=lambda: collections.defaultdict(_Span))
    event_types: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, letter: DeadLetter, note: decoder.Notification | None) -> None:
        """Count one dead letter, with the timestamp of its notification when it decodes."""
        timestamp = note.timestamp if note is not None else None
        self.total.add(timestamp)
        self.reasons[letter.reason].add(timestamp)
        self.event_types[note.event_type if note is not None else UNDECODABLE] += 1

    def as_json(self, queue: str) -> dict[str, Any]:
        """The inventory of ``queue`` as the ``--list --format json`` output."""
        return {
            "queue": queue,
            **self.total.as_json(),
            "reasons": {r: s.as_json() for r, s in sorted(self.reasons.items())},
            "event_types": dict(sorted(self.event_types.items())),
        }


@dataclass
class Report:
    """What one run saw and did."""

    queue: str
    dry_run: bool = False
    scanned: int = 0
    selected: int = 0
    replayed: int = 0
    #: Why selected messages could not be replayed (they stay), and how many times.
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    inventory: Inventory = field(default_factory=Inventory)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        """How many selected dead letters could not be replayed (they stay queued)."""
        return sum(self.failures.values())

    def summary(self) -> str:
        """The one line printed at the end of a run, naming what failed and why."""
        rate = self.replayed / self.seconds if self.seconds > 0 else 0.0
        verb = "would replay" if self.dry_run else "replayed"
        done = self.selected if self.dry_run else self.replayed
        line = (f"{verb} {done} of {self.selected} selected dead letters "
                f"(looked at {self.scanned} in {self.queue}) in {self.seconds:.1f} s")
        if not self.dry_run and self.replayed:
            line += f", {rate:,.0f}/s"
        if self.failures:
            why = "; ".join(f"{text} ({n})" for text, n in self.failures.most_common())
            line += f"; {self.failed} could not be replayed and stay in the queue: {why}"
        return line


def _broker_errors(conn: Any) -> tuple[type[BaseException], ...]:
    return (kombu.exceptions.OperationalError, ConnectionError, socket.error,
            *conn.connection_errors)


@dataclass(slots=True)
class _Sent:
    letter: DeadLetter
    exchange: str
    routing_key: str
    failure: str | None = None
    confirmed: bool = False


class _Target:
    """The publishing side: a connection of its own, confirms, mandatory.

    A separate connection, so that waiting for confirms never dispatches
    deliveries of the dead-letter queue in the middle of it. Messages go out
    in windows: up to ``WINDOW`` are published, then ``settle`` waits for
    the broker's confirms of all of them, where one confirm round trip per
    message would bound the rate by the latency.
    """

    WINDOW = 500
    #: Seconds to wait for the confirms of a window before giving up on the broker.
    CONFIRM_TIMEOUT = 60.0

    def __init__(self, conf: cfg.ConfigOpts, url: transport.TransportURL) -> None:
        self.conn = transport.connection(conf, url)
        # Confirms are collected by settle(), not awaited by each publish.
        self.conn.transport_options["confirm_publish"] = False
        self.conn.ensure_connection(max_retries=len(url.hosts), interval_start=0,
                                    interval_step=0, interval_max=0)
        self.channel: Any = None
        self._sequence = 0
        self._sent: dict[int, _Sent] = {}
        self._returned: dict[tuple[str, str], str] = {}
        self._exchanges: dict[str, str | None] = {}  # name -> why it cannot be used

    @property
    def pending(self) -> int:
        return len(self._sent)

    def _open(self) -> Any:
        if self.channel is None or not self.channel.is_open:
            self.channel = self.conn.channel()
            self.channel.confirm_select()
            self.channel.events["basic_ack"].add(self._on_ack)
            self.channel.events["basic_nack"].add(self._on_nack)
            self.channel.events["basic_return"].add(self._on_return)
            self._sequence = 0
        return self.channel

    def _settled(self, tag: int, multiple: bool, failure: str | None) -> None:
        for seq in [s for s in self._sent if s <= tag] if multiple else [tag]:
            sent = self._sent.get(seq)
            if sent is not None and not sent.confirmed:
                sent.confirmed = True
                sent.failure = sent.failure or failure

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settled(tag, multiple, None)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._settled(tag, multiple, "the broker nacked the message")

    def _on_return(self, exc: Any, exchange: str, routing_key: str, _message: Any) -> None:
        # RabbitMQ returns an unroutable mandatory message before confirming
        # it; which queues a topic exchange routes to depends on the exchange
        # and routing key alone, so every message of the window with both is.
        self._returned[(exchange, routing_key)] = (
            f"unroutable: no queue bound to exchange {exchange!r} with routing key "
            f"{routing_key!r} ({getattr(exc, 'reply_code', '?')})")

    def check_exchange(self, name: str) -> str | None:
        """Why ``name`` cannot be published to (it does not exist), or None."""
        if name == "" or name in self._exchanges:
            return self._exchanges.get(name)
        # On a channel of its own: a 404 closes the channel it happens on.
        probe = self.conn.channel()
        try:
            probe.exchange_declare(name, "topic", passive=True)
            self._exchanges[name] = None
        except amqp.exceptions.NotFound:
            self._exchanges[name] = f"exchange {name!r} does not exist"
        finally:
            if probe.is_open:
                probe.close()
        return self._exchanges[name]

    def publish(self, letter: DeadLetter, exchange: str, routing_key: str) -> None:
        """Publish without waiting; ``settle`` says what became of it."""
        channel = self._open()
        message = amqp.Message(letter.body, **letter.replay_properties())
        channel.basic_publish(message, exchange=exchange, routing_key=routing_key,
                              mandatory=True)
        self._sequence += 1
        self._sent[self._sequence] = _Sent(letter, exchange, routing_key)

    def settle(self) -> list[_Sent]:
        """Wait for the confirms of everything published; return it in order,
        each with ``failure`` None when it is safe in its queue.

        A channel the broker closed meanwhile fails what it had not
        confirmed (it may have been routed all the same: then it is in both
        queues, and stored once). Raises ``BrokerUnavailable`` when the
        confirms do not come in ``CONFIRM_TIMEOUT`` seconds.
        """
        deadline = time.monotonic() + self.CONFIRM_TIMEOUT
        try:
            while any(not s.confirmed for s in self._sent.values()):
                if time.monotonic() > deadline:
                    raise errors.BrokerUnavailable(
                        f"no publisher confirm in {self.CONFIRM_TIMEOUT:.0f} s")
                with contextlib.suppress(TimeoutError):
                    self.conn.drain_events(timeout=1.0)
        except amqp.exceptions.ChannelError as exc:
            code = getattr(exc, "reply_code", "?")
            for sent in self._sent.values():
                if not sent.confirmed:
                    sent.confirmed = True
                    sent.failure = f"refused by the broker ({code})"
            self.channel = None
        done = [self._sent[seq] for seq in sorted(self._sent)]
        for sent in done:
            returned = self._returned.get((sent.exchange, sent.routing_key))
            if returned is not None and sent.failure is None:
                sent.failure = returned
        self._sent.clear()
        self._returned.clear()
        return done

    def close(self) -> None:
        try:
            self.conn.release()
        except Exception:
            LOG.debug("error while closing the publishing connection", exc_info=True)


def run(
    conf: cfg.ConfigOpts,
    selection: Selection | None,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    on_start: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """List (``selection`` None) or replay the dead letters; see the module docstring.

    ``on_start(n)`` is told how many messages the queue holds; ``progress(k)``
    how many were looked at so far. Raises ``BrokerUnavailable`` when the
    broker cannot be reached or the connection is lost; every message not
    replayed by then is back in the queue. A selected message the broker
    refuses (no such exchange, unroutable, nacked) is counted in
    ``Report.failures`` and left in the queue.
    """
    url = transport.parse_url(conf.transport_url)
    queue = conf.collector.dead_letter_queue
    report = Report(queue, dry_run=dry_run or selection is None)
    started = time.monotonic()
    source = transport.connection(conf, url)
    target: _Target | None = None
    try:
        try:
            source.ensure_connection(max_retries=len(url.hosts), interval_start=0,
                                     interval_step=0, interval_max=0)
            channel = source.channel()
            channel.auto_decode = False  # the body exactly as it was published
            try:
                _, expected, _ = channel.queue_declare(queue=queue, passive=True)
            except amqp.exceptions.NotFound:
                LOG.info("There is no dead-letter queue %s: nothing to do", queue)
                return report
            if on_start is not None:
                on_start(expected)
            if expected and selection is not None and not report.dry_run:
                target = _Target(conf, url)
            _consume(source, channel, queue, expected, selection, limit, target, report,
                     progress)
        except _broker_errors(source) as exc:
            raise errors.BrokerUnavailable(f"{url.masked()}: {exc}") from exc
    finally:
        # Publishes are confirmed and acks sent (the broker applies them in
        # order before the close): closing returns everything else to the queue.
        if target is not None:
            target.close()
        try:
            source.release()
        except Exception:
            LOG.debug("error while closing the dead-letter connection", exc_info=True)
        report.seconds = time.monotonic() - started
    return report


def _consume(source: Any, channel: Any, queue: str, expected: int,
             selection: Selection | None, limit: int | None, target: _Target | None,
             report: Report, progress: Callable[[int], None] | None) -> None:
    if not expected:
        return
    # No prefetch limit: the messages we leave unacked must not stop the rest.
    channel.basic_qos(0, 0, False)
    arrived: collections.deque[Any] = collections.deque()
    channel.basic_consume(queue=queue, no_ack=False, callback=arrived.append)
    idle_since = last_beat = time.monotonic()
    while report.scanned < expected:
        if limit is not None and selection is not None and report.selected >= limit:
            break
        if time.monotonic() - last_beat >= 1.0:
            # Nothing else may go to the broker for minutes (a --list of a
            # long queue): without heartbeats it would close the connection.
            last_beat = time.monotonic()
            source.heartbeat_check()
            if target is not None:
                target.conn.heartbeat_check()
        if not arrived:
            pending = target is not None and target.pending > 0
            try:
                source.drain_events(timeout=0.005 if pending else _IDLE / 4)
            except TimeoutError:
                if pending:
                    _settle(target, channel, report)  # rather than wait idle
                elif time.monotonic() - idle_since >= _IDLE and _drained(source, queue):
                    break  # someone else took messages: none left for us
            continue
        idle_since = time.monotonic()
        message = arrived.popleft()
        letter = DeadLetter(message.delivery_tag, bytes(message.body),
                            dict(message.properties))
        _handle(letter, selection, limit, target, report)
        report.scanned += 1
        if target is not None and target.pending >= target.WINDOW:
            _settle(target, channel, report)
        if progress is not None:
            progress(report.scanned)
    if target is not None and target.pending:
        _settle(target, channel, report)


def _settle(target: _Target | None, channel: Any, report: Report) -> None:
    """Ack each dead letter whose copy the broker confirmed; count the others."""
    assert target is not None
    for sent in target.settle():
        if sent.failure is None:
            channel.basic_ack(sent.letter.delivery_tag)
            report.replayed += 1
        else:
            report.failures[sent.failure] += 1


def _handle(letter: DeadLetter, selection: Selection | None, limit: int | None,
            target: _Target | None, report: Report) -> None:
    needs_body = selection is None or report.dry_run or selection.needs_body
    note = letter.notification() if needs_body else None
    if selection is None:
        report.inventory.add(letter, note)
        return
    if not selection(letter, note.event_type if note is not None else None):
        return
    if limit is not None and report.selected >= limit:
        return
    report.selected += 1
    if report.dry_run:
        report.inventory.add(letter, note)
        return
    assert target is not None
    omitted = letter.header(dead_letters.ORIGINAL_HEADERS_OMITTED)
    if omitted is not None:
        report.failures[f"its application headers ({omitted} bytes) were too large "
                        "to keep in the dead letter"] += 1
        return
    exchange = letter.header("original_exchange")
    routing_key = letter.header("original_routing_key")
    if exchange is None or routing_key is None:
        report.failures["no original_exchange/original_routing_key header"] += 1
        return
    unusable = target.check_exchange(exchange)
    if unusable is not None:
        report.failures[unusable] += 1
        return
    target.publish(letter, exchange, routing_key)


def _drained(source: Any, queue: str) -> bool:
    """True when the queue has no ready message left (all are ours, or gone)."""
    probe = source.channel()
    try:
        _, ready, _ = probe.queue_declare(queue=queue, passive=True)
        return int(ready) == 0
    finally:
        probe.close()


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """An aligned plain-text table."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def render_inventory(report: Report) -> str:
    """The ``--list`` table: dead letters by reason and by event type, with totals."""
    inv = report.inventory

    def stamp(value: datetime.datetime | None) -> str | None:
        return value.isoformat(sep=" ", timespec="seconds") if value else None

    by_reason = table(("REASON", "COUNT", "OLDEST", "NEWEST"),
                      ((r, s.count, stamp(s.oldest), stamp(s.newest))
                       for r, s in sorted(inv.reasons.items())))
    by_type = table(("EVENT_TYPE", "COUNT"), sorted(inv.event_types.items()))
    return (f"{by_reason}\n\n{by_type}\n\n{inv.total.count} dead letters in {report.queue}"
            f" (notification timestamps {stamp(inv.total.oldest) or '-'} to "
            f"{stamp(inv.total.newest) or '-'}, UTC)")
