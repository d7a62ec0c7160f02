"""Every plan validation rule, and how problems are reported (file:line:path, all at once)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from drkit.errors import ExitCode, PlanError
from drkit.plan.loader import find_plan_files, load_plan, parse_plan

PLANS = Path(__file__).parents[2] / "plans"

MINIMAL = """\
version: 1
name: api
sources:
  - name: db
    type: sqlite
    path: /tmp/app.db
keys:
  - name: k
    type: keyfile
    path: /tmp/k.key
stores:
  - name: local
    type: filesystem
    path: /tmp/store
    region: here
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(PlanError) as raised:
        parse_plan(text, "plan.yaml")
    assert raised.value.exit_code == ExitCode.USAGE
    return raised.value.problems


def with_lines(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize("path", sorted(PLANS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_plan_is_valid(path: Path) -> None:
    plan = load_plan(path)
    assert plan.version == 1


def test_minimal_plan_gets_defaults() -> None:
    plan = parse_plan(MINIMAL)
    assert plan.copies.min_stores == 1
    assert plan.compression.algorithm == "zstd"
    assert [check.type for check in plan.drill.checks] == ["fingerprint"]


def test_six_mistakes_give_six_errors_with_file_line_and_path() -> None:
    text = """\
version: 1
name: api
objectives:
  rpo: soon
sources:
  - name: db
    type: sqlite
    path: /tmp/app.db
    colour: blue
keys:
  - name: k
    type: keyfile
stores:
  - name: local
    type: filesystem
    path: /tmp/store
copies:
  min_stores: 4
"""
    problems = problems_of(text)
    assert problems == [
        # a missing field points at the key of the mapping that lacks it
        "plan.yaml:3: objectives.rto: field required",
        "plan.yaml:4: objectives.rpo: 'soon' is not a duration; write e.g. 90s, 15m, 1h or 7d",
        "plan.yaml:9: sources[0].colour: unknown field",
        "plan.yaml:11: keys[0].path: field required",
        "plan.yaml:14: stores[0].region: field required",
        "plan.yaml:18: copies.min_stores: 4 stores required but the plan has 1",
    ]


def test_unknown_top_level_key_is_an_error() -> None:
    assert problems_of(MINIMAL + "retention_days: 7\n") == [
        "plan.yaml:16: retention_days: unknown field"
    ]


def test_misspelled_top_level_key_with_a_block_value_points_at_the_key_line() -> None:
    # the value of `retenton:` starts on the next line; the problem is the key itself
    text = MINIMAL + "retenton:\n  keep_last: 3\ndril:\n\n  checks: []\n"
    assert problems_of(text) == [
        "plan.yaml:16: retenton: unknown field",
        "plan.yaml:18: dril: unknown field",
    ]


def test_literal_password_is_rejected_with_a_hint() -> None:
    text = MINIMAL.replace(
        """  - name: db
    type: sqlite
    path: /tmp/app.db""",
        """  - name: db
    type: postgresql
    url: postgresql://app@db/app
    password: hunter2""",
    )
    [problem] = problems_of(text)
    assert problem.startswith("plan.yaml:7: sources[0].password: a literal secret is not allowed")
    assert "env:NAME or file:/path" in problem
    assert "hunter2" not in problem


def test_password_inside_a_url_is_rejected() -> None:
    text = MINIMAL.replace(
        """    type: sqlite
    path: /tmp/app.db""",
        """    type: postgresql
    url: postgresql://app:hunter2@db/app""",
    )
    [problem] = problems_of(text)
    assert "URL holds a password" in problem and "hunter2" not in problem


@pytest.mark.parametrize("reference", ["env:DB_PASSWORD", "file:/run/secrets/db"])
def test_secret_references_are_accepted(reference: str) -> None:
    text = MINIMAL.replace(
        """    type: sqlite
    path: /tmp/app.db""",
        f"""    type: postgresql
    url: postgresql://app@db/app
    password: {reference}""",
    )
    assert parse_plan(text).sources[0].password == reference  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"), [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), ("1.5h", 5400)]
)
def test_durations_are_parsed(text: str, expected: int) -> None:
    plan = parse_plan(MINIMAL + f"objectives:\n  rpo: {text}\n  rto: 1m\n")
    assert plan.objectives is not None and plan.objectives.rpo == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["0s", "10", "1 hour", "-5m", "1y"])
def test_bad_durations_are_rejected(text: str) -> None:
    [problem] = problems_of(MINIMAL + f"objectives:\n  rpo: '{text}'\n  rto: 1m\n")
    assert problem.startswith("plan.yaml:17: objectives.rpo:")


def test_cron_expressions_are_validated() -> None:
    [problem] = problems_of(MINIMAL + "schedule:\n  backup: '61 * * * *'\n")
    assert (
        problem
        == "plan.yaml:17: schedule.backup: '61 * * * *' is not a valid cron expression (e.g. '0 * * * *')"
    )
    assert (
        parse_plan(MINIMAL + "schedule:\n  backup: '*/15 * * * *'\n").schedule.backup
        == "*/15 * * * *"
    )


@pytest.mark.parametrize("section", ["sources", "keys", "stores"])
def test_names_must_be_unique(section: str) -> None:
    data = yaml.safe_load(MINIMAL)
    data[section].append(dict(data[section][0]))
    problems = problems_of(yaml.safe_dump(data, sort_keys=False))
    assert any(f"{section}[1].name: name " in p and "used twice" in p for p in problems), problems


def test_min_regions_larger_than_the_regions_is_an_error() -> None:
    [problem] = problems_of(MINIMAL + "copies:\n  min_regions: 2\n")
    assert problem == "plan.yaml:17: copies.min_regions: 2 regions required but the stores span 1"


def test_sql_check_must_name_a_database_source() -> None:
    text = (
        MINIMAL
        + """drill:
  checks:
    - type: sql
      source: nope
      query: SELECT 1
      expect: "> 0"
"""
    )
    [problem] = problems_of(text)
    assert problem == "plan.yaml:19: drill.checks[0].source: unknown source 'nope'"


def test_sql_check_on_a_files_source_is_an_error() -> None:
    text = (
        MINIMAL.replace(
            "sources:\n", "sources:\n  - name: conf\n    type: files\n    paths: [/etc]\n"
        )
        + """drill:
  checks:
    - type: sql
      source: conf
      query: SELECT 1
      expect: "> 0"
"""
    )
    assert problems_of(text) == [
        "plan.yaml:22: drill.checks[0].source: source 'conf' is not a database"
    ]


@pytest.mark.parametrize("expect", ["> 0", ">= 10", "= 42", "!= 0", "between 1 and 10"])
def test_sql_expectations_accepted(expect: str) -> None:
    text = (
        MINIMAL
        + f"drill:\n  checks:\n    - type: sql\n      source: db\n      query: SELECT 1\n      expect: '{expect}'\n"
    )
    assert parse_plan(text).drill.checks[0].expect == expect  # type: ignore[union-attr]


def test_bad_expectation_rejected() -> None:
    text = (
        MINIMAL
        + "drill:\n  checks:\n    - type: sql\n      source: db\n      query: SELECT 1\n      expect: 'lots'\n"
    )
    [problem] = problems_of(text)
    assert problem.startswith("plan.yaml:21: drill.checks[0].expect: 'lots' is not an expectation")


def test_unknown_source_type_names_the_choices() -> None:
    [problem] = problems_of(MINIMAL.replace("type: sqlite", "type: oracle"))
    assert problem.startswith("plan.yaml:5: sources[0].type: must be one of")
    assert "'postgresql'" in problem


def test_interpolation_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DR_ROOT", "/srv/dr")
    plan = parse_plan(MINIMAL.replace("path: /tmp/store", "path: ${DR_ROOT}/store"))
    assert plan.stores[0].path == "/srv/dr/store"  # type: ignore[union-attr]


def test_interpolation_default_and_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DR_ROOT", raising=False)
    plan = parse_plan(MINIMAL.replace("path: /tmp/store", "path: ${DR_ROOT:-/var/dr}/store"))
    assert plan.stores[0].path == "/var/dr/store"  # type: ignore[union-attr]
    [problem] = problems_of(MINIMAL.replace("path: /tmp/store", "path: ${DR_ROOT}/store"))
    assert problem.startswith("plan.yaml:14: stores[0].path: ${DR_ROOT} is not set")


def test_yaml_on_key_is_a_string_not_a_boolean() -> None:
    text = MINIMAL + "notify:\n  - type: webhook\n    url: env:HOOK\n    on: [failed]\n"
    assert parse_plan(text).notify[0].on == ["failed"]


def test_invalid_yaml_reports_the_line() -> None:
    with pytest.raises(PlanError) as raised:
        parse_plan("version: 1\nname: [unclosed\n", "bad.yaml")
    assert raised.value.message.startswith("bad.yaml:")
    assert "not valid YAML" in raised.value.message


def test_a_plan_must_be_a_mapping() -> None:
    with pytest.raises(PlanError, match="a plan is a YAML mapping"):
        parse_plan("- just\n- a list\n", "list.yaml")


def test_missing_file_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "nope.yaml")


