"""PostgreSQL's ``restore_command`` during a drkit restore: ask drkit's fetch socket for one
WAL file and write it where the server wants it. Exit 0 when written, 1 when the file does
not exist (the server's normal signal that the WAL ends), 2 when it could not be delivered.
Imports nothing but the standard library: the server runs this once per WAL file."""

from __future__ import annotations

import os
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: fetch_client.py SOCKET NAME DESTINATION", file=sys.stderr)
        return 2
    socket_path, name, destination = argv
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(socket_path)
        connection.sendall(name.encode("ascii") + b"\n")
        reader = connection.makefile("rb")
        status = reader.readline().decode("utf-8", "replace").strip()
        if status == "MISSING":
            return 1
        if not status.startswith("OK "):
            print(f"drkit: {name}: {status}", file=sys.stderr)
            return 2
        size = int(status[3:])
        data = reader.read(size)
    if len(data) != size:
        print(f"drkit: {name}: connection ended early", file=sys.stderr)
        return 2
    partial = destination + ".drkit-tmp"
    with open(partial, "wb") as handle:
        handle.write(data)
    os.replace(partial, destination)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
