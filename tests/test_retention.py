"""The retention engine: restic/borg semantics checked against an independent oracle over
random histories and policies, plus worked examples with their reasons."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drkit.plan.schema import RetentionPolicy
from drkit.retention import KeepDecision, select_kept

PROPERTY_SETTINGS = settings(max_examples=300, derandomize=True, deadline=None, database=None)
BASE = datetime(2025, 11, 20, tzinfo=UTC)  # histories span New Year: ISO weeks cross years
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
PERIODS = {
    "keep_hourly": lambda moment: moment.strftime("%Y-%m-%dT%H"),
    "keep_daily": lambda moment: moment.strftime("%Y-%m-%d"),
    "keep_weekly": lambda moment: "{}-W{:02d}".format(*moment.isocalendar()[:2]),
    "keep_monthly": lambda moment: moment.strftime("%Y-%m"),
}

Snapshots = list[tuple[str, datetime]]


@st.composite
def histories(draw: st.DrawFn) -> Snapshots:
    """Up to 40 snapshots over 70 days, in any time zone, in any order; ids say nothing
    about time, and some snapshots share a minute (ties)."""
    offsets = draw(
        st.lists(
            st.tuples(st.integers(0, 70), st.sampled_from([0, 6, 12, 23]), st.integers(0, 2)),
            max_size=40,
        )
    )
    zones = draw(st.lists(st.sampled_from(ZONES), min_size=len(offsets), max_size=len(offsets)))
    return [
        (f"snap-{index:02d}", (BASE + timedelta(days=d, hours=h, minutes=m * 20)).astimezone(zone))
        for index, ((d, h, m), zone) in enumerate(zip(offsets, zones, strict=True))
    ]


counts = st.none() | st.integers(0, 6)
policies = st.builds(
    RetentionPolicy,
    keep_last=counts,
    keep_hourly=counts,
    keep_daily=counts,
    keep_weekly=counts,
    keep_monthly=counts,
)


def newest_first(snapshots: Snapshots) -> Snapshots:
    return sorted(snapshots, key=lambda item: (item[1].astimezone(UTC), item[0]), reverse=True)


def oracle_kept(snapshots: Snapshots, policy: RetentionPolicy, protected: set[str]) -> set[str]:
    """What should be kept, computed differently from the engine: group by period, take the
    N latest period labels (ISO labels sort chronologically), keep each one's newest."""
    rules = {"keep_last": policy.keep_last, **{f: getattr(policy, f) for f in PERIODS}}
    ids = {snapshot_id for snapshot_id, _ in snapshots}
    if not any(rules.values()):
        return ids
    ordered = newest_first(snapshots)
    kept = {snapshot_id for snapshot_id, _ in ordered[: policy.keep_last or 0]}
    for field, label_of in PERIODS.items():
        groups: dict[str, Snapshots] = {}
        for snapshot_id, moment in snapshots:
            groups.setdefault(label_of(moment.astimezone(UTC)), []).append((snapshot_id, moment))
        for label in sorted(groups, reverse=True)[: getattr(policy, field) or 0]:
            kept.add(newest_first(groups[label])[0][0])
    return kept | (protected & ids)


@PROPERTY_SETTINGS
@given(histories(), policies, st.data())
def test_decision_matches_the_oracle_and_covers_every_snapshot_exactly_once(
    snapshots: Snapshots, policy: RetentionPolicy, data: st.DataObject
) -> None:
    ids = [snapshot_id for snapshot_id, _ in snapshots]
    protected = data.draw(st.sets(st.sampled_from([*ids, "not-a-snapshot"])))

    decision = select_kept(snapshots, policy, protected=protected)

    assert set(decision.kept) == oracle_kept(snapshots, policy, protected)
    assert set(decision.kept).isdisjoint(decision.deleted)
    assert sorted([*decision.kept, *decision.deleted]) == sorted(ids)  # nothing outside it
    assert all(decision.kept.values()), "every kept snapshot says why"
    assert protected & set(ids) <= set(decision.kept)


@PROPERTY_SETTINGS
@given(histories(), st.integers(1, 8))
def test_keep_last_keeps_exactly_the_newest(snapshots: Snapshots, last: int) -> None:
    decision = select_kept(snapshots, RetentionPolicy(keep_last=last))

    expected = [snapshot_id for snapshot_id, _ in newest_first(snapshots)[:last]]
    assert list(decision.kept) == expected
    assert all(why == (f"last {last}",) for why in decision.kept.values())


