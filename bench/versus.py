"""This checkout against an earlier drkit, side by side in one run: did a change make backup or
restore slower? Both versions run as ``python -m drkit`` (the earlier one from a temporary git
worktree of REV), in interleaved rounds, alternating which goes first, on the same data:

- a PostgreSQL database (``pgbench -i -s SCALE``) backed up to two filesystem stores, then
  restored into a new database (``restore --to``);
- the demo's SQLite + config backend backed up to two filesystem stores (the fixed cost of a
  command on tiny data);
- sealing and opening one manifest, in process (this checkout only: what sealing costs).

It prints medians, ranges and new ÷ old ratios, and writes them to --output (Markdown).

    python -m bench.versus --baseline e96fc5c --scale 10 --rounds 5 --output bench/VERSUS.md
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
SERVER = "postgresql://postgres@127.0.0.1:5432"


@dataclass
class Version:
    label: str
    path: Path
    times: dict[str, list[float]] = field(default_factory=dict)

    def drkit(self, *arguments: str, home: Path) -> float:
        """Run ``python -m drkit ARGUMENTS`` from this version; seconds it took."""
        environment = {
            **os.environ,
            "PYTHONPATH": str(self.path),
            "DRKIT_HOME": str(home),
            "DRKIT_DEMO_DIR": str(home / "demo"),
        }
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", "drkit", "--quiet", *arguments],
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if completed.returncode != 0:
            raise SystemExit(
                f"{self.label}: drkit {' '.join(arguments)} failed:\n{completed.stderr}"
            )
        return seconds

    def record(self, what: str, seconds: float) -> None:
        self.times.setdefault(what, []).append(seconds)


def psql(database: str, sql: str) -> None:
    subprocess.run(["psql", "-q", f"{SERVER}/{database}", "-c", sql], check=True)


def write_plan(path: Path, name: str, sources: list[dict[str, object]], root: Path) -> Path:
    import yaml

    key = root / "keys" / f"{name}.key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(secrets.token_bytes(32))
        key.chmod(0o600)
    document = {
        "version": 1,
        "name": name,
        "sources": sources,
        "keys": [{"name": "primary", "type": "keyfile", "path": str(key)}],
        "stores": [
            {
                "name": f"store-{i}",
                "type": "filesystem",
                "path": str(root / name / f"s{i}"),
                "region": f"r{i}",
            }
            for i in (1, 2)
        ],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def one_round(versions: list[Version], plans: dict[str, Path], work: Path, database: str) -> None:
    for version in versions:
        home = work / f"home-{version.label}"
        catalog = f"sqlite:///{home}/catalog.db"
        home.mkdir(exist_ok=True)
        for what in ("tiny", "postgresql"):
            version.record(
                f"backup {what}",
                version.drkit("--catalog", catalog, "backup", str(plans[what]), home=home),
            )
        target = f"drkit_versus_{secrets.token_hex(4)}"
        version.record(
            "restore postgresql",
            version.drkit(
                "--catalog",
                catalog,
                "restore",
                "--yes",
                str(plans["postgresql"]),
                "--to",
                f"orders-db={target}",
                home=home,
            ),
        )
        psql("postgres", f'DROP DATABASE "{target}"')


def seal_cost(rounds: int) -> dict[str, float]:
    """Microseconds to seal and to open a manifest of 4 sources with 200 tables each."""
    sys.path.insert(0, str(REPOSITORY))
    from drkit.crypto import KeyfileKek, generate_keyfile
    from drkit.repository.layout import artifact_key, new_snapshot_id
    from drkit.repository.manifest import (
        Artifact,
        Manifest,
        StoredObject,
        open_manifest,
        seal_manifest,
    )

    taken = datetime.now(UTC)
    snapshot = new_snapshot_id(taken)
    artifacts = [
        Artifact(
            source=f"db{i}", type="postgresql", format="pg_dump-custom", compression="zstd",
            plaintext_size=10**9, plaintext_sha256="a" * 64,
            fingerprint={"tables": {f"public.table_{t}": t * 1000 for t in range(200)}},
            encrypted=StoredObject(key=artifact_key("p", snapshot, f"db{i}", "drkit"), size=1, sha256="b" * 64),
        )
        for i in range(4)
    ]  # fmt: skip
    manifest = Manifest(
        plan="p", snapshot_id=snapshot, taken_at=taken, finished_at=taken, drkit_version="x",
        sources=[a.source for a in artifacts], artifacts=artifacts, plan_sha256="c" * 64,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        generate_keyfile(Path(directory) / "k")
        keys = [KeyfileKek("primary", str(Path(directory) / "k"))]
        seal_times, open_times = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            data = seal_manifest(manifest, keys)
            sealed = time.perf_counter()
            open_manifest(data, keys, plan="p", snapshot_id=snapshot)
            seal_times.append(sealed - started)
            open_times.append(time.perf_counter() - sealed)
    return {
        "seal": statistics.median(seal_times) * 1e6,
        "open": statistics.median(open_times) * 1e6,
        "bytes": float(len(data)),
    }


def render(versions: list[Version], arguments: argparse.Namespace, seal: dict[str, float]) -> str:
    new, old = versions
    lines = [
        "# This checkout against an earlier drkit",
        "",
        f"`python -m bench.versus --baseline {arguments.baseline} --scale {arguments.scale} "
        f"--rounds {arguments.rounds}` on {datetime.now(UTC):%Y-%m-%d} (2 shared, noisy cores;"
        " rounds interleaved, order alternating; medians, with min–max).",
        "",
        f"| step | {new.label} | {old.label} | {new.label} ÷ {old.label} |",
        "|---|---|---|---|",
    ]
    for what, times in new.times.items():
        others = old.times[what]
        ratio = statistics.median(times) / statistics.median(others)
        lines.append(
            f"| {what} | {statistics.median(times):.2f} s ({min(times):.2f}–{max(times):.2f}) "
            f"| {statistics.median(others):.2f} s ({min(others):.2f}–{max(others):.2f}) "
            f"| {ratio:.2f}x |"
        )
    lines += [
        "",
        f"Sealing one manifest (4 sources × 200 tables, {seal['bytes'] / 1024:.0f} KiB sealed): "
        f"{seal['seal']:.0f} µs; opening it: {seal['open']:.0f} µs (medians of 200, in process).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="e96fc5c", help="git revision to compare with")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale of the database")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, help="write the Markdown table here")
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="drkit-versus-"))
    baseline = work / "baseline"
    subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(baseline), arguments.baseline], check=True, capture_output=True)  # fmt: skip
    database = f"drkit_versus_{secrets.token_hex(4)}"
    cleanups: list[Callable[[], object]] = [
        lambda: subprocess.run(
            ["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(baseline)],
            check=False,
        ),
        lambda: shutil.rmtree(work, ignore_errors=True),
        lambda: psql("postgres", f'DROP DATABASE IF EXISTS "{database}"'),
    ]
    try:
        psql("postgres", f'CREATE DATABASE "{database}"')
        subprocess.run(["pgbench", "-q", "-i", "-s", str(arguments.scale), f"{SERVER}/{database}"], check=True, capture_output=True)  # fmt: skip
        tiny = work / "tiny"
        (tiny / "config").mkdir(parents=True)
        (tiny / "config" / "app.yaml").write_text("listen: 8080\n")
        import sqlite3

        with sqlite3.connect(tiny / "app.db") as connection:
            connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
            connection.executemany(
                "INSERT INTO orders (note) VALUES (?)", [(f"o{i}",) for i in range(500)]
            )
        connection.close()
        plans = {
            "postgresql": write_plan(
                work / "pg.yaml",
                "pg",
                [{"name": "orders-db", "type": "postgresql", "url": f"{SERVER}/{database}"}],
                work,
            ),
            "tiny": write_plan(
                work / "tiny.yaml",
                "tiny",
                [
                    {"name": "app-db", "type": "sqlite", "path": str(tiny / "app.db")},
                    {"name": "app-config", "type": "files", "paths": [str(tiny / "config")]},
                ],
                work,
            ),
        }
        versions = [Version("this checkout", REPOSITORY), Version(arguments.baseline, baseline)]
        for number in range(arguments.rounds):
            order = versions if number % 2 == 0 else versions[::-1]
            one_round(order, plans, work, database)
            print(f"round {number + 1} of {arguments.rounds} done", file=sys.stderr)
        report = render(versions, arguments, seal_cost(200))
        print(report)
        if arguments.output:
            arguments.output.write_text(report)
        print(json.dumps({v.label: v.times for v in versions}), file=sys.stderr)
    finally:
        for cleanup in cleanups:
            cleanup()


if __name__ == "__main__":
    main()
