"""Fetching archived binlog files back from the stores, failing over between them exactly as
for WAL (``fetch.WalFetcher``): a completed file first, else the partial one (the file the
server was writing when it was last shipped)."""

from __future__ import annotations

from drkit.archive.fetch import WalFetcher
from drkit.archive.objects import WalObject
from drkit.sources.binlog_stream import is_binlog_name


class BinlogFetcher(WalFetcher):
    def candidates(self, name: str) -> list[WalObject]:
        if is_binlog_name(name):
            return [WalObject("segment", name), WalObject("partial", name)]
        return []
