"""The documented memory bound, on a real daemon: a worker holds at most
prefetch_count messages of at most max_message_bytes each, however many
queues it consumes (RabbitMQ's prefetch is per consumer), and its RSS grows
by no more than the README says: (prefetch_count + 4) x max_message_bytes
+ 1 MiB over its size when idle."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.daemon import Collector, write_conf
from tests.functional.storage_helpers import count_events, open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PRIORITIES = ["info", "error", "warn", "audit"]
PREFETCH = 40
MAX_BYTES = 256 * 1024
WORKERS = 2


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def big_note(priority: str, size: int) -> bytes:
    """An oslo.messaging envelope of exactly ``size`` bytes."""
    note = broker.notification(priority=priority.upper(), payload={"pad": ""})
    body = broker.envelope(note)
    note["payload"]["pad"] = "x" * (size - len(body))
    body = broker.envelope(note)
    assert len(body) == size
    return body


def test_rss_per_worker_stays_under_prefetch_times_max_message_bytes(
        tmp_path: Path, vhost: str, pg_url: str, collectors: list[Collector]) -> None:
    """Bodies just under max_message_bytes on four queues, the database
    blocked so nothing is acked: each worker fills its prefetch (no more:
    the broker's count of unacked messages says so) and its RSS grows by
    less than prefetch_count x max_message_bytes."""
    open_store(pg_url)
    conf = write_conf(tmp_path / "c.conf", vhost, pg_url, workers=WORKERS,
                      exchanges="nova", priorities=",".join(PRIORITIES),
                      prefetch_count=PREFETCH, max_message_bytes=MAX_BYTES,
                      batch_size=500, batch_timeout=0.5)
    daemon = Collector(conf)
    collectors.append(daemon)
    daemon.wait_consuming(WORKERS)
    workers = daemon.workers()
    assert len(workers) == WORKERS
    pub = Publisher(vhost)
    # Warm-up: every code path (decode, convert, write, ack) has run once,
    # and every worker's allocator has seen bodies of this size.
    for _ in range(3):
        for priority in PRIORITIES:
            pub.publish_raw(big_note(priority, MAX_BYTES - 1), priority=priority)
    wait_for(lambda: count_events(pg_url) == 3 * len(PRIORITIES), what="warm-up stored")
    before = {pid: rss(pid) for pid in workers}

    u = make_url(pg_url)
    with psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                         dbname=u.database) as lock:
        # Every write blocks behind this lock: nothing is acked.
        lock.execute("LOCK TABLE event IN ACCESS EXCLUSIVE MODE")
        per_queue = WORKERS * PREFETCH  # as much as every worker could hold from one queue
        for _ in range(per_queue):
            for priority in PRIORITIES:
                pub.publish_raw(big_note(priority, MAX_BYTES - 1), priority=priority)

        def unacked() -> int:
            counts = broker.queue_counts(vhost)
            return sum(counts[f"notifications.{p}"][1] for p in PRIORITIES)

        wait_for(lambda: unacked() == WORKERS * PREFETCH, timeout=60,
                 what="every worker holding its prefetch")
        time.sleep(1)  # what was delivered is decoded and converted meanwhile
        assert unacked() == WORKERS * PREFETCH
        grown = {pid: rss(pid) - before[pid] for pid in workers}
        lock.rollback()
    pub.close()
    # The bodies held, the one being read and parsed (its frames, the joined
    # body, the decoded text and the parsed string: four copies at most at
    # once), and buffers.
    bound = (PREFETCH + 4) * MAX_BYTES + 1024 * 1024
    print(f"RSS growth per worker (bytes): {grown}; bound {bound}")
    assert all(g < bound for g in grown.values()), (grown, bound)
    wait_for(lambda: count_events(pg_url) == (3 + per_queue) * len(PRIORITIES), timeout=120,
             what="everything stored once the lock is gone")
    assert daemon.stop() == 0
