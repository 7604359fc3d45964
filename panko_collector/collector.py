"""The collector service: consumer workers under a cotyledon service manager.

The master process only supervises: it checks the broker declarations once
at start (so a queue mismatch stops ``panko-collector`` with a clear message
instead of crash-looping workers), logs one start line, and forks
``[collector] workers`` processes. Each worker builds its storage connection,
converter and broker connection *after* the fork, then runs a ``Consumer``.

Signals (delivered by cotyledon to every worker):

- SIGTERM: ``terminate`` asks the consumer to stop taking messages, write
  and ack its batch and close, and blocks until it has, because cotyledon
  ends the process as soon as ``terminate`` returns. Past
  ``graceful_shutdown_timeout`` cotyledon kills the worker; unacked messages
  are then redelivered, so even that loses nothing.
- SIGHUP: ``reload`` re-reads the configuration files and the event
  definitions at the consumer's next safe point; invalid definitions are
  logged and the old ones kept.
- a worker that dies (even by SIGKILL) is replaced by the master; the broker
  redelivers what it had not acked.
"""

from __future__ import annotations

import functools
import gc
import logging
import multiprocessing
import os
import threading
from typing import Any

import cotyledon
from cotyledon import oslo_config_glue
from oslo_config import cfg
from sqlalchemy.engine import make_url

from panko_collector import (
    converter,
    decoder,
    errors,
    expirer,
    metrics,
    queues,
    sdnotify,
    storage,
    transport,
)
from panko_collector.consumer import Consumer

LOG = logging.getLogger(__name__)

DEFAULT_EXCHANGES = [
    "nova", "glance", "neutron", "cinder", "heat", "keystone", "trove", "zaqar",
    "swift", "ceilometer", "magnum", "dns", "ironic", "aodh", "openstack",
]
DEFAULT_PRIORITIES = ["audit", "critical", "debug", "error", "info", "sample", "warn"]

OPTS = [
    cfg.IntOpt(
        "workers",
        default=os.cpu_count() or 1,
        sample_default="<number of CPUs>",
        min=1,
        help="Number of consumer processes; each holds its own broker and "
        "database connection.",
    ),
    cfg.ListOpt(
        "exchanges",
        default=DEFAULT_EXCHANGES,
        help="Exchanges the OpenStack services publish their notifications on.",
    ),
    cfg.ListOpt(
        "topics",
        default=["notifications"],
        help="Notification topics (oslo.messaging notifications topics) to consume.",
    ),
    cfg.ListOpt(
        "priorities",
        default=DEFAULT_PRIORITIES,
        help="Priorities whose notifications become events; a <topic>.<priority> "
        "queue is consumed for each. Messages of other priorities that reach "
        "our queues are acked and counted, never left to pile up.",
    ),
    cfg.StrOpt(
        "pool",
        help="Unset: consume the standard <topic>.<priority> queues that the "
        "OpenStack services declare, so nothing published before the first "
        "start is lost. Set: consume a queue of our own named after the pool, "
        "bound to the same exchanges and routing keys, to run beside another "
        "consumer (Ceilometer) without taking its messages.",
    ),
    cfg.IntOpt(
        "batch_size",
        default=500,
        min=1,
        help="Events written to the database in one transaction, at most.",
    ),
    cfg.FloatOpt(
        "batch_timeout",
        default=1.0,
        min=0.0,
        help="Seconds a batch may wait for more events before it is written.",
    ),
    cfg.IntOpt(
        "prefetch_count",
        default=0,
        min=0,
        sample_default="0 (twice batch_size)",
        help="Messages the broker hands one worker before they are acked; "
        "bounds memory while the database is down. 0 means twice batch_size.",
    ),
    cfg.IntOpt(
        "max_message_bytes",
        default=1024 * 1024,
        min=0,
        help="Largest message body, in bytes, the collector decodes; larger ones "
        "are dead-lettered (reason too-large, body kept whole) without being "
        "parsed. The default, 1 MiB, is over three times the largest real "
        "notification we know of (a nova instance.create.start of 290 kB). "
        "A worker holds at most prefetch_count bodies, so prefetch_count x "
        "max_message_bytes bounds its memory for bodies. 0: no limit.",
    ),
    cfg.StrOpt(
        "dead_letter_exchange",
        default="panko-collector.dead-letter",
        help="Topic exchange (declared by the collector, durable) that "
        "undecodable messages and events the database refused are published "
        "to, with headers reason, error, original_exchange and original_routing_key.",
    ),
    cfg.StrOpt(
        "dead_letter_queue",
        default="panko-collector.dead-letter",
        help="Durable queue (declared by the collector) bound to the dead-letter "
        "exchange with '#', where dead letters wait for an operator.",
    ),
    cfg.FloatOpt(
        "storage_retry_interval",
        default=1.0,
        min=0.01,
        help="Seconds before the first retry of a batch when the database is unavailable.",
    ),
    cfg.FloatOpt(
        "storage_retry_max",
        default=30.0,
        min=0.01,
        help="Longest wait in seconds between retries while the database is unavailable.",
    ),
    cfg.FloatOpt(
        "summary_interval",
        default=60.0,
        min=1.0,
        help="Seconds between the INFO summaries each worker logs, and between "
        "two readings of the queue depths by the metrics service.",
    ),
]


