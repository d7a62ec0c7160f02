"""moto's S3 server on 127.0.0.1, for the S3 case (it keeps every object in memory)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.workspace import Workspace

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_moto(workspace: Workspace) -> str:
    """Start ``moto_server`` as a child process; its endpoint URL."""
    beside = Path(sys.executable).with_name("moto_server")
    program = str(beside) if beside.exists() else shutil.which("moto_server")
    if program is None:
        raise SystemExit("moto_server is not installed: pip install 'moto[server]'")
    port = free_port()
    log = open(workspace.path("logs", "moto.log"), "wb")  # noqa: SIM115 - lives as long as moto
    server = subprocess.Popen(
        [program, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    workspace.services.append(server)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"moto_server exited {server.returncode}; see {log.name}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    raise RuntimeError("moto_server did not start within 30 s")


def create_bucket(endpoint_url: str, name: str) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=name)


def stop_moto(workspace: Workspace) -> None:
    """Stop moto now (it holds every object in memory)."""
    for service in list(workspace.services):
        service.terminate()
        service.wait(timeout=10)
        workspace.services.remove(service)
