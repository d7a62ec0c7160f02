"""croniter, imported without starting a program.

croniter 7 asks ``platform.architecture()`` when it is imported, and that runs
``file -b <python>`` with drkit's whole environment, the plan's ``env:`` secrets included:
a program drkit did not choose would see them (DESIGN promise: every child gets only what
it needs). What croniter wants to know, whether this Python is 32-bit, needs no program:
during the import, ``platform.architecture`` answers from the pointer size. Import croniter
from here, never directly (tests/test_layers.py keeps it so).
"""

from __future__ import annotations

import platform
import struct
import threading

_IMPORTING = threading.Lock()


def _architecture(executable: str = "", bits: str = "", linkage: str = "") -> tuple[str, str]:
    return bits or f"{struct.calcsize('P') * 8}bit", linkage or "ELF"


with _IMPORTING:
    _real = platform.architecture
    platform.architecture = _architecture  # type: ignore[assignment]
    try:
        from croniter import croniter
    finally:
        platform.architecture = _real  # type: ignore[assignment]

__all__ = ["croniter"]
