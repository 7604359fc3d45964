"""The systemd readiness protocol (sd_notify), for ``Type=notify`` units.

A datagram of ``KEY=VALUE`` lines to the socket named by ``$NOTIFY_SOCKET``;
without that variable (not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(*assignments: str, address: str | None = None) -> bool:
    """Send ``READY=1``, ``STATUS=...`` and the like; True if systemd was told.

    ``address`` defaults to ``$NOTIFY_SOCKET``. Failures to reach the socket
    are swallowed: readiness reporting must never stop the daemon itself.
    """
    if address is None:
        address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
    except OSError:
        return False
    return True
