"""``python -m bench.references``: drkit beside pgBackRest and borgmatic on the same database,
in interleaved rounds, written into bench/RESULTS.md (its "Reference tools" section).

The bench starts two private clusters of its own (initdb/pg_ctl, run as the ``postgres``
user, on free ports): ``source`` holds the database and archives its WAL to pgBackRest, as
pgBackRest requires; ``target`` receives the restores of drkit, pg_restore and borgmatic (so
the source's WAL archiving does not slow them). Each round, in a rotating order:

- backups: the read limit ``pg_dump -Fc -Z0 > /dev/null``; ``drkit backup`` to one filesystem
  store (zstd 3, encrypted); ``pgbackrest backup --type=full`` (zst level 3, AES-256 repository,
  ``process-max=2``); ``borgmatic create`` (its PostgreSQL hook: ``pg_dump -Fc`` streamed into
  borg, zstd 3, repokey encryption). Each tool writes into an emptied repository, so every
  backup is a full one (borg would otherwise deduplicate against the previous round);
- restores: ``pg_restore -j2`` of a ``pg_dump -Fc`` file; ``drkit restore --to`` a new
  database; ``pgbackrest restore`` into a new data directory, then the cluster started and
  out of recovery (usable: a query answers); ``borgmatic restore`` into an empty database of
  the same name. Each restored database is checked (row counts) outside the timing.

Needs Debian's ``pgbackrest`` and ``borgbackup`` and pip's ``borgmatic``::

    apt-get install pgbackrest borgbackup && pip install borgmatic
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench import dataset as data
from bench.main import rotated
from bench.measure import Sample, run_timed
from bench.scenarios import Bench, measure_backup
from bench.server import PostgresServer
from bench.workspace import Workspace, raise_on_sigterm

log = logging.getLogger("bench.references")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- references: begin -->", "<!-- references: end -->"
STANZA = "bench"
PASSPHRASE = "bench-reference-passphrase"  # a throwaway repository's, in the bench only
TOOLS = ("pgbackrest", "borg", "borgmatic", "runuser")
INSTALL = "apt-get install pgbackrest borgbackup; pip install borgmatic"


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv]


def bindir() -> Path:
    output = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
    return Path(output.stdout.strip())


@dataclass
class Cluster:
    """A private PostgreSQL cluster the bench starts and stops."""

    data: Path
    port: int
    socket_dir: Path

    @property
    def server(self) -> PostgresServer:
        return PostgresServer("127.0.0.1", self.port, "postgres")

    def start(self) -> None:
        command = [str(bindir() / "pg_ctl"), "-D", str(self.data), "-l", f"{self.data}.log"]
        command += ["-o", f"-p {self.port} -k {self.socket_dir}", "-w", "-t", "600", "start"]
        subprocess.run(as_postgres(command), check=True, capture_output=True)

    def stop(self) -> None:
        command = [str(bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
        subprocess.run(as_postgres(command), capture_output=True)

    def wait_usable(self, deadline: float = 600.0) -> None:
        """Until the cluster accepts connections and is out of recovery."""
        limit = time.monotonic() + deadline
        while time.monotonic() < limit:
            try:
                if self.server.execute("postgres", "SELECT pg_is_in_recovery()") == [(False,)]:
                    return
            except Exception:  # still starting: tried again
                pass
            time.sleep(0.05)
        raise RuntimeError(f"cluster {self.data} not usable after {deadline:.0f} s")


def init_cluster(folder: Path, name: str, settings: str) -> Cluster:
    data_dir = folder / name
    sockets = folder / f"{name}-socket"
    sockets.mkdir()
    shutil.chown(sockets, "postgres")
    command = [str(bindir() / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust"]
    subprocess.run(as_postgres(command), check=True, capture_output=True)
    cluster = Cluster(data_dir, free_port(), sockets)
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write(f"\nlisten_addresses = '127.0.0.1'\n{settings}")
    return cluster


@dataclass
class References:
    workspace: Workspace
    folder: Path
    source: Cluster
    target: Cluster
    conf: Path
    borgmatic_conf: Path
    environment: dict[str, str]
    database: str = ""
    series: dict[str, list[Sample]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, sample: Sample, seconds: float | None = None) -> None:
        if seconds is not None:
            sample = Sample(seconds, sample.cpu_seconds, sample.peak_rss_kib, 0, 0, "")
        self.series.setdefault(key, []).append(sample)

    def run(self, argv: list[str], *, postgres: bool = False, stdout: Path | None = None) -> Sample:
        command = as_postgres(argv) if postgres else argv
        return run_timed(self.workspace, command, env=self.environment, stdout=stdout)

    def checkpoint(self) -> None:
        for cluster in (self.source, self.target):
            cluster.server.execute("postgres", "CHECKPOINT")
        os.sync()

    def pgbackrest(self, *arguments: str) -> list[str]:
        return ["pgbackrest", f"--config={self.conf}", f"--stanza={STANZA}", *arguments]

    def borgmatic(self, *arguments: str) -> list[str]:
        return ["borgmatic", "--config", str(self.borgmatic_conf), *arguments]


def set_up(workspace: Workspace, scale: int) -> tuple[References, Bench]:
    folder = workspace.folder("references")
    shutil.chown(folder, "postgres")
    for name in ("repo", "logs", "locks", "spool"):
        (folder / f"pgbackrest-{name}").mkdir()
        shutil.chown(folder / f"pgbackrest-{name}", "postgres")
    conf = folder / "pgbackrest.conf"
    source_data = folder / "source"
    archive = f"pgbackrest --config={conf} --stanza={STANZA} archive-push %p"
    source = init_cluster(
        folder,
        "source",
        f"wal_level = replica\narchive_mode = on\narchive_command = '{archive}'\n"
        "max_wal_size = 2GB\n",
    )
    target = init_cluster(folder, "target", "max_wal_size = 2GB\n")
    conf.write_text(
        "[global]\n"
        f"repo1-path={folder / 'pgbackrest-repo'}\nrepo1-retention-full=1\n"
        f"repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={PASSPHRASE}\n"
        "compress-type=zst\ncompress-level=3\nprocess-max=2\nstart-fast=y\n"
        f"log-path={folder / 'pgbackrest-logs'}\nlock-path={folder / 'pgbackrest-locks'}\n"
        f"spool-path={folder / 'pgbackrest-spool'}\nlog-level-console=warn\n"
        f"[{STANZA}]\npg1-path={source_data}\npg1-port={source.port}\n"
        f"pg1-socket-path={source.socket_dir}\npg1-user=postgres\n"
    )
    os.chmod(conf, 0o644)
    source.start()
    target.start()
    environment = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGUSER": "postgres",
        "BORG_BASE_DIR": str(workspace.folder("borg-home")),
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    }
    references = References(
        workspace, folder, source, target, conf, folder / "borgmatic.yaml", environment
    )
    subprocess.run(
        as_postgres(references.pgbackrest("stanza-create")), check=True, capture_output=True
    )
    bench = Bench(workspace, source.server)
    dataset = data.build(source.server, workspace.database_name("ref"), scale)
    references.database = dataset.name
    references.sizes["database"] = dataset.disk_bytes
    references.borgmatic_conf.write_text(
        yaml.safe_dump(
            {
                "repositories": [{"path": str(folder / "borg-repo"), "label": "bench"}],
                "encryption_passphrase": PASSPHRASE,
                "compression": "zstd,3",
                "user_runtime_directory": str(workspace.folder("borgmatic-runtime")),
                "user_state_directory": str(workspace.folder("borgmatic-state")),
                "postgresql_databases": [
                    {
                        "name": dataset.name,
                        "hostname": "127.0.0.1",
                        "port": source.port,
                        "username": "postgres",
                    }
                ],
            },
            sort_keys=False,
        )
    )
    return references, bench


def reset_borg(references: References) -> None:
    shutil.rmtree(references.folder / "borg-repo", ignore_errors=True)
    shutil.rmtree(references.environment["BORG_BASE_DIR"], ignore_errors=True)
    subprocess.run(
        references.borgmatic("repo-create", "--encryption", "repokey-blake2"),
        env=references.environment,
        check=True,
        capture_output=True,
    )


def expected_counts(server: PostgresServer, database: str) -> list[tuple[object, ...]]:
    return server.execute(
        database,
        "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM events), "
        "(SELECT sum(abalance) FROM pgbench_accounts)",
    )


def check_restored(references: References, server: PostgresServer, database: str) -> None:
    want = expected_counts(references.source.server, references.database)
    have = expected_counts(server, database)
    if have != want:
        raise RuntimeError(f"{database} on port {server.port} has {have}, expected {want}")


def backups(references: References, bench: Bench, plan: Path, number: int) -> str:
    """One round of backups, rotated; drkit's snapshot id."""
    snapshot: dict[str, str] = {}

    def read_limit() -> None:
        references.checkpoint()
        dump = ["pg_dump", "-p", str(references.source.port), "-Fc", "-Z0", references.database]
        references.add("read_limit", references.run(dump))

    def drkit() -> None:
        references.checkpoint()
        snapshot["id"] = measure_backup(bench, plan, "drkit_backup")
        references.series.setdefault("drkit_backup", []).append(
            bench.series["drkit_backup"].samples[-1]
        )

    def pgbackrest() -> None:
        references.checkpoint()
        sample = references.run(references.pgbackrest("--type=full", "backup"), postgres=True)
        references.add("pgbackrest_backup", sample)
        references.sizes["pgbackrest_repo"] = folder_bytes(references.folder / "pgbackrest-repo")

    def borgmatic() -> None:
        reset_borg(references)
        references.checkpoint()
        references.add("borgmatic_backup", references.run(references.borgmatic("create")))
        references.sizes["borg_repo"] = folder_bytes(references.folder / "borg-repo")

    for step in rotated([read_limit, drkit, pgbackrest, borgmatic], number):
        step()
    return snapshot["id"]


