"""Preflight of drill sandboxes: the programs of an ephemeral PostgreSQL cluster are
installed, scratch servers accept a connection, and every database source has somewhere to
go. Nothing is provisioned: a connection is opened and closed, no database is created."""

from __future__ import annotations

from drkit.errors import DrkitError, MissingToolError, SandboxError
from drkit.execute import find_program
from drkit.plan.schema import Plan, secret
from drkit.preflight.finding import Finding, failed, passed

OWNER = "sandbox"


def check_sandboxes(plan: Plan, *, connect: bool) -> list[Finding]:
    """Findings for the sandboxes a drill of ``plan`` would use (none for SQLite and files
    sources: a temporary folder always works)."""
    types = {source.type for source in plan.sources}
    settings = plan.drill.sandbox
    findings = []
    if "postgresql" in types:
        if settings.postgresql == "ephemeral":
            findings.append(_check_ephemeral_programs())
        elif connect:
            findings.append(_check_server("postgresql", settings.postgresql, plan))
    if "mysql" in types:
        if settings.mysql is None:
            error = SandboxError(
                "the plan has a MySQL source but sets no drill.sandbox.mysql",
                hint="set drill.sandbox.mysql to a server URL where scratch databases may be "
                "created, e.g. mysql://root@sandbox.internal:3306/",
            )
            findings.append(failed("sandbox", "mysql", error, owner=OWNER))
        elif connect:
            findings.append(_check_server("mysql", settings.mysql, plan))
    return findings


def _check_ephemeral_programs() -> Finding:
    try:
        found = [find_program(name) for name in ("initdb", "pg_ctl")]
    except MissingToolError as error:
        return failed("sandbox", "postgresql (ephemeral)", error, owner=OWNER)
    return passed("sandbox", "postgresql (ephemeral)", f"{' and '.join(found)}", owner=OWNER)


def _check_server(kind: str, url: str, plan: Plan) -> Finding:
    """Open and close a connection to a scratch server, as a drill does before restoring."""
    from drkit.sandboxes import ScratchMysql, ScratchPostgres

    reference = secret(plan.drill.sandbox.password)
    subject = f"{kind} (scratch databases on {url})"
    try:
        if reference is not None:
            reference.resolve()  # a missing secret says so here, before any connection
        sandbox = (
            ScratchPostgres(url, reference)
            if kind == "postgresql"
            else ScratchMysql(url, reference)
        )
        with sandbox:
            pass  # entering connects; no database is created until a source asks for one
    except DrkitError as error:
        return failed("sandbox", subject, error, owner=OWNER)
    return passed("sandbox", subject, "reachable", owner=OWNER)
