"""A PostgreSQL restore gives back what was there, not only the rows: owners, grants and
revokes (REVOKE ... FROM PUBLIC on the database and on a function), column grants, default
privileges, a row-level-security policy naming a role, ALTER DATABASE / ALTER ROLE IN
DATABASE settings, the database comment, its ICU locale. Proved with the engine's own dump
(pg_dump --create, owners and privileges included) of source and restored database, on the
real server; and roles the target lacks are refused, created or left out, as asked."""

from __future__ import annotations

import io
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from drkit.errors import RefusedError
from drkit.plan.schema import PostgresqlSource
from drkit.sources.base import Target, compare_fingerprints
from drkit.sources.postgresql import PostgresqlDatabase

pytestmark = pytest.mark.postgres


def _execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement.encode())


def _has_icu(server: str) -> bool:
    with psycopg.connect(f"{server}/postgres") as connection:
        row = connection.execute(
            "SELECT current_setting('server_version_num')::int >= 150000"
            " AND EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')"
        ).fetchone()
        return bool(row and row[0])


@pytest.fixture
def world(postgres_server: str) -> Iterator[dict[str, Any]]:
    """A database owned by its own role, with grants to an app role (member of a group) and a
    read-only role, everything the issue lists set on it; names unique to this test."""
    suffix = secrets.token_hex(4)
    roles = {kind: f"drkit_{kind}_{suffix}" for kind in ("owner", "app", "ro", "grp", "gone")}
    name = f"drkit_fidelity_{suffix}"
    owner, app, ro, grp, gone = roles.values()
    maintenance = f"{postgres_server}/postgres"
    locale = " LOCALE_PROVIDER icu ICU_LOCALE 'en-US'" if _has_icu(postgres_server) else ""
    _execute(
        maintenance,
        *(f'CREATE ROLE "{role}" NOLOGIN' for role in roles.values()),
        f'GRANT "{grp}" TO "{app}"',
        f'CREATE DATABASE "{name}" OWNER "{owner}" TEMPLATE template0 ENCODING UTF8{locale}',
        f'ALTER DATABASE "{name}" SET search_path TO app, public',
        f"COMMENT ON DATABASE \"{name}\" IS 'orders of the API; do not drop'",
        f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC',
        f'GRANT CONNECT ON DATABASE "{name}" TO "{app}", "{ro}"',
        f'ALTER ROLE "{app}" IN DATABASE "{name}" SET work_mem = \'8MB\'',
    )
    url = f"{postgres_server}/{name}"
    _execute(
        url,
        f'CREATE SCHEMA app AUTHORIZATION "{owner}"',
        f'SET ROLE "{owner}"',
        "CREATE TABLE app.orders (id serial PRIMARY KEY, tenant text, note text)",
        "INSERT INTO app.orders (tenant, note) SELECT 't' || (g % 3), 'n' || g"
        " FROM generate_series(1, 50) g",
        "CREATE FUNCTION app.total() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM app.orders'",
        "REVOKE EXECUTE ON FUNCTION app.total() FROM PUBLIC",
        f'GRANT EXECUTE ON FUNCTION app.total() TO "{app}"',
        f'GRANT USAGE ON SCHEMA app TO "{app}", "{ro}"',
        f'GRANT SELECT, INSERT ON app.orders TO "{app}"',
        f'GRANT SELECT (id, tenant) ON app.orders TO "{ro}"',
        f'GRANT SELECT ON app.orders TO "{gone}"',
        f'ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO "{ro}"',
        "ALTER TABLE app.orders ENABLE ROW LEVEL SECURITY",
        f'CREATE POLICY tenant_rows ON app.orders TO "{app}" USING (tenant = current_user)',
        "RESET ROLE",
    )
    created: list[str] = [name]
    yield {"server": postgres_server, "url": url, "name": name, "roles": roles, "dbs": created}
    with psycopg.connect(maintenance, autocommit=True) as connection:
        for database in created:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'.encode())
        for role in reversed(list(roles.values())):
            connection.execute(f'DROP ROLE IF EXISTS "{role}"'.encode())


