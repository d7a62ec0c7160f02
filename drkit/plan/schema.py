"""The plan schema: declared once, strictly (unknown keys are errors), with a description and
an example on every field. `drkit plan schema` exports it as JSON Schema for editors and the
plan reference in docs/ is generated from it.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from drkit.cron import croniter
from drkit.plan.durations import format_duration, parse_duration
from drkit.plan.expectations import parse_expectation
from drkit.secrets import SecretRef, is_secret_reference

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


def _check_secret_reference(value: str) -> str:
    if not is_secret_reference(value):
        raise ValueError(
            "a literal secret is not allowed in a plan; write env:NAME or file:/path instead"
        )
    return value


@functools.lru_cache(maxsize=256)
def _is_valid_cron(value: str) -> bool:
    """croniter's check, once per expression: a fleet's plans share a handful of schedules,
    and the check costs more than the rest of validating a plan."""
    return bool(croniter.is_valid(value))


def _check_cron(value: str) -> str:
    if not _is_valid_cron(value):
        raise ValueError(f"{value!r} is not a valid cron expression (e.g. '0 * * * *')")
    return value


def _check_url_has_no_password(value: str) -> str:
    if urlsplit(value).password is not None:
        raise ValueError("the URL holds a password; move it to `password: env:NAME`")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?(s|m|h|d|w)$", "examples": ["15m"]}),
]
SecretReference = Annotated[
    str,
    AfterValidator(_check_secret_reference),
    WithJsonSchema({"type": "string", "pattern": "^(env:|file:)", "examples": ["env:DB_PASSWORD"]}),
]
Cron = Annotated[str, AfterValidator(_check_cron)]
Name = Annotated[str, Field(pattern=NAME_PATTERN, examples=["orders-db"])]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# --- objectives -------------------------------------------------------------------------------


class Objectives(Model):
    rpo: Duration = Field(
        description="Newest complete copy must never be older than this.", examples=["1h"]
    )
    rto: Duration = Field(
        description="A drill must restore and verify within this.", examples=["30m"]
    )


# --- sources ----------------------------------------------------------------------------------


SLOT_PATTERN = r"^[a-z0-9_]{1,63}$"


class ContinuousArchive(Model):
    """What every engine's ``pitr:`` section sets: how `drkit archive` ships the log."""

    spool: str | None = Field(
        default=None,
        description="Folder where the log receiver (pg_receivewal, mariadb-binlog) writes "
        "before drkit ships (default $DRKIT_HOME/spool/<plan>/<source>). A file leaves it "
        "only once stored.",
        examples=["/var/lib/drkit/spool/orders"],
    )
    ship_partial_every: Duration = Field(
        default=timedelta(seconds=2),
        description="How often the unfinished log file (WAL segment, binlog file) is shipped: "
        "the off-host RPO under steady writes.",
        examples=["2s"],
    )
    heartbeat_every: Duration | None = Field(
        default=None,
        description="Write a row to table drkit_heartbeat this often (opt-in): keeps an idle "
        "database's log moving and lets drills measure where a restore landed.",
        examples=["5s"],
    )
    stall_after: Duration = Field(
        default=timedelta(minutes=1),
        description="`drkit status` breaches when a store's recoverable window ends longer "
        "ago than this (a stalled archiver, slot or store).",
        examples=["1m"],
    )


class Pitr(ContinuousArchive):
    slot: Annotated[str, Field(pattern=SLOT_PATTERN)] | None = Field(
        default=None,
        description="Replication slot `drkit archive` creates and streams from "
        "(default drkit_<plan>_<source>, lowercased, dashes as underscores).",
        examples=["drkit_orders"],
    )
    replication_url: Annotated[str, AfterValidator(_check_url_has_no_password)] | None = Field(
        default=None,
        pattern=r"^postgres(ql)?://",
        description="libpq URL for replication connections (pg_basebackup, pg_receivewal), "
        "without a password; default the source's url. Its role needs the REPLICATION "
        "attribute and a `replication` line in pg_hba.conf.",
        examples=["postgresql://replicator@db.internal:5432/postgres"],
    )


