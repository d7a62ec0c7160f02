"""A failover: the standby is promoted (timeline 2) and the archiver, pointed at it, follows.
The window walks from timeline 1 into timeline 2 through its history file, and a restore
to the latest moment holds the commits of both timelines."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import yaml

from drkit.actions.pitr import PitrRequest, restore_to_moment
from drkit.actions.resources import open_resources
from drkit.archive.ledger import store_windows
from drkit.execute import find_program
from drkit.plan.loader import parse_plan
from drkit.sandboxes import recovered_cluster
from tests.archive.conftest import (
    PitrSetup,
    ReplicationCluster,
    _as_server_user,
    archiving,
    running_cluster,
    start_server,
    stop_server,
)
from tests.archive.test_point_in_time import (
    commit,
    insert_across_segments,
    stream_and_back_up,
    wait_for,
    window_reaches,
)
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def make_standby(primary: ReplicationCluster, folder: Path) -> ReplicationCluster:
    folder.mkdir(mode=0o755)
    standby = ReplicationCluster(folder, free_port())
    argv = [find_program("pg_basebackup"), "-d", primary.url(), "-D", str(standby.data), "-R"]
    subprocess.run([*argv, "-X", "stream", "-c", "fast"], check=True, capture_output=True)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(folder)], check=True)
    start_server(standby)
    return standby


def moved_to(setup: PitrSetup, server: ReplicationCluster) -> PitrSetup:
    """The same plan with its URL pointing at another server (the failover's new primary)."""
    source = dict(setup.document["sources"][0], url=server.url(setup.database))
    document = {**setup.document, "sources": [source]}
    plan = parse_plan(yaml.safe_dump(document, sort_keys=False), "moved.yaml")
    return dataclasses.replace(
        setup,
        plan=plan,
        resources=open_resources(plan, setup.catalog),
        cluster=server,
        document=document,
    )


def test_a_promoted_standby_is_followed_on_its_new_timeline(
    pitr_setup: Callable[..., PitrSetup], server_folder: Path
) -> None:
    with running_cluster("drkit-test-primary-") as primary:
        setup = pitr_setup(cluster=primary)
        commit(setup, "CREATE TABLE orders (id int PRIMARY KEY)")
        standby = make_standby(primary, server_folder / "standby")
        try:
            with archiving(setup):
                stream_and_back_up(setup)
                insert_across_segments(setup, range(1, 3))
                last = commit(setup, "INSERT INTO orders VALUES (3)")
                wait_for(lambda: window_reaches(setup, last), "the window to reach the primary")
                with standby.connect(setup.database) as connection:
                    count = "SELECT count(*) FROM orders"
                    wait_for(lambda: connection.execute(count).fetchone() == (3,), "the standby")
            stop_server(primary)  # the primary is lost
            promote = [find_program("pg_ctl"), "-D", str(standby.data), "-w", "promote"]
            subprocess.run(_as_server_user(promote), check=True, capture_output=True)
            moved = moved_to(setup, standby)
            with archiving(moved):
                insert_across_segments(moved, range(4, 6))
                last = commit(moved, "INSERT INTO orders VALUES (6)")
                wait_for(lambda: window_reaches(moved, last), "the window to reach timeline 2", 240)
            windows = store_windows(moved.catalog, moved.plan, moved.source)
            assert [w.problems for w in windows] == [[], []]
            assert all((w.last_segment or "").startswith("00000002") for w in windows)
            restored = server_folder / "restored"
            request = PitrRequest(recovered_cluster.RecoveryTarget(None), restored)
            result = restore_to_moment(moved.resources, request)
            try:
                url = f"postgresql://postgres@127.0.0.1:{result.port}/{setup.database}"
                with psycopg.connect(url) as connection:
                    rows = connection.execute("SELECT id FROM orders ORDER BY id").fetchall()
                assert [row[0] for row in rows] == [1, 2, 3, 4, 5, 6]
            finally:
                recovered_cluster.stop(restored)
        finally:
            stop_server(standby)
            shutil.rmtree(standby.folder, ignore_errors=True)
