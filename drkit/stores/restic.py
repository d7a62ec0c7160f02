"""A Store in a restic repository (any restic backend), through the restic binary.

restic encrypts with its own key, so this store receives the raw (plaintext) stream and its
deduplication works across snapshots (``wants_plaintext``). Each object is one restic
snapshot, made with ``restic backup --stdin --stdin-filename <key> --tag drkit --host drkit``;
the newest restic snapshot whose path is ``/<key>`` holds the object. ``delete`` forgets
snapshots without pruning; ``compact()`` runs ``restic prune`` to reclaim the space.

Restoring an artifact without drkit takes one plain restic command (restic 0.14+)::

    restic -r REPO dump --path /<plan>/snapshots/<id>/<source>.<ext> latest \\
        /<plan>/snapshots/<id>/<source>.<ext> > file

(``--path`` matters: every object is its own restic snapshot, so plain ``latest`` is merely
the newest object written, usually a manifest.) An empty object is recorded by restic 0.14
as a snapshot without the file; this store tags it ``drkit-empty`` and reads it back as empty.

The password, the repository (which may hold credentials) and S3 credentials reach restic in
private files the gateway removes when restic exits (RESTIC_PASSWORD_FILE,
RESTIC_REPOSITORY_FILE, AWS_SHARED_CREDENTIALS_FILE); neither argv nor the environment ever
holds a secret. S3 credentials are the store's own, else the AWS_* ones drkit runs with;
without either, restic finds its own (a profile, an instance role). Of drkit's environment
restic sees only what the gateway lets every tool see, network settings, and
RESTIC_SETTINGS. restic keeps its metadata cache in its per-user default
(``~/.cache/restic``, or RESTIC_CACHE_DIR), or in ``cache_dir`` when given.

A put whose stream fails stops restic with SIGINT before its stdin is closed: restic then
removes its lock and exits without saving a snapshot (closing stdin would save a truncated
one; SIGKILL would leave a stale lock that blocks ``forget`` and ``prune``).
"""

from __future__ import annotations

import builtins
import enum
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from subprocess import CompletedProcess
from typing import IO, Any

from drkit.errors import (
    IntegrityError,
    MissingToolError,
    ObjectNotFound,
    StoreError,
    StoreFull,
    StoreUnavailable,
    ToolError,
)
from drkit.execute import NETWORK_SETTINGS, Command, Process, run
from drkit.plan.schema import ResticStore as ResticSpec
from drkit.secrets import Secret, SecretRef
from drkit.stores import check_key
from drkit.stores.base import Abilities, creation_folder

TAG = "drkit"
#: objects this big or bigger report the bytes the repository holds for them (restic stats
#: --mode raw-data: compressed, encrypted, deduplicated blobs); smaller ones (manifests,
#: evidence records) their plaintext size, sparing a restic run (and its key derivation) each
STORED_SIZE_THRESHOLD = 64 << 10
EMPTY_TAG = "drkit-empty"
HOST = "drkit"
log = logging.getLogger(__name__)
CHUNK_SIZE = 1024 * 1024
STOP_TIMEOUT_SECONDS = 30.0
PARTIAL_EXIT = 3  # restic: snapshot saved, but some input could not be read
SAVED_SNAPSHOT = re.compile(r"^snapshot [0-9a-f]+ saved$", re.MULTILINE)


class Failure(enum.Enum):
    """What a failed restic command means, read from its stderr (restic 0.14 has no
    distinct exit codes for these)."""

    WRONG_PASSWORD = "wrong password"
    LOCKED = "locked"
    FULL = "full"
    UNREACHABLE = "unreachable"
    ACCESS_DENIED = "access denied"
    MISSING_REPOSITORY = "missing repository"
    NO_SNAPSHOT = "no snapshot"
    NOT_IN_SNAPSHOT = "not in snapshot"
    DAMAGED = "damaged"
    OTHER = "other"