def mask_database_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable database URL>"


class Definitions:
    """The converter of the current event definitions, held by the master.

    Built at start (invalid definitions stop the start with the file's
    error) and rebuilt on SIGHUP (invalid ones are logged and the previous
    kept). A worker forked later, to replace one that died, starts from the
    converter current at that moment instead of re-reading a file that may
    have become invalid.
    """

    def __init__(self, conf: cfg.ConfigOpts,
                 on_trait_error: converter.TraitErrorCallback | None = None) -> None:
        self.conf = conf
        self.factory = functools.partial(converter.Converter.from_conf,
                                         on_trait_error=on_trait_error)
        self.converter = self.factory(conf)

    def reload(self) -> None:
        try:
            self.converter = self.factory(self.conf)
        except errors.ConfigError as exc:
            LOG.error("new event definitions rejected, keeping the old ones: %s", exc)


class Readiness:
    """Tells systemd the daemon is ready once every worker consumes.

    The count lives in shared memory created by the master before it forks,
    so each worker process adds itself once; the worker that completes the
    count sends ``READY=1``. A replacement worker counts past the total and
    sends nothing: the unit is already up.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        # cotyledon's manager sends READY=1 itself as soon as it starts, and
        # only when it finds NOTIFY_SOCKET: take the address away from it.
        self._address = os.environ.pop("NOTIFY_SOCKET", None)
        self._consuming = multiprocessing.Value("i", 0)
        self._counted_pid = 0

    def worker_consuming(self) -> None:
        if self._counted_pid == os.getpid():  # a reconnect, not a new worker
            return
        self._counted_pid = os.getpid()
        with self._consuming.get_lock():
            self._consuming.value += 1
            count = self._consuming.value
        if count == self.workers:
            sdnotify.notify("READY=1", f"STATUS=consuming with {count} workers",
                            address=self._address)


class CollectorService(cotyledon.Service):
    """One consumer worker.

    ``run`` raises (so that cotyledon replaces the worker) only for
    unexpected errors and ``QueueMismatch``; outages are waited out inside.
    """

    name = "collector"

    def __init__(self, worker_id: Any, conf: cfg.ConfigOpts,
                 definitions: Definitions, readiness: Readiness | None = None,
                 worker_metrics: metrics.Metrics = metrics.DISABLED) -> None:
        super().__init__(worker_id)
        self.conf = conf
        self.definitions = definitions
        self.readiness = readiness
        self.metrics = worker_metrics
        self.consumer: Any = None
        self._ready = threading.Event()
        self._terminating = threading.Event()

    def run(self) -> None:
        conn = storage.get_connection(self.conf.database.connection, self.conf)
        self.consumer = Consumer(
            self.conf,
            conn,
            self.definitions.converter,
            decoder.decode,
            converter_factory=self.definitions.factory,
            name=f"worker {self.worker_id} [{os.getpid()}]",
            on_consuming=self._on_consuming,
            metrics=self.metrics,
        )
        _tune_gc()
        self._ready.set()
        if self._terminating.is_set():
            return
        self.consumer.run()

    def _on_consuming(self) -> None:
        self.metrics.consuming()
        if self.readiness is not None:
            self.readiness.worker_consuming()

    def terminate(self) -> None:
        self._terminating.set()
        if self._ready.wait(timeout=0.1) and self.consumer is not None:
            # Blocks until the batch is written and acked: cotyledon ends the
            # process as soon as we return.
            self.consumer.stop()

    def reload(self) -> None:
        if self.consumer is not None:
            self.consumer.request_reload()


def _tune_gc() -> None:
    """Make the cyclic garbage collector run far less often in a worker.

    Each message leaves a few hundred objects (its decoded notification,
    event and traits) alive for a batch or two. At Python's default
    thresholds that sets off a collection every few messages, and the older
    generations' collections scan everything alive, the modules loaded at
    start included: 0.04-0.05 ms of CPU per event of the legacy corpus (decode,
    convert and record_events in one process), a fifth of a worker's CPU
    and more. What exists now lives as long as the worker, so it is
    frozen (never scanned again); the rest is freed by reference counting
    as soon as its batch is acked, with few and small cycles, so 10,000
    allocations between young collections hold little garbage.
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def check_broker(conf: cfg.ConfigOpts) -> bool:
    """Declare our queues once; raise ``QueueMismatch``, return False if unreachable."""
    url = transport.parse_url(conf.transport_url)
    conn = transport.connection(conf, url)
    try:
        conn.ensure_connection(max_retries=len(url.hosts), interval_start=0,
                               interval_step=0, interval_max=0)
        queues.declare(conf, conn.channel())
        return True
    except errors.QueueMismatch:
        raise
    except Exception as exc:
        LOG.warning("broker %s not reachable at start (%s); workers will keep trying",
                    url.masked(), exc)
        return False
    finally:
        conn.release()


