"""Sparse files in a PAX tar: the GNU sparse format 1.0, which Python's tarfile and GNU tar
both read and extract with the holes left unallocated (tarfile itself writes no sparse members).

A sparse member is written under a stand-in name (``folder/GNUSparseFile.0/name``, what an old
tar that knows no sparse format would extract) with the real name and size in PAX records; its
data is a map of the data regions (decimal lines, padded to a 512-byte block) followed by
those regions only. Data regions are found with ``SEEK_DATA``/``SEEK_HOLE``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator

CHUNK_SIZE = 1024 * 1024
ZEROS = bytes(CHUNK_SIZE)
#: Larger stored data would need a PAX ``size`` record, which tarfile applies after the real
#: size and so would truncate the file on extraction; such files are stored whole.
MAX_STORED_SIZE = 8**11 - 1


def data_regions(descriptor: int, size: int) -> list[tuple[int, int]] | None:
    """``(offset, length)`` of each data region of an open file, or None when the file has
    no holes (or the filesystem cannot tell)."""
    regions: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            start = os.lseek(descriptor, offset, os.SEEK_DATA)
            end = min(os.lseek(descriptor, start, os.SEEK_HOLE), size)
            regions.append((start, end - start))
            offset = end
    except OSError:  # ENXIO: no data after offset, the rest is a hole
        pass
    finally:
        os.lseek(descriptor, 0, os.SEEK_SET)
    if sum(length for _, length in regions) >= size:
        return None
    return regions


def sparse_map(regions: list[tuple[int, int]], size: int) -> bytes:
    """The 1.0 map block(s). A file ending in a hole gets a last empty region at its end, as
    GNU tar writes it, so every reader sizes the file right."""
    if not regions or sum(regions[-1]) < size:
        regions = [*regions, (size, 0)]
    lines = [str(len(regions))] + [str(n) for region in regions for n in region]
    text = ("\n".join(lines) + "\n").encode()
    return text + bytes(-len(text) % tarfile.BLOCKSIZE)


def describe_sparse(info: tarfile.TarInfo, regions: list[tuple[int, int]]) -> bytes | None:
    """Turn ``info`` (a regular file's header) into a sparse member's header; the map to
    write before the data, or None when the file is better stored whole."""
    map_bytes = sparse_map(regions, info.size)
    stored = len(map_bytes) + sum(length for _, length in regions)
    if stored > MAX_STORED_SIZE:
        return None
    folder, _, base = info.name.rpartition("/")
    stand_in = f"{folder}/GNUSparseFile.0/{base}" if folder else f"GNUSparseFile.0/{base}"
    # "path" first: tarfile applies the records in order, and GNU.sparse.name must win.
    info.pax_headers = {
        "path": stand_in,
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": info.name,
        "GNU.sparse.realsize": str(info.size),
    }
    info.name = stand_in
    info.size = stored
    return map_bytes


class SparseReader:
    """What tarfile reads for a sparse member: the map, then each data region read with
    ``pread``; ``digest`` hashes the whole content, holes as zeros, as a restore gives it."""

    def __init__(
        self, descriptor: int, map_bytes: bytes, regions: list[tuple[int, int]], size: int
    ):
        self.digest = hashlib.sha256()
        self._pieces = self._read_all(descriptor, map_bytes, regions, size)
        self._piece = memoryview(b"")

    def _read_all(
        self, descriptor: int, map_bytes: bytes, regions: list[tuple[int, int]], size: int
    ) -> Iterator[bytes]:
        yield map_bytes
        position = 0
        for offset, length in regions:
            self._hash_zeros(offset - position)
            end = offset + length
            while offset < end:
                data = os.pread(descriptor, min(CHUNK_SIZE, end - offset), offset)
                if not data:
                    return  # shrank: tarfile reports the short member
                self.digest.update(data)
                offset += len(data)
                yield data
            position = end
        self._hash_zeros(size - position)

    def _hash_zeros(self, count: int) -> None:
        while count > 0:
            step = min(count, CHUNK_SIZE)
            self.digest.update(ZEROS[:step])
            count -= step

    def hexdigest(self) -> str:
        """The content's sha256, once tarfile has read the member (hashes a trailing hole)."""
        for _ in self._pieces:
            pass
        return self.digest.hexdigest()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (fewer only at the end or when the file shrank)."""
        parts = []
        wanted = size if size >= 0 else float("inf")
        while wanted > 0:
            if not self._piece:
                piece = next(self._pieces, None)
                if piece is None:
                    break
                self._piece = memoryview(piece)
            take = int(min(wanted, len(self._piece)))
            parts.append(self._piece[:take])
            self._piece = self._piece[take:]
            wanted -= take
        return b"".join(parts)
