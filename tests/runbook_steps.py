"""Reading runbooks/*.md into the steps tests/test_runbooks.py replays against the demo.

What a runbook promises, and how it is marked (runbooks/README.md, "How these runbooks stay
true", says the same for writers):

- every line starting with ``drkit `` in a ```bash block, or with ``$ drkit `` in a ```console
  block, is a command; it must exit 0 unless the line ends with a comment ``# exits N``;
- an ``export NAME=VALUE`` line in such a block sets the environment of the later steps;
- ``<!-- runbook-test: run -->`` before a ```bash block: the whole block is a shell script the
  test runs (simulating an incident on the demo, or checking a result without drkit); it must
  succeed, and holds no drkit command, so every exit-code promise stays on a ``drkit`` line;
- ``<!-- runbook-test: skip (REASON) -->`` before a block: its drkit commands need something the
  demo cannot provide (a PostgreSQL server, S3, KMS); they are counted, not run;
- ``<snapshot-id>`` (the newest snapshot) and ``<previous-snapshot-id>`` (the one before) are
  the placeholders the test fills in from ``drkit snapshots PLAN --json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MARKER = re.compile(r"<!--\s*runbook-test:\s*(?P<kind>[a-z-]+)\s*(?:\((?P<reason>[^)]*)\))?\s*-->")
FENCE = re.compile(r"^\s*```\s*(?P<language>[\w-]*)")
EXITS = re.compile(r"#\s*exits\s+(?P<code>\d+)\b")
PLACEHOLDER = re.compile(r"<(?P<name>[a-z][a-z0-9-]*)>")
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell"})
PLACEHOLDERS = ("snapshot-id", "previous-snapshot-id")


@dataclass(frozen=True)
class Command:
    """A ``drkit`` command line and the exit code the runbook promises for it."""

    line: int
    text: str
    exit_code: int


@dataclass(frozen=True)
class Export:
    """An ``export NAME=VALUE`` line: later steps see the variable."""

    line: int
    text: str


@dataclass(frozen=True)
class Script:
    """A block marked ``run``: a shell script that must succeed."""

    line: int
    text: str


@dataclass(frozen=True)
class Skipped:
    """A drkit command in a block marked ``skip``, with the reason the runbook gives."""

    line: int
    text: str
    reason: str


Step = Command | Export | Script | Skipped


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, first content line, lines, and marker if any."""

    language: str
    line: int
    lines: list[str]
    marker: str | None
    reason: str


class RunbookSyntaxError(ValueError):
    """A runbook marks or writes a command in a way the test cannot honour."""


def read_blocks(markdown: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, each with the marker just before it."""
    blocks: list[Block] = []
    marker: tuple[str, str] | None = None
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        found = MARKER.fullmatch(lines[index].strip())
        opening = FENCE.match(lines[index])
        if found:
            marker = (found["kind"], (found["reason"] or "").strip())
        elif opening:
            end = index + 1
            while end < len(lines) and not lines[end].strip().startswith("```"):
                end += 1
            kind, reason = marker or (None, "")
            blocks.append(
                Block(opening["language"], index + 2, lines[index + 1 : end], kind, reason)
            )
            marker = None
            index = end
        elif lines[index].strip() and marker is not None:
            raise RunbookSyntaxError(
                f"line {index + 1}: a runbook-test marker must come right before a code block"
            )
        index += 1
    return blocks


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """Shell lines of a block with ``\\`` continuations joined; console blocks keep only
    ``$ `` prompts (continued by ``> `` lines)."""
    joined: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for offset, raw in enumerate(block.lines):
        text = raw.strip()
        if block.language == "console":
            if pending is None and not text.startswith("$ "):
                continue
            text = text[2:] if text.startswith(("$ ", "> ")) else text
        if pending is not None:
            start, previous = pending
            text, number = previous + " " + text, start
        else:
            number = block.line + offset
        if text.endswith("\\"):
            pending = (number, text[:-1].rstrip())
            continue
        pending = None
        joined.append((number, text))
    return joined


def steps_of_block(block: Block) -> list[Step]:
    """What one block asks the test to do."""
    if block.marker == "run":
        if block.language not in SHELL_LANGUAGES:
            raise RunbookSyntaxError(f"line {block.line}: only a ```bash block can be marked run")
        if any(text.startswith("drkit ") for _, text in logical_lines(block)):
            raise RunbookSyntaxError(
                f"line {block.line}: a block marked run holds no drkit command; put drkit "
                "commands in their own block, where their exit codes are checked"
            )
        return [Script(block.line, "\n".join(block.lines))]
    if block.language not in SHELL_LANGUAGES | {"console"}:
        return []
    steps: list[Step] = []
    for number, text in logical_lines(block):
        if text.startswith("drkit "):
            steps.append(make_command(number, text, block))
        elif text.startswith("export ") and block.marker != "skip":
            steps.append(Export(number, text))
    if block.marker == "skip" and not any(isinstance(step, Skipped) for step in steps):
        raise RunbookSyntaxError(f"line {block.line}: a block marked skip has no drkit command")
    if block.marker not in (None, "run", "skip"):
        raise RunbookSyntaxError(f"line {block.line}: unknown runbook-test marker {block.marker!r}")
    return steps


def make_command(number: int, text: str, block: Block) -> Command | Skipped:
    if block.marker == "skip":
        if not block.reason:
            raise RunbookSyntaxError(f"line {number}: say why in the marker: skip (needs S3)")
        return Skipped(number, text, block.reason)
    exits = EXITS.search(text)
    return Command(number, text, int(exits["code"]) if exits else 0)


def read_steps(markdown: str) -> list[Step]:
    """Every step of a runbook, in the order of the text."""
    return [step for block in read_blocks(markdown) for step in steps_of_block(block)]
