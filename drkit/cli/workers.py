"""`drkit run --workers N`: the plans that have something to do run in up to N child drkit
processes at once, each `drkit run --json` on one plan file, so one runner (a Kubernetes
CronJob for a group of plans) serves many plans without one slow backup holding up the rest,
and holds at most N + 1 catalog connections. Each child decides and locks as `drkit run`
does; the parent only gathers what they report. A parent stopped by SIGTERM or Ctrl-C stops
its children the same way, so their runs end `interrupted`, not abandoned."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from drkit.actions.run import JobOutcome
from drkit.cli.context import Context
from drkit.outcome import Outcome

#: seconds a child gets to end after the parent was told to stop, before it is killed
STOP_GRACE_SECONDS = 90


class ChildRunners:
    """The running children, so a stopping parent can stop them too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: list[subprocess.Popen[str]] = []

    def run(self, argv: list[str], plan: str) -> list[JobOutcome]:
        with self._lock:
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None, text=True)
            self._children.append(child)
        output, _ = child.communicate()
        with self._lock:
            self._children.remove(child)
        return parse_child_output(plan, child.returncode, output)

    def stop(self) -> None:
        with self._lock:
            children = list(self._children)
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()


def parse_child_output(plan: str, returncode: int, output: str) -> list[JobOutcome]:
    """The outcomes a child printed (``--json``); one failed outcome when it printed none."""
    try:
        documents = json.loads(output)
        return [
            JobOutcome(
                str(item["plan"]),
                str(item["job"]),
                Outcome.SKIPPED if item["outcome"] == "would run" else Outcome(item["outcome"]),
                str(item.get("reason") or ""),
                float(item.get("seconds") or 0.0),
                dict(item.get("detail") or {}),
            )
            for item in documents
        ]
    except (ValueError, KeyError, TypeError):
        reason = f"drkit run of the plan ended with exit {returncode} and no result"
        return [JobOutcome(plan, "run", Outcome.FAILED, reason)]


def child_argv(context: Context, options: Sequence[str], plan_file: Path) -> list[str]:
    """``python -m drkit [global options] run --json OPTIONS FILE`` for one plan."""
    argv = [sys.executable, "-m", "drkit"]
    if context.catalog_url:
        argv += ["--catalog", context.catalog_url]
    if context.quiet:
        argv.append("-q")
    argv += ["-v"] * context.verbose
    return [*argv, "run", "--json", *options, str(plan_file)]


def run_plans_in_children(
    context: Context, options: Sequence[str], plan_files: Sequence[tuple[str, Path]], workers: int
) -> list[JobOutcome]:
    """Run each (plan, file) in a child, at most ``workers`` at once; outcomes in plan order."""
    runners = ChildRunners()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drkit-worker") as pool:
            futures = [
                pool.submit(runners.run, child_argv(context, options, path), plan)
                for plan, path in plan_files
            ]
            return [outcome for future in futures for outcome in future.result()]
    except BaseException:
        runners.stop()
        raise
