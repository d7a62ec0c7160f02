"""`drkit keys generate`: create a key file."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("keys")
def keys_group() -> None:
    """Key-encryption keys."""


@keys_group.command(
    "generate",
    epilog="""\b
Example:
  drkit keys generate /etc/drkit/primary.key   # then back this file up OUTSIDE drkit""",
)
@click.argument("path", type=click.Path())
def generate(path: str) -> int:
    """Write 32 random bytes to PATH with mode 0600 (never overwrites)."""
    from drkit.crypto import generate_keyfile

    generate_keyfile(Path(path))
    click.echo(
        f"wrote {path} (mode 0600). Keep a copy outside drkit's stores: without a key, "
        "snapshots cannot be decrypted."
    )
    return 0
