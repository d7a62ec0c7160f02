"""Prometheus metrics, computed from the catalog so they survive restarts and agree with
``drkit status``: last run and last success per job, snapshot sizes per store, RPO (as the
copy policy counts it, and as drills verified it), the last drill's RTO, the objectives, and
whether one is breached.

A value that cannot be measured is explicit rather than absent where an alert depends on it:
an RPO with no qualifying snapshot is +Inf, so ``drkit_rpo_seconds > drkit_objective_rpo_seconds``
fires. Series for a job that never ran are absent (alert on ``absent()`` if that matters).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.registry import Collector

from drkit.catalog import Catalog, JobTotals, PlanState, RunRecord
from drkit.monitoring.endpoints import TIMEOUT_SECONDS, Endpoint, redact, resolve_endpoint, warn
from drkit.outcome import Outcome
from drkit.plan.schema import Plan
from drkit.report.status import PlanStatus, plan_policy, status_from_state

JOBS = ("backup", "drill", "verify", "prune", "restore")
OUTCOMES = ("ok", "degraded", "failed", "breached", "interrupted")
RECENT_RUNS = 50  # runs read per job before falling back to the whole history
#: ``drkit_job``, not ``job``: Prometheus and the Pushgateway own the ``job`` label (the
#: scrape job, the push group), and a metric carrying its own is refused or renamed
PLAN_JOB = ("plan", "drkit_job")
PLAN_STORE = ("plan", "store", "region")
PLAN = ("plan",)
PLAN_SOURCE_STORE = ("plan", "source", "store")
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "drkit_last_success_timestamp_seconds": (
        "Unix time the newest run of the job that ended ok finished (degraded is not success).",
        PLAN_JOB,
    ),
    "drkit_last_run_timestamp_seconds": ("Unix time the newest finished run ended.", PLAN_JOB),
    "drkit_last_run_outcome": (
        "1 for the newest finished run's outcome, 0 for the other outcomes.",
        (*PLAN_JOB, "outcome"),
    ),
    "drkit_last_run_duration_seconds": ("How long the newest finished run took.", PLAN_JOB),
    "drkit_snapshot_bytes": (
        "Stored size of the newest snapshot complete in the store.",
        PLAN_STORE,
    ),
    "drkit_snapshot_timestamp_seconds": (
        "Unix time the newest snapshot complete in the store was taken.",
        PLAN_STORE,
    ),
    "drkit_rpo_seconds": (
        "Age of the newest snapshot meeting the copy policy (+Inf when there is none).",
        PLAN,
    ),
    "drkit_verified_rpo_seconds": (
        "Age of the snapshot the newest passed drill restored (+Inf when there is none).",
        PLAN,
    ),
    "drkit_last_drill_rto_seconds": ("Recovery time the newest drill measured.", PLAN),
    "drkit_last_drill_timestamp_seconds": ("Unix time the newest drill finished.", PLAN),
    "drkit_last_drill_passed": ("1 when the newest drill passed, else 0.", PLAN),
    "drkit_objective_rpo_seconds": ("The plan's RPO objective.", PLAN),
    "drkit_objective_rto_seconds": ("The plan's RTO objective.", PLAN),
    "drkit_objective_breached": (
        "1 when an objective is breached now (drkit status exits 4), else 0.",
        PLAN,
    ),
    "drkit_wal_archive_lag_seconds": (
        "Now minus the end of the store's recoverable window (+Inf without one).",
        PLAN_SOURCE_STORE,
    ),
    "drkit_wal_window_start_timestamp_seconds": (
        "Unix time of the oldest moment the store can restore to.",
        PLAN_SOURCE_STORE,
    ),
    "drkit_wal_last_archived_timestamp_seconds": (
        "Unix time up to which the store provably holds all WAL (the window's end).",
        PLAN_SOURCE_STORE,
    ),
    "drkit_wal_last_archived_lsn_bytes": (
        "WAL position (LSN as bytes) up to which the store holds every segment.",
        PLAN_SOURCE_STORE,
    ),
    "drkit_wal_window_problems": (
        "Gaps and other problems in the store's WAL chain (0 when whole).",
        PLAN_SOURCE_STORE,
    ),
}


def collect_metrics(
    catalog: Catalog, plans: Sequence[Plan], now: datetime | None = None
) -> CollectorRegistry:
    """A fresh registry holding every drkit series for ``plans``, read from the catalog now
    (a few queries for all the plans together, whatever their history)."""
    now = now or datetime.now(UTC)
    registry = CollectorRegistry()
    gauges = {
        name: GaugeRows(name, documentation, labels)
        for name, (documentation, labels) in GAUGES.items()
    }
    states = catalog.plan_states([plan_policy(plan) for plan in plans])
    for plan in plans:
        state = states[plan.name]
        for job in JOBS:
            runs = state.job(job)
            _set_run_gauges(gauges, plan.name, job, runs.finished, runs.succeeded)
        _set_store_gauges(gauges, plan, state)
        _set_status_gauges(gauges, status_from_state(plan, state, now, catalog))
    registry.register(GaugeCollector([rows.family for rows in gauges.values()]))
    registry.register(TotalsCollector(catalog.run_totals([plan.name for plan in plans])))
    return registry


class GaugeRows:
    """A gauge filled one sample at a time, read like prometheus_client's ``Gauge`` by the
    functions below (``.labels(...).set(value)``) without its object per label set: for a
    thousand plans those 30,000 objects cost seconds. Each label set is set once."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]):
        self.family = GaugeMetricFamily(name, documentation, labels=list(labels))

    def labels(self, *values: str) -> GaugeSample:
        return GaugeSample(self.family, values)


