"""The link to the broker. TLS: the worker loop connects through a real handshake
(server chain checked against ``ssl_ca_file``, client certificate presented)
to a real RabbitMQ, and refuses a broker its CA did not sign. Heartbeats:
an idle worker keeps its connection."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from panko_collector import service, storage
from panko_collector.broker import read_ahead
from tests.conftest import RABBIT_HOST, missing
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.in_process import start, stored_ids
from tests.functional.tls import PKI, TLSProxy, make_pki

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    if shutil.which("openssl") is None:
        missing("the openssl command")
    return make_pki(tmp_path)


@pytest.fixture
def tls_proxy(pki: PKI) -> Iterator[TLSProxy]:
    host, _, port = RABBIT_HOST.partition(":")
    proxy = TLSProxy(host, int(port or 5672), pki)
    yield proxy
    proxy.close()


def tls_conf(tmp_path: Path, vhost: str, port: int, ca: Path, pki: PKI,
             extra: str = "") -> Any:
    path = tmp_path / "tls.conf"
    path.write_text(
        f"[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:{port}/{vhost}\n"
        f"log_file = {tmp_path / 'collector.log'}\n"
        f"[database]\nconnection = sqlite:///{tmp_path / 'events.sqlite'}\n"
        "[collector]\nexchanges = nova\nbatch_size = 10\nbatch_timeout = 0.2\n"
        "[oslo_messaging_rabbit]\nssl = true\n"
        f"ssl_ca_file = {ca}\nssl_cert_file = {pki.client_cert}\n"
        f"ssl_key_file = {pki.client_key}\nrabbit_retry_interval = 1\n"
        "rabbit_interval_max = 1\n" + extra)
    return service.prepare_service(["--config-file", str(path)])


def tls_store(tmp_path: Path, vhost: str, proxy: TLSProxy, ca: Path, pki: PKI,
              notes: list[dict[str, Any]], extra: str = "") -> tuple[Any, storage.Connection]:
    """The configuration of a worker going through ``proxy`` with ``ca`` (and
    ``extra`` lines of [oslo_messaging_rabbit]), its store ready, and
    ``notes`` published (directly, not through TLS)."""
    conf = tls_conf(tmp_path, vhost, proxy.port, ca, pki, extra)
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    pub = Publisher(vhost)
    for n in notes:
        pub.publish(n)
    pub.close()
    return conf, store


def test_consumes_over_tls_with_a_client_certificate(
    tmp_path: Path, vhost: str, pki: PKI, tls_proxy: TLSProxy
) -> None:
    notes = [broker.notification() for _ in range(25)]
    conf, store = tls_store(tmp_path, vhost, tls_proxy, pki.ca, pki, notes)
    running = start(conf, store)
    try:
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in notes},
                 what="every event stored through TLS")
        wait_for(lambda: broker.queue_counts(vhost).get("notifications.info") == (0, 0),
                 what="every message acked through TLS")
    finally:
        running.stop()
    assert "panko-collector-client" in tls_proxy.clients
    assert not tls_proxy.refused


def test_reads_ahead_on_plain_tcp_whatever_the_message_size(
    tmp_path: Path, vhost: str
) -> None:
    """The worker's socket is read a chunk at a time (read_ahead); deliveries
    smaller and larger than a chunk, back to back, come through whole."""
    path = tmp_path / "plain.conf"
    path.write_text(
        f"[DEFAULT]\ntransport_url = {broker.url(vhost)}\n"
        f"[database]\nconnection = sqlite:///{tmp_path / 'events.sqlite'}\n"
        "[collector]\nexchanges = nova\nbatch_size = 50\nbatch_timeout = 0.2\n")
    conf = service.prepare_service(["--config-file", str(path)])
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    sizes = [10, 3 * read_ahead.CHUNK, 100, read_ahead.CHUNK - 50, 10] * 8
    notes = [broker.notification(payload={"instance_id": str(i), "pad": "x" * size})
             for i, size in enumerate(sizes)]
    pub = Publisher(vhost)
    for n in notes:
        pub.publish(n)
    pub.close()
    running = start(conf, store)
    try:
        wait_for(lambda: stored_ids(store) == {n["message_id"] for n in notes},
                 what="every event stored")
        quick_recv = running.consumer._conn.connection.transport._quick_recv  # type: ignore[union-attr]
        assert isinstance(quick_recv, read_ahead.ReadAhead)
    finally:
        running.stop()
    assert running.consumer.totals.dead_lettered == 0


def assert_refused(tmp_path: Path, vhost: str, pki: PKI, proxy: TLSProxy, ca: Path,
                   *phrases: str) -> None:
    """A worker going through ``proxy`` with ``ca`` refuses the broker: a
    WARNING with every one of ``phrases`` on one line, nothing consumed."""
    conf, store = tls_store(tmp_path, vhost, proxy, ca, pki, [broker.notification()])
    running = start(conf, store)
    try:
        log = tmp_path / "collector.log"
        wait_for(lambda: log.exists() and any(
            "WARNING" in line and all(p in line for p in phrases)
            for line in log.read_text().splitlines()),
            what=f"a warning saying {phrases}")
        time.sleep(1)
        assert stored_ids(store) == set()
    finally:
        running.stop()
    assert not proxy.clients
    assert broker.queue_counts(vhost)["notifications.info"] == (1, 0)


def test_refuses_a_broker_its_ca_did_not_sign(
    tmp_path: Path, vhost: str, pki: PKI, tls_proxy: TLSProxy
) -> None:
    assert_refused(tmp_path, vhost, pki, tls_proxy, pki.other_ca, "certificate verify failed")


@pytest.fixture
def wrong_host_proxy(pki: PKI) -> Iterator[TLSProxy]:
    """Presents a certificate our CA signed, for broker.example.invalid."""
    host, _, port = RABBIT_HOST.partition(":")
    proxy = TLSProxy(host, int(port or 5672), pki, (pki.wrong_host_cert, pki.wrong_host_key))
    yield proxy
    proxy.close()


def test_refuses_a_certificate_for_another_host_name(
    tmp_path: Path, vhost: str, pki: PKI, wrong_host_proxy: TLSProxy
) -> None:
    assert_refused(tmp_path, vhost, pki, wrong_host_proxy, pki.ca,
                   "does not name the host of [DEFAULT] transport_url",
                   "ssl_verify_hostname = false")


def test_host_name_check_turned_off_takes_any_certificate_of_the_ca(
    tmp_path: Path, vhost: str, pki: PKI, wrong_host_proxy: TLSProxy
) -> None:
    note = broker.notification()
    conf, store = tls_store(tmp_path, vhost, wrong_host_proxy, pki.ca, pki, [note],
                            extra="ssl_verify_hostname = false\n")
    running = start(conf, store)
    try:
        wait_for(lambda: stored_ids(store) == {note["message_id"]}, what="the event stored")
    finally:
        running.stop()
    assert "panko-collector-client" in wrong_host_proxy.clients


def test_heartbeats_keep_an_idle_connection(tmp_path: Path, vhost: str) -> None:
    """With a 2 s heartbeat, RabbitMQ drops a client silent for two intervals:
    an idle worker must send heartbeats, keep its two connections (consuming,
    and publishing dead letters), and consume what comes after the silence."""
    path = tmp_path / "hb.conf"
    path.write_text(
        f"[DEFAULT]\ntransport_url = {broker.url(vhost)}\n"
        f"log_file = {tmp_path / 'collector.log'}\n"
        f"[database]\nconnection = sqlite:///{tmp_path / 'events.sqlite'}\n"
        "[collector]\nexchanges = nova\nbatch_size = 10\nbatch_timeout = 0.2\n"
        "[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 2\n")
    conf = service.prepare_service(["--config-file", str(path)])
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()

    def connections() -> list[list[str]]:
        out = broker.rabbitmqctl("list_connections", "vhost", "name", "timeout")
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return [row[1:] for row in rows if row[0] == vhost]

    running = start(conf, store)
    try:
        wait_for(lambda: len(connections()) == 2, what="the worker's connections")
        before = sorted(connections())
        # The heartbeat the broker agreed to, on both.
        assert [row[1] for row in before] == ["2", "2"]
        time.sleep(10)  # idle: five heartbeat intervals
        note = broker.notification()
        pub = Publisher(vhost)
        pub.publish(note)
        pub.close()
        wait_for(lambda: stored_ids(store) == {note["message_id"]}, what="the late event")
        assert sorted(connections()) == before
    finally:
        running.stop()
    assert "broker unavailable" not in (tmp_path / "collector.log").read_text()
