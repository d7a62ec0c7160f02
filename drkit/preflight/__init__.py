"""Preflight: what must hold before drkit can back up, restore or drill a plan, checked in
seconds and reported one line per finding (``drkit check``), and the fast local subset that
runs before ``backup``, ``restore`` and ``drill`` so a misconfiguration stops them in one line
before anything is written.

- ``finding``: one result (ok, failed with a hint and an exit code, or skipped)
- ``secrets``, ``keys``, ``stores``, ``sources``, ``sandboxes``: the checks, one module each
- ``checklist``: all of them for a plan, side by side
- ``gate``: the fast subset, and which failures stop which command
"""

from drkit.preflight.checklist import check_plan
from drkit.preflight.finding import Finding, Status
from drkit.preflight.gate import require_ready

__all__ = ["Finding", "Status", "check_plan", "require_ready"]
