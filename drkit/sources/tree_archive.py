"""Writing walked entries into a PAX tar: headers built from the status the walk took through
descriptors (never from a path that could have become a symlink), files read from a
descriptor opened with ``O_NOFOLLOW``, sparse files as sparse members, hard links as links,
and a sha256 per file computed from the bytes archived.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import io
import logging
import os
import pwd
import stat
import tarfile
from functools import cache

from drkit.errors import SourceError
from drkit.sources.sparse import SparseReader, data_regions, describe_sparse
from drkit.sources.tree_walk import Entry, TreeWalk, fingerprint_key, open_entry

log = logging.getLogger(__name__)

_TYPES = {
    stat.S_IFREG: tarfile.REGTYPE,
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
    stat.S_IFCHR: tarfile.CHRTYPE,
    stat.S_IFBLK: tarfile.BLKTYPE,
}


@cache
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@cache
def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""


def header_for(member: str, status: os.stat_result, linkname: str = "") -> tarfile.TarInfo | None:
    """A tar header from a status, as ``tarfile.gettarinfo`` builds it; None for a socket."""
    kind = _TYPES.get(stat.S_IFMT(status.st_mode))
    if kind is None:
        return None
    info = tarfile.TarInfo(member)
    info.type = kind
    info.mode = stat.S_IMODE(status.st_mode)
    info.uid, info.gid = status.st_uid, status.st_gid
    info.uname, info.gname = _user_name(status.st_uid), _group_name(status.st_gid)
    info.mtime = status.st_mtime
    info.size = status.st_size if kind == tarfile.REGTYPE else 0
    info.linkname = linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(status.st_rdev), os.minor(status.st_rdev)
    return info


class TreeArchiver:
    """Appends a walk's entries to ``tar`` and fills ``hashes`` (fingerprint key -> sha256 or
    ``symlink:target``)."""

    def __init__(self, tar: tarfile.TarFile, walk: TreeWalk, hashes: dict[str, str]):
        self.tar = tar
        self.walk = walk
        self.hashes = hashes
        self._inodes: dict[tuple[int, int], str] = {}

    def add(self, entry: Entry) -> None:
        """Append one entry; one that vanished meanwhile is left out (the walk records it)."""
        try:
            self._add(entry)
        except OSError as error:
            if error.args == ("unexpected end of data",):  # read fewer bytes than fstat said
                raise SourceError(
                    f"/{fingerprint_key(entry.member)} shrank while being archived",
                    hint="run the backup again when the file is not being rewritten",
                ) from None
            raise SourceError(
                f"cannot archive /{fingerprint_key(entry.member)}: {error.strerror or error}",
                hint="run drkit as a user who can read every configured path",
            ) from None

    def _add(self, entry: Entry) -> None:
        if stat.S_ISREG(entry.status.st_mode):
            descriptor = open_entry(entry)
            if descriptor is not None:
                try:
                    self._add_file(entry.member, descriptor)
                finally:
                    os.close(descriptor)
                return
            changed = self.walk.refresh(entry)  # a link now, or gone
            if changed is None:
                return
            entry = changed
        linkname = ""
        if stat.S_ISLNK(entry.status.st_mode):
            try:
                linkname = os.readlink(entry.name, dir_fd=entry.folder)
            except FileNotFoundError:
                self.walk.vanished.append(entry.member)
                return
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                raise SourceError(
                    f"/{fingerprint_key(entry.member)} changed type while being archived",
                    hint="run the backup again when the path is not being rewritten",
                ) from None
            self.hashes[fingerprint_key(entry.member)] = "symlink:" + linkname
        info = header_for(entry.member, entry.status, linkname)
        if info is None:
            log.debug("skipping /%s: a socket", fingerprint_key(entry.member))
            return
        self.tar.addfile(info)

    def _add_file(self, member: str, descriptor: int) -> None:
        # Size, mode and owner from fstat of the open file: the bytes read are that file's.
        status = os.fstat(descriptor)
        info = header_for(member, status)
        assert info is not None  # a regular file
        key = fingerprint_key(member)
        inode = (status.st_dev, status.st_ino)
        first = self._inodes.get(inode) if status.st_nlink > 1 else None
        if first is not None:  # a hard link to a file already archived
            info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
            self.hashes[key] = self.hashes[fingerprint_key(first)]
            self.tar.addfile(info)
            return
        if status.st_nlink > 1:
            self._inodes[inode] = member
        regions = data_regions(descriptor, info.size) if _may_be_sparse(status) else None
        map_bytes = describe_sparse(info, regions) if regions is not None else None
        if regions is not None and map_bytes is not None:
            reader = SparseReader(descriptor, map_bytes, regions, status.st_size)
            self.tar.addfile(info, reader)  # type: ignore[arg-type]
            self.hashes[key] = reader.hexdigest()
            return
        with io.FileIO(descriptor, "rb", closefd=False) as file:
            hashing = _HashingReader(file)
            self.tar.addfile(info, hashing)  # type: ignore[arg-type]
        self.hashes[key] = hashing.digest.hexdigest()


def _may_be_sparse(status: os.stat_result) -> bool:
    """Fewer blocks allocated than the size needs: worth asking where the data is."""
    return status.st_blocks * 512 < status.st_size


class _HashingReader:
    """A file that hashes what tarfile reads from it, so each file is read exactly once."""

    def __init__(self, file: io.FileIO):
        self.file = file
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size) or b""
        self.digest.update(data)
        return data
