"""`drkit evidence verify` and `drkit evidence export`: a plan's signed, hash-chained evidence
log, checked offline with the public key alone (docs/evidence.md)."""

from __future__ import annotations

import click

from drkit.cli.context import Context, echo_json, json_option
from drkit.errors import ExitCode, UsageError


@click.group("evidence")
def evidence_group() -> None:
    """The signed evidence log of backups, verifies, drills and restores."""


@evidence_group.command(
    "verify",
    epilog="""\b
Examples:
  drkit evidence verify payments.evidence.jsonl --public-key evidence.key.pub
  drkit evidence verify --plan plans/payments.yaml --store s3-euw1 --public-key evidence.key.pub
  drkit evidence verify log.jsonl --public-key kms.pem --head 3f1c...   # head from the report
Every record's signature, position and link to the record before it are checked: an edited,
deleted, inserted or reordered record fails (exit 7). A log cut short at its end is caught
with --head (and --count), the chain head the compliance report publishes.""",
)
@click.argument("log_file", required=False, type=click.Path())
@click.option("--plan", "plan_file", type=click.Path(), help="Read the log of this plan ...")
@click.option("--store", "store_name", metavar="NAME", help="... from this store (no catalog).")
@click.option(
    "--public-key",
    "public_key",
    required=True,
    type=click.Path(),
    help="PEM public key: the .pub beside the signing key, or the KMS key's public key.",
)
@click.option("--head", metavar="HASH", help="A published chain head the log must contain.")
@click.option("--count", type=int, help="The published number of records (at least).")
@json_option
@click.pass_obj
def verify_command(
    context: Context,
    log_file: str | None,
    plan_file: str | None,
    store_name: str | None,
    public_key: str,
    head: str | None,
    count: int | None,
    as_json: bool,
) -> int:
    """Check an evidence log offline: signatures, order, links; exit 7 when anything is off."""
    from drkit.actions.evidence import read_log_file, read_public_key, verify_evidence

    key = read_public_key(public_key)
    if (log_file is None) == (plan_file is None):
        raise UsageError("give either a LOG file or --plan PLAN (with --store NAME, or not)")
    if log_file is not None:
        lines = read_log_file(log_file)
    else:
        assert plan_file is not None
        lines = read_plan_log(context, plan_file, store_name)
    check = verify_evidence(lines, key, head=head, count=count)
    if as_json:
        echo_json(check.to_json())
    elif check.ok:
        click.echo(
            f"evidence log of {check.plan} verified: {check.count} records "
            f"({check.first_at} to {check.last_at}), every signature by key {key.key_id}; "
            f"head {check.head}"
        )
    else:
        for problem in check.problems[:50]:
            click.echo(f"error: {problem}", err=True)
        click.echo(
            f"evidence log FAILED verification: {len(check.problems)} problem(s) in "
            f"{check.count} records",
            err=True,
        )
    return 0 if check.ok else int(ExitCode.INTEGRITY)


def read_plan_log(context: Context, plan_file: str, store_name: str | None) -> list[str]:
    from drkit.actions.evidence import read_store_log
    from drkit.cli.resources import opened_resources

    with opened_resources(context, plan_file, catalog_optional=store_name is not None) as found:
        if store_name is not None:
            return read_store_log(found, store_name)
        assert found.catalog is not None
        return found.catalog.read_evidence(found.plan.name)


@evidence_group.command(
    "export",
    epilog="""\b
Example:
  drkit evidence export plans/payments.yaml -o payments.evidence.jsonl
The file is the log as the catalog holds it, one signed JSON record a line; give it to an
auditor with the public key.""",
)
@click.argument("plan_file", type=click.Path())
@click.option("-o", "--output", type=click.Path(), help="Write here instead of stdout.")
@click.pass_obj
def export_command(context: Context, plan_file: str, output: str | None) -> int:
    """Write PLAN's evidence log from the catalog, one record a line."""
    lines = read_plan_log(context, plan_file, None)
    text = "".join(line + "\n" for line in lines)
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"wrote {len(lines)} records to {output}", err=True)
    return 0