#: stderr fragments (lower case, "|"-separated) per failure, in the order they are tried
FAILURE_MARKERS: tuple[tuple[Failure, str], ...] = (
    (Failure.WRONG_PASSWORD, "wrong password or no key found"),
    (Failure.LOCKED, "repository is already locked|unable to create lock"),
    (Failure.FULL, "no space left on device|disk quota exceeded"),
    (
        Failure.UNREACHABLE,
        "dial tcp|connection refused|no such host|i/o timeout|tls:|x509:|"
        "network is unreachable|connection reset|context deadline exceeded|server misbehaving",
    ),
    (
        Failure.ACCESS_DENIED,
        "access denied|accessdenied|forbidden|invalidaccesskeyid|"
        "signaturedoesnotmatch|permission denied",
    ),
    (
        Failure.MISSING_REPOSITORY,
        "is there a repository at the following location|repository does not exist",
    ),
    (Failure.NO_SNAPSHOT, "no snapshot found|no snapshot matched|no matching id found"),
    (Failure.NOT_IN_SNAPSHOT, "not found in snapshot"),
    (Failure.DAMAGED, "ciphertext verification failed|returned error, retrying"),
)
#: restic 0.14 retries a failed read ten times, for most of a minute; data that is gone or
#: cut short never comes back, so a read is stopped at its first such retry (and fails over)
LOST_DATA = re.compile(
    r"returned error, retrying after [^:]*: "
    r"(?:.*no such file or directory|(?:unexpected )?eof|.*does not exist\.?)\s*$",
    re.MULTILINE,
)
#: message (formatted with location, detail, action, key) and hint per failure
FAILURE_TEXTS: dict[Failure, tuple[str, str | None]] = {
    Failure.WRONG_PASSWORD: (
        "wrong password for {location}",
        "check the store's password reference: restic needs the password the repository "
        "was created with",
    ),
    Failure.MISSING_REPOSITORY: (
        "no restic repository at {location}",
        "set `init: true` for this store, or create it with `restic init`",
    ),
    Failure.LOCKED: (
        "{location} is locked by another restic process",
        "wait for it to finish; `restic unlock` removes stale locks",
    ),
    Failure.ACCESS_DENIED: (
        "access denied to {location}: {detail}",
        "check the store's credentials",
    ),
    Failure.UNREACHABLE: ("cannot reach {location}: {detail}", None),
    Failure.DAMAGED: (
        "the data of {key} in {location} is damaged or missing",
        "run `restic check --read-data` on the repository; restore from another store",
    ),
    Failure.FULL: ("cannot {action} {key}: {detail}", None),
    Failure.OTHER: ("cannot {action} {key}: {detail}", None),
}


def classify_failure(stderr: str) -> Failure:
    """The meaning of a failed restic command's stderr; the first matching rule wins, so a
    refused connection is UNREACHABLE although restic adds "Is there a repository...?"."""
    text = stderr.lower()
    for failure, markers in FAILURE_MARKERS:
        if any(marker in text for marker in markers.split("|")):
            return failure
    return Failure.OTHER


def redact_repository(repository: str) -> str:
    """The repository string without a password in a URL (``rest:https://u:***@host/``)."""
    return re.sub(r"//([^/@:]*):[^/@]*@", r"//\1:***@", repository)


