"""`drkit run` tells the outside world: webhooks on failure and recovery, dead-man pings
around each plan's jobs, and a metrics file, without any of it changing the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.actions.conftest import make_backend, plan_document

from .conftest import Receiver


def drkit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_run_pings_notifies_on_failure_and_recovery_and_writes_metrics(
    tmp_path: Path, receiver: Receiver
) -> None:
    backend = make_backend(tmp_path / "backend")
    stores = [
        {"name": "east", "type": "filesystem", "path": str(tmp_path / "east"), "region": "east"}
    ]
    document = plan_document(
        tmp_path,
        stores,
        notify=[{"type": "webhook", "url": "env:HOOK_URL", "on": ["failed", "recovered"]}],
        healthcheck={"url": "env:PING_URL"},
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(document, sort_keys=False))
    env = {
        "HOOK_URL": f"{receiver.url}/hook/secret-token-123",
        "PING_URL": f"{receiver.url}/ping/abc",
    }
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    metrics = tmp_path / "drkit.prom"

    hidden = backend["database"].rename(tmp_path / "moved.db")  # the source vanishes: failure
    failed = drkit(
        "--catalog",
        catalog,
        "run",
        "--job",
        "backup",
        "--metrics-file",
        str(metrics),
        str(plan),
        env=env,
    )
    assert failed.returncode == 1
    hidden.rename(backend["database"])
    recovered = drkit(
        "--catalog",
        catalog,
        "run",
        "--job",
        "backup",
        "--metrics-file",
        str(metrics),
        str(plan),
        env=env,
    )
    assert recovered.returncode == 0, recovered.stderr

    hooks = [json.loads(r.body) for r in receiver.requests if r.path.startswith("/hook/")]
    assert [(h["event"], h["job"], h["outcome"]) for h in hooks] == [
        ("failed", "backup", "failed"),
        ("recovered", "backup", "ok"),
    ]
    assert [r.path for r in receiver.requests if r.path.startswith("/ping/")] == [
        "/ping/abc/start",
        "/ping/abc/fail",
        "/ping/abc/start",
        "/ping/abc",
    ]
    assert "secret-token-123" not in failed.stderr + recovered.stderr

    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    [success] = [
        s
        for s in families["drkit_last_success_timestamp_seconds"].samples
        if s.labels == {"plan": "test-api", "drkit_job": "backup"}
    ]
    assert success.value > 0
    assert "drkit_rpo_seconds" in families


def test_an_unreachable_webhook_does_not_change_the_outcome(tmp_path: Path) -> None:
    make_backend(tmp_path / "backend")
    stores = [
        {"name": "east", "type": "filesystem", "path": str(tmp_path / "east"), "region": "east"}
    ]
    document = plan_document(
        tmp_path,
        stores,
        notify=[{"type": "webhook", "url": "http://127.0.0.1:9/hook", "on": ["ok"]}],
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(document, sort_keys=False))
    done = drkit(
        "--catalog", f"sqlite:///{tmp_path / 'c.db'}", "run", "--job", "backup", str(plan), env={}
    )
    assert done.returncode == 0
    assert "notification" in done.stderr
