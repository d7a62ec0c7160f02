"""Progress for people on a TTY (bytes, total, rate, time left, phase); off a TTY, restore and
drill log one progress line per source every ``LOG_INTERVAL_SECONDS`` (shown with -v), so
``kubectl logs`` shows a long job is alive. Sizes use the same IEC units as every other line
drkit prints (``drkit.units``)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drkit.plan.durations import humanize_seconds
from drkit.units import humanize_bytes, humanize_rate

if TYPE_CHECKING:
    from rich.progress import Task, TaskID
    from rich.text import Text

ByteProgress = Callable[[str, int], None]
#: (source, phase, bytes done, bytes in all or 0 when unknown)
PhaseProgress = Callable[[str, str, int, int], None]
LOG_INTERVAL_SECONDS = 15.0
log = logging.getLogger("drkit.progress")


def describe_progress(done: float, total: float | None, rate: float | None) -> str:
    """``194.6 MiB of 1.0 GiB at 48.2 MiB/s, 17s left`` (each part when known)."""
    text = humanize_bytes(done) + (f" of {humanize_bytes(total)}" if total else "")
    if rate:
        text += f" at {humanize_rate(rate)}"
        if total and total > done:
            text += f", {humanize_seconds((total - done) / rate)} left"
    return text


def describe_transfer(task: Task) -> str:
    """``194.6 MiB at 48.2 MiB/s`` (``of 1.0 GiB`` when the total is known)."""
    return describe_progress(task.completed, task.total, task.speed)


@contextmanager
def byte_progress(*, enabled: bool) -> Iterator[ByteProgress | None]:
    """Yields a callback(label, bytes so far) drawing one live line per label on a TTY."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn
    from rich.text import Text

    class TransferColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(describe_transfer(task))

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TransferColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        tasks: dict[str, object] = {}

        def update(label: str, done: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=None)
            progress.update(tasks[label], completed=done)  # type: ignore[arg-type]

        yield update


@dataclass
class _Phase:
    name: str
    total: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0

    def describe(self, source: str) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if self.done and elapsed > 0 else None
        moved = describe_progress(self.done, self.total, rate) if self.done else ""
        return (
            f"{source}: {self.name}"
            + (f", {moved}" if moved else "")
            + (f" ({humanize_seconds(elapsed)} in this phase)")
        )


@contextmanager
def phase_progress(*, enabled: bool, what: str) -> Iterator[PhaseProgress | None]:
    """Yields a callback(source, phase, bytes done, bytes in all): live lines per source on a
    TTY; elsewhere a progress line per source every ``LOG_INTERVAL_SECONDS`` (INFO)."""
    if not enabled:
        yield None
        return
    if sys.stderr.isatty():
        with _live_progress() as live:
            yield live
        return
    phases: dict[str, _Phase] = {}
    stop = threading.Event()

    def update(source: str, phase: str, done: int, total: int) -> None:
        current = phases.get(source)
        if current is None or current.name != phase:
            phases[source] = current = _Phase(phase, total)
        current.done, current.total = done, total

    def report() -> None:
        while not stop.wait(LOG_INTERVAL_SECONDS):
            for source, phase in list(phases.items()):
                log.info("%s %s", what, phase.describe(source))

    reporter = threading.Thread(target=report, name="progress-log", daemon=True)
    reporter.start()
    try:
        yield update
    finally:
        stop.set()
        reporter.join()


@contextmanager
def _live_progress() -> Iterator[PhaseProgress]:
    from rich.console import Console
    from rich.progress import (
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class TransferColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            if not task.completed:
                return Text("")
            return Text(describe_transfer(task))

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TransferColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        tasks: dict[str, TaskID] = {}
        phases: dict[str, str] = {}

        def update(source: str, phase: str, done: int, total: int) -> None:
            if phases.get(source) != phase:  # a new phase starts its own count and clock
                if source in tasks:
                    progress.remove_task(tasks[source])
                tasks[source] = progress.add_task(f"{source}: {phase}", total=total or None)
                phases[source] = phase
            progress.update(tasks[source], completed=done)

        yield update
