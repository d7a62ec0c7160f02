"""Config files and folders, captured as one PAX tar stream (modes, owners, mtimes, symlinks as
symlinks, directories) and fingerprinted with a sha256 per file while the stream is written,
so each file is read once.

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
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO

from drkit.errors import DrkitError, RefusedError, SourceError
from drkit.plan.schema import FilesSource
from drkit.sources.base import Capture, Fingerprint, Target

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
#: Chunks waiting between the tar writer thread and the consumer; bounds memory.
QUEUE_DEPTH = 4
#: How often a blocked writer looks whether the consumer went away.
CANCEL_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Selection:
    """The plan's include/exclude globs, matched on the path relative to its root and on the
    basename. An empty include list selects everything."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def _matches(self, patterns: tuple[str, ...], relative: str) -> bool:
        basename = relative.rsplit("/", 1)[-1]
        return any(fnmatchcase(relative, p) or fnmatchcase(basename, p) for p in patterns)

    def is_excluded(self, relative: str) -> bool:
        return self._matches(self.exclude, relative)

    def is_included(self, relative: str) -> bool:
        return not self.include or self._matches(self.include, relative)


def member_name(path: str) -> str:
    """The archive name of an absolute or relative path: absolute, then relative to ``/``."""
    return os.path.abspath(path).lstrip("/")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def iter_entries(base: str, root: str, selection: Selection) -> Iterator[tuple[str, str]]:
    """``(filesystem path, member name)`` of everything to archive under ``base/root``, parents
    before children, sorted. With an include list, a folder is listed only when something in it
    is (or it matches itself, which selects all below it)."""
    path = os.path.join(base, root) if root else base
    if not os.path.isdir(path) or os.path.islink(path):
        yield path, root
        return
    pending = [(path, root)] if root else []
    yield from _walk(path, root, "", selection, pending, selected=not selection.include)


def _walk(
    directory: str,
    member: str,
    relative: str,
    selection: Selection,
    pending: list[tuple[str, str]],
    *,
    selected: bool,
) -> Iterator[tuple[str, str]]:
    if selected:
        yield from pending
        pending.clear()
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        raise SourceError(
            f"cannot list {directory}: {error.strerror}",
            hint="run drkit as a user who can read every configured path",
        ) from None
    for entry in entries:
        child_relative = _join(relative, entry.name)
        child = (entry.path, _join(member, entry.name))
        if selection.is_excluded(child_relative):
            continue
        child_selected = selected or selection.is_included(child_relative)
        if entry.is_dir(follow_symlinks=False):
            pending.append(child)
            yield from _walk(
                entry.path, child[1], child_relative, selection, pending, selected=child_selected
            )
            if pending and pending[-1] == child:
                pending.pop()  # nothing selected inside: leave the folder out
        elif child_selected:
            yield from pending
            pending.clear()
            yield child


def hash_file(path: str) -> str:
    """sha256 hex of a file's content; SourceError when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while chunk := file.read(CHUNK_SIZE):
                digest.update(chunk)
    except OSError as error:
        raise SourceError(f"cannot read {path}: {error.strerror}") from None
    return digest.hexdigest()


class _HashingReader:
    """A file that hashes what tarfile reads from it, so each file is read exactly once."""

    def __init__(self, file: IO[bytes]):
        self.file = file
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.digest.update(data)
        return data


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
        chunks = self._stream(hashes)
        try:
            yield Capture(
                chunks=chunks,
                fingerprint={"files": hashes},
                extension="tar",
                format="tar-pax",
                tool_versions={"python-tarfile": platform.python_version()},
            )
        finally:
            chunks.close()  # stops and joins the writer thread if the stream was abandoned

    def _stream(self, hashes: dict[str, str]) -> Generator[bytes, None, None]:
        pipe = _ChunkPipe()
        writer = threading.Thread(
            target=self._write_archive,
            args=(pipe, hashes),
            name=f"drkit-tar-{self.name}",
            daemon=True,
        )
        writer.start()
        try:
            yield from pipe.chunks()
        finally:
            pipe.stop()
            writer.join()

    def _write_archive(self, pipe: _ChunkPipe, hashes: dict[str, str]) -> None:
        """Thread body: every entry into a streaming PAX tar, errors handed to the consumer."""
        try:
            # _ChunkPipe is duck-typed: tarfile only calls write() on it.
            with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                seen: set[str] = set()
                for root in self.roots:
                    for path, member in iter_entries("/", root, self.selection):
                        if member not in seen:
                            seen.add(member)
                            _add_entry(tar, path, member, hashes)
            pipe.finish()
        except _Cancelled:
            return
        except BaseException as error:  # handed over to be raised in the consumer
            with contextlib.suppress(_Cancelled):
                pipe.finish(error)

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
        """File hashes under ``target``, walked like the capture (same roots and globs)."""
        base = target.location
        hashes: dict[str, str] = {}
        for root in self.roots:
            if not os.path.lexists(os.path.join(base, root)):
                continue  # compare_fingerprints reports every file of it as missing
            for path, member in iter_entries(base, root, self.selection):
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):
                    hashes[member] = "symlink:" + os.readlink(path)
                elif stat.S_ISREG(mode):
                    hashes[member] = hash_file(path)
        return {"files": hashes}

    def query(self, target: Target, sql: str) -> object:
        raise SourceError(
            f"files source {self.name} cannot run SQL checks",
            hint="point the sql check at a database source",
        )


def _open_no_follow(path: str, flags: int) -> int:
    # The entry was a regular file a moment ago; never follow a link swapped in since.
    return os.open(path, flags | os.O_NOFOLLOW)


def _add_entry(tar: tarfile.TarFile, path: str, member: str, hashes: dict[str, str]) -> None:
    """Append one file, folder or symlink; hash regular files from the bytes archived."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            _add_file(tar, path, member, hashes)
            return
        info = tar.gettarinfo(path, arcname=member)
        if info is None:  # a socket: nothing to restore
            log.debug("skipping %s: not a file, folder or symlink", path)
            return
        if info.isreg():
            raise SourceError(
                f"{path} changed type while being archived",
                hint="run the backup again when the path is not being rewritten",
            )
        if info.issym():
            hashes[member] = "symlink:" + info.linkname
        tar.addfile(info)
    except OSError as error:
        if error.args == ("unexpected end of data",):  # tarfile read fewer bytes than stat said
            raise SourceError(
                f"{path} shrank while being archived",
                hint="run the backup again when the file is not being rewritten",
            ) from None
        raise SourceError(
            f"cannot archive {path}: {error.strerror or error}",
            hint="run drkit as a user who can read every configured path",
        ) from None


def _add_file(tar: tarfile.TarFile, path: str, member: str, hashes: dict[str, str]) -> None:
    with open(path, "rb", opener=_open_no_follow) as file:
        # Size, mode and owner from fstat of the open file: the bytes read are that file's.
        info = tar.gettarinfo(arcname=member, fileobj=file)
        if info.islnk():  # a hard link to a file already archived
            hashes[member] = hashes[info.linkname]
            tar.addfile(info)
            return
        reader = _HashingReader(file)
        tar.addfile(info, reader)
        hashes[member] = reader.digest.hexdigest()


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
