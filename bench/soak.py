"""Soak: a long steady stream through panko-collector, with a worker killed and
the broker connection broken during the run. Not a test; prints figures.

Usage: .venv/bin/python bench/soak.py [-n 1000000] [--workers 2] [--load 0.8]

On a RabbitMQ vhost and a PostgreSQL database of its own:

1. capacity: ``--capacity-n`` notifications (legacy corpus, fresh ids) are
   queued, ``panko-collector`` starts and drains them; events/s is the
   measured capacity.
2. soak: N notifications are published at ``--load`` x capacity, one in
   ``--hostile-every`` a hostile body (each is dead-lettered). At 30% of N
   one worker is killed (SIGKILL; the master starts another); at 60% the
   collector's broker connections are cut for ``--outage`` seconds (the
   collector reaches RabbitMQ through a TCP proxy this script controls; the
   shared RabbitMQ server is not touched).
3. Every ``--every`` seconds: published, stored, backlog (ready + unacked),
   RSS per worker. At the end: stored / published / duplicates stored /
   dead-lettered / dropped, RSS per worker at start and end of the soak, and
   whether stored + dead-lettered + dropped = published.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import psycopg  # noqa: E402
from e2e import PG, Publisher, children, fresh, rabbitmqctl, rss, templates  # noqa: E402

from panko_collector import storage  # noqa: E402
from tests.functional.broker import queue_counts as queues  # noqa: E402
from tests.functional.proxy import TCPProxy  # noqa: E402

DLQ = "panko-collector.dead-letter"
HOSTILE = [
    b"\xff\xfe not utf-8",
    b'{"oslo.version": "2.0", "oslo.message": "{trunc',
    b"[1, 2, 3]",
    b'{"payload": {}}',
    b'{"event_type": "x", "payload": ' + b"[" * 3000 + b"]" * 3000 + b"}",
]


def stored(db: str) -> tuple[int, int]:
    """(rows, distinct message ids) in the event table."""
    with psycopg.connect(**{**PG, "dbname": db}) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT message_id) FROM event").fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)


def backlog(vhost: str) -> int | None:
    """Ready + unacked in the notification queues; None when rabbitmqctl answered nothing."""
    counts = queues(vhost)
    if "notifications.info" not in counts:
        return None
    return sum(r + u for name, (r, u) in counts.items() if name != DLQ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="notifications in the soak")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--capacity-n", type=int, default=20_000)
    parser.add_argument("--load", type=float, default=0.8, help="fraction of the capacity")
    parser.add_argument("--hostile-every", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the broker is cut")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    args = parser.parse_args()

    tmpl = templates()
    vhost = f"pc_soak_{uuid.uuid4().hex[:8]}"
    db = f"pc_soak_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    with psycopg.connect(**PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    db_url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    tmp = Path(tempfile.mkdtemp(prefix="pc_soak_"))
    proxy = TCPProxy("127.0.0.1", 5672)
    proc = None
    try:
        storage.get_connection(db_url).upgrade()
        conf = tmp / "collector.conf"
        conf.write_text(
            f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:{proxy.port}/{vhost}\n"
            f"log_file = {tmp / 'collector.log'}\n"
            f"[database]\nconnection = {db_url}\n[expirer]\nenabled = false\n"
            f"[collector]\nbatch_size = {args.batch_size}\nsummary_interval = 10\n"
            f"workers = {args.workers}\n")
        print(f"soak: N={args.n}, {args.workers} workers, batch_size {args.batch_size}, "
              f"PostgreSQL, {os.cpu_count()} CPUs, 1 in {args.hostile_every} hostile; "
              f"log {tmp / 'collector.log'}", flush=True)

        # 1. capacity
        pub = Publisher(vhost)
        for i in range(args.capacity_n):
            pub.publish(fresh(tmpl[i % len(tmpl)])[1])
        exe = Path(sys.executable).parent / "panko-collector"
        proc = subprocess.Popen([str(exe), "--config-file", str(conf)], start_new_session=True)
        t_first = None
        while (n := stored(db)[0]) < args.capacity_n:
            if n and t_first is None:
                t_first = time.time()
            time.sleep(0.05)
        assert t_first is not None
        capacity = (args.capacity_n - args.batch_size * args.workers) / (time.time() - t_first)
        rate = capacity * args.load
        print(f"capacity: {capacity:.0f} events/s; soak rate {rate:.0f}/s "
              f"({args.load:.0%}), about {args.n / rate:.0f} s", flush=True)

        # 2. soak
        base = stored(db)[0]
        start_rss = {p: rss(p)["VmRSS"] for p in children(proc.pid)}
        published = hostile = 0
        done = threading.Event()
        samples: list[tuple[float, int, int, int | None, dict[int, int]]] = []

        t0 = time.time()

        def sample() -> None:
            while not done.wait(args.every):
                workers = {p: rss(p)["VmRSS"] for p in children(proc.pid)}
                row = (time.time() - t0, published, stored(db)[0] - base, backlog(vhost),
                       workers)
                samples.append(row)
                shown = "?" if row[3] is None else str(row[3])
                print(f"  t={row[0]:5.0f}s published {row[1]:8d} stored {row[2]:8d} "
                      f"backlog {shown:>7} RSS MB {sorted(workers.values())}", flush=True)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        killed = cut = False
        for i in range(args.n):
            due = t0 + i / rate
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            if (i + 1) % args.hostile_every == 0:
                pub.publish(HOSTILE[(i // args.hostile_every) % len(HOSTILE)])
                hostile += 1
            else:
                pub.publish(fresh(tmpl[i % len(tmpl)])[1])
            published += 1
            if not killed and i >= 0.3 * args.n:
                killed = True
                victim = children(proc.pid)[0]
                os.kill(victim, signal.SIGKILL)
                print(f"  t={time.time() - t0:5.0f}s killed worker {victim}", flush=True)
            if not cut and i >= 0.6 * args.n:
                cut = True
                proxy.cut()
                print(f"  t={time.time() - t0:5.0f}s broker connections cut for "
                      f"{args.outage:.0f}s", flush=True)
                threading.Timer(args.outage, proxy.restore).start()
        pub.close()
        elapsed = time.time() - t0
        print(f"published {published} in {elapsed:.0f} s ({published / elapsed:.0f}/s)",
              flush=True)
        valid = published - hostile
        deadline = time.time() + 600
        while time.time() < deadline:
            rows, _ = stored(db)
            if rows - base >= valid and backlog(vhost) == 0:
                break
            time.sleep(1)
        done.set()
        rows, distinct = stored(db)
        dead = queues(vhost).get(DLQ, (0, 0))[0]
        end_rss = {p: rss(p)["VmRSS"] for p in children(proc.pid)}
        log = (tmp / "collector.log").read_text()
        redelivered = sum(int(line.split(" duplicates")[0].rsplit(" ", 1)[1])
                          for line in log.splitlines() if " duplicates, " in line)
        print(f"published {published} (valid {valid}, hostile {hostile}); "
              f"stored {rows - base}; duplicates stored {rows - distinct}; "
              f"redeliveries recognised as duplicates {redelivered}; dead-lettered {dead}; "
              f"dropped 0; backlog {backlog(vhost)}")
        balance = (rows - base) + dead
        print(f"stored + dead-lettered + dropped = {balance} "
              f"{'=' if balance == published else '!='} published {published}")
        print(f"RSS per worker at soak start (MB): {start_rss}")
        print(f"RSS per worker at end (MB):        {end_rss}")
        killed_line = [line for line in log.splitlines() if "broker unavailable" in line]
        print(f"broker-loss warnings in the log: {len(killed_line)}")
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        proxy.close()
        rabbitmqctl("delete_vhost", vhost)
        with psycopg.connect(**PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
