"""Reading scenario files: every error is one ScenarioError with key paths; key conversions."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from capsim.errors import Problem, ScenarioError
from capsim.loader import (
    default_scenario_path,
    key_path,
    load_scenario,
    parse_scenario,
    shipped_scenario,
)
from capsim.schema import Scenario

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "capsim" / "scenarios"

MINIMAL_YAML = """\
name: tiny
start: 2026-01-01
horizon: 2 years
pipelines:
  p:
    stages:
      a: {duration: 10}
sites:
  - {name: s, org: o, pipeline: p, mw: 100}
"""


def _data() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "name": "tiny",
            "start": "2026-01-01",
            "horizon": "2 years",
            "pipelines": {"p": {"stages": {"a": {"duration": 10}}}},
            "sites": [{"name": "s", "org": "o", "pipeline": "p", "mw": 100}],
        }
    )


def _problems(data: Any) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "x.yaml")
    return info.value.problems


def _at(problems: list[Problem], path: str) -> Problem:
    matching = [p for p in problems if p.path == path]
    assert len(matching) == 1, problems
    return matching[0]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _load_problems(path: Path) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    return info.value.problems


# ---------------------------------------------------------------------------------------------
# Valid input


def test_minimal_yaml(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, MINIMAL_YAML))
    assert isinstance(scenario, Scenario)
    assert scenario.start == dt.date(2026, 1, 1)
    assert scenario.horizon == 730.5  # 2 * 365.25 days
    assert scenario.time_unit == "days"
    assert scenario.seed == 0
    assert scenario.sites[0].start == 0.0
    assert scenario.sites[0].priority == 0


def test_months_time_unit() -> None:
    data = _data()
    data["time_unit"] = "months"
    data["pipelines"]["p"]["stages"]["a"]["duration"] = "90 days"
    data["sites"][0]["start"] = "1 year"
    scenario = parse_scenario(data)
    assert scenario.horizon == 24.0
    assert scenario.pipelines["p"].stages["a"].duration.mean == pytest.approx(90 / 30.4375)
    assert scenario.sites[0].start == 12.0


def test_site_start_date_in_days() -> None:
    data = _data()
    data["sites"][0]["start"] = "2026-02-01"
    assert parse_scenario(data).sites[0].start == 31.0


def test_site_start_date_object_in_weeks() -> None:
    data = _data()
    data["time_unit"] = "weeks"
    data["start"] = dt.date(2026, 1, 1)
    data["sites"][0]["start"] = dt.date(2026, 1, 15)
    assert parse_scenario(data).sites[0].start == 2.0


def test_site_start_date_in_months(tmp_path: Path) -> None:
    text = MINIMAL_YAML.replace("horizon: 2 years", "horizon: 5 years\ntime_unit: months").replace(
        "mw: 100}", "mw: 100, start: 2028-01-01}"
    )
    scenario = load_scenario(_write(tmp_path, text))
    # 2026-01-01 -> 2028-01-01 is 730 days; a month is 365.25 / 12 = 30.4375 days
    assert scenario.sites[0].start == pytest.approx(730 / 30.4375)
    assert scenario.horizon == 60.0


def test_site_start_as_duration() -> None:
    data = _data()
    data["sites"][0]["start"] = "6 months"
    assert parse_scenario(data).sites[0].start == 182.625


def test_site_start_before_scenario_start() -> None:
    data = _data()
    data["sites"][0]["start"] = "2025-12-01"
    _at(_problems(data), "sites[0].start")


def test_default_scenario_is_the_stargate_pivot() -> None:
    scenario = load_scenario(default_scenario_path())
    assert scenario.name == "stargate-pivot"
    assert list(scenario.strategies) == ["build", "lease", "hybrid"]


def test_greenfield_campus_scenario() -> None:
    scenario = load_scenario(shipped_scenario("greenfield-campus"))
    assert scenario.name == "greenfield-campus"
    assert scenario.horizon == 12 * 365.25
    # 2028-01-01 is 730 days after 2026-01-01; 2028-07-01 is 182 more (leap year); 2029-01-01 is
    # 184 more.
    assert [s.start for s in scenario.sites] == [0.0, 730.0, 912.0, 1096.0]
    assert [s.priority for s in scenario.sites] == [0, 0, 1, 1]
    commissioning = scenario.pipelines["greenfield"].stages["commissioning"].duration
    assert commissioning.triangular == pytest.approx((30.4375, 60.875, 121.75))


@pytest.mark.parametrize("path", sorted(SCENARIO_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.sites


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = """\
name: merged
start: 2026-01-01
horizon: 10 years
resources:
  crews: {capacity: 1}
  other_crews: {capacity: 1}
