"""The worker loop run in-process, for the tests that drive a ``Consumer`` directly.

A stand-in converter (the real one is exercised end to end through the
daemon), a configuration on a test vhost and a SQLite file, and a consumer
running in a thread of the test.
"""

from __future__ import annotations

import datetime
import threading
from pathlib import Path
from typing import Any

from panko_collector import service
from panko_collector.conversion import decoder
from panko_collector.ingest.consumer import Consumer
from panko_collector.storage import EventFilter, models
from tests.functional import broker


class SimpleConverter:
    """Event type and message id carried over; 'drop.*' types are dropped."""

    def convert(self, n: Any, received: Any = None) -> models.Event | None:
        if n.event_type.startswith("drop."):
            return None
        if n.event_type.startswith("boom."):
            raise RuntimeError("converter bug")
        traits = [models.Trait("payload", models.Trait.TEXT_TYPE, str(n.payload)[:200])]
        return models.Event(n.message_id, n.event_type,
                            n.timestamp or datetime.datetime(2026, 1, 1), traits, {})


def make_conf(tmp_path: Path, vhost_name: str, **collector: Any) -> Any:
    opts = {"exchanges": "nova,neutron", "priorities": "info,error", "batch_size": 50,
            "batch_timeout": 0.3, "summary_interval": 1, "storage_retry_interval": 0.2,
            "storage_retry_max": 0.5, **collector}
    text = (f"[DEFAULT]\ntransport_url = {broker.url(vhost_name)}\n"
            f"[database]\nconnection = sqlite:///{tmp_path / 'events.sqlite'}\n[collector]\n"
            + "".join(f"{k} = {v}\n" for k, v in opts.items()))
    path = tmp_path / "collector.conf"
    path.write_text(text)
    return service.prepare_service(["--config-file", str(path)])


class Running:
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        assert self.consumer.stop(timeout=30), "consumer did not stop"
        self.thread.join(5)
        assert self.error is None, self.error


def stored_ids(store: Any) -> set[str]:
    return {e.message_id for e in store.get_events(EventFilter())}


def start(conf: Any, store: Any) -> Running:
    return Running(Consumer(conf, store, SimpleConverter(), decoder.decode, name="test"))
