"""The worker loop's settings, read once from the configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from panko_collector import service
from panko_collector.ingest.settings import Settings, WriterSettings


def _conf(tmp_path: Path, text: str = ""):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.conf"
    path.write_text(text)
    return service.prepare_service(["--config-file", str(path)])


def test_prefetch_0_is_twice_the_batch_size(tmp_path: Path) -> None:
    s = Settings.from_conf(_conf(tmp_path, "[collector]\nbatch_size = 40\n"))
    assert (s.batch_size, s.prefetch_count) == (40, 80)
    s = Settings.from_conf(_conf(tmp_path, "[collector]\nbatch_size = 40\nprefetch_count = 7\n"))
    assert s.prefetch_count == 7


def test_what_the_loop_takes_from_the_configuration(tmp_path: Path) -> None:
    s = Settings.from_conf(_conf(
        tmp_path, "[collector]\npriorities = INFO,error\nmax_message_bytes = 10\n"
        "storage_retry_interval = 2\nstorage_retry_max = 9\nread_ahead = false\n"
        "dead_letter_exchange = dlx\ndead_letter_queue = dlq\n"
        "[oslo_messaging_rabbit]\nrabbit_retry_interval = 3\nrabbit_interval_max = 4\n"))
    assert s.priorities == frozenset({"info", "error"})
    assert s.max_message_bytes == 10
    assert s.writer == WriterSettings(retry_interval=2.0, retry_max=9.0)
    assert (s.broker_retry_interval, s.broker_retry_max) == (3, 4)
    assert (s.dead_letter_exchange, s.dead_letter_queue) == ("dlx", "dlq")
    assert s.read_ahead is False


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = Settings.from_conf(_conf(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.batch_size = 1  # type: ignore[misc]
