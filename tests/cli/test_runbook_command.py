"""`drkit runbook`: every page that ships inside drkit is readable by name, the index by
default, and every error's `see:` line names a page that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import drkit.errors as errors
from drkit.cli import main
from drkit.cli.runbook import runbook_names
from drkit.errors import DrkitError, ExitCode

PACKAGED = Path(errors.__file__).parent / "runbooks"


def error_classes() -> list[type[DrkitError]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, DrkitError)
    ]


def test_the_pages_are_the_packaged_markdown_files() -> None:
    assert runbook_names()[0] == "README"
    assert sorted(runbook_names()) == sorted(path.stem for path in PACKAGED.glob("*.md"))
    assert len(runbook_names()) >= 8


@pytest.mark.parametrize("name", runbook_names())
def test_every_page_prints_by_name(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbook", name]) == 0
    assert capsys.readouterr().out == (PACKAGED / f"{name}.md").read_text(encoding="utf-8")


def test_without_a_name_the_index_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbook"]) == 0
    assert capsys.readouterr().out.startswith("# drkit on-call runbooks")


def test_a_name_with_md_works_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbook", "store-down.md"]) == 0
    assert capsys.readouterr().out.startswith("# A region or store is down")


def test_the_list_gives_every_page_with_its_title(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbook", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == runbook_names()
    assert any("A key is lost" in line for line in lines)


def test_an_unknown_page_is_a_usage_error_listing_the_pages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["runbook", "no-such-page"]) == int(ExitCode.USAGE)
    errors_text = capsys.readouterr().err
    assert "no runbook named 'no-such-page'" in errors_text and "store-down" in errors_text


@pytest.mark.parametrize("error_class", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_reference_is_a_drkit_runbook_command_naming_a_real_page(
    error_class: type[DrkitError],
) -> None:
    reference = error_class.reference
    if not reference:
        return  # usage and plan mistakes: the hint is the reference
    match = re.fullmatch(r"drkit runbook(?: ([a-z][\w-]*))?", reference)
    assert match, f"{error_class.__name__}.reference {reference!r} is not `drkit runbook NAME`"
    assert (match.group(1) or "README") in runbook_names()
