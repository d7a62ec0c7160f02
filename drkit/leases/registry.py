"""The lease files: one small JSON file per temporary thing, under ``$DRKIT_HOME/leases``.

A lease is taken *before* its thing is made (a folder, a cluster, a scratch database: its
name is chosen first and written down) and released *after* the thing is removed, so that at
every moment in between a process killed with SIGKILL leaves a lease naming what to remove.
Files are written to a temporary name and renamed, so a reader never sees half a lease.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drkit.home import drkit_home, private_folder
from drkit.leases.kinds import CLEANERS
from drkit.leases.processes import ProcessIdentity, current_identity

log = logging.getLogger(__name__)
LEASE_FOLDER = "leases"
SUFFIX = ".json"


@dataclass(frozen=True)
class Lease:
    """A temporary thing and its owner. ``data`` holds what the kind's cleaner needs to find
    and remove it (paths, server URLs without passwords, secret *references*); never a secret."""

    id: str
    kind: str
    description: str
    owner: ProcessIdentity
    created_at: datetime
    plan: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return lease_folder() / f"{self.kind}-{self.id}{SUFFIX}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "description": self.description,
            "plan": self.plan,
            "owner": self.owner.to_json(),
            "created_at": self.created_at.isoformat(),
            "data": self.data,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Lease:
        return cls(
            id=str(document["id"]),
            kind=str(document["kind"]),
            description=str(document["description"]),
            owner=ProcessIdentity.from_json(document["owner"]),
            created_at=datetime.fromisoformat(document["created_at"]),
            plan=document.get("plan"),
            data=dict(document.get("data") or {}),
        )


def lease_folder() -> Path:
    """``$DRKIT_HOME/leases``, private to drkit's user."""
    return private_folder(drkit_home() / LEASE_FOLDER)


def new_lease_id() -> str:
    """A short random id; also part of the names of the things leased, so they are recognisable."""
    return secrets.token_hex(6)


def take(
    kind: str,
    description: str,
    *,
    plan: str | None = None,
    data: dict[str, Any] | None = None,
    lease_id: str | None = None,
) -> Lease:
    """Record a lease owned by this process; ``kind`` must have a cleaner (see kinds.py)."""
    if kind not in CLEANERS:
        raise ValueError(f"no cleaner for lease kind {kind!r}; add one to drkit.leases.kinds")
    lease = Lease(
        id=lease_id or new_lease_id(),
        kind=kind,
        description=description,
        owner=current_identity(),
        created_at=datetime.now(UTC),
        plan=plan,
        data=dict(data or {}),
    )
    _write(lease)
    return lease


@contextlib.contextmanager
def holding(
    kind: str, description: str, *, plan: str | None = None, data: dict[str, Any] | None = None
) -> Iterator[Lease]:
    """A lease for the block that makes and removes (or commits) a temporary thing: released
    when the block ends normally; kept when it raises, so that the sweeper finishes the job
    once this process is gone. ``data`` names the thing before the block makes it."""
    lease = take(kind, description, plan=plan, data=data)
    yield lease
    release(lease)


def update(lease: Lease, **data: Any) -> Lease:
    """The lease with more data (a server's pid once it started), written over the old one."""
    changed = replace(lease, data={**lease.data, **data})
    _write(changed)
    return changed


def release(lease: Lease) -> None:
    """Forget a lease whose thing is gone."""
    with contextlib.suppress(FileNotFoundError):
        lease.path.unlink()


def _write(lease: Lease) -> None:
    path = lease.path
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(lease.to_json(), handle)
    os.replace(temporary, path)


def read_lease(path: Path) -> Lease | None:
    """The lease in ``path``; None when it vanished or cannot be read (logged)."""
    try:
        return Lease.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("ignoring unreadable lease %s: %s", path, error)
        return None


def list_leases() -> Iterator[tuple[Path, Lease]]:
    """Every lease on this machine (of live and dead owners alike), with its file."""
    for path in sorted(lease_folder().glob(f"*{SUFFIX}")):
        lease = read_lease(path)
        if lease is not None:
            yield path, lease
