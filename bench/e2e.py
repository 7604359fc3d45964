"""End-to-end throughput of panko-collector beside a bare kombu consumer.

Usage: .venv/bin/python bench/e2e.py [-n 20000] [--workers N] [--batch-size 500]
                                     [--definitions FILE] [--metrics-port PORT]
                                     [--priorities info,error]

In one run, on a RabbitMQ vhost and a PostgreSQL database of its own:

1. bare: N notifications (the legacy corpus, fresh message ids, oslo v2
   envelope) are queued, then one bare kombu consumer per collector worker
   drains them (decode and ack only, nothing stored); events/s from the
   first delivery to the last ack.
1b. bare reading ahead: the same, with the collector's two ways with the
   broker: reading ahead on the socket and one ack per batch_size messages
   (events/s to the last decode). The ratio to it is the cost of
   converting and storing alone.
2. collector: N fresh ones are queued, then ``panko-collector`` starts with
   the default worker count; events/s from the first stored event to the
   last commit, and the ratios to the bare rates. Peak RSS (VmHWM) per worker,
   and RSS at a quarter and at the end, to see whether it grows with N.
3. latency: notifications are published at half the rate measured in (2)
   for ``--latency-seconds``; each one's publish time is kept and the
   database is polled every 20 ms for new events: p50/p99 publish-to-commit
   (resolution: the poll interval).

For each phase, the CPU time (user + system, from /proc) spent during the
drain is split by process: the consumers (the collector's workers), the
PostgreSQL backends of the collector's database, PostgreSQL's shared
processes (WAL writer, checkpointer...), RabbitMQ (beam.smp), this script,
and the rest of the machine; with the CPU left idle (for (1), that includes
the 3 s the bare consumers wait to be sure the queue is drained). On a
machine of few shared CPUs this says which of them the rate waits for; the
ratio of the CPU per event of (1) to that of (2) approximates the rate ratio
with nothing else running (both phases keep the CPUs busy) and varies much
less from run to run.

Prints figures; asserts nothing. Needs rabbitmqctl, RabbitMQ on
127.0.0.1:5672 and PostgreSQL on 127.0.0.1:5432 (user postgres).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import kombu  # noqa: E402
import psycopg  # noqa: E402

from panko_collector import storage  # noqa: E402
from tests import corpus  # noqa: E402
from tests.functional.daemon import children  # noqa: E402

PG = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
QUEUE = "notifications.info"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def templates() -> list[dict[str, Any]]:
    return [n for _label, n in corpus.notifications(corpus.LEGACY_SOURCES)]


def fresh(template: dict[str, Any], sent_at: float | None = None) -> tuple[str, bytes]:
    note = dict(template)
    mid = str(uuid.uuid4())
    if "metadata" in note and isinstance(note["metadata"], dict):
        note["metadata"] = dict(note["metadata"], message_id=mid)
    else:
        note["message_id"] = mid
    note["priority"] = "INFO"
    return mid, json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(note)}).encode()


class Publisher:
    def __init__(self, vhost: str) -> None:
        self.conn = kombu.Connection(f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
        channel = self.conn.channel()
        self.exchange = kombu.Exchange("nova", type="topic", durable=False)(channel)
        self.exchange.declare()
        kombu.Queue(QUEUE, exchange=self.exchange, routing_key=QUEUE,
                    durable=False)(channel).declare()
        self.producer = kombu.Producer(channel)

    def publish(self, body: bytes) -> None:
        self.producer.publish(body, exchange=self.exchange, routing_key=QUEUE,
                              content_type="application/json", content_encoding="utf-8")

    def close(self) -> None:
        self.conn.release()


def fill(vhost: str, n: int, tmpl: list[dict[str, Any]]) -> None:
    pub = Publisher(vhost)
    for i in range(n):
        pub.publish(fresh(tmpl[i % len(tmpl)])[1])
    pub.close()


def bare_drain(vhost: str, n: int, consumers: int, prefetch: int,
               ack_every: int = 1) -> tuple[float, CpuSplit]:
    """events/s of ``consumers`` processes that decode and ack only, and their CPU split.

    ``ack_every`` 1: a plain kombu consumer, one ack per message. Above 1:
    the collector's two ways with the broker beside its storing, reading
    ahead on the socket (panko_collector.broker.read_ahead) and one ack for
    ``ack_every`` messages.

    Each process connects, says so, and waits for the word to consume, so
    that the CPU split covers the drain and not the start of Python.
    """
    code = f"""
