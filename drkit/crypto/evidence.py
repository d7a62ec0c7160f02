"""The evidence log: one JSON line per record, hash-chained and signed (docs/evidence.md).

A record is a JSON object with ``format``, ``plan``, ``seq`` (1, 2, ...), ``prev`` (the hash of
the record before it; 64 zeros for the first), ``recorded_at``, ``event`` (what happened),
``signer`` (algorithm and key id) and ``signature``: base64 of the signature over
SHA-256(canonical record without ``signature``). A record's hash is SHA-256 of its canonical
line. Canonical: JSON with sorted keys, no spaces, UTF-8. An edited record fails its
signature; a deleted, inserted or reordered one breaks ``seq`` and ``prev``; a log cut short
at its end is caught against a head (count and hash) published elsewhere, such as the report.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from drkit.crypto.signing import EvidenceSigner, PublicKey

FORMAT = "drkit-evidence/1"
GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


def signed_message(record: dict[str, Any]) -> bytes:
    """The 32 bytes a record's signature covers: SHA-256 of the record without it."""
    unsigned = {name: value for name, value in record.items() if name != "signature"}
    return hashlib.sha256(canonical(unsigned)).digest()


def seal_record(
    plan: str,
    seq: int,
    prev: str,
    recorded_at: str,
    event: dict[str, Any],
    signer: EvidenceSigner,
) -> tuple[str, str]:
    """The signed record at position ``seq`` after the record hashed ``prev``: its line and
    its hash."""
    record: dict[str, Any] = {
        "format": FORMAT,
        "plan": plan,
        "seq": seq,
        "prev": prev,
        "recorded_at": recorded_at,
        "event": event,
        "signer": {"algorithm": signer.algorithm, "key_id": signer.key_id()},
    }
    record["signature"] = base64.b64encode(signer.sign(signed_message(record))).decode("ascii")
    line = canonical(record).decode()
    return line, record_hash(line)


@dataclass
class ChainCheck:
    """What ``verify_chain`` found: every problem, and the head of the records read."""

    count: int = 0
    head: str = GENESIS
    plan: str | None = None
    first_at: str | None = None
    last_at: str | None = None
    problems: list[str] = field(default_factory=list)
    hashes: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems and self.count > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "plan": self.plan,
            "count": self.count,
            "head": self.head,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "problems": self.problems,
        }


def verify_chain(
    lines: Iterable[str],
    public_key: PublicKey,
    *,
    head: str | None = None,
    count: int | None = None,
) -> ChainCheck:
    """Check every record of a log, in order: canonical form, position, link to the record
    before, signer and signature. ``head``/``count``: a head published elsewhere that the log
    must contain (catches a log cut short at its end)."""
    check = ChainCheck()
    for number, line in enumerate((line for line in lines if line.strip()), start=1):
        problem = _check_record(line.strip(), number, check, public_key)
        if problem:
            check.problems.append(f"record {number}: {problem}")
    if check.count == 0:
        check.problems.append("the log holds no records")
    if head is not None and head not in check.hashes:
        check.problems.append(
            f"the published head {head[:16]}... is not in the log (cut short, or another log)"
        )
    if count is not None and check.count < count:
        check.problems.append(f"the log holds {check.count} records; {count} were published")
    return check


def _check_record(line: str, number: int, check: ChainCheck, public_key: PublicKey) -> str:
    """Fold one record into ``check``; the problem it has, or an empty string."""
    try:
        record = json.loads(line)
    except ValueError:
        return "not JSON"
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return f"not a {FORMAT} record"
    this_hash = record_hash(line)
    problem = _find_problem(line, record, number, check, public_key)
    check.count = number
    check.head = this_hash
    check.hashes.add(this_hash)
    check.plan = check.plan or str(record.get("plan"))
    check.first_at = check.first_at or str(record.get("recorded_at"))
    check.last_at = str(record.get("recorded_at"))
    return problem


def _find_problem(
    line: str, record: dict[str, Any], number: int, check: ChainCheck, public_key: PublicKey
) -> str:
    if canonical(record).decode() != line:
        return "not in canonical form (edited by hand?)"
    if record.get("seq") != number:
        return f"is numbered {record.get('seq')} (records deleted, inserted or reordered)"
    if record.get("prev") != check.head:
        return "does not link to the record before it (deleted, inserted or reordered)"
    if check.plan is not None and record.get("plan") != check.plan:
        return f"belongs to plan {record.get('plan')!r}, not {check.plan!r}"
    signer = record.get("signer") or {}
    if signer.get("key_id") != public_key.key_id:
        return f"signed by key {signer.get('key_id')}, not by {public_key.key_id}"
    try:
        signature = base64.b64decode(str(record.get("signature")), validate=True)
    except binascii.Error:
        return "signature is not base64"
    if not public_key.is_signature_valid(signed_message(record), signature):
        return "signature does not match (the record was altered)"
    return ""
