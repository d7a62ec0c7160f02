"""Database URLs (``postgresql://user@host:5432/orders``, ``mysql://root@host:3306/ledger``)
split into the parts the database sources need: which server, which user, which database.

A URL here never carries a password: passwords travel beside it as a ``Secret`` and reach the
tools through their environment or an option file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from drkit.errors import SourceError


@dataclass(frozen=True)
class DatabaseUrl:
    """One database (or, with ``database`` None, one server) addressed by URL."""

    scheme: str
    host: str
    port: int | None = None
    user: str | None = None
    database: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def with_database(self, database: str | None) -> DatabaseUrl:
        """The same server and user, another database."""
        return replace(self, database=database)

    def option(self, name: str) -> str | None:
        """The value of a query parameter (``?sslmode=require``), or None."""
        return next((value for key, value in self.options if key == name), None)

    def require_database(self) -> str:
        """The database name; SourceError when the URL names only a server."""
        if not self.database:
            raise SourceError(
                f"{self} names no database",
                hint="add the database to the URL path, e.g. postgresql://user@host:5432/orders",
            )
        return self.database

    def __str__(self) -> str:
        netloc = quote(self.user, safe="") + "@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else quote(self.host, safe="")
        netloc += host + (f":{self.port}" if self.port is not None else "")
        path = "/" + quote(self.database, safe="") if self.database else "/"
        query = "?" + urlencode(self.options) if self.options else ""
        return f"{self.scheme}://{netloc}{path}{query}"


def parse_database_url(text: str) -> DatabaseUrl:
    """Split ``text``; SourceError when it is malformed or holds a password."""
    parts = urlsplit(text)
    if not parts.scheme or (not parts.netloc and not parts.query):
        raise SourceError(
            f"{text!r} is not a database URL", hint="write scheme://user@host:port/db"
        )
    if parts.password is not None:
        # Never echo the URL itself here: it holds the secret.
        raise SourceError(
            "a database URL holds a password", hint="move it to `password: env:NAME` in the plan"
        )
    try:
        port = parts.port
    except ValueError:
        raise SourceError(f"{text!r} has an invalid port") from None
    database = unquote(parts.path.lstrip("/")) or None
    return DatabaseUrl(
        scheme=parts.scheme,
        host=unquote(parts.hostname or ""),
        port=port,
        user=unquote(parts.username) if parts.username else None,
        database=database,
        options=tuple(parse_qsl(parts.query, keep_blank_values=True)),
    )
