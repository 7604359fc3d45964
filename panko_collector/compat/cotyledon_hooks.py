"""cotyledon's private behaviour: the readiness it would report to systemd.

cotyledon's service manager sends ``READY=1`` itself as soon as it starts
(``ServiceManager._systemd_notify_once``), when ``NOTIFY_SOCKET`` names an
address, long before any worker consumes. ``take_notify_socket`` removes
the variable before the manager starts and hands the address to the
collector, which reports readiness once every worker consumes.
"""

from __future__ import annotations

import os

from cotyledon import _service_manager

from panko_collector.compat import PrivateNames

PRIVATE_NAMES: PrivateNames = {
    "cotyledon._service_manager.ServiceManager._systemd_notify_once":
        lambda: callable(getattr(_service_manager.ServiceManager, "_systemd_notify_once", None)),
}


def take_notify_socket() -> str | None:
    """The address systemd gave for readiness, taken away from cotyledon."""
    return os.environ.pop("NOTIFY_SOCKET", None)
