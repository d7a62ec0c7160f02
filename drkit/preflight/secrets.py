"""Preflight of secret references: every ``env:NAME`` and ``file:/path`` in a plan resolves.

The value is read and dropped at once; only the reference and where the plan uses it are
reported, never the value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from drkit.errors import DrkitError, SecretError
from drkit.plan.loader import format_location
from drkit.plan.schema import Plan
from drkit.preflight.finding import Finding, failed, passed
from drkit.secrets import SecretRef, is_secret_reference

#: plan fields that may hold a secret reference (a webhook or ping URL may also be literal)
SECRET_FIELDS = frozenset({"password", "passphrase", "access_key_id", "secret_access_key", "url"})
Location = tuple[str | int, ...]


def find_secret_references(plan: Plan) -> Iterator[tuple[Location, str]]:
    """(location in the plan, reference) for every secret reference, in plan order."""
    yield from _walk(plan.model_dump(mode="json"), ())


def _walk(value: Any, location: Location) -> Iterator[tuple[Location, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in SECRET_FIELDS and isinstance(item, str) and is_secret_reference(item):
                yield (*location, key), item
            else:
                yield from _walk(item, (*location, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*location, index))


def owner_of(plan: Plan, location: Location) -> str:
    """Which part of the plan a location belongs to (``source:NAME``, ``sandbox``, ...)."""
    section = location[0]
    if section in ("sources", "keys", "stores") and isinstance(location[1], int):
        items: list[Any] = getattr(plan, str(section))
        return f"{str(section)[:-1]}:{items[location[1]].name}"
    if section == "drill":
        return "sandbox"
    return "notify"


def explain(reference: str, error: DrkitError) -> SecretError:
    """The resolution error without the reference it repeats, and a hint for where
    drkit's environment comes from."""
    kind, _, where = reference.partition(":")
    if kind == "env":
        return SecretError(
            f"environment variable {where} is not set",
            hint=f"export {where} where drkit runs (crontab, systemd Environment=, the "
            "Kubernetes Secret in envFrom)",
        )
    return SecretError(error.message.removeprefix(f"secret {reference}: "), hint=error.hint)


def check_secrets(plan: Plan) -> list[Finding]:
    """One finding per secret reference: set or readable, or why not."""
    findings = []
    for location, reference in find_secret_references(plan):
        subject = f"{reference} ({format_location(location)})"
        owner = owner_of(plan, location)
        try:
            SecretRef(reference).resolve()
        except DrkitError as error:
            findings.append(failed("secret", subject, explain(reference, error), owner=owner))
            continue
        found = "set" if reference.startswith("env:") else "readable"
        findings.append(passed("secret", subject, found, owner=owner))
    return findings
