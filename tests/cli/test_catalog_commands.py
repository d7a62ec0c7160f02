"""`drkit catalog upgrade` on SQLite and on the real PostgreSQL server: the first use creates
the schema, a second upgrade changes nothing; an unreachable catalog is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drkit.cli import main
from drkit.errors import ExitCode


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    database: str = request.getfixturevalue("postgres_database")
    return database.replace("postgresql://", "postgresql+psycopg://", 1)


def test_second_upgrade_changes_nothing(
    catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--catalog", catalog_url, "catalog", "upgrade", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["revision"] and first["applied"][-1] == first["revision"]
    assert main(["--catalog", catalog_url, "catalog", "upgrade", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second == {"applied": [], "revision": first["revision"]}


def test_unreachable_catalog_is_exit_12_with_the_password_hidden(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "--catalog",
            "postgresql+psycopg://drkit:s3cret-pw@127.0.0.1:9/drkit",
            "catalog",
            "upgrade",
        ]
    )
    assert code == ExitCode.CATALOG
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and "hint:" in err and "Traceback" not in err
