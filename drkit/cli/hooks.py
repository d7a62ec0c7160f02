"""What `drkit run` does around jobs: notifications, dead-man pings, metrics. Each hook is
best effort: a failing notification or push is logged and never changes a job's result."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from drkit.actions.run import JobOutcome
from drkit.catalog import Catalog
from drkit.plan.schema import Plan

log = logging.getLogger(__name__)


@contextlib.contextmanager
def job_monitor(plan: Plan) -> Iterator[None]:
    """Dead-man pings (start, then success or fail) around a plan's jobs."""
    yield


def after_job(catalog: Catalog, plan: Plan, outcome: JobOutcome) -> None:
    """Notify the plan's webhooks about a job's outcome."""


def after_run(
    catalog: Catalog, plans: Sequence[Plan], *, metrics_file: str | None, pushgateway: str | None
) -> None:
    """Write or push metrics computed from the catalog."""
