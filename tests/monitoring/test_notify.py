"""Webhooks: the JSON and Slack payloads reach a receiver on 127.0.0.1 only for the events each
webhook subscribes to; a broken or unreachable webhook is a one-line problem, never an
exception; a secret webhook URL never reaches a log line or a problem."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable

import pytest

from drkit import __version__
from drkit.monitoring.notify import event_for, notify, notify_events
from drkit.plan.schema import Plan
from tests.conftest import free_port

from .conftest import Receiver

PAYLOAD = {
    "job": "backup",
    "outcome": "failed",
    "summary": "0 of 2 stores hold the snapshot",
    "snapshot_id": "20240501T120000Z-ab12",
    "errors": ["east: store unavailable", "west: disk full"],
}


@pytest.mark.parametrize(
    ("previous", "outcome", "events"),
    [
        (None, "ok", ["ok"]),
        ("ok", "ok", ["ok"]),
        ("failed", "ok", ["recovered", "ok"]),
        ("degraded", "ok", ["recovered", "ok"]),
        ("breached", "ok", ["recovered", "ok"]),
        ("interrupted", "passed", ["recovered", "ok"]),
        ("ok", "failed", ["failed"]),
        ("ok", "interrupted", ["failed"]),
        ("ok", "error", ["failed"]),
        ("failed", "degraded", ["degraded"]),
        ("ok", "breached", ["objective_breached"]),
        ("ok", "running", []),
        ("ok", "something-new", ["failed"]),
    ],
)
def test_event_for_maps_outcomes_and_detects_recovery(
    previous: str | None, outcome: str, events: list[str]
) -> None:
    assert event_for(previous, outcome) == events


@pytest.fixture
def plan_with_two_webhooks(make_plan: Callable[..., Plan], receiver: Receiver) -> Plan:
    return make_plan(
        notify=[
            {"type": "webhook", "url": f"{receiver.url}/json", "on": ["failed"]},
            {
                "type": "webhook",
                "url": f"{receiver.url}/slack",
                "format": "slack",
                "on": ["failed", "recovered", "ok"],
            },
        ]
    )


def test_json_and_slack_webhooks_receive_their_payloads(
    plan_with_two_webhooks: Plan, receiver: Receiver
) -> None:
    assert notify(plan_with_two_webhooks, "failed", PAYLOAD) == []
    assert receiver.paths() == ["/json", "/slack"]
    json_request, slack_request = receiver.requests
    assert json_request.method == "POST" and json_request.content_type == "application/json"
    document = json.loads(json_request.body)
    assert set(document) == {
        "plan",
        "event",
        "job",
        "outcome",
        "summary",
        "snapshot_id",
        "errors",
        "time",
        "host",
        "drkit_version",
    }
    assert document["plan"] == "test-api" and document["event"] == "failed"
    assert {key: document[key] for key in PAYLOAD} == PAYLOAD
    assert document["host"] == socket.gethostname()
    assert document["drkit_version"] == __version__
    text = json.loads(slack_request.body)["text"]
    assert list(json.loads(slack_request.body)) == ["text"]
    assert "test-api: backup FAILED" in text and "east: store unavailable" in text
    assert PAYLOAD["snapshot_id"] in text


def test_events_a_webhook_does_not_subscribe_to_send_nothing(
    plan_with_two_webhooks: Plan, receiver: Receiver
) -> None:
    assert notify(plan_with_two_webhooks, "degraded", PAYLOAD) == []
    assert notify(plan_with_two_webhooks, "objective_breached", PAYLOAD) == []
    assert receiver.requests == []


def test_recovery_fires_each_webhook_once_with_the_most_specific_event(
    plan_with_two_webhooks: Plan, receiver: Receiver
) -> None:
    payload = {"job": "backup", "outcome": "ok", "summary": "2 of 2 stores"}
    assert notify_events(plan_with_two_webhooks, event_for("failed", "ok"), payload) == []
    [request] = receiver.requests  # the JSON webhook only listens for failed
    assert request.path == "/slack"
    assert "(recovered)" in json.loads(request.body)["text"]


def test_plan_without_webhooks_notifies_nobody(make_plan: Callable[..., Plan]) -> None:
    assert notify(make_plan(), "failed", PAYLOAD) == []


def test_unreachable_and_failing_webhooks_are_problems_not_exceptions(
    make_plan: Callable[..., Plan], receiver: Receiver
) -> None:
    receiver.statuses["/broken"] = 500
    plan = make_plan(
        notify=[
            {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook", "on": ["failed"]},
            {"type": "webhook", "url": f"{receiver.url}/broken", "on": ["failed"]},
            {"type": "webhook", "url": f"{receiver.url}/fine", "on": ["failed"]},
        ]
    )
    unreachable, failing = notify(plan, "failed", PAYLOAD)
    assert unreachable.startswith("notify failed: webhook 1 (127.0.0.1): unreachable")
    assert failing == "notify failed: webhook 2 (127.0.0.1): HTTP 500 Internal Server Error"
    assert receiver.paths() == ["/broken", "/fine"]  # one broken webhook does not stop the next


def test_secret_webhook_url_never_appears_in_problems_or_logs(
    make_plan: Callable[..., Plan],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "T0KEN-b7e1c9"
    receiver.statuses["/services"] = 403
    monkeypatch.setenv("ONCALL_WEBHOOK", f"{receiver.url}/services/{token}?key={token}k")
    monkeypatch.setenv("DOWN_WEBHOOK", f"http://127.0.0.1:{free_port()}/services/{token}")
    monkeypatch.setenv("ODD_WEBHOOK", f"ftp://example.com/{token}")
    plan = make_plan(
        notify=[
            {"type": "webhook", "url": "env:ONCALL_WEBHOOK", "format": "slack"},
            {"type": "webhook", "url": "env:DOWN_WEBHOOK"},
            {"type": "webhook", "url": "env:ODD_WEBHOOK"},
            {"type": "webhook", "url": "env:UNSET_WEBHOOK"},
        ]
    )
    problems = notify(plan, "failed", PAYLOAD)
    assert len(problems) == 4
    assert receiver.paths() == [f"/services/{token}?key={token}k"]  # the resolved URL was used
    assert problems[0] == "notify failed: webhook 1 (127.0.0.1): HTTP 403 Forbidden"
    assert "must start with http" in problems[2]
    assert "env:UNSET_WEBHOOK" in problems[3] and "not set" in problems[3]
    assert token not in "\n".join(problems)
    assert token not in caplog.text
    assert [record.levelname for record in caplog.records] == ["WARNING"] * 4
