"""The collector service: consumer workers under a cotyledon service manager.

The master process only supervises: it checks the broker declarations once
at start (so a queue mismatch, wrong credentials or a missing virtual host
stop ``panko-collector`` with a clear message instead of crash-looping
workers), logs one start line, and forks
``[collector] workers`` processes. Each worker builds its storage connection,
converter and broker connection *after* the fork, then runs a ``Consumer``.

Signals (delivered by cotyledon to every worker):

- SIGTERM: ``terminate`` asks the consumer to stop taking messages, write
  and ack its batch and close, and blocks until it has, because cotyledon
  ends the process as soon as ``terminate`` returns. Past
  ``graceful_shutdown_timeout`` cotyledon kills the worker; unacked messages
  are then redelivered, so even that loses nothing.
  A SIGTERM while a worker starts ends it at once (nothing was taken);
  one while the master starts, before any worker, ends it with status 0.
- SIGHUP: the master re-reads the configuration files and the event
  definitions (invalid definitions are logged and the old ones kept); each
  worker re-reads the configuration and takes the definitions the master
  accepted (``Definitions``) at its consumer's next safe point. What the
  queues are and which priorities are stored only a restart changes
  (``RestartOnly``: one WARNING names what a reload did not apply).
- a worker that dies (even by SIGKILL) is replaced by the master; the broker
  redelivers what it had not acked.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import cotyledon
from cotyledon import oslo_config_glue
from oslo_config import cfg
from sqlalchemy.engine import make_url

from panko_collector import errors, metrics, sdnotify, storage
from panko_collector.broker import topology, transport
from panko_collector.compat import check_at_start, cotyledon_hooks
from panko_collector.conversion import converter, decoder, definitions
from panko_collector.expirer_service import ExpirerService
from panko_collector.ingest.consumer import Consumer
from panko_collector.ingest.settings import Settings

LOG = logging.getLogger(__name__)

#: [collector] options of the process model.
OPTS = [
    cfg.IntOpt(
        "workers",
        default=os.cpu_count() or 1,
        sample_default="<number of CPUs>",
        min=1,
        help="Number of consumer processes; each holds its own broker and "
        "database connection.",
    ),
]


def mask_database_url(url: str) -> str:
    """``url`` with its password masked, for log lines; never raises."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable database URL>"


