"""A real ``panko-collector`` process with a temporary configuration file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.functional import broker
from tests.functional.broker import Publisher


def write_conf(path: Path, vhost: str, db_url: str, definitions: Path | None = None,
               ttl: int | None = None, **collector: Any) -> Path:
    """A configuration for a test collector; ``ttl`` turns the in-daemon expirer on
    (off otherwise, so that the master's children are the consumer workers)."""
    opts = {"workers": 2, "batch_size": 100, "batch_timeout": 0.3, "summary_interval": 2,
            "storage_retry_interval": 0.3, "storage_retry_max": 1.0, **collector}
    text = (
        "[DEFAULT]\n"
        f"transport_url = {broker.url(vhost)}\n"
        f"log_file = {path.with_suffix('.log')}\n"
        "graceful_shutdown_timeout = 30\n"
        f"[database]\nconnection = {db_url}\nevent_time_to_live = {ttl or -1}\n"
        "[collector]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items())
    )
    if ttl is None:
        text += "[expirer]\nenabled = false\n"
    else:
        text += "[expirer]\ninterval = 1\n"
    if definitions is not None:
        text += f"[event]\ndefinitions_cfg_file = {definitions}\n"
    path.write_text(text)
    return path


def children(pid: int) -> list[int]:
    """Child processes of ``pid``, found through /proc: cotyledon forks from a
    thread, so they are children of any thread of the master."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    return sorted(pids)


class Collector:
    """``panko-collector --config-file F`` in its own session (cotyledon
    signals its whole process group on SIGHUP)."""

    def __init__(self, conf_path: Path, env: dict[str, str] | None = None) -> None:
        self.conf_path = conf_path
        self.log_path = conf_path.with_suffix(".log")
        exe = Path(sys.executable).parent / "panko-collector"
        self.proc = subprocess.Popen([str(exe), "--config-file", str(conf_path)],
                                     start_new_session=True, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE,
                                     env={**os.environ, **env} if env else None)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def wait_consuming(self, n: int, timeout: float = 60) -> None:
        broker.wait_for(lambda: self.log().count("consuming") >= n, timeout=timeout,
                        what=f"{n} workers consuming:\n{self.log()[-3000:]}")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def sleep_until(predicate: Any, timeout: float = 30) -> None:
    broker.wait_for(predicate, timeout=timeout)
    time.sleep(0)


def start(collectors: list[Collector], conf_path: Path, workers: int = 2) -> Collector:
    c = Collector(conf_path)
    collectors.append(c)
    c.wait_consuming(workers)
    return c


def stream(vhost: str, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    pub = Publisher(vhost)
    notes = [broker.notification(**kwargs) for _ in range(count)]
    try:
        for i, n in enumerate(notes):
            pub.publish(n, exchange="nova" if i % 3 else "cinder")
    finally:
        pub.close()
    return notes
