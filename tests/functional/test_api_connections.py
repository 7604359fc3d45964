"""How panko-collector-api holds its clients' connections: HTTP keep-alive
(``[api] keepalive``) and requests served at once per worker (``[api] threads``)."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.functional.api_server import MEMBER_A, ApiServer, ids, scoping_events
from tests.functional.storage_helpers import open_storage


class CountingConnection(http.client.HTTPConnection):
    """An http.client connection (reopened when the server closed it) that
    counts how often it connected."""

    opened = 0

    def connect(self) -> None:
        super().connect()
        self.opened += 1


def sqlite_url(directory: Path) -> str:
    url = f"sqlite:///{directory / 'events.sqlite'}"
    for conn in open_storage(url):
        conn.record_events(scoping_events())
    return url


Start = Callable[..., ApiServer]


@pytest.fixture
def server_with(tmp_path: Path) -> Iterator[Start]:
    servers: list[ApiServer] = []

    def start(extra: str = "") -> ApiServer:
        server = ApiServer(tmp_path, sqlite_url(tmp_path), extra=extra)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def three_lists(api: ApiServer) -> tuple[CountingConnection, list[http.client.HTTPResponse]]:
    c = CountingConnection("127.0.0.1", api.port, timeout=30)
    responses = []
    for _ in range(3):
        c.request("GET", "/v2/events", headers=MEMBER_A)
        r = c.getresponse()
        r.read()
        assert r.status == 200
        responses.append(r)
    c.close()
    return c, responses


def test_a_client_keeps_its_connection_between_requests(server_with: Start) -> None:
    api = server_with()
    c, responses = three_lists(api)
    assert c.opened == 1
    assert all(r.getheader("Connection", "").lower() != "close" for r in responses)
    # python-requests sessions (pankoclient's, openstackclient's) reuse it too.
    with requests.Session() as session:
        for _ in range(3):
            response = session.get(api.url + "/v2/events", headers=MEMBER_A, timeout=30)
            assert ids(response)
            assert response.headers.get("Connection", "").lower() != "close"


def test_keepalive_0_closes_every_connection_after_its_response(server_with: Start) -> None:
    api = server_with("keepalive = 0\n")
    c, responses = three_lists(api)
    assert c.opened == 3
    assert all(r.getheader("Connection", "").lower() == "close" for r in responses)


def test_threads_serve_a_request_while_another_client_stalls(server_with: Start) -> None:
    # One worker of two threads: a client that sent half a request holds one
    # thread; the next client is answered by the other.
    api = server_with("workers = 1\nthreads = 2\n")
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as stalled:
        stalled.sendall(b"GET /v2/events HTTP/1.1\r\nHost: x\r\n")
        c = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
        c.request("GET", "/v2/events", headers=MEMBER_A)
        assert c.getresponse().status == 200
        c.close()
