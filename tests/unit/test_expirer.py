"""expire(): chunking, early stop and progress, on a connection double.

The double only counts calls; what a chunk deletes is proven against the
real databases in tests/functional/test_expiry.py.
"""

from __future__ import annotations

from typing import Any

from panko_collector import expirer


class ChunkedStore:
    """Holds ``expired`` events and deletes at most ``max_count`` per call."""

    def __init__(self, expired: int) -> None:
        self.expired = expired
        self.calls: list[int | None] = []

    def clear_expired_data(self, ttl: int, max_count: int | None = None) -> int:
        self.calls.append(max_count)
        n = self.expired if max_count is None else min(self.expired, max_count)
        self.expired -= n
        return n


def run(store: ChunkedStore, **kw: Any) -> expirer.ExpiryRun:
    return expirer.expire(store, 3600, 10, **kw)  # type: ignore[arg-type]


def test_deletes_everything_in_chunks_of_the_batch_size() -> None:
    store = ChunkedStore(25)
    result = run(store)
    assert result.deleted == 25 and result.complete
    assert store.calls == [10, 10, 10]  # the last one finds 5 < 10 and ends the run


def test_exact_multiple_needs_one_empty_chunk_to_know_it_is_done() -> None:
    store = ChunkedStore(20)
    assert run(store).deleted == 20
    assert store.calls == [10, 10, 10]


def test_nothing_to_do() -> None:
    store = ChunkedStore(0)
    result = run(store)
    assert (result.deleted, result.complete, store.calls) == (0, True, [10])


def test_stop_request_is_honoured_between_chunks() -> None:
    store = ChunkedStore(100)
    calls = iter([False, False, True])
    result = run(store, should_stop=lambda: next(calls))
    assert result.deleted == 20 and not result.complete
    assert store.expired == 80


def test_progress_reports_running_totals() -> None:
    seen: list[int] = []
    run(ChunkedStore(25), progress=seen.append)
    assert seen == [10, 20, 25]


class Conf:
    class database:
        event_time_to_live = -1


def test_ttl_zero_or_less_disables_expiry() -> None:
    for value, expected in [(-1, None), (0, None), (1, 1), (86400, 86400)]:
        Conf.database.event_time_to_live = value
        assert expirer.ttl_of(Conf) == expected