def test_find_plan_files_expands_folders(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(MINIMAL)
    (tmp_path / "a.yml").write_text(MINIMAL)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in find_plan_files([tmp_path])] == ["a.yml", "b.yaml"]


def test_source_without_type_says_which_types_exist() -> None:
    [problem] = problems_of(MINIMAL.replace("    type: sqlite\n", ""))
    assert problem.startswith("plan.yaml:4: sources[0].type: must be one of")


def test_bad_name_says_what_is_allowed() -> None:
    [problem] = problems_of(MINIMAL.replace("name: api", "name: My API"))
    assert (
        problem
        == "plan.yaml:2: name: use lower-case letters, digits, '-', '_' and '.' (at most 63)"
    )


def test_plan_reference_in_docs_is_generated_from_the_schema() -> None:
    from drkit.plan.reference import render_reference

    committed = (Path(__file__).parents[2] / "docs" / "plan-reference.md").read_text()
    assert committed == render_reference(), (
        "run: python -m drkit.plan.reference > docs/plan-reference.md"
    )


def test_a_nul_byte_in_a_command_checks_argv_is_a_plan_error_with_its_line() -> None:
    text = MINIMAL + 'drill:\n  checks:\n    - type: command\n      run: ["echo", "a\\0b"]\n'
    [problem] = problems_of(text)
    assert problem.startswith("plan.yaml:19: drill.checks[0].run: ")
    assert "argument 1 holds a NUL byte" in problem


