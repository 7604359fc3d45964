"""The metrics endpoint of a real ``panko-collector`` (2 workers) against RabbitMQ.

A known mix is published, the endpoint is scraped while the daemon runs,
and every count is checked against what was published, summed over the
workers; then both workers are killed and the counts of the dead ones must
still be there, with the replacements adding to them.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.daemon import Collector, write_conf
from tests.functional.storage_helpers import count_events, open_store
from tests.monitoring import dashboard_expressions, metric_names, rule_expressions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DEFINITIONS = """\
- event_type: test.*
  traits:
    a:
      fields: payload.a
    n:
      type: int
      fields: payload.n
"""

DEAD_LETTERED = "panko_collector_messages_dead_lettered_total"
QUEUE = "panko_collector_queue_messages"
DLQ = "panko-collector.dead-letter"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: Samples = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] += s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _labels), v in samples.items() if n == name)


def worker_pids(log: str) -> list[int]:
    """Pids of the consumer workers that logged they consume, in order."""
    return [int(p) for p in re.findall(r"worker \d+ \[(\d+)\]: consuming", log)]


def note(event_type: str = "test.ok", priority: str = "INFO", **payload: Any) -> dict[str, Any]:
    return broker.notification(event_type=event_type, priority=priority,
                               payload={"a": "x", **payload})


def test_metrics_count_what_was_published_across_workers_and_their_deaths(
        tmp_path: Path, vhost: str, collectors: list[Collector],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    defs = tmp_path / "defs.yaml"
    defs.write_text(DEFINITIONS)
    port = free_port()
    conf_path = write_conf(tmp_path / "c.conf", vhost, url, defs, ttl=86400,
                           metrics_port=port, priorities="info,error")
    conf_path.write_text(conf_path.read_text() + "drop_unmatched_notifications = true\n")
    # The daemon's private multiprocess directory is made under TMPDIR: ours.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    started = time.time()
    c = Collector(conf_path)
    collectors.append(c)
    c.wait_consuming(2)
    first_workers = worker_pids(c.log())
    assert len(first_workers) == 2

    pub = Publisher(vhost)
    try:
        # Undecodable bodies first, one at a time: two dead letters handled
        # back to back in one worker can hang it (a delivery dispatched while
        # the first publish waits for its confirm dead-letters inside that
        # wait; consumer.py, reported), which is not what this test is about.
        bodies = [b"{not json"] * 5 + [broker.envelope({"message_id": "m", "payload": {}})] * 3
        for i, body in enumerate(bodies, 1):
            pub.publish_raw(body, "nova", "info")
            wait_for(lambda i=i: total(scrape(port), DEAD_LETTERED) == i,
                     what=f"dead letter {i}")
        valid = []
        for exchange, priority, n in [("nova", "INFO", 40), ("cinder", "INFO", 30),
                                      ("nova", "ERROR", 20), ("cinder", "ERROR", 10)]:
            for i in range(n):
                valid.append(note(priority=priority, n=i))
                pub.publish(valid[-1], exchange)
        bad_trait = [note(n="abc") for _ in range(7)]  # stored, without trait n
        for n_ in bad_trait:
            pub.publish(n_, "nova")
        for n_ in valid[:15]:  # redeliveries of stored notifications
            pub.publish(n_, "nova" if n_["priority"] == "INFO" else "cinder")
        for _ in range(6):  # no definition matches: dropped
            pub.publish(note(event_type="other.thing"), "cinder")
        for _ in range(4):  # a priority we do not store, on a queue we consume
            pub.publish_raw(broker.envelope(note(priority="WARN")), "nova", "info")
        old = str(datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
                  - datetime.timedelta(days=2))
        for _ in range(8):  # older than the TTL: stored, then expired
            pub.publish({**note(priority="ERROR"), "timestamp": old}, "cinder")
    finally:
        pub.close()
    # valid[:15] are all nova INFO (the first 40 are), so the duplicates went to nova/info.
    received = {("nova", "info"): 40 + 7 + 15 + 5 + 3 + 4, ("cinder", "info"): 30 + 6,
                ("nova", "error"): 20, ("cinder", "error"): 10 + 8}
    stored = len(valid) + len(bad_trait) + 8

    last: list[Samples] = []

    def settled() -> Samples | None:
        s = scrape(port)
        last[:] = [s]
        done = (total(s, "panko_collector_messages_received_total") == sum(received.values())
                and value(s, "panko_collector_events_stored_total") == stored
                and value(s, "panko_collector_events_duplicate_total") == 15
                and value(s, "panko_collector_events_expired_total") == 8)
        return s if done else None

    try:
        s = wait_for(settled, timeout=60, what="the counts")
    except AssertionError:
        shown = {k: v for k, v in (last[0] if last else {}).items() if "_bucket" not in k[0]}
        raise AssertionError(f"scraped: {shown}\n{c.log()[-3000:]}") from None
    for (exchange, priority), n in received.items():
        assert value(s, "panko_collector_messages_received_total",
                     exchange=exchange, priority=priority) == n, (exchange, priority)
    assert value(s, "panko_collector_messages_dropped_total") == 6
    assert value(s, "panko_collector_messages_ignored_total") == 4
    assert value(s, "panko_collector_messages_dead_lettered_total", reason="not-json") == 5
    assert value(s, "panko_collector_messages_dead_lettered_total",
                 reason="no-event-type") == 3
    assert total(s, "panko_collector_messages_dead_lettered_total") == 8
    assert value(s, "panko_collector_trait_conversion_failures_total", trait="n") == 7
    assert total(s, "panko_collector_trait_conversion_failures_total") == 7
    # Every write was one batch: unique events of each batch, the in-batch
    # repeats aside, so between the events stored and all that were converted.
    batches = value(s, "panko_collector_batch_size_events_count")
    assert batches >= 1
    assert value(s, "panko_collector_commit_duration_seconds_count") == batches
    assert stored <= value(s, "panko_collector_batch_size_events_sum") <= stored + 15
    assert value(s, "panko_collector_commit_duration_seconds_sum") > 0
    assert value(s, "panko_collector_storage_retries_total") == 0
    assert value(s, "panko_collector_broker_reconnects_total") == 0
    assert value(s, "panko_collector_workers_consuming") == 2
    assert value(s, "panko_collector_workers_configured") == 2
    assert count_events(url) == stored - 8
    # Lag: every event a commit took (a redelivery of a stored one too, unless
    # it shared a batch with its first delivery); only the 8 two days old
    # beyond the last bucket.
    lagged = value(s, "panko_collector_event_lag_seconds_count")
    assert stored <= lagged <= stored + 15
    assert lagged - value(s, "panko_collector_event_lag_seconds_bucket", le="86400.0") == 8
    assert started <= value(s, "panko_collector_last_commit_timestamp_seconds") <= time.time()
    # Queue depths, read from the broker: the 8 dead letters wait, the rest is consumed.
    depths = wait_for(lambda: (x := scrape(port)) and value(
        x, QUEUE, queue=DLQ, kind="dead-letter") == 8 and x, what="the dead-letter depth")
    assert {dict(k[1])["queue"] for k in depths if k[0] == QUEUE} == {
        "notifications.info", "notifications.error", DLQ}
    assert value(depths, QUEUE, queue="notifications.info", kind="consumed") == 0
    # The shipped dashboard and alert rules use no metric this scrape lacks.
    scraped = {name for name, _labels in depths}
    for source, exprs in [("dashboard", dashboard_expressions()), ("rules", rule_expressions())]:
        assert metric_names(exprs) - scraped == set(), source
    (mpdir,) = tmp.glob("panko-collector-metrics-*")
    assert {f"counter_{pid}.db" for pid in first_workers} <= {p.name for p in mpdir.iterdir()}

    # Both workers die at once; their counts must outlive them.
    for pid in first_workers:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(worker_pids(c.log())) == 4, timeout=60, what="two replacements")
    replacements = worker_pids(c.log())[2:]
    assert not set(replacements) & set(first_workers)
    after = wait_for(lambda: (x := scrape(port))
                     and value(x, "panko_collector_workers_consuming") == 2 and x,
                     what="live gauges of the dead workers gone")
    for key in [k for k in s if k[0].endswith("_total")]:
        assert after[key] == s[key], key

    # What the replacements count adds to what the dead workers counted.
    more = [note(n=i) for i in range(20)]
    pub = Publisher(vhost)
    try:
        for n_ in more:
            pub.publish(n_, "nova")
    finally:
        pub.close()
    wait_for(lambda: value(scrape(port), "panko_collector_events_stored_total") == stored + 20,
             what="the new events counted")
    final = scrape(port)
    assert value(final, "panko_collector_messages_received_total",
                 exchange="nova", priority="info") == received[("nova", "info")] + 20
    assert total(final, "panko_collector_messages_received_total") == \
        sum(received.values()) + 20
    assert value(final, "panko_collector_events_duplicate_total") == 15
    assert count_events(url) == stored - 8 + 20

    assert c.stop() == 0
    assert not list(tmp.glob("panko-collector-metrics-*")), "multiprocess directory left behind"


def test_a_taken_metrics_port_stops_the_start(tmp_path: Path) -> None:
    """Checked in the master before anything is forked; nothing is left behind."""
    conf = tmp_path / "c.conf"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf.write_text(f"[DEFAULT]\nlog_file = {tmp_path / 'c.log'}\n[collector]\n"
                        f"metrics_port = {port}\n[database]\n"
                        f"connection = sqlite:///{tmp_path / 'e.sqlite'}\n")
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        done = subprocess.run(
            [str(Path(sys.executable).parent / "panko-collector"), "--config-file", str(conf)],
            env={**os.environ, "TMPDIR": str(tmp)}, capture_output=True, timeout=60)
    assert done.returncode == 1
    assert f"127.0.0.1:{port}: cannot listen" in (tmp_path / "c.log").read_text()
    assert not list(tmp.iterdir())
