"""MysqlDatabase against the real MariaDB server: capture, restore, fingerprints, failures."""

from __future__ import annotations

import io
import os
import secrets
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from drkit.errors import SourceError
from drkit.execute import Command
from drkit.plan.schema import MysqlSource
from drkit.secrets import Secret
from drkit.sources import mysql
from drkit.sources.base import Capture, Target, compare_fingerprints
from drkit.sources.mysql import (
    MysqlDatabase,
    format_option_file,
    make_dump_command,
    make_restore_command,
    write_option_file,
)
from drkit.sources.mysql_dump import DumpReader, count_tuples
from drkit.sources.urls import parse_database_url

pytestmark = pytest.mark.mysql

RICH_SCHEMA = [
    """CREATE TABLE customers (
        id INT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(200) NOT NULL,
        email VARCHAR(200) UNIQUE,
        profile JSON,
        avatar BLOB,
        doubled INT AS (id * 2) VIRTUAL,
        created DATETIME(6) DEFAULT '2024-01-02 03:04:05.123456'
    ) ENGINE=InnoDB""",
    """CREATE TABLE `order items` (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        customer_id INT,
        note TEXT,
        amount DECIMAL(10, 2),
        CONSTRAINT items_customer FOREIGN KEY (customer_id) REFERENCES customers (id)
            ON DELETE CASCADE,
        INDEX items_note (note(20))
    ) ENGINE=InnoDB""",
    "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(50)) ENGINE=Aria",
    "CREATE TABLE empty_table (x INT)",
    "CREATE SEQUENCE invoice_numbers START WITH 1000 INCREMENT BY 7",
    "CREATE VIEW customer_items AS SELECT c.name, COUNT(i.id) AS items FROM customers c"
    " LEFT JOIN `order items` i ON i.customer_id = c.id GROUP BY c.name",
    """CREATE TRIGGER items_audit AFTER INSERT ON `order items` FOR EACH ROW
        INSERT INTO audit (what) VALUES (CONCAT('item ', NEW.id))""",
    """CREATE PROCEDURE add_customer(IN who VARCHAR(200))
    BEGIN
    INSERT INTO `customers` (name) VALUES (who);
    CREATE TABLE IF NOT EXISTS `scratch` (x INT);
    END""",
    "CREATE FUNCTION item_count(customer INT) RETURNS INT READS SQL DATA"
    " RETURN (SELECT COUNT(*) FROM `order items` WHERE customer_id = customer)",
    "CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2035-01-01 00:00:00' DISABLE"
    " DO DELETE FROM audit WHERE id < 0",
]

RICH_DATA = [
    """INSERT INTO customers (name, email, profile, avatar)
       SELECT CONCAT('Kundin ', seq, ' Ærøskøbing 東京 😀 it''s ),( \\\\ "q"'),
              CONCAT('c', seq, '@example.org'),
              JSON_OBJECT('n', seq, 'nested', JSON_ARRAY(1, 'zwei', NULL)),
              UNHEX(REPEAT(MD5(seq), 20))
       FROM seq_1_to_3000""",
    "INSERT INTO customers (name, email, profile, avatar)"
    " VALUES ('Nulls\neverywhere', NULL, NULL, NULL)",
    """INSERT INTO `order items` (customer_id, note, amount)
       SELECT (seq MOD 3000) + 1, IF(seq MOD 4 = 0, NULL, CONCAT(REPEAT('note; ', 20), seq)),
              seq * 1.5
       FROM seq_1_to_6000""",
    "INSERT INTO empty_table SELECT 1 FROM DUAL WHERE FALSE",
    "SELECT SETVAL(invoice_numbers, 424242)",
]


def make_source(url: str, password: str | None = None) -> MysqlDatabase:
    return MysqlDatabase(MysqlSource(name="ledger", type="mysql", url=url, password=password))


def connect(url: str) -> pymysql.Connection:  # type: ignore[type-arg]
    parts = parse_database_url(url)
    return pymysql.connect(
        host=parts.host,
        port=parts.port or 3306,
        user=parts.user or "root",
        password="",
        database=parts.database,
        charset="utf8mb4",
        autocommit=True,
    )


def execute(url: str, statements: list[str]) -> None:
    connection = connect(url)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


def scalar(url: str, query: str) -> object:
    return first_value(connect(url), query)


