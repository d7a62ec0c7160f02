"""`drkit plan ...`: validate, show, schema, init."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from drkit.cli.context import echo_json, json_option
from drkit.errors import ExitCode, PlanError, UsageError
from drkit.plan.loader import find_plan_files, load_plan
from drkit.plan.sample import SAMPLE_PLAN
from drkit.plan.schema import json_schema


@click.group("plan")
def plan_group() -> None:
    """Check and explain plan files."""


@plan_group.command(
    "validate",
    epilog="""\b
Examples:
  drkit plan validate plans/*.yaml
  drkit plan validate /etc/drkit/plans --json""",
)
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@json_option
def validate(plans: tuple[str, ...], as_json: bool) -> int:
    """Validate plan files (folders: every *.yaml inside). Exit 2 lists every problem."""
    results: list[dict[str, Any]] = []
    for path in find_plan_files(plans):
        try:
            plan = load_plan(path)
        except PlanError as error:
            results.append(
                {
                    "plan_file": str(path),
                    "valid": False,
                    "problems": error.problems or [error.message],
                }
            )
        else:
            results.append(
                {"plan_file": str(path), "valid": True, "name": plan.name, "problems": []}
            )
    if not results:
        raise UsageError("no plan files found", hint="name plan files or a folder holding *.yaml")
    if as_json:
        echo_json(results)
    else:
        for result in results:
            if result["valid"]:
                click.echo(f"{result['plan_file']}: ok ({result['name']})")
            else:
                for problem in result["problems"]:
                    click.echo(problem, err=True)
                click.echo(f"{result['plan_file']}: {len(result['problems'])} problem(s)", err=True)
    return int(ExitCode.OK if all(r["valid"] for r in results) else ExitCode.USAGE)


@plan_group.command(
    "show",
    epilog="""\b
Example:
  drkit plan show plans/payments.yaml""",
)
@click.argument("plan_file", type=click.Path())
@json_option
def show(plan_file: str, as_json: bool) -> int:
    """Print the plan normalized, with defaults filled in; secrets appear only as references."""
    import yaml

    plan = load_plan(plan_file)
    document = plan.model_dump(mode="json", exclude_none=True)
    if as_json:
        echo_json(document)
    else:
        click.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)
    return 0


@plan_group.command(
    "schema",
    epilog="""\b
Example (VS Code YAML extension):
  drkit plan schema > drkit-plan.schema.json""",
)
def schema() -> int:
    """Print the plan's JSON Schema on stdout, for editors."""
    click.echo(json.dumps(json_schema(), indent=2))
    return 0


@plan_group.command(
    "init",
    epilog="""\b
Example:
  drkit plan init plans/my-api.yaml && $EDITOR plans/my-api.yaml""",
)
@click.argument("path", type=click.Path(), required=False)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str | None, force: bool) -> int:
    """Write an annotated sample plan (to stdout without PATH)."""
    if path is None:
        click.echo(SAMPLE_PLAN, nl=False)
        return 0
    target = Path(path)
    if target.exists() and not force:
        raise UsageError(f"{target} exists", hint="pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(SAMPLE_PLAN, encoding="utf-8")
    click.echo(f"wrote {target}; check it with: drkit plan validate {target}")
    return 0
