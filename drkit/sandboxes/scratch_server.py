"""What scratch databases on a shared server (PostgreSQL or MariaDB) have in common: one
``drkit_drill_<random>`` database per source, a read-only user of its own per database for
the checks, and a lease on which every name is written before it is created, so the next
command drops them when the drill was killed."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit, urlunsplit

from drkit.errors import SandboxError
from drkit.leases import registry
from drkit.leases.registry import Lease
from drkit.plan.schema import SourceSpec
from drkit.sandboxes.base import (
    new_scratch_database_name,
    refuse_source_type,
    report_teardown_failure,
    url_with_database,
)
from drkit.sandboxes.readers import new_reader_name, new_reader_password
from drkit.secrets import SecretRef
from drkit.sources.base import Target

if TYPE_CHECKING:
    from drkit.plan.schema import Plan


def url_with_user(url: str, user: str) -> str:
    """``url`` (which holds no password) for another user."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


class ScratchServer:
    """A sandbox of scratch databases on ``server_url``. ``password`` is the reference of the
    server's password: resolved when connecting, written nowhere (the lease keeps the
    reference). Subclasses connect, create and drop."""

    kind = "scratch-server"
    source_type = ""

    def __init__(
        self, server_url: str, password: SecretRef | None = None, *, plan: str | None = None
    ):
        self.server_url = server_url
        self.password = password
        self.plan = plan
        self.databases: dict[str, str] = {}  # source name -> database name
        self.readers: dict[str, str] = {}  # database name -> its reader
        self.reader_password = new_reader_password()
        self._lease: Lease | None = None

    # --- what subclasses do ---------------------------------------------------------------

    def _connect(self) -> Any:
        """A connection to the server (SandboxError when it cannot be made)."""
        raise NotImplementedError

    def _create_database(self, name: str, reader: str) -> None:
        raise NotImplementedError

    def _grant_reader(self, name: str, reader: str) -> None:
        """Let ``reader`` read what the restore put into ``name`` (after the restore)."""
        raise NotImplementedError

    def drop_all(self) -> None:
        """Drop every scratch database and reader of this sandbox; SandboxError naming what
        is left."""
        raise NotImplementedError

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._connect().close()  # fail before the drill restores anything
        self._lease = registry.take(
            self.kind,
            f"scratch databases on {self.server_url}",
            plan=self.plan,
            data={"server_url": self.server_url, "password": str(self.password or "")},
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.drop_all()
        except SandboxError as failure:
            report_teardown_failure(failure, while_failing=exc_type is not None)
        else:
            if self._lease is not None:
                registry.release(self._lease)

    def target_for(self, source: SourceSpec) -> Target:
        """A new, empty database on the server, for this source only (its names leased
        first)."""
        if source.type != self.source_type:
            raise refuse_source_type(self, source)
        if source.name not in self.databases:
            name = new_scratch_database_name()
            lease_id = self._lease.id if self._lease is not None else "0"
            self.databases[source.name] = name
            self.readers[name] = new_reader_name(lease_id, len(self.readers) + 1)
            if self._lease is not None:
                self._lease = registry.update(
                    self._lease, databases=list(self.databases.values()), readers=self.readers
                )
            self._create_database(name, self.readers[name])
        password = self.password.resolve() if self.password else None
        return Target(url_with_database(self.server_url, self.databases[source.name]), password)

    def reader_target_for(self, source: SourceSpec) -> Target:
        """The source's scratch database for its read-only user (after the restore)."""
        location = self.target_for(source).location
        name = urlsplit(location).path.strip("/")
        self._grant_reader(name, self.readers[name])
        return Target(url_with_user(location, self.readers[name]), self.reader_password)

    def describe(self) -> str:
        return f"scratch databases on {self.server_url}"

    @classmethod
    def remove_leftovers(cls, lease: Lease, plan: Plan | None) -> None:
        """Cleaner of this kind's leases: drop the databases and readers of a killed drill
        (the server's password is resolved from its reference now)."""
        reference = lease.data.get("password") or None
        sandbox = cls(lease.data["server_url"], SecretRef(reference) if reference else None)
        sandbox.databases = {name: name for name in lease.data.get("databases", [])}
        sandbox.readers = dict(lease.data.get("readers", {}))
        sandbox.drop_all()
