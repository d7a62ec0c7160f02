"""The one error hierarchy of drkit.

Every error a user can cause or meet carries a one-line message, a hint saying what to do, and
a reference naming the runbook that helps as the command that prints it (``drkit runbook
NAME``: the runbooks ship inside drkit, so this works wherever drkit is installed). Mistakes in
a command line or a plan have no runbook: their hint is the reference. Library code raises
these; only the CLI turns them into exit codes (``ExitCode``), so the mapping lives in exactly
one place.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; documented in docs/exit-codes.md and stable across releases."""

    OK = 0
    FAILED = 1
    USAGE = 2  # bad command line or invalid plan
    DEGRADED = 3  # copy policy met, but some store failed
    OBJECTIVE_BREACHED = 4  # RPO or RTO objective missed
    LOCKED = 5  # another runner holds the plan's lock
    STORE_UNAVAILABLE = 6  # no store could be reached
    INTEGRITY = 7  # corrupt, truncated or tampered data detected
    KEY = 8  # no configured key can decrypt, or a key cannot be loaded
    REFUSED = 9  # a safety check refused (non-empty target without --force, declined prompt)
    NOT_FOUND = 10  # snapshot, object or catalog entry not found
    MISSING_TOOL = 11  # an external program (pg_dump, restic, ...) is not installed
    CATALOG = 12  # the catalog cannot be opened or migrated
    INTERRUPTED = 130  # Ctrl-C / SIGTERM
    OUTPUT_CLOSED = 141  # stdout's reader went away (drkit ... | head): 128 + SIGPIPE


def describe_failure(error: BaseException) -> str:
    """One line for any failure, for summaries and logs (no tracebacks, no secrets)."""
    if isinstance(error, DrkitError):
        return error.message
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}".splitlines()[0]


def is_unreachable(error: BaseException | None) -> bool:
    """True for a store that could not be reached or refused (worth a retry, or another
    store), as opposed to a full one, a missing object or damaged data."""
    return isinstance(error, StoreUnavailable) and not isinstance(error, StoreFull)


class DrkitError(Exception):
    """Base of every error drkit reports to a user."""

    exit_code: ExitCode = ExitCode.FAILED
    default_hint: str = "run again with -vv to see each step and what external programs printed"
    reference: str = "drkit runbook"

    def __init__(self, message: str, *, hint: str | None = None, reference: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        if reference is not None:
            self.reference = reference

    def __str__(self) -> str:
        return self.message


class UsageError(DrkitError):
    """The command line asks for something impossible."""

    exit_code = ExitCode.USAGE
    default_hint = "see the command's --help"
    reference = ""  # the command's --help is the reference


class PlanError(DrkitError):
    """A plan file is missing, unreadable or invalid. ``problems`` lists every finding."""

    exit_code = ExitCode.USAGE
    default_hint = (
        "`drkit plan init` prints an annotated sample plan; `drkit plan schema` the JSON "
        "Schema for editors"
    )
    reference = ""  # the hint is the reference

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []


class SecretError(DrkitError):
    """A secret reference (env:NAME, file:/path) cannot be resolved."""

    exit_code = ExitCode.USAGE
    default_hint = (
        "export the variable or create the file the plan refers to; `drkit check PLAN` "
        "checks every secret of a plan at once"
    )


class MissingToolError(DrkitError):
    """An external program drkit needs is not installed."""

    exit_code = ExitCode.MISSING_TOOL


class ToolError(DrkitError):
    """An external program exited with an error or was killed."""

    exit_code = ExitCode.FAILED


class SourceError(DrkitError):
    """A source could not be snapshotted, fingerprinted or restored."""

    exit_code = ExitCode.FAILED


class StoreError(DrkitError):
    """Base for store failures; subclasses say whether retrying or another store may help."""

    exit_code = ExitCode.STORE_UNAVAILABLE
    reference = "drkit runbook store-down"


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused the operation; transient, worth a retry."""

    default_hint = (
        "check the store's network, credentials and disk space; another store may hold a copy"
    )


class StoreFull(StoreUnavailable):
    """The store ran out of space (ENOSPC, quota)."""

    default_hint = "free space on the store or raise its quota, then run the backup again"


class ObjectNotFound(StoreError):
    """The store is reachable but does not hold the object."""

    exit_code = ExitCode.NOT_FOUND
    default_hint = "list what the store holds with `drkit snapshots PLAN --store NAME`"


class IntegrityError(DrkitError):
    """Data is corrupt, truncated, reordered or tampered with."""

    exit_code = ExitCode.INTEGRITY
    default_hint = "restore from another store: `drkit restore PLAN --store OTHER`"
    reference = "drkit runbook store-down"


class KeyUnavailableError(DrkitError):
    """A key cannot be loaded or none of the configured keys opens the data."""

    exit_code = ExitCode.KEY
    default_hint = (
        "check the plan's keys: any one of the keys a snapshot was written for decrypts it"
    )
    reference = "drkit runbook key-lost-or-rotated"


class SnapshotNotFound(DrkitError):
    exit_code = ExitCode.NOT_FOUND
    default_hint = "list snapshots with `drkit snapshots PLAN` (add --store NAME without a catalog)"
    reference = "drkit runbook restore-after-data-loss"


class RefusedError(DrkitError):
    """A safety rule refused the operation (non-empty target, declined confirmation)."""

    exit_code = ExitCode.REFUSED
    default_hint = "add --force to replace the target, or --to NAME=TARGET to restore elsewhere"
    reference = "drkit runbook restore-after-data-loss"


class LockHeldError(DrkitError):
    exit_code = ExitCode.LOCKED
    default_hint = "another drkit runner works on this plan; wait for it, or let its lease expire"
    reference = "drkit runbook drill-failed-or-objective-breached"


class CatalogError(DrkitError):
    exit_code = ExitCode.CATALOG
    default_hint = (
        "check --catalog / DRKIT_CATALOG; `drkit catalog rebuild PLAN` recreates it from a store"
    )
    reference = "drkit runbook catalog-lost"


class ObjectiveBreached(DrkitError):
    exit_code = ExitCode.OBJECTIVE_BREACHED
    default_hint = "find what was missed with `drkit status PLAN`, then follow the runbook"
    reference = "drkit runbook drill-failed-or-objective-breached"


class SandboxError(DrkitError):
    """A drill sandbox (throwaway cluster, scratch database, temporary folder) could not be
    provisioned or torn down."""

    exit_code = ExitCode.FAILED
    default_hint = "check the plan's drill.sandbox settings and that its servers are reachable"
    reference = "drkit runbook drill-failed-or-objective-breached"


class PreflightError(DrkitError):
    """A preflight found a problem the command cannot survive; it stopped before writing
    anything. Carries the exit code of the problem it names (a missing secret, tool, key)."""

    reference = "drkit runbook"

    def __init__(
        self, message: str, *, hint: str, exit_code: ExitCode, reference: str | None = None
    ):
        super().__init__(message, hint=hint, reference=reference)
        self.exit_code = exit_code
