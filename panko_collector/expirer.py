"""TTL expiry: keeps the event database bounded.

Two ways to run it, sharing ``expire()``: the ``ExpirerService`` that the
daemon's service manager runs beside the consumers, and the one-shot
``panko-collector-expirer`` command for cron or a systemd timer.

Deletion goes one chunk of ``[database] events_delete_batch_size`` events at
a time, each chunk its own short transaction (``clear_expired_data`` with
``max_count``), so concurrent inserts are never blocked for long and a stop
request is honoured between two chunks.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cotyledon
from oslo_config import cfg
from oslo_log import log

from panko_collector import errors, storage
from panko_collector import metrics as metrics_
from panko_collector.storage import models

LOG = log.getLogger(__name__)

DATABASE_OPTS = [
    cfg.IntOpt(
        "event_time_to_live",
        default=-1,
        help="Number of seconds that events are kept in the database; zero or "
        "less keeps them forever (Panko's option, same meaning).",
    ),
]

OPTS = [
    cfg.BoolOpt(
        "enabled",
        default=True,
        help="Run TTL expiry inside the daemon, as a service of its own beside "
        "the consumers. Turn it off when panko-collector-expirer runs from "
        "cron or a systemd timer instead.",
    ),
    cfg.IntOpt(
        "interval",
        default=600,
        min=1,
        help="Seconds between two expiry runs of the in-daemon expirer.",
    ),
]


@dataclass(slots=True)
class ExpiryRun:
    """What one expiry run did."""

    deleted: int
    seconds: float
    cutoff: datetime.datetime
    complete: bool  # False when a stop request ended it early


def ttl_of(conf: Any) -> int | None:
    """The TTL in seconds, or None when expiry is disabled."""
    ttl: int = conf.database.event_time_to_live
    return ttl if ttl > 0 else None


def expire(
    conn: storage.Connection,
    ttl: int,
    chunk_size: int,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int], None] | None = None,
) -> ExpiryRun:
    """Delete every event older than ``ttl`` seconds, one chunk at a time.

    Stops early, between two chunks, when ``should_stop()`` says so; what was
    deleted stays deleted and the rest is left for the next run. Storage
    errors propagate: the caller decides whether a run may fail quietly.
    """
    started = time.monotonic()
    cutoff = models.utcnow() - datetime.timedelta(seconds=ttl)
    deleted = 0
    while True:
        if should_stop():
            return ExpiryRun(deleted, time.monotonic() - started, cutoff, complete=False)
        n = conn.clear_expired_data(ttl, max_count=chunk_size)
        deleted += n
        if progress is not None and n:
            progress(deleted)
        if n < chunk_size:
            return ExpiryRun(deleted, time.monotonic() - started, cutoff, complete=True)


def log_run(run: ExpiryRun) -> None:
    """One INFO line per run that deleted something; nothing otherwise."""
    if run.deleted:
        LOG.info(
            "Expired %d events older than %s in %.1f s%s",
            run.deleted,
            run.cutoff.isoformat(sep=" ", timespec="seconds"),
            run.seconds,
            "" if run.complete else " (stopped early; the rest goes next run)",
        )


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
        # cotyledon ends the process as soon as this returns, so wait until
        # the chunk in flight has committed.
        self._stopping.set()
        self._idle.wait()
