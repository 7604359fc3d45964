"""Replay rate of panko-collector-replay beside a bare kombu consumer.

Usage: .venv/bin/python bench/replay.py [-n 50000] [--rounds 1]

On a RabbitMQ vhost of its own, each round:

1. bare: N dead letters are queued in the dead-letter queue, with the
   headers the collector gives them (notifications of about 1.5 kB in the
   oslo v2 envelope, reason too-large); then one bare kombu consumer
   (prefetch 1000, manual acks) publishes each to its original exchange and
   routing key on a connection of its own with publisher confirms
   (mandatory), and acks it once confirmed: messages/s from the start of
   consuming to the last ack.
2. replay: N fresh dead letters are queued, then ``panko-collector-replay
   --reason too-large`` runs; messages/s over the command's whole run
   (start-up included) and as the command itself reports it, and the
   ratios to (1). Target: at least 0.8.

The target queue is purged between the phases. Prints figures; asserts
nothing. Needs rabbitmqctl and RabbitMQ on 127.0.0.1:5672.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import kombu  # noqa: E402

DLQ = "panko-collector.dead-letter"
TARGET = "notifications.info"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def connect(vhost: str, **options: Any) -> kombu.Connection:
    return kombu.Connection(f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                            transport_options=options)


def body(i: int) -> bytes:
    note = {"message_id": str(uuid.uuid4()), "event_type": "compute.instance.update",
            "priority": "INFO", "publisher_id": "nova-compute:host1",
            "timestamp": "2026-12-01 08:00:00.000000",
            "payload": {"instance_id": str(uuid.uuid4()), "state": "active", "n": i,
                        "metadata": {f"key{k}": "x" * 40 for k in range(20)}},
            "_context_request_id": f"req-{uuid.uuid4()}"}
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(note)}).encode()


def fill(vhost: str, n: int) -> None:
    """``n`` dead letters as the collector publishes them."""
    with connect(vhost) as conn:
        channel = conn.channel()
        nova = kombu.Exchange("nova", type="topic", durable=False)
        kombu.Queue(TARGET, exchange=nova, routing_key=TARGET)(channel).declare()
        dlx = kombu.Exchange(DLQ, type="topic", durable=True)
        kombu.Queue(DLQ, exchange=dlx, routing_key="#", durable=True)(channel).declare()
        producer = kombu.Producer(channel)
        headers = {"reason": "too-large", "error": "bench", "original_exchange": "nova",
                   "original_routing_key": TARGET}
        for i in range(n):
            producer.publish(body(i), exchange=dlx, routing_key="too-large", headers=headers,
                             content_type="application/json", content_encoding="utf-8",
                             delivery_mode=2, retry=False)
        while channel.queue_declare(DLQ, passive=True)[1] < n:
            time.sleep(0.1)


def purge(vhost: str) -> None:
    with connect(vhost) as conn:
        conn.channel().queue_purge(TARGET)


def bare(vhost: str, n: int) -> float:
    """Messages/s of a plain kombu consumer that republishes with confirms, then acks."""
    source = connect(vhost)
    target = connect(vhost, confirm_publish=True)
    producer = kombu.Producer(target.channel())
    done = 0

    def on_message(message: kombu.Message) -> None:
        nonlocal done
        headers = {k: v for k, v in message.headers.items()
                   if k not in ("reason", "error", "original_exchange",
                                "original_routing_key")}
        producer.publish(message.body, exchange=message.headers["original_exchange"],
                         routing_key=message.headers["original_routing_key"],
                         headers=headers, content_type=message.content_type,
                         content_encoding=message.content_encoding,
                         delivery_mode=message.properties.get("delivery_mode"),
                         mandatory=True, retry=False)
        message.ack()
        done += 1

    try:
        channel = source.channel()
        channel.basic_qos(0, 1000, False)
        consumer = kombu.Consumer(channel, [kombu.Queue(DLQ, no_declare=True)],
                                  on_message=on_message, accept=None)
        consumer.consume()
        started = time.monotonic()
        while done < n:
            source.drain_events(timeout=10)
        return n / (time.monotonic() - started)
    finally:
        source.release()
        target.release()


def replay(vhost: str, n: int) -> tuple[float, float, str]:
    """(messages/s over the whole command, messages/s it reports, its summary line)."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "replay.conf"
        conf.write_text(f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/"
                        f"{vhost}\n")
        exe = Path(sys.executable).parent / "panko-collector-replay"
        started = time.monotonic()
        done = subprocess.run([str(exe), "--config-file", str(conf), "--reason", "too-large"],
                              capture_output=True, text=True, timeout=3600, check=False)
        wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"panko-collector-replay failed: {done.stdout}{done.stderr}")
    line = done.stdout.strip().splitlines()[-1]
    match = re.search(r"replayed (\d+) .* in ([\d.]+) s", line)
    assert match and int(match.group(1)) == n, line
    return n / wall, n / float(match.group(2)), line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    vhost = f"pc_bench_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        for r in range(1, args.rounds + 1):
            fill(vhost, args.n)
            bare_rate = bare(vhost, args.n)
            purge(vhost)
            fill(vhost, args.n)
            wall_rate, own_rate, line = replay(vhost, args.n)
            purge(vhost)
            print(f"round {r}: {args.n} dead letters")
            print(f"  bare kombu consumer (confirm, then ack): {bare_rate:,.0f} messages/s")
            print(f"  panko-collector-replay: {wall_rate:,.0f} messages/s over the whole "
                  f"command ({wall_rate / bare_rate:.2f}x), {own_rate:,.0f}/s as it reports "
                  f"({own_rate / bare_rate:.2f}x)")
            print(f"  its summary: {line}")
    finally:
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    main()
