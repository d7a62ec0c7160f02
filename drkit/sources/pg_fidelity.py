"""What a faithful PostgreSQL restore needs besides the rows, captured inside the dump's own
snapshot and applied at restore.

Capture (``take_fidelity``, in the exported snapshot's transaction, added to the fingerprint):
- ``privileges``: the owner and ACL of every schema, relation (and column), function, type and
  large object, the default privileges, the roles each RLS policy applies to, and the
  database's own owner, ACL and per-role settings; compared object by object after a restore;
- ``database``: encoding, collation, ctype, locale provider and ICU locale, comment and
  ``ALTER DATABASE ... SET`` settings; compared after a restore;
- ``roles``: the roles all of these name (and the roles they are members of), with their
  attributes, never a password; used to find the roles a target server lacks.

When the plan opts in (``role_passwords``), the same roles' login attribute and password hash
(``take_role_credentials``, from ``pg_authid``: a superuser's) go to ``Capture.private``, which
only the sealed manifest holds; ``--roles create`` then creates a missing role able to log in.

Restore: the database-level statements pg_dump archived (``CREATE DATABASE`` with its locale,
comment, ACL, ``ALTER DATABASE/ROLE ... SET``) are read back from the archive with
``pg_restore --create`` and replayed against the database being loaded under its own name;
the archive's owners and ACLs are applied unless roles are missing and the caller chose to
skip them (``RolePolicy``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import TupleRow

from drkit.errors import RefusedError
from drkit.sources.base import Fingerprint

Connection = psycopg.Connection[TupleRow]
USER_SCHEMAS = "n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'"
#: Roles every cluster has (bootstrap superuser apart): never created, never missing.
PREDEFINED_ROLE = re.compile(r"^pg_")
ROLE_POLICIES = ("require", "create", "skip")


def _acl(column: str) -> str:
    # ACL items sorted, so a restored copy compares equal whatever order GRANTs ran in.
    return (
        f"CASE WHEN {column} IS NULL THEN 'default' ELSE array_to_string(ARRAY("
        f"SELECT x::text FROM unnest({column}) x ORDER BY 1), ' ') END"
    )


def _not_extension_member(catalog: str, oid: str) -> str:
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass"
        f" AND d.objid = {oid} AND d.deptype = 'e')"
    )


#: kind -> query yielding (object name, owner and ACL as one text) for the privileges section.
PRIVILEGE_QUERIES: dict[str, str] = {
    "schema": f"""
        SELECT n.nspname, pg_get_userbyid(n.nspowner) || ' ' || {_acl("n.nspacl")}
        FROM pg_namespace n WHERE {USER_SCHEMAS}
          AND {_not_extension_member("pg_namespace", "n.oid")}""",
    "relation": f"""
        SELECT n.nspname || '.' || c.relname,
               pg_get_userbyid(c.relowner) || ' ' || {_acl("c.relacl")}
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {USER_SCHEMAS}
          AND {_not_extension_member("pg_class", "c.oid")}""",
    "column": f"""
        SELECT n.nspname || '.' || c.relname || '.' || a.attname, {_acl("a.attacl")}
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped AND {USER_SCHEMAS}""",
    "function": f"""
        SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid)
               || ')', pg_get_userbyid(p.proowner) || ' ' || {_acl("p.proacl")}
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {USER_SCHEMAS} AND {_not_extension_member("pg_proc", "p.oid")}""",
    "type": f"""
        SELECT n.nspname || '.' || t.typname,
               pg_get_userbyid(t.typowner) || ' ' || {_acl("t.typacl")}
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype IN ('e', 'd', 'r', 'm') AND {USER_SCHEMAS}
          AND {_not_extension_member("pg_type", "t.oid")}""",
    "large object": f"""
        SELECT l.oid::text, pg_get_userbyid(l.lomowner) || ' ' || {_acl("l.lomacl")}
        FROM pg_largeobject_metadata l""",
    "default privileges": f"""
        SELECT pg_get_userbyid(d.defaclrole) || ' ' || coalesce(n.nspname, '*') || ' '
               || d.defaclobjtype::text, {_acl("d.defaclacl")}
        FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace""",
    "policy": f"""
        SELECT n.nspname || '.' || c.relname || ' ' || p.polname,
               array_to_string(ARRAY(SELECT CASE WHEN r = 0 THEN 'public'
                                             ELSE pg_get_userbyid(r) END
                                     FROM unnest(p.polroles) r ORDER BY 1), ' ')
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMAS}""",
    "database": f"""
        SELECT 'owner and privileges', pg_get_userbyid(d.datdba) || ' ' || {_acl("d.datacl")}
        FROM pg_database d WHERE d.datname = current_database()""",
    "role settings": """
        SELECT pg_get_userbyid(s.setrole),
               array_to_string(ARRAY(SELECT x FROM unnest(s.setconfig) x ORDER BY 1), ' ')
        FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
        WHERE d.datname = current_database() AND s.setrole <> 0""",
}

DATABASE_QUERY = """
    SELECT to_jsonb(d) - 'datfrozenxid' - 'datminmxid' - 'oid' - 'datname' - 'datdba'
           - 'datacl' - 'datconnlimit' - 'datallowconn' - 'datistemplate' - 'dattablespace'
           - 'datcollversion' - 'datlastsysoid' - 'dathasloginevt',
           pg_encoding_to_char(d.encoding),
           coalesce(shobj_description(d.oid, 'pg_database'), ''),
           coalesce((SELECT array_to_string(ARRAY(SELECT x FROM unnest(s.setconfig) x
                                                  ORDER BY 1), ' ')
                     FROM pg_db_role_setting s WHERE s.setdatabase = d.oid
                       AND s.setrole = 0), '')
    FROM pg_database d WHERE d.datname = current_database()"""

ROLES_QUERY = """
    WITH RECURSIVE this AS (SELECT oid FROM pg_database WHERE datname = current_database()),
    named(oid) AS (
        SELECT refobjid FROM pg_shdepend
        WHERE refclassid = 'pg_authid'::regclass
          AND (dbid = (SELECT oid FROM this)
               OR (dbid = 0 AND classid = 'pg_database'::regclass
                   AND objid = (SELECT oid FROM this)))
        UNION SELECT datdba FROM pg_database WHERE oid = (SELECT oid FROM this)
        UNION SELECT setrole FROM pg_db_role_setting
              WHERE setdatabase = (SELECT oid FROM this) AND setrole <> 0
    ),
    closure(oid) AS (
        SELECT oid FROM named
        UNION SELECT m.roleid FROM pg_auth_members m JOIN closure c ON m.member = c.oid
    )
    SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
           r.rolcanlogin, r.rolreplication, r.rolbypassrls,
           ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                 WHERE m.member = r.oid ORDER BY 1)
    FROM pg_roles r WHERE r.oid IN (SELECT oid FROM closure) AND r.rolname !~ '^pg_'"""


def take_fidelity(connection: Connection) -> Fingerprint:
    """The privileges, database and roles sections, seen in the connection's transaction."""
    privileges: dict[str, str] = {}
    for kind, query in PRIVILEGE_QUERIES.items():
        for name, value in connection.execute(query).fetchall():
            privileges[f"{kind} {name}"] = str(value)
    row = connection.execute(DATABASE_QUERY).fetchone()
    assert row is not None
    properties, encoding, comment, settings = row
    database = {
        key.removeprefix("dat"): str(value)
        for key, value in dict(properties).items()
        if value is not None
    }
    database |= {"encoding": str(encoding), "comment": str(comment), "settings": str(settings)}
    roles: dict[str, dict[str, Any]] = {}
    for name, *flags, member_of in connection.execute(ROLES_QUERY).fetchall():
        keys = ("superuser", "inherit", "createrole", "createdb", "login", "replication")
        roles[str(name)] = dict(zip((*keys, "bypassrls"), map(bool, flags), strict=True))
        roles[str(name)]["member_of"] = [str(group) for group in member_of]
    return {"privileges": privileges, "database": database, "roles": roles}


