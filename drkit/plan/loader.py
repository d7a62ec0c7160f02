"""Loading plans: YAML with line numbers, ``${VAR}`` interpolation, and every problem in a file
reported together as ``plans/api.yaml:14: sources[0].port: ...``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from drkit.errors import PlanError
from drkit.plan.cache import keep_parsed, read_parsed
from drkit.plan.schema import TYPE_CHOICES, Plan, find_reference_problems

Location = tuple[str | int, ...]
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class PlanYamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 would read `on:` (notify events), `yes`,
    `no` and `off` as booleans, a classic trap in config files."""


PlanYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
PlanYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


_FastBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FastPlanYamlLoader(_FastBase):  # type: ignore[valid-type,misc]
    """The same YAML 1.2 reading as PlanYamlLoader, with libyaml's parser when present and
    no line numbers: the path for plans that are valid, which is nearly all of them."""


FastPlanYamlLoader.yaml_implicit_resolvers = PlanYamlLoader.yaml_implicit_resolvers


#: more nodes than any real plan has: aliases expanding exponentially ("billion laughs")
MAX_NODES = 10_000
#: more bytes than any real plan has (a page or two of YAML)
MAX_PLAN_BYTES = 1 << 20


class _NodeProblem(Exception):
    """A YAML node the plan cannot hold (a bad tag, a list as a key, a recursive alias)."""

    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.message = message


def _load_scalar(node: yaml.Node) -> Any:
    try:
        return PlanYamlLoader(yaml.serialize(node)).get_single_data()
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as error:
        # explicit tags (!!int abc, !!python/object) fail only when the value is built
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise _NodeProblem(node, f"cannot read this value: {reason}") from None


class _Node:
    """A YAML node's value with its line, so errors can point into the file. A mapping also
    keeps the line of each key: a block value starts on the line after its key, and a problem
    with a key (`retenton:` misspelled) belongs on the key's line."""

    def __init__(self, value: Any, line: int, key_lines: dict[Any, int] | None = None):
        self.value = value
        self.line = line
        self.key_lines = key_lines or {}


def _compose(
    node: yaml.Node, active: set[int] | None = None, count: list[int] | None = None
) -> _Node:
    active = set() if active is None else active
    count = [0] if count is None else count
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _NodeProblem(node, f"more than {MAX_NODES} values (aliases expanding?)")
    if id(node) in active:
        raise _NodeProblem(node, "an alias refers to a value that contains it")
    line = node.start_mark.line + 1
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            mapping: dict[Any, _Node] = {}
            key_lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _NodeProblem(
                        key_node, "a key must be a plain value, not a list or mapping"
                    )
                key = _load_scalar(key_node)
                mapping[key] = _compose(value_node, active, count)
                key_lines[key] = key_node.start_mark.line + 1
            return _Node(mapping, line, key_lines)
        if isinstance(node, yaml.SequenceNode):
            return _Node([_compose(item, active, count) for item in node.value], line)
        # Scalars: let the safe loader decide the type (int, bool, null, string).
        return _Node(_load_scalar(node), line)
    finally:
        active.discard(id(node))


def _plain(node: _Node) -> Any:
    if isinstance(node.value, dict):
        return {key: _plain(value) for key, value in node.value.items()}
    if isinstance(node.value, list):
        return [_plain(item) for item in node.value]
    return node.value


def _child(node: _Node, part: str | int) -> _Node | None:
    """The node under ``part``, or None (a missing key, or a union's discriminator tag)."""
    value = node.value
    if isinstance(value, dict):
        child = value.get(part)
        return child if isinstance(child, _Node) else None
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        item = value[part]
        return item if isinstance(item, _Node) else None
    return None


def _line_of(root: _Node, location: Location) -> int:
    """The line of the deepest key or item ``location`` reaches (a missing key points at its
    parent)."""
    node, line = root, root.line
    for part in location:
        child = _child(node, part)
        if child is None:
            continue
        line = node.key_lines.get(part, child.line)
        node = child
    return line


def format_location(location: Location, root: _Node | None = None) -> str:
    """``("stores", 1, "s3", "region")`` -> ``stores[1].region`` (union tags dropped)."""
    text = ""
    node = root
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            value = node.value if node is not None else None
            if isinstance(value, dict) and part not in value:
                tag = value.get("type")
                if isinstance(tag, _Node) and tag.value == part:
                    continue  # the discriminator of a tagged union, not a field
            text += ("." if text else "") + _render_key(part)
        if node is not None:
            node = _child(node, part) or node
    return text or "(plan)"


def _render_key(key: object) -> str:
    """A mapping key as a step of a problem's path. A key no plan has (a colon, a line break)
    is quoted, so a problem stays one `file:line: path: message` line."""
    text = str(key)
    if ":" not in text and text.isprintable():
        return text
    return "[" + json.dumps(text).replace(":", "\\u003a") + "]"


