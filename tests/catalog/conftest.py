"""Catalog fixtures: every catalog test runs on a SQLite file and on a fresh PostgreSQL
database, with a clock the test moves by hand (lease expiry without sleeping)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drkit.catalog import Catalog
from drkit.repository.layout import artifact_key, new_snapshot_id
from drkit.repository.manifest import Artifact, Manifest, StoredObject

START = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)


class FakeClock:
    """A settable UTC clock for the catalog."""

    def __init__(self, now: datetime = START):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty catalog database that no one has opened yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
def catalog(catalog_url: str, clock: FakeClock) -> Iterator[Catalog]:
    with Catalog.open(catalog_url, clock=clock) as opened:
        yield opened


ManifestFactory = Callable[..., Manifest]


@pytest.fixture
def make_manifest() -> ManifestFactory:
    """Build a small manifest: one encrypted artifact per source, sizes derived from names."""

    def build(
        plan: str = "api",
        *,
        taken_at: datetime = START,
        sources: tuple[str, ...] = ("db", "config"),
        snapshot_id: str | None = None,
    ) -> Manifest:
        snapshot_id = snapshot_id or new_snapshot_id(taken_at)
        artifacts = [
            Artifact(
                source=source,
                type="postgresql" if source == "db" else "files",
                format="pg_dump-custom" if source == "db" else "tar",
                compression="zstd",
                plaintext_size=1000 + len(source),
                plaintext_sha256="a" * 64,
                fingerprint={"tables": {"users": 3}} if source == "db" else {"files": 2},
                encrypted=StoredObject(
                    key=artifact_key(plan, snapshot_id, source, "drkit"),
                    size=500 + len(source),
                    sha256="b" * 64,
                ),
                key_names=["primary", "escrow"],
            )
            for source in sources
        ]
        return Manifest(
            plan=plan,
            snapshot_id=snapshot_id,
            taken_at=taken_at,
            finished_at=taken_at + timedelta(seconds=42),
            drkit_version="0.1.0",
            sources=list(sources),
            artifacts=artifacts,
            plan_sha256="c" * 64,
        )

    return build
