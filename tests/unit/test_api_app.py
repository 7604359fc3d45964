"""The middleware that build_app leaves out when it would change nothing."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_middleware import cors, http_proxy_to_wsgi
from werkzeug.test import Client

from panko_collector import service, storage
from panko_collector.api import app
from panko_collector.storage import models

MEMBER = {"X-Roles": "member", "X-Project-Id": "p1", "X-User-Id": "u1"}
ORIGIN = "http://dashboard.example"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[storage.Connection]:
    c = storage.get_connection(f"sqlite:///{tmp_path / 'events.db'}")
    c.upgrade()
    T = models.Trait
    c.record_events([models.Event(
        f"m{i}", "compute.instance.create.end", datetime.datetime(2024, 1, 1, 0, i),
        [T("project_id", T.TEXT_TYPE, "p1"), T("user_id", T.TEXT_TYPE, "u1"),
         T("name", T.TEXT_TYPE, "vm-é")]) for i in range(3)])
    yield c
    c.dispose()


def conf_of(tmp_path: Path, extra: str = "") -> Any:
    path = tmp_path / "api.conf"
    path.write_text("[DEFAULT]\nauth_strategy = noauth\n"
                    f"[cors]\nallowed_origin = {ORIGIN}\n" + extra)
    return service.prepare_service([], config_files=[str(path)])


def answer(application: Any, method: str, path: str, headers: dict[str, str]
           ) -> tuple[str, list[tuple[str, str]], bytes]:
    response = Client(application).open(path, method=method, headers=headers)
    kept = [(k, v) for k, v in response.headers.items() if k != "x-openstack-request-id"]
    return response.status, kept, response.get_data()


REQUESTS = [
    ("GET", "/", {}),
    ("GET", "/v2/events", MEMBER),
    ("GET", "/v2/events?limit=2&sort=generated:asc", MEMBER),
    ("GET", "/v2/events/m1", MEMBER),
    ("GET", "/v2/events/nope", MEMBER),
    ("GET", "/v2/events?limit=abc", MEMBER),
    ("GET", "/v2/events", {}),
    ("POST", "/v2/events", MEMBER),
    ("HEAD", "/healthcheck", {}),
    ("GET", "/v2/nothing", MEMBER),
    ("OPTIONS", "/v2/events", {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}),
    ("OPTIONS", "/v2/events", {}),
    ("GET", "/v2/events", {**MEMBER, "Origin": ORIGIN}),
    ("GET", "/v2/events", {**MEMBER, "Origin": "http://elsewhere.example"}),
]


@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS)
def test_same_answers_as_the_whole_middleware_stack(
        tmp_path: Path, conn: storage.Connection, method: str, path: str,
        headers: dict[str, str]) -> None:
    conf = conf_of(tmp_path)
    built = app.build_app(conf, conn)
    # What build_app made before: every request through CORS and HTTPProxyToWSGI.
    routed = app._routed(conf, conn)
    whole = cors.CORS(http_proxy_to_wsgi.HTTPProxyToWSGI(routed, conf), conf)
    assert answer(built, method, path, headers) == answer(whole, method, path, headers)


def test_cors_headers_still_answer_an_allowed_origin(
        tmp_path: Path, conn: storage.Connection) -> None:
    built = app.build_app(conf_of(tmp_path), conn)
    _, headers, _ = answer(built, "GET", "/v2/events", {**MEMBER, "Origin": ORIGIN})
    assert ("Access-Control-Allow-Origin", ORIGIN) in headers
    status, headers, _ = answer(built, "OPTIONS", "/v2/events", {
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert status == "200 OK"
    assert ("Access-Control-Allow-Origin", ORIGIN) in headers


@pytest.mark.parametrize(("parsing", "scheme"), [("true", "https"), ("false", "http")])
def test_proxy_headers_parsed_only_when_enabled(
        tmp_path: Path, conn: storage.Connection, parsing: str, scheme: str) -> None:
    conf = conf_of(tmp_path, f"[oslo_middleware]\nenable_proxy_headers_parsing = {parsing}\n")
    built = app.build_app(conf, conn)
    _, _, body = answer(built, "GET", "/", {"X-Forwarded-Proto": "https",
                                            "X-Forwarded-Host": "events.example"})
    link = json.loads(body)["versions"]["values"][0]["links"][0]["href"]
    host = "events.example" if scheme == "https" else "localhost"
    assert link == f"{scheme}://{host}/v2"
