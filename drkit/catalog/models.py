"""The catalog's tables as SQLAlchemy models. Migrations under ``migrations/versions`` create
them; a test holds the two in agreement. Nothing outside ``drkit.catalog`` sees these classes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL keeps the zone; SQLite has no zone type, so values are stored as naive UTC
    and handed back aware, which keeps comparisons in SQL and in Python consistent.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("catalog timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_plan_kind_started_at", "plan", "kind", "started_at"),
        # finding the runs left `running` by killed processes reads this, not the history
        Index("ix_runs_outcome", "outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_plan_taken_at", "plan", "taken_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan: Mapped[str] = mapped_column(String(200))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("runs.id", ondelete="SET NULL"))
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    plaintext_size: Mapped[int] = mapped_column(BigInteger)
    sources: Mapped[list[str]] = mapped_column(JSON)
    #: complete copies not found damaged by a verify, and the regions they span: kept by
    #: drkit.catalog.snapshots as copies change, so the copy policy is a filter on the row
    good_copies: Mapped[int] = mapped_column(Integer, default=0)
    good_regions: Mapped[int] = mapped_column(Integer, default=0)

    artifacts: Mapped[list[ArtifactRow]] = relationship(
        back_populates="snapshot", cascade="all, delete-orphan", order_by="ArtifactRow.source"
    )
    copies: Mapped[list[Copy]] = relationship(
        back_populates="snapshot", cascade="all, delete-orphan", order_by="Copy.store"
    )


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    snapshot_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(64))
    compression: Mapped[str] = mapped_column(String(16))
    plaintext_size: Mapped[int] = mapped_column(BigInteger)
    plaintext_sha256: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[dict[str, Any]] = mapped_column(JSON)
    key_names: Mapped[list[str]] = mapped_column(JSON)
    encrypted_key: Mapped[str | None] = mapped_column(Text)
    encrypted_size: Mapped[int | None] = mapped_column(BigInteger)
    encrypted_sha256: Mapped[str | None] = mapped_column(String(64))
    raw_key: Mapped[str | None] = mapped_column(Text)
    raw_size: Mapped[int | None] = mapped_column(BigInteger)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))

    snapshot: Mapped[Snapshot] = relationship(back_populates="artifacts")


class Copy(Base):
    __tablename__ = "copies"

    snapshot_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    store: Mapped[str] = mapped_column(String(200), primary_key=True)
    region: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    last_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_verify_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_verify_error: Mapped[str | None] = mapped_column(Text)

    snapshot: Mapped[Snapshot] = relationship(back_populates="copies")


class Drill(Base):
    __tablename__ = "drills"
    __table_args__ = (Index("ix_drills_plan_started_at", "plan", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan: Mapped[str] = mapped_column(String(200))
    # no foreign keys: a drill's history outlives the run row and the pruned snapshot
    run_id: Mapped[int | None] = mapped_column(Integer)
    snapshot_id: Mapped[str] = mapped_column(String(64))
    store: Mapped[str] = mapped_column(String(200))
    sandbox_kinds: Mapped[list[str]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))
    rto_seconds: Mapped[float | None] = mapped_column(Float)
    rpo_seconds: Mapped[float | None] = mapped_column(Float)
    phases: Mapped[dict[str, float]] = mapped_column(JSON)
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class Lock(Base):
    __tablename__ = "locks"

    plan: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(300))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunTotal(Base):
    """Finished runs counted per plan, job, outcome and duration bucket (``le``: the bucket's
    upper bound in seconds), kept as runs finish so counters need no history."""

    __tablename__ = "run_totals"

    plan: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    le: Mapped[float] = mapped_column(Float, primary_key=True)
    runs: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)
    bytes: Mapped[int] = mapped_column(BigInteger)


class EvidenceRecord(Base):
    """One signed record of a plan's hash-chained evidence log (``drkit.crypto.evidence``):
    the primary key (plan, seq) lets one runner alone append each position, so concurrent
    runs never fork the chain."""

    __tablename__ = "evidence"

    plan: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    record_hash: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    record: Mapped[str] = mapped_column(Text)


class WalObjectRow(Base):
    """The continuity ledger: one row per WAL file (segment, partial segment, timeline
    history) per store that holds it."""

    __tablename__ = "wal_objects"
    __table_args__ = (
        Index(
            "ix_wal_objects_plan_source_store_kind_name",
            "plan",
            "source",
            "store",
            "kind",
            "name",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(200))
    store: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    #: bytes of the segment that hold WAL (partial segments: up to the last non-zero byte)
    valid_bytes: Mapped[int | None] = mapped_column(BigInteger)
    #: everything the server had flushed by this moment is in this object or older ones
    covered_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: a timeline history file's text (small): the switch points the window follows
    detail: Mapped[str | None] = mapped_column(Text)
