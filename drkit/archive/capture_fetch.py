"""Fetching a SQLite capture back from the stores, failing over between them exactly as for
WAL (``fetch.WalFetcher``): ``<generation>.base`` is a generation's base copy; a segment is
fetched completed first, else as the partial object (the segment open when last shipped)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drkit.archive.fetch import WalFetcher
from drkit.archive.objects import WalObject
from drkit.archive.sqlite_names import generation_time, parse_segment_name
from drkit.crypto import KeyEncryptionKey
from drkit.stores.base import Store

BASE_SUFFIX = ".base"


class CaptureFetcher(WalFetcher):
    """``sizes``: (store, name) -> the bytes the ledger says that store was given. An object
    shorter than that authenticates (it is drkit's own, sealed earlier) but is an older copy
    of a segment that grew: a store rolled back or replaced it, and the fetch fails over."""

    def __init__(
        self,
        plan: str,
        source: str,
        stores: Sequence[Store],
        keys: Sequence[KeyEncryptionKey],
        *,
        sizes: Mapping[tuple[str, str], int] | None = None,
    ):
        super().__init__(plan, source, stores, keys)
        self.sizes = dict(sizes or {})

    def rejects(self, store: Store, wal_object: WalObject, data: bytes) -> str | None:
        expected = self.sizes.get((store.name, wal_object.name))
        if expected is not None and len(data) < expected:
            return (
                f"an older copy ({len(data)} of the {expected} bytes the store was given): "
                "rolled back or replaced"
            )
        return None

    def candidates(self, name: str) -> list[WalObject]:
        if name.endswith(BASE_SUFFIX) and generation_time(name[: -len(BASE_SUFFIX)]):
            return [WalObject("base", name[: -len(BASE_SUFFIX)])]
        if parse_segment_name(name) is not None:
            return [WalObject("segment", name), WalObject("partial", name)]
        return []
