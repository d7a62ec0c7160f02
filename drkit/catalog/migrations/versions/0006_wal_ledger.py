"""The continuity ledger of continuous WAL archiving: which WAL file each store holds.

Revision ID: 0006_wal_ledger
Revises: 0005_evidence
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_wal_ledger"
down_revision: str | Sequence[str] | None = "0005_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = sa.String(200)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wal_objects",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan", NAME, nullable=False),
        sa.Column("source", NAME, nullable=False),
        sa.Column("store", NAME, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("valid_bytes", sa.BigInteger(), nullable=True),
        sa.Column("covered_until", TIMESTAMP, nullable=True),
        sa.Column("archived_at", TIMESTAMP, nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_wal_objects"),
    )
    op.create_index(
        "ix_wal_objects_plan_source_store_kind_name",
        "wal_objects",
        ["plan", "source", "store", "kind", "name"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_wal_objects_plan_source_store_kind_name", table_name="wal_objects")
    op.drop_table("wal_objects")
