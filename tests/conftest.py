"""Shared fixtures: real servers (PostgreSQL, MariaDB, moto's S3 server) and the restic binary.

A test that needs a server never skips silently: when none answers on 127.0.0.1, a throwaway
one is started (PostgreSQL via initdb/pg_ctl); under CI=true a missing server or binary is a
failure, not a skip.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_HOST, PG_PORT = "127.0.0.1", 5432
MYSQL_HOST, MYSQL_PORT = "127.0.0.1", 3306


def require(condition: bool, why: str) -> None:
    """Fail under CI, skip (loudly, with the reason) elsewhere."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required for this test under CI=true: {why}")
    pytest.skip(why)


def is_port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


#: Test modules that judge machine-wide state (every process in /proc, every scratch database
#: or reader account on the shared servers) or kill at timed moments: `scripts/test` runs them
#: on their own, after the rest ran on two workers, so another test's sandboxes are not taken
#: for their leftovers.
SERIAL_MODULES = {
    "tests/faults/test_secrets.py",  # samples the environment of every marked process
    "tests/faults/test_crash_leftovers.py",  # kill -9 at timed moments, then looks everywhere
    "tests/actions/test_servers_end_to_end.py",  # no drkit_drill_* database, no process left
    "tests/actions/test_drill_checks.py",  # no drkit_reader_* account left on the server
    "tests/sandboxes/test_drill_sandboxes.py",  # no drkit_reader_* role left on the server
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        if item.path.relative_to(root).as_posix() in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def session_drkit_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """drkit's state (default catalog, leases, scratch folders) lives in a folder of the test
    session, never in the user's own; children started by tests inherit it."""
    saved = os.environ.get("DRKIT_HOME")
    os.environ["DRKIT_HOME"] = str(tmp_path_factory.mktemp("drkit-home"))
    yield
    if saved is None:
        os.environ.pop("DRKIT_HOME", None)
    else:
        os.environ["DRKIT_HOME"] = saved


@pytest.fixture(autouse=True)
def plain_drkit_logger() -> Iterator[None]:
    """`drkit` CLI calls (here or in earlier test files) give the drkit logger its own stderr
    handler and stop propagation, which hides records from caplog; each test here starts
    with a plain logger, and the previous state comes back afterwards."""
    logger = logging.getLogger("drkit")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers[:], logger.propagate = [], True
    logger.setLevel(logging.NOTSET)
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


# --- PostgreSQL --------------------------------------------------------------------------------


def _start_throwaway_postgres(tmp: Path) -> tuple[str, subprocess.Popen[bytes] | None, Path]:
    """initdb + pg_ctl on a free port; returns (server URL, None, data dir)."""
    from drkit.execute import find_program

    initdb, pg_ctl = find_program("initdb"), find_program("pg_ctl")
    data = tmp / "pgdata"
    port = free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        tmp.chmod(0o755)
        data.mkdir()
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(data / "log"),
            "-w",
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    return f"postgresql://postgres@127.0.0.1:{port}", None, data


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL server (no database part), superuser postgres, trust auth."""
    if is_port_open(PG_HOST, PG_PORT):
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}"
        return
    require(not IN_CI, f"PostgreSQL is not running on {PG_HOST}:{PG_PORT}")
    tmp = Path(tempfile.mkdtemp(prefix="drkit-test-pg-"))
    url, _, data = _start_throwaway_postgres(tmp)
    yield url
    from drkit.execute import find_program

    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [*run_as, find_program("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
        check=False,
        capture_output=True,
    )
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards. Yields its URL."""
    import psycopg

    name = f"drkit_test_{secrets.token_hex(4)}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_server}/{name}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- MariaDB / MySQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mysql_server() -> str:
    """URL of a MariaDB/MySQL server, root with an empty password."""
    require(
        is_port_open(MYSQL_HOST, MYSQL_PORT), f"MariaDB is not running on {MYSQL_HOST}:{MYSQL_PORT}"
    )
    return f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}"


@pytest.fixture
def mysql_database(mysql_server: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards. Yields its URL."""
    import pymysql

    name = f"drkit_test_{secrets.token_hex(4)}"
    connection = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="")
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield f"{mysql_server}/{name}"
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        connection.close()


# --- S3 through moto's server ------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of moto's server on 127.0.0.1 (real HTTP, for boto3 and restic alike)."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    deadline = time.monotonic() + 10
    while not is_port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            pytest.fail("moto server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A new, empty bucket on moto's server (us-east-1)."""
    import boto3

    name = f"drkit-test-{secrets.token_hex(4)}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name


# --- restic ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def restic_binary() -> str:
    found = shutil.which("restic")
    require(found is not None, "restic is not installed (apt-get install restic)")
    assert found is not None
    return found


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """A real filesystem of a given size to fill up: a tmpfs mounted for the test (root)."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        require(os.geteuid() == 0, "mounting a small tmpfs needs root")
        point = tmp_path / f"disk-{len(mounted)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        require(result.returncode == 0, f"cannot mount a tmpfs: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "--lazy", str(point)], check=False, capture_output=True)


def fill_disk(folder: Path) -> Path:
    """Write a file into ``folder`` until its filesystem has no block left; returns it."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as file:
        while True:
            try:
                written = file.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                return filler
            if not written:
                return filler
