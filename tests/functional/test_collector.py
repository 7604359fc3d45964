"""The real ``panko-collector`` process against RabbitMQ and real databases.

Each test has a vhost of its own, a database of its own and a temporary
configuration file; signals are real signals to the real processes.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from panko_collector import service, storage
from panko_collector.conversion import decoder
from panko_collector.storage import EventFilter
from tests import corpus
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.daemon import Collector, start, stream, write_conf
from tests.functional.proxy import TCPProxy
from tests.functional.storage_helpers import count_events, open_store, stored_ids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: Where OpenStack services publish, by the first part of the event type.
EXCHANGES = {
    "compute": "nova", "scheduler": "nova", "aggregate": "nova", "keypair": "nova",
    "flavor": "nova", "instance": "nova", "server_group": "nova", "service": "nova",
    "network": "neutron", "port": "neutron", "subnet": "neutron", "router": "neutron",
    "floatingip": "neutron", "security_group": "neutron", "security_group_rule": "neutron",
    "volume": "cinder", "snapshot": "cinder", "image": "glance",
    "orchestration": "heat", "identity": "keystone", "dns": "dns", "magnum": "magnum",
    "baremetal": "ironic", "alarm": "aodh", "trove": "trove",
}


def exchange_for(event_type: str) -> str:
    return EXCHANGES.get(event_type.split(".")[0], "openstack")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.sqlite'}"
    else:
        yield request.getfixturevalue("pg_url")


def test_corpus_end_to_end(tmp_path: Path, vhost: str, url: str,
                           collectors: list[Collector], corpus_dir: Path) -> None:
    """Every corpus notification, published as OpenStack would, arrives with every trait."""
    open_store(url)
    conf_path = write_conf(tmp_path / "c.conf", vhost, url, corpus.definitions_file(corpus_dir))
    conf = service.prepare_service(["--config-file", str(conf_path)])
    from panko_collector.conversion.converter import Converter

    converter = Converter.from_conf(conf)
    pub = Publisher(vhost)
    expected: dict[str, list[Any]] = {}
    sent = 0
    for _label, note in corpus.notifications():
        body = broker.envelope(note)
        n = decoder.decode(body)
        priority = n.priority or "info"
        pub.publish_raw(body, exchange_for(n.event_type), priority)
        sent += 1
        event = converter.convert(n)
        if event is not None:
            # The corpus reuses a few message ids for different notifications;
            # whichever a worker commits first is the one kept.
            expected.setdefault(event.message_id, []).append((n, event))
    # Duplicates: the first 25 again; garbage and an invalid message for the dead letters.
    for _label, note in list(corpus.notifications())[:25]:
        n = decoder.decode(broker.envelope(note))
        pub.publish_raw(broker.envelope(note), exchange_for(n.event_type), n.priority or "info")
    pub.publish_raw(b"\x00garbage", exchange="glance")
    pub.publish_raw(broker.envelope({"payload": {"no": "event type"}}), exchange="heat")
    pub.close()
    assert sent > 100

    c = start(collectors, conf_path)
    wait_for(lambda: count_events(url) >= len(expected), timeout=120,
             what=f"{len(expected)} events:\n{c.log()[-2000:]}")
    wait_for(lambda: broker.queue_counts(vhost).get(conf.collector.dead_letter_queue,
                                                     (0, 0))[0] == 2, what="two dead letters")
    assert c.stop() == 0
    counts = broker.queue_counts(vhost)
    assert all(v == (0, 0) for k, v in counts.items() if k.startswith("notifications.")), counts

    store = storage.get_connection(url)
    got = {e.message_id: e for e in store.get_events(EventFilter())}
    assert set(got) == set(expected)
    for mid, candidates in expected.items():
        stored = got[mid]
        have = (stored.event_type, {(t.name, t.dtype, t.value) for t in stored.traits})
        wants = [(event.event_type, {(t.name, t.dtype, t.value) for t in event.traits})
                 for _n, event in candidates]
        assert have in wants, mid
        n, event = candidates[wants.index(have)]
        if n.timestamp is not None:
            assert stored.generated == event.generated, mid
    reasons = sorted(m.headers["reason"] for m in
                     broker.get_all(vhost, conf.collector.dead_letter_queue))
    assert reasons == ["no-event-type", "not-json"]
    log = c.log()
    assert "panko-collector starting" in log and "notifications.info" in log
    assert "events stored" in log  # the periodic summary


def test_sigterm_mid_stream_loses_nothing(tmp_path: Path, vhost: str, pg_url: str,
                                          collectors: list[Collector]) -> None:
    open_store(pg_url)
    conf_path = write_conf(tmp_path / "c.conf", vhost, pg_url)
    c = start(collectors, conf_path)
    notes = stream(vhost, 3000)
    wait_for(lambda: count_events(pg_url) >= 300, what="a part stored")
    assert c.stop() == 0
    # Clean stop: everything taken was written and acked, the rest is back
    # in the queue, nothing unacked and nothing both stored and queued.
    stored = count_events(pg_url)
    ready, unacked = broker.queue_counts(vhost)["notifications.info"]
    assert unacked == 0
    assert stored + ready == len(notes), (stored, ready)
    assert "Caught SIGTERM" in c.log()
    start(collectors, conf_path)
    wait_for(lambda: count_events(pg_url) == len(notes), what="the rest after restart")
    assert sorted(stored_ids(pg_url)) == sorted(n["message_id"] for n in notes)


def test_sigkill_of_a_worker_loses_nothing_and_stores_nothing_twice(
        tmp_path: Path, vhost: str, pg_url: str, collectors: list[Collector]) -> None:
    open_store(pg_url)
    c = start(collectors, write_conf(tmp_path / "c.conf", vhost, pg_url))
    before = c.workers()
    assert len(before) == 2
    notes = stream(vhost, 3000)
    wait_for(lambda: count_events(pg_url) >= 300, what="a part stored")
    os.kill(before[0], signal.SIGKILL)
    wait_for(lambda: len(c.workers()) == 2 and before[0] not in c.workers(),
             what="the worker replaced")
    wait_for(lambda: count_events(pg_url) == len(notes), timeout=120, what="everything")
    wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 0),
             what="everything acked")
    ids = stored_ids(pg_url)
    assert len(ids) == len(set(ids)) == len(notes)
    assert set(ids) == {n["message_id"] for n in notes}
    assert c.stop() == 0


def test_sighup_reloads_definitions(tmp_path: Path, vhost: str,
                                    collectors: list[Collector]) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    defs = tmp_path / "defs.yaml"
    defs.write_text("- event_type: test.*\n  traits:\n    a:\n      fields: payload.a\n")
    c = start(collectors, write_conf(tmp_path / "c.conf", vhost, url, defs))
    (first,) = stream(vhost, 1, event_type="test.one", payload={"a": "x", "b": 7})
    wait_for(lambda: count_events(url) == 1, what="first event")
    defs.write_text("- event_type: test.*\n  traits:\n    a:\n      fields: payload.a\n"
                    "    b:\n      type: int\n      fields: payload.b\n")
    c.signal(signal.SIGHUP)
    wait_for(lambda: c.log().count("event definitions reloaded") >= 2, what="reload in workers")
    (second,) = stream(vhost, 1, event_type="test.two", payload={"a": "y", "b": 8})
    wait_for(lambda: count_events(url) == 2, what="second event")
    # An invalid file is reported and the previous definitions stay in force.
    defs.write_text("- event_type: [unclosed\n")
    c.signal(signal.SIGHUP)
    wait_for(lambda: c.log().count("new event definitions rejected") >= 1, what="rejection")
    (third,) = stream(vhost, 1, event_type="test.three", payload={"a": "z", "b": 9})
    wait_for(lambda: count_events(url) == 3, what="third event")
    assert c.proc.poll() is None
    assert c.stop() == 0
    store = storage.get_connection(url)
    traits = {e.message_id: {t.name: t.value for t in e.traits}
              for e in store.get_events(EventFilter())}
    assert "b" not in traits[first["message_id"]]
    assert traits[second["message_id"]]["b"] == 8
    assert traits[third["message_id"]]["b"] == 9


def test_broker_connection_loss_loses_nothing(tmp_path: Path, vhost: str, pg_url: str,
                                              collectors: list[Collector]) -> None:
    open_store(pg_url)
    c = start(collectors, write_conf(tmp_path / "c.conf", vhost, pg_url))
    notes = stream(vhost, 2000)
    wait_for(lambda: count_events(pg_url) >= 200, what="a part stored")
    # Only this test's vhost: RabbitMQ is shared with other tests.
    broker.rabbitmqctl("close_all_connections", "-p", vhost, "test: broker restart")
    wait_for(lambda: c.log().count("broker unavailable") >= 1, what="the loss noticed")
    more = stream(vhost, 500)
    wait_for(lambda: count_events(pg_url) == len(notes) + len(more), timeout=120,
             what="everything after reconnect")
    assert set(stored_ids(pg_url)) == {n["message_id"] for n in notes + more}
    assert c.stop() == 0


def test_database_outage_loses_nothing_and_needs_no_manual_step(
        tmp_path: Path, vhost: str, pg_url: str, collectors: list[Collector]) -> None:
    open_store(pg_url)
    from sqlalchemy.engine import make_url

    real = make_url(pg_url)
    proxy = TCPProxy(real.host or "127.0.0.1", real.port or 5432)
    try:
        via_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        c = start(collectors, write_conf(tmp_path / "c.conf", vhost, via_proxy))
        notes = stream(vhost, 2000)
        wait_for(lambda: count_events(pg_url) >= 200, what="a part stored")
        proxy.cut()
        wait_for(lambda: c.log().count("writing") >= 2, what="failed attempts logged")
        time.sleep(3)
        down = count_events(pg_url)
        ready, unacked = broker.queue_counts(vhost)["notifications.info"]
        # Nothing acked that is not stored. A batch whose COMMIT reached the
        # database just before the cut but whose answer never came back is
        # both stored and unacked (in doubt until the retry finds the
        # duplicates), so the sum may exceed what was published, never fall short.
        assert ready + unacked + down >= len(notes)
        proxy.restore()
        wait_for(lambda: count_events(pg_url) == len(notes), timeout=120,
                 what="everything after the outage")
        wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 0),
                 what="everything acked")
        assert set(stored_ids(pg_url)) == {n["message_id"] for n in notes}
        assert broker.queue_counts(vhost).get("panko-collector.dead-letter") == (0, 0)
        assert "database available again" in c.log()
        assert c.stop() == 0
    finally:
        proxy.close()


def test_two_collectors_store_each_event_exactly_once(
        tmp_path: Path, vhost: str, pg_url: str, collectors: list[Collector]) -> None:
    open_store(pg_url)
    a = start(collectors, write_conf(tmp_path / "a.conf", vhost, pg_url, workers=1), workers=1)
    b = start(collectors, write_conf(tmp_path / "b.conf", vhost, pg_url, workers=1), workers=1)
    notes = stream(vhost, 2000)
    wait_for(lambda: count_events(pg_url) == len(notes), timeout=120, what="everything")
    wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 0),
             what="everything acked")
    assert a.stop() == 0 and b.stop() == 0
    ids = stored_ids(pg_url)
    assert len(ids) == len(set(ids)) == len(notes)
    # Both took part.
    assert "events stored" in a.log() and "events stored" in b.log()


def test_queue_mismatch_stops_the_start_with_a_clear_error(
        tmp_path: Path, vhost: str, collectors: list[Collector]) -> None:
    import kombu

    with broker.connect(vhost) as conn:
        kombu.Queue("notifications.info", durable=True, channel=conn.channel()).declare()
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    c = Collector(write_conf(tmp_path / "c.conf", vhost, url))
    collectors.append(c)
    assert c.proc.wait(60) == 1
    log = c.log()
    assert "notifications.info" in log and "amqp_durable_queues" in log


def test_publish_samples_shows_the_events_arrive(tmp_path: Path, vhost: str,
                                                 collectors: list[Collector]) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    conf_path = write_conf(tmp_path / "c.conf", vhost, url, workers=1)
    start(collectors, conf_path, workers=1)
    exe = Path(sys.executable).parent / "panko-collector-publish-samples"
    out = subprocess.run([str(exe), "--config-file", str(conf_path), "--wait", "30"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for event_type in ("compute.instance.create.end", "volume.create.end",
                       "port.create.end", "image.upload"):
        assert event_type in out.stdout
    assert "instance_id = " in out.stdout
    # Trait values as panko-collector-events prints them: datetimes in ISO 8601.
    assert "datetime.datetime(" not in out.stdout
    assert re.search(r"launched_at = \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", out.stdout)
    assert count_events(url) == 4


def test_publish_samples_with_its_own_collector(tmp_path: Path, vhost: str) -> None:
    """The README's one-command demonstration: starts, shows, stops the collector."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    conf_path = write_conf(tmp_path / "c.conf", vhost, url, workers=1)
    exe = Path(sys.executable).parent / "panko-collector-publish-samples"
    out = subprocess.run([str(exe), "--config-file", str(conf_path), "--with-collector"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("compute.instance.create.end") == 1
    assert count_events(url) == 4
    assert "Caught SIGTERM" in (tmp_path / "c.log").read_text()


def test_broker_outage_fails_over_through_every_host(
        tmp_path: Path, vhost: str, pg_url: str, collectors: list[Collector]) -> None:
    """The broker disappears (connections refused) and comes back; the URL's
    first host never answers, so every reconnection walks on to the second."""
    import socket

    open_store(pg_url)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # closed again: connections are refused
    proxy = TCPProxy("127.0.0.1", 5672)
    try:
        conf_path = write_conf(tmp_path / "c.conf", vhost, pg_url)
        text_ = conf_path.read_text().replace(
            broker.url(vhost),
            f"rabbit://guest:guest@127.0.0.1:{dead_port},guest:guest@127.0.0.1:{proxy.port}/"
            f"{vhost}")
        conf_path.write_text(text_)
        c = start(collectors, conf_path)
        notes = stream(vhost, 2000)
        wait_for(lambda: count_events(pg_url) >= 200, what="a part stored")
        proxy.cut()
        wait_for(lambda: c.log().count("broker unavailable") >= 2, what="the loss noticed")
        time.sleep(2)
        proxy.restore()
        wait_for(lambda: count_events(pg_url) == len(notes), timeout=120,
                 what=f"everything after the outage:\n{c.log()[-2000:]}")
        wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 0),
                 what="everything acked")
        assert set(stored_ids(pg_url)) == {n["message_id"] for n in notes}
        assert c.stop() == 0
    finally:
        proxy.close()