CREDENTIALS_QUERY = f"""
    SELECT a.rolname, a.rolcanlogin, a.rolpassword FROM pg_authid a
    WHERE a.rolname IN (SELECT named.rolname FROM ({ROLES_QUERY}) named)"""


def take_role_credentials(connection: Connection) -> tuple[dict[str, Any], list[str]]:
    """``{"roles": {name: {"login": bool, "password": hash or None}}}`` for the roles
    ``take_fidelity`` records, and the warnings (a user who may not read ``pg_authid``)."""
    row = connection.execute("SELECT has_table_privilege('pg_authid', 'SELECT')").fetchone()
    if not (row and row[0]):
        return {}, [
            "role passwords not captured: reading them (pg_authid) needs a superuser; the "
            "roles are recorded without passwords and --roles create makes them NOLOGIN"
        ]
    credentials = {
        str(name): {"login": bool(login), "password": None if hashed is None else str(hashed)}
        for name, login, hashed in connection.execute(CREDENTIALS_QUERY).fetchall()
    }
    return {"roles": credentials}, []


# --- roles at restore --------------------------------------------------------------------------


@dataclass
class RolePlan:
    """What a restore does about the roles a snapshot names."""

    policy: str
    missing: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    #: what was deliberately left out, for the restore's output, --json and the report
    left_out: list[str] = field(default_factory=list)

    @property
    def skips_privileges(self) -> bool:
        return self.policy == "skip" and bool(self.missing)


