"""Every preflight of a plan, run side by side so a whole check takes seconds: secrets, keys,
stores, sources with their programs, and drill sandboxes.

``thorough`` (``drkit check``) contacts everything: stores are probed with a write that leaves
nothing behind, servers are connected to, KMS keys wrap and unwrap a test key. Without it (the
fast preflight before backup, restore and drill) only local things are checked: secrets,
key files and passphrases, installed programs, readable source paths.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from drkit.plan.schema import Plan
from drkit.preflight.finding import Finding, skipped
from drkit.preflight.keys import check_keys, check_signing_key
from drkit.preflight.sandboxes import check_sandboxes
from drkit.preflight.secrets import check_secrets
from drkit.preflight.sources import check_source, skip_source
from drkit.preflight.stores import check_store

log = logging.getLogger(__name__)
MAX_THREADS = 8
MISSING_SECRET = "not contacted: a secret it needs is missing"


def check_plan(plan: Plan, *, thorough: bool) -> list[Finding]:
    """Every finding for ``plan``, in a stable order: secrets, keys, stores, sources (with
    their programs), sandboxes. Parts whose own secret is missing are skipped, not failed
    twice."""
    secrets = check_secrets(plan)
    missing = {finding.owner for finding in secrets if finding.failed}
    with ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="preflight") as pool:
        keys = pool.submit(_check_keys, plan, missing, thorough)
        stores = [
            pool.submit(_check_store, spec, f"store:{spec.name}" in missing, thorough)
            for spec in plan.stores
        ]
        sources = [
            pool.submit(_check_source, spec, f"source:{spec.name}" in missing, thorough)
            for spec in plan.sources
        ]
        sandboxes = pool.submit(
            check_sandboxes, plan, connect=thorough and "sandbox" not in missing
        )
        return [
            *secrets,
            *keys.result(),
            *(future.result() for future in stores),
            *_flatten(sources),
            *sandboxes.result(),
        ]


def _check_keys(plan: Plan, missing: set[str], thorough: bool) -> list[Finding]:
    log.info("preflight: keys of %s", plan.name)
    findings = check_keys(plan, thorough=thorough) + check_signing_key(plan, thorough=thorough)
    return [
        skipped("key", finding.subject, MISSING_SECRET, owner=finding.owner)
        if finding.owner in missing
        else finding
        for finding in findings
    ]


def _check_store(spec: Any, is_missing_secret: bool, thorough: bool) -> Finding:
    log.info("preflight: store %s", spec.name)
    if is_missing_secret:
        return skipped("store", spec.name, MISSING_SECRET, owner=f"store:{spec.name}")
    return check_store(spec, probe=thorough)


def _check_source(spec: Any, is_missing_secret: bool, thorough: bool) -> list[Finding]:
    log.info("preflight: source %s", spec.name)
    findings = check_source(spec, connect=thorough and not is_missing_secret)
    if thorough and is_missing_secret:
        findings.insert(0, skip_source(spec, MISSING_SECRET))
    return findings


def _flatten(futures: list[Future[list[Finding]]]) -> list[Finding]:
    return [finding for future in futures for finding in future.result()]