def engine_dump(url: str, name: str) -> str:
    """pg_dump --create (owners, privileges, database properties, data), the name masked."""
    completed = subprocess.run(
        ["pg_dump", "--create", "-d", url], capture_output=True, text=True, check=True
    )
    lines = [
        line
        for line in completed.stdout.splitlines()
        if not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]
    return re.sub(rf"\b{re.escape(name)}\b", "DBNAME", "\n".join(lines))


def source_of(url: str) -> PostgresqlDatabase:
    return PostgresqlDatabase(PostgresqlSource(name="orders", type="postgresql", url=url))


def capture(source: PostgresqlDatabase) -> tuple[bytes, dict[str, Any]]:
    with source.snapshot() as captured:
        return b"".join(captured.chunks), captured.fingerprint


def test_the_capture_records_owners_grants_settings_and_the_roles_they_name(
    world: dict[str, Any],
) -> None:
    _, fingerprint = capture(source_of(world["url"]))
    owner, app, ro = (world["roles"][k] for k in ("owner", "app", "ro"))
    privileges = fingerprint["privileges"]
    assert privileges["relation app.orders"].startswith(f"{owner} ")
    assert f"{app}=" in privileges["function app.total()"]
    # PUBLIC's EXECUTE revoked: no ACL item for PUBLIC ("=X/owner")
    assert not any(item.startswith("=") for item in privileges["function app.total()"].split())
    assert privileges["policy app.orders tenant_rows"] == app
    assert f"{ro}=r/" in privileges[f"default privileges {owner} app r"]
    database = fingerprint["database"]
    assert "search_path=app, public" in database["settings"]
    assert database["comment"] == "orders of the API; do not drop"
    assert set(world["roles"].values()) <= set(fingerprint["roles"])
    assert fingerprint["roles"][app]["member_of"] == [world["roles"]["grp"]]
    assert not any("password" in str(role) for role in fingerprint["roles"].values())


def test_a_restore_to_a_new_database_is_identical_in_the_engines_own_dump(
    world: dict[str, Any],
) -> None:
    source = source_of(world["url"])
    data, fingerprint = capture(source)
    new = f"{world['name']}_copy"
    world["dbs"].append(new)
    target = Target(f"{world['server']}/{new}")
    restored = source.restore_faithfully(
        io.BytesIO(data), target, captured=fingerprint, roles="require"
    )
    assert restored.left_out == [] and restored.unverified == set()
    assert compare_fingerprints(fingerprint, source.fingerprint_target(target, fingerprint)) == []
    assert engine_dump(target.location, new) == engine_dump(world["url"], world["name"])


def test_a_changed_grant_is_named_by_verification(world: dict[str, Any]) -> None:
    source = source_of(world["url"])
    _, fingerprint = capture(source)
    _execute(world["url"], "GRANT EXECUTE ON FUNCTION app.total() TO PUBLIC")
    differences = compare_fingerprints(
        fingerprint, source.fingerprint_target(source.default_target(), fingerprint)
    )
    assert differences and all("function app.total()" in line for line in differences)


def _forget_role(world: dict[str, Any]) -> str:
    """The role ``gone`` no longer exists on the server (the snapshot still names it)."""
    gone = world["roles"]["gone"]
    _execute(world["url"], f'REVOKE ALL ON app.orders FROM "{gone}"')
    _execute(f"{world['server']}/postgres", f'DROP ROLE "{gone}"')
    return gone


def test_a_missing_role_is_refused_by_default_before_anything_is_made(
    world: dict[str, Any],
) -> None:
    source = source_of(world["url"])
    data, fingerprint = capture(source)
    gone = _forget_role(world)
    new = f"{world['name']}_copy"
    target = Target(f"{world['server']}/{new}")
    with pytest.raises(RefusedError, match=gone) as refused:
        source.restore_faithfully(io.BytesIO(data), target, captured=fingerprint, roles="require")
    assert "--roles create" in refused.value.hint
    with psycopg.connect(f"{world['server']}/postgres") as connection:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        assert connection.execute(query, (new,)).fetchone() is None


