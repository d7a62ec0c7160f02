"""Database URL parsing shared by the PostgreSQL and MariaDB sources."""

from __future__ import annotations

import pytest

from drkit.errors import SourceError
from drkit.sources.urls import DatabaseUrl, parse_database_url


def test_url_parts_survive_a_round_trip() -> None:
    text = "postgresql://backup@db.internal:5433/orders?sslmode=require"
    url = parse_database_url(text)
    assert url == DatabaseUrl(
        scheme="postgresql",
        host="db.internal",
        port=5433,
        user="backup",
        database="orders",
        options=(("sslmode", "require"),),
    )
    assert str(url) == text


def test_special_characters_in_names_are_percent_encoded() -> None:
    url = parse_database_url("mysql://app%40eu@[::1]:3306/my%20db")
    assert (url.user, url.host, url.database) == ("app@eu", "::1", "my db")
    assert str(url) == "mysql://app%40eu@[::1]:3306/my%20db"


def test_with_database_changes_only_the_database() -> None:
    url = parse_database_url("postgresql://postgres@127.0.0.1:5432/orders")
    assert str(url.with_database("postgres")) == "postgresql://postgres@127.0.0.1:5432/postgres"


def test_server_url_has_no_database_and_says_so_when_one_is_needed() -> None:
    url = parse_database_url("mysql://root@sandbox.internal:3306/")
    assert url.database is None
    with pytest.raises(SourceError, match="names no database"):
        url.require_database()


def test_socket_option_is_readable() -> None:
    url = parse_database_url("mariadb://root@localhost/app?socket=/run/mysqld/mysqld.sock")
    assert url.option("socket") == "/run/mysqld/mysqld.sock"
    assert url.option("missing") is None


def test_password_in_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(SourceError) as caught:
        parse_database_url("postgresql://app:hunter2@db/orders")
    assert "hunter2" not in caught.value.message
    assert "password" in caught.value.message


def test_non_url_is_refused() -> None:
    with pytest.raises(SourceError, match="not a database URL"):
        parse_database_url("orders")
