"""Notifications: the plan's webhooks told about a job's outcome.

``event_for`` turns a job's outcome (and the previous run's) into events; ``notify`` posts one
event to every webhook subscribed to it. Notifying never raises and never changes the job's
result: problems come back as one-line strings (and are logged as warnings).

The payload a caller passes is a mapping with these keys, all optional::

    {"job": "backup", "outcome": "failed", "summary": "one line for people",
     "snapshot_id": "20240501T120000Z-ab12", "errors": ["us-east: StoreUnavailable ..."]}
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from drkit import __version__
from drkit.monitoring.endpoints import Endpoint, resolve_endpoint, send, warn
from drkit.plan.schema import Plan, Webhook

EVENTS = ("failed", "degraded", "objective_breached", "recovered", "ok")
# Run outcomes (and drill outcomes) to the event they fire. ``interrupted`` pages like a failure:
# a job killed by a timeout or a node drain protected nothing.
OUTCOME_EVENTS = {
    "ok": "ok",
    "passed": "ok",
    "degraded": "degraded",
    "failed": "failed",
    "error": "failed",
    "interrupted": "failed",
    "breached": "objective_breached",
}
BAD_OUTCOMES = frozenset(("failed", "error", "interrupted", "degraded", "breached"))
SLACK_MARKS = {
    "failed": ":red_circle:",
    "objective_breached": ":red_circle:",
    "degraded": ":large_orange_circle:",
    "recovered": ":large_green_circle:",
    "ok": ":white_check_mark:",
}


def event_for(previous_outcome: str | None, outcome: str) -> list[str]:
    """Events a run with ``outcome`` fires, most specific first: ``["recovered", "ok"]`` when
    the previous run of the same job failed, degraded or breached and this one is ok. An
    outcome drkit does not know fires ``failed`` rather than nothing. ``running`` fires none."""
    if outcome == "running":
        return []
    event = OUTCOME_EVENTS.get(outcome, "failed")
    if event == "ok" and previous_outcome in BAD_OUTCOMES:
        return ["recovered", "ok"]
    return [event]


def notify(plan: Plan, event: str, payload: Mapping[str, Any]) -> list[str]:
    """Post ``event`` to every webhook of the plan whose ``on`` list holds it; return the
    problems (one line each, the URL never shown). Never raises."""
    return notify_events(plan, [event], payload)


def notify_events(plan: Plan, events: Sequence[str], payload: Mapping[str, Any]) -> list[str]:
    """Like ``notify`` for ``event_for``'s list: each webhook fires at most once, for the
    first of ``events`` it subscribes to (so ``recovered`` wins over ``ok``). Never raises."""
    problems: list[str] = []
    for index, webhook in enumerate(plan.notify, start=1):
        event = next((e for e in events if e in webhook.on), None)
        if event is None:
            continue
        try:
            problem = _post(plan, index, webhook, event, payload)
        except Exception as error:  # a notification bug must not break the job's report
            problem = f"webhook {index}: could not notify: {type(error).__name__}"
        if problem is not None:
            problems.append(f"notify {event}: {problem}")
    return warn(problems)


def _post(
    plan: Plan, index: int, webhook: Webhook, event: str, payload: Mapping[str, Any]
) -> str | None:
    endpoint = resolve_endpoint(f"webhook {index}", webhook.url)
    if not isinstance(endpoint, Endpoint):
        return endpoint
    document = make_document(plan, event, payload)
    if webhook.format == "slack":
        document = {"text": make_slack_text(document)}
    return send(endpoint, json.dumps(document, default=str).encode())


def make_document(plan: Plan, event: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON a ``format: json`` webhook receives."""
    errors = payload.get("errors") or []
    return {
        "plan": plan.name,
        "event": event,
        "job": payload.get("job"),
        "outcome": payload.get("outcome"),
        "summary": payload.get("summary") or "",
        "snapshot_id": payload.get("snapshot_id"),
        "errors": [str(error) for error in errors],
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "drkit_version": __version__,
    }


def make_slack_text(document: Mapping[str, Any]) -> str:
    """One message for Slack/Mattermost-style incoming webhooks."""
    mark = SLACK_MARKS.get(document["event"], ":grey_question:")
    job = document["job"] or "job"
    outcome = str(document["outcome"] or document["event"]).upper()
    lines = [f"{mark} drkit {document['plan']}: {job} {outcome} on {document['host']}"]
    if document["event"] == "recovered":
        lines[0] += " (recovered)"
    if document["summary"]:
        lines.append(str(document["summary"]))
    if document["snapshot_id"]:
        lines.append(f"snapshot {document['snapshot_id']}")
    lines.extend(f"• {error}" for error in document["errors"][:10])
    return "\n".join(lines)
