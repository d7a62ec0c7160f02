"""WAL file names and positions, pure: segment names (``000000010000000A000000FF``), timeline
history files (``00000002.history``), LSNs (``A/FF000028``) and timeline history contents."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
SEGMENT_PATTERN = re.compile(r"^[0-9A-F]{24}$")
HISTORY_PATTERN = re.compile(r"^[0-9A-F]{8}\.history$")
PARTIAL_SUFFIX = ".partial"


def is_segment_name(name: str) -> bool:
    return SEGMENT_PATTERN.match(name) is not None


def is_history_name(name: str) -> bool:
    return HISTORY_PATTERN.match(name) is not None


def parse_lsn(text: str) -> int:
    """``16/B374D848`` as a byte position."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def segments_per_id(segment_size: int) -> int:
    """How many segments one 4 GiB "log id" (the middle 8 hex digits) holds."""
    return 0x100000000 // segment_size


@dataclass(frozen=True, order=True)
class Segment:
    """One WAL segment: its timeline and number (position // segment size)."""

    timeline: int
    number: int

    def name(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
        per_id = segments_per_id(segment_size)
        return f"{self.timeline:08X}{self.number // per_id:08X}{self.number % per_id:08X}"

    def start(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        return self.number * segment_size


def parse_segment_name(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment:
    if not is_segment_name(name):
        raise ValueError(f"not a WAL segment name: {name!r}")
    per_id = segments_per_id(segment_size)
    return Segment(int(name[:8], 16), int(name[8:16], 16) * per_id + int(name[16:], 16))


def segment_of(position: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The number of the segment holding byte ``position``."""
    return position // segment_size


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


def history_timeline(name: str) -> int:
    return int(name[:8], 16)


@dataclass(frozen=True)
class TimelineSwitch:
    """One line of a history file: ``parent`` ended (and its child began) at ``position``."""

    parent: int
    position: int


def parse_history(text: str) -> list[TimelineSwitch]:
    """The switches of a timeline history file, oldest first (comments and blanks skipped)."""
    switches = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        switches.append(TimelineSwitch(int(fields[0]), parse_lsn(fields[1])))
    return switches
