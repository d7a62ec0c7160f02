"""`drkit plan ...` end to end through the CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from drkit.cli import main
from drkit.errors import ExitCode
from drkit.plan.loader import PlanYamlLoader

PLANS = Path(__file__).parents[2] / "plans"
FIVE_MISTAKES = """\
version: 1
name: Payments API
sources:
  - name: db
    type: postgresql
    url: postgresql://app@db/app
    password: hunter2
keys:
  - name: k
    type: keyfile
    path: /k
stores:
  - name: s
    type: s3
    bucket: bucket
schedule:
  backup: "every hour"
drill:
  checks:
    - type: sql
      source: orders
      query: SELECT 1
      expect: "> 0"
"""


def test_validate_accepts_every_committed_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "validate", *map(str, sorted(PLANS.glob("*.yaml")))]) == 0
    assert "payments-api.yaml: ok (payments-api)" in capsys.readouterr().out


def test_five_mistakes_five_errors_exit_2_no_traceback(tmp_path: Path) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text(FIVE_MISTAKES)
    completed = subprocess.run(
        [sys.executable, "-m", "drkit", "plan", "validate", str(plan)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == ExitCode.USAGE
    lines = [line for line in completed.stderr.splitlines() if line.startswith(str(plan) + ":")]
    assert [line.split(": ", 2)[1] for line in lines[:-1]] == [
        "name",
        "sources[0].password",
        "stores[0].region",
        "schedule.backup",
        "drill.checks[0].source",
    ]
    assert all(line.split(":")[1].isdigit() for line in lines[:-1])
    assert "Traceback" not in completed.stderr
    assert "hunter2" not in completed.stderr + completed.stdout


def test_validate_json_lists_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text(FIVE_MISTAKES)
    assert main(["plan", "validate", "--json", str(plan)]) == ExitCode.USAGE
    [result] = json.loads(capsys.readouterr().out)
    assert result["valid"] is False and len(result["problems"]) == 5


def test_show_masks_nothing_because_secrets_are_references(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "show", str(PLANS / "payments-api.yaml")]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["sources"][0]["password"] == "env:ORDERS_DB_PASSWORD"
    assert shown["objectives"] == {"rpo": "1h", "rto": "30m"}
    assert shown["compression"] == {"algorithm": "zstd", "level": 3}


def test_schema_is_valid_json_schema_and_accepts_the_plans(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in PLANS.glob("*.yaml"):
        if "${" not in path.read_text():
            # YAML 1.2 like editors' YAML servers: `on:` is a string key, not a boolean
            jsonschema.validate(yaml.load(path.read_text(), Loader=PlanYamlLoader), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "name": "x", "bogus": 1}, schema)


def test_init_writes_a_valid_sample_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "plans" / "new.yaml"
    assert main(["plan", "init", str(target)]) == 0
    assert main(["plan", "validate", str(target)]) == 0
    assert main(["plan", "init", str(target)]) == ExitCode.USAGE


def test_missing_plan_file_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "show", "/nonexistent/plan.yaml"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "no such plan file" in err and "hint:" in err


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    from drkit.cli import cli

    main(["--help"])
    capsys.readouterr()

    def walk(group: click.Group, prefix: list[str]) -> list[list[str]]:
        found = []
        context = click.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            assert command is not None
            if isinstance(command, click.Group):
                found.extend(walk(command, [*prefix, name]))
            else:
                found.append([*prefix, name])
        return found

    for path in walk(cli, []):
        assert main([*path, "--help"]) == 0
        text = capsys.readouterr().out
        assert "Example" in text, f"drkit {' '.join(path)} --help has no example"
