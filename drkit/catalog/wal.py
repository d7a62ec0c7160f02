"""The continuity ledger: which WAL files (segments, partial segments, timeline histories)
each store holds, written by ``drkit archive`` as each one becomes durable there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from drkit.catalog.models import WalObjectRow


@dataclass(frozen=True)
class WalRecord:
    """One WAL file in one store."""

    plan: str
    source: str
    store: str
    kind: str  # segment | partial | history
    name: str
    size: int
    sha256: str
    valid_bytes: int | None
    covered_until: datetime | None
    archived_at: datetime
    detail: str | None = None


def record_wal_object(session: Session, record: WalRecord) -> None:
    """Insert or update the row of one WAL file in one store."""
    row = session.scalars(
        select(WalObjectRow).where(
            WalObjectRow.plan == record.plan,
            WalObjectRow.source == record.source,
            WalObjectRow.store == record.store,
            WalObjectRow.kind == record.kind,
            WalObjectRow.name == record.name,
        )
    ).one_or_none()
    if row is None:
        row = WalObjectRow(
            plan=record.plan,
            source=record.source,
            store=record.store,
            kind=record.kind,
            name=record.name,
        )
        session.add(row)
    row.size = record.size
    row.sha256 = record.sha256
    row.valid_bytes = record.valid_bytes
    row.covered_until = record.covered_until
    row.archived_at = record.archived_at
    row.detail = record.detail


def forget_wal_objects(
    session: Session, plan: str, source: str, store: str, kind: str, names: list[str]
) -> int:
    """Remove the rows of WAL files a store no longer holds; how many went."""
    result = session.execute(
        delete(WalObjectRow).where(
            WalObjectRow.plan == plan,
            WalObjectRow.source == source,
            WalObjectRow.store == store,
            WalObjectRow.kind == kind,
            WalObjectRow.name.in_(names),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_wal_objects(
    session: Session, plan: str, source: str | None = None, store: str | None = None
) -> list[WalRecord]:
    query = select(WalObjectRow).where(WalObjectRow.plan == plan)
    if source is not None:
        query = query.where(WalObjectRow.source == source)
    if store is not None:
        query = query.where(WalObjectRow.store == store)
    rows = session.scalars(query.order_by(WalObjectRow.store, WalObjectRow.name))
    return [
        WalRecord(
            plan=row.plan,
            source=row.source,
            store=row.store,
            kind=row.kind,
            name=row.name,
            size=row.size,
            sha256=row.sha256,
            valid_bytes=row.valid_bytes,
            covered_until=row.covered_until,
            archived_at=row.archived_at,
            detail=row.detail,
        )
        for row in rows
    ]
