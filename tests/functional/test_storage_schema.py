"""Schema: migrations, drift against the models, adoption of Panko's databases, dbsync."""

# ruff: noqa: E501  (the DDL below is kept as a database would print it)

from __future__ import annotations

import decimal
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from panko_collector import errors, package_data, storage
from panko_collector.storage import impl_sqlalchemy
from panko_collector.storage.sqlalchemy import tables as sql_models
from tests.conftest import REPO
from tests.functional.storage_helpers import BASE, T, event, ids, open_storage

HEAD = "pc0004_no_trait_foreign_keys"


def engine_of(conn: storage.Connection) -> sa.Engine:
    return conn._engine  # type: ignore[attr-defined, no-any-return]


def revision(engine: sa.Engine) -> set[str]:
    with engine.connect() as c:
        return set(MigrationContext.configure(c).get_current_heads())


def test_migrations_are_found_through_the_package() -> None:
    location = package_data.migrations_dir()
    assert (location / "env.py").is_file() and (location / "script.py.mako").is_file()
    config = impl_sqlalchemy.Connection._alembic_config(None)  # type: ignore[arg-type]
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [HEAD]
    assert {r.revision for r in script.walk_revisions()} == {
        HEAD, "pc0003_trait_value_indexes", "pc0002_bigint_trait_int", "pc0001_panko_schema"}


@pytest.mark.slow
def test_the_wheel_carries_the_migrations_and_definitions(tmp_path: Path) -> None:
    """The wheel has both inside the package, and its commands find them
    there: dbsync creates the schema, convert uses the shipped definitions."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("panko_collector-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("env.py", "script.py.mako", "versions/pc0001_panko_schema.py",
                   "versions/pc0002_bigint_trait_int.py",
                   "versions/pc0003_trait_value_indexes.py",
                   "versions/pc0004_no_trait_foreign_keys.py"):
        assert f"panko_collector/migrations/{needed}" in names
    assert "panko_collector/data/event_definitions.yaml" in names
    assert not any(n.startswith(("migrations/", "etc/")) for n in names)

    # Installed beside the dependencies of this environment, away from the
    # source tree: the commands must run on what the wheel holds.
    target, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(target)}

    def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *argv], cwd=work, env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)

    # panko_collector.api.wsgi builds the application from the configuration
    # files when imported, as WSGI servers expect of it: not importable here.
    every = run("-c", "import importlib, pkgutil, panko_collector as p; "
                      "[importlib.import_module(m.name) for m in "
                      "pkgutil.walk_packages(p.__path__, 'panko_collector.') "
                      "if 'migrations' not in m.name and not m.name.endswith('.wsgi')]; "
                      "print(p.__file__)")
    assert every.stdout.strip() == str(target / "panko_collector" / "__init__.py"), every.stderr
    where = run("-c", "import panko_collector.package_data as p; "
                      "print(p.migrations_dir()); print(p.default_definitions())")
    assert where.stdout.splitlines() == [
        str(target / "panko_collector" / "migrations"),
        str(target / "panko_collector" / "data" / "event_definitions.yaml")]
    dbsync = run(str(target / "bin" / "panko-collector-dbsync"))
    assert dbsync.returncode == 0, dbsync.stderr
    tables = sa.inspect(sa.create_engine(f"sqlite:///{work / 'panko-collector.sqlite'}"))
    assert {"event", "event_type", "trait_text"} <= set(tables.get_table_names())
    notification = {"event_type": "compute.instance.create.end", "priority": "info",
                    "publisher_id": "compute.host-1", "timestamp": "2026-12-01 10:00:00",
                    "message_id": "m-1", "payload": {"instance_id": "i-1"}}
    convert = run(str(target / "bin" / "panko-collector-convert"), "-",
                  stdin=json.dumps(notification))
    assert convert.returncode == 0, convert.stderr
    (line,) = convert.stdout.splitlines()
    assert {"name": "instance_id", "type": "text", "value": "i-1"} in json.loads(line)["traits"]


def test_upgrade_twice_is_harmless(db_url: str) -> None:
    for conn in open_storage(db_url):
        assert revision(engine_of(conn)) == {HEAD}
        conn.record_events([event("m", [T("i", T.INT_TYPE, 7)])])
        conn.upgrade()
        assert revision(engine_of(conn)) == {HEAD}
        assert ids(conn.get_events(storage.EventFilter())) == ["m"]


def drift(conn: storage.Connection) -> list[object]:
    """What alembic finds different between the database and the models."""
    with engine_of(conn).connect() as c:
        context = MigrationContext.configure(c, opts={"compare_type": True})
        return list(compare_metadata(context, sql_models.Base.metadata))


def test_models_and_migrations_describe_the_same_schema(db_url: str) -> None:
    for conn in open_storage(db_url):
        assert drift(conn) == []


def test_the_trait_foreign_keys_come_back_on_downgrade(db_url: str) -> None:
    def keys(engine: sa.Engine) -> set[str]:
        """The trait tables with a foreign key to event."""
        with engine.connect() as c:
            inspector = sa.inspect(c)
            return {t for t in ("trait_text", "trait_int", "trait_float", "trait_datetime")
                    for fk in inspector.get_foreign_keys(t) if fk["referred_table"] == "event"}

    for conn in open_storage(db_url):
        engine = engine_of(conn)
        assert keys(engine) == set()
        conn.record_events([event("m", [T("i", T.INT_TYPE, 7), T("s", T.TEXT_TYPE, "x")])])
        with engine.begin() as c:
            command.downgrade(impl_sqlalchemy.Connection._alembic_config(c),
                              "pc0003_trait_value_indexes")
        assert keys(engine) == {"trait_text", "trait_int", "trait_float", "trait_datetime"}
        conn.upgrade()
        assert keys(engine) == set() and drift(conn) == []
        (m,) = conn.get_events(storage.EventFilter())
        assert [(t.name, t.value) for t in m.traits] == [("i", 7), ("s", "x")]


def test_an_unknown_revision_is_refused(db_url: str) -> None:
    for conn in open_storage(db_url):
        with engine_of(conn).begin() as c:
            c.execute(sa.text("UPDATE alembic_version SET version_num = 'from_the_future'"))
        with pytest.raises(errors.StorageError, match="from_the_future"):
            conn.upgrade()


# Panko's tables as its last migration left them (what Base.metadata.create_all
# in Panko produced, with trait_int.value widened to BIGINT in c3955547bff2).
PANKO_DDL = {
    "postgresql": """
