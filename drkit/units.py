"""Numbers for people, in one unit system everywhere drkit prints a size: IEC binary units
(B, KiB, MiB, GiB, TiB; 1 KiB = 1024 B), as restic and borg print them. Never "MB" beside
"MiB": a size read off one line must compare with a size read off the next."""

from __future__ import annotations

UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def humanize_bytes(size: float) -> str:
    """1536 -> "1.5 KiB"; 204_000_000 -> "194.6 MiB"."""
    for unit in UNITS:
        if abs(size) < 1024 or unit == UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def humanize_rate(bytes_per_second: float) -> str:
    """2_621_440 -> "2.5 MiB/s"."""
    return f"{humanize_bytes(bytes_per_second)}/s"
