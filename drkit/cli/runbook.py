"""`drkit runbook [NAME]`: the on-call runbooks that ship inside drkit (drkit/runbooks/*.md),
readable wherever drkit runs, the Docker image included."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

import click

from drkit.errors import UsageError

INDEX = "README"


def runbook_folder() -> Traversable:
    return resources.files("drkit").joinpath("runbooks")


def runbook_names() -> list[str]:
    """Every page's name (its file name without ``.md``), the index first."""
    names = sorted(
        entry.name.removesuffix(".md")
        for entry in runbook_folder().iterdir()
        if entry.name.endswith(".md")
    )
    return sorted(names, key=lambda name: name != INDEX)


def read_runbook(name: str) -> str:
    """The page called ``name`` (``store-down`` or ``store-down.md``); UsageError listing the
    pages for any other name."""
    wanted = name.removesuffix(".md")
    if wanted.lower() in ("", "index", "readme"):
        wanted = INDEX
    if wanted not in runbook_names():
        raise UsageError(
            f"no runbook named {name!r}",
            hint="pages: " + ", ".join(runbook_names()),
        )
    return runbook_folder().joinpath(f"{wanted}.md").read_text(encoding="utf-8")


def title_of(text: str) -> str:
    first = next((line for line in text.splitlines() if line.startswith("# ")), "")
    return first.removeprefix("# ").strip()


@click.command(
    "runbook",
    epilog="""\b
Examples:
  drkit runbook                      # the index: which page for which symptom
  drkit runbook store-down
  drkit runbook --list""",
)
@click.argument("name", required=False)
@click.option("--list", "as_list", is_flag=True, help="List the pages with their titles.")
def runbook_command(name: str | None, as_list: bool) -> int:
    """Print an on-call runbook (numbered steps with exact commands); without NAME, the
    index saying which page helps with which symptom."""
    if as_list:
        for page in runbook_names():
            click.echo(f"{page:<38} {title_of(read_runbook(page))}")
        return 0
    click.echo(read_runbook(name or INDEX), nl=False)
    return 0
