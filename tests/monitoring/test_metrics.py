"""Prometheus metrics from the catalog: a real backup and drill on the SQLite + files backend
give the named series with the catalog's values; the textfile is written atomically; a push
reaches a Pushgateway-like receiver; failures come back as problems, never raised."""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.resources import open_resources
from drkit.catalog import Catalog
from drkit.cli import main
from drkit.monitoring.metrics import (
    OUTCOMES,
    collect_metrics,
    last_outcome,
    push_metrics,
    render_metrics,
    write_metrics_file,
)
from drkit.outcome import Outcome
from drkit.plan.schema import Plan
from tests.conftest import free_port

from .conftest import Receiver

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def names_with(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (found, labels) in samples if found == name]


@pytest.fixture
def plan_after_backup_and_drill(
    make_plan: Callable[..., Plan], backend: dict[str, Path], catalog: Catalog
) -> Plan:
    plan = make_plan()
    resources = open_resources(plan, catalog)
    assert backup(resources).outcome.value == "ok"
    [result] = drill(resources)
    assert result.outcome is Outcome.OK, result.to_json()
    return plan


def test_metrics_file_parses_and_holds_the_catalogs_values(
    plan_after_backup_and_drill: Plan, catalog: Catalog, tmp_path: Path
) -> None:
    plan = plan_after_backup_and_drill
    now = datetime.now(UTC) + timedelta(minutes=5)
    path = tmp_path / "textfile" / "drkit.prom"
    path.parent.mkdir()
    assert write_metrics_file(collect_metrics(catalog, [plan], now=now), path) == []
    samples = parse(path.read_text())

    run = catalog.last_run(plan.name, "backup")
    assert run is not None and run.finished_at is not None
    backup_job = {"plan": plan.name, "drkit_job": "backup"}
    assert value(samples, "drkit_last_success_timestamp_seconds", **backup_job) == pytest.approx(
        run.finished_at.timestamp()
    )
    assert value(samples, "drkit_last_run_timestamp_seconds", **backup_job) == pytest.approx(
        run.finished_at.timestamp()
    )
    assert value(samples, "drkit_last_run_duration_seconds", **backup_job) == pytest.approx(
        (run.finished_at - run.started_at).total_seconds()
    )
    for job in ("backup", "drill"):
        outcomes = {
            outcome: value(
                samples, "drkit_last_run_outcome", plan=plan.name, drkit_job=job, outcome=outcome
            )
            for outcome in OUTCOMES
        }
        assert outcomes == {"ok": 1, "degraded": 0, "failed": 0, "breached": 0, "interrupted": 0}
    assert not [
        s for s in names_with(samples, "drkit_last_run_outcome") if s["drkit_job"] == "prune"
    ]

    [snapshot] = catalog.list_snapshots(plan.name)
    for store in ("east", "west"):
        labels = {"plan": plan.name, "store": store, "region": store}
        copy = snapshot.copy_in(store)
        assert copy is not None and copy.bytes > 0
        assert value(samples, "drkit_snapshot_bytes", **labels) == copy.bytes
        assert value(samples, "drkit_snapshot_timestamp_seconds", **labels) == pytest.approx(
            snapshot.taken_at.timestamp()
        )
    age = (now - snapshot.taken_at).total_seconds()
    assert value(samples, "drkit_rpo_seconds", plan=plan.name) == pytest.approx(age)
    assert value(samples, "drkit_verified_rpo_seconds", plan=plan.name) == pytest.approx(age)

    last_drill = catalog.last_drill(plan.name)
    assert last_drill is not None and last_drill.rto_seconds is not None
    assert value(samples, "drkit_last_drill_rto_seconds", plan=plan.name) == pytest.approx(
        last_drill.rto_seconds
    )
    assert value(samples, "drkit_last_drill_timestamp_seconds", plan=plan.name) == pytest.approx(
        last_drill.finished_at.timestamp()
    )
    assert value(samples, "drkit_last_drill_passed", plan=plan.name) == 1
    assert value(samples, "drkit_objective_rpo_seconds", plan=plan.name) == 3600
    assert value(samples, "drkit_objective_rto_seconds", plan=plan.name) == 600
    assert value(samples, "drkit_objective_breached", plan=plan.name) == 0


def test_rpo_past_the_objective_reads_breached(
    plan_after_backup_and_drill: Plan, catalog: Catalog
) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)  # objective: 1h
    samples = parse(render_metrics(collect_metrics(catalog, [plan_after_backup_and_drill], later)))
    assert value(samples, "drkit_rpo_seconds", plan="test-api") > 3600
    assert value(samples, "drkit_objective_breached", plan="test-api") == 1


def test_plan_without_snapshots_has_infinite_rpo_and_is_breached(
    make_plan: Callable[..., Plan], catalog: Catalog
) -> None:
    samples = parse(render_metrics(collect_metrics(catalog, [make_plan()])))
    assert math.isinf(value(samples, "drkit_rpo_seconds", plan="test-api"))
    assert math.isinf(value(samples, "drkit_verified_rpo_seconds", plan="test-api"))
    assert value(samples, "drkit_objective_breached", plan="test-api") == 1
    assert names_with(samples, "drkit_last_run_timestamp_seconds") == []
    assert names_with(samples, "drkit_snapshot_bytes") == []


