"""Store fixtures: every Store implementation as a fresh, empty store plus an unreachable twin,
for the shared contract suite, and restic repositories that open quickly.

restic derives its key with scrypt tuned to take about half a second, on every command. The
tests run hundreds of restic commands, so the session makes one repository with ``restic
init`` and re-encrypts its master key with cheap scrypt parameters (the same format restic
writes, only a smaller N); every test then gets a copy of that repository. Nothing else about
restic's behaviour changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

from drkit.plan.schema import FilesystemStore as FilesystemSpec
from drkit.plan.schema import ResticStore as ResticSpec
from drkit.plan.schema import S3Store as S3Spec
from drkit.stores.base import Store
from drkit.stores.faults import OPERATIONS, FaultyStore
from drkit.stores.filesystem import FilesystemStore
from drkit.stores.memory import MemoryStore

RESTIC_PASSWORD = "correct horse battery staple"
RESTIC_PASSWORD_VARIABLE = "DRKIT_TEST_RESTIC_PASSWORD"
AWS_KEY_VARIABLE = "DRKIT_TEST_AWS_ACCESS_KEY_ID"
AWS_SECRET_VARIABLE = "DRKIT_TEST_AWS_SECRET_ACCESS_KEY"
AWS_SECRET = "moto-secret-for-restic"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- cheap restic keys -------------------------------------------------------------------------

POLY1305_R_MASK = bytes.fromhex("ffffff0ffcffff0ffcffff0ffcffff0f")


def _restic_kdf(password: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes, bytes]:
    """restic's crypto.KDF: scrypt -> (AES-256 key, AES-128 MAC key K, Poly1305 R)."""
    raw = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=(1 << 31) - 1, dklen=64
    )
    return raw[:32], raw[32:48], raw[48:]


def _restic_mac(mac_k: bytes, mac_r: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """restic's Poly1305-AES: key = masked R || AES-128_K(nonce)."""
    encryptor = Cipher(
        algorithms.AES(mac_k), modes.ECB()
    ).encryptor()  # one block: Poly1305-AES's nonce
    s = encryptor.update(nonce) + encryptor.finalize()
    masked_r = bytes(a & b for a, b in zip(mac_r, POLY1305_R_MASK, strict=True))
    return Poly1305.generate_tag(masked_r + s, ciphertext)


def _aes_ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return cipher.update(data) + cipher.finalize()


def cheapen_restic_key(key_file: bytes, password: str) -> bytes:
    """The same restic key file, its master key wrapped with scrypt N=16, r=1, p=1."""
    key = json.loads(key_file)
    encryption, mac_k, mac_r = _restic_kdf(
        password, base64.b64decode(key["salt"]), key["N"], key["r"], key["p"]
    )
    data = base64.b64decode(key["data"])
    nonce, body, tag = data[:16], data[16:-16], data[-16:]
    assert _restic_mac(mac_k, mac_r, nonce, body) == tag, "wrong restic password"
    master_key = _aes_ctr(encryption, nonce, body)
    salt, nonce = os.urandom(64), os.urandom(16)
    encryption, mac_k, mac_r = _restic_kdf(password, salt, 16, 1, 1)
    body = _aes_ctr(encryption, nonce, master_key)
    key.update(
        N=16,
        r=1,
        p=1,
        salt=base64.b64encode(salt).decode(),
        data=base64.b64encode(nonce + body + _restic_mac(mac_k, mac_r, nonce, body)).decode(),
    )
    return json.dumps(key).encode()


@pytest.fixture(scope="session")
def restic_environment() -> Iterator[None]:
    """The secrets the restic specs refer to (env:...), for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RESTIC_PASSWORD_VARIABLE, RESTIC_PASSWORD)
        patch.setenv(AWS_KEY_VARIABLE, "testing")
        patch.setenv(AWS_SECRET_VARIABLE, AWS_SECRET)
        yield


@pytest.fixture(scope="session")
def restic_template(
    tmp_path_factory: pytest.TempPathFactory, restic_binary: str, restic_environment: None
) -> Path:
    """An empty local restic repository with a cheap key, to copy per test."""
    path = tmp_path_factory.mktemp("restic") / "template"
    subprocess.run(
        [restic_binary, "init", "--repo", str(path)],
        check=True,
        capture_output=True,
        env={**os.environ, "RESTIC_PASSWORD": RESTIC_PASSWORD},
    )
    (original,) = (path / "keys").iterdir()
    cheap = cheapen_restic_key(original.read_bytes(), RESTIC_PASSWORD)
    (path / "keys" / hashlib.sha256(cheap).hexdigest()).write_bytes(cheap)
    original.unlink()
    return path


def restic_spec(
    repository: str, *, name: str = "restic", init: bool = False, s3_credentials: bool = False
) -> ResticSpec:
    return ResticSpec(
        name=name,
        type="restic",
        repository=repository,
        region="eu-central-1",
        init=init,
        password=f"env:{RESTIC_PASSWORD_VARIABLE}",
        access_key_id=f"env:{AWS_KEY_VARIABLE}" if s3_credentials else None,
        secret_access_key=f"env:{AWS_SECRET_VARIABLE}" if s3_credentials else None,
    )


@pytest.fixture
def local_restic_repository(tmp_path: Path, restic_template: Path) -> Path:
    """A fresh, empty local restic repository (a copy of the template)."""
    path = tmp_path / "restic-repository"
    shutil.copytree(restic_template, path)
    return path


@pytest.fixture
def s3_restic_repository(s3_server: str, s3_bucket: str, restic_template: Path) -> str:
    """A fresh, empty restic repository in a bucket on moto's server: ``s3:URL/bucket``."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    for file in sorted(restic_template.rglob("*")):
        if file.is_file():
            client.put_object(
                Bucket=s3_bucket,
                Key=file.relative_to(restic_template).as_posix(),
                Body=file.read_bytes(),
            )
    return f"s3:{s3_server}/{s3_bucket}"


# --- one case per implementation ---------------------------------------------------------------


@dataclass
class StoreCase:
    """A fresh store for one test, a twin that cannot be reached, and the size of the
    multi-chunk round trip (large enough for a multipart upload on S3 only)."""

    store: Store
    unreachable: Store
    large_size: int = 300_000


def _memory_case(request: pytest.FixtureRequest) -> StoreCase:
    broken = {operation: 1_000 for operation in OPERATIONS}
    return StoreCase(MemoryStore(), FaultyStore(MemoryStore(), fail_next=broken))


def _filesystem_case(request: pytest.FixtureRequest) -> StoreCase:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"not a folder")
    return StoreCase(
        FilesystemStore(
            FilesystemSpec(
                name="disk", type="filesystem", region="on-prem", path=str(tmp_path / "store")
            )
        ),
        FilesystemStore(
            FilesystemSpec(name="disk", type="filesystem", region="on-prem", path=str(a_file))
        ),
    )


