"""A Store in a local or NFS-mounted folder: each object is a file at ``<path>/<key>``.

Writes are atomic and durable: ``put`` writes a temporary file beside the target
(``.<name>.<random>.drkit-partial``), fsyncs it, renames it over the key and fsyncs the folder,
so a crash or a failing stream leaves either the old object or the new one, never half of one.
``list`` never shows temporary files.

The folder is created on the first ``put``, not when the store is built. A missing folder
therefore reads as an empty store: ``list`` returns ``[]`` and ``get`` raises ObjectNotFound.
That is also how an unmounted NFS share looks (the path is simply gone), so a forgotten mount
shows up as "no snapshots in this store", and the first backup after it writes to the local
disk under the mount point; point ``path`` at a folder inside the share and monitor the mount.
A path that exists but is not a folder, or cannot be read, raises StoreUnavailable.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from drkit.errors import ObjectNotFound, StoreError, StoreFull, StoreUnavailable
from drkit.plan.schema import FilesystemStore as FilesystemSpec
from drkit.stores import check_key
from drkit.stores.base import Abilities, creation_folder

TEMP_SUFFIX = ".drkit-partial"
WRITABLE_HINT = "make the folder writable for the user drkit runs as (and check it is mounted)"
CHUNK_SIZE = 1024 * 1024
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: errors meaning "no such object" once we know the store's folder itself is fine
MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR})
#: folder fsync is unsupported on some network filesystems; the rename is still atomic there
UNSUPPORTED_SYNC_ERRNOS = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF})


class FilesystemStore:
    """Objects as files under one folder."""

    wants_plaintext = False

    def __init__(self, spec: FilesystemSpec):
        self.name = spec.name
        self.region = spec.region
        self.root = Path(spec.path)

    def describe(self) -> str:
        return f"{self.root} ({self.region})"

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        with self._translating("write", key):
            descriptor, temp_name = self._open_temp(path)
        try:
            size = self._write_all(descriptor, chunks, key)
            with self._translating("write", key):
                os.replace(temp_name, path)
        except BaseException:
            # the original error matters more than a leftover we could not remove
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise
        with self._translating("write", key):
            sync_folder(path.parent)
        return size

    def get(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except OSError as error:
            raise self._lookup_error(error, key) from None
        return self._read(file, key)

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            status = path.stat()
        except OSError as error:
            raise self._lookup_error(error, key) from None
        if not stat.S_ISREG(status.st_mode):
            raise ObjectNotFound(f"filesystem store {self.name}: no object {key} in {self.root}")
        return status.st_size

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except OSError as error:
            problem = self._lookup_error(error, key)
            if isinstance(problem, ObjectNotFound):
                return
            raise problem from None
        with self._translating("delete", key):
            sync_folder(path.parent)
        self._remove_empty_folders(path.parent)

    def probe(self) -> str:
        """A probe file written, read back and removed in the folder (or, when the folder
        does not exist yet, the nearest existing parent proven writable)."""
        if not self.root.exists():
            return self._probe_parent()
        if not self.root.is_dir():
            raise StoreUnavailable(
                f"filesystem store {self.name}: {self.root} is not a folder",
                hint="check the store's path in the plan and that the share is mounted",
            )
        payload = os.urandom(64)
        with self._translating("write", "a probe file", hint=WRITABLE_HINT):
            descriptor, name = tempfile.mkstemp(
                dir=self.root, prefix=".drkit-probe.", suffix=TEMP_SUFFIX
            )
            try:
                os.write(descriptor, payload)
                os.fsync(descriptor)
                is_intact = os.pread(descriptor, len(payload), 0) == payload
            finally:
                os.close(descriptor)
                os.unlink(name)
        if not is_intact:
            raise StoreUnavailable(f"filesystem store {self.name}: a probe file read back wrong")
        return "writable (a probe file was written, read back and removed)"

    def _probe_parent(self) -> str:
        parent, writable = creation_folder(self.root)
        if not writable:
            raise StoreUnavailable(
                f"filesystem store {self.name}: {self.root} does not exist and cannot be "
                f"created: {parent} is not a writable folder",
                hint=WRITABLE_HINT,
            )
        # Said plainly: an unmounted share looks exactly like this (see the module docstring).
        return f"does not exist yet; the first backup creates it in {parent} (writable)"

    def list(self, prefix: str = "") -> builtins.list[str]:
        folder = prefix.rpartition("/")[0]  # walk only below the folder the prefix names
        if folder:
            check_key(folder)
        try:
            status = self.root.stat()
        except FileNotFoundError:
            return []  # not created yet, or an unmounted share: see the module docstring
        except OSError as error:
            raise self._error(error, "list", prefix or "/") from None
        if not stat.S_ISDIR(status.st_mode):
            raise StoreUnavailable(
                f"filesystem store {self.name}: {self.root} is not a folder",
                hint="check the store's path in the plan and that the share is mounted",
            )
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        return sorted(key for key in self._walk(start, folder) if key.startswith(prefix))

    def abilities(self) -> Abilities:
        return Abilities(partial_writes=self, prober=self)

    def remove_partial_writes(self, prefix: str) -> builtins.list[str]:
        """Remove the temporary files (``.NAME.RANDOM.drkit-partial``) a killed ``put`` left
        in the folder ``prefix`` names and below it."""
        folder = prefix.rstrip("/")
        start = self.root.joinpath(*check_key(folder).split("/")) if folder else self.root
        removed = []
        for path in sorted(start.rglob(f"*{TEMP_SUFFIX}")) if start.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(str(path.relative_to(self.root)))
        if removed:
            self._remove_empty_folders(start)
        return removed

    # --- helpers ---------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.endswith(TEMP_SUFFIX):
            raise ValueError(f"invalid store key {key!r}: {TEMP_SUFFIX} names temporary files")
        return self.root.joinpath(*key.split("/"))

    def _open_temp(self, path: Path) -> tuple[int, str]:
        """Create the folders and a temporary file beside ``path``. Retried because a
        concurrent ``delete`` may remove a folder that just became empty."""
        for attempt in range(3):
            make_folders(path.parent)
            try:
                return tempfile.mkstemp(
                    dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX
                )
            except FileNotFoundError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _write_all(self, descriptor: int, chunks: Iterable[bytes], key: str) -> int:
        """Write every chunk and fsync; errors of ``chunks`` itself pass through unchanged."""
        size = 0
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                with self._translating("write", key):
                    while view:
                        view = view[os.write(descriptor, view) :]
                size += len(chunk)
            with self._translating("write", key):
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return size

    def _read(self, file: IO[bytes], key: str) -> Iterator[bytes]:
        with file:
            while True:
                with self._translating("read", key):
                    chunk = file.read(CHUNK_SIZE)
                if not chunk:
                    return
                yield chunk

    def _walk(self, folder: Path, relative: str) -> Iterator[str]:
        try:
            with os.scandir(folder) as scan:
                entries = builtins.list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:
            raise self._error(error, "list", relative or "/") from None
        for entry in entries:
            key = f"{relative}/{entry.name}" if relative else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key)
            elif entry.is_file() and not entry.name.endswith(TEMP_SUFFIX):
                yield key

    def _remove_empty_folders(self, folder: Path) -> None:
        """Tidy folders emptied by ``delete`` (pruned snapshots), up to the store's root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or busy): it stays
            folder = folder.parent

    def _lookup_error(self, error: OSError, key: str) -> StoreError:
        root_is_file = self.root.exists() and not self.root.is_dir()
        if error.errno in MISSING_ERRNOS and not root_is_file:
            return ObjectNotFound(f"filesystem store {self.name}: no object {key} in {self.root}")
        return self._error(error, "read", key)

    def _error(self, error: OSError, action: str, key: str) -> StoreError:
        message = (
            f"filesystem store {self.name}: cannot {action} {key} in {self.root}: "
            f"{error.strerror or error}"
        )
        if error.errno in FULL_ERRNOS:
            return StoreFull(message)
        return StoreUnavailable(message)

    @contextlib.contextmanager
    def _translating(self, action: str, key: str, *, hint: str | None = None) -> Iterator[None]:
        """Turn an OSError of the block into StoreFull / StoreUnavailable."""
        try:
            yield
        except OSError as error:
            problem = self._error(error, action, key)
            if hint is not None and not isinstance(problem, StoreFull):
                problem.hint = hint
            raise problem from None


def make_folders(folder: Path) -> None:
    """Create ``folder`` and missing parents, fsyncing each new entry's parent so the new
    folders survive a crash along with the files put in them."""
    missing: list[Path] = []
    current = folder
    while not current.is_dir() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue  # a concurrent put made it; a file in the way fails at mkstemp
        sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder so a rename or a new entry in it is durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in UNSUPPORTED_SYNC_ERRNOS:
            raise
    finally:
        os.close(descriptor)
