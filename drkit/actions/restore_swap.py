"""Restores that cannot destroy: a source is loaded into a staging copy beside its target
(``<target>_drkit_restoring_<id>``), verified there, and only then swapped in by renaming; the
target it replaced is kept as ``<target>_drkit_previous_<time>`` (with the one command that
removes it), or removed after the swap when asked. A failed load, a failed verification, an
error, Ctrl-C or SIGTERM remove the staging copy and leave the target exactly as it was; the
copy of a restore killed outright is leased (kind ``restoring-copy``) and removed by the next
drkit command. Drills load straight into their fresh sandboxes and never come here.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from drkit.errors import RefusedError
from drkit.leases import registry
from drkit.plan.schema import SourceSpec
from drkit.sources.base import PREVIOUS_MARK, RESTORING_MARK, Replacement, Target
from drkit.sources.swap import SwapUnsupported, lease_data, make_replacement

log = logging.getLogger(__name__)
#: The staging folder must hold the staged artifacts and one plaintext copy with this margin.
SPACE_MARGIN = 1.1


def refuse_system_target(spec: SourceSpec, target: Target) -> None:
    """RefusedError when ``target`` is one of the server's own databases."""
    reason = make_replacement(spec).refusal(target)
    if reason:
        raise RefusedError(
            f"refusing to restore {spec.name} into {reason}",
            hint=f"restore elsewhere with --to {spec.name}=NAME",
        )


def check_staging_space(directory: Path, sizes: list[int]) -> None:
    """RefusedError, before anything is fetched, when the staging folder's file system cannot
    hold the artifacts plus one plaintext copy of the largest (what a load stages)."""
    needed = int((sum(sizes) + max(sizes, default=0)) * SPACE_MARGIN)
    free = shutil.disk_usage(directory).free
    if free < needed:
        from drkit.units import humanize_bytes

        raise RefusedError(
            f"the staging folder {directory} has {humanize_bytes(free)} free; this restore "
            f"needs about {humanize_bytes(needed)}",
            hint="free space there, or point TMPDIR at a larger file system; nothing was changed",
        )


class SwapOutcome:
    """What a replacing restore did with the target it replaced."""

    def __init__(self) -> None:
        self.previous: str | None = None  # where the replaced target is kept
        self.removal_command: str | None = None
        self.previous_removed = False
        self.in_place = False  # fell back to loading in place after a verified trial load


#: Loads a plaintext stream into a target (``replace``: over what is there).
Load = Callable[[IO[bytes], Target, bool], None]


def load_beside_and_swap(
    spec: SourceSpec,
    load: Load,
    target: Target,
    open_stream: Callable[[], AbstractContextManager[IO[bytes]]],
    verify: Callable[[Target], list[str]],
    *,
    plan: str,
    keep_previous: bool,
) -> tuple[list[str], SwapOutcome]:
    """Load, verify, swap. Returns the differences found (the target untouched when there are
    any) and what became of the replaced target."""
    replacement = make_replacement(spec)
    outcome = SwapOutcome()
    lease_id = registry.new_lease_id()
    staged = replacement.beside(target, RESTORING_MARK + lease_id)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    previous = replacement.beside(target, PREVIOUS_MARK + stamp)
    lease = registry.take(
        "restoring-copy",
        f"copy of {spec.name} being restored at {staged.location}",
        plan=plan,
        data=lease_data(spec, staged),
        lease_id=lease_id,
    )
    try:
        with open_stream() as stream:
            load(stream, staged, False)
        differences = verify(staged)
        if differences:
            log.error("the loaded copy of %s differs; %s is left as it was", spec.name, target)
            return differences, outcome
        if _swap(replacement, staged, target, previous):
            outcome.previous = previous.location
            outcome.removal_command = replacement.removal_command(previous)
    except _InPlace:
        log.warning("%s cannot be swapped by renaming; loading it in place", target)
        with open_stream() as stream:
            load(stream, target, True)
        outcome.in_place = True
        return verify(target), outcome
    finally:
        _remove_staged(replacement, staged, lease)
    if outcome.previous is not None and not keep_previous:
        replacement.remove(previous)
        outcome.previous_removed = True
    return [], outcome


class _InPlace(Exception):
    pass


def _swap(replacement: Replacement, staged: Target, target: Target, previous: Target) -> bool:
    try:
        return replacement.swap(staged, target, previous)
    except SwapUnsupported:
        raise _InPlace from None


def _remove_staged(replacement: Replacement, staged: Target, lease: registry.Lease) -> None:
    try:
        replacement.remove(staged)
    except Exception as error:  # the lease stays: the next command tries again
        log.warning("could not remove %s (%s); the next drkit command will", staged, error)
        return
    with contextlib.suppress(OSError):
        registry.release(lease)
