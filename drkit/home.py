"""drkit's state directory, ``$DRKIT_HOME`` (default ``~/.local/state/drkit``): the default
catalog, the leases of temporary things, and each running command's private scratch folder."""

from __future__ import annotations

import os
from pathlib import Path

from drkit.errors import CatalogError

DEFAULT_HOME = "~/.local/state/drkit"


def drkit_home() -> Path:
    """drkit's state directory ($DRKIT_HOME, default ~/.local/state/drkit), created 0700."""
    home = Path(os.environ.get("DRKIT_HOME") or DEFAULT_HOME).expanduser()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise CatalogError(
            f"cannot create drkit's state directory {home}: {error.strerror}",
            hint="set DRKIT_HOME to a writable directory: drkit keeps its default catalog and "
            "the leases of its temporary things there",
        ) from None
    return home


def private_folder(path: Path) -> Path:
    """``path`` as a folder only its owner may enter (created 0700 if missing)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path
