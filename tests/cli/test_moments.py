"""--before / --now: a time without a zone is read in the local zone (never silently as UTC)
and echoed back with its zone; relative times; an empty value is an error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drkit.cli import main
from drkit.cli.moments import describe_moment, parse_moment
from drkit.errors import ExitCode, UsageError

NOW = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)


def test_a_time_without_a_zone_is_local_time(new_york: None) -> None:
    moment = parse_moment("2026-12-01T16:55:40", option="--before", now=NOW)
    assert moment.astimezone(UTC) == datetime(2026, 12, 1, 21, 55, 40, tzinfo=UTC)


def test_the_echo_names_the_zone_and_utc(new_york: None) -> None:
    moment = parse_moment("2026-12-01 16:55:40", option="--before", now=NOW)
    assert describe_moment(moment, now=NOW) == (
        "2026-12-01 16:55:40 EST (2026-12-01 21:55:40 UTC, 1h04m ago)"
    )


def test_a_time_with_a_zone_keeps_it(new_york: None) -> None:
    moment = parse_moment("2026-12-01T16:55:40Z", option="--before", now=NOW)
    assert moment == datetime(2026, 12, 1, 16, 55, 40, tzinfo=UTC)
    assert describe_moment(moment, now=NOW) == "2026-12-01 16:55:40 UTC (6h04m ago)"


@pytest.mark.parametrize("text", ["2h", "2h ago", " 120m "])
def test_a_duration_means_that_long_ago(text: str) -> None:
    assert parse_moment(text, option="--before", now=NOW) == NOW - timedelta(hours=2)


@pytest.mark.parametrize("text", ["", "  "])
def test_an_empty_time_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="--before is empty"):
        parse_moment(text, option="--before", now=NOW)


def test_nonsense_is_refused_with_examples() -> None:
    with pytest.raises(UsageError, match="is not a time") as raised:
        parse_moment("yesterday-ish", option="--before", now=NOW)
    assert "local time" in raised.value.hint


def test_restore_before_an_empty_string_exits_2_instead_of_meaning_newest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("not read: the option fails first")
    assert main(["restore", str(plan), "--before", "", "--dry-run"]) == int(ExitCode.USAGE)
    assert "drkit: error: --before is empty" in capsys.readouterr().err


def test_restore_echoes_the_instant_it_understood(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], new_york: None
) -> None:
    import yaml

    from ..actions.conftest import make_backend, plan_document

    make_backend(tmp_path / "backend")
    stores = [{"name": "east", "type": "filesystem", "path": str(tmp_path / "e"), "region": "e"}]
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(plan_document(tmp_path, stores), sort_keys=False))
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    assert main(["--catalog", catalog, "backup", str(plan)]) == 0
    capsys.readouterr()
    later = (datetime.now(UTC) + timedelta(hours=1)).astimezone()
    local_text = later.strftime("%Y-%m-%dT%H:%M:%S")  # no zone: New York time
    elsewhere = [f"--to=app-db={tmp_path / 'x.db'}", f"--to=app-config={tmp_path / 'x'}"]
    argv = ["--catalog", catalog, "restore", str(plan), "--before", local_text, *elsewhere]
    assert main([*argv, "--dry-run"]) == 0
    errors = capsys.readouterr().err
    assert f"--before {local_text}: {later:%Y-%m-%d %H:%M:%S} E" in errors  # EST or EDT
    assert f"{later.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in errors
