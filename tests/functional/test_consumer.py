"""The worker loop in-process against a real RabbitMQ vhost and a real SQLite store.

The converter here is a tiny stand-in (the real one is exercised end to end
by test_collector); the decoder, the storage and the broker are real. Faults
that cannot be produced for real in-process (a database outage at an exact
moment) wrap the real storage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import amqp
import kombu
import pytest

from panko_collector import errors, storage
from panko_collector.conversion import decoder
from panko_collector.ingest.consumer import Consumer
from panko_collector.storage import EventFilter, models
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.in_process import Running, SimpleConverter, make_conf, start, stored_ids

pytestmark = pytest.mark.timeout(120)


class Refusing:
    """SimpleConverter, but the database refuses 'refuse.me' events (an int beyond 64 bits)."""

    def convert(self, n: Any, received: Any = None) -> models.Event | None:
        event = SimpleConverter().convert(n)
        if event is not None and n.event_type == "refuse.me":
            event.traits.append(models.Trait("bad", models.Trait.INT_TYPE, 2**80))
        return event


class FlakyStorage:
    """The real storage, unavailable while ``down`` is set; counts calls."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.down = threading.Event()
        self.calls = 0
        self.failures = 0

    def record_events(self, events: Any) -> Any:
        self.calls += 1
        if self.down.is_set():
            self.failures += 1
            raise errors.StorageUnavailable("database unavailable: test outage")
        return self.real.record_events(events)


