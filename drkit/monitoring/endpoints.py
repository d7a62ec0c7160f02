"""Endpoints monitoring talks to: webhook, healthcheck and Pushgateway URLs.

A URL in a plan may be a secret reference (``env:NAME``, ``file:/path``) because these URLs
often carry a token in their path or query. The resolved URL is a ``Secret``: it is revealed
only to build the HTTP request, and every log line or problem names the endpoint by its label
and host, never by its URL. Sending never raises: it returns a one-line problem instead.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from drkit.errors import DrkitError
from drkit.secrets import Secret, SecretRef, is_secret_reference

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0
USER_AGENT = "drkit-monitoring"


@dataclass(frozen=True)
class Endpoint:
    """A resolved URL and the safe name it is logged under (``webhook 1 (hooks.slack.com)``)."""

    label: str
    url: Secret

    @property
    def host(self) -> str:
        return urlsplit(self.url.reveal()).hostname or "?"

    def __str__(self) -> str:
        return f"{self.label} ({self.host})"


def resolve_endpoint(label: str, url: str) -> Endpoint | str:
    """The endpoint behind ``url`` (a URL or a secret reference), or a one-line problem when
    the reference cannot be resolved or the result is not an http(s) URL."""
    try:
        secret = SecretRef(url).resolve() if is_secret_reference(url) else Secret(url)
    except DrkitError as error:
        return f"{label}: {error.message}"  # names the reference, never the value
    scheme = urlsplit(secret.reveal()).scheme
    if scheme not in ("http", "https"):
        return f"{label}: the URL must start with http:// or https://"
    return Endpoint(label, secret)


def send(
    endpoint: Endpoint,
    body: bytes,
    *,
    content_type: str = "application/json",
    method: str = "POST",
    url: Secret | None = None,
) -> str | None:
    """Send ``body`` to the endpoint (or to ``url``, a variant of it such as ``/start``);
    None when it answered 2xx, else a one-line problem that names the endpoint safely."""
    target = (url or endpoint.url).reveal()
    request = urllib.request.Request(  # noqa: S310 - the scheme was checked in resolve_endpoint
        target,
        data=body,
        method=method,
        headers={"Content-Type": content_type, "User-Agent": USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as error:
        error.close()
        return f"{endpoint}: HTTP {error.code} {redact(str(error.reason), target)}"
    except urllib.error.URLError as error:
        return f"{endpoint}: unreachable: {redact(str(error.reason), target)}"
    except (OSError, ValueError) as error:  # timeouts, resets, malformed URLs
        return f"{endpoint}: {type(error).__name__}: {redact(str(error), target)}"
    return None


def redact(text: str, url: str) -> str:
    """``text`` on one line with the URL and its secret-bearing parts (user info, path, query)
    replaced by ***: library error messages sometimes quote the URL they failed on."""
    parts = urlsplit(url)
    pieces = [url, parts.netloc.rpartition("@")[0], parts.path, parts.query, parts.fragment]
    for piece in sorted((p for p in pieces if len(p) > 1), key=len, reverse=True):
        text = text.replace(piece, "***")
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "..."


def warn(problems: list[str]) -> list[str]:
    """Log each problem as a warning and hand the list back, for ``return warn(problems)``."""
    for problem in problems:
        log.warning("%s", problem)
    return problems
