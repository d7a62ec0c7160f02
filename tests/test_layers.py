"""The folders are the architecture: imports flow one way, cli -> actions -> repository (and
preflight beside it) -> sources / crypto / stores / catalog -> plan -> base, and the heavy
SDKs stay in the one package that owns them. Read from the source with ``ast``, so lazy imports inside functions
and ``TYPE_CHECKING`` blocks count too."""

from __future__ import annotations

import ast
from pathlib import Path

import drkit

PACKAGE = Path(drkit.__file__).resolve().parent

#: layer of each top-level part of drkit; a module may import its own layer or lower ones
LAYERS: dict[str, int] = {
    "__init__": 0,
    "errors": 0,
    "secrets": 0,
    "outcome": 0,
    "execute": 0,
    "home": 0,
    "leases": 0,
    "units": 0,
    "cron": 0,
    "plan": 1,
    "retention": 1,
    "crypto": 2,
    "stores": 2,
    "catalog": 2,
    "sources": 2,
    "sandboxes": 2,
    "repository": 3,
    # continuous WAL archiving, beside the repository (it compresses and seals the same way)
    "archive": 3,
    # proves the parts usable before a command touches them; the command line calls it
    "preflight": 3,
    "actions": 4,
    "report": 4,
    "monitoring": 4,
    "deploy": 4,
    "cli": 5,
    "demo": 5,
    "__main__": 5,
}
#: layers whose parts may import each other freely (the base, plans, the command line)
OPEN_LAYERS = {0, 1, 5}
#: elsewhere, imports allowed between parts of the same layer (importer -> imported)
SIDEWAYS = {
    ("sandboxes", "sources"),
    ("archive", "repository"),
    ("actions", "report"),
    ("actions", "sandboxes"),
    ("monitoring", "report"),
    ("deploy", "actions"),
    ("cli", "demo"),
}
#: third-party packages only one part of drkit may import
OWNERS = {
    "cryptography": {"crypto"},
    "boto3": {"stores/s3.py", "crypto/kms.py"},
    "botocore": {"stores/s3.py", "crypto/kms.py"},
    "sqlalchemy": {"catalog"},
    "alembic": {"catalog"},
    "croniter": {"cron.py"},  # its import would run `file` with drkit's environment
}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_drkit_has_a_layer() -> None:
    assert {part_of(path) for path in sources()} <= set(LAYERS)


def test_imports_flow_down_the_layers_only() -> None:
    upward = []
    for path in sources():
        importer = part_of(path)
        for module in imported_modules(path):
            if not module.startswith("drkit.") and module != "drkit":
                continue
            imported = module.split(".")[1] if "." in module else "__init__"
            if imported == importer:
                continue
            level = LAYERS[importer]
            allowed = (
                LAYERS[imported] < level
                or (LAYERS[imported] == level and level in OPEN_LAYERS)
                or (importer, imported) in SIDEWAYS
            )
            if not allowed:
                upward.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert upward == []


def test_sdks_are_imported_only_by_the_part_that_owns_them() -> None:
    strays = []
    for path in sources():
        relative = path.relative_to(PACKAGE).as_posix()
        for module in imported_modules(path):
            top = module.split(".")[0]
            owners = OWNERS.get(top)
            if owners and not any(relative == o or relative.startswith(o + "/") for o in owners):
                strays.append(f"{relative} imports {module}")
    assert strays == []


def test_only_the_repository_touches_manifest_bytes_and_store_keys() -> None:
    """Commands use the repository's public API (``drkit.repository``); its modules (layout,
    manifest bytes, the writer, staging) are its own."""
    leaks = []
    for path in sources():
        if part_of(path) == "repository":
            continue
        for module in imported_modules(path):
            if module.startswith("drkit.repository."):
                leaks.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert leaks == []