class GatedStorage:
    """The real storage; records each batch's size, and writes wait while ``gate`` is clear."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def record_events(self, events: Any) -> Any:
        self.sizes.append(len(events))
        if not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(60)
        return self.real.record_events(events)


@pytest.fixture
def setup(tmp_path: Path, vhost: str) -> Iterator[tuple[Any, Any, Publisher]]:
    conf = make_conf(tmp_path, vhost)
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    pub = Publisher(vhost)
    yield conf, store, pub
    pub.close()


def test_events_stored_then_acked_and_duplicates_once(setup: Any, vhost: str) -> None:
    conf, store, pub = setup
    notes = [broker.notification() for _ in range(120)]
    for i, n in enumerate(notes):
        pub.publish(n, exchange="nova" if i % 2 else "neutron")
    for n in notes[:30]:  # a redelivery of sorts: published twice
        pub.publish(n)
    running = start(conf, store)
    try:
        wait_for(lambda: stored_ids(store) >= {n["message_id"] for n in notes},
                 what="every event stored")
        wait_for(lambda: broker.queue_counts(vhost).get("notifications.info") == (0, 0),
                 what="every message acked")
    finally:
        running.stop()
    assert len(list(store.get_events(EventFilter()))) == 120
    totals = running.consumer.totals
    assert totals.messages == 150
    assert totals.stored == 120
    assert totals.duplicates == 30


def test_bad_messages_dead_lettered_with_reasons_while_the_rest_flows(
        setup: Any, vhost: str) -> None:
    conf, store, pub = setup
    good = [broker.notification() for _ in range(20)]
    pub.publish(good[0])
    pub.publish_raw(b"\xff\xfe not utf-8", exchange="neutron")
    pub.publish_raw(b"{not json")
    pub.publish_raw(b'{"oslo.version": "2.0", "oslo.message": "{\\"payload\\": {}}"}')
    pub.publish(broker.notification(event_type="boom.bad"))
    pub.publish(broker.notification(event_type="drop.me"))
    pub.publish(broker.notification(priority="DEBUG"), exchange="nova")  # not configured
    # A notification whose priority differs from the queue it reached is ignored.
    pub.publish_raw(broker.envelope(broker.notification(priority="WARN")), priority="info")
    for n in good[1:]:
        pub.publish(n)
    running = start(conf, store)
    try:
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in good},
                 what="good events stored")
        wait_for(lambda: broker.queue_counts(vhost).get(conf.collector.dead_letter_queue,
                                                         (0, 0))[0] == 4,
                 what="four dead letters")
        wait_for(lambda: broker.queue_counts(vhost).get("notifications.info") == (0, 0),
                 what="everything acked")
    finally:
        running.stop()
    letters = broker.get_all(vhost, conf.collector.dead_letter_queue)
    reasons = sorted(m.headers["reason"] for m in letters)
    assert reasons == ["convert-failed", "no-event-type", "not-json", "not-utf8"]
    by_reason = {m.headers["reason"]: m for m in letters}
    assert by_reason["not-utf8"].headers["original_exchange"] == "neutron"
    assert by_reason["not-utf8"].headers["original_routing_key"] == "notifications.info"
    assert by_reason["not-utf8"].body == b"\xff\xfe not utf-8"
    assert "converter bug" in by_reason["convert-failed"].headers["error"]
    assert by_reason["not-json"].headers["error"]
    totals = running.consumer.totals
    assert (totals.dead_lettered, totals.dropped, totals.ignored) == (4, 1, 1)
    # The debug message sits in a queue we do not consume: left for its owner.
    assert broker.queue_counts(vhost)["notifications.debug"] == (1, 0)


def test_refused_events_are_dead_lettered(setup: Any, vhost: str) -> None:
    conf, store, pub = setup

    good = [broker.notification() for _ in range(5)]
    bad = broker.notification(event_type="refuse.me")
    for n in [*good[:2], bad, *good[2:]]:
        pub.publish(n)
    running = Running(Consumer(conf, store, Refusing(), decoder.decode, name="test"))
    try:
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in good}, what="good stored")
        wait_for(lambda: broker.queue_counts(vhost).get(conf.collector.dead_letter_queue,
                                                         (0, 0))[0] == 1, what="dead letter")
    finally:
        running.stop()
    (letter,) = broker.get_all(vhost, conf.collector.dead_letter_queue)
    assert letter.headers["reason"] == "store-failed"
    assert letter.headers["error"]
    assert broker.queue_counts(vhost)["notifications.info"] == (0, 0)


def test_a_batch_is_acked_at_once_around_dead_letters_drops_and_ignored(
        tmp_path: Path, vhost: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each committed batch is settled by one multiple ack of its highest stored
    delivery tag; the messages settled one by one on the way (dead letters of bad
    bodies and refused events, drops, ignored priorities) must not be acked twice
    (RabbitMQ would close the channel and everything unacked would come again)
    nor hide a message that is not settled yet."""
    acks: list[tuple[int, bool]] = []
    real_ack = amqp.Channel.basic_ack

    def spy(channel: Any, delivery_tag: int, multiple: bool = False, **kwargs: Any) -> Any:
        acks.append((delivery_tag, multiple))
        return real_ack(channel, delivery_tag, multiple, **kwargs)

    monkeypatch.setattr(amqp.Channel, "basic_ack", spy)
    # 12 per queue: batches of 6 are written as half a window is in.
    conf = make_conf(tmp_path, vhost, batch_size=6, prefetch_count=24)
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    pub = Publisher(vhost)
    good: list[dict[str, Any]] = []
    refused = 0
    # Batches of 6 events; the refused event is the first, a middle and the
    # last (highest tag) of a batch, with every other kind of settlement between.
    kinds = ["refuse", "good", "bad-body", "good", "drop", "good", "ignored", "good", "good",
             "good", "refuse", "good", "bad-body", "good", "good", "good", "good", "refuse",
             "good", "refuse"]
    for kind in kinds:
        if kind == "good":
            good.append(broker.notification())
            pub.publish(good[-1])
        elif kind == "refuse":
            refused += 1
            pub.publish(broker.notification(event_type="refuse.me"))
        elif kind == "bad-body":
            pub.publish_raw(b"{not json")
        elif kind == "drop":
            pub.publish(broker.notification(event_type="drop.me"))
        else:
            pub.publish_raw(broker.envelope(broker.notification(priority="WARN")), priority="info")
    pub.close()
    dead = refused + kinds.count("bad-body")
    running = Running(Consumer(conf, store, Refusing(), decoder.decode, name="test"))
    try:
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in good}, what="stored")
        wait_for(lambda: broker.queue_counts(vhost).get(conf.collector.dead_letter_queue,
                                                         (0, 0))[0] == dead, what="dead letters")
        wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 0),
                 what="everything acked")
    finally:
        running.stop()
    totals = running.consumer.totals
    # Nothing delivered twice: the channel was never closed by a bad ack.
    assert (totals.messages, totals.duplicates) == (len(kinds), 0)
    assert (totals.stored, totals.dead_lettered, totals.dropped, totals.ignored) == (
        len(good), dead, 1, 1)
    singles = [tag for tag, multiple in acks if not multiple]
    multiples = [tag for tag, multiple in acks if multiple]
    # One by one: what was settled on its own; the stored events, per batch at once.
    assert len(singles) == dead + 2
    assert len(set(singles)) == len(singles)
    assert 0 < len(multiples) <= len(good) // 6 + 2
    assert multiples == sorted(multiples)
    assert not set(singles) & set(multiples)
    assert max(multiples) < len(kinds)  # the last message was refused: not its tag