def missing_roles(connection: Connection, captured: Fingerprint) -> list[str]:
    """The captured roles the server of ``connection`` lacks (predefined roles apart)."""
    roles: dict[str, Any] = captured.get("roles") or {}
    existing = {str(row[0]) for row in connection.execute("SELECT rolname FROM pg_roles")}
    return sorted(
        name for name in roles if name not in existing and not PREDEFINED_ROLE.match(name)
    )


def refuse_missing_roles(missing: list[str], where: str) -> RefusedError:
    """The refusal of ``--roles require`` for ``missing`` roles."""
    return RefusedError(
        f"{where} lacks the role(s) the snapshot's owners and privileges name: "
        f"{', '.join(missing)}",
        hint="create them, or restore with --roles create (made NOLOGIN unless role_passwords "
        "captured their login) "
        "or --roles skip (restored without owners and privileges)",
    )


def plan_roles(
    connection: Connection,
    captured: Fingerprint,
    policy: str,
    *,
    where: str,
    credentials: dict[str, Any] | None = None,
) -> RolePlan:
    """Find the captured roles ``connection``'s server lacks and apply ``policy``: refuse
    (``require``), create them (``create``: without login, or with the login and password
    hash ``credentials`` recorded for them), or leave out owners, privileges and what names
    them (``skip``)."""
    roles: dict[str, dict[str, Any]] = captured.get("roles") or {}
    result = RolePlan(policy)
    result.missing = missing_roles(connection, captured)
    row = connection.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    superuser = bool((row.fetchone() or (False,))[0])
    if policy == "skip" and not superuser and roles:
        # Setting owners needs a superuser (or membership in every role): a drill's scratch
        # database on a shared server usually has neither, and loads as drkit 0.1 did.
        result.missing = sorted(name for name in roles if not PREDEFINED_ROLE.match(name))
        result.left_out.append(
            "owners, privileges, policies and role settings (the restoring user is not a "
            "superuser); objects are owned by the restoring user"
        )
        return result
    if not result.missing:
        return result
    listed = ", ".join(result.missing)
    if policy == "require":
        raise refuse_missing_roles(result.missing, where)
    if policy == "skip":
        result.left_out.append(
            f"owners, privileges, policies and role settings naming missing roles ({listed}); "
            "objects are owned by the restoring user"
        )
        return result
    known: dict[str, dict[str, Any]] = (credentials or {}).get("roles") or {}
    for name in result.missing:
        connection.execute(_create_role(name, known.get(name)))
        result.created.append(name)
    for name in result.missing:
        for group in roles[name].get("member_of", []):
            grant = pgsql.SQL("GRANT {} TO {}").format(
                pgsql.Identifier(group), pgsql.Identifier(name)
            )
            connection.execute(grant)
    given = [name for name in result.missing if name in known]
    bare = [name for name in result.missing if name not in known]
    elevated = [
        name
        for name in result.missing
        if any(
            roles[name].get(flag)
            for flag in ("superuser", "createdb", "createrole", *(("login",) * (name in bare)))
        )
    ]
    created = []
    if bare:
        created.append(f"created role(s) {', '.join(bare)} without login or password")
    if given:
        created.append(f"created role(s) {', '.join(given)} with their login and password")
    result.left_out.append(
        "; ".join(created)
        + (f"; {', '.join(elevated)} had login or other rights at the source" if elevated else "")
    )
    return result


def _create_role(name: str, credentials: dict[str, Any] | None) -> pgsql.Composed:
    """``CREATE ROLE`` for ``name``: NOLOGIN without ``credentials``, else with the recorded
    login and password hash (a quoted literal sent over the connection, never in argv)."""
    if credentials is None:
        return pgsql.SQL("CREATE ROLE {} NOLOGIN").format(pgsql.Identifier(name))
    login = pgsql.SQL("LOGIN" if credentials.get("login") else "NOLOGIN")
    hashed = credentials.get("password")
    password = pgsql.SQL("PASSWORD {}").format(pgsql.Literal(hashed)) if hashed else pgsql.SQL("")
    return pgsql.SQL("CREATE ROLE {} {} {}").format(pgsql.Identifier(name), login, password)


def policies_naming(captured: Fingerprint, roles: list[str]) -> set[str]:
    """``schema.table policy`` of each captured policy applying to one of ``roles``."""
    privileges: dict[str, str] = captured.get("privileges") or {}
    return {
        key.removeprefix("policy ")
        for key, value in privileges.items()
        if key.startswith("policy ") and set(value.split()) & set(roles)
    }


# --- the database-level statements in the archive ----------------------------------------------