CREATE TABLE event_type (id SERIAL NOT NULL, "desc" VARCHAR(255), PRIMARY KEY (id), UNIQUE ("desc"));
CREATE TABLE event (id SERIAL NOT NULL, message_id VARCHAR(50), generated TIMESTAMP WITHOUT TIME ZONE,
  raw TEXT, event_type_id INTEGER, PRIMARY KEY (id), UNIQUE (message_id),
  FOREIGN KEY(event_type_id) REFERENCES event_type (id));
CREATE INDEX ix_event_message_id ON event (message_id);
CREATE INDEX ix_event_type_id ON event (event_type_id);
CREATE INDEX ix_event_generated ON event (generated);
CREATE TABLE trait_text (event_id INTEGER NOT NULL, key VARCHAR(255) NOT NULL, value VARCHAR(255),
  PRIMARY KEY (event_id, key), FOREIGN KEY(event_id) REFERENCES event (id));
CREATE INDEX ix_trait_text_event_id_key ON trait_text (event_id, key);
CREATE TABLE trait_int (event_id INTEGER NOT NULL, key VARCHAR(255) NOT NULL, value {INT},
  PRIMARY KEY (event_id, key), FOREIGN KEY(event_id) REFERENCES event (id));
CREATE INDEX ix_trait_int_event_id_key ON trait_int (event_id, key);
CREATE TABLE trait_float (event_id INTEGER NOT NULL, key VARCHAR(255) NOT NULL,
  value DOUBLE PRECISION, PRIMARY KEY (event_id, key), FOREIGN KEY(event_id) REFERENCES event (id));
CREATE INDEX ix_trait_float_event_id_key ON trait_float (event_id, key);
CREATE TABLE trait_datetime (event_id INTEGER NOT NULL, key VARCHAR(255) NOT NULL,
  value TIMESTAMP WITHOUT TIME ZONE, PRIMARY KEY (event_id, key),
  FOREIGN KEY(event_id) REFERENCES event (id));
CREATE INDEX ix_trait_datetime_event_id_key ON trait_datetime (event_id, key);
""",
    "mysql": """
CREATE TABLE event_type (id INTEGER NOT NULL AUTO_INCREMENT, `desc` VARCHAR(255), PRIMARY KEY (id),
  UNIQUE (`desc`)) ENGINE=InnoDB CHARSET=utf8;
CREATE TABLE event (id INTEGER NOT NULL AUTO_INCREMENT, message_id VARCHAR(50),
  generated DECIMAL(20, 6), raw TEXT, event_type_id INTEGER, PRIMARY KEY (id), UNIQUE (message_id),
  FOREIGN KEY(event_type_id) REFERENCES event_type (id)) ENGINE=InnoDB CHARSET=utf8;
