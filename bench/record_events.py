"""Benchmark of the PostgreSQL write and read paths (not a test).

1. record_events: N events built from the notification corpus (10-25 traits
   each, taken from payload fields), stored in batches, beside the fastest raw
   bulk path for the very same rows (psycopg COPY into event and the four
   trait tables, ids drawn from the sequence) into a second database of the
   same schema. Batches alternate which path goes first, so both see the same
   machine load. Prints events/s of both and the ratio (target >= 70%).
2. get_events with one trait filter and limit 100 over R stored events
   (target <= 50 ms), the events bulk-loaded server-side; beside it, in the
   same run, the time without the id prefetch of selective trait filters.
3. clear_expired_data deleting E of those events.

Run (full size, a few minutes):
    .venv/bin/python bench/record_events.py
Small:
    .venv/bin/python bench/record_events.py --events 5000 --read-events 100000 --expire 50000

Databases are created with unique names on --pg-admin and dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import hashlib
import itertools
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from panko_collector import storage
from panko_collector.storage import models
from panko_collector.storage.sqlalchemy import read

T = models.Trait
REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("PANKO_COLLECTOR_DATA", REPO.parent / "shared" / "data"))


# ------------------------------------------------------------------ the events

def _notifications(data_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """(event_type, notification) for every notification in the corpus."""
    out = []
    for path in sorted(glob.glob(str(data_dir / "notifications" / "**" / "*.json"),
                                 recursive=True)):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for item in doc if isinstance(doc, list) else [doc]:
            if not isinstance(item, dict):
                continue
            name = item.get("event_type") or Path(path).stem.split("_")[0]
            out.append((str(name), item))
    return out


def _leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Flattened scalar fields of a payload, dotted names, in document order."""
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            if k == "$ref":
                continue
            out += _leaves(v, f"{prefix}{k}.")
        return out
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value[:3]):
            out += _leaves(v, f"{prefix}{i}.")
        return out
    return [(prefix.rstrip("."), value)]


def _trait(name: str, value: Any) -> models.Trait | None:
    name = name[-models.TEXT_LIMIT:]
    if value is None:
        return T(name, T.NONE_TYPE, None)
    if isinstance(value, bool):
        return T(name, T.TEXT_TYPE, str(value))
    if isinstance(value, int):
        return T(name, T.INT_TYPE, value) if models.INT_MIN <= value <= models.INT_MAX else None
    if isinstance(value, float):
        return T(name, T.FLOAT_TYPE, value)
    text = str(value)
    if len(text) >= 19 and text[4] == "-" and text[10] in "T ":
        try:
            dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return T(name, T.DATETIME_TYPE, models.to_naive_utc(dt))
        except ValueError:
            pass
    return T(name, T.TEXT_TYPE, text)


def event_templates(data_dir: Path) -> list[tuple[str, list[models.Trait], dict[str, Any]]]:
    """(event_type, 7-22 traits from the payload, notification) per corpus notification."""
    templates = []
    for n, (etype, note) in enumerate(_notifications(data_dir)):
        payload = note.get("payload", note)
        unique: dict[tuple[int, str], models.Trait] = {}
        for k, v in _leaves(payload):
            if k and k not in ("project_id", "user_id", "request_id") and (t := _trait(k, v)):
                unique[(1 if t.dtype == 0 else t.dtype, t.name)] = t
        traits = list(unique.values())[: 7 + n % 16]  # with our own 3: 10..25 traits
        templates.append((etype, traits, note))
    return templates


def iter_events(data_dir: Path, count: int, raw: bool,
                when: Callable[[int], datetime.datetime],
                scope: Callable[[int], tuple[str, str]]) -> Iterator[models.Event]:
    """``count`` events cycling through the corpus, each with 10-25 traits.

    Event ``i`` is generated at ``when(i)`` and belongs to the (project,
    user) ``scope(i)``, both given as text traits. Made one at a time: a
    million events are gigabytes as a list.
    """
    templates = event_templates(data_dir)
    for i, (etype, traits, note) in zip(range(count), itertools.cycle(templates), strict=False):
        project, user = scope(i)
        own = [
            T("project_id", T.TEXT_TYPE, project),
            T("user_id", T.TEXT_TYPE, user),
            T("request_id", T.TEXT_TYPE, f"req-{uuid.uuid4()}"),
        ]
        pad = [T(f"extra_{j}", T.INT_TYPE, i + j) for j in range(max(0, 10 - len(traits) - 3))]
        all_traits = (own + traits + pad)[:25]
        yield models.Event(str(uuid.uuid4()), etype, when(i), all_traits, note if raw else {})


