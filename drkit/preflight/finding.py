"""One preflight result: what was checked, whether it holds, and what to do when it does not."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drkit.errors import DrkitError, ExitCode


class Status(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    #: not checked, because something it depends on failed (a missing password, say)
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Finding:
    """``area`` groups findings (secret, key, store, source, tool, sandbox, notify); ``owner``
    names the part of the plan a failure affects (``source:orders-db``, ``store:s3-euw1``,
    ``key:primary``, ``sandbox``, ``notify``), which decides whether it stops a command."""

    area: str
    subject: str
    status: Status
    detail: str
    owner: str
    hint: str = ""
    exit_code: ExitCode = ExitCode.OK
    #: the runbook that helps with a failure (``drkit runbook NAME``), as errors carry it
    reference: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def failed(self) -> bool:
        return self.status is Status.FAILED

    def to_json(self) -> dict[str, object]:
        return {
            "area": self.area,
            "subject": self.subject,
            "status": self.status.value,
            "detail": self.detail,
            "owner": self.owner,
            "hint": self.hint or None,
            "exit_code": int(self.exit_code),
            "see": self.reference or None,
        }


def passed(area: str, subject: str, detail: str, *, owner: str) -> Finding:
    return Finding(area, subject, Status.OK, detail, owner)


def failed(
    area: str, subject: str, error: DrkitError, *, owner: str, detail: str | None = None
) -> Finding:
    """A failure carrying the error's message (or ``detail``), hint, exit code and runbook."""
    message = error.message if detail is None else detail
    return Finding(
        area, subject, Status.FAILED, message, owner, error.hint, error.exit_code, error.reference
    )


def skipped(area: str, subject: str, reason: str, *, owner: str) -> Finding:
    return Finding(area, subject, Status.SKIPPED, reason, owner)
