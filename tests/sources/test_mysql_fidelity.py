"""Faithful MariaDB restores against the real server: a latin1 database with a non-default
collation, grants to a user on the database, a table column and a procedure, SQL SECURITY
DEFINER views and routines of a dedicated definer, events in both states. Each user and
database is made with a random name and dropped afterwards."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pymysql
import pytest

from drkit.errors import SourceError
from drkit.secrets import Secret
from drkit.sources import mysql_fidelity
from drkit.sources.base import Capture, Target, compare_fingerprints
from drkit.sources.mysql import MysqlDatabase
from drkit.sources.mysql_dump import DumpReader

from .test_mysql import (
    capture_bytes,
    connect,
    engine_dump,
    execute,
    first_value,
    make_source,
    scalar,
)

pytestmark = pytest.mark.mysql

APP_PASSWORD = secrets.token_hex(12)


@dataclass
class Fixture:
    server: str
    database: str
    definer: str
    app: str

    @property
    def url(self) -> str:
        return f"{self.server}/{self.database}"


def schema(definer: str, app: str, database: str) -> list[str]:
    return [
        f"CREATE USER `{definer}`@'%'",
        f"CREATE USER `{app}`@'%' IDENTIFIED BY '{APP_PASSWORD}'",
        "CREATE TABLE accounts (id INT PRIMARY KEY, holder VARCHAR(40), balance INT)",
        "INSERT INTO accounts VALUES (1, 'Müller', 100), (2, 'Åsa', 250)",
        f"CREATE DEFINER=`{definer}`@'%' SQL SECURITY DEFINER VIEW rich AS"
        " SELECT holder FROM accounts WHERE balance > 200",
        f"CREATE DEFINER=`{definer}`@'%' PROCEDURE pay(IN who INT) SQL SECURITY DEFINER"
        " UPDATE accounts SET balance = balance + 1 WHERE id = who",
        f"CREATE DEFINER=`{definer}`@'%' FUNCTION total() RETURNS INT READS SQL DATA"
        " SQL SECURITY DEFINER RETURN (SELECT SUM(balance) FROM accounts)",
        "CREATE EVENT sweep ON SCHEDULE EVERY 1 DAY STARTS '2035-01-01' DISABLE DO DO 1",
        "CREATE EVENT tidy ON SCHEDULE EVERY 1 DAY STARTS '2035-01-01' ENABLE DO DO 1",
        f"GRANT SELECT, UPDATE, EXECUTE ON `{database}`.* TO `{definer}`@'%'",
        f"GRANT SELECT ON `{database}`.`rich` TO `{app}`@'%'",
        f"GRANT UPDATE (balance) ON `{database}`.`accounts` TO `{app}`@'%' WITH GRANT OPTION",
        f"GRANT EXECUTE ON PROCEDURE `{database}`.`pay` TO `{app}`@'%'",
        f"GRANT EXECUTE ON FUNCTION `{database}`.`total` TO `{app}`@'%'",
        f"GRANT SELECT ON `{database}`.`rich` TO PUBLIC",
    ]


@pytest.fixture
def latin1(mysql_server: str) -> Iterator[Fixture]:
    suffix = secrets.token_hex(4)
    fixture = Fixture(
        mysql_server, f"drkit_latin1_{suffix}", f"drkit_definer_{suffix}", f"drkit_app_{suffix}"
    )
    execute(
        f"{mysql_server}/",
        [f"CREATE DATABASE `{fixture.database}` CHARACTER SET latin1 COLLATE latin1_german1_ci"],
    )
    try:
        execute(fixture.url, schema(fixture.definer, fixture.app, fixture.database))
        yield fixture
    finally:
        execute(
            f"{mysql_server}/",
            [
                f"DROP DATABASE IF EXISTS `{fixture.database}`",
                f"DROP USER IF EXISTS `{fixture.definer}`@'%'",
                f"DROP USER IF EXISTS `{fixture.app}`@'%'",
            ],
        )
        forget_grants(mysql_server, fixture.database)  # PUBLIC's outlive the database


@pytest.fixture
def other_database(mysql_server: str) -> Iterator[str]:
    name = f"drkit_restored_{secrets.token_hex(4)}"
    yield f"{mysql_server}/{name}"
    execute(f"{mysql_server}/", [f"DROP DATABASE IF EXISTS `{name}`"])
    forget_grants(mysql_server, name)


def forget_grants(server: str, database: str) -> None:
    connection = connect(f"{server}/")
    try:
        mysql_fidelity.forget_grants(connection, database)
    finally:
        connection.close()


def grants(server: str, user: str, database: str) -> list[str]:
    """SHOW GRANTS for a user, this database's lines, its name normalized."""
    connection = connect(f"{server}/")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW GRANTS FOR " + ("PUBLIC" if user == "PUBLIC" else f"`{user}`@'%'"))
            lines = [str(row[0]) for row in cursor.fetchall()]
    finally:
        connection.close()
    return sorted(
        line.replace(f"`{database}`", "`DB`") for line in lines if f"`{database}`" in line
    )


