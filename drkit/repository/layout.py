"""Snapshot ids and where a snapshot's objects live inside every store.

Layout (the same in every store; restic stores hold each object as one restic snapshot)::

    <plan>/snapshots/<snapshot-id>/<source>.drkit        sealed artifact (drkit format)
    <plan>/snapshots/<snapshot-id>/<source>.<ext>        raw artifact (restic stores only)
    <plan>/snapshots/<snapshot-id>/manifest.json         sealed manifest, written last

``manifest.json`` keeps its name from release 0.1.0 (when it was plain JSON) so old and new
snapshots sit side by side; its content says which format it is.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

MANIFEST_NAME = "manifest.json"
SEALED_EXTENSION = "drkit"
SNAPSHOT_ID_PATTERN = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")
#: an id holds its time in milliseconds; the manifest's time falls within that millisecond
ID_RESOLUTION = timedelta(milliseconds=1)


def new_snapshot_id(taken_at: datetime) -> str:
    """Time-sortable and readable: ``20261127T153000.042Z-3fa2c1`` (UTC, milliseconds, so
    two snapshots of the same second still sort in the order they were taken)."""
    moment = taken_at.astimezone(UTC)
    return (
        moment.strftime("%Y%m%dT%H%M%S")
        + f".{moment.microsecond // 1000:03d}Z-"
        + secrets.token_hex(3)
    )


def is_snapshot_id(text: str) -> bool:
    return SNAPSHOT_ID_PATTERN.match(text) is not None


def snapshot_time(snapshot_id: str) -> datetime | None:
    """When a snapshot was taken, read from its id (None for an id not made by drkit)."""
    if not is_snapshot_id(snapshot_id):
        return None
    return datetime.strptime(snapshot_id[:19], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)


def agrees_with_id(snapshot_id: str, taken_at: datetime) -> bool:
    """True when ``taken_at`` is the moment the id was made from (same millisecond)."""
    from_id = snapshot_time(snapshot_id)
    return from_id is not None and from_id <= taken_at.astimezone(UTC) < from_id + ID_RESOLUTION


def snapshot_prefix(plan: str, snapshot_id: str | None = None) -> str:
    base = f"{plan}/snapshots/"
    return base if snapshot_id is None else f"{base}{snapshot_id}/"


def evidence_prefix(plan: str) -> str:
    """Where a plan's evidence log lives in a store: one object per record."""
    return f"{plan}/evidence/"


def evidence_key(plan: str, seq: int) -> str:
    return f"{evidence_prefix(plan)}{seq:010d}.json"


def manifest_key(plan: str, snapshot_id: str) -> str:
    return f"{snapshot_prefix(plan, snapshot_id)}{MANIFEST_NAME}"


def artifact_key(plan: str, snapshot_id: str, source: str, extension: str) -> str:
    return f"{snapshot_prefix(plan, snapshot_id)}{source}.{extension}"


def snapshot_ids_from_keys(plan: str, keys: list[str]) -> list[str]:
    """Snapshot ids whose manifest is among ``keys`` (committed snapshots only), oldest first."""
    prefix = snapshot_prefix(plan)
    found = []
    for key in keys:
        if key.startswith(prefix) and key.endswith("/" + MANIFEST_NAME):
            candidate = key[len(prefix) : -len(MANIFEST_NAME) - 1]
            if is_snapshot_id(candidate):
                found.append(candidate)
    return sorted(found)


def uncommitted_ids_from_keys(plan: str, keys: list[str]) -> list[str]:
    """Snapshot ids that have objects among ``keys`` but no manifest (leftovers of a backup
    that never committed), oldest first."""
    prefix = snapshot_prefix(plan)
    seen: set[str] = set()
    for key in keys:
        if key.startswith(prefix):
            candidate = key[len(prefix) :].split("/", 1)[0]
            if is_snapshot_id(candidate):
                seen.add(candidate)
    return sorted(seen - set(snapshot_ids_from_keys(plan, keys)))


def artifact_context(plan: str, snapshot_id: str, source: str) -> str:
    """Bound into every sealed artifact's header: an artifact moved to another snapshot or
    source (splicing) fails authentication."""
    return f"drkit:{plan}:{snapshot_id}:{source}"
