"""Preflight of sources and the programs they need: database servers answer, pg_dump is at
least as new as the server it dumps (pg_dump refuses a newer server), the MariaDB client is
installed, SQLite files and config paths are readable."""

from __future__ import annotations

import os
from pathlib import Path

from drkit.errors import DrkitError, MissingToolError, SourceError
from drkit.execute import find_program
from drkit.plan.schema import MysqlSource, PostgresqlSource, SourceSpec, secret
from drkit.preflight.finding import Finding, failed, passed, skipped
from drkit.secrets import Secret
from drkit.sources.urls import parse_database_url

#: programs each database source needs, to back up and to restore
MYSQL_DUMP_PROGRAMS = ("mariadb-dump", "mysqldump")
MYSQL_CLIENT_PROGRAMS = ("mariadb", "mysql")
MYSQL_BINLOG_PROGRAMS = ("mariadb-binlog", "mysqlbinlog")


def check_source(spec: SourceSpec, *, connect: bool) -> list[Finding]:
    """Findings for one source: readable, or (with ``connect``) its server reachable; and
    its programs installed, and new enough for the server when it was reached."""
    if isinstance(spec, PostgresqlSource):
        return _check_postgresql(spec, connect=connect)
    if isinstance(spec, MysqlSource):
        return _check_mysql(spec, connect=connect)
    paths = [spec.path] if spec.type == "sqlite" else list(getattr(spec, "paths", []))
    return [_check_paths(spec.name, [Path(path) for path in paths])]


def _check_paths(name: str, paths: list[Path]) -> Finding:
    owner = f"capture:{name}"
    for path in paths:
        if not path.exists():
            error = SourceError(f"{path} does not exist", hint="check the source's path")
            return failed("source", name, error, owner=owner)
        if not os.access(path, os.R_OK):
            error = SourceError(f"{path} is not readable", hint="check its permissions")
            return failed("source", name, error, owner=owner)
    return passed("source", name, f"{', '.join(map(str, paths))} readable", owner=owner)


def _check_postgresql(spec: PostgresqlSource, *, connect: bool) -> list[Finding]:
    from drkit.sources import postgresql

    owner = f"capture:{spec.name}"
    server_major: int | None = None
    findings = []
    if connect:
        try:
            url = parse_database_url(spec.url)
            with postgresql.connect(url, _password(spec)) as connection:
                version = connection.info.server_version
        except DrkitError as error:
            findings.append(failed("source", spec.name, error, owner=owner))
        else:
            server_major = version // 10000
            detail = f"reachable (PostgreSQL {server_major}.{version % 10000})"
            findings.append(passed("source", spec.name, detail, owner=owner))
    findings.append(_check_pg_dump(spec.name, server_major))
    findings.append(_check_programs(spec.name, ("pg_restore",), server_major, role="load"))
    if spec.pitr is not None:  # base backups, and `drkit archive`'s receiver
        findings.append(
            _check_programs(spec.name, ("pg_basebackup",), server_major, role="capture")
        )
        findings.append(
            _check_programs(spec.name, ("pg_receivewal",), server_major, role="archive")
        )
    return findings


def _check_pg_dump(name: str, server_major: int | None) -> Finding:
    """pg_dump as a backup will pick it (the server's major version first), and its version."""
    from drkit.sources.postgresql import tool_version

    subject = f"pg_dump for {name}"
    owner = f"capture:{name}"
    try:
        program = find_program("pg_dump", version_dir=str(server_major) if server_major else None)
        version = tool_version(program)
    except DrkitError as error:
        return failed("tool", subject, error, owner=owner)
    tool_major = _major(version)
    if server_major is None:
        return passed("tool", subject, f"{version} at {program}", owner=owner)
    if tool_major is None or tool_major < server_major:
        too_old = MissingToolError(
            f"pg_dump {version} at {program} is older than the server (PostgreSQL "
            f"{server_major}); pg_dump refuses to dump a newer server",
            hint=f"install the PostgreSQL {server_major} client (postgresql-client-"
            f"{server_major}) or newer; the drkit image's pg_dump 17 dumps servers up to 17",
        )
        return failed("tool", subject, too_old, owner=owner)
    detail = f"{version} at {program}, for server {server_major}"
    return passed("tool", subject, detail, owner=owner)


def _check_programs(
    name: str, programs: tuple[str, ...], major: int | None, *, role: str
) -> Finding:
    """The first of ``programs`` that is installed, or a failure naming what to install.
    ``role`` says what needs them: ``capture`` (backups) or ``load`` (restores, drills)."""
    version_dir = str(major) if major else None
    missing = MissingToolError(f"none of {', '.join(programs)} found")
    for program in programs:
        try:
            found = find_program(program, version_dir=version_dir)
        except MissingToolError as error:
            missing = error
            continue
        return passed("tool", f"{program} for {name}", f"at {found}", owner=f"{role}:{name}")
    return failed("tool", f"{programs[0]} for {name}", missing, owner=f"{role}:{name}")


def _check_mysql(spec: MysqlSource, *, connect: bool) -> list[Finding]:
    from drkit.sources import mysql

    owner = f"capture:{spec.name}"
    findings = []
    if connect:
        try:
            connection = mysql.connect(parse_database_url(spec.url), _password(spec))
            try:
                version = mysql.server_version(connection)
            finally:
                connection.close()
        except DrkitError as error:
            findings.append(failed("source", spec.name, error, owner=owner))
        else:
            findings.append(passed("source", spec.name, f"reachable ({version})", owner=owner))
    findings.append(_check_programs(spec.name, MYSQL_DUMP_PROGRAMS, None, role="capture"))
    findings.append(_check_programs(spec.name, MYSQL_CLIENT_PROGRAMS, None, role="load"))
    if spec.pitr is not None:  # `drkit archive` streams with it, a restore to a moment decodes
        # with it; reported, never blocking: a restore of a snapshot does without
        findings.append(_check_programs(spec.name, MYSQL_BINLOG_PROGRAMS, None, role="archive"))
    return findings


def _password(spec: PostgresqlSource | MysqlSource) -> Secret | None:
    reference = secret(spec.password)
    return reference.resolve() if reference else None


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def skip_source(spec: SourceSpec, reason: str) -> Finding:
    return skipped("source", spec.name, reason, owner=f"capture:{spec.name}")