def test_invalid_definitions_stop_the_start(tmp_path: Path, vhost: str,
                                            collectors: list[Collector]) -> None:
    defs = tmp_path / "defs.yaml"
    defs.write_text("- event_type: [unclosed\n")
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    c = Collector(write_conf(tmp_path / "c.conf", vhost, url, defs))
    collectors.append(c)
    assert c.proc.wait(60) == 1
    assert "defs.yaml" in c.log()


def test_worker_replaced_after_a_rejected_reload_keeps_the_last_good_definitions(
        tmp_path: Path, vhost: str, collectors: list[Collector]) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    defs = tmp_path / "defs.yaml"
    defs.write_text("- event_type: test.*\n  traits:\n    a:\n      fields: payload.a\n")
    c = start(collectors, write_conf(tmp_path / "c.conf", vhost, url, defs, workers=1),
              workers=1)
    defs.write_text("- event_type: [unclosed\n")
    c.signal(signal.SIGHUP)
    # The master rejects it; the workers keep what the master accepted last.
    wait_for(lambda: c.log().count("new event definitions rejected") >= 1,
             what="rejected by the master")
    (old,) = c.workers()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: len(c.workers()) == 1 and old not in c.workers(), what="replaced")
    stream(vhost, 1, event_type="test.one", payload={"a": "kept"})
    wait_for(lambda: count_events(url) == 1, what="event stored by the new worker")
    (event,) = storage.get_connection(url).get_events(EventFilter())
    assert {t.name: t.value for t in event.traits}["a"] == "kept"
    assert c.stop() == 0
