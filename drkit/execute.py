"""The one gateway through which drkit runs external programs (pg_dump, mariadb-dump, restic...).

Rules it enforces: argv lists only (never a shell); every child's environment is built here,
from an allowlist (``INHERITED``) plus what its Command names, and nothing else of drkit's
environment, where the plan's ``env:`` secrets live, passes through; a secret reaches a tool
through a private file (mode 0600 in a 0700 folder, removed when the tool exits) whose path the
tool finds in a variable (PGPASSFILE, RESTIC_PASSWORD_FILE, ...), never through argv or the
environment; stderr is captured (tail kept for the error message, all of it logged at debug
level); a non-zero exit or a signal becomes a ``ToolError``; a missing binary becomes a
``MissingToolError`` with an install hint. Building a Command is the caller's pure function;
running it is this module's job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import IO

from drkit.errors import MissingToolError, ToolError
from drkit.leases.folders import private_directory
from drkit.leases.processes import end_process_group, end_processes, processes_marked
from drkit.leases.scratch import owner_marker
from drkit.secrets import Secret, is_resolved_secret

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

#: Debian keeps each PostgreSQL major's programs (initdb, pg_ctl, a pg_dump per major) here,
#: out of PATH, as /usr/lib/postgresql/<major>/bin.
POSTGRESQL_LIB = Path("/usr/lib/postgresql")
STDERR_TAIL_BYTES = 8192


#: What every child inherits from drkit's environment, when set: where programs are, the
#: language, time zone and home folder. TMPDIR is set to drkit's own temporary folder.
INHERITED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ")
INHERITED_PREFIXES = ("LC_",)
#: Settings a tool talking to a remote server over HTTP may need (a proxy, a private CA);
#: a Command lists them in ``inherit`` when it does.
NETWORK_SETTINGS = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


@dataclass(frozen=True)
class Command:
    """An external program invocation.

    ``env`` holds plain settings for the tool (never secrets). ``secret_files`` maps a variable
    to a secret: the gateway writes the secret to a private file for the tool's lifetime and
    sets the variable to its path (``{"PGPASSFILE": Secret("*:*:*:*:pw")}``). ``inherit`` names
    variables beyond ``INHERITED`` that the tool may take from drkit's environment.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    secret_files: Mapping[str, Secret] = field(default_factory=dict)
    inherit: tuple[str, ...] = ()

    def describe(self) -> str:
        """The argv for logs; environment values and secrets are never shown."""
        names = sorted({*self.env, *self.secret_files})
        return " ".join(self.argv) + (f" (env: {', '.join(names)})" if names else "")


def find_program(name: str, *, version_dir: str | None = None) -> str:
    """Absolute path of ``name``, or MissingToolError with an install hint.

    ``version_dir`` prefers a specific PostgreSQL major (e.g. "15") for server binaries.
    """
    if version_dir:
        candidate = POSTGRESQL_LIB / version_dir / "bin" / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    matches = sorted(POSTGRESQL_LIB.glob(f"*/bin/{name}"), key=_major_of, reverse=True)
    if matches:
        return str(matches[0])
    raise MissingToolError(
        f"{name} not found", hint=INSTALL_HINTS.get(name, f"install {name} and put it on PATH")
    )


def _major_of(path: Path) -> int:
    """The major version folder a program sits in (numerically: 17 sorts after 9)."""
    folder = path.parent.parent.name
    return int(folder) if folder.isdigit() else -1


def has_program(name: str) -> bool:
    try:
        find_program(name)
    except MissingToolError:
        return False
    return True


def child_environment(command: Command, secret_paths: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a child: the allowlist, drkit's temporary folder and owner
    marker, the Command's settings, and the paths of its secret files. Nothing else."""
    allowed = {*INHERITED, *command.inherit}
    environment = {
        name: value
        for name, value in os.environ.items()
        if (name in allowed or name.startswith(INHERITED_PREFIXES))
        and not is_resolved_secret(value)  # a plan's secret, whatever its variable's name
    }
    environment["TMPDIR"] = tempfile.gettempdir()
    environment.update(owner_marker())
    # Child tools must speak plainly: no localized messages to parse, no pager.
    environment.setdefault("LC_MESSAGES", "C")
    environment["PAGER"] = "cat"
    environment.update(command.env)
    environment.update(secret_paths)
    return environment


@contextlib.contextmanager
def secret_files(command: Command) -> Iterator[dict[str, str]]:
    """Write the Command's secrets to private files for as long as the block runs: variable
    -> path. The folder is leased, so a crash leaves nothing the next command misses."""
    if not command.secret_files:
        yield {}
        return
    with private_directory("drkit-secrets-") as folder:
        paths = {}
        for variable, secret in command.secret_files.items():
            path = folder / variable.lower()
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(secret.reveal())
            paths[variable] = str(path)
        yield paths


def _resolve(command: Command) -> list[str]:
    check_arguments(command.argv)
    program = command.argv[0]
    if "/" not in program:
        program = find_program(program)
    return [program, *command.argv[1:]]


def check_arguments(argv: tuple[str, ...]) -> None:
    """ToolError for an argument no program can receive: a NUL byte ends a C string."""
    for position, argument in enumerate(argv):
        if "\0" in argument:
            name = Path(argv[0].replace("\0", "")).name
            raise ToolError(
                f"argument {position} of command {name} holds a NUL byte, "
                "which no program can receive",
                hint="remove the NUL character from the command in the plan",
            )


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
        with secret_files(command) as paths:
            completed = subprocess.run(
                argv,
                input=input_bytes,
                capture_output=True,
                env=child_environment(command, paths),
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
        self._secrets = contextlib.ExitStack()
        with self._secrets as cleanup:  # on failure to start, the secret files go at once
            self._popen = subprocess.Popen(
                argv,
                stdin=stdin_file
                if stdin_file is not None
                else (subprocess.PIPE if stdin else subprocess.DEVNULL),
                stdout=stdout_file
                if stdout_file is not None
                else (subprocess.PIPE if stdout else subprocess.DEVNULL),
                stderr=subprocess.PIPE,
                env=child_environment(command, cleanup.enter_context(secret_files(command))),
                cwd=command.cwd,
                start_new_session=True,  # Ctrl-C reaches drkit, which stops children in order
            )
            self._secrets = cleanup.pop_all()
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
        self._secrets.close()
        self._stderr_thread.join(timeout=5)
        if returncode != 0:
            raise ToolError(describe_exit(self.program, returncode, self.stderr_tail))

    def kill(self) -> None:
        if self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signal.SIGKILL)
        self._popen.wait()
        self._secrets.close()
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
        self._secrets.close()


#: the environment variable marking every process of one contained run (see run_contained)
CONTAINED_VARIABLE = "DRKIT_CONTAINED"


def run_contained(command: Command, *, timeout: float) -> tuple[int | None, str]:
    """Run a program drkit does not control (a plan's command check) to its end or its
    ``timeout``: in a process group of its own, with a marker in its environment that its
    descendants inherit. Either way, the whole group and every marked process that left it
    (a daemonized grandchild) are ended before this returns, so nothing of it outlives it.
    Returns its exit status (None when time ran out) and the tail of its stderr."""
    marker = secrets.token_hex(8)
    marked = replace(command, env={**command.env, CONTAINED_VARIABLE: marker})
    process = Process(marked, stdout=False)
    deadline = time.monotonic() + timeout
    try:
        while (returncode := process.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        end_process_group(process.pid)
        end_processes(processes_marked(CONTAINED_VARIABLE, marker))
        process.kill()
    return returncode, process.stderr_tail
