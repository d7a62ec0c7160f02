"""Point-in-time recovery benchmarks, written to bench/PITR.md:

1. RPO under a steady pgbench load: `drkit archive` (default `ship_partial_every: 2s`) ships to
   two local filesystem stores; every half second the window's end is read from the catalog
   as `drkit status` does, and RPO = now - window end per store. p50 / p99 / max.
2. Base backup: `drkit backup` of a `pitr:` source (pg_basebackup streamed, checked against its
   manifest, compressed, sealed, written to two stores) vs `pg_basebackup -Ft -X none` to a
   local directory; interleaved rounds.
3. PITR restore to the end of the archive: `drkit restore --latest` (base backup fetched and
   unpacked, WAL fetched by drkit's restore_command) vs PostgreSQL alone replaying the same
   base backup and WAL from a local plain archive (`cp` as restore_command); interleaved.

    python -m bench.pitr [--scale 10] [--rounds 3] [--seconds 60]

Runs its own throwaway cluster (initdb/pg_ctl on a free port, wal_level=replica) and removes
everything it made.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
AS_POSTGRES = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **options)


def drkit(catalog: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return run([sys.executable, "-m", "drkit", "--catalog", catalog, "-q", *args], env=env)


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/bench"

    def start(self) -> None:
        run(
            [
                *AS_POSTGRES,
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "wal_level": "replica",
            "max_wal_senders": 10,
            "max_replication_slots": 10,
            "unix_socket_directories": f"'{self.root}'",
            "shared_buffers": "128MB",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n"
        )
        run(
            [
                *AS_POSTGRES,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "log"),
                "-w",
                "start",
            ]
        )
        run(self.client("psql", "-c", "CREATE DATABASE bench"))

    def client(self, program: str, *args: str) -> list[str]:
        """argv of psql or pgbench against this cluster as postgres."""
        return [program, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *args]

    def sql(self, statement: str) -> None:
        run(self.client("psql", "-c", statement, "bench"))

    def stop(self) -> None:
        subprocess.run(
            [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure_rpo(plan: Any, catalog_url: str, cluster: Cluster, seconds: int) -> dict[str, Any]:
    from drkit.archive.ledger import store_windows
    from drkit.catalog import Catalog

    load = subprocess.Popen(
        cluster.client("pgbench", "-c", "2", "-R", "100", "-T", str(seconds), "-n", "bench"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    samples: dict[str, list[float]] = {}
    with Catalog.open(catalog_url) as catalog:
        time.sleep(3)
        while load.poll() is None:
            now = datetime.now(UTC)
            for window in store_windows(catalog, plan, plan.sources[0]):
                if window.end is not None:
                    lag = (now - window.end).total_seconds()
                    samples.setdefault(window.store, []).append(lag)
                    if lag > 10:
                        print(f"{now:%H:%M:%S.%f} {window.store} lag {lag:.1f}s", file=sys.stderr)
            time.sleep(0.5)
    return {
        store: {
            "samples": len(values),
            "p50": percentile(values, 0.5),
            "p99": percentile(values, 0.99),
            "max": max(values),
        }
        for store, values in samples.items()
    }


def timed(action: Any) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def local_archive(folder: Path, catalog: str, plan_file: Path, names: list[str]) -> None:
    folder.mkdir()
    for name in names:
        drkit(catalog, "wal", "fetch", str(plan_file), name, str(folder / name))
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        os.chmod(path, 0o644)


def replay_plain(base_tar: Path, archive: Path, target: Path, port: int) -> None:
    """PostgreSQL alone: unpack the base backup, replay the local archive with cp, promote."""
    target.mkdir(mode=0o700)
    with tarfile.open(base_tar) as tar:
        tar.extractall(target, filter="data")
    with (target / "postgresql.auto.conf").open("a") as conf:
        conf.write(
            f"restore_command = 'cp {archive}/%f %p'\nport = {port}\n"
            "recovery_target_action = 'promote'\nhot_standby = off\n"
            f"unix_socket_directories = '{target}'\n"
        )
    (target / "recovery.signal").write_text("")
    if AS_POSTGRES:
        run(["chown", "-R", "postgres:postgres", str(target)])
    run(
        [
            *AS_POSTGRES,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(target),
            "-l",
            str(target / "log"),
            "-w",
            "-t",
            "600",
            "start",
        ]
    )
    while (target / "recovery.signal").exists():
        time.sleep(0.05)


def stop_server(data: Path) -> None:
    subprocess.run(
        [*AS_POSTGRES, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
        capture_output=True,
        check=False,
    )
    shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rpo-only", action="store_true", help="measure the RPO only")
    options = parser.parse_args()
    sys.path.insert(0, str(REPOSITORY))
    from drkit.crypto import generate_keyfile
    from drkit.plan.loader import load_plan

    root = Path(tempfile.mkdtemp(prefix="drkit-bench-pitr-", dir="/tmp"))
    os.chmod(root, 0o755)
    if AS_POSTGRES:
        shutil.chown(root, "postgres", "postgres")
    work = Path(tempfile.mkdtemp(prefix="drkit-bench-pitr-work-", dir="/tmp"))
    os.chmod(work, 0o755)
    os.environ["DRKIT_HOME"] = str(work / "home")
    cluster = Cluster(root)
    archiver: subprocess.Popen[str] | None = None
    results: dict[str, Any] = {"scale": options.scale, "rounds": options.rounds}
    try:
        cluster.start()
        run(cluster.client("pgbench", "-i", "-s", str(options.scale), "-q", "bench"))
        generate_keyfile(work / "key")
        document = {
            "version": 1,
            "name": "bench-pitr",
            "sources": [
                {
                    "name": "db",
                    "type": "postgresql",
                    "url": cluster.url,
                    "pitr": {"slot": "drkit_bench"},
                }
            ],
            "keys": [{"name": "k", "type": "keyfile", "path": str(work / "key")}],
            "stores": [
                {"name": s, "type": "filesystem", "path": str(work / s), "region": s}
                for s in ("east", "west")
            ],
        }
        plan_file = work / "plan.yaml"
        plan_file.write_text(yaml.safe_dump(document))
        plan = load_plan(plan_file)
        catalog = f"sqlite:///{work / 'catalog.db'}"
        env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
        archiver = subprocess.Popen(
            [sys.executable, "-m", "drkit", "--catalog", catalog, "archive", str(plan_file)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(5)
        drkit(catalog, "backup", str(plan_file))
        results["rpo"] = measure_rpo(plan, catalog, cluster, options.seconds)
        if options.rpo_only:
            print(json.dumps(results, indent=2, default=str))
            return

        backup_times: dict[str, list[float]] = {
            "drkit backup (2 stores)": [],
            "pg_basebackup -Ft -X none": [],
        }
        base_tar = work / "plain" / "base.tar"
        for round_number in range(options.rounds):
            variants = list(backup_times)
            if round_number % 2:
                variants.reverse()
            for variant in variants:
                cluster.sql("CHECKPOINT")
                run(["sync"])
                if variant.startswith("drkit"):
                    seconds = timed(functools.partial(drkit, catalog, "backup", str(plan_file)))
                else:
                    shutil.rmtree(base_tar.parent, ignore_errors=True)
                    seconds = timed(
                        lambda: run(
                            [
                                "pg_basebackup",
                                "-d",
                                cluster.url.rsplit("/", 1)[0] + "/postgres",
                                "-D",
                                str(base_tar.parent),
                                "-Ft",
                                "-X",
                                "none",
                                "-c",
                                "fast",
                            ]
                        )
                    )
                backup_times[variant].append(seconds)
        results["backup"] = {
            k: {"median": statistics.median(v), "runs": v} for k, v in backup_times.items()
        }
        run(
            cluster.client("pgbench", "-n", "-c", "2", "-T", "20", "bench")
        )  # WAL for the restores to replay
        cluster.sql("SELECT pg_switch_wal()")
        time.sleep(6)
        archiver.send_signal(signal.SIGTERM)
        archiver.wait(60)
        archiver = None
        # the plain archive: the same WAL, decrypted, in a local folder
        from drkit.archive.objects import objects_from_keys

        keys = [str(p.relative_to(work / "east")) for p in (work / "east").rglob("*.drkit")]
        names = sorted(
            o.name for o in objects_from_keys("bench-pitr", "db", keys) if o.kind == "segment"
        )
        archive = work / "plain-archive"
        local_archive(archive, catalog, plan_file, names)
        restore_times: dict[str, list[float]] = {
            "drkit restore --latest": [],
            "tar + PostgreSQL replay from a local archive": [],
        }
        for round_number in range(options.rounds):
            variants = list(restore_times)
            if round_number % 2:
                variants.reverse()
            for variant in variants:
                target = root / f"restored-{round_number}-{len(restore_times[variant])}"
                if variant.startswith("drkit"):
                    restore = ("restore", str(plan_file), "--latest", "--to", f"db={target}")
                    seconds = timed(functools.partial(drkit, catalog, *restore))
                else:
                    replay = functools.partial(replay_plain, base_tar, archive, target, free_port())
                    seconds = timed(replay)
                restore_times[variant].append(seconds)
                stop_server(target)
        results["restore"] = {
            k: {"median": statistics.median(v), "runs": v} for k, v in restore_times.items()
        }
        results["wal_segments"] = len(names)
    finally:
        if archiver is not None:
            archiver.send_signal(signal.SIGTERM)
            archiver.wait(60)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
