"""drkit plans for the benchmark: one PostgreSQL source, one key file, and the stores of each
scenario (filesystem folders in the workspace, a bucket on moto, a restic repository)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SOURCE_NAME = "orders-db"
RESTIC_PASSWORD_VARIABLE = "DRKIT_BENCH_RESTIC_PASSWORD"


def filesystem_store(name: str, path: Path, region: str) -> dict[str, Any]:
    return {"name": name, "type": "filesystem", "path": str(path), "region": region}


def s3_store(name: str, bucket: str, endpoint_url: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "s3",
        "bucket": bucket,
        "region": "us-east-1",
        "endpoint_url": endpoint_url,
    }


def restic_store(name: str, repository: Path) -> dict[str, Any]:
    return {
        "name": name,
        "type": "restic",
        "repository": str(repository),
        "password": f"env:{RESTIC_PASSWORD_VARIABLE}",
        "region": "local-restic",
        "init": True,
    }


def write_plan(
    path: Path,
    *,
    name: str,
    database_url: str,
    key_path: Path,
    stores: list[dict[str, Any]],
    level: int = 3,
    sources: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a plan file: zstd at ``level`` (3 is drkit's default); drills restore into an
    ephemeral cluster and check the fingerprint (row counts and schema hash). ``sources``
    replaces the one PostgreSQL source at ``database_url``."""
    document = {
        "version": 1,
        "name": name,
        "description": "drkit benchmark",
        "sources": sources
        or [{"name": SOURCE_NAME, "type": "postgresql", "url": database_url, "jobs": 2}],
        "keys": [{"name": "bench-key", "type": "keyfile", "path": str(key_path)}],
        "stores": stores,
        "compression": {"algorithm": "zstd", "level": level},
        "drill": {"sandbox": {"postgresql": "ephemeral"}, "checks": [{"type": "fingerprint"}]},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
