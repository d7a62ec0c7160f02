"""A temporary folder for drills of SQLite and files sources."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from drkit.errors import SandboxError
from drkit.leases import registry
from drkit.leases.folders import make_leased_folder
from drkit.leases.registry import Lease
from drkit.plan.schema import SourceSpec
from drkit.sandboxes.base import refuse_source_type, report_teardown_failure
from drkit.sources.base import Target

PREFIX = "drkit-drill-"


class ScratchDirectory:
    """A private temporary folder (mode 0700, leased): ``<dir>/<source>.db`` for SQLite,
    ``<dir>/<source>`` for files. Removed with everything in it on exit."""

    kind = "directory"

    def __init__(self, *, plan: str | None = None) -> None:
        self.plan = plan
        self.path: Path | None = None
        self._lease: Lease | None = None

    def __enter__(self) -> Self:
        parent = Path(tempfile.gettempdir())
        self._lease, self.path = make_leased_folder(
            "directory", parent, PREFIX, "drill sandbox folder", plan=self.plan
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.path is None:
            return
        path, self.path = self.path, None
        try:
            shutil.rmtree(path)
        except OSError as error:
            failure = SandboxError(
                f"could not remove sandbox folder {path}: {error.strerror}",
                hint=f"remove it by hand (rm -rf {path}), or let the next drkit command do it",
            )
            report_teardown_failure(failure, while_failing=exc_type is not None)
            return
        if self._lease is not None:
            registry.release(self._lease)

    def target_for(self, source: SourceSpec) -> Target:
        if self.path is None:
            raise SandboxError("the sandbox folder is not provisioned (use it in a with block)")
        if source.type == "sqlite":
            return Target(str(self.path / f"{source.name}.db"))
        if source.type == "files":
            return Target(str(self.path / source.name))
        raise refuse_source_type(self, source)

    def reader_target_for(self, source: SourceSpec) -> Target:
        """The same path: SQLite checks open the file read-only."""
        return self.target_for(source)

    def describe(self) -> str:
        return f"temporary folder {self.path}"
