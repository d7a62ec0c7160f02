"""The controls of the frameworks that ask for backup and restore evidence, what each asks,
and what a drkit report shows for it, with the plan's own figures: an auditor reads the
control and the evidence side by side instead of mapping one to the other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drkit.plan.durations import humanize_seconds


@dataclass(frozen=True)
class Control:
    framework: str
    reference: str
    asks: str
    shows: Callable[[dict[str, Any]], str]


def _seconds(value: float | None) -> str:
    return "–" if value is None else humanize_seconds(value)


def _backups(report: dict[str, Any]) -> str:
    backups = report["backups"]
    due = "unscheduled" if backups["due"] is None else f"{backups['due']} due"
    return (
        f"{due}, {backups['taken']} taken, {backups['succeeded']} succeeded, "
        f"{backups['failed']} failed, {backups['interrupted']} interrupted (run history)"
    )


def _copies(report: dict[str, Any]) -> str:
    regions = ", ".join(f"{k}: {v}" for k, v in report["copies_per_region"].items()) or "none"
    policy = report["copy_policy"]
    return (
        f"copy policy {policy['min_stores']} stores in {policy['min_regions']} regions; "
        f"complete copies per region {regions}; encrypted "
        f"({report['encryption']['cipher']}), keys {', '.join(report['encryption']['key_names']) or '–'}"
    )


def _drills(report: dict[str, Any]) -> str:
    drills = report["drills"]
    objective = (report["objectives"] or {}).get("rto_seconds")
    return (
        f"{drills['run']} restore drills, {drills['passed']} passed; RTO max "
        f"{_seconds(drills['rto_max_seconds'])} against {_seconds(objective)}"
    )


def _recovery(report: dict[str, Any]) -> str:
    objectives = report["objectives"] or {}
    verdict = report["verdict"]
    met = {True: "met", False: "BREACHED", None: "no objective"}
    return (
        f"worst RPO {_seconds(report['rpo']['worst_seconds'])} against "
        f"{_seconds(objectives.get('rpo_seconds'))} ({met[verdict['rpo_met']]}); "
        f"RTO ({met[verdict['rto_met']]}); {len(report['failures'])} failures listed with reasons"
    )


def _evidence(report: dict[str, Any]) -> str:
    return (
        f"{report.get('evidence_total', len(report['evidence']))} snapshots in the period, "
        "listed with manifest SHA-256 and the stores holding them"
    )


CONTROLS = (
    Control(
        "SOC 2",
        "A1.2",
        "Backups of data are performed, and recovery infrastructure is in place "
        "(environmental protections, backup processes, recovery).",
        lambda r: f"{_backups(r)}; {_copies(r)}",
    ),
    Control(
        "SOC 2",
        "A1.3",
        "Recovery plan procedures supporting system recovery are tested.",
        _drills,
    ),
    Control(
        "SOC 2",
        "CC7.5",
        "The entity develops and runs activities to recover from identified incidents.",
        lambda r: f"{_recovery(r)}; restores and drills are recorded runs",
    ),
    Control(
        "ISO/IEC 27001:2022",
        "A.8.13",
        "Backup copies of information are maintained and regularly tested per the agreed "
        "backup policy.",
        lambda r: f"{_backups(r)}; {_drills(r)}",
    ),
    Control(
        "ISO/IEC 27001:2022",
        "A.5.30",
        "ICT readiness for business continuity is planned, implemented, maintained and "
        "tested against continuity objectives.",
        _recovery,
    ),
    Control(
        "DORA",
        "Art. 11-12",
        "Backup policies, restoration and recovery procedures, tested periodically; backups "
        "segregated from the source; recovery time and point objectives.",
        lambda r: f"{_copies(r)}; {_drills(r)}; {_recovery(r)}",
    ),
    Control(
        "PCI DSS v4.0",
        "12.10",
        "An incident response plan exists, including business recovery and data backup "
        "processes, and is tested at least once every 12 months.",
        lambda r: f"{_drills(r)}; {_backups(r)}",
    ),
    Control(
        "HIPAA",
        "164.308(a)(7)",
        "Contingency plan: data backup plan, disaster recovery plan, testing and revision "
        "procedures, for exact retrievable copies of ePHI.",
        lambda r: f"{_backups(r)}; {_drills(r)}; {_evidence(r)}",
    ),
    Control(
        "NIST SP 800-53",
        "CP-9",
        "System backup: back up user and system information at a defined frequency; protect "
        "backups' confidentiality and integrity.",
        lambda r: f"{_backups(r)}; {_copies(r)}; {_evidence(r)}",
    ),
    Control(
        "NIST SP 800-53",
        "CP-4",
        "Contingency plan testing: test the plan at a defined frequency and review the results.",
        _drills,
    ),
)


def control_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(control, what it asks, what drkit shows for this plan) for every control."""
    return [
        (f"{control.framework} {control.reference}", control.asks, control.shows(report))
        for control in CONTROLS
    ]
