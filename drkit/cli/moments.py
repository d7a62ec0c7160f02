"""Moments on the command line (``--before``, ``--now``): ISO 8601 with a zone, a local time
without one, or a duration meaning that long ago. A time without a zone is read in the local
zone, never silently as UTC, and every moment is echoed back with its zone so the person
typing it sees which instant drkit understood."""

from __future__ import annotations

from datetime import UTC, datetime

from drkit.errors import UsageError
from drkit.plan.durations import humanize_seconds, parse_duration

EXAMPLES = "2026-11-27T14:05:00Z, 2026-11-27 09:05 (local time), or 90m (that long ago)"


def parse_moment(text: str, *, option: str, now: datetime | None = None) -> datetime:
    """The instant ``text`` names, timezone-aware; UsageError for anything else, an empty
    string included (it must never quietly mean "now")."""
    words = text.strip()
    if not words:
        raise UsageError(f"{option} is empty", hint=f"give a time such as {EXAMPLES}")
    current = now or datetime.now(UTC)
    try:
        return current - parse_duration(words.removesuffix("ago").strip())
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(words)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a time", hint=f"give a time such as {EXAMPLES}"
        ) from None
    # astimezone() on a naive time reads it in the local zone (TZ, /etc/localtime)
    return moment if moment.tzinfo else moment.astimezone()


def describe_moment(moment: datetime, *, now: datetime | None = None) -> str:
    """``2026-12-01 16:55:40 EST (21:55:40 UTC, 2h05m ago)``: the instant in the zone it was
    given in, in UTC, and how long ago."""
    utc = moment.astimezone(UTC)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() or moment.isoformat()
    age = ((now or datetime.now(UTC)) - utc).total_seconds()
    when = f"{humanize_seconds(age)} ago" if age >= 0 else f"in {humanize_seconds(-age)}"
    if utc.utcoffset() == moment.utcoffset():
        return f"{utc:%Y-%m-%d %H:%M:%S} UTC ({when})"
    return f"{shown} ({utc:%Y-%m-%d %H:%M:%S} UTC, {when})"


def format_local(moment: datetime) -> str:
    """``2026-12-01 11:55:40 EST``: an instant in this machine's zone, named, as tables show
    times (the zone drkit reads a zone-less ``--before`` in)."""
    local = moment.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %Z").strip() or local.isoformat(sep=" ")