def first_value(connection: pymysql.Connection, query: str) -> object:  # type: ignore[type-arg]
    """The first column of ``query``'s first row (None without a row); closes ``connection``."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            row = cursor.fetchone()
    finally:
        connection.close()
    return row[0] if row else None


def engine_dump(url: str) -> str:
    """mariadb-dump's own view of a database (no comments), the database name normalized."""
    parts = parse_database_url(url)
    assert parts.database is not None
    completed = subprocess.run(
        [
            "mariadb-dump",
            "--protocol=TCP",
            f"--host={parts.host}",
            f"--port={parts.port}",
            "--user=root",
            "--skip-comments",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            parts.database,
        ],
        check=True,
        capture_output=True,
    )
    return completed.stdout.decode().replace(parts.database, "DB")


def capture_bytes(source: MysqlDatabase) -> tuple[bytes, Capture]:
    with source.snapshot() as capture:
        data = b"".join(capture.chunks)
    return data, capture


@pytest.fixture
def new_database_url(mysql_server: str) -> Iterator[str]:
    """The URL of a database that does not exist yet; dropped afterwards if a test made it."""
    name = f"drkit_restored_{secrets.token_hex(4)}"
    yield f"{mysql_server}/{name}"
    execute(f"{mysql_server}/", [f"DROP DATABASE IF EXISTS `{name}`"])


@pytest.fixture
def rich_database(mysql_database: str) -> str:
    execute(mysql_database, RICH_SCHEMA + RICH_DATA)
    return mysql_database


# --- pure command builders and parsing ---------------------------------------------------------


def test_dump_command_has_option_file_first_and_no_password() -> None:
    url = parse_database_url("mysql://backup@ledger.internal:3307/ledger")
    command = make_dump_command(url, option_file=Path("/tmp/d/client.cnf"))
    assert command.argv == (
        "mariadb-dump",
        "--defaults-extra-file=/tmp/d/client.cnf",
        "--protocol=TCP",
        "--host=ledger.internal",
        "--port=3307",
        "--user=backup",
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--no-tablespaces",
        "ledger",
    )
    assert command.env == {}


def test_restore_command_targets_the_database_over_a_socket_when_asked() -> None:
    url = parse_database_url("mariadb://root@localhost/sandbox?socket=/run/mysqld/mysqld.sock")
    command = make_restore_command(url, option_file=None, program="mysql")
    assert command.argv == (
        "mysql",
        "--protocol=SOCKET",
        "--socket=/run/mysqld/mysqld.sock",
        "--user=root",
        "--binary-mode",
        "--default-character-set=utf8mb4",
        "--database=sandbox",
    )


def test_option_file_is_private_and_escapes_the_password(tmp_path: Path) -> None:
    path = write_option_file(tmp_path, Secret('a"b\\c #d'))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == '[client]\npassword="a\\"b\\\\c #d"\n'
    with pytest.raises(SourceError, match="line break"):
        format_option_file(Secret("two\nlines"))


def test_count_tuples_ignores_parentheses_inside_literals_and_the_column_list() -> None:
    assert count_tuples(b" VALUES (1,'a),(b',0x00FF),(2,'it\\'s ( \\\\',NULL)") == 2
    assert count_tuples(b" (`a`, `b(`) VALUES\n(1,'x'),\n(2,'y'),\n(3,'z')") == 3
    assert count_tuples(b" VALUES (1,'doubled '')('' quote')") == 1


def test_dump_reader_counts_rows_whatever_the_chunk_boundaries() -> None:
    dump = (
        b"-- MariaDB dump\n"
        b"CREATE TABLE `t` (\n  `x` int\n);\n"
        b"INSERT INTO `t` VALUES (1,'a;\\nb'),(2,'c');\n"
        b"INSERT INTO `t` VALUES\n(3,'d'),\n(4,'e');\n"
        b"CREATE TABLE `we``ird` (x int);\n"
        b"DELIMITER ;;\nCREATE PROCEDURE p()\nBEGIN\n"
        b"INSERT INTO `t` VALUES (99);\nCREATE TABLE `ghost` (x int);\nEND ;;\nDELIMITER ;\n"
        b"-- Dump completed on 2026-01-01 00:00:00\n"
    )
    whole = DumpReader()
    whole.feed(dump)
    bytewise = DumpReader()
    for index in range(len(dump)):
        bytewise.feed(dump[index : index + 1])
    assert whole.rows == bytewise.rows == {"t": 4, "we`ird": 0}
    assert whole.is_complete() and bytewise.is_complete()
    truncated = DumpReader()
    truncated.feed(dump[: dump.index(b"-- Dump completed")])
    assert not truncated.is_complete()