def test_database_outage_keeps_batch_takes_nothing_and_recovers(
        setup: Any, vhost: str, caplog: pytest.LogCaptureFixture) -> None:
    conf, store, pub = setup
    flaky = FlakyStorage(store)
    flaky.down.set()
    notes = [broker.notification() for _ in range(300)]
    for n in notes:
        pub.publish(n)
    running = Running(Consumer(conf, flaky, SimpleConverter(), decoder.decode, name="test"))
    try:
        wait_for(lambda: flaky.failures >= 4, what="several failed attempts")
        counts = broker.queue_counts(vhost)["notifications.info"]
        # Nothing acked, and no more taken than the prefetch allows (2 * 50).
        assert counts[0] + counts[1] == 300
        assert counts[1] <= 100
        assert stored_ids(store) == set()
        flaky.down.clear()
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in notes},
                 what="everything stored after the outage")
        wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 0),
                 what="everything acked")
    finally:
        running.stop()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"
                and "writing" in r.getMessage()]
    assert len(warnings) == flaky.failures
    assert "test outage" in warnings[0].getMessage()
    assert broker.queue_counts(vhost).get(conf.collector.dead_letter_queue, (0, 0)) == (0, 0)


def test_stop_writes_and_acks_the_current_batch(tmp_path: Path, vhost: str) -> None:
    conf = make_conf(tmp_path, vhost, batch_size=1000, batch_timeout=60)
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    pub = Publisher(vhost)
    notes = [broker.notification() for _ in range(40)]
    for n in notes:
        pub.publish(n)
    running = start(conf, store)
    wait_for(lambda: running.consumer.stats.messages + running.consumer.totals.messages >= 40,
             what="messages taken")
    assert stored_ids(store) == set()  # the batch is neither full nor old
    running.stop()
    assert stored_ids(store) == {n["message_id"] for n in notes}
    assert broker.queue_counts(vhost)["notifications.info"] == (0, 0)
    pub.close()


def test_broker_connection_loss_loses_nothing(setup: Any, vhost: str) -> None:
    conf, store, pub = setup
    first = [broker.notification() for _ in range(50)]
    for n in first:
        pub.publish(n)
    running = start(conf, store)
    try:
        wait_for(lambda: stored_ids(store) >= {n["message_id"] for n in first}, what="first")
        pub.close()
        broker.rabbitmqctl("close_all_connections", "-p", vhost, "test")
        second = [broker.notification() for _ in range(50)]
        pub2 = Publisher(vhost)
        for n in second:
            pub2.publish(n)
        pub2.close()
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in first + second},
                 timeout=60, what="everything after reconnect")
    finally:
        running.stop()
    assert broker.queue_counts(vhost)["notifications.info"] == (0, 0)