DATABASE_ENTRY = re.compile(
    r"^\d+; \d+ \d+ (?:(?:DATABASE|DATABASE PROPERTIES) - |(?:COMMENT|ACL|SECURITY LABEL) - DATABASE )"
)
CREATE_DATABASE = re.compile(r"^CREATE DATABASE (.+?) WITH ", re.MULTILINE)


def database_entries(listing: str) -> list[str]:
    """The lines of ``pg_restore --create -l`` that describe the database itself."""
    return [line for line in listing.splitlines() if DATABASE_ENTRY.match(line)]


def filtered_listing(listing: str, *, excluded_policies: set[str]) -> str:
    """The archive's table of contents without the given policies (``;`` comments them out)."""
    lines = []
    for line in listing.splitlines():
        match = re.match(r"^\d+; \d+ \d+ POLICY (\S+) (.+) \S+$", line)
        if match and f"{match[1]}.{match[2]}" in excluded_policies:
            line = ";" + line
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class DatabaseStatements:
    """The database-level SQL of an archive, renamed for the database being loaded."""

    create: str | None
    properties: list[str]


def rename_database_statements(
    script: str, new_name: str, *, missing_roles: list[str]
) -> DatabaseStatements:
    """Statements of ``pg_restore --create -L <database entries>`` naming ``new_name``
    instead of the archived database; statements naming a missing role are dropped."""
    match = CREATE_DATABASE.search(script)
    if match is None:
        return DatabaseStatements(None, [])
    old = match[1]
    new = quote_identifier(new_name)
    create = None
    properties = []
    for statement in _statements(script):
        renamed = re.sub(
            rf"\bDATABASE {re.escape(old)}(?=[ ;])", f"DATABASE {new}", statement, count=1
        )
        if statement.startswith("CREATE DATABASE "):
            create = renamed
        elif any(_names_role(statement, role) for role in missing_roles):
            continue
        elif statement.startswith(PROPERTY_STATEMENTS):
            properties.append(renamed)
    return DatabaseStatements(create, properties)


PROPERTY_STATEMENTS = (
    "ALTER DATABASE",
    "ALTER ROLE",
    "COMMENT ON DATABASE",
    "GRANT",
    "REVOKE",
    "SECURITY LABEL",
)


def quote_identifier(name: str) -> str:
    """``name`` as an SQL identifier, always quoted (valid whatever the name)."""
    return '"' + name.replace('"', '""') + '"'


def _names_role(statement: str, role: str) -> bool:
    """True when ``statement`` names ``role``, bare or quoted as pg_dump writes it."""
    forms = [re.escape(quote_identifier(role))]
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", role):
        forms.append(rf"\b{re.escape(role)}\b")
    return re.search(rf"(?<![\w\"])(?:{'|'.join(forms)})(?![\w\"])", statement) is not None


def _statements(script: str) -> list[str]:
    """The SQL statements of a pg_restore script, without psql commands and comments."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not current and (line.startswith(("--", "\\")) or not line.strip()):
            continue
        current.append(line)
        if line.endswith(";") and _quotes_balanced("\n".join(current)):
            statements.append("\n".join(current))
            current = []
    return statements


def _quotes_balanced(text: str) -> bool:
    return text.count("'") % 2 == 0


def apply_database_properties(connection: Connection, statements: list[str]) -> None:
    """Run the renamed database-level statements (settings, comment, ACL, role settings)."""
    for statement in statements:
        connection.execute(statement.encode("utf-8"))


def write_listing(directory: Path, listing: str, name: str) -> Path:
    path = directory / name
    path.write_text(listing, encoding="utf-8")
    return path


# --- errors ------------------------------------------------------------------------------------

ROLE_MISSING = re.compile(r'role "([^"]+)" does not exist')


def explain_restore_failure(stderr: str) -> tuple[str, str]:
    """The real cause in pg_restore's stderr (its first ERROR, not a worker's death) and a
    hint that works for it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "ERROR:" in line or "FATAL:" in line]
    cause = errors[0] if errors else (lines[-1] if lines else "pg_restore failed")
    cause = cause.split("ERROR:", 1)[-1].strip() if "ERROR:" in cause else cause
    cause = cause.removeprefix("pg_restore: error: ")
    role = ROLE_MISSING.search(cause)
    if role:
        return cause, (
            f"create role {role[1]} on the target server, or restore with --roles create "
            "(NOLOGIN, no password) or --roles skip (without owners and privileges)"
        )
    if "permission denied" in cause or "must be owner" in cause or "must be member" in cause:
        return cause, (
            "restoring owners and privileges needs a superuser (or membership in every role); "
            "connect as one, or restore with --roles skip"
        )
    return cause, "the target is unchanged; fix the cause and restore again"
