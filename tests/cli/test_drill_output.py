"""A drill prints ok only for a check that ran and could have failed: what it only reports
(the moment a point-in-time drill aimed at, a landing it could not check) is a note."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from drkit.actions.checks import CheckResult, _fingerprint_checks
from drkit.actions.drill import DrillResult, _judge
from drkit.actions.sqlite_pitr import landing_checks
from drkit.cli.drill import render_drill
from drkit.outcome import Outcome
from drkit.plan.schema import SqlitePitr, SqliteSource

MOMENT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def judged(*checks: CheckResult) -> DrillResult:
    result = DrillResult("orders", "gen-1", "east", MOMENT, checks=list(checks))
    result.rto_seconds = 1.0
    _judge(cast(Any, SimpleNamespace(plan=SimpleNamespace(objectives=None))), result)
    return result


def test_a_landing_without_a_heartbeat_is_a_note_not_a_pass(tmp_path: Path) -> None:
    source = SqliteSource(name="db", type="sqlite", path=str(tmp_path / "db"), pitr=SqlitePitr())
    [check] = landing_checks(source, tmp_path / "db", MOMENT)
    assert check.passed is None and "landing unchecked" in check.detail


def test_notes_print_as_notes_with_their_detail_and_do_not_fail_the_drill(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = judged(
        CheckResult("target", None, MOMENT.isoformat(), "store east"),
        CheckResult("heartbeat", None, None, "no heartbeat configured: landing unchecked"),
        CheckResult("integrity", True, "ok"),
    )
    assert result.outcome is Outcome.OK
    render_drill(result)
    lines = capsys.readouterr().out.splitlines()
    assert f"  note target = {MOMENT.isoformat()} (store east)" in lines
    assert "  note heartbeat (no heartbeat configured: landing unchecked)" in lines
    assert "  ok   integrity = ok" in lines
    assert not any(line.startswith("  ok") and "heartbeat" in line for line in lines)
    assert result.to_json()["checks"][1]["passed"] is None  # type: ignore[index]


def test_a_failed_check_still_fails_the_drill_beside_notes() -> None:
    result = judged(
        CheckResult("target", None, MOMENT.isoformat(), "store east"),
        CheckResult("newest heartbeat", False, 40.0, "40s before the target (allowed 5s)"),
    )
    assert result.outcome is Outcome.FAILED


def test_what_a_restore_left_out_is_a_note_beside_a_passing_fingerprint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A scratch server without the snapshot's accounts gets the data but not their grants:
    the fingerprint passes without comparing privileges, and the drill says what it skipped."""
    item = SimpleNamespace(source="ledger", differences=[], left_out=["grants to 'app'@'%'"])
    artifact = SimpleNamespace(fingerprint={"tables": {"t": 1}})
    prepared = SimpleNamespace(items=[item], manifest=SimpleNamespace(artifact=lambda _: artifact))
    checks = _fingerprint_checks(cast(Any, prepared))
    assert [(check.name, check.passed) for check in checks] == [
        ("fingerprint ledger", True),
        ("left out of ledger", None),
    ]
    render_drill(judged(*checks))
    lines = capsys.readouterr().out.splitlines()
    assert "  note left out of ledger = 1 (grants to 'app'@'%')" in lines
