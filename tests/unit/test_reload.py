"""What a reload applies, where the workers take the definitions from, and a
SIGTERM while a worker starts. In-process: the daemon's own objects, no
broker (the worker under SIGTERM stops before it would connect)."""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from panko_collector import daemon, service

DEFS = "- event_type: test.*\n  traits:\n    {name}:\n      fields: payload.a\n"


def conf_file(tmp_path: Path, definitions: Path, **collector_opts: str) -> Path:
    path = tmp_path / "c.conf"
    path.write_text(
        f"[database]\nconnection = sqlite:///{tmp_path / 'events.sqlite'}\n"
        f"[event]\ndefinitions_cfg_file = {definitions}\n[collector]\n"
        + "".join(f"{k} = {v}\n" for k, v in collector_opts.items()))
    return path


def trait_names(converter: Any) -> set[str]:
    return {t.name for d in converter.definitions for t in d.traits}


class Recorded(logging.Handler):
    """The records of one logger (oslo.log keeps them from pytest's caplog)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


def test_workers_take_the_definitions_the_master_accepted(tmp_path: Path) -> None:
    defs = tmp_path / "defs.yaml"
    defs.write_text(DEFS.format(name="first"))
    conf = service.prepare_service(["--config-file", str(conf_file(tmp_path, defs))])
    held = daemon.Definitions(conf)
    # What a worker forked now holds: the master's attributes as they are,
    # the count of accepted reloads shared.
    worker = copy.copy(held)
    try:
        assert "first" in trait_names(held.converter)
        assert worker.worker_reload(conf) is None  # nothing new yet
        defs.write_text(DEFS.format(name="second"))
        held.reload()  # the master, on SIGHUP
        # The file changes again before the worker got to it: it builds
        # what the master accepted, not what the file now says.
        defs.write_text(DEFS.format(name="third"))
        assert "second" in trait_names(worker.worker_reload(conf))
        assert worker.worker_reload(conf) is None
        defs.write_text("- event_type: [unclosed\n")
        log = Recorded(daemon.LOG)
        held.reload()
        (error,) = log.messages(logging.ERROR)
        assert "new event definitions rejected" in error
        assert "second" in trait_names(held.converter)
        assert worker.worker_reload(conf) is None
    finally:
        held.cleanup()
    assert not os.path.exists(held._copy)


def test_queue_options_and_priorities_wait_for_a_restart(tmp_path: Path) -> None:
    defs = tmp_path / "defs.yaml"
    defs.write_text(DEFS.format(name="a"))
    path = conf_file(tmp_path, defs, priorities="info,error", batch_size="100")
    conf = service.prepare_service(["--config-file", str(path)])
    pinned = daemon.RestartOnly(conf)
    assert pinned.changed() == []
    path.write_text(path.read_text().replace("info,error", "info").replace("100", "7")
                    + "pool = mine\n[oslo_messaging_rabbit]\namqp_durable_queues = true\n")
    conf.reload_config_files()
    assert conf.collector.priorities == ["info", "error"]
    assert conf.collector.pool is None
    assert conf.oslo_messaging_rabbit.amqp_durable_queues is False
    assert conf.collector.batch_size == 7  # a reload applies the others
    log = Recorded(daemon.LOG)
    pinned.warn_changes()
    (warning,) = log.messages(logging.WARNING)
    assert "[collector] priorities, [collector] pool, " \
        "[oslo_messaging_rabbit] amqp_durable_queues changed" in warning
    assert "only a restart applies" in warning


def test_a_sigterm_while_the_worker_starts_ends_it_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defs = tmp_path / "defs.yaml"
    defs.write_text(DEFS.format(name="a"))
    path = conf_file(tmp_path, defs)
    # Nothing listens there: a consumer that ran anyway would only retry.
    path.write_text("[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:1/\n"
                    + path.read_text())
    conf = service.prepare_service(["--config-file", str(path)])
    held = daemon.Definitions(conf)
    # Hold run() after it built the consumer, while the SIGTERM comes.
    built, go_on = threading.Event(), threading.Event()

    def held_after_building() -> None:
        built.set()
        go_on.wait(10)

    monkeypatch.setattr(daemon, "_tune_gc", held_after_building)
    try:
        worker = daemon.CollectorService(0, conf, held)
        running = threading.Thread(target=worker.run, daemon=True)
        running.start()
        assert built.wait(10)
        # cotyledon calls terminate() in a thread of its own as the signal comes.
        terminating = threading.Thread(target=worker.terminate, daemon=True)
        terminating.start()
        time.sleep(0.05)  # let terminate() begin before run() goes on
        go_on.set()
        running.join(10)
        terminating.join(10)
        assert not running.is_alive() and not terminating.is_alive(), \
            "terminate() waits for a consumer that never ran"
    finally:
        held.cleanup()
