"""What a faithful MariaDB/MySQL restore needs beside the dump: the database's default
character set and collation, the grants on the database and its objects, the definers of its
views, routines, triggers and events, and its events' status.

Captured before the dump (grants and definitions are not transactional), recorded in the
fingerprint, applied by the restore (``prepare_target`` before the load, ``apply_grants``
after it) and compared by verification. Grants are kept as ``SHOW GRANTS`` lines with the
database name replaced by ``{database}``, so they apply to a restore under any name.

Accounts a target lacks (grantees and definers) follow the restore's roles mode:
``require`` refuses before anything is loaded, ``create`` creates them locked (``ACCOUNT
LOCK``, no password: nobody can log in as them, but definer objects and grants work), and
``skip`` leaves out what names them, each listed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from drkit.errors import SourceError

log = logging.getLogger(__name__)

ROLES_MODES = ("require", "create", "skip")
#: Server error codes meaning the user may not read something (table, column, database).
ACCESS_DENIED = (1142, 1143, 1044)
PLACEHOLDER = "{database}"

GRANTEES = """
    SELECT User, Host FROM mysql.db WHERE Db = %s
    UNION SELECT User, Host FROM mysql.tables_priv WHERE Db = %s
    UNION SELECT User, Host FROM mysql.columns_priv WHERE Db = %s
    UNION SELECT User, Host FROM mysql.procs_priv WHERE Db = %s"""
DEFINERS = """
    SELECT CONCAT('view ', TABLE_NAME), DEFINER FROM information_schema.VIEWS
        WHERE TABLE_SCHEMA = %s
    UNION ALL SELECT CONCAT(LOWER(ROUTINE_TYPE), ' ', ROUTINE_NAME), DEFINER
        FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s
    UNION ALL SELECT CONCAT('trigger ', TRIGGER_NAME), DEFINER FROM information_schema.TRIGGERS
        WHERE TRIGGER_SCHEMA = %s
    UNION ALL SELECT CONCAT('event ', EVENT_NAME), DEFINER FROM information_schema.EVENTS
        WHERE EVENT_SCHEMA = %s"""
#: Client errors whose cause a person can act on, and what to do.
ERROR_HINTS = {
    "1449": "the definer account does not exist on the target: create it, or restore with "
    "--roles create",
    "1273": "the target server lacks this collation: restore to a server of the source's "
    "version (or newer)",
    "1115": "the target server lacks this character set: restore to a server of the source's "
    "version (or newer)",
    "1227": "the restoring user lacks a privilege this needs (the message names it): restore as "
    "an administrator, or with --roles skip",
    "1410": "the restoring user cannot create accounts: restore as an administrator, or with "
    "--roles skip",
    "1044": "the restoring user lacks privileges on the target database: grant them, or restore "
    "as an administrator",
    "1045": "check the target URL's user and its password reference",
    "1133": "a grantee does not exist on the target: create it, or restore with --roles create",
}


def quote_account(user: str, host: str) -> str:
    """```user`@`host``` as SHOW GRANTS writes it (a role, with no host, is ```role```)."""
    quoted = "`" + user.replace("`", "``") + "`"
    return quoted if host == "" else quoted + "@`" + host.replace("`", "``") + "`"


def account_of_definer(definer: str) -> str:
    """``app@%`` (information_schema) as ```app`@`%```; the host follows the last ``@``."""
    user, _, host = definer.rpartition("@")
    return quote_account(user, host)


def _fetch(connection: Any, query: str, *parameters: object) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(query, parameters or None)
        return list(cursor.fetchall())


def _database_prefix(database: str) -> str:
    return "`" + database.replace("`", "``") + "`."


def capture_database(connection: Any, database: str) -> dict[str, str]:
    """The database's default character set and collation."""
    [(charset, collation)] = _fetch(
        connection,
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME"
        " FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        database,
    )
    return {"charset": str(charset), "collation": str(collation)}


