"""Fixtures for monitoring tests: a plan on the SQLite + config-files backend (the builders of
tests/actions), and a tiny HTTP receiver on 127.0.0.1 standing in for webhooks, healthchecks
and the Pushgateway."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from drkit.catalog import Catalog
from drkit.plan.schema import Plan
from tests.actions.conftest import load, make_backend, plan_document


@dataclass
class Request:
    method: str
    path: str
    content_type: str
    body: bytes
    authorization: str = ""


@dataclass
class Receiver:
    """Records every request; answers ``status`` (per path prefix in ``statuses``)."""

    url: str
    requests: list[Request] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def status_for(self, path: str) -> int:
        return next(
            (code for prefix, code in self.statuses.items() if path.startswith(prefix)), 200
        )

    def paths(self) -> list[str]:
        return [request.path for request in self.requests]


def _make_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver.requests.append(
                Request(
                    self.command,
                    self.path,
                    self.headers.get("Content-Type", ""),
                    body,
                    self.headers.get("Authorization", ""),
                )
            )
            self.send_response(receiver.status_for(self.path))
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = _record

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recorder = Receiver("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(recorder))
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def backend(tmp_path: Path) -> dict[str, Path]:
    return make_backend(tmp_path / "backend", orders=30)


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}") as opened:
        yield opened


@pytest.fixture
def stores(tmp_path: Path) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": "filesystem",
            "path": str(tmp_path / "stores" / name),
            "region": name,
        }
        for name in ("east", "west")
    ]


@pytest.fixture
def make_plan(tmp_path: Path, stores: list[dict[str, Any]]) -> Callable[..., Plan]:
    """A plan over the test backend; keyword arguments add plan sections (notify, ...)."""

    def build(**extra: Any) -> Plan:
        return load(plan_document(tmp_path, stores, **extra))

    return build


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's prometheus-pushgateway) on a free port."""
    import shutil
    import subprocess
    import time

    from tests.conftest import free_port, is_port_open, require

    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    require(binary is not None, "prometheus-pushgateway is not installed (scripts/setup test)")
    assert binary is not None
    port = free_port()
    log = (tmp_path / "pushgateway.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 20
        while not is_port_open("127.0.0.1", port):
            assert process.poll() is None, (tmp_path / "pushgateway.log").read_text()
            assert time.monotonic() < deadline, "the pushgateway did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
