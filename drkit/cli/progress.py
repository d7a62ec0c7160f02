"""Progress for people on a TTY (bytes, rate); silent for scripts and logs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ByteProgress = Callable[[str, int], None]


@contextmanager
def byte_progress(*, enabled: bool) -> Iterator[ByteProgress | None]:
    """Yields a callback(label, bytes so far) drawing one live line per label on a TTY."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TransferSpeedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        tasks: dict[str, object] = {}

        def update(label: str, done: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=None)
            progress.update(tasks[label], completed=done)  # type: ignore[arg-type]

        yield update