# --- capture and restore -----------------------------------------------------------------------


def test_restore_into_missing_database_creates_it_and_reproduces_source_exactly(
    rich_database: str, new_database_url: str
) -> None:
    source = make_source(rich_database)
    data, capture = capture_bytes(source)
    target = Target(new_database_url)
    assert source.is_target_empty(target)
    assert "does not exist" in source.describe_target(target)

    source.restore(io.BytesIO(data), target)

    assert capture.extension == "sql" and capture.format == "mysqldump-sql"
    assert capture.tool_versions["mariadb-dump"][:2].isdigit()
    assert b"CREATE DATABASE" not in data and b"\nUSE " not in data
    assert capture.fingerprint["tables"] == {
        "audit": 6000,
        "customers": 3001,
        "empty_table": 0,
        "order items": 6000,
    }
    restored = source.fingerprint_target(target, capture.fingerprint)
    assert compare_fingerprints(capture.fingerprint, restored) == []
    assert restored == capture.fingerprint
    assert engine_dump(new_database_url) == engine_dump(rich_database)
    assert scalar(new_database_url, "SELECT name FROM customers WHERE id = 1") == (
        'Kundin 1 Ærøskøbing 東京 😀 it\'s ),( \\ "q"'
    )


def test_fingerprint_names_the_table_whose_row_count_changed(rich_database: str) -> None:
    source = make_source(rich_database)
    _, capture = capture_bytes(source)
    execute(rich_database, ["DELETE FROM customers WHERE email IS NULL"])

    now = source.fingerprint_target(source.default_target(), capture.fingerprint)

    assert compare_fingerprints(capture.fingerprint, now) == [
        "table customers: expected 3001, found 3000"
    ]


def test_schema_hash_changes_when_a_column_is_added(rich_database: str) -> None:
    source = make_source(rich_database)
    before = source.fingerprint_target(source.default_target(), {})
    execute(rich_database, ["ALTER TABLE audit ADD COLUMN extra INT"])
    after = source.fingerprint_target(source.default_target(), {})
    assert "schema differs from the one captured at backup time" in compare_fingerprints(
        before, after
    )


def test_concurrent_writes_during_the_dump_keep_fingerprint_and_restore_in_agreement(
    rich_database: str, new_database_url: str
) -> None:
    execute(
        rich_database,
        [
            "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(200))",
            "CREATE TABLE order_lines (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT)",
        ],
    )
    stop = threading.Event()
    written = [0]

    def write_orders() -> None:
        # Each transaction adds one order and two lines: a consistent dump keeps the 1:2 ratio.
        connection = connect(rich_database)
        connection.autocommit(False)
        with connection.cursor() as cursor:
            while not stop.is_set() and written[0] < 20000:
                cursor.execute("INSERT INTO orders (pad) VALUES (REPEAT('x', 200))")
                cursor.execute(
                    "INSERT INTO order_lines (order_id) VALUES (LAST_INSERT_ID()),"
                    " (LAST_INSERT_ID())"
                )
                connection.commit()
                written[0] += 1
        connection.close()

    writer = threading.Thread(target=write_orders)
    writer.start()
    try:
        while written[0] < 200:
            threading.Event().wait(0.01)
        source = make_source(rich_database)
        with source.snapshot() as capture:
            chunks = []
            for chunk in capture.chunks:
                chunks.append(chunk)
                threading.Event().wait(0.005)  # a slow reader keeps the dump open longer
    finally:
        stop.set()
        writer.join()
    source.restore(io.BytesIO(b"".join(chunks)), Target(new_database_url))

    restored = source.fingerprint_target(Target(new_database_url), capture.fingerprint)

    assert compare_fingerprints(capture.fingerprint, restored) == []
    orders = capture.fingerprint["tables"]["orders"]
    assert capture.fingerprint["tables"]["order_lines"] == 2 * orders
    assert scalar(rich_database, "SELECT COUNT(*) FROM orders") > orders  # writes went on


def test_restore_with_replace_drops_what_the_target_held(
    rich_database: str, new_database_url: str
) -> None:
    source = make_source(rich_database)
    data, capture = capture_bytes(source)
    name = parse_database_url(new_database_url).database
    execute(new_database_url.rsplit("/", 1)[0] + "/", [f"CREATE DATABASE `{name}`"])
    execute(new_database_url, ["CREATE TABLE stray (x INT)", "INSERT INTO stray VALUES (1)"])
    target = Target(new_database_url)
    assert not source.is_target_empty(target)
    assert "1 tables and views" in source.describe_target(target)

    source.restore(io.BytesIO(data), target, replace=True)

    assert compare_fingerprints(capture.fingerprint, source.fingerprint_target(target, {})) == []
    assert (
        scalar(
            new_database_url,
            "SELECT COUNT(*) FROM information_schema.TABLES"
            f" WHERE TABLE_SCHEMA = '{name}' AND TABLE_NAME = 'stray'",
        )
        == 0
    )