def build_events(data_dir: Path, count: int, raw: bool, start: datetime.datetime
                 ) -> list[models.Event]:
    """``count`` events one millisecond apart, over 100 projects and 1000 users."""
    return list(iter_events(
        data_dir, count, raw, lambda i: start + datetime.timedelta(milliseconds=i),
        lambda i: (f"project-{i % 100:03}", f"user-{i % 1000:04}")))


# ------------------------------------------------------------- the raw path

def raw_copy(pg: psycopg.Connection[Any], events: list[models.Event],
             type_ids: dict[str, int]) -> float:
    """Store ``events`` by plain COPY in one transaction; return the COPY-only seconds."""
    tables: dict[int, list[tuple[int, str, Any]]] = {1: [], 2: [], 3: [], 4: []}
    with pg.transaction(), pg.cursor() as cur:
        cur.execute("SELECT nextval('event_id_seq') FROM generate_series(1, %s)",
                    (len(events),))
        ids = [r[0] for r in cur.fetchall()]
        event_rows = []
        for id_, ev in zip(ids, events, strict=True):
            event_rows.append((id_, ev.message_id, ev.generated, type_ids[ev.event_type],
                               json.dumps(ev.raw)))
            for t in ev.traits:
                tables[1 if t.dtype == 0 else t.dtype].append((id_, t.name, t.value))
        t0 = time.perf_counter()
        with cur.copy("COPY event (id, message_id, generated, event_type_id, raw) "
                      "FROM STDIN") as copy:
            for row in event_rows:
                copy.write_row(row)
        for code, name in ((1, "trait_text"), (2, "trait_int"), (3, "trait_float"),
                           (4, "trait_datetime")):
            with cur.copy(f"COPY {name} (event_id, key, value) FROM STDIN") as copy:
                for row in tables[code]:
                    copy.write_row(row)
        copy_only = time.perf_counter() - t0
    return copy_only


def dedupe_traits(events: list[models.Event]) -> None:
    """Make trait names unique per table, so the raw COPY cannot hit the primary key."""
    for ev in events:
        seen: dict[tuple[int, str], models.Trait] = {}
        for t in ev.traits:
            seen[(1 if t.dtype == 0 else t.dtype, t.name)] = t
        ev.traits = [t if not isinstance(t.value, str)
                     else T(t.name, t.dtype, t.value[:models.TEXT_LIMIT])
                     for t in seen.values()]


# ---------------------------------------------------------------- databases

class Databases:
    """Fresh databases on the server, dropped at the end."""

    def __init__(self, admin_url: str) -> None:
        u = make_url(admin_url)
        self.admin = u
        self.conninfo = {"host": u.host or "127.0.0.1", "port": u.port or 5432,
                         "user": u.username or "postgres", "dbname": u.database or "postgres"}
        if u.password:
            self.conninfo["password"] = u.password
        self.names: list[str] = []

    def create(self, label: str) -> str:
        name = f"pc_bench_{label}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(**self.conninfo, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with psycopg.connect(**self.conninfo, autocommit=True) as c:
            for name in self.names:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_connect(url: str) -> psycopg.Connection[Any]:
    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                           password=u.password or None, dbname=u.database)


# ------------------------------------------------------------------ benches