def test_a_command_check_names_the_environment_it_gets() -> None:
    text = MINIMAL + (
        "drill:\n  checks:\n    - type: command\n      run: [./smoke]\n"
        "      env: {API_URL: 'http://127.0.0.1:8080', API_TOKEN: 'env:SMOKE_TOKEN'}\n"
    )
    [check] = parse_plan(text, "plan.yaml").drill.checks
    assert check.env == {"API_URL": "http://127.0.0.1:8080", "API_TOKEN": "env:SMOKE_TOKEN"}


@pytest.mark.parametrize("kind", ["large file", "device"])
def test_a_plan_larger_than_a_mebibyte_is_refused_without_reading_it_all(
    tmp_path: Path, kind: str
) -> None:
    path = Path("/dev/zero")
    if kind == "large file":
        path = tmp_path / "huge.yaml"
        path.write_text(MINIMAL + "# padding\n" * 120_000)
    with pytest.raises(PlanError, match="larger than 1024 KiB, too large for a plan") as raised:
        load_plan(path)
    assert raised.value.exit_code == ExitCode.USAGE


def test_an_unchanged_plan_loads_from_the_parse_cache_with_the_environment_of_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))
    path = tmp_path / "api.yaml"
    path.write_text(MINIMAL.replace("path: /tmp/store", "path: ${STORE_ROOT}/store"))
    monkeypatch.setenv("STORE_ROOT", "/srv/one")
    first = load_plan(path)
    [entry] = (tmp_path / "home" / "cache" / "plans").glob("*.json")
    assert "${STORE_ROOT}" in entry.read_text()  # the parse, before interpolation

    for parse in ("load", "compose"):  # a second parse would fail: the cache is read
        monkeypatch.setattr(yaml, parse, None)
    monkeypatch.setenv("STORE_ROOT", "/srv/two")
    second = load_plan(path)
    assert first.stores[0].path != second.stores[0].path  # type: ignore[union-attr]
    assert str(second.stores[0].path).startswith("/srv/two")  # type: ignore[union-attr]


def test_a_damaged_cache_entry_is_ignored_and_an_edited_plan_is_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRKIT_HOME", str(tmp_path / "home"))
    path = tmp_path / "api.yaml"
    path.write_text(MINIMAL)
    load_plan(path)
    [entry] = (tmp_path / "home" / "cache" / "plans").glob("*.json")
    entry.write_text("{not json")
    assert load_plan(path).name == "api"
    path.write_text(MINIMAL.replace("name: api", "name: billing"))
    assert load_plan(path).name == "billing"
    path.write_text(MINIMAL.replace("region: here", "region: here\n    bogus: 1"))
    with pytest.raises(PlanError):
        load_plan(path)
