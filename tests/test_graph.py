"""Stage graphs: the critical path method (by hand and on a published textbook example) and the
cross-reference checks of a scenario."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from capsim.errors import Problem, ScenarioError
from capsim.graph import critical_chain, critical_path_method, pipeline_graph, stage_order
from capsim.loader import parse_scenario
from capsim.schema import Pipeline


def _pipeline(stages: dict[str, tuple[float, list[str]]]) -> Pipeline:
    return Pipeline.model_validate(
        {
            "stages": {
                name: {"duration": {"fixed": d}, "after": after}
                for name, (d, after) in stages.items()
            }
        }
    )


# ---------------------------------------------------------------------------------------------
# (a) A diamond, by hand.
#
#          +--> a (5) --+
#   s (3) -+            +--> t (4)
#          +--> b (2) --+
#
# Forward pass:  s 0-3, a 3-8, b 3-5, t max(8, 5)=8 - 12.   Project length 12.
# Backward pass: t LF 12 LS 8; a LF 8 LS 3; b LF 8 LS 6; s LF min(3, 6)=3 LS 0.
# Float: s 0, a 0, b 3, t 0. Critical chain s-a-t.

DIAMOND_EXPECTED = {
    #       ES   EF   LS   LF  float
    "s": (0.0, 3.0, 0.0, 3.0, 0.0),
    "a": (3.0, 8.0, 3.0, 8.0, 0.0),
    "b": (3.0, 5.0, 6.0, 8.0, 3.0),
    "t": (8.0, 12.0, 8.0, 12.0, 0.0),
}


def test_diamond_by_hand() -> None:
    # written out of order on purpose: rows must still come in topological order
    p = _pipeline({"t": (4, ["a", "b"]), "b": (2, ["s"]), "a": (5, ["s"]), "s": (3, [])})
    graph = pipeline_graph(p)
    assert set(graph.edges) == {("s", "a"), ("s", "b"), ("a", "t"), ("b", "t")}
    rows = critical_path_method(graph)
    # topological, ties (b, a) broken by file order: b is written before a
    assert [r.stage for r in rows] == ["s", "b", "a", "t"]
    got = {
        r.stage: (r.early_start, r.early_finish, r.late_start, r.late_finish, r.total_float)
        for r in rows
    }
    assert got == DIAMOND_EXPECTED
    assert {r.stage: r.duration for r in rows} == {"s": 3, "a": 5, "b": 2, "t": 4}
    assert {r.stage for r in rows if r.critical} == {"s", "a", "t"}
    assert max(r.early_finish for r in rows) == 12.0
    assert critical_chain(graph, rows) == ["s", "a", "t"]


def test_diamond_with_explicit_durations() -> None:
    p = _pipeline({"s": (3, []), "a": (5, ["s"]), "b": (2, ["s"]), "t": (4, ["a", "b"])})
    graph = pipeline_graph(p)
    # make b the long branch: s 0-3, a 3-8, b 3-13, t 13-17; a has float 5
    durations = {"s": 3.0, "a": 5.0, "b": 10.0, "t": 4.0}
    for duration in (durations, durations.__getitem__):
        rows = {r.stage: r for r in critical_path_method(graph, duration)}
        assert rows["t"].early_finish == 17.0
        assert rows["a"].total_float == 5.0
        assert rows["a"].late_start == 8.0
        assert rows["b"].total_float == 0.0
        assert critical_chain(graph, list(rows.values())) == ["s", "b", "t"]


def test_duration_defaults_to_mean() -> None:
    p = Pipeline.model_validate(
        {
            "stages": {
                "x": {"duration": {"triangular": [10, 20, 60]}},  # mean 30
                "y": {"duration": {"uniform": [0, 10]}, "after": ["x"]},  # mean 5
            }
        }
    )
    rows = critical_path_method(pipeline_graph(p))
    assert [(r.stage, r.early_start, r.early_finish) for r in rows] == [
        ("x", 0.0, 30.0),
        ("y", 30.0, 35.0),
    ]


def test_parallel_independent_stages() -> None:
    # two unconnected stages: the shorter one has float equal to the difference
    rows = {
        r.stage: r
        for r in critical_path_method(pipeline_graph(_pipeline({"x": (7, []), "y": (3, [])})))
    }
    assert (rows["x"].total_float, rows["y"].total_float) == (0.0, 4.0)
    assert (rows["y"].late_start, rows["y"].late_finish) == (4.0, 7.0)


def test_stage_order_ties_by_file_order() -> None:
    p = _pipeline({"z": (1, []), "m": (1, []), "a": (1, ["z", "m"]), "b": (1, [])})
    # at each step the earliest-written stage whose predecessors are done: z, m, then a (written
    # before b) has become available
    assert stage_order(pipeline_graph(p)) == ["z", "m", "a", "b"]
    p = _pipeline({"z": (1, []), "a": (1, ["z", "m"]), "m": (1, []), "b": (1, [])})
    assert stage_order(pipeline_graph(p)) == ["z", "m", "a", "b"]
    p = _pipeline({"a": (1, ["m"]), "b": (1, []), "m": (1, [])})
    assert stage_order(pipeline_graph(p)) == ["b", "m", "a"]


# ---------------------------------------------------------------------------------------------
# (b) Hillier & Lieberman, Introduction to Operations Research, "Reliable Construction Co."
# Published answers: length 44 weeks; critical path A-B-C-E-F-J-L-N; slack D=G=H=M=4, I=2, K=1.

RELIABLE = {
    "A": (2, []),
    "B": (4, ["A"]),
    "C": (10, ["B"]),
    "D": (6, ["C"]),
    "E": (4, ["C"]),
    "F": (5, ["E"]),
    "G": (7, ["D"]),
    "H": (9, ["E", "G"]),
    "I": (7, ["C"]),
    "J": (8, ["F", "I"]),
    "K": (4, ["J"]),
    "L": (5, ["J"]),
    "M": (2, ["H"]),
    "N": (6, ["K", "L"]),
}
# Earliest/latest start as in the textbook's table (ES, LS).
RELIABLE_ES_LS = {
    "A": (0, 0), "B": (2, 2), "C": (6, 6), "D": (16, 20), "E": (16, 16), "F": (20, 20),
    "G": (22, 26), "H": (29, 33), "I": (16, 18), "J": (25, 25), "K": (33, 34), "L": (33, 33),
    "M": (38, 42), "N": (38, 38),
}  # fmt: skip


def test_reliable_construction() -> None:
    graph = pipeline_graph(_pipeline(RELIABLE))
    rows = critical_path_method(graph)
    by_stage = {r.stage: r for r in rows}
    assert max(r.early_finish for r in rows) == 44.0
    slack = {r.stage: r.total_float for r in rows}
    expected_slack = dict.fromkeys(RELIABLE, 0.0) | {"D": 4, "G": 4, "H": 4, "M": 4, "I": 2, "K": 1}
    assert slack == expected_slack
    assert {s: (r.early_start, r.late_start) for s, r in by_stage.items()} == RELIABLE_ES_LS
    for r in rows:
        assert r.early_finish == r.early_start + RELIABLE[r.stage][0]
        assert r.late_finish == r.late_start + RELIABLE[r.stage][0]
        assert r.total_float == r.late_finish - r.early_finish
    assert critical_chain(graph, rows) == list("ABCEFJLN")
    assert [r.stage for r in rows if r.critical] == list("ABCEFJLN")
    # every stage comes after its predecessors in the row order
    position = {r.stage: i for i, r in enumerate(rows)}
    for name, (_, after) in RELIABLE.items():
        assert all(position[p] < position[name] for p in after)


# ---------------------------------------------------------------------------------------------
# (c) check_scenario, through parse_scenario.


def _scenario() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "name": "t",
            "start": "2026-01-01",
            "horizon": 1000,
            "resources": {"crews": {"capacity": 2}, "permits": {"capacity": 1}},
            "pipelines": {
                "p": {
                    "stages": {
                        "permit": {"duration": 10, "needs": {"permits": 1}},
                        "build": {"duration": 20, "after": ["permit"], "needs": {"crews": 1}},
                    }
                },
                "q": {"stages": {"only": {"duration": 5}}},
            },
            "sites": [
                {"name": "s1", "org": "o", "pipeline": "p", "mw": 100},
                {"name": "s2", "org": "o", "pipeline": "q", "mw": 50},
            ],
        }
    )


def _problems(data: dict[str, Any]) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "test.yaml")
    assert info.value.source == "test.yaml"
    assert info.value.problems
    return info.value.problems


def _one(problems: list[Problem], path: str) -> Problem:
    matching = [p for p in problems if p.path == path]
    assert len(matching) == 1, problems
    return matching[0]


def test_base_scenario_is_valid() -> None:
    scenario = parse_scenario(_scenario())
    assert [s.name for s in scenario.sites] == ["s1", "s2"]


def test_cycle() -> None:
    data = _scenario()
    data["pipelines"]["q"]["stages"] = {
        "a": {"duration": 1, "after": ["b"]},
        "b": {"duration": 1, "after": ["a"]},
    }
    problem = _one(_problems(data), "pipelines.q.stages")
    assert "cycle" in problem.message
    assert "a -> b -> a" in problem.message


def test_longer_cycle_named_in_full() -> None:
    data = _scenario()
    data["pipelines"]["q"]["stages"] = {
        "a": {"duration": 1, "after": ["c"]},
        "b": {"duration": 1, "after": ["a"]},
        "c": {"duration": 1, "after": ["b"]},
        "d": {"duration": 1, "after": ["a"]},
    }
    problem = _one(_problems(data), "pipelines.q.stages")
    assert "a -> b -> c -> a" in problem.message


def test_unknown_after_with_suggestion() -> None:
    data = _scenario()
    data["pipelines"]["p"]["stages"]["build"]["after"] = ["permitt"]
    problem = _one(_problems(data), "pipelines.p.stages.build.after[0]")
    assert "'permitt'" in problem.message
    assert "did you mean 'permit'" in problem.message


def test_unknown_pipeline() -> None:
    data = _scenario()
    data["sites"][1]["pipeline"] = "qq"
    problems = _problems(data)
    problem = _one(problems, "sites[1].pipeline")
    assert "unknown pipeline 'qq'" in problem.message
    assert "did you mean 'q'" in problem.message
    assert "p, q" in problem.message  # lists what is known


def test_unknown_resource_in_needs() -> None:
    data = _scenario()
    data["pipelines"]["p"]["stages"]["build"]["needs"] = {"crew": 1}
    problem = _one(_problems(data), "pipelines.p.stages.build.needs.crew")
    assert "unknown resource 'crew'" in problem.message
    assert "did you mean 'crews'" in problem.message


def test_needs_above_capacity() -> None:
    data = _scenario()
    data["pipelines"]["p"]["stages"]["build"]["needs"] = {"crews": 3}
    problem = _one(_problems(data), "pipelines.p.stages.build.needs.crews")
    assert "capacity 2" in problem.message
    assert "never be granted" in problem.message


def test_needs_equal_to_capacity_is_fine() -> None:
    data = _scenario()
    data["pipelines"]["p"]["stages"]["build"]["needs"] = {"crews": 2}
    parse_scenario(data)


def test_override_needs_checked() -> None:
    data = _scenario()
    data["sites"][0]["overrides"] = {"build": {"needs": {"crews": 5}}}
    problem = _one(_problems(data), "sites[0].overrides.build.needs.crews")
    assert "never be granted" in problem.message


def test_duplicate_site_names() -> None:
    data = _scenario()
    data["sites"].append({"name": "s1", "org": "x", "pipeline": "q", "mw": 1})
    problem = _one(_problems(data), "sites[2].name")
    assert "duplicate site name 's1'" in problem.message
    assert "sites[0]" in problem.message


def test_override_of_unknown_stage() -> None:
    data = _scenario()
    data["sites"][0]["overrides"] = {"biuld": {"duration": 3}}
    problem = _one(_problems(data), "sites[0].overrides.biuld")
    assert "unknown stage 'biuld'" in problem.message
    assert "did you mean 'build'" in problem.message


def test_site_start_after_horizon() -> None:
    data = _scenario()
    data["sites"][1]["start"] = 1001
    problem = _one(_problems(data), "sites[1].start")
    assert "horizon" in problem.message


def test_site_start_at_horizon_is_fine() -> None:
    data = _scenario()
    data["sites"][1]["start"] = 1000
    assert parse_scenario(data).sites[1].start == 1000.0


def test_self_dependency() -> None:
    data = _scenario()
    data["pipelines"]["q"]["stages"]["only"]["after"] = ["only"]
    problems = _problems(data)
    problem = _one(problems, "pipelines.q.stages.only.after[0]")
    assert "itself" in problem.message
    assert len(problems) == 1  # not also reported as a cycle


def test_all_problems_reported_together() -> None:
    data = _scenario()
    data["pipelines"]["p"]["stages"]["build"]["after"] = ["permitt"]
    data["sites"][1]["pipeline"] = "nope"
    data["sites"].append({"name": "s1", "org": "x", "pipeline": "q", "mw": 1})
    paths = {p.path for p in _problems(data)}
    assert paths == {"pipelines.p.stages.build.after[0]", "sites[1].pipeline", "sites[2].name"}
