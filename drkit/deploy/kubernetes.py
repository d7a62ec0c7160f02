"""Kubernetes manifests for running plans on a cluster: one ConfigMap holding the plan files and
one CronJob per plan and scheduled job, each running ``drkit run --job JOB PLAN`` in the drkit
image as a non-root user with a read-only root filesystem; and for each PostgreSQL source with
``pitr:``, a Deployment running ``drkit archive`` with its spool on a PersistentVolumeClaim.

Secrets are only ever referenced (a Secret mounted as files and exposed as environment, the
catalog URL through a secretKeyRef); no value is rendered. Plans hold references only, so the
ConfigMap carries no secret either.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drkit import __version__
from drkit.actions.run import DEFAULT_TIMEOUTS, JOB_ORDER
from drkit.errors import PlanError, UsageError
from drkit.plan.schema import (
    FilesSource,
    FilesystemStore,
    KeyfileKey,
    MysqlSource,
    Plan,
    PostgresqlSource,
    SqliteSource,
)

DEFAULT_IMAGE = f"drkit:{__version__}"
DEFAULT_NAMESPACE = "drkit"
DEFAULT_CATALOG_SECRET = "drkit-catalog"
DEFAULT_CATALOG_KEY = "url"
DEFAULT_SECRETS = "drkit-secrets"
PLANS_CONFIGMAP = "drkit-plans"
PLANS_DIR = "/etc/drkit/plans"
SECRETS_DIR = "/etc/drkit/secrets"
HOME_DIR = "/var/lib/drkit"
RUN_AS_USER = 10001  # the drkit user of the Dockerfile
#: A Job's pods get an 11-character suffix, so a CronJob name may have at most 52.
MAX_CRONJOB_NAME = 52
#: etcd refuses objects above 1 MiB; the plans share one ConfigMap.
MAX_CONFIGMAP_BYTES = 1024 * 1024
#: Beyond drkit's own job timeout, so drkit's timeout fires first and is recorded cleanly;
#: the pod deadline is the backstop for a runner that hangs.
DEADLINE_MARGIN_SECONDS = 600
#: A missed start (controller down) still runs if it is at most this late.
STARTING_DEADLINE_SECONDS = 600
#: Seconds between SIGTERM and SIGKILL: enough for drkit to tear a drill sandbox down.
TERMINATION_GRACE_SECONDS = 120
#: Node disk for /tmp, where a drill's ephemeral PostgreSQL cluster and restore staging live
#: (about 2.5 times the database): requested, so the pod lands on a node with the room, and
#: the emptyDir's limit, so a runaway drill is evicted instead of filling the node.
SCRATCH_SPACE = "20Gi"
#: The archiver's spool: WAL received and not yet in every store (a store down for a while)
SPOOL_SPACE = "10Gi"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


@dataclass(frozen=True)
class PodSettings:
    """What every rendered pod shares: image, namespace and the Secrets it references."""

    image: str
    namespace: str
    catalog_secret: str
    catalog_key: str
    secrets_name: str
    files_secret: str
    service_account: str | None


def render_manifests(
    plans: Sequence[tuple[Path, Plan]],
    *,
    image: str = DEFAULT_IMAGE,
    namespace: str = DEFAULT_NAMESPACE,
    catalog_secret: str = DEFAULT_CATALOG_SECRET,
    catalog_key: str = DEFAULT_CATALOG_KEY,
    secrets_name: str = DEFAULT_SECRETS,
    files_secret: str | None = None,
    service_account: str | None = None,
    group_size: int | None = None,
    workers: int = 4,
) -> list[dict[str, Any]]:
    """The ConfigMap holding the plan files, then a CronJob per plan and scheduled job; with
    ``group_size``, the fleet layout instead (drkit.deploy.groups): a ConfigMap and a
    `run --due --workers` CronJob per group of plans.

    ``files_secret`` mounts a different Secret at /etc/drkit/secrets than the one exposed as
    environment (``secrets_name``), for binary key files; ``service_account`` names the pod's
    service account (cloud workload identity for KMS and S3). UsageError on a name Kubernetes
    would refuse, two plans with one name or one file name, or plans too big for a ConfigMap.
    """
    settings = PodSettings(
        image=image,
        namespace=namespace,
        catalog_secret=catalog_secret,
        catalog_key=catalog_key,
        secrets_name=secrets_name,
        files_secret=files_secret or secrets_name,
        service_account=service_account,
    )
    check_settings(settings)
    files = name_plan_files(plans)
    data = {name: read_plan_text(path) for name, (path, _plan) in zip(files, plans, strict=True)}
    if group_size is not None:
        from drkit.deploy.groups import render_groups

        entries = [(name, path, plan) for name, (path, plan) in zip(files, plans, strict=True)]
        return render_groups(entries, data, settings, group_size=group_size, workers=workers)
    documents = [render_plans_configmap(data, namespace)]
    for (_path, plan), file_name in zip(plans, files, strict=True):
        for job in JOB_ORDER:
            schedule = getattr(plan.schedule, job)
            if schedule is not None:
                documents.append(render_cronjob(plan, file_name, job, schedule, settings))
        for source in plan.sources:
            # not SQLite: its capture must run beside the database file (a sidecar of the
            # application's pod, docs/pitr.md), not in a Deployment of its own
            if isinstance(source, PostgresqlSource | MysqlSource) and source.pitr is not None:
                documents += render_archiver(plan, file_name, source.name, settings)
    return documents


def check_settings(settings: PodSettings) -> None:
    """Refuse names Kubernetes would refuse, before anything reaches a cluster."""
    if not DNS_LABEL.match(settings.namespace):
        raise UsageError(f"namespace {settings.namespace!r} is not a valid Kubernetes name")
    for option, name in (
        ("catalog secret", settings.catalog_secret),
        ("secrets", settings.secrets_name),
        ("files secret", settings.files_secret),
        ("service account", settings.service_account or "default"),
    ):
        if not DNS_SUBDOMAIN.match(name):
            raise UsageError(f"{option} name {name!r} is not a valid Kubernetes name")
    if not DATA_KEY.match(settings.catalog_key):
        raise UsageError(f"catalog key {settings.catalog_key!r} is not a valid Secret key")
    if not settings.image or any(character.isspace() for character in settings.image):
        raise UsageError(f"image {settings.image!r} is not an image reference")


def name_plan_files(plans: Sequence[tuple[Path, Plan]]) -> list[str]:
    """The ConfigMap key (file name) of each plan; every plan name and file name once only."""
    if not plans:
        raise UsageError("no plan files to render", hint="name plan files or a folder of *.yaml")
    file_names: dict[str, Path] = {}
    plan_names: dict[str, Path] = {}
    for path, plan in plans:
        if not DATA_KEY.match(path.name):
            raise UsageError(
                f"{path}: a ConfigMap key may hold only letters, digits, '-', '_' and '.'",
                hint="rename the plan file",
            )
        for seen, key, what in (
            (file_names, path.name, "file name"),
            (plan_names, plan.name, "plan name"),
        ):
            if key in seen:
                raise UsageError(f"{path} and {seen[key]} share the {what} {key!r}")
            seen[key] = path
    return list(file_names)


def read_plan_text(path: Path) -> str:
    """The plan file as written: ``${VAR}`` references are expanded in the pod, not here."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: cannot read the plan: {error}") from None


