"""The one outcome vocabulary: its severity order and the exit code of the worst outcome."""

from __future__ import annotations

from drkit.cli.outcomes import EXIT_CODES, exit_code
from drkit.errors import ExitCode
from drkit.outcome import SEVERITY, Outcome


def test_worst_outcome_decides_the_exit_code() -> None:
    assert Outcome.worst([Outcome.OK, Outcome.DEGRADED, Outcome.SKIPPED]) is Outcome.DEGRADED
    assert Outcome.worst([Outcome.OK, Outcome.LOCKED, Outcome.BREACHED]) is Outcome.LOCKED
    assert Outcome.worst([Outcome.FAILED, Outcome.INTERRUPTED]) is Outcome.FAILED
    assert Outcome.worst([]) is Outcome.OK
    assert exit_code([Outcome.OK, Outcome.BREACHED]) == ExitCode.OBJECTIVE_BREACHED
    assert exit_code([]) == ExitCode.OK


def test_every_outcome_has_a_place_in_the_order_and_an_exit_code() -> None:
    assert set(SEVERITY) == set(Outcome) == set(EXIT_CODES)
    assert [o for o in SEVERITY if o.is_success] == [Outcome.OK, Outcome.SKIPPED]


def test_a_command_says_what_failed_means_for_it() -> None:
    assert exit_code(Outcome.FAILED, failed=ExitCode.INTEGRITY) == ExitCode.INTEGRITY
    assert exit_code(Outcome.DEGRADED, failed=ExitCode.INTEGRITY) == ExitCode.DEGRADED
    assert exit_code(Outcome.FAILED) == ExitCode.FAILED
