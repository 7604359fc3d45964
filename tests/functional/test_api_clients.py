"""Real clients against ``panko-collector-api``: python-pankoclient 1.2.0 (the
library and the ``openstack event ...`` commands it adds), and a ManageIQ
style poll while events keep being stored."""

from __future__ import annotations

import datetime
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
from pankoclient import client as pankoclient
from pankoclient import exceptions as panko_exceptions
from pankoclient.v2 import events_cli

from panko_collector import storage
from panko_collector.storage import models
from tests.functional.api_server import (
    ADMIN,
    MEMBER_A,
    ApiServer,
    fault,
    scoping_events,
)
from tests.functional.storage_helpers import open_storage


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    for conn in open_storage(db_url):
        conn.record_events(scoping_events())
    server = ApiServer(tmp_path, db_url)
    try:
        yield server
    finally:
        server.stop()


def client(api: ApiServer, headers: dict[str, str]) -> Any:
    """pankoclient without Keystone: the noauth plugin and identity headers."""
    session = ks_session.Session(auth=noauth.NoAuth(endpoint=api.url))
    return pankoclient.Client("2", session=session, additional_headers=dict(headers))


def cli(command: type, panko: Any, *argv: str) -> Any:
    """Run one ``openstack event ...`` command's action on ``panko``."""
    app = types.SimpleNamespace(client_manager=types.SimpleNamespace(event=panko))
    cmd = command(app, None)
    return cmd.take_action(cmd.get_parser("openstack").parse_args(list(argv)))


def test_pankoclient(api: ApiServer) -> None:
    admin, member = client(api, ADMIN), client(api, MEMBER_A)

    listed = member.event.list()
    assert [e.message_id for e in listed] == ["msg-a-1", "msg-a-2", "msg-a-3"]
    filtered = admin.event.list(filters={"all_tenants": "True", "state": "active"},
                                limit=1, sorts=["generated:desc"])
    assert [e.message_id for e in filtered] == ["msg-a-3"]
    after = admin.event.list(filters={"all_tenants": "True", "state": "active"},
                             marker="msg-a-3", sorts=["generated:desc"])
    assert [e.message_id for e in after] == ["msg-admin-1"]
    shown = member.event.get("msg-a-1")
    assert shown.event_type == "compute.instance.create.end"
    assert {"name": "memory_mb", "value": "1024", "type": "integer"} in shown.traits
    assert shown.generated == "2021-03-01T12:01:00.123456"

    assert list(admin.event_type.list()) == [
        "compute.instance.create.end", "compute.instance.delete.start",
        "identity.authenticate", "image.update"]
    values = admin.event_trait.list("compute.instance.create.end", "state")
    assert sorted(t.value for t in values) == ["active", "active", "building", "error"]
    described = admin.event_trait_description.list("image.update")
    assert sorted((d.name, d.type) for d in described) == [
        ("memory_mb", "integer"), ("project_id", "string"), ("user_id", "string")]
    capabilities = admin.capabilities.list()
    assert capabilities.event_storage == {"storage:production_ready": True}

    with pytest.raises(panko_exceptions.NotFound) as missing:
        member.event.get("msg-admin-1")
    assert "Event msg-admin-1 Not Found" in str(missing.value)
    with pytest.raises(panko_exceptions.Unauthorized) as denied:
        member.event_type.list()
    assert "Not Authorized to access project proj-a" in str(denied.value)
    with pytest.raises(panko_exceptions.BadRequest) as bad:
        admin.event.list(sorts=["event_type"])
    assert "the supported sort keys are" in str(bad.value)


def test_openstack_event_commands(api: ApiServer) -> None:
    admin = client(api, ADMIN)
    columns, rows = cli(events_cli.EventList, admin, "--filter", "all_tenants=True",
                        "--filter", "start_timestamp=2021-03-01T12:04:00", "--limit", "2")
    assert columns[:3] == ("event_type", "generated", "message_id")
    assert [r[2] for r in rows] == ["msg-notraits", "msg-a-2"]
    assert rows[1][3:] == ("memory_mb\nproject_id\nstate\nuser_id",
                           "256\nproj-a\nerror\nuser-a",
                           "integer\nstring\nstring\nstring")
    columns, values = cli(events_cli.EventShow, admin, "msg-admin-1")
    assert dict(zip(columns, values, strict=True))["message_id"] == "msg-admin-1"
    columns, rows = cli(events_cli.EventTypeList, admin)
    assert ("image.update",) in list(rows)
    columns, rows = cli(events_cli.EventTraitList, admin, "image.update", "memory_mb")
    assert list(rows) == [("memory_mb", "2048", "integer")]
    columns, rows = cli(events_cli.EventTraitDescription, admin, "identity.authenticate")
    assert list(rows) == [("service", "string")]


def test_manageiq_poll_never_misses_or_repeats(db_url: str, tmp_path: Path) -> None:
    """ManageIQ's monitor: a JSON body on GET, ``start_timestamp ge ''`` with
    ``all_tenants``, then each poll from the last ``generated`` plus ``Z``,
    the default page of 100 in ``generated`` order, while events arrive."""
    writer_conn = storage.get_connection(db_url)
    writer_conn.upgrade()
    written: list[str] = []
    done = threading.Event()

    def write() -> None:
        start = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        try:
            for batch in range(40):
                events = [models.Event(
                    f"poll-{batch:03}-{i}", "compute.instance.update",
                    start + datetime.timedelta(milliseconds=batch * 10 + i),
                    [models.Trait("project_id", models.Trait.TEXT_TYPE, f"p{i % 3}")])
                    for i in range(7)]
                writer_conn.record_events(events)
                written.extend(e.message_id for e in events)
                done.wait(0.02)
        finally:
            done.set()

    # Two workers: polls may land on either process.
    server = ApiServer(tmp_path, db_url, workers=2)
    thread = threading.Thread(target=write)
    try:
        thread.start()
        seen: dict[str, int] = {}
        start_value = ""
        polls = 0
        while True:
            finished = done.is_set()
            body = {"q": [{"field": "start_timestamp", "op": "ge", "value": start_value},
                          {"field": "all_tenants", "value": "True"}]}
            response = server.get("/v2/events", ADMIN, json=body)
            assert response.status_code == 200, fault(response)
            page = response.json()
            polls += 1
            generated = [e["generated"] for e in page]
            assert generated == sorted(generated)
            for e in page:
                if e["message_id"] in seen:
                    # Only the events at the boundary come again (ge).
                    assert e["generated"] + "Z" == start_value, e
                seen[e["message_id"]] = seen.get(e["message_id"], 0) + 1
            if page:
                start_value = page[-1]["generated"] + "Z"
            new = [e for e in page if seen[e["message_id"]] == 1]
            if finished and not new:
                break
            assert polls < 1000
        thread.join(30)
        assert sorted(seen) == sorted(written) and len(written) == 280
        # The first poll may have come before any event; still, several
        # polls saw the stream grow.
        assert polls > 2
    finally:
        done.set()
        thread.join(30)
        server.stop()
        writer_conn.dispose()
