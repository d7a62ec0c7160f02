"""The fleet layout for Kubernetes (`drkit k8s render --group-size N`): plans in groups, one
ConfigMap and one CronJob per group. Each CronJob runs `drkit run --due --workers W` over its
group every five minutes, at a minute of the five chosen by a stable hash of the group's name,
so a thousand plans make a few pods per tick, spread over the window, instead of a CronJob
per plan and job all starting at :00 with a catalog connection each.

A plan's group is a stable hash of its name, so adding a plan moves no other plan while the
number of groups stays the same. Each group's ConfigMap stays under what `kubectl apply`
can store (its last-applied annotation: 256 KiB), far below etcd's 1 MiB.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drkit.deploy.kubernetes import (
    PLANS_DIR,
    STARTING_DEADLINE_SECONDS,
    PodSettings,
    common_labels,
    job_deadline_seconds,
    render_pod_spec,
)
from drkit.errors import UsageError
from drkit.plan.schema import Plan

#: `kubectl apply` keeps the whole object in an annotation, which may hold 256 KiB
MAX_GROUP_CONFIGMAP_BYTES = 256 * 1024
#: minutes between two runs of a group's CronJob (the `drkit run --due` tick)
TICK_MINUTES = 5
DEFAULT_WORKERS = 4


def stable_hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def group_plans(
    entries: Sequence[tuple[str, Path, Plan]], group_size: int
) -> list[list[tuple[str, Path, Plan]]]:
    """(file name, path, plan) entries in ceil(n / group_size) groups by a hash of the name."""
    if group_size < 1:
        raise UsageError("--group-size must be at least 1")
    count = max(1, math.ceil(len(entries) / group_size))
    groups: list[list[tuple[str, Path, Plan]]] = [[] for _ in range(count)]
    for entry in sorted(entries, key=lambda e: e[2].name):
        groups[stable_hash(entry[2].name) % count].append(entry)
    return [group for group in groups if group]


def tick_schedule(group_name: str) -> str:
    """Every TICK_MINUTES minutes, from a minute chosen by the group's name: ``3-59/5``."""
    offset = stable_hash(group_name) % TICK_MINUTES
    return f"{offset}-59/{TICK_MINUTES} * * * *"


def render_groups(
    entries: Sequence[tuple[str, Path, Plan]],
    texts: dict[str, str],
    settings: PodSettings,
    *,
    group_size: int,
    workers: int = DEFAULT_WORKERS,
) -> list[dict[str, Any]]:
    """A ConfigMap and a CronJob per group of plans."""
    documents: list[dict[str, Any]] = []
    for index, group in enumerate(group_plans(entries, group_size)):
        name = f"drkit-group-{index:03d}"
        data = {file_name: texts[file_name] for file_name, _, _ in group}
        documents.append(render_group_configmap(name, data, settings.namespace))
        documents.append(render_group_cronjob(name, group, settings, workers))
    return documents


def render_group_configmap(name: str, data: dict[str, str], namespace: str) -> dict[str, Any]:
    size = sum(len(key) + len(text.encode()) for key, text in data.items())
    if size > MAX_GROUP_CONFIGMAP_BYTES:
        raise UsageError(
            f"the plans of {name} take {size} bytes; `kubectl apply` stores at most "
            f"{MAX_GROUP_CONFIGMAP_BYTES} per object",
            hint="lower --group-size",
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{name}-plans",
            "namespace": namespace,
            "labels": {**common_labels(), "drkit.dev/group": name},
        },
        "data": dict(data),
    }


def render_group_cronjob(
    name: str, group: Sequence[tuple[str, Path, Plan]], settings: PodSettings, workers: int
) -> dict[str, Any]:
    """`drkit run --due --workers W` over the group's plans at every tick. Ticks may overlap:
    while one pod runs a long backup, the next tick serves the group's other plans, and the
    plans' locks keep two pods off one plan (the later one skips it)."""
    labels = {**common_labels(), "drkit.dev/group": name}
    deadline = max(
        job_deadline_seconds(plan, job)
        for _, _, plan in group
        for job in ("backup", "verify", "drill")
    )
    pod = render_pod_spec(
        ["run", "--due", "--workers", str(workers), PLANS_DIR], settings, f"{name}-plans"
    )
    container = pod["containers"][0]
    container["resources"]["requests"].update({"cpu": "500m", "memory": "512Mi"})
    container["resources"]["limits"]["memory"] = f"{max(1, workers // 2)}Gi"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {"drkit.dev/plans": ",".join(plan.name for _, _, plan in group)},
        },
        "spec": {
            "schedule": tick_schedule(name),
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Allow",
            "startingDeadlineSeconds": min(STARTING_DEADLINE_SECONDS, TICK_MINUTES * 60 - 30),
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": deadline,
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                },
            },
        },
    }
