"""The point-in-time part of `drkit status`: each store's recoverable window for every PITR
source, the RPO as now minus the window's end (the newest end that enough stores reach for
the copy policy), and breaches for gaps, a missing history file or a stalled archive."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from drkit.archive.ledger import continuous_sources, windows_of
from drkit.archive.window import Window
from drkit.catalog import Catalog
from drkit.plan.durations import humanize_seconds
from drkit.plan.schema import Plan


@dataclass
class PitrStatus:
    source: str
    windows: list[Window]
    rpo_seconds: float | None
    breaches: list[str] = field(default_factory=list)

    def to_json(self, now: datetime) -> dict[str, object]:
        return {
            "source": self.source,
            "rpo_seconds": None if self.rpo_seconds is None else round(self.rpo_seconds, 3),
            "windows": [
                {
                    **window.to_json(),
                    "lag_seconds": None
                    if window.end is None
                    else round((now - window.end).total_seconds(), 3),
                }
                for window in self.windows
            ],
            "breaches": self.breaches,
        }


def pitr_status(catalog: Catalog, plan: Plan, now: datetime) -> list[PitrStatus]:
    """One entry per PITR source of the plan."""
    found = []
    for source in continuous_sources(plan):
        assert source.pitr is not None
        windows = windows_of(catalog, plan, source)
        ends = sorted((w.end for w in windows if not w.is_empty and w.end), reverse=True)
        required = max(1, min(plan.copies.min_stores, len(windows)))
        rpo = (now - ends[required - 1]).total_seconds() if len(ends) >= required else None
        status = PitrStatus(source.name, windows, rpo)
        stall = source.pitr.stall_after.total_seconds()
        for window in windows:
            status.breaches += [f"{source.name}@{window.store}: {p}" for p in window.problems]
            if window.is_empty:
                status.breaches.append(f"{source.name}@{window.store}: no recoverable window")
            elif window.end is not None and (now - window.end).total_seconds() > stall:
                lag = humanize_seconds((now - window.end).total_seconds())
                status.breaches.append(
                    f"{source.name}@{window.store}: archive stalled, window ends {lag} ago"
                )
        found.append(status)
    return found
