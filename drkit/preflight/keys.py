"""Preflight of keys: each key loads and wraps, then unwraps, a random test data key."""

from __future__ import annotations

import hmac
import os

from drkit.crypto import KeyEncryptionKey, keys_from_plan
from drkit.errors import DrkitError, KeyUnavailableError
from drkit.plan.schema import Plan
from drkit.preflight.finding import Finding, failed, passed, skipped

TEST_CONTEXT = b"drkit preflight: a throwaway data key"
#: keys whose round trip needs no network, so the fast preflight of every command can run it
LOCAL_KEY_TYPES = ("keyfile", "passphrase")


def check_keys(plan: Plan, *, thorough: bool) -> list[Finding]:
    """One finding per key. Without ``thorough``, KMS keys (a network call each) are skipped."""
    findings = []
    for spec, key in zip(plan.keys, keys_from_plan(plan.keys), strict=True):
        subject = f"{spec.name} ({spec.type})"
        owner = f"key:{spec.name}"
        if not thorough and spec.type not in LOCAL_KEY_TYPES:
            findings.append(skipped("key", subject, "not contacted before a command", owner=owner))
            continue
        try:
            round_trip(key)
        except DrkitError as error:
            detail = error.message.removeprefix(f"key {spec.name!r}: ")  # the subject says it
            findings.append(failed("key", subject, error, owner=owner, detail=detail))
            continue
        detail = "wraps and unwraps a test data key"
        findings.append(passed("key", subject, detail, owner=owner))
    return findings


def check_signing_key(plan: Plan, *, thorough: bool) -> list[Finding]:
    """The evidence signing key signs a test message that its public key verifies (a KMS key
    only when ``thorough``). Its own role: a broken signing key never stops a backup, it only
    leaves runs without evidence records, which ``drkit check`` reports."""
    if plan.evidence is None:
        return []
    from drkit.crypto.signing import prove_signer, signer_for

    kms = plan.evidence.kms
    subject = f"evidence signing ({'aws-kms ' + kms.key_id if kms else plan.evidence.signing_key})"
    owner = "evidence:signing"
    if kms is not None and not thorough:
        return [skipped("key", subject, "not contacted before a command", owner=owner)]
    try:
        key_id = prove_signer(signer_for(plan.evidence))
    except DrkitError as error:
        return [failed("key", subject, error, owner=owner)]
    return [passed("key", subject, f"signs, and key id {key_id} verifies", owner=owner)]


def round_trip(key: KeyEncryptionKey) -> None:
    """Wrap a random data key and unwrap it again; KeyUnavailableError unless both work and
    give back the same bytes."""
    data_key = os.urandom(32)
    recipient = key.wrap(data_key, TEST_CONTEXT)
    if not hmac.compare_digest(key.unwrap(recipient, TEST_CONTEXT), data_key):
        raise KeyUnavailableError(f"key {key.name!r} unwrapped a different data key")
