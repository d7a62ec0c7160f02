"""Kubernetes manifests: valid for the newest Kubernetes schemas (strict), one CronJob per plan
and scheduled job, secrets referenced and never inlined, and `drkit k8s render` end to end."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import drkit
from drkit.cli import main
from drkit.deploy.kubernetes import (
    DEADLINE_MARGIN_SECONDS,
    MAX_CRONJOB_NAME,
    cronjob_name,
    dump_yaml_stream,
    find_unmounted_paths,
    render_manifests,
)
from drkit.errors import UsageError
from drkit.plan.loader import load_plan
from drkit.plan.schema import NAME_PATTERN, Plan

PLANS = Path(__file__).parents[2] / "plans"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
JOBS = ("backup", "prune", "verify", "drill")
UNSCHEDULED_PLAN = """\
version: 1
name: {name}
sources:
  - name: db
    type: postgresql
    url: postgresql://drkit@db.internal:5432/app
    password: env:APP_DB_PASSWORD
keys:
  - name: primary
    type: keyfile
    path: /etc/drkit/secrets/primary.key
stores:
  - name: vault
    type: restic
    repository: s3:https://s3.eu-central-1.amazonaws.com/app
    password: file:/etc/drkit/secrets/restic-password
    region: eu-central-1
"""


def committed_plans() -> list[tuple[Path, Plan]]:
    paths = [PLANS / "payments-api.yaml", PLANS / "demo.yaml"]
    return [(path, load_plan(path)) for path in paths]


def write_plan(folder: Path, name: str, extra: str = "") -> tuple[Path, Plan]:
    path = folder / f"{name}.yaml"
    path.write_text(UNSCHEDULED_PLAN.format(name=name) + extra)
    return path, load_plan(path)


def cronjobs(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] == "CronJob"]


def pod_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def test_every_document_validates_strictly_against_the_newest_kubernetes() -> None:
    documents = render_manifests(committed_plans())
    assert len(documents) == 5
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_strict_validation_would_catch_a_misspelt_field() -> None:
    # proves the validation above can fail: strict mode rejects fields Kubernetes does not know
    cronjob = copy.deepcopy(cronjobs(render_manifests(committed_plans()))[0])
    cronjob["spec"]["concurrencyPolicyy"] = "Forbid"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, KUBERNETES_VERSION, strict=True)


def test_one_cronjob_per_scheduled_job_with_unique_dns_names() -> None:
    documents = render_manifests(committed_plans())
    names = [document["metadata"]["name"] for document in cronjobs(documents)]
    assert names == [
        "drkit-payments-api-backup",
        "drkit-payments-api-drill",
        "drkit-demo-api-backup",
        "drkit-demo-api-drill",
    ]
    assert len(set(names)) == len(names)
    assert all(DNS_LABEL.match(name) and len(name) <= MAX_CRONJOB_NAME for name in names)
    backup = cronjobs(documents)[0]
    assert backup["spec"]["schedule"] == "0 * * * *"
    assert backup["metadata"]["labels"]["drkit.dev/plan"] == "payments-api"
    assert backup["metadata"]["labels"]["drkit.dev/job"] == "backup"
    assert backup["metadata"]["labels"]["app.kubernetes.io/name"] == "drkit"


def test_cronjobs_never_overlap_never_retry_and_run_their_jobs_of_one_plan() -> None:
    for cronjob in cronjobs(render_manifests(committed_plans())):
        job = cronjob["metadata"]["labels"]["drkit.dev/job"]
        plan_file = cronjob["metadata"]["annotations"]["drkit.dev/plan-file"]
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        assert cronjob["spec"]["timeZone"] == "Etc/UTC"
        assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
        pod = pod_spec(cronjob)
        assert pod["restartPolicy"] == "Never"
        # neither committed plan schedules prune, so it follows each backup (as with --due)
        jobs = ["--job", "backup", "--job", "prune"] if job == "backup" else ["--job", job]
        assert pod["containers"][0]["args"] == ["run", *jobs, f"/etc/drkit/plans/{plan_file}"]


def test_a_plan_scheduling_prune_gets_its_own_prune_cronjob(tmp_path: Path) -> None:
    schedule = 'schedule:\n  backup: "0 * * * *"\n  prune: "45 2 * * *"\n'
    documents = render_manifests([write_plan(tmp_path, "app", schedule)])
    arguments = {
        cronjob["metadata"]["name"]: pod_spec(cronjob)["containers"][0]["args"]
        for cronjob in cronjobs(documents)
    }
    assert arguments == {
        "drkit-app-backup": ["run", "--job", "backup", "/etc/drkit/plans/app.yaml"],
        "drkit-app-prune": ["run", "--job", "prune", "/etc/drkit/plans/app.yaml"],
    }


def test_pods_run_as_the_image_user_on_a_read_only_root() -> None:
    pod = pod_spec(cronjobs(render_manifests(committed_plans()))[0])
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"] == f"drkit:{drkit.__version__}"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/var/lib/drkit"]]
    assert volumes[mounts["/etc/drkit/plans"]]["configMap"]["name"] == "drkit-plans"
    assert {"name": "DRKIT_HOME", "value": "/var/lib/drkit"} in container["env"]


def test_drill_deadline_follows_the_plan_rto() -> None:
    by_name = {c["metadata"]["name"]: c for c in cronjobs(render_manifests(committed_plans()))}

    def deadline(name: str) -> int:
        value: int = by_name[name]["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        return value

    # payments-api: rto 30m; demo-api: rto 5m
    assert deadline("drkit-payments-api-drill") == 2 * 1800 + DEADLINE_MARGIN_SECONDS
    assert deadline("drkit-demo-api-drill") == 2 * 300 + DEADLINE_MARGIN_SECONDS
    assert deadline("drkit-payments-api-backup") > deadline("drkit-payments-api-drill")


def test_secrets_are_referenced_never_inlined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DB_PASSWORD", "hunter2-db-password")
    monkeypatch.setenv("DRKIT_CATALOG", "postgresql+psycopg://drkit:catalog-pw@db/drkit")
    schedule = 'schedule:\n  backup: "15 * * * *"\n  verify: "0 4 * * 0"\n'
    documents = render_manifests([write_plan(tmp_path, "app", schedule)], secrets_name="app-env")
    text = dump_yaml_stream(documents)
    assert "hunter2-db-password" not in text
    assert "catalog-pw" not in text
    assert "Secret" not in {document["kind"] for document in documents}
    for cronjob in cronjobs(documents):
        container = pod_spec(cronjob)["containers"][0]
        for variable in container["env"]:
            assert variable["name"] == "DRKIT_HOME" or "secretKeyRef" in variable["valueFrom"]
        catalog = next(v for v in container["env"] if v["name"] == "DRKIT_CATALOG")
        assert catalog["valueFrom"]["secretKeyRef"] == {"name": "drkit-catalog", "key": "url"}
        assert container["envFrom"] == [{"secretRef": {"name": "app-env"}}]
        secret_volume = next(v for v in pod_spec(cronjob)["volumes"] if "secret" in v)
        assert secret_volume["secret"]["secretName"] == "app-env"
        mount = next(m for m in container["volumeMounts"] if m["name"] == secret_volume["name"])
        assert mount == {
            "name": secret_volume["name"],
            "mountPath": "/etc/drkit/secrets",
            "readOnly": True,
        }


def test_plan_without_a_schedule_renders_only_the_configmap(tmp_path: Path) -> None:
    path, plan = write_plan(tmp_path, "quiet")
    documents = render_manifests([(path, plan)])
    assert [document["kind"] for document in documents] == ["ConfigMap"]
    assert documents[0]["metadata"]["name"] == "drkit-plans"
    assert documents[0]["data"] == {"quiet.yaml": path.read_text()}


def test_configmap_keeps_plan_files_verbatim_through_the_yaml_stream() -> None:
    text = dump_yaml_stream(render_manifests(committed_plans()))
    configmap = next(yaml.safe_load_all(text))
    assert configmap["data"]["payments-api.yaml"] == (PLANS / "payments-api.yaml").read_text()
    assert configmap["data"]["demo.yaml"] == (PLANS / "demo.yaml").read_text()
    assert "&id" not in text  # no YAML anchors for the labels shared by CronJob, Job and pod


def test_options_reach_every_pod(tmp_path: Path) -> None:
    schedule = 'schedule:\n  prune: "0 5 * * *"\n'
    documents = render_manifests(
        [write_plan(tmp_path, "app", schedule)],
        image="registry.example.com/drkit:9.9",
        namespace="dr",
        catalog_secret="fleet-catalog",
        catalog_key="dsn",
        files_secret="drkit-key-files",
        service_account="drkit-runner",
    )
    assert {document["metadata"]["namespace"] for document in documents} == {"dr"}
    (cronjob,) = cronjobs(documents)
    pod = pod_spec(cronjob)
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/drkit:9.9"
    assert pod["serviceAccountName"] == "drkit-runner"
    assert container["envFrom"] == [{"secretRef": {"name": "drkit-secrets"}}]
    assert {"secretName": "drkit-key-files", "defaultMode": 0o440} in [
        volume["secret"] for volume in pod["volumes"] if "secret" in volume
    ]
    catalog = next(v for v in container["env"] if v["name"] == "DRKIT_CATALOG")
    assert catalog["valueFrom"]["secretKeyRef"] == {"name": "fleet-catalog", "key": "dsn"}
    kubernetes_validate.validate(cronjob, KUBERNETES_VERSION, strict=True)


@given(st.from_regex(NAME_PATTERN, fullmatch=True), st.sampled_from(JOBS))
def test_any_plan_name_gives_a_short_dns_cronjob_name(plan_name: str, job: str) -> None:
    name = cronjob_name(plan_name, job)
    assert DNS_LABEL.match(name), name
    assert len(name) <= MAX_CRONJOB_NAME
    assert name.startswith("drkit-") and name.endswith(f"-{job}")


@given(st.lists(st.from_regex(NAME_PATTERN, fullmatch=True), min_size=2, max_size=2, unique=True))
def test_distinct_plan_names_never_share_a_cronjob_name(plan_names: list[str]) -> None:
    first, second = plan_names
    assert cronjob_name(first, "backup") != cronjob_name(second, "backup")


def test_two_plans_with_one_name_are_refused(tmp_path: Path) -> None:
    first = write_plan(tmp_path, "app")
    other = tmp_path / "copy.yaml"
    other.write_text(first[0].read_text())
    with pytest.raises(UsageError, match="share the plan name 'app'"):
        render_manifests([first, (other, load_plan(other))])


def test_a_namespace_kubernetes_would_refuse_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="namespace 'Prod_DR'"):
        render_manifests([write_plan(tmp_path, "app")], namespace="Prod_DR")


def test_paths_a_pod_would_not_find_are_listed() -> None:
    payments = load_plan(PLANS / "payments-api.yaml")
    unmounted = find_unmounted_paths(payments)
    assert "key primary: /etc/drkit/primary.key" in unmounted
    assert "secret reference: /run/secrets/ledger-password" in unmounted
    assert "store nfs: /mnt/dr/payments" in unmounted


def test_paths_inside_the_mounted_secret_are_not_listed(tmp_path: Path) -> None:
    _, plan = write_plan(tmp_path, "app")
    assert find_unmounted_paths(plan) == []


def test_cli_prints_a_parseable_yaml_stream(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["k8s", "render", str(PLANS), "--namespace", "dr", "--image", "drkit:test"])
    captured = capsys.readouterr()
    assert code == 0
    documents = list(yaml.safe_load_all(captured.out))
    assert [document["kind"] for document in documents] == ["ConfigMap"] + ["CronJob"] * 4
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert "/etc/drkit/primary.key (no volume in the pod provides it)" in captured.err


def test_cli_writes_json_list_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "drkit.json"
    code = main(["k8s", "render", str(PLANS / "demo.yaml"), "--json", "-o", str(output)])
    assert code == 0
    listing = json.loads(output.read_text())
    assert listing["kind"] == "List"
    assert [item["kind"] for item in listing["items"]] == ["ConfigMap", "CronJob", "CronJob"]
    assert capsys.readouterr().out == ""


def test_cli_refuses_a_missing_plan_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["k8s", "render", str(tmp_path / "nope.yaml")]) == 2
    assert "no such plan file" in capsys.readouterr().err


def test_a_pitr_source_gets_one_archiver_deployment_with_a_persistent_spool(
    tmp_path: Path,
) -> None:
    path, plan = write_plan(tmp_path, "orders")
    path.write_text(
        path.read_text().replace(
            "    password: env:APP_DB_PASSWORD\n",
            "    password: env:APP_DB_PASSWORD\n    pitr: {}\n",
            1,
        )
    )
    documents = render_manifests([(path, load_plan(path))])
    claim, deployment = documents[1:]
    for document in (claim, deployment):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert deployment["kind"] == "Deployment" and claim["kind"] == "PersistentVolumeClaim"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two on one slot
    spec = deployment["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"] == [
        "archive",
        "/etc/drkit/plans/orders.yaml",
        "--source",
        "db",
    ]
    [spool] = [v for v in spec["volumes"] if v["name"] == "spool"]
    assert spool["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert render_manifests([(path, plan)])[1:] == []  # without pitr: no archiver


def test_a_mariadb_pitr_source_gets_an_archiver_deployment_too(tmp_path: Path) -> None:
    path, _ = write_plan(tmp_path, "ledger")
    path.write_text(
        path.read_text().replace(
            "    type: postgresql\n    url: postgresql://drkit@db.internal:5432/app\n",
            "    type: mysql\n    url: mysql://drkit@db.internal:3306/app\n    pitr: {}\n",
            1,
        )
    )
    claim, deployment = render_manifests([(path, load_plan(path))])[1:]
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    assert claim["kind"] == "PersistentVolumeClaim"
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["archive", "/etc/drkit/plans/ledger.yaml", "--source", "db"]
