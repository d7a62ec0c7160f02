"""Honest outcomes (DESIGN promise 5): ok, degraded or failed, per store and overall."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from drkit.errors import ExitCode
from drkit.plan.schema import Copies


class Outcome(enum.Enum):
    OK = "ok"
    DEGRADED = "degraded"  # the copy policy holds, but some store failed
    FAILED = "failed"

    @property
    def exit_code(self) -> ExitCode:
        return {
            Outcome.OK: ExitCode.OK,
            Outcome.DEGRADED: ExitCode.DEGRADED,
            Outcome.FAILED: ExitCode.FAILED,
        }[self]


@dataclass(frozen=True)
class StoreResult:
    store: str
    region: str
    ok: bool
    error: str | None
    bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "store": self.store,
            "region": self.region,
            "ok": self.ok,
            "error": self.error,
            "bytes": self.bytes,
        }


def judge_copies(copies: Copies, results: Sequence[StoreResult]) -> Outcome:
    """OK when every store holds the snapshot; DEGRADED when the policy still holds."""
    complete = [result for result in results if result.ok]
    regions = {result.region for result in complete}
    if len(complete) < copies.min_stores or len(regions) < copies.min_regions or not complete:
        return Outcome.FAILED
    return Outcome.OK if len(complete) == len(results) else Outcome.DEGRADED
