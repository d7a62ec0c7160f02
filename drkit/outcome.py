"""Honest outcomes (DESIGN promise 5): the one vocabulary every run, job, drill and store
result ends with, ordered by severity so the worst of many is well defined.

The catalog stores the values; the CLI alone turns an outcome into an exit code
(``drkit.cli.outcomes``). Nothing partially failed is ever ``OK``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Outcome(enum.StrEnum):
    """How something ended. ``str`` values, so JSON and the catalog hold plain words."""

    #: did what it should; for a drill: restored, every check passed, objectives met
    OK = "ok"
    #: nothing to do (not due, or deliberately not run)
    SKIPPED = "skipped"
    #: the copy policy still holds, but some store failed
    DEGRADED = "degraded"
    #: the work succeeded but an objective (RPO, RTO) was missed
    BREACHED = "breached"
    #: another runner holds the plan's lock
    LOCKED = "locked"
    #: stopped by Ctrl-C, SIGTERM, a timeout, or a process that died (found afterwards)
    INTERRUPTED = "interrupted"
    #: did not do what it should (including a check that failed)
    FAILED = "failed"

    @property
    def severity(self) -> int:
        """Higher is worse: the order of ``SEVERITY``."""
        return SEVERITY.index(self)

    @property
    def is_success(self) -> bool:
        """True for outcomes that leave nothing to fix (ok, skipped)."""
        return self in (Outcome.OK, Outcome.SKIPPED)

    @classmethod
    def worst(cls, outcomes: Iterable[Outcome]) -> Outcome:
        """The most severe of ``outcomes``; ``OK`` when there are none."""
        return max(outcomes, key=lambda outcome: outcome.severity, default=cls.OK)


#: best first; ``Outcome.worst`` picks the latest in this order
SEVERITY: tuple[Outcome, ...] = (
    Outcome.OK,
    Outcome.SKIPPED,
    Outcome.DEGRADED,
    Outcome.BREACHED,
    Outcome.LOCKED,
    Outcome.INTERRUPTED,
    Outcome.FAILED,
)
