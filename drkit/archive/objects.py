"""Where WAL lives inside every store, and how each WAL file is sealed.

Layout (next to ``<plan>/snapshots/``, the same in every store)::

    <plan>/wal/<source>/segments/<segment>.drkit     a completed segment
    <plan>/wal/<source>/partial/<segment>.drkit      the newest unfinished segment, rewritten
                                                     every few seconds, removed once complete
    <plan>/wal/<source>/history/<tli>.history.drkit  a timeline history file
    <plan>/wal/<source>/base/<generation>.drkit      a SQLite capture generation's base copy

Each object is one sealed artifact (docs/artifact-format.md) of the zstd-compressed file; the
context bound into it names plan, source, kind and file, so an object moved to another name
fails authentication. A partial object's plaintext is an 8-byte big-endian segment size, then
the segment with its trailing zero bytes cut (pg_receivewal pre-fills partial segments with
zeros): fetching pads it back, byte for byte the file pg_receivewal had. Restic stores take no
WAL (one restic snapshot per file every few seconds is not what restic is for).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from drkit.crypto import KeyEncryptionKey, decrypt_chunks, encrypt_chunks
from drkit.errors import IntegrityError
from drkit.repository import compress_chunks, decompress_chunks
from drkit.stores.base import Store

Kind = Literal["segment", "partial", "history", "base"]
FOLDERS: dict[Kind, str] = {
    "segment": "segments",
    "partial": "partial",
    "history": "history",
    "base": "base",  # a SQLite capture generation's base copy (drkit.archive.sqlite_capture)
}
EXTENSION = ".drkit"
SIZE_PREFIX = 8
COMPRESSION_LEVEL = 3


@dataclass(frozen=True)
class WalObject:
    """One WAL file as a store holds it."""

    kind: Kind
    name: str  # segment name or NNNNNNNN.history

    def key(self, plan: str, source: str) -> str:
        return f"{wal_prefix(plan, source)}{FOLDERS[self.kind]}/{self.name}{EXTENSION}"

    def context(self, plan: str, source: str) -> str:
        return f"drkit:{plan}:wal:{source}:{self.kind}:{self.name}"


def wal_prefix(plan: str, source: str | None = None) -> str:
    return f"{plan}/wal/" if source is None else f"{plan}/wal/{source}/"


def objects_from_keys(plan: str, source: str, keys: Sequence[str]) -> list[WalObject]:
    """The WAL objects among a store's keys (others ignored)."""
    prefix = wal_prefix(plan, source)
    by_folder = {folder: kind for kind, folder in FOLDERS.items()}
    found = []
    for key in keys:
        if not key.startswith(prefix) or not key.endswith(EXTENSION):
            continue
        folder, _, name = key[len(prefix) : -len(EXTENSION)].partition("/")
        if folder in by_folder and name and "/" not in name:
            found.append(WalObject(by_folder[folder], name))
    return found


def is_wal_store(store: Store) -> bool:
    """Stores that take WAL: every store that takes drkit's sealed objects (not restic)."""
    return not store.wants_plaintext


def seal_wal(
    data: bytes, wal_object: WalObject, plan: str, source: str, keys: Sequence[KeyEncryptionKey]
) -> bytes:
    """The sealed bytes of one WAL file (the same bytes go to every store)."""
    if wal_object.kind == "partial":
        data = len(data).to_bytes(SIZE_PREFIX, "big") + data.rstrip(b"\0")
    stream = compress_chunks([data], COMPRESSION_LEVEL)
    return b"".join(encrypt_chunks(stream, keys, wal_object.context(plan, source)))


def open_wal(
    chunks: Iterable[bytes],
    wal_object: WalObject,
    plan: str,
    source: str,
    keys: Sequence[KeyEncryptionKey],
) -> bytes:
    """The WAL file from its sealed object: IntegrityError when it does not authenticate."""
    plain = b"".join(
        decompress_chunks(decrypt_chunks(chunks, keys, wal_object.context(plan, source)))
    )
    if wal_object.kind != "partial":
        return plain
    if len(plain) < SIZE_PREFIX:
        raise IntegrityError(f"partial WAL object {wal_object.name} is too short")
    size = int.from_bytes(plain[:SIZE_PREFIX], "big")
    body = plain[SIZE_PREFIX:]
    if len(body) > size:
        raise IntegrityError(f"partial WAL object {wal_object.name} is longer than its segment")
    return body + bytes(size - len(body))
