"""The benchmark database: ``pgbench -i -s N`` plus a table of JSON events, and the 1% change
made between two restic backups.

pgbench's own tables dump to about 9.7 MB of plain SQL per scale unit, with a blank-padded
``filler`` column that compresses almost to nothing. The events table adds about 7 MB per unit
of less compressible data (md5 session ids, random amounts and notes in jsonb), so scale 60
dumps to about 1 GB of plain SQL, 59% of it pgbench's.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from bench.server import PostgresServer

EVENTS_PER_SCALE = 23_334

EVENTS_TABLE = """
CREATE TABLE events (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    account_id integer NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL
)"""

EVENTS_ROWS = """
INSERT INTO events
SELECT g,
       timestamptz '2026-01-01' + g * interval '1 second',
       (random() * {accounts})::int,
       (ARRAY['login', 'view', 'cart', 'purchase', 'refund', 'logout'])[1 + g % 6],
       jsonb_build_object(
           'session', md5(g::text || random()::text),
           'ip', format('10.%s.%s.%s', g % 256, (g / 256) % 256, (random() * 255)::int),
           'amount', round((random() * 500)::numeric, 2),
           'currency', (ARRAY['EUR', 'USD', 'GBP'])[1 + g % 3],
           'items', jsonb_build_array(jsonb_build_object(
               'sku', 'SKU-' || (random() * 99999)::int, 'qty', 1 + g % 4)),
           'user_agent', 'Mozilla/5.0 (X11; Linux x86_64) drkit-bench/' || g % 50,
           'note', substr(md5(random()::text) || md5(random()::text), 1, 24 + g % 40))
FROM generate_series(1, {rows}) AS g"""

EVENTS_INDEXES = (
    "CREATE INDEX events_account_id ON events (account_id)",
    "CREATE INDEX events_created_at ON events (created_at)",
    "ANALYZE events",
)

#: the 1% change: scattered updates, as an application makes them
CHANGES = (
    "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE random() < 0.01",
    "UPDATE events SET payload = payload || '{\"reviewed\": true}' WHERE random() < 0.01",
)


@dataclass(frozen=True)
class Dataset:
    """One benchmark database."""

    name: str
    scale: int
    accounts: int
    events: int
    disk_bytes: int


def build(server: PostgresServer, name: str, scale: int) -> Dataset:
    """Create database ``name`` and fill it (pgbench at ``scale``, then the events)."""
    server.create_database(name)
    subprocess.run(
        ["pgbench", "--initialize", f"--scale={scale}", "--quiet", name],
        env=server.environment(),
        check=True,
        capture_output=True,
    )
    accounts = scale * 100_000
    events = scale * EVENTS_PER_SCALE
    server.execute(name, EVENTS_TABLE)
    server.execute(name, EVENTS_ROWS.format(accounts=accounts, rows=events))
    for statement in EVENTS_INDEXES:
        server.execute(name, statement)
    server.execute(name, "CHECKPOINT")
    return Dataset(name, scale, accounts, events, server.database_bytes(name))


def change_one_percent(server: PostgresServer, name: str) -> int:
    """Update about 1% of the rows of both big tables; the number of rows changed."""
    changed = 0
    with server.connect(name) as connection:
        for statement in CHANGES:
            changed += connection.execute(statement).rowcount
    return changed
