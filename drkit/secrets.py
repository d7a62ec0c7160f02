"""Secrets as a type: references in plans (``env:NAME``, ``file:/path``) resolved late, and
values whose ``str``/``repr`` never show the secret.

``Secret.reveal()`` is called only at a process or SDK boundary (a private file the process
gateway hands a child, a boto3 argument, a key derivation), never for logging or storage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from drkit.errors import SecretError

REFERENCE_PREFIXES = ("env:", "file:")

#: Every secret value this process has resolved: the process gateway never lets one reach a
#: child through an inherited environment variable, whatever that variable is called.
_resolved: set[str] = set()


def is_resolved_secret(value: str) -> bool:
    """True when ``value`` is a secret this process has read from a reference."""
    return value in _resolved


def is_secret_reference(text: str) -> bool:
    """True when ``text`` is an ``env:NAME`` or ``file:/path`` reference."""
    return text.startswith(REFERENCE_PREFIXES)


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret as written in a plan; safe to print and store."""

    reference: str

    def resolve(self) -> Secret:
        """Read the secret now; raise SecretError naming the reference (never the value)."""
        kind, _, where = self.reference.partition(":")
        if kind == "env":
            value = os.environ.get(where)
            if value is None:
                raise SecretError(
                    f"secret {self.reference}: environment variable {where} is not set"
                )
            return _remember(Secret(value))
        if kind == "file":
            try:
                text = Path(where).read_text(encoding="utf-8")
            except OSError as error:
                raise SecretError(
                    f"secret {self.reference}: cannot read {where}: {error.strerror}"
                ) from None
            return _remember(Secret(text.rstrip("\r\n")))
        raise SecretError(f"secret reference {self.reference!r} is neither env:NAME nor file:/path")

    def __str__(self) -> str:
        return self.reference


def _remember(secret: Secret) -> Secret:
    if secret.reveal():
        _resolved.add(secret.reveal())
    return secret


class Secret:
    """A secret value whose string forms are redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for a child's private file or an SDK call only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
