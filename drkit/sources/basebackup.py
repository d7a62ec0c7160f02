"""Physical base backups of a PostgreSQL cluster for point-in-time restore (a source with
``pitr:``): ``pg_basebackup -Ft -X none -D -`` streams one tar of the data directory, with the
backup manifest (SHA-256 per file) written into the tar as its last member.

The stream is proven as it flows, the way ``pg_verifybackup`` proves a directory: every file
of the manifest is present with its size and SHA-256, nothing is in the tar that the manifest
does not list, and the manifest's own checksum holds. A mismatch fails the capture, so the
snapshot is never committed. WAL is not in the tar (``-X none``): ``drkit archive`` ships it,
and the manifest's WAL range (timeline, start and end LSN) goes into the fingerprint so
restores and the continuity ledger know which WAL the backup needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from drkit.errors import IntegrityError, SourceError, ToolError
from drkit.execute import Command, Process, find_program
from drkit.plan.schema import PostgresqlSource
from drkit.sources.base import Capture, Fingerprint, Restored, Target
from drkit.sources.postgresql import (
    CHUNK_SIZE,
    PostgresqlDatabase,
    connect,
    password_file,
    tool_environment,
    tool_version,
)
from drkit.sources.urls import parse_database_url

log = logging.getLogger(__name__)

BLOCK = 512
MANIFEST_NAME = "backup_manifest"
#: the artifact format of a physical base backup, as manifests record it
BASE_BACKUP_FORMAT = "pg_basebackup-tar"


def make_base_backup_command(url: str, *, password: Any, program: str) -> Command:
    """pg_basebackup writing one tar (data directory plus backup manifest) to stdout."""
    return Command(
        argv=(
            program,
            f"--dbname={url}",
            "--pgdata=-",
            "--format=tar",
            "--wal-method=none",  # drkit archive ships the WAL
            "--checkpoint=fast",  # start now, not at the next scheduled checkpoint
            "--manifest-checksums=SHA256",
            "--no-password",
        ),
        env=tool_environment(),
        secret_files=password_file(password),
    )


@dataclass
class TarMember:
    name: str
    size: int
    sha: Any = field(default_factory=hashlib.sha256)
    left: int = 0
    keep: bytearray | None = None  # the manifest's bytes, kept whole


class TarManifestCheck:
    """Follows a ustar stream block by block, hashing each regular file, and checks the
    result against the ``backup_manifest`` member at the end."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._member: TarMember | None = None
        self._padding = 0
        self._ended = False
        self.files: dict[str, tuple[int, str]] = {}
        self.manifest: bytes | None = None

    def through(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._feed(chunk)
            yield chunk

    def _feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._member is not None and self._member.left:
                take = view[: self._member.left]
                self._member.sha.update(take)
                if self._member.keep is not None:
                    self._member.keep.extend(take)
                self._member.left -= len(take)
                view = view[len(take) :]
                if not self._member.left:
                    self._close_member()
                continue
            if self._padding:
                skip = min(self._padding, len(view))
                self._padding -= skip
                view = view[skip:]
                continue
            need = BLOCK - len(self._buffer)
            self._buffer.extend(view[:need])
            view = view[need:]
            if len(self._buffer) == BLOCK:
                header, self._buffer = bytes(self._buffer), bytearray()
                self._read_header(header)

    def _read_header(self, header: bytes) -> None:
        if self._ended or header == bytes(BLOCK):
            self._ended = True
            return
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if prefix:
            name = f"{prefix}/{name}"
        size = parse_tar_number(header[124:136])
        kind = header[156:157]
        member = TarMember(name=name, size=size, left=size)
        if kind not in (b"0", b"\0"):
            member.sha = None  # directories, links: not files of the manifest
        if name == MANIFEST_NAME:
            member.keep = bytearray()
        self._member = member
        self._padding = (-size) % BLOCK
        if not size:
            self._close_member()

    def _close_member(self) -> None:
        member = self._member
        assert member is not None
        if member.keep is not None:
            self.manifest = bytes(member.keep)
        elif member.sha is not None:
            self.files[member.name] = (member.size, member.sha.hexdigest())
        self._member = None

    def verify(self) -> dict[str, Any]:
        """IntegrityError unless the tar matched its manifest; the manifest's WAL range."""
        if self.manifest is None:
            raise IntegrityError("the base backup has no backup_manifest")
        document = parse_backup_manifest(self.manifest)
        listed: dict[str, tuple[int, str]] = {}
        for entry in document.get("Files", []):
            if entry.get("Checksum-Algorithm") != "SHA256":
                raise IntegrityError("the backup manifest lacks SHA-256 checksums")
            listed[entry["Path"]] = (int(entry["Size"]), str(entry["Checksum"]).lower())
        problems = [
            f"{path}: {'missing' if path not in self.files else 'size or checksum differs'}"
            for path, expected in listed.items()
            if self.files.get(path) != expected
        ]
        problems += [f"{path}: not in the manifest" for path in self.files if path not in listed]
        if problems:
            raise IntegrityError(
                f"base backup does not match its manifest ({len(problems)} problems): "
                + "; ".join(sorted(problems)[:3])
            )
        ranges = document.get("WAL-Ranges") or []
        if not ranges:
            raise IntegrityError("the backup manifest has no WAL range")
        return {
            "timeline": int(ranges[-1]["Timeline"]),
            "start_lsn": str(ranges[0]["Start-LSN"]),
            "end_lsn": str(ranges[-1]["End-LSN"]),
            "files": len(listed),
        }


def parse_tar_number(field_bytes: bytes) -> int:
    """A tar header number: octal text, or base-256 when the first byte has its top bit."""
    if field_bytes and field_bytes[0] & 0x80:
        return int.from_bytes(field_bytes[1:], "big")
    text = field_bytes.split(b"\0", 1)[0].strip() or b"0"
    return int(text, 8)


def parse_backup_manifest(data: bytes) -> dict[str, Any]:
    """The manifest as JSON, after checking its own SHA-256 (over everything before the
    ``Manifest-Checksum`` line)."""
    marker = data.rfind(b'"Manifest-Checksum"')
    if marker < 0:
        raise IntegrityError("the backup manifest has no checksum of its own")
    try:
        document: dict[str, Any] = json.loads(data)
    except ValueError:
        raise IntegrityError("the backup manifest is not valid JSON") from None
    if hashlib.sha256(data[:marker]).hexdigest() != document.get("Manifest-Checksum"):
        raise IntegrityError("the backup manifest's own checksum does not match")
    return document


class PhysicalPostgresql(PostgresqlDatabase):
    """A PostgreSQL source with ``pitr:``: snapshots are physical base backups. They restore
    with ``drkit restore PLAN --at/--before/--latest`` into a new data directory."""

    def __init__(self, spec: PostgresqlSource) -> None:
        super().__init__(spec)
        assert spec.pitr is not None
        self.replication_url = parse_database_url(spec.pitr.replication_url or spec.url)

    @contextmanager
    def snapshot(self) -> Iterator[Capture]:
        password = self._password()
        with connect(self.url, password) as connection:
            server_version = connection.info.server_version
        major = str(server_version // 10000)
        program = find_program("pg_basebackup", version_dir=major)
        fingerprint: Fingerprint = {"server_version": str(server_version)}
        command = make_base_backup_command(
            str(self.replication_url), password=password, program=program
        )
        check = TarManifestCheck()

        def chunks(process: Process) -> Iterator[bytes]:
            yield from check.through(stream_tar(process, f"pg_basebackup of {self.name}"))
            fingerprint["base_backup"] = {**check.verify(), "end_time": _now_text()}

        with Process(command) as process:
            yield Capture(
                chunks=chunks(process),
                fingerprint=fingerprint,
                extension="tar",
                tool_versions={"pg_basebackup": tool_version(program)},
                format=BASE_BACKUP_FORMAT,
            )

    # A physical restore's target is a data directory (docs/pitr.md), never a database.

    def is_target_empty(self, target: Target) -> bool:
        folder = Path(target.location)
        return not folder.exists() or not any(folder.iterdir())

    def describe_target(self, target: Target) -> str:
        folder = Path(target.location)
        count = sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0
        return f"a folder with {count} entries"

    def restore(self, stream: IO[bytes], target: Target, *, replace: bool = False) -> None:
        """Unpack the base backup into the data directory ``target`` (created 0700). With
        ``replace``, what is there goes first (refused while a server runs on it)."""
        folder = Path(target.location)
        if folder.exists() and any(folder.iterdir()):
            if not replace:
                raise SourceError(f"{folder} is not empty", hint="choose a new folder")
            if (folder / "postmaster.pid").exists():
                raise SourceError(
                    f"a PostgreSQL server may be running on {folder} (postmaster.pid exists)",
                    hint="stop it first: pg_ctl -D FOLDER stop",
                )
            shutil.rmtree(folder)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                archive.extractall(folder, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise SourceError(f"could not unpack the base backup into {folder}: {error}") from None
        os.chmod(folder, 0o700)

    def restore_faithfully(
        self,
        stream: IO[bytes],
        target: Target,
        *,
        captured: Fingerprint,
        roles: str,
        replace: bool = False,
        private: dict[str, Any] | None = None,
    ) -> Restored:
        """A data directory holds owners, privileges and roles as they were: unpack it."""
        self.restore(stream, target, replace=replace)
        return Restored()

    def fingerprint_target(self, target: Target, like: Fingerprint) -> Fingerprint:
        """Nothing to count before the server replays the WAL: the drill and ``--at`` check
        where recovery landed instead (docs/pitr.md)."""
        return {}


def stream_tar(process: Process, what: str) -> Iterator[bytes]:
    """pg_basebackup's stdout in chunks as it writes them; SourceError when it fails."""
    wrote = False
    while chunk := os.read(process.stdout.fileno(), CHUNK_SIZE):
        wrote = True
        yield chunk
    try:
        process.finish()
    except ToolError as error:
        raise SourceError(f"{what} failed: {error.message}") from None
    if not wrote:
        raise SourceError(f"{what}: pg_basebackup wrote nothing")


def _now_text() -> str:
    return datetime.now(UTC).isoformat()
