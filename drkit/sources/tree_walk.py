"""Walking a files source's tree safely: every folder is opened with ``O_NOFOLLOW`` and its
children are reached through the folder's descriptor, so a folder swapped for a symlink while
the walk runs is seen as the link it now is and never followed out of the tree.

Names are the filesystem's bytes, carried as ``str`` with ``surrogateescape`` (what ``os``
returns), so every name the filesystem allows round-trips; ``fingerprint_key`` turns one into
text that JSON and people can read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from drkit.errors import SourceError

#: Symlinks followed while resolving a configured root, as the kernel's own limit.
MAX_LINK_HOPS = 40
#: Opening a folder: never through a symlink, never left open in a child process.
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Opening a file to read it: never through a symlink, never blocking on a FIFO swapped in.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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


@dataclass(frozen=True)
class Entry:
    """One thing to archive: its name inside an open folder, its archive name, and its status
    when the walk saw it (``fstat`` of the opened folder for folders)."""

    folder: int
    name: str
    member: str
    status: os.stat_result
    #: a folder's own descriptor, open while its children are walked
    opened: int = -1

    @property
    def is_directory(self) -> bool:
        return stat.S_ISDIR(self.status.st_mode)


def fingerprint_key(member: str) -> str:
    """The text naming ``member`` in fingerprints and messages: the name itself when it is
    valid UTF-8, else the name with each undecodable byte written ``\\xNN``."""
    try:
        member.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(member).decode("utf-8", "backslashreplace")
    return member


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def resolve_within(base: str, member: str) -> str | None:
    """``member`` with every symlink in it followed as if ``base`` were ``/`` (absolute link
    targets start again at ``base``); None for a link loop. For ``base`` ``/`` this is
    ``realpath``; for a restored copy it finds the link's target inside the copy."""
    pending = [part for part in member.split("/") if part not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        path = os.path.join(base, *resolved, part)
        if not os.path.islink(path):
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return None
        target = os.readlink(path)
        if target.startswith("/"):
            resolved = []
        pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
    return "/".join(resolved)


def archived_roots(base: str, roots: list[str]) -> list[str]:
    """The top-level paths a capture of ``roots`` put under ``base`` (a restored or staged
    copy): each root, and for a root that is a symlink the path it resolves to inside
    ``base``, which the capture archived under its own name. What a restore moves into place."""
    found: list[str] = []
    for root in roots:
        pending = [root]
        while pending:
            member = pending.pop()
            if member in found:
                continue
            found.append(member)
            if os.path.islink(os.path.join(base, member)):
                resolved = resolve_within(base, member)
                if resolved and os.path.lexists(os.path.join(base, resolved)):
                    pending.append(resolved)
    return found


class TreeWalk:
    """Lists a source's entries under ``base`` (``/`` at backup, a restored copy after), parents
    before children, sorted. Entries that vanish while walking become ``vanished`` members,
    not errors."""

    def __init__(self, base: str, selection: Selection):
        self.base = base
        self.selection = selection
        self.vanished: list[str] = []

    def entries(self, root: str) -> Iterator[Entry]:
        """Everything to archive for one configured root. A root that is a symlink is listed
        as the link, then the tree it points to under its own (resolved) name."""
        parent_path = os.path.join(self.base, os.path.dirname(root))
        try:
            parent = os.open(parent_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as error:
            raise _unreadable(parent_path, error) from None
        try:
            entry = self._look(parent, os.path.basename(root), root)
            if entry is None:
                return
            if stat.S_ISLNK(entry.status.st_mode):
                yield entry
                resolved = resolve_within(self.base, root)
                if resolved and resolved != root:  # not a loop, not "/" itself
                    yield from self.entries(resolved)
                return
            pending = [entry] if entry.is_directory else []
            if entry.is_directory:
                yield from self._walk(entry, "", pending, selected=not self.selection.include)
            else:
                yield entry
        finally:
            os.close(parent)

    def _look(self, folder: int, name: str, member: str) -> Entry | None:
        """The entry for ``name`` in ``folder``; a folder is opened (never through a link) and
        its entry carries the descriptor. None when it vanished."""
        try:
            status = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            self.vanished.append(member)
            return None
        except OSError as error:
            raise _unreadable(member, error) from None
        if not stat.S_ISDIR(status.st_mode):
            return Entry(folder, name, member, status)
        try:
            opened = os.open(name, DIRECTORY_FLAGS, dir_fd=folder)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                # swapped for a link or a file (or removed) since it was listed: take what
                # is there now, never what a link points to
                return self.refresh(Entry(folder, name, member, status))
            raise _unreadable(member, error) from None
        return Entry(folder, name, member, os.fstat(opened), opened)

    def refresh(self, entry: Entry) -> Entry | None:
        """``entry`` as it is now, after it changed type under the walk (None: vanished). A
        folder or file that keeps changing is an error: what was read is not one state."""
        try:
            status = os.stat(entry.name, dir_fd=entry.folder, follow_symlinks=False)
        except FileNotFoundError:
            self.vanished.append(entry.member)
            return None
        except OSError as error:
            raise _unreadable(entry.member, error) from None
        if stat.S_ISDIR(status.st_mode) or stat.S_IFMT(status.st_mode) == stat.S_IFMT(
            entry.status.st_mode
        ):
            raise SourceError(
                f"/{fingerprint_key(entry.member)} kept changing while being archived",
                hint="run the backup again when the path is not being rewritten",
            )
        return Entry(entry.folder, entry.name, entry.member, status)

    def _walk(
        self, directory: Entry, relative: str, pending: list[Entry], *, selected: bool
    ) -> Iterator[Entry]:
        """The children of an opened folder (its descriptor is closed at the end)."""
        try:
            if selected:
                yield from pending
                pending.clear()
            try:
                names = sorted(os.listdir(directory.opened))
            except OSError as error:
                raise _unreadable(directory.member, error) from None
            for name in names:
                yield from self._child(directory, relative, name, pending, selected=selected)
        finally:
            os.close(directory.opened)

    def _child(
        self, directory: Entry, relative: str, name: str, pending: list[Entry], *, selected: bool
    ) -> Iterator[Entry]:
        child_relative = _join(relative, name)
        if self.selection.is_excluded(child_relative):
            return
        child_selected = selected or self.selection.is_included(child_relative)
        entry = self._look(directory.opened, name, _join(directory.member, name))
        if entry is None:
            return
        if entry.is_directory:
            pending.append(entry)
            yield from self._walk(entry, child_relative, pending, selected=child_selected)
            if pending and pending[-1] is entry:
                pending.pop()  # nothing selected inside: leave the folder out
        elif child_selected:
            yield from pending
            pending.clear()
            yield entry


def _unreadable(path: str, error: OSError) -> SourceError:
    return SourceError(
        f"cannot read /{fingerprint_key(path.lstrip('/'))}: {error.strerror or error}",
        hint="run drkit as a user who can read every configured path",
    )


def open_entry(entry: Entry) -> int | None:
    """A descriptor of a regular file entry, opened without following a link; None when it is
    no longer a regular file (the caller looks again)."""
    with contextlib.suppress(OSError):
        opened = os.open(entry.name, FILE_FLAGS, dir_fd=entry.folder)
        if stat.S_ISREG(os.fstat(opened).st_mode):
            return opened
        os.close(opened)
    return None
