"""The lean discrete-event path gives exactly what the engine gives: rows, stage tallies and
profiles, replication by replication, on the benchmark workload and on random small scenarios
built to make simultaneous events, queues, HBM waits and horizon cuts likely."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capsim import fastpath, leanpath
from capsim.errors import CapsimError
from capsim.experiments import monte_carlo
from capsim.loader import parse_scenario, parse_yaml, shipped_scenario
from capsim.model import Model, replication_rng
from capsim.profiles import Profiles
from capsim.replications import StageTally, replication_row, run_chunk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from workload import scenario_dict


def _assert_same(model: Model, seed: int, start: int, stop: int) -> pd.DataFrame:
    """The lean path's rows, tallies and profiles equal the engine's, exactly."""
    assert leanpath.eligible(model)
    profiles = Profiles(model)
    blocks, sums = leanpath.simulate_chunk(model, seed, start, stop, profiles)
    rows = blocks.frame()
    tally, engine_profiles = StageTally(model), Profiles(model)
    engine = pd.DataFrame(
        [replication_row(model, seed, i, tally, None, engine_profiles) for i in range(start, stop)]
    )
    pd.testing.assert_frame_equal(rows, engine, check_exact=True)
    np.testing.assert_array_equal(sums, tally.sums)
    mine, theirs = profiles.frames(), engine_profiles.frames()
    for name in theirs:
        pd.testing.assert_frame_equal(mine[name], theirs[name], check_exact=True)
    return rows


@pytest.mark.parametrize(("sites", "reps"), [(3, 200), (20, 150), (50, 150), (300, 6)])
def test_benchmark_workload_equals_the_engine(sites: int, reps: int) -> None:
    model = Model(parse_scenario(scenario_dict(sites)))
    rows = _assert_same(model, 7, 0, reps)
    assert rows["finished"].all()


def test_a_horizon_that_cuts_the_benchmark_equals_the_engine() -> None:
    model = Model(parse_scenario(scenario_dict(50, horizon_days=900)))
    rows = _assert_same(model, 2, 1990, 2030)  # across PROFILE_REPS
    assert not rows["finished"].any() and rows["t_50MW"].isna().all()


def test_no_capacity_by_the_horizon_equals_the_engine() -> None:
    model = Model(parse_scenario(scenario_dict(10, horizon_days=100)))  # nothing built by then
    rows = _assert_same(model, 2, 0, 20)
    assert rows["t_10MW"].isna().all()


def test_simulate_schedules_the_engines_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same events, and the same stage times, as the engine's SimPy events."""
    model = Model(parse_scenario(scenario_dict(20)))
    values = model.draw(replication_rng(1, 0))
    scheduled = []
    schedule = simpy.Environment.schedule
    monkeypatch.setattr(
        simpy.Environment,
        "schedule",
        lambda env, *a, **k: scheduled.append(1) or schedule(env, *a, **k),
    )
    engine = model.run(values)
    run = leanpath.simulate(model, values)
    np.testing.assert_array_equal(np.array(run.finish), engine.finish)
    assert run.events == len(scheduled)


@pytest.mark.parametrize("name", ["portfolio", "greenfield-campus"])
def test_shipped_scenarios_it_handles_equal_the_engine(name: str) -> None:
    model = Model(parse_scenario(parse_yaml(shipped_scenario(name).read_text())))
    if leanpath.eligible(model):
        _assert_same(model, 3, 0, 40)


@pytest.mark.parametrize("org", ["lab", "coreweave", "nscale"])
def test_another_perspective_and_a_rollout_equal_the_engine(org: str) -> None:
    """The capacity of one org (its sites and fleet only), its sites started in an order with a
    gap: what the ordering search measures."""
    scenario = parse_scenario(parse_yaml(shipped_scenario("portfolio").read_text()))
    mine = [s.name for s in scenario.sites if s.org == org][::-1]
    model = Model(scenario, rollout=mine, gap=60.0, perspective=org)
    rows = _assert_same(model, 5, 990, 1010)
    reached = rows.filter(like="t_").notna().to_numpy()
    everyone = _assert_same(Model(scenario, rollout=mine, gap=60.0), 5, 990, 1010)
    assert (reached <= everyone.filter(like="t_").notna().to_numpy()).all()  # no one else's MW


def test_an_unknown_perspective_is_an_error() -> None:
    scenario = parse_scenario(parse_yaml(shipped_scenario("portfolio").read_text()))
    with pytest.raises(CapsimError, match="unknown org 'labb'; did you mean 'lab'"):
        Model(scenario, perspective="labb")


def test_run_chunk_and_monte_carlo_use_it() -> None:
    scenario = parse_scenario(scenario_dict(10))
    model = Model(scenario)
    assert leanpath.eligible(model) and not fastpath.eligible(model)
    result = monte_carlo(scenario, reps=120, seed=4)
    engine = pd.DataFrame([replication_row(model, 4, i) for i in range(120)])
    pd.testing.assert_frame_equal(result.replications, engine, check_exact=True)
    chunk = run_chunk(scenario, None, 4, 0, 50, save_events=True)  # logs: the engine
    assert chunk.world_log is not None and len(chunk.world_log)


def test_a_failure_falls_back_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = parse_scenario(scenario_dict(5))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("lean path broken")

    monkeypatch.setattr(leanpath, "simulate_chunk", broken)
    model = Model(scenario)
    rows = run_chunk(scenario, None, 1, 0, 20).rows.frame()
    pd.testing.assert_frame_equal(
        rows, pd.DataFrame([replication_row(model, 1, i) for i in range(20)])
    )


