"""Read ahead on the broker's socket: one system call for many AMQP frames.

py-amqp reads each frame with ``recv`` calls of exactly the bytes it needs
next (the 7-byte header, the payload, the end byte), and around each frame
it sets the socket's timeout and puts it back. A delivery (method, header
and body frames) so costs fifteen system calls. Each of them lets go of
the GIL, and in a worker the consumer thread then waits for the writer
thread to hand it back (``bench/read_ahead.py`` measures the difference).

``install`` gives the plain-TCP transport of a connection a ``recv`` that
fills a buffer from the socket and hands it out in the sizes asked for;
``drain`` waits for deliveries through it, polling the socket only when the
buffer is empty, instead of through py-amqp's per-frame timeouts. py-amqp
keeps its own handling of partial frames and timeouts: the socket is read
only when the buffer is empty, and then raises as it would have. TLS
connections are left alone (OpenSSL reads whole records already).
"""

from __future__ import annotations

import select
from typing import Any

from oslo_config import cfg

from panko_collector.compat import amqp_hooks

OPTS = [
    cfg.BoolOpt(
        "read_ahead",
        default=True,
        help="Read the broker's socket ahead, 64 KiB at a time, instead of with "
        "the five system calls per AMQP frame py-amqp makes (plain TCP only; "
        "TLS connections are read as py-amqp does). It replaces a private "
        "attribute of py-amqp: turn it off should a py-amqp release misbehave "
        "with it. Applies from the next broker connection.",
    ),
]

#: Bytes asked of the socket at once: some 25 notifications of 2 kB.
CHUNK = 65536


class ReadAhead:
    """A ``recv(n)`` for one socket, served from a buffer refilled ``CHUNK`` at a time.

    Like ``socket.recv``, it returns at most ``n`` bytes, ``b""`` once the
    peer has closed, and raises the socket's errors, only when the buffer
    is empty (before anything of the call is consumed). While ``wait`` is
    set, an empty buffer waits that many seconds at most for the socket,
    then raises ``TimeoutError``; unset, it blocks as the socket does.
    """

    __slots__ = ("_buffer", "_poll", "_pos", "_recv", "wait")

    def __init__(self, sock: Any) -> None:
        self._recv = sock.recv
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        self._poll = poller.poll
        self._buffer = b""
        self._pos = 0
        self.wait: float | None = None

    def __call__(self, n: int) -> bytes:
        buffer, pos = self._buffer, self._pos
        if pos >= len(buffer):
            if self.wait is not None and not self._poll(self.wait * 1000):
                raise TimeoutError("timed out")
            buffer = self._recv(CHUNK)
            pos = 0
            self._buffer = buffer
        self._pos = pos + n
        return buffer[pos:pos + n]


def install(connection: Any) -> ReadAhead | None:
    """Read ahead on ``connection`` (a connected kombu connection) if it is plain TCP.

    Returns the reader, or None where it was not installed (see
    ``compat.amqp_hooks.install_recv``): nothing changes then but the speed.
    """
    amqp_transport: Any = getattr(getattr(connection, "connection", None), "transport", None)
    sock = getattr(amqp_transport, "sock", None)
    if sock is None:
        return None
    reader = ReadAhead(sock)
    return reader if amqp_hooks.install_recv(amqp_transport, reader) else None


def drain(connection: Any, reader: ReadAhead | None, timeout: float) -> None:
    """``connection.drain_events(timeout=timeout)``, through ``reader`` if there is one.

    The timeout then bounds each wait for the socket, as py-amqp's does;
    it is lifted afterwards, so that py-amqp's own blocking waits (for a
    CancelOk, say) block as they always did.
    """
    if reader is None:
        connection.drain_events(timeout=timeout)
        return
    reader.wait = timeout
    try:
        connection.drain_events()
    finally:
        reader.wait = None
