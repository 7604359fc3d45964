"""RabbitMQ for functional tests: a vhost of the test's own, publishing like
an OpenStack service (oslo.messaging v2 wire envelope), reading queues back."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest

from tests.conftest import RABBIT_HOST, missing, port_open, unique_name


def rabbitmqctl(*args: str) -> str:
    out = subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                         text=True, timeout=60)
    return out.stdout


@pytest.fixture
def vhost() -> Iterator[str]:
    """A RabbitMQ vhost of this test's own, guest may do anything there; deleted after."""
    if not port_open(RABBIT_HOST):
        missing("RabbitMQ")
    if shutil.which("rabbitmqctl") is None:
        missing("rabbitmqctl")
    name = unique_name("pc_vhost")
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


def url(vhost: str, host: str = RABBIT_HOST) -> str:
    return f"rabbit://guest:guest@{host}/{vhost}"


def connect(vhost: str) -> kombu.Connection:
    return kombu.Connection(f"amqp://guest:guest@{RABBIT_HOST}/{vhost}")


def envelope(notification: dict[str, Any]) -> bytes:
    """The oslo.messaging v2 wire format of a notification."""
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(notification)}).encode()


def notification(event_type: str = "compute.instance.create.end", priority: str = "INFO",
                 payload: Any = None, message_id: str | None = None,
                 publisher_id: str = "compute.host1") -> dict[str, Any]:
    return {
        "message_id": message_id or str(uuid.uuid4()),
        "publisher_id": publisher_id,
        "event_type": event_type,
        "priority": priority,
        "payload": payload if payload is not None else {"instance_id": str(uuid.uuid4())},
        "timestamp": str(datetime.datetime.now(datetime.UTC).replace(tzinfo=None)),
        "_context_request_id": "req-" + str(uuid.uuid4()),
    }


class Publisher:
    """Publishes like an oslo.messaging notifier: topic exchange, and the
    ``<topic>.<priority>`` queue declared so nothing is lost before a consumer."""

    def __init__(self, vhost: str, topic: str = "notifications", durable: bool = False) -> None:
        self.conn = connect(vhost)
        self.channel = self.conn.channel()
        self.producer = kombu.Producer(self.channel)
        self.topic = topic
        self.durable = durable
        self._declared: set[tuple[str, str]] = set()

    def _declare(self, exchange: str, key: str) -> kombu.Exchange:
        ex = kombu.Exchange(exchange, type="topic", durable=self.durable)
        if (exchange, key) not in self._declared:
            ex(self.channel).declare()
            kombu.Queue(key, exchange=ex, routing_key=key, durable=self.durable)(
                self.channel).declare()
            self._declared.add((exchange, key))
        return ex

    def publish_raw(self, body: bytes, exchange: str = "nova", priority: str = "info") -> None:
        key = f"{self.topic}.{priority}"
        ex = self._declare(exchange, key)
        self.producer.publish(body, exchange=ex, routing_key=key,
                              content_type="application/json", content_encoding="utf-8",
                              delivery_mode=2 if self.durable else 1)

    def publish(self, note: dict[str, Any], exchange: str = "nova") -> None:
        self.publish_raw(envelope(note), exchange, note.get("priority", "info").lower())

    def close(self) -> None:
        self.conn.release()


def queue_counts(vhost: str) -> dict[str, tuple[int, int]]:
    """{queue: (ready, unacked)} as RabbitMQ sees them."""
    out = rabbitmqctl("list_queues", "-p", vhost, "name", "messages_ready",
                      "messages_unacknowledged")
    counts = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].isdigit():
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return counts


def get_all(vhost: str, queue: str) -> list[kombu.Message]:
    """Every message waiting in ``queue`` (acked: removed)."""
    out = []
    with connect(vhost) as conn:
        q = kombu.Queue(queue, channel=conn.channel(), no_declare=True)
        while (msg := q.get(no_ack=True)) is not None:
            out.append(msg)
    return out


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.2,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
