"""Fixtures of the fault-injection tests: a backend of SQLite + config files (and a PostgreSQL
database of a few MB where a dump should take a while), written as a plan file for the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ..actions.conftest import (  # noqa: F401 - fixtures, shared with the action tests
    backend,
    catalog,
    make_backend,
    make_resources,
    plan_document,
    two_regions,
)
from .helpers import write_plan


def fill_postgres(url: str, rows: int) -> None:
    """A table of ``rows`` rows of 128 hex characters (compresses about 2:1, like real data)."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE payments (id serial PRIMARY KEY, payload text NOT NULL)")
        connection.execute(
            "INSERT INTO payments (payload) SELECT md5(random()::text) || md5(random()::text)"
            " || md5(g::text) || md5(random()::text) FROM generate_series(1, %s) g",
            (rows,),
        )


@dataclass
class Setup:
    """A plan file, its stores' folders, and a catalog URL, for CLI runs."""

    tmp: Path
    plan: Path
    catalog: str
    stores: dict[str, Path]
    backend: dict[str, Path]
    document: dict[str, Any]

    def rewrite(self, name: str, **changes: Any) -> Path:
        """Another plan file: the same plan with top-level fields replaced."""
        return write_plan(self.tmp / name, {**self.document, **changes})


def filesystem_stores(tmp: Path, *names: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "type": "filesystem", "path": str(tmp / "stores" / name), "region": name}
        for name in names
    ]


def make_setup(
    tmp: Path,
    stores: list[dict[str, Any]],
    *,
    sources: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Setup:
    made = make_backend(tmp / "backend")
    document = plan_document(tmp, stores, sources=sources, **extra)
    plan = write_plan(tmp / "plan.yaml", document)
    roots = {s["name"]: Path(s["path"]) for s in stores if s["type"] == "filesystem"}
    return Setup(tmp, plan, f"sqlite:///{tmp / 'catalog.db'}", roots, made, document)


@pytest.fixture
def two_store_setup(tmp_path: Path) -> Setup:
    """SQLite + config files to two filesystem stores in two regions."""
    return make_setup(tmp_path, filesystem_stores(tmp_path, "east", "west"))
