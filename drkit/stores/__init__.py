"""Stores: places that hold opaque objects by key (``drkit.stores.base.Store``).

Implementations, one module each: ``filesystem`` (a local or NFS folder), ``s3`` (any
S3-compatible bucket; the only module importing boto3), ``restic`` (a restic repository through
the restic binary) and ``memory`` (an in-memory fake for fast unit tests). Cross-cutting
behaviour wraps a Store in a Store: ``retry`` (backoff on StoreUnavailable) and ``faults``
(injected failures, for tests).

Keys are ``/``-separated relative paths (``plan/snapshots/ID/source.drkit``); every store
refuses absolute keys and ``..`` or empty parts with ValueError (``check_key``), so a key means
the same object everywhere. ``make_store`` builds a store from its plan spec through an explicit
name -> factory table; each factory imports its module only when used, so boto3 loads only for
plans with an S3 store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drkit.plan.schema import Plan, StoreSpec
    from drkit.stores.base import Store


def check_key(key: str) -> str:
    """Return ``key`` when it is a valid store key; raise ValueError otherwise."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid store key {key!r}: expected a relative '/'-separated path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid store key {key!r}: empty, '.' or '..' parts are not allowed")
    if any(character in key for character in "\r\n"):
        raise ValueError(f"invalid store key {key!r}: line breaks are not allowed")
    return key


def _make_filesystem(spec: StoreSpec) -> Store:
    from drkit.plan.schema import FilesystemStore as FilesystemSpec
    from drkit.stores.filesystem import FilesystemStore

    assert isinstance(spec, FilesystemSpec)
    return FilesystemStore(spec)


def _make_s3(spec: StoreSpec) -> Store:
    from drkit.plan.schema import S3Store as S3Spec
    from drkit.stores.s3 import S3Store

    assert isinstance(spec, S3Spec)
    return S3Store(spec)


def _make_restic(spec: StoreSpec) -> Store:
    from drkit.plan.schema import ResticStore as ResticSpec
    from drkit.stores.restic import ResticStore

    assert isinstance(spec, ResticSpec)
    return ResticStore(spec)


#: store type (the plan's ``type:``) -> factory
STORE_FACTORIES: dict[str, Callable[[StoreSpec], Store]] = {
    "filesystem": _make_filesystem,
    "s3": _make_s3,
    "restic": _make_restic,
}


def make_store(spec: StoreSpec) -> Store:
    """The store a plan's store spec describes (not wrapped; see ``make_stores``)."""
    try:
        factory = STORE_FACTORIES[spec.type]
    except KeyError:
        raise ValueError(f"unknown store type {spec.type!r}") from None
    return factory(spec)


def make_stores(plan: Plan) -> list[Store]:
    """Every store of ``plan``, in plan order, each retrying transient failures."""
    from drkit.stores.retry import RetryingStore

    return [RetryingStore(make_store(spec)) for spec in plan.stores]