CREATE INDEX ix_event_message_id ON event (message_id);
CREATE INDEX ix_event_type_id ON event (event_type_id);
CREATE INDEX ix_event_generated ON event (generated);
CREATE TABLE trait_text (event_id INTEGER NOT NULL, `key` VARCHAR(255) NOT NULL, value VARCHAR(255),
  PRIMARY KEY (event_id, `key`), FOREIGN KEY(event_id) REFERENCES event (id))
  ENGINE=InnoDB CHARSET=utf8;
CREATE INDEX ix_trait_text_event_id_key ON trait_text (event_id, `key`);
CREATE TABLE trait_int (event_id INTEGER NOT NULL, `key` VARCHAR(255) NOT NULL, value {INT},
  PRIMARY KEY (event_id, `key`), FOREIGN KEY(event_id) REFERENCES event (id))
  ENGINE=InnoDB CHARSET=utf8;
CREATE INDEX ix_trait_int_event_id_key ON trait_int (event_id, `key`);
CREATE TABLE trait_float (event_id INTEGER NOT NULL, `key` VARCHAR(255) NOT NULL, value DOUBLE,
  PRIMARY KEY (event_id, `key`), FOREIGN KEY(event_id) REFERENCES event (id))
  ENGINE=InnoDB CHARSET=utf8;
CREATE INDEX ix_trait_float_event_id_key ON trait_float (event_id, `key`);
CREATE TABLE trait_datetime (event_id INTEGER NOT NULL, `key` VARCHAR(255) NOT NULL,
  value DECIMAL(20, 6), PRIMARY KEY (event_id, `key`), FOREIGN KEY(event_id) REFERENCES event (id))
  ENGINE=InnoDB CHARSET=utf8;
CREATE INDEX ix_trait_datetime_event_id_key ON trait_datetime (event_id, `key`);
""",
    "sqlite": """
CREATE TABLE event_type (id INTEGER NOT NULL, "desc" VARCHAR(255), PRIMARY KEY (id), UNIQUE ("desc"));
CREATE TABLE event (id INTEGER NOT NULL, message_id VARCHAR(50), generated DATETIME, raw TEXT,
  event_type_id INTEGER, PRIMARY KEY (id), UNIQUE (message_id),
  FOREIGN KEY(event_type_id) REFERENCES event_type (id));
CREATE INDEX ix_event_message_id ON event (message_id);
CREATE INDEX ix_event_type_id ON event (event_type_id);
CREATE INDEX ix_event_generated ON event (generated);
CREATE TABLE trait_text (event_id INTEGER NOT NULL, "key" VARCHAR(255) NOT NULL, value VARCHAR(255),
  PRIMARY KEY (event_id, "key"), FOREIGN KEY(event_id) REFERENCES event (id));
CREATE INDEX ix_trait_text_event_id_key ON trait_text (event_id, "key");
CREATE TABLE trait_int (event_id INTEGER NOT NULL, "key" VARCHAR(255) NOT NULL, value {INT},
  PRIMARY KEY (event_id, "key"), FOREIGN KEY(event_id) REFERENCES event (id));
CREATE INDEX ix_trait_int_event_id_key ON trait_int (event_id, "key");
CREATE TABLE trait_float (event_id INTEGER NOT NULL, "key" VARCHAR(255) NOT NULL, value FLOAT,
  PRIMARY KEY (event_id, "key"), FOREIGN KEY(event_id) REFERENCES event (id));
CREATE INDEX ix_trait_float_event_id_key ON trait_float (event_id, "key");
CREATE TABLE trait_datetime (event_id INTEGER NOT NULL, "key" VARCHAR(255) NOT NULL,
  value DATETIME, PRIMARY KEY (event_id, "key"), FOREIGN KEY(event_id) REFERENCES event (id));