def test_queue_mismatch_names_queue_and_option(setup: Any, vhost: str) -> None:
    conf, store, _pub = setup
    with broker.connect(vhost) as conn:

        kombu.Queue("notifications.error", durable=True, channel=conn.channel()).declare()
    consumer = Consumer(conf, store, SimpleConverter(), decoder.decode, name="test")
    with pytest.raises(errors.QueueMismatch) as info:
        consumer.run()
    assert "notifications.error" in str(info.value)
    assert "amqp_durable_queues" in str(info.value)


def test_stop_during_database_outage_leaves_messages_for_redelivery(
        setup: Any, vhost: str) -> None:
    conf, store, pub = setup
    flaky = FlakyStorage(store)
    flaky.down.set()
    notes = [broker.notification() for _ in range(30)]
    for n in notes:
        pub.publish(n)
    running = Running(Consumer(conf, flaky, SimpleConverter(), decoder.decode, name="test"))
    wait_for(lambda: flaky.failures >= 2, what="failed attempts")
    running.stop()  # returns although the batch could not be written
    assert stored_ids(store) == set()
    # Nothing acked, nothing dead-lettered: all back in the queue.
    wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (30, 0),
             what="messages back in the queue")
    assert broker.queue_counts(vhost).get(conf.collector.dead_letter_queue, (0, 0)) == (0, 0)


def test_pool_consumes_a_queue_of_its_own_beside_the_standard_one(
        tmp_path: Path, vhost: str) -> None:
    conf = make_conf(tmp_path, vhost, pool="panko-pool")
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    running = start(conf, store)
    try:
        wait_for(lambda: "panko-pool" in broker.queue_counts(vhost), what="pool queue declared")
        pub = Publisher(vhost)  # declares notifications.info, as a notifier does
        notes = [broker.notification() for _ in range(20)]
        for i, n in enumerate(notes):
            pub.publish(n, exchange="nova" if i % 2 else "neutron")
        pub.close()
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in notes}, what="stored")
        wait_for(lambda: broker.queue_counts(vhost)["panko-pool"] == (0, 0), what="acked")
    finally:
        running.stop()
    # Another consumer's standard queue (Ceilometer's) still holds all of them.
    assert broker.queue_counts(vhost)["notifications.info"] == (20, 0)


def test_broker_loss_during_database_outage_loses_nothing(setup: Any, vhost: str) -> None:
    conf, store, pub = setup
    flaky = FlakyStorage(store)
    flaky.down.set()
    notes = [broker.notification() for _ in range(60)]
    for n in notes:
        pub.publish(n)
    pub.close()
    running = Running(Consumer(conf, flaky, SimpleConverter(), decoder.decode, name="test"))
    try:
        wait_for(lambda: flaky.failures >= 2, what="failed attempts")
        broker.rabbitmqctl("close_all_connections", "-p", vhost, "test")
        time.sleep(2)  # reconnected while the database is still down
        flaky.down.clear()
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in notes}, timeout=60,
                 what="everything stored")
        wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 0),
                 what="everything acked")
    finally:
        running.stop()


FOUR = ["info", "error", "warn", "audit"]


def four_queues(tmp_path: Path, vhost: str, storage_wrapper: Any,
                infos: int) -> tuple[Any, Any, Publisher, list[dict[str, Any]], Running]:
    """A worker consuming four queues that share prefetch_count 40 (10 each
    at first), its storage wrapped by ``storage_wrapper``, ``infos`` info
    notifications waiting. Returns the real store, the wrapper, the
    publisher, the notifications and the running worker."""
    conf = make_conf(tmp_path, vhost, priorities=",".join(FOUR), batch_size=100,
                     prefetch_count=40, batch_timeout=5)
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    pub = Publisher(vhost)
    notes = [broker.notification() for _ in range(infos)]
    for n in notes:
        pub.publish(n)
    wrapped = storage_wrapper(store)
    running = Running(Consumer(conf, wrapped, SimpleConverter(), decoder.decode, name="test"))
    return store, wrapped, pub, notes, running


