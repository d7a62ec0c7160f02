"""What the fault-injection tests share: running the real CLI as a child process, watching a
running drkit from outside (its stores' folders, /proc), and the invariants every fault must
leave intact (DESIGN promise 3: nothing looks complete that is not)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import drkit
from drkit.catalog import Catalog
from drkit.crypto import KeyfileKek
from drkit.repository.layout import MANIFEST_NAME
from drkit.repository.manifest import Manifest, open_manifest

#: the checkout under test: children must import it, not another installed copy
REPO_ROOT = Path(drkit.__file__).resolve().parents[1]
PLAN_NAME = "test-api"
TEMP_SUFFIX = ".drkit-partial"


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment, with the checkout first on PYTHONPATH."""
    environment = dict(os.environ)
    path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    environment.update(extra or {})
    return environment


def drkit_argv(catalog: str | None, *args: str) -> list[str]:
    head = [sys.executable, "-m", "drkit"]
    return head + (["--catalog", catalog] if catalog else []) + list(args)


def run_drkit(
    catalog: str | None,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m drkit [--catalog URL] ARGS`` to completion, no TTY on stdin."""
    return subprocess.run(
        drkit_argv(catalog, *args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=child_environment(env),
        timeout=timeout,
        check=False,
    )


def start_drkit(
    catalog: str | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """The same, running in the background (stdout and stderr piped)."""
    return subprocess.Popen(
        drkit_argv(catalog, *args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(env),
    )


def write_plan(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def error_lines(stderr: str) -> list[str]:
    """The ``drkit: error:`` lines of a command's stderr (JSON log lines left out)."""
    return [line for line in stderr.splitlines() if line.startswith("drkit: error:")]


# --- watching a running drkit from outside ---------------------------------------------------


def written_characters(pid: int) -> int | None:
    """Bytes the process has passed to write(2) so far (``wchar``), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return None


def store_entries(roots: Iterable[Path], skip: frozenset[str] = frozenset()) -> set[str]:
    """Every file in the stores' folders, temporary files included, as ``root-name/relative``,
    not looking inside the folders named in ``skip``."""
    found = set()
    for root in roots:
        for folder, folders, files in os.walk(root):
            folders[:] = [name for name in folders if os.path.join(folder, name) not in skip]
            for name in files:
                found.add(f"{root.name}/{Path(folder, name).relative_to(root)}")
    return found


def leaf_folders(roots: Iterable[Path]) -> frozenset[str]:
    """Folders without subfolders (other snapshots' folders): a new backup writes elsewhere,
    so a watcher need not read them again and again."""
    return frozenset(
        folder for root in roots for folder, folders, _ in os.walk(root) if not folders
    )


@dataclass
class Observation:
    """What the watcher saw of one run up to the moment it decided."""

    seconds: float = 0.0
    wchar: int = 0
    events: list[str] = field(default_factory=list)  # store entries, in order of appearance


Trigger = Callable[[Observation], bool]


def watch(
    process: subprocess.Popen[str],
    roots: list[Path],
    trigger: Trigger,
    *,
    send: signal.Signals | None = signal.SIGKILL,
    timeout: float = 60,
) -> tuple[Observation, bool]:
    """Poll the process and its stores until ``trigger`` fires (then send it ``send``, unless
    None) or the process ends on its own. Returns what was seen and whether it fired."""
    old = leaf_folders(roots)
    seen = store_entries(roots)
    observation = Observation()
    started = time.monotonic()
    while process.poll() is None:
        observation.seconds = time.monotonic() - started
        observation.wchar = written_characters(process.pid) or observation.wchar
        current = store_entries(roots, skip=old)
        observation.events.extend(sorted(current - seen))
        seen |= current
        if trigger(observation):
            if send is not None:
                process.send_signal(send)
            return observation, True
        if observation.seconds > timeout:
            process.kill()
            raise AssertionError(f"drkit ran longer than {timeout}s")
        time.sleep(0.001)
    return observation, False


# --- invariants ------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def committed_snapshots(
    root: Path, plan: str = PLAN_NAME, key: Path | None = None
) -> dict[str, Manifest]:
    """The snapshots a filesystem store holds (its manifests, opened and authenticated), by
    id. ``key`` defaults to the key file the setups write (``<tmp>/keys/primary.key`` for a
    store at ``<tmp>/stores/<name>``)."""
    keys = [KeyfileKek("primary", str(key or root.parent.parent / "keys" / "primary.key"))]
    found = {}
    for path in sorted((root / plan / "snapshots").glob(f"*/{MANIFEST_NAME}")):
        opened = open_manifest(path.read_bytes(), keys, plan=plan, snapshot_id=path.parent.name)
        assert opened.authenticated, f"{path} is not a sealed manifest"
        found[opened.manifest.snapshot_id] = opened.manifest
    return found


def assert_manifests_vouch_for_their_artifacts(root: Path, plan: str = PLAN_NAME) -> int:
    """Every manifest in a filesystem store lists artifacts that are all there, whole: a
    manifest never stands for a half-written snapshot. Returns how many snapshots it holds."""
    snapshots = committed_snapshots(root, plan)
    for snapshot_id, manifest in snapshots.items():
        for artifact in manifest.artifacts:
            stored = artifact.encrypted
            assert stored is not None, (root.name, snapshot_id, artifact.source)
            path = root / stored.key
            assert path.is_file(), f"{root.name}: manifest of {snapshot_id} lists missing {path}"
            assert path.stat().st_size == stored.size, f"{root.name}: {path} is cut short"
            assert sha256_file(path) == stored.sha256, f"{root.name}: {path} differs"
    return len(snapshots)


def uncommitted_leftovers(root: Path, plan: str = PLAN_NAME) -> list[str]:
    """What a filesystem store holds outside committed snapshots: objects of snapshot folders
    without a manifest, and temporary files of cut-short writes."""
    found = []
    for folder in sorted((root / plan / "snapshots").glob("*")):
        files = [p for p in folder.rglob("*") if p.is_file()]
        if not (folder / MANIFEST_NAME).is_file():
            found += [str(p.relative_to(root)) for p in files]
        else:
            found += [str(p.relative_to(root)) for p in files if p.name.endswith(TEMP_SUFFIX)]
    return found


def assert_catalog_claims_only_what_stores_hold(
    catalog_url: str, roots: dict[str, Path], plan: str = PLAN_NAME
) -> set[str]:
    """Every copy the catalog calls complete is committed, with that manifest, in its store.
    Returns the ids of the snapshots the catalog holds complete with at least one copy."""
    complete = set()
    with Catalog.open(catalog_url) as catalog:
        for record in catalog.list_snapshots(plan):
            for copy in record.copies:
                if copy.status != "complete":
                    continue
                manifest = roots[copy.store] / plan / "snapshots" / record.id / MANIFEST_NAME
                assert manifest.is_file(), f"catalog: {record.id} complete in {copy.store}"
                if copy.manifest_sha256:
                    assert sha256_file(manifest) == copy.manifest_sha256
                if record.status == "complete":
                    complete.add(record.id)
    return complete


def tree_digest(root: Path) -> str:
    """A digest of every path and file under ``root`` (empty when it does not exist)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")) if root.exists() else []:
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def finish(
    process: subprocess.Popen[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Wait for a background drkit; its outcome as ``run_drkit`` would have returned it."""
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def json_output(completed: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(completed.stdout)
    except ValueError:
        raise AssertionError(
            f"not JSON (exit {completed.returncode}): {completed.stdout!r} {completed.stderr}"
        ) from None


def descendants(pid: int) -> Iterator[int]:
    """Every process whose parent chain leads to ``pid`` (from /proc, at this instant)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    for child in parents:
        ancestor = parents.get(child)
        while ancestor is not None and ancestor != pid:
            ancestor = parents.get(ancestor)
        if ancestor == pid:
            yield child
