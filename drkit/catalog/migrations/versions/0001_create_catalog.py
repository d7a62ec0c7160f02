"""Create the catalog: runs, snapshots, artifacts, copies, drills, locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies of the column types as of this revision; models.py may move on
TIMESTAMP = sa.DateTime(timezone=True)
SHA256 = sa.String(64)
NAME = sa.String(200)
WORD = sa.String(16)


def upgrade() -> None:
    create_runs()
    create_snapshots()
    create_artifacts()
    create_copies()
    create_drills()
    create_locks()


def create_runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan", NAME, nullable=False),
        sa.Column("kind", WORD, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("outcome", WORD, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_plan_kind_started_at", "runs", ["plan", "kind", "started_at"])


def create_snapshots() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("plan", NAME, nullable=False),
        sa.Column("taken_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("status", WORD, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("manifest_sha256", SHA256, nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("plaintext_size", sa.BigInteger(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_snapshots_run_id_runs", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_snapshots_plan_taken_at", "snapshots", ["plan", "taken_at"])


def create_artifacts() -> None:
    op.create_table(
        "artifacts",
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("source", NAME, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("compression", WORD, nullable=False),
        sa.Column("plaintext_size", sa.BigInteger(), nullable=False),
        sa.Column("plaintext_sha256", SHA256, nullable=False),
        sa.Column("fingerprint", sa.JSON(), nullable=False),
        sa.Column("key_names", sa.JSON(), nullable=False),
        sa.Column("encrypted_key", sa.Text(), nullable=True),
        sa.Column("encrypted_size", sa.BigInteger(), nullable=True),
        sa.Column("encrypted_sha256", SHA256, nullable=True),
        sa.Column("raw_key", sa.Text(), nullable=True),
        sa.Column("raw_size", sa.BigInteger(), nullable=True),
        sa.Column("raw_sha256", SHA256, nullable=True),
        sa.PrimaryKeyConstraint("snapshot_id", "source", name="pk_artifacts"),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name="fk_artifacts_snapshot_id_snapshots",
            ondelete="CASCADE",
        ),
    )


def create_copies() -> None:
    op.create_table(
        "copies",
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("store", NAME, nullable=False),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("status", WORD, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("manifest_sha256", SHA256, nullable=True),
        sa.Column("last_verified_at", TIMESTAMP, nullable=True),
        sa.Column("last_verify_ok", sa.Boolean(), nullable=True),
        sa.Column("last_verify_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("snapshot_id", "store", name="pk_copies"),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name="fk_copies_snapshot_id_snapshots",
            ondelete="CASCADE",
        ),
    )


def create_drills() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan", NAME, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("store", NAME, nullable=False),
        sa.Column("sandbox_kinds", sa.JSON(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=False),
        sa.Column("outcome", WORD, nullable=False),
        sa.Column("rto_seconds", sa.Float(), nullable=True),
        sa.Column("rpo_seconds", sa.Float(), nullable=True),
        sa.Column("phases", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_drills"),
    )
    op.create_index("ix_drills_plan_started_at", "drills", ["plan", "started_at"])


def create_locks() -> None:
    op.create_table(
        "locks",
        sa.Column("plan", NAME, nullable=False),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("acquired_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("plan", name="pk_locks"),
    )


def downgrade() -> None:
    for table in ("locks", "drills", "copies", "artifacts", "snapshots", "runs"):
        op.drop_table(table)