def restores(references: References, bench: Bench, plan: Path, snapshot: str, number: int) -> None:
    target = references.target.server
    archive = references.folder / "baseline.dump"
    dump = ["pg_dump", "-p", str(references.source.port), "-Fc", "-f", str(archive)]
    subprocess.run([*dump, references.database], env=references.environment, check=True)

    def pg_restore() -> None:
        name = references.workspace.database_name("pg_restore")
        references.checkpoint()
        started = time.monotonic()
        target.create_database(name)
        command = ["pg_restore", "-p", str(target.port), "-j2", "--no-owner", "-d", name]
        sample = references.run([*command, str(archive)])
        references.add("pg_restore_j2", sample, time.monotonic() - started)
        check_restored(references, target, name)
        target.drop_database(name)

    def drkit() -> None:
        name = references.workspace.database_name("drkit_restore")
        references.checkpoint()
        outcome = bench.cli.restore(plan, snapshot, target.url(name))
        references.add("drkit_restore", outcome.sample)
        check_restored(references, target, name)
        target.drop_database(name)

    def pgbackrest() -> None:
        restored = Cluster(
            references.folder / "restored", free_port(), references.source.socket_dir
        )
        references.checkpoint()
        started = time.monotonic()
        command = references.pgbackrest(f"--pg1-path={restored.data}", "--archive-mode=off")
        sample = references.run([*command, "restore"], postgres=True)
        restored.start()
        restored.wait_usable()
        references.add("pgbackrest_restore", sample, time.monotonic() - started)
        check_restored(references, restored.server, references.database)
        restored.stop()
        shutil.rmtree(restored.data)

    def borgmatic() -> None:
        references.checkpoint()
        started = time.monotonic()
        target.create_database(references.database)
        command = references.borgmatic("restore", "--archive", "latest")
        command += ["--hostname", "127.0.0.1", "--port", str(target.port)]
        sample = references.run(command)
        references.add("borgmatic_restore", sample, time.monotonic() - started)
        check_restored(references, target, references.database)
        target.drop_database(references.database)

    for step in rotated([pg_restore, drkit, pgbackrest, borgmatic], number):
        step()
    archive.unlink()


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def median(samples: list[Sample]) -> float:
    return statistics.median(sample.seconds for sample in samples)


