"""Type=notify: systemd hears READY=1 only once every worker consumes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.functional.daemon import Collector, write_conf


@pytest.mark.timeout(120)
def test_ready_once_every_worker_consumes(tmp_path: Path, vhost: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(notify))
        server.settimeout(60)
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify))
        db = f"sqlite:///{tmp_path / 'events.sqlite'}"
        collector = Collector(write_conf(tmp_path / "c.conf", vhost, db, workers=2))
        try:
            message = server.recv(4096).decode()
            # Read the log right away: both workers must already be consuming.
            consuming = collector.log().count(": consuming ")
            assert message.splitlines()[0] == "READY=1"
            assert consuming == 2, collector.log()[-2000:]
            assert collector.stop() == 0
        finally:
            collector.kill()
