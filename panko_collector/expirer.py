"""TTL expiry: keeps the event database bounded.

Two ways to run it, sharing ``expire()``: the ``ExpirerService``
(``expirer_service``) that the daemon's service manager runs beside the
consumers, and the one-shot ``panko-collector-expirer`` command for cron or
a systemd timer. This module imports neither the service manager nor the
metrics, so that the command does not.

Deletion goes one chunk of ``[database] events_delete_batch_size`` events at
a time, each chunk its own short transaction (``clear_expired_data`` with
``max_count``), so concurrent inserts are never blocked for long and a stop
request is honoured between two chunks.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg
from oslo_log import log

from panko_collector import storage

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
    cutoff: datetime.datetime | None = None,
) -> ExpiryRun:
    """Delete every event older than ``ttl`` seconds, one chunk at a time.

    The cutoff is fixed once for the run (``cutoff``, by default
    ``storage.expiry_cutoff(ttl)`` now) and every chunk deletes up to it, so
    the run deletes exactly what its log line says. Stops early, between two
    chunks, when ``should_stop()`` says so; what was deleted stays deleted
    and the rest is left for the next run. Storage errors propagate: the
    caller decides whether a run may fail quietly.
    """
    started = time.monotonic()
    if cutoff is None:
        cutoff = storage.expiry_cutoff(ttl)
    deleted = 0
    while True:
        if should_stop():
            return ExpiryRun(deleted, time.monotonic() - started, cutoff, complete=False)
        n = conn.clear_expired_data(ttl, max_count=chunk_size, cutoff=cutoff)
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