def engine_view(fixture: Fixture, url: str) -> tuple[str, list[str], list[str], list[str]]:
    """The engine's own dump of a database and SHOW GRANTS of both users and PUBLIC, the
    database name normalized."""
    database = url.rsplit("/", 1)[1]
    return (
        engine_dump(url),
        grants(fixture.server, fixture.app, database),
        grants(fixture.server, fixture.definer, database),
        grants(fixture.server, "PUBLIC", database),
    )


def restored_copy(fixture: Fixture, url: str) -> tuple[MysqlDatabase, Capture]:
    """The fixture's database captured, then restored to ``url`` as the restore action does."""
    source = make_source(fixture.url)
    data, capture = capture_bytes(source)
    source.restore(io.BytesIO(data), Target(url), captured=capture.fingerprint)
    return source, capture


def as_app(fixture: Fixture, url: str, query: str) -> object:
    """Run ``query`` as the application user: what an app on the restored copy sees."""
    host_port = fixture.server.split("@", 1)[1]
    host, port = host_port.split(":")
    connection = pymysql.connect(
        host=host,
        port=int(port),
        user=fixture.app,
        password=APP_PASSWORD,
        database=url.rsplit("/", 1)[1],
        autocommit=True,
    )
    return first_value(connection, query)


def test_capture_records_charset_grants_definers_and_event_status(latin1: Fixture) -> None:
    _, capture = capture_bytes(make_source(latin1.url))
    fingerprint = capture.fingerprint
    assert fingerprint["database"] == {"charset": "latin1", "collation": "latin1_german1_ci"}
    assert fingerprint["events"] == {"sweep": "DISABLED", "tidy": "ENABLED"}
    assert fingerprint["definers"]["view rich"] == f"{latin1.definer}@%"
    assert fingerprint["definers"]["procedure pay"] == f"{latin1.definer}@%"
    app = f"`{latin1.app}`@`%`"
    assert fingerprint["privileges"]["`PUBLIC`"] == [
        "GRANT SELECT ON `{database}`.`rich` TO PUBLIC"
    ]
    assert fingerprint["privileges"][app] == [
        f"GRANT EXECUTE ON FUNCTION `{{database}}`.`total` TO {app}",
        f"GRANT EXECUTE ON PROCEDURE `{{database}}`.`pay` TO {app}",
        f"GRANT SELECT ON `{{database}}`.`rich` TO {app}",
        f"GRANT UPDATE (`balance`) ON `{{database}}`.`accounts` TO {app} WITH GRANT OPTION",
    ]
    assert capture.warnings == []


def test_restore_to_a_new_database_is_identical_for_the_engine_and_works_for_the_app(
    latin1: Fixture, other_database: str
) -> None:
    source = make_source(latin1.url)
    data, capture = capture_bytes(source)
    left_out = source.restore_faithfully(
        io.BytesIO(data), Target(other_database), captured=capture.fingerprint, roles="require"
    ).left_out
    assert left_out == []
    assert engine_view(latin1, other_database) == engine_view(latin1, latin1.url)
    restored = source.fingerprint_target(Target(other_database), capture.fingerprint)
    assert compare_fingerprints(capture.fingerprint, restored) == []
    assert scalar(other_database, "SELECT @@character_set_database") == "latin1"
    # SQL SECURITY DEFINER objects run as their definer: no error 1356, 1370 or 1449
    assert as_app(latin1, other_database, "SELECT holder FROM rich") == "Åsa"
    assert as_app(latin1, other_database, "SELECT total()") == 350
    as_app(latin1, other_database, "CALL pay(1)")
    assert scalar(other_database, "SELECT balance FROM accounts WHERE id = 1") == 101


def test_restore_with_force_over_the_origin_keeps_grants_and_collation(latin1: Fixture) -> None:
    source = make_source(latin1.url)
    data, capture = capture_bytes(source)
    before = engine_view(latin1, latin1.url)
    source.restore(io.BytesIO(data), Target(latin1.url), replace=True, captured=capture.fingerprint)
    assert engine_view(latin1, latin1.url) == before
    restored = source.fingerprint_target(Target(latin1.url), capture.fingerprint)
    assert compare_fingerprints(capture.fingerprint, restored) == []
    assert as_app(latin1, latin1.url, "SELECT holder FROM rich") == "Åsa"


