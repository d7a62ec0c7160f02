"""Every job records its catalog run through ``tracked_run``: opened as ``running``, closed
with its outcome on every exit path (Ctrl-C, SIGTERM and job timeouts become ``interrupted``,
other exceptions ``failed``). Without a catalog (a restore while it is gone) nothing is
recorded and the block runs all the same. When the plan keeps an evidence log, the closed run
also appends its signed record there (``drkit.actions.evidence``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from drkit.actions.evidence import record_evidence
from drkit.actions.resources import Resources
from drkit.catalog import RunTracker


@contextmanager
def tracked_run(resources: Resources, kind: str) -> Iterator[RunTracker]:
    catalog = resources.catalog
    if catalog is None:
        yield RunTracker.untracked()
        return
    started_at = datetime.now(UTC)
    tracker = RunTracker.untracked()
    try:
        with catalog.track_run(resources.plan.name, kind) as tracker:
            yield tracker
    except BaseException as error:
        if tracker.id is not None:
            record_evidence(resources, kind, tracker, started_at, error)
        raise
    record_evidence(resources, kind, tracker, started_at)