@PROPERTY_SETTINGS
@given(histories(), st.integers(1, 8))
def test_each_of_the_newest_days_keeps_exactly_its_newest_snapshot(
    snapshots: Snapshots, days: int
) -> None:
    decision = select_kept(snapshots, RetentionPolicy(keep_daily=days))

    by_day: dict[str, Snapshots] = {}
    for snapshot_id, moment in snapshots:
        by_day.setdefault(moment.astimezone(UTC).strftime("%Y-%m-%d"), []).append(
            (snapshot_id, moment)
        )
    newest_days = sorted(by_day, reverse=True)[:days]
    for day in newest_days:
        kept_that_day = [i for i, _ in by_day[day] if decision.is_kept(i)]
        assert kept_that_day == [newest_first(by_day[day])[0][0]]
        assert decision.kept[kept_that_day[0]] == (f"daily {day}",)
    older = {i for day in set(by_day) - set(newest_days) for i, _ in by_day[day]}
    assert older <= set(decision.deleted)


@PROPERTY_SETTINGS
@given(histories(), st.sampled_from([0, None]), st.data())
def test_a_policy_without_rules_deletes_nothing(
    snapshots: Snapshots, unset: int | None, data: st.DataObject
) -> None:
    policy = RetentionPolicy(
        keep_last=unset, keep_hourly=unset, keep_daily=unset, keep_weekly=unset, keep_monthly=unset
    )

    decision = select_kept(snapshots, policy)

    assert decision.deleted == ()
    assert len(decision.kept) == len(snapshots)


@PROPERTY_SETTINGS
@given(histories(), policies, st.randoms(use_true_random=False))
def test_the_decision_depends_on_the_set_of_snapshots_not_their_order(
    snapshots: Snapshots, policy: RetentionPolicy, shuffler: random.Random
) -> None:
    shuffled = list(snapshots)
    shuffler.shuffle(shuffled)

    first = select_kept(snapshots, policy, protected={"snap-00"})
    second = select_kept(shuffled, policy, protected={"snap-00"})

    assert first == second
    assert list(first.kept.items()) == list(second.kept.items())  # same order too


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_reasons_name_the_rule_and_the_period_and_protection_reasons_come_first() -> None:
    snapshots = [
        ("mon-early", at("2026-11-23T01:00:00+00:00")),
        ("mon-late", at("2026-11-23T22:00:00+00:00")),
        ("tue", at("2026-11-24T09:00:00+00:00")),
        ("wed", at("2026-11-25T09:00:00+00:00")),
        ("last-sunday", at("2026-11-22T09:00:00+00:00")),
        ("last-friday", at("2026-11-20T09:00:00+00:00")),
    ]
    policy = RetentionPolicy(keep_last=1, keep_daily=3, keep_weekly=2)
    protected = {"mon-early": "newest drill-verified", "wed": "newest complete"}

    decision = select_kept(snapshots, policy, protected=protected)

    assert decision == KeepDecision(
        kept={
            "wed": ("newest complete", "last 1", "daily 2026-11-25", "weekly 2026-W48"),
            "tue": ("daily 2026-11-24",),
            "mon-late": ("daily 2026-11-23",),
            "mon-early": ("newest drill-verified",),
            "last-sunday": ("weekly 2026-W47",),
        },
        deleted=("last-friday",),
    )


def test_periods_are_utc_and_weeks_are_iso_weeks_across_new_year() -> None:
    snapshots = [
        # 00:30 on Jan 1 in UTC+2 is still Dec 31 in UTC
        ("new-year-local", at("2027-01-01T00:30:00+02:00")),
        ("dec-30", at("2026-12-30T12:00:00+00:00")),
        ("dec-28", at("2026-12-28T12:00:00+00:00")),  # Monday of 2026-W53
        ("dec-27", at("2026-12-27T12:00:00+00:00")),  # Sunday of 2026-W52
    ]

    daily = select_kept(snapshots, RetentionPolicy(keep_daily=1))
    weekly = select_kept(snapshots, RetentionPolicy(keep_weekly=2, keep_monthly=1))

    assert daily.kept == {"new-year-local": ("daily 2026-12-31",)}
    assert weekly.kept == {
        "new-year-local": ("weekly 2026-W53", "monthly 2026-12"),
        "dec-27": ("weekly 2026-W52",),
    }
    assert weekly.deleted == ("dec-30", "dec-28")


def test_a_repeated_id_is_refused() -> None:
    moment = at("2026-11-25T09:00:00+00:00")
    with pytest.raises(ValueError, match="twice"):
        select_kept([("a", moment), ("a", moment)], RetentionPolicy(keep_last=1))
