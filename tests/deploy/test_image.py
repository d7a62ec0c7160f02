"""The Docker image as written (no engine runs here): its labels, the user it runs as (the
same ids `drkit k8s render` sets), Debian's packages, and the locked Python dependencies it
installs; and the scratch space rendered CronJobs give drills."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import drkit
from drkit.deploy.kubernetes import RUN_AS_USER, SCRATCH_SPACE, render_manifests
from drkit.plan.loader import load_plan

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
LABEL_PREFIX = "org.opencontainers.image."


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in joined.splitlines()
        if line.strip()
    ]


def arguments(name: str) -> list[str]:
    return [text for instruction, text in instructions() if instruction == name]


def build_args() -> dict[str, str]:
    return dict(text.split("=", 1) for text in arguments("ARG") if "=" in text)


def labels() -> dict[str, str]:
    values = build_args()
    found = {}
    for text in arguments("LABEL"):
        for word in shlex.split(text):
            key, _, value = word.partition("=")
            found[key] = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], value)
    return found


def test_the_image_carries_oci_labels_with_drkits_version() -> None:
    found = labels()
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert found.get(LABEL_PREFIX + key), f"missing label {LABEL_PREFIX}{key}"
    assert found[LABEL_PREFIX + "version"] == drkit.__version__
    assert found[LABEL_PREFIX + "licenses"] == "Apache-2.0"
    [base] = arguments("FROM")
    assert found[LABEL_PREFIX + "base.name"].endswith(base)


def rendered_pod() -> dict[str, Any]:
    path = ROOT / "plans" / "payments-api.yaml"
    documents = render_manifests([(path, load_plan(path))])
    cronjob = next(document for document in documents if document["kind"] == "CronJob")
    pod: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def test_the_image_user_has_the_uid_and_gid_the_kubernetes_manifests_set() -> None:
    args = build_args()
    uid, gid = int(args["UID"]), int(args["GID"])
    context = rendered_pod()["securityContext"]
    assert uid == gid == RUN_AS_USER
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (uid, gid, gid)
    [run_user] = [text for text in arguments("RUN") if "useradd" in text]
    assert '--gid "${GID}"' in run_user and 'groupadd --system --gid "${GID}"' in run_user
    assert '--uid "${UID}"' in run_user
    assert arguments("USER") == ["${UID}:${GID}"]  # numeric: runAsNonRoot can verify it


def test_the_image_installs_current_client_tools_from_debian_only() -> None:
    [base] = arguments("FROM")
    assert base.endswith("-trixie")  # Debian 13: PostgreSQL 17, MariaDB 11.8, restic 0.18
    [install] = [text for text in arguments("RUN") if "apt-get install" in text]
    packages = set(install.split("--no-install-recommends", 1)[1].split("&&")[0].split())
    assert {"postgresql-client-17", "postgresql-17", "mariadb-client", "restic"} <= packages
    assert "create_main_cluster = false" in install  # the server programs, never a server
    assert not re.search(r"apt\.postgresql\.org|curl|wget", DOCKERFILE)


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) from requirements.lock."""
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    entries: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", re.sub(r"(?m)^#.*\n", "", text)):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            entries[name] = (match.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def test_the_image_installs_python_dependencies_from_the_lock_with_hashes() -> None:
    assert any(
        "--require-hashes" in text and "requirements.lock" in text for text in arguments("RUN")
    )
    assert any("pip install --no-deps ." in text for text in arguments("RUN"))


@pytest.mark.parametrize(
    "dependency",
    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"],
)
def test_every_runtime_dependency_is_pinned_with_hashes_within_its_range(dependency: str) -> None:
    requirement = Requirement(dependency)
    name = re.sub(r"[-_.]+", "-", requirement.name).lower()
    entries = locked()
    assert name in entries, f"{name} is not in requirements.lock (run scripts/lock)"
    version, hashes = entries[name]
    assert requirement.specifier.contains(version), f"{name}=={version} is outside {requirement}"
    assert hashes, f"{name} has no hash in requirements.lock"
    for extra in requirement.extras:  # psycopg[binary] -> psycopg-binary
        assert f"{name}-{extra}" in entries


def test_rendered_pods_get_scratch_space_for_drills() -> None:
    pod = rendered_pod()
    container = pod["containers"][0]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {"sizeLimit": SCRATCH_SPACE}
    assert container["resources"]["requests"]["ephemeral-storage"] == SCRATCH_SPACE
