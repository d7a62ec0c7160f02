"""Builders for end-to-end action tests: a small backend (SQLite + config tree), key files,
and plans written as YAML so they go through the same loader as users' plans."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drkit.actions.resources import Resources, open_resources
from drkit.catalog import Catalog
from drkit.crypto import generate_keyfile
from drkit.plan.loader import parse_plan
from drkit.plan.schema import Plan

MARKER = "PLAINTEXT-MARKER-7f3c9a"


def make_backend(root: Path, orders: int = 300) -> dict[str, Path]:
    """A SQLite API database and a config folder holding a recognizable marker."""
    root.mkdir(parents=True, exist_ok=True)
    database = root / "app.db"
    connection = sqlite3.connect(database)
    connection.executescript(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT, total INTEGER);"
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT);"
    )
    connection.executemany(
        "INSERT INTO orders (note, total) VALUES (?, ?)",
        [(f"{MARKER} order {i} ünïcödé", i * 10) for i in range(orders)],
    )
    connection.executemany(
        "INSERT INTO customers (email) VALUES (?)", [(f"c{i}@example.com",) for i in range(20)]
    )
    connection.commit()
    connection.close()
    config = root / "config"
    (config / "conf.d").mkdir(parents=True)
    (config / "app.yaml").write_text(f"secret_marker: {MARKER}\n")
    (config / "conf.d" / "features.yaml").write_text("refunds: true\n")
    (config / "current.yaml").symlink_to("app.yaml")
    return {"database": database, "config": config}


def plan_document(
    root: Path,
    stores: list[dict[str, Any]],
    *,
    sources: list[dict[str, Any]] | None = None,
    copies: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    key = root / "keys" / "primary.key"
    if not key.exists():
        generate_keyfile(key)
    backend = root / "backend"
    document: dict[str, Any] = {
        "version": 1,
        "name": "test-api",
        "objectives": {"rpo": "1h", "rto": "10m"},
        "sources": sources
        if sources is not None
        else [
            {"name": "app-db", "type": "sqlite", "path": str(backend / "app.db")},
            {"name": "app-config", "type": "files", "paths": [str(backend / "config")]},
        ],
        "keys": [{"name": "primary", "type": "keyfile", "path": str(key)}],
        "stores": stores,
        "copies": copies or {"min_stores": 1, "min_regions": 1},
    }
    document.update(extra)
    return document


def load(document: dict[str, Any]) -> Plan:
    return parse_plan(yaml.safe_dump(document, sort_keys=False), "test-plan.yaml")


@pytest.fixture
def backend(tmp_path: Path) -> dict[str, Path]:
    return make_backend(tmp_path / "backend")


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}") as opened:
        yield opened


@pytest.fixture
def two_regions(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        {
            "name": "east",
            "type": "filesystem",
            "path": str(tmp_path / "stores" / "east"),
            "region": "east",
        },
        {
            "name": "west",
            "type": "filesystem",
            "path": str(tmp_path / "stores" / "west"),
            "region": "west",
        },
    ]


@pytest.fixture
def make_resources(tmp_path: Path, catalog: Catalog) -> Callable[..., Resources]:
    def build(stores: list[dict[str, Any]], with_catalog: bool = True, **kwargs: Any) -> Resources:
        plan = load(plan_document(tmp_path, stores, **kwargs))
        return open_resources(plan, catalog if with_catalog else None)

    return build