import sys, time, kombu
sys.path.insert(0, {str(REPO)!r})
from panko_collector.conversion import decoder
from panko_collector.broker import read_ahead
conn = kombu.Connection('amqp://guest:guest@127.0.0.1:5672/{vhost}')
conn.connect()
ack_every = {ack_every}
if ack_every > 1: read_ahead.install(conn)
ch = conn.channel(); ch.basic_qos(0, {prefetch}, False)
state = {{'first': None, 'last': None, 'n': 0, 'unacked': None}}
def on(m):
    if state['first'] is None: state['first'] = time.time()
    decoder.decode(m.body); state['n'] += 1; state['last'] = time.time()
    if ack_every == 1: m.ack()
    elif state['n'] % ack_every == 0: m.ack(multiple=True); state['unacked'] = None
    else: state['unacked'] = m
c = kombu.Consumer(ch, [kombu.Queue('{QUEUE}', no_declare=True)], on_message=on)
print('ready', flush=True); sys.stdin.readline()
c.consume()
idle = 0
while idle < 3:
    try:
        conn.drain_events(timeout=1); idle = 0
    except TimeoutError:
        if state['unacked'] is not None:
            state['unacked'].ack(multiple=True); state['unacked'] = None
        idle += 1 if state['n'] else 0
print(state['first'], state['last'], state['n'], flush=True)
sys.stdin.readline()
"""
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
             for _ in range(consumers)]
    split = CpuSplit({"bare consumers": lambda: [p.pid for p in procs],
                      "RabbitMQ": rabbitmq_pids, "this script": lambda: [os.getpid()]})
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    split.start()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        assert p.stdout is not None
        results.append(p.stdout.readline().split())
    split.stop()
    for p in procs:
        p.communicate("exit\n")
    firsts = [float(r[0]) for r in results if r[0] != "None"]
    lasts = [float(r[1]) for r in results if r[1] != "None"]
    count = sum(int(r[2]) for r in results)
    assert count == n, (count, n)
    return count / (max(lasts) - min(firsts)), split


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of ``pids`` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def worker_pids(master: int) -> list[int]:
    """The collector's consumer workers (not its expirer or metrics process)."""
    pids = []
    for pid in children(master):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"collector worker" in title:
            pids.append(pid)
    return pids


def rabbitmq_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "beam.smp":
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    # guest time is already counted in user
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


class CpuSplit:
    """CPU seconds by kind of process between :meth:`start` and :meth:`stop`.

    ``groups`` maps a label to a function returning that group's pids; it is
    called at both ends, and a pid seen only at the end counts from zero (a
    process started meanwhile). A process that ended meanwhile is lost.
    """

    def __init__(self, groups: dict[str, Callable[[], Iterable[int]]]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self._machine = (0.0, 0.0)
        self._t0 = 0.0
        self.seconds: dict[str, float] = {}
        self.wall = 0.0

    def _snapshot(self) -> dict[str, dict[int, float]]:
        return {label: {pid: cpu_seconds([pid]) for pid in pids()}
                for label, pids in self.groups.items()}

    def start(self) -> None:
        self._t0 = time.time()
        self._machine = machine_cpu()
        self._start = self._snapshot()

    def stop(self) -> None:
        end = self._snapshot()
        busy, idle = machine_cpu()
        self.wall = time.time() - self._t0
        self.seconds = {label: sum(c - self._start[label].get(pid, 0.0) for pid, c in pids.items())
                        for label, pids in end.items()}
        measured = sum(self.seconds.values())
        self.seconds["rest of the machine"] = busy - self._machine[0] - measured
        self.seconds["idle"] = idle - self._machine[1]

    def report(self, events: int) -> str:
        lines = [f"  CPU over {self.wall:.1f} s x {os.cpu_count()} CPUs, per event:"]
        for label, sec in self.seconds.items():
            lines.append(f"    {label:<28} {sec:6.2f} s {sec * 1000 / events:6.3f} ms/event")
        return "\n".join(lines)


def pg_backends(db: str) -> Callable[[], list[int]]:
    """The pids of PostgreSQL backends of ``db``, but not this script's."""
    def pids() -> list[int]:
        with psycopg.connect(**PG, autocommit=True) as conn:
            return [int(pid) for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                "AND application_name <> 'pc_bench'", (db,))]
    return pids


