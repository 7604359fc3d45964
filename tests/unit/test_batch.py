from __future__ import annotations

import pytest

from panko_collector.ingest.batch import Batch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_empty_batch_is_never_due() -> None:
    clock = Clock()
    b: Batch[int] = Batch(3, 1.0, clock)
    clock.now += 50
    assert not b.due()
    assert b.time_left() is None
    assert b.age() == 0.0


def test_due_by_size() -> None:
    b: Batch[int] = Batch(3, 60.0, Clock())
    b.add(1)
    b.add(2)
    assert not b.due()
    b.add(3)
    assert b.due()
    assert b.time_left() == 0.0


def test_due_by_age_of_oldest_item() -> None:
    clock = Clock()
    b: Batch[int] = Batch(100, 1.0, clock)
    b.add(1)
    clock.now += 0.6
    b.add(2)
    assert not b.due()
    assert b.time_left() == pytest.approx(0.4)
    clock.now += 0.4
    assert b.due()


def test_take_empties_and_restarts_the_clock() -> None:
    clock = Clock()
    b: Batch[str] = Batch(10, 1.0, clock)
    b.add("a")
    clock.now += 5
    assert b.take() == ["a"]
    assert len(b) == 0
    b.add("b")
    assert not b.due()
    assert b.time_left() == pytest.approx(1.0)


def test_may_grow_beyond_max_size() -> None:
    b: Batch[int] = Batch(2, 1.0, Clock())
    for i in range(5):
        b.add(i)
    assert len(b) == 5 and b.due()
    assert b.items == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("size", "age"), [(0, 1.0), (1, -1.0)])
def test_rejects_nonsense_limits(size: int, age: float) -> None:
    with pytest.raises(ValueError):
        Batch(size, age)