def _s3_case(request: pytest.FixtureRequest) -> StoreCase:
    from drkit.stores.s3 import S3Store

    endpoint: str = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")

    def spec(endpoint_url: str) -> S3Spec:
        return S3Spec(
            name="s3",
            type="s3",
            bucket=bucket,
            region="us-east-1",
            prefix="drkit-test",
            endpoint_url=endpoint_url,
        )

    return StoreCase(
        S3Store(spec(endpoint)),
        S3Store(spec(f"http://127.0.0.1:{closed_port()}"), max_attempts=1),
        large_size=12 * 1024 * 1024 + 7,
    )


def _restic_local_case(request: pytest.FixtureRequest) -> StoreCase:
    from drkit.stores.restic import ResticStore

    repository: Path = request.getfixturevalue("local_restic_repository")
    cache = repository.parent / "restic-cache"
    a_file = repository.parent / "a-file"
    a_file.write_bytes(b"not a repository")
    return StoreCase(
        ResticStore(restic_spec(str(repository)), cache_dir=cache),
        ResticStore(restic_spec(str(a_file)), cache_dir=cache),
    )


def _restic_s3_case(request: pytest.FixtureRequest) -> StoreCase:
    from drkit.stores.restic import ResticStore

    repository: str = request.getfixturevalue("s3_restic_repository")
    cache: Path = request.getfixturevalue("tmp_path") / "restic-cache"
    # With a region set, restic's S3 client retries a refused connection for ~15 s per
    # command; without one it asks for the bucket's location first and fails at once.
    request.getfixturevalue("monkeypatch").delenv("AWS_DEFAULT_REGION", raising=False)
    unreachable = f"s3:http://127.0.0.1:{closed_port()}/nowhere"
    return StoreCase(
        ResticStore(restic_spec(repository, s3_credentials=True), cache_dir=cache),
        ResticStore(restic_spec(unreachable, s3_credentials=True), cache_dir=cache),
    )


def _no_wait(_seconds: float) -> None:
    return None


def _retrying_case(request: pytest.FixtureRequest) -> StoreCase:
    """The retry wrapper over the in-memory store (its unreachable twin retries, then fails)."""
    from drkit.stores.retry import RetryingStore

    inner = _memory_case(request)
    return StoreCase(
        RetryingStore(inner.store, sleep=_no_wait), RetryingStore(inner.unreachable, sleep=_no_wait)
    )


def _faulty_case(request: pytest.FixtureRequest) -> StoreCase:
    """The fault injector configured with no faults: it must behave exactly like its store."""
    inner = _filesystem_case(request)
    return StoreCase(FaultyStore(inner.store), FaultyStore(inner.unreachable))


def _dry_run_case(request: pytest.FixtureRequest) -> StoreCase:
    """The dry-run wrapper over a filesystem store: a faithful store that changes nothing."""
    from drkit.stores.dryrun import DryRunStore

    inner = _filesystem_case(request)
    return StoreCase(DryRunStore(inner.store), DryRunStore(inner.unreachable))


CASES: dict[str, Callable[[pytest.FixtureRequest], StoreCase]] = {
    "memory": _memory_case,
    "retrying-memory": _retrying_case,
    "faultless-filesystem": _faulty_case,
    "dry-run-filesystem": _dry_run_case,
    "filesystem": _filesystem_case,
    "s3": _s3_case,
    "restic-local": _restic_local_case,
    "restic-s3": _restic_s3_case,
}
CASE_MARKS = {
    "s3": [pytest.mark.s3],
    "restic-local": [pytest.mark.restic],
    "restic-s3": [pytest.mark.restic, pytest.mark.s3],
}


@pytest.fixture(params=[pytest.param(kind, marks=CASE_MARKS.get(kind, [])) for kind in CASES])
def store_case(request: pytest.FixtureRequest) -> StoreCase:
    """Each Store implementation in turn, fresh and empty."""
    return CASES[request.param](request)


@pytest.fixture
def unique_key() -> str:
    return f"plan/snapshots/20260101T000000Z-{secrets.token_hex(3)}/source.drkit"