class BinlogPitr(ContinuousArchive):
    """A MariaDB/MySQL source's `pitr:`; its user needs REPLICATION SLAVE and BINLOG MONITOR."""


class SqlitePitr(ContinuousArchive):
    """A SQLite source's `pitr:`; the database must be in WAL mode (journal_mode=WAL)."""


class PostgresqlSource(Model):
    name: Name = Field(description="Unique name of the source within the plan.")
    type: Literal["postgresql"] = Field(description="A PostgreSQL database, dumped with pg_dump.")
    url: Annotated[str, AfterValidator(_check_url_has_no_password)] = Field(
        pattern=r"^postgres(ql)?://",
        description="libpq URL of the database, without a password.",
        examples=["postgresql://drkit@db.internal:5432/orders"],
    )
    password: SecretReference | None = Field(
        default=None,
        description="Password reference; reaches pg_dump and pg_restore in a private PGPASSFILE, never their environment.",
    )
    jobs: int = Field(default=2, ge=1, le=64, description="Parallel jobs for pg_restore -j.")
    pitr: Pitr | None = Field(
        default=None,
        description="Continuous WAL archiving and point-in-time restore: backups of this source "
        "become physical base backups (pg_basebackup) and `drkit archive` ships its WAL. "
        "See docs/pitr.md.",
    )
    role_passwords: bool = Field(
        default=False,
        description="Also capture the login attribute and password hash of the roles the database names (needs a superuser; kept only in the sealed manifest), so `restore --roles create` can recreate them able to log in. Drills never give them.",
    )


class MysqlSource(Model):
    name: Name = Field(description="Unique name of the source within the plan.")
    type: Literal["mysql"] = Field(description="A MariaDB or MySQL database.")
    url: Annotated[str, AfterValidator(_check_url_has_no_password)] = Field(
        pattern=r"^(mysql|mariadb)://",
        description="URL of the database, without a password.",
        examples=["mysql://drkit@ledger.internal:3306/ledger"],
    )
    password: SecretReference | None = Field(
        default=None, description="Password reference; reaches the client through an option file."
    )
    pitr: BinlogPitr | None = Field(
        default=None,
        description="Continuous binary log archiving and point-in-time restore: `drkit "
        "archive` ships the server's binlog, dumps record the binlog position they are "
        "consistent with. The server needs log_bin on. See docs/pitr.md.",
    )


class SqliteSource(Model):
    name: Name = Field(description="Unique name of the source within the plan.")
    type: Literal["sqlite"] = Field(description="A SQLite database file (online backup API).")
    path: str = Field(
        description="Path of the database file.", examples=["/var/lib/payments/sessions.db"]
    )
    pitr: SqlitePitr | None = Field(
        default=None,
        description="Continuous capture of the write-ahead log and point-in-time restore: "
        "`drkit archive` reads every committed transaction from the database's WAL, seals it "
        "and ships it to every store. The database must use journal_mode=WAL. See "
        "docs/pitr.md.",
    )


class FilesSource(Model):
    name: Name = Field(description="Unique name of the source within the plan.")
    type: Literal["files"] = Field(description="Config files and folders, as a tar stream.")
    paths: list[str] = Field(
        min_length=1, description="Files or folders to capture.", examples=[["/etc/payments"]]
    )
    include: list[str] = Field(
        default_factory=list,
        description="Glob patterns; when given, only matching files.",
        examples=[["*.yaml"]],
    )
    exclude: list[str] = Field(
        default_factory=list, description="Glob patterns to leave out.", examples=[["*.swp"]]
    )
    vanished_files: Literal["warn", "fail"] = Field(
        default="warn",
        description="A file removed while the backup reads the tree (editor swap files, rotated logs): `warn` records it in the backup's warnings, `fail` fails the backup.",
    )


SourceSpec = Annotated[
    PostgresqlSource | MysqlSource | SqliteSource | FilesSource, Field(discriminator="type")
]
DATABASE_SOURCE_TYPES = ("postgresql", "mysql", "sqlite")


