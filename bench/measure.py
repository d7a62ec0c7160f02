"""Timing one command: wall clock, CPU time, and peak memory, and medians over runs.

Peak memory is the process's own high-water mark (``VmHWM`` in /proc/PID/status), polled while
it runs: the figure for "the drkit process". ``ru_maxrss`` from ``wait4`` is kept but not
reported: Linux counts in it the parent's high-water mark at the time of the fork (subprocess
forks with vfork), so after the benchmark itself has mapped a large archive it says nothing
about the child.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.workspace import Workspace

POLL_SECONDS = 0.02
HIGH_WATER_MARK = re.compile(rb"^VmHWM:\s+(\d+) kB", re.MULTILINE)


class CommandFailed(RuntimeError):
    """A benchmarked command exited non-zero: the benchmark stops (its figures would lie)."""


@dataclass(frozen=True)
class Sample:
    """One run of one command."""

    seconds: float
    cpu_seconds: float  # user + system, the process and the children it waited for
    peak_rss_kib: int  # the process's own VmHWM (0 when it was not polled)
    tree_rss_kib: int  # ru_maxrss (see the module docstring: not the child's own peak)
    returncode: int
    stdout: str = ""


@dataclass
class Series:
    """The runs of one measurement; figures are medians."""

    samples: list[Sample] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, sample: Sample, **values: float) -> None:
        self.samples.append(sample)
        for name, value in values.items():
            self.values.setdefault(name, []).append(value)

    @property
    def seconds(self) -> float:
        return statistics.median(sample.seconds for sample in self.samples)

    @property
    def cpu_seconds(self) -> float:
        return statistics.median(sample.cpu_seconds for sample in self.samples)

    @property
    def peak_rss_kib(self) -> int:
        """The highest peak over the runs."""
        return max(sample.peak_rss_kib for sample in self.samples)

    @property
    def median_rss_kib(self) -> float:
        return statistics.median(sample.peak_rss_kib for sample in self.samples)

    @property
    def tree_rss_kib(self) -> int:
        return max(sample.tree_rss_kib for sample in self.samples)

    def value(self, name: str) -> float:
        return statistics.median(self.values[name])

    def spread(self, name: str | None = None) -> tuple[float, float]:
        numbers = self.values[name] if name else [sample.seconds for sample in self.samples]
        return min(numbers), max(numbers)

    def __bool__(self) -> bool:
        return bool(self.samples)


def run_timed(
    workspace: Workspace,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdout: Path | None = None,
    capture: bool = False,
    check: bool = True,
) -> Sample:
    """Run ``argv`` to its end and measure it. Output goes to ``stdout`` (a file), is
    captured (``capture``), or is discarded; stderr goes to a log file in the workspace."""
    log_path = workspace.path("logs", f"{Path(argv[0]).name}-{time.monotonic_ns()}.log")
    out_path = stdout or (log_path.with_suffix(".out") if capture else None)
    with (
        open(log_path, "wb") as errors,
        open(out_path, "wb") if out_path else open(os.devnull, "wb") as output,
    ):
        started = time.monotonic()
        child = subprocess.Popen(argv, stdout=output, stderr=errors, env=env)
        workspace.children.append(child)
        try:
            status, usage, peak = _wait_polling(child.pid)
        finally:
            workspace.children.remove(child)
        seconds = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text(errors="replace") if capture and out_path else ""
    if check and child.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise CommandFailed(f"{' '.join(argv)} exited {child.returncode}: {' | '.join(tail)}")
    return Sample(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_kib=peak,
        tree_rss_kib=usage.ru_maxrss,
        returncode=child.returncode,
        stdout=text,
    )


def _wait_polling(pid: int) -> tuple[int, resource.struct_rusage, int]:
    """Reap ``pid``; meanwhile poll its VmHWM (monotonic, so the last reading is the peak up
    to at most POLL_SECONDS before it exited)."""
    status_file = f"/proc/{pid}/status"
    peak = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage, peak
        try:
            with open(status_file, "rb") as handle:
                match = HIGH_WATER_MARK.search(handle.read())
        except OSError:
            match = None
        if match:
            peak = max(peak, int(match.group(1)))
        time.sleep(POLL_SECONDS)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")