def pg_shared() -> list[int]:
    """PostgreSQL's processes of no database: WAL writer, checkpointer, ..."""
    with psycopg.connect(**PG, autocommit=True) as conn:
        return [int(pid) for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname IS NULL")]


def rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def count_events(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM event").fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20000, help="notifications per phase")
    parser.add_argument("--workers", type=int, default=None,
                        help="collector workers (default: the collector's default, the CPU count)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--definitions", default=None,
                        help="[event] definitions_cfg_file (default: the packaged ones)")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="[collector] metrics_port: serve the Prometheus endpoint on it "
                        "(default 0: metrics off), to see what counting costs")
    # Each priority is one more queue per topic sharing the worker's
    # prefetch_count: "info" alone shows the one-queue case.
    parser.add_argument("--priorities", default=None,
                        help="[collector] priorities, comma-separated (default: the "
                             "collector's default, seven)")
    args = parser.parse_args()

    workers = args.workers or os.cpu_count() or 1
    tmpl = templates()
    vhost = f"pc_bench_{uuid.uuid4().hex[:8]}"
    db = f"pc_bench_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    db_url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    tmp = Path(tempfile.mkdtemp(prefix="pc_bench_"))
    proc = None
    try:
        storage.get_connection(db_url).upgrade()
        print(f"N={args.n} notifications from {len(tmpl)} legacy corpus templates, "
              f"{workers} workers, batch_size {args.batch_size}, PostgreSQL, "
              f"{os.cpu_count()} CPUs, definitions: {args.definitions or 'packaged'}, "
              f"metrics {f'on port {args.metrics_port}' if args.metrics_port else 'off'}, "
              f"priorities: {args.priorities or 'default'}")

        fill(vhost, args.n, tmpl)
        bare, bare_cpu = bare_drain(vhost, args.n, workers, 2 * args.batch_size)
        print(f"bare kombu consumer ({workers} procs, decode+ack): {bare:8.0f} events/s")
        print(bare_cpu.report(args.n))
        fill(vhost, args.n, tmpl)
        ahead, ahead_cpu = bare_drain(vhost, args.n, workers, 2 * args.batch_size,
                                      ack_every=args.batch_size)
        print(f"bare, reading ahead, one ack per {args.batch_size}:    {ahead:8.0f} events/s")
        print(ahead_cpu.report(args.n))

        fill(vhost, args.n, tmpl)
        conf = tmp / "collector.conf"
        conf.write_text(
            f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/{vhost}\n"
            f"log_file = {tmp / 'collector.log'}\n"
            f"[database]\nconnection = {db_url}\n"
            f"[collector]\nbatch_size = {args.batch_size}\nsummary_interval = 10\n"
            + (f"workers = {args.workers}\n" if args.workers else "")
            + (f"metrics_port = {args.metrics_port}\n" if args.metrics_port else "")
            + (f"priorities = {args.priorities}\n" if args.priorities else "")
            + (f"[event]\ndefinitions_cfg_file = {Path(args.definitions).resolve()}\n"
               if args.definitions else "")
        )
        exe = Path(sys.executable).parent / "panko-collector"
        proc = subprocess.Popen([str(exe), "--config-file", str(conf)], start_new_session=True)
        t_first = t_last = None
        quarter_rss: dict[int, dict[str, int]] = {}
        split = CpuSplit({"collector workers": lambda: worker_pids(proc.pid),
                          "PostgreSQL backends": pg_backends(db),
                          "PostgreSQL shared processes": pg_shared,
                          "RabbitMQ": rabbitmq_pids, "this script": lambda: [os.getpid()]})
        # One connection for the polls, not one per poll: each new one would
        # cost PostgreSQL a backend start on the CPUs being measured.
        counter = psycopg.connect(**{**PG, "dbname": db}, autocommit=True,
                                  application_name="pc_bench")
        while True:
            n = count_events(counter)
            now = time.time()
            if n and t_first is None:
                t_first = now
                split.start()
            if n >= args.n // 4 and not quarter_rss:
                quarter_rss = {p: rss(p) for p in children(proc.pid)}
            if n >= args.n:
                t_last = now
                split.stop()
                break
            time.sleep(0.02)
        counter.close()
        assert t_first is not None
        # The first poll that sees events is up to one batch late: count it in.
        e2e = (args.n - args.batch_size) / (t_last - t_first) if args.n > args.batch_size \
            else args.n / (t_last - t_first)
        end_rss = {p: rss(p) for p in children(proc.pid)}
        print(f"panko-collector end to end:              {e2e:8.0f} events/s "
              f"(ratio to bare: {e2e / bare:.0%}; to bare reading ahead: {e2e / ahead:.0%})")
        # The split's window starts at the first poll that sees events (up to
        # one batch in), as does the rate.
        counted = args.n - args.batch_size if args.n > args.batch_size else args.n
        print(split.report(counted))
        # What the rate ratio would be if the machine ran nothing else: the
        # figure to compare across runs, since other work on a shared machine
        # slows the two phases unequally.
        bare_ms, ahead_ms = ((c.seconds["bare consumers"] + c.seconds["RabbitMQ"]) * 1000 / args.n
                             for c in (bare_cpu, ahead_cpu))
        e2e_ms = sum(split.seconds[k] for k in ("collector workers", "PostgreSQL backends",
                                                "PostgreSQL shared processes", "RabbitMQ")) \
            * 1000 / counted
        print(f"CPU per event (consumers + PostgreSQL + RabbitMQ): bare {bare_ms:.3f} ms, "
              f"bare reading ahead {ahead_ms:.3f} ms, collector {e2e_ms:.3f} ms "
              f"(ratios {bare_ms / e2e_ms:.0%}, {ahead_ms / e2e_ms:.0%})")
        for p, r in end_rss.items():
            q = quarter_rss.get(p, {})
            print(f"  worker {p}: peak RSS {r['VmHWM']} MB; RSS at 25% {q.get('VmRSS', '?')} MB, "
                  f"at 100% {r['VmRSS']} MB")

        rate = e2e / 2
        published: dict[str, float] = {}
        seen: dict[str, float] = {}
        stop = threading.Event()

        def poll() -> None:
            # By message id, not by "id > last seen": two workers commit their
            # sequence-numbered rows out of order.
            with psycopg.connect(**{**PG, "dbname": db}, autocommit=True) as conn:
                while not (stop.is_set() and len(seen) >= len(published)):
                    pending = [m for m in list(published) if m not in seen]
                    if pending:
                        rows = conn.execute("SELECT message_id FROM event "
                                            "WHERE message_id = ANY(%s)", (pending,)).fetchall()
                        now = time.time()
                        for (mid,) in rows:
                            seen[mid] = now
                    time.sleep(0.02)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        pub = Publisher(vhost)
        start = time.time()
        i = 0
        while time.time() - start < args.latency_seconds:
            due = start + i / rate
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            mid, body = fresh(tmpl[i % len(tmpl)])
            published[mid] = time.time()
            pub.publish(body)
            i += 1
        pub.close()
        stop.set()
        poller.join(60)
        if poller.is_alive():
            print(f"{len(published) - len(seen)} events not stored after 60 s")
        lat = sorted(seen[m] - published[m] for m in published if m in seen)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"latency at {rate:.0f} events/s (half the end-to-end rate), {len(lat)} events: "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (poll resolution 20 ms)")
    finally:
        if proc is not None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        rabbitmqctl("delete_vhost", vhost)
        with psycopg.connect(**PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
