"""The worker loop with the broker session and the storage replaced by
fakes that log what they are asked: the stop order, deliveries that arrive
while a consumer starts or is cancelled, acks after the commit, dead
letters. The real thing is in tests/functional/test_consumer.py."""

from __future__ import annotations

import datetime
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from panko_collector import service
from panko_collector.conversion import decoder
from panko_collector.ingest import consumer as consumer_module
from panko_collector.ingest.consumer import Consumer
from panko_collector.storage import RecordResult, models


@dataclass
class Message:
    body: bytes
    delivery_tag: int
    delivery_info: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = "application/json"
    content_encoding: str | None = "utf-8"
    headers: dict[str, Any] = field(default_factory=dict)


def body(message_id: str, event_type: str = "compute.instance.create.end") -> bytes:
    note = {"message_id": message_id, "publisher_id": "compute.host1", "priority": "INFO",
            "event_type": event_type, "payload": {},
            "timestamp": "2026-01-01 00:00:00.000000"}
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(note)}).encode()


class Converter:
    def convert(self, n: Any, received: Any = None) -> models.Event | None:
        if n.event_type.startswith("drop."):
            return None
        return models.Event(n.message_id, n.event_type, datetime.datetime(2026, 1, 1))


class FakeSession:
    """Stands for broker.session.Session: logs each call in ``log``; delivers
    what the test queued with ``send`` from ``drain``, or from ``consume``
    and ``cancel`` when told to (as RabbitMQ may)."""

    def __init__(self, log: list[str], conf: Any, url: Any, plan: Any,
                 on_message: Callable[[Any], None], *, read_ahead: bool = True) -> None:
        self.log = log
        self.on_message = on_message
        self.queues = ["notifications.info", "notifications.error"]
        self.connection = self.reader = None
        self.pending: list[bytes] = []
        self.prefixes: list[str] = []
        self.tags = itertools.count(1)
        self.lock = threading.Lock()
        self.during_consume: list[bytes] = []
        self.during_cancel: list[bytes] = []
        self.frame_max = 131072
        #: Delivery tags whose dead letters the broker nacks.
        self.refuse: set[int] = set()

    def send(self, *bodies: bytes) -> None:
        with self.lock:
            self.pending.extend(bodies)

    def _deliver(self, raw: bytes) -> None:
        tag = next(self.tags)
        self.log.append(f"deliver {tag}")
        self.on_message(Message(raw, tag, {"routing_key": "notifications.info",
                                           "exchange": "nova",
                                           "consumer_tag": self.prefixes[0] + "1"}))

    def connect(self, start: Callable[[], object]) -> None:
        self.log.append("connect")
        start()

    def describe(self) -> str:
        return "fake"

    def consume(self, queue: str, window: int, tag_prefix: str) -> None:
        self.log.append(f"consume {queue} {window}")
        self.prefixes.append(tag_prefix)
        while len(self.prefixes) > 1 and self.during_consume:
            self._deliver(self.during_consume.pop(0))

    def cancel(self) -> None:
        self.log.append("cancel")
        while self.during_cancel:
            self._deliver(self.during_cancel.pop(0))
        self.prefixes = []

    def drain(self, timeout: float) -> None:
        with self.lock:
            bodies, self.pending = self.pending, []
        for raw in bodies:
            self._deliver(raw)
        if not bodies:
            time.sleep(min(timeout, 0.01))

    def heartbeat(self) -> None:
        pass

    def ack(self, message: Message, multiple: bool = False) -> None:
        self.log.append(f"ack {message.delivery_tag}{' multiple' if multiple else ''}")

    def publish_dead_letter(self, message: Message, headers: dict[str, Any],
                            exchange: str) -> bool:
        self.log.append(f"dead-letter {message.delivery_tag} {headers['reason']}")
        return message.delivery_tag not in self.refuse

    def close(self) -> None:
        self.log.append("close")


class Storage:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def record_events(self, events: list[models.Event]) -> RecordResult:
        self.log.append(f"commit {','.join(e.message_id for e in events)}")
        return RecordResult(stored=len(events))


@pytest.fixture
def conf(tmp_path: Path) -> Any:
    path = tmp_path / "c.conf"
    path.write_text("[collector]\nbatch_size = 100\nbatch_timeout = 60\n"
                    "priorities = info,error\n")
    return service.prepare_service(["--config-file", str(path)])