def render_plans_configmap(data: dict[str, str], namespace: str) -> dict[str, Any]:
    """The ConfigMap ``drkit-plans``: each plan file's text, mounted at /etc/drkit/plans."""
    size = sum(len(key) + len(text.encode()) for key, text in data.items())
    if size > MAX_CONFIGMAP_BYTES:
        raise UsageError(
            f"the plans take {size} bytes; a ConfigMap holds at most {MAX_CONFIGMAP_BYTES}",
            hint="render the plans in smaller groups, one namespace each",
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": PLANS_CONFIGMAP, "namespace": namespace, "labels": common_labels()},
        "data": dict(data),
    }


def common_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": "drkit", "app.kubernetes.io/version": __version__}


def plan_labels(plan: Plan, job: str) -> dict[str, str]:
    return {**common_labels(), "drkit.dev/plan": label_value(plan.name), "drkit.dev/job": job}


def label_value(text: str) -> str:
    """``text`` as a label value: plan names may end in '-', '_' or '.'; label values may not."""
    return re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", text.lower())[:63]


def cronjob_name(plan_name: str, job: str) -> str:
    """``drkit-<plan>-<job>``, a DNS label of at most 52 characters. A plan name that had to
    be shortened or changed gets a hash of the original, so two plans never share a name."""
    prefix, suffix = "drkit-", f"-{job}"
    room = MAX_CRONJOB_NAME - len(prefix) - len(suffix)
    part = re.sub(r"[^a-z0-9-]", "-", plan_name.lower()).strip("-")
    if part != plan_name or len(part) > room:
        digest = hashlib.sha256(plan_name.encode()).hexdigest()[:6]
        part = f"{part[: room - len(digest) - 1].rstrip('-')}-{digest}".lstrip("-")
    return prefix + part + suffix