ROWS = (
    ("read_limit", "`pg_dump -Fc -Z0 > /dev/null` (the read limit)"),
    ("drkit_backup", "`drkit backup`, 1 filesystem store"),
    ("pgbackrest_backup", "`pgbackrest backup --type=full`"),
    ("borgmatic_backup", "`borgmatic create` (PostgreSQL hook)"),
    ("pg_restore_j2", "`pg_restore -j2` of a `pg_dump -Fc` file"),
    ("drkit_restore", "`drkit restore --to` a new database"),
    ("pgbackrest_restore", "`pgbackrest restore` + start until usable"),
    ("borgmatic_restore", "`borgmatic restore` into an empty database"),
)


def render(references: References, scale: int, rounds: int, seconds: float, load: str) -> str:
    series = references.series

    def figure(key: str) -> str:
        values = [sample.seconds for sample in series[key]]
        return f"{median(series[key]):.2f} s ({min(values):.2f}-{max(values):.2f})"

    def ratio(numerator: str, denominator: str) -> str:
        return f"{median(series[numerator]) / median(series[denominator]):.2f}x"

    versions = {tool: tool_version(tool) for tool in ("pgbackrest", "borg", "borgmatic")}
    lines = [
        BEGIN,
        "## Reference tools: pgBackRest and borgmatic",
        "",
        f"`python -m bench.references --scale {scale} --rounds {rounds}` (private clusters "
        "started by the bench; see bench/README.md), "
        f"{rounds} interleaved rounds in {seconds:.0f} s; database "
        f"{references.sizes['database'] / 2**20:.0f} MiB on disk (pgbench scale {scale} + "
        f"events). Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}. "
        f"Load average after the run: {load}; the machine (2 cores) was shared with other "
        "jobs, so single figures move by tens of percent: read the ratios of the medians.",
        "",
        "| step | median (min-max) |",
        "| --- | --- |",
        *(f"| {label} | {figure(key)} |" for key, label in ROWS if key in series),
        "",
        "| ratio | value |",
        "| --- | --- |",
        f"| drkit backup ÷ pgBackRest full backup | {ratio('drkit_backup', 'pgbackrest_backup')} |",
        f"| drkit backup ÷ borgmatic create | {ratio('drkit_backup', 'borgmatic_backup')} |",
        f"| drkit backup ÷ read limit | {ratio('drkit_backup', 'read_limit')} |",
        f"| drkit restore ÷ pgBackRest restore to a usable cluster | "
        f"{ratio('drkit_restore', 'pgbackrest_restore')} |",
        f"| drkit restore ÷ borgmatic restore | {ratio('drkit_restore', 'borgmatic_restore')} |",
        f"| drkit restore ÷ `pg_restore -j2` | {ratio('drkit_restore', 'pg_restore_j2')} |",
        "",
        f"Repository sizes after one full backup: pgBackRest "
        f"{references.sizes.get('pgbackrest_repo', 0) / 2**20:.1f} MiB (with the WAL "
        f"archived since the first backup), borg "
        f"{references.sizes.get('borg_repo', 0) / 2**20:.1f} MiB.",
        "",
        "pgBackRest copies the cluster's files (every database, indexes included) and its "
        "restore needs no index build, only WAL replay to the end of the backup; drkit and "
        "borgmatic take a logical dump of one database, and their restores rebuild its "
        "indexes (pg_restore). Settings: pgBackRest zst level 3, AES-256 repository, "
        "`process-max=2`; borgmatic zstd,3, repokey-blake2; drkit zstd 3, encrypted, one "
        "filesystem store, `jobs: 2`.",
        END,
    ]
    return "\n".join(lines) + "\n"


