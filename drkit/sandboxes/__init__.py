"""Sandboxes: the throwaway places restore drills restore into, always torn down.

- ``EphemeralPostgres``: a local cluster (initdb/pg_ctl) on a free port, for postgresql sources
- ``ScratchPostgres`` / ``ScratchMysql``: ``drkit_drill_<random>`` databases on a configured
  server, dropped afterwards
- ``ScratchDirectory``: a temporary folder for sqlite and files sources
- ``open_sandboxes(plan)``: the set a drill needs, chosen from the plan's ``drill.sandbox``,
  with each source's target and the ``DRKIT_SANDBOX_<SOURCE>_URL`` environment for checks
"""

from drkit.sandboxes.base import Sandbox, environment_name_for
from drkit.sandboxes.drill_sandboxes import DrillSandboxes, open_sandboxes
from drkit.sandboxes.ephemeral_postgres import EphemeralPostgres
from drkit.sandboxes.scratch_directory import ScratchDirectory
from drkit.sandboxes.scratch_mysql import ScratchMysql
from drkit.sandboxes.scratch_postgres import ScratchPostgres

__all__ = [
    "DrillSandboxes",
    "EphemeralPostgres",
    "Sandbox",
    "ScratchDirectory",
    "ScratchMysql",
    "ScratchPostgres",
    "environment_name_for",
    "open_sandboxes",
]
