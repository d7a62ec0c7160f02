"""Where a drkit command spends its time: py-spy samples every thread (idle ones too). Each
sample is charged to the innermost drkit line on its stack (``where``) and to a stage of the
command (``stages``: importing, fingerprint, streaming, pg_restore, ...). Used to explain the
targets that are missed; skipped when py-spy is not installed (``pip install py-spy``)."""

from __future__ import annotations

import linecache
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.drkit_cli import REPOSITORY, DrkitCli
from bench.measure import run_timed

RATE = 100  # samples per second
THREAD = re.compile(r"^thread \((?P<tid>\w+)\)(?::\s*(?P<name>.+))?$")
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")

#: (stage, text of a frame that puts a sample in it), tried in order, so an inner stage
#: (pg_restore run inside the load) comes before the outer one
STAGES: tuple[tuple[str, str], ...] = (
    ("importing modules", "<module> ("),
    ("row counts and schema hash of the restored database", "fingerprint_target ("),
    ("row counts and schema hash of the source", "take_fingerprint ("),
    ("dump stream: read, hash, compress, encrypt, queue", "SnapshotWriter.add ("),
    ("write the manifest to the stores", "_commit (drkit/actions/backup.py"),
    ("fetch and verify the artifact (decrypt, decompress, hash, write)", "stage_artifact ("),
    ("create the target database", "_prepare_database ("),
    ("running pg_restore (or another tool) to its end", "run (drkit/execute.py"),
    ("add data offsets to the staged archive", "PostgresqlDatabase.restore ("),
    ("check the target is empty", "_apply_safety_rules ("),
    ("start and stop the drill sandbox", "open_sandboxes ("),
    ("start and stop the drill sandbox", "DrillSandboxes."),
    ("catalog", "Catalog."),
)
OTHER = "other (plan, keys, stores, command line)"


@dataclass
class ThreadProfile:
    """One thread's samples: by innermost drkit line (``where``) and by stage."""

    name: str
    samples: int = 0
    where: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)

    def top(self, count: int = 6) -> list[tuple[str, float]]:
        return [(place, n / self.samples) for place, n in self.where.most_common(count)]


@dataclass
class Profile:
    command: str
    seconds: float
    threads: list[ThreadProfile]

    @property
    def main(self) -> ThreadProfile | None:
        return next((thread for thread in self.threads if thread.name == "MainThread"), None)


def is_available() -> bool:
    return shutil.which("py-spy") is not None


def profile_command(cli: DrkitCli, arguments: list[str], output: Path) -> Profile:
    """Run ``drkit ARGUMENTS --json`` under py-spy and summarise the samples."""
    options = ["--format", "raw", "--rate", str(RATE), "--threads", "--idle", "--nonblocking"]
    argv = ["py-spy", "record", *options, "--output", str(output), "--"]
    argv += [*cli.program, "--quiet", "--catalog", cli.catalog, *arguments, "--json"]
    sample = run_timed(cli.workspace, argv, env=cli.environment)
    return Profile(" ".join(["drkit", *arguments[:1]]), sample.seconds, summarize(output))


def summarize(raw: Path) -> list[ThreadProfile]:
    """Per-thread counts from py-spy's raw (collapsed-stack) output; a thread's samples taken
    before it had a name (the main thread during imports) count under its later name."""
    threads: dict[str, ThreadProfile] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        match = THREAD.match(frames[0])
        tid, name = (match["tid"], match["name"]) if match else (frames[0], None)
        thread = threads.setdefault(tid, ThreadProfile(name or f"thread {tid}"))
        if name:
            thread.name = name
        thread.samples += int(count)
        thread.where[innermost_drkit_frame(frames[1:])] += int(count)
        thread.stages[stage_of(frames[1:])] += int(count)
    ordered = sorted(threads.values(), key=lambda thread: -thread.samples)
    return [thread for thread in ordered if thread.samples >= RATE // 2]


def stage_of(frames: list[str]) -> str:
    """The first stage one of whose markers is on the stack below the entry point (the
    ``<module>`` frame of ``python -m drkit`` is not an import)."""
    entry = next((i for i, frame in enumerate(frames) if frame.startswith("<module> (")), -1)
    inner = frames[entry + 1 :]
    for stage, marker in STAGES:
        if any(marker in frame for frame in inner):
            return stage
    return OTHER if frames else "interpreter start and exit"


def innermost_drkit_frame(frames: list[str]) -> str:
    """The innermost drkit frame as ``drkit/file.py:line function `code```, plus the
    function it was in when that is not drkit code (``-> function``)."""
    leaf = _short(frames[-1]) if frames else "no Python frame (interpreter start and exit)"
    for frame in reversed(frames):
        match = FRAME.match(frame)
        if match and "drkit/" in match["file"] and match["line"]:
            path = match["file"][match["file"].index("drkit/") :]
            code = linecache.getline(str(REPOSITORY / path), int(match["line"])).strip()
            place = f"{path}:{match['line']} {match['function']} `{code}`"
            return place if frame == frames[-1] else f"{place} -> {leaf}"
    return leaf


def _short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    return f"{match['function']} ({Path(match['file']).name})"
