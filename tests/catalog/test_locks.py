"""Plan locks: one live lease per plan, expired leases taken over, races with one winner."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from drkit.catalog import Catalog, LockInfo
from drkit.errors import LockHeldError

from .conftest import FakeClock


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    """Poll until ``condition`` holds (for the heartbeat thread); False on giving up."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_second_acquirer_gets_lock_held_error_naming_holder_and_expiry(
    catalog: Catalog, clock: FakeClock
) -> None:
    info = catalog.acquire_lock("api", "host-a:100:aaaa", 60)
    assert (info.owner, info.expires_at, info.took_over_from) == (
        "host-a:100:aaaa",
        clock.now + timedelta(seconds=60),
        None,
    )
    with pytest.raises(LockHeldError) as raised:
        catalog.acquire_lock("api", "host-b:200:bbbb", 60)
    assert "host-a:100:aaaa" in raised.value.message
    assert f"{info.expires_at:%Y-%m-%d %H:%M:%S}" in raised.value.message
    assert "expires in 60s" in raised.value.message
    assert catalog.acquire_lock("billing", "host-b:200:bbbb", 60).owner == "host-b:200:bbbb"


def test_expired_lease_is_taken_over_and_says_from_whom(catalog: Catalog, clock: FakeClock) -> None:
    catalog.acquire_lock("api", "host-a:100:aaaa", 30)
    clock.advance(31)
    info = catalog.acquire_lock("api", "host-b:200:bbbb", 30)
    assert (info.owner, info.took_over_from, info.acquired_at) == (
        "host-b:200:bbbb",
        "host-a:100:aaaa",
        clock.now,
    )
    with pytest.raises(LockHeldError, match="lost the lock"):
        catalog.heartbeat("api", "host-a:100:aaaa", 30)
    assert catalog.release_lock("api", "host-a:100:aaaa") is False
    current = catalog.read_lock("api")
    assert current is not None and current.owner == "host-b:200:bbbb"


def test_heartbeat_extends_and_reacquire_by_holder_keeps_acquired_at(
    catalog: Catalog, clock: FakeClock
) -> None:
    first = catalog.acquire_lock("api", "me", 30)
    clock.advance(20)
    renewed = catalog.heartbeat("api", "me", 30)
    assert (renewed.heartbeat_at, renewed.expires_at) == (
        clock.now,
        clock.now + timedelta(seconds=30),
    )
    clock.advance(20)  # past the first lease, within the renewed one
    with pytest.raises(LockHeldError):
        catalog.acquire_lock("api", "other", 30)
    again = catalog.acquire_lock("api", "me", 30)
    assert (again.acquired_at, again.took_over_from) == (first.acquired_at, None)


def test_released_lock_can_be_taken_by_another_runner(catalog: Catalog) -> None:
    catalog.acquire_lock("api", "me", 600)
    assert catalog.release_lock("api", "me") is True
    assert catalog.read_lock("api") is None
    assert catalog.acquire_lock("api", "other", 600).took_over_from is None


def race_for_lock(runners: list[Catalog], plan: str) -> tuple[list[LockInfo], list[str]]:
    """Every runner tries to take ``plan`` at the same moment; returns (won, refused messages)."""
    won: list[LockInfo] = []
    refused: list[str] = []
    barrier = threading.Barrier(len(runners))

    def acquire(runner: Catalog, owner: str) -> None:
        barrier.wait()
        try:
            won.append(runner.acquire_lock(plan, owner, 600))
        except LockHeldError as error:
            refused.append(error.message)

    threads = [
        threading.Thread(target=acquire, args=(runner, f"runner-{index}"))
        for index, runner in enumerate(runners)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, refused


def test_concurrent_acquires_from_two_runners_have_exactly_one_winner(
    catalog_url: str, clock: FakeClock
) -> None:
    runners = [Catalog.open(catalog_url, clock=clock) for _ in range(2)]
    try:
        for round_number in range(5):
            plan = f"plan-{round_number}"
            won, refused = race_for_lock(runners, plan)
            assert (len(won), len(refused)) == (1, 1)
            assert won[0].owner in refused[0]
            current = runners[0].read_lock(plan)
            assert current is not None and current.owner == won[0].owner
    finally:
        for runner in runners:
            runner.close()


def test_concurrent_takeover_of_an_expired_lease_has_exactly_one_winner(
    catalog_url: str, clock: FakeClock
) -> None:
    runners = [Catalog.open(catalog_url, clock=clock) for _ in range(2)]
    try:
        runners[0].acquire_lock("api", "stalled", 30)
        clock.advance(31)
        won, refused = race_for_lock(runners, "api")
        assert (len(won), len(refused)) == (1, 1)
        assert won[0].took_over_from == "stalled"
    finally:
        for runner in runners:
            runner.close()


def test_hold_lock_renews_in_the_background_and_releases_after(
    catalog: Catalog, clock: FakeClock
) -> None:
    with catalog.hold_lock("api", lease_seconds=0.3) as lease:
        first_expiry = lease.info.expires_at
        clock.advance(0.2)
        renewed = wait_for(lambda: lease.info.expires_at > first_expiry)
        assert renewed, "the heartbeat thread never renewed the lease"
        with pytest.raises(LockHeldError):
            catalog.acquire_lock("api", "someone-else", 60)
        lease.check()
    assert catalog.read_lock("api") is None


def test_hold_lock_notices_a_lost_lease_and_leaves_the_new_holder_alone(
    catalog: Catalog, clock: FakeClock
) -> None:
    with catalog.hold_lock("api", lease_seconds=0.3) as lease:
        clock.advance(600)  # the heartbeat stalled far past the lease
        catalog.acquire_lock("api", "rescuer", 600)
        assert wait_for(lambda: lease.lost is not None), "the lost lease went unnoticed"
        with pytest.raises(LockHeldError, match="rescuer"):
            lease.check()
    current = catalog.read_lock("api")
    assert current is not None and current.owner == "rescuer"


def test_a_live_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(
    catalog: Catalog, clock: FakeClock
) -> None:
    host = socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process now
    catalog.acquire_lock("api", f"{host}:{dead.pid}:dead", 600)
    info = catalog.acquire_lock("api", f"{host}:{os.getpid()}:next", 600)
    assert (info.owner, info.took_over_from) == (
        f"{host}:{os.getpid()}:next",
        f"{host}:{dead.pid}:dead",
    )

    # a live process on this host, and any process on another host, keep their lease
    catalog.acquire_lock("live", f"{host}:{os.getppid()}:live", 600)
    catalog.acquire_lock("remote", f"elsewhere-{host}:{dead.pid}:far", 600)
    for plan in ("live", "remote"):
        with pytest.raises(LockHeldError):
            catalog.acquire_lock(plan, f"{host}:{os.getpid()}:next", 600)
