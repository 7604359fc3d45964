"""CPU per delivery of a kombu drain loop, plain and through panko_collector.broker.read_ahead.

Usage: .venv/bin/python bench/read_ahead.py [-n 30000] [--rounds 5] [--size 2000]

On a RabbitMQ vhost of its own: N notifications of about ``--size`` bytes
(oslo v2 envelope) are queued, then drained by one consumer in this process
(decode, one ack per 500), in turns: ``plain`` calls
``drain_events(timeout=...)`` as kombu users do, ``read-ahead`` installs the
reader and drains through ``read_ahead.drain``. Prints the process CPU per
delivery of each round, the medians and their ratio. Needs rabbitmqctl and
RabbitMQ on 127.0.0.1:5672.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kombu

from panko_collector.broker import read_ahead
from panko_collector.conversion import decoder

QUEUE = "bench_read_ahead"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def fill(url: str, n: int, size: int) -> None:
    note = {"event_type": "compute.instance.update", "priority": "INFO",
            "publisher_id": "compute.host1", "timestamp": "2024-01-01 00:00:00.000000",
            "payload": {"pad": "x" * size}}
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        kombu.Queue(QUEUE, durable=False)(channel).declare()
        producer = kombu.Producer(channel)
        for _ in range(n):
            body = json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(
                dict(note, message_id=str(uuid.uuid4())))})
            producer.publish(body, routing_key=QUEUE, content_type="application/json")


def drain(url: str, n: int, ahead: bool) -> float:
    """CPU seconds per delivery to drain ``n`` messages."""
    conn = kombu.Connection(url)
    conn.connect()
    reader = read_ahead.install(conn) if ahead else None
    channel = conn.channel()
    channel.basic_qos(0, 1000, False)
    count = 0

    def on_message(message: kombu.Message) -> None:
        nonlocal count
        decoder.decode(message.body)
        count += 1
        if count % 500 == 0 or count == n:
            message.ack(multiple=True)

    consumer = kombu.Consumer(channel, [kombu.Queue(QUEUE, no_declare=True)],
                              on_message=on_message)
    consumer.consume()
    start = time.process_time()
    while count < n:
        try:
            if ahead:
                read_ahead.drain(conn, reader, 0.2)
            else:
                conn.drain_events(timeout=0.2)
        except TimeoutError:
            pass
    cpu = time.process_time() - start
    conn.release()
    return cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=2000)
    args = parser.parse_args()
    vhost = f"pc_bench_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        results: dict[str, list[float]] = {"plain": [], "read-ahead": []}
        for _ in range(args.rounds):
            for label in results:
                fill(url, args.n, args.size)
                cpu = drain(url, args.n, label == "read-ahead")
                results[label].append(cpu)
                print(f"{label:>10}: {cpu * 1e6:6.1f} us CPU per delivery", flush=True)
        plain, ahead = (statistics.median(v) for v in results.values())
        print(f"medians of {args.rounds} rounds of {args.n} deliveries of {args.size} bytes: "
              f"plain {plain * 1e6:.1f} us, read-ahead {ahead * 1e6:.1f} us "
              f"(ratio {ahead / plain:.0%})")
    finally:
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    main()
