"""`drkit metrics`: Prometheus metrics from the catalog, printed, written for node_exporter's
textfile collector, or pushed to a Pushgateway."""

from __future__ import annotations

import math

import click
from prometheus_client import CollectorRegistry

from drkit.cli.context import Context, echo_json, json_option
from drkit.errors import ExitCode
from drkit.monitoring.metrics import (
    collect_metrics,
    push_metrics,
    render_metrics,
    write_metrics_file,
)
from drkit.plan.loader import find_plan_files, load_plan


def samples_to_json(registry: CollectorRegistry) -> list[dict[str, object]]:
    """Every sample as {name, labels, value}; infinities as the string "+Inf" (JSON has none)."""
    return [
        {
            "name": sample.name,
            "labels": dict(sample.labels),
            "value": "+Inf" if math.isinf(sample.value) else sample.value,
        }
        for family in registry.collect()
        for sample in family.samples
    ]


@click.command(
    "metrics",
    epilog="""\b
Examples:
  drkit metrics plans/                                  # print the exposition text
  drkit metrics plans/ --metrics-file /var/lib/node_exporter/textfile/drkit.prom
  drkit metrics plans/payments.yaml --pushgateway http://pushgateway:9091
  drkit metrics plans/ --pushgateway env:PUSHGATEWAY_URL --json
Exit: 0 written or pushed, 1 the file could not be written or the push failed.""",
)
@click.argument("plans", nargs=-1, required=True, type=click.Path())
@click.option(
    "--metrics-file",
    metavar="PATH",
    envvar="DRKIT_METRICS_FILE",
    type=click.Path(dir_okay=False),
    help="Write the textfile-collector file here, atomically (name it *.prom).",
)
@click.option(
    "--pushgateway",
    metavar="URL",
    envvar="DRKIT_PUSHGATEWAY",
    help="Push to this Pushgateway (URL, env:NAME or file:/path).",
)
@click.option(
    "--job", default="drkit", show_default=True, help="Pushgateway job label of the group."
)
@json_option
@click.pass_obj
def metrics_command(
    context: Context,
    plans: tuple[str, ...],
    metrics_file: str | None,
    pushgateway: str | None,
    job: str,
    as_json: bool,
) -> int:
    """Compute drkit's Prometheus metrics for PLANS (files or folders) from the catalog: last
    run, outcome and success per job, snapshot bytes per store, RPO and drill-verified RPO,
    last drill RTO, objectives and breaches. Printed when no destination is given."""
    loaded = [load_plan(path) for path in find_plan_files(plans)]
    with context.catalog() as catalog:
        registry = collect_metrics(catalog, loaded)
    problems: list[str] = []
    if metrics_file:
        problems += write_metrics_file(registry, metrics_file)
    if pushgateway:
        problems += push_metrics(registry, pushgateway, job)
    if as_json:
        echo_json(samples_to_json(registry))
    elif not metrics_file and not pushgateway:
        click.echo(render_metrics(registry), nl=False)
    # The problems were logged as warnings on stderr; the exit code says the job failed.
    return int(ExitCode.FAILED if problems else ExitCode.OK)
