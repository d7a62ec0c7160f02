"""The set of sandboxes one drill restores into, chosen from the plan's ``drill.sandbox``
settings: an ephemeral cluster or scratch databases for PostgreSQL, scratch databases for
MySQL, one temporary folder for SQLite and files sources."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from types import TracebackType
from typing import Self

from drkit.errors import SandboxError
from drkit.plan.schema import Plan, SourceSpec, secret
from drkit.sandboxes.base import Sandbox, environment_name_for
from drkit.sandboxes.ephemeral_postgres import EphemeralPostgres
from drkit.sandboxes.scratch_directory import ScratchDirectory
from drkit.sandboxes.scratch_mysql import ScratchMysql
from drkit.sandboxes.scratch_postgres import ScratchPostgres
from drkit.secrets import Secret
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
        self.sources = [
            source for source in plan.sources if source_names is None or source.name in source_names
        ]
        self.settings = plan.drill.sandbox
        self.postgresql_major = postgresql_major
        self.sandboxes: list[Sandbox] = []
        self.targets: dict[str, Target] = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Self:
        self._check_settings()
        password = self._password()
        with contextlib.ExitStack() as stack:
            by_family: dict[str, Sandbox] = {}
            for source in self.sources:
                family = SANDBOX_FAMILY[source.type]
                if family not in by_family:
                    by_family[family] = stack.enter_context(self._make(family, password))
                    self.sandboxes.append(by_family[family])
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
            self.sandboxes, self.targets = [], {}

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

    def _password(self) -> Secret | None:
        reference = secret(self.settings.password)
        return reference.resolve() if reference else None

    def _make(self, family: str, password: Secret | None) -> Sandbox:
        if family == "postgresql":
            if self.settings.postgresql == "ephemeral":
                return EphemeralPostgres(self.postgresql_major)
            return ScratchPostgres(self.settings.postgresql, password)
        if family == "mysql":
            assert self.settings.mysql is not None  # _check_settings saw to it
            return ScratchMysql(self.settings.mysql, password)
        return ScratchDirectory()

    def target_for(self, source: SourceSpec | str) -> Target:
        """The target of a source (by spec or name); KeyError for one not in this drill."""
        return self.targets[source if isinstance(source, str) else source.name]

    def environment(self) -> dict[str, str]:
        """``DRKIT_SANDBOX_<SOURCE>_URL`` per source (a database URL without password, or a
        path), plus ``DRKIT_SANDBOX_<SOURCE>_PASSWORD`` where the sandbox needs one. For a
        command check's environment only: the password is revealed here."""
        environment = {}
        for name, target in self.targets.items():
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