def jobs_run_by(plan: Plan, job: str) -> tuple[str, ...]:
    """The jobs a CronJob runs: its own, and a prune after the backup when the plan gives
    prune no schedule of its own (as `drkit run --due` does), so retention is applied."""
    if job == "backup" and plan.schedule.prune is None:
        return ("backup", "prune")
    return (job,)


def job_arguments(plan: Plan, file_name: str, job: str) -> list[str]:
    """``run --job JOB [--job prune] /etc/drkit/plans/FILE``: the pod's drkit arguments."""
    options = [part for name in jobs_run_by(plan, job) for part in ("--job", name)]
    return ["run", *options, f"{PLANS_DIR}/{file_name}"]


def job_deadline_seconds(plan: Plan, job: str) -> int:
    """How long a job's pod may run. A drill is stopped at twice the plan's RTO (it has
    breached the objective long before), plus room to provision and tear down its sandbox."""
    limit = 0.0
    for name in jobs_run_by(plan, job):
        own = DEFAULT_TIMEOUTS[name]
        if name == "drill" and plan.objectives is not None:
            own = min(own, 2 * plan.objectives.rto.total_seconds())
        limit += own
    return int(limit) + DEADLINE_MARGIN_SECONDS


def render_cronjob(
    plan: Plan, file_name: str, job: str, schedule: str, settings: PodSettings
) -> dict[str, Any]:
    """One plan's job on its cron schedule, never two at once, never retried by Kubernetes."""
    labels = plan_labels(plan, job)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(plan.name, job),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {"drkit.dev/plan-name": plan.name, "drkit.dev/plan-file": file_name},
        },
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            # the catalog lock also stops overlaps; Forbid keeps a slow run from piling up pods
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    # drkit retries stores itself; a failed run must stay visible, not be rerun
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": job_deadline_seconds(plan, job),
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": render_pod_spec(job_arguments(plan, file_name, job), settings),
                    },
                },
            },
        },
    }


