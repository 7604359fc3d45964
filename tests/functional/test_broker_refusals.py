"""What RabbitMQ refuses, against a real broker: the methods a RabbitMQ 4.3
denies (global prefetch, transient queues of our own), permanent refusals
at start (wrong password, missing vhost), and a full dead-letter queue."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Any

import amqp
import amqp.exceptions
import pytest

from panko_collector import errors, storage
from panko_collector.conversion import decoder
from panko_collector.ingest.consumer import Consumer
from panko_collector.metrics import PrometheusMetrics
from tests.conftest import RABBIT_HOST, unique_name
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.daemon import Collector, write_conf
from tests.functional.in_process import Running, SimpleConverter, make_conf, stored_ids

pytestmark = pytest.mark.timeout(180)

SPY = Path(__file__).parent / "amqp_spy"
QUEUE_DECLARE, BASIC_QOS = [50, 10], [60, 10]


def spied_methods(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_no_method_rabbitmq_4_3_denies(tmp_path: Path, vhost: str,
                                       collectors: list[Collector]) -> None:
    """Every AMQP method the daemon's processes send through start, consume,
    dead-lettering, SIGHUP and SIGTERM: no global basic.qos, and no queue of
    our own (the pool queue, the dead-letter queue) declared transient and
    non-exclusive, although the services' queues are (the default
    amqp_durable_queues = false)."""
    spy = tmp_path / "amqp.jsonl"
    conf = write_conf(tmp_path / "c.conf", vhost, f"sqlite:///{tmp_path / 'events.sqlite'}",
                      workers=1, pool="panko-pool", exchanges="nova",
                      priorities="info,error")
    store = storage.get_connection(f"sqlite:///{tmp_path / 'events.sqlite'}")
    store.upgrade()
    daemon = Collector(conf, env={"PYTHONPATH": str(SPY),
                                  "PANKO_COLLECTOR_TEST_AMQP_SPY": str(spy)})
    collectors.append(daemon)
    daemon.wait_consuming(1)
    pub = Publisher(vhost)
    first = [broker.notification() for _ in range(5)]
    for n in first:
        pub.publish(n)
    pub.publish_raw(b"{not json")
    wait_for(lambda: broker.queue_counts(vhost).get("panko-collector.dead-letter") == (1, 0),
             what="the dead letter")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "event definitions reloaded" in daemon.log(), what="the reload")
    second = [broker.notification(priority="ERROR") for _ in range(5)]
    for n in second:
        pub.publish(n)
    pub.close()
    wait_for(lambda: broker.queue_counts(vhost).get("panko-pool") == (0, 0)
             and len(spied_methods(spy)) > 0
             and stored_ids(store) == {n["message_id"] for n in first + second},
             what="every event stored")
    assert daemon.stop() == 0

    methods = spied_methods(spy)
    sigs = {tuple(m["sig"]) for m in methods}
    # The spy saw every phase: declare, qos, consume, dead-letter publish,
    # ack, cancel at stop, and the master's check as well as the worker.
    assert {(50, 10), (60, 10), (60, 20), (60, 40), (60, 80), (60, 30)} <= sigs
    assert len({m["pid"] for m in methods if m["sig"] == QUEUE_DECLARE}) == 2

    qos = [m["args"] for m in methods if m["sig"] == BASIC_QOS]
    assert qos and all(global_ is False for _size, _count, global_ in qos), qos
    # queue.declare fields: reserved, queue, passive, durable, exclusive, ...
    ours = [m["args"] for m in methods if m["sig"] == QUEUE_DECLARE
            and m["args"][1] in ("panko-pool", "panko-collector.dead-letter")]
    assert {a[1] for a in ours} == {"panko-pool", "panko-collector.dead-letter"}
    transient = [a[1] for a in ours if not a[3] and not a[4]]
    assert transient == []


def _refused_start(tmp_path: Path, vhost: str, transport_url: str,
                   collectors: list[Collector]) -> tuple[int, str]:
    """Run the daemon with ``transport_url``; its exit code and log."""
    conf = write_conf(tmp_path / "c.conf", vhost, f"sqlite:///{tmp_path / 'events.sqlite'}")
    conf.write_text(conf.read_text().replace(broker.url(vhost), transport_url))
    daemon = Collector(conf)
    collectors.append(daemon)
    # Bounded so that a daemon retrying for ever fails the test, not hangs it.
    code = daemon.proc.wait(60)
    return code, daemon.log()


@pytest.mark.parametrize(("case", "code", "setting"), [
    ("wrong password", "403", "user name and password in [DEFAULT] transport_url"),
    ("missing vhost", "530", "virtual host of [DEFAULT] transport_url must exist"),
])
def test_a_permanent_refusal_stops_the_start(tmp_path: Path, vhost: str,
                                             collectors: list[Collector], case: str,
                                             code: str, setting: str) -> None:
    """Not an outage: one ERROR naming the cause and the setting, exit status 1."""
    if case == "wrong password":
        url = f"rabbit://guest:wrong-password@{RABBIT_HOST}/{vhost}"
    else:
        url = f"rabbit://guest:guest@{RABBIT_HOST}/{unique_name('pc_no_such_vhost')}"
    status, log = _refused_start(tmp_path, vhost, url, collectors)
    assert status == 1
    (line,) = [ln for ln in log.splitlines() if " ERROR " in ln]
    assert f"refused us ({code} " in line and setting in line
    assert "wrong-password" not in log
    assert "not reachable" not in log


def test_a_refused_transient_queue_stops_the_worker_naming_the_options(
        tmp_path: Path, vhost: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """RabbitMQ 4.3 closes the connection with a 541 when asked for a transient
    non-exclusive queue; RabbitMQ 3.x cannot be made to, so the real
    channel's queue.declare answers as 4.3 would for exactly those queues."""
    real_declare = amqp.Channel.queue_declare

    def as_rabbitmq_4_3(channel: Any, queue: str = "", passive: bool = False,
                        durable: bool = False, exclusive: bool = False,
                        *args: Any, **kwargs: Any) -> Any:
        if not durable and not exclusive and not passive:
            raise amqp.exceptions.InternalError(
                "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated.",
                (50, 10), 541)
        return real_declare(channel, queue, passive, durable, exclusive, *args, **kwargs)

    monkeypatch.setattr(amqp.Channel, "queue_declare", as_rabbitmq_4_3)
    conf = make_conf(tmp_path, vhost)
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    consumer = Consumer(conf, store, SimpleConverter(), decoder.decode, name="test")
    with pytest.raises(errors.BrokerRefused) as info:
        consumer.run()  # raises at once instead of reconnecting for ever
    text = str(info.value)
    assert "notifications." in text and "RabbitMQ 4.3" in text
    assert "amqp_durable_queues = true" in text and "rabbit_quorum_queue = true" in text