# --- keys -------------------------------------------------------------------------------------


class KeyfileKey(Model):
    name: Name = Field(description="Unique key name; recorded in every artifact header.")
    type: Literal["keyfile"] = Field(
        description="32 random bytes in a file (`drkit keys generate`)."
    )
    path: str = Field(description="Path of the key file.", examples=["/etc/drkit/primary.key"])


class AwsKmsKey(Model):
    name: Name = Field(description="Unique key name; recorded in every artifact header.")
    type: Literal["aws-kms"] = Field(description="An AWS KMS key that wraps each data key.")
    key_id: str = Field(description="KMS key id, ARN or alias.", examples=["alias/drkit"])
    region: str = Field(description="Region of the KMS key.", examples=["us-east-1"])
    endpoint_url: str | None = Field(
        default=None, description="Alternative KMS endpoint (tests, VPC endpoints)."
    )


class PassphraseKey(Model):
    name: Name = Field(description="Unique key name; recorded in every artifact header.")
    type: Literal["passphrase"] = Field(description="A passphrase stretched with scrypt.")
    passphrase: SecretReference = Field(
        description="Passphrase reference.", examples=["env:DRKIT_BREAK_GLASS"]
    )


KeySpec = Annotated[KeyfileKey | AwsKmsKey | PassphraseKey, Field(discriminator="type")]


# --- stores -----------------------------------------------------------------------------------


class ObjectLock(Model):
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = Field(description="S3 Object Lock mode.")
    days: int = Field(ge=1, description="Retention set on every object written.", examples=[30])


class RetentionPolicy(Model):
    keep_last: int | None = Field(default=None, ge=0, description="Keep the newest N snapshots.")
    keep_hourly: int | None = Field(
        default=None, ge=0, description="Keep the newest per hour, N hours."
    )
    keep_daily: int | None = Field(
        default=None, ge=0, description="Keep the newest per day, N days."
    )
    keep_weekly: int | None = Field(
        default=None, ge=0, description="Keep the newest per week, N weeks."
    )
    keep_monthly: int | None = Field(
        default=None, ge=0, description="Keep the newest per month, N months."
    )


class S3Store(Model):
    name: Name = Field(description="Unique store name.")
    type: Literal["s3"] = Field(description="An S3 bucket (AWS or any S3-compatible provider).")
    bucket: str = Field(min_length=3, description="Bucket name.", examples=["payments-dr-use1"])
    region: str = Field(
        description="Region; copy policies count distinct regions.", examples=["us-east-1"]
    )
    prefix: str = Field(
        default="", description="Key prefix inside the bucket.", examples=["payments/"]
    )
    endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible provider.",
        examples=["https://s3.eu-central-1.wasabisys.com"],
    )
    storage_class: str | None = Field(
        default=None, description="S3 storage class of new objects.", examples=["STANDARD_IA"]
    )
    read_connections: int = Field(
        default=4,
        ge=1,
        le=16,
        description="Ranged GETs in flight when reading an object larger than 16 MiB "
        "(restore, drill, verify), fed in order into the restore; 1 reads every object with "
        "one streaming GET.",
    )
    access_key_id: SecretReference | None = Field(
        default=None, description="Access key reference; default: the AWS credential chain."
    )
    secret_access_key: SecretReference | None = Field(
        default=None, description="Secret key reference."
    )
    object_lock: ObjectLock | None = Field(
        default=None, description="S3 Object Lock retention for every object."
    )
    retention: RetentionPolicy | None = Field(
        default=None, description="Overrides the plan's retention for this store."
    )


class FilesystemStore(Model):
    name: Name = Field(description="Unique store name.")
    type: Literal["filesystem"] = Field(description="A local or NFS-mounted folder.")
    path: str = Field(description="Folder that holds the snapshots.", examples=["/mnt/dr/payments"])
    region: str = Field(
        description="Region label; copy policies count distinct regions.", examples=["on-prem"]
    )
    retention: RetentionPolicy | None = Field(
        default=None, description="Overrides the plan's retention for this store."
    )


