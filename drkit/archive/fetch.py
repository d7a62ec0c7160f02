"""Fetching WAL back from the stores, for PostgreSQL's ``restore_command``.

``WalFetcher.fetch(name)`` tries every store in order for a completed segment, then for a
partial one (the newest WAL, padded back to a whole segment), then a history file: a store
that is unreachable, lacks the object, or returns one that fails authentication is failed
over, never trusted. ``FetchService`` serves the fetcher on a unix socket for the duration of
a restore, so the server (running as another user, with none of drkit's keys or credentials)
gets WAL through ``fetch_client.py`` (standard library only) without a secret leaving drkit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socketserver
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drkit.archive.objects import WalObject, open_wal
from drkit.archive.walnames import PARTIAL_SUFFIX, is_history_name, is_segment_name
from drkit.crypto import KeyEncryptionKey
from drkit.errors import (
    DrkitError,
    IntegrityError,
    ObjectNotFound,
    SandboxError,
    describe_failure,
)
from drkit.stores.base import Store

log = logging.getLogger(__name__)
SOCKET_NAME = "wal-fetch.sock"
CLIENT_NAME = "fetch_client.py"


@dataclass
class FetchLog:
    """What fetching went through: files served (from which store), failovers, damage."""

    served: dict[str, str] = field(default_factory=dict)  # name -> store
    failovers: list[str] = field(default_factory=list)
    #: the failovers away from a copy that failed (unreadable, not authentic, older than the
    #: ledger), not from a store that does not hold the file: a drill fails on these
    faults: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # names no store could deliver intact


class WalFetcher:
    """Fetches one source's WAL files from a plan's stores, in the given order."""

    def __init__(
        self, plan: str, source: str, stores: Sequence[Store], keys: Sequence[KeyEncryptionKey]
    ):
        self.plan = plan
        self.source = source
        self.stores = list(stores)
        self.keys = keys
        self.log = FetchLog()
        self._lock = threading.Lock()

    def candidates(self, name: str) -> list[WalObject]:
        if is_history_name(name):
            return [WalObject("history", name)]
        if name.endswith(PARTIAL_SUFFIX) and is_segment_name(name[: -len(PARTIAL_SUFFIX)]):
            return [WalObject("partial", name[: -len(PARTIAL_SUFFIX)])]
        if is_segment_name(name):
            return [WalObject("segment", name), WalObject("partial", name)]
        return []

    def rejects(self, store: Store, wal_object: WalObject, data: bytes) -> str | None:
        """Why an authentic object is still not the one wanted (None: it is)."""
        return None

    def fetch(self, name: str) -> bytes | None:
        """The file's bytes, or None when no store has it (normal past the end of the WAL).
        IntegrityError when it exists but no store delivers it intact."""
        damaged: list[str] = []
        lacking: list[str] = []
        for wal_object in self.candidates(name):
            for store in self.stores:
                key = wal_object.key(self.plan, self.source)
                try:
                    data = open_wal(store.get(key), wal_object, self.plan, self.source, self.keys)
                except ObjectNotFound:
                    if wal_object.kind == "segment":
                        lacking.append(f"{store.name}: segment {name} is missing")
                    continue
                except DrkitError as error:
                    reason = f"{store.name}: {wal_object.kind} {name}: {describe_failure(error)}"
                    log.warning("WAL fetch failed over: %s", reason)
                    with self._lock:
                        self.log.failovers.append(reason)
                        self.log.faults.append(reason)
                    if isinstance(error, IntegrityError):
                        damaged.append(reason)
                    continue
                rejected = self.rejects(store, wal_object, data)
                if rejected is not None:
                    reason = f"{store.name}: {wal_object.kind} {name}: {rejected}"
                    log.warning("WAL fetch failed over: %s", reason)
                    with self._lock:
                        self.log.failovers.append(reason)
                        self.log.faults.append(reason)
                    damaged.append(reason)
                    continue
                with self._lock:
                    self.log.served[name] = store.name
                    self.log.failovers += lacking
                return data
        if damaged:
            with self._lock:
                self.log.damaged.append(name)
            raise IntegrityError(f"no store delivers {name} intact: " + "; ".join(damaged))
        return None


def write_atomically(data: bytes, destination: Path) -> None:
    """Write ``data`` next to ``destination`` and rename: the server never sees half a file."""
    partial = destination.with_name(destination.name + ".drkit-tmp")
    with open(partial, "wb") as handle:
        handle.write(data)
    os.replace(partial, destination)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        name = self.rfile.readline(200).decode("ascii", "replace").strip()
        try:
            data = self.server.fetcher.fetch(name) if name else None
        except DrkitError as error:
            self.wfile.write(f"ERROR {describe_failure(error)}\n".encode())
            return
        if data is None:
            self.wfile.write(b"MISSING\n")
            return
        self.wfile.write(f"OK {len(data)}\n".encode())
        self.wfile.write(data)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, fetcher: WalFetcher):
        self.fetcher = fetcher
        super().__init__(path, _Handler)


@contextlib.contextmanager
def serving(fetcher: WalFetcher, folder: Path, owner: str | None = None) -> Iterator[Path]:
    """Serve ``fetcher`` on a socket in ``folder`` (private to drkit and, with ``owner``, the
    server's user) while the block runs; yields the socket's path."""
    path = folder / SOCKET_NAME
    path.unlink(missing_ok=True)
    server = _Server(str(path), fetcher)
    os.chmod(path, 0o600)
    if owner is not None:
        shutil.chown(path, owner, owner)
    thread = threading.Thread(target=server.serve_forever, name="wal-fetch", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)


def make_restore_command(socket_path: Path, python: str) -> str:
    """The ``restore_command`` setting: the fetch client, copied next to the socket (so the
    server's user needs no access to drkit's installation), asking the socket for each file."""
    client = socket_path.parent / CLIENT_NAME
    shutil.copyfile(Path(__file__).with_name(CLIENT_NAME), client)
    os.chmod(client, 0o644)
    return f"'{python}' '{client}' '{socket_path}' %f \"%p\""


def python_for(other_user: bool) -> str:
    """A Python the server can run: drkit's own, unless the server runs as another user who
    cannot reach it (a Python under /root), then the system's."""
    if not other_user or is_reachable_by_others(Path(sys.executable)):
        return sys.executable
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists() and is_reachable_by_others(Path(candidate)):
            return candidate
    raise SandboxError(
        "no Python the PostgreSQL server's user can run for the restore_command",
        hint="install python3 from the distribution (apt-get install python3)",
    )


def is_reachable_by_others(path: Path) -> bool:
    """True when any user may run ``path`` (every folder above it traversable)."""
    resolved = path.resolve()
    folders_ok = all(os.stat(folder).st_mode & 0o001 for folder in resolved.parents)
    return folders_ok and bool(os.stat(resolved).st_mode & 0o001)
