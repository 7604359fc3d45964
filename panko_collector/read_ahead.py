"""Read ahead on the broker's socket: one system call for many AMQP frames.

py-amqp reads each frame with ``recv`` calls of exactly the bytes it needs
next (the 7-byte header, the payload, the end byte), so a delivery (method,
header and body frames) costs nine system calls. Measured on a 2 kB
notification, that was a third of a consumer's CPU per message
(bench/e2e.py; 149 against 97 us in a drain loop with and without it).

``install`` gives the plain-TCP transport of a connection a ``recv`` that
fills a buffer from the socket and hands it out in the sizes asked for.
py-amqp keeps its own logic for partial frames, timeouts and errors: the
socket is only read when the buffer is empty, and then raises as it would
have. TLS connections are left alone: OpenSSL already reads whole records.
"""

from __future__ import annotations

import logging
from typing import Any

LOG = logging.getLogger(__name__)

#: Bytes asked of the socket at once: some 25 notifications of 2 kB.
CHUNK = 65536


class ReadAhead:
    """A ``recv(n)`` for one socket, served from a buffer refilled ``CHUNK`` at a time.

    Like ``socket.recv``, it returns at most ``n`` bytes, ``b""`` once the
    peer has closed, and raises the socket's timeouts and errors (only when
    the buffer is empty, before anything of the call is consumed).
    """

    __slots__ = ("_buffer", "_pos", "_recv")

    def __init__(self, sock: Any) -> None:
        self._recv = sock.recv
        self._buffer = b""
        self._pos = 0

    def __call__(self, n: int) -> bytes:
        buffer, pos = self._buffer, self._pos
        if pos >= len(buffer):
            buffer = self._recv(CHUNK)
            pos = 0
            self._buffer = buffer
        self._pos = pos + n
        return buffer[pos:pos + n]


def install(connection: Any) -> bool:
    """Read ahead on ``connection`` (a connected kombu connection) if it is plain TCP.

    Returns whether it was installed. The hook is py-amqp's own
    ``_quick_recv`` (its TCP transport's bound ``recv``); should a py-amqp
    release not have it, nothing changes but the speed.
    """
    amqp_transport = getattr(getattr(connection, "connection", None), "transport", None)
    sock = getattr(amqp_transport, "sock", None)
    if (sock is None or type(amqp_transport).__name__ != "TCPTransport"
            or getattr(amqp_transport, "_quick_recv", None) != sock.recv):
        LOG.debug("no read-ahead on %r", amqp_transport)
        return False
    amqp_transport._quick_recv = ReadAhead(sock)
    return True
