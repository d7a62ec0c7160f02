"""The fleet layout (`k8s render --group-size N`): a thousand plans make a few groups, each a
ConfigMap under `kubectl apply`'s limit and one `run --due --workers` CronJob, valid for the
newest Kubernetes, started at minutes spread by a stable hash; a plan's group is stable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import kubernetes_validate
import yaml

from drkit.deploy.groups import MAX_GROUP_CONFIGMAP_BYTES, TICK_MINUTES
from drkit.deploy.kubernetes import render_manifests
from drkit.plan.loader import load_plan
from drkit.plan.schema import Plan

from .test_kubernetes import KUBERNETES_VERSION, PLANS, pod_spec


def fleet(folder: Path, count: int) -> list[tuple[Path, Plan]]:
    template = (PLANS / "payments-api.yaml").read_text()  # the longest sample plan
    folder.mkdir(exist_ok=True)
    plans = []
    for number in range(count):
        path = folder / f"svc-{number:04d}.yaml"
        if not path.exists():
            path.write_text(template.replace("name: payments-api", f"name: svc-{number:04d}", 1))
        plans.append((path, load_plan(path)))
    return plans


def groups_of(documents: list[dict[str, object]]) -> dict[str, set[str]]:
    found = {}
    for document in documents:
        if document["kind"] == "ConfigMap":
            metadata = document["metadata"]
            found[metadata["labels"]["drkit.dev/group"]] = set(document["data"])  # type: ignore[index]
    return found


def test_a_thousand_plans_make_twenty_groups_each_under_the_limits(tmp_path: Path) -> None:
    plans = fleet(tmp_path / "plans", 1000)
    documents = render_manifests(plans, group_size=50, workers=4)
    kinds = Counter(document["kind"] for document in documents)
    assert kinds == {"ConfigMap": 20, "CronJob": 20}
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    groups = groups_of(documents)
    members = [name for group in groups.values() for name in group]
    assert sorted(members) == sorted(path.name for path, _ in plans)  # each exactly once
    for document in documents:
        if document["kind"] == "ConfigMap":
            size = len(yaml.safe_dump(document).encode())
            assert size < MAX_GROUP_CONFIGMAP_BYTES
    minutes = set()
    for cronjob in (d for d in documents if d["kind"] == "CronJob"):
        schedule = cronjob["spec"]["schedule"]  # type: ignore[index]
        offset, rest = schedule.split("-", 1)
        assert rest == f"59/{TICK_MINUTES} * * * *" and 0 <= int(offset) < TICK_MINUTES
        minutes.add(int(offset))
        args = pod_spec(cronjob)["containers"][0]["args"]  # type: ignore[arg-type]
        assert args == ["run", "--due", "--workers", "4", "/etc/drkit/plans"]
        volume = pod_spec(cronjob)["volumes"][0]  # type: ignore[arg-type]
        assert volume["configMap"]["name"] == f"{cronjob['metadata']['name']}-plans"  # type: ignore[index]
    assert len(minutes) > 1  # the groups do not all start in the same minute


def test_a_plans_group_is_stable_when_plans_are_added(tmp_path: Path) -> None:
    plans = fleet(tmp_path / "plans", 60)
    before = groups_of(render_manifests(plans[:59], group_size=20))
    after = groups_of(render_manifests(plans, group_size=20))  # still three groups
    assert render_manifests(plans, group_size=20) == render_manifests(plans, group_size=20)
    moved = [name for group, names in before.items() for name in names if name not in after[group]]
    assert moved == []