class ResticStore(Model):
    name: Name = Field(description="Unique store name.")
    type: Literal["restic"] = Field(
        description="A restic repository (any restic backend); receives the raw stream and encrypts it with its own key."
    )
    repository: str = Field(
        description="restic repository string.",
        examples=["s3:https://s3.eu-central-1.amazonaws.com/payments-restic"],
    )
    password: SecretReference = Field(
        description="Repository password reference; reaches restic in a private file (RESTIC_PASSWORD_FILE)."
    )
    region: str = Field(
        description="Region label; copy policies count distinct regions.", examples=["eu-central-1"]
    )
    init: bool = Field(default=False, description="Create the repository if it does not exist.")
    access_key_id: SecretReference | None = Field(
        default=None, description="AWS_ACCESS_KEY_ID for S3 backends."
    )
    secret_access_key: SecretReference | None = Field(
        default=None, description="AWS_SECRET_ACCESS_KEY for S3 backends."
    )
    retention: RetentionPolicy | None = Field(
        default=None, description="Overrides the plan's retention for this store."
    )


StoreSpec = Annotated[S3Store | FilesystemStore | ResticStore, Field(discriminator="type")]


# --- policies ---------------------------------------------------------------------------------


class Copies(Model):
    min_stores: int = Field(
        default=1, ge=1, description="Stores that must hold a snapshot for the run to count."
    )
    min_regions: int = Field(default=1, ge=1, description="Distinct regions among those stores.")


class Schedule(Model):
    backup: Cron | None = Field(
        default=None, description="Cron expression for backups.", examples=["0 * * * *"]
    )
    drill: Cron | None = Field(
        default=None, description="Cron expression for drills.", examples=["30 3 * * 1"]
    )
    prune: Cron | None = Field(
        default=None, description="Cron expression for pruning (default: after each backup)."
    )
    verify: Cron | None = Field(
        default=None, description="Cron expression for re-reading every copy."
    )


class Compression(Model):
    algorithm: Literal["zstd", "none"] = Field(
        default="zstd", description="Compression before encryption."
    )
    level: int = Field(default=3, ge=1, le=19, description="zstd level; 1-3 keep up with pg_dump.")


# --- drills -----------------------------------------------------------------------------------


def _check_sandbox_url(value: str) -> str:
    if value != "ephemeral" and not re.match(r"^(postgres(ql)?|mysql|mariadb)://", value):
        raise ValueError(
            "expected `ephemeral` or a server URL such as postgresql://postgres@host:5432/"
        )
    return _check_url_has_no_password(value)


class Sandbox(Model):
    postgresql: Annotated[str, AfterValidator(_check_sandbox_url)] = Field(
        default="ephemeral",
        description="`ephemeral` (a throwaway local cluster only drkit can reach) or a server URL for scratch databases (its user needs CREATEDB and CREATEROLE: each scratch database gets a read-only role for checks).",
    )
    mysql: Annotated[str, AfterValidator(_check_sandbox_url)] | None = Field(
        default=None,
        description="Server URL where scratch databases are created and dropped, each with a read-only user for checks (the URL's user needs CREATE, DROP, CREATE USER and GRANT OPTION).",
        examples=["mysql://root@sandbox.internal:3306/"],
    )
    password: SecretReference | None = Field(
        default=None,
        description="Password for the sandbox servers; checks never see it (they get their read-only user's).",
    )


class FingerprintCheck(Model):
    type: Literal["fingerprint"] = Field(
        description="Row counts, schema hash and file hashes equal those taken at backup."
    )


class SqlCheck(Model):
    type: Literal["sql"] = Field(
        description="A query on a restored database, compared with `expect`."
    )
    source: Name = Field(description="Name of a database source of this plan.")
    query: str = Field(
        description="SQL returning one value.", examples=["SELECT count(*) FROM orders"]
    )
    expect: Annotated[str, AfterValidator(parse_expectation)] = Field(
        description="`> 0`, `= 42`, `between 1 and 10`, ...", examples=["> 0"]
    )


