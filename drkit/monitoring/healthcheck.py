"""Dead-man pings, healthchecks.io style: ``URL/start`` when a job starts, ``URL`` when it
succeeds, ``URL/fail`` when it fails. A monitor that stops hearing from drkit alerts by itself,
which covers what drkit cannot report: a runner that never started or died mid-job.

``monitored(plan, job)`` pings start, then success or fail on every way out of the block,
exceptions included, and re-raises the real error untouched. Pings never raise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from drkit.errors import DrkitError
from drkit.monitoring.endpoints import Endpoint, resolve_endpoint, send, warn
from drkit.plan.schema import Plan
from drkit.secrets import Secret

PingKind = Literal["start", "success", "fail"]
PING_SUFFIXES: dict[str, str] = {"start": "/start", "success": "", "fail": "/fail"}
MAX_BODY_BYTES = 10_000  # healthchecks.io keeps the first 100 kB; a summary needs far less
SUCCESS_OUTCOMES = frozenset(("ok", "passed"))


def ping(plan: Plan, kind: PingKind, body: str = "") -> list[str]:
    """Ping the plan's healthcheck URL (``kind`` start, success or fail), with ``body`` as
    the log line the monitor shows. No healthcheck configured: nothing happens. Returns the
    problems (the URL never shown); never raises."""
    if plan.healthcheck is None:
        return []
    try:
        endpoint = resolve_endpoint("healthcheck", plan.healthcheck.url)
        if not isinstance(endpoint, Endpoint):
            return warn([f"ping {kind}: {endpoint}"])
        url = ping_url(endpoint.url, kind)
        data = body.encode("utf-8")[:MAX_BODY_BYTES]
        problem = send(endpoint, data, content_type="text/plain; charset=utf-8", url=url)
    except Exception as error:  # a monitoring bug must not break the job
        problem = f"healthcheck: could not ping: {type(error).__name__}"
    return warn([f"ping {kind}: {problem}"]) if problem else []


def ping_url(base: Secret, kind: str) -> Secret:
    """``base`` with /start or /fail appended to its path (a query string stays last)."""
    parts = urlsplit(base.reveal())
    path = parts.path.rstrip("/") + PING_SUFFIXES[kind]
    return Secret(urlunsplit(parts._replace(path=path)))


@dataclass
class Monitor:
    """The job a ``monitored`` block runs. Set ``outcome`` when the job returns a result
    rather than raising (``degraded`` and ``failed`` ping fail; ``ok`` and ``passed`` ping
    success), and ``summary`` for the line the monitor shows."""

    plan: Plan
    job: str
    outcome: str = "ok"
    summary: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.outcome in SUCCESS_OUTCOMES

    def describe(self) -> str:
        return f"drkit {self.job} {self.plan.name}: {self.outcome}" + (
            f": {self.summary}" if self.summary else ""
        )


@contextmanager
def monitored(plan: Plan, job: str) -> Iterator[Monitor]:
    """Ping start, run the block, then ping success, or fail when the block raised or set a
    failing ``outcome``. The block's exception propagates unchanged; ping problems are
    collected in ``monitor.problems``."""
    monitor = Monitor(plan, job)
    monitor.problems += ping(plan, "start", f"drkit {job} {plan.name}: started")
    try:
        yield monitor
    except BaseException as error:
        monitor.outcome = "interrupted" if _is_interruption(error) else "failed"
        monitor.summary = describe_error(error)
        monitor.problems += ping(plan, "fail", monitor.describe())
        raise
    kind: PingKind = "success" if monitor.succeeded else "fail"
    monitor.problems += ping(plan, kind, monitor.describe())


def _is_interruption(error: BaseException) -> bool:
    return isinstance(error, KeyboardInterrupt | SystemExit)


def describe_error(error: BaseException) -> str:
    """One line for the monitor: a drkit error's message (written to hold no secret), else
    only the exception's type, since foreign messages may quote anything."""
    if isinstance(error, DrkitError):
        return " ".join(error.message.split())[:500]
    return type(error).__name__