def test_last_success_survives_a_later_failure_and_a_running_run_is_skipped(
    make_plan: Callable[..., Plan], tmp_path: Path
) -> None:
    times = iter(datetime(2024, 5, 1, 12, minute, tzinfo=UTC) for minute in range(10))
    url = f"sqlite:///{tmp_path / 'clocked.db'}"
    with Catalog.open(url, clock=lambda: next(times)) as catalog:
        first = catalog.start_run("test-api", "backup")  # 12:00
        catalog.finish_run(first, "ok")  # 12:01
        second = catalog.start_run("test-api", "backup")  # 12:02
        catalog.finish_run(second, "failed", error="east: unreachable")  # 12:03
        catalog.start_run("test-api", "backup")  # 12:04, still running
    with Catalog.open(url) as reopened:  # a restart: everything comes from the catalog
        samples = parse(render_metrics(collect_metrics(reopened, [make_plan()])))
        assert last_outcome(reopened, "test-api", "backup") == "failed"
        assert last_outcome(reopened, "test-api", "backup", exclude_run_id=second) == "ok"
    job = {"plan": "test-api", "drkit_job": "backup"}
    minute = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
    assert value(samples, "drkit_last_success_timestamp_seconds", **job) == minute + 60
    assert value(samples, "drkit_last_run_timestamp_seconds", **job) == minute + 180
    assert value(samples, "drkit_last_run_duration_seconds", **job) == 60
    assert value(samples, "drkit_last_run_outcome", outcome="failed", **job) == 1
    assert value(samples, "drkit_last_run_outcome", outcome="ok", **job) == 0


def small_registry() -> CollectorRegistry:
    from prometheus_client import Gauge

    registry = CollectorRegistry()
    Gauge("drkit_rpo_seconds", "RPO", ["plan"], registry=registry).labels("a").set(42)
    return registry


def test_metrics_file_is_replaced_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "drkit.prom"
    path.write_text("old contents\n")
    assert write_metrics_file(small_registry(), path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["drkit.prom"]
    assert value(parse(path.read_text()), "drkit_rpo_seconds", plan="a") == 42
    assert path.stat().st_mode & 0o777 == 0o644  # readable by node_exporter's user


def test_failed_rename_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "drkit.prom"
    path.write_text("old contents\n")

    def refuse(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    [problem] = write_metrics_file(small_registry(), path)
    assert "No space left on device" in problem and str(path) in problem
    assert path.read_text() == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["drkit.prom"]


def test_metrics_file_in_a_missing_folder_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    [problem] = write_metrics_file(small_registry(), tmp_path / "missing" / "drkit.prom")
    assert problem.startswith("metrics file ") and "cannot write" in problem


def test_push_puts_the_registry_to_the_gateways_job_group(receiver: Receiver) -> None:
    assert push_metrics(small_registry(), receiver.url) == []
    assert push_metrics(small_registry(), receiver.url, "nightly", grouping_key={"host": "a"}) == []
    first, second = receiver.requests
    assert (first.method, first.path) == ("PUT", "/metrics/job/drkit")
    assert value(parse(first.body.decode()), "drkit_rpo_seconds", plan="a") == 42
    assert (second.method, second.path) == ("PUT", "/metrics/job/nightly/host/a")


def test_push_failure_is_one_line_without_the_secret_url(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses["/metrics"] = 500
    monkeypatch.setenv("PUSH_URL", f"{receiver.url.replace('http://', 'http://user:S3CRET@')}")
    [refused] = push_metrics(small_registry(), "env:PUSH_URL")
    monkeypatch.setenv("PUSH_URL", f"http://user:S3CRET@127.0.0.1:{free_port()}")
    [unreachable] = push_metrics(small_registry(), "env:PUSH_URL")
    assert refused.startswith("push metrics: pushgateway (127.0.0.1): ") and "500" in refused
    [request] = receiver.requests  # credentials went as basic auth, not into the host name
    assert request.authorization == "Basic " + base64.b64encode(b"user:S3CRET").decode()
    assert unreachable.startswith("push metrics: pushgateway (127.0.0.1): ")
    assert "S3CRET" not in refused + unreachable + caplog.text
    assert "\n" not in refused + unreachable


def test_metrics_command_prints_writes_and_reports_json(
    plan_after_backup_and_drill: Plan,
    catalog: Catalog,
    stores: list[dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.actions.conftest import plan_document

    plan_file = tmp_path / "plans" / "api.yaml"
    plan_file.parent.mkdir()
    plan_file.write_text(yaml.safe_dump(plan_document(tmp_path, stores)))
    base = ["--catalog", catalog.url, "metrics", str(plan_file.parent)]

    assert main(base) == 0
    printed = parse(capsys.readouterr().out)
    assert value(printed, "drkit_last_drill_passed", plan="test-api") == 1

    target = tmp_path / "drkit.prom"
    assert main([*base, "--metrics-file", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert parse(target.read_text()).keys() == printed.keys()

    assert main([*base, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {"name": "drkit_objective_breached", "labels": {"plan": "test-api"}, "value": 0.0} in (
        document
    )

    assert main([*base, "--pushgateway", f"http://127.0.0.1:{free_port()}"]) == 1
