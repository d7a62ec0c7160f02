"""Per-store trust (DESIGN promise 4): a store's copy of a snapshot counts only once that
store's own manifest authenticates, matches what the catalog recorded at backup time, and is
the same sealed manifest as every other store's (it is sealed once and written everywhere).

A store that cannot prove the snapshot is failed over, in one line, never trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from drkit.errors import (
    DrkitError,
    IntegrityError,
    KeyUnavailableError,
    StoreError,
    StoreFull,
    StoreUnavailable,
    describe_failure,
)
from drkit.repository.manifest import OpenedManifest
from drkit.repository.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class SnapshotCopies:
    """The copies of ``snapshot_id`` in ``stores`` (in the order to try them).

    ``expected`` maps a store to the manifest hash the catalog recorded for its copy."""

    repository: Repository
    snapshot_id: str
    stores: list[str]
    expected: Mapping[str, str | None] = field(default_factory=dict)
    #: store -> why its copy is not trusted (one line each)
    failures: dict[str, str] = field(default_factory=dict)
    #: stores found unreachable: not asked again during this command
    unreachable: dict[str, str] = field(default_factory=dict)
    _proven: dict[str, OpenedManifest] = field(default_factory=dict)
    _errors: dict[str, DrkitError] = field(default_factory=dict)

    @property
    def reference(self) -> OpenedManifest | None:
        """The first manifest proven, in store order: the one every other copy must equal."""
        for name in self.stores:
            if name in self._proven:
                return self._proven[name]
        return None

    def prove(self, name: str) -> OpenedManifest | None:
        """The store's manifest when it proves the snapshot, else None (reason in
        ``failures``). Each store is asked once."""
        if name in self._proven:
            return self._proven[name]
        if name in self.failures:
            return None
        try:
            opened = self.repository.open_manifest(
                self.repository.store(name),
                self.snapshot_id,
                expected_sha256=self.expected.get(name),
            )
            reference = self.reference
            if reference is not None and opened.sha256 != reference.sha256:
                raise IntegrityError(
                    f"store {name}: manifest of {self.snapshot_id} differs from the other stores'"
                )
        except (StoreError, IntegrityError, KeyUnavailableError) as error:
            self._fail(name, error)
            return None
        self._proven[name] = opened
        return opened

    def _fail(self, name: str, error: DrkitError) -> None:
        reason = describe_failure(error).removeprefix(f"store {name}: ")
        self.failures[name] = reason
        self._errors[name] = error
        if isinstance(error, StoreUnavailable) and not isinstance(error, StoreFull):
            self.unreachable[name] = reason
        log.warning("store %s cannot prove snapshot %s: %s", name, self.snapshot_id, reason)

    def first_proven(self) -> OpenedManifest:
        """The first manifest that proves the snapshot, failing over store by store; raises
        one error naming every store when none does."""
        for name in self.stores:
            opened = self.prove(name)
            if opened is not None:
                if self.failures:
                    log.warning("using the manifest of %s from store %s", self.snapshot_id, name)
                return opened
        raise self.no_copy_error(f"no store proves snapshot {self.snapshot_id}")

    def no_copy_error(self, summary: str) -> DrkitError:
        """The error for "no store could deliver": integrity (7) when any store answered with
        damaged or forged data, key (8) when only keys failed, else unavailable (6)."""
        detail = "; ".join(f"{name}: {reason}" for name, reason in self.failures.items())
        message = f"{summary}: {detail}" if detail else summary
        errors: Sequence[DrkitError] = list(self._errors.values())
        if any(isinstance(error, IntegrityError) for error in errors):
            return IntegrityError(
                message,
                hint="check the copies with `drkit verify PLAN --all`; an older snapshot may be "
                "intact (`drkit snapshots PLAN`)",
            )
        if errors and all(isinstance(error, KeyUnavailableError) for error in errors):
            # the same keys fail the same way in every store: say it once
            reasons = dict.fromkeys(
                error.message.removeprefix("no configured key opens the artifact ")
                for error in errors
            )
            return KeyUnavailableError(
                f"no configured key opens snapshot {self.snapshot_id} " + "; ".join(reasons)
            )
        return StoreUnavailable(message)