def _interpolate(value: Any, location: Location, problems: list[tuple[Location, str]]) -> Any:
    if isinstance(value, dict):
        return {key: _interpolate(item, (*location, key), problems) for key, item in value.items()}
    if isinstance(value, list):
        return [
            _interpolate(item, (*location, index), problems) for index, item in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(
            (
                location,
                f"${{{name}}} is not set in the environment (write ${{{name}:-default}} for a default)",
            )
        )
        return match.group(0)

    return INTERPOLATION.sub(substitute, value)


def _messages(error: ValidationError) -> Iterable[tuple[Location, str]]:
    for detail in error.errors():
        location = tuple(detail["loc"])
        message = detail["msg"]
        if detail["type"] == "missing":
            message = "field required"
        elif detail["type"] == "extra_forbidden":
            message = "unknown field"
        elif detail["type"] in ("union_tag_invalid", "union_tag_not_found"):
            location = (*location, "type")
            section = next((part for part in reversed(location) if part in TYPE_CHOICES), "")
            choices = ", ".join(repr(choice) for choice in TYPE_CHOICES.get(str(section), ()))
            message = f"must be one of {choices}"
        elif detail["type"] == "string_pattern_mismatch" and location[-1] == "name":
            message = "use lower-case letters, digits, '-', '_' and '.' (at most 63)"
        message = message.removeprefix("Value error, ")
        yield location, message


def parse_plan(text: str, origin: str = "<plan>") -> Plan:
    """Validate plan text; raise PlanError listing every problem with origin:line:path.

    A valid plan is read once, quickly; only a plan with a problem is read again node by
    node, to point each problem at its line."""
    try:
        plan = _parse_valid_plan(text)
    except RecursionError:  # nested too deeply: the line-numbered reading says so
        plan = None
    return plan if plan is not None else _parse_with_lines(text, origin)


def _parse_valid_plan(text: str) -> Plan | None:
    """The plan when ``text`` is a valid one, else None (then the slow path explains why).
    A text with anchors goes the slow way too: its guard against aliases that expand
    exponentially counts nodes as it composes them."""
    if "&" in text:
        return None
    parsed = read_parsed(text)
    cached = parsed is not None
    if parsed is None:
        try:
            parsed = yaml.load(text, Loader=FastPlanYamlLoader)  # noqa: S506 (a safe loader)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
            return None
    if not isinstance(parsed, dict):
        return None
    problems: list[tuple[Location, str]] = []
    raw = _interpolate(parsed, (), problems)
    if problems or find_reference_problems(raw):
        return None
    try:
        plan = Plan.model_validate(raw)
    except ValidationError:
        return None
    if not cached:
        keep_parsed(text, parsed)
    return plan


def _parse_with_lines(text: str, origin: str) -> Plan:
    try:
        node = yaml.compose(text, Loader=PlanYamlLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join((getattr(error, "problem", None) or str(error)).split())
        raise PlanError(
            f"{origin}:{line}: not valid YAML: {problem}",
            problems=[f"{origin}:{line}: (plan): not valid YAML: {problem}"],
        ) from None
    except RecursionError:  # the composer recurses once per nesting level
        raise PlanError(
            f"{origin}: nested too deeply", problems=[f"{origin}:1: (plan): nested too deeply"]
        ) from None
    if node is None or not isinstance(node, yaml.MappingNode):
        raise PlanError(
            f"{origin}: a plan is a YAML mapping starting with `version: 1`",
            problems=[f"{origin}:1: (plan): expected a mapping"],
        )
    try:
        root = _compose(node)
    except _NodeProblem as problem:
        raise PlanError(
            f"{origin}:{problem.line}: {problem.message}",
            problems=[f"{origin}:{problem.line}: (plan): {problem.message}"],
        ) from None
    except RecursionError:
        raise PlanError(
            f"{origin}: nested too deeply", problems=[f"{origin}:1: (plan): nested too deeply"]
        ) from None
    problems: list[tuple[Location, str]] = []
    raw = _interpolate(_plain(root), (), problems)
    plan: Plan | None = None
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as error:
        problems.extend(_messages(error))
    problems.extend(find_reference_problems(raw))
    if problems:
        lines = sorted(
            {
                (_line_of(root, location), format_location(location, root), message)
                for location, message in problems
            }
        )
        rendered = [f"{origin}:{line}: {path}: {message}" for line, path, message in lines]
        count = len(rendered)
        raise PlanError(
            f"{origin}: {count} problem{'s' if count != 1 else ''} in the plan",
            problems=rendered,
        )
    assert plan is not None
    return plan


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file (at most MAX_PLAN_BYTES: a plan is a page of YAML, and
    reading a device or a huge file by mistake must not exhaust memory)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PLAN_BYTES + 1)
        if len(data) > MAX_PLAN_BYTES:
            raise PlanError(
                f"{path}: larger than {MAX_PLAN_BYTES // 1024} KiB, too large for a plan",
                hint="check that the path names a plan file",
            )
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise PlanError(
            f"{path}: no such plan file",
            hint="check the path; `drkit plan init` writes a sample plan",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: cannot read the plan: {error}") from None
    return parse_plan(text, str(path))


def find_plan_files(paths: Iterable[str | Path]) -> list[Path]:
    """Plan files named directly, and *.yaml / *.yml inside folders, in a stable order."""
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found.extend(sorted(p for p in entry.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            found.append(entry)
    return found
