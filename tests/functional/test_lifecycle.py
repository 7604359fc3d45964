"""Start-up, reload and stop of the real daemon, with real signals."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.functional import broker
from tests.functional.broker import wait_for
from tests.functional.daemon import Collector, start, stream, write_conf
from tests.functional.storage_helpers import count_events, open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_sighup_keeps_storing_a_priority_removed_from_the_file(
        tmp_path: Path, vhost: str, collectors: list[Collector]) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    conf = tmp_path / "c.conf"
    write_conf(conf, vhost, url, priorities="info,error")
    c = start(collectors, conf)
    stream(vhost, 5, priority="ERROR")
    wait_for(lambda: count_events(url) == 5, what="error events stored")
    write_conf(conf, vhost, url, priorities="info")
    c.signal(signal.SIGHUP)
    wait_for(lambda: "only a restart applies" in c.log(), what="the warning")
    stream(vhost, 5, priority="ERROR")
    wait_for(lambda: count_events(url) == 10, what="error events stored after the reload")
    warnings = [line for line in c.log().splitlines() if "only a restart applies" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    assert "[collector] priorities" in warnings[0]
    # A worker forked after the reload stores them too.
    (first, *_) = c.workers()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(c.workers()) == 2 and first not in c.workers(), what="replaced")
    c.wait_consuming(3)
    stream(vhost, 20, priority="ERROR")
    wait_for(lambda: count_events(url) == 30, what="stored by the old and the new worker")
    assert c.stop() == 0
    assert not re.search(r"[1-9][0-9]* ignored priorities", c.log())


def _sigterm_during_start(tmp_path: Path, vhost: str, url: str, delay: float,
                          after: str | None = None) -> int:
    """Start the daemon, SIGTERM it ``delay`` seconds after its start (or
    after its log shows ``after``); its exit status."""
    c = Collector(write_conf(tmp_path / "c.conf", vhost, url, workers=2))
    try:
        if after is not None:
            broker.wait_for(lambda: after in c.log(), timeout=60, interval=0.01, what=after)
        time.sleep(delay)
        c.signal(signal.SIGTERM)
        # Without a clean start-up, the daemon waits for its graceful
        # shutdown timeout (30 s here) and exits 1.
        return c.proc.wait(20)
    finally:
        c.kill()
        c.log_path.unlink(missing_ok=True)


def test_sigterm_during_start_up_exits_0(tmp_path: Path, vhost: str) -> None:
    url = f"sqlite:///{tmp_path / 'events.sqlite'}"
    open_store(url)
    # 0.2 s after start: the master is still loading. Within half a second
    # of its start line: the workers are being forked and are starting.
    for attempt in range(20):
        assert _sigterm_during_start(tmp_path, vhost, url, 0.2) == 0, attempt
    for attempt in range(10):
        delay = attempt * 0.05
        assert _sigterm_during_start(tmp_path, vhost, url, delay,
                                     after="panko-collector starting") == 0, delay
