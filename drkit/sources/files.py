"""Config files and folders, captured as one PAX tar stream (modes, owners, mtimes, symlinks as
symlinks, directories, FIFOs, devices, sparse files as sparse members) and fingerprinted with a
sha256 per file while the stream is written, so each file is read once. The tree is walked
through folder descriptors with no-follow opens (``tree_walk``) and written from what those
descriptors show (``tree_archive``); a file that vanishes meanwhile is a warning.

Member names are relative to ``/`` (``etc/payments/app.yaml``), so an archive restores to the
original locations (target ``/``) or under any other folder (a drill's temporary directory).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import queue
import shutil
import stat
import tarfile
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO

from drkit.errors import DrkitError, RefusedError, SourceError
from drkit.plan.schema import FilesSource
from drkit.sources.base import Capture, Fingerprint, Target
from drkit.sources.tree_archive import TreeArchiver
from drkit.sources.tree_walk import Entry, Selection, TreeWalk, fingerprint_key, open_entry

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
#: Chunks waiting between the tar writer thread and the consumer; bounds memory.
QUEUE_DEPTH = 4
#: How often a blocked writer looks whether the consumer went away.
CANCEL_POLL_SECONDS = 0.1


def member_name(path: str) -> str:
    """The archive name of an absolute or relative path: absolute, then relative to ``/``."""
    return os.path.abspath(path).lstrip("/")


def _hash_entry(entry: Entry) -> str:
    """sha256 hex of a regular file's content, read without following a link."""
    descriptor = open_entry(entry)
    if descriptor is None:
        raise SourceError(f"cannot read /{fingerprint_key(entry.member)}")
    digest = hashlib.sha256()
    try:
        while chunk := os.read(descriptor, CHUNK_SIZE):
            digest.update(chunk)
    finally:
        os.close(descriptor)
    return digest.hexdigest()


class _Cancelled(Exception):
    """The consumer stopped reading; the writer thread unwinds quietly."""