class GaugeSample:
    def __init__(self, family: GaugeMetricFamily, values: Sequence[str]):
        self._family, self._values = family, list(values)

    def set(self, value: float) -> None:
        self._family.add_metric(self._values, value)


class GaugeCollector(Collector):
    def __init__(self, families: Sequence[GaugeMetricFamily]):
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


class TotalsCollector(Collector):
    """Counters and histograms of finished runs, from the catalog's run totals."""

    def __init__(self, totals: Mapping[tuple[str, str, str], JobTotals]):
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "drkit_runs", "Finished runs, by plan, job and outcome.", labels=[*PLAN_JOB, "outcome"]
        )
        written = CounterMetricFamily(
            "drkit_written_bytes",
            "Bytes written to stores by finished runs (every store's copy counted).",
            labels=[*PLAN_JOB, "outcome"],
        )
        durations = HistogramMetricFamily(
            "drkit_run_duration_seconds",
            "How long finished runs took, by plan, job and outcome.",
            labels=[*PLAN_JOB, "outcome"],
        )
        for (plan, job, outcome), totals in sorted(self._totals.items()):
            labels = [plan, job, outcome]
            runs.add_metric(labels, totals.runs)
            written.add_metric(labels, totals.bytes)
            buckets = [(_bound(le), count) for le, count in sorted(totals.buckets.items())]
            durations.add_metric(labels, buckets, totals.seconds)
        yield from (runs, written, durations)