#: What restic may take from drkit's environment besides the gateway's allowlist: settings of
#: its cache and region, and the ambient credentials of backends a plan cannot name keys for
#: (the gateway still drops any variable holding a secret the plan refers to).
RESTIC_SETTINGS = (
    *NETWORK_SETTINGS,
    "RESTIC_CACHE_DIR",
    "XDG_CACHE_HOME",
    "AWS_DEFAULT_REGION",
    "B2_ACCOUNT_ID",
    "B2_ACCOUNT_KEY",
    "AZURE_ACCOUNT_NAME",
    "AZURE_ACCOUNT_KEY",
    "GOOGLE_PROJECT_ID",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
#: Where restic looks for S3 credentials when drkit has none to give it.
AWS_PROFILE_SETTINGS = ("AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE")


def make_restic_command(
    arguments: Sequence[str],
    *,
    repository: str,
    password: Secret,
    access_key_id: Secret | None = None,
    secret_access_key: Secret | None = None,
    session_token: Secret | None = None,
    program: str = "restic",
    cache_dir: Path | None = None,
) -> Command:
    """A restic invocation: options in argv; the repository, the password and S3 credentials
    each in a private file restic reads (never the environment or argv)."""
    if password.reveal() != password.reveal().strip():
        raise StoreError(
            "the restic password begins or ends with whitespace, which restic drops when it "
            "reads a password file",
            hint="change the repository's password (restic key passwd) to one without",
        )
    files = {"RESTIC_REPOSITORY_FILE": Secret(repository), "RESTIC_PASSWORD_FILE": password}
    inherit: tuple[str, ...] = RESTIC_SETTINGS
    if access_key_id is not None and secret_access_key is not None:
        credentials = aws_credentials_file(access_key_id, secret_access_key, session_token)
        files["AWS_SHARED_CREDENTIALS_FILE"] = credentials
    else:
        inherit += AWS_PROFILE_SETTINGS
    cache = ("--cache-dir", str(cache_dir)) if cache_dir is not None else ()
    return Command(argv=(program, *cache, *arguments), secret_files=files, inherit=inherit)


def aws_credentials_file(
    access_key_id: Secret, secret_access_key: Secret, session_token: Secret | None
) -> Secret:
    """An AWS shared credentials file with one profile, ``default``, for restic's S3 client."""
    values = [access_key_id, secret_access_key, *([session_token] if session_token else [])]
    if any("\n" in value.reveal() or "\r" in value.reveal() for value in values):
        raise StoreError("an S3 credential must not contain a line break")
    lines = ["[default]", f"aws_access_key_id = {access_key_id.reveal()}"]
    lines.append(f"aws_secret_access_key = {secret_access_key.reveal()}")
    if session_token is not None:
        lines.append(f"aws_session_token = {session_token.reveal()}")
    return Secret("\n".join(lines) + "\n")


def local_repository_path(repository: str) -> Path | None:
    """The folder of a local repository (``/srv/restic``, ``local:/srv/restic``), else None."""
    if repository.startswith("local:"):
        return Path(repository.removeprefix("local:"))
    if ":" not in repository.split("/", 1)[0]:  # no backend prefix (s3:, sftp:, rest:, ...)
        return Path(repository)
    return None


def backup_arguments(key: str, *, empty: bool = False) -> tuple[str, ...]:
    tags = ("--tag", TAG, "--tag", EMPTY_TAG) if empty else ("--tag", TAG)
    return ("backup", "--stdin", "--stdin-filename", key, *tags, "--host", HOST)


def dump_arguments(key: str) -> tuple[str, ...]:
    return ("dump", "--tag", TAG, "--path", f"/{key}", "latest", f"/{key}")


def snapshots_arguments(key: str | None = None) -> tuple[str, ...]:
    path = ("--path", f"/{key}") if key is not None else ()
    return ("snapshots", "--json", "--tag", TAG, *path)


def stats_arguments(key: str) -> tuple[str, ...]:
    return ("stats", "--json", "--mode", "raw-data", "--tag", TAG, "--path", f"/{key}", "latest")


def ls_arguments(key: str) -> tuple[str, ...]:
    return ("ls", "--json", "--tag", TAG, "--path", f"/{key}", "latest")


def interrupt(process: Process, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop restic the way Ctrl-C does (see the module docstring); SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.kill()


class ResticGone(Exception):
    """restic closed its stdin (it exited); its exit status says why."""


class ResticStore:
    """Objects as restic snapshots in one repository."""

    wants_plaintext = True

    def __init__(self, spec: ResticSpec, *, program: str = "restic", cache_dir: Path | None = None):
        self.name = spec.name
        self.region = spec.region
        self.spec = spec
        self.location = redact_repository(spec.repository)
        self.program = program
        self.cache_dir = cache_dir
        self._ready_lock = threading.Lock()
        self._is_ready = not spec.init  # without init, a missing repository is an error

    def __repr__(self) -> str:
        return f"ResticStore({self.describe()})"

    def describe(self) -> str:
        return f"restic {self.location} ({self.region})"

    def make_command(self, arguments: Sequence[str]) -> Command:
        spec = self.spec
        key_id: Secret | None
        secret_key: Secret | None
        token: Secret | None = None
        if spec.access_key_id and spec.secret_access_key:
            key_id = SecretRef(spec.access_key_id).resolve()
            secret_key = SecretRef(spec.secret_access_key).resolve()
        else:  # the credentials drkit runs with, as restic would have read them
            key_id, secret_key, token = (
                Secret(os.environ[name]) if os.environ.get(name) else None
                for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            )
        return make_restic_command(
            arguments,
            repository=spec.repository,
            password=SecretRef(spec.password).resolve(),
            access_key_id=key_id,
            secret_access_key=secret_key,
            session_token=token,
            program=self.program,
            cache_dir=self.cache_dir,
        )

    # --- Store ---------------------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        check_key(key)
        self._ensure_repository()
        rest = iter(chunks)
        first = next((chunk for chunk in rest if chunk), None)
        if first is None:
            self._put_empty(key)
            return 0
        return self._put_stream(key, first, rest)

    def get(self, key: str) -> Iterator[bytes]:
        check_key(key)
        return self._dump(key)

    def size(self, key: str) -> int:
        check_key(key)
        self._ensure_repository()
        lines = self._run(ls_arguments(key), "read", key).stdout.decode().splitlines()
        records = [self._parse_json(line, "read", key) for line in lines if line.strip()]
        if not records:
            raise ObjectNotFound(f"restic store {self.name}: no object {key}")
        if EMPTY_TAG in (records[0].get("tags") or []):
            return 0
        for record in records[1:]:
            if record.get("path") == f"/{key}" and record.get("type") == "file":
                return int(record.get("size", 0))
        raise IntegrityError(f"restic store {self.name}: the snapshot of {key} holds no file")

    def delete(self, key: str) -> None:
        check_key(key)
        ids = [snapshot["id"] for snapshot in self._snapshots(key)]
        if ids:
            self._run_exclusive(("forget", *ids), "delete", key)

    def list(self, prefix: str = "") -> builtins.list[str]:
        keys = {
            path[1:]
            for snapshot in self._snapshots()
            for path in snapshot.get("paths") or []
            if path.startswith("/")
        }
        return sorted(key for key in keys if key.startswith(prefix))

    def abilities(self) -> Abilities:
        return Abilities(compactor=self, prober=self)

    def _probe_missing(self) -> str:
        """A repository the first backup creates (``init: true``): for a local one, the
        nearest existing folder above it must be writable."""
        folder = local_repository_path(self.spec.repository)
        if folder is None:
            return "does not exist yet; the first backup creates it (init: true; not probed)"
        parent, writable = creation_folder(folder)
        if not writable:
            raise StoreUnavailable(
                f"restic store {self.name}: {folder} does not exist and cannot be created: "
                f"{parent} is not a writable folder",
                hint="create the repository's folder, or fix the permissions of the one above",
            )
        return f"does not exist yet; the first backup creates it in {parent} (writable)"

    def compact(self) -> None:
        """Remove data no snapshot references any more (``restic prune``)."""
        self._ensure_repository()
        self._run_exclusive(("prune",), "prune", "the repository")

    def probe(self) -> str:
        """The repository opens with the password (read without taking a lock: restic retries
        a lock it cannot write for most of a minute). A local repository's folders are checked
        writable; other backends are written to only by a backup."""
        opened = self._run(("--no-lock", "cat", "config"), "open", "the repository", check=False)
        if opened.returncode != 0:
            stderr = opened.stderr.decode("utf-8", "replace")
            if classify_failure(stderr) is Failure.MISSING_REPOSITORY and self.spec.init:
                return self._probe_missing()
            raise self._failure("open", "the repository", stderr)
        folder = local_repository_path(self.spec.repository)
        if folder is None:
            return "opens with its password; writing not probed (not a local repository)"
        unwritable = [
            str(path)
            for path in (folder, folder / "locks", folder / "data")
            if path.exists() and not os.access(path, os.W_OK | os.X_OK)
        ]
        if unwritable:
            raise StoreUnavailable(
                f"restic store {self.name}: cannot write in {', '.join(unwritable)}",
                hint="restic writes a lock file and data there; fix the folder's permissions",
            )
        return "opens with its password; its folders are writable"

    # --- writing -------------------------------------------------------------------------

    def _put_empty(self, key: str) -> None:
        completed = self._run(
            backup_arguments(key, empty=True), "write", key, check=False, input_bytes=b""
        )
        saved = SAVED_SNAPSHOT.search(completed.stdout.decode("utf-8", "replace"))
        if completed.returncode not in (0, PARTIAL_EXIT) or saved is None:
            raise self._failure("write", key, completed.stderr.decode("utf-8", "replace"))

    def _put_stream(self, key: str, first: bytes, rest: Iterator[bytes]) -> int:
        with self._start(backup_arguments(key), "write", key, stdin=True) as process:
            try:
                size = feed(process.stdin, first, rest)
            except ResticGone:
                self._finish(process, "write", key)
                raise StoreUnavailable(
                    f"restic store {self.name}: restic stopped reading {key}"
                ) from None
            except BaseException:
                interrupt(process)  # before stdin closes: no snapshot of a truncated stream
                raise
            self._finish(process, "write", key)
        return self._stored_size(key, size)

    def _stored_size(self, key: str, size: int) -> int:
        """What the repository holds for ``key``: the raw size of the blobs its snapshot
        references, after restic's compression and encryption (shared blobs included, so a
        deduplicated object counts whole). ``size`` (plaintext) below the threshold, or when
        restic cannot say."""
        if size < STORED_SIZE_THRESHOLD:
            return size
        completed = self._run(stats_arguments(key), "read", key, check=False)
        try:
            total = json.loads(completed.stdout or b"{}").get("total_size")
        except (ValueError, AttributeError):
            total = None
        if completed.returncode != 0 or not isinstance(total, int):
            log.warning(
                "restic store %s: stored size of %s unknown; counting plaintext", self.name, key
            )
            return size
        return total

    # --- reading -------------------------------------------------------------------------

    def _dump(self, key: str) -> Iterator[bytes]:
        self._ensure_repository()
        # One restic reader per repository at a time in this process. Two at once (sources
        # restored side by side) share the repository's cache; once in CI an intact snapshot
        # then failed as lost data, which this is meant to rule out (the cause is unproven).
        with _reading_lock(self.spec.repository):
            yield from self._dump_alone(key)

    def _dump_alone(self, key: str) -> Iterator[bytes]:
        has_yielded = False
        with self._start(dump_arguments(key), "read", key, stdin=False) as process:
            done = threading.Event()
            threading.Thread(target=stop_on_lost_data, args=(process, done), daemon=True).start()
            try:
                while chunk := process.stdout.read(CHUNK_SIZE):
                    has_yielded = True
                    yield chunk
            except BaseException:
                interrupt(process)  # the caller stopped early: leave no stale lock
                raise
            finally:
                done.set()
            stderr = wait(process)
        if stderr is None:
            return
        failure = self._classify(stderr, key)
        if failure is Failure.NOT_IN_SNAPSHOT and not has_yielded and self._is_empty(key):
            return
        raise self._failure("read", key, stderr)

    def _is_empty(self, key: str) -> bool:
        snapshots = self._snapshots(key)
        return bool(snapshots) and EMPTY_TAG in (newest(snapshots).get("tags") or [])

    def _snapshots(self, key: str | None = None) -> builtins.list[dict[str, Any]]:
        self._ensure_repository()
        completed = self._run(snapshots_arguments(key), "list", key or "snapshots")
        parsed = self._parse_json(completed.stdout.decode() or "[]", "list", key or "snapshots")
        return builtins.list(parsed or [])

    # --- running restic ------------------------------------------------------------------

    def _ensure_repository(self) -> None:
        """With ``init: true``, create the repository on first use when it does not exist."""
        if self._is_ready:
            return
        with self._ready_lock:
            if self._is_ready:
                return
            local = local_repository_path(self.spec.repository)
            if local is not None and (local / "config").is_file():
                # An existing local repository: no restic run (each costs its key derivation,
                # about 0.3-0.5 s); the first real command reports a damaged one.
                self._is_ready = True
                return
            probe = self._run(("cat", "config"), "open", "the repository", check=False)
            if probe.returncode != 0:
                stderr = probe.stderr.decode("utf-8", "replace")
                if classify_failure(stderr) is not Failure.MISSING_REPOSITORY:
                    raise self._failure("open", "the repository", stderr)
                created = self._run(("init",), "create", "the repository", check=False)
                stderr = created.stderr.decode("utf-8", "replace")
                if created.returncode != 0 and "already" not in stderr:  # a concurrent init
                    raise self._failure("create", "the repository", stderr)
            self._is_ready = True

    def _run(
        self,
        arguments: Sequence[str],
        action: str,
        key: str,
        *,
        check: bool = True,
        input_bytes: bytes | None = None,
    ) -> CompletedProcess[bytes]:
        try:
            completed = run(self.make_command(arguments), input_bytes=input_bytes, check=False)
        except (MissingToolError, OSError) as error:
            raise self._tool_missing(error) from None
        if check and completed.returncode != 0:
            raise self._failure(action, key, completed.stderr.decode("utf-8", "replace"))
        return completed

    def _run_exclusive(self, arguments: Sequence[str], action: str, key: str) -> None:
        """Run a command needing the exclusive lock; once, after removing stale locks (left
        by a restic that was killed) with ``restic unlock``, which keeps live ones."""
        completed = self._run(arguments, action, key, check=False)
        stderr = completed.stderr.decode("utf-8", "replace")
        if completed.returncode != 0 and classify_failure(stderr) is Failure.LOCKED:
            self._run(("unlock",), "unlock", "the repository")
            self._run(arguments, action, key)
        elif completed.returncode != 0:
            raise self._failure(action, key, stderr)

    def _start(self, arguments: Sequence[str], action: str, key: str, *, stdin: bool) -> Process:
        try:
            return Process(self.make_command(arguments), stdin=stdin, stdout=not stdin)
        except (MissingToolError, OSError) as error:
            raise self._tool_missing(error) from None

    def _finish(self, process: Process, action: str, key: str) -> None:
        stderr = wait(process)
        if stderr is not None:
            raise self._failure(action, key, stderr)

    def _parse_json(self, text: str, action: str, key: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise StoreUnavailable(
                f"restic store {self.name}: cannot {action} {key}: "
                "restic printed something other than JSON"
            ) from None

    # --- errors --------------------------------------------------------------------------

    def _tool_missing(self, error: Exception) -> StoreUnavailable:
        hint = error.hint if isinstance(error, MissingToolError) else None
        return StoreUnavailable(
            f"restic store {self.name}: cannot run restic: {error}",
            hint=hint or "install restic (apt-get install restic)",
        )

    def _classify(self, stderr: str, key: str) -> Failure:
        """classify_failure, blind to the key (a source named "forbidden" is no denial)."""
        return classify_failure(stderr.replace(f"/{key}", "/<key>"))

    def _failure(self, action: str, key: str, stderr: str) -> StoreError | IntegrityError:
        failure = self._classify(stderr, key)
        if failure in (Failure.NO_SNAPSHOT, Failure.NOT_IN_SNAPSHOT):
            return ObjectNotFound(f"restic store {self.name}: no object {key}")
        template, hint = FAILURE_TEXTS[failure]
        detail = last_line(stderr).replace(self.spec.repository, self.location)
        text = template.format(location=self.location, detail=detail, action=action, key=key)
        if failure is Failure.DAMAGED:
            return IntegrityError(f"restic store {self.name}: {text}", hint=hint)
        error_type = StoreFull if failure is Failure.FULL else StoreUnavailable
        return error_type(f"restic store {self.name}: {text}", hint=hint)


def feed(stdin: IO[bytes], first: bytes, rest: Iterator[bytes]) -> int:
    """Write the stream to restic's stdin. Errors of ``rest`` pass through unchanged; a
    closed pipe (restic exited) becomes ResticGone."""
    size = 0
    chunk = first
    while True:
        try:
            stdin.write(chunk)
        except BrokenPipeError:
            raise ResticGone from None
        size += len(chunk)
        following = next(rest, None)
        if following is None:
            return size
        chunk = following


_READING_LOCKS: dict[str, threading.RLock] = {}
_READING_LOCKS_GUARD = threading.Lock()


def _reading_lock(repository: str) -> threading.RLock:
    """The lock that lets one thread at a time read ``repository`` (re-entrant: a thread may
    hold two of its streams)."""
    with _READING_LOCKS_GUARD:
        return _READING_LOCKS.setdefault(repository, threading.RLock())


def stop_on_lost_data(process: Process, done: threading.Event) -> None:
    """Interrupt restic once it retries reading data that is missing or cut short (LOST_DATA)."""
    while not done.wait(0.1):
        if LOST_DATA.search(process.stderr_tail.lower()):
            interrupt(process)
            return


def wait(process: Process) -> str | None:
    """Wait for restic to exit; its stderr when it failed, else None."""
    try:
        process.finish()
    except ToolError:
        return process.stderr_tail or f"restic exited with status {process.poll()}"
    return None


def newest(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The most recent of restic's snapshot records (times are RFC 3339 with nanoseconds)."""

    def taken_at(snapshot: dict[str, Any]) -> datetime:
        text = re.sub(r"(\.\d{6})\d+", r"\1", str(snapshot.get("time", "")))
        return datetime.fromisoformat(text)

    return max(snapshots, key=taken_at)


def last_line(text: str) -> str:
    """The line of restic's stderr that says what went wrong (its "Fatal:" line if any)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line.removeprefix("Fatal: ") for line in lines if line.startswith("Fatal: ")]
    return (fatal or lines or ["no details"])[-1]
