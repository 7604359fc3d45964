"""The in-daemon expirer: ``expirer.expire()`` every ``[expirer] interval``
seconds, as a service of the daemon's service manager (a process of its own).

Kept apart from ``expirer`` because it needs cotyledon and the metrics, which
the one-shot ``panko-collector-expirer`` command must not import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import cotyledon

from panko_collector import errors, storage
from panko_collector import metrics as metrics_

# The expirer's logger: its lines read the same from the daemon and the command.
from panko_collector.expirer import LOG, expire, log_run, ttl_of


class _Delta:
    """Turns expire()'s running total into the increments a counter takes."""

    def __init__(self, add: Callable[[int], None]) -> None:
        self.add = add
        self.total = 0

    def __call__(self, total: int) -> None:
        self.add(total - self.total)
        self.total = total


class ExpirerService(cotyledon.Service):
    """Runs expiry every ``[expirer] interval`` seconds inside the daemon.

    A failed run (database down) logs one WARNING and the next run tries
    again: the service never dies of an outage. SIGTERM during a run ends it
    after the current chunk.
    """

    name = "expirer"

    def __init__(self, worker_id: Any, conf: Any,
                 metrics: metrics_.Metrics = metrics_.DISABLED) -> None:
        super().__init__(worker_id)
        self.conf = conf
        self.metrics = metrics
        self._stopping = threading.Event()
        self._idle = threading.Event()  # set whenever no chunk is in flight
        self._idle.set()

    def run(self) -> None:
        """Expire every interval until terminated; returns at once when expiry is off.

        A run that fails (storage unavailable) is logged and retried next interval.
        """
        ttl = ttl_of(self.conf)
        if ttl is None:
            LOG.info("Event expiry is off ([database] event_time_to_live <= 0)")
            return
        conn = storage.get_connection(self.conf.database.connection, self.conf)
        interval = self.conf.expirer.interval
        chunk = self.conf.database.events_delete_batch_size
        LOG.info("Expiring events older than %d s every %d s, %d per chunk", ttl, interval, chunk)
        while True:
            # Busy before looking at the stop flag, so that terminate() never
            # sees "idle" while a run is about to start.
            self._idle.clear()
            if self._stopping.is_set():
                self._idle.set()
                return
            try:
                # Counted chunk by chunk: what was deleted before a failure stays deleted.
                log_run(expire(conn, ttl, chunk, should_stop=self._stopping.is_set,
                               progress=_Delta(self.metrics.expired)))
            except errors.StorageError as exc:
                LOG.warning("Event expiry failed, next try in %d s: %s", interval, exc)
            finally:
                self._idle.set()
            self._stopping.wait(interval)

    def terminate(self) -> None:
        """Ask the loop to stop and wait until no chunk is in flight."""
        # cotyledon ends the process as soon as this returns, so wait until
        # the chunk in flight has committed.
        self._stopping.set()
        self._idle.wait()