@pytest.fixture
def worker(conf: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Consumer, list[str],
                                                                        list[FakeSession]]]:
    log: list[str] = []
    sessions: list[FakeSession] = []

    def session(*args: Any, **kwargs: Any) -> FakeSession:
        s = FakeSession(log, *args, **kwargs)
        sessions.append(s)
        return s

    monkeypatch.setattr(consumer_module, "Session", session)
    c = Consumer(conf, Storage(log), Converter(), decoder.decode,  # type: ignore[arg-type]
                 name="test")
    yield c, log, sessions
    c.stop(5)


def run(c: Consumer) -> threading.Thread:
    thread = threading.Thread(target=c.run, daemon=True)
    thread.start()
    return thread


def wait_for(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_stop_order_stop_taking_then_flush_then_ack_then_close(worker: Any) -> None:
    c, log, sessions = worker
    thread = run(c)
    wait_for(lambda: bool(sessions) and len(sessions[0].prefixes) == 2)
    sessions[0].send(body("a"), body("b"), body("c"))
    wait_for(lambda: c.stats.messages == 3)
    assert not any(e.startswith("commit") for e in log)  # batch_timeout 60: still batched
    assert c.stop(5)
    thread.join(5)
    assert log[log.index("deliver 3") + 1:] == ["cancel", "commit a,b,c", "ack 3 multiple",
                                                "close"]
    assert c.totals.stored == 3


def test_deliveries_that_come_while_a_consumer_starts_are_handled(worker: Any) -> None:
    c, log, _sessions = worker
    early = [body("early-1"), body("drop-me", "drop.x")]
    original = FakeSession.connect

    def connect(self: FakeSession, start: Callable[[], object]) -> None:
        self.during_consume.extend(early)
        original(self, start)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeSession, "connect", connect)
        thread = run(c)
        wait_for(lambda: c.stats.messages == 2)
        assert c.stop(5)
        thread.join(5)
    # Delivered by the first consumer while the second one waited for its
    # ConsumeOk: batched, or dropped and acked, there and then.
    assert log[:6] == ["connect", "consume notifications.info 100",
                       "consume notifications.error 100", "deliver 1", "deliver 2", "ack 2"]
    assert log[-3:] == ["commit early-1", "ack 1 multiple", "close"]
    assert (c.totals.stored, c.totals.dropped) == (1, 1)


def test_deliveries_that_come_while_cancelling_are_written_before_close(worker: Any) -> None:
    c, log, sessions = worker
    thread = run(c)
    wait_for(lambda: bool(sessions) and len(sessions[0].prefixes) == 2)
    sessions[0].send(body("a"))
    wait_for(lambda: c.stats.messages == 1)
    sessions[0].during_cancel.append(body("late"))
    assert c.stop(5)
    thread.join(5)
    assert log[-6:] == ["deliver 1", "cancel", "deliver 2", "commit a,late", "ack 2 multiple",
                        "close"]


def test_an_undecodable_delivery_is_dead_lettered_then_acked(worker: Any) -> None:
    c, log, sessions = worker
    thread = run(c)
    wait_for(lambda: bool(sessions) and len(sessions[0].prefixes) == 2)
    sessions[0].send(body("a"), b"{not json", body("b"))
    wait_for(lambda: c.stats.messages == 3)
    assert c.stop(5)
    thread.join(5)
    assert log.index("dead-letter 2 not-json") + 1 == log.index("ack 2")
    assert log[-3:] == ["commit a,b", "ack 3 multiple", "close"]
    assert c.totals.dead_lettered == 1


def test_while_a_dead_letter_is_refused_the_batch_is_acked_one_by_one(worker: Any) -> None:
    c, log, sessions = worker
    thread = run(c)
    wait_for(lambda: bool(sessions) and len(sessions[0].prefixes) == 2)
    sessions[0].refuse.add(2)
    sessions[0].send(body("a"), b"{not json", body("b"))
    wait_for(lambda: c.stats.messages == 3)
    assert c.stop(5)
    thread.join(5)
    assert "dead-letter 2 not-json" in log and "ack 2" not in log
    # A multiple ack of 3 would settle the refused 2 and lose it.
    assert log[-4:] == ["commit a,b", "ack 1", "ack 3", "close"]
    assert c.totals.dead_lettered == 0
