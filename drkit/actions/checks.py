"""Drill checks on restored data: fingerprints, SQL expectations, and commands."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from drkit import execute
from drkit.actions.fanout import describe_failure
from drkit.actions.resources import Resources
from drkit.actions.restore import PreparedRestore
from drkit.errors import DrkitError
from drkit.plan.expectations import compile_expectation
from drkit.plan.schema import CommandCheck, FingerprintCheck, SqlCheck
from drkit.sources import make_source
from drkit.sources.base import Target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    measured: float | int | str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "passed": self.passed,
            "measured": self.measured,
            "detail": self.detail,
        }


def _fingerprint_checks(prepared: PreparedRestore) -> list[CheckResult]:
    results = []
    for item in prepared.items:
        tables = len(prepared.manifest.artifact(item.source).fingerprint.get("tables", {}) or {})
        files = len(prepared.manifest.artifact(item.source).fingerprint.get("files", {}) or {})
        measured = f"{tables} tables" if tables else f"{files} files"
        results.append(
            CheckResult(
                f"fingerprint {item.source}",
                not item.differences,
                measured,
                "; ".join(item.differences),
            )
        )
    return results


def _sql_check(resources: Resources, check: SqlCheck, targets: Mapping[str, Target]) -> CheckResult:
    name = f"sql {check.source}: {check.query}"
    try:
        value = make_source(resources.plan.source(check.source)).query(
            targets[check.source], check.query
        )
    except DrkitError as error:
        return CheckResult(name, False, None, describe_failure(error))
    measured = value if isinstance(value, int | float | str) or value is None else str(value)
    passed = compile_expectation(check.expect).holds_for(value)
    return CheckResult(name, passed, measured, f"expected {check.expect}, got {measured}")


def _command_check(check: CommandCheck, environment: Mapping[str, str]) -> CheckResult:
    name = "command " + " ".join(check.run)
    try:
        completed = execute.run(
            execute.Command(tuple(check.run), env=dict(environment)),
            timeout=check.timeout.total_seconds(),
            check=False,
        )
    except DrkitError as error:
        return CheckResult(name, False, None, describe_failure(error))
    except OSError as error:
        return CheckResult(name, False, None, f"cannot run {check.run[0]}: {error.strerror}")
    tail = completed.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return CheckResult(
        name,
        completed.returncode == 0,
        completed.returncode,
        "" if completed.returncode == 0 else f"exit {completed.returncode}: {tail[0]}",
    )


def run_checks(
    resources: Resources,
    prepared: PreparedRestore,
    targets: Mapping[str, Target],
    environment: Mapping[str, str],
) -> list[CheckResult]:
    """Every check of the plan's drill section, plus one per store that had to be skipped."""
    results: list[CheckResult] = []
    for item in prepared.items:
        for failover in item.failovers:
            results.append(
                CheckResult(
                    f"copy {failover.split(':', 1)[0]} of {item.source}", False, None, failover
                )
            )
    for check in resources.plan.drill.checks:
        if isinstance(check, FingerprintCheck):
            results.extend(_fingerprint_checks(prepared))
        elif isinstance(check, SqlCheck):
            results.append(_sql_check(resources, check, targets))
        elif isinstance(check, CommandCheck):
            results.append(_command_check(check, environment))
    for result in results:
        log.info(
            "check %s: %s%s",
            result.name,
            "passed" if result.passed else "FAILED",
            f" ({result.detail})" if result.detail and not result.passed else "",
        )
    return results