def test_existing_database_with_only_a_routine_is_not_empty(mysql_database: str) -> None:
    source = make_source(mysql_database)
    assert source.is_target_empty(source.default_target())
    execute(mysql_database, ["CREATE FUNCTION one() RETURNS INT DETERMINISTIC RETURN 1"])
    assert not source.is_target_empty(source.default_target())


def test_broken_dump_fails_restore_with_the_clients_error(
    mysql_database: str, new_database_url: str
) -> None:
    source = make_source(mysql_database)
    with pytest.raises(SourceError, match=r"restoring ledger into .* failed: mariadb exited"):
        source.restore(
            io.BytesIO(b"CREATE TABLE t (x INT);\nINSERT INTO nope VALUES (1);\n"),
            Target(new_database_url),
        )


# --- failure paths and secrets -----------------------------------------------------------------


def child_pids(name: str) -> list[int]:
    """Children of this test process running ``name`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        command = text[text.index("(") + 1 : text.rindex(")")]
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        if parent == os.getpid() and command == name:
            found.append(int(entry.name))
    return found


def test_dump_killed_mid_stream_raises_source_error(rich_database: str) -> None:
    source = make_source(rich_database)
    with source.snapshot() as capture:
        next(capture.chunks)
        [pid] = child_pids("mariadb-dump")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(SourceError, match=r"mariadb-dump of ledger failed: .*SIGKILL"):
            for _ in capture.chunks:
                pass
    assert child_pids("mariadb-dump") == []


def test_dump_without_completion_marker_raises_source_error(
    rich_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = mysql.make_dump_command

    def without_comments(*args: object, **kwargs: object) -> Command:
        command = real(*args, **kwargs)  # type: ignore[arg-type]
        # A real dump that exits 0 but lacks "-- Dump completed", as a cut stream would.
        return Command(argv=(*command.argv[:-1], "--skip-comments", command.argv[-1]))

    monkeypatch.setattr(mysql, "make_dump_command", without_comments)
    source = make_source(rich_database)
    with source.snapshot() as capture, pytest.raises(SourceError, match="is incomplete"):
        for _ in capture.chunks:
            pass


def test_password_reaches_the_dump_through_the_option_file(
    rich_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = f"drkit_{secrets.token_hex(3)}", 'pa"ss #w\\rd ' + secrets.token_hex(4)
    database = parse_database_url(rich_database).database
    server = rich_database.rsplit("/", 1)[0]
    literal = password.replace("\\", "\\\\").replace("'", "''")
    execute(
        server + "/",
        [
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{literal}'",
            f"GRANT ALL ON `{database}`.* TO '{user}'@'%'",
            f"GRANT SELECT ON mysql.proc TO '{user}'@'%'",  # mariadb-dump --routines reads it
        ],
    )
    try:
        monkeypatch.setenv("DRKIT_TEST_MYSQL_PASSWORD", password)
        url = f"mysql://{user}@127.0.0.1:3306/{database}"
        source = make_source(url, password="env:DRKIT_TEST_MYSQL_PASSWORD")
        _, capture = capture_bytes(source)
        assert capture.fingerprint["tables"]["customers"] == 3001
        monkeypatch.setenv("DRKIT_TEST_MYSQL_PASSWORD", "wrong")
        with pytest.raises(SourceError, match="Access denied") as caught, source.snapshot():
            pass
        assert password not in caught.value.message
    finally:
        execute(server + "/", [f"DROP USER IF EXISTS '{user}'@'%'"])


# --- query -------------------------------------------------------------------------------------


def test_query_returns_the_first_value_and_cannot_write(rich_database: str) -> None:
    source = make_source(rich_database)
    assert source.query(source.default_target(), "SELECT COUNT(*) FROM customers") == 3001
    assert source.query(source.default_target(), "SELECT 1 FROM DUAL WHERE FALSE") is None
    with pytest.raises(SourceError, match="READ ONLY"):
        source.query(source.default_target(), "DELETE FROM `order items`")
    assert scalar(rich_database, "SELECT COUNT(*) FROM `order items`") == 6000
