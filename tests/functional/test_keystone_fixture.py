"""The Keystone fixture on its own: its tokens, validated by keystonemiddleware.

keystonemiddleware's ``auth_token``, configured from a ``[keystone_authtoken]``
section as the service user (as panko-collector-api configures it), wraps a
WSGI application in this process that echoes the identity headers it is
given. Real tokens from the fixture's Keystone must reach it with their
user, project and roles; missing, malformed, expired and revoked tokens must
be refused with 401 before it; forged identity headers must be overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from tests.functional.keystone import Keystone, User

pytestmark = pytest.mark.slow

auth_token = pytest.importorskip("keystonemiddleware.auth_token")
webob = pytest.importorskip("webob")

#: The identity headers auth_token sets (and removes when the client sent them).
ECHOED = ("X-Identity-Status", "X-User-Id", "X-Project-Id", "X-Roles",
          "OpenStack-System-Scope")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    seen = {h: environ.get("HTTP_" + h.upper().replace("-", "_")) for h in ECHOED}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


@pytest.fixture(scope="module")
def protected(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> WSGIApp:
    """The echo application behind auth_token, configured through oslo.config."""
    from oslo_config import cfg

    conf_file = tmp_path_factory.mktemp("authtoken") / "api.conf"
    lines = ["[keystone_authtoken]"]
    lines += [f"{k} = {v}" for k, v in keystone.authtoken_options().items()]
    conf_file.write_text("\n".join(lines) + "\n")
    conf = cfg.ConfigOpts()
    conf(["--config-file", str(conf_file)], project="panko-collector")
    app: WSGIApp = auth_token.AuthProtocol(_echo, {"oslo_config_config": conf})
    return app


def _get(app: WSGIApp, token: str | None = None, **headers: str) -> Any:
    req = webob.Request.blank("/v2/events")
    if token is not None:
        req.headers["X-Auth-Token"] = token
    req.headers.update(headers)
    return req.get_response(app)


@pytest.fixture(scope="module")
def alice(keystone: Keystone) -> User:
    return keystone.member(keystone.create_project("fixture-a"))


def test_project_token_reaches_the_app_with_its_identity(
        keystone: Keystone, protected: WSGIApp, alice: User) -> None:
    resp = _get(protected, keystone.project_token(alice))
    assert resp.status_int == 200, resp.text
    seen = resp.json
    assert seen["X-Identity-Status"] == "Confirmed"
    assert (seen["X-User-Id"], seen["X-Project-Id"]) == (alice.id, alice.project_id)
    assert "member" in seen["X-Roles"].split(",")
    assert "admin" not in seen["X-Roles"].split(",")


def test_system_token_has_system_scope_and_no_project(
        keystone: Keystone, protected: WSGIApp) -> None:
    resp = _get(protected, keystone.admin_token())
    assert resp.status_int == 200, resp.text
    seen = resp.json
    assert seen["OpenStack-System-Scope"] == "all"
    assert seen["X-Project-Id"] is None
    assert "admin" in seen["X-Roles"].split(",")


@pytest.mark.parametrize("token", [None, "", "not-a-token", "gAAAAAB" + "x" * 180])
def test_missing_or_malformed_token_is_refused(protected: WSGIApp, token: str | None) -> None:
    resp = _get(protected, token)
    assert resp.status_int == 401
    assert resp.headers["WWW-Authenticate"].startswith("Keystone uri=")


def test_expired_token_is_refused(keystone: Keystone, protected: WSGIApp, alice: User) -> None:
    token = keystone.expired_token(alice)
    # The token is genuine, only past its time: Keystone itself says so.
    status, _, body = keystone.request("GET", "/v3/auth/tokens", token=keystone.admin_token(),
                                       headers={"X-Subject-Token": token})
    assert status == 404, body
    assert _get(protected, token).status_int == 401


def test_revoked_token_is_refused(keystone: Keystone, protected: WSGIApp, alice: User) -> None:
    token = keystone.project_token(alice)
    assert _get(protected, token).status_int == 200
    keystone.revoke(token)
    assert _get(protected, token).status_int == 401


def test_forged_identity_headers_are_overwritten(
        keystone: Keystone, protected: WSGIApp, alice: User) -> None:
    forged = {"X-Roles": "admin", "X-Project-Id": "someone-else", "X-User-Id": "admin",
              "X-Identity-Status": "Confirmed", "OpenStack-System-Scope": "all"}
    resp = _get(protected, keystone.project_token(alice), **forged)
    assert resp.status_int == 200, resp.text
    seen = resp.json
    assert (seen["X-User-Id"], seen["X-Project-Id"]) == (alice.id, alice.project_id)
    assert "admin" not in seen["X-Roles"].split(",")
    assert seen["OpenStack-System-Scope"] is None
    # Without a token, the forged headers get nobody in.
    assert _get(protected, None, **forged).status_int == 401

