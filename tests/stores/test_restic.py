"""The restic store beyond the shared contract: how restic is invoked, what a failing stream
leaves in the repository, plain-restic restores, init, and error mapping."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drkit.errors import ObjectNotFound, StoreError, StoreUnavailable
from drkit.execute import Command, Process, run
from drkit.secrets import Secret
from drkit.stores import restic as restic_module
from drkit.stores.restic import (
    Failure,
    ResticStore,
    backup_arguments,
    classify_failure,
    dump_arguments,
    make_restic_command,
    redact_repository,
)

from .conftest import RESTIC_PASSWORD, restic_spec

pytestmark = pytest.mark.restic
KEY = "orders/snapshots/20260101T000000Z-abc123/orders-db.pgdump"
MANIFEST = "orders/snapshots/20260101T000000Z-abc123/manifest.json"


class StreamBroke(Exception):
    pass


@pytest.fixture
def store(local_restic_repository: Path) -> ResticStore:
    return ResticStore(
        restic_spec(str(local_restic_repository)),
        cache_dir=local_restic_repository.parent / "cache",
    )


def plain_restic(repository: Path, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    """restic as an operator would run it, without drkit."""
    return subprocess.run(
        ["restic", "-r", str(repository), "--no-cache", *arguments],
        capture_output=True,
        check=False,
        env={**os.environ, "RESTIC_PASSWORD": RESTIC_PASSWORD},
    )


# --- commands ----------------------------------------------------------------------------------


def test_secrets_and_the_repository_travel_in_private_files_never_in_env_or_argv() -> None:
    command = make_restic_command(
        ("snapshots", "--json"),
        repository="s3:https://s3.example/bucket",
        password=Secret("hunter2"),
        access_key_id=Secret("AKID"),
        secret_access_key=Secret("s3cret"),
        cache_dir=Path("/var/cache/drkit"),
    )

    assert command.argv == ("restic", "--cache-dir", "/var/cache/drkit", "snapshots", "--json")
    assert dict(command.env) == {}
    files = {name: secret.reveal() for name, secret in command.secret_files.items()}
    assert files == {
        "RESTIC_PASSWORD_FILE": "hunter2",
        "RESTIC_REPOSITORY_FILE": "s3:https://s3.example/bucket",
        "AWS_SHARED_CREDENTIALS_FILE": "[default]\naws_access_key_id = AKID\n"
        "aws_secret_access_key = s3cret\n",
    }
    # restic's own lookups (a profile) only matter when drkit gives it no credentials
    assert "AWS_PROFILE" not in command.inherit
    assert "hunter2" not in command.describe()


def test_a_password_restic_would_trim_from_its_file_is_refused() -> None:
    with pytest.raises(StoreError, match="whitespace"):
        make_restic_command(("snapshots",), repository="/r", password=Secret(" padded "))


def test_each_object_is_a_tagged_stdin_snapshot_read_back_by_path() -> None:
    assert backup_arguments(KEY) == (
        "backup",
        "--stdin",
        "--stdin-filename",
        KEY,
        "--tag",
        "drkit",
        "--host",
        "drkit",
    )
    assert dump_arguments(KEY) == (
        "dump",
        "--tag",
        "drkit",
        "--path",
        f"/{KEY}",
        "latest",
        f"/{KEY}",
    )


def test_no_command_of_a_real_session_holds_a_secret_in_argv_or_environment(
    store: ResticStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[Command] = []

    def spy_run(command: Command, **kwargs: Any) -> Any:
        commands.append(command)
        return run(command, **kwargs)

    def spy_process(command: Command, **kwargs: Any) -> Any:
        commands.append(command)
        return Process(command, **kwargs)

    monkeypatch.setattr(restic_module, "run", spy_run)
    monkeypatch.setattr(restic_module, "Process", spy_process)

    store.put(KEY, [b"dump"])
    assert b"".join(store.get(KEY)) == b"dump"
    store.delete(KEY)

    assert {
        command.argv[1] if command.argv[1] != "--cache-dir" else command.argv[3]
        for command in commands
    } == {"backup", "dump", "snapshots", "forget"}
    for command in commands:
        assert not any(RESTIC_PASSWORD in argument for argument in command.argv)
        assert not any(RESTIC_PASSWORD in value for value in command.env.values())
        assert command.secret_files["RESTIC_PASSWORD_FILE"].reveal() == RESTIC_PASSWORD


# --- failing streams ---------------------------------------------------------------------------


def test_a_failing_stream_creates_no_snapshot_and_leaves_no_lock(
    store: ResticStore, local_restic_repository: Path
) -> None:
    def breaking() -> Iterator[bytes]:
        yield os.urandom(1024 * 1024)
        time.sleep(0.3)  # restic is reading and holds its lock by now
        raise StreamBroke

    with pytest.raises(StreamBroke):
        store.put(KEY, breaking())

    listing = plain_restic(local_restic_repository, "snapshots", "--json")
    assert listing.returncode == 0 and listing.stdout.strip() == b"[]"
    assert list((local_restic_repository / "locks").iterdir()) == []


def test_a_read_stopped_early_leaves_no_lock(
    store: ResticStore, local_restic_repository: Path
) -> None:
    store.put(KEY, [os.urandom(3 * 1024 * 1024)])

    stream = store.get(KEY)
    assert len(next(stream)) > 0
    stream.close()  # type: ignore[attr-defined]

    assert list((local_restic_repository / "locks").iterdir()) == []


def test_delete_clears_a_stale_lock_left_by_a_killed_restic(
    store: ResticStore, local_restic_repository: Path
) -> None:
    store.put(KEY, [b"dump"])
    killed = subprocess.Popen(
        [
            "restic",
            "-r",
            str(local_restic_repository),
            "--no-cache",
            "backup",
            "--stdin",
            "--stdin-filename",
            "other",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RESTIC_PASSWORD": RESTIC_PASSWORD},
    )
    assert killed.stdin is not None
    killed.stdin.write(b"x" * 65536)
    killed.stdin.flush()
    deadline = time.monotonic() + 20
    while not any((local_restic_repository / "locks").iterdir()):
        assert time.monotonic() < deadline, "restic took no lock"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed.stdin.close()

    store.delete(KEY)

    assert store.list() == []


# --- restoring without drkit -------------------------------------------------------------------


def test_the_documented_plain_restic_command_restores_an_artifact(
    store: ResticStore, local_restic_repository: Path
) -> None:
    data = os.urandom(300_000)
    store.put(KEY, [data[:100_000], data[100_000:]])
    store.put(MANIFEST, [b"{}"])  # written later, so plain `latest` alone would be the manifest

    restored = plain_restic(
        local_restic_repository, "dump", "--path", f"/{KEY}", "latest", f"/{KEY}"
    )

    assert restored.returncode == 0, restored.stderr
    assert restored.stdout == data
    assert "restic -r REPO dump --path /<plan>/snapshots/<id>/<source>.<ext> latest" in (
        restic_module.__doc__ or ""
    )


def test_compact_prunes_forgotten_data_and_keeps_the_rest(store: ResticStore) -> None:
    store.put(KEY, [os.urandom(200_000)])
    store.put(MANIFEST, [b"{}"])
    store.delete(KEY)

    store.compact()

    assert store.list() == [MANIFEST]
    assert b"".join(store.get(MANIFEST)) == b"{}"


# --- repositories ------------------------------------------------------------------------------


def test_init_creates_a_missing_repository_on_first_use(
    tmp_path: Path, restic_environment: None
) -> None:
    repository = tmp_path / "new-repository"
    store = ResticStore(restic_spec(str(repository), init=True), cache_dir=tmp_path / "cache")

    assert store.list() == []
    store.put(KEY, [b"dump"])

    again = ResticStore(restic_spec(str(repository), init=True), cache_dir=tmp_path / "cache")
    assert b"".join(again.get(KEY)) == b"dump"
    assert (repository / "config").is_file()


def test_a_missing_repository_without_init_is_unavailable_with_a_hint(
    tmp_path: Path, restic_environment: None
) -> None:
    store = ResticStore(restic_spec(str(tmp_path / "nothing-here")), cache_dir=tmp_path / "c")

    with pytest.raises(StoreUnavailable, match="no restic repository at") as raised:
        store.list()

    assert "init: true" in raised.value.hint
    assert not (tmp_path / "nothing-here").exists()


def test_a_wrong_password_is_a_one_line_error_without_the_password(
    local_restic_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRKIT_TEST_RESTIC_PASSWORD", "not-the-password")
    store = ResticStore(
        restic_spec(str(local_restic_repository)),
        cache_dir=local_restic_repository.parent / "cache",
    )

    with pytest.raises(StoreUnavailable, match="wrong password") as raised:
        store.list()

    assert "\n" not in str(raised.value)
    assert "not-the-password" not in str(raised.value)
    assert "password" in raised.value.hint


@pytest.mark.parametrize("init", [False, True])
def test_a_wrong_password_fails_the_first_write_in_one_line_with_or_without_init(
    local_restic_repository: Path, monkeypatch: pytest.MonkeyPatch, init: bool
) -> None:
    # With init: true an existing local repository is not probed first: the write says it.
    monkeypatch.setenv("DRKIT_TEST_RESTIC_PASSWORD", "not-the-password")
    store = ResticStore(
        restic_spec(str(local_restic_repository), init=init),
        cache_dir=local_restic_repository.parent / "cache",
    )

    with pytest.raises(StoreUnavailable, match="wrong password") as raised:
        store.put(KEY, [b"dump"])

    assert "not-the-password" not in str(raised.value)


def test_get_of_a_missing_key_is_not_found_even_next_to_an_empty_object(
    store: ResticStore,
) -> None:
    store.put(MANIFEST, [])

    with pytest.raises(ObjectNotFound):
        b"".join(store.get(KEY))
    assert b"".join(store.get(MANIFEST)) == b""
    assert store.size(MANIFEST) == 0


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stderr", "failure"),
    [
        ("Fatal: wrong password or no key found\n", Failure.WRONG_PASSWORD),
        (
            "Fatal: unable to open config file: stat /r/config: no such file or directory\n"
            "Is there a repository at the following location?\n/r\n",
            Failure.MISSING_REPOSITORY,
        ),
        (
            "Fatal: unable to open config file: Stat: The specified bucket does not exist\n"
            "Is there a repository at the following location?\ns3:http://h/b\n",
            Failure.MISSING_REPOSITORY,
        ),
        (
            'Fatal: unable to open config file: Stat: Head "http://127.0.0.1:1/b/config": dial tcp '
            "127.0.0.1:1: connect: connection refused\nIs there a repository at the following "
            "location?\n",
            Failure.UNREACHABLE,
        ),
        (
            "unable to create lock in backend: repository is already locked by PID 1 on vm\n",
            Failure.LOCKED,
        ),
        (
            "latest snapshot for criteria not found: no snapshot found Paths:[/a] Hosts:[]\n",
            Failure.NO_SNAPSHOT,
        ),
        ('cannot dump file: path "/a" not found in snapshot\n', Failure.NOT_IN_SNAPSHOT),
        (
            "Fatal: unable to save snapshot: write /r/data/x: no space left on device\n",
            Failure.FULL,
        ),
        ("Fatal: something new\n", Failure.OTHER),
    ],
)
def test_restic_failures_are_classified_from_their_messages(stderr: str, failure: Failure) -> None:
    assert classify_failure(stderr) is failure


def test_repository_passwords_in_urls_are_redacted() -> None:
    assert redact_repository("rest:https://drkit:pa55@backup.internal:8000/orders") == (
        "rest:https://drkit:***@backup.internal:8000/orders"
    )
    assert redact_repository("s3:https://s3.amazonaws.com/bucket") == (
        "s3:https://s3.amazonaws.com/bucket"
    )
