"""Expiry under load: how fast events go, and how long inserts stall meanwhile.

An inserter process writes batches through ``record_events`` at a steady
rate into PostgreSQL (the collector's write path, one batch every
``batch / rate`` seconds). First without expiry (the baseline), then while
the expirer deletes ``--events`` old events in chunks of
``--chunk`` (``[database] events_delete_batch_size``), as the in-daemon
worker does. Prints events deleted/s and, for both phases side by side, the
insert latency: median, p99 and the longest stall. Target: no insert stalls
longer than 1 s.

    python bench/expiry.py [--events 1000000] [--rate 1000] [--batch 100]
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record_events import DEFAULT_DATA, FILL_SQL, Databases, build_events, pg_connect

from panko_collector import expirer, storage
from panko_collector.storage import models

TTL = 3600


def inserter(url: str, data: Path, rate: float, batch: int, pipe: Pipe) -> None:
    """Write a batch every batch/rate s until told to stop; send (phase, latency) pairs."""
    conn = storage.get_connection(url)
    now = models.utcnow()
    pool = build_events(data, 2000, raw=False, start=now)
    period = batch / rate
    phase, latencies, i = "baseline", [], 0
    pipe.send("ready")
    next_at = time.monotonic()
    while True:
        if pipe.poll():
            msg = pipe.recv()
            if msg == "stop":
                break
            pipe.send((phase, latencies))
            phase, latencies = msg, []
        events = [pool[(i + j) % len(pool)] for j in range(batch)]
        for ev in events:
            ev.message_id = str(uuid.uuid4())
        i += batch
        started = time.monotonic()
        conn.record_events(events)
        # The stall an insert sees: from when it was due to when it committed.
        latencies.append(time.monotonic() - min(started, next_at))
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    pipe.send((phase, latencies))
    conn.dispose()


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return (f"{len(ordered)} batches, median {statistics.median(ordered) * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, longest {ordered[-1] * 1000:.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pg-admin", default=os.environ.get(
        "PANKO_COLLECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--events", type=int, default=1_000_000, help="old events to expire")
    p.add_argument("--rate", type=float, default=1000.0, help="events inserted per second")
    p.add_argument("--batch", type=int, default=100, help="events per record_events call")
    p.add_argument("--chunk", type=int, default=10_000, help="events_delete_batch_size")
    p.add_argument("--baseline", type=float, default=20.0, help="seconds without expiry")
    args = p.parse_args()

    dbs = Databases(args.pg_admin)
    try:
        url = dbs.create("expiry")
        conn = storage.get_connection(url)
        conn.upgrade()
        base = models.utcnow() - datetime.timedelta(days=1, minutes=args.events)
        t0 = time.perf_counter()
        with pg_connect(url) as pg:
            for stmt in filter(str.strip, FILL_SQL.split(";\n")):
                pg.execute(stmt, {"base": base, "n": args.events})  # type: ignore[arg-type]
            pg.commit()
            pg.autocommit = True
            pg.execute("VACUUM ANALYZE")
        print(f"loaded {args.events} expired events (19 traits each) in "
              f"{time.perf_counter() - t0:.0f} s")

        ours, theirs = multiprocessing.Pipe()
        proc = multiprocessing.Process(target=inserter,
                                       args=(url, args.data, args.rate, args.batch, theirs))
        proc.start()
        assert ours.recv() == "ready"
        time.sleep(args.baseline)
        ours.send("expiry")
        _, baseline = ours.recv()

        t0 = time.perf_counter()
        run = expirer.expire(conn, TTL, args.chunk)
        elapsed = time.perf_counter() - t0
        ours.send("stop")
        _, during = ours.recv()
        proc.join()

        print(f"expired {run.deleted} events in {elapsed:.1f} s: "
              f"{run.deleted / elapsed:,.0f} events/s (chunks of {args.chunk})")
        print(f"inserts at {args.rate:.0f} events/s, batches of {args.batch}:")
        print(f"  without expiry: {summary(baseline)}")
        print(f"  during expiry:  {summary(during)}")
        ratio = max(during) / max(baseline)
        print(f"  longest stall during / without expiry: {ratio:.2f}x; target: no stall "
              f"over 1 s -> {'met' if max(during) <= 1.0 else 'MISSED'}")
        conn.dispose()
    finally:
        dbs.drop_all()


if __name__ == "__main__":
    main()