def _bound(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


def find_last_runs(
    catalog: Catalog, plan: str, job: str, *, exclude_run_id: int | None = None
) -> tuple[RunRecord | None, RunRecord | None]:
    """(newest finished run, newest run that ended ok) of ``job`` for ``plan``. Runs still
    ``running`` (or left so by a crash) are skipped, as is ``exclude_run_id``."""
    runs = catalog.list_runs(plan, job, limit=RECENT_RUNS)
    last, success = _pick_last_runs(runs, exclude_run_id)
    if success is None and len(runs) == RECENT_RUNS:
        last, success = _pick_last_runs(catalog.list_runs(plan, job), exclude_run_id)
    return last, success


def last_outcome(
    catalog: Catalog, plan: str, job: str, *, exclude_run_id: int | None = None
) -> str | None:
    """The outcome of the newest finished run of ``job`` (for ``event_for``), or None."""
    last, _ = find_last_runs(catalog, plan, job, exclude_run_id=exclude_run_id)
    return None if last is None else last.outcome


def _pick_last_runs(
    runs: Sequence[RunRecord], exclude_run_id: int | None
) -> tuple[RunRecord | None, RunRecord | None]:
    finished = [
        run
        for run in runs
        if run.finished_at is not None and run.outcome != "running" and run.id != exclude_run_id
    ]
    last = finished[0] if finished else None
    return last, next((run for run in finished if run.outcome == "ok"), None)


def _set_run_gauges(
    gauges: Mapping[str, GaugeRows],
    plan: str,
    job: str,
    last: RunRecord | None,
    success: RunRecord | None,
) -> None:
    if success is not None and success.finished_at is not None:
        gauges["drkit_last_success_timestamp_seconds"].labels(plan, job).set(
            success.finished_at.timestamp()
        )
    if last is None or last.finished_at is None:
        return
    gauges["drkit_last_run_timestamp_seconds"].labels(plan, job).set(last.finished_at.timestamp())
    duration = (last.finished_at - last.started_at).total_seconds()
    gauges["drkit_last_run_duration_seconds"].labels(plan, job).set(max(duration, 0.0))
    for outcome in OUTCOMES:
        gauges["drkit_last_run_outcome"].labels(plan, job, outcome).set(
            1 if last.outcome == outcome else 0
        )


def _set_store_gauges(gauges: Mapping[str, GaugeRows], plan: Plan, state: PlanState) -> None:
    """Per store of the plan: the newest snapshot whose copy there is complete (its manifest
    is written there, so it restores from that store alone)."""
    for store in plan.stores:
        snapshot = state.newest_in_store.get(store.name)
        copy = snapshot.copy_in(store.name) if snapshot is not None else None
        if snapshot is None or copy is None:
            continue
        labels = (plan.name, store.name, store.region)
        gauges["drkit_snapshot_bytes"].labels(*labels).set(copy.bytes)
        gauges["drkit_snapshot_timestamp_seconds"].labels(*labels).set(
            snapshot.taken_at.timestamp()
        )


def _set_status_gauges(gauges: Mapping[str, GaugeRows], status: PlanStatus) -> None:
    plan = status.plan
    gauges["drkit_rpo_seconds"].labels(plan).set(_or_infinity(status.rpo_seconds))
    gauges["drkit_verified_rpo_seconds"].labels(plan).set(_or_infinity(status.verified_rpo_seconds))
    drill = status.last_drill
    if drill is not None:
        if drill.rto_seconds is not None:
            gauges["drkit_last_drill_rto_seconds"].labels(plan).set(drill.rto_seconds)
        gauges["drkit_last_drill_timestamp_seconds"].labels(plan).set(drill.finished_at.timestamp())
        gauges["drkit_last_drill_passed"].labels(plan).set(1 if drill.outcome == Outcome.OK else 0)
    if status.rpo_objective is not None:
        gauges["drkit_objective_rpo_seconds"].labels(plan).set(status.rpo_objective)
    if status.rto_objective is not None:
        gauges["drkit_objective_rto_seconds"].labels(plan).set(status.rto_objective)
    gauges["drkit_objective_breached"].labels(plan).set(1 if status.breached else 0)
    for entry in status.pitr:
        for window in entry.windows:
            labels = (plan, entry.source, window.store)
            lag = None if window.end is None else (status.now - window.end).total_seconds()
            gauges["drkit_wal_archive_lag_seconds"].labels(*labels).set(_or_infinity(lag))
            gauges["drkit_wal_window_problems"].labels(*labels).set(len(window.problems))
            if window.start is not None and window.end is not None:
                start, end = window.start.timestamp(), window.end.timestamp()
                gauges["drkit_wal_window_start_timestamp_seconds"].labels(*labels).set(start)
                gauges["drkit_wal_last_archived_timestamp_seconds"].labels(*labels).set(end)
            if window.end_lsn is not None:
                gauges["drkit_wal_last_archived_lsn_bytes"].labels(*labels).set(window.end_lsn)


def _or_infinity(seconds: float | None) -> float:
    return math.inf if seconds is None else seconds


def render_metrics(registry: CollectorRegistry) -> str:
    """The registry in Prometheus text exposition format."""
    return generate_latest(registry).decode("utf-8")


def write_metrics_file(registry: CollectorRegistry, path: str | Path) -> list[str]:
    """Write the registry for node_exporter's textfile collector, atomically: a hidden temp
    file in the same folder (never matching ``*.prom``), fsync, rename over ``path``, fsync
    the folder. A reader sees the old file or the new one, never half of one.
    (``prometheus_client.write_to_textfile`` renames too but does not fsync.)
    Returns the problems, one line each; never raises."""
    target = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as error:
        return warn([f"metrics file {target}: cannot write: {error.strerror or error}"])
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(generate_latest(registry))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from node_exporter's user
        os.replace(temporary, target)
        _fsync_folder(target.parent)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        return warn([f"metrics file {target}: cannot write: {error.strerror or error}"])
    return []


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable: the folder entry is flushed, not only the file's data."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def push_metrics(
    registry: CollectorRegistry,
    url: str,
    job: str = "drkit",
    *,
    grouping_key: Mapping[str, str] | None = None,
) -> list[str]:
    """Push the registry to a Pushgateway (PUT /metrics/job/<job>, replacing that group).
    ``url`` may be a secret reference; a bare host:port means http. Returns the problems,
    naming the gateway by host only; never raises."""
    if "://" not in url and not url.startswith(("env:", "file:")):
        url = f"http://{url}"
    endpoint = resolve_endpoint("pushgateway", url)
    if not isinstance(endpoint, Endpoint):
        return warn([f"push metrics: {endpoint}"])
    target = endpoint.url.reveal()
    gateway, handler = _split_credentials(target)
    try:
        push_to_gateway(
            gateway,
            job,
            registry,
            grouping_key=dict(grouping_key or {}),
            timeout=TIMEOUT_SECONDS,
            handler=handler,
        )
    except Exception as error:  # HTTP errors, refused connections, timeouts: all one line
        return warn([f"push metrics: {endpoint}: {redact(str(error), target)}"])
    return []


def _split_credentials(url: str) -> tuple[str, Callable[..., Callable[[], None]]]:
    """A gateway URL holding ``user:password@`` becomes the bare URL and a basic-auth handler
    (urllib would take the credentials for part of the host name)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, default_handler
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    username, password = unquote(parts.username), unquote(parts.password or "")

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return bare, handler
