"""Panko's v2 API through real HTTP to ``panko-collector-api`` (noauth mode),
on SQLite, PostgreSQL and MariaDB: the grammar, the scoping table, the error
table and the conformance checklist of the spec."""

from __future__ import annotations

import datetime
import json
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from panko_collector.storage import models
from tests.conftest import _server_database
from tests.functional.api_server import (
    ADMIN,
    ADMIN_ZZZ,
    MEMBER_A,
    MEMBER_B,
    SYSTEM_ADMIN,
    ApiServer,
    fault,
    ids,
    scoping_events,
)
from tests.functional.daemon import children
from tests.functional.storage_helpers import open_storage

DEFAULT_LIMIT, MAX_LIMIT = 3, 5
ALLOWED_ORIGIN = "http://allowed.example"
EVENTS = scoping_events()
ALL = ["msg-admin-1", "msg-a-1", "msg-b-1", "msg-service", "msg-notraits", "msg-a-2", "msg-a-3"]
OPS = {"lt": operator.lt, "le": operator.le, "eq": operator.eq,
       "ne": operator.ne, "ge": operator.ge, "gt": operator.gt}


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mysql"])
def api(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One server per backend over the scoping events, shared by the read-only tests."""
    directory = tmp_path_factory.mktemp("api")
    databases = None
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'events.sqlite'}"
    else:
        databases = _server_database(request.param)
        url = next(databases)
    try:
        for conn in open_storage(url):
            assert conn.record_events(EVENTS).stored == len(EVENTS)
        server = ApiServer(directory, url, extra=(
            f"default_api_return_limit = {DEFAULT_LIMIT}\nmax_limit = {MAX_LIMIT}\n"
            f"[cors]\nallowed_origin = {ALLOWED_ORIGIN}\n"))
        try:
            yield server
        finally:
            server.stop()
    finally:
        if databases is not None:
            next(databases, None)


def sqlite_with_events(directory: Path) -> str:
    """The URL of a SQLite database in ``directory`` holding the scoping events."""
    url = f"sqlite:///{directory / 'events.sqlite'}"
    for conn in open_storage(url):
        conn.record_events(EVENTS)
    return url


def every(api: ApiServer, headers: dict[str, str], **params: Any) -> list[str]:
    """Every event a query returns, page by page with the marker."""
    seen: list[str] = []
    marker = None
    for _ in range(20):
        page = ids(api.get("/v2/events", headers, params={
            **params, "limit": MAX_LIMIT, **({"marker": marker} if marker else {})}))
        seen += page
        if len(page) < MAX_LIMIT:
            return seen
        marker = page[-1]
    raise AssertionError("paging does not end")


def trait_filter(field: str, op: str, value: str, type_: str | None = None,
                 all_tenants: bool = True) -> dict[str, Any]:
    fields, ops, values, types = [field], [op], [value], [type_ or ""]
    if all_tenants:
        fields.append("all_tenants")
        ops.append("eq")
        values.append("True")
        types.append("")
    return {"q.field": fields, "q.op": ops, "q.value": values, "q.type": types}


def test_root_capabilities_and_healthcheck(api: ApiServer) -> None:
    root = api.get("/")
    assert root.status_code == 200 and "x-openstack-request-id" not in root.headers
    version = root.json()["versions"]["values"][0]
    assert version["status"] == "stable" and version["id"] == "v2"
    assert version["media-types"][0]["base"] == "application/json"
    assert version["links"][0]["href"] == api.url + "/v2"
    for path in ("/v2/capabilities", "/v2/capabilities/"):
        caps = api.get(path)
        assert caps.status_code == 200
        assert caps.json()["event_storage"]["storage:production_ready"] is True
        assert caps.json()["api"]["events:query:simple"] is True
        assert caps.headers["x-openstack-request-id"].startswith("req-")
    health = api.get("/healthcheck")
    assert (health.status_code, health.text) == (200, "OK")
    assert api.request("HEAD", "/healthcheck").status_code == 200
    for path in ("/v2", "/v2/", "/v2/events.json", "/v2/events/x/extra", "/v2/nothing"):
        missing = api.get(path, ADMIN)
        assert missing.status_code == 404, path
        assert fault(missing) == "The resource could not be found."
        assert missing.headers["x-openstack-request-id"].startswith("req-")


def test_scoping_table(api: ApiServer) -> None:
    # Admin of a project: its events and those without a project_id trait
    # (but, as in Panko, not those without any text trait).
    assert every(api, ADMIN) == ["msg-admin-1", "msg-service"]
    assert every(api, ADMIN, **{"q.field": "all_tenants", "q.value": "True"}) == ALL
    assert every(api, ADMIN_ZZZ) == ["msg-service"]
    assert every(api, ADMIN_ZZZ, **{"q.field": "all_tenants", "q.value": "yes"}) == ALL
    # A member: only events of their project AND user.
    assert every(api, MEMBER_A) == ["msg-a-1", "msg-a-2", "msg-a-3"]
    assert every(api, MEMBER_B) == ["msg-b-1"]
    assert every(api, MEMBER_A, **{"q.field": "all_tenants", "q.value": "True"}) == []
    # A member cannot widen the scope with trait filters.
    assert every(api, MEMBER_A, **{"q.field": "user_id", "q.value": "user-b"}) == []
    assert every(api, ADMIN, **{"q.field": "user_id", "q.value": "user-a"}) == []
    # A system-scoped admin (no project) sees every project.
    assert every(api, SYSTEM_ADMIN) == ALL

    def show(message_id: str, headers: dict[str, str]) -> int:
        return api.get(f"/v2/events/{message_id}", headers).status_code

    assert [show(m, ADMIN) for m in ALL] == [200, 404, 404, 200, 404, 404, 404]
    assert [show(m, MEMBER_A) for m in ALL] == [404, 200, 404, 404, 404, 200, 200]
    assert show("msg-b-1", SYSTEM_ADMIN) == 200
    # show has no all_tenants escape.
    assert api.get("/v2/events/msg-a-1", ADMIN, params={"all_tenants": "True"}).status_code \
        == 404
    not_found = api.get("/v2/events/msg-b-1", MEMBER_A)
    assert fault(not_found) == "Event msg-b-1 Not Found"

    # No user or no project: 403, on the list and on show.
    for headers in ({}, {"X-User-Id": "user-a"}, {"X-Project-Id": "proj-a"},
                    {"X-User-Id": "user-a", "X-Project-Id": ""},
                    # A system scope makes no scope for a non-admin.
                    {"X-User-Id": "user-a", "OpenStack-System-Scope": "all"}):
        for path in ("/v2/events", "/v2/events/msg-a-1"):
            denied = api.get(path, headers)
            assert denied.status_code == 403, (headers, path)
            assert fault(denied).startswith("RBAC Authorization Failed")


def test_event_json_is_pankos(api: ApiServer) -> None:
    got = api.get("/v2/events/msg-admin-1", ADMIN)
    assert got.headers["Content-Type"] == "application/json"
    assert got.json() == {
        "message_id": "msg-admin-1",
        "event_type": "compute.instance.create.end",
        "traits": [
            {"name": "instance_id", "value": "inst-1", "type": "string"},
            {"name": "launched_at", "value": "2021-03-01T11:59:00", "type": "datetime"},
            {"name": "memory_mb", "value": "512", "type": "integer"},
            {"name": "project_id", "value": "proj-admin", "type": "string"},
            {"name": "state", "value": "active", "type": "string"},
            {"name": "user_id", "value": "user-admin", "type": "string"},
            {"name": "vcpus_ratio", "value": "1.5", "type": "float"},
        ],
        "generated": "2021-03-01T12:00:00.123456",
        "raw": {"payload": {"nested": {"k": "v"}}, "priority": "INFO"},
    }
    listed = api.get("/v2/events", MEMBER_A).json()
    assert listed[0]["traits"][-1] == {"name": "vcpus_ratio", "value": "100.123456",
                                      "type": "float"}
    assert listed[0]["generated"] == "2021-03-01T12:01:00.123456"
    notraits = api.get("/v2/events", SYSTEM_ADMIN, params={
        "q.field": "event_type", "q.value": "compute.instance.delete.start"}).json()
    assert notraits[0]["traits"] == [] and notraits[0]["raw"] == {}


def _trait(event: models.Event, name: str) -> Any:
    return next((t.value for t in event.traits if t.name == name), None)


@pytest.mark.parametrize(("name", "type_", "pivots"), [
    ("memory_mb", "integer", ["512", "1024", "4096"]),
    ("vcpus_ratio", "float", ["1.5", "100.123456"]),
    ("state", "string", ["active", "building", "my_Zoo_text"]),
    ("launched_at", "datetime", ["2021-03-01T11:59:00", "2021-03-01T13:00:30+01:00"]),
])
def test_typed_trait_filters_with_every_operator(
        api: ApiServer, name: str, type_: str, pivots: list[str]) -> None:
    parse = {"integer": int, "float": float, "string": str,
             "datetime": lambda v: datetime.datetime.fromisoformat(v).astimezone(
                 datetime.UTC).replace(tzinfo=None) if "+" in v
             else datetime.datetime.fromisoformat(v)}[type_]
    for pivot in pivots:
        for op, compare in OPS.items():
            expected = [e.message_id for e in sorted(EVENTS, key=lambda e: (
                e.generated, e.message_id)) if (v := _trait(e, name)) is not None
                and compare(v, parse(pivot))]
            got = every(api, ADMIN, **trait_filter(name, op, pivot, type_))
            assert got == expected, (name, op, pivot)


def test_filters(api: ApiServer) -> None:
    by_type = {"q.field": "event_type", "q.op": "eq", "q.type": "string",
               "q.value": "image.update"}
    assert every(api, ADMIN, **by_type) == []  # another project's
    everything = {"q.field": ["event_type", "all_tenants"], "q.op": ["eq", "eq"],
                  "q.value": ["image.update", "True"]}
    assert every(api, ADMIN, **everything) == ["msg-b-1"]
    # The same as a JSON body on the GET (fog-openstack, ManageIQ).
    body = {"q": [{"field": "event_type", "op": "eq", "type": "string", "value": "image.update"},
                  {"field": "all_tenants", "value": "True"}]}
    assert ids(api.get("/v2/events", ADMIN, json=body)) == ["msg-b-1"]
    # Indexed form.
    assert ids(api.get("/v2/events?q[0].field=instance_id&q[0].value=inst-1", ADMIN)) == [
        "msg-admin-1"]
    # Unknown trait: nothing, not an error; untyped 512 is a string, no match.
    assert every(api, SYSTEM_ADMIN, **{"q.field": "no_such_trait", "q.value": "x"}) == []
    assert every(api, SYSTEM_ADMIN, **{"q.field": "memory_mb", "q.value": "512"}) == []
    # python-ceilometerclient's empty q.type is a string filter.
    assert every(api, MEMBER_A, **{"q.field": "state", "q.op": "eq", "q.type": "",
                                   "q.value": "active"}) == ["msg-a-3"]
    # Filters are ANDed; the same key twice with other values matches nothing.
    assert every(api, SYSTEM_ADMIN, **{
        "q.field": ["state", "memory_mb"], "q.op": ["eq", "gt"],
        "q.type": ["string", "integer"], "q.value": ["active", "600"]}) == ["msg-a-3"]
    assert every(api, SYSTEM_ADMIN, **{"q.field": ["state", "state"],
                                       "q.value": ["active", "error"]}) == []
    # Timestamps: ge/le inclusive; eq means the same bound (pankoclient sends eq);
    # Z and offsets are UTC; message_id is a special field.
    window = {"q.field": ["start_timestamp", "end_timestamp"], "q.op": ["ge", "le"],
              "q.value": ["2021-03-01T12:01:00.123456Z", "2021-03-01T13:03:00.123456+01:00"]}
    assert every(api, SYSTEM_ADMIN, **window) == ["msg-a-1", "msg-b-1", "msg-service"]
    window["q.op"] = ["eq", "eq"]
    assert every(api, SYSTEM_ADMIN, **window) == ["msg-a-1", "msg-b-1", "msg-service"]
    assert every(api, SYSTEM_ADMIN, **{"q.field": "message_id", "q.value": "msg-a-2"}) == [
        "msg-a-2"]
    # ManageIQ's first poll: an empty start_timestamp is no bound.
    assert every(api, SYSTEM_ADMIN, **{"q.field": "start_timestamp", "q.op": "ge",
                                       "q.value": ""}) == ALL


def test_limits_sort_and_markers(api: ApiServer) -> None:
    everything = {"q.field": "all_tenants", "q.value": "True"}
    assert len(ids(api.get("/v2/events", ADMIN, params=everything))) == DEFAULT_LIMIT
    assert len(ids(api.get("/v2/events", ADMIN, params={**everything, "limit": 0}))) \
        == DEFAULT_LIMIT
    assert ids(api.get("/v2/events", ADMIN, params={**everything, "limit": 1})) == ALL[:1]
    # Above max_limit: clamped, not an error.
    assert ids(api.get("/v2/events", ADMIN, params={**everything, "limit": 100000})) \
        == ALL[:MAX_LIMIT]
    # Default order generated, then message_id (msg-a-2 and msg-a-3 tie).
    desc = every(api, ADMIN, **everything, sort="generated:desc")
    assert desc == ALL[::-1]
    assert every(api, ADMIN, **everything, sort=["generated:desc", "message_id"]) == \
        ["msg-a-2", "msg-a-3", *ALL[:-2][::-1]]
    assert every(api, ADMIN, **everything, sort="message_id:desc") == sorted(ALL, reverse=True)
    # Marker paging one event at a time, with the tie in the middle.
    seen: list[str] = []
    marker = None
    while True:
        params = {**everything, "limit": 1, "sort": "generated:desc"}
        if marker:
            params["marker"] = marker
        page = ids(api.get("/v2/events", ADMIN, params=params))
        if not page:
            break
        seen += page
        marker = page[-1]
    assert seen == desc
    # limit=1 & sort=message_id:asc, then the marker gives the rest.
    first = ids(api.get("/v2/events", SYSTEM_ADMIN, params={"limit": 1, "sort": "message_id"}))
    rest = every(api, SYSTEM_ADMIN, sort="message_id", marker=first[0])
    assert first + rest == sorted(ALL)
    # A marker outside the caller's scope is no cursor: 400, like an unknown one.
    for marker in ("msg-admin-1", "nope"):
        refused = api.get("/v2/events", MEMBER_A, params={"marker": marker})
        assert refused.status_code == 400
        assert fault(refused).startswith("Invalid marker")


LIST = "/v2/events"


@pytest.mark.parametrize(("query", "status", "message"), [
    ("foo=bar", 400, 'Unknown argument: "foo"'),
    ("bad_Stuff_here", 400, 'Unknown argument: "bad_Stuff_here"'),
    ("limit=-1", 400, "Invalid input for field/attribute limit. Value: '-1'. the limit "
                      "should be a positive integer."),
    ("limit=abc", 400, "Invalid input for field/attribute limit. Value: 'abc'. unable to "
                       "convert to int. Error: invalid literal for int() with base 10: 'abc'"),
    ("sort=event_type:asc", 400, "Invalid input for field/attribute sort. "
                                 "Value: 'event_type:asc'. the sort parameter"),
    ("sort=generated:up", 400, "Invalid input for field/attribute sort direction. "
                               "Value: 'generated:up'."),
    ("q.field=x&q.op=like&q.value=1", 400, "Operator like is not supported. The supported "
                                           "operators are: ('lt', 'le', 'eq', 'ne', 'ge', "
                                           "'gt')"),
    ("q.field=event_type&q.op=ne&q.value=x", 400, "Operator ne is not supported. Only `eq' "
                                                  "operator is available for field event_type"),
    ("q.field=start_timestamp&q.op=gt&q.value=2021-03-01", 400,
     "Operator gt is not supported. Only `ge' operator is available for field start_timestamp"),
    ("q.field=end_timestamp&q.op=lt&q.value=2021-03-01", 400,
     "Operator lt is not supported. Only `le' operator is available for field end_timestamp"),
    ("q.field=m&q.type=boolean&q.value=true", 400,
     "The data type boolean is not supported. The supported data type list is: "
     "['integer', 'float', 'string', 'datetime']"),
    ("q.field=m&q.type=integer&q.value=abc", 400,
     "Unable to convert the value abc to the expected data type integer."),
    # Panko answered these four with a 500.
    ("q.field=start_timestamp&q.op=ge&q.value=yesterday", 400,
     "Unable to parse date string 'yesterday'"),
    ("marker=nope", 400, "Invalid marker"),
    ("q.value=x", 400, "Invalid input for field/attribute field. Value: 'None'. Mandatory"),
    # q.type fewer times than q.field: aligned by position, not a 500.
    ("q.field=memory_mb&q.type=integer&q.value=512&q.field=state&q.value=active", 200, ""),
])
def test_error_table(api: ApiServer, query: str, status: int, message: str) -> None:
    got = api.get(f"{LIST}?{query}", ADMIN)
    assert got.status_code == status, got.text
    if status != 200:
        assert fault(got).startswith(message)
        assert got.headers["x-openstack-request-id"].startswith("req-")


def test_bodies_methods_and_admin_endpoints(api: ApiServer) -> None:
    def body(data: bytes, content_type: str) -> Any:
        return api.get(LIST, {**ADMIN, "Content-Type": content_type}, data=data)

    unsupported = body(b'{"q": []}', "text/plain")
    assert unsupported.status_code == 415
    assert fault(unsupported).startswith("Unknown mimetype: text/plain")
    for data, message in ((b"[]", "Request must be a JSON dict"),
                          (b"{nope", "Request is not in valid JSON format"),
                          (b'{"q": [{"field": "a"}]}', "Invalid input for field/attribute "
                                                       "value. Value: 'None'. Mandatory"),
                          (b'{"q": [{"field": "a", "value": 512}]}',
                           "Invalid input for field/attribute value. Value: '512'. Wrong type")):
        bad = body(data, "application/json")
        assert bad.status_code == 400 and fault(bad).startswith(message), data
    twice = api.get(LIST + "?q.field=a&q.value=b", ADMIN, json={"q": []})
    assert twice.status_code == 400 and fault(twice) == "Parameter q was given several times"
    assert ids(api.get(LIST + "?limit=1", ADMIN, json={"q": []})) == ["msg-admin-1"]

    for method in ("POST", "PUT", "DELETE", "PATCH", "HEAD"):
        for path in (LIST, "/v2/events/msg-a-1", "/v2/event_types/", "/v2/capabilities", "/"):
            refused = api.request(method, path, headers=ADMIN)
            assert refused.status_code == 405 and refused.headers["Allow"] == "GET", \
                (method, path)

    assert api.get("/v2/event_types/", ADMIN).json() == [
        "compute.instance.create.end", "compute.instance.delete.start",
        "identity.authenticate", "image.update"]
    assert api.get("/v2/event_types", SYSTEM_ADMIN).status_code == 200
    gone = api.get("/v2/event_types/image.update", ADMIN)
    assert gone.status_code == 404 and fault(gone) == "The resource could not be found."
    descriptions = api.get("/v2/event_types/compute.instance.create.end/traits/", ADMIN).json()
    assert sorted((d["name"], d["type"]) for d in descriptions) == [
        ("instance_id", "string"), ("launched_at", "datetime"), ("memory_mb", "integer"),
        ("project_id", "string"), ("state", "string"), ("user_id", "string"),
        ("vcpus_ratio", "float")]
    assert api.get("/v2/event_types/unknown/traits", ADMIN).json() == []
    values = api.get("/v2/event_types/compute.instance.create.end/traits/memory_mb",
                     ADMIN).json()
    # Every project's, for an admin.
    assert sorted(values, key=lambda v: int(v["value"])) == [
        {"name": "memory_mb", "value": v, "type": "integer"}
        for v in ("256", "512", "1024", "4096")]
    assert api.get("/v2/event_types/unknown/traits/memory_mb", ADMIN).json() == []
    for path in ("/v2/event_types", "/v2/event_types/", "/v2/event_types/x/traits",
                 "/v2/event_types/x/traits/y", "/v2/event_types/x"):
        for headers in (MEMBER_A, {}):
            denied = api.get(path, headers)
            assert denied.status_code == 401, (path, headers)
            assert fault(denied).startswith("Not Authorized to access project")


def test_cors(api: ApiServer) -> None:
    preflight = {"Access-Control-Request-Method": "GET"}
    allowed = api.request("OPTIONS", "/", headers={**preflight, "Origin": ALLOWED_ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    other = api.request("OPTIONS", "/", headers={**preflight, "Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    simple = api.get("/v2/events", {**MEMBER_A, "Origin": ALLOWED_ORIGIN})
    assert simple.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN


def test_bad_input_gets_a_json_4xx_and_the_server_stays_up(api: ApiServer) -> None:
    cases: list[tuple[str, dict[str, Any], int]] = [
        (LIST + "?limit=" + "9" * 5000, {}, 400),
        (LIST + "?limit=" + "9" * 9000, {}, 414),
        (LIST + "?limit=" + "9" * 1000, {}, 200),
        (LIST + "?limit=-99999999999999999999", {}, 400),
        (LIST + "?limit=1e3", {}, 400),
        (LIST + "?" + "&".join(["q.field=a"] * 10000), {}, 414),
        (LIST + "?" + "&".join(["q.field=a&q.value=b"] * 101), {}, 400),
        (LIST, {"json": {"q": [{"field": "a", "value": "b"}] * 10000}}, 400),
        # The same without a Content-Length (chunked).
        (LIST, {"data": iter([b'{"q": "'] + [b"x" * (1 << 20)] * 10 + [b'"}']),
                "headers": {**ADMIN, "Content-Type": "application/json"}}, 413),
        (LIST, {"data": b'{"q": "' + b"x" * (10 << 20) + b'"}',
                "headers": {**ADMIN, "Content-Type": "application/json"}}, 413),
        (LIST + "?q.field=state&q.value=%ff%fe", {}, 400),
        # NUL, which PostgreSQL text cannot hold: nothing stored matches it.
        (LIST + "?q.field=state&q.value=a%00", {}, 200),
        (LIST + "?q.field=event_type&q.value=a%00", {}, 200),
        (LIST + "?q.field=message_id&q.value=a%00", {}, 200),
        (LIST + "?q.field=%00&q.value=a", {}, 200),
        (LIST + "?marker=a%00", {}, 400),
        ("/v2/events/a%00", {}, 404),
        ("/v2/event_types/a%00/traits", {}, 200),
        ("/v2/event_types/a%00/traits/b%00", {}, 200),
        ("/v2/events/..%2F..%2Fetc%2Fpasswd", {}, 404),
        ("/v2/events/../../../etc/passwd", {}, 404),
        ("/v2/events/" + "x" * 4000, {}, 404),
        (LIST + "?marker=" + "m" * 3000, {}, 400),
        (LIST + "?q.field=start_timestamp&q.op=ge&q.value=9999-99-99", {}, 400),
        (LIST + "?q.field=when&q.type=datetime&q.value=0001-01-01T00:00:00%2B01:00", {}, 400),
        (LIST + "?q.field=n&q.type=integer&q.value=" + "9" * 30, {}, 400),
        (LIST + "?q.field=n&q.type=float&q.value=inf", {}, 400),
        (LIST, {"data": b"{" * 100000, "headers": {**ADMIN,
                                                   "Content-Type": "application/json"}}, 400),
    ]
    for path, kwargs, status in cases:
        kwargs.setdefault("headers", ADMIN)
        got = api.get(path, **kwargs)
        assert got.status_code == status, (path[:80], got.status_code, got.text[:300])
        if status != 200:
            assert got.headers["Content-Type"] == "application/json", path[:80]
            assert "error_message" in got.json()
        assert api.alive()
    # Raw (not %-escaped) bytes that are not UTF-8 in the request line.
    status, message = _raw_get(api, b"/v2/events?q.field=state&q.value=\xe9t\xe9")
    assert status == 400 and "percent-encoded as UTF-8" in message
    assert api.alive()
    # Memory stays bounded: no worker kept the 10 MB bodies (or anything near).
    for worker in children(api.proc.pid):
        status_text = Path(f"/proc/{worker}/status").read_text()
        rss_kb = int(next(line.split()[1] for line in status_text.splitlines()
                          if line.startswith("VmRSS:")))
        assert rss_kb < 200 * 1024, (worker, rss_kb)


def _raw_get(api: ApiServer, target: bytes) -> tuple[int, str]:
    """A GET whose request line carries ``target`` as raw bytes."""
    import socket

    with socket.create_connection(("127.0.0.1", api.port), timeout=60) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nX-User-Id: u\r\n"
                     b"X-Project-Id: p\r\nX-Roles: admin\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    message = json.loads(body)["error_message"]["faultstring"]
    return status, message


def test_database_outage_is_a_503_without_secrets(tmp_path: Path) -> None:
    server = ApiServer(tmp_path, "postgresql://panko:s3cretpw@127.0.0.1:1/events")
    try:
        for path in ("/v2/events", "/v2/events/x", "/v2/event_types", "/healthcheck"):
            got = api_get(server, path)
            assert got.status_code == 503, (path, got.text)
            assert server.request("HEAD", "/healthcheck").status_code == 503
            assert fault(got) in ("The event database is unavailable; try again later.",)
            for secret in ("s3cretpw", "SELECT", "Traceback", "psycopg", "127.0.0.1:1"):
                assert secret not in got.text
        assert server.alive()
    finally:
        server.stop()


def api_get(server: ApiServer, path: str) -> Any:
    return server.get(path, ADMIN)


def test_noauth_says_so_and_keystone_mode_requires_a_token(tmp_path: Path) -> None:
    url = sqlite_with_events(tmp_path)
    (tmp_path / "noauth").mkdir()
    noauth = ApiServer(tmp_path / "noauth", url)
    try:
        assert "WARNING" in noauth.log() and "NOT authenticated" in noauth.log()
    finally:
        noauth.stop()
    (tmp_path / "keystone").mkdir()
    # auth_token refuses a request without a token by itself, without asking
    # Keystone (the real-token tests need a Keystone; see the keystone fixture).
    keystone = ApiServer(tmp_path / "keystone", url, extra=(
        "[keystone_authtoken]\nwww_authenticate_uri = http://127.0.0.1:1/identity\n"
        "auth_url = http://127.0.0.1:1/identity\n"), auth_strategy="keystone")
    try:
        assert "NOT authenticated" not in keystone.log()
        assert keystone.get("/").status_code == 200
        assert keystone.get("/healthcheck").status_code == 200
        for headers in ({}, ADMIN, {**ADMIN, "X-Identity-Status": "Confirmed"}):
            refused = keystone.get("/v2/events", headers)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == 401
            assert refused.headers["WWW-Authenticate"].startswith("Keystone uri=")
            assert refused.headers["x-openstack-request-id"].startswith("req-")
    finally:
        keystone.stop()


def test_a_policy_file_changes_the_rules(tmp_path: Path) -> None:
    url = sqlite_with_events(tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text('"telemetry:events:show": "rule:context_is_admin"\n'
                      '"context_is_admin": "role:admin or role:auditor"\n')
    server = ApiServer(tmp_path, url, extra=f"[oslo_policy]\npolicy_file = {policy}\n")
    try:
        denied = server.get("/v2/events/msg-a-1", MEMBER_A)
        assert denied.status_code == 403
        assert fault(denied) == "RBAC Authorization Failed"
        assert ids(server.get("/v2/events", MEMBER_A)) == ["msg-a-1", "msg-a-2", "msg-a-3"]
        auditor = {**MEMBER_A, "X-Roles": "auditor"}
        # An admin now: proj-a's events (any user's) and those of no project.
        assert every(server, auditor) == ["msg-a-1", "msg-b-1", "msg-service", "msg-a-2",
                                          "msg-a-3"]
        assert server.get("/v2/event_types", auditor).status_code == 200
        assert server.get("/v2/events/msg-b-1", auditor).status_code == 200
        assert server.get("/v2/events/msg-admin-1", auditor).status_code == 404
    finally:
        server.stop()


def test_wsgi_module_under_another_server(tmp_path: Path) -> None:
    """``panko_collector.api.wsgi:application`` reads PANKO_COLLECTOR_CONFIG_FILE."""
    import os
    import subprocess
    import sys
    import time

    import requests

    from tests.functional.api_server import free_port

    url = sqlite_with_events(tmp_path)
    conf = tmp_path / "api.conf"
    conf.write_text(f"[database]\nconnection = {url}\n")
    noauth = tmp_path / "noauth.conf"
    noauth.write_text("[DEFAULT]\nauth_strategy = noauth\n")
    port = free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    proc = subprocess.Popen(
        [str(gunicorn), "--workers", "1", "--bind", f"127.0.0.1:{port}",
         "--no-control-socket", "panko_collector.api.wsgi:application"],
        env={**os.environ, "PANKO_COLLECTOR_CONFIG_FILE": f"{conf}, {noauth}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            try:
                got = requests.get(f"http://127.0.0.1:{port}/v2/events", headers=MEMBER_A,
                                   timeout=10)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert [e["message_id"] for e in got.json()] == ["msg-a-1", "msg-a-2", "msg-a-3"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_identity_headers_auth_token_blanked_count_as_absent(tmp_path: Path) -> None:
    """auth_token blanks the identity headers a token lacks by storing None in
    the WSGI environ (a forged OpenStack-System-Scope of a project token
    too): the app factory's application reads them as absent."""
    from oslo_config import cfg
    from werkzeug.test import Client

    from panko_collector import service, storage
    from panko_collector.api import app

    url = sqlite_with_events(tmp_path)
    conf = cfg.ConfigOpts()
    service.register_opts(conf)
    conf([], project="panko-collector-test", default_config_files=[])
    conf.set_override("auth_strategy", "noauth")
    connection = storage.get_connection(url)
    try:
        client = Client(app.build_app(conf, connection))
        member = {"HTTP_X_USER_ID": "user-a", "HTTP_X_PROJECT_ID": "proj-a",
                  "HTTP_X_ROLES": "member", "HTTP_OPENSTACK_SYSTEM_SCOPE": None}
        got = client.get("/v2/events", environ_overrides=member)
        assert [e["message_id"] for e in got.json] == ["msg-a-1", "msg-a-2", "msg-a-3"]
        system_admin = {"HTTP_X_USER_ID": "user-admin", "HTTP_X_PROJECT_ID": None,
                        "HTTP_X_ROLES": "admin", "HTTP_OPENSTACK_SYSTEM_SCOPE": "all"}
        got = client.get("/v2/events", environ_overrides=system_admin)
        assert len(got.json) == len(EVENTS)
        unscoped = {**system_admin, "HTTP_OPENSTACK_SYSTEM_SCOPE": None}
        assert client.get("/v2/events", environ_overrides=unscoped).status_code == 403
    finally:
        connection.dispose()


def test_systemd_hears_ready_once_the_api_listens(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit is Type=notify: gunicorn's master sends READY=1 once it listens."""
    import socket

    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(notify))
        listener.settimeout(60)
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify))
        server = ApiServer(tmp_path, f"sqlite:///{tmp_path / 'events.sqlite'}")
        try:
            assert listener.recv(4096).decode().splitlines()[0] == "READY=1"
        finally:
            server.stop()
