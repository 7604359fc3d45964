"""The schema's life: creating, migrating, adopting a Panko database, emptying.

The migrations themselves are alembic's, in the top-level ``migrations/``
(``package_data.migrations_dir()``); this module decides which revision a
database is at, and takes over one that Panko created without touching its
rows.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from oslo_log import log
from sqlalchemy.engine import Connection, Engine

from panko_collector import errors, package_data
from panko_collector.storage.sqlalchemy import tables

LOG = log.getLogger(__name__)

#: alembic revision that Panko's own (single) migration left in alembic_version.
PANKO_ALEMBIC_REVISION = "c3955547bff2"
#: Our revision that describes Panko's schema; adopted databases are stamped with it.
BASELINE_REVISION = "pc0001_panko_schema"
#: Key of the PostgreSQL advisory lock that serialises concurrent upgrades.
_UPGRADE_LOCK = 7318120101


def alembic_config(conn: Connection | None) -> Any:
    """An alembic configuration of our migrations that runs them on ``conn``."""
    # alembic is imported only to change the schema: importing it logs
    # INFO lines about its plugins, which commands that only read (and
    # the daemon) have no business printing.
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(package_data.migrations_dir()))
    config.attributes["connection"] = conn
    return config


def upgrade(engine: Engine) -> None:
    """Create the schema, or migrate it to the newest revision, in one transaction.

    A database Panko created (its tables without our alembic revision, or
    Panko's own revision) is stamped with the baseline revision and then
    upgraded, without its rows being touched. A revision that is neither
    ours nor Panko's raises ``StorageError``.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two dbsync at once would race to create the same tables.
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})"))
        config = alembic_config(conn)
        ours = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
        current = set(MigrationContext.configure(conn).get_current_heads())
        present = set(sa.inspect(conn).get_table_names())
        if not current and "event" in present:
            LOG.info("Adopting the Panko database found at %s", engine.url)
            command.stamp(config, BASELINE_REVISION)
        elif current and not current <= ours:
            if current != {PANKO_ALEMBIC_REVISION}:
                raise errors.StorageError(
                    f"the database is at alembic revision(s) {sorted(current)}, "
                    "which this panko-collector does not know; is it newer?")
            LOG.info("Adopting the Panko database (revision %s) found at %s",
                     PANKO_ALEMBIC_REVISION, engine.url)
            command.stamp(config, BASELINE_REVISION, purge=True)
        command.upgrade(config, "head")


def clear(engine: Engine) -> None:
    """Delete every row of every table, children first, in one transaction."""
    with engine.begin() as conn:
        for table in reversed(tables.Base.metadata.sorted_tables):
            conn.execute(table.delete())
