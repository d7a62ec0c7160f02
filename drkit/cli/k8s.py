"""`drkit k8s render`: Kubernetes CronJobs and the plans' ConfigMap, for `kubectl apply -f -`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from drkit.cli.context import json_option
from drkit.deploy.kubernetes import (
    DEFAULT_CATALOG_KEY,
    DEFAULT_CATALOG_SECRET,
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    DEFAULT_SECRETS,
    SECRETS_DIR,
    dump_yaml_stream,
    find_unmounted_paths,
    render_manifests,
)
from drkit.errors import UsageError
from drkit.plan.loader import find_plan_files, load_plan
from drkit.plan.schema import Plan


@click.group("k8s")
def k8s_group() -> None:
    """Run plans on Kubernetes (see docs/deployment.md)."""


@k8s_group.command(
    "render",
    epilog="""\b
Examples:
  drkit k8s render plans/ | kubectl apply -f -
  drkit k8s render plans/payments-api.yaml --namespace dr --image registry.example.com/drkit:0.1.0
  drkit k8s render plans/ -o k8s/drkit.yaml
  drkit k8s render /etc/drkit/plans --group-size 50 --workers 4 | kubectl apply -f -   # a fleet
Every plan shares one ConfigMap (drkit-plans): render all plans of a namespace together.
With --group-size, each group has its own ConfigMap and CronJob (every 5 minutes).""",
)
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@click.option(
    "--image", default=DEFAULT_IMAGE, show_default=True, metavar="IMG", help="drkit image to run."
)
@click.option(
    "--namespace",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    metavar="NS",
    help="Namespace of every object.",
)
@click.option(
    "--catalog-secret",
    default=DEFAULT_CATALOG_SECRET,
    show_default=True,
    metavar="NAME",
    help="Secret holding the catalog URL (DRKIT_CATALOG).",
)
@click.option(
    "--catalog-key",
    default=DEFAULT_CATALOG_KEY,
    show_default=True,
    metavar="KEY",
    help="Key of the catalog URL in that Secret.",
)
@click.option(
    "--secrets",
    "secrets_name",
    default=DEFAULT_SECRETS,
    show_default=True,
    metavar="NAME",
    help=f"Secret exposed as environment (env: references) and mounted at {SECRETS_DIR}.",
)
@click.option(
    "--files-secret",
    metavar="NAME",
    help=f"Mount this Secret at {SECRETS_DIR} instead (binary key files stay out of the environment).",
)
@click.option(
    "--service-account", metavar="NAME", help="Pod service account (workload identity for KMS/S3)."
)
@click.option(
    "--group-size",
    type=click.IntRange(1, 1000),
    metavar="N",
    help="Fleet layout: plans in groups of about N, one ConfigMap and one "
    "`drkit run --due` CronJob per group (docs/deployment.md).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="With --group-size: plans each group's pod runs at once.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE, not stdout.")
@json_option
def render(
    plans: tuple[str, ...],
    image: str,
    namespace: str,
    catalog_secret: str,
    catalog_key: str,
    secrets_name: str,
    files_secret: str | None,
    service_account: str | None,
    group_size: int | None,
    workers: int,
    output: str | None,
    as_json: bool,
) -> int:
    """Print a ConfigMap with the plan files and a CronJob per plan and scheduled job, as a
    YAML stream (--json: one v1 List). Secrets are referenced, never included."""
    loaded = [(path, load_plan(path)) for path in find_plan_files(plans)]
    documents = render_manifests(
        loaded,
        image=image,
        namespace=namespace,
        catalog_secret=catalog_secret,
        catalog_key=catalog_key,
        secrets_name=secrets_name,
        files_secret=files_secret,
        service_account=service_account,
        group_size=group_size,
        workers=workers,
    )
    report_unmounted_paths(loaded)
    if as_json:
        listing = {"apiVersion": "v1", "kind": "List", "items": documents}
        text = json.dumps(listing, indent=2) + "\n"
    else:
        text = dump_yaml_stream(documents)
    if output is None:
        click.echo(text, nl=False)
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write {output}: {error.strerror}") from None
    click.echo(f"wrote {len(documents)} objects to {output}", err=True)
    return 0


def report_unmounted_paths(loaded: list[tuple[Path, Plan]]) -> None:
    """Say on stderr which plan paths a pod would not find, so they are mounted on purpose."""
    notes = [
        f"note: {path}: {unmounted} (no volume in the pod provides it)"
        for path, plan in loaded
        for unmounted in find_unmounted_paths(plan)
    ]
    for note in notes:
        click.echo(note, err=True)
    if notes:
        click.echo(
            f"  hint: put key files and file: secrets in the Secret and refer to them under "
            f"{SECRETS_DIR}/; add volumes for data paths (docs/deployment.md#kubernetes)",
            err=True,
        )
