"""Preflight of stores: each answers and can be written, proven by the store's own probe,
which leaves nothing behind (a probe file or object written, read back and removed)."""

from __future__ import annotations

from drkit.errors import DrkitError, MissingToolError
from drkit.execute import find_program
from drkit.plan.schema import StoreSpec
from drkit.preflight.finding import Finding, failed, passed, skipped
from drkit.stores import make_store
from drkit.stores.base import Store

#: a preflight is meant to take seconds: one attempt, short timeouts
S3_CONNECT_TIMEOUT_SECONDS = 5
S3_READ_TIMEOUT_SECONDS = 15


def make_probe_store(spec: StoreSpec) -> Store:
    """The store of ``spec``, without retries and (for S3) with short timeouts."""
    if spec.type == "s3":
        from drkit.plan.schema import S3Store as S3Spec
        from drkit.stores.s3 import S3Store

        assert isinstance(spec, S3Spec)
        return S3Store(
            spec,
            connect_timeout=S3_CONNECT_TIMEOUT_SECONDS,
            read_timeout=S3_READ_TIMEOUT_SECONDS,
            max_attempts=1,
        )
    return make_store(spec)


def check_store(spec: StoreSpec, *, probe: bool) -> Finding:
    """The store's program is installed (restic), and with ``probe`` the store answers and
    takes a write."""
    owner = f"store:{spec.name}"
    if spec.type == "restic":
        try:
            find_program("restic")
        except MissingToolError as error:
            return failed("store", spec.name, error, owner=owner)
    if not probe:
        return skipped("store", spec.name, "not contacted before a command", owner=owner)
    try:
        store = make_probe_store(spec)
        subject = f"{spec.name} ({store.describe()})"
        prober = store.abilities().prober
        if prober is None:
            return skipped("store", subject, "this kind of store has no probe", owner=owner)
        detail = prober.probe()
    except DrkitError as error:
        return failed("store", spec.name, error, owner=owner)
    return passed("store", subject, detail, owner=owner)
