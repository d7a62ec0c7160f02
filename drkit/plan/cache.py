"""Parsed plan files kept as JSON under $DRKIT_HOME/cache/plans, named by the sha256 of the
file's text: a runner that loads a thousand unchanged plans every five minutes reads JSON
instead of parsing YAML again. Only the YAML parse is cached; interpolation of ``${VAR}``
and validation run on every load, so the environment and the schema always apply. A changed
file has another name; a cache that cannot be read or written is ignored."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: changes when the way plans are parsed changes, so old entries are never read
FORMAT = "1"
CACHE_FOLDER = ("cache", "plans")


def _entry(text: str) -> Path | None:
    from drkit.errors import DrkitError
    from drkit.home import drkit_home, private_folder

    digest = hashlib.sha256(f"{FORMAT}\0{text}".encode()).hexdigest()
    try:
        return private_folder(drkit_home().joinpath(*CACHE_FOLDER)) / f"{digest}.json"
    except (DrkitError, OSError):
        return None


def read_parsed(text: str) -> dict[str, Any] | None:
    """The parse of ``text`` cached earlier, or None."""
    entry = _entry(text)
    if entry is None:
        return None
    try:
        found = json.loads(entry.read_bytes())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def keep_parsed(text: str, parsed: dict[str, Any]) -> None:
    """Cache the parse of a valid plan when JSON holds it exactly (dates, or keys that are
    not strings, would come back different: such a plan is simply not cached)."""
    try:
        document = json.dumps(parsed, separators=(",", ":"))
        if json.loads(document) != parsed:
            return
    except (TypeError, ValueError):
        return
    entry = _entry(text)
    if entry is None or entry.exists():
        return
    try:
        descriptor, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".", suffix=".tmp")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(document)
        os.replace(temporary, entry)  # whole or absent, whatever runs beside it
    except OSError:
        return