class Definitions:
    """The event definitions, read from their file by the master alone.

    Read at start (invalid definitions stop the start with the file's
    error) and on SIGHUP (invalid ones are logged and the previous kept).
    The master keeps the text it accepted in a private copy, and every
    worker builds its converter from that copy, whether it reloads on SIGHUP
    or was forked later to replace one that died: the workers and the
    master never disagree because the file changed, or became invalid,
    between their reads. ``cleanup`` (the master, at exit) removes the copy.
    """

    def __init__(self, conf: cfg.ConfigOpts,
                 on_trait_error: converter.TraitErrorCallback | None = None) -> None:
        self.conf = conf
        self.on_trait_error = on_trait_error
        self._dir = tempfile.mkdtemp(prefix="panko-collector-definitions-")
        self._copy = os.path.join(self._dir, "accepted.yaml")
        #: Accepted reloads, in memory shared with the workers forked later.
        self._accepted = multiprocessing.Value("i", 0)
        #: The generation this process's converter was built from.
        self._built = 0
        try:
            self.converter = self._read_file()
        except BaseException:
            self.cleanup()
            raise

    def _read_file(self) -> converter.Converter:
        path = converter.resolve_definitions_file(self.conf)
        text = definitions.read_definitions(path)
        built = converter.Converter.from_text(self.conf, text, path,
                                              on_trait_error=self.on_trait_error)
        with open(self._copy + ".new", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(self._copy + ".new", self._copy)
        return built

    def reload(self) -> None:
        """In the master, on SIGHUP (before the workers are signalled)."""
        try:
            self.converter = self._read_file()
        except errors.ConfigError as exc:
            LOG.error("new event definitions rejected, keeping the old ones: %s", exc)
            return
        with self._accepted.get_lock():
            self._accepted.value += 1
            self._built = self._accepted.value

    def worker_reload(self, conf: cfg.ConfigOpts) -> converter.Converter | None:
        """In a worker, on SIGHUP: a converter of what the master accepted
        last (with the worker's ``[event]`` options), or None when the master
        accepted nothing new since this worker's converter was built."""
        accepted = self._accepted.value
        if accepted == self._built:
            return None
        with open(self._copy, encoding="utf-8") as f:
            text = f.read()
        built = converter.Converter.from_text(conf, text, self._copy,
                                              on_trait_error=self.on_trait_error)
        self._built = accepted
        return built

    def cleanup(self) -> None:
        """Remove the private copy of the definitions (the master, at exit)."""
        shutil.rmtree(self._dir, ignore_errors=True)


#: Options that only a restart applies: the queues consumed, what the
#: workers were forked with, where metrics are served. Every option of
#: topology.RABBIT_OPTS (the queue arguments) is one as well.
RESTART_ONLY = [
    ("collector", "exchanges"), ("collector", "topics"), ("collector", "priorities"),
    ("collector", "pool"), ("collector", "dead_letter_exchange"),
    ("collector", "dead_letter_queue"), ("collector", "workers"),
    ("collector", "metrics_host"), ("collector", "metrics_port"),
]


class RestartOnly:
    """Keeps the options a reload must not apply at their start values.

    The master pins them (oslo.config overrides) before it forks, so every
    worker, those forked after a SIGHUP included, consumes and accepts what
    the daemon started with: a priority removed from the file stays
    accepted, and its queue, still bound and consumed, still stored.
    ``warn_changes`` tells the operator, once per SIGHUP, what the file now
    says differently and that a restart applies it.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self.names = RESTART_ONLY + [("oslo_messaging_rabbit", o.name)
                                     for o in topology.RABBIT_OPTS]
        self.pinned = {(g, n): self.conf[g][n] for g, n in self.names}
        for (group, name), value in self.pinned.items():
            self.conf.set_override(name, value, group)

    def changed(self) -> list[str]:
        """The pinned options whose configured value is now another."""
        found = []
        for (group, name), value in self.pinned.items():
            self.conf.clear_override(name, group)
            try:
                if self.conf[group][name] != value:
                    found.append(f"[{group}] {name}")
            finally:
                self.conf.set_override(name, value, group)
        return found

    def warn_changes(self) -> None:
        """In the master, on SIGHUP, after the files were read again."""
        changed = self.changed()
        if changed:
            LOG.warning("configuration reloaded, but %s changed, which only a restart "
                        "applies; until then the collector consumes and stores as it did",
                        ", ".join(changed))


class Readiness:
    """Tells systemd the daemon is ready once every worker consumes.

    The count lives in shared memory created by the master before it forks,
    so each worker process adds itself once; the worker that completes the
    count sends ``READY=1``. A replacement worker counts past the total and
    sends nothing: the unit is already up.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._address = cotyledon_hooks.take_notify_socket()
        self._consuming = multiprocessing.Value("i", 0)
        self._counted_pid = 0

    def worker_consuming(self) -> None:
        """Count this worker as consuming (once per process); the last one sends READY=1."""
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
    unexpected errors and ``BrokerRefused``; outages are waited out inside.
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
        self.consumer: Consumer | None = None
        # run() and terminate() run in two threads; a SIGTERM may come at
        # any moment of run(), before the consumer exists or as it starts.
        self._lock = threading.Lock()
        self._terminating = False

    def run(self) -> None:
        """Build the storage connection and the consumer, after the fork, and consume.

        Returns after a stop; raises what the consumer raises (see the
        class docstring), and cotyledon then starts a new worker.
        """
        conn = storage.get_connection(self.conf.database.connection, self.conf)
        consumer = Consumer(
            self.conf,
            conn,
            self.definitions.converter,
            decoder.decode,
            converter_factory=self.definitions.worker_reload,
            name=f"worker {self.worker_id} [{os.getpid()}]",
            on_consuming=self._on_consuming,
            metrics=self.metrics,
        )
        _tune_gc()
        with self._lock:
            if self._terminating:
                return
            self.consumer = consumer
        # A stop requested from here on makes run() return at once.
        consumer.run()

    def _on_consuming(self) -> None:
        self.metrics.consuming()
        if self.readiness is not None:
            self.readiness.worker_consuming()

    def terminate(self) -> None:
        """SIGTERM: stop the consumer and wait until its batch is written and acked."""
        with self._lock:
            self._terminating = True
            consumer = self.consumer
        if consumer is not None:
            # Blocks until the batch is written and acked: cotyledon ends the
            # process as soon as we return. Without a consumer yet, nothing
            # was taken: returning ends the worker at once.
            consumer.stop()

    def reload(self) -> None:
        """SIGHUP: the consumer reloads at its next safe point."""
        if self.consumer is not None:
            self.consumer.request_reload()


def _tune_gc() -> None:
    """Make the cyclic garbage collector run far less often in a worker.

    Each message leaves a few hundred objects (its decoded notification,
    event and traits) alive for a batch or two. At Python's default
    thresholds that sets off a collection every few messages, and the older
    generations' collections scan everything alive, the modules loaded at
    start included: a sizeable part of a worker's CPU. What exists now
    lives as long as the worker, so it is frozen (never scanned again); the
    rest is freed by reference counting as soon as its batch is acked, with
    few and small cycles, so 10,000 allocations between young collections
    hold little garbage.
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def check_broker(conf: cfg.ConfigOpts) -> bool:
    """Declare our queues once; return False if the broker is unreachable.

    Raises ``BrokerRefused`` (``QueueMismatch`` among them) when RabbitMQ
    refuses us in a way no retry cures: a wrong password or a missing
    virtual host is not an outage, and the workers would retry it forever.
    """
    url = transport.parse_url(conf.transport_url)
    conn = transport.connection(conf, url)
    try:
        transport.ensure_connected(conn, url)
        topology.Topology.from_conf(conf).declare(conn.channel())
        return True
    except errors.BrokerRefused:
        raise
    except Exception as exc:
        refused = transport.refusal(exc, url)
        if refused is not None:
            raise refused from None
        LOG.warning("broker %s not reachable at start (%s); workers will keep trying",
                    url.masked(), transport.describe(exc))
        return False
    finally:
        conn.release()


def start_line(conf: cfg.ConfigOpts) -> str:
    """The master's one INFO line at start: workers, broker, queues, database (masked)."""
    plan = topology.Topology.from_conf(conf).plan()
    return (
        f"panko-collector starting: {conf.collector.workers} workers, broker "
        f"{transport.parse_url(conf.transport_url).masked()}, exchanges "
        f"{','.join(conf.collector.exchanges)}, queues {','.join(q.name for q in plan)}, "
        f"database {mask_database_url(conf.database.connection)}"
    )


def _never() -> bool:
    return False


def serve(conf: cfg.ConfigOpts, stop_requested: Callable[[], bool] = _never) -> None:
    """Run the service manager until SIGTERM.

    ``stop_requested`` says whether a SIGTERM came before the service
    manager took the signals over (``panko-collector`` catches one from its
    first line on): ``serve`` then returns at its next step, before any
    worker is forked, and the daemon exits 0. Otherwise it never returns:
    cotyledon ends the master with SystemExit.
    """
    check_at_start()
    c = conf.collector
    if Settings.from_conf(conf).prefetch_count < c.batch_size:
        LOG.warning("[collector] prefetch_count %d is below batch_size %d: batches "
                    "will only ever be written by age", c.prefetch_count, c.batch_size)
    # Before anything is forked or converts: the workers inherit the
    # multiprocess directory and the metrics built here.
    exported = metrics.enable(conf)
    counts = exported or metrics.DISABLED
    master = os.getpid()
    held: Definitions | None = None
    try:
        held = Definitions(conf, on_trait_error=counts.trait_error if counts.enabled else None)
        _serve(conf, counts, held, stop_requested)
    finally:
        # cotyledon leaves run() by SystemExit after joining the workers;
        # only the master (never a forked child unwinding) removes the files.
        if os.getpid() == master:
            if held is not None:
                held.cleanup()
            if exported is not None:
                metrics.cleanup()


def _serve(conf: cfg.ConfigOpts, counts: metrics.Metrics, definitions: Definitions,
           stop_requested: Callable[[], bool]) -> None:
    c = conf.collector
    restart_only = RestartOnly(conf)
    check_broker(conf)
    if stop_requested():
        LOG.info("SIGTERM during start-up: exiting before any worker started")
        return
    LOG.info("%s", start_line(conf))
    manager = cotyledon.ServiceManager()
    # The manager handles SIGTERM from now on; one that came before it
    # took the signal over is ours to honour.
    if stop_requested():
        LOG.info("SIGTERM during start-up: exiting before any worker started")
        return
    # link() re-reads the configuration files on SIGHUP; our hooks run after it.
    oslo_config_glue.link(manager, conf)
    manager.register_hooks(on_reload=definitions.reload)
    manager.register_hooks(on_reload=restart_only.warn_changes)
    readiness = Readiness(c.workers)
    manager.add(CollectorService, workers=c.workers,
                args=(conf, definitions, readiness, counts))
    if conf.expirer.enabled:
        # Its own process, so a long expiry never delays a consumer's batch.
        manager.add(ExpirerService, workers=1, args=(conf, counts))
    if counts.enabled:
        manager.add(metrics.MetricsService, workers=1,
                    args=(conf, os.environ[metrics.MULTIPROC_ENV]))
        # Live gauges of a dead worker must stop counting; its counters stay.
        manager.register_hooks(on_dead_worker=metrics.on_dead_worker)
    manager.run()