CREATE INDEX ix_trait_datetime_event_id_key ON trait_datetime (event_id, "key");
""",
}


def _backend(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0]


def _panko_rows(dialect: str) -> list[str]:
    """Rows as Panko wrote them (MySQL timestamps as epoch decimals)."""
    if dialect == "mysql":
        gen, when = "1709294400.123456", "1700000000.000001"
    else:
        gen, when = "'2024-03-01 12:00:00.123456'", "'2023-11-14 22:13:20.000001'"
    # Ids come from the tables' own sequences, as when Panko inserted them.
    event_id = "(SELECT id FROM event WHERE message_id = 'panko-1')"
    return [
        "INSERT INTO event_type ({q}desc{q}) VALUES ('compute.instance.exists')",
        f"INSERT INTO event (message_id, generated, raw, event_type_id) VALUES "
        f"('panko-1', {gen}, '{{\"payload\": 1}}', (SELECT id FROM event_type))",
    ] + [
        f"INSERT INTO {table} (event_id, {{q}}key{{q}}, value) SELECT {event_id}, '{key}', {value}"
        for table, key, value in (("trait_text", "project_id", "'p'"),
                                  ("trait_int", "memory_mb", "512"),
                                  ("trait_float", "ratio", "0.5"),
                                  ("trait_datetime", "at", when))
    ]


def _make_panko_database(url: str, variant: str) -> None:
    dialect = _backend(url)
    ddl = PANKO_DDL[dialect].replace("{INT}", "BIGINT" if variant == "alembic" else "INTEGER")
    quote = "`" if dialect == "mysql" else '"'
    engine = sa.create_engine(impl_sqlalchemy.Connection.dress_url(url))
    try:
        with engine.begin() as c:
            for statement in filter(str.strip, ddl.split(";")):
                c.exec_driver_sql(statement)
            for statement in _panko_rows(dialect):
                c.exec_driver_sql(statement.replace("{q}", quote))
            if variant == "alembic":
                # Panko from 2017 on kept its one alembic revision.
                c.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL,"
                                  " PRIMARY KEY (version_num))")
                c.exec_driver_sql("INSERT INTO alembic_version VALUES ('c3955547bff2')")
    finally:
        engine.dispose()


def _snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = sa.create_engine(impl_sqlalchemy.Connection.dress_url(url))
    try:
        with engine.connect() as c:
            return {t: sorted(tuple(r) for r in c.execute(sa.text(f"SELECT * FROM {t}")))
                    for t in ("event_type", "event", "trait_text", "trait_int", "trait_float",
                              "trait_datetime")}
    finally:
        engine.dispose()


@pytest.mark.parametrize("variant", ["alembic", "pre-alembic"])
def test_adopts_a_database_panko_created(db_url: str, variant: str) -> None:
    _make_panko_database(db_url, variant)
    before = _snapshot(db_url)
    conn = storage.get_connection(db_url)
    try:
        conn.upgrade()
        conn.upgrade()
        assert revision(engine_of(conn)) == {HEAD}
        # Panko's foreign keys from the traits to event are gone, whatever
        # their names; the rest is as the models say.
        left = drift(conn)
        if _backend(db_url) == "sqlite" and variant == "pre-alembic":
            # pc0002 leaves SQLite's INTEGER be: it holds 64 bits anyway.
            left = [d for d in left if d != [("modify_type", None, "trait_int", "value",
                                               *d[0][4:])]]
        assert left == []
        after = _snapshot(db_url)
        assert after == before
        (old,) = conn.get_events(storage.EventFilter())
        assert old.message_id == "panko-1" and old.event_type == "compute.instance.exists"
        assert old.generated == BASE and old.raw == {"payload": 1}
        assert [(t.name, t.value) for t in old.traits] == [
            ("at", BASE.replace(2023, 11, 14, 22, 13, 20, 1)), ("memory_mb", 512),
            ("project_id", "p"), ("ratio", 0.5)]
        # The widened column takes 64-bit values; new events sit beside old ones.
        r = conn.record_events([event("new", [T("memory_mb", T.INT_TYPE, 2**40)],
                                      event_type="compute.instance.exists")])
        assert r.stored == 1, r.failed
        assert ids(conn.get_events(storage.EventFilter(
            traits_filter=[{"key": "memory_mb", "op": "gt", "integer": 2**33}]))) == ["new"]
    finally:
        conn.dispose()
    if _backend(db_url) == "mysql":
        assert isinstance(before["event"][0][2], decimal.Decimal)  # stored as Panko did


def _dbsync(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("panko-collector-dbsync")
    env = {**os.environ, "PYTHONPATH": ""}
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_dbsync_default_is_a_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    done = _dbsync([], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "panko-collector.sqlite").is_file()
    conn = storage.get_connection(f"sqlite:///{tmp_path / 'panko-collector.sqlite'}")
    assert revision(engine_of(conn)) == {HEAD}


def test_dbsync_reads_the_config_file(tmp_path: Path, db_url: str) -> None:
    conf = tmp_path / "pc.conf"
    conf.write_text(f"[database]\nconnection = {db_url}\n")
    done = _dbsync(["--config-file", str(conf)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "panko-collector.sqlite").exists()
    conn = storage.get_connection(db_url)
    try:
        assert revision(engine_of(conn)) == {HEAD}
    finally:
        conn.dispose()
    assert _dbsync(["--config-file", str(conf)], tmp_path).returncode == 0


def test_dbsync_fails_clearly_when_the_database_is_down(tmp_path: Path) -> None:
    conf = tmp_path / "pc.conf"
    conf.write_text("[database]\nconnection = postgresql://postgres@127.0.0.1:1/x\n")
    done = _dbsync(["--config-file", str(conf)], tmp_path)
    assert done.returncode == 1
    assert "database unavailable" in done.stdout + done.stderr
