"""The embedded demo: a small API backend (SQLite database + config folder) that `drkit demo`
creates, backs up to two local regions, drills and reports on. No server needed."""

from __future__ import annotations

import os
import random
import sqlite3
from importlib import resources
from pathlib import Path

DEFAULT_DIR = Path("/tmp/drkit-demo")  # noqa: S108 - a demo meant to be found and removed
ORDERS = 5000


def plan_text() -> str:
    return resources.files(__package__).joinpath("plan.yaml").read_text(encoding="utf-8")


def create_workspace(directory: Path) -> Path:
    """Lay out the demo backend under ``directory``; idempotent. Returns the plan's path."""
    from drkit.crypto import generate_keyfile

    api = directory / "api"
    (api / "config" / "conf.d").mkdir(parents=True, exist_ok=True)
    _write_database(api / "app.db")
    (api / "config" / "app.yaml").write_text(
        "listen: 0.0.0.0:8080\ndatabase: sqlite:///app.db\nlog_level: info\n", encoding="utf-8"
    )
    (api / "config" / "conf.d" / "features.yaml").write_text(
        "checkout_v2: true\nrefunds: true\n", encoding="utf-8"
    )
    link = api / "config" / "current.yaml"
    if not link.is_symlink():
        link.symlink_to("app.yaml")
    key = directory / "keys" / "demo.key"
    if not key.exists():
        generate_keyfile(key)
    plan = directory / "plan.yaml"
    plan.write_text(plan_text(), encoding="utf-8")
    return plan


def _write_database(path: Path) -> None:
    """An API database with customers and orders; new orders are added on every run, as a
    live application would."""
    connection = sqlite3.connect(path)
    try:
        connection.executescript("""
            CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL
                REFERENCES customers(id), total_cents INTEGER NOT NULL, status TEXT NOT NULL,
                created_at TEXT NOT NULL DEFAULT (datetime('now')));
            CREATE INDEX IF NOT EXISTS orders_customer ON orders(customer_id);
        """)
        generator = random.Random(len(os.listdir(path.parent)))
        connection.executemany(
            "INSERT OR IGNORE INTO customers (id, email, name) VALUES (?, ?, ?)",
            [(i, f"customer{i}@example.com", f"Customer {i}") for i in range(1, 201)],
        )
        connection.executemany(
            "INSERT INTO orders (customer_id, total_cents, status) VALUES (?, ?, ?)",
            [
                (
                    generator.randint(1, 200),
                    generator.randint(100, 50000),
                    generator.choice(["paid", "shipped", "refunded"]),
                )
                for _ in range(ORDERS // 10)
            ],
        )
        connection.commit()
    finally:
        connection.close()
