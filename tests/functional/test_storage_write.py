"""record_events against real databases: batching, duplicates, isolation, outages."""

from __future__ import annotations

import datetime
import multiprocessing
from collections.abc import Iterator

import pytest

from panko_collector import errors, storage
from panko_collector.storage import models
from tests.functional.storage_helpers import BASE, T, count_rows, event, ids, open_storage


@pytest.fixture
def conn(db_url: str) -> Iterator[storage.Connection]:
    yield from open_storage(db_url)


def _all(conn: storage.Connection) -> list[models.Event]:
    return list(conn.get_events(storage.EventFilter()))


def test_stores_every_trait_type_and_reads_it_back(conn: storage.Connection) -> None:
    when = datetime.datetime(2023, 12, 31, 23, 59, 59, 999999)
    ev = event("m-1", [
        T("host", T.TEXT_TYPE, "compute-1"),
        T("vcpus", T.INT_TYPE, 2**62),
        T("ratio", T.FLOAT_TYPE, 0.1),
        T("launched_at", T.DATETIME_TYPE, when),
        T("nothing", T.NONE_TYPE, None),
    ], raw={"payload": {"a": [1, 2]}, "unicode": "h\u00e9 \U0001f600"})
    result = conn.record_events([ev])
    assert (result.stored, result.duplicates, result.failed) == (1, 0, [])
    (got,) = _all(conn)
    assert got.message_id == "m-1" and got.event_type == ev.event_type
    assert got.generated == BASE  # microseconds survive on every backend
    assert got.raw == ev.raw
    assert [(t.name, t.dtype, t.value) for t in got.traits] == [
        ("host", T.TEXT_TYPE, "compute-1"),
        ("launched_at", T.DATETIME_TYPE, when),
        ("nothing", T.TEXT_TYPE, None),  # NONE-typed traits are stored as text
        ("ratio", T.FLOAT_TYPE, 0.1),
        ("vcpus", T.INT_TYPE, 2**62),
    ]