def bench_write(dbs: Databases, args: argparse.Namespace) -> None:
    start = datetime.datetime(2026, 1, 1)
    t0 = time.perf_counter()
    events = build_events(args.data, args.events, args.raw, start)
    dedupe_traits(events)
    ntraits = sum(len(e.traits) for e in events)
    print(f"built {len(events)} events from the corpus in {time.perf_counter() - t0:.1f} s: "
          f"{ntraits} traits, {ntraits / len(events):.1f} per event "
          f"(min {min(len(e.traits) for e in events)}, max {max(len(e.traits) for e in events)}),"
          f" raw {'kept' if args.raw else 'empty (the default)'}")

    ours = storage.get_connection(dbs.create("ours"))
    ours.upgrade()
    raw_url = dbs.create("raw")
    setup = storage.get_connection(raw_url)
    setup.upgrade()
    setup.dispose()
    pg = pg_connect(raw_url)
    types = sorted({e.event_type for e in events})
    with pg.transaction(), pg.cursor() as cur:
        for name in types:
            cur.execute('INSERT INTO event_type ("desc") VALUES (%s)', (name,))
        cur.execute('SELECT "desc", id FROM event_type')
        type_ids = dict(cur.fetchall())

    t_ours = t_raw = t_copy = 0.0
    stored = 0
    batches = [events[i:i + args.batch] for i in range(0, len(events), args.batch)]
    for n, batch in enumerate(batches):
        order = ("ours", "raw") if n % 2 == 0 else ("raw", "ours")
        for which in order:
            t0 = time.perf_counter()
            if which == "ours":
                r = ours.record_events(batch)
                t_ours += time.perf_counter() - t0
                stored += r.stored
                if r.failed:
                    print(f"  {len(r.failed)} failed, e.g. {r.failed[0].reason}")
            else:
                t_copy += raw_copy(pg, batch, type_ids)
                t_raw += time.perf_counter() - t0
    pg.close()
    ours.dispose()
    assert stored == len(events), f"stored {stored} of {len(events)}"
    n = len(events)
    print(f"record_events: {n / t_ours:9.0f} events/s ({t_ours:.2f} s, batches of {args.batch})")
    print(f"raw COPY:      {n / t_raw:9.0f} events/s ({t_raw:.2f} s incl. building the rows; "
          f"{t_copy:.2f} s in COPY itself)")
    print(f"ratio record_events / raw COPY: {t_raw / t_ours:.0%} (target >= 70%); "
          f"against COPY alone: {t_copy / t_ours:.0%}")


FILL_SQL = """
INSERT INTO event_type ("desc") SELECT 'compute.instance.' || s || '.end'
  FROM unnest(ARRAY['create', 'delete', 'update', 'exists', 'resize', 'rebuild']) s;
INSERT INTO event (message_id, generated, event_type_id, raw)
  SELECT md5(i::text) || '-' || i, %(base)s + i * interval '1 minute',
         (SELECT min(id) FROM event_type) + i %% 6, '{}'
  FROM generate_series(0, %(n)s - 1) i;
INSERT INTO trait_text (event_id, key, value)
  SELECT e.id, k.key, CASE k.key
      WHEN 'project_id' THEN 'project-' || lpad((e.id %% 100)::text, 3, '0')
      WHEN 'tenant_id' THEN 'project-' || lpad((e.id %% 100)::text, 3, '0')
      WHEN 'user_id' THEN 'user-' || (e.id %% 1000)
      WHEN 'host' THEN 'compute-' || (e.id %% 50)
      WHEN 'state' THEN (ARRAY['active', 'building', 'deleted', 'error', 'stopped'])[1 + e.id %% 5]
      ELSE k.key || '-' || md5(e.id::text || k.key) END
  FROM event e CROSS JOIN unnest(ARRAY['project_id', 'tenant_id', 'user_id', 'host', 'state',
      'instance_id', 'request_id', 'display_name', 'image_ref_url', 'service']) AS k(key);
INSERT INTO trait_int (event_id, key, value)
  SELECT e.id, k.key, (e.id::bigint * 7919) %% 65536
  FROM event e CROSS JOIN unnest(ARRAY['memory_mb', 'disk_gb', 'vcpus']) AS k(key);
INSERT INTO trait_float (event_id, key, value)
  SELECT id, 'progress', (id %% 100) / 100.0 FROM event;
INSERT INTO trait_datetime (event_id, key, value)
  SELECT e.id, k.key, e.generated - interval '5 minutes'
  FROM event e CROSS JOIN unnest(ARRAY['launched_at', 'created_at']) AS k(key);
"""


