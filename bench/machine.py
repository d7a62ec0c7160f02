"""What RESULTS.md says about the machine and the versions of everything measured."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import drkit
from bench.drkit_cli import REPOSITORY
from bench.server import PostgresServer


def _output(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (
        (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else "?"
    )


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1 << 20)
    return 0.0


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def disk(folder: Path) -> str:
    """Filesystem, device and free space of the folder the workspace is in."""
    usage = shutil.disk_usage(folder)
    device = _output(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "--target", str(folder)])
    rotational = "?"
    name = Path(device.split()[0]).name if device not in ("?", "not found") else ""
    flag = Path(f"/sys/block/{name}/queue/rotational")
    if name and flag.exists():
        rotational = "rotational" if flag.read_text().strip() == "1" else "non-rotational"
    return f"{device} ({rotational}), {usage.total / 1e9:.0f} GB, {usage.free / 1e9:.0f} GB free"


def describe(workspace: Path) -> dict[str, str]:
    return {
        "CPU": f"{os.cpu_count()} cores, {cpu_model()}",
        "memory": f"{memory_gib():.1f} GiB",
        "disk (workspace and PostgreSQL)": disk(workspace),
        "kernel": platform.release(),
        "load average at start (1/5/15 min)": load_average(),
    }


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    commit = _output(["git", "-C", str(REPOSITORY), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no", "drkit"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{commit}{' + uncommitted changes in drkit/' if dirty else ''}"


def versions(server: PostgresServer) -> dict[str, str]:
    return {
        "PostgreSQL server": server.version(),
        "pg_dump": _output(["pg_dump", "--version"]),
        "pg_restore": _output(["pg_restore", "--version"]),
        "restic": _output(["restic", "version"]),
        "Python": platform.python_version(),
        "drkit": f"{drkit.__version__} (git {_git_commit()}, run from {REPOSITORY})",
        "cryptography": _package("cryptography"),
        "zstandard": _package("zstandard"),
        "psycopg": _package("psycopg"),
        "boto3": _package("boto3"),
        "moto": _package("moto"),
        "py-spy": _output(["py-spy", "--version"]),
    }
