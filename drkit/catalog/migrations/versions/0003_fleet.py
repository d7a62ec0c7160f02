"""Fleet scale: per-plan run totals kept as runs finish, each snapshot's count of good copies
and regions, and an index for unfinished runs.

``run_totals`` counts finished runs per plan, job, outcome and duration bucket, with their
seconds and stored bytes, so metrics export counters and histograms without reading history.
It is filled here from the runs already recorded.

Revision ID: 0003_fleet
Revises: 0002_outcomes
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003_fleet"
down_revision: str | Sequence[str] | None = "0002_outcomes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies as of this revision; drkit.catalog.totals may move on for new rows only
BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)
BATCH = 5000
GOOD = (
    "FROM copies c WHERE c.snapshot_id = snapshots.id AND c.status = 'complete' "
    "AND (c.last_verify_ok IS NULL OR c.last_verify_ok = :yes)"
)


def upgrade() -> None:
    op.create_table(
        "run_totals",
        sa.Column("plan", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("le", sa.Float(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("plan", "kind", "outcome", "le", name="pk_run_totals"),
    )
    op.create_index("ix_runs_outcome", "runs", ["outcome"])
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("good_copies", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("good_regions", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        sa.text(
            f"UPDATE snapshots SET good_copies = (SELECT count(*) {GOOD}), "
            f"good_regions = (SELECT count(DISTINCT coalesce(c.region, '')) {GOOD})"
        ).bindparams(yes=True)
    )
    fill_totals()


def fill_totals() -> None:
    """Count the runs recorded so far, in batches (a long history must not fill memory)."""
    connection = op.get_bind()
    runs = sa.table(
        "runs",
        sa.column("id", sa.Integer()),
        sa.column("plan", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("outcome", sa.String()),
        sa.column("started_at", sa.DateTime()),
        sa.column("finished_at", sa.DateTime()),
        sa.column("summary", sa.JSON()),
    )
    totals: dict[tuple[str, str, str, float], list[float]] = {}
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(runs)
            .where(runs.c.id > last_id, runs.c.outcome != "running")
            .order_by(runs.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        for row in rows:
            seconds = _seconds(row.started_at, row.finished_at)
            le = next((bound for bound in BUCKETS if seconds <= bound), float("inf"))
            entry = totals.setdefault((row.plan, row.kind, row.outcome, le), [0, 0.0, 0])
            entry[0] += 1
            entry[1] += seconds
            entry[2] += _stored_bytes(row.summary)
    if totals:
        op.bulk_insert(
            sa.table(
                "run_totals",
                sa.column("plan", sa.String()),
                sa.column("kind", sa.String()),
                sa.column("outcome", sa.String()),
                sa.column("le", sa.Float()),
                sa.column("runs", sa.BigInteger()),
                sa.column("seconds", sa.Float()),
                sa.column("bytes", sa.BigInteger()),
            ),
            [
                {
                    "plan": plan,
                    "kind": kind,
                    "outcome": outcome,
                    "le": le,
                    "runs": int(count),
                    "seconds": seconds,
                    "bytes": int(size),
                }
                for (plan, kind, outcome, le), (count, seconds, size) in totals.items()
            ],
        )


def _seconds(started: datetime | None, finished: datetime | None) -> float:
    if started is None or finished is None:
        return 0.0
    return max(0.0, (finished - started).total_seconds())


def _stored_bytes(summary: object) -> int:
    if not isinstance(summary, dict):
        return 0
    value = summary.get("stored_bytes")
    return value if isinstance(value, int) else 0


def downgrade() -> None:
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("good_regions")
        batch.drop_column("good_copies")
    op.drop_index("ix_runs_outcome", table_name="runs")
    op.drop_table("run_totals")
