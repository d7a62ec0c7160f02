"""The embedded demo: a small API backend (SQLite database + config folder) that `drkit demo`
creates, backs up to two local regions, drills and reports on. No server needed.

Creating the workspace is idempotent: every run lays out the same backend (the same orders,
the same config files, a plan naming this folder), so two runs of the demo print the same
apart from times and ids, and the key file, once made, is kept.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

DEFAULT_DIR = Path("/tmp/drkit-demo")  # noqa: S108 - a demo meant to be found and removed
DIRECTORY_VARIABLE = "${DRKIT_DEMO_DIR:-/tmp/drkit-demo}"
CUSTOMERS = 200
ORDERS = 500
#: the demo's orders were placed in the 30 days from this moment
FIRST_DAY = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG_FILES = {
    "app.yaml": "listen: 0.0.0.0:8080\ndatabase: sqlite:///app.db\nlog_level: info\n",
    "conf.d/features.yaml": "checkout_v2: true\nrefunds: true\n",
}


def plan_text(directory: Path | None = None) -> str:
    """The demo plan; with ``directory``, its paths point there (no variable left to set)."""
    text = resources.files(__package__).joinpath("plan.yaml").read_text(encoding="utf-8")
    return text if directory is None else text.replace(DIRECTORY_VARIABLE, str(directory))


def create_workspace(directory: Path) -> Path:
    """Lay out the demo backend under ``directory``, the same on every run. Returns the
    plan's path."""
    from drkit.crypto import generate_keyfile

    api = directory / "api"
    (api / "config" / "conf.d").mkdir(parents=True, exist_ok=True)
    write_database(api / "app.db")
    for name, text in CONFIG_FILES.items():
        write_if_changed(api / "config" / name, text)
    link = api / "config" / "current.yaml"
    if not link.is_symlink():
        link.symlink_to("app.yaml")
    key = directory / "keys" / "demo.key"
    if not key.exists():
        generate_keyfile(key)
    plan = directory / "plan.yaml"
    write_if_changed(plan, plan_text(directory))
    return plan


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file holds it already (its time stamps then stay put)."""
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_database(path: Path) -> None:
    """The API database, rebuilt from scratch with the same customers and orders every time
    (a fixed seed, fixed dates): what an earlier run or a rehearsed incident changed is gone."""
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    generator = random.Random(ORDERS)
    connection = sqlite3.connect(path)
    try:
        connection.executescript("""
            CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL
                REFERENCES customers(id), total_cents INTEGER NOT NULL, status TEXT NOT NULL,
                created_at TEXT NOT NULL);
            CREATE INDEX orders_customer ON orders(customer_id);
        """)
        connection.executemany(
            "INSERT INTO customers (id, email, name) VALUES (?, ?, ?)",
            [(i, f"customer{i}@example.com", f"Customer {i}") for i in range(1, CUSTOMERS + 1)],
        )
        connection.executemany(
            "INSERT INTO orders (customer_id, total_cents, status, created_at) VALUES (?, ?, ?, ?)",
            [
                (
                    generator.randint(1, CUSTOMERS),
                    generator.randint(100, 50000),
                    generator.choice(["paid", "shipped", "refunded"]),
                    (FIRST_DAY + timedelta(minutes=generator.randint(0, 43200))).isoformat(),
                )
                for _ in range(ORDERS)
            ],
        )
        connection.commit()
    finally:
        connection.close()
