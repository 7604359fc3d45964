"""The hooks on libraries' internals, with the real broker and the real daemon:
the read-ahead can be turned off, and a body guard that cannot be installed
stops the start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from panko_collector import storage
from panko_collector.conversion import decoder
from panko_collector.ingest.consumer import Consumer
from panko_collector.storage import EventFilter
from tests.functional import broker
from tests.functional.broker import Publisher, wait_for
from tests.functional.daemon import Collector, write_conf
from tests.functional.in_process import Running, SimpleConverter, make_conf

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("read_ahead", [True, False])
def test_read_ahead_option(tmp_path: Path, vhost: str, read_ahead: bool) -> None:
    conf = make_conf(tmp_path, vhost, read_ahead=str(read_ahead).lower())
    store = storage.get_connection(conf.database.connection, conf)
    store.upgrade()
    readers: list[Any] = []
    consumer = Consumer(conf, store, SimpleConverter(), decoder.decode, name="test",
                        on_consuming=lambda: readers.append(consumer._reader))
    running = Running(consumer)
    notes = [broker.notification() for _ in range(30)]
    pub = Publisher(vhost)
    for n in notes:
        pub.publish(n)
    pub.close()
    try:
        wait_for(lambda: len(list(store.get_events(EventFilter()))) == 30, what="stored")
    finally:
        running.stop()
    assert len(readers) == 1
    assert (readers[0] is not None) is read_ahead


def test_a_body_guard_that_cannot_be_installed_stops_the_start(
        tmp_path: Path, vhost: str, collectors: list[Collector],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A kombu release whose channels build deliveries with another class.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import kombu.message, kombu.transport.pyamqp\n"
        "kombu.transport.pyamqp.Channel.Message = kombu.message.Message\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    c = Collector(write_conf(tmp_path / "c.conf", vhost, url))
    collectors.append(c)
    assert c.proc.wait(60) == 1
    log = c.log()
    assert "refusing to start" in log and "kombu.transport.pyamqp.Channel.Message" in log
    assert "consuming" not in log