def capture_grants(connection: Any, database: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Per grantee, its grants on ``database`` and its objects (sorted, database named
    ``{database}``), and each grantee's kind (``user`` or ``role``)."""
    prefix = _database_prefix(database)
    grants: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for user, host in _fetch(connection, GRANTEES, *[database] * 4):
        account = quote_account(str(user), str(host))
        lines = [str(row[0]) for row in _fetch(connection, f"SHOW GRANTS FOR {account}")]
        # "ON `db`.*", "ON `db`.`t`", "ON PROCEDURE `db`.`p`": only this database's grants
        scoped = sorted(
            line.replace(f" {prefix}", f" `{PLACEHOLDER}`.")
            for line in lines
            if f" {prefix}" in line
        )
        if scoped:
            grants[account] = scoped
            kinds[account] = "role" if str(host) == "" else "user"
    return grants, kinds


def capture_definers(connection: Any, database: str) -> dict[str, str]:
    """``{"view v": "app@%", "procedure p": ...}`` for every object that runs as someone."""
    rows = _fetch(connection, DEFINERS, *[database] * 4)
    return {str(name): str(definer) for name, definer in rows}


def capture_events(connection: Any, database: str) -> dict[str, str]:
    """Each event's status (ENABLED, DISABLED, SLAVESIDE_DISABLED)."""
    rows = _fetch(
        connection,
        "SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
        database,
    )
    return {str(name): str(status) for name, status in rows}


def capture(connection: Any, database: str) -> tuple[dict[str, Any], list[str]]:
    """The fidelity sections of the fingerprint, and warnings for what could not be read."""
    sections: dict[str, Any] = {
        "database": capture_database(connection, database),
        "definers": capture_definers(connection, database),
        "events": capture_events(connection, database),
    }
    warnings = []
    try:
        sections["privileges"], sections["accounts"] = capture_grants(connection, database)
    except Exception as error:  # pymysql's errors: say so, go on without grants
        denied = bool(error.args) and error.args[0] in ACCESS_DENIED
        warnings.append(
            f"grants not captured: {_describe(error)}"
            + (
                " (grant the backup user SELECT on mysql.db, mysql.tables_priv,"
                " mysql.columns_priv, mysql.procs_priv and mysql.user)"
                if denied
                else ""
            )
        )
    return sections, warnings


def _describe(error: BaseException) -> str:
    arguments = error.args
    return str(arguments[1]) if len(arguments) > 1 else str(error)


# --- restoring ---------------------------------------------------------------------------------


@dataclass
class AccountPlan:
    """What a restore does about the accounts its grants and definers name."""

    missing: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    def usable(self, account: str) -> bool:
        return account not in self.missing or account in self.created


def needed_accounts(captured: dict[str, Any]) -> dict[str, str]:
    """Account -> kind, for every grantee and definer the capture names."""
    accounts = dict(captured.get("accounts") or {})
    for definer in (captured.get("definers") or {}).values():
        accounts.setdefault(account_of_definer(definer), "user")
    return accounts


#: MariaDB 10.11's PUBLIC: a grantee every server has, never in mysql.user.
PUBLIC = "`PUBLIC`"


def existing_accounts(connection: Any) -> set[str]:
    rows = _fetch(connection, "SELECT User, Host FROM mysql.user")
    return {quote_account(str(user), str(host)) for user, host in rows} | {PUBLIC}


def prepare_accounts(connection: Any, captured: dict[str, Any], roles: str) -> AccountPlan:
    """Before the load: refuse (``require``), create locked (``create``) or plan to leave out
    (``skip``) the accounts the target lacks."""
    if roles not in ROLES_MODES:
        raise ValueError(f"roles mode {roles!r}: expected one of {', '.join(ROLES_MODES)}")
    needed = needed_accounts(captured)
    plan = AccountPlan(missing=sorted(set(needed) - existing_accounts(connection)))
    if not plan.missing:
        return plan
    if roles == "require":
        raise SourceError(
            f"the target server lacks {len(plan.missing)} account(s) the snapshot's grants or "
            f"definers name: {', '.join(plan.missing)}",
            hint="create them first, or restore with --roles create (locked, no password) or "
            "--roles skip (leave out what names them)",
        )
    if roles == "create":
        with connection.cursor() as cursor:
            for account in plan.missing:
                if needed[account] == "role":
                    cursor.execute(f"CREATE ROLE IF NOT EXISTS {account}")
                else:
                    cursor.execute(f"CREATE USER IF NOT EXISTS {account} ACCOUNT LOCK")
                plan.created.append(account)
                log.info("created missing account %s (locked, no password)", account)
        return plan
    definers = captured.get("definers") or {}
    for name, definer in sorted(definers.items()):
        if account_of_definer(definer) in plan.missing:
            plan.left_out.append(
                f"{name}: definer {account_of_definer(definer)} does not exist on the target "
                "(using it fails with error 1449)"
            )
    return plan


def apply_grants(
    connection: Any, captured: dict[str, Any], database: str, plan: AccountPlan
) -> None:
    """After the load: the captured grants, on the restored database's name; grants to an
    account the target lacks are listed in ``plan.left_out``."""
    target = "`" + database.replace("`", "``") + "`"
    with connection.cursor() as cursor:
        for account, lines in sorted((captured.get("privileges") or {}).items()):
            if not plan.usable(account):
                plan.left_out.append(
                    f"grants to {account}: the account does not exist on the target"
                )
                continue
            for line in lines:
                cursor.execute(line.replace(f"`{PLACEHOLDER}`", target))


def grant_again(connection: Any, captured: dict[str, Any], database: str) -> list[str]:
    """The captured grants on ``database``, for the accounts the server has: for a copy
    swapped in under the target's name (moving tables moves no grant). What was left out."""
    missing = sorted(set(needed_accounts(captured)) - existing_accounts(connection))
    plan = AccountPlan(missing=missing)
    apply_grants(connection, captured, database, plan)
    return plan.left_out


#: One SHOW GRANTS line: what, on what, to whom, and whether with GRANT OPTION.
GRANT_LINE = re.compile(
    r"^GRANT (?P<what>.+?) ON (?P<on>.+) TO (?P<to>.+?)(?P<option> WITH GRANT OPTION)?$"
)


def revoke_statements(line: str) -> list[str]:
    """The REVOKE statements undoing one ``SHOW GRANTS`` line (none for a role membership)."""
    match = GRANT_LINE.match(line)
    if match is None:
        return []
    on, to = match["on"], match["to"]
    statements = [f"REVOKE {match['what']} ON {on} FROM {to}"]
    if match["option"]:
        statements.append(f"REVOKE GRANT OPTION ON {on} FROM {to}")
    return statements


def forget_grants(connection: Any, database: str) -> None:
    """Revoke every grant naming ``database`` exactly (the server keeps grants on a database
    name after the database is dropped): for a scratch, staging or previous copy that is
    removed, whose grants must not wait for a database of that name. Needs GRANT OPTION."""
    grants, _ = capture_grants(connection, database)
    target = "`" + database.replace("`", "``") + "`"
    with connection.cursor() as cursor:
        for lines in grants.values():
            for line in lines:
                for statement in revoke_statements(line.replace(f"`{PLACEHOLDER}`", target)):
                    cursor.execute(statement)


def fidelity_fingerprint(connection: Any, database: str, like: dict[str, Any]) -> dict[str, Any]:
    """The fidelity sections of a restored database: those ``like`` has (all when empty)."""
    if not like:
        sections, _ = capture(connection, database)
        return sections
    sections = {}
    if "database" in like:
        sections["database"] = capture_database(connection, database)
    if "definers" in like:
        sections["definers"] = capture_definers(connection, database)
    if "events" in like:
        sections["events"] = capture_events(connection, database)
    if "privileges" in like:
        try:
            grants, _ = capture_grants(connection, database)
        except Exception as error:  # pymysql's: the verifying user cannot read mysql.*
            raise SourceError(
                f"cannot read the grants on {database}: {_describe(error)}",
                hint="verify as a user with SELECT on mysql.db, mysql.tables_priv, "
                "mysql.columns_priv, mysql.procs_priv and mysql.user",
            ) from None
        # the captured grantees only: a target's own accounts (a drill sandbox's reader) are
        # not the snapshot's to judge
        sections["privileges"] = {
            account: lines for account, lines in grants.items() if account in like["privileges"]
        }
    if "accounts" in like:
        sections["accounts"] = dict(like["accounts"])  # what the restore worked from
    return sections


def hint_for_client_error(message: str) -> str | None:
    """A working hint for a mariadb client error (``ERROR 1449 (HY000) at line 12: ...``)."""
    match = re.search(r"ERROR (\d+)", message)
    return ERROR_HINTS.get(match.group(1)) if match else None