def start_line(conf: cfg.ConfigOpts) -> str:
    plan = queues.plan(conf)
    return (
        f"panko-collector starting: {conf.collector.workers} workers, broker "
        f"{transport.parse_url(conf.transport_url).masked()}, exchanges "
        f"{','.join(conf.collector.exchanges)}, queues {','.join(q.name for q in plan)}, "
        f"database {mask_database_url(conf.database.connection)}"
    )


def serve(conf: cfg.ConfigOpts) -> None:
    """Run the service manager until SIGTERM; never returns normally."""
    c = conf.collector
    if (c.prefetch_count or 2 * c.batch_size) < c.batch_size:
        LOG.warning("[collector] prefetch_count %d is below batch_size %d: batches "
                    "will only ever be written by age", c.prefetch_count, c.batch_size)
    # Before anything is forked or converts: the workers inherit the
    # multiprocess directory and the metrics built here.
    exported = metrics.enable(conf)
    master = os.getpid()
    try:
        _serve(conf, exported or metrics.DISABLED)
    finally:
        # cotyledon leaves run() by SystemExit after joining the workers;
        # only the master (never a forked child unwinding) removes the files.
        if exported is not None and os.getpid() == master:
            metrics.cleanup()


def _serve(conf: cfg.ConfigOpts, counts: metrics.Metrics) -> None:
    c = conf.collector
    definitions = Definitions(conf, on_trait_error=counts.trait_error if counts.enabled else None)
    check_broker(conf)
    LOG.info("%s", start_line(conf))
    manager = cotyledon.ServiceManager()
    # link() re-reads the configuration files on SIGHUP; our hook runs after it.
    oslo_config_glue.link(manager, conf)
    manager.register_hooks(on_reload=definitions.reload)
    readiness = Readiness(c.workers)
    manager.add(CollectorService, workers=c.workers,
                args=(conf, definitions, readiness, counts))
    if conf.expirer.enabled:
        # Its own process, so a long expiry never delays a consumer's batch.
        manager.add(expirer.ExpirerService, workers=1, args=(conf, counts))
    if counts.enabled:
        manager.add(metrics.MetricsService, workers=1,
                    args=(conf, os.environ[metrics.MULTIPROC_ENV]))
        # Live gauges of a dead worker must stop counting; its counters stay.
        manager.register_hooks(on_dead_worker=metrics.on_dead_worker)
    manager.run()