def _restore_after(
    world: dict[str, Any], change: Callable[[], object], roles: str, *, user: str = "postgres"
) -> dict[str, Any]:
    """Capture, ``change`` the server, restore as ``user`` to a new database with ``roles``."""
    source = source_of(world["url"])
    data, fingerprint = capture(source)
    changed = change()
    new = f"{world['name']}_copy"
    world["dbs"].append(new)
    target = Target(f"{world['server'].replace('postgres@', user + '@')}/{new}")
    restored = source.restore_faithfully(
        io.BytesIO(data), target, captured=fingerprint, roles=roles
    )
    return {"changed": changed, "restored": restored, "fingerprint": fingerprint, "target": target}


def _restore_without_a_role(world: dict[str, Any], roles: str) -> dict[str, Any]:
    """Capture, forget the role ``gone``, restore to a new database with ``roles``."""
    result = _restore_after(world, lambda: _forget_role(world), roles)
    return result | {"gone": result["changed"]}


def test_missing_roles_can_be_created_nologin_and_everything_matches(
    world: dict[str, Any],
) -> None:
    result = _restore_without_a_role(world, "create")
    gone, fingerprint = result["gone"], result["fingerprint"]
    assert any(gone in line and "without login" in line for line in result["restored"].left_out)
    restored = source_of(world["url"]).fingerprint_target(result["target"], fingerprint)
    assert compare_fingerprints(fingerprint, restored) == []
    with psycopg.connect(f"{world['server']}/postgres") as connection:
        query = "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s"
        assert connection.execute(query, (gone,)).fetchone() == (False,)


def test_missing_roles_can_be_skipped_and_what_is_left_out_is_listed(
    world: dict[str, Any],
) -> None:
    result = _restore_without_a_role(world, "skip")
    assert any(result["gone"] in line for line in result["restored"].left_out)
    assert "privileges" in result["restored"].unverified
    like = {k: v for k, v in result["fingerprint"].items() if k != "privileges"}
    restored = source_of(world["url"]).fingerprint_target(result["target"], like)
    assert compare_fingerprints(like, restored) == []


def _role_lines(server: str, role: str) -> list[str]:
    """pg_dumpall's own rendering of one role (no password), for comparison."""
    completed = subprocess.run(
        ["pg_dumpall", "--roles-only", "--no-role-passwords", "-d", f"{server}/postgres"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in completed.stdout.splitlines() if f"ROLE {role}" in line]


def test_a_role_created_for_a_restore_matches_the_source_role_in_pg_dumpall(
    world: dict[str, Any],
) -> None:
    before = _role_lines(world["server"], world["roles"]["gone"])
    assert before
    _restore_without_a_role(world, "create")
    assert _role_lines(world["server"], world["roles"]["gone"]) == before


def test_a_policy_naming_a_missing_role_is_left_out_and_listed_under_skip(
    world: dict[str, Any],
) -> None:
    app = world["roles"]["app"]

    def forget_app() -> None:
        _execute(world["url"], f'DROP OWNED BY "{app}"')
        _execute(f"{world['server']}/postgres", f'DROP ROLE "{app}"')

    result = _restore_after(world, forget_app, "skip")
    restored, target = result["restored"], result["target"]
    assert any("app.orders tenant_rows" in line for line in restored.left_out)
    assert {"privileges", "schema_sha256"} <= restored.unverified
    with psycopg.connect(target.location) as connection:
        assert connection.execute("SELECT count(*) FROM pg_policy").fetchone() == (0,)
        assert connection.execute("SELECT count(*) FROM app.orders").fetchone() == (50,)


def test_a_restoring_user_that_is_no_superuser_loads_without_owners_under_skip(
    world: dict[str, Any],
) -> None:
    """A drill's scratch database on a shared server: the drill user may create databases,
    not give objects to other roles; it loads as drkit 0.1 did, and says so."""
    user = world["roles"]["nosu"] = f"drkit_nosu_{secrets.token_hex(4)}"

    def add_user() -> None:
        _execute(f"{world['server']}/postgres", f'CREATE ROLE "{user}" LOGIN CREATEDB')

    result = _restore_after(world, add_user, "skip", user=user)
    restored, fingerprint = result["restored"], result["fingerprint"]
    assert any("not a superuser" in line for line in restored.left_out)
    like = {k: v for k, v in fingerprint.items() if k not in restored.unverified}
    restored_fingerprint = source_of(world["url"]).fingerprint_target(result["target"], like)
    assert compare_fingerprints(like, restored_fingerprint) == []
