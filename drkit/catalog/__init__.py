"""The catalog: drkit's database of runs, snapshots, store copies, drills and plan locks.

A SQLite file under $DRKIT_HOME by default, or PostgreSQL when several runners share it;
the schema is migrated with alembic on open. Only this package imports SQLAlchemy and alembic,
and it hands out frozen records, never ORM objects.

    with Catalog.open() as catalog:
        run_id = catalog.start_run("api", "backup")
"""

from drkit.catalog.catalog import Catalog, RunTracker
from drkit.catalog.database import mask_url
from drkit.catalog.evidence import EvidenceHead
from drkit.catalog.fleet import JobRuns, PlanPolicy, PlanState
from drkit.catalog.history import BackupEntry, CopyEntry
from drkit.catalog.locks import LockLease, make_lock_owner
from drkit.catalog.periods import PeriodFacts
from drkit.catalog.records import (
    ArtifactRecord,
    CopyInput,
    CopyRecord,
    DrillCheck,
    DrillInput,
    DrillRecord,
    LockInfo,
    RunRecord,
    SnapshotRecord,
)
from drkit.catalog.revisions import head_revision
from drkit.catalog.totals import JobTotals

__all__ = [
    "ArtifactRecord",
    "BackupEntry",
    "Catalog",
    "CopyEntry",
    "CopyInput",
    "CopyRecord",
    "DrillCheck",
    "DrillInput",
    "DrillRecord",
    "EvidenceHead",
    "JobRuns",
    "JobTotals",
    "LockInfo",
    "LockLease",
    "PeriodFacts",
    "PlanPolicy",
    "PlanState",
    "RunRecord",
    "RunTracker",
    "SnapshotRecord",
    "head_revision",
    "make_lock_owner",
    "mask_url",
]
