"""Prometheus metrics: counted in every worker process, served by one.

Off unless ``[collector] metrics_port`` is set; then nothing here imports
prometheus-client and no files are written, and every call on ``DISABLED``
is a no-op.

When it is set, the daemon's workers are separate processes, so counts go
through prometheus-client's multiprocess mode: each process writes its
values to memory-mapped files in a directory of its own named by the
environment variable ``PROMETHEUS_MULTIPROC_DIR``, and the exporter sums
the files of every process, the dead ones included, so a worker that is
killed and replaced loses none of its counts. prometheus-client decides
between plain and multiprocess values when ``prometheus_client.values`` is
imported and every metric reads that choice when it is built; ``enable``
therefore sets the variable in the master before the metrics are built and
before the workers are forked, and has the choice made again should
something have imported prometheus-client earlier
(``compat.prometheus_hooks``).
The directory is private to one run of the master: created at start,
removed when the master exits after its workers (``cleanup``).

The metrics are served over HTTP by ``MetricsService``, a process of its
own under the service manager, so that no worker inherits the listening
socket and a slow scraper never delays a batch.

Two readings are not counted by the workers but taken by the metrics
service itself: the depth of every queue the workers consume and of the
dead-letter queue, read from the broker every ``[collector]
summary_interval`` on a connection of its own (``QueueDepths``), and the
number of workers configured, so that an alert can compare it with the
number consuming.

Label values are bounded on purpose: ``exchange`` and ``priority`` come
from the broker's delivery (our bindings bound them), ``reason`` from our
own dead-letter codes, ``trait`` from the trait names of the event
definitions. Event types are not a label: without
``drop_unmatched_notifications`` any string a publisher sends is one.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cotyledon
from oslo_config import cfg

from panko_collector import errors
from panko_collector.broker.routing import priority_of
from panko_collector.compat import prometheus_hooks
from panko_collector.storage import models

if TYPE_CHECKING:
    from panko_collector.storage import FailedEvent

LOG = logging.getLogger(__name__)

#: The environment variable through which prometheus-client finds the directory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

OPTS = [
    cfg.PortOpt(
        "metrics_port",
        default=0,
        min=0,
        help="TCP port of the Prometheus metrics endpoint (http://HOST:PORT/metrics), "
        "which sums the counts of every worker process. 0 turns metrics off.",
    ),
    cfg.HostAddressOpt(
        "metrics_host",
        default="127.0.0.1",
        help="Address the metrics endpoint listens on; 0.0.0.0 or :: for every "
        "interface. It has no authentication: keep it on a trusted network.",
    ),
]

#: Events per committed batch, on both sides of the usual ``[collector] batch_size``.
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
#: Seconds of one successful record_events call.
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds from a notification's timestamp to the commit of its event: the
#: batching delay at the low end, a backlog or an outage at the high end.
LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
               3600.0, 10800.0, 86400.0)


class Metrics:
    """What panko-collector counts; this base class counts nothing.

    ``DISABLED`` is its instance for a daemon without a metrics port; the
    consumer, converter and expirer call the same methods either way.
    Every method is cheap and never raises for a well-formed call.
    """

    enabled = False

    def received(self, delivery_info: Mapping[str, Any] | None) -> None:
        """A message was delivered (before decoding: bad bodies count too)."""

    def ignored(self) -> None:
        """A notification of a priority that is not stored was acked."""

    def dropped(self) -> None:
        """No event definition matched and drop_unmatched_notifications is set."""

    def dead_lettered(self, reason: str) -> None:
        """A message went to the dead-letter exchange for ``reason``."""

    def dead_letter_refused(self) -> None:
        """The broker nacked a dead-letter publish; the original stays unacked."""

    def trait_error(self, event_type: str, trait: str, value: Any, exc: Exception) -> None:
        """A trait value did not convert (the Converter's on_trait_error callback)."""

    def stored(self, stored: int, duplicates: int) -> None:
        """A batch was committed: ``stored`` new events, ``duplicates`` already held."""

    def committed(self, events: int, seconds: float) -> None:
        """One record_events call of ``events`` events succeeded in ``seconds``."""

    def events_committed(self, events: Sequence[models.Event],
                         refused: Sequence[FailedEvent] = ()) -> None:
        """record_events took ``events`` but ``refused`` (committed, or already held)."""

    def storage_retry(self) -> None:
        """A batch write failed with the database unavailable and will be retried."""

    def broker_reconnect(self) -> None:
        """The broker connection was lost (or not made); the worker reconnects."""

    def consuming(self) -> None:
        """This worker (re)started consuming."""

    def expired(self, events: int) -> None:
        """The expirer deleted ``events`` events."""


DISABLED = Metrics()


class PrometheusMetrics(Metrics):
    """The metrics as prometheus-client objects.

    ``registry`` is where they are registered for exposition in a single
    process (the tests); the daemon passes None and exposes them through
    ``multiprocess_registry`` instead.
    """

    enabled = True

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(name, doc, labels, registry=registry)

        p = "panko_collector_"
        self._received = counter(
            p + "messages_received", "Messages delivered by the broker, decodable or not.",
            ("exchange", "priority"))
        self._ignored = counter(
            p + "messages_ignored",
            "Notifications of a priority not in [collector] priorities, acked and not stored.")
        self._dropped = counter(
            p + "messages_dropped",
            "Notifications that no event definition matches, dropped because "
            "drop_unmatched_notifications is set.")
        self._dead_lettered = counter(
            p + "messages_dead_lettered",
            "Messages published to the dead-letter exchange, by reason "
            "(not-json, not-utf8, ..., convert-failed, store-failed).", ("reason",))
        self._dead_letters_refused = counter(
            p + "dead_letters_refused",
            "Dead-letter publishes the broker nacked (a full dead-letter queue with "
            "overflow reject-publish); each is retried, the original kept unacked.")
        self._trait_errors = counter(
            p + "trait_conversion_failures",
            "Trait values that did not convert to the trait's type; the trait is "
            "left out, the event kept.", ("trait",))
        self._stored = counter(p + "events_stored", "Events committed to the database.")
        self._duplicates = counter(
            p + "events_duplicate",
            "Events not stored again because the database or the same batch already "
            "held their message_id (redeliveries).")
        self._batch = Histogram(
            p + "batch_size_events", "Events per batch written to the database.",
            buckets=BATCH_BUCKETS, registry=registry)
        self._commit = Histogram(
            p + "commit_duration_seconds",
            "Seconds of each successful batch write (one transaction).",
            buckets=COMMIT_BUCKETS, registry=registry)
        self._lag = Histogram(
            p + "event_lag_seconds",
            "Seconds from a notification's timestamp to the commit of its event "
            "(redeliveries of stored events included).",
            buckets=LAG_BUCKETS, registry=registry)
        # max: the latest commit of any worker, a dead one's included.
        self._last_commit = Gauge(
            p + "last_commit_timestamp_seconds",
            "Unix time of the last successful batch write of any worker (0: none yet).",
            registry=registry, multiprocess_mode="max")
        self._storage_retries = counter(
            p + "storage_retries",
            "Batch writes that failed with the database unavailable and were retried.")
        self._reconnects = counter(
            p + "broker_reconnects", "Broker connections lost or refused; the worker reconnects.")
        self._expired = counter(p + "events_expired", "Events deleted by TTL expiry.")
        # livesum: the files of a dead worker are removed (mark_process_dead),
        # so the sum is the number of live workers that consume.
        self._consuming = Gauge(
            p + "workers_consuming", "Worker processes currently consuming.",
            registry=registry, multiprocess_mode="livesum")

    def received(self, delivery_info: Mapping[str, Any] | None) -> None:
        info = delivery_info or {}
        self._received.labels(
            str(info.get("exchange", "")), priority_of(str(info.get("routing_key", "")))).inc()

    def ignored(self) -> None:
        self._ignored.inc()

    def dropped(self) -> None:
        self._dropped.inc()

    def dead_lettered(self, reason: str) -> None:
        self._dead_lettered.labels(reason).inc()

    def dead_letter_refused(self) -> None:
        self._dead_letters_refused.inc()

    def trait_error(self, event_type: str, trait: str, value: Any, exc: Exception) -> None:
        self._trait_errors.labels(trait).inc()

    def stored(self, stored: int, duplicates: int) -> None:
        if stored:
            self._stored.inc(stored)
        if duplicates:
            self._duplicates.inc(duplicates)

    def committed(self, events: int, seconds: float) -> None:
        self._batch.observe(events)
        self._commit.observe(seconds)

    def events_committed(self, events: Sequence[models.Event],
                         refused: Sequence[FailedEvent] = ()) -> None:
        self._last_commit.set(time.time())
        skip = {id(f.event) for f in refused}
        now = models.utcnow()
        observe = self._lag.observe
        for event in events:
            if id(event) not in skip:
                # A publisher's clock ahead of ours gives no negative lag.
                observe(max((now - event.generated).total_seconds(), 0.0))

    def storage_retry(self) -> None:
        self._storage_retries.inc()

    def broker_reconnect(self) -> None:
        self._reconnects.inc()
        self._consuming.set(0)

    def consuming(self) -> None:
        self._consuming.set(1)

    def expired(self, events: int) -> None:
        if events:
            self._expired.inc(events)


# -- the daemon's side: directory, exporter, bookkeeping -----------------------


def check_port(host: str, port: int) -> None:
    """Raise ConfigError now if the endpoint cannot listen there.

    The exporter binds in its own process later; without this check a port
    taken by another program would only show as that process failing over
    and over.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        hint = " (is another program using it?)" if exc.errno == errno.EADDRINUSE else ""
        raise errors.ConfigError(
            f"[collector] metrics_host/metrics_port {host}:{port}: cannot listen: "
            f"{exc.strerror or exc}{hint}") from None


def enable(conf: cfg.ConfigOpts) -> PrometheusMetrics | None:
    """In the master, before forking: the metrics, or None when the port is unset.

    Creates the private multiprocess directory and points the environment
    (inherited by every worker) at it. Raises ConfigError when the endpoint
    cannot listen.
    """
    port = conf.collector.metrics_port
    if not port:
        return None
    check_port(conf.collector.metrics_host, port)
    path = tempfile.mkdtemp(prefix="panko-collector-metrics-")
    # Replaces any inherited value: files of another run must never be summed with ours.
    os.environ[MULTIPROC_ENV] = path
    prometheus_hooks.use_multiprocess_values()
    return PrometheusMetrics(registry=None)


def multiprocess_registry(path: str) -> Any:
    """A registry that sums the files of every process under ``path``."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def mark_dead_processes(path: str | None = None) -> list[int]:
    """Do prometheus-client's bookkeeping for every process of ours that is gone.

    cotyledon tells the master that a worker died but not its pid: the
    files name the pids, and a pid that no longer runs is dead (the master
    has reaped it by the time this is called). Returns the pids marked.
    """
    path = path or os.environ.get(MULTIPROC_ENV)
    if not path:
        return []
    from prometheus_client import multiprocess

    dead = []
    # Only live gauges have files that mark_process_dead removes.
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _PID_IN_NAME.search(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid in dead or _alive(pid):
            continue
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        dead.append(pid)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_dead_worker(_service: Any, _worker: Any, _exit_code: int) -> None:
    """cotyledon's dead-worker hook (in the master)."""
    mark_dead_processes()


def cleanup() -> None:
    """Remove the multiprocess directory (the master, after its workers exited)."""
    path = os.environ.pop(MULTIPROC_ENV, None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


class QueueDepths:
    """A prometheus-client collector of readings taken from the broker.

    ``panko_collector_queue_messages{queue, kind}``: the messages ready in
    each queue the workers consume (``kind="consumed"``) and in the
    dead-letter queue (``kind="dead-letter"``), as of the last ``poll``;
    ``panko_collector_workers_configured``: ``[collector] workers``.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        from panko_collector.broker import topology

        self.conf = conf
        self.kinds = {spec.name: "consumed" for spec in topology.Topology.from_conf(conf).plan()}
        self.kinds[conf.collector.dead_letter_queue] = "dead-letter"
        self.depths: dict[str, int] = {}
        self._failing = False

    def poll(self) -> None:
        """Read every depth by a passive queue declaration, on a connection of
        its own, opened for this poll and closed after it.

        Never raises: with the broker unreachable the depths are left out of
        the metrics (one WARNING, then silence until it is back), rather than
        showing numbers that are no longer true; a queue that does not exist
        (yet) is left out.
        """
        import amqp.exceptions
        import kombu.exceptions

        from panko_collector.broker import transport

        url = transport.parse_url(self.conf.transport_url)
        conn = transport.connection(self.conf, url)
        try:
            conn.ensure_connection(max_retries=len(url.hosts), interval_start=0,
                                   interval_step=0, interval_max=0)
            channel = conn.channel()
            depths = {}
            for name in self.kinds:
                try:
                    _, ready, _ = channel.queue_declare(queue=name, passive=True)
                except amqp.exceptions.NotFound:
                    channel = conn.channel()  # the broker closed that one
                    continue
                depths[name] = int(ready)
        except (kombu.exceptions.OperationalError, OSError, *conn.connection_errors,
                *conn.channel_errors) as exc:
            self.depths = {}
            if not self._failing:
                LOG.warning("Cannot read the queue depths from the broker %s (%s); they are "
                            "left out of the metrics until it answers", url.masked(), exc)
            self._failing = True
        else:
            self.depths = depths
            if self._failing:
                LOG.info("Reading the queue depths from the broker again")
            self._failing = False
        finally:
            with contextlib.suppress(Exception):
                conn.release()

    def collect(self) -> Iterator[Any]:
        """prometheus-client's hook: the readings of the last ``poll``."""
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "panko_collector_queue_messages",
            "Messages ready in each consumed queue and in the dead-letter queue, read from "
            "the broker every [collector] summary_interval.", labels=("queue", "kind"))
        for name, ready in sorted(self.depths.items()):
            depth.add_metric((name, self.kinds[name]), ready)
        yield depth
        yield GaugeMetricFamily("panko_collector_workers_configured",
                                "Consumer worker processes configured ([collector] workers).",
                                value=self.conf.collector.workers)


class MetricsService(cotyledon.Service):
    """Serves /metrics for every process of the daemon, and reads the queue
    depths from the broker every ``[collector] summary_interval``.

    ``run`` raises when it cannot listen (the master checked at start, so
    only a port taken since), and cotyledon starts it again; the workers
    never depend on it.
    """

    name = "metrics"

    def __init__(self, worker_id: Any, conf: cfg.ConfigOpts, path: str) -> None:
        super().__init__(worker_id)
        self.conf = conf
        self.path = path
        self._server: Any = None
        self._stopping = threading.Event()

    def run(self) -> None:
        """Listen, then poll the queue depths every ``summary_interval`` until terminated.

        Raises when the port cannot be bound; cotyledon then starts the service again.
        """
        from prometheus_client import start_http_server

        host, port = self.conf.collector.metrics_host, self.conf.collector.metrics_port
        registry = multiprocess_registry(self.path)
        depths = QueueDepths(self.conf)
        registry.register(depths)
        self._server, _thread = start_http_server(port, host, registry=registry)
        LOG.info("Serving metrics on http://%s:%d/metrics", host, port)
        while not self._stopping.is_set():
            depths.poll()
            self._stopping.wait(self.conf.collector.summary_interval)

    def terminate(self) -> None:
        """Stop polling and close the listening socket (errors closing it are ignored)."""
        self._stopping.set()
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