def test_timestamps_keep_microseconds_and_become_naive_utc(conn: storage.Connection) -> None:
    aware = datetime.datetime(2024, 5, 6, 9, 8, 7, 654321,
                              tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    evs = [event(f"m{us}", [T("t", T.DATETIME_TYPE, BASE.replace(microsecond=us))],
                 generated=BASE.replace(microsecond=us)) for us in (0, 1, 500000, 999999)]
    evs.append(event("aware", [T("t", T.DATETIME_TYPE, aware)], generated=aware))
    assert conn.record_events(evs).stored == 5
    got = {e.message_id: e for e in _all(conn)}
    for us in (0, 1, 500000, 999999):
        assert got[f"m{us}"].generated == BASE.replace(microsecond=us)
        assert got[f"m{us}"].traits[0].value == BASE.replace(microsecond=us)
    utc = datetime.datetime(2024, 5, 6, 7, 8, 7, 654321)
    assert got["aware"].generated == utc and got["aware"].generated.tzinfo is None
    assert got["aware"].traits[0].value == utc


def test_text_is_cut_and_last_duplicate_trait_wins(conn: storage.Connection) -> None:
    ev = event("m-1", [
        T("long", T.TEXT_TYPE, "\u00e9" * 300),
        T("twice", T.INT_TYPE, 1),
        T("twice", T.INT_TYPE, 2),
        T("same", T.NONE_TYPE, None),
        T("same", T.TEXT_TYPE, "text wins, it came last"),
    ])
    assert conn.record_events([ev]).stored == 1
    traits = {t.name: t.value for t in _all(conn)[0].traits}
    assert traits == {"long": "\u00e9" * 255, "twice": 2, "same": "text wins, it came last"}


def test_duplicates_within_and_across_calls(conn: storage.Connection) -> None:
    first = [event("a", [T("n", T.INT_TYPE, 1)]), event("b"), event("a", [T("n", T.INT_TYPE, 2)])]
    r = conn.record_events(first)
    assert (r.stored, r.duplicates, r.failed) == (2, 1, [])
    r = conn.record_events([event("b"), event("c"), event("a")])
    assert (r.stored, r.duplicates, r.failed) == (1, 2, [])
    got = {e.message_id: e for e in _all(conn)}
    assert sorted(got) == ["a", "b", "c"]
    # The first occurrence of a repeated message_id is the one kept.
    assert [t.value for t in got["a"].traits] == [1]
    assert count_rows(conn, "trait_int") == 1


def test_many_event_types_in_one_batch_are_created_once(conn: storage.Connection) -> None:
    evs = [event(f"m{i}", [T("i", T.INT_TYPE, i)], event_type=f"type.{i % 7}") for i in range(700)]
    assert conn.record_events(evs).stored == 700
    assert list(conn.get_event_types()) == [f"type.{i}" for i in range(7)]
    # A second Connection (empty cache) finds the existing types.
    other = storage.get_connection(conn.url)
    assert other.record_events([event("x", event_type="type.3")]).stored == 1
    assert list(other.get_event_types()) == [f"type.{i}" for i in range(7)]
    assert count_rows(conn, "event_type") == 7


def _pg_refusing_trigger(conn: storage.Connection, condition: str,
                         table: str = "event") -> None:
    """Make PostgreSQL refuse (RAISE, not a data error) rows of ``table`` matching
    ``condition``."""
    import sqlalchemy as sa

    engine = conn._engine  # type: ignore[attr-defined]
    with engine.begin() as c:
        c.execute(sa.text(
            "CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF {condition} THEN RAISE EXCEPTION 'refused by test'; "
            "END IF; RETURN NEW; END $$"))
        c.execute(sa.text(f"CREATE TRIGGER refuse_rows BEFORE INSERT ON {table} "
                          "FOR EACH ROW EXECUTE FUNCTION refuse_rows()"))


def test_a_trait_row_refused_costs_only_its_event(pg_url: str) -> None:
    """On PostgreSQL traits go in by COPY, through the driver's own cursor: a
    refusal there is isolated to its event like any other, and takes back
    the traits of that event already copied (no foreign key would catch
    them: there is none)."""
    for conn in open_storage(pg_url):
        # Text traits are copied before int ones: the refused event's text
        # trait is in when its int trait is refused.
        _pg_refusing_trigger(conn, "NEW.value = 666", table="trait_int")
        batch = [event(f"g{i}", [T("s", T.TEXT_TYPE, f"v{i}"), T("i", T.INT_TYPE, i)])
                 for i in range(9)]
        batch.insert(4, event("bad-trait", [T("s", T.TEXT_TYPE, "v"), T("i", T.INT_TYPE, 666)]))
        r = conn.record_events(batch)
        assert (r.stored, r.duplicates) == (9, 0)
        assert [f.event.message_id for f in r.failed] == ["bad-trait"]
        assert "refused by test" in r.failed[0].reason
        assert ids(_all(conn)) == sorted(f"g{i}" for i in range(9))
        assert count_rows(conn, "trait_text") == count_rows(conn, "trait_int") == 9


def test_a_database_refusing_every_event_is_an_error_not_bad_events(pg_url: str) -> None:
    """Not one event stored, none for its data: the database is at fault, and
    reporting every event as failed would dead-letter a whole stream."""
    for conn in open_storage(pg_url):
        _pg_refusing_trigger(conn, "true")
        with pytest.raises(errors.StorageError, match="refused every event") as exc:
            conn.record_events([event(f"e{i}") for i in range(5)])
        assert not isinstance(exc.value, errors.StorageUnavailable)


def _rejected_by_this_backend(conn: storage.Connection) -> models.Event:
    """An event that passes our own checks but that this database refuses."""
    url = conn.url
    if url.startswith("postgresql"):
        # PostgreSQL takes every value we let through (NUL becomes U+FFFD),
        # so the refusal is the database's own: a trigger raises for this row.
        _pg_refusing_trigger(conn, "NEW.message_id = 'db-bad'")
        return event("db-bad", [T("s", T.TEXT_TYPE, "fine")])
    if url.startswith("mysql"):
        # TEXT holds 64 KiB; strict mode refuses more instead of cutting it.
        return event("db-bad", raw={"big": "x" * 70000})
    return event("db-bad", [T("surrogate", T.TEXT_TYPE, "\udcff")])


def test_one_bad_event_does_not_cost_the_batch(conn: storage.Connection) -> None:
    good = [event(f"g{i:02}", [T("i", T.INT_TYPE, i), T("s", T.TEXT_TYPE, f"v{i}")])
            for i in range(20)]
    too_big = event("too-big", [T("i", T.INT_TYPE, 2**63)])
    unencodable = event("surrogate", [T("s", T.TEXT_TYPE, "bad \ud800 text")])
    db_bad = _rejected_by_this_backend(conn)
    batch = [*good[:7], too_big, *good[7:13], unencodable, *good[13:17], db_bad, *good[17:]]
    r = conn.record_events(batch)
    assert r.stored == 20 and r.duplicates == 0
    assert sorted(ids(f.event for f in r.failed)) == ["db-bad", "surrogate", "too-big"]
    assert all(f.reason for f in r.failed)
    assert "64-bit" in next(f.reason for f in r.failed if f.event is too_big)
    assert ids(_all(conn)) == [f"g{i:02}" for i in range(20)]
    assert count_rows(conn, "trait_int") == 20 and count_rows(conn, "trait_text") == 20
    # The caller retries the same batch: nothing new, the same failures.
    r = conn.record_events(batch)
    assert (r.stored, r.duplicates) == (0, 20)
    assert sorted(ids(f.event for f in r.failed)) == ["db-bad", "surrogate", "too-big"]


def test_a_batch_of_only_bad_events(conn: storage.Connection) -> None:
    r = conn.record_events([event("x", [T("i", T.INT_TYPE, -(2**63) - 1)]),
                            event("y" * 51), event("z", [T("f", T.FLOAT_TYPE, "nan?")]),
                            event("nan", [T("f", T.FLOAT_TYPE, float("nan"))]),
                            event("inf", [T("f", T.FLOAT_TYPE, float("-inf"))])])
    assert r.stored == 0 and len(r.failed) == 5
    assert _all(conn) == []


def test_empty_batch(conn: storage.Connection) -> None:
    assert conn.record_events([]) == storage.RecordResult()


def _record_in_child(url: str, prefix: str, barrier: multiprocessing.synchronize.Barrier,
                     out: multiprocessing.queues.Queue[tuple[str, int, str]]) -> None:
    try:
        conn = storage.get_connection(url)
        barrier.wait(timeout=30)
        r = conn.record_events([event(f"{prefix}{i}", [T("i", T.INT_TYPE, i)],
                                      event_type="brand.new.type") for i in range(50)])
        out.put((prefix, r.stored, ""))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put((prefix, -1, repr(exc)))


def test_two_processes_create_the_same_event_type(db_url: str) -> None:
    list(open_storage(db_url))  # create the schema, then let go of it
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    out: multiprocessing.queues.Queue[tuple[str, int, str]] = ctx.Queue()
    procs = [ctx.Process(target=_record_in_child, args=(db_url, p, barrier, out))
             for p in ("a", "b")]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    assert results == [("a", 50, ""), ("b", 50, "")]
    conn = storage.get_connection(db_url)
    assert list(conn.get_event_types()) == ["brand.new.type"]
    assert len(list(conn.get_events(storage.EventFilter()))) == 100


@pytest.mark.parametrize("url", [
    "postgresql://postgres@127.0.0.1:1/nothing",
    "mysql://root@127.0.0.1:1/nothing",
    "sqlite:////nonexistent-directory/for/sure/events.sqlite",
])
def test_refused_connection_is_transient(url: str) -> None:
    conn = storage.get_connection(url)
    with pytest.raises(errors.StorageUnavailable):
        conn.record_events([event("m")])
    with pytest.raises(errors.StorageUnavailable):
        list(conn.get_events(storage.EventFilter()))
    with pytest.raises(errors.StorageUnavailable):
        conn.upgrade()


def test_recovers_after_the_server_drops_the_connection(pg_url: str) -> None:
    import psycopg

    (conn,) = list(open_storage(pg_url))
    assert conn.record_events([event("before")]).stored == 1
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as admin:
        dbname = pg_url.rsplit("/", 1)[1]
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
    # The pooled connection is dead; the pool notices and reconnects.
    assert conn.record_events([event("after")]).stored == 1
    assert ids(conn.get_events(storage.EventFilter())) == ["after", "before"]


def test_missing_schema_is_not_mistaken_for_an_outage(db_url: str) -> None:
    conn = storage.get_connection(db_url)
    with pytest.raises(errors.StorageError) as exc:
        conn.record_events([event("m")])
    assert not isinstance(exc.value, errors.StorageUnavailable)


def test_an_event_type_removed_behind_the_cache_is_created_again(
        conn: storage.Connection) -> None:
    import sqlalchemy as sa

    assert conn.record_events([event("m1", event_type="gone.soon")]).stored == 1
    # Another process (the expirer) removes the event and its emptied type.
    other = storage.get_connection(conn.url)
    other.clear()
    other.dispose()
    r = conn.record_events([event("m2", [T("i", T.INT_TYPE, 1)], event_type="gone.soon")])
    assert (r.stored, r.failed) == (1, [])
    assert ids(conn.get_events(storage.EventFilter(event_type="gone.soon"))) == ["m2"]
    with conn._engine.connect() as c:  # type: ignore[attr-defined]
        assert c.execute(sa.text("SELECT COUNT(*) FROM event_type")).scalar_one() == 1
