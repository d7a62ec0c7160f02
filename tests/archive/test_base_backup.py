"""Physical base backups are proven against their own manifest as they stream: the real
pg_basebackup stream passes, and one changed byte in any file fails before a commit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drkit.archive.walnames import parse_lsn
from drkit.errors import IntegrityError
from drkit.sources import make_source
from drkit.sources.basebackup import TarManifestCheck
from tests.archive.conftest import PitrSetup

pytestmark = pytest.mark.slow


def capture(setup: PitrSetup) -> tuple[bytes, dict[str, object]]:
    with make_source(setup.source).snapshot() as captured:
        data = b"".join(captured.chunks)
    return data, captured.fingerprint


def test_the_stream_is_checked_against_its_manifest_and_names_its_wal(
    pitr_setup: Callable[..., PitrSetup],
) -> None:
    data, fingerprint = capture(pitr_setup())
    info = fingerprint["base_backup"]
    assert isinstance(info, dict)
    assert info["timeline"] == 1 and info["files"] > 100
    assert parse_lsn(str(info["start_lsn"])) <= parse_lsn(str(info["end_lsn"]))
    check = TarManifestCheck()
    assert b"".join(check.through([data[i : i + 7000] for i in range(0, len(data), 7000)])) == data
    assert check.verify()["end_lsn"] == info["end_lsn"]


@pytest.mark.parametrize("where", ["PG_VERSION", "global/pg_control"])
def test_one_changed_byte_in_a_file_fails_the_check(
    pitr_setup: Callable[..., PitrSetup], where: str
) -> None:
    data, _ = capture(pitr_setup())
    header = data.index(where.encode() + b"\0")
    content = header - header % 512 + 512  # the file's first byte
    damaged = data[:content] + bytes([data[content] ^ 1]) + data[content + 1 :]
    check = TarManifestCheck()
    for _ in check.through([damaged]):
        pass
    with pytest.raises(IntegrityError, match=where):
        check.verify()
