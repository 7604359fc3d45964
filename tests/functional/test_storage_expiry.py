"""clear_expired_data against real databases: what goes, what stays, in how many chunks."""

from __future__ import annotations

import datetime

import pytest
import sqlalchemy as sa

from panko_collector import service, storage
from panko_collector.storage import models
from tests.functional.storage_helpers import T, count_rows, event, ids, open_storage

TTL = 3600


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _load(conn: storage.Connection, old: int, fresh: int) -> None:
    now = _now()
    evs = [event(f"old-{i:03}", [T("s", T.TEXT_TYPE, "x"), T("i", T.INT_TYPE, i),
                                 T("f", T.FLOAT_TYPE, 1.0), T("d", T.DATETIME_TYPE, now)],
                 event_type="only.old" if i % 2 else "mixed",
                 generated=now - datetime.timedelta(seconds=TTL + 600 - i))
           for i in range(old)]
    evs += [event(f"new-{i:03}", [T("s", T.TEXT_TYPE, "y")], event_type="mixed",
                  generated=now - datetime.timedelta(seconds=TTL - 600))
            for i in range(fresh)]
    assert conn.record_events(evs).stored == old + fresh


def test_deletes_only_expired_events_with_their_traits(db_url: str) -> None:
    for conn in open_storage(db_url):
        _load(conn, old=30, fresh=5)
        assert conn.clear_expired_data(TTL) == 30
        assert ids(conn.get_events(storage.EventFilter())) == [f"new-{i:03}" for i in range(5)]
        assert count_rows(conn, "trait_text") == 5
        for table in ("trait_int", "trait_float", "trait_datetime"):
            assert count_rows(conn, table) == 0
        # An event type with no events left goes; one still in use stays.
        assert list(conn.get_event_types()) == ["mixed"]
        assert conn.clear_expired_data(TTL) == 0
        # The type cache forgot the removed type: it can be used again.
        assert conn.record_events([event("again", event_type="only.old")]).stored == 1


def test_the_boundary_is_strict(db_url: str) -> None:
    for conn in open_storage(db_url):
        now = _now()
        conn.record_events([
            event("just-expired", generated=now - datetime.timedelta(seconds=TTL + 2)),
            event("not-yet", generated=now - datetime.timedelta(seconds=TTL - 30)),
        ])
        assert conn.clear_expired_data(TTL) == 1
        assert ids(conn.get_events(storage.EventFilter())) == ["not-yet"]


def test_max_count_caps_each_call_oldest_first(db_url: str) -> None:
    for conn in open_storage(db_url):
        _load(conn, old=12, fresh=2)
        assert conn.clear_expired_data(TTL, max_count=5) == 5
        left = ids(conn.get_events(storage.EventFilter()))
        assert left[:7] == [f"old-{i:03}" for i in range(5, 12)]  # the oldest went first
        assert conn.clear_expired_data(TTL, max_count=5) == 5
        assert conn.clear_expired_data(TTL, max_count=5) == 2
        assert conn.clear_expired_data(TTL, max_count=5) == 0
        assert len(ids(conn.get_events(storage.EventFilter()))) == 2


