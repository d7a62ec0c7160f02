"""The evidence log through the CLI on a real SQLite backend and two filesystem stores: backup,
verify, drill and restore each append a signed record, copied to both stores; `drkit evidence
verify` accepts the log as written (from a file, the catalog or a store, with the public key
alone) and fails with exit 7 on an edited, deleted, reordered or swapped record, a log cut
short in the middle, a log cut short at its end (against the published head), and a log signed
by another key. Concurrent appenders never fork the chain."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drkit.cli import main
from drkit.crypto.evidence import seal_record
from drkit.crypto.signing import Ed25519FileSigner, PublicKey, generate_signing_key
from drkit.errors import ExitCode

from .conftest import two_store_setup


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    key = tmp_path / "keys" / "evidence.key"
    key.parent.mkdir()
    public, _ = generate_signing_key(key)
    found = two_store_setup(
        tmp_path,
        drill={"checks": [{"type": "fingerprint"}]},
        evidence={"signing_key": f"file:{key}"},
    )
    return {**found, "key": key, "public": public}


def run(setup: dict[str, Any], capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["--catalog", setup["url"], *args])
    return code, capsys.readouterr().out


def export(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, out = run(setup, capsys, "evidence", "export", setup["plan"])
    assert code == 0
    return out.splitlines()


def verify_lines(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], lines: list[str], *extra: str
) -> tuple[int, dict[str, Any]]:
    path = setup["tmp"] / "log.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    code, out = run(
        setup, capsys, "evidence", "verify", str(path), "--public-key", str(setup["public"]),
        "--json", *extra,
    )  # fmt: skip
    return code, json.loads(out)


@pytest.fixture
def logged(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The log after backup, backup, verify, drill and restore (to a new folder)."""
    for command in (["backup"], ["backup"], ["verify"], ["drill"]):
        code, _ = run(setup, capsys, *command, setup["plan"])
        assert code == 0, command
    target = setup["tmp"] / "restored-config"
    code, _ = run(
        setup, capsys, "restore", setup["plan"], "--source", "app-config", "--to", f"app-config={target}",
        "--yes",
    )  # fmt: skip
    assert code == 0
    return export(setup, capsys)


def test_every_backup_verify_drill_and_restore_appends_a_signed_record(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], logged: list[str]
) -> None:
    records = [json.loads(line) for line in logged]
    assert [r["event"]["kind"] for r in records] == [
        "backup",
        "backup",
        "verify",
        "drill",
        "restore",
    ]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    backup = records[0]["event"]
    assert backup["outcome"] == "ok"
    snapshot = backup["snapshots"][0]
    assert len(snapshot["manifest_sha256"]) == 64
    assert {copy["store"] for copy in snapshot["copies"]} == {"east", "west"}
    assert backup["keys"][0]["name"]
    drill = records[3]["event"]["summary"]
    assert drill["rto_seconds"] is not None and drill["checks"]
    code, document = verify_lines(setup, capsys, logged)
    assert code == 0 and document["ok"] and document["count"] == 5


def test_the_log_is_in_every_store_and_verifies_from_a_store_alone(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], logged: list[str]
) -> None:
    for store in ("east", "west"):
        code, out = run(
            setup, capsys, "evidence", "verify", "--plan", setup["plan"], "--store", store,
            "--public-key", str(setup["public"]), "--json",
        )  # fmt: skip
        assert code == 0, out
        assert json.loads(out)["count"] == len(logged)
    stored = sorted((setup["tmp"] / "east").rglob("evidence/*.json"))
    assert [path.read_text().strip() for path in stored] == logged


def edit(line: str, change: Any) -> str:
    record = json.loads(line)
    change(record)
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda ls: [*ls[:1], edit(ls[1], lambda r: r["event"].update(outcome="failed")), *ls[2:]], id="edited"),
        pytest.param(lambda ls: [*ls[:2], ls[3].replace('"ok"', '"ok" '), *ls[4:]], id="reformatted"),
        pytest.param(lambda ls: ls[:2] + ls[3:], id="deleted-middle"),
        pytest.param(lambda ls: ls[1:], id="deleted-first"),
        pytest.param(lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], id="reordered"),
        pytest.param(lambda ls: [*ls[:2], ls[1], *ls[2:]], id="duplicated"),
        pytest.param(lambda ls: [edit(ls[0], lambda r: r.update(seq=1, prev="0" * 64, recorded_at="2020-01-01")), *ls[1:]], id="backdated"),
    ],
)  # fmt: skip
def test_any_tampering_fails_verification_with_exit_7(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], logged: list[str], tamper: Any
) -> None:
    code, document = verify_lines(setup, capsys, tamper(logged))
    assert code == ExitCode.INTEGRITY
    assert not document["ok"] and document["problems"]


