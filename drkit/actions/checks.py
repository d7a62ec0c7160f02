"""Drill checks on restored data: fingerprints, SQL expectations, and commands."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from drkit import execute
from drkit.actions.resources import Resources
from drkit.actions.restore import PreparedRestore
from drkit.errors import DrkitError, describe_failure
from drkit.plan.durations import format_duration
from drkit.plan.expectations import compile_expectation
from drkit.plan.schema import CommandCheck, FingerprintCheck, SqlCheck
from drkit.secrets import SecretRef, is_secret_reference
from drkit.sources import make_source
from drkit.sources.base import Target, describe_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """One line of a drill's checks. ``passed`` is None for a note: something the drill
    reports (the moment it aimed at, a check it could not run) without having checked it;
    it is never printed as ok and never fails the drill."""

    name: str
    passed: bool | None
    measured: float | int | str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "passed": self.passed,
            "measured": self.measured,
            "detail": self.detail,
        }


def copy_checks(source: str, faults: list[str]) -> list[CheckResult]:
    """A failed check per copy the restore had to fail over from (``STORE: reason``): a
    drill holds every store to account, even when another one delivered."""
    return [
        CheckResult(f"copy {fault.split(':', 1)[0]} of {source}", False, None, fault)
        for fault in faults
    ]


def _fingerprint_checks(prepared: PreparedRestore) -> list[CheckResult]:
    results = []
    for item in prepared.items:
        measured = describe_fingerprint(prepared.manifest.artifact(item.source).fingerprint)
        results.append(
            CheckResult(
                f"fingerprint {item.source}",
                not item.differences,
                measured,
                # what the restore deliberately left out is reported, never silent
                "; ".join(item.differences + [f"left out: {what}" for what in item.left_out]),
            )
        )
        if item.left_out:  # not compared either: a note beside the pass, never inside it
            results.append(
                CheckResult(
                    f"left out of {item.source}", None, len(item.left_out), "; ".join(item.left_out)
                )
            )
    return results


def moment_checks(resources: Resources, source: str, target: Target) -> list[CheckResult]:
    """The plan's drill checks of ``source`` against a point-in-time drill's recovered copy
    (``target``, a read-only user's where the sandbox has one): its sql checks run there. A
    moment has no fingerprint to compare with, and command checks are written for a
    snapshot drill's sandboxes of every source: each of those is a note, not a pass."""
    results: list[CheckResult] = []
    for check in resources.plan.drill.checks:
        if isinstance(check, FingerprintCheck):
            detail = "a moment has no fingerprint to compare with: not compared"
            results.append(CheckResult(f"fingerprint {source}", None, None, detail))
        elif isinstance(check, SqlCheck) and check.source == source:
            results.append(_sql_check(resources, check, {source: target}))
        elif isinstance(check, CommandCheck):
            detail = "command checks run in snapshot drills only: not run"
            results.append(CheckResult("command " + " ".join(check.run), None, None, detail))
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


def _command_check(check: CommandCheck, sandbox_environment: Mapping[str, str]) -> CheckResult:
    """Run the plan's command with the sandboxes' URLs and what the check names in ``env``
    (nothing else of drkit's environment); it and everything it started end by its timeout."""
    name = "command " + " ".join(check.run)
    timeout = check.timeout.total_seconds()
    try:
        environment = {**check_environment(check), **sandbox_environment}
        command = execute.Command(tuple(check.run), env=environment)
        returncode, stderr = execute.run_contained(command, timeout=timeout)
    except DrkitError as error:
        return CheckResult(name, False, None, describe_failure(error))
    except OSError as error:
        return CheckResult(name, False, None, f"cannot run {check.run[0]}: {error.strerror}")
    if returncode is None:
        return CheckResult(
            name, False, None, f"did not finish within {format_duration(check.timeout)}"
        )
    tail = stderr.strip().splitlines()[-1:] or [""]
    return CheckResult(
        name,
        returncode == 0,
        returncode,
        "" if returncode == 0 else f"exit {returncode}: {tail[0]}",
    )


def check_environment(check: CommandCheck) -> dict[str, str]:
    """The variables the plan names for a command check: values as written, or the secret
    an ``env:``/``file:`` reference points to (resolved now)."""
    return {
        variable: SecretRef(value).resolve().reveal() if is_secret_reference(value) else value
        for variable, value in check.env.items()
    }


def run_checks(
    resources: Resources,
    prepared: PreparedRestore,
    targets: Mapping[str, Target],
    environment: Mapping[str, str],
) -> list[CheckResult]:
    """Every check of the plan's drill section, plus one per store that had to be skipped.
    ``targets`` are the sandboxes' read-only targets; ``environment`` names them for command
    checks. The restore compared each source's restored data with its snapshot's fingerprint
    whatever the plan lists: a plan without a ``fingerprint`` check still gets those lines,
    so a difference always fails the drill."""
    results: list[CheckResult] = []
    for item in prepared.items:
        results += copy_checks(item.source, item.failovers)
    if not any(isinstance(check, FingerprintCheck) for check in resources.plan.drill.checks):
        results.extend(_fingerprint_checks(prepared))
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
