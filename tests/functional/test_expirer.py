"""TTL expiry for real: the one-shot command, and the in-daemon worker
deleting while the consumers insert, stopped by SIGTERM mid-run."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from panko_collector import storage
from panko_collector.storage import models
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.daemon import Collector, write_conf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TTL = 3600
T = models.Trait


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def load_old(conn: storage.Connection, count: int, event_type: str = "old.event") -> None:
    """``count`` events a day old, four traits each, in batches."""
    day_ago = now() - datetime.timedelta(days=1)
    for start in range(0, count, 1000):
        conn.record_events([
            models.Event(f"old-{i}", event_type, day_ago - datetime.timedelta(seconds=i),
                         [T("s", T.TEXT_TYPE, "x"), T("i", T.INT_TYPE, i),
                          T("f", T.FLOAT_TYPE, 0.5), T("d", T.DATETIME_TYPE, day_ago)])
            for i in range(start, min(start + 1000, count))
        ])


def rows(url: str, query: str) -> int:
    engine = sa.create_engine(storage.get_connection(url).dress_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(query)).scalar_one())
    finally:
        engine.dispose()


def orphans(url: str) -> int:
    """Traits whose event is gone: what an interrupted delete must never leave."""
    return sum(
        rows(url, f"SELECT COUNT(*) FROM {t} WHERE event_id NOT IN (SELECT id FROM event)")
        for t in ("trait_text", "trait_int", "trait_float", "trait_datetime")
    )


@pytest.fixture
def store(pg_url: str) -> Iterator[storage.Connection]:
    conn = storage.get_connection(pg_url)
    conn.upgrade()
    yield conn
    conn.dispose()


def expirer_command(conf: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "panko-collector-expirer"
    return subprocess.run([str(exe), "--config-file", str(conf)], capture_output=True,
                          text=True, timeout=120, check=False)


def test_command_with_ttl_disabled_says_so(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(f"[database]\nconnection = sqlite:///{tmp_path / 'e.sqlite'}\n")
    result = expirer_command(conf)
    assert result.returncode == 0, result.stderr
    assert "disabled" in result.stdout


def test_command_deletes_everything_expired_in_chunks(tmp_path: Path, db_url: str) -> None:
    conn = storage.get_connection(db_url)
    conn.upgrade()
    load_old(conn, 250)
    conn.record_events([models.Event("fresh", "new.event", now(), [T("s", T.TEXT_TYPE, "y")])])
    conf = tmp_path / "c.conf"
    conf.write_text(f"[database]\nconnection = {db_url}\nevent_time_to_live = {TTL}\n"
                    "events_delete_batch_size = 100\n")
    result = expirer_command(conf)
    assert result.returncode == 0, result.stderr
    assert "Expired 250 events" in result.stdout + result.stderr
    assert [e.message_id for e in conn.get_events(storage.EventFilter())] == ["fresh"]
    assert list(conn.get_event_types()) == ["new.event"]
    assert orphans(db_url) == 0
    conn.dispose()


def test_daemon_expires_while_consumers_insert(tmp_path: Path, vhost: str, pg_url: str,
                                               store: storage.Connection) -> None:
    load_old(store, 3000)
    conf = write_conf(tmp_path / "c.conf", vhost, pg_url, ttl=TTL, workers=1)
    text = conf.read_text().replace("[database]\n", "[database]\nevents_delete_batch_size = 200\n")
    conf.write_text(text)
    collector = Collector(conf)
    try:
        collector.wait_consuming(1)
        pub = Publisher(vhost)
        notes = [broker.notification() for _ in range(1500)]
        for n in notes:
            pub.publish(n)
        pub.close()
        wait_for(lambda: rows(pg_url, "SELECT COUNT(*) FROM event WHERE message_id LIKE 'old-%'")
                 == 0, timeout=120, what="the old events expired")
        wait_for(lambda: rows(pg_url, "SELECT COUNT(*) FROM event") == len(notes), timeout=120,
                 what="every new event stored")
        assert "Expired" in collector.log()
        assert collector.stop() == 0
    finally:
        collector.kill()
    stored = {e.message_id for e in store.get_events(storage.EventFilter(), {"limit": None})}
    assert stored == {n["message_id"] for n in notes}
    assert "old.event" not in list(store.get_event_types())
    assert orphans(pg_url) == 0


def test_sigterm_during_a_run_stops_after_the_chunk_in_flight(
        tmp_path: Path, vhost: str, pg_url: str, store: storage.Connection) -> None:
    total = 20000
    load_old(store, total)
    conf = write_conf(tmp_path / "c.conf", vhost, pg_url, ttl=TTL, workers=1)
    conf.write_text(conf.read_text().replace("[database]\n",
                                             "[database]\nevents_delete_batch_size = 50\n"))
    collector = Collector(conf)
    try:
        wait_for(lambda: rows(pg_url, "SELECT COUNT(*) FROM event") < total, timeout=60,
                 interval=0.05, what="expiry under way")
        assert collector.stop() == 0
    finally:
        collector.kill()
    left = rows(pg_url, "SELECT COUNT(*) FROM event")
    assert 0 < left < total, "the run should have been cut short, not finished"
    assert (total - left) % 50 == 0, "only whole chunks are deleted"
    assert orphans(pg_url) == 0
    assert rows(pg_url, "SELECT COUNT(*) FROM trait_int") == left
