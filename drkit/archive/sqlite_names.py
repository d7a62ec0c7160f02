"""Names of a SQLite capture's objects: a generation is named after the moment it became
restorable, its segments after the generation and their number in it."""

from __future__ import annotations

from datetime import UTC, datetime

GENERATION_FORMAT = "%Y%m%dT%H%M%S%fZ"


def generation_name(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(GENERATION_FORMAT)


def generation_time(name: str) -> datetime | None:
    """When generation ``name`` became restorable (its name says), or None: not a name."""
    try:
        return datetime.strptime(name, GENERATION_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def segment_name(generation: str, number: int) -> str:
    return f"{generation}-{number:06d}"


def parse_segment_name(name: str) -> tuple[str, int] | None:
    """(generation, number) of a capture segment's name, or None."""
    generation, _, number = name.rpartition("-")
    if generation_time(generation) is None or len(number) != 6 or not number.isdigit():
        return None
    return generation, int(number)
