"""Dead letters: see what waits in the dead-letter queue, and send a selection home.

The consumer publishes what it cannot store to ``[collector]
dead_letter_exchange`` with the body as it came and the headers
``reason``, ``error``, ``original_exchange``, ``original_routing_key`` (and
``original_compression`` when the message had a kombu ``compression``
header). Replaying a dead letter publishes that body, byte for byte, with the
dead letter's properties (content type, encoding, delivery mode, ...) and
its application headers less those five (``compression`` put back), to
``original_exchange`` with ``original_routing_key``.

How nothing is lost, whatever happens to this process (SIGKILL included):

- The dead-letter queue is read by ``basic.consume`` with manual acks and no
  prefetch limit, so every message present at the start is delivered once
  and stays unacked, owned by the broker, until we settle it.
- A selected message is published with ``mandatory`` set on a connection of
  its own with publisher confirms; only when the broker has confirmed it
  (and not returned it as unroutable) is the dead letter acked, by its own
  delivery tag. Killed between the two, the message is in both queues; the
  collector stores it once (``message_id``).
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

from panko_collector import decoder, errors, transport

LOG = logging.getLogger(__name__)

#: Headers the consumer adds to a dead letter; a replayed message carries none of them.
DEAD_LETTER_HEADERS = frozenset(
    {"reason", "error", "original_exchange", "original_routing_key", "original_compression"}
)

#: Headers the broker adds on a redelivery from a quorum queue; not the publisher's.
BROKER_HEADERS = frozenset({"x-delivery-count"})

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
        return dict(self.properties.get("application_headers") or {})

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return None if value is None else str(value)

    @property
    def reason(self) -> str:
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
        """The properties to publish with: the dead letter's, less our headers."""
        headers = {k: v for k, v in self.headers.items()
                   if k not in DEAD_LETTER_HEADERS and k not in BROKER_HEADERS}
        compression = self.header("original_compression")
        if compression:
            headers["compression"] = compression
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
        timestamp = note.timestamp if note is not None else None
        self.total.add(timestamp)
        self.reasons[letter.reason].add(timestamp)
        self.event_types[note.event_type if note is not None else UNDECODABLE] += 1

    def as_json(self, queue: str) -> dict[str, Any]:
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
        return sum(self.failures.values())

    def summary(self) -> str:
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


class _Returned(Exception):
    """The broker returned a mandatory message: no queue is bound for it."""


def _broker_errors(conn: Any) -> tuple[type[BaseException], ...]:
    return (kombu.exceptions.OperationalError, ConnectionError, socket.error,
            *conn.connection_errors)


class _Target:
    """The publishing side: a connection of its own, confirms, mandatory.

    A separate connection, so that waiting for a confirm never dispatches
    deliveries of the dead-letter queue in the middle of it.
    """

    def __init__(self, conf: cfg.ConfigOpts, url: transport.TransportURL) -> None:
        self.conn = transport.connection(conf, url)
        self.conn.ensure_connection(max_retries=len(url.hosts), interval_start=0,
                                    interval_step=0, interval_max=0)
        self.channel: Any = None
        self._returned: str | None = None

    def _open(self) -> Any:
        if self.channel is None or not self.channel.is_open:
            self.channel = self.conn.channel()
            self.channel.events["basic_return"].add(self._on_return)
        return self.channel

    def _on_return(self, exc: Any, exchange: str, routing_key: str, _message: Any) -> None:
        self._returned = (f"unroutable: no queue bound to exchange {exchange!r} with "
                          f"routing key {routing_key!r} ({getattr(exc, 'reply_code', '?')})")

    def publish(self, letter: DeadLetter, exchange: str, routing_key: str) -> None:
        """Publish and wait for the confirm; raise ``_Returned`` or a channel
        error when the broker did not take the message into a queue."""
        channel = self._open()
        self._returned = None
        message = amqp.Message(letter.body, **letter.replay_properties())
        # RabbitMQ sends basic.return before the confirm of the same message.
        channel.basic_publish(message, exchange=exchange, routing_key=routing_key,
                              mandatory=True)
        if self._returned is not None:
            raise _Returned(self._returned)

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
    idle_since = time.monotonic()
    while report.scanned < expected:
        if limit is not None and selection is not None and report.selected >= limit:
            return
        if not arrived:
            try:
                source.drain_events(timeout=_IDLE / 4)
            except TimeoutError:
                if time.monotonic() - idle_since >= _IDLE and _drained(source, queue):
                    return  # someone else took messages: none left for us
            continue
        idle_since = time.monotonic()
        message = arrived.popleft()
        letter = DeadLetter(message.delivery_tag, bytes(message.body),
                            dict(message.properties))
        _handle(letter, channel, selection, limit, target, report)
        report.scanned += 1
        if progress is not None:
            progress(report.scanned)


def _handle(letter: DeadLetter, channel: Any, selection: Selection | None,
            limit: int | None, target: _Target | None, report: Report) -> None:
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
    exchange = letter.header("original_exchange")
    routing_key = letter.header("original_routing_key")
    if exchange is None or routing_key is None:
        report.failures["no original_exchange/original_routing_key header"] += 1
        return
    try:
        target.publish(letter, exchange, routing_key)
    except _Returned as exc:
        report.failures[str(exc)] += 1
        return
    except amqp.exceptions.MessageNacked:
        report.failures["the broker nacked the message"] += 1
        return
    except amqp.exceptions.ChannelError as exc:
        # By code: 404 is an exchange that does not exist (any more).
        if getattr(exc, "reply_code", None) == 404:
            report.failures[f"exchange {exchange!r} does not exist"] += 1
        else:
            report.failures[f"refused by the broker ({getattr(exc, 'reply_code', '?')})"] += 1
        return
    channel.basic_ack(letter.delivery_tag)
    report.replayed += 1


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
