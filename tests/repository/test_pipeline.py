"""The read-ahead stage: a source's chunks read on their own thread, in order, bounded."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drkit.crypto.keys import KeyfileKek, generate_keyfile
from drkit.errors import IntegrityError, SourceError
from drkit.repository.manifest import Manifest, sha256_hex
from drkit.repository.pipeline import read_ahead
from drkit.repository.staging import stage_artifact
from drkit.repository.writer import Compression, SnapshotWriter
from drkit.sources.base import Capture
from drkit.stores.memory import MemoryStore


def test_chunks_arrive_in_order_and_complete() -> None:
    chunks = [bytes([n]) * 10 for n in range(100)]
    with read_ahead(iter(chunks), depth=4) as stream:
        assert list(stream) == chunks


def test_a_source_error_reaches_the_consumer_after_the_chunks_before_it() -> None:
    def failing() -> Iterator[bytes]:
        yield b"one"
        yield b"two"
        raise SourceError("pg_dump of orders failed")

    received = []
    with pytest.raises(SourceError, match="pg_dump of orders failed"), read_ahead(failing()) as s:
        for chunk in s:
            received.append(chunk)
    assert received == [b"one", b"two"]


def test_reading_runs_ahead_on_another_thread_but_no_further_than_the_queue() -> None:
    produced: list[int] = []
    threads: set[str] = set()

    def endless() -> Iterator[bytes]:
        while True:
            threads.add(threading.current_thread().name)
            produced.append(1)
            yield b"x"

    with read_ahead(endless(), depth=3) as stream:
        assert next(stream) == b"x"
        time.sleep(0.3)  # give the reader time to fill the queue
        # 1 consumed + 3 queued + 1 waiting for room
        assert 3 <= len(produced) <= 5
    assert threads == {"read-source"}


def test_leaving_early_closes_the_source_on_its_thread_and_stops_it() -> None:
    closed = threading.Event()

    def source() -> Iterator[bytes]:
        try:
            while True:
                yield b"x"
        finally:
            closed.set()

    with read_ahead(source(), depth=2) as stream:
        next(stream)
    assert closed.is_set()
    assert not any(t.name == "read-source" for t in threading.enumerate())


class SlowFirstUpload(MemoryStore):
    """A store whose first object's write ends only once the second object's has begun (or
    after a few seconds): it records whether the two overlapped."""

    def __init__(self) -> None:
        super().__init__("slow", "local")
        self.second_started = threading.Event()
        self.overlapped = False
        self.puts = 0

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        with self._lock:
            self.puts += 1
            number = self.puts
        if number == 2:
            self.second_started.set()
        size = super().put(key, chunks)
        if number == 1:
            self.overlapped = self.second_started.wait(timeout=5)
        return size


def test_a_sources_upload_ends_while_the_next_source_streams_and_both_commit(
    tmp_path: Path,
) -> None:
    generate_keyfile(tmp_path / "key")
    store = SlowFirstUpload()
    now = datetime.now(UTC)
    writer = SnapshotWriter(
        "plan", "snap", now, [store], [KeyfileKek("k", str(tmp_path / "key"))],
        Compression("zstd"), "0" * 64,
    )  # fmt: skip
    for source in ("first", "second"):
        writer.add(source, "files", Capture(iter([source.encode() * 1000]), {}, "tar"), None)

    committed = writer.commit(["first", "second"])

    assert store.overlapped
    assert committed is not None and [r.ok for r in committed.stores] == [True]
    assert len(store.list()) == 3  # two artifacts and the manifest


def written_snapshot(tmp_path: Path, data: bytes) -> tuple[MemoryStore, Manifest, list[KeyfileKek]]:
    generate_keyfile(tmp_path / "key")
    keys = [KeyfileKek("k", str(tmp_path / "key"))]
    store = MemoryStore()
    writer = SnapshotWriter(
        "plan", "snap", datetime.now(UTC), [store], keys, Compression("zstd"), "0" * 64
    )
    chunks = iter([data[i : i + 100_000] for i in range(0, len(data), 100_000)])
    writer.add("db", "postgresql", Capture(chunks, {}, "pgdump"), None)
    committed = writer.commit(["db"])
    assert committed is not None
    return store, committed.manifest, keys


def test_staging_can_keep_the_plaintext_it_authenticated_and_drops_the_ciphertext(
    tmp_path: Path,
) -> None:
    data = os.urandom(300_000) + b"table rows " * 50_000
    store, manifest, keys = written_snapshot(tmp_path, data)
    staging = tmp_path / "staging"
    staging.mkdir()

    staged = stage_artifact(
        store, manifest, manifest.artifact("db"), keys, staging, keep_plaintext=True
    )

    assert staged.plaintext_path is not None
    assert staged.plaintext_path.read_bytes() == data
    assert staged.plaintext_path.stat().st_mode & 0o777 == 0o600
    assert list(staging.iterdir()) == [staged.plaintext_path]
    with staged.open_plaintext(keys) as stream:
        assert stream.read() == data


def test_a_tampered_artifact_leaves_no_plaintext_behind(tmp_path: Path) -> None:
    # Incompressible data, so the flipped byte in the middle lies in the sealed chunks, not in
    # the header where the wrapped keys sit (that damage is another test's).
    store, manifest, keys = written_snapshot(tmp_path, random.Random(7).randbytes(300_000))
    artifact = manifest.artifact("db")
    assert artifact.encrypted is not None
    damaged = bytearray(store.objects[artifact.encrypted.key])
    damaged[len(damaged) // 2] ^= 1
    store.objects[artifact.encrypted.key] = bytes(damaged)
    staging = tmp_path / "staging"
    staging.mkdir()
    # A manifest that vouches for the damaged bytes: only decryption can catch them.
    vouching = artifact.model_copy(
        update={"encrypted": artifact.encrypted.model_copy(update={"sha256": sha256_hex(damaged)})}
    )

    for record, message in ((artifact, "is corrupt"), (vouching, "authentication|corrupt|differs")):
        with pytest.raises(IntegrityError, match=message):
            stage_artifact(store, manifest, record, keys, staging, keep_plaintext=True)

        assert not list(staging.glob("*.plain"))
