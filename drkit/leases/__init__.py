"""Leases: a record of every temporary thing drkit makes, so that nothing outlives a crash.

Sandbox clusters, scratch databases and their users, staging folders, a command's scratch
folder and the processes it started: each is leased (``registry.take``) before it is made and
released after it is removed. A lease is a small JSON file under ``$DRKIT_HOME/leases`` naming
its owner (host, boot, pid and the pid's start time), its kind, its plan and what its kind's
cleaner needs. The next drkit command on a plan, and ``drkit cleanup``, hand the leases of
dead owners to their cleaners (``sweeper.sweep``).

- ``processes``: owner identity and liveness, finding and ending processes
- ``registry``: lease files (take, update, release, list)
- ``kinds``: lease kind -> cleaner, the one table to extend for a new kind
- ``folders``: leased private folders and files; ``scratch``: a command's scratch folder
- ``sweeper``: cleaning up after dead owners
"""

from drkit.leases.folders import lease_file, private_directory
from drkit.leases.registry import Lease, holding, release, take, update
from drkit.leases.scratch import private_scratch

__all__ = [
    "Lease",
    "holding",
    "lease_file",
    "private_directory",
    "private_scratch",
    "release",
    "take",
    "update",
]