def tool_version(tool: str) -> str:
    flag = "version" if tool == "pgbackrest" else "--version"  # pgbackrest has no --version
    output = subprocess.run([tool, flag], capture_output=True, text=True).stdout
    found = re.search(r"\d+(\.\d+)+", output)
    return found.group(0) if found else "?"


def write_section(output: Path, section: str) -> None:
    text = output.read_text() if output.exists() else ""
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    output.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.references",
        description="drkit beside pgBackRest and borgmatic on the same database.",
        epilog="Example: python -m bench.references --scale 6 --rounds 3",
    )
    parser.add_argument("--scale", type=int, default=6, help="pgbench scale (6: ~100 MB)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="report file")
    parser.add_argument("--tmpdir", type=Path, help="where the workspace goes ($TMPDIR)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    missing = missing_tools()
    if missing:
        parser.error(f"missing {', '.join(missing)}: {INSTALL}")
    raise_on_sigterm()
    started = time.monotonic()
    placeholder = PostgresServer()  # replaced by the source cluster once it runs
    workspace = Workspace(placeholder, arguments.tmpdir)
    workspace.root.chmod(0o711)
    clusters: list[Cluster] = []
    try:
        references, bench = set_up(workspace, arguments.scale)
        clusters = [references.source, references.target]
        workspace.server = references.source.server
        plan = one_store_plan(bench, references)
        for number in range(arguments.rounds):
            log.info("round %d of %d", number + 1, arguments.rounds)
            snapshot = backups(references, bench, plan, number)
            restores(references, bench, plan, snapshot, number)
        seconds = time.monotonic() - started
        load = os.getloadavg()
        section = render(
            references,
            arguments.scale,
            arguments.rounds,
            seconds,
            " ".join(f"{x:.1f}" for x in load),
        )
    except KeyboardInterrupt:
        log.info("interrupted: cleaning up")
        return 130
    finally:
        for cluster in clusters:
            cluster.stop()
        # the clusters' databases went with them: nothing to drop on the shared server
        workspace.server, workspace.prefix = placeholder, "drkit_bench_none_"
        workspace.close()
    write_section(arguments.output, section)
    print(section)
    return 0


def one_store_plan(bench: Bench, references: References) -> Path:
    dataset = data.Dataset(references.database, 0, 0, 0, references.sizes["database"])
    return bench.plans_for(dataset, "ref").one_store


if __name__ == "__main__":
    raise SystemExit(main())
