"""A real ``panko-collector-api`` process on a free loopback port, and the
events the API tests read (the scoping table of Panko's spec, and more)."""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from panko_collector.storage import models

T = models.Trait
BASE = datetime.datetime(2021, 3, 1, 12, 0, 0, 123456)
MINUTE = datetime.timedelta(minutes=1)

ADMIN = {"X-User-Id": "user-admin", "X-Project-Id": "proj-admin", "X-Roles": "admin"}
ADMIN_ZZZ = {"X-User-Id": "user-zzz", "X-Project-Id": "proj-zzz", "X-Roles": "Admin"}
SYSTEM_ADMIN = {"X-User-Id": "user-admin", "X-Roles": "admin,reader",
                "OpenStack-System-Scope": "all"}
MEMBER_A = {"X-User-Id": "user-a", "X-Project-Id": "proj-a", "X-Roles": "member"}
MEMBER_B = {"X-User-Id": "user-b", "X-Project-Id": "proj-a", "X-Roles": "member,reader"}


def scoping_events() -> list[models.Event]:
    """E1..E5 of the spec's scoping table, then two events of user-a sharing
    one ``generated`` (for the sort tie-break)."""

    def owner(project: str, user: str, *more: models.Trait) -> list[models.Trait]:
        return [T("project_id", T.TEXT_TYPE, project), T("user_id", T.TEXT_TYPE, user), *more]

    create = "compute.instance.create.end"
    return [
        models.Event("msg-admin-1", create, BASE, owner("proj-admin", "user-admin",
            T("instance_id", T.TEXT_TYPE, "inst-1"),
            T("launched_at", T.DATETIME_TYPE, datetime.datetime(2021, 3, 1, 11, 59)),
            T("memory_mb", T.INT_TYPE, 512), T("state", T.TEXT_TYPE, "active"),
            T("vcpus_ratio", T.FLOAT_TYPE, 1.5),
        ), {"payload": {"nested": {"k": "v"}}, "priority": "INFO"}),
        models.Event("msg-a-1", create, BASE + MINUTE, owner("proj-a", "user-a",
            T("instance_id", T.TEXT_TYPE, "inst-2"),
            T("launched_at", T.DATETIME_TYPE, datetime.datetime(2021, 3, 1, 12, 0, 30)),
            T("memory_mb", T.INT_TYPE, 1024), T("state", T.TEXT_TYPE, "building"),
            T("vcpus_ratio", T.FLOAT_TYPE, 100.123456),
        )),
        models.Event("msg-b-1", "image.update", BASE + 2 * MINUTE,
                     owner("proj-a", "user-b", T("memory_mb", T.INT_TYPE, 2048))),
        models.Event("msg-service", "identity.authenticate", BASE + 3 * MINUTE,
                     [T("service", T.TEXT_TYPE, "identity")]),
        models.Event("msg-notraits", "compute.instance.delete.start", BASE + 4 * MINUTE),
        models.Event("msg-a-3", create, BASE + 5 * MINUTE, owner(
            "proj-a", "user-a", T("memory_mb", T.INT_TYPE, 4096),
            T("state", T.TEXT_TYPE, "active"))),
        models.Event("msg-a-2", create, BASE + 5 * MINUTE, owner(
            "proj-a", "user-a", T("memory_mb", T.INT_TYPE, 256),
            T("state", T.TEXT_TYPE, "error"))),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ApiServer:
    """``panko-collector-api --config-file F`` in noauth mode (or as ``extra`` says)."""

    def __init__(self, directory: Path, db_url: str, extra: str = "", workers: int = 1,
                 auth_strategy: str = "noauth") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf_path = directory / "api.conf"
        self.log_path = directory / "api.log"
        text = (
            f"[DEFAULT]\nauth_strategy = {auth_strategy}\n"
            f"[database]\nconnection = {db_url}\n"
            f"[api]\nhost = 127.0.0.1\nport = {self.port}\nworkers = {workers}\n"
        )
        self.conf_path.write_text(text + extra)
        exe = Path(sys.executable).parent / "panko-collector-api"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([str(exe), "--config-file", str(self.conf_path)],
                                     start_new_session=True, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.wait_ready()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"panko-collector-api exited:\n{self.log()[-3000:]}")
            try:
                if requests.get(self.url + "/", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"panko-collector-api did not answer:\n{self.log()[-3000:]}")

    def get(self, path: str, headers: dict[str, str] | None = None,
            **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, headers=headers, timeout=60, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, timeout=60, **kwargs)

    def alive(self) -> bool:
        return self.proc.poll() is None and self.get("/").status_code == 200

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["message_id"] for e in response.json()]


def fault(response: requests.Response) -> str:
    """The faultstring of an error response, checking Panko's error shape."""
    assert response.headers["Content-Type"] == "application/json", response.text
    body = response.json()["error_message"]
    assert body["faultcode"] == ("Client" if response.status_code < 500 else "Server")
    assert body["debuginfo"] is None
    message: str = body["faultstring"]
    return message