def test_a_full_dead_letter_queue_keeps_poison_unacked_while_the_rest_flows(
        tmp_path: Path, vhost: str, caplog: pytest.LogCaptureFixture) -> None:
    """A policy max-length 1, overflow reject-publish on the dead-letter queue:
    RabbitMQ nacks the dead letters beyond the first. The worker keeps them
    unacked and retries, stores and acks the valid events around them, and
    dead-letters them once the policy is lifted."""
    dlq = "panko-collector.dead-letter"
    conf = make_conf(tmp_path, vhost, batch_size=5)
    logging.getLogger().addHandler(caplog.handler)  # oslo.log's set-up removed it
    conf.set_override("rabbit_retry_interval", 1, group="oslo_messaging_rabbit")
    conf.set_override("rabbit_interval_max", 1, group="oslo_messaging_rabbit")
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    broker.rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues", "pc-dlq-full",
                       f"^{dlq}$", '{"max-length": 1, "overflow": "reject-publish"}')
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    pub = Publisher(vhost)
    good = []
    for i in range(30):
        if i in (3, 11, 20):
            pub.publish_raw(f"{{poison {i}".encode())
        note = broker.notification()
        good.append(note)
        pub.publish(note)
    running = Running(Consumer(conf, store, SimpleConverter(), decoder.decode, name="test",
                               metrics=PrometheusMetrics(registry)))
    try:
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in good},
                 what="every valid event stored")
        # The first poison message filled the dead-letter queue; the two
        # others are held unacked, the 30 valid ones acked around them.
        wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 2),
                 what="valid ones acked, refused ones unacked")
        assert broker.queue_counts(vhost)[dlq] == (1, 0)
        assert running.thread.is_alive() and running.error is None
        assert (registry.get_sample_value("panko_collector_dead_letters_refused_total")
                or 0) >= 2
        errors_logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors_logged) == 1
        assert repr(dlq) in errors_logged[0] and "reject-publish" in errors_logged[0]
        more = [broker.notification() for _ in range(5)]
        for n in more:
            pub.publish(n)
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in good + more},
                 what="events after the refusal stored")
        broker.rabbitmqctl("clear_policy", "-p", vhost, "pc-dlq-full")
        wait_for(lambda: broker.queue_counts(vhost).get(dlq) == (3, 0),
                 what="the refused ones dead-lettered once the policy is lifted")
        wait_for(lambda: broker.queue_counts(vhost)["notifications.info"] == (0, 0),
                 what="and acked")
    finally:
        pub.close()
        running.stop()
    letters = broker.get_all(vhost, dlq)
    bodies = sorted(m.body.encode() if isinstance(m.body, str) else m.body for m in letters)
    assert bodies == [b"{poison 11", b"{poison 20", b"{poison 3"]
    assert running.consumer.totals.dead_lettered == 3


def test_a_busy_queue_is_written_when_its_prefetch_share_is_in(
        tmp_path: Path, vhost: str) -> None:
    """prefetch_count is shared between the queues consumed (two here): a
    queue's consumer gets 10 of 20, far below batch_size, so the batch is
    written once half of those 10 are in (the other half fills while it is
    written), not after batch_timeout (an hour here)."""
    conf = make_conf(tmp_path, vhost, batch_size=500, batch_timeout=3600, prefetch_count=20)
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    pub = Publisher(vhost)
    notes = [broker.notification() for _ in range(33)]
    for n in notes:
        pub.publish(n)
    pub.close()
    running = Running(Consumer(conf, store, SimpleConverter(), decoder.decode, name="test"))
    try:
        # 30 by six half shares; the last 3 wait for more (or the hour).
        wait_for(lambda: len(stored_ids(store)) == 30, what="six half shares written")
        assert broker.queue_counts(vhost)["notifications.info"] == (0, 3)
    finally:
        running.stop()
    assert stored_ids(store) == {n["message_id"] for n in notes}


def test_a_transient_pool_queue_of_an_earlier_version_is_named(
        tmp_path: Path, vhost: str) -> None:
    """Earlier versions declared the pool queue transient; now it is durable,
    so the old one is refused at start with what to do about it."""
    with broker.connect(vhost) as conn:
        conn.channel().queue_declare("panko-pool", durable=False, auto_delete=False)
    conf = make_conf(tmp_path, vhost, pool="panko-pool")
    store = storage.get_connection(conf.database.connection, conf)
    consumer = Consumer(conf, store, SimpleConverter(), decoder.decode, name="test")
    with pytest.raises(errors.QueueMismatch) as info:
        consumer.run()
    assert "'panko-pool'" in str(info.value)
    assert "rabbitmqctl delete_queue" in str(info.value)
