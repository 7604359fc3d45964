"""Benchmark of the read path behind the REST API (not a test).

1. Fill: N events (default 1,000,000) made from the notification corpus
   (10-25 traits each, ``bench/record_events.py``'s ``iter_events``) stored by
   ``record_events`` in batches, spread over 1,000 projects x 5 users
   (``project_id``/``user_id`` text traits, keystone-like hex ids) and over
   the 90 days before the fill, in the order they were generated. Then
   VACUUM ANALYZE.
2. Storage floor: the ``get_events`` calls the API makes for five queries,
   and an admin's list without all_tenants (``admin_proj``; see ``QUERIES``),
   timed in this process, with the project, user, message id and marker
   varied per call: p50/p99.
3. With --http: ``panko-collector-api`` (noauth, [api] workers = --workers,
   threads = --threads)
   started on 127.0.0.1 over the same database. Per query: the API's answers
   checked against get_events on the warm-up cases; then one client
   alternating call by call with the storage floor (each on cases of its
   own, so that both see the same machine load and neither finds the other's
   pages cached), giving p50/p99, requests/s and the overhead
   (HTTP p50 - storage p50) / storage p50; then 8 clients (threads with a
   connection each) giving p50/p99, requests/s, its ratio to one client's
   and the errors. The CPU the bench and the server used per request, and
   how many of the 2 CPUs the whole machine kept busy during the 8-client
   run (others' work included), are printed beside them, then the TCP
   connections the 1 and the 8 clients opened: each client reuses its
   connection while the server keeps it alive (HTTP keep-alive, as
   python-requests sessions do), and opens one per request when the
   server closes each after its response.

Every run sends a bounded number of requests (--repeat per query and
measure) and each 8-client run stops after --time-limit seconds at most.

Run (reusing the database between runs; the 1M fill takes minutes):
    .venv/bin/python bench/api.py --events 1000000 --reuse --http --rounds 3
    .venv/bin/python bench/api.py --events 100000 --reuse --http --rounds 3
Storage floor only, throwaway database (created and dropped):
    .venv/bin/python bench/api.py --events 20000
What PostgreSQL's cache saves (each call timed again at once):
    .venv/bin/python bench/api.py --events 1000000 --reuse --again

With --reuse the database is ``pc_bench_api_<N>`` on --pg-admin: filled if
it does not hold exactly N events, kept afterwards (``--drop`` drops it).
Without, a database of a unique name is dropped at the end. Talks only to
127.0.0.1 and the PostgreSQL of --pg-admin.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record_events as rec
from werkzeug.test import EnvironBuilder

from panko_collector import service, storage
from panko_collector.api import app as api_app
from panko_collector.storage import models

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
    end = models.utcnow().replace(microsecond=0)
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


# ------------------------------------------------------------------ queries

@dataclass
class Case:
    """One request: the get_events call the API makes for it, and its HTTP form."""

    kind: str
    flt: storage.EventFilter
    page: dict[str, Any] | None  # None: a show, called without pagination
    path: str
    headers: dict[str, str]


#: kind -> what it is, in the order printed.
QUERIES = {
    "member_list": "member's default list (limit 100, project_id AND user_id)",
    "member_type": "member's list with an event_type filter",
    "admin_poll": "admin all_tenants poll from a start_timestamp (the last day)",
    "show": "show by message id, with the member's scoping",
    "marker_deep": "member's page after a marker in the newer half of the history",
    "admin_own": "admin's default list, own project (admin_proj)",
}
PAGE = {"limit": 100, "marker": None, "sort": []}


def _member(project: str, user: str) -> dict[str, str]:
    return {"X-Roles": "member", "X-Project-Id": project, "X-User-Id": user}


def _scoping(project: str, user: str) -> list[storage.TraitFilter]:
    return [{"key": "project_id", "string": project, "op": "eq"},
            {"key": "user_id", "string": user, "op": "eq"}]


def make_cases(url: str, count: int, seed: int) -> dict[str, list[Case]]:
    """``count`` cases of every kind, over events drawn at random (seeded)."""
    with rec.pg_connect(url) as pg:
        lo, hi, first, last = pg.execute(
            "SELECT min(id), max(id), min(generated), max(generated) FROM event").fetchone()  # type: ignore[misc]
        rng = random.Random(seed)
        ids = rng.sample(range(lo, hi + 1), min(hi - lo + 1, count * 3))
        rows = pg.execute(
            "SELECT e.message_id, e.generated, t.\"desc\", p.value, u.value FROM event e "
            "JOIN event_type t ON t.id = e.event_type_id "
            "JOIN trait_text p ON p.event_id = e.id AND p.key = 'project_id' "
            "JOIN trait_text u ON u.event_id = e.id AND u.key = 'user_id' "
            "WHERE e.id = ANY(%s) ORDER BY e.id", (ids,)).fetchall()
    rng.shuffle(rows)
    middle = first + (last - first) / 2
    newer = [r for r in rows if r[1] > middle]
    cases: dict[str, list[Case]] = {k: [] for k in QUERIES}
    for i in range(count):
        mid, _gen, etype, project, user = rows[i % len(rows)]
        head = _member(project, user)
        scoping = _scoping(project, user)
        cases["member_list"].append(Case(
            "member_list", storage.EventFilter(traits_filter=scoping), PAGE,
            "/v2/events", head))
        cases["member_type"].append(Case(
            "member_type", storage.EventFilter(traits_filter=scoping, event_type=etype), PAGE,
            "/v2/events?" + urlencode({"q.field": "event_type", "q.op": "eq", "q.value": etype}),
            head))
        since = (last - datetime.timedelta(seconds=rng.randrange(86400))).replace(microsecond=0)
        cases["admin_poll"].append(Case(
            "admin_poll", storage.EventFilter(start_timestamp=since), PAGE,
            "/v2/events?" + urlencode([("q.field", "all_tenants"), ("q.value", "True"),
                                       ("q.field", "start_timestamp"), ("q.op", "ge"),
                                       ("q.value", since.isoformat())]),
            {"X-Roles": "admin", "X-Project-Id": "admin-project", "X-User-Id": "admin"}))
        cases["show"].append(Case(
            "show", storage.EventFilter(traits_filter=scoping, message_id=mid), None,
            f"/v2/events/{mid}", head))
        mmid, _, _, mproject, muser = newer[i % len(newer)]
        cases["marker_deep"].append(Case(
            "marker_deep", storage.EventFilter(traits_filter=_scoping(mproject, muser)),
            {**PAGE, "marker": mmid}, "/v2/events?" + urlencode({"marker": mmid}),
            _member(mproject, muser)))
        cases["admin_own"].append(Case(
            "admin_own", storage.EventFilter(admin_proj=project), PAGE, "/v2/events",
            {"X-Roles": "admin", "X-Project-Id": project, "X-User-Id": "admin"}))
    return cases


def percentiles(times: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    q = statistics.quantiles(times, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


def storage_floor(conn: Any, cases: list[Case], warmup: int, again: bool
                  ) -> tuple[list[float], float, list[float]]:
    """Time every case's get_events in this process.

    Returns (seconds per call, mean events returned, seconds of the same
    call made again at once, its pages then in PostgreSQL's cache, if
    ``again``); the first ``warmup`` cases are run but not counted.
    """
    times: list[float] = []
    repeated: list[float] = []
    got = 0
    for i, case in enumerate(cases):
        t0 = time.perf_counter()
        n = len(list(conn.get_events(case.flt, case.page)))
        elapsed = time.perf_counter() - t0
        if i >= warmup:
            times.append(elapsed)
            got += n
        if again:
            t0 = time.perf_counter()
            list(conn.get_events(case.flt, case.page))
            if i >= warmup:
                repeated.append(time.perf_counter() - t0)
    return times, got / len(times), repeated


# ---------------------------------------------------------------------- HTTP

class Server:
    """``panko-collector-api`` in noauth mode on 127.0.0.1, over the bench database."""

    def __init__(self, url: str, workers: int, tmp: Path, threads: int | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = tmp / "api.conf"
        self.conf.write_text(
            "[DEFAULT]\nauth_strategy = noauth\n"
            f"[database]\nconnection = {url}\n"
            f"[api]\nhost = 127.0.0.1\nport = {self.port}\nworkers = {workers}\n"
            + (f"threads = {threads}\n" if threads else ""))
        exe = Path(sys.executable).parent / "panko-collector-api"
        self.log = open(tmp / "api.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([str(exe), "--config-file", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/")
                if c.getresponse().status == 200:
                    c.close()
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (tmp / "api.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"panko-collector-api did not come up:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def cpu_seconds(self) -> float:
        """CPU time of the server and its workers so far (Linux /proc)."""
        total = 0.0
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                children = (task / "children").read_text().split()
                pids += [int(c) for c in children]
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        return total


class Connection(http.client.HTTPConnection):
    """A client's connection, reused while the server keeps it alive (http.client
    reopens it when the server closed it), counting how often it connected."""

    opened = 0
    _count_lock = threading.Lock()

    def connect(self) -> None:
        super().connect()
        with Connection._count_lock:
            Connection.opened += 1


def get(c: http.client.HTTPConnection, case: Case) -> tuple[int, bytes]:
    """One request on ``c`` (reopened by http.client when the server closed it)."""
    c.request("GET", case.path, headers=case.headers)
    r = c.getresponse()
    return r.status, r.read()


@dataclass
class Load:
    """What one load run measured."""

    times: list[float]
    errors: list[str]
    elapsed: float
    client_cpu: float
    server_cpu: float
    connections: int = 0

    @property
    def rate(self) -> float:
        return len(self.times) / self.elapsed


def load(server: Server, cases: list[Case], clients: int, time_limit: float) -> Load:
    """Send every case once, from ``clients`` threads with a connection each;
    stop early after ``time_limit`` seconds."""
    todo = iter(cases)
    lock = threading.Lock()
    times: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + time_limit

    def client() -> None:
        c = Connection("127.0.0.1", server.port, timeout=30)
        try:
            while time.monotonic() < stop_at:
                with lock:
                    case = next(todo, None)
                if case is None:
                    return
                t0 = time.perf_counter()
                try:
                    status, body = get(c, case)
                    elapsed = time.perf_counter() - t0
                    if status != 200:
                        errors.append(f"{status} {case.path}: {body[:200]!r}")
                    else:
                        times.append(elapsed)
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{exc!r} {case.path}")
                    c.close()
        finally:
            c.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    opened = Connection.opened
    cpu0, scpu0, t0 = time.process_time(), server.cpu_seconds(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Load(times, errors, time.perf_counter() - t0, time.process_time() - cpu0,
                server.cpu_seconds() - scpu0, Connection.opened - opened)


def wsgi_call(app: Any, case: Case) -> tuple[str, bytes]:
    """One request through the WSGI application in this process (no server, no TCP)."""
    return wsgi_timed(app, case)[:2]


def wsgi_timed(app: Any, case: Case) -> tuple[str, bytes, float]:
    """``wsgi_call`` and the seconds it took, the environ made beforehand."""
    environ = EnvironBuilder(path=case.path, headers=case.headers).get_environ()
    status: list[str] = []

    def start_response(s: str, _headers: Any, _exc_info: Any = None) -> Any:
        status.append(s)
        return lambda _data: None

    t0 = time.perf_counter()
    body = b"".join(app(environ, start_response))
    return status[0], body, time.perf_counter() - t0


def side_by_side(conn: Any, server: Server, app: Any, floor_cases: list[Case],
                 http_cases: list[Case], wsgi_cases: list[Case]
                 ) -> tuple[list[float], Load, list[float]]:
    """get_events in this process, HTTP requests by one client, and the same
    requests made to the WSGI application in this process, rotated call by
    call (each on cases of its own, so that none finds another's pages in
    PostgreSQL's cache), so that all three see the same machine load.

    The WSGI times split the API's overhead: WSGI - storage is the
    application's (middleware, Flask, policy, rendering, JSON); HTTP - WSGI
    is gunicorn's and the connection's."""
    floor: list[float] = []
    in_process: list[float] = []
    times: list[float] = []
    errors: list[str] = []
    c = Connection("127.0.0.1", server.port, timeout=30)
    cpu = scpu = wall = 0.0
    order = ("floor", "http", "wsgi")
    opened = Connection.opened
    for i, cases in enumerate(zip(floor_cases, http_cases, wsgi_cases, strict=True)):
        for n in range(3):
            which = order[(i + n) % 3]
            if which == "floor":
                fc = cases[0]
                t0 = time.perf_counter()
                list(conn.get_events(fc.flt, fc.page))
                floor.append(time.perf_counter() - t0)
            elif which == "wsgi":
                wc = cases[2]
                wstatus, body, elapsed = wsgi_timed(app, wc)
                in_process.append(elapsed)
                if not wstatus.startswith("200"):
                    errors.append(f"in process {wstatus} {wc.path}: {body[:200]!r}")
            else:
                hc = cases[1]
                cpu0, scpu0, t0 = time.process_time(), server.cpu_seconds(), time.perf_counter()
                try:
                    status, body = get(c, hc)
                    if status != 200:
                        errors.append(f"{status} {hc.path}: {body[:200]!r}")
                    else:
                        times.append(time.perf_counter() - t0)
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{exc!r} {hc.path}")
                    c.close()
                wall += time.perf_counter() - t0
                cpu += time.process_time() - cpu0
                scpu += server.cpu_seconds() - scpu0
    c.close()
    return floor, Load(times, errors, wall, cpu, scpu, Connection.opened - opened), in_process


def check_same(conn: Any, server: Server, cases: list[Case]) -> None:
    """The API answers these cases with the events get_events returns."""
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for case in cases:
        want = [e.message_id for e in conn.get_events(case.flt, case.page)]
        status, body = get(c, case)
        got = json.loads(body) if status == 200 else None
        got_ids = [got["message_id"]] if isinstance(got, dict) else [
            e["message_id"] for e in got or ()]
        if got_ids != want:
            raise SystemExit(f"{case.path}: the API answered {status} with {got_ids[:3]}..., "
                             f"get_events {want[:3]}...")
    c.close()


class Machine:
    """How busy the CPUs were between two readings of /proc/stat."""

    def __init__(self) -> None:
        self.t0 = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    def busy(self) -> float:
        """CPUs busy on average since the last call (2.0 = both cores)."""
        t1 = self._read()
        total, idle = t1[0] - self.t0[0], t1[1] - self.t0[1]
        self.t0 = t1
        return (total - idle) / total * (os.cpu_count() or 1) if total else 0.0


def run(url: str, args: argparse.Namespace) -> None:
    """The storage floor and (with --http) the HTTP loads, ``args.rounds`` times."""
    conn = storage.get_connection(url)
    tmp = Path(tempfile.mkdtemp(prefix="pc_bench_api_"))
    server = Server(url, args.workers, tmp, args.threads) if args.http else None
    # The API's own WSGI application, as its wsgi module builds it.
    app = api_app.load_app(service.prepare_service([], config_files=[str(server.conf)])) \
        if server else None
    summary: dict[tuple[str, str], list[float]] = {}

    def note(kind: str, what: str, value: float) -> float:
        summary.setdefault((kind, what), []).append(value)
        return value

    try:
        for rnd in range(1, args.rounds + 1):
            w, r = args.warmup, args.repeat
            cases = make_cases(url, w + 4 * r, args.seed + rnd)
            # The cases are long-lived objects of the bench, not of get_events:
            # kept out of Python's full collections, which would otherwise
            # walk them every few dozen calls (pauses in the storage floor).
            gc.collect()
            gc.freeze()
            print(f"\nround {rnd}: {args.events} events stored, {r} calls per query and "
                  f"measure ({w} more first, not counted); times in ms; load average "
                  f"{Path('/proc/loadavg').read_text().split()[0]}", flush=True)
            print(f"  {'query':12} {'storage p50':>11} {'p99':>7} {'events':>6}" + (
                f" | {'1 client p50':>12} {'p99':>7} {'req/s':>6} {'overhead':>8}"
                f" {'of which app':>12}"
                f" | {'8 clients p50':>13} {'p99':>7} {'req/s':>6} {'x1':>5} {'errors':>6}"
                f" | {'CPU ms/req: bench':>17} {'server':>6} {'CPUs busy':>9}"
                f" {'TCP conns 1/8':>13}"
                if server else ""))
            machine = Machine()
            for kind, of_kind in cases.items():
                if kind not in args.queries:
                    continue
                warm, first, second, third, fourth = (
                    of_kind[:w], of_kind[w:w + r], of_kind[w + r:w + 2 * r],
                    of_kind[w + 2 * r:w + 3 * r], of_kind[w + 3 * r:])
                if server is None:
                    times, mean, again = storage_floor(conn, warm + first, w, args.again)
                else:
                    check_same(conn, server, warm)
                    times, one, wsgi = side_by_side(conn, server, app, first, second,
                                                    fourth)
                    for case in warm:
                        wsgi_call(app, case)
                    mean = statistics.mean(len(list(conn.get_events(c.flt, c.page)))
                                           for c in warm)
                p50, p99 = percentiles(times)
                note(kind, "storage p50", p50)
                note(kind, "storage p99", p99)
                line = f"  {kind:12} {p50:11.2f} {p99:7.2f} {mean:6.1f}"
                if server is None and again:
                    line += f"   same call again at once: p50 {percentiles(again)[0]:.2f}"
                if server:
                    machine.busy()
                    eight = load(server, third, 8, args.time_limit)
                    busy8 = machine.busy()
                    h50, h99 = percentiles(one.times) if len(one.times) > 1 else (0.0, 0.0)
                    e50, e99 = percentiles(eight.times) if len(eight.times) > 1 else (0.0, 0.0)
                    over = note(kind, "overhead %", (h50 - p50) / p50 * 100)
                    w50 = percentiles(wsgi)[0]
                    app_over = note(kind, "app overhead %", (w50 - p50) / p50 * 100)
                    note(kind, "1 client p50", h50)
                    note(kind, "1 client p99", h99)
                    note(kind, "1 client req/s", one.rate)
                    note(kind, "8 clients req/s", eight.rate)
                    scale = note(kind, "8/1 clients", eight.rate / one.rate)
                    errs = len(one.errors) + len(eight.errors)
                    n = len(one.times) + len(eight.times) + errs
                    line += (f" | {h50:12.2f} {h99:7.2f} {one.rate:6.0f} {over:7.0f}%"
                             f" {app_over:11.0f}%"
                             f" | {e50:13.2f} {e99:7.2f} {eight.rate:6.0f} {scale:5.2f} {errs:6}"
                             f" | {(one.client_cpu + eight.client_cpu) / n * 1000:17.2f}"
                             f" {(one.server_cpu + eight.server_cpu) / n * 1000:6.2f}"
                             f" {busy8:9.2f}"
                             f" {f'{one.connections}/{eight.connections}':>13}")
                    for err in (one.errors + eight.errors)[:3]:
                        line += f"\n      error: {err}"
                print(line, flush=True)
        if args.rounds > 1:
            print(f"\nspread over {args.rounds} rounds (min / median / max):")
            for (kind, what), values in summary.items():
                print(f"  {kind:12} {what:16} {min(values):8.2f} {statistics.median(values):8.2f}"
                      f" {max(values):8.2f}")
    finally:
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        conn.dispose()


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
    p.add_argument("--drop", action="store_true", help="drop pc_bench_api_<events> and stop")
    p.add_argument("--repeat", type=int, default=300, help="timed calls per query")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--again", action="store_true",
                   help="without --http: also time each call made again at once (cached pages)")
    p.add_argument("--queries", type=lambda v: v.split(","), default=list(QUERIES),
                   help=f"comma-separated, of {','.join(QUERIES)} (default: all)")
    p.add_argument("--http", action="store_true",
                   help="also start panko-collector-api and load it with 1 and 8 clients")
    p.add_argument("--workers", type=int, default=2, help="[api] workers")
    p.add_argument("--threads", type=int, help="[api] threads (default: the API's)")
    p.add_argument("--time-limit", type=float, default=60,
                   help="seconds at most per load run (per query and client count)")
    args = p.parse_args()
    # Stopped by SIGTERM, still stop the server and drop the database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    dbs = rec.Databases(args.pg_admin)
    if args.drop:
        with psycopg.connect(**dbs.conninfo, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "pc_bench_api_{args.events}" WITH (FORCE)')
        return
    try:
        url = database(args, dbs)
        if args.fill_only:
            return
        run(url, args)
    finally:
        dbs.drop_all()


if __name__ == "__main__":
    main()
