"""Fixtures shared by every test: the corpus, and databases of their own.

Services (PostgreSQL, MariaDB, RabbitMQ) and the corpus are used for real.
When one is absent the tests that need it are skipped on a developer's
machine, but fail under ``CI=true``, where everything must be present.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"

#: Admin URLs of the database servers; each test gets a database of its own on them.
PG_ADMIN = os.environ.get("PANKO_COLLECTOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("PANKO_COLLECTOR_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
RABBIT_HOST = os.environ.get("PANKO_COLLECTOR_TEST_RABBIT", "127.0.0.1:5672")


def missing(what: str) -> None:
    """Skip the test, or fail it in CI where nothing may be missing."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true", pytrace=False)
    pytest.skip(f"{what} is not available")


def data_dir() -> Path:
    """The notification corpus: $PANKO_COLLECTOR_DATA or ../shared/data."""
    path = Path(os.environ.get("PANKO_COLLECTOR_DATA", REPO.parent / "shared" / "data"))
    if not (path / "notifications").is_dir():
        missing(f"the notification corpus at {path}")
    return path


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return data_dir()


def port_open(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def unique_name(prefix: str = "pc_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _hostport(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return f"{u.host or '127.0.0.1'}:{u.port or (5432 if 'postgres' in u.drivername else 3306)}"


def _server_database(backend: str) -> Iterator[str]:
    """Create a fresh database on a server, yield its bare URL, drop it afterwards."""
    from sqlalchemy.engine import make_url

    name = unique_name()
    if backend == "postgresql":
        if not port_open(_hostport(PG_ADMIN)):
            missing("PostgreSQL")
        import psycopg

        admin = make_url(PG_ADMIN)
        conninfo = dict(host=admin.host, port=admin.port or 5432, user=admin.username,
                        dbname=admin.database)
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin.set(database=name).render_as_string(hide_password=False)
        finally:
            with psycopg.connect(**conninfo, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        if not port_open(_hostport(MYSQL_ADMIN)):
            missing("MariaDB")
        import pymysql

        admin = make_url(MYSQL_ADMIN)
        params = dict(host=admin.host, port=admin.port or 3306, user=admin.username,
                      password=admin.password or "")
        conn = pymysql.connect(**params, autocommit=True)
        try:
            conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
        try:
            url = admin.set(database=name).update_query_dict({"charset": "utf8mb4"})
            yield url.render_as_string(hide_password=False)
        finally:
            conn = pymysql.connect(**params, autocommit=True)
            try:
                conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
            finally:
                conn.close()


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A bare URL (no driver suffix) of an empty database of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.sqlite'}"
    else:
        yield from _server_database(request.param)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL database of this test's own."""
    yield from _server_database("postgresql")


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """An empty MariaDB database of this test's own."""
    yield from _server_database("mysql")
