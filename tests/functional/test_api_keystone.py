"""``panko-collector-api`` with ``auth_strategy = keystone``, against a real
Keystone and real tokens.

The session's Keystone (tests/functional/keystone.py) holds an admin (the
bootstrap one, admin of project ``admin`` and of the system) and members of
two projects; the API's SQLite database holds events of each of them, one of
no project, one of no trait at all. The API validates every token with
keystonemiddleware's ``auth_token``, as the service user ``panko``. Checked:
each member sees their own project-and-user events only and gets 404 for
anyone else's; the admin's project token sees its project (and project-less
events) and everything with ``all_tenants``; a system-scoped admin token
counts as admin; missing, malformed, expired and revoked tokens get
keystonemiddleware's 401; and identity headers forged beside a valid member
token gain nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from panko_collector.storage import models
from tests.functional.api_server import ApiServer, ids
from tests.functional.keystone import Keystone, User
from tests.functional.storage_helpers import open_storage

pytestmark = pytest.mark.slow

T = models.Trait
BASE = datetime.datetime(2024, 5, 1, 8, 0, 0)
ALL_TENANTS = {"q.field": "all_tenants", "q.value": "True"}


@dataclass
class World:
    """The API, the Keystone users, and the message ids of each one's events."""

    api: ApiServer
    keystone: Keystone
    a1: User
    a2: User
    b1: User
    admin_id: str
    admin_project_id: str
    events: dict[str, list[str]]

    def every_id(self) -> list[str]:
        return [m for owner in self.events.values() for m in owner]


def _event(message_id: str, minute: int, traits: list[models.Trait]) -> models.Event:
    return models.Event(message_id, "compute.instance.update", BASE + datetime.timedelta(
        minutes=minute), traits)


def _owned(project_id: str, user_id: str) -> list[models.Trait]:
    return [T("project_id", T.TEXT_TYPE, project_id), T("user_id", T.TEXT_TYPE, user_id),
            T("state", T.TEXT_TYPE, "active")]