class _ChunkPipe:
    """A bounded bridge from tarfile (writing in a thread) to a consumer's generator."""

    def __init__(self) -> None:
        # bytes, then None at the end, or the writer's exception to raise in the consumer
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(QUEUE_DEPTH)
        self._stopped = threading.Event()
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        """tarfile's sink: collect into CHUNK_SIZE pieces and hand each over."""
        self._buffer += data
        while len(self._buffer) >= CHUNK_SIZE:
            self._put(bytes(self._buffer[:CHUNK_SIZE]))
            del self._buffer[:CHUNK_SIZE]
        return len(data)

    def finish(self, error: BaseException | None = None) -> None:
        """End the stream: the last bytes then the end marker, or the error to raise."""
        if error is None and self._buffer:
            self._put(bytes(self._buffer))
        self._buffer.clear()
        self._put(error)

    def _put(self, item: bytes | BaseException | None) -> None:
        while True:
            if self._stopped.is_set():
                raise _Cancelled
            try:
                self._queue.put(item, timeout=CANCEL_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def chunks(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """Release a writer blocked on a full queue; drop what it wrote."""
        self._stopped.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()


class FileTree:
    """The files and folders named by a plan's ``files`` source."""

    type = "files"

    def __init__(self, spec: FilesSource):
        self.name = spec.name
        self.roots = [member_name(path) for path in spec.paths]
        self.selection = Selection(tuple(spec.include), tuple(spec.exclude))
        self.vanished_files = spec.vanished_files

    # --- capture ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Capture]:
        """Stream the tar; the fingerprint fills in as the stream is read."""
        for root in self.roots:
            if not os.path.lexists("/" + root):
                raise SourceError(
                    f"files source {self.name}: /{root} does not exist",
                    hint="fix the source's paths in the plan",
                )
        hashes: dict[str, str] = {}
        vanished: list[str] = []
        warnings: list[str] = []
        chunks = self._stream(hashes, vanished, warnings)
        try:
            yield Capture(
                chunks=chunks,
                fingerprint={"files": hashes, "vanished": vanished},
                warnings=warnings,
                extension="tar",
                format="tar-pax",
                tool_versions={"python-tarfile": platform.python_version()},
            )
        finally:
            chunks.close()  # stops and joins the writer thread if the stream was abandoned

    def _stream(
        self, hashes: dict[str, str], vanished: list[str], warnings: list[str]
    ) -> Generator[bytes, None, None]:
        pipe = _ChunkPipe()
        writer = threading.Thread(
            target=self._write_archive,
            args=(pipe, hashes, vanished, warnings),
            name=f"drkit-tar-{self.name}",
            daemon=True,
        )
        writer.start()
        try:
            yield from pipe.chunks()
        finally:
            pipe.stop()
            writer.join()

    def _write_archive(
        self, pipe: _ChunkPipe, hashes: dict[str, str], vanished: list[str], warnings: list[str]
    ) -> None:
        """Thread body: every entry into a streaming PAX tar, errors handed to the consumer."""
        try:
            # _ChunkPipe is duck-typed: tarfile only calls write() on it.
            with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                walk = TreeWalk("/", self.selection)
                archiver = TreeArchiver(tar, walk, hashes)
                seen: set[str] = set()
                for root in self.roots:
                    for entry in walk.entries(root):
                        if entry.member not in seen:
                            seen.add(entry.member)
                            archiver.add(entry)
                self._note_vanished(walk.vanished, vanished, warnings)
            pipe.finish()
        except _Cancelled:
            return
        except BaseException as error:  # handed over to be raised in the consumer
            with contextlib.suppress(_Cancelled):
                pipe.finish(error)

    def _note_vanished(self, members: list[str], vanished: list[str], warnings: list[str]) -> None:
        """Files removed while the backup ran (editor swap files, rotated logs): warnings, or
        the backup's failure when the plan says ``vanished_files: fail``."""
        names = [f"/{fingerprint_key(member)}" for member in members]
        if names and self.vanished_files == "fail":
            raise SourceError(
                f"files source {self.name}: {len(names)} path(s) vanished while being archived: "
                + ", ".join(names[:5]),
                hint="run the backup again, or set vanished_files: warn in the plan",
            )
        vanished.extend(fingerprint_key(member) for member in members)
        warnings.extend(f"{name} vanished while being archived" for name in names)

    # --- targets ------------------------------------------------------------------------------

    def default_target(self) -> Target:
        return Target("/")

    def is_target_empty(self, target: Target) -> bool:
        path = Path(target.location)
        if not path.exists():
            return True
        return path.is_dir() and not any(path.iterdir())

    def describe_target(self, target: Target) -> str:
        path = Path(target.location)
        if not path.exists():
            return f"{path} does not exist"
        try:
            count = len(self.fingerprint_target(target, {})["files"])
        except SourceError:
            return f"{path} cannot be read"
        return f"{count} of this source's files under {path}"

    def restore(self, stream: IO[bytes], target: Target, *, replace: bool = False) -> None:
        """Extract the tar under ``target`` (created if missing), refusing unsafe members."""
        directory = Path(target.location)
        if not replace and not self.is_target_empty(target):
            raise RefusedError(f"{directory} is not empty")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            destination = os.path.realpath(directory)
            # errorlevel=2: a failed chown/chmod/utime is an error, not a debug message.
            with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tar:
                # _safe_member refuses traversal, as tarfile's own filters do.
                tar.extractall(destination, filter=_safe_member)  # noqa: S202
            # tarfile stops at the end-of-archive marker; read on to the end so the stream
            # (decryption, with its final authentication check) is consumed completely.
            while stream.read(CHUNK_SIZE):
                pass
        except DrkitError:
            raise
        except tarfile.FilterError as error:
            raise SourceError(
                f"refused an unsafe archive member: {error}",
                hint="the archive was not written by drkit; do not trust it",
            ) from None
        except (tarfile.TarError, OSError) as error:
            raise SourceError(
                f"restoring files source {self.name} to {directory} failed: {error}"
            ) from None
        log.info("restored files source %s under %s", self.name, directory)

    def fingerprint_target(self, target: Target, like: Fingerprint) -> Fingerprint:
        """File hashes under ``target``, walked like the capture (same roots and globs, a
        root that is a symlink followed inside ``target``)."""
        walk = TreeWalk(target.location, self.selection)
        hashes: dict[str, str] = {}
        for root in self.roots:
            # a missing root adds nothing: compare_fingerprints reports its files as missing
            for entry in walk.entries(root):
                key = fingerprint_key(entry.member)
                if stat.S_ISLNK(entry.status.st_mode):
                    hashes[key] = "symlink:" + os.readlink(entry.name, dir_fd=entry.folder)
                elif stat.S_ISREG(entry.status.st_mode):
                    hashes[key] = _hash_entry(entry)
        return {"files": hashes}

    def query(self, target: Target, sql: str) -> object:
        raise SourceError(
            f"files source {self.name} cannot run SQL checks",
            hint="point the sql check at a database source",
        )


def _safe_member(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
    """tarfile's "tar" filter for the path checks (no absolute names, nothing outside the
    destination, never through a symlink), plus a hard-link target check, but with the
    archived mode kept exactly: a restore must reproduce setgid folders and group-writable
    files as they were."""
    _clear_the_way(member, destination)
    checked = tarfile.tar_filter(member, destination)
    if member.islnk():
        link_target = os.path.realpath(os.path.join(destination, member.linkname))
        if os.path.commonpath([link_target, destination]) != destination:
            raise tarfile.LinkOutsideDestinationError(member, link_target)
    return checked.replace(mode=member.mode, deep=False)


def _clear_the_way(member: tarfile.TarInfo, destination: str) -> None:
    """Remove what stands where a member goes (replace mode), so nothing is written through an
    existing symlink or hard link; folders stay when the member is a folder too."""
    name = member.name.lstrip("/")
    if any(part in ("", ".", "..") for part in name.split("/")):
        return  # never remove by an odd name; tar_filter judges the member
    parent = os.path.realpath(os.path.join(destination, os.path.dirname(name)))
    if os.path.commonpath([parent, destination]) != destination:
        return  # tar_filter refuses it
    path = os.path.join(parent, os.path.basename(name))
    if not os.path.lexists(path):
        return
    if os.path.isdir(path) and not os.path.islink(path):
        if not member.isdir():
            shutil.rmtree(path)
    else:
        os.unlink(path)