def bench_read_and_expire(dbs: Databases, args: argparse.Namespace) -> None:
    url = dbs.create("read")
    conn = storage.get_connection(url)
    conn.upgrade()
    n = args.read_events
    # One event per minute, the newest ending a day ago: the oldest `expire`
    # events are then older than the ttl computed below.
    now = models.utcnow()
    base = (now - datetime.timedelta(days=1, minutes=n)).replace(second=0, microsecond=0)
    t0 = time.perf_counter()
    with pg_connect(url) as pg:
        for stmt in filter(str.strip, FILL_SQL.split(";\n")):
            pg.execute(stmt, {"base": base, "n": n})  # type: ignore[arg-type]
        pg.commit()
        pg.autocommit = True
        pg.execute("VACUUM ANALYZE")
        traits = sum(pg.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                     for t in ("trait_text", "trait_int", "trait_float", "trait_datetime"))
    print(f"loaded {n} events with {traits} traits ({traits / n:.0f} per event) server-side "
          f"in {time.perf_counter() - t0:.0f} s")

    def timed(flt: storage.EventFilter, runs: int = 7) -> tuple[float, float, int, float]:
        """First and median time with the trait filters prefetched as ids where
        they match few events, and median time without (row by row), interleaved."""
        times: dict[int, list[float]] = {read.PREFETCH_MAX: [], -1: []}
        got = 0
        for _ in range(runs):
            for cap, runs_of_cap in times.items():
                read.PREFETCH_MAX = cap
                t = time.perf_counter()
                got = len(list(conn.get_events(flt, {"limit": 100})))
                runs_of_cap.append(time.perf_counter() - t)
        (prefetch, prefetched), (_, row_by_row) = times.items()
        read.PREFETCH_MAX = prefetch
        return (prefetched[0] * 1000, statistics.median(prefetched[1:]) * 1000, got,
                statistics.median(row_by_row[1:]) * 1000)

    one_instance = "instance_id-" + hashlib.md5(f"{n // 2}instance_id".encode()).hexdigest()
    for label, flt in (
        ("instance_id eq (1 event)", storage.EventFilter(traits_filter=[
            {"key": "instance_id", "op": "eq", "string": one_instance}])),
        ("project_id eq (1% of events)", storage.EventFilter(traits_filter=[
            {"key": "project_id", "op": "eq", "string": "project-042"}])),
        ("memory_mb gt 60000 (8%)", storage.EventFilter(traits_filter=[
            {"key": "memory_mb", "op": "gt", "integer": 60000}])),
        ("state eq + event_type", storage.EventFilter(
            event_type="compute.instance.delete.end",
            traits_filter=[{"key": "state", "op": "eq", "string": "error"}])),
    ):
        first, median, got, row_by_row = timed(flt)
        print(f"get_events, one trait filter [{label}], limit 100 over {n} events: "
              f"median {median:.1f} ms (first run {first:.1f} ms), {got} events "
              f"(target <= 50 ms); without the id prefetch: {row_by_row:.1f} ms")
    first, median, got, row_by_row = timed(storage.EventFilter(traits_filter=[
        {"key": "user_id", "op": "eq", "string": "nobody"}]))
    print(f"get_events, trait filter matching nothing: median {median:.1f} ms "
          f"(first run {first:.1f} ms), {got} events; without the id prefetch: "
          f"{row_by_row:.1f} ms")

    expire = min(args.expire, n)
    # Event i was generated at base + i minutes; cut between event expire-1 and expire.
    cutoff = base + datetime.timedelta(minutes=expire - 1, seconds=30)
    ttl = int((models.utcnow() - cutoff).total_seconds())
    t0 = time.perf_counter()
    deleted = conn.clear_expired_data(ttl)
    elapsed = time.perf_counter() - t0
    print(f"clear_expired_data: deleted {deleted} events with their traits in {elapsed:.1f} s "
          f"({deleted / elapsed:.0f} events/s, chunks of "
          f"{conn._delete_batch_size})")  # type: ignore[attr-defined]
    conn.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pg-admin", default=os.environ.get(
        "PANKO_COLLECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--raw", action="store_true", help="keep the whole notification as raw")
    p.add_argument("--read-events", type=int, default=1_000_000)
    p.add_argument("--expire", type=int, default=500_000)
    p.add_argument("--skip-write", action="store_true")
    p.add_argument("--skip-read", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the databases (names printed)")
    args = p.parse_args()
    dbs = Databases(args.pg_admin)
    try:
        if not args.skip_write:
            bench_write(dbs, args)
        if not args.skip_read:
            bench_read_and_expire(dbs, args)
    finally:
        if args.keep:
            print("kept databases:", ", ".join(dbs.names))
        else:
            dbs.drop_all()


if __name__ == "__main__":
    main()
