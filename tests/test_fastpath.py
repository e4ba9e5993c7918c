"""The vectorised critical path gives exactly what the discrete-event engine gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import without_resources
from scipy import stats

from capsim import fastpath
from capsim.experiments import monte_carlo
from capsim.loader import parse_scenario, parse_yaml, shipped_scenario
from capsim.model import Model
from capsim.profiles import Profiles
from capsim.replications import StageTally, replication_row


@pytest.mark.parametrize("name", ["portfolio", "greenfield-campus"])
def test_rows_and_tallies_equal_the_engine(name: str) -> None:
    model = Model(parse_scenario(without_resources(name)))
    assert fastpath.eligible(model)
    rows, sums = fastpath.simulate_chunk(model, 3, 100, 300)
    tally = StageTally(model)
    engine = pd.DataFrame([replication_row(model, 3, i, tally) for i in range(100, 300)])
    pd.testing.assert_frame_equal(rows.frame(), engine)
    np.testing.assert_allclose(sums, tally.sums, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("org", ["lab", "microsoft"])
def test_another_perspective_and_a_rollout_equal_the_engine(org: str) -> None:
    """One org's capacity alone, its sites started in an order with a gap (the ordering search)."""
    scenario = parse_scenario(without_resources("portfolio"))
    mine = [s.name for s in scenario.sites if s.org == org][::-1]
    model = Model(scenario, rollout=mine, gap=90.0, perspective=org)
    assert fastpath.eligible(model)
    profiles, theirs = Profiles(model), Profiles(model)
    rows, _ = fastpath.simulate_chunk(model, 3, 990, 1010, profiles)
    engine = pd.DataFrame(
        [replication_row(model, 3, i, None, None, theirs) for i in range(990, 1010)]
    )
    pd.testing.assert_frame_equal(rows.frame(), engine)
    mw = sum(s.mw for s in scenario.sites if s.org == org)
    levels = profiles.frames()["capacity"]
    assert levels["mw"].max() == pytest.approx(mw)  # its own sites' MW, no one else's
    pd.testing.assert_frame_equal(levels, theirs.frames()["capacity"], check_exact=True)


@pytest.mark.parametrize("horizon", [None, "6 years"])  # 6 years: some sites not online
def test_profiles_equal_the_engines(horizon) -> None:
    doc = without_resources("greenfield-campus")
    if horizon:
        doc["horizon"] = horizon
    model = Model(parse_scenario(doc))
    mine, theirs = Profiles(model), Profiles(model)
    fastpath.simulate_chunk(model, 3, 995, 1010, mine)  # profiles below PROFILE_REPS only
    for i in range(995, 1000):
        replication_row(model, 3, i, None, None, theirs)
    frames, engine = mine.frames(), theirs.frames()
    assert sorted(set(frames["capacity"]["replication"])) == [995, 996, 997, 998, 999]
    for name in ("stage_times", "capacity", "world"):
        pd.testing.assert_frame_equal(frames[name], engine[name], check_exact=True)


def test_distribution_matches_by_kolmogorov_smirnov() -> None:
    """Also as distributions: the engine's and the fast path's completion times over different
    replications are indistinguishable (KS test well within sampling error)."""
    model = Model(parse_scenario(without_resources("portfolio")))
    fast, _ = fastpath.simulate_chunk(model, 11, 0, 400)
    engine = pd.DataFrame([replication_row(model, 12, i) for i in range(400)])
    result = stats.ks_2samp(fast.frame()["t_all_online"], engine["t_all_online"])
    assert result.pvalue > 0.001


def test_horizon_cuts_the_schedule_like_the_engine() -> None:
    doc = without_resources("greenfield-campus")
    doc["horizon"] = "6 years"  # some sites are not online by then
    model = Model(parse_scenario(doc))
    rows = fastpath.simulate_chunk(model, 1, 0, 100)[0].frame()
    engine = pd.DataFrame([replication_row(model, 1, i) for i in range(100)])
    pd.testing.assert_frame_equal(rows, engine)
    assert rows["t_all_online"].isna().any() and (~rows["finished"]).any()


def test_scenarios_with_shared_resources_use_the_engine() -> None:
    assert not fastpath.eligible(Model(parse_scenario(without_resources("portfolio") | {
        "resources": {"crew": {"capacity": 1}},
        "pipelines": {"p": {"stages": {"a": {"duration": 1, "needs": {"crew": 1}}}}},
        "sites": [{"name": "s", "org": "o", "pipeline": "p", "mw": 1}],
    })))  # fmt: skip
    stargate = parse_yaml(shipped_scenario("stargate-pivot").read_text())
    assert not fastpath.eligible(Model(parse_scenario(stargate), "build"))


def test_monte_carlo_uses_it_transparently() -> None:
    scenario = parse_scenario(without_resources("portfolio"))
    result = monte_carlo(scenario, reps=150, seed=5)
    model = Model(scenario)
    engine = pd.DataFrame([replication_row(model, 5, i) for i in range(150)])
    pd.testing.assert_frame_equal(result.replications, engine)


def test_fleets_count_towards_milestones_so_the_engine_is_used() -> None:
    doc = without_resources("greenfield-campus")
    doc["orgs"] = {"lab": {"fleet": {"H100": 1000}}}
    doc["generations"] = {
        "H100": {"hbm_gb": 80, "gpu_kw": 0.7, "pflops": 2, "available": {1: "2023-01-01"}}
    }
    assert not fastpath.eligible(Model(parse_scenario(doc)))


def test_sensitivity_leaves_out_slots_the_engine_does_not_use() -> None:
    stargate = parse_scenario(parse_yaml(shipped_scenario("stargate-pivot").read_text()))
    result = monte_carlo(stargate, reps=30, seed=1, strategy="build")
    labels = set(result.sensitivity().index)
    assert "us-campus/construction: duration" in labels
    assert not any(label.endswith("/gpus: duration") for label in labels)


def test_a_strategy_without_sites_gives_the_engines_rows() -> None:
    """No active site: no capacity, and every site online (vacuously) is not a date: NaN."""
    scenario = parse_scenario({
        "name": "none", "start": "2026-01-01", "horizon": "10 years",
        "pipelines": {"p": {"stages": {"a": {"duration": 10}}}},
        "sites": [{"name": "s0", "org": "lab", "pipeline": "p", "mw": 10}],
        "strategies": {"with": {"sites": ["s0"]}, "without": {"sites": []}},
    })  # fmt: skip
    model = Model(scenario, "without")
    assert fastpath.eligible(model) and not any(info.active for info in model.sites)
    rows = fastpath.simulate_chunk(model, 1, 0, 5)[0].frame()
    engine = pd.DataFrame([replication_row(model, 1, i) for i in range(5)])
    pd.testing.assert_frame_equal(rows, engine, check_exact=True)
    assert rows["t_all_online"].isna().all()
