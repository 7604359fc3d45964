"""The bookkeeping of dead letters the broker refused: retried with backoff,
one ERROR per episode, kept in order."""

from __future__ import annotations

from panko_collector.ingest.refused import RefusedDeadLetters
from panko_collector.ingest.writer import Backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refused(clock: Clock) -> RefusedDeadLetters[int]:
    return RefusedDeadLetters(Backoff(1.0, 4.0, uniform=lambda low, high: high), clock)


def test_retried_after_the_backoff_and_reported_once_per_episode() -> None:
    clock = Clock()
    r = refused(clock)
    assert r.report_due() is None and not r.retry_due()
    r.keep(1, {"reason": "not-json"})
    r.keep(2, {"reason": "too-large"})
    assert r.report_due() == "not-json"
    assert r.report_due() is None  # one ERROR for the episode
    assert not r.retry_due()
    clock.now += 1.0
    assert r.retry_due()
    assert [m for m, _h in r.take()] == [1, 2]
    assert len(r) == 0


def test_refused_again_keeps_the_order_and_backs_off_further() -> None:
    clock = Clock()
    r = refused(clock)
    r.keep(1, {"reason": "a"})
    r.keep(2, {"reason": "b"})
    clock.now += 1.0
    items = r.take()
    assert r.still_refused(items) == 2.0  # the second pause of the episode
    assert [m for m, _h in r.take()] == [1, 2]
    assert r.still_refused(items[1:]) == 4.0
    assert r.still_refused(r.take()) == 4.0  # capped
    assert [m for m, _h in r.take()] == [2]
    r.accepted()
    assert r.report_due() is None  # nothing waits: the episode is over
    r.keep(3, {"reason": "c"})  # a new episode: a new ERROR, a short pause
    assert r.report_due() == "c"
    clock.now += 1.0
    assert r.retry_due()


def test_a_lost_channel_forgets_them() -> None:
    r = refused(Clock())
    r.keep(1, {"reason": "a"})
    r.clear()
    assert len(r) == 0 and not r.retry_due() and r.report_due() is None
