"""A temporary folder for drills of SQLite and files sources."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from drkit.errors import SandboxError
from drkit.plan.schema import SourceSpec
from drkit.sandboxes.base import refuse_source_type, report_teardown_failure
from drkit.sources.base import Target


class ScratchDirectory:
    """A private temporary folder: ``<dir>/<source>.db`` for SQLite, ``<dir>/<source>`` for
    files. Removed with everything in it on exit."""

    kind = "directory"

    def __init__(self) -> None:
        self.path: Path | None = None

    def __enter__(self) -> Self:
        self.path = Path(tempfile.mkdtemp(prefix="drkit-drill-"))
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
                hint=f"remove it by hand: rm -rf {path}",
            )
            report_teardown_failure(failure, while_failing=exc_type is not None)

    def target_for(self, source: SourceSpec) -> Target:
        if self.path is None:
            raise SandboxError("the sandbox folder is not provisioned (use it in a with block)")
        if source.type == "sqlite":
            return Target(str(self.path / f"{source.name}.db"))
        if source.type == "files":
            return Target(str(self.path / source.name))
        raise refuse_source_type(self, source)

    def describe(self) -> str:
        return f"temporary folder {self.path}"
