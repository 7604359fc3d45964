"""Benchmark of the read path behind the REST API (not a test).

1. Fill: N events (default 1,000,000) made from the notification corpus
   (10-25 traits each, ``bench/record_events.py``'s ``iter_events``) stored by
   ``record_events`` in batches, spread over 1,000 projects x 5 users
   (``project_id``/``user_id`` text traits, keystone-like hex ids) and over
   the 90 days before the fill, in the order they were generated. Then
   VACUUM ANALYZE.
2. Storage floor: the ``get_events`` calls the API makes for five queries
   (see ``QUERIES``), timed in this process, with the project, user, message
   id and marker varied per repetition: p50/p99.

Run (reusing the database between runs; the 1M fill takes a while):
    .venv/bin/python bench/api.py --events 1000000 --reuse
    .venv/bin/python bench/api.py --events 100000 --reuse
Throwaway (created and dropped):
    .venv/bin/python bench/api.py --events 20000

With --reuse the database is ``pc_bench_api_<N>`` on --pg-admin: filled if
it does not hold exactly N events, kept afterwards (drop it with
``--drop``). Without, a database of a unique name is dropped at the end.
Talks only to the PostgreSQL of --pg-admin.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import random
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record_events as rec

from panko_collector import storage

PROJECTS = 1000
USERS_PER_PROJECT = 5
SPAN = datetime.timedelta(days=90)


def project_id(p: int) -> str:
    return hashlib.md5(f"project-{p}".encode()).hexdigest()


def user_id(p: int, u: int) -> str:
    return hashlib.md5(f"user-{p}-{u}".encode()).hexdigest()


def scope_of(i: int) -> tuple[int, int]:
    """(project, user) of event i: scattered, every project and user equally often."""
    h = (i * 2654435761) & 0xFFFFFFFF
    return h % PROJECTS, (h // PROJECTS) % USERS_PER_PROJECT


# ----------------------------------------------------------------------- fill

def fill(url: str, n: int, data: Path, batch: int) -> None:
    """Store n corpus events through record_events, then VACUUM ANALYZE."""
    end = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
    start = end - SPAN
    step = SPAN / n
    rng = random.Random(42)
    jitter = [datetime.timedelta(milliseconds=rng.randrange(1000)) for _ in range(997)]

    def when(i: int) -> datetime.datetime:
        return start + step * i + jitter[i % 997]

    def scope(i: int) -> tuple[str, str]:
        p, u = scope_of(i)
        return project_id(p), user_id(p, u)

    conn = storage.get_connection(url)
    conn.upgrade()
    events = rec.iter_events(data, n, False, when, scope)
    t0 = last = time.perf_counter()
    stored = 0
    while True:
        chunk = [e for _, e in zip(range(batch), events, strict=False)]
        if not chunk:
            break
        r = conn.record_events(chunk)
        if r.failed:
            raise SystemExit(f"{len(r.failed)} events refused, e.g. {r.failed[0].reason}")
        stored += r.stored
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            print(f"  {stored} events stored, {stored / (last - t0):.0f}/s", flush=True)
    conn.dispose()
    elapsed = time.perf_counter() - t0
    with rec.pg_connect(url) as pg:
        pg.autocommit = True
        pg.execute("VACUUM ANALYZE")
    print(f"filled {stored} events through record_events in {elapsed:.0f} s "
          f"({stored / elapsed:.0f}/s), vacuumed in {time.perf_counter() - t0 - elapsed:.0f} s",
          flush=True)


def database(args: argparse.Namespace, dbs: rec.Databases) -> str:
    """URL of the bench database, filled with args.events events."""
    if not args.reuse:
        url = dbs.create(f"api_{args.events}")
        fill(url, args.events, args.data, args.batch)
        return url
    name = f"pc_bench_api_{args.events}"
    url = dbs.admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(**dbs.conninfo, autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    count = None
    if exists:
        with rec.pg_connect(url) as pg, contextlib.suppress(psycopg.errors.UndefinedTable):
            count = pg.execute("SELECT count(*) FROM event").fetchone()[0]  # type: ignore[index]
    if count == args.events:
        print(f"reusing {name}: {count} events", flush=True)
        return url
    print(f"{name} {'holds ' + str(count) + ' events' if exists else 'does not exist'}: "
          "filling it", flush=True)
    with psycopg.connect(**dbs.conninfo, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    fill(url, args.events, args.data, args.batch)
    return url


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pg-admin", default=os.environ.get(
        "PANKO_COLLECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--data", type=Path, default=rec.DEFAULT_DATA)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--reuse", action="store_true",
                   help="use (or fill, then keep) the database pc_bench_api_<events>")
    p.add_argument("--fill-only", action="store_true")
    args = p.parse_args()
    dbs = rec.Databases(args.pg_admin)
    try:
        url = database(args, dbs)
        if args.fill_only:
            return
        print(url)
    finally:
        dbs.drop_all()


if __name__ == "__main__":
    main()
