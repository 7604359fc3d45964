"""``panko-collector-replay`` for real: a real RabbitMQ vhost, the real command,
the real collector storing what is replayed, and a SIGKILL in the middle.

Dead letters come from the collector itself where it can make them (too
large, refused by the database, not JSON); the others are published with
exactly the headers the collector gives its dead letters
(``dead_letters.headers``): the converter never raises for a notification,
so ``convert-failed`` comes only from a bug of an earlier version.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import kombu
import psycopg
import pytest

from panko_collector.broker import dead_letters
from panko_collector.broker import replay as replay_module
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.daemon import Collector, write_conf
from tests.functional.storage_helpers import open_store, stored_ids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DLQ = "panko-collector.dead-letter"
DEFINITIONS = """\
- event_type: test.*
  traits:
    a:
      fields: payload.a
"""


def replay(conf: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "panko-collector-replay"
    return subprocess.run([str(exe), "--config-file", str(conf), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def dead_letter(channel: Any, body: bytes, reason: str, exchange: str = "nova",
                routing_key: str = "notifications.info", **properties: Any) -> None:
    """Publish a dead letter as the collector does (``Consumer._dead_letter``);
    ``headers`` are the original's."""
    headers = dead_letters.headers(reason, f"test: {reason}",
                                   {"exchange": exchange, "routing_key": routing_key},
                                   properties.pop("headers", {}), 0)
    dlx = kombu.Exchange(DLQ, type="topic", durable=True)
    kombu.Queue(DLQ, exchange=dlx, routing_key="#", durable=True)(channel).declare()
    kombu.Producer(channel).publish(
        body, exchange=dlx, routing_key=reason, headers=headers,
        content_type=properties.pop("content_type", "application/json"),
        content_encoding=properties.pop("content_encoding", "utf-8"),
        delivery_mode=2, retry=False, **properties)


def peek(vhost: str, queue: str) -> list[Any]:
    """Every message of ``queue`` in order, left there (unacked, then requeued)."""
    out = []
    with broker.connect(vhost) as conn:
        channel = conn.channel()
        channel.auto_decode = False
        while (msg := channel.basic_get(queue, no_ack=False)) is not None:
            out.append(msg)
    return out


def bodies(messages: list[Any]) -> list[bytes]:
    return [bytes(m.body) for m in messages]


def ready(vhost: str, queue: str) -> int:
    return broker.queue_counts(vhost).get(queue, (0, 0))[0]


def note(event_type: str = "test.ok", **fields: Any) -> dict[str, Any]:
    n = broker.notification(event_type=event_type, payload={"a": "x"})
    n.update(fields)
    return n


