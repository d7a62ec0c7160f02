"""Monitoring: what drkit tells the outside world about its jobs.

- ``metrics``: Prometheus gauges computed from the catalog (``collect_metrics``), written for
  node_exporter's textfile collector or pushed to a Pushgateway;
- ``notify``: the plan's webhooks (JSON or Slack-style) on failed, degraded,
  objective_breached, recovered and ok;
- ``healthcheck``: dead-man pings (start, success, fail) around a job (``monitored``);
- ``endpoints``: URLs that may be secret references, sent to without ever logging them.

Nothing here raises into a job: every call returns its problems as one-line strings (also
logged as warnings), so a broken monitor never hides or changes a job's result.

    with monitored(plan, "backup") as monitor:
        result = backup(resources)
        monitor.outcome = result.outcome.value
    notify_events(plan, event_for(previous, monitor.outcome), {"job": "backup", ...})
"""

from drkit.monitoring.healthcheck import Monitor, monitored, ping
from drkit.monitoring.metrics import (
    collect_metrics,
    find_last_runs,
    last_outcome,
    push_metrics,
    render_metrics,
    write_metrics_file,
)
from drkit.monitoring.notify import event_for, notify, notify_events

__all__ = [
    "Monitor",
    "collect_metrics",
    "event_for",
    "find_last_runs",
    "last_outcome",
    "monitored",
    "notify",
    "notify_events",
    "ping",
    "push_metrics",
    "render_metrics",
    "write_metrics_file",
]