pipelines:
  p:
    stages:
      permit: &permit
        duration: {pert: [1 month, 2 months, 6 months]}
      build: &build
        duration: 100
        after: [permit]
        needs: {crews: 1}
  q:
    stages:
      permit: *permit
      build:
        <<: *build
        needs: {other_crews: 1}
sites:
  - {name: s1, org: o, pipeline: p, mw: 100}
  - {name: s2, org: o, pipeline: q, mw: 100}
"""
    scenario = load_scenario(_write(tmp_path, text))
    p, q = scenario.pipelines["p"], scenario.pipelines["q"]
    assert q.stages["permit"] == p.stages["permit"]
    assert q.stages["build"].duration.mean == 100.0
    assert q.stages["build"].after == ["permit"]
    assert q.stages["build"].needs == {"other_crews": 1.0}
    assert p.stages["build"].needs == {"crews": 1.0}


# ---------------------------------------------------------------------------------------------
# Schema errors, with key paths


def test_unknown_top_level_key() -> None:
    data = _data()
    data["horizn"] = data.pop("horizon")
    problems = _problems(data)
    problem = _at(problems, "horizn")
    assert "did you mean 'horizon'" in problem.message
    assert problems == [problem]  # not also "missing required key 'horizon'": the same mistake


def test_a_misspelt_key_that_is_not_the_missing_one_is_two_problems() -> None:
    data = _data()
    data["nmae"] = data.pop("horizon")  # means name (which is there): horizon is missing
    problems = _problems(data)
    assert "did you mean 'name'" in _at(problems, "nmae").message
    assert "missing required key 'horizon'" in _at(problems, "(top level)").message
    assert len(problems) == 2


def test_unknown_nested_keys() -> None:
    data = _data()
    data["pipelines"]["p"]["stages"]["a"]["afer"] = []
    data["sites"][0]["prority"] = 1
    problems = _problems(data)
    assert "did you mean 'after'" in _at(problems, "pipelines.p.stages.a.afer").message
    assert "did you mean 'priority'" in _at(problems, "sites[0].prority").message
    assert len(problems) == 2


def test_missing_required_key() -> None:
    data = _data()
    del data["name"]
    problems = _problems(data)
    assert len(problems) == 1
    assert "missing required key 'name'" in problems[0].message


def test_missing_nested_key() -> None:
    data = _data()
    del data["sites"][0]["mw"]
    problems = _problems(data)
    assert len(problems) == 1
    assert "missing required key 'mw'" in problems[0].message
    assert problems[0].path.startswith("sites[0]")


def test_wrong_type() -> None:
    data = _data()
    data["sites"][0]["mw"] = "lots"
    problem = _at(_problems(data), "sites[0].mw")
    assert "'lots'" in problem.message


@pytest.mark.parametrize("mw", [0, -5])
def test_non_positive_mw(mw: float) -> None:
    data = _data()
    data["sites"][0]["mw"] = mw
    _at(_problems(data), "sites[0].mw")


def test_bad_distribution_in_stage() -> None:
    data = _data()
    data["pipelines"]["p"]["stages"]["a"]["duration"] = {"triangular": [60, 20, 10]}
    problems = _problems(data)
    assert len(problems) == 1
    problem = _at(problems, "pipelines.p.stages.a.duration.triangular")
    assert "60" in problem.message


def test_unknown_family_in_stage() -> None:
    data = _data()
    data["pipelines"]["p"]["stages"]["a"]["duration"] = {"gamma": [1, 2]}
    problem = _at(_problems(data), "pipelines.p.stages.a.duration")
    assert "gamma" in problem.message


def test_bad_duration_string() -> None:
    data = _data()
    data["horizon"] = "12 parsecs"
    problem = _at(_problems(data), "horizon")
    assert "parsecs" in problem.message


def test_bad_time_unit_reported_once() -> None:
    data = _data()
    data["time_unit"] = "fortnights"
    problems = _problems(data)
    assert [p.path for p in problems] == ["time_unit"]


def test_key_path() -> None:
    assert key_path(("sites", 2, "pipeline")) == "sites[2].pipeline"
    assert (
        key_path(("pipelines", "p", "stages", "a", "duration", "triangular", "triangular"))
        == "pipelines.p.stages.a.duration.triangular"
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [(None, "empty file"), ([1, 2], "list"), ("name: x", "str")],
    ids=["none", "list", "string"],
)
def test_top_level_not_a_mapping(data: Any, fragment: str) -> None:
    problems = _problems(data)
    assert len(problems) == 1
    assert fragment in problems[0].message


# ---------------------------------------------------------------------------------------------
# File and YAML errors


def test_malformed_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: tiny\nstart: 2026-01-01\nsites: [unclosed\nhorizon: 3\n")
    problems = _load_problems(path)
    assert len(problems) == 1
    assert "YAML" in problems[0].message
    assert "line" in problems[0].message
    assert any(f"line {n}" in problems[0].message for n in (3, 4, 5))


def test_bad_indentation(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: tiny\n  start: 2026-01-01\n")
    problems = _load_problems(path)
    assert "YAML" in problems[0].message
    assert "line 2" in problems[0].message


def test_duplicate_keys_rejected(tmp_path: Path) -> None:
    text = MINIMAL_YAML.replace("horizon: 2 years", "horizon: 2 years\nhorizon: 3 years")
    problems = _load_problems(_write(tmp_path, text))
    assert len(problems) == 1
    assert "duplicate key 'horizon'" in problems[0].message
    assert "line 4" in problems[0].message


def test_duplicate_nested_keys_rejected(tmp_path: Path) -> None:
    text = MINIMAL_YAML.replace("a: {duration: 10}", "a: {duration: 10}\n      a: {duration: 20}")
    problems = _load_problems(_write(tmp_path, text))
    assert "duplicate key 'a'" in problems[0].message


def test_missing_file(tmp_path: Path) -> None:
    problems = _load_problems(tmp_path / "nope.yaml")
    assert [p.message for p in problems] == ["file not found"]


def test_directory(tmp_path: Path) -> None:
    problems = _load_problems(tmp_path)
    assert "directory" in problems[0].message


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    problems = _load_problems(_write(tmp_path, text))
    assert len(problems) == 1
    assert "empty" in problems[0].message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    problems = _load_problems(path)
    assert len(problems) == 1


def test_error_lists_every_problem_with_source(tmp_path: Path) -> None:
    text = MINIMAL_YAML.replace("mw: 100", "mw: lots").replace("horizon:", "horizn:")
    text = text.replace("start:", "begin:")
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems) >= 3
    assert all(line.startswith(f"{path}: ") for line in lines)


# ---------------------------------------------------------------------------------------------
# Regressions: bugs found while writing these tests, now fixed


def test_unhashable_yaml_key(tmp_path: Path) -> None:
    problems = _load_problems(_write(tmp_path, "name: t\n? [a, b]\n: 1\n"))
    assert len(problems) == 1


def test_datetime_scenario_start_with_site_date(tmp_path: Path) -> None:
    text = MINIMAL_YAML.replace("start: 2026-01-01", "start: 2026-01-01T00:00:00").replace(
        "mw: 100}", "mw: 100, start: 2026-02-01}"
    )
    scenario = load_scenario(_write(tmp_path, text))
    assert scenario.sites[0].start == 31.0
