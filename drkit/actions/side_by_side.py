"""Run a restore's independent sources side by side, a few at a time.

Items start in order, at most ``workers`` at once. After the first failure no further item
starts, the running ones are told to stop (``stop`` is set: staging checks it at every chunk,
a load already under way runs to its end so no target is left half-written by us), and once
every started item has ended the run returns each item's state; the caller raises the first
failure (``SideBySide.raise_first``). An interruption of the calling thread (Ctrl-C, a job's
time limit) stops the items the same way before it propagates. With one worker the items run
in the calling thread, one after another, as they always did.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
Item = TypeVar("Item")
#: each item's state once a run ends
DONE, FAILED, STOPPED, NOT_STARTED = "done", "failed", "stopped", "not started"


def default_workers() -> int:
    """Two sources at a time where the machine has two cores or more (each engine's own
    loader already runs in parallel: pg_restore -j)."""
    return max(1, min(2, os.cpu_count() or 1))


class Stopped(Exception):
    """Raised inside an item that was told to stop because another one failed."""


@dataclass
class SideBySide(Generic[Item]):
    """The states of a run's items, in their order, and the failures by position."""

    states: list[str]
    failures: dict[int, BaseException] = field(default_factory=dict)
    #: positions in the order they failed (the first is the one raised)
    order: list[int] = field(default_factory=list)

    def fail(self, position: int, error: BaseException) -> None:
        self.states[position] = FAILED
        self.failures[position] = error
        self.order.append(position)

    def raise_first(self, items: Sequence[Item], describe: Callable[[Item], str] | None) -> None:
        """Raise the first failure, if any; with ``describe``, first log (WARNING) what
        became of every other item."""
        if not self.order:
            return
        first = self.order[0]
        for position, item in enumerate(items):
            if describe is not None and position != first:
                log.warning("%s: %s", describe(item), self._state_text(position))
        raise self.failures[first]

    def _state_text(self, position: int) -> str:
        state = self.states[position]
        if state == FAILED:
            return f"also failed: {self.failures[position]}"
        if state == DONE:
            return "finished before the failure"
        if state == STOPPED:
            return "stopped when another source failed"
        return "not started: another source failed first"


def run_side_by_side(
    items: Sequence[Item],
    work: Callable[[Item, threading.Event], None],
    *,
    workers: int,
) -> SideBySide[Item]:
    """Run ``work(item, stop)`` for every item (see the module); the result holds each item's
    state and the failures (``raise_first``)."""
    run: SideBySide[Item] = SideBySide([NOT_STARTED] * len(items))
    stop = threading.Event()
    if workers <= 1 or len(items) <= 1:
        for position, item in enumerate(items):
            _attempt(run, position, item, work, stop)
            if run.failures:
                break
    else:
        _in_threads(run, items, work, stop, workers)
    return run


def _attempt(
    run: SideBySide[Item],
    position: int,
    item: Item,
    work: Callable[[Item, threading.Event], None],
    stop: threading.Event,
) -> None:
    if stop.is_set():
        return  # another item failed first: this one never starts
    run.states[position] = "running"
    try:
        work(item, stop)
    except Stopped:
        run.states[position] = STOPPED
    except BaseException as error:  # raised again by the caller (raise_first)
        run.fail(position, error)
        stop.set()
    else:
        run.states[position] = DONE


def _in_threads(
    run: SideBySide[Item],
    items: Sequence[Item],
    work: Callable[[Item, threading.Event], None],
    stop: threading.Event,
    workers: int,
) -> None:
    # the executor hands queued items out first in, first out: they start in order
    with ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="restore") as pool:
        futures: list[Future[None]] = [
            pool.submit(_attempt, run, position, item, work, stop)
            for position, item in enumerate(items)
        ]
        try:
            wait(futures)
        except BaseException:
            stop.set()  # Ctrl-C or a time limit: let the running items end, start no more
            wait(futures)
            raise
