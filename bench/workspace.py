"""Everything one benchmark run creates, so that it can all be removed again, also after
Ctrl-C or SIGTERM: a temporary folder, databases named with this run's prefix, and the child
processes still running."""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import FrameType

from bench.server import PostgresServer

log = logging.getLogger("bench")

#: how long a child gets to finish on its own (it saw the terminal's Ctrl-C too), then after
#: SIGINT (drkit tears down its sandboxes), before SIGKILL
CHILD_GRACE_SECONDS = (5.0, 30.0)


class Workspace:
    """A run's temporary folder, databases and children; ``close()`` removes them all."""

    def __init__(self, server: PostgresServer, parent: Path | None = None):
        self.server = server
        self.root = Path(tempfile.mkdtemp(prefix="drkit-bench-", dir=parent))
        (self.root / "logs").mkdir()
        self.prefix = f"drkit_bench_{secrets.token_hex(3)}_"
        self.children: list[subprocess.Popen[bytes]] = []
        self.services: list[subprocess.Popen[bytes]] = []  # moto: stopped, not waited for
        self.keep = False

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def folder(self, *parts: str) -> Path:
        folder = self.path(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def database_name(self, purpose: str) -> str:
        return f"{self.prefix}{purpose}"

    def reset_folder(self, *parts: str) -> Path:
        """An empty folder (what a previous round left in it is removed)."""
        folder = self.path(*parts)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def close(self) -> None:
        """Stop children, drop this run's databases, remove the folder. Ctrl-C is ignored
        meanwhile, so a second one does not leave half the cleanup undone."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for child in self.children:
                _stop_child(child)
            for service in self.services:
                _stop_service(service)
            try:
                for name in self.server.databases_starting_with(self.prefix):
                    log.info("dropping database %s", name)
                    self.server.drop_database(name)
            except Exception as error:
                log.warning("could not drop the benchmark databases (%s*): %s", self.prefix, error)
            if self.keep:
                log.info("kept %s", self.root)
            else:
                shutil.rmtree(self.root, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    patience, grace = CHILD_GRACE_SECONDS
    if _waited(child, patience):
        return
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signal.SIGINT)
    if not _waited(child, grace):
        child.kill()
        child.wait()


def _stop_service(service: subprocess.Popen[bytes]) -> None:
    if service.poll() is None:
        service.terminate()
        if not _waited(service, 5.0):
            service.kill()
            service.wait()


def _waited(child: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return True
        time.sleep(0.05)
    return child.poll() is not None


def raise_on_sigterm() -> None:
    """SIGTERM takes the same path as Ctrl-C (KeyboardInterrupt), so cleanup runs."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
