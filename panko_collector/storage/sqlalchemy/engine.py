"""The engine: which driver a URL gets, and how each database's sessions are set up.

Everything that depends on the database but not on the data is here, done
once per connection, so that the write and read paths can assume it:
SQLite enforces foreign keys and lets SQLAlchemy run its transactions
(SAVEPOINTs work), MySQL/MariaDB refuse bad values instead of clipping them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from panko_collector.storage.sqlalchemy.tables import MYSQL_DIALECTS

#: The driver of each bare scheme: PyMySQL and psycopg 3, the ones we install.
_DRIVERS = {"mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql",
            "postgresql": "postgresql+psycopg"}


def dress_url(url: str) -> str:
    """``url`` with our driver spelled out for a bare mysql://, mariadb:// or
    postgresql://; any other URL (one naming its driver, SQLite) as given."""
    u = make_url(url)
    if u.drivername in _DRIVERS:
        return u.set(drivername=_DRIVERS[u.drivername]).render_as_string(hide_password=False)
    return url


def create_engine(url: str) -> Engine:
    """An engine for ``url`` (already dressed), with its dialect's session set-up.

    Pooled connections are pinged before use, so one the server closed while
    idle is replaced instead of failing the next call. SQLite waits up to
    30 s for a lock held by another process before reporting it busy.
    """
    u = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if u.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    engine = sa.create_engine(u, **kwargs)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling breaks SAVEPOINT; take it over.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    elif engine.dialect.name in MYSQL_DIALECTS:

        @sa.event.listens_for(engine, "connect")
        def _mysql_connect(dbapi_conn: Any, _record: Any) -> None:
            # Strict mode: refuse out-of-range or over-long values instead of
            # silently clipping them, whatever the server's default.
            cur = dbapi_conn.cursor()
            cur.execute("SET SESSION sql_mode = 'TRADITIONAL'")
            cur.close()

    return engine
