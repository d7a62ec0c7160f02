"""What every command shares: global options, logging setup, and output helpers."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from drkit.catalog import Catalog


class JsonLineFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers (cron, Kubernetes)."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            document[key] = value
        return json.dumps(document, default=str)


#: what each -v adds, as restic and borgmatic do: warnings and results by default, progress
#: with -v, debug (every external command and what it printed) with -vv; -q keeps errors only
LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)
#: set in every Kubernetes pod; there, logs are read by a log shipper, not a person
KUBERNETES_VARIABLE = "KUBERNETES_SERVICE_HOST"


def log_level(*, verbose: int, quiet: bool) -> int:
    """The drkit logger's level for -q / (none) / -v / -vv."""
    if quiet:
        return logging.ERROR
    return LEVELS[min(verbose, len(LEVELS) - 1)]


def wants_json_logs(log_format: str, environment: Mapping[str, str]) -> bool:
    """JSON lines when asked, or with ``auto`` inside a Kubernetes pod; text otherwise (a
    person at a terminal, in a pipe, or reading cron mail)."""
    if log_format != "auto":
        return log_format == "json"
    return KUBERNETES_VARIABLE in environment


def configure_logging(*, verbose: int, quiet: bool, log_format: str) -> None:
    """Logs go to stderr, as text for people or JSON lines for log shippers."""
    handler = logging.StreamHandler(sys.stderr)
    if wants_json_logs(log_format, os.environ):
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger("drkit")
    root.handlers[:] = [handler]
    root.setLevel(log_level(verbose=verbose, quiet=quiet))
    root.propagate = False
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass
class Context:
    catalog_url: str | None
    verbose: int
    quiet: bool

    @contextmanager
    def catalog(self) -> Iterator[Catalog]:
        from drkit.catalog import Catalog

        catalog = Catalog.open(self.catalog_url)
        try:
            yield catalog
        finally:
            catalog.close()


def echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=str, sort_keys=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
