"""What the per-table content digests cost a PostgreSQL backup: the same in-process `drkit
backup` (pg_dump stream, zstd, encryption, one filesystem store) with the digests off, read
inline in the stream's thread, and read in a thread of their own (what drkit does), in
interleaved rounds whose order rotates. Prints the medians, the per-round ratios against "off",
drkit's own CPU, and the digest reader alone over the same stream.

    python -m bench.digests --scale 20 --rounds 12
    python -m bench.digests --scale 10 --rounds 9 --random-filler

``--random-filler`` replaces pgbench's blank-padded ``filler`` (which zstd squeezes to almost
nothing, making everything else look expensive) with md5 text, closer to real data. Needs
PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and pgbench; creates and drops
``drkit_bench_digest_<random>``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench.plans import filesystem_store, write_plan
from drkit.actions.backup import backup
from drkit.actions.resources import open_resources
from drkit.crypto import generate_keyfile
from drkit.plan.loader import load_plan
from drkit.plan.schema import PostgresqlSource
from drkit.sources import pg_digest, postgresql

SERVER = "postgresql://postgres@127.0.0.1:5432"
Digesting = Callable[[Iterator[bytes], dict[str, object]], Iterator[bytes]]


@contextmanager
def bench_database(scale: int, *, random_filler: bool) -> Iterator[str]:
    """A pgbench database of ``scale`` (about 10 MB of archive per unit), dropped after."""
    name = f"drkit_bench_digest_{secrets.token_hex(4)}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(scale), "-h", "127.0.0.1", "-U", "postgres", name],
            check=True,
            capture_output=True,
        )
        if random_filler:
            with psycopg.connect(f"{SERVER}/{name}", autocommit=True) as connection:
                connection.execute(
                    "UPDATE pgbench_accounts SET filler = md5(aid::text) || md5((aid * 7)::text)"
                )
                connection.execute("VACUUM FULL pgbench_accounts")
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def _off(chunks: Iterator[bytes], fingerprint: dict[str, object]) -> Iterator[bytes]:
    yield from chunks


def _inline(chunks: Iterator[bytes], fingerprint: dict[str, object]) -> Iterator[bytes]:
    reader = pg_digest.StreamDigests()
    for chunk in chunks:
        reader.feed(chunk)
        yield chunk
    fingerprint["digests"] = reader.finish()


MODES: dict[str, Digesting] = {
    "off": _off,
    "inline": _inline,
    "thread": postgresql.digesting,
}


def timed_backup(folder: Path, url: str, digesting: Digesting) -> tuple[float, float]:
    """Wall and CPU seconds (drkit's own process, all threads) of one in-process `drkit
    backup` into a new filesystem store."""
    store = filesystem_store("local", folder / secrets.token_hex(4), "here")
    key = folder / "bench.key"
    if not key.exists():
        generate_keyfile(key)
    plan_file = write_plan(
        folder / "plan.yaml", name="bench-digests", database_url=url, key_path=key, stores=[store]
    )
    resources = open_resources(load_plan(plan_file), None)
    original = postgresql.digesting
    postgresql.digesting = digesting
    try:
        started, cpu = time.perf_counter(), time.process_time()
        backup(resources)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        postgresql.digesting = original


def _feed_seconds(url: str) -> tuple[float, int]:
    """The digest reader alone: the dump captured once, then fed through it."""
    source = postgresql.PostgresqlDatabase(
        PostgresqlSource(name="bench-db", type="postgresql", url=url)
    )
    with source.snapshot() as capture:
        chunks = list(capture.chunks)
    started = time.perf_counter()
    reader = pg_digest.StreamDigests()
    for chunk in chunks:
        reader.feed(chunk)
    assert reader.finish(), "the digest reader found no table in the dump"
    return time.perf_counter() - started, sum(map(len, chunks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--random-filler", action="store_true")
    options = parser.parse_args()
    names = list(MODES)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with (
        bench_database(options.scale, random_filler=options.random_filler) as url,
        tempfile.TemporaryDirectory() as directory,
    ):
        folder = Path(directory)
        timed_backup(folder, url, MODES["thread"])  # warm the caches
        for round_number in range(options.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                seconds, cpu_seconds = timed_backup(folder, url, MODES[name])
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
        feed_seconds, size = _feed_seconds(url)
    filler = "random filler" if options.random_filler else "stock filler"
    print(f"scale {options.scale} ({filler}, {size / 1e6:.0f} MB), {options.rounds} rounds")
    for name in names:
        line = f"{name:7} wall median {statistics.median(wall[name]):.2f} s "
        line += f"({min(wall[name]):.2f}-{max(wall[name]):.2f}), "
        line += f"CPU median {statistics.median(cpu[name]):.2f} s"
        if name != "off":
            ratios = [a / b for a, b in zip(wall[name], wall["off"], strict=True)]
            line += f"; ratio to off: median {statistics.median(ratios):.3f} "
            line += f"({min(ratios):.3f}-{max(ratios):.3f})"
        print(line)
    print(f"digest reader alone: {feed_seconds:.3f} s")


if __name__ == "__main__":
    main()
