"""A real Keystone for the tests: installed from PyPI, bootstrapped on SQLite,
served on loopback.

Keystone is never a dependency of panko-collector: a session fixture installs
the pinned lock ``tests/keystone/requirements.txt`` (Keystone, gunicorn and
everything they import, ``--no-deps``) into a virtual environment of its own,
cached between runs like the Ceilometer oracle's (tests/functional/side_venv.py;
``$PANKO_COLLECTOR_KEYSTONE_VENV`` names another folder). Once per test session
it bootstraps Keystone in a temporary folder (``keystone-manage db_sync``,
``fernet_setup``, ``credential_setup``, ``bootstrap``) and serves
``keystone.wsgi.api:application`` under gunicorn on a free loopback port.
Skipped when the environment cannot be installed; failed under ``CI=true``.

:class:`Keystone` makes projects, users and role assignments through the
identity API with a system-scoped admin token, issues project- and
system-scoped tokens, revokes them, and issues expired ones: a second Keystone
process on the same database and keys whose tokens live two seconds, so that
the main one (and whoever asks it) sees a genuine expired Fernet token.
A service user ``panko`` (role ``service`` in project ``service``) is made for
keystonemiddleware's ``auth_token``: :meth:`Keystone.authtoken_options` gives
its ``[keystone_authtoken]`` section.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, missing
from tests.functional.api_server import free_port
from tests.functional.side_venv import SideVenv, cache_dir, fingerprint, tail

KEYSTONE_VERSION = "30.0.0"
REQUIREMENTS = REPO / "tests" / "keystone" / "requirements.txt"
ADMIN_PASSWORD = "keystone-admin-secret"
SERVICE_PASSWORD = "panko-service-secret"
#: Lifetime of the tokens of the second, short-lived-token Keystone.
SHORT_TOKEN_SECONDS = 2
#: How long a Keystone process may take to answer after start.
START_TIMEOUT = 90.0


def side_venv() -> SideVenv:
    return SideVenv(
        path=cache_dir(f"keystone-{KEYSTONE_VERSION}", "PANKO_COLLECTOR_KEYSTONE_VENV"),
        stamp=fingerprint(KEYSTONE_VERSION, REQUIREMENTS.read_bytes()),
        # keystone.wsgi.api would build the application at import: import what it imports.
        probe="import keystone.server.wsgi, keystone.cmd.manage, gunicorn.app.wsgiapp")


def _install(venv: SideVenv) -> None:
    proc = venv.pip("--no-deps", "-r", str(REQUIREMENTS))
    if proc.returncode != 0:
        missing(f"keystone=={KEYSTONE_VERSION} from PyPI ({REQUIREMENTS.name}; "
                f"pip failed:\n{tail(proc)})")


class KeystoneError(AssertionError):
    """Keystone answered an identity call with an unexpected status."""


@dataclass(frozen=True)
class User:
    """A Keystone user, the project their tokens are scoped to, and their role there."""

    id: str
    name: str
    password: str
    project_id: str | None
    role: str | None


@dataclass
class _Server:
    """One gunicorn serving Keystone with the given config files."""

    venv: SideVenv
    workdir: Path
    name: str
    config_files: list[Path]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        rundir = self.workdir / self.name
        rundir.mkdir()
        # Keystone parses sys.argv with oslo.config when its application is
        # built, so gunicorn's own arguments would be refused: gunicorn reads
        # its settings from ./gunicorn.conf.py instead and gets no argument.
        # Keystone reads its config files from OS_KEYSTONE_CONFIG_FILES.
        (rundir / "gunicorn.conf.py").write_text(
            f"bind = '127.0.0.1:{self.port}'\n"
            "workers = 1\n"
            "wsgi_app = 'keystone.wsgi.api:application'\n"
            # gunicorn >= 25 otherwise opens one control socket per user in
            # ~/.gunicorn, shared by every gunicorn on the machine.
            "control_socket_disable = True\n")
        env = {**os.environ,
               "OS_KEYSTONE_CONFIG_FILES": ";".join(str(f) for f in self.config_files)}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(self.venv.bin("gunicorn"))], cwd=rundir, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/v3", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"Keystone ({self.name}) did not answer on {self.url}:\n"
                    f"{self.log.read_text(errors='replace')[-3000:]}", pytrace=False)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


class Keystone:
    """A bootstrapped Keystone served on loopback, and helpers to use it.

    Every helper raises :class:`KeystoneError` (an AssertionError: the test
    fails) when Keystone answers otherwise than expected.
    """

    def __init__(self, venv: SideVenv, workdir: Path) -> None:
        self.venv = venv
        self.workdir = workdir
        self.config = workdir / "keystone.conf"
        self._server = _Server(venv, workdir, "keystone", [self.config])
        self._short: _Server | None = None
        self._admin_token: str | None = None
        self.service_user: User | None = None

    @property
    def url(self) -> str:
        """The identity endpoint's root (``/v3`` is below it)."""
        return self._server.url

    # --- set-up and tear-down ---

    def _manage(self, *args: str) -> None:
        proc = subprocess.run(
            [str(self.venv.bin("keystone-manage")), "--config-file", str(self.config), *args],
            capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            pytest.fail(f"keystone-manage {args[0]} failed:\n{tail(proc, 20)}", pytrace=False)

    def bootstrap(self) -> None:
        """Write keystone.conf, create the database, keys, admin and service user."""
        d = self.workdir
        for sub in ("fernet-keys", "fernet-receipts", "credential-keys"):
            (d / sub).mkdir(mode=0o700)
        # Every path Keystone writes is in this folder: its defaults are under /etc/keystone.
        self.config.write_text(
            "[DEFAULT]\nuse_stderr = true\n"
            f"[database]\nconnection = sqlite:///{d / 'keystone.sqlite'}\n"
            f"[fernet_tokens]\nkey_repository = {d / 'fernet-keys'}\n"
            f"[fernet_receipts]\nkey_repository = {d / 'fernet-receipts'}\n"
            f"[credential]\nkey_repository = {d / 'credential-keys'}\n"
            # bcrypt's minimum cost: real hashing, without 0.3 s of CPU per login.
            "[identity]\npassword_hash_rounds = 4\n")
        user = os.getuid(), os.getgid()
        owner = ["--keystone-user", str(user[0]), "--keystone-group", str(user[1])]
        self._manage("db_sync")
        self._manage("fernet_setup", *owner)
        self._manage("credential_setup", *owner)
        self._manage("bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
                     "--bootstrap-region-id", "RegionOne",
                     "--bootstrap-public-url", f"{self.url}/v3",
                     # keystonemiddleware asks for this one ([keystone_authtoken] interface)
                     "--bootstrap-internal-url", f"{self.url}/v3")

    def start(self) -> None:
        self._server.start()
        service = self.create_project("service")
        self.service_user = self.create_user("panko", SERVICE_PASSWORD, service, "service")

    def stop(self) -> None:
        if self._short is not None:
            self._short.stop()
        self._server.stop()

    def logs(self) -> str:
        """The end of the main Keystone's log, for a failure message."""
        return self._server.log.read_text(errors="replace")[-3000:]

    # --- the identity API ---

    def request(self, method: str, path: str, *, token: str | None = None,
                body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                base: str | None = None) -> tuple[int, dict[str, str], Any]:
        """One call to the identity API: (status, headers, decoded JSON body or None)."""
        all_headers = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if token is not None:
            all_headers["X-Auth-Token"] = token
        req = urllib.request.Request(f"{base or self.url}{path}", data=data,
                                     headers=all_headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, resp_headers, raw = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            status, resp_headers, raw = err.code, dict(err.headers), err.read()
        return status, resp_headers, json.loads(raw) if raw else None

    def _expect(self, expected: int, method: str, path: str, **kwargs: Any) -> Any:
        status, headers, body = self.request(method, path, **kwargs)
        if status != expected:
            raise KeystoneError(f"{method} {path}: {status} (expected {expected}): {body}")
        return headers, body

    def _issue(self, user: str, password: str, scope: dict[str, Any] | None,
               base: str | None = None) -> tuple[str, dict[str, Any]]:
        auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {
            "user": {"name": user, "domain": {"id": "default"}, "password": password}}}}
        if scope is not None:
            auth["scope"] = scope
        headers, body = self._expect(201, "POST", "/v3/auth/tokens",
                                     body={"auth": auth}, base=base)
        return headers["X-Subject-Token"], body["token"]

    def admin_token(self) -> str:
        """The bootstrap admin's system-scoped token, which administers Keystone."""
        if self._admin_token is None:
            self._admin_token = self.system_token("admin", ADMIN_PASSWORD)
        return self._admin_token

    def project_token(self, user: User) -> str:
        """A token of ``user`` scoped to their project."""
        assert user.project_id is not None, f"{user.name} has no project"
        return self._issue(user.name, user.password, {"project": {"id": user.project_id}})[0]

    def system_token(self, name: str, password: str) -> str:
        """A system-scoped token (``system_scope: all``) of a user with a system role."""
        return self._issue(name, password, {"system": {"all": True}})[0]

    def admin_project_token(self) -> str:
        """The bootstrap admin's token scoped to the ``admin`` project."""
        return self._issue("admin", ADMIN_PASSWORD,
                           {"project": {"name": "admin", "domain": {"id": "default"}}})[0]

    def create_project(self, name: str) -> str:
        _, body = self._expect(201, "POST", "/v3/projects", token=self.admin_token(),
                               body={"project": {"name": name, "domain_id": "default"}})
        project_id: str = body["project"]["id"]
        return project_id

    def role_id(self, name: str) -> str:
        _, body = self._expect(200, "GET", f"/v3/roles?name={name}", token=self.admin_token())
        roles = body["roles"]
        if not roles:
            raise KeystoneError(f"no role named {name!r}")
        role_id: str = roles[0]["id"]
        return role_id

    def grant(self, user_id: str, project_id: str, role: str) -> None:
        self._expect(204, "PUT", f"/v3/projects/{project_id}/users/{user_id}/roles/"
                     f"{self.role_id(role)}", token=self.admin_token())

    def create_user(self, name: str, password: str, project_id: str | None = None,
                    role: str | None = "member") -> User:
        """A user of the default domain, given ``role`` on ``project_id`` when both are set."""
        user: dict[str, Any] = {"name": name, "password": password, "domain_id": "default"}
        if project_id is not None:
            user["default_project_id"] = project_id
        _, body = self._expect(201, "POST", "/v3/users", token=self.admin_token(),
                               body={"user": user})
        user_id: str = body["user"]["id"]
        if project_id is not None and role is not None:
            self.grant(user_id, project_id, role)
        return User(user_id, name, password, project_id, role)

    def member(self, project_id: str, role: str = "member") -> User:
        """A new user with ``role`` on ``project_id``, named and passworded at random."""
        name = f"user-{uuid.uuid4().hex[:10]}"
        return self.create_user(name, uuid.uuid4().hex, project_id, role)

    def validate(self, token: str) -> dict[str, Any]:
        """What Keystone says of ``token`` (its ``token`` document); fails if invalid."""
        _, body = self._expect(200, "GET", "/v3/auth/tokens", token=self.admin_token(),
                               headers={"X-Subject-Token": token})
        document: dict[str, Any] = body["token"]
        return document

    def revoke(self, token: str) -> None:
        """Revoke ``token`` (its subject may revoke it: it authenticates the call)."""
        self._expect(204, "DELETE", "/v3/auth/tokens", token=token,
                     headers={"X-Subject-Token": token})

    def expired_token(self, user: User) -> str:
        """A token of ``user`` scoped to their project, expired when this returns.

        Issued by a second Keystone process on the same database and Fernet
        keys with ``[token] expiration`` of :data:`SHORT_TOKEN_SECONDS`: the
        expiry is inside the Fernet payload, so the main Keystone sees a
        genuine token past its time.
        """
        if self._short is None:
            overlay = self.workdir / "short-tokens.conf"
            overlay.write_text(f"[token]\nexpiration = {SHORT_TOKEN_SECONDS}\n")
            self._short = _Server(self.venv, self.workdir, "keystone-short-tokens",
                                  [self.config, overlay])
            self._short.start()
        assert user.project_id is not None, f"{user.name} has no project"
        token, document = self._issue(user.name, user.password,
                                      {"project": {"id": user.project_id}},
                                      base=self._short.url)
        expires = datetime.datetime.fromisoformat(document["expires_at"].replace("Z", "+00:00"))
        # Keystone compares whole seconds: wait one more.
        wait = (expires - datetime.datetime.now(datetime.UTC)).total_seconds() + 1.0
        if wait > 0:
            time.sleep(wait)
        return token

    def authtoken_options(self) -> dict[str, str]:
        """A ``[keystone_authtoken]`` section for keystonemiddleware, as the service user.

        Token caching is off, so that a revoked token is refused at once
        (keystonemiddleware otherwise trusts a validated token for
        ``token_cache_time``, 300 s).
        """
        assert self.service_user is not None
        return {
            "www_authenticate_uri": f"{self.url}/v3",
            "auth_url": f"{self.url}/v3",
            "auth_type": "password",
            "username": self.service_user.name,
            "password": self.service_user.password,
            "user_domain_id": "default",
            "project_name": "service",
            "project_domain_id": "default",
            "token_cache_time": "-1",
        }


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    """A Keystone of this test session: installed once (cached), started once."""
    venv = side_venv()
    built, seconds = venv.ensure(_install)
    print(f"\nkeystone venv {venv.path} {'built' if built else 'reused'} in {seconds:.1f} s")
    server = Keystone(venv, tmp_path_factory.mktemp("keystone"))
    try:
        server.bootstrap()
        server.start()
        yield server
    finally:
        server.stop()
