"""Retention: which snapshots a policy keeps, and why. A pure function over (id, time) pairs,
with no store, catalog or clock, so `drkit prune` and its tests share one definition.

The semantics are restic's and borg's: ``keep_last`` keeps the N newest snapshots; each bucket
rule (``keep_hourly``, ``keep_daily``, ``keep_weekly``, ``keep_monthly``) keeps the newest
snapshot of each period, for the N most recent periods that hold a snapshot (periods without
one do not count). Periods are UTC; weeks are ISO weeks (Monday to Sunday, ``2026-W48``).
Rules add up: a snapshot is kept when any rule keeps it, and every reason is recorded.

Two safety rules come before any policy: protected snapshots are always kept, and a policy
that sets no rule (every field unset or 0) keeps everything, never "delete all".
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from drkit.plan.schema import RetentionPolicy


def iso_week_label(moment: datetime) -> str:
    """``2026-W48``: the ISO year, which differs from the calendar year around New Year."""
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


#: (reason word, policy field, period label of a UTC time), from the finest period up
BUCKET_RULES: tuple[tuple[str, str, Callable[[datetime], str]], ...] = (
    ("hourly", "keep_hourly", lambda moment: moment.strftime("%Y-%m-%dT%H")),
    ("daily", "keep_daily", lambda moment: moment.strftime("%Y-%m-%d")),
    ("weekly", "keep_weekly", iso_week_label),
    ("monthly", "keep_monthly", lambda moment: moment.strftime("%Y-%m")),
)


NO_POLICY_REASON = "no retention rule set"
PROTECTED_REASON = "protected"


@dataclass(frozen=True)
class KeepDecision:
    """What a policy keeps (each id with its reasons) and deletes; both newest first, and
    together exactly the snapshots the decision was asked about."""

    kept: Mapping[str, tuple[str, ...]]
    deleted: tuple[str, ...]

    def is_kept(self, snapshot_id: str) -> bool:
        return snapshot_id in self.kept

    def to_json(self) -> dict[str, object]:
        return {
            "kept": [{"snapshot_id": key, "reasons": list(why)} for key, why in self.kept.items()],
            "deleted": list(self.deleted),
        }


def is_empty_policy(policy: RetentionPolicy) -> bool:
    """True when no rule keeps anything: such a policy means "keep everything"."""
    return not any(
        getattr(policy, field) for field in ("keep_last", *(rule[1] for rule in BUCKET_RULES))
    )


def describe_policy(policy: RetentionPolicy) -> str:
    """``keep_last=3 keep_daily=7`` (or ``keep everything``), for logs and reports."""
    rules = [f"{name}={value}" for name, value in policy.model_dump().items() if value]
    return " ".join(rules) if rules else "keep everything"


def select_kept(
    snapshots: Sequence[tuple[str, datetime]],
    policy: RetentionPolicy,
    *,
    protected: Mapping[str, str] | Collection[str] = (),
) -> KeepDecision:
    """Decide which of ``snapshots`` (id, time taken) ``policy`` keeps.

    ``protected`` ids (a mapping gives each its reason) are always kept; ids not among
    ``snapshots`` are ignored. Naive times are taken as UTC. Equal times are ordered by id,
    so the result depends only on the input set, not its order. ValueError on a repeated id.
    """
    ordered = newest_first(snapshots)
    reasons: dict[str, list[str]] = {snapshot_id: [] for snapshot_id, _ in ordered}
    for snapshot_id, why in protection_reasons(protected).items():
        if snapshot_id in reasons:
            reasons[snapshot_id].append(why)
    if is_empty_policy(policy):
        for kept_because in reasons.values():
            kept_because.append(NO_POLICY_REASON)
    else:
        apply_rules(ordered, policy, reasons)
    return KeepDecision(
        kept={key: tuple(why) for key, why in reasons.items() if why},
        deleted=tuple(key for key, why in reasons.items() if not why),
    )


def newest_first(snapshots: Sequence[tuple[str, datetime]]) -> list[tuple[str, datetime]]:
    """The snapshots with UTC times, newest first (ties by id, newest id first)."""
    ids = [snapshot_id for snapshot_id, _ in snapshots]
    if len(set(ids)) != len(ids):
        raise ValueError("a snapshot id appears twice in the retention input")
    in_utc = [(snapshot_id, as_utc(moment)) for snapshot_id, moment in snapshots]
    return sorted(in_utc, key=lambda item: (item[1], item[0]), reverse=True)


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def protection_reasons(protected: Mapping[str, str] | Collection[str]) -> dict[str, str]:
    if isinstance(protected, Mapping):
        return {str(key): str(why) for key, why in protected.items()}
    return dict.fromkeys(protected, PROTECTED_REASON)


def apply_rules(
    ordered: Sequence[tuple[str, datetime]],
    policy: RetentionPolicy,
    reasons: dict[str, list[str]],
) -> None:
    """Add each rule's reason to the snapshots it keeps (``ordered`` is newest first)."""
    if policy.keep_last:
        for snapshot_id, _ in ordered[: policy.keep_last]:
            reasons[snapshot_id].append(f"last {policy.keep_last}")
    for word, field, label_of in BUCKET_RULES:
        periods_left: int = getattr(policy, field) or 0
        previous: str | None = None
        for snapshot_id, moment in ordered:
            if periods_left == 0:
                break
            label = label_of(moment)
            if label != previous:  # the first one seen in a period is its newest
                reasons[snapshot_id].append(f"{word} {label}")
                periods_left -= 1
                previous = label
