"""Drop the foreign keys from the trait tables to ``event``.

The database checked every trait row against ``event`` as it went in (a
query of the event's row, locking it, per trait: some 20 per event). On
PostgreSQL that was half the database's CPU per stored event: the same
10,000 events of 23 traits through ``record_events`` took 0.36 to 0.42 ms
of backend CPU each with the keys, 0.18 to 0.22 ms without; in
bench/e2e.py, 0.44 against 0.24 ms. Deleting events got faster too, since
each deleted event was checked against the four trait tables
(``clear_expired_data``: 8,000 against 15,000 events/s). Nothing is lost
by it: ``record_events`` only writes traits of events it has just
inserted, in the same transaction, and ``clear_expired_data`` deletes the
traits of an event in the transaction that deletes the event.
``event.event_type_id`` keeps its foreign key (one check per event; the
writer relies on it to notice an event type removed by the expiry).

On a database adopted from Panko the constraints are found by reflection,
whatever name Panko's database gave them; rows are not touched. On SQLite
each trait table is copied without the key (alembic's batch mode).

Revision ID: pc0004_no_trait_foreign_keys
Revises: pc0003_trait_value_indexes
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "pc0004_no_trait_foreign_keys"
down_revision: str | None = "pc0003_trait_value_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("trait_text", "trait_int", "trait_float", "trait_datetime")

# SQLite reflects the keys that pc0001 or Panko created without a name;
# batch mode names them by this convention so that they can be dropped.
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        keys = [fk for fk in sa.inspect(bind).get_foreign_keys(table)
                if fk["referred_table"] == "event"]
        if not keys:
            continue
        with op.batch_alter_table(table, naming_convention=NAMING) as batch:
            for fk in keys:
                batch.drop_constraint(fk["name"] or f"{table}_event_id_fkey",
                                      type_="foreignkey")


def downgrade() -> None:
    # Fails if traits without their event were written meanwhile: delete
    # them first (DELETE FROM trait_text WHERE event_id NOT IN (SELECT id FROM event)).
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(f"{table}_event_id_fkey", "event", ["event_id"], ["id"])
