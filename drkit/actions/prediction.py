"""How long a restore of a plan from a store should take, phase by phase, predicted from the
restores and drills the catalog recorded: the phases that move data (fetch, decrypt, load,
verify) scale with the bytes to restore, the others (locate) are taken as they were; each
phase is the median over the most recent runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from drkit.catalog import Catalog

#: the phases of a restore, and those of them whose time grows with the bytes moved
PHASES = ("locate", "fetch", "decrypt", "load", "verify")
DATA_PHASES = frozenset({"fetch", "decrypt", "load", "verify"})
#: how many recent restores and how many recent drills a prediction looks at
HISTORY = 5


@dataclass(frozen=True)
class Prediction:
    """Seconds per phase, and how many past restores and drills they come from."""

    phases: dict[str, float]
    runs: int

    @property
    def seconds(self) -> float:
        return sum(self.phases.values())

    def to_json(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 3),
            "phases": {name: round(value, 3) for name, value in self.phases.items()},
            "runs": self.runs,
        }


#: one past run: the bytes it restored and its seconds per phase
Sample = tuple[int, dict[str, float]]


def predict_restore(
    catalog: Catalog, plan: str, store: str | None, total_bytes: int
) -> Prediction | None:
    """The prediction for restoring ``total_bytes`` of ``plan`` from ``store`` (any store
    when None); None without a past restore or drill to go by."""
    samples = _restores(catalog, plan, store) + _drills(catalog, plan, store)
    if not samples:
        return None
    phases: dict[str, float] = {}
    for name in PHASES:
        values = [
            seconds * total_bytes / size if name in DATA_PHASES else seconds
            for size, recorded in samples
            if (seconds := recorded.get(name)) is not None and (size or name not in DATA_PHASES)
        ]
        if values:
            phases[name] = statistics.median(values)
    return Prediction(phases, len(samples)) if phases else None


def _restores(catalog: Catalog, plan: str, store: str | None) -> list[Sample]:
    samples: list[Sample] = []
    for run in catalog.list_runs(plan, "restore", limit=HISTORY * 4):
        summary: dict[str, Any] = run.summary or {}
        items = summary.get("items") or []
        if run.outcome != "ok" or not summary.get("phases") or not items:
            continue
        if store is not None and any(item.get("store") != store for item in items):
            continue
        phases = {str(k): float(v) for k, v in summary["phases"].items()}
        samples.append((int(summary.get("bytes") or 0), phases))
        if len(samples) == HISTORY:
            break
    return samples


def _drills(catalog: Catalog, plan: str, store: str | None) -> list[Sample]:
    samples: list[Sample] = []
    for drill in catalog.list_drills(plan, outcome="ok"):
        if store is not None and store not in (drill.store or "").split(","):
            continue
        snapshot = catalog.get_snapshot(drill.snapshot_id)
        size = sum(artifact.plaintext_size for artifact in snapshot.artifacts) if snapshot else 0
        # a drill's checks include verifying the restored data: not a restore's phase
        phases = {k: v for k, v in drill.phases.items() if k in DATA_PHASES}
        samples.append((size, phases))
        if len(samples) == HISTORY:
            break
    return samples
