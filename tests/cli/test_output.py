"""What a person or a script sees: -v/-vv/-q levels, text logs unless JSON is asked for (or
in Kubernetes), --json errors as a document on stdout, hints naming the actual command, and
`report -o x.html` writing HTML."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

import drkit.cli as cli_module
from drkit.cli import main
from drkit.cli.context import log_level, wants_json_logs
from drkit.errors import DrkitError, ExitCode

from ..actions.conftest import make_backend, plan_document


@pytest.fixture
def plan(tmp_path: Path) -> dict[str, Any]:
    make_backend(tmp_path / "backend")
    stores = [{"name": "east", "type": "filesystem", "path": str(tmp_path / "east"), "region": "e"}]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan_document(tmp_path, stores), sort_keys=False))
    return {"plan": str(path), "catalog": f"sqlite:///{tmp_path / 'catalog.db'}", "tmp": tmp_path}


def backup_logs(plan: dict[str, Any], capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    assert main(["--catalog", plan["catalog"], *flags, "backup", plan["plan"]]) == 0
    return capsys.readouterr().err


def test_each_verbosity_flag_adds_what_it_promises(
    tmp_path: Path, postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stores = [{"name": "east", "type": "filesystem", "path": str(tmp_path / "east"), "region": "e"}]
    sources = [{"name": "orders-db", "type": "postgresql", "url": postgres_database}]
    path = tmp_path / "plan.yaml"
    document = plan_document(tmp_path, stores, sources=sources)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    plan = {"plan": str(path), "catalog": f"sqlite:///{tmp_path / 'catalog.db'}"}
    quiet, default = backup_logs(plan, capsys, "-q"), backup_logs(plan, capsys)
    verbose, debug = backup_logs(plan, capsys, "-v"), backup_logs(plan, capsys, "-vv")
    assert "INFO" not in default and "DEBUG" not in default
    assert "INFO backup test-api: snapshot" in verbose and "DEBUG" not in verbose
    # -vv: every external program drkit starts, and what it printed
    assert re.search(r"^DEBUG starting \S*pg_dump ", debug, re.MULTILINE)
    assert "INFO backup test-api" in debug
    assert quiet == ""


def test_levels_are_warning_info_debug_and_error_for_quiet() -> None:
    assert log_level(verbose=0, quiet=False) == logging.WARNING
    assert log_level(verbose=1, quiet=False) == logging.INFO
    assert log_level(verbose=2, quiet=False) == logging.DEBUG
    assert log_level(verbose=5, quiet=False) == logging.DEBUG
    assert log_level(verbose=0, quiet=True) == logging.ERROR


def test_logs_are_text_off_a_terminal_and_json_when_asked_or_in_kubernetes() -> None:
    assert not wants_json_logs("auto", {})  # a person piping drkit into less reads text
    assert wants_json_logs("auto", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert wants_json_logs("json", {})
    assert not wants_json_logs("text", {"KUBERNETES_SERVICE_HOST": "10.0.0.1"})


def test_json_log_lines_under_kubernetes(
    plan: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    lines = backup_logs(plan, capsys, "-v").splitlines()
    assert lines and all(json.loads(line)["level"] in ("info", "warning") for line in lines)


def test_a_json_command_that_fails_prints_an_error_document_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["snapshots", "--json", str(tmp_path / "missing.yaml")])
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert code == int(ExitCode.USAGE)
    assert document["error"]["type"] == "PlanError"
    assert document["error"]["exit_code"] == 2
    assert "no such plan file" in document["error"]["message"]
    assert captured.err.startswith("drkit: error: ")  # the one line for people stays


def test_a_json_command_with_a_click_usage_error_prints_an_error_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "--json"]) == int(ExitCode.USAGE)
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "UsageError"


def test_without_json_nothing_goes_to_stdout_on_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["snapshots", str(tmp_path / "missing.yaml")])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["restore", "PLAN", "--to", "nonsense"], "drkit restore"),
        (["-v", "--catalog", "sqlite:///x.db", "restore", "--to", "x", "PLAN"], "drkit restore"),
        (["run", "--due", "--job", "backup", "PLAN"], "drkit run"),
    ],
)
def test_a_usage_hint_names_the_command_that_was_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], command: str
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("not used")
    main([str(plan) if word == "PLAN" else word for word in argv])
    errors = capsys.readouterr().err
    assert f"hint: see `{command} --help`" in errors
    assert "COMMAND" not in errors


def test_no_hint_tells_people_to_run_with_a_single_v() -> None:
    # -v shows progress only; the programs' output that explains a failure needs -vv
    import drkit.errors as errors

    hints = [
        value.default_hint
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, DrkitError)
    ]
    assert not [hint for hint in hints if re.search(r"with -v\b", hint)]


def test_report_to_an_html_file_writes_html(
    plan: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    output = plan["tmp"] / "dr-report.html"
    assert main(["--catalog", plan["catalog"], "report", plan["plan"], "-o", str(output)]) == 0
    assert output.read_text().lstrip().lower().startswith("<!doctype html>")


@pytest.mark.parametrize(("name", "starts"), [("r.md", "#"), ("r.json", "["), ("r.txt", "#")])
def test_report_format_follows_the_extension_and_defaults_to_markdown(
    plan: dict[str, Any], name: str, starts: str
) -> None:
    output = plan["tmp"] / name
    assert main(["--catalog", plan["catalog"], "report", plan["plan"], "-o", str(output)]) == 0
    assert output.read_text().lstrip().startswith(starts)


def test_report_format_option_wins_over_the_extension(plan: dict[str, Any]) -> None:
    output = plan["tmp"] / "report.html"
    argv = ["--catalog", plan["catalog"], "report", plan["plan"], "--format", "md", "-o"]
    assert main([*argv, str(output)]) == 0
    assert output.read_text().startswith("#")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (
            pymysql.err.InternalError(
                6, "Error on delete of '/tmp/#sql-temptable.MAI' (Errcode: 2)"
            ),
            "drkit: error: the database server failed: Error on delete of '/tmp/#sql-temptable.MAI'",
        ),
        (ValueError("a real bug"), "drkit: internal error: ValueError: a real bug"),
    ],
)
def test_a_database_servers_own_failure_is_one_line_not_a_bug_report(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: Exception,
    expected: str,
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(cli_module.cli, "main", fail)
    assert main(["status", "plan.yaml"]) == ExitCode.FAILED
    errors = capsys.readouterr().err
    assert errors.startswith(expected), errors
    assert ("this is a bug in drkit" in errors) is isinstance(raised, ValueError)
