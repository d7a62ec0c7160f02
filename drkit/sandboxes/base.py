"""The Sandbox interface: a throwaway place a drill restores into, always torn down.

A sandbox is a context manager. Entering provisions it (a cluster started, a temporary folder
made) and, when entering fails half way, undoes what it did before raising. Leaving tears it
down on every path (success, exception, KeyboardInterrupt); a teardown failure is raised only
when nothing else is already propagating, otherwise it is logged so the real error stays
visible.
"""

from __future__ import annotations

import logging
import re
import secrets
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import urlsplit, urlunsplit

from drkit.errors import SandboxError
from drkit.plan.schema import SourceSpec
from drkit.sources.base import Target

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_SECONDS = 10


class Sandbox(Protocol):
    #: What kind of sandbox this is, for reports (``ephemeral-postgresql``, ``directory``, ...).
    kind: str

    def __enter__(self) -> Self:
        """Provision the sandbox; on failure undo any partial work, then raise SandboxError."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Tear everything down: processes stopped, databases dropped, folders removed."""
        ...

    def target_for(self, source: SourceSpec) -> Target:
        """An empty place in the sandbox for ``source``; SandboxError for a source type this
        sandbox cannot hold. Calling it twice for one source returns the same target."""
        ...

    def reader_target_for(self, source: SourceSpec) -> Target:
        """The same place for checks, after the restore: a database for a user that may read
        it and nothing else (no DDL, no DML, no other database), with a password of its own
        that is no secret of the plan; a path as it is."""
        ...

    def describe(self) -> str:
        """Where the sandbox is, for people; never a secret."""
        ...


def database_name_for(source_name: str) -> str:
    """A database name made of safe characters only (``orders-db`` -> ``orders_db``)."""
    return re.sub(r"[^a-z0-9_]", "_", source_name.lower())


def environment_name_for(source_name: str) -> str:
    """``DRKIT_SANDBOX_<SOURCE>_URL`` for a source, as command checks see it (with
    ``DRKIT_SANDBOX_<SOURCE>_PASSWORD`` beside it for a database)."""
    return f"DRKIT_SANDBOX_{re.sub(r'[^A-Z0-9]', '_', source_name.upper())}_URL"


def refuse_source_type(sandbox: Sandbox, source: SourceSpec) -> SandboxError:
    return SandboxError(f"a {sandbox.kind} sandbox cannot hold {source.type} source {source.name}")


def report_teardown_failure(error: SandboxError, *, while_failing: bool) -> None:
    """Raise ``error`` unless another exception is already on its way (then log it, so the
    original failure is the one the user sees)."""
    if not while_failing:
        raise error
    log.error("%s (%s)", error.message, error.hint)


def url_with_database(server_url: str, database: str) -> str:
    """``server_url`` (``postgresql://user@host:5432/``) pointing at ``database`` instead."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + database, fragment=""))


def new_scratch_database_name() -> str:
    """``drkit_drill_<random>``: unique per drill, recognisable if a teardown ever failed."""
    return f"drkit_drill_{secrets.token_hex(4)}"


def first_line(error: Exception) -> str:
    """The first line of a driver's error message (they can span several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
