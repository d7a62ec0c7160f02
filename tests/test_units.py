"""One unit system in every output: IEC units (KiB, MiB, GiB), from plain numbers, progress
bars and the descriptions of restore targets alike."""

from __future__ import annotations

import re

import pytest
from rich.progress import Task

from drkit.cli.progress import describe_transfer
from drkit.plan.schema import MysqlSource, PostgresqlSource
from drkit.sources.base import Target
from drkit.units import humanize_bytes, humanize_rate

#: a size in any unit drkit might print; only the IEC ones are allowed
SIZE = re.compile(r"\b\d+(?:\.\d+)? ?(B|kB|KB|KiB|MB|MiB|GB|GiB|TB|TiB)\b")


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KiB"),
        (204_000_000, "194.5 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (5 * 1024**5, "5.0 PiB"),
    ],
)
def test_sizes_are_iec(size: int, text: str) -> None:
    assert humanize_bytes(size) == text


def test_rates_are_iec_per_second() -> None:
    assert humanize_rate(2.5 * 1024 * 1024) == "2.5 MiB/s"


def test_progress_lines_use_the_same_units_as_results() -> None:
    """rich's own columns print `204.0/? MB`; drkit's print 194.5 MiB."""
    task = Task(0, "orders-db", None, 204_000_000, _get_time=lambda: 0.0)
    assert describe_transfer(task) == "194.5 MiB"
    task = Task(1, "orders-db", 1024**3, 512 * 1024**2, _get_time=lambda: 0.0)
    assert describe_transfer(task) == "512.0 MiB of 1.0 GiB"


def test_a_postgresql_target_is_described_in_iec_units(postgres_database: str) -> None:
    from drkit.sources.postgresql import PostgresqlDatabase

    spec = PostgresqlSource(name="orders-db", type="postgresql", url=postgres_database)
    text = PostgresqlDatabase(spec).describe_target(Target(postgres_database))
    assert [unit for unit in SIZE.findall(text)] in (["KiB"], ["MiB"])


def test_a_mysql_target_is_described_in_iec_units(mysql_database: str) -> None:
    import pymysql

    from drkit.sources.mysql import MysqlDatabase
    from drkit.sources.urls import parse_database_url

    url = parse_database_url(mysql_database)
    connection = pymysql.connect(host=url.host, port=url.port, user=url.user, database=url.database)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    connection.close()
    spec = MysqlSource(name="ledger", type="mysql", url=mysql_database)
    text = MysqlDatabase(spec).describe_target(Target(mysql_database))
    units = SIZE.findall(text)
    assert units and set(units) <= {"B", "KiB", "MiB"}
