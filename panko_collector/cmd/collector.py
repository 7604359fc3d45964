"""``panko-collector``: consume notifications into the event store until stopped."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

LOG = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the daemon until SIGTERM; exit 1 when the configuration, the broker's
    refusal or a library stops it at start (logged).
    """
    # A SIGTERM during start-up (systemd stopping a unit it just started)
    # must end the daemon with status 0, not kill it: caught from here until
    # the service manager takes the signal over, and honoured by serve().
    # Installed before the imports below, which take most of the start.
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signo, _frame: terminated.set())

    from panko_collector import daemon, errors, service

    conf = service.prepare_service(argv)
    try:
        daemon.serve(conf, stop_requested=terminated.is_set)
    except (errors.ConfigError, errors.BrokerRefused, errors.LibraryIncompatible) as exc:
        LOG.error("%s", exc)
        sys.exit(1)
