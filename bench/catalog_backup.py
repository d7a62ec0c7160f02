"""``python -m bench.catalog_backup``: what recording a backup in a SQLite catalog costs, a
snapshot and its copies one transaction each (as before) against one transaction for all
(``Catalog.record_backup``), in interleaved rounds on the same catalog file."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from drkit.catalog import Catalog, CopyInput
from drkit.repository.manifest import Artifact, Manifest

STORES = (("east", "us-east-1"), ("west", "eu-west-1"), ("north", "eu-north-1"))


def manifest(number: int) -> Manifest:
    taken = datetime.now(UTC)
    snapshot_id = f"{taken:%Y%m%dT%H%M%S}.{number:03d}Z-bench{number % 10}"
    fields = {"source": "app-db", "type": "sqlite", "format": "sqlite3", "compression": "zstd"}
    sizes = {"plaintext_size": 100, "plaintext_sha256": "0" * 64}
    artifact = Artifact.model_validate({**fields, **sizes, "fingerprint": {"rows": 500}})
    return Manifest(
        plan="bench",
        snapshot_id=snapshot_id,
        taken_at=taken,
        finished_at=taken,
        drkit_version="bench",
        sources=["app-db"],
        artifacts=[artifact],
        plan_sha256="0" * 64,
    )


def one_by_one(catalog: Catalog, made: Manifest) -> None:
    catalog.record_snapshot(made, status="complete", run_id=None, manifest_sha256="a" * 64)
    for store, region in STORES:
        catalog.record_copy(made.snapshot_id, store, region, "complete", bytes=100)


def together(catalog: Catalog, made: Manifest) -> None:
    copies = [CopyInput(store, region, "complete", bytes=100) for store, region in STORES]
    catalog.record_backup(
        made, status="complete", run_id=None, manifest_sha256="a" * 64, copies=copies
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog_backup", description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    arguments = parser.parse_args()
    ways: dict[str, Callable[[Catalog, Manifest], None]] = {
        "one transaction each": one_by_one,
        "one transaction": together,
    }
    wall: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'catalog.db'}"
        with Catalog.open(url) as catalog:
            for number in range(arguments.rounds):
                order = list(ways.items())
                for name, way in order if number % 2 else reversed(order):
                    made = manifest(number * 2 + (name == "one transaction"))
                    started, started_cpu = time.perf_counter(), time.process_time()
                    way(catalog, made)
                    wall[name].append(time.perf_counter() - started)
                    cpu[name].append(time.process_time() - started_cpu)
    print(f"| recording a backup, 3 stores ({arguments.rounds} rounds) | wall | CPU |")
    print("| --- | --- | --- |")
    for name in ways:
        print(
            f"| {name} | {statistics.median(wall[name]) * 1000:.1f} ms | "
            f"{statistics.median(cpu[name]) * 1000:.1f} ms |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
