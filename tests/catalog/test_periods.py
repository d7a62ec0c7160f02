"""A period's facts for many plans, computed in the database: run counts that survive
prune, the worst gap between policy-meeting snapshots, the evidence kept short."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from drkit.catalog import Catalog, PlanPolicy
from drkit.report.compliance import plan_reports
from tests.actions.conftest import load, plan_document

from .conftest import START, FakeClock, ManifestFactory

STORES = [
    {"name": "east", "type": "filesystem", "path": "/tmp/east", "region": "us-east-1"},
    {"name": "west", "type": "filesystem", "path": "/tmp/west", "region": "eu-west-1"},
]


def backup(
    catalog: Catalog,
    clock: FakeClock,
    make: ManifestFactory,
    hour: float,
    stores: int,
    outcome: str,
) -> str:
    clock.now = START + timedelta(hours=hour)
    run_id = catalog.start_run("test-api", "backup")
    manifest = make("test-api", taken_at=clock.now)
    catalog.record_snapshot(manifest, status="complete", run_id=run_id)
    for store in STORES[:stores]:
        catalog.record_copy(manifest.snapshot_id, store["name"], store["region"], "complete")
    clock.advance(60)
    catalog.finish_run(run_id, outcome)
    return manifest.snapshot_id


def test_report_counts_backups_from_the_run_history_after_prune_and_finds_the_worst_gap(
    catalog: Catalog, clock: FakeClock, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    plan = load(
        plan_document(
            tmp_path,
            STORES,
            copies={"min_stores": 2, "min_regions": 2},
            schedule={"backup": "0 * * * *"},
        )
    )
    backup(catalog, clock, make_manifest, -30, 2, "ok")  # before the period
    ids = [backup(catalog, clock, make_manifest, hour, 2, "ok") for hour in range(0, 5)]
    backup(catalog, clock, make_manifest, 5, 1, "degraded")  # one store only: not complete
    ids += [backup(catalog, clock, make_manifest, hour, 2, "ok") for hour in range(9, 12)]
    failed = catalog.start_run("test-api", "backup")
    catalog.finish_run(failed, "failed", error="pg_dump: connection refused")
    for snapshot_id in ids[:6]:  # prune: the snapshots are gone, the runs stay
        catalog.delete_snapshot(snapshot_id)

    since, until = START - timedelta(minutes=30), START + timedelta(hours=14)
    [report] = plan_reports(catalog, [plan], since, until)
    backups = report["backups"]
    assert backups["taken"] == 10  # 8 ok + 1 degraded + 1 failed, in the period
    assert (backups["succeeded"], backups["failed"], backups["interrupted"]) == (9, 1, 0)
    assert backups["complete"] == 2  # what is still kept and meets the policy
    kinds = sorted((f["kind"], f["outcome"]) for f in report["failures"])
    assert ("backup", "failed") in kinds
    # complete snapshots at hours 10, 11 remain (0-4 and 9 pruned): the worst gap is
    # from the one before the period (hour -30) to hour 10, then 11 to the end
    assert report["rpo"]["worst_seconds"] == timedelta(hours=40).total_seconds()
    assert report["evidence_total"] == 3 and len(report["evidence"]) == 3


def test_period_facts_take_the_same_queries_for_2_plans_and_for_40(
    catalog: Catalog, clock: FakeClock, make_manifest: ManifestFactory
) -> None:
    from .test_fleet import counted_statements

    policies = [PlanPolicy(f"plan-{n}", 1, 1, ("east",)) for n in range(40)]
    for policy in policies:
        clock.now = START
        run_id = catalog.start_run(policy.plan, "backup")
        manifest = make_manifest(policy.plan, taken_at=START)
        catalog.record_snapshot(manifest, status="complete", run_id=run_id)
        catalog.record_copy(manifest.snapshot_id, "east", "us-east-1", "complete")
        catalog.finish_run(run_id, "ok")
    window = (START - timedelta(days=1), START + timedelta(days=1))
    with counted_statements(catalog) as few:
        catalog.period_facts(policies[:2], *window)
    with counted_statements(catalog) as many:
        facts = catalog.period_facts(policies, *window)
    assert len(many) == len(few)
    assert all(facts[p.plan].runs[("backup", "ok")] == 1 for p in policies)
    assert all(facts[p.plan].complete == 1 for p in policies)


def test_html_carries_what_markdown_does_with_controls_drills_and_human_times(
    catalog: Catalog, clock: FakeClock, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    import re

    from drkit.catalog import DrillInput
    from drkit.report.controls import CONTROLS
    from drkit.report.render import render_html, render_markdown

    plan = load(plan_document(tmp_path, STORES, schedule={"backup": "0 * * * *"}))
    snapshot_id = backup(catalog, clock, make_manifest, 1.5, 2, "ok")
    catalog.record_drill(
        DrillInput(
            plan="test-api",
            snapshot_id=snapshot_id,
            store="west",
            started_at=START + timedelta(hours=2, microseconds=123456),
            finished_at=START + timedelta(hours=2, minutes=3),
            outcome="ok",
            rto_seconds=180,
        )
    )
    reports = plan_reports(catalog, [plan], START, START + timedelta(hours=6))
    markdown, page = render_markdown(reports), render_html(reports)
    for text in (markdown, page):
        assert snapshot_id in text.split("Drills", 1)[1]  # the drills table, in both
        for control in CONTROLS:
            assert f"{control.framework} {control.reference}" in text
        assert "2026-11-27 17:30 UTC" in text  # the drill, in minutes and UTC
        assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d{6}", text)  # never microseconds
    assert page.count('class="axis"') == 4  # two charts, each with both axes
    assert "2026-11-27</text>" in page  # dated x axis


def test_evidence_lists_exactly_the_newest_snapshots_of_the_period(
    catalog: Catalog, clock: FakeClock, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    from drkit.catalog.periods import EVIDENCE_LIMIT

    plan = load(plan_document(tmp_path, STORES))
    backup(catalog, clock, make_manifest, -3, 2, "ok")  # before the period
    ids = [backup(catalog, clock, make_manifest, h, 2, "ok") for h in range(EVIDENCE_LIMIT + 5)]
    since, until = START - timedelta(minutes=30), START + timedelta(hours=EVIDENCE_LIMIT + 9)
    [report] = plan_reports(catalog, [plan], since, until)
    assert report["evidence_total"] == EVIDENCE_LIMIT + 5
    listed = [entry["snapshot_id"] for entry in report["evidence"]]
    assert listed == list(reversed(ids))[:EVIDENCE_LIMIT]