def test_a_log_cut_short_at_its_end_fails_against_the_published_head(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], logged: list[str]
) -> None:
    code, document = verify_lines(setup, capsys, logged)
    head = document["head"]
    assert verify_lines(setup, capsys, logged, "--head", head, "--count", "5")[0] == 0
    code, document = verify_lines(setup, capsys, logged[:-1], "--head", head)
    assert code == ExitCode.INTEGRITY and "head" in document["problems"][0]
    assert verify_lines(setup, capsys, logged[:-1], "--count", "5")[0] == ExitCode.INTEGRITY


def test_another_key_does_not_verify_the_log(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], logged: list[str]
) -> None:
    other, _ = generate_signing_key(setup["tmp"] / "keys" / "other.key")
    path = setup["tmp"] / "log.jsonl"
    path.write_text("\n".join(logged) + "\n")
    code, _ = run(setup, capsys, "evidence", "verify", str(path), "--public-key", str(other))
    assert code == ExitCode.INTEGRITY


def test_a_forger_with_another_key_cannot_extend_the_chain(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], logged: list[str]
) -> None:
    """Re-signing is only possible with the private key: a record appended by anyone else,
    correctly chained, fails."""
    forger_key = setup["tmp"] / "keys" / "forger.key"
    generate_signing_key(forger_key)
    last = json.loads(logged[-1])
    from drkit.crypto.evidence import record_hash

    line, _ = seal_record(
        last["plan"], 6, record_hash(logged[-1]), "2026-12-07T00:00:00+00:00",
        {"kind": "drill", "outcome": "ok"}, Ed25519FileSigner(f"file:{forger_key}"),
    )  # fmt: skip
    assert verify_lines(setup, capsys, [*logged, line])[0] == ExitCode.INTEGRITY


def test_keys_generate_signing_writes_a_private_key_0600_and_its_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sign.key"
    assert main(["keys", "generate", "--signing", str(path)]) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    public = PublicKey((tmp_path / "sign.key.pub").read_bytes())
    assert public.key_id == Ed25519FileSigner(f"file:{path}").key_id()
    assert main(["keys", "generate", "--signing", str(path)]) == ExitCode.REFUSED


def test_the_report_embeds_the_chain_head_and_its_verify_command_passes(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], logged: list[str]
) -> None:
    code, out = run(setup, capsys, "report", setup["plan"], "--since", "1d", "--format", "json")
    assert code == 0
    log = json.loads(out)[0]["evidence_log"]
    assert log["count"] == len(logged)
    command = log["verify_command"].split()
    command[command.index("PLAN_FILE")] = setup["plan"]
    command[command.index("PUBLIC_KEY.pub")] = str(setup["public"])
    assert run(setup, capsys, *command[1:])[0] == 0
    code, markdown = run(setup, capsys, "report", setup["plan"], "--since", "1d", "--format", "md")
    assert log["head_sha256"] in markdown and "drkit evidence verify" in markdown


def findings(out: str) -> list[dict[str, Any]]:
    document = json.loads(out)
    plans = document if isinstance(document, list) else [document]
    return [finding for plan in plans for finding in plan["findings"]]


def test_check_proves_the_signing_key_and_a_lost_key_never_stops_a_backup(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(setup, capsys, "check", "--json", setup["plan"])
    signing = [f for f in findings(out) if "evidence signing" in f["subject"]]
    assert code == 0 and signing and signing[0]["status"] == "ok", out
    setup["key"].unlink()
    code, out = run(setup, capsys, "check", "--json", setup["plan"])
    signing = [f for f in findings(out) if "evidence signing" in f["subject"]]
    assert code != 0 and signing[0]["status"] == "failed"
    code, _ = run(setup, capsys, "backup", setup["plan"])
    assert code == 0
    assert export(setup, capsys) == []


def test_a_store_that_missed_records_gets_them_with_the_next_one(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, capsys, "backup", setup["plan"])[0] == 0
    (missed,) = (setup["tmp"] / "east").rglob("evidence/*.json")
    missed.unlink()  # as if the store had been down when the record was made
    verify_east = (
        "evidence", "verify", "--plan", setup["plan"], "--store", "east",
        "--public-key", str(setup["public"]),
    )  # fmt: skip
    assert run(setup, capsys, *verify_east)[0] == ExitCode.INTEGRITY
    assert run(setup, capsys, "backup", setup["plan"])[0] == 0
    code, out = run(setup, capsys, *verify_east, "--count", "2")
    assert code == 0, out


def test_a_new_catalog_adopts_the_stores_log_and_the_chain_goes_on(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """After the catalog is lost, the next record continues the chain the stores hold
    instead of starting again at 1 over the stores' records."""
    assert run(setup, capsys, "backup", setup["plan"])[0] == 0
    assert run(setup, capsys, "backup", setup["plan"])[0] == 0
    setup["catalog"].unlink()
    assert run(setup, capsys, "backup", setup["plan"])[0] == 0
    lines = export(setup, capsys)
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    for store in ("east", "west"):
        code, out = run(
            setup, capsys, "evidence", "verify", "--plan", setup["plan"], "--store", store,
            "--public-key", str(setup["public"]), "--count", "3",
        )  # fmt: skip
        assert code == 0, out
