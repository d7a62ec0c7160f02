"""One outcome vocabulary: drills end ok / failed / breached / interrupted like every run.

Release 0.1.0 recorded drills as ``passed`` and ``error``; they become ``ok`` and ``failed``.

Revision ID: 0002_outcomes
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_outcomes"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE drills SET outcome = 'ok' WHERE outcome = 'passed'")
    op.execute("UPDATE drills SET outcome = 'failed' WHERE outcome = 'error'")


def downgrade() -> None:
    op.execute("UPDATE drills SET outcome = 'passed' WHERE outcome = 'ok'")
    op.execute("UPDATE drills SET outcome = 'error' WHERE outcome IN ('failed', 'interrupted')")