@pytest.fixture(scope="module")
def world(keystone: Keystone,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    project_a = keystone.create_project("api-project-a")
    project_b = keystone.create_project("api-project-b")
    a1, a2, b1 = keystone.member(project_a), keystone.member(project_a), keystone.member(project_b)
    admin_doc = keystone.validate(keystone.admin_project_token())
    admin_id, admin_project_id = admin_doc["user"]["id"], admin_doc["project"]["id"]

    owners = {"a1": (a1.project_id, a1.id), "a2": (a2.project_id, a2.id),
              "b1": (b1.project_id, b1.id), "admin": (admin_project_id, admin_id)}
    events: dict[str, list[str]] = {}
    stored: list[models.Event] = []
    minute = 0
    for owner, (project_id, user_id) in owners.items():
        assert project_id is not None
        for n in range(2):
            message_id = f"msg-{owner}-{n}"
            stored.append(_event(message_id, minute, _owned(project_id, user_id)))
            events.setdefault(owner, []).append(message_id)
            minute += 1
    stored.append(_event("msg-service", minute, [T("service", T.TEXT_TYPE, "compute")]))
    events["service"] = ["msg-service"]
    stored.append(_event("msg-notraits", minute + 1, []))
    events["notraits"] = ["msg-notraits"]

    directory = tmp_path_factory.mktemp("api-keystone")
    url = f"sqlite:///{directory / 'events.sqlite'}"
    for conn in open_storage(url):
        assert conn.record_events(stored).stored == len(stored)
    authtoken = "".join(f"{k} = {v}\n" for k, v in keystone.authtoken_options().items())
    api = ApiServer(directory, url, auth_strategy="keystone",
                    extra=f"[keystone_authtoken]\n{authtoken}")
    try:
        yield World(api, keystone, a1, a2, b1, admin_id, admin_project_id, events)
    finally:
        api.stop()


def _as(token: str, **more: str) -> dict[str, str]:
    return {"X-Auth-Token": token, **more}


def _list(w: World, token: str, headers: dict[str, str] | None = None,
          params: dict[str, str] | None = None) -> list[str]:
    return sorted(ids(w.api.get("/v2/events", {**_as(token), **(headers or {})},
                                params={"limit": "100", **(params or {})})))


def _show(w: World, token: str, message_id: str, headers: dict[str, str] | None = None) -> int:
    return w.api.get(f"/v2/events/{message_id}", {**_as(token), **(headers or {})}).status_code


def _refused_by_auth_token(response: Any) -> None:
    """A 401 in keystonemiddleware's shape (not the API's own Panko-shaped errors)."""
    assert response.status_code == 401, response.text
    assert response.json()["error"]["title"] == "Unauthorized", response.text
    assert response.headers["WWW-Authenticate"].startswith("Keystone uri="), response.headers


def test_members_see_only_their_own_events(world: World) -> None:
    w = world
    for user, own in ((w.a1, "a1"), (w.a2, "a2"), (w.b1, "b1")):
        token = w.keystone.project_token(user)
        assert _list(w, token) == sorted(w.events[own]), own
        # all_tenants widens nothing for a member (as Panko: an empty list).
        assert _list(w, token, params=ALL_TENANTS) == [], own
        for message_id in w.every_id():
            expected = 200 if message_id in w.events[own] else 404
            assert _show(w, token, message_id) == expected, (own, message_id)
        # The event types are for administrators (Panko's 401).
        assert w.api.get("/v2/event_types", _as(token)).status_code == 401


def test_admin_project_token_with_and_without_all_tenants(world: World) -> None:
    w = world
    token = w.keystone.admin_project_token()
    # Its project's events and the project-less one with a text trait, as Panko.
    assert _list(w, token) == sorted(w.events["admin"] + w.events["service"])
    assert _list(w, token, params=ALL_TENANTS) == sorted(w.every_id())
    assert _show(w, token, w.events["admin"][0]) == 200
    assert _show(w, token, w.events["a1"][0]) == 404
    assert w.api.get("/v2/event_types", _as(token)).status_code == 200


def test_system_scoped_admin_token_counts_as_admin(world: World) -> None:
    w = world
    token = w.keystone.admin_token()
    assert _list(w, token) == sorted(w.every_id())
    assert _show(w, token, w.events["b1"][1]) == 200
    types = w.api.get("/v2/event_types", _as(token))
    assert (types.status_code, types.json()) == (200, ["compute.instance.update"])


@pytest.mark.parametrize("token", [None, "", "not-a-token", "gAAAAAB" + "x" * 180])
def test_missing_or_malformed_token_gets_401(world: World, token: str | None) -> None:
    headers = {} if token is None else {"X-Auth-Token": token}
    for path in ("/v2/events", f"/v2/events/{world.events['a1'][0]}", "/v2/event_types"):
        _refused_by_auth_token(world.api.get(path, headers))


def test_expired_token_gets_401(world: World) -> None:
    token = world.keystone.expired_token(world.a1)
    _refused_by_auth_token(world.api.get("/v2/events", _as(token)))


def test_revoked_token_gets_401(world: World) -> None:
    w = world
    token = w.keystone.project_token(w.a1)
    assert _list(w, token) == sorted(w.events["a1"])
    w.keystone.revoke(token)
    _refused_by_auth_token(w.api.get("/v2/events", _as(token)))


def test_forged_identity_headers_gain_nothing(world: World) -> None:
    w = world
    assert w.b1.project_id is not None
    forged = {"X-Roles": "admin", "X-Project-Id": w.b1.project_id, "X-User-Id": w.b1.id,
              "X-Tenant-Id": w.b1.project_id, "OpenStack-System-Scope": "all",
              "X-Identity-Status": "Confirmed"}
    token = w.keystone.project_token(w.a1)
    assert _list(w, token, forged) == sorted(w.events["a1"])
    assert _list(w, token, forged, ALL_TENANTS) == []
    assert _show(w, token, w.events["b1"][0], forged) == 404
    assert _show(w, token, w.events["a1"][0], forged) == 200
    assert w.api.get("/v2/event_types", {**_as(token), **forged}).status_code == 401
    # Without a token, the forged headers get nobody in.
    _refused_by_auth_token(w.api.get("/v2/events", forged))


def test_root_and_healthcheck_need_no_token(world: World) -> None:
    assert world.api.get("/").status_code == 200
    assert world.api.get("/healthcheck").status_code == 200