@pytest.mark.parametrize("max_count", [None, 7])
def test_works_in_chunks_of_their_own_transaction(db_url: str, max_count: int | None) -> None:
    conf = service.prepare_service([], config_files=[])
    conf.set_override("events_delete_batch_size", 3, group="database")
    conn = storage.get_connection(db_url, conf)
    conn.upgrade()
    try:
        _load(conn, old=10, fresh=1)
        commits: list[int] = []
        engine = conn._engine  # type: ignore[attr-defined]
        sa.event.listen(engine, "commit", lambda _c: commits.append(1))
        deleted = conn.clear_expired_data(TTL, max_count=max_count)
        assert deleted == (10 if max_count is None else 7)
        # ceil(deleted / 3) chunks, each committed on its own (+1 for the
        # event-type cleanup, +1 for an empty final probe when it divides evenly).
        chunks = -(-deleted // 3)
        assert chunks <= len(commits) <= chunks + 2
        assert len(ids(conn.get_events(storage.EventFilter()))) == 11 - deleted
    finally:
        conn.dispose()


class Clock:
    """A ``models.utcnow`` that moves ``step`` forward at every reading."""

    def __init__(self, start: datetime.datetime, step: datetime.timedelta) -> None:
        self.now, self.step, self.readings = start, step, 0

    def __call__(self) -> datetime.datetime:
        now = self.now
        self.now += self.step
        self.readings += 1
        return now


def _expiring_meanwhile(conn: storage.Connection, start: datetime.datetime) -> None:
    """7 events expired at ``start``, and 3 that expire within the next minutes."""
    assert conn.record_events(
        [event(f"old-{i}", generated=start - datetime.timedelta(seconds=TTL + 60 + i))
         for i in range(7)]
        + [event(f"later-{i}", generated=start - datetime.timedelta(seconds=TTL - 60 - i))
           for i in range(3)]).stored == 10


def test_a_run_in_chunks_deletes_up_to_the_cutoff_it_started_with(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The expirer takes one cutoff per run and passes it to every chunk: an
    event that expires while the run goes on waits for the next run, and the
    cutoff the run reports is the one applied."""
    start = datetime.datetime(2026, 6, 1, 12)
    clock = Clock(start, datetime.timedelta(minutes=5))
    monkeypatch.setattr(models, "utcnow", clock)
    for conn in open_storage(db_url):
        _expiring_meanwhile(conn, start)
        cutoff = storage.expiry_cutoff(TTL)
        assert cutoff == start - datetime.timedelta(seconds=TTL)
        assert conn.count_expired(TTL, cutoff=cutoff) == 7
        chunks = [conn.clear_expired_data(TTL, max_count=3, cutoff=cutoff)]
        while chunks[-1] == 3:
            chunks.append(conn.clear_expired_data(TTL, max_count=3, cutoff=cutoff))
        assert chunks == [3, 3, 1]
        assert clock.readings == 1  # the chunks never looked at the clock
        assert sorted(ids(conn.get_events(storage.EventFilter()))) == [
            "later-0", "later-1", "later-2"]
        # Without a cutoff, each call takes its own from the clock, now later.
        assert conn.count_expired(TTL) == 3
        assert conn.clear_expired_data(TTL) == 3


def test_one_call_reads_the_clock_once(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that works in several chunks (of 3 here) applies one cutoff to all."""
    start = datetime.datetime(2026, 6, 1, 12)
    clock = Clock(start, datetime.timedelta(minutes=5))
    monkeypatch.setattr(models, "utcnow", clock)
    conf = service.prepare_service([], config_files=[])
    conf.set_override("events_delete_batch_size", 3, group="database")
    conn = storage.get_connection(db_url, conf)
    conn.upgrade()
    try:
        _expiring_meanwhile(conn, start)
        assert conn.clear_expired_data(TTL) == 7
        assert clock.readings == 1
    finally:
        conn.dispose()


def _expire_into(conn: storage.Connection, done: list[int]) -> None:
    done.append(conn.clear_expired_data(TTL))


def test_a_type_in_use_again_does_not_keep_the_other_empty_types(pg_url: str) -> None:
    """A batch starts using an empty event type while expiry removes the empty
    types: only that one stays; the type whose events expired goes."""
    import threading
    import time

    import psycopg

    for conn in open_storage(pg_url):
        now = _now()
        old = [event(f"old-{i}", event_type="only.old",
                     generated=now - datetime.timedelta(seconds=TTL + 60)) for i in range(5)]
        busy = event("busy-0", event_type="busy.type",
                     generated=now - datetime.timedelta(seconds=TTL + 60))
        conn.record_events([*old, busy])
        with psycopg.connect(pg_url) as writer:
            busy_type = writer.execute(
                "SELECT id FROM event_type WHERE \"desc\" = 'busy.type'").fetchone()[0]
            # A writer, not yet committed, uses busy.type for a fresh event.
            writer.execute("INSERT INTO event (message_id, generated, event_type_id, raw) "
                           "VALUES ('fresh-0', now() AT TIME ZONE 'utc', %s, '{}')",
                           (busy_type,))
            done: list[int] = []
            expiry = threading.Thread(target=_expire_into, args=(conn, done))
            expiry.start()
            time.sleep(1)  # expiry waits on the writer's lock of busy.type
            writer.commit()
            expiry.join(30)
        assert done == [6]
        assert list(conn.get_event_types()) == ["busy.type"]
        assert ids(conn.get_events(storage.EventFilter())) == ["fresh-0"]
