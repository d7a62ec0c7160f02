"""Dead-man pings: ``monitored`` hits URL/start then URL on success, URL/fail on an exception
or a failing outcome, re-raises the job's own error untouched, and an unreachable monitor
never hides or replaces that error."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from drkit.errors import StoreUnavailable
from drkit.monitoring.healthcheck import monitored, ping
from drkit.plan.schema import Plan
from tests.conftest import free_port

from .conftest import Receiver


@pytest.fixture
def watched_plan(make_plan: Callable[..., Plan], receiver: Receiver) -> Plan:
    return make_plan(healthcheck={"url": f"{receiver.url}/ping/abc-123/"})


def test_successful_job_pings_start_then_success(watched_plan: Plan, receiver: Receiver) -> None:
    with monitored(watched_plan, "backup") as monitor:
        monitor.summary = "2 of 2 stores"
    assert monitor.problems == []
    assert receiver.paths() == ["/ping/abc-123/start", "/ping/abc-123"]
    assert [r.method for r in receiver.requests] == ["POST", "POST"]
    assert receiver.requests[1].body == b"drkit backup test-api: ok: 2 of 2 stores"


def test_exception_pings_fail_and_propagates_unchanged(
    watched_plan: Plan, receiver: Receiver
) -> None:
    error = StoreUnavailable("store east: connection refused")
    with pytest.raises(StoreUnavailable) as raised, monitored(watched_plan, "backup"):
        raise error
    assert raised.value is error
    assert receiver.paths() == ["/ping/abc-123/start", "/ping/abc-123/fail"]
    assert receiver.requests[1].body == (
        b"drkit backup test-api: failed: store east: connection refused"
    )


def test_foreign_exception_reports_only_its_type(watched_plan: Plan, receiver: Receiver) -> None:
    with pytest.raises(RuntimeError), monitored(watched_plan, "drill"):
        raise RuntimeError("password=hunter2 leaked by a library")
    assert receiver.requests[1].body == b"drkit drill test-api: failed: RuntimeError"


def test_interruption_pings_fail_and_still_propagates(
    watched_plan: Plan, receiver: Receiver
) -> None:
    with pytest.raises(KeyboardInterrupt), monitored(watched_plan, "backup"):
        raise KeyboardInterrupt
    assert receiver.paths()[-1] == "/ping/abc-123/fail"
    assert receiver.requests[-1].body.startswith(b"drkit backup test-api: interrupted")


@pytest.mark.parametrize(
    ("outcome", "last"), [("degraded", "/fail"), ("failed", "/fail"), ("passed", "")]
)
def test_outcome_set_by_the_job_decides_success_or_fail(
    watched_plan: Plan, receiver: Receiver, outcome: str, last: str
) -> None:
    with monitored(watched_plan, "backup") as monitor:
        monitor.outcome = outcome
    assert receiver.paths() == ["/ping/abc-123/start", f"/ping/abc-123{last}"]


def test_unreachable_monitor_never_hides_the_jobs_error(
    make_plan: Callable[..., Plan], caplog: pytest.LogCaptureFixture
) -> None:
    plan = make_plan(healthcheck={"url": f"http://127.0.0.1:{free_port()}/ping/x"})
    with pytest.raises(StoreUnavailable, match="east down"), monitored(plan, "backup") as monitor:
        raise StoreUnavailable("east down")
    assert len(monitor.problems) == 2
    assert monitor.problems[0].startswith("ping start: healthcheck (127.0.0.1): unreachable")
    assert monitor.problems[1].startswith("ping fail: healthcheck (127.0.0.1): unreachable")
    with monitored(plan, "backup") as monitor:  # and a clean job stays clean
        pass
    assert monitor.outcome == "ok" and len(monitor.problems) == 2


def test_secret_ping_url_keeps_its_query_and_stays_out_of_logs(
    make_plan: Callable[..., Plan],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses["/"] = 404
    monkeypatch.setenv("HC_URL", f"{receiver.url}/ping/SECRET-UUID?create=1")
    plan = make_plan(healthcheck={"url": "env:HC_URL"})
    [problem] = ping(plan, "fail", "drill failed")
    assert receiver.paths() == ["/ping/SECRET-UUID/fail?create=1"]
    assert receiver.requests[0].body == b"drill failed"
    assert problem == "ping fail: healthcheck (127.0.0.1): HTTP 404 Not Found"
    assert "SECRET-UUID" not in caplog.text


def test_plan_without_healthcheck_pings_nothing(make_plan: Callable[..., Plan]) -> None:
    assert ping(make_plan(), "start") == []
    with monitored(make_plan(), "verify") as monitor:
        pass
    assert monitor.problems == []
