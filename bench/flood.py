"""Isolation under a flood: how much a flood of one event type, or of unmatched
notifications, slows the other notifications. Not a test; prints figures.

Usage: .venv/bin/python bench/flood.py [--rate 200] [--seconds 20] [--flood 20000]
       [--unmatched-types 50] [--no-default-traits]

One run, on a RabbitMQ vhost and a PostgreSQL database of its own, against
the real ``panko-collector`` (default worker count, PostgreSQL, metrics on).
Every phase publishes a steady stream of "others" (the legacy corpus
notifications that the shipped definitions match, fresh message ids) at
``--rate`` per second for ``--seconds``, on ``notifications.info``. From a
quarter of the phase on, a separate process publishes ``--flood``
messages as fast as it can into the same exchange and queue:

- A  baseline: no flood.
- R  reference flood: the same mix as the others (the collector's capacity
     for ordinary traffic, measured under the same conditions).
- B  a flood of one single event type (one corpus notification, fresh ids).
- C1 a flood of unmatched notifications (``--unmatched-types`` event types
     that no definition matches; 0: a new type per message), with
     ``drop_unmatched_notifications = true``: acked and counted as dropped.
- C2 the same flood with the default (stored with the default traits).

The collector is restarted between C2 and C1 with the other setting.

How it is measured:

- others' latency: each other's publish time (wall clock, taken just
  before ``basic.publish``) is kept by message id; a thread polls the
  ``event`` table every 20 ms for the ids not seen yet and takes the poll
  time as the commit time. p50/p99 of commit - publish, over all the
  phase's others and over those published while the flood was in the
  queue (resolution: the poll interval).
- processed counts: the collector's own Prometheus counters
  (``events_stored`` + ``messages_dropped``, summed over the workers),
  scraped every 50 ms. The flood is processed when the dropped counter (C1)
  or stored minus the others committed (R, B, C2) has grown by
  ``--flood``; the flood window runs from its first publish to that moment.
- flood msgs/s = flood / window; total msgs/s = (flood + others committed
  in the window) / window. While the flood lasts the queue is never empty,
  so total msgs/s is the collector's capacity for that mix, and
  R's total / phase's total is the per-message cost of the flood's
  messages relative to ordinary ones.

Prints figures and ratios measured side by side; asserts nothing. Needs
rabbitmqctl, RabbitMQ on 127.0.0.1:5672 and PostgreSQL on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import psycopg  # noqa: E402
from e2e import (  # noqa: E402
    PG,
    QUEUE,
    Publisher,
    cpu_seconds,
    fresh,
    rabbitmqctl,
    templates,
    worker_pids,
)

from panko_collector import storage  # noqa: E402
from panko_collector.conversion import converter, decoder, definitions  # noqa: E402

POLL = 0.02
SCRAPE = 0.05


def matched_templates() -> list[dict[str, Any]]:
    """The legacy corpus notifications that the shipped definitions match."""
    # The corpus has dates the converter warns about.
    logging.getLogger("panko_collector.conversion.converter").setLevel(logging.ERROR)
    conv = converter.Converter(definitions.load_definitions(converter.PACKAGED_DEFINITIONS),
                               drop_unmatched=True)
    return [t for t in templates()
            if conv.convert(decoder.decode(fresh(t)[1])) is not None]


def unmatched_template(base: dict[str, Any], types: int, i: int) -> dict[str, Any]:
    note = dict(base)
    note["event_type"] = (f"flood.unmatched.{i % types}" if types
                          else f"flood.unmatched.{uuid.uuid4().hex}")
    return note


def flood_process(vhost: str, bodies_spec: tuple[str, Any], n: int, pipe: Pipe) -> None:
    """Build ``n`` bodies, say ready, wait for go, publish them, send the times."""
    kind, spec = bodies_spec
    if kind == "mix":
        bodies = [fresh(spec[i % len(spec)])[1] for i in range(n)]
    elif kind == "single":
        bodies = [fresh(spec)[1] for _ in range(n)]
    else:  # unmatched: spec is (template, types)
        bodies = [fresh(unmatched_template(spec[0], spec[1], i))[1] for i in range(n)]
    pub = Publisher(vhost)
    pipe.send("ready")
    pipe.recv()
    start = time.time()
    for body in bodies:
        pub.publish(body)
    pipe.send((start, time.time()))
    pub.close()


class Flood:
    """A flood publisher in a process of its own (no GIL shared with the others' clock)."""

    def __init__(self, vhost: str, spec: tuple[str, Any], n: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=flood_process, args=(vhost, spec, n, child), daemon=True)
        self.proc.start()
        assert self.pipe.recv() == "ready"
        self.start = self.end = 0.0

    def go(self) -> None:
        self.pipe.send("go")

    def join(self) -> None:
        self.start, self.end = self.pipe.recv()
        self.proc.join(30)


class Tracker:
    """Publish time and first-seen-in-the-database time of each other, by message id."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.published: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.backend = 0  # its PostgreSQL backend, not counted as the collector's
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _poll(self) -> None:
        # By message id, not by "id > last seen": two workers commit their
        # sequence-numbered rows out of order.
        with psycopg.connect(**{**PG, "dbname": self.db}, autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            self.backend = int(row[0]) if row else 0
            self._ready.set()
            while not self._stop.is_set():
                pending = [m for m in list(self.published) if m not in self.seen]
                if pending:
                    rows = conn.execute("SELECT message_id FROM event "
                                        "WHERE message_id = ANY(%s)", (pending,)).fetchall()
                    now = time.time()
                    for (mid,) in rows:
                        self.seen[mid] = now
                time.sleep(POLL)

    def seen_by(self, t: float, since: float) -> int:
        return sum(1 for m, s in list(self.seen.items())
                   if s <= t and self.published[m] >= since)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Scraper:
    """(time, stored, dropped, workers' CPU s, PostgreSQL backends' CPU s) every 50 ms.

    Stored and dropped come from the collector's metrics endpoint. CPU time
    is counted per process, so it is the processing cost whatever else the
    shared machine runs; wall-clock rates are not.
    """

    def __init__(self, port: int, db: str, exclude: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.db, self.exclude = db, exclude
        self.samples: list[tuple[float, float, float, float, float]] = []
        self.workers: list[int] = []
        self.backends: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def read(self) -> tuple[float, float]:
        stored = dropped = 0.0
        with urllib.request.urlopen(self.url, timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("panko_collector_events_stored_total"):
                    stored += float(line.split()[-1])
                elif line.startswith("panko_collector_messages_dropped_total"):
                    dropped += float(line.split()[-1])
        return stored, dropped

    def _run(self) -> None:
        with psycopg.connect(**{**PG, "dbname": self.db}, autocommit=True) as conn:
            n = 0
            while not self._stop.is_set():
                if n % 20 == 0:
                    # A worker connects at its first write: look for new backends
                    # (their CPU before they are found is a few ms at most).
                    self.backends = [int(pid) for (pid,) in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                        "AND pid NOT IN (pg_backend_pid(), %s)", (self.db, self.exclude))]
                n += 1
                self._sample()

    def _sample(self) -> None:
        try:
            stored, dropped = self.read()
        except OSError:
            pass  # the collector is (re)starting
        else:
            self.samples.append((time.time(), stored, dropped,
                                 cpu_seconds(self.workers), cpu_seconds(self.backends)))
        time.sleep(SCRAPE)

    def at(self, t: float) -> tuple[float, float, float, float, float]:
        """The first sample taken at or after ``t`` (else the last)."""
        for sample in list(self.samples):
            if sample[0] >= t:
                return sample
        return self.samples[-1]

    def latest(self) -> tuple[float, float, float, float, float]:
        while not self.samples:
            time.sleep(SCRAPE)
        return self.samples[-1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Result:
    name: str
    others: int
    lat: list[float]
    lat_flood: list[float]
    window: float = 0.0  # the whole phase for A, the flood window otherwise
    others_rate: float = 0.0
    flood_rate: float = 0.0
    total_rate: float = 0.0
    publish_rate: float = 0.0
    lost: int = 0
    ahead: list[float] | None = None  # per other in the flood: backlog ahead / total rate
    worker_ms: float = 0.0  # workers' CPU ms per message processed in the window
    pg_ms: float = 0.0  # PostgreSQL backends' CPU ms per message


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def run_phase(name: str, vhost: str, tracker: Tracker, scraper: Scraper,
              others: list[dict[str, Any]], rate: float, seconds: float,
              flood: tuple[str, Any] | None, flood_n: int, dropped_kind: bool) -> Result:
    flooder = Flood(vhost, flood, flood_n) if flood else None
    pub = Publisher(vhost)
    _, stored0, dropped0, _, _ = scraper.latest()
    mine: list[str] = []
    start = time.time()
    flood_at = start + seconds / 4
    i = 0
    while time.time() - start < seconds:
        if flooder is not None and flood_at and time.time() >= flood_at:
            flooder.go()
            flood_at = 0.0
        due = start + i / rate
        if (wait := due - time.time()) > 0:
            time.sleep(wait)
        mid, body = fresh(others[i % len(others)])
        tracker.published[mid] = time.time()
        pub.publish(body)
        mine.append(mid)
        i += 1
    pub.close()
    end_publish = time.time()
    # Wait for the others and the flood to be processed.
    deadline = time.time() + 300
    flood_done = None
    while time.time() < deadline:
        done_others = all(m in tracker.seen for m in mine)
        if flooder is not None and flood_done is None:
            for t, stored, dropped, _, _ in list(scraper.samples):
                if t < start:
                    continue
                processed = (dropped - dropped0 if dropped_kind
                             else stored - stored0 - tracker.seen_by(t, start))
                if processed >= flood_n:
                    flood_done = t
                    break
        if done_others and (flooder is None or flood_done is not None):
            break
        time.sleep(0.2)
    lost = sum(1 for m in mine if m not in tracker.seen)
    lat = [tracker.seen[m] - tracker.published[m] for m in mine if m in tracker.seen]
    result = Result(name, len(mine), lat, [], lost=lost)
    if flooder is None:
        result.window = end_publish - start
        result.others_rate = result.total_rate = len(lat) / result.window
        first, last = scraper.at(start), scraper.at(end_publish)
        result.worker_ms = (last[3] - first[3]) * 1000 / max(len(lat), 1)
        result.pg_ms = (last[4] - first[4]) * 1000 / max(len(lat), 1)
        return result
    flooder.join()
    f_end = flood_done or time.time()
    result.window = f_end - flooder.start
    result.publish_rate = flood_n / max(flooder.end - flooder.start, 1e-9)
    result.lat_flood = [tracker.seen[m] - tracker.published[m] for m in mine
                        if m in tracker.seen and flooder.start <= tracker.published[m] <= f_end]
    in_window = sum(1 for m in mine if m in tracker.seen
                    and flooder.start <= tracker.seen[m] <= f_end)
    result.others_rate = in_window / result.window
    result.flood_rate = flood_n / result.window
    result.total_rate = (flood_n + in_window) / result.window
    # The cost of what was ahead of each other in the queue: the backlog at its
    # publish time (flood published so far, spread evenly over its publishing,
    # plus others published, minus processed) at the rate measured.
    span = max(flooder.end - flooder.start, 1e-9)
    pub_times = sorted(tracker.published[m] for m in mine)
    result.ahead = []
    for m in mine:
        t = tracker.published[m]
        if m not in tracker.seen or not flooder.start <= t <= f_end:
            continue
        flood_pub = flood_n * min(1.0, (t - flooder.start) / span)
        others_pub = sum(1 for p in pub_times if p < t)
        _, stored, dropped, _, _ = scraper.at(t)
        backlog = flood_pub + others_pub - (stored - stored0) - (dropped - dropped0)
        result.ahead.append(max(backlog, 0.0) / result.total_rate)
    first, last = scraper.at(flooder.start), scraper.at(f_end)
    result.worker_ms = (last[3] - first[3]) * 1000 / (flood_n + in_window)
    result.pg_ms = (last[4] - first[4]) * 1000 / (flood_n + in_window)
    if flood_done is None:
        result.name += " (flood not done in 300 s)"
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    def __init__(self, tmp: Path, vhost: str, db_url: str, drop: bool, port: int) -> None:
        conf = tmp / f"collector-{'drop' if drop else 'keep'}.conf"
        conf.write_text(
            f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/{vhost}\n"
            f"log_file = {tmp / 'collector.log'}\n"
            f"[database]\nconnection = {db_url}\n[expirer]\nenabled = false\n"
            f"[event]\ndrop_unmatched_notifications = {str(drop).lower()}\n"
            f"[collector]\nmetrics_port = {port}\n")
        exe = Path(sys.executable).parent / "panko-collector"
        self.proc = subprocess.Popen([str(exe), "--config-file", str(conf)],
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def warm_up(vhost: str, tracker: Tracker, others: list[dict[str, Any]]) -> None:
    """A few hundred others through the collector: every worker consumes and has
    written (so that its PostgreSQL connection exists)."""
    pub = Publisher(vhost)
    mids = []
    for i in range(400):
        mid, body = fresh(others[i % len(others)])
        tracker.published[mid] = time.time()
        pub.publish(body)
        mids.append(mid)
    pub.close()
    deadline = time.time() + 120
    while not all(m in tracker.seen for m in mids):
        if time.time() > deadline:
            raise SystemExit("the collector did not store the warm-up in 120 s")
        time.sleep(0.1)
    time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="others per second (R)")
    parser.add_argument("--seconds", type=float, default=20.0, help="others per phase (T)")
    parser.add_argument("--flood", type=int, default=20000, help="messages in each flood")
    parser.add_argument("--unmatched-types", type=int, default=50,
                        help="distinct unmatched event types in C1/C2 (0: one per message)")
    parser.add_argument("--no-default-traits", action="store_true",
                        help="skip C2 (unmatched stored with the default traits)")
    args = parser.parse_args()

    others = matched_templates()
    single = next((t for t in others if t.get("event_type") == "compute.instance.update"),
                  others[0])
    vhost = f"pc_flood_{uuid.uuid4().hex[:8]}"
    db = f"pc_flood_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    db_url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    tmp = Path(tempfile.mkdtemp(prefix="pc_flood_"))
    collector = tracker = scraper = None
    results: list[Result] = []
    types = args.unmatched_types
    phases: list[tuple[str, tuple[str, Any] | None, bool]] = [
        ("A  baseline, no flood", None, False),
        ("R  flood of the same mix", ("mix", others), False),
        (f"B  flood of one type ({single['event_type']})", ("single", single), False),
    ]
    if not args.no_default_traits:
        phases.append((f"C2 flood unmatched, {types or 'distinct'} types, default traits",
                       ("unmatched", (single, types)), False))
    try:
        storage.get_connection(db_url).upgrade()
        print(f"others: {len(others)} matched legacy corpus templates at {args.rate:.0f}/s "
              f"for {args.seconds:.0f} s per phase; flood {args.flood} messages from "
              f"{args.seconds / 4:.0f} s; default workers ({os.cpu_count()} CPUs), "
              f"PostgreSQL; queue {QUEUE}; log {tmp / 'collector.log'}", flush=True)
        tracker = Tracker(db)
        port = free_port()
        scraper = Scraper(port, db, tracker.backend)
        for drop, todo in ((False, phases),
                           (True, [(f"C1 flood unmatched, {types or 'distinct'} types, dropped",
                                    ("unmatched", (single, types)), True)])):
            collector = Collector(tmp, vhost, db_url, drop, port)
            warm_up(vhost, tracker, others)
            scraper.workers = worker_pids(collector.proc.pid)
            print(f"  collector (drop_unmatched_notifications = {str(drop).lower()}): "
                  f"workers {scraper.workers}", flush=True)
            for name, flood, dropped_kind in todo:
                r = run_phase(name, vhost, tracker, scraper, others, args.rate, args.seconds,
                              flood, args.flood, dropped_kind)
                results.append(r)
                print(f"  {r.name}: done", flush=True)
            collector.stop()
        base = results[0]
        ref = next(r for r in results if r.name.startswith("R"))
        b50, b99 = statistics.median(base.lat), pct(base.lat, 0.99)
        print()
        print(f"{'phase':<52} {'others p50/p99 ms':>18} {'x base':>11} "
              f"{'in flood p50/p99':>17} {'others/s':>8} {'flood/s':>8} {'total/s':>8} "
              f"{'cost vs R':>9} {'window s':>8} {'pub/s':>7} {'CPU ms/msg workers/PG':>22} "
              f"{'ahead p50/p99 ms':>17}")
        for r in results:
            p50, p99 = statistics.median(r.lat), pct(r.lat, 0.99)
            f50, f99 = (statistics.median(r.lat_flood), pct(r.lat_flood, 0.99)) \
                if r.lat_flood else (float("nan"), float("nan"))
            cost = f"{ref.total_rate / r.total_rate:9.2f}" if r.flood_rate else f"{'-':>9}"
            print(f"{r.name:<52} {p50 * 1000:8.0f}/{p99 * 1000:<9.0f} "
                  f"{p50 / b50:5.1f}/{p99 / b99:<5.1f} "
                  f"{f50 * 1000:8.0f}/{f99 * 1000:<8.0f} {r.others_rate:8.0f} "
                  f"{r.flood_rate:8.0f} {r.total_rate:8.0f} {cost} {r.window:8.1f} "
                  f"{r.publish_rate:7.0f} {r.worker_ms:12.2f}/{r.pg_ms:<9.2f}"
                  + (f" {statistics.median(r.ahead) * 1000:8.0f}/{pct(r.ahead, 0.99) * 1000:<8.0f}"
                     if r.ahead else "")
                  + (f"  ({r.lost} others not stored)" if r.lost else ""))
        print()
        print("others p50/p99: all others of the phase; 'in flood': those published while "
              "the flood was in the queue;\nflood/s, total/s and others/s over the flood "
              "window (first flood publish to last flood message processed);\ncost vs R: "
              "total/s of R / total/s of the phase = time per flood message relative to an "
              "ordinary one;\nexpected delay of an other behind the flood ~ flood / total/s "
              "(the window);\nCPU ms/msg: user+system CPU of the worker processes and of the "
              "collector's PostgreSQL backends over the window (the whole phase for A,\n"
              "idle polling included) per message processed: the processing cost, "
              "independent of the machine's other load;\nahead: for each other in the flood, "
              "the backlog in the queue when it was published / total/s = the time the\n"
              "collector needed for what was ahead of it; 'in flood' latency ~ ahead + the "
              "baseline latency means the flood costs the others\nexactly its processing.")
    finally:
        if collector is not None:
            collector.stop()
        if tracker is not None:
            tracker.close()
        if scraper is not None:
            scraper.close()
        rabbitmqctl("delete_vhost", vhost)
        with psycopg.connect(**PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
