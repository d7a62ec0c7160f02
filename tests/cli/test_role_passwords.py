"""The plan's ``role_passwords`` opt-in on the real server: a role dropped after the backup
comes back from ``restore --roles create`` with its login and the very password hash it had
(pg_authid compared: this server trusts every local login, so logging in proves nothing),
and that hash appears in no file drkit wrote (catalog, stores, reports) nor in any output
(text, --json, the -vv log); without the privilege to read it, the backup says so."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.resources import open_resources
from drkit.cli import main
from drkit.outcome import Outcome
from drkit.sources.pg_fidelity import take_role_credentials

from ..actions.conftest import load, plan_document
from ..sources.test_postgresql_fidelity import _execute, _forget_role, world

pytestmark = [pytest.mark.postgres]
__all__ = ["world"]


def _authid(server: str, role: str) -> tuple[bool, str | None] | None:
    with psycopg.connect(f"{server}/postgres") as connection:
        query = "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = %s"
        row = connection.execute(query, (role,)).fetchone()
    return None if row is None else (bool(row[0]), row[1])


def _document(tmp_path: Path, world: dict[str, Any], opt_in: bool, **extra: Any) -> dict[str, Any]:
    """A plan over the world's database, its passwords captured when ``opt_in``."""
    stores = [{"name": "local", "type": "filesystem", "path": str(tmp_path / "s"), "region": "a"}]
    source = {"name": "orders-db", "type": "postgresql", "url": world["url"]}
    source |= {"role_passwords": True} if opt_in else {}
    return plan_document(tmp_path, stores, sources=[source], **extra)


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_a_dropped_role_comes_back_with_its_login_and_password_hash_kept_out_of_everything(
    tmp_path: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    gone, server = world["roles"]["gone"], world["server"]
    password = secrets.token_urlsafe(16)
    _execute(f"{server}/postgres", f"ALTER ROLE \"{gone}\" LOGIN PASSWORD '{password}'")
    original = _authid(server, gone)
    assert original is not None and original[0] and original[1]
    hashed = original[1].encode()
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(_document(tmp_path, world, True)))
    catalog = ["--catalog", f"sqlite:///{tmp_path / 'catalog.db'}"]
    assert main([*catalog, "-vv", "backup", str(plan)]) == 0
    backed_up = capsys.readouterr()
    _forget_role(world)
    assert _authid(server, gone) is None
    copy = f"{world['name']}_copy"
    world["dbs"].append(copy)
    restore = [*catalog, "-vv", "restore", "--yes", "--to", f"orders-db={copy}", "--roles"]
    assert main([*restore, "create", "--json", str(plan)]) == 0
    printed = capsys.readouterr()
    [item] = json.loads(printed.out)["items"]
    assert any(f"{gone} with their login and password" in note for note in item["left_out"])
    assert _authid(server, gone) == original  # the same hash: the same password logs in
    assert "DEBUG" in printed.err and "DEBUG" in backed_up.err  # the -vv log was on
    for text in (printed.out, printed.err, backed_up.out, backed_up.err):
        assert password not in text and original[1] not in text
    assert _files_holding(tmp_path, hashed) == []  # catalog, sealed manifest, reports
    assert _files_holding(tmp_path, password.encode()) == []


def test_the_roles_of_a_plan_without_the_opt_in_are_made_without_login(
    tmp_path: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    gone, server = world["roles"]["gone"], world["server"]
    _execute(
        f"{server}/postgres", f"ALTER ROLE \"{gone}\" LOGIN PASSWORD 'x{secrets.token_hex(8)}'"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(_document(tmp_path, world, False)))
    catalog = ["--catalog", f"sqlite:///{tmp_path / 'catalog.db'}"]
    assert main([*catalog, "backup", str(plan)]) == 0
    _forget_role(world)
    copy = f"{world['name']}_copy"
    world["dbs"].append(copy)
    restore = [*catalog, "restore", "--yes", "--to", f"orders-db={copy}", "--roles", "create"]
    capsys.readouterr()
    assert main([*restore, str(plan)]) == 0
    assert f"created role(s) {gone} without login or password" in capsys.readouterr().out
    assert _authid(server, gone) == (False, None)


def test_a_user_who_may_not_read_the_hashes_gets_a_warning_and_no_hash(
    postgres_server: str,
) -> None:
    user = f"drkit_reader_{secrets.token_hex(4)}"
    _execute(f"{postgres_server}/postgres", f'CREATE ROLE "{user}" LOGIN')
    try:
        url = f"postgresql://{user}@{postgres_server.rsplit('@', 1)[1]}/postgres"
        with psycopg.connect(url) as connection:
            private, warnings = take_role_credentials(connection)
        assert private == {}
        [warning] = warnings
        assert "needs a superuser" in warning and "without passwords" in warning
        with psycopg.connect(f"{postgres_server}/postgres") as connection:
            private, warnings = take_role_credentials(connection)
        assert warnings == [] and "roles" in private  # a superuser reads them
    finally:
        _execute(f"{postgres_server}/postgres", f'DROP ROLE IF EXISTS "{user}"')


@pytest.mark.slow
def test_a_drill_creates_the_roles_without_login_even_when_their_passwords_were_captured(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    app = world["roles"]["app"]
    _execute(
        f"{world['server']}/postgres",
        f"ALTER ROLE \"{app}\" LOGIN PASSWORD 'p{secrets.token_hex(8)}'",
    )
    drill_section = {"sandbox": {"postgresql": "ephemeral"}, "checks": [{"type": "fingerprint"}]}
    document = _document(tmp_path, world, True, drill=drill_section)
    resources = open_resources(load(document), None)
    assert backup(resources).outcome is Outcome.OK
    [result] = drill(resources)
    assert result.outcome is Outcome.OK, result.to_json()
    [check, note] = result.checks  # the fingerprint, and what the sandbox made differently
    assert check.passed and note.passed is None and note.name == "left out of orders-db"
    assert "without login or password" in note.detail and app in note.detail
    assert "with their login and password" not in note.detail
