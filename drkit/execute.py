"""The one gateway through which drkit runs external programs (pg_dump, mariadb-dump, restic...).

Rules it enforces: argv lists only (never a shell); secrets travel in the child's environment,
never in argv; stderr is captured (tail kept for the error message, all of it logged at debug
level); a non-zero exit or a signal becomes a ``ToolError``; a missing binary becomes a
``MissingToolError`` with an install hint. Building an argv is the caller's pure function;
running it is this module's job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from drkit.errors import MissingToolError, ToolError

log = logging.getLogger(__name__)

INSTALL_HINTS = {
    "pg_dump": "install the PostgreSQL client (apt-get install postgresql-client)",
    "pg_restore": "install the PostgreSQL client (apt-get install postgresql-client)",
    "psql": "install the PostgreSQL client (apt-get install postgresql-client)",
    "initdb": "install the PostgreSQL server (apt-get install postgresql)",
    "pg_ctl": "install the PostgreSQL server (apt-get install postgresql)",
    "mariadb-dump": "install the MariaDB client (apt-get install mariadb-client)",
    "mysqldump": "install the MariaDB or MySQL client (apt-get install mariadb-client)",
    "mariadb": "install the MariaDB client (apt-get install mariadb-client)",
    "mysql": "install the MariaDB or MySQL client (apt-get install mariadb-client)",
    "restic": "install restic (apt-get install restic)",
}

# Debian keeps server binaries (initdb, pg_ctl) of each major version out of PATH.
EXTRA_SEARCH_GLOBS = ("/usr/lib/postgresql/*/bin",)
STDERR_TAIL_BYTES = 8192


@dataclass(frozen=True)
class Command:
    """An external program invocation: argv plus extra environment (where secrets go)."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    def describe(self) -> str:
        """The argv for logs; environment values are never shown."""
        names = f" (env: {', '.join(sorted(self.env))})" if self.env else ""
        return " ".join(self.argv) + names


def find_program(name: str, *, version_dir: str | None = None) -> str:
    """Absolute path of ``name``, or MissingToolError with an install hint.

    ``version_dir`` prefers a specific PostgreSQL major (e.g. "15") for server binaries.
    """
    if version_dir:
        candidate = Path(f"/usr/lib/postgresql/{version_dir}/bin/{name}")
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    for pattern in EXTRA_SEARCH_GLOBS:
        matches = sorted(Path("/").glob(pattern.lstrip("/") + f"/{name}"), reverse=True)
        if matches:
            return str(matches[0])
    raise MissingToolError(
        f"{name} not found", hint=INSTALL_HINTS.get(name, f"install {name} and put it on PATH")
    )


def has_program(name: str) -> bool:
    try:
        find_program(name)
    except MissingToolError:
        return False
    return True


def _environment(command: Command) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(command.env)
    # Child tools must speak plainly: no localized messages to parse, no pager.
    environment.setdefault("LC_MESSAGES", "C")
    environment["PAGER"] = "cat"
    return environment


def _resolve(command: Command) -> list[str]:
    program = command.argv[0]
    if "/" not in program:
        program = find_program(program)
    return [program, *command.argv[1:]]


def describe_exit(program: str, returncode: int, stderr_tail: str) -> str:
    """One line saying how a program ended, for ToolError messages."""
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
    last_line = next((line for line in reversed(stderr_tail.splitlines()) if line.strip()), "")
    return f"{Path(program).name} {how}" + (f": {last_line.strip()}" if last_line else "")


def run(
    command: Command,
    *,
    input_bytes: bytes | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run to completion, capturing stdout and stderr; raise ToolError on failure if ``check``."""
    argv = _resolve(command)
    log.debug("running %s", command.describe())
    try:
        completed = subprocess.run(
            argv,
            input=input_bytes,
            capture_output=True,
            env=_environment(command),
            cwd=command.cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(
            f"{Path(argv[0]).name} did not finish within {timeout:.0f}s",
            hint="the server may be overloaded or unreachable",
        ) from None
    stderr_text = completed.stderr.decode("utf-8", "replace")
    if stderr_text.strip():
        log.debug("%s stderr: %s", Path(argv[0]).name, stderr_text.strip()[-STDERR_TAIL_BYTES:])
    if check and completed.returncode != 0:
        raise ToolError(
            describe_exit(argv[0], completed.returncode, stderr_text[-STDERR_TAIL_BYTES:])
        )
    return completed


class Process:
    """A running program with piped stdin and/or stdout, for streaming dumps and restores.

    Use as a context manager: on an exception the child is killed and reaped; ``finish()``
    waits and raises ToolError if it failed. stderr is drained by a thread so the child never
    blocks on a full pipe.
    """

    def __init__(
        self,
        command: Command,
        *,
        stdin: bool = False,
        stdout: bool = True,
        stdout_file: IO[bytes] | None = None,
        stdin_file: IO[bytes] | None = None,
    ):
        self.command = command
        argv = _resolve(command)
        self.program = argv[0]
        log.debug("starting %s", command.describe())
        self._popen = subprocess.Popen(
            argv,
            stdin=stdin_file
            if stdin_file is not None
            else (subprocess.PIPE if stdin else subprocess.DEVNULL),
            stdout=stdout_file
            if stdout_file is not None
            else (subprocess.PIPE if stdout else subprocess.DEVNULL),
            stderr=subprocess.PIPE,
            env=_environment(command),
            cwd=command.cwd,
            start_new_session=True,  # Ctrl-C reaches drkit, which then stops children in order
        )
        self._stderr_tail = bytearray()
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def stdout(self) -> IO[bytes]:
        assert self._popen.stdout is not None
        return self._popen.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self._popen.stdin is not None
        return self._popen.stdin

    def _drain_stderr(self) -> None:
        assert self._popen.stderr is not None
        for line in self._popen.stderr:
            log.debug("%s: %s", Path(self.program).name, line.decode("utf-8", "replace").rstrip())
            self._stderr_tail.extend(line)
            if len(self._stderr_tail) > STDERR_TAIL_BYTES:
                del self._stderr_tail[: len(self._stderr_tail) - STDERR_TAIL_BYTES]

    @property
    def stderr_tail(self) -> str:
        return self._stderr_tail.decode("utf-8", "replace")

    def poll(self) -> int | None:
        return self._popen.poll()

    def finish(self, timeout: float | None = None) -> None:
        """Wait for exit; raise ToolError when the program failed or was killed."""
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._popen.stdin.close()
        returncode = self._popen.wait(timeout=timeout)
        self._stderr_thread.join(timeout=5)
        if returncode != 0:
            raise ToolError(describe_exit(self.program, returncode, self.stderr_tail))

    def kill(self) -> None:
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGKILL)
        self._popen.wait()
        self._stderr_thread.join(timeout=5)

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.kill()
        for stream in (self._popen.stdin, self._popen.stdout):
            if stream is not None and not stream.closed:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()
        if self._popen.poll() is None:
            self.kill()
