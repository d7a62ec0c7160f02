"""End to end on the real server: `drkit restore --force` over the origin gives back a
database identical in pg_dump's own rendering (owners, grants and revokes, default
privileges, RLS policy, settings, comment, ICU locale), after the origin was changed in each
of those; a drill into an ephemeral cluster passes for a database whose policies name roles
the cluster does not have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from drkit.actions.backup import backup
from drkit.actions.drill import drill
from drkit.actions.resources import open_resources
from drkit.cli import main
from drkit.errors import ExitCode
from drkit.outcome import Outcome

from ..actions.conftest import load, plan_document
from ..sources.test_postgresql_fidelity import _execute, _forget_role, engine_dump, world

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
__all__ = ["world"]


def _plan(tmp_path: Path, world: dict[str, Any], **extra: Any) -> dict[str, Any]:
    stores = [{"name": "local", "type": "filesystem", "path": str(tmp_path / "s"), "region": "a"}]
    sources = [{"name": "orders-db", "type": "postgresql", "url": world["url"]}]
    return plan_document(tmp_path, stores, sources=sources, **extra)


def _backed_up(tmp_path: Path, world: dict[str, Any]) -> tuple[Path, str]:
    """The plan file over the world's database, backed up once, and its catalog's URL."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(_plan(tmp_path, world), sort_keys=False))
    catalog = f"sqlite:///{tmp_path / 'catalog.db'}"
    assert main(["--catalog", catalog, "backup", str(plan)]) == 0
    return plan, catalog


def test_force_over_the_changed_origin_gives_back_an_identical_database(
    tmp_path: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    plan, catalog = _backed_up(tmp_path, world)
    before = engine_dump(world["url"], world["name"])
    app, ro = world["roles"]["app"], world["roles"]["ro"]
    _execute(
        world["url"],
        "UPDATE app.orders SET note = 'changed' WHERE id = 1",
        "GRANT EXECUTE ON FUNCTION app.total() TO PUBLIC",
        f'REVOKE SELECT (id, tenant) ON app.orders FROM "{ro}"',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA app REVOKE SELECT ON TABLES FROM "{ro}"',
        "DROP POLICY tenant_rows ON app.orders",
    )
    _execute(
        f"{world['server']}/postgres",
        f'ALTER DATABASE "{world["name"]}" RESET search_path',
        f'GRANT CONNECT ON DATABASE "{world["name"]}" TO PUBLIC',
        f'ALTER ROLE "{app}" IN DATABASE "{world["name"]}" RESET work_mem',
    )
    assert engine_dump(world["url"], world["name"]) != before
    capsys.readouterr()
    assert (
        main(["--catalog", catalog, "restore", "--yes", "--force", "--drop-previous", str(plan)])
        == 0
    )
    out = capsys.readouterr().out
    assert "verified" in out and "left out" not in out
    assert engine_dump(world["url"], world["name"]) == before


def test_a_drill_in_an_ephemeral_cluster_creates_the_roles_the_policies_name(
    tmp_path: Path, world: dict[str, Any]
) -> None:
    drill_section = {"sandbox": {"postgresql": "ephemeral"}, "checks": [{"type": "fingerprint"}]}
    document = _plan(tmp_path, world, drill=drill_section)
    resources = open_resources(load(document), None)
    assert backup(resources).outcome is Outcome.OK
    [result] = drill(resources)
    assert result.outcome is Outcome.OK, result.to_json()
    [check, note] = result.checks  # the fingerprint, and what the sandbox made differently
    assert check.passed and note.passed is None
    assert world["roles"]["app"] in note.detail  # created there, and said so


def test_missing_roles_are_named_by_the_preview_and_refused_before_anything_is_fetched(
    tmp_path: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    plan, catalog = _backed_up(tmp_path, world)
    gone = _forget_role(world)
    copy = f"{world['name']}_copy"
    world["dbs"].append(copy)
    restore = ["--catalog", catalog, "restore", "--yes", "--to", f"orders-db={copy}"]
    capsys.readouterr()
    assert main([*restore, "--dry-run", str(plan)]) == ExitCode.REFUSED
    captured = capsys.readouterr()
    assert f"roles missing on the target: {gone}" in captured.out
    assert main([*restore, str(plan)]) == ExitCode.REFUSED
    assert gone in capsys.readouterr().err
    assert main([*restore, "--roles", "create", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and f"left out: created role(s) {gone}" in out
