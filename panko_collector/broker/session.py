"""The broker side of one worker: two connections, the consuming one and
the one dead letters are published on.

Dead letters go out on a connection of their own, with publisher confirms:
waiting for a confirm reads only that connection, so no delivery is ever
dispatched while a dead letter is being published, and handling a
delivery never runs inside the handling of another. On the consuming
connection, ``consume`` (waiting for ConsumeOk) and ``cancel`` (waiting for
CancelOk) do dispatch the deliveries that arrive meanwhile to
``on_message``: the handler must therefore never consume or cancel itself.

Both connections live and die together: losing either one is
``BrokerUnavailable``, and the worker then closes both and reconnects
(nothing is acked on the new connection for what came on the old one).
Every kombu and py-amqp error is translated here: ``BrokerRefused`` for
permanent refusals while connecting (``transport.refusal``, by AMQP reply
code), ``BrokerUnavailable`` for everything else.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
from collections.abc import Callable, Iterator
from typing import Any

import amqp.exceptions
import kombu
import kombu.exceptions
from oslo_config import cfg

from panko_collector import errors
from panko_collector.broker import read_ahead, topology, transport
from panko_collector.broker.read_ahead import ReadAhead
from panko_collector.compat import kombu_hooks

LOG = logging.getLogger(__name__)

#: The name RabbitMQ shows for the connection dead letters are published on.
DEAD_LETTER_CONNECTION = "panko-collector dead letters"

#: Seconds the rest of a frame already arriving on the dead-letter
#: connection may take.
_FRAME_WAIT = 0.1


class Session:
    """One worker's connections to RabbitMQ, from ``connect`` to ``close``.

    ``conf`` gives the transport options (TLS, heartbeat) of both
    connections, ``plan`` what to declare. Used by one thread only (the
    consumer thread). ``on_message`` is called
    with each delivery (a kombu message: ``body``, ``content_type``,
    ``content_encoding``, ``headers``, ``delivery_info``, ``delivery_tag``)
    from ``drain``, ``consume`` and ``cancel``.
    """

    def __init__(self, conf: cfg.ConfigOpts, url: transport.TransportURL,
                 plan: topology.Topology, on_message: Callable[[Any], None], *,
                 read_ahead: bool = True) -> None:
        self.conf = conf
        self.url = url
        self.topology = plan
        self.on_message = on_message
        self.read_ahead = read_ahead
        #: The consuming connection, once ``connect`` made it.
        self.connection: kombu.Connection | None = None
        #: The read-ahead of the consuming connection, where installed.
        self.reader: ReadAhead | None = None
        #: The queues declared, in the order of ``Topology.plan``.
        self.queues: list[str] = []
        self._queues: dict[str, kombu.Queue] = {}
        self._channel: Any = None
        self._consumers: list[kombu.Consumer] = []
        self._publishing: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._publish_poll: Any = None
        self._errors: tuple[type[BaseException], ...] = (
            kombu.exceptions.OperationalError, ConnectionError, socket.error)

    # -- connecting -------------------------------------------------------------

    def connect(self, start: Callable[[], object]) -> None:
        """Connect both connections, declare the queues, then call ``start``
        (which starts consuming through this session).

        Raises ``BrokerRefused`` when RabbitMQ refuses us for good at any of
        these steps, ``start`` included; ``BrokerUnavailable`` for anything
        the next attempt may cure; ``LibraryIncompatible`` when the body
        guard cannot be installed. The caller closes the session in every
        case.
        """
        consuming = transport.connection(self.conf, self.url)
        self.connection = consuming
        self._errors = (self._errors + tuple(consuming.connection_errors)
                        + tuple(consuming.channel_errors))
        try:
            transport.ensure_connected(consuming, self.url)
            self.reader = read_ahead.install(consuming) if self.read_ahead else None
            channel = consuming.channel()
            # Bodies exactly as published: the size and compression checks
            # must see them before anything inflates them.
            kombu_hooks.raw_bodies(channel)
            declared = self.topology.declare(channel)
            self._channel = channel
            self._queues = {q.name: q for q in declared}
            self.queues = [q.name for q in declared]
            publishing = transport.connection(self.conf, self.url, DEAD_LETTER_CONNECTION)
            self._publishing = publishing
            transport.ensure_connected(publishing, self.url)
            self._producer = kombu.Producer(publishing.channel())
            self._publish_poll = _poller(publishing)
            start()
        except errors.BrokerRefused:
            raise
        except errors.BrokerUnavailable as exc:
            # From a session method ``start`` called: its cause tells.
            refused = transport.refusal(exc, self.url)
            if refused is not None:
                raise refused from exc
            raise
        except self._errors as exc:
            refused = transport.refusal(exc, self.url)
            if refused is not None:
                raise refused from exc
            raise errors.BrokerUnavailable(
                f"{self.url.masked()}: {transport.describe(exc)}") from exc

    def describe(self) -> str:
        """Where the consuming connection is, for a log line."""
        info = self.connection.info() if self.connection is not None else {}
        return f"{info.get('hostname')}:{info.get('port')}/{self.url.virtual_host}"

    def close(self) -> None:
        """Release both connections; never raises (they may be gone already)."""
        for conn in (self.connection, self._publishing):
            if conn is None:
                continue
            try:
                conn.release()
            except Exception:
                LOG.debug("error while closing a broker connection", exc_info=True)
        self.connection = self._publishing = None
        self.reader = None
        self._channel = self._producer = self._publish_poll = None
        self._consumers = []

    # -- consuming --------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise errors.BrokerUnavailable(str(exc) or type(exc).__name__) from exc

    def consume(self, queue: str, window: int, tag_prefix: str) -> None:
        """Start a consumer of ``queue`` with a prefetch window of its own.

        Its consumer tags start with ``tag_prefix``, which tells the
        deliveries of each consumer apart. basic.qos with global=false
        applies to the consumers started after it: this one. Deliveries of
        the consumers already running that arrive while we wait for
        ConsumeOk are handed to ``on_message`` meanwhile.
        """
        with self._translated():
            self._channel.basic_qos(0, window, False)
            consumer = kombu.Consumer(self._channel, [self._queues[queue]],
                                      on_message=self.on_message, no_ack=False,
                                      auto_declare=False, tag_prefix=tag_prefix)
            consumer.consume()
            self._consumers.append(consumer)

    def cancel(self) -> None:
        """Cancel every consumer: the broker delivers nothing more.

        What they delivered stays unacked and can still be acked.
        Deliveries that arrive while we wait for CancelOk are handed to
        ``on_message`` meanwhile.
        """
        with self._translated():
            for consumer in self._consumers:
                consumer.cancel()
            self._consumers = []

    def drain(self, timeout: float) -> None:
        """Hand what arrives within ``timeout`` seconds to ``on_message``.

        Returns at the timeout too. Raises ``BrokerUnavailable`` when the
        connection is lost; what ``on_message`` raises passes through.
        """
        assert self.connection is not None
        try:
            read_ahead.drain(self.connection, self.reader, timeout)
        except TimeoutError:
            pass
        except errors.PankoCollectorError:
            raise
        except self._errors as exc:
            raise errors.BrokerUnavailable(str(exc) or type(exc).__name__) from exc

    def heartbeat(self) -> None:
        """Send and check heartbeats on both connections; call about every second.

        Nothing else reads the dead-letter connection between two
        publishes, so the frames the broker sent there (its heartbeats) are
        read here, or py-amqp would count them as missed. One frame at a
        time, and only while the socket has something: py-amqp's
        ``drain_events`` would wait on after a heartbeat for a method that
        never comes.
        """
        assert self.connection is not None and self._publishing is not None
        with self._translated():
            self.connection.heartbeat_check()
            if self._publish_poll is not None:
                amqp_connection = self._publishing.connection
                with contextlib.suppress(TimeoutError):
                    while self._publish_poll(0):
                        amqp_connection.blocking_read(_FRAME_WAIT)
            self._publishing.heartbeat_check()

    def ack(self, message: Any, multiple: bool = False) -> None:
        """Ack ``message`` (with ``multiple``: and every unacked one below it)."""
        with self._translated():
            message.ack(multiple=multiple)

    # -- dead letters -----------------------------------------------------------

    @property
    def frame_max(self) -> int:
        """The largest frame the dead-letter connection takes (0: no limit)."""
        assert self._producer is not None
        return int(self._producer.channel.connection.frame_max or 0)

    def publish_dead_letter(self, message: Any, headers: dict[str, Any],
                            exchange: str) -> bool:
        """Publish a copy of ``message`` with ``headers`` to ``exchange`` and
        wait for the broker's confirm; False when the broker nacked it.

        Routed by the reason, persistent, body and content type as they
        came. Does not ack the original: that is the caller's, once this
        returned True.
        """
        assert self._producer is not None
        with self._translated():
            try:
                self._producer.publish(
                    message.body,
                    exchange=exchange,
                    routing_key=headers["reason"],
                    headers=headers,
                    content_type=message.content_type or "application/octet-stream",
                    content_encoding=message.content_encoding or "binary",
                    delivery_mode=2,
                    retry=False,
                )
            except amqp.exceptions.MessageNacked:
                return False
        return True


def _poller(conn: kombu.Connection) -> Callable[[float], list[Any]] | None:
    """A zero-wait readability check of ``conn``'s socket; None without one."""
    sock = getattr(getattr(conn.connection, "transport", None), "sock", None)
    if sock is None:
        return None
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return poller.poll
