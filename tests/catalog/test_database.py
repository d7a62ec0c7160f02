"""Where the catalog lives and how it fails: default location, DRKIT_CATALOG, URL forms,
and one-line errors that never show a password."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from drkit.catalog import Catalog, mask_url
from drkit.errors import CatalogError


def test_default_catalog_is_a_private_sqlite_file_under_drkit_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "state" / "drkit"
    monkeypatch.setenv("DRKIT_HOME", str(home))
    monkeypatch.delenv("DRKIT_CATALOG", raising=False)
    with Catalog.open() as catalog:
        assert catalog.url == f"sqlite:///{home / 'catalog.db'}"
        catalog.start_run("api", "backup")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "catalog.db").stat().st_mode) == 0o600


def test_drkit_catalog_variable_chooses_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.setenv("DRKIT_CATALOG", url)
    with Catalog.open() as catalog:
        assert catalog.url == url
    assert (tmp_path / "shared.db").exists()


def test_bare_path_opens_a_sqlite_file(tmp_path: Path) -> None:
    with Catalog.open(str(tmp_path / "bare.db")) as catalog:
        assert catalog.url.startswith("sqlite:///")
    assert (tmp_path / "bare.db").exists()


def test_unreachable_postgres_raises_one_line_error_with_password_masked() -> None:
    url = "postgresql://drkit:hunter2-secret@127.0.0.1:1/catalog"
    with pytest.raises(CatalogError) as raised:
        Catalog.open(url)
    message = raised.value.message
    assert "hunter2-secret" not in message
    assert "drkit:***@127.0.0.1:1/catalog" in message
    assert "\n" not in message


def test_unknown_database_kind_raises_catalog_error_with_password_masked() -> None:
    with pytest.raises(CatalogError) as raised:
        Catalog.open("oracle+nodriver://user:topsecret@db.example/catalog")
    assert "topsecret" not in raised.value.message
    assert "user:***@" in raised.value.message


def test_malformed_url_raises_catalog_error_with_password_masked() -> None:
    with pytest.raises(CatalogError) as raised:
        Catalog.open("postgresql://user:topsecret@host:notaport/catalog")
    assert "topsecret" not in raised.value.message


def test_sqlite_file_in_missing_directory_raises_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError) as raised:
        Catalog.open(f"sqlite:///{tmp_path / 'missing' / 'catalog.db'}")
    assert "No such file or directory" in raised.value.message
    assert str(tmp_path / "missing") in raised.value.message


@pytest.mark.parametrize("form", ["bare path", "sqlite URL"])
def test_an_explicit_sqlite_catalog_is_private_too_and_an_open_one_is_closed(
    tmp_path: Path, form: str
) -> None:
    created, earlier = tmp_path / "new.db", tmp_path / "earlier.db"
    Catalog.open(str(earlier)).close()
    earlier.chmod(0o644)  # as releases before 0600 left it
    for path in (created, earlier):
        with Catalog.open(str(path) if form == "bare path" else f"sqlite:///{path}") as catalog:
            catalog.start_run("api", "backup")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw@host/db", "postgresql://u:***@host/db"),
        ("postgresql+psycopg://u:p%40ss@host:5432/db", "postgresql+psycopg://u:***@host:5432/db"),
        ("postgresql://host/db?user=u&password=pw", "postgresql://host/db?user=u&password=***"),
        ("postgresql://u@host/db", "postgresql://u@host/db"),
        ("failed: s3://bucket/key", "failed: s3://bucket/key"),
    ],
)
def test_mask_url_hides_passwords_only(text: str, expected: str) -> None:
    assert mask_url(text) == expected
