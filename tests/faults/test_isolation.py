"""Sandboxes are reachable by drkit alone (DESIGN promise 10). While a drill waits in its
command check, a second Unix user tries what the issue found possible: connecting to the
sandbox cluster over TCP (as its superuser and as the checks' reader, without their
passwords) and over its socket, and reading the sandbox's, the scratch folder's and the
catalog's files. Every attempt fails; the drill then passes."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ..conftest import require
from .conftest import Setup, filesystem_stores, fill_postgres, make_setup
from .helpers import finish, start_drkit

pytestmark = pytest.mark.postgres
INTRUDER = "drkit-intruder"


@pytest.fixture(scope="module")
def intruder() -> Iterator[str]:
    """A second, unprivileged Unix user (created for the test when it does not exist)."""
    require(os.geteuid() == 0, "creating a second Unix user needs root (CI runs as root)")
    created = subprocess.run(["id", INTRUDER], capture_output=True).returncode != 0
    if created:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
            check=True,
        )
    yield INTRUDER
    if created:
        subprocess.run(["userdel", INTRUDER], check=False)


def as_intruder(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", INTRUDER, "--", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], "PGCONNECT_TIMEOUT": "5"},
        cwd="/",
    )


@pytest.fixture
def open_air() -> Iterator[Path]:
    """A folder every user may traverse (unlike pytest's): what stays private there, drkit
    made private."""
    folder = Path("/tmp") / f"drkit-isolation-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def setup(tmp_path: Path, postgres_database: str, open_air: Path) -> Setup:
    fill_postgres(postgres_database, 200)
    (open_air / "probe").mkdir()
    probe = open_air / "probe"
    wait = (
        f'echo "$DRKIT_SANDBOX_ORDERS_PG_URL" > {probe}/url; '
        f"while [ ! -e {probe}/go ]; do sleep 0.05; done"
    )
    sources = [
        {"name": "orders-pg", "type": "postgresql", "url": postgres_database},
        {"name": "app-db", "type": "sqlite", "path": str(tmp_path / "backend" / "app.db")},
    ]
    drill = {
        "checks": [
            {"type": "sql", "source": "orders-pg", "query": "SELECT count(*) FROM payments"}
            | {"expect": "= 200"},
            {"type": "command", "run": ["sh", "-c", wait], "timeout": "2m"},
        ]
    }
    made = make_setup(tmp_path, filesystem_stores(tmp_path, "disk"), sources=sources, drill=drill)
    made.catalog = f"sqlite:///{open_air / 'catalog.db'}"
    return made


def wait_for(path: Path, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 120
    while not path.exists() or not path.read_text().strip():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the drill never reached its command check"
        time.sleep(0.05)
    return path.read_text().strip()


def leased(home: Path, kind: str) -> str:
    for path in (home / "leases").glob(f"{kind}-*.json"):
        lease = json.loads(path.read_text())
        return str(lease["data"]["path"])
    raise AssertionError(f"no {kind} lease in {home}")


def test_a_second_user_can_neither_connect_to_a_running_drill_nor_read_its_files(
    setup: Setup, intruder: str, open_air: Path
) -> None:
    home = open_air / "home"
    env = {"DRKIT_HOME": str(home)}
    assert finish(start_drkit(setup.catalog, "backup", str(setup.plan), env=env)).returncode == 0
    drill = start_drkit(setup.catalog, "drill", "--json", str(setup.plan), env=env)
    try:
        reader_url = wait_for(open_air / "probe" / "url", drill)
        parts = urlsplit(reader_url)
        assert parts.hostname == "127.0.0.1" and parts.username == "drkit_reader"
        cluster = leased(home, "ephemeral-postgresql")
        scratch = leased(home, "process")
        superuser_url = reader_url.replace("drkit_reader@", "postgres@")
        socket_dsn = f"host={cluster} port={parts.port} user=postgres dbname=postgres"
        for target in (superuser_url, reader_url, socket_dsn):
            attempt = as_intruder("psql", "-w", "-d", target, "-c", "SELECT 1")
            assert attempt.returncode != 0, (target, attempt.stdout)
            assert "password" in attempt.stderr or "Permission denied" in attempt.stderr, (
                target,
                attempt.stderr,
            )
        for path in (cluster, f"{cluster}/server.log", scratch, str(home / "leases")):
            attempt = as_intruder("ls", "-la", path)
            assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, path
        catalog = setup.catalog.removeprefix("sqlite:///")
        attempt = as_intruder("cat", catalog)
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr
    finally:
        (open_air / "probe" / "go").touch()
    completed = finish(drill)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    [result] = json.loads(completed.stdout)
    assert result["outcome"] == "ok"
    # the fingerprints whatever the plan lists, then its sql and command checks
    assert [check["name"].split(" ")[0] for check in result["checks"]] == [
        "fingerprint",
        "fingerprint",
        "sql",
        "command",
    ]
    assert not Path(cluster).exists()
