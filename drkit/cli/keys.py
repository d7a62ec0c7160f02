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
  drkit keys generate /etc/drkit/primary.key   # then back this file up OUTSIDE drkit
  drkit keys generate --signing /etc/drkit/evidence.key   # and evidence.key.pub""",
)
@click.argument("path", type=click.Path())
@click.option(
    "--signing",
    is_flag=True,
    help="An Ed25519 signing key for the evidence log (PEM, mode 0600) and PATH.pub.",
)
def generate(path: str, signing: bool) -> int:
    """Write 32 random bytes to PATH with mode 0600 (never overwrites); with --signing, an
    Ed25519 key pair for evidence."""
    if signing:
        from drkit.crypto.signing import generate_signing_key

        public_path, key_id = generate_signing_key(Path(path))
        click.echo(
            f"wrote {path} (mode 0600) and {public_path} (key id {key_id}). Name it in the "
            f"plan as `evidence: {{signing_key: file:{Path(path).resolve()}}}`; give the .pub "
            "to whoever verifies the evidence."
        )
        return 0
    from drkit.crypto import generate_keyfile

    generate_keyfile(Path(path))
    click.echo(
        f"wrote {path} (mode 0600). Keep a copy outside drkit's stores: without a key, "
        "snapshots cannot be decrypted."
    )
    return 0
