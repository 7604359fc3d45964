"""Passwords never leave the configuration: not in logs, errors, metrics or ``--help``.

An end-to-end run with debug logging, a RabbitMQ user and a database URL
that both carry a known password, through the error paths (a database
outage, a broker connection closed, a rejected definitions reload, commands
failing on an unreachable database); then every line written is searched.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from panko_collector import storage
from panko_collector.storage import EventFilter
from tests.conftest import RABBIT_HOST
from tests.functional import broker
from tests.functional.broker import Publisher, rabbitmqctl, wait_for
from tests.functional.daemon import Collector
from tests.functional.proxy import TCPProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PASSWORD = "Pw" + uuid.uuid4().hex[:16]
BIN = Path(sys.executable).parent
SCRIPTS = ["panko-collector", "panko-collector-publish-samples", "panko-collector-dbsync",
           "panko-collector-convert", "panko-collector-expirer", "panko-collector-events"]


@pytest.fixture
def rabbit_user(vhost: str) -> Iterator[str]:
    """A RabbitMQ user of this test's own, whose password is PASSWORD."""
    name = f"pc_user_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_user", name, PASSWORD)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, name, ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_user", name)


def run(*args: str, timeout: float = 60) -> str:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=timeout)
    return done.stdout + done.stderr


def test_no_password_in_logs_errors_or_help(tmp_path: Path, vhost: str, pg_url: str,
                                            rabbit_user: str) -> None:
    pg = make_url(pg_url)
    proxy = TCPProxy(pg.host or "127.0.0.1", pg.port or 5432)
    # Trust authentication ignores the password; what matters is where it goes.
    db_url = pg.set(password=PASSWORD, host="127.0.0.1",
                    port=proxy.port).render_as_string(hide_password=False)
    assert PASSWORD in db_url
    storage.get_connection(db_url).upgrade()
    definitions = tmp_path / "definitions.yaml"
    definitions.write_text("- event_type: '*'\n  traits:\n    service: {fields: publisher_id}\n")
    conf = tmp_path / "collector.conf"
    log = tmp_path / "collector.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    conf.write_text(
        "[DEFAULT]\ndebug = true\n"
        f"transport_url = rabbit://{rabbit_user}:{PASSWORD}@{RABBIT_HOST}/{vhost}\n"
        f"log_file = {log}\n"
        f"[database]\nconnection = {db_url}\n"
        "[collector]\nworkers = 1\nbatch_size = 10\nbatch_timeout = 0.2\nsummary_interval = 1\n"
        "storage_retry_interval = 0.2\nstorage_retry_max = 0.5\n"
        f"metrics_port = {metrics_port}\n"
        f"[event]\ndefinitions_cfg_file = {definitions}\n[expirer]\nenabled = false\n")
    outputs: dict[str, str] = {}
    collector = Collector(conf)
    store = storage.get_connection(db_url)
    pub = Publisher(vhost)
    try:
        collector.wait_consuming(1)
        notes = [broker.notification() for _ in range(10)]
        for n in notes:
            pub.publish(n)
        wait_for(lambda: len(list(store.get_events(EventFilter()))) == 10, what="stored")
        outputs["metrics"] = urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert "panko_collector_events_stored_total" in outputs["metrics"]

        # A database outage while messages come in.
        proxy.cut()
        for _ in range(5):
            pub.publish(broker.notification())
        wait_for(lambda: "writing" in log.read_text() and "failed" in log.read_text(),
                 what="the outage logged")
        for script in ("panko-collector-dbsync", "panko-collector-events",
                       "panko-collector-expirer"):
            outputs[f"{script} (database down)"] = run(script, "--config-file", str(conf))
        proxy.restore()
        wait_for(lambda: len(list(store.get_events(EventFilter()))) == 15, timeout=60,
                 what="stored after the outage")

        # The broker drops our connection.
        rabbitmqctl("close_all_connections", "-p", vhost, "test closes connections")
        wait_for(lambda: "broker unavailable" in log.read_text(), what="broker loss logged")
        collector.wait_consuming(2)

        # A definitions file that cannot be loaded, on SIGHUP.
        definitions.write_text("- event_type: [\n")
        collector.signal(signal.SIGHUP)
        wait_for(lambda: "rejected" in log.read_text() or "keeping" in log.read_text(),
                 what="the rejected reload logged")
    finally:
        pub.close()
        collector.stop()
        proxy.close()
    assert collector.proc.stderr is not None
    outputs["collector stderr"] = collector.proc.stderr.read().decode()
    outputs["collector log"] = log.read_text()
    for script in SCRIPTS:
        outputs[f"{script} --help"] = run(script, "--help", "--config-file", str(conf))
    # The debug start dump lists options: the secret ones must be masked.
    masked = [line for line in outputs["collector log"].splitlines()
              if "transport_url " in line or "database.connection " in line]
    assert masked and all("= ****" in line for line in masked)
    assert "DEBUG" in outputs["collector log"]
    for where, text in outputs.items():
        for number, line in enumerate(text.splitlines(), 1):
            assert PASSWORD not in line, f"{where}:{number}: {line}"
