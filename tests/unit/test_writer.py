"""The writer's decisions without a broker or a database: backoff, the
settlement of a committed batch (which tag is acked with ``multiple``), and
the retries of the writer thread."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from panko_collector import errors
from panko_collector.ingest.settings import WriterSettings
from panko_collector.ingest.writer import Abandon, Backoff, Writer, settle
from panko_collector.storage import FailedEvent, RecordResult, models

# -- backoff ------------------------------------------------------------------


def test_backoff_grows_and_caps() -> None:
    top = Backoff(1.0, 8.0, uniform=lambda low, high: high)
    assert [top.next() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    bottom = Backoff(1.0, 8.0, uniform=lambda low, high: low)
    assert [bottom.next() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_backoff_jitters_within_half_the_ceiling_and_the_ceiling() -> None:
    b = Backoff(1.0, 8.0)
    delays = [b.next() for _ in range(40)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(4.0 <= d <= 8.0 for d in delays[3:])
    assert len(set(delays)) > 1


def test_backoff_has_a_floor_and_resets() -> None:
    b = Backoff(0.01, 8.0, floor=0.1)
    assert b.next() == 0.1  # never spins, however small the base
    for _ in range(10):
        b.next()
    assert b.next() >= 4.0
    b.reset()
    assert b.next() == 0.1


# -- settlement ---------------------------------------------------------------


class Channel:
    """RabbitMQ's bookkeeping of one channel's unacked deliveries: acking an
    unknown tag closes the channel (here: raises)."""

    def __init__(self, tags: Iterable[int]) -> None:
        self.unacked = set(tags)

    def ack(self, tag: int, multiple: bool = False) -> None:
        if tag not in self.unacked:
            raise AssertionError(f"PRECONDITION_FAILED - unknown delivery tag {tag}")
        if multiple:
            self.unacked = {t for t in self.unacked if t > tag}
        else:
            self.unacked.discard(tag)


def settle_on(channel: Channel, batch: Sequence[tuple[int, str]], failed: dict[str, str],
              refused: set[int]) -> list[tuple[int, bool]]:
    """What the consumer does with a committed batch: dead-letter the failed
    ones (acked, unless the broker refuses the dead letter: in ``refused``),
    then the acks the settlement asks for. Returns those acks."""
    plan = settle(batch, failed)
    for position, reason in plan.dead_letters:
        assert failed[batch[position][1]] == reason
        if batch[position][0] not in refused:
            channel.ack(batch[position][0])
    positions, multiple = plan.acks(refused_waiting=bool(refused & channel.unacked))
    acks = [(batch[p][0], multiple) for p in positions]
    for tag, many in acks:
        channel.ack(tag, many)
    return acks


def test_one_multiple_ack_of_the_highest_tag_settles_the_batch() -> None:
    batch = [(1, "a"), (2, "b"), (3, "c")]
    channel = Channel([1, 2, 3, 4])  # 4: in the next batch
    assert settle_on(channel, batch, {}, set()) == [(3, True)]
    assert channel.unacked == {4}


def test_dropped_and_ignored_messages_between_are_already_acked() -> None:
    # 2 and 4 were dropped or ignored: acked as they were handled.
    channel = Channel([1, 3, 5, 6])
    assert settle_on(channel, [(1, "a"), (3, "b"), (5, "c")], {}, set()) == [(5, True)]
    assert channel.unacked == {6}


def test_refused_events_are_dead_lettered_and_the_highest_stored_tag_acked() -> None:
    channel = Channel([1, 2, 3])
    batch = [(1, "a"), (2, "b"), (3, "bad")]
    # The highest tag of the batch (3) was dead-lettered and acked: naming
    # it in a multiple ack would close the channel.
    assert settle_on(channel, batch, {"bad": "int out of range"}, set()) == [(2, True)]
    assert channel.unacked == set()


def test_while_a_dead_letter_is_refused_the_stored_are_acked_one_by_one() -> None:
    # 2: undecodable, its dead letter refused earlier and kept unacked.
    channel = Channel([1, 2, 3, 4])
    acks = settle_on(channel, [(1, "a"), (3, "b"), (4, "c")], {}, refused={2})
    assert acks == [(1, False), (3, False), (4, False)]
    assert channel.unacked == {2}


def test_a_dead_letter_of_this_batch_refused_keeps_its_original_unacked() -> None:
    channel = Channel([1, 2, 3])
    acks = settle_on(channel, [(1, "a"), (2, "bad"), (3, "c")], {"bad": "why"}, refused={2})
    assert acks == [(1, False), (3, False)]
    assert channel.unacked == {2}


def test_redeliveries_within_a_batch_share_the_fate_of_their_id() -> None:
    channel = Channel([1, 2, 3])
    plan = settle([(1, "a"), (2, "bad"), (3, "bad")], {"bad": "why"})
    assert plan.dead_letters == ((1, "why"), (2, "why"))
    assert settle_on(channel, [(1, "a"), (2, "bad"), (3, "bad")], {"bad": "why"},
                     set()) == [(1, True)]
    assert channel.unacked == set()


def test_nothing_stored_nothing_acked() -> None:
    plan = settle([(1, "bad")], {"bad": "why"})
    assert plan.last is None
    assert plan.acks(refused_waiting=False) == ((), False)


# -- the writer thread ----------------------------------------------------------


def event(message_id: str) -> models.Event:
    return models.Event(message_id, "test", datetime.datetime(2026, 1, 1))


class Storage:
    """Fails the first ``outages`` writes as unavailable, refuses ids in ``bad``."""

    def __init__(self, outages: int = 0, bad: Iterable[str] = ()) -> None:
        self.outages = outages
        self.bad = set(bad)
        self.calls: list[list[str]] = []

    def record_events(self, events: list[models.Event]) -> RecordResult:
        self.calls.append([e.message_id for e in events])
        if self.outages:
            self.outages -= 1
            raise errors.StorageUnavailable("connection refused\nHINT: is it up?")
        failed = [FailedEvent(e, "refused") for e in events if e.message_id in self.bad]
        return RecordResult(stored=len(events) - len(failed), failed=failed)


FAST = WriterSettings(retry_interval=0.01, retry_max=0.02)


def make_writer(storage: Storage, stop: threading.Event | None = None) -> Writer:
    return Writer(storage, FAST, stop or threading.Event(), name="test")  # type: ignore[arg-type]


def test_each_id_is_written_once_and_the_result_comes_back() -> None:
    storage = Storage(bad={"b"})
    writer = make_writer(storage)
    try:
        write = writer.submit([(event("a"), 1), (event("b"), 2), (event("a"), 3)])
        assert write.future is not None
        result = write.future.result(5)
    finally:
        writer.shutdown()
    assert storage.calls == [["a", "b"]]
    assert result.stored == 1 and [f.event.message_id for f in result.failed] == ["b"]


def test_an_outage_is_retried_until_the_database_takes_the_batch() -> None:
    storage = Storage(outages=3)
    writer = make_writer(storage)
    try:
        write = writer.submit([(event("a"), 1)])
        assert write.future is not None
        assert write.future.result(5).stored == 1
    finally:
        writer.shutdown()
    assert len(storage.calls) == 4
    assert not writer.storage_down.is_set()


@pytest.mark.parametrize("why", ["stop", "broker lost"])
def test_an_outage_is_given_up_on_stop_or_a_lost_broker_connection(why: str) -> None:
    stop = threading.Event()
    storage = Storage(outages=10**6)
    writer = make_writer(storage, stop)
    try:
        write = writer.submit([(event("a"), 1)])
        assert write.future is not None
        if why == "stop":
            stop.set()
        else:
            writer.forget()
            assert not writer.current(write)
        with pytest.raises(Abandon):
            write.future.result(5)
    finally:
        writer.shutdown()
    assert writer.storage_down.is_set()


def test_unexpected_storage_errors_pass_through() -> None:
    class Broken(Storage):
        def record_events(self, events: list[models.Event]) -> Any:
            raise ValueError("a bug")

    writer = make_writer(Broken())
    try:
        write = writer.submit([(event("a"), 1)])
        assert write.future is not None
        with pytest.raises(ValueError):
            write.future.result(5)
    finally:
        writer.shutdown()
