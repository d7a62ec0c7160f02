"""What every command shares: global options, logging setup, and output helpers."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
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


def configure_logging(*, verbose: int, quiet: bool, log_format: str) -> None:
    """Logs go to stderr: text on a TTY, JSON lines otherwise or with --log-format json."""
    level = logging.WARNING if quiet else logging.INFO if verbose < 2 else logging.DEBUG
    if verbose == 0 and not quiet:
        level = logging.INFO
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    if use_json:
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger("drkit")
    root.handlers[:] = [handler]
    root.setLevel(level)
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
