"""`drkit demo`: two runs print the same apart from times and ids, the runs land in the
catalog every other command uses, and the commands it suggests work as printed."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from drkit.cli import main

TIMES_AND_IDS = [
    (re.compile(r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}"), "<id>"),
    (re.compile(r"\d+(\.\d+)?s\b|\d+m\d\ds\b"), "<seconds>"),
]


def normalized(text: str) -> str:
    for pattern, placeholder in TIMES_AND_IDS:
        text = pattern.sub(placeholder, text)
    return text


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $DRKIT_HOME, and no catalog set otherwise: the default catalog."""
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DRKIT_CATALOG", raising=False)
    monkeypatch.delenv("DRKIT_DEMO_DIR", raising=False)
    return tmp_path / "home"


def run_demo(demo: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["demo", "--dir", str(demo)]) == 0
    return capsys.readouterr().out


def test_two_demo_runs_print_the_same_apart_from_times_and_ids(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = run_demo(tmp_path / "demo", capsys), run_demo(tmp_path / "demo", capsys)
    assert normalized(first) == normalized(second)
    assert "SELECT count(*) FROM orders = 500" in second  # not 1000: the backend is reset
    assert "-> BREACHED" not in second


def test_the_demo_records_its_runs_in_the_default_catalog(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = run_demo(tmp_path / "demo", capsys)
    assert f"== catalog sqlite:///{home / 'catalog.db'}" in output
    assert (home / "catalog.db").is_file()
    assert not (tmp_path / "demo" / "catalog.db").exists()


def test_the_demo_ends_with_three_commands_that_work_as_printed(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo dir"  # a space: the printed commands must quote it
    lines = run_demo(demo, capsys).splitlines()
    tail = lines[lines.index("== try next") + 1 :]
    assert len(tail) == 3
    for line in tail:
        argv = shlex.split(line, comments=True)
        assert argv[0] == "drkit"
        assert main(argv[1:]) == 0, f"`{line.strip()}` failed:\n{capsys.readouterr().err}"
    status = next(line for line in tail if " status " in line)
    assert main(shlex.split(status, comments=True)[1:]) == 0
    assert "-> ok" in capsys.readouterr().out


def test_the_demo_plan_works_without_the_demo_variable(
    tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = tmp_path / "elsewhere"
    run_demo(demo, capsys)
    monkeypatch.delenv("DRKIT_DEMO_DIR", raising=False)  # the demo set it for its own process
    assert "${" not in (demo / "plan.yaml").read_text()
    # from the store's own manifests: only found where the plan points at the demo's stores
    argv = ["snapshots", "--json", "--store", "region-east", str(demo / "plan.yaml")]
    assert main(argv) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
