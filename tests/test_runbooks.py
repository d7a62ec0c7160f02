"""The on-call runbooks stay true: every ``drkit`` command in runbooks/*.md runs, in order,
against a fresh demo (``drkit demo``) and exits with the code its runbook promises, without a
traceback. How commands are marked: tests/runbook_steps.py and runbooks/README.md.

Commands run in this process through ``drkit.cli.main`` (what the console script calls), so a
whole runbook takes seconds; their words are expanded by bash exactly as a shell would.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from drkit.cli import main
from tests.conftest import require
from tests.runbook_steps import (
    PLACEHOLDER,
    PLACEHOLDERS,
    Command,
    Export,
    RunbookSyntaxError,
    Script,
    Skipped,
    Step,
    read_steps,
)

REPOSITORY = Path(__file__).resolve().parent.parent
#: the one copy, shipped inside the package; runbooks/ at the top is a symlink to it
RUNBOOKS = REPOSITORY / "drkit" / "runbooks"
EXPECTED_RUNBOOKS = (
    "README.md",
    "restore-after-data-loss.md",
    "store-down.md",
    "restore-before-bad-deploy.md",
    "catalog-lost.md",
    "key-lost-or-rotated.md",
    "drill-failed-or-objective-breached.md",
    "restore-without-drkit.md",
)
#: commands needing what the demo cannot provide; more than this many means the runbooks have
#: drifted away from what the test can keep true
MAX_SKIPPED = 4
SHELL_OPERATORS = frozenset({"|", "||", "&", "&&", ";", "<", ">", ">>", "(", ")"})
#: variables bash itself sets; they must not leak from one step's shell into the next
SHELL_OWN = frozenset({"_", "SHLVL", "PWD", "OLDPWD", "RUNBOOK_ENVIRONMENT"})
#: what the runbooks' own shell steps use besides coreutils
TOOLS = ("bash", "sqlite3", "jq", "zstd", "restic")
#: a runbook sets these itself; the caller's values must not leak in
CALLER_OWN = ("DRKIT_", "RESTIC_", "AWS_")
TRACEBACK = "Traceback (most recent call last)"
SCRIPT_TIMEOUT_SECONDS = 120


def runbook_files() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.md"))


class RunbookSession:
    """One runbook replayed against its own demo: the environment its steps build up, and
    every broken promise found on the way."""

    def __init__(self, runbook: Path, root: Path, capsys: pytest.CaptureFixture[str]):
        self.runbook = runbook
        self.capsys = capsys
        demo = root / "demo"
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(CALLER_OWN) and name not in ("PLAN", "RECOVERY", "WORK")
        }
        self.environment = inherited | {
            "DRKIT_DEMO_DIR": str(demo),
            "DRKIT_CATALOG": f"sqlite:///{demo / 'catalog.db'}",
            "DRKIT_HOME": str(root / "home"),
            "RESTIC_CACHE_DIR": str(root / "restic-cache"),
        }
        self.failures: list[str] = []

    def where(self, line: int) -> str:
        return f"{self.runbook.relative_to(REPOSITORY)}:{line}"

    # --- drkit commands, in this process ---------------------------------------------------

    def drkit(self, argv: list[str]) -> tuple[int | None, str, str]:
        """Run drkit with the session's environment: exit code (None when an exception
        escaped), standard output, and standard error with any escaped traceback."""
        saved_environment, saved_stdin = dict(os.environ), sys.stdin
        os.environ.clear()
        os.environ.update(self.environment)
        sys.stdin = io.StringIO("")  # never a TTY: restore does not prompt
        self.capsys.readouterr()
        try:
            code: int | None = main(argv)
            escaped = ""
        except (Exception, SystemExit):  # what the console script would print as a traceback
            code, escaped = None, traceback.format_exc()
        finally:
            os.environ.clear()
            os.environ.update(saved_environment)
            sys.stdin = saved_stdin
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err + escaped

    def placeholder(self, name: str) -> str:
        """The newest snapshot id, or the one before it, as `drkit snapshots --json` lists."""
        plan = self.environment.get("PLAN") or str(
            Path(self.environment["DRKIT_DEMO_DIR"]) / "plan.yaml"
        )
        code, output, errors = self.drkit(["snapshots", plan, "--json"])
        if code != 0:
            raise AssertionError(f"cannot list snapshots for <{name}>:\n{output}{errors}")
        ids = sorted((entry["snapshot_id"] for entry in json.loads(output)), reverse=True)
        position = PLACEHOLDERS.index(name)
        if len(ids) <= position:
            raise AssertionError(f"<{name}> needs {position + 1} snapshot(s), the demo has {ids}")
        return str(ids[position])

    def fill_placeholders(self, line: int, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match["name"] not in PLACEHOLDERS:
                raise RunbookSyntaxError(
                    f"{self.where(line)}: unknown placeholder <{match['name']}>; "
                    f"the test fills in only {', '.join(f'<{p}>' for p in PLACEHOLDERS)}"
                )
            return self.placeholder(match["name"])

        return PLACEHOLDER.sub(replace, text)

    def expand(self, line: int, text: str) -> list[str]:
        """The argv bash would build from a command line (quotes, variables, comments)."""
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        if any(token in SHELL_OPERATORS for token in lexer):
            raise RunbookSyntaxError(
                f"{self.where(line)}: keep drkit lines simple commands (no pipe, redirection, "
                f"&& or ;), so their exit code is drkit's: {text}"
            )
        result = self.shell(f"set -- {text}\nprintf '%s\\0' \"$@\"")
        if result.returncode != 0:
            raise RunbookSyntaxError(f"{self.where(line)}: bash cannot parse: {result.stderr}")
        return result.stdout.split("\0")[:-1]

    def run_command(self, step: Command) -> None:
        argv = self.expand(step.line, self.fill_placeholders(step.line, step.text))
        code, printed, errors = self.drkit(argv[1:])
        output = printed + errors
        problems = []
        if code != step.exit_code:
            problems.append(f"exited {code}, the runbook says {step.exit_code}")
        if TRACEBACK in output:
            problems.append("printed a traceback")
        if problems:
            tail = "\n".join(output.strip().splitlines()[-12:])
            self.failures.append(
                f"{self.where(step.line)}: `{step.text}` {' and '.join(problems)}:\n{tail}"
            )

    # --- shell steps -----------------------------------------------------------------------

    def shell(self, script: str, *, strict: bool = False) -> subprocess.CompletedProcess[str]:
        options = ["-euo", "pipefail"] if strict else []
        return subprocess.run(
            ["bash", *options, "-c", script],
            env=self.environment,
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_SECONDS,
            check=False,
        )

    def run_shell(self, line: int, script: str, *, what: str) -> None:
        """Run a script, then carry the variables it exported into the next steps."""
        saved = Path(self.environment["DRKIT_HOME"]) / "runbook-environment"
        saved.parent.mkdir(parents=True, exist_ok=True)
        self.environment["RUNBOOK_ENVIRONMENT"] = str(saved)
        script = self.fill_placeholders(line, script)
        result = self.shell(f'{script}\nenv -0 > "$RUNBOOK_ENVIRONMENT"', strict=True)
        if result.returncode != 0:
            self.failures.append(
                f"{self.where(line)}: {what} failed (exit {result.returncode}):\n{script}\n"
                f"{(result.stdout + result.stderr).strip()}"
            )
            return
        pairs = (entry.partition("=") for entry in saved.read_text().split("\0") if entry)
        self.environment = {name: value for name, _, value in pairs if name not in SHELL_OWN}

    def run(self, step: Step) -> None:
        if isinstance(step, Command):
            self.run_command(step)
        elif isinstance(step, Export):
            self.run_shell(step.line, step.text, what=f"`{step.text}`")
        elif isinstance(step, Script):
            self.run_shell(step.line, step.text, what="the demo script")


@pytest.mark.parametrize("runbook", runbook_files(), ids=lambda path: path.name)
def test_runbook_commands_exit_as_documented_against_the_demo(
    runbook: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    require(not missing, f"the runbooks' shell steps need {', '.join(missing)}")
    session = RunbookSession(runbook, tmp_path, capsys)
    code, output, errors = session.drkit(["demo"])
    assert code == 0, f"drkit demo failed:\n{output}{errors}"
    steps = read_steps(runbook.read_text(encoding="utf-8"))
    for step in steps:
        session.run(step)
    assert not session.failures, "\n\n".join(session.failures)
    assert any(isinstance(step, Command) for step in steps) or not any(
        isinstance(step, Skipped) for step in steps
    ), f"{runbook.name}: every drkit command is skipped"


def test_runbooks_skip_only_a_few_commands_and_say_why() -> None:
    skipped = [
        f"{path.name}:{step.line}: {step.text}  ({step.reason})"
        for path in runbook_files()
        for step in read_steps(path.read_text(encoding="utf-8"))
        if isinstance(step, Skipped)
    ]
    tested = [
        step
        for path in runbook_files()
        for step in read_steps(path.read_text(encoding="utf-8"))
        if isinstance(step, Command)
    ]
    assert len(skipped) <= MAX_SKIPPED, "too many skipped runbook commands:\n" + "\n".join(skipped)
    assert len(tested) >= 10 * max(1, len(skipped)), "most runbook commands must be tested"


def test_every_runbook_named_by_the_code_and_docs_exists() -> None:
    sources = [
        *(REPOSITORY / "drkit").rglob("*.py"),
        *(REPOSITORY / "docs").glob("*.md"),
        *RUNBOOKS.glob("*.md"),
    ]
    texts = [source.read_text(encoding="utf-8") for source in sources]
    named = {
        f"{name}.md" for text in texts for name in re.findall(r"drkit runbook ([a-z][\w-]+)", text)
    }
    named |= {
        Path(path).name for text in texts for path in re.findall(r"runbooks/[\w.-]+\.md", text)
    }
    missing = sorted(name for name in named if not (RUNBOOKS / name).is_file())
    assert not missing, f"named in drkit/, docs/ or a runbook but not written: {missing}"
    assert {path.name for path in runbook_files()} >= set(EXPECTED_RUNBOOKS)


def test_the_top_level_runbooks_folder_is_the_packaged_one() -> None:
    assert (REPOSITORY / "runbooks").resolve() == RUNBOOKS.resolve()


def test_the_index_links_every_runbook() -> None:
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    unlinked = [
        path.name
        for path in runbook_files()
        if path.name != "README.md" and f"({path.name})" not in index
    ]
    assert not unlinked, f"runbooks/README.md does not link {unlinked}"


def test_reading_steps_honours_exit_codes_markers_and_continuations() -> None:
    markdown = "\n".join(
        [
            "```bash",
            "export PLAN=/tmp/plan.yaml",
            'drkit restore "$PLAN" \\',
            "    --dry-run   # exits 9",
            "sqlite3 app.db 'SELECT 1'",
            "```",
            "```console",
            "$ drkit snapshots $PLAN",
            "20261127T155833.024Z-814aba  complete",
            "```",
            "<!-- runbook-test: skip (needs S3) -->",
            "```bash",
            "drkit verify plans/payments.yaml",
            "```",
            "<!-- runbook-test: run -->",
            "```bash",
            "rm -f /tmp/nothing",
            "```",
        ]
    )
    assert read_steps(markdown) == [
        Export(2, "export PLAN=/tmp/plan.yaml"),
        Command(3, 'drkit restore "$PLAN" --dry-run   # exits 9', 9),
        Command(8, "drkit snapshots $PLAN", 0),
        Skipped(13, "drkit verify plans/payments.yaml", "needs S3"),
        Script(17, "rm -f /tmp/nothing"),
    ]


def test_reading_steps_refuses_a_drkit_command_inside_a_script_block() -> None:
    markdown = "<!-- runbook-test: run -->\n```bash\ndrkit backup x.yaml\n```\n"
    with pytest.raises(RunbookSyntaxError, match="holds no drkit command"):
        read_steps(markdown)
