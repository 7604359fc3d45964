"""The metrics module: names, labels, the disabled default, multiprocess summing."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from panko_collector import errors, metrics, service
from panko_collector.conversion.converter import Converter
from panko_collector.conversion.decoder import decode
from panko_collector.conversion.definitions import parse_definitions
from tests.conftest import REPO


def _conf(tmp_path: Path, text: str = "") -> Any:
    path = tmp_path / "c.conf"
    path.write_text(text)
    return service.prepare_service(["--config-file", str(path)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_off_by_default_and_then_nothing_is_set_up(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    conf = _conf(tmp_path)
    assert conf.collector.metrics_port == 0
    assert conf.collector.metrics_host == "127.0.0.1"
    assert metrics.enable(conf) is None
    assert metrics.MULTIPROC_ENV not in os.environ
    # The disabled metrics take every call and count nothing.
    d = metrics.DISABLED
    assert not d.enabled
    d.received({"exchange": "nova", "routing_key": "notifications.info"})
    d.ignored(), d.dropped(), d.dead_lettered("not-json"), d.stored(3, 1)
    d.trait_error("a.b", "t", "x", ValueError()), d.committed(3, 0.1)
    d.storage_retry(), d.broker_reconnect(), d.consuming(), d.expired(5)


def test_every_metric_counts_with_bounded_labels() -> None:
    registry = CollectorRegistry()
    m = metrics.PrometheusMetrics(registry)
    get = registry.get_sample_value
    for _ in range(3):
        m.received({"exchange": "nova", "routing_key": "notifications.info"})
    m.received({"exchange": "cinder", "routing_key": "notifications.ERROR"})
    m.received(None)  # a delivery without info still counts
    assert get("panko_collector_messages_received_total",
               {"exchange": "nova", "priority": "info"}) == 3
    assert get("panko_collector_messages_received_total",
               {"exchange": "cinder", "priority": "error"}) == 1
    assert get("panko_collector_messages_received_total",
               {"exchange": "", "priority": ""}) == 1
    m.ignored()
    m.dropped(), m.dropped()
    m.dead_lettered("not-json"), m.dead_lettered("not-json"), m.dead_lettered("store-failed")
    assert get("panko_collector_messages_ignored_total") == 1
    assert get("panko_collector_messages_dropped_total") == 2
    assert get("panko_collector_messages_dead_lettered_total", {"reason": "not-json"}) == 2
    assert get("panko_collector_messages_dead_lettered_total", {"reason": "store-failed"}) == 1
    m.stored(7, 2), m.stored(3, 0)
    assert get("panko_collector_events_stored_total") == 10
    assert get("panko_collector_events_duplicate_total") == 2
    m.committed(9, 0.02), m.committed(600, 3.0)
    assert get("panko_collector_batch_size_events_count") == 2
    assert get("panko_collector_batch_size_events_sum") == 609
    assert get("panko_collector_batch_size_events_bucket", {"le": "10.0"}) == 1
    assert get("panko_collector_batch_size_events_bucket", {"le": "1000.0"}) == 2
    assert get("panko_collector_commit_duration_seconds_count") == 2
    assert get("panko_collector_commit_duration_seconds_bucket", {"le": "0.025"}) == 1
    assert get("panko_collector_commit_duration_seconds_sum") == pytest.approx(3.02)
    m.storage_retry(), m.storage_retry()
    m.consuming()
    assert get("panko_collector_workers_consuming") == 1
    m.broker_reconnect()
    assert get("panko_collector_workers_consuming") == 0
    assert get("panko_collector_storage_retries_total") == 2
    assert get("panko_collector_broker_reconnects_total") == 1
    m.expired(0), m.expired(40)
    assert get("panko_collector_events_expired_total") == 40
    # Every name has the project prefix, counters end in _total.
    text = generate_latest(registry).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert all(n.startswith("panko_collector_") for n in names), names


def test_trait_conversion_failures_are_counted_by_trait() -> None:
    registry = CollectorRegistry()
    m = metrics.PrometheusMetrics(registry)
    conv = Converter(parse_definitions(yaml.safe_load(textwrap.dedent("""
        - event_type: compute.*
          traits:
            memory_mb: {fields: payload.memory_mb, type: int}
            host: {fields: payload.host}
    """))), on_trait_error=m.trait_error)
    for value in ("abc", "12", "x"):
        body = json.dumps({"message_id": f"m-{value}", "event_type": "compute.x",
                           "priority": "INFO", "publisher_id": "p",
                           "payload": {"memory_mb": value, "host": "h"}}).encode()
        event = conv.convert(decode(body))
        assert event is not None
    assert registry.get_sample_value("panko_collector_trait_conversion_failures_total",
                                     {"trait": "memory_mb"}) == 2
    assert registry.get_sample_value("panko_collector_trait_conversion_failures_total",
                                     {"trait": "host"}) is None


def test_lag_of_each_committed_event_and_the_time_of_the_last_commit() -> None:
    from panko_collector.storage import FailedEvent, models

    registry = CollectorRegistry()
    m = metrics.PrometheusMetrics(registry)
    get = registry.get_sample_value
    assert get("panko_collector_last_commit_timestamp_seconds") == 0
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)

    def event(seconds_ago: float) -> models.Event:
        return models.Event(f"m{seconds_ago}", "t", now - datetime.timedelta(seconds=seconds_ago),
                            [], {})

    recent, hour, refused, future = event(0.2), event(3000), event(7200), event(-60)
    before = time.time()
    m.events_committed([recent, hour, refused, future], [FailedEvent(refused, "no")])
    assert before <= get("panko_collector_last_commit_timestamp_seconds") <= time.time()
    assert get("panko_collector_event_lag_seconds_count") == 3  # the refused one is not
    # A publisher clock ahead of ours counts as no lag at all, never negative.
    assert get("panko_collector_event_lag_seconds_bucket", {"le": "0.5"}) == 2
    assert get("panko_collector_event_lag_seconds_bucket", {"le": "3600.0"}) == 3
    assert 3000 <= get("panko_collector_event_lag_seconds_sum") < 3010


def test_queue_depths_are_left_out_while_the_broker_cannot_be_read(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    conf = _conf(tmp_path, f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:{port}/\n"
                 "[collector]\nworkers = 3\npool = mine\n")
    depths = metrics.QueueDepths(conf)
    assert depths.kinds == {"mine": "consumed", "panko-collector.dead-letter": "dead-letter"}
    depths.depths = {"mine": 5}
    depths.poll()
    registry = CollectorRegistry()
    registry.register(depths)
    assert registry.get_sample_value("panko_collector_queue_messages",
                                     {"queue": "mine", "kind": "consumed"}) is None
    assert registry.get_sample_value("panko_collector_workers_configured") == 3


def test_a_taken_port_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(errors.ConfigError,
                           match=f"metrics_port 127.0.0.1:{port}: cannot listen"):
            metrics.check_port("127.0.0.1", port)
    metrics.check_port("127.0.0.1", port)  # free again


#: Runs in a fresh interpreter: enabling multiprocess mode changes
#: prometheus-client's process-wide state, which the test process must keep.
MULTIPROCESS = textwrap.dedent("""
    import json, os, signal, sys
    import prometheus_client  # imported before enable(), as a library might
    from panko_collector import metrics, service

    conf = service.prepare_service(["--config-file", sys.argv[1]])
    m = metrics.enable(conf)
    path = os.environ[metrics.MULTIPROC_ENV]
    get = metrics.multiprocess_registry(path).get_sample_value
    key = {"exchange": "nova", "priority": "info"}

    def child(n, stay):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            for _ in range(n):
                m.received({"exchange": "nova", "routing_key": "notifications.info"})
            m.stored(n, 1)
            m.committed(n, 0.01)
            m.consuming()
            os.write(w, b"x")
            if stay:
                signal.pause()
            os._exit(0)
        os.read(r, 1)
        return pid

    out = {}
    first = child(3, stay=False)
    os.waitpid(first, 0)
    second = child(2, stay=True)
    out["received"] = get("panko_collector_messages_received_total", key)
    out["stored"] = get("panko_collector_events_stored_total")
    out["batches"] = get("panko_collector_batch_size_events_count")
    out["marked_first"] = metrics.mark_dead_processes() == [first]
    out["consuming_one_alive"] = get("panko_collector_workers_consuming")
    os.kill(second, signal.SIGKILL)
    os.waitpid(second, 0)
    out["marked_second"] = metrics.mark_dead_processes() == [second]
    out["consuming_none_alive"] = get("panko_collector_workers_consuming")
    out["received_after_deaths"] = get("panko_collector_messages_received_total", key)
    metrics.cleanup()
    out["dir_removed"] = not os.path.exists(path)
    print(json.dumps(out))
""")


def test_multiprocess_sums_live_and_dead_processes(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(f"[collector]\nmetrics_port = {_free_port()}\n")
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    done = subprocess.run([sys.executable, "-c", MULTIPROCESS, str(conf)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out == {
        "received": 5.0, "stored": 5.0, "batches": 2.0,
        "marked_first": True, "consuming_one_alive": 1.0,
        "marked_second": True, "consuming_none_alive": 0.0,
        "received_after_deaths": 5.0, "dir_removed": True,
    }
