"""py-amqp's private names: the socket read-ahead and the channel's body decoding.

- ``TCPTransport._quick_recv``: the bound ``sock.recv`` py-amqp's frame
  reader calls. ``install_recv`` puts a buffered reader in its place
  (``read_ahead.py``). Speed only: where it cannot, a WARNING says so and
  the worker reads as py-amqp does.
- ``Channel.auto_decode``: set, py-amqp decodes each body with the codec its
  ``content_encoding`` names (any codec Python knows, zlib and bz2
  included) before kombu sees it. kombu creates channels without a way to
  pass it, so ``keep_bodies_encoded`` turns it off on each channel; that
  guards safety, so it raises when it cannot.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from amqp.abstract_channel import AbstractChannel
from amqp.transport import TCPTransport

from panko_collector import errors
from panko_collector.compat import PrivateNames

LOG = logging.getLogger(__name__)


def _tcp_transport_reads_through_quick_recv() -> bool:
    ours, theirs = socket.socketpair()
    try:
        transport = TCPTransport("localhost:5672")
        transport.sock = ours
        transport._setup_transport()
        return bool(transport._quick_recv == ours.recv)
    finally:
        ours.close()
        theirs.close()


SPEED_NAMES: PrivateNames = {
    "amqp.transport.TCPTransport._quick_recv": _tcp_transport_reads_through_quick_recv,
}
SAFETY_NAMES: PrivateNames = {
    "amqp.abstract_channel.AbstractChannel.auto_decode":
        lambda: "auto_decode" in AbstractChannel.__slots__,
}
PRIVATE_NAMES: PrivateNames = {**SPEED_NAMES, **SAFETY_NAMES}


def install_recv(transport: Any, recv: Any) -> bool:
    """Make ``transport`` (a py-amqp transport) read through ``recv``.

    Only a plain-TCP transport reading straight from its socket qualifies
    (TLS reads whole records already), once; returns False where nothing
    was changed, with a WARNING when py-amqp no longer has ``_quick_recv``.
    """
    if type(transport) is not TCPTransport:
        LOG.debug("no read-ahead on %r", transport)
        return False
    current = getattr(transport, "_quick_recv", None)
    if current is None:
        LOG.warning("py-amqp's TCPTransport no longer reads through _quick_recv: "
                    "the broker socket is read without read-ahead")
        return False
    sock = getattr(transport, "sock", None)
    if sock is None or current != sock.recv:
        LOG.debug("read-ahead already installed on %r", transport)
        return False
    transport._quick_recv = recv
    return True


def keep_bodies_encoded(channel: Any) -> None:
    """Stop py-amqp from decoding the bodies ``channel`` delivers.

    Raises ``LibraryIncompatible`` when the channel has no such switch.
    """
    if not hasattr(channel, "auto_decode"):
        raise errors.LibraryIncompatible(
            f"py-amqp's channel {type(channel).__name__} has no auto_decode: bodies "
            "could be decoded by any codec their content_encoding names")
    channel.auto_decode = False