def render_archiver(
    plan: Plan, file_name: str, source: str, settings: PodSettings
) -> list[dict[str, Any]]:
    """`drkit archive` for one PITR source: a Deployment of exactly one pod, replaced by
    stopping the old one first (two archivers must never share a slot), whose spool lives on a
    PersistentVolumeClaim so WAL received but not yet shipped survives the pod."""
    suffix = "archive-" + re.sub(r"[^a-z0-9-]", "-", source.lower()).strip("-")
    name = cronjob_name(plan.name, suffix)
    labels = plan_labels(plan, "archive")
    labels["drkit.dev/source"] = label_value(source)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{name}-spool", "namespace": settings.namespace, "labels": labels},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": SPOOL_SPACE}},
        },
    }
    pod = render_pod_spec(["archive", f"{PLANS_DIR}/{file_name}", "--source", source], settings)
    pod["restartPolicy"] = "Always"
    pod["volumes"].append(
        {"name": "spool", "persistentVolumeClaim": {"claimName": f"{name}-spool"}}
    )
    container = pod["containers"][0]
    container["volumeMounts"].append({"name": "spool", "mountPath": f"{HOME_DIR}/spool"})
    container["resources"]["requests"]["ephemeral-storage"] = "1Gi"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {"drkit.dev/plan-name": plan.name, "drkit.dev/plan-file": file_name},
        },
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return [claim, deployment]


def render_pod_spec(
    arguments: list[str], settings: PodSettings, plans_configmap: str = PLANS_CONFIGMAP
) -> dict[str, Any]:
    """A pod running one drkit job: non-root, read-only root, plans and secrets mounted."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # drkit never talks to the Kubernetes API
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [render_container(arguments, settings)],
        "volumes": [
            {"name": "plans", "configMap": {"name": plans_configmap}},
            # 0440 with fsGroup: readable by the drkit user, by nobody else
            {
                "name": "secrets",
                "secret": {"secretName": settings.files_secret, "defaultMode": 0o440},
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": SCRATCH_SPACE}},
            {"name": "home", "emptyDir": {}},
        ],
    }
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    return spec


def render_container(arguments: list[str], settings: PodSettings) -> dict[str, Any]:
    return {
        "name": "drkit",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "args": arguments,
        "envFrom": [{"secretRef": {"name": settings.secrets_name}}],  # for env: references
        "env": [
            {"name": "DRKIT_HOME", "value": HOME_DIR},
            {
                "name": "DRKIT_CATALOG",
                "valueFrom": {
                    "secretKeyRef": {"name": settings.catalog_secret, "key": settings.catalog_key}
                },
            },
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": SCRATCH_SPACE},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "plans", "mountPath": PLANS_DIR, "readOnly": True},
            {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir of the pod's own
            {"name": "home", "mountPath": HOME_DIR},
        ],
    }


def find_unmounted_paths(plan: Plan) -> list[str]:
    """Local paths the plan reads or writes that a rendered pod has no volume for (everything
    outside /etc/drkit/secrets), as ``what: path``; the pod would not find them."""
    found: list[tuple[str, str]] = []
    for source in plan.sources:
        if isinstance(source, SqliteSource):
            found.append((f"source {source.name}", source.path))
        elif isinstance(source, FilesSource):
            found.extend((f"source {source.name}", path) for path in source.paths)
    found.extend((f"key {key.name}", key.path) for key in plan.keys if isinstance(key, KeyfileKey))
    found.extend(
        (f"store {store.name}", store.path)
        for store in plan.stores
        if isinstance(store, FilesystemStore)
    )
    found.extend(("secret reference", text[len("file:") :]) for text in iter_file_references(plan))
    inside = f"{SECRETS_DIR}/"
    return [f"{what}: {path}" for what, path in found if not path.startswith(inside)]


def iter_file_references(plan: Plan) -> Iterator[str]:
    """Every ``file:`` secret reference in the plan, wherever the schema allows one."""
    pending: list[Any] = [plan.model_dump(mode="json")]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and value.startswith("file:"):
            yield value


class ManifestDumper(yaml.SafeDumper):
    """Plan texts as literal blocks, so the ConfigMap reads like the plan file; no anchors
    (`&id001`) for the labels shared by a CronJob, its Job and its pod."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


ManifestDumper.add_representer(str, _represent_text)


def dump_yaml_stream(documents: Sequence[dict[str, Any]]) -> str:
    """A multi-document YAML stream (``---`` before each document) for ``kubectl apply -f -``."""
    return yaml.dump_all(
        documents,
        Dumper=ManifestDumper,
        explicit_start=True,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