def test_each_fixable_reason_is_replayed_after_its_fix_and_not_json_stays(
        tmp_path: Path, vhost: str, pg_url: str, collectors: list[Collector]) -> None:
    open_store(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("""
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.message_id LIKE 'refuse-%' THEN
                RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
              END IF;
              RETURN NEW;
            END $$""")
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON event FOR EACH ROW "
                    "EXECUTE FUNCTION refuse()")
    defs = tmp_path / "defs.yaml"
    defs.write_text(DEFINITIONS)
    conf = write_conf(tmp_path / "c.conf", vhost, pg_url, defs, workers=1,
                      max_message_bytes=3000)
    c = Collector(conf)
    collectors.append(c)
    c.wait_consuming(1)

    big = note("test.big", payload={"a": "x" * 5000})
    refused = note("test.refused", message_id="refuse-1")
    converted = note("test.converted")
    good = note()
    pub = Publisher(vhost)
    try:
        pub.publish(big)
        wait_for(lambda: ready(vhost, DLQ) == 1, what="dead letter 1")
        pub.publish(refused)
        wait_for(lambda: ready(vhost, DLQ) == 2, what="dead letter 2")
        pub.publish_raw(b"{not json", "nova", "info")
        for i in [3]:
            wait_for(lambda i=i: ready(vhost, DLQ) == i, what=f"dead letter {i}")
        dead_letter(pub.channel, broker.envelope(converted), "convert-failed")
        pub.publish(good)
    finally:
        pub.close()
    wait_for(lambda: good["message_id"] in stored_ids(pg_url), what="the good event")
    reasons = [m.headers["reason"] for m in peek(vhost, DLQ)]
    assert reasons == ["too-large", "store-failed", "not-json", "convert-failed"]

    listed = replay(conf, "--list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    inventory = json.loads(listed.stdout)
    assert inventory["count"] == 4
    assert {r: v["count"] for r, v in inventory["reasons"].items()} == {
        "too-large": 1, "store-failed": 1, "not-json": 1, "convert-failed": 1}
    assert inventory["event_types"] == {"test.big": 1, "test.refused": 1,
                                        "test.converted": 1, "(undecodable)": 1}
    assert ready(vhost, DLQ) == 4  # listing consumed nothing

    # The fixes: a larger limit, the trigger gone.
    assert c.stop() == 0
    conf.write_text(conf.read_text().replace("max_message_bytes = 3000",
                                             "max_message_bytes = 100000"))
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute("DROP TRIGGER refuse ON event")
    c = Collector(conf)
    collectors.append(c)
    c.wait_consuming(1)

    done = replay(conf, "--reason", "too-large", "--reason", "convert-failed",
                  "--reason", "store-failed")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replayed 3 of 3 selected" in done.stdout
    wanted = {big["message_id"], refused["message_id"], converted["message_id"]}
    wait_for(lambda: wanted <= set(stored_ids(pg_url)), what="the replayed events stored")
    left = peek(vhost, DLQ)
    assert [m.headers["reason"] for m in left] == ["not-json"]

    # Replayed without a filter, the garbage comes straight back: it stays dead.
    again = replay(conf)
    assert again.returncode == 0, again.stdout + again.stderr
    wait_for(lambda: ready(vhost, DLQ) == 1
             and broker.queue_counts(vhost).get("notifications.info") == (0, 0),
             what="the garbage dead-lettered again")
    (back,) = peek(vhost, DLQ)
    assert (bytes(back.body), back.headers["reason"]) == (b"{not json", "not-json")
    assert len(stored_ids(pg_url)) == 4
    assert c.stop() == 0


def test_list_filters_limit_dry_run_and_what_is_published(
        tmp_path: Path, vhost: str) -> None:
    conf = write_conf(tmp_path / "c.conf", vhost, f"sqlite:///{tmp_path / 'e.sqlite'}")
    pub = Publisher(vhost)
    pub._declare("nova", "notifications.info")
    pub._declare("nova", "notifications.error")
    letters = [
        (broker.envelope(note("compute.instance.create.end")), "too-large", {}),
        (b"{not json", "not-json", {}),
        (broker.envelope(note("image.upload")), "too-large", {}),
        (broker.envelope(note("compute.instance.delete.end")), "store-failed", {}),
        (broker.envelope(note("compute.instance.update")), "too-large",
         {"headers": {"x-trace": "abc"}, "content_type": "text/plain",
          "content_encoding": "binary", "routing_key": "notifications.error"}),
        (broker.envelope(note("compute.instance.exists")), "convert-failed", {}),
    ]
    try:
        for body, reason, props in letters:
            props = dict(props)
            dead_letter(pub.channel, body, reason,
                        routing_key=props.pop("routing_key", "notifications.info"), **props)
    finally:
        pub.close()
    original = bodies(peek(vhost, DLQ))
    assert len(original) == 6

    table = replay(conf, "--list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["REASON", "COUNT", "OLDEST", "NEWEST"]
    assert any(line.split()[:2] == ["too-large", "3"] for line in lines)
    assert any(line.split() == ["(undecodable)", "1"] for line in lines)
    assert "6 dead letters in panko-collector.dead-letter" in table.stdout
    filtered = json.loads(replay(conf, "--list", "--format", "json", "--event-type",
                                 "compute.*").stdout)
    assert filtered["count"] == 4

    dry = replay(conf, "--dry-run", "--reason", "too-large")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 3 of 3 selected" in dry.stdout
    assert bodies(peek(vhost, DLQ)) == original
    assert broker.queue_counts(vhost)["notifications.info"] == (0, 0)

    first = replay(conf, "--reason", "too-large", "--event-type", "compute.*", "--limit", "1")
    assert first.returncode == 0, first.stderr
    assert "replayed 1 of 1 selected" in first.stdout
    assert bodies(peek(vhost, DLQ)) == original[1:]
    assert bodies(peek(vhost, "notifications.info")) == [original[0]]

    second = replay(conf, "--reason", "too-large", "--event-type", "compute.*")
    assert second.returncode == 0, second.stderr
    assert bodies(peek(vhost, DLQ)) == [original[i] for i in (1, 2, 3, 5)]
    with broker.connect(vhost) as conn:
        channel = conn.channel()
        channel.auto_decode = False
        msg = channel.basic_get("notifications.error", no_ack=True)
    assert bytes(msg.body) == original[4]
    assert msg.properties["content_type"] == "text/plain"
    assert msg.properties["content_encoding"] == "binary"
    assert msg.properties["delivery_mode"] == 2
    assert msg.properties["application_headers"] == {"x-trace": "abc"}

    bad = replay(conf, "--limit", "0")
    assert bad.returncode == 2
    assert replay(conf, "--list", "--dry-run").returncode == 2


def test_what_the_broker_refuses_stays_in_place_and_fails_the_run(
        tmp_path: Path, vhost: str) -> None:
    conf = write_conf(tmp_path / "c.conf", vhost, f"sqlite:///{tmp_path / 'e.sqlite'}")
    pub = Publisher(vhost)
    pub._declare("nova", "notifications.info")
    # A full queue that refuses more: the broker nacks what it cannot take.
    full = kombu.Queue("notifications.error",
                       exchange=kombu.Exchange("nova", type="topic", durable=False),
                       routing_key="notifications.error",
                       queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    full(pub.channel).declare()
    try:
        dead_letter(pub.channel, b"1", "too-large", exchange="gone")
        dead_letter(pub.channel, b"2", "too-large")
        dead_letter(pub.channel, b"3", "too-large", routing_key="nobody.listens")
        dead_letter(pub.channel, b"4", "too-large")
        dead_letter(pub.channel, b"5", "too-large", routing_key="notifications.error")
        dead_letter(pub.channel, b"6", "too-large", routing_key="notifications.error")
    finally:
        pub.close()
    result = replay(conf)
    assert result.returncode == 1
    assert "replayed 3 of 6 selected" in result.stdout
    assert "exchange 'gone' does not exist (1)" in result.stdout
    assert "unroutable" in result.stdout
    assert "the broker nacked the message (1)" in result.stdout
    assert bodies(peek(vhost, DLQ)) == [b"1", b"3", b"6"]
    assert bodies(peek(vhost, "notifications.info")) == [b"2", b"4"]
    assert bodies(peek(vhost, "notifications.error")) == [b"5"]


def test_sigkill_in_the_middle_of_a_replay_loses_nothing(
        tmp_path: Path, vhost: str, collectors: list[Collector]) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    conf = write_conf(tmp_path / "c.conf", vhost, url, batch_size=500)
    notes = [note(message_id=f"m-{i:05d}") for i in range(5000)]
    pub = Publisher(vhost)
    pub._declare("nova", "notifications.info")
    kept = []
    try:
        for i, n in enumerate(notes):
            dead_letter(pub.channel, broker.envelope(n), "too-large")
            if i % 10 == 0:  # interleaved, never selected: must keep their order
                kept.append(f"garbage {i}".encode())
                dead_letter(pub.channel, kept[-1], "not-json")
    finally:
        pub.close()
    wait_for(lambda: ready(vhost, DLQ) == 5500, what="the dead letters")
    order = bodies(peek(vhost, DLQ))

    exe = Path(sys.executable).parent / "panko-collector-replay"
    proc = subprocess.Popen([str(exe), "--config-file", str(conf), "--reason", "too-large"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with broker.connect(vhost) as conn:
            channel = conn.channel()
            deadline = time.monotonic() + 60
            while channel.queue_declare("notifications.info", passive=True)[1] < 1000:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the replay did not get going"
                time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: broker.queue_counts(vhost)[DLQ][1] == 0, what="the unacked requeued")

    dead = bodies(peek(vhost, DLQ))
    home = [bytes(m.body) for m in peek(vhost, "notifications.info")]
    assert 1000 <= len(home) < 5000
    assert len(set(dead)) == len(dead), "a dead letter duplicated"
    assert set(dead) | set(home) == set(order), "a message lost"
    assert len(set(home)) == len(home)
    # Published and confirmed, or not yet, but not acked: at most one window in both.
    assert len(set(dead) & set(home)) <= replay_module._Target.WINDOW
    assert [b for b in order if b in set(dead)] == dead, "order changed"
    assert [b for b in dead if b.startswith(b"garbage")] == kept

    # The rest, then the collector: each notification stored once.
    rest = replay(conf, "--reason", "too-large")
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert bodies(peek(vhost, DLQ)) == kept
    c = Collector(conf)
    collectors.append(c)
    c.wait_consuming(2)
    wait_for(lambda: len(stored_ids(url)) == 5000, timeout=120, what="5000 events stored")
    assert sorted(stored_ids(url)) == [n["message_id"] for n in notes]
    assert c.stop() == 0


#: Application headers of a publisher's own, some named like the dead letter's.
THEIR_HEADERS = {
    "reason": "theirs", "error": 0, "original_exchange": "elsewhere",
    "original_headers": {"nested": [1, "two", {"three": 3.5}]},
    "x-death": [{"count": 2, "reason": "rejected", "queue": "upstream", "exchange": "",
                 "routing-keys": ["upstream"], "time": datetime.datetime(2026, 11, 30, 9, 0)}],
    "x-trace": "abc", "big": 2**40, "raw": b"\xff\xfe", "flag": True, "nothing": None,
}


def home_messages(vhost: str) -> list[tuple[bytes, Any, Any, Any]]:
    return [(bytes(m.body), m.properties.get("content_type"),
             m.properties.get("content_encoding"), m.properties.get("application_headers"))
            for m in peek(vhost, "notifications.info")]


def test_a_replayed_dead_letter_has_exactly_its_own_headers_back(
        tmp_path: Path, vhost: str, collectors: list[Collector]) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    conf = write_conf(tmp_path / "c.conf", vhost, url, workers=1, max_message_bytes=3000)
    c = Collector(conf)
    collectors.append(c)
    c.wait_consuming(1)
    zipped = zlib.compress(broker.envelope(note()))
    sent = [  # body, content type, encoding, headers: each dead-lettered by the collector
        (b"{not json", "text/plain", "utf-8", THEIR_HEADERS),
        (broker.envelope(note(payload={"a": "x" * 5000})), "application/json", "UTF-8",
         THEIR_HEADERS),
        (zipped, "application/json", "utf-8",
         {**THEIR_HEADERS, "compression": "application/x-gzip"}),
    ]
    pub = Publisher(vhost)
    try:
        ex = pub._declare("nova", "notifications.info")
        for body, content_type, encoding, headers in sent:
            pub.producer.publish(body, exchange=ex, routing_key="notifications.info",
                                 content_type=content_type, content_encoding=encoding,
                                 headers=dict(headers))
    finally:
        pub.close()
    wait_for(lambda: ready(vhost, DLQ) == 3, what="the dead letters")
    assert c.stop() == 0  # nothing takes the replayed messages before we look

    letters = peek(vhost, DLQ)
    assert [m.headers["reason"] for m in letters] == ["not-json", "too-large", "compressed"]
    for letter, (_, _, _, headers) in zip(letters, sent, strict=True):
        assert letter.headers["original_exchange"] == "nova"
        assert letter.headers["original_headers"] == headers
    assert letters[2].headers["original_compression"] == "application/x-gzip"

    done = replay(conf)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "replayed 3 of 3 selected" in done.stdout
    assert home_messages(vhost) == sent
    assert ready(vhost, DLQ) == 0


def test_headers_too_large_to_keep_leave_a_dead_letter_that_is_not_replayed(
        tmp_path: Path, vhost: str, collectors: list[Collector]) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    conf = write_conf(tmp_path / "c.conf", vhost, url, workers=1)
    c = Collector(conf)
    collectors.append(c)
    c.wait_consuming(1)
    # Headers that fill the original's frame (131072 bytes, RabbitMQ's
    # default frame_max): the dead letter's own headers would overflow it.
    huge = {"big": "x" * 130_900}
    good = note()
    pub = Publisher(vhost)
    try:
        ex = pub._declare("nova", "notifications.info")
        pub.producer.publish(b"{not json", exchange=ex, routing_key="notifications.info",
                             content_type="application/json", content_encoding="utf-8",
                             headers=huge)
        pub.publish(good)
    finally:
        pub.close()
    wait_for(lambda: good["message_id"] in stored_ids(url), what="the good event stored")
    wait_for(lambda: ready(vhost, DLQ) == 1, what="the dead letter")
    assert c.stop() == 0
    (letter,) = peek(vhost, DLQ)
    assert letter.headers["reason"] == "not-json"
    assert "original_headers" not in letter.headers
    assert letter.headers["original_headers_omitted"] > 130_900
    assert "keeps none of the original's application headers" in c.log()

    refused = replay(conf)
    assert refused.returncode == 1
    assert "too large to keep in the dead letter (1)" in refused.stdout
    assert ready(vhost, DLQ) == 1
    assert broker.queue_counts(vhost)["notifications.info"] == (0, 0)
