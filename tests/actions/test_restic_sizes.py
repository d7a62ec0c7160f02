"""Sizes are what each store holds: a backup of compressible data to a real restic repository
records, for the restic copy, the bytes the repository keeps (restic's compressed, encrypted
blobs, as `restic stats --mode raw-data` counts them), far below the plaintext it was sent;
`drkit info` and the evidence record show that figure. The restic store also holds the plan's
evidence log, which verifies from it and never holds the repository's password."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from drkit.cli import main
from drkit.crypto.signing import generate_signing_key
from tests.stores.conftest import (  # noqa: F401 - session fixtures, reused
    RESTIC_PASSWORD,
    RESTIC_PASSWORD_VARIABLE,
    restic_environment,
    restic_template,
)

from .conftest import make_backend, plan_document

ROWS = 60_000


def run(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--catalog", url, *args])
    return code, capsys.readouterr().out


@pytest.mark.restic
@pytest.mark.slow
def test_a_restic_copy_records_the_bytes_the_repository_holds(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restic_template: Path,  # noqa: F811 - the fixture imported above
    restic_binary: str,
) -> None:
    backend = make_backend(tmp_path / "backend")
    with sqlite3.connect(backend["database"]) as connection:  # compressible: repeated text
        connection.executemany(
            "INSERT INTO orders (note, total) VALUES (?, ?)",
            [("a very repetitive order note " * 4, i % 50) for i in range(ROWS)],
        )
    connection.close()
    repository = tmp_path / "restic"
    subprocess.run(["cp", "-r", str(restic_template), str(repository)], check=True)
    signing_key = tmp_path / "evidence.key"
    public, _ = generate_signing_key(signing_key)
    stores: list[dict[str, Any]] = [
        {"name": "disk", "type": "filesystem", "path": str(tmp_path / "disk"), "region": "a"},
        {
            "name": "vault",
            "type": "restic",
            "repository": str(repository),
            "password": f"env:{RESTIC_PASSWORD_VARIABLE}",
            "region": "b",
        },
    ]
    document = plan_document(tmp_path, stores, evidence={"signing_key": f"file:{signing_key}"})
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(document, sort_keys=False))
    url = f"sqlite:///{tmp_path / 'catalog.db'}"

    code, out = run(url, capsys, "backup", "--json", str(plan))
    assert code == 0, out
    result = json.loads(out)
    copies = {store["store"]: store["bytes"] for store in result["stores"]}
    plaintext = result["plaintext_bytes"]
    assert plaintext > 4 << 20
    assert copies["vault"] < plaintext / 4, (copies, plaintext)

    environment = {**os.environ, "RESTIC_PASSWORD": RESTIC_PASSWORD}
    stats = subprocess.run(
        [restic_binary, "--repo", str(repository), "stats", "--json", "--mode", "raw-data",
         "--path", f"/test-api/snapshots/{result['snapshot_id']}/app-db.sqlite", "latest"],
        check=True, capture_output=True, env=environment,
    )  # fmt: skip
    database_stored = json.loads(stats.stdout)["total_size"]
    assert database_stored <= copies["vault"] < database_stored + (64 << 10)

    code, out = run(url, capsys, "info", "--json", str(plan), result["snapshot_id"])
    assert code == 0
    assert str(copies["vault"]) in out

    code, out = run(url, capsys, "evidence", "export", str(plan))
    record = json.loads(out.splitlines()[-1])
    held = {c["store"]: c["bytes"] for c in record["event"]["snapshots"][0]["copies"]}
    assert held["vault"] == copies["vault"]
    assert RESTIC_PASSWORD not in out
    code, out = run(
        url, capsys, "evidence", "verify", "--plan", str(plan), "--store", "vault",
        "--public-key", str(public),
    )  # fmt: skip
    assert code == 0, out
