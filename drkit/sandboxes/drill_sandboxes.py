"""The set of sandboxes one drill restores into, chosen from the plan's ``drill.sandbox``
settings: an ephemeral cluster or scratch databases for PostgreSQL, scratch databases for
MySQL, one temporary folder for SQLite and files sources. Checks get read-only targets and,
for command checks, an environment naming them: never the plan's own secrets."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from types import TracebackType
from typing import Self

from drkit.errors import SandboxError
from drkit.plan.schema import CommandCheck, Plan, SourceSpec, secret
from drkit.sandboxes.base import Sandbox, environment_name_for
from drkit.sandboxes.ephemeral_postgres import EphemeralPostgres
from drkit.sandboxes.scratch_directory import ScratchDirectory
from drkit.sandboxes.scratch_mysql import ScratchMysql
from drkit.sandboxes.scratch_postgres import ScratchPostgres
from drkit.sources.base import Target

#: Source type -> which sandbox holds it; sources of one family share one sandbox.
SANDBOX_FAMILY = {
    "postgresql": "postgresql",
    "mysql": "mysql",
    "sqlite": "directory",
    "files": "directory",
}


class DrillSandboxes:
    """Which target each source of a drill restores to, and the environment command checks
    see. A context manager: entering provisions every sandbox needed (undoing them all if one
    fails), leaving tears every one down, in reverse order, on every exit path."""

    def __init__(
        self,
        plan: Plan,
        source_names: Collection[str] | None = None,
        *,
        postgresql_major: str | None = None,
    ):
        self.plan = plan.name
        self.sources = [
            source for source in plan.sources if source_names is None or source.name in source_names
        ]
        self.settings = plan.drill.sandbox
        self.postgresql_major = postgresql_major
        # A command check needs URLs it can use, so the ephemeral cluster then listens on TCP.
        self.needs_tcp = any(isinstance(check, CommandCheck) for check in plan.drill.checks)
        self.sandboxes: list[Sandbox] = []
        self.targets: dict[str, Target] = {}
        self._holders: dict[str, Sandbox] = {}  # source name -> its sandbox
        self._readers: dict[str, Target] | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        self._check_settings()
        with contextlib.ExitStack() as stack:
            by_family: dict[str, Sandbox] = {}
            for source in self.sources:
                family = SANDBOX_FAMILY[source.type]
                if family not in by_family:
                    by_family[family] = stack.enter_context(self._make(family))
                    self.sandboxes.append(by_family[family])
                self._holders[source.name] = by_family[family]
                self.targets[source.name] = by_family[family].target_for(source)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._stack.__exit__(exc_type, exc, traceback)
        finally:
            self.sandboxes, self.targets, self._holders, self._readers = [], {}, {}, None

    def _check_settings(self) -> None:
        """Refuse before anything is provisioned when a source has nowhere to go."""
        for source in self.sources:
            if source.type == "mysql" and not self.settings.mysql:
                raise SandboxError(
                    f"source {source.name} is a MySQL database but the plan sets no "
                    "drill.sandbox.mysql",
                    hint="set drill.sandbox.mysql to a server URL where scratch databases "
                    "may be created, e.g. mysql://root@sandbox.internal:3306/",
                )

    def _make(self, family: str) -> Sandbox:
        password = secret(self.settings.password)
        if family == "postgresql":
            if self.settings.postgresql == "ephemeral":
                return EphemeralPostgres(self.postgresql_major, tcp=self.needs_tcp, plan=self.plan)
            return ScratchPostgres(self.settings.postgresql, password, plan=self.plan)
        if family == "mysql":
            assert self.settings.mysql is not None  # _check_settings saw to it
            return ScratchMysql(self.settings.mysql, password, plan=self.plan)
        return ScratchDirectory(plan=self.plan)

    def target_for(self, source: SourceSpec | str) -> Target:
        """The target of a source (by spec or name); KeyError for one not in this drill."""
        return self.targets[source if isinstance(source, str) else source.name]

    def reader_targets(self) -> dict[str, Target]:
        """Per source, its read-only target for checks (call after the restore: the readers
        are granted what is there by then)."""
        if self._readers is None:
            self._readers = {
                source.name: self._holders[source.name].reader_target_for(source)
                for source in self.sources
            }
        return dict(self._readers)

    def environment(self) -> dict[str, str]:
        """``DRKIT_SANDBOX_<SOURCE>_URL`` per source (a read-only user's database URL without
        password, or a path), plus ``DRKIT_SANDBOX_<SOURCE>_PASSWORD`` for a database: that
        user's random password, never the plan's. For a command check's environment only
        (the password is revealed here); call after the restore."""
        environment = {}
        for name, target in self.reader_targets().items():
            variable = environment_name_for(name)
            environment[variable] = target.location
            if target.password is not None:
                environment[variable.removesuffix("_URL") + "_PASSWORD"] = target.password.reveal()
        return environment

    def describe(self) -> list[str]:
        """One line per sandbox, for drill reports."""
        return [sandbox.describe() for sandbox in self.sandboxes]


def open_sandboxes(
    plan: Plan, source_names: Collection[str] | None = None, *, postgresql_major: str | None = None
) -> DrillSandboxes:
    """The sandboxes for a drill of ``plan`` (all its sources, or ``source_names``); use it in
    a ``with`` block, which provisions them and always tears them down."""
    return DrillSandboxes(plan, source_names, postgresql_major=postgresql_major)