def _check_argv(argv: list[str]) -> list[str]:
    for position, argument in enumerate(argv):
        if "\0" in argument:
            raise ValueError(f"argument {position} holds a NUL byte, which no program can receive")
    return argv


class CommandCheck(Model):
    type: Literal["command"] = Field(
        description="A program that must exit 0; DRKIT_SANDBOX_<SOURCE>_URL (and _PASSWORD, for a read-only user of a database) tells it where each sandbox is."
    )
    run: Annotated[list[str], AfterValidator(_check_argv)] = Field(
        min_length=1,
        description="argv of the command (no shell).",
        examples=[["./scripts/smoke-test.sh"]],
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment the command gets besides the sandboxes' (it inherits nothing else from drkit's, bar PATH, HOME, LANG, LC_*, TZ): plain values, or env:NAME / file:/path for a secret it needs.",
        examples=[{"API_BASE_URL": "http://127.0.0.1:8080", "API_TOKEN": "env:SMOKE_TEST_TOKEN"}],
    )
    timeout: Duration = Field(
        default=timedelta(minutes=5),
        description="End it, and every process it started, after this long.",
    )


CheckSpec = Annotated[FingerprintCheck | SqlCheck | CommandCheck, Field(discriminator="type")]


class Drill(Model):
    sandbox: Sandbox = Field(default_factory=Sandbox, description="Where drills restore to.")
    checks: list[CheckSpec] = Field(
        default_factory=lambda: list[CheckSpec]([FingerprintCheck(type="fingerprint")]),
        description="Checks run on the restored data. Whatever this lists, a drill compares each restored source with its snapshot's fingerprint (row counts, content digests, schema, owners, grants, settings, file hashes) and fails on a difference.",
    )


# --- notifications ----------------------------------------------------------------------------

NotifyEvent = Literal["failed", "degraded", "objective_breached", "recovered", "ok"]


class Webhook(Model):
    type: Literal["webhook"] = Field(description="POST a JSON document to a URL.")
    url: str = Field(
        description="URL, or a secret reference holding it.", examples=["env:ONCALL_WEBHOOK"]
    )
    on: list[NotifyEvent] = Field(
        default_factory=lambda: list[NotifyEvent](["failed", "degraded", "objective_breached"]),
        description="Outcomes that fire it.",
    )
    format: Literal["json", "slack"] = Field(default="json", description="Payload shape.")


class Healthcheck(Model):
    url: str = Field(
        description="healthchecks.io-style ping URL (or secret reference); /start and /fail are appended."
    )


# --- the plan ---------------------------------------------------------------------------------


class KmsSigningKey(Model):
    key_id: str = Field(
        description="An asymmetric AWS KMS key (ECC_NIST_P256, SIGN_VERIFY): id, ARN or alias.",
        examples=["alias/drkit-evidence"],
    )
    region: str = Field(description="Region of the KMS key.", examples=["us-east-1"])
    endpoint_url: str | None = Field(
        default=None, description="Custom KMS endpoint (tests, VPC endpoints)."
    )


class Evidence(Model):
    signing_key: SecretReference | None = Field(
        default=None,
        description="An Ed25519 private key in PEM (`drkit keys generate --signing PATH`) that "
        "signs every evidence record; the public key beside it verifies them.",
    )
    kms: KmsSigningKey | None = Field(
        default=None, description="Sign with an AWS KMS asymmetric key instead of a key file."
    )

    @model_validator(mode="after")
    def _one_signer(self) -> Evidence:
        if (self.signing_key is None) == (self.kms is None):
            raise ValueError("name exactly one of signing_key or kms")
        return self