def test_a_missing_definer_is_created_locked_with_its_grants_when_asked(
    latin1: Fixture, other_database: str
) -> None:
    source = make_source(latin1.url)
    data, capture = capture_bytes(source)
    execute(f"{latin1.server}/", [f"DROP USER `{latin1.definer}`@'%'"])  # a server without it
    left_out = source.restore_faithfully(
        io.BytesIO(data), Target(other_database), captured=capture.fingerprint, roles="create"
    ).left_out
    assert left_out == []
    locked = scalar(
        f"{latin1.server}/",
        f"SELECT JSON_VALUE(Priv, '$.account_locked') FROM mysql.global_priv"
        f" WHERE User = '{latin1.definer}'",
    )
    assert str(locked) in ("1", "true")
    assert as_app(latin1, other_database, "SELECT holder FROM rich") == "Åsa"
    assert as_app(latin1, other_database, "SELECT total()") == 350
    restored = source.fingerprint_target(Target(other_database), capture.fingerprint)
    assert compare_fingerprints(capture.fingerprint, restored) == []


def test_a_missing_definer_is_refused_before_anything_is_made_or_listed_when_skipped(
    latin1: Fixture, other_database: str
) -> None:
    source = make_source(latin1.url)
    data, capture = capture_bytes(source)
    execute(f"{latin1.server}/", [f"DROP USER `{latin1.definer}`@'%'"])
    target = Target(other_database)
    with pytest.raises(SourceError, match=f"lacks 1 account.*{latin1.definer}") as refused:
        source.restore_faithfully(
            io.BytesIO(data), target, captured=capture.fingerprint, roles="require"
        )
    assert "--roles create" in (refused.value.hint or "")
    assert source.is_target_empty(target) and "does not exist" in source.describe_target(target)
    left_out = source.restore_faithfully(
        io.BytesIO(data), target, captured=capture.fingerprint, roles="skip"
    ).left_out
    definer = f"`{latin1.definer}`@`%`"
    assert f"grants to {definer}: the account does not exist on the target" in left_out
    assert any(line.startswith(f"view rich: definer {definer}") for line in left_out)
    assert any(line.startswith(f"procedure pay: definer {definer}") for line in left_out)


def test_a_changed_grant_or_collation_fails_verification_naming_it(
    latin1: Fixture, other_database: str
) -> None:
    source, capture = restored_copy(latin1, other_database)
    database = other_database.rsplit("/", 1)[1]
    execute(
        other_database,
        [
            f"REVOKE EXECUTE ON PROCEDURE `{database}`.`pay` FROM `{latin1.app}`@'%'",
            f"ALTER DATABASE `{database}` COLLATE latin1_swedish_ci",
        ],
    )
    problems = compare_fingerprints(
        capture.fingerprint, source.fingerprint_target(Target(other_database), capture.fingerprint)
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        f"`{latin1.app}`@`%` owner and privileges",
        "database collation",
    ]


def test_a_snapshot_without_fidelity_sections_restores_as_before(
    latin1: Fixture, other_database: str
) -> None:
    source = make_source(latin1.url)
    data, capture = capture_bytes(source)
    old = {key: capture.fingerprint[key] for key in ("tables", "schema_sha256", "server_version")}
    source.restore(io.BytesIO(data), Target(other_database), captured=old)
    assert scalar(other_database, "SELECT @@character_set_database") == "utf8mb4"
    restored = source.fingerprint_target(Target(other_database), old)
    assert set(restored) == set(old)


def test_a_client_error_says_the_cause_in_one_line_with_a_hint(
    mysql_database: str, other_database: str
) -> None:
    source = make_source(mysql_database)
    broken = b"CREATE TABLE t (a INT) CHARACTER SET no_such_charset;\n"
    with pytest.raises(SourceError) as failed:
        source.restore(io.BytesIO(broken), Target(other_database))
    assert "ERROR 1115" in failed.value.message and "\n" not in failed.value.message
    assert "character set" in (failed.value.hint or "")


