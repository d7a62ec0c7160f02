"""Bad plans never produce a traceback. Hypothesis builds plan documents from a valid plan by
replacing, removing and adding fields with values of every type (and some hostile YAML), and
`parse_plan` either accepts the plan or raises PlanError whose every problem is one
``<file>:<line>: <path>: <message>`` line. A few go through `drkit plan validate` too."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drkit.errors import ExitCode, PlanError
from drkit.plan.loader import parse_plan
from drkit.plan.schema import Plan

from .helpers import run_drkit

# hypothesis imports a deprecated module while reporting a failure; let the failure show
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)
ORIGIN = "plans/fuzz.yaml"
PROBLEM_LINE = re.compile(rf"^{re.escape(ORIGIN)}:\d+: [^:]+: .+")

BASE: dict[str, Any] = {  # every section, few items: parsing is most of each example's time
    "version": 1,
    "name": "payments-api",
    "objectives": {"rpo": "1h", "rto": "30m"},
    "sources": [
        {"name": "orders-db", "type": "postgresql", "url": "postgresql://drkit@db:5432/orders"}
        | {"password": "env:DB_PASSWORD"},
        {"name": "config", "type": "files", "paths": ["/etc/app"]},
    ],
    "keys": [
        {"name": "primary", "type": "keyfile", "path": "/etc/drkit/primary.key"},
        {"name": "glass", "type": "passphrase", "passphrase": "env:DRKIT_BREAK_GLASS"},
    ],
    "stores": [
        {"name": "s3-east", "type": "s3", "bucket": "dr-east", "region": "us-east-1"},
        {"name": "offsite", "type": "restic", "repository": "/mnt/restic"}
        | {"password": "env:RESTIC_PASSWORD", "region": "eu-central-1"},
    ],
    "copies": {"min_stores": 2, "min_regions": 2},
    "schedule": {"backup": "0 * * * *"},
    "retention": {"keep_last": 24},
    "compression": {"level": 3},
    "drill": {
        "sandbox": {"postgresql": "ephemeral"},
        "checks": [{"type": "sql", "source": "orders-db", "query": "SELECT 1", "expect": "> 0"}],
    },
    "notify": [{"type": "webhook", "url": "env:HOOK", "on": ["failed"]}],
}

FIELD_NAMES = sorted(
    {"version", "name", "type", "url", "path", "paths", "password", "region", "bucket", "rpo"}
    | {"rto", "min_stores", "checks", "source", "expect", "keys", "stores", "sources", "on"}
)
TRICKY_TEXT = st.sampled_from(
    [
        "", " ", "env:", "env:X", "file:/nope", "${UNSET_FUZZ_VARIABLE}", "${HOME:-x}", "${",
        "1h", "0s", "-5m", "99999999999999999999d", "1e400s", "nan", "* * * * *", "61 * * * *",
        "> abc", "between 9 and 1", "postgresql://u:secret@h/db", "mysql://", "s3://x",
        "a:b", "a: b", "key\nwith newline", "tab\there", "ünïcödé", "🙂", "~", "null", "true",
        "yes", "on", "0x1F", "1_000", "'quoted'", '"double"', "- item", "{a: 1}", "[1, 2]",
        "&anchor", "*alias", "!!python/object:os.system", "%TAG", "@at", "`tick`", "#comment",
    ]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TRICKY_TEXT
    | st.text(max_size=12)
)
KEYS = st.sampled_from(FIELD_NAMES) | TRICKY_TEXT | st.text(max_size=8) | st.integers(-3, 3)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated_plans(draw: st.DrawFn) -> Any:
    """The valid plan with a few random edits: replace a value, delete a key, add a key,
    wrap a value in a list, or replace a whole section."""
    document: Any = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        parent, key = draw(locations(document))
        action = draw(st.sampled_from(["replace", "delete", "add", "wrap", "duplicate"]))
        if action == "replace":
            parent[key] = draw(VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
        elif action == "wrap":
            parent[key] = [parent[key]]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(parent[key])
    return document


@st.composite
def locations(draw: st.DrawFn, document: Any) -> tuple[Any, Any]:
    """A (container, key or index) somewhere in ``document``."""
    parent: Any = document
    key: Any = draw(st.sampled_from(sorted(document, key=repr)))
    while isinstance(parent[key], dict | list) and parent[key] and draw(st.booleans()):
        parent = parent[key]
        keys = sorted(parent, key=repr) if isinstance(parent, dict) else range(len(parent))
        key = draw(st.sampled_from(list(keys)))
    return parent, key


HOSTILE_YAML = [  # the last two take a second each: not spliced into the 1000 examples
    "? [a, b]\n: c\n",
    "version: !!python/object:os.system echo\n",
    "version: !!int abc\n",
    "a: &x [*x]\n",
    "base: &b {a: 1}\nx:\n  <<: *b\n",
    "version: 1\n\tname: x\n",
    "---\nversion: 1\n---\nversion: 2\n",
    "version: !!set {a, b}\n",
    "version: 1\n'a:b': 1\n\"x\\ny\": 2\n",
    "\ufeffversion: 1\n",
    "version: 1\nname: \"\\ud800\"\n",
    "%YAML 1.1\n---\nversion: 1\n",
    "version: 2024-01-01\nname: 1.5e3\n",
    "\x00\x01",
    "- just\n- a list\n",
    "just a string",
    "",
    "version: " + "[" * 2000 + "]" * 2000 + "\n",
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)),
]  # fmt: skip
SLOW_HOSTILE = len(HOSTILE_YAML) - 2


@st.composite
def plan_texts(draw: st.DrawFn) -> str:
    """YAML text: mostly a mutated plan, sometimes with a hostile fragment spliced in."""
    text = yaml.dump(
        draw(mutated_plans()),
        Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),  # libyaml: generation stays cheap
        sort_keys=draw(st.booleans()),
        allow_unicode=True,
    )
    if draw(st.integers(0, 9)) == 0:
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, len(lines)))
        fragment = draw(st.sampled_from(HOSTILE_YAML[:SLOW_HOSTILE]))
        text = "".join(lines[:at]) + fragment + "".join(lines[at:])
    return text


def check_parse(text: str) -> Plan | None:
    """Accepted, or PlanError of well-formed problem lines; anything else fails the test."""
    try:
        return parse_plan(text, ORIGIN)
    except PlanError as error:
        assert error.problems, error.message
        for problem in error.problems:
            assert PROBLEM_LINE.fullmatch(problem), repr(problem)
        assert "\n" not in error.message
        return None


def test_the_base_plan_is_valid() -> None:
    assert check_parse(yaml.safe_dump(BASE)) is not None


@pytest.mark.parametrize("text", HOSTILE_YAML, ids=[str(i) for i in range(len(HOSTILE_YAML))])
def test_hostile_yaml_is_a_plan_error(text: str) -> None:
    assert check_parse(text) is None


@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan_texts())
def test_random_plans_give_a_plan_or_problem_lines_never_a_traceback(text: str) -> None:
    check_parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "? [a, b]\n: c\n",
        "version: 1\nname: x\nobjectives: {rpo: 99999999999999999999d, rto: 1s}\n",
        "version: 1\nname: x\ndrill: {checks: [{type: sql, source: [1], query: q, expect: '> 1'}]}\n",
        "version: 1\n\tname: x\n",
    ],
    ids=["list-key", "huge-duration", "list-source", "tab"],
)
def test_plan_validate_reports_bad_plans_with_exit_2_and_no_traceback(
    text: str, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    completed = run_drkit(None, "plan", "validate", str(plan))
    assert completed.returncode == ExitCode.USAGE, completed.stderr
    assert "Traceback" not in completed.stderr
    prefix = re.escape(str(plan))
    problems = [line for line in completed.stderr.splitlines() if re.match(rf"{prefix}:\d+:", line)]
    assert problems and all(re.fullmatch(rf"{prefix}:\d+: [^:]+: .+", p) for p in problems)