class Plan(Model):
    version: Literal[1] = Field(description="Plan format version.")
    name: Name = Field(
        description="Unique plan name; prefixes everything drkit stores.", examples=["payments-api"]
    )
    description: str = Field(default="", description="What the plan protects, for people.")
    objectives: Objectives | None = Field(default=None, description="Recovery objectives.")
    sources: list[SourceSpec] = Field(min_length=1, description="What to protect.")
    keys: list[KeySpec] = Field(min_length=1, description="Key-encryption keys; any one decrypts.")
    stores: list[StoreSpec] = Field(min_length=1, description="Where copies go.")
    copies: Copies = Field(
        default_factory=Copies, description="How many stores and regions make a snapshot complete."
    )
    schedule: Schedule = Field(
        default_factory=Schedule, description="When `drkit run --due` runs each job."
    )
    retention: RetentionPolicy = Field(
        default_factory=RetentionPolicy, description="What prune keeps."
    )
    compression: Compression = Field(
        default_factory=Compression, description="Compression before encryption."
    )
    drill: Drill = Field(default_factory=Drill, description="Restore drills.")
    notify: list[Webhook] = Field(default_factory=list, description="Notifications on outcomes.")
    healthcheck: Healthcheck | None = Field(default=None, description="Dead-man pings.")
    evidence: Evidence | None = Field(
        default=None,
        description="Sign a hash-chained evidence record of every backup, verify, drill and "
        "restore, kept in the catalog and copied to every store (docs/evidence.md).",
    )

    def source(self, name: str) -> SourceSpec:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def store(self, name: str) -> StoreSpec:
        for store in self.stores:
            if store.name == name:
                return store
        raise KeyError(name)


TYPE_CHOICES = {
    "sources": ("postgresql", "mysql", "sqlite", "files"),
    "keys": ("keyfile", "aws-kms", "passphrase"),
    "stores": ("s3", "filesystem", "restic"),
    "checks": ("fingerprint", "sql", "command"),
}


def find_reference_problems(raw: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules between sections, checked on the raw document so they are reported together with
    field errors: unique names, copy policy within the stores, checks naming real sources."""
    if not isinstance(raw, dict):
        return []
    problems: list[tuple[tuple[str | int, ...], str]] = []

    def items(section: str) -> list[tuple[int, dict[str, Any]]]:
        value = raw.get(section)
        if not isinstance(value, list):
            return []
        return [(index, item) for index, item in enumerate(value) if isinstance(item, dict)]

    for section in ("sources", "keys", "stores"):
        seen: set[str] = set()
        for index, item in items(section):
            name = item.get("name")
            if isinstance(name, str):
                if name in seen:
                    problems.append(((section, index, "name"), f"name {name!r} is used twice"))
                seen.add(name)
    stores = items("stores")
    copies = raw.get("copies")
    if isinstance(copies, dict):
        min_stores = copies.get("min_stores")
        if isinstance(min_stores, int) and min_stores > len(stores):
            problems.append(
                (
                    ("copies", "min_stores"),
                    f"{min_stores} stores required but the plan has {len(stores)}",
                )
            )
        regions = {item.get("region") for _, item in stores if isinstance(item.get("region"), str)}
        min_regions = copies.get("min_regions")
        if isinstance(min_regions, int) and min_regions > len(regions):
            problems.append(
                (
                    ("copies", "min_regions"),
                    f"{min_regions} regions required but the stores span {len(regions)}",
                )
            )
    source_types = {
        item["name"]: item.get("type")
        for _, item in items("sources")
        if isinstance(item.get("name"), str)
    }
    drill = raw.get("drill")
    checks = drill.get("checks") if isinstance(drill, dict) else None
    for index, check in enumerate(checks if isinstance(checks, list) else []):
        if not isinstance(check, dict) or check.get("type") != "sql":
            continue
        name = check.get("source")
        if not isinstance(name, str):
            continue  # the field's own validation reports it
        if name not in source_types:
            problems.append((("drill", "checks", index, "source"), f"unknown source {name!r}"))
        elif source_types[name] not in DATABASE_SOURCE_TYPES:
            problems.append(
                (("drill", "checks", index, "source"), f"source {name!r} is not a database")
            )
    return problems


def secret(reference: str | None) -> SecretRef | None:
    """The plan's reference string as a SecretRef (resolved only when used)."""
    return SecretRef(reference) if reference else None


def json_schema() -> dict[str, Any]:
    """The plan's JSON Schema, for editors (`drkit plan schema`)."""
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "drkit plan"
    return schema
