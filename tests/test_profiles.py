"""Monte Carlo profiles (capsim.profiles) on tiny scenarios whose answers are known by hand:
stage bands, capacity on the monthly grid, event shares; which replications are kept; the same
profiles whatever the workers or an interruption; and the stage table's ``critical`` column."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

import capsim.experiments
import capsim.profiles
import capsim.replications
from capsim.capacity import capacity_on_grid
from capsim.experiments import monte_carlo
from capsim.loader import parse_scenario
from capsim.model import Model, replication_rng
from capsim.profiles import (
    ProfileBatch,
    Profiles,
    Sample,
    capacity_bands,
    event_shares,
    hbm_by_buyer,
    stage_bands,
)
from capsim.results import stage_table
from capsim.tally import critical_chains

# Stage a (40 days), then b (20 days): the 10 MW site is online on day 60, 2026-03-02.
CHAIN = {
    "name": "chain",
    "start": "2026-01-01",
    "horizon": "2 years",
    "pipelines": {"p": {"stages": {"a": {"duration": 40}, "b": {"duration": 20, "after": ["a"]}}}},
    "sites": [{"name": "s", "org": "lab", "pipeline": "p", "mw": 10}],
    "milestones": [{"mw": 10}],
}


def scenario(**changes):
    """CHAIN with top-level keys replaced, and ``a`` / ``b`` as stage durations."""
    doc = copy.deepcopy(CHAIN)
    stages = doc["pipelines"]["p"]["stages"]
    for stage in ("a", "b"):
        if stage in changes:
            stages[stage]["duration"] = changes.pop(stage)
    doc.update(changes)
    return parse_scenario(doc)


def by_stage(bands: pd.DataFrame) -> pd.DataFrame:
    return bands.set_index("stage")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# -- stage bands ---------------------------------------------------------------------------------


def test_fixed_durations_give_p10_p50_p90_equal_to_the_exact_times_and_dates() -> None:
    s = scenario()
    result = monte_carlo(s, reps=7, seed=3)
    bands = by_stage(stage_bands(Model(s), result.profiles["stage_times"]))

    assert list(bands.index) == ["a", "b"]
    assert (bands["site"] == "s").all() and (bands["org"] == "lab").all()
    assert bands["finished"].tolist() == [1.0, 1.0]
    expected = {"a": (0.0, 40.0), "b": (40.0, 60.0)}
    dates = {"a": ("2026-01-01", "2026-02-10"), "b": ("2026-02-10", "2026-03-02")}
    for stage, (start, finish) in expected.items():
        for p in (10, 50, 90):
            assert bands.loc[stage, f"start P{p}"] == start
            assert bands.loc[stage, f"finish P{p}"] == finish
            assert bands.loc[stage, f"start P{p} date"] == ts(dates[stage][0])
            assert bands.loc[stage, f"finish P{p} date"] == ts(dates[stage][1])


def test_uniform_duration_p10_p50_p90_match_the_analytic_quantiles() -> None:
    # a ~ U(10, 20), b = 20 after it: b finishes ~ U(30, 40): P10 31, P50 35, P90 39.
    reps = 1000
    s = scenario(a={"uniform": [10, 20]})
    result = monte_carlo(s, reps=reps, seed=11)
    bands = by_stage(stage_bands(Model(s), result.profiles["stage_times"]))

    density = 1 / 10  # of U(30, 40)
    for p, analytic in ((10, 31.0), (50, 35.0), (90, 39.0)):
        q = p / 100
        se = math.sqrt(q * (1 - q) / reps) / density  # standard error of a sample quantile
        assert abs(bands.loc["b", f"finish P{p}"] - analytic) < 4 * se, p
        assert abs(bands.loc["a", f"finish P{p}"] - (analytic - 20)) < 4 * se, p
        # b starts exactly when a finishes, replication by replication
        assert bands.loc["b", f"start P{p}"] == pytest.approx(bands.loc["a", f"finish P{p}"])
    assert (bands.loc["a", ["start P10", "start P50", "start P90"]] == 0).all()


def test_a_pause_of_known_probability_moves_the_p90_start_and_not_the_p50() -> None:
    # b is paused 10 days in 30% of replications: its start is 40 (P10, P50) or 50 (P90).
    risks = {"hold": {"sites": ["s"], "stage": "b", "probability": 0.3, "effect": {"pause": 10}}}
    s = scenario(risks=risks)
    result = monte_carlo(s, reps=300, seed=5)
    bands = by_stage(stage_bands(Model(s), result.profiles["stage_times"]))

    assert [bands.loc["b", f"start P{p}"] for p in (10, 50, 90)] == [40.0, 40.0, 50.0]
    assert [bands.loc["b", f"finish P{p}"] for p in (10, 50, 90)] == [60.0, 60.0, 70.0]
    assert bands.loc["b", "start P90 date"] == ts("2026-02-20")


def test_a_stage_not_finished_in_more_than_10_percent_has_no_p90() -> None:
    # The site is cancelled at its start in 30% of replications: nothing of it ever finishes.
    risks = {"stop": {"sites": ["s"], "probability": 0.3, "effect": {"cancel": True}}}
    s = scenario(risks=risks)
    reps = 400
    result = monte_carlo(s, reps=reps, seed=2)
    bands = by_stage(stage_bands(Model(s), result.profiles["stage_times"]))
    cancelled = result.replications["n_cancelled"].gt(0).mean()

    assert bands.loc["b", "finished"] == pytest.approx(1 - cancelled)
    assert bands.loc["b", "finish P10"] == 60.0
    assert bands.loc["b", "finish P50"] == 60.0
    assert np.isnan(bands.loc["b", "finish P90"])
    assert pd.isna(bands.loc["b", "finish P90 date"])


# -- capacity ------------------------------------------------------------------------------------


def test_capacity_on_grid_is_zero_before_the_online_day_and_full_from_it() -> None:
    model = Model(scenario())
    run = model.run(model.draw(replication_rng(1, 0)))
    assert run.finish[model.active_tasks].max() == 60.0

    times = np.array([0.0, 30.0, 59.0, 59.999, 60.0, 60.5, 400.0])
    mw = capacity_on_grid(run, times)[:, 0]
    assert mw.tolist() == [0, 0, 0, 0, 10, 10, 10]  # a change counts at exactly its time
    assert capacity_on_grid(run, times).shape == (7, 3)


def test_capacity_bands_on_the_monthly_grid() -> None:
    s = scenario()
    model = Model(s)
    result = monte_carlo(s, reps=5, seed=1)
    fan = capacity_bands(model, result.profiles["capacity"])

    # every first day of a month after the start, to the horizon (2 years: 24 of them), plus the
    # start and the horizon themselves
    times = fan["time"].tolist()
    assert times == sorted(times)
    assert times[0] == 0.0 and times[-1] == pytest.approx(730.5)  # 2 years of 365.25 days
    months = fan.loc[fan["time"].isin(model.month_starts)]
    assert len(months) == 24
    assert months["date"].iloc[0] == ts("2026-02-01") and months["time"].iloc[0] == 31.0
    assert months["date"].iloc[-1] == ts("2028-01-01")
    assert set(times) - set(model.month_starts) <= {0.0, s.horizon}
    online = fan["time"] >= 60  # 2026-03-02: 0 MW on 2026-03-01, 10 MW from 2026-04-01
    assert fan.loc[fan["date"] == ts("2026-03-01"), "mw P50"].tolist() == [0.0]
    assert fan.loc[fan["date"] == ts("2026-04-01"), "mw P50"].tolist() == [10.0]
    for column in ("mw P10", "mw P50", "mw P90", "mw mean"):
        assert (fan.loc[~online, column] == 0).all(), column
        assert (fan.loc[online, column] == 10).all(), column
    assert (fan[["gpus P50", "pflops P50"]] == 0).all().all()  # no GPUs in this scenario


def test_capacity_fan_of_a_site_cancelled_in_30_percent() -> None:
    risks = {"stop": {"sites": ["s"], "probability": 0.3, "effect": {"cancel": True}}}
    s = scenario(risks=risks)
    result = monte_carlo(s, reps=400, seed=2)
    fan = capacity_bands(Model(s), result.profiles["capacity"]).set_index("date")
    kept = 1 - result.replications["n_cancelled"].gt(0).mean()

    late = fan.loc[ts("2027-01-01")]
    assert (late["mw P10"], late["mw P50"], late["mw P90"]) == (0.0, 10.0, 10.0)
    assert late["mw mean"] == pytest.approx(10 * kept)


# -- events and HBM ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effect", "kind", "median"),
    [({"cancel": True}, "cancelled", "2026-01-01"), ({"pause": 10}, "paused", "2026-02-10")],
)
def test_event_share_of_a_risk_of_probability_0_3(effect, kind, median) -> None:
    stage = {} if kind == "cancelled" else {"stage": "b"}  # at the site's start, or at b
    risks = {"r": {"sites": ["s"], "probability": 0.3, "effect": effect, **stage}}
    s = scenario(risks=risks)
    reps = 400
    result = monte_carlo(s, reps=reps, seed=9)
    shares = event_shares(Model(s), result.profiles["world"], reps)

    assert len(shares) == 1
    row = shares.iloc[0]
    assert (row["kind"], row["subject"], row["org"]) == (kind, "s", "lab")
    se = math.sqrt(0.3 * 0.7 / reps)
    assert abs(row["share"] - 0.3) < 3 * se
    assert row["median date"] == ts(median)
    # the share counts replications, as the replication table does
    counted = result.replications[f"n_{kind}"].gt(0).mean()
    assert row["share"] == pytest.approx(counted)


def test_no_events_and_no_hbm_market_give_empty_tables() -> None:
    s = scenario()
    result = monte_carlo(s, reps=3, seed=1)
    shares = event_shares(Model(s), result.profiles["world"], 3)
    assert shares.empty
    assert list(shares.columns) == ["kind", "subject", "org", "share", "median date"]
    assert hbm_by_buyer(Model(s), result.profiles["world"], 3).empty


# -- which replications, workers, resuming -------------------------------------------------------

RISKY = {"r": {"sites": ["s"], "probability": 0.5, "effect": {"pause": {"uniform": [1, 30]}}}}


def kept(profiles: dict[str, pd.DataFrame]) -> dict[str, list[int]]:
    return {name: sorted(set(frame["replication"])) for name, frame in profiles.items()}


@pytest.fixture
def small_profiles(monkeypatch):
    """Profiles for replications 0..4 only, in chunks of 4 replications."""
    monkeypatch.setattr(capsim.profiles, "PROFILE_REPS", 5)
    monkeypatch.setattr(capsim.replications, "PROFILE_REPS", 5)
    monkeypatch.setattr(capsim.experiments, "CHUNK_SIZE", 4)


@pytest.mark.parametrize("path", ["engine", "fast path"])
def test_profiles_hold_only_the_first_profile_reps_replications(small_profiles, path) -> None:
    # The fast path (pure precedence, no risk) takes chunks FAST_CHUNKS times larger.
    s = scenario(a={"uniform": [10, 20]}, **({"risks": RISKY} if path == "engine" else {}))
    result = monte_carlo(s, reps=13, seed=4)

    assert len(result.replications) == 13
    profiles = result.profiles
    assert kept({k: profiles[k] for k in ("stage_times", "capacity")}) == {
        "stage_times": [0, 1, 2, 3, 4],
        "capacity": [0, 1, 2, 3, 4],
    }
    assert len(profiles["stage_times"]) == 5 * 2  # replications x active stages
    points = len(capacity_bands(Model(s), profiles["capacity"]))
    assert len(profiles["capacity"]) == 5 * points  # replications x sampling times
    assert set(profiles["world"]["replication"]) <= {0, 1, 2, 3, 4}
    if path == "engine":
        paused = result.replications.loc[result.replications["n_paused"] > 0, "replication"]
        assert sorted(set(profiles["world"]["replication"])) == [i for i in paused if i < 5]
    # the stage times kept are those of the replications themselves
    b = profiles["stage_times"].query("task == 1").set_index("replication")["finish"]
    online = result.replications.set_index("replication")["online:s"]
    assert b.to_dict() == online.loc[:4].to_dict()


def test_fewer_replications_than_profile_reps_keep_them_all(small_profiles) -> None:
    result = monte_carlo(scenario(risks=RISKY), reps=3, seed=4)
    assert kept({"capacity": result.profiles["capacity"]}) == {"capacity": [0, 1, 2]}


def assert_same_profiles(left: dict, right: dict) -> None:
    assert sorted(left) == sorted(right) == ["capacity", "stage_times", "world"]
    for name in left:
        pd.testing.assert_frame_equal(
            left[name].reset_index(drop=True), right[name].reset_index(drop=True), obj=name
        )


def test_profiles_are_the_same_with_one_or_two_workers(small_profiles) -> None:
    s = scenario(a={"uniform": [10, 20]}, risks=RISKY)
    one = monte_carlo(s, reps=10, seed=8, workers=1)
    two = monte_carlo(s, reps=10, seed=8, workers=2)
    assert_same_profiles(one.profiles, two.profiles)
    assert len(one.profiles["world"]) > 0  # some pauses to compare


def test_profiles_are_the_same_when_the_run_resumes_from_chunks(small_profiles, tmp_path) -> None:
    s = scenario(a={"uniform": [10, 20]}, risks=RISKY)
    fresh = monte_carlo(s, reps=10, seed=8)

    out = tmp_path / "mc"
    first = monte_carlo(s, reps=6, seed=8, out=out)  # chunks 0-3 and 4-5
    assert kept({"capacity": first.profiles["capacity"]}) == {"capacity": [0, 1, 2, 3, 4]}
    resumed = monte_carlo(s, reps=10, seed=8, out=out)  # reuses 0-3, recomputes 4-7, adds 8-9
    assert_same_profiles(fresh.profiles, resumed.profiles)
    again = monte_carlo(s, reps=10, seed=8, out=out)  # every chunk read back from disk
    assert_same_profiles(fresh.profiles, again.profiles)
    stored = sorted(p.name for p in (out / "chunks").glob("*.profile-*.parquet"))
    assert stored == [  # chunk 8-9 lies past the sampled replications: nothing stored
        f"{start:09d}.profile-{name}.parquet"
        for start in (0, 4)
        for name in ("capacity", "stage_times", "world")
    ]


# -- the critical column -------------------------------------------------------------------------


def critical_stages(doc: dict) -> dict[str, bool]:
    model = Model(parse_scenario(doc))
    stages = stage_table(model.run(model.draw(replication_rng(1, 0))))
    return {f"{r.site}.{r.stage}": bool(r.critical) for r in stages.itertuples()}


def last_site_chain(doc: dict) -> list[str]:
    model = Model(parse_scenario(doc))
    _, last = critical_chains(model.run(model.draw(replication_rng(1, 0))))
    return sorted(
        f"{model.sites[model.tasks[t].site].spec.name}.{model.tasks[t].stage}" for t in last
    )


def branches(**overrides) -> dict:
    """Branch a1 (10) -> a2 (10) and branch b1 (5), joined by c (3)."""
    doc = {
        "name": "branches",
        "start": "2026-01-01",
        "horizon": "1 year",
        "pipelines": {
            "p": {
                "stages": {
                    "a1": {"duration": 10},
                    "a2": {"duration": 10, "after": ["a1"]},
                    "b1": {"duration": 5},
                    "c": {"duration": 3, "after": ["a2", "b1"]},
                }
            }
        },
        "sites": [{"name": "s", "org": "lab", "pipeline": "p", "mw": 10}],
    }
    doc.update(overrides)
    return doc


def test_only_the_longer_branch_is_critical() -> None:
    assert critical_stages(branches()) == {
        "s.a1": True,
        "s.a2": True,
        "s.b1": False,
        "s.c": True,
    }


def test_parallel_branches_without_a_join_mark_the_one_that_finishes_last() -> None:
    doc = branches()
    del doc["pipelines"]["p"]["stages"]["c"]
    assert critical_stages(doc) == {"s.a1": True, "s.a2": True, "s.b1": False}


def test_a_short_branch_that_waits_for_a_resource_becomes_critical() -> None:
    # b1 (5 days) needs the office, which site t (first in the file, so first to ask) holds for
    # 30 days: b1 finishes on day 35, after a2 (day 20), so b1 and c decided when s came online.
    doc = branches(resources={"office": {"capacity": 1}})
    stages = doc["pipelines"]["p"]["stages"]
    stages["b1"]["needs"] = {"office": 1}
    doc["pipelines"]["q"] = {"stages": {"x": {"duration": 30, "needs": {"office": 1}}}}
    doc["sites"].insert(0, {"name": "t", "org": "lab", "pipeline": "q", "mw": 5})
    assert critical_stages(doc) == {
        "s.a1": False,
        "s.a2": False,
        "s.b1": True,
        "s.c": True,
        "t.x": True,
    }
    # s (online day 38) came online after t (day 30): the last site's chain is s's
    assert last_site_chain(doc) == ["s.b1", "s.c"]


def test_a_cancelled_site_has_no_critical_stage() -> None:
    doc = branches(risks={"stop": {"sites": ["s"], "stage": "c", "effect": {"cancel": True}}})
    assert critical_stages(doc) == {"s.a1": False, "s.a2": False, "s.b1": False, "s.c": False}


# -- batches: what a chunk sends back, and a run's sample of them --------------------------------

# Two sites of two orgs, each paused half the time: world events whose strings differ by chunk.
PAUSED = {
    "sites": [{"name": "s1", "org": "lab", "pipeline": "p", "mw": 10},
              {"name": "s2", "org": "partner", "pipeline": "p", "mw": 10}],
    "risks": {"r": {"sites": ["s1", "s2"], "probability": 0.5,
                    "effect": {"pause": {"uniform": [1, 30]}}}},
}  # fmt: skip


def profiles_of(model: Model, reps) -> Profiles:
    profiles = Profiles(model)
    for i in reps:
        profiles.add(i, model.run(model.draw(replication_rng(2, i))))
    return profiles


def assert_same_frames(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert list(got) == list(want)
    for name, frame in want.items():
        pd.testing.assert_frame_equal(got[name], frame, check_exact=True)


def test_a_batch_read_back_from_its_tables_is_the_same_batch() -> None:
    batch = profiles_of(Model(scenario(**PAUSED)), range(6)).batch()
    assert len(batch.world[0]) > 0  # some pauses to code
    assert_same_frames(ProfileBatch.from_frames(batch.frames()).frames(), batch.frames())


def test_a_sample_puts_chunks_that_came_in_any_order_in_replication_order() -> None:
    model = Model(scenario(**PAUSED))
    sample = Sample(model, 9)
    for reps in ([6, 7, 8], [0, 1, 2], [3, 4, 5]):  # each chunk codes its strings its own way
        sample.add(profiles_of(model, reps).batch())
    assert_same_frames(sample.batch(9).frames(), profiles_of(model, range(9)).frames())
    # a run stopped early (--until-stable) keeps the replications before its stop
    assert_same_frames(sample.batch(6).frames(), profiles_of(model, range(6)).frames())
    # ... also inside a chunk
    assert_same_frames(sample.batch(7).frames(), profiles_of(model, range(7)).frames())


def test_a_sample_leaves_out_the_replications_it_was_not_given() -> None:
    model = Model(scenario(**PAUSED))
    sample = Sample(model, 6)
    sample.add(profiles_of(model, [0, 1, 3]).batch())  # 2 failed: no profile
    sample.add(profiles_of(model, [4, 5, 6, 7]).batch())  # 6 and 7 are beyond the sample
    frames = sample.batch(8).frames()
    assert kept({name: frames[name] for name in ("stage_times", "capacity")}) == {
        "stage_times": [0, 1, 3, 4, 5], "capacity": [0, 1, 3, 4, 5]}  # fmt: skip
    assert_same_frames(sample.batch(8).frames(), profiles_of(model, [0, 1, 3, 4, 5]).frames())
