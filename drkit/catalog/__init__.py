"""The catalog: drkit's database of runs, snapshots, store copies, drills and plan locks.

A SQLite file under $DRKIT_HOME by default, or PostgreSQL when several runners share it;
the schema is migrated with alembic on open. Only this package imports SQLAlchemy and alembic,
and it hands out frozen records, never ORM objects.

    with Catalog.open() as catalog:
        run_id = catalog.start_run("api", "backup")
"""

from drkit.catalog.catalog import Catalog, RunTracker
from drkit.catalog.database import mask_url
from drkit.catalog.locks import LockLease, make_lock_owner
from drkit.catalog.records import (
    ArtifactRecord,
    CopyRecord,
    DrillCheck,
    DrillInput,
    DrillRecord,
    LockInfo,
    RunRecord,
    SnapshotRecord,
)
from drkit.catalog.revisions import head_revision

__all__ = [
    "ArtifactRecord",
    "Catalog",
    "CopyRecord",
    "DrillCheck",
    "DrillInput",
    "DrillRecord",
    "LockInfo",
    "LockLease",
    "RunRecord",
    "RunTracker",
    "SnapshotRecord",
    "head_revision",
    "make_lock_owner",
    "mask_url",
]