def test_what_it_does_not_handle_goes_to_the_engine() -> None:
    stargate = parse_scenario(parse_yaml(shipped_scenario("stargate-pivot").read_text()))
    assert not leanpath.eligible(Model(stargate, "build"))  # risks, leases, permits, a lab
    doc = scenario_dict(5)
    doc["hbm"]["suppliers"]["supplier"]["reserved"] = {"c0": 0.5}
    assert not leanpath.eligible(Model(parse_scenario(doc)))
    doc = scenario_dict(5)
    doc["orgs"]["c0"]["kind"] = "lab"  # a perspective org: costs in every row
    assert not leanpath.eligible(Model(parse_scenario(doc)))
    doc = scenario_dict(5)
    doc["risks"] = {"r": {"probability": 0.5, "sites": ["site00001"], "stage": "grid",
                          "effect": {"delay": 30}}}  # fmt: skip
    assert not leanpath.eligible(Model(parse_scenario(doc)))


# -- random small scenarios ------------------------------------------------------------------------


def _duration(draw: st.DrawFn) -> object:
    """Often a whole number of days (so that events coincide), sometimes a distribution."""
    if draw(st.booleans()):
        return draw(st.sampled_from([0, 5, 10, 20, 30]))
    low = draw(st.sampled_from([1, 10, 25]))
    return {"uniform": [low, low + draw(st.sampled_from([5, 30, 60]))]}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict, str | None]:
    pools = {
        "crew": {"capacity": draw(st.sampled_from([1, 2, 1.5]))},
        "yard": {"capacity": draw(st.sampled_from([1, 3]))},
    }

    def needs() -> dict:
        chosen = draw(st.lists(st.sampled_from(sorted(pools)), max_size=2, unique=True))
        return {name: draw(st.sampled_from([0.5, 1])) for name in chosen}

    gpus_stage = draw(st.booleans())
    stages: dict = {
        "a": {"duration": _duration(draw), "needs": needs()},
        "b": {"kind": "construction", "phases": draw(st.integers(1, 3)),
              "duration": _duration(draw), "after": ["a"], "needs": needs()},
        "c": {"duration": _duration(draw), "after": draw(st.sampled_from([["a"], ["b"], []])),
              "needs": needs()},
    }  # fmt: skip
    if gpus_stage:
        # after construction, or alongside it: then delivered GPUs wait for its powered MW
        stages["g"] = {
            "kind": "gpus",
            "duration": _duration(draw),
            "after": draw(st.sampled_from([["b"], ["a"], []])),
            "needs": needs(),
        }
        stages["d"] = {"duration": _duration(draw), "after": ["g", "c"]}
    n = draw(st.integers(1, 6))
    later = draw(st.booleans())
    sites = []
    for i in range(n):
        site: dict = {
            "name": f"s{i}",
            "org": f"o{draw(st.integers(0, 2))}",
            "pipeline": "p",
            "mw": draw(st.sampled_from([1, 2.5, 10])),
            "priority": draw(st.integers(0, 2)),
        }
        if later:
            site["start"] = f"{draw(st.integers(0, 60))} days"
        if gpus_stage:
            gen = draw(st.sampled_from(["old", "new", "newest"]))
            count = draw(st.sampled_from([None, 100, 300])) if gen != "newest" else 200
            site["gpus"] = {"generation": gen, "tranches": draw(st.integers(1, 3))}
            if count is not None:
                site["gpus"]["count"] = count
        sites.append(site)
    doc: dict = {
        "name": "random",
        "start": "2026-01-01",
        "horizon": f"{draw(st.sampled_from([150, 400, 3000]))} days",
        "resources": pools,
        "pipelines": {"p": {"stages": stages}},
        "orgs": {f"o{k}": {"tier": draw(st.integers(1, 3))} for k in range(3)},
        "sites": sites,
        "milestones": [{"mw": 2}, {"gpus": 150}, {"pflops": 500}],
    }
    if gpus_stage:
        doc["generations"] = {
            "old": {"hbm_gb": 1, "gpu_kw": 0.7, "pflops": 1, "available": {1: "2020-01-01"}},
            "new": {"hbm_gb": 2, "gpu_kw": 1.0, "pflops": 3,
                    "available": {1: f"{(t := draw(st.integers(0, 200)))} days",
                                  3: f"{t + draw(st.integers(0, 200))} days"}},
        }  # fmt: skip
        if draw(st.booleans()):
            doc["hbm"] = {
                "period": "30 days",
                "suppliers": {"x": {"output": [
                    {"from": "2026-01-01", "gb_per_period": draw(st.sampled_from([100, 300]))},
                    {"from": "2026-06-01", "gb_per_period": draw(st.sampled_from([150.5, 600]))},
                ]}},
            }  # fmt: skip
    if draw(st.booleans()):
        doc["orgs"]["o0"]["fleet"] = {"old": 100} if gpus_stage else {}
    strategy = None
    if n > 1 and draw(st.booleans()):
        doc["strategies"] = {"some": {"sites": ["s0"]}, "other": {"sites": ["s1"]}}
        strategy = "some"
    return doc, strategy


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 2**31))
def test_random_scenarios_equal_the_engine(case: tuple[dict, str | None], seed: int) -> None:
    doc, strategy = case
    model = Model(parse_scenario(doc), strategy)
    _assert_same(model, seed, 0, 6)