def test_a_changed_value_with_the_same_row_count_fails_verification_naming_the_table(
    latin1: Fixture, other_database: str
) -> None:
    source = make_source(latin1.url)
    data, capture = capture_bytes(source)
    assert set(capture.fingerprint["digests"]) == {"accounts"}
    source.restore(io.BytesIO(data), Target(other_database), captured=capture.fingerprint)
    restored = source.fingerprint_target(Target(other_database), capture.fingerprint)
    assert restored["digests"] == capture.fingerprint["digests"]
    execute(other_database, ["UPDATE accounts SET balance = 101 WHERE id = 1"])
    [problem] = compare_fingerprints(
        capture.fingerprint, source.fingerprint_target(Target(other_database), capture.fingerprint)
    )
    assert problem == "table accounts: content differs from the backup (same row count)"


def test_content_digests_do_not_depend_on_chunk_boundaries(latin1: Fixture) -> None:
    data, capture = capture_bytes(make_source(latin1.url))
    for size in (1, 7, 4096):
        reader = DumpReader()
        for start in range(0, len(data), size):
            reader.feed(data[start : start + size])
        reader.finish()
        assert reader.content == capture.fingerprint["digests"], size


def test_a_backup_user_who_cannot_read_the_grant_tables_backs_up_with_a_warning(
    latin1: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = f"drkit_backup_{secrets.token_hex(4)}", secrets.token_hex(12)
    execute(
        f"{latin1.server}/",
        [
            f"CREATE USER `{user}`@'%' IDENTIFIED BY '{password}'",
            f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{latin1.database}`.* TO `{user}`@'%'",
            f"GRANT SELECT ON mysql.proc TO `{user}`@'%'",
        ],
    )
    try:
        monkeypatch.setenv("DRKIT_TEST_BACKUP_PASSWORD", password)
        url = latin1.url.replace("root@", f"{user}@")
        _, capture = capture_bytes(make_source(url, password="env:DRKIT_TEST_BACKUP_PASSWORD"))
    finally:
        execute(f"{latin1.server}/", [f"DROP USER IF EXISTS `{user}`@'%'"])
    [warning] = capture.warnings
    assert warning.startswith("grants not captured: ") and "mysql.db" in warning
    assert "privileges" not in capture.fingerprint
    assert capture.fingerprint["database"]["charset"] == "latin1"


def test_grants_of_a_removed_copy_can_be_forgotten(latin1: Fixture, other_database: str) -> None:
    _source, _capture = restored_copy(latin1, other_database)
    database = other_database.rsplit("/", 1)[1]
    execute(f"{latin1.server}/", [f"DROP DATABASE `{database}`"])
    assert grants(latin1.server, latin1.app, database)  # the server kept them
    forget_grants(latin1.server, database)
    assert grants(latin1.server, latin1.app, database) == []
    assert grants(latin1.server, latin1.app, latin1.database)  # the origin's are untouched


def test_grants_can_be_given_again_to_a_copy_swapped_in_under_another_name(
    latin1: Fixture, other_database: str
) -> None:
    _source, capture = restored_copy(latin1, other_database)
    database = other_database.rsplit("/", 1)[1]
    forget_grants(latin1.server, database)  # as after moving the tables in
    connection = connect(f"{latin1.server}/")
    try:
        assert mysql_fidelity.grant_again(connection, capture.fingerprint, database) == []
    finally:
        connection.close()
    assert engine_view(latin1, other_database) == engine_view(latin1, latin1.url)


def test_a_restoring_user_who_cannot_create_the_definer_gets_one_line_and_a_hint(
    latin1: Fixture, other_database: str
) -> None:
    source = make_source(latin1.url)
    data, capture = capture_bytes(source)
    user, password = f"drkit_restorer_{secrets.token_hex(4)}", secrets.token_hex(12)
    database = other_database.rsplit("/", 1)[1]
    execute(
        f"{latin1.server}/",
        [
            f"DROP USER `{latin1.definer}`@'%'",
            f"CREATE USER `{user}`@'%' IDENTIFIED BY '{password}'",
            f"GRANT ALL ON `{database}`.* TO `{user}`@'%'",
            f"GRANT SELECT ON mysql.user TO `{user}`@'%'",
        ],
    )
    try:
        target = Target(other_database.replace("root@", f"{user}@"), Secret(password))
        with pytest.raises(SourceError) as refused:
            source.restore_faithfully(
                io.BytesIO(data), target, captured=capture.fingerprint, roles="create"
            )
    finally:
        execute(f"{latin1.server}/", [f"DROP USER IF EXISTS `{user}`@'%'"])
    message = refused.value.message
    assert "creating the database and the accounts it needs failed" in message
    assert "CREATE USER" in message and "\n" not in message
    assert "--roles skip" in (refused.value.hint or "")