def unacked_on_four(vhost: str) -> int:
    counts = broker.queue_counts(vhost)
    return sum(counts[f"notifications.{p}"][1] for p in FOUR)


def test_a_busy_queue_gets_the_prefetch_its_quiet_neighbours_leave(
        tmp_path: Path, vhost: str) -> None:
    """Four queues share prefetch_count 40 (per consumer prefetch): 10 each
    at first. Only info is busy: once one of its batches is acked, the
    consumers are restarted with windows that follow the traffic, so info's
    batches grow past 10 (with fixed shares they stay at half of its 10,
    however busy it is); and the worker still
    holds no more than 40 unacked messages, as the broker counts them."""
    store, gated, pub, first, running = four_queues(tmp_path, vhost, GatedStorage, 200)

    def unacked() -> int:
        return unacked_on_four(vhost)

    try:
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in first},
                 what="the busy queue's events stored")
        assert max(gated.sizes) > 10, gated.sizes
        # Writes held: the worker takes all its windows allow from every queue.
        gated.gate.clear()
        second = [broker.notification(priority=p.upper()) for p in FOUR for _ in range(60)]
        for n in second:
            pub.publish(n)
        wait_for(gated.waiting.is_set, what="a write held")
        wait_for(lambda: unacked() == 40, timeout=30, what="the worker holding its prefetch")
        time.sleep(1)  # nothing more comes
        assert unacked() == 40
        gated.gate.set()
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in first + second},
                 timeout=60, what="everything stored")
        wait_for(lambda: unacked() == 0, what="everything acked")
    finally:
        gated.gate.set()
        running.stop()
        pub.close()
    assert running.consumer.totals.duplicates == 0


class OutageThenHeld:
    """The real storage behind a scripted outage: the first write waits for
    ``release`` then fails like the rest while ``down`` is set; after that,
    one write passes and every later one waits for ``gate``."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0
        self.release = threading.Event()
        self.down = threading.Event()
        self.down.set()
        self.gate = threading.Event()
        self.passed = 0

    def record_events(self, events: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.release.wait(60)
        if self.down.is_set():
            raise errors.StorageUnavailable("database unavailable: test outage")
        if self.passed:
            self.gate.wait(60)
        self.passed += 1
        return self.real.record_events(events)


def test_after_an_outage_the_batch_held_meanwhile_counts_in_the_bound(
        tmp_path: Path, vhost: str) -> None:
    """A database outage cancels the consumers; the batch that filled while
    the first write was failing stays unacked. RabbitMQ counts those
    messages in no window of the consumers started when the database is
    back, so their windows must leave room for them: the worker still holds
    at most prefetch_count (40) messages, not 30 more."""
    store, scripted, pub, notes, running = four_queues(tmp_path, vhost, OutageThenHeld, 100)

    def unacked() -> int:
        return unacked_on_four(vhost)

    try:
        # Half of info's window (5 of 10) is written; the rest of it and the other queues fill
        # theirs while that write hangs, then fails.
        wait_for(lambda: scripted.calls == 1, what="the first write")
        for p in FOUR[1:]:
            for _ in range(50):
                notes.append(broker.notification(priority=p.upper()))
                pub.publish(notes[-1])
        wait_for(lambda: unacked() == 40, what="every window full")
        scripted.release.set()
        wait_for(lambda: scripted.calls >= 3, what="failed retries")
        scripted.down.clear()
        wait_for(lambda: scripted.passed == 1, what="the first batch written")
        time.sleep(2)  # the consumers started again take all they may
        assert unacked() <= 40
        scripted.gate.set()
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in notes},
                 timeout=60, what="everything stored")
    finally:
        scripted.release.set()
        scripted.down.clear()
        scripted.gate.set()
        running.stop()
        pub.close()
