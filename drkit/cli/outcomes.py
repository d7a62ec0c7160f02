"""The one place that turns outcomes into process exit codes (docs/exit-codes.md)."""

from __future__ import annotations

from collections.abc import Iterable

from drkit.errors import ExitCode
from drkit.outcome import Outcome

EXIT_CODES: dict[Outcome, ExitCode] = {
    Outcome.OK: ExitCode.OK,
    Outcome.SKIPPED: ExitCode.OK,
    Outcome.DEGRADED: ExitCode.DEGRADED,
    Outcome.BREACHED: ExitCode.OBJECTIVE_BREACHED,
    Outcome.LOCKED: ExitCode.LOCKED,
    Outcome.INTERRUPTED: ExitCode.INTERRUPTED,
    Outcome.FAILED: ExitCode.FAILED,
}


def exit_code(outcomes: Outcome | Iterable[Outcome], *, failed: ExitCode = ExitCode.FAILED) -> int:
    """The exit code of the worst outcome. ``failed`` is what FAILED means for this command:
    verify and restore fail with 7 (integrity) when what they read or loaded is not what was
    backed up; everything else with 1."""
    worst = outcomes if isinstance(outcomes, Outcome) else Outcome.worst(outcomes)
    return int(failed if worst is Outcome.FAILED else EXIT_CODES[worst])
