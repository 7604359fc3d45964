"""Panko's event schema, as Panko's last migration left it.

A database that Panko created already has exactly these tables:
``Connection.upgrade()`` stamps it with this revision instead of running it.

Revision ID: pc0001_panko_schema
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from panko_collector.storage.sqlalchemy.tables import DOUBLE_PRECISION, PreciseTimestamp

revision: str = "pc0001_panko_schema"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "event_type",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("desc", sa.String(255), unique=True),
        **MYSQL,
    )
    op.create_table(
        "event",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.String(50), unique=True),
        sa.Column("generated", PreciseTimestamp()),
        sa.Column("event_type_id", sa.Integer, sa.ForeignKey("event_type.id")),
        sa.Column("raw", sa.Text),
        **MYSQL,
    )
    op.create_index("ix_event_message_id", "event", ["message_id"])
    op.create_index("ix_event_type_id", "event", ["event_type_id"])
    op.create_index("ix_event_generated", "event", ["generated"])
    for name, value_type in (
        ("trait_text", sa.String(255)),
        ("trait_int", sa.BigInteger()),
        ("trait_float", DOUBLE_PRECISION),
        ("trait_datetime", PreciseTimestamp()),
    ):
        op.create_table(
            name,
            sa.Column("event_id", sa.Integer, sa.ForeignKey("event.id"), primary_key=True),
            sa.Column("key", sa.String(255), primary_key=True),
            sa.Column("value", value_type),
            **MYSQL,
        )
        op.create_index(f"ix_{name}_event_id_key", name, ["event_id", "key"])


def downgrade() -> None:
    for name in ("trait_datetime", "trait_float", "trait_int", "trait_text"):
        op.drop_table(name)
    op.drop_table("event")
    op.drop_table("event_type")
