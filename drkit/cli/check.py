"""`drkit check`: every preflight of one or more plans, one line per finding."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from drkit.cli.context import echo_json, json_option
from drkit.errors import ExitCode, PlanError, UsageError
from drkit.plan.loader import find_plan_files, load_plan
from drkit.preflight import Finding, Status, check_plan
from drkit.preflight.finding import failed

LABELS = {Status.OK: "ok", Status.FAILED: "FAILED", Status.SKIPPED: "skipped"}


@dataclass
class PlanCheck:
    """The findings for one plan file."""

    plan_file: str
    plan: str | None
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.failed]

    def to_json(self) -> dict[str, object]:
        return {
            "plan_file": self.plan_file,
            "plan": self.plan,
            "ok": not self.failures,
            "seconds": round(self.seconds, 3),
            "findings": [finding.to_json() for finding in self.findings],
        }


def check_file(path: Path) -> PlanCheck:
    """Load and check one plan; a plan that does not load is one failed finding."""
    started = time.monotonic()
    try:
        plan = load_plan(path)
    except PlanError as error:
        problems = "; ".join(error.problems) or error.message
        finding = failed("plan", str(path), PlanError(problems, hint=error.hint), owner="plan")
        return PlanCheck(str(path), None, [finding], time.monotonic() - started)
    findings = check_plan(plan, thorough=True)
    return PlanCheck(str(path), plan.name, findings, time.monotonic() - started)


def render_check(result: PlanCheck) -> None:
    click.echo(f"== {result.plan_file}" + (f" ({result.plan})" if result.plan else ""))
    for finding in result.findings:
        line = f"{LABELS[finding.status]:<8}{finding.area} {finding.subject}: {finding.detail}"
        click.echo(line)
        if finding.failed and finding.hint:
            click.echo(f"{'':<8}hint: {finding.hint}")
    skipped = sum(finding.status is Status.SKIPPED for finding in result.findings)
    failures = len(result.failures)
    verdict = f"{failures} of {len(result.findings)} checks failed" if failures else "ready"
    skipped_text = f", {skipped} skipped" if skipped else ""
    click.echo(
        f"{result.plan or result.plan_file}: {verdict}{skipped_text} ({result.seconds:.1f}s)"
    )


@click.command(
    "check",
    epilog="""\b
Examples:
  drkit check plans/payments.yaml
  drkit check /etc/drkit/plans --json | jq '.[].findings[] | select(.status == "failed")'
Exit: 0 ready; otherwise the exit code of the first failed check
      (2 secret or plan, 6 store, 8 key, 11 missing or too old a program, 1 other).""",
)
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@json_option
def check_command(plans: tuple[str, ...], as_json: bool) -> int:
    """Check that PLAN can run: secrets resolve, keys wrap and unwrap a test data key, stores
    answer and take a write (a probe that is removed again), servers answer and pg_dump is
    new enough for them, the MariaDB client and the drill sandboxes' programs are installed.
    A fast local part of this runs before every backup, restore and drill."""
    files = find_plan_files(plans)
    if not files:
        raise UsageError("no plan files found", hint="name plan files or a folder holding *.yaml")
    results = [check_file(path) for path in files]
    if as_json:
        echo_json([result.to_json() for result in results])
    else:
        for result in results:
            render_check(result)
    failures = [finding for result in results for finding in result.failures]
    return int(failures[0].exit_code if failures else ExitCode.OK)
