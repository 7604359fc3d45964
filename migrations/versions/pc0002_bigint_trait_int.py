"""Widen trait_int.value to BIGINT where an old Panko left it INTEGER.

Panko before July 2017 created ``trait_int.value`` as a 32-bit INTEGER;
adopted databases of that age are widened here. Databases created by
revision pc0001 already have BIGINT, and SQLite integers are 64-bit
whatever the declared type, so for them this does nothing.

Revision ID: pc0002_bigint_trait_int
Revises: pc0001_panko_schema
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "pc0002_bigint_trait_int"
down_revision: str | None = "pc0001_panko_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return
    (value,) = (c for c in sa.inspect(bind).get_columns("trait_int") if c["name"] == "value")
    if not isinstance(value["type"], sa.BigInteger):
        op.alter_column(
            "trait_int", "value", type_=sa.BigInteger(), existing_type=sa.Integer(),
            existing_nullable=True,
        )


def downgrade() -> None:
    # Narrowing could lose values; an old Panko works with BIGINT too.
    pass
