"""What the command-line tests share: a plan over a real SQLite database and config folder
with two filesystem stores, and a machine in another time zone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..actions.conftest import make_backend, plan_document


def two_store_setup(tmp_path: Path, **plan: Any) -> dict[str, Any]:
    """A backend, a plan backing it up to stores ``east`` and ``west`` (``plan`` adds to the
    plan document), and the catalog's path and URL."""
    backend = make_backend(tmp_path / "backend")
    stores = [
        {"name": "east", "type": "filesystem", "path": str(tmp_path / "east"), "region": "east"},
        {"name": "west", "type": "filesystem", "path": str(tmp_path / "west"), "region": "west"},
    ]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan_document(tmp_path, stores, **plan), sort_keys=False))
    catalog = tmp_path / "catalog.db"
    return {
        "plan": str(path),
        "catalog": catalog,
        "url": f"sqlite:///{catalog}",
        "backend": backend,
        "tmp": tmp_path,
        **backend,
    }


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The on-call engineer's machine, five hours behind UTC in December."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
