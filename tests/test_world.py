"""The compute-supply world, mechanism by mechanism: grid regions, HBM, GPU generations, phased
construction, permits, risks, offtake agreements (leases), strategies; invariants over random
replications; bad input.

Every deterministic case uses fixed durations and probabilities 0 or 1, ``time_unit: days`` and a
start of 2026-01-01, so the expected times are worked out by hand in the comments. Useful dates:

    2026-01-01 = 0    2026-03-01 = 59    2026-03-02 = 60    2026-04-01 = 90
    2026-07-01 = 181  2026-09-01 = 243   2027-01-01 = 365   2028-01-01 = 730
    2029-01-01 = 1096 (2028 is a leap year)
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from typing import Any

import pandas as pd
import pytest

from capsim.capacity import capacity_table
from capsim.errors import CapsimError, ScenarioError
from capsim.loader import parse_scenario
from capsim.model import Model, Run, replication_rng
from capsim.results import events_table, site_table, stage_table
from capsim.schema import Scenario

START = "2026-01-01"

#: One generation with round numbers: 100 GB of HBM and 2.5 kW of facility power per GPU, so
#: 400 GPUs need 1 MW and 10 GPUs need 1,000 GB.
G1 = {
    "hbm_gb": 100,
    "gpu_kw": 1,
    "facility_kw": 2.5,
    "pflops": 1,
    "available": {1: START},
}


def _world(horizon: float = 2000, **parts: Any) -> Scenario:
    """A scenario in days from 2026-01-01 with the given parts (validated like a file)."""
    data: dict[str, Any] = {
        "name": "world",
        "start": START,
        "time_unit": "days",
        "horizon": horizon,
    }
    data.update(copy.deepcopy(parts))
    return parse_scenario(data)


def _run(scenario: Scenario, strategy: str | None = None) -> Run:
    """One replication; with fixed durations and probabilities 0/1 the draws do not matter."""
    model = Model(scenario, strategy)
    return model.run(model.draw(replication_rng(0)))


def _events(run: Run, kind: str, subject: str | None = None) -> pd.DataFrame:
    events = events_table(run)
    events = events[events["kind"] == kind]
    if subject is not None:
        events = events[events["subject"] == subject]
    return events


def _times(run: Run, kind: str, subject: str | None = None) -> list[float]:
    return _events(run, kind, subject)["time"].tolist()


def _stage(run: Run, site: str, stage: str) -> tuple[float, float, float]:
    """(ready, start, finish) of one site's stage, from the stage table."""
    table = stage_table(run)
    row = table[(table["site"] == site) & (table["stage"] == stage)].iloc[0]
    return (float(row["ready"]), float(row["start"]), float(row["finish"]))


def _capacity(run: Run, org: str, column: str) -> list[tuple[float, float]]:
    """The org's capacity_table rows as (time, value) pairs."""
    table = capacity_table(run)
    rows = table[table["org"] == org]
    return [(float(t), float(v)) for t, v in zip(rows["time"], rows[column], strict=True)]


def _gpu_site(
    name: str, org: str = "lab", mw: float = 10, pipeline: str = "p", **gpus: Any
) -> dict[str, Any]:
    return {"name": name, "org": org, "pipeline": pipeline, "mw": mw, "gpus": gpus}


def _hbm_produced(scenario: Scenario, t: float) -> float:
    """GB every supplier has delivered by time t: one delivery at the end of each period, at the
    output level of the period's start."""
    hbm = scenario.hbm
    assert hbm is not None
    total, k = 0.0, 1
    while k * hbm.period <= t + 1e-9:
        begin = (k - 1) * hbm.period
        for supplier in hbm.suppliers.values():
            level = 0.0
            for step in supplier.output:
                if step.from_ <= begin:
                    level = step.gb_per_period
            total += level
        k += 1
    return total


def _assert_hbm_within_production(run: Run) -> None:
    """At every allocation time, GB allocated so far <= GB produced so far."""
    allocated = _events(run, "hbm_allocated").groupby("time")["amount"].sum().cumsum()
    for t, gb in allocated.items():
        assert gb <= _hbm_produced(run.model.scenario, float(t)) + 1e-6, (t, gb)


# =============================================================================================
# 1. Grid regions: yearly MW budget, queue ahead, concurrent studies, build after the grant

GRID_ONLY = {"p": {"stages": {"grid": {"kind": "grid"}}}}


def _grid_sites(n: int = 3, mw: float = 200) -> list[dict[str, Any]]:
    return [
        {"name": name, "org": "lab", "pipeline": "p", "mw": mw, "region": "r"}
        for name in "abcd"[:n]
    ]


def test_grid_budget_per_calendar_year_carries_over() -> None:
    # 300 MW a year, study 0, build 0; three 200 MW sites request at t=0.
    #   t=0    budget 300: a granted (100 left); b does not fit and heads the queue
    #   t=365  (2027-01-01) +300 -> 400: b granted (200 left), c granted (0 left) -- only
    #          possible because 2026's unused 100 MW carried over
    run = _run(
        _world(grid_regions={"r": {"mw_per_year": 300}}, pipelines=GRID_ONLY, sites=_grid_sites())
    )
    granted = _events(run, "grid_granted")
    assert granted[["time", "subject", "amount"]].values.tolist() == [
        [0.0, "a", 200.0],
        [365.0, "b", 200.0],
        [365.0, "c", 200.0],
    ]
    assert [str(d.date()) for d in granted["date"]] == ["2026-01-01", "2027-01-01", "2027-01-01"]
    assert [_stage(run, s, "grid")[2] for s in "abc"] == [0.0, 365.0, 365.0]
    # a site with no construction stage comes online when its pipeline finishes
    assert _times(run, "mw_online") == [0.0, 365.0, 365.0]


def test_grid_queue_ahead_delays_everyone() -> None:
    # 300 MW a year with 500 MW of older requests ahead of every new one.
    #   t=0    300 available; the 500 MW ahead does not fit; a (200) waits behind it
    #   t=365  600: the 500 ahead is granted, 100 left; a does not fit
    #   t=730  (2028-01-01) 400: a and b granted (0 left)
    #   t=1096 (2029-01-01) 300: c granted
    region = {"mw_per_year": 300, "queue_ahead_mw": 500}
    run = _run(_world(grid_regions={"r": region}, pipelines=GRID_ONLY, sites=_grid_sites()))
    assert _events(run, "grid_granted")[["time", "subject"]].values.tolist() == [
        [730.0, "a"],
        [730.0, "b"],
        [1096.0, "c"],
    ]


def test_grid_studies_at_once_limits_concurrent_studies() -> None:
    # One study at a time, 100 days each, no MW budget: studies run 0-100, 100-200, 200-300.
    region = {"study": 100, "studies_at_once": 1}
    run = _run(_world(grid_regions={"r": region}, pipelines=GRID_ONLY, sites=_grid_sites()))
    assert _events(run, "grid_granted")[["time", "subject"]].values.tolist() == [
        [100.0, "a"],
        [200.0, "b"],
        [300.0, "c"],
    ]
    assert [_stage(run, s, "grid")[2] for s in "abc"] == [100.0, 200.0, 300.0]


def test_grid_build_follows_the_grant() -> None:
    # One study at a time (20 days), 300 MW a year, then 50 days of lines and substations.
    #   a: study 0-20, granted 20 (100 MW left), built 20+50 = 70
    #   b: study 20-40, 200 > 100 MW left: waits to 2027-01-01 (365), built 365+50 = 415
    region = {"study": 20, "studies_at_once": 1, "mw_per_year": 300, "build": 50}
    run = _run(_world(grid_regions={"r": region}, pipelines=GRID_ONLY, sites=_grid_sites(2)))
    assert _times(run, "grid_granted") == [20.0, 365.0]
    assert _stage(run, "a", "grid") == (0.0, 0.0, 70.0)
    assert _stage(run, "b", "grid")[2] == 415.0
    assert _times(run, "powered") == [70.0, 415.0]
    assert _times(run, "mw_online") == [70.0, 415.0]


def test_cancelled_site_leaves_the_grid_queue() -> None:
    # 300 MW a year. a (200) is granted at 0, 100 MW left. b (200) waits for 2027's budget, but its
    # permit (10 days, refused, no appeal) cancels it at t=10. c (100) asks at t=20: the 100 MW
    # left fit, so it should be granted at 20 -- not at 365 behind b's dead request.
    run = _run(
        _world(
            grid_regions={"r": {"mw_per_year": 300}},
            jurisdictions={"j": {"review": 10, "refusal": 1}},
            pipelines={
                "p": GRID_ONLY["p"],
                "q": {"stages": {"grid": {"kind": "grid"}, "permit": {"kind": "permit"}}},
            },
            sites=[
                {"name": "a", "org": "lab", "pipeline": "p", "mw": 200, "region": "r"},
                {
                    "name": "b",
                    "org": "lab",
                    "pipeline": "q",
                    "mw": 200,
                    "region": "r",
                    "jurisdiction": "j",
                },
                {"name": "c", "org": "lab", "pipeline": "p", "mw": 100, "region": "r", "start": 20},
            ],
        )
    )
    assert _times(run, "cancelled", "b") == [10.0]
    assert _times(run, "grid_granted", "c") == [20.0]


# =============================================================================================
# 2. HBM: deliveries at the end of each period, reserved shares, tier then order time

BUILD_AND_GPUS = {
    "p": {
        "stages": {
            "build": {"kind": "construction", "duration": 1},
            "gpus": {"kind": "gpus", "duration": 0},
        }
    }
}


def _hbm(output: list[dict[str, Any]], reserved: dict[str, float] | None = None) -> dict:
    supplier: dict[str, Any] = {"output": output}
    if reserved:
        supplier["reserved"] = reserved
    return {"period": 30, "suppliers": {"sk": supplier}}


def test_hbm_allocated_at_first_delivery_that_covers_the_order() -> None:
    # 600 GB at the end of every 30 days. Site a: 20 GPUs in 2 tranches of 10 = 1,000 GB each,
    # both ordered at t=0; delivery 10 days after the HBM; construction (1 phase) ends at 100.
    #   t=30  pool 600 < 1000
    #   t=60  1200: tranche 1 allocated (200 left);  delivered 60+10 = 70
    #   t=90  800 < 1000
    #   t=120 1400: tranche 2 allocated;             delivered 120+10 = 130
    # Power: 10 MW online at 100 -> tranche 1 online at max(70, 100) = 100, tranche 2 at
    # max(130, 100) = 130; the gpus stage finishes with its last tranche.
    scenario = _world(
        horizon=400,
        generations={"g1": G1},
        hbm=_hbm([{"from": 0, "gb_per_period": 600}]),
        pipelines={
            "p": {
                "stages": {
                    "build": {"kind": "construction", "duration": 100},
                    "gpus": {"kind": "gpus", "duration": 10},
                }
            }
        },
        sites=[_gpu_site("a", generation="g1", count=20, tranches=2)],
    )
    run = _run(scenario)
    assert _times(run, "gpus_ordered") == [0.0, 0.0]
    assert _events(run, "hbm_allocated")[["time", "amount"]].values.tolist() == [
        [60.0, 1000.0],
        [120.0, 1000.0],
    ]
    assert _times(run, "mw_online") == [100.0]
    assert _events(run, "gpus_online")[["time", "amount"]].values.tolist() == [
        [100.0, 10.0],
        [130.0, 10.0],
    ]
    assert _stage(run, "a", "gpus") == (0.0, 0.0, 130.0)
    _assert_hbm_within_production(run)


def test_hbm_output_level_follows_the_period_start() -> None:
    # 500 GB a period, 2,000 from 2026-03-02 (day 60). One order of 24 GPUs = 2,400 GB at t=0.
    #   t=30  period 0-30 at 500:   500
    #   t=60  period 30-60 at 500:  1000
    #   t=90  period 60-90 at 2000: 3000 >= 2400 -> allocated at 90
    scenario = _world(
        horizon=400,
        generations={"g1": G1},
        hbm=_hbm(
            [{"from": 0, "gb_per_period": 500}, {"from": "2026-03-02", "gb_per_period": 2000}]
        ),
        pipelines=BUILD_AND_GPUS,
        sites=[_gpu_site("a", generation="g1", count=24)],
    )
    run = _run(scenario)
    assert _times(run, "hbm_allocated") == [90.0]
    assert _times(run, "gpus_online") == [90.0]
    _assert_hbm_within_production(run)


@pytest.mark.parametrize(
    ("reserved", "expected"),
    [
        # 1,000 GB a period, half reserved for cloud (tier 2). lab (tier 1) orders 1,000 GB and
        # cloud 500 GB at t=0.
        #   t=30  cloud's account 500 -> cloud's order filled; pool 500 < lab's 1000
        #   t=60  pool 1000 -> lab
        ({"cloud": 0.5}, {"c": 30.0, "l": 60.0}),
        # Nothing reserved: t=30 pool 1000 -> lab first (tier 1); t=60 pool 1000 -> cloud.
        (None, {"c": 60.0, "l": 30.0}),
    ],
)
def test_hbm_reserved_share_goes_to_its_buyer_first(
    reserved: dict[str, float] | None, expected: dict[str, float]
) -> None:
    scenario = _world(
        horizon=400,
        orgs={"lab": {"kind": "lab", "tier": 1}, "cloud": {"kind": "hyperscaler", "tier": 2}},
        generations={"g1": G1},
        hbm=_hbm([{"from": 0, "gb_per_period": 1000}], reserved),
        pipelines=BUILD_AND_GPUS,
        sites=[
            _gpu_site("l", "lab", generation="g1", count=10),
            _gpu_site("c", "cloud", generation="g1", count=5),
        ],
    )
    run = _run(scenario)
    allocated = _events(run, "hbm_allocated")
    assert dict(zip(allocated["subject"], allocated["time"], strict=True)) == expected
    assert dict(zip(allocated["subject"], allocated["org"], strict=True)) == {
        "l": "lab",
        "c": "cloud",
    }
    _assert_hbm_within_production(run)


def test_hbm_pool_by_tier_then_order_time() -> None:
    # 500 GB a period, nothing reserved; every site orders 5 GPUs = 500 GB when it starts.
    #   lab   tier 2, orders at 0  -> key (2, 0)
    #   cloud tier 1, orders at 5  -> key (1, 5)
    #   neo   tier 1, orders at 10 -> key (1, 10)
    # One order is filled per delivery: cloud at 30, neo at 60, lab (ordered first) at 90.
    scenario = _world(
        horizon=400,
        orgs={"lab": {"tier": 2}, "cloud": {"tier": 1}, "neo": {"tier": 1}},
        generations={"g1": G1},
        hbm=_hbm([{"from": 0, "gb_per_period": 500}]),
        pipelines=BUILD_AND_GPUS,
        sites=[
            _gpu_site("l", "lab", generation="g1", count=5) | {"start": 0},
            _gpu_site("c", "cloud", generation="g1", count=5) | {"start": 5},
            _gpu_site("n", "neo", generation="g1", count=5) | {"start": 10},
        ],
    )
    run = _run(scenario)
    assert _events(run, "hbm_allocated")[["time", "subject"]].values.tolist() == [
        [30.0, "c"],
        [60.0, "n"],
        [90.0, "l"],
    ]
    _assert_hbm_within_production(run)


def test_cancelled_site_leaves_the_hbm_queue() -> None:
    # 1,000 GB a period. "big" orders 50 GPUs = 5,000 GB at t=0 and is cancelled at t=10 (its
    # permit is refused, no appeal). "small" orders 1,000 GB at t=20: the delivery at t=30 covers
    # it, so it should be allocated at 30 -- not at 150, when 5,000 GB have piled up for the
    # cancelled order.
    scenario = _world(
        horizon=400,
        generations={"g1": G1},
        jurisdictions={"j": {"review": 10, "refusal": 1}},
        hbm=_hbm([{"from": 0, "gb_per_period": 1000}]),
        pipelines={
            "p": BUILD_AND_GPUS["p"],
            "q": {
                "stages": {
                    **BUILD_AND_GPUS["p"]["stages"],
                    "permit": {"kind": "permit"},
                }
            },
        },
        sites=[
            _gpu_site("big", pipeline="q", generation="g1", count=50) | {"jurisdiction": "j"},
            _gpu_site("small", generation="g1", count=10) | {"start": 20},
        ],
    )
    run = _run(scenario)
    assert _times(run, "cancelled", "big") == [10.0]
    assert _times(run, "hbm_allocated", "small") == [30.0]


# =============================================================================================
# 3. GPU generations: availability by tier, `newest`, power gating

GENERATIONS = {
    # b200: 2.5 kW a GPU (4,000 GPUs in 10 MW); tier 1 from the start, tier 2 from 2026-04-01 (90)
    "b200": {
        "hbm_gb": 192,
        "gpu_kw": 1,
        "facility_kw": 2.5,
        "pflops": 5,
        "available": {1: START, 2: "2026-04-01"},
    },
    # vr: 5 kW a GPU (2,000 GPUs in 10 MW); tier 1 from 2026-03-01 (59), tier 2 six months later,
    # 2026-09-01 (243)
    "vr": {
        "hbm_gb": 288,
        "gpu_kw": 2,
        "pflops": 10,
        "available": {1: "2026-03-01", 2: "2026-09-01"},
    },
}
TIERED_ORGS = {"cloud": {"tier": 1}, "lab": {"kind": "lab", "tier": 2}, "neo": {"tier": 3}}
GEN_PIPELINE = {
    "p": {
        "stages": {
            "build": {"kind": "construction", "duration": 10},
            "gpus": {"kind": "gpus", "duration": 5},
        }
    }
}


def test_fixed_generation_waits_for_the_owners_tier() -> None:
    # Every site is ready to order at t=0 and wants vr.
    #   cloud (tier 1): orders at 59 (2026-03-01), online 59+5 = 64 (10 MW online since 10)
    #   lab (tier 2):   orders at 243 (2026-09-01), online 248
    #   neo (tier 3):   no date listed for tier 3 -> the nearest tier above, 2: 243
    scenario = _world(
        horizon=600,
        orgs=TIERED_ORGS,
        generations=GENERATIONS,
        pipelines=GEN_PIPELINE,
        sites=[
            _gpu_site("c", "cloud", generation="vr", count=100),
            _gpu_site("l", "lab", generation="vr", count=100),
            _gpu_site("n", "neo", generation="vr", count=100),
        ],
    )
    run = _run(scenario)
    ordered = _events(run, "gpus_ordered")
    assert dict(zip(ordered["subject"], ordered["time"], strict=True)) == {
        "c": 59.0,
        "l": 243.0,
        "n": 243.0,
    }
    assert [str(d.date()) for d in ordered.sort_values("time")["date"]] == [
        "2026-03-01",
        "2026-09-01",
        "2026-09-01",
    ]
    online = _events(run, "gpus_online")
    assert dict(zip(online["subject"], online["time"], strict=True)) == {
        "c": 64.0,
        "l": 248.0,
        "n": 248.0,
    }
    assert set(online["generation"]) == {"vr"}


def test_newest_generation_available_to_the_owners_tier_at_order_time() -> None:
    # `newest`, count from the site's 10 MW: b200 -> 10,000 kW / 2.5 = 4,000 GPUs; vr -> 2,000.
    #   l0   lab (tier 2) at 0:     nothing yet for tier 2; b200 from 90 -> b200 at 90
    #   l100 lab at 100:            b200 (90 <= 100; vr only from 243)
    #   c100 cloud (tier 1) at 100: vr (59 <= 100) is newer than b200
    #   l300 lab at 300:            vr (243 <= 300)
    scenario = _world(
        horizon=600,
        orgs=TIERED_ORGS,
        generations=GENERATIONS,
        pipelines=GEN_PIPELINE,
        sites=[
            _gpu_site("l0", "lab", generation="newest") | {"start": 0},
            _gpu_site("l100", "lab", generation="newest") | {"start": 100},
            _gpu_site("c100", "cloud", generation="newest") | {"start": 100},
            _gpu_site("l300", "lab", generation="newest") | {"start": 300},
        ],
    )
    run = _run(scenario)
    ordered = _events(run, "gpus_ordered").set_index("subject")
    got = {s: (r["time"], r["generation"], r["amount"]) for s, r in ordered.iterrows()}
    assert got == {
        "l0": (90.0, "b200", 4000.0),
        "l100": (100.0, "b200", 4000.0),
        "c100": (100.0, "vr", 2000.0),
        "l300": (300.0, "vr", 2000.0),
    }


@pytest.mark.parametrize(
    ("delivery", "online"),
    [
        # Construction 200 days in 2 phases: 5 MW online at 100, 10 MW at 200. Two tranches of
        # 2,000 b200 = 5 MW each, both delivered `delivery` days after ordering at t=0:
        (30, [100.0, 200.0]),  # delivered at 30: wait for 5 MW at 100, the next 5 MW at 200
        (150, [150.0, 200.0]),  # tranche 1 at max(150, 100); tranche 2 at max(150, 200)
        (250, [250.0, 250.0]),  # all 10 MW are online by then
    ],
)
def test_gpus_online_at_max_of_delivery_and_powered_mw(
    delivery: float, online: list[float]
) -> None:
    scenario = _world(
        horizon=600,
        orgs=TIERED_ORGS,
        generations=GENERATIONS,
        pipelines={
            "p": {
                "stages": {
                    "build": {"kind": "construction", "duration": 200, "phases": 2},
                    "gpus": {"kind": "gpus", "duration": delivery},
                }
            }
        },
        sites=[_gpu_site("c", "cloud", generation="b200", count=4000, tranches=2)],
    )
    run = _run(scenario)
    assert _events(run, "mw_online")[["time", "amount"]].values.tolist() == [
        [100.0, 5.0],
        [200.0, 5.0],
    ]
    assert _times(run, "gpus_online") == online
    assert _capacity(run, "cloud", "gpus_b200")[-1] == (max(online), 4000.0)


def test_gpus_stage_without_construction_stage_is_rejected_or_finishes() -> None:
    # prep (5) -> gpus (10 days delivery), 10 MW, 100 GPUs (0.25 MW). Either the checks reject
    # the pipeline, or the GPUs come online (at 15) and the site finishes.
    data = {
        "generations": {"g1": G1},
        "pipelines": {
            "p": {
                "stages": {
                    "prep": {"duration": 5},
                    "gpus": {"kind": "gpus", "duration": 10, "after": ["prep"]},
                }
            }
        },
        "sites": [_gpu_site("a", generation="g1", count=100)],
    }
    try:
        scenario = _world(horizon=400, **data)
    except ScenarioError:
        return
    run = _run(scenario)
    assert run.finished, run.blockages
    assert _times(run, "gpus_online") == [15.0]


# =============================================================================================
# 4. Construction in phases, online once the site has power


def _construction_world(stages: dict[str, Any], **parts: Any) -> Scenario:
    return _world(
        horizon=600,
        pipelines={"p": {"stages": stages}},
        sites=[{"name": "a", "org": "lab", "pipeline": "p", "mw": 100, "region": "r"}],
        grid_regions={"r": {}},
        **parts,
    )


def test_construction_phases_wait_for_power() -> None:
    # Construction 200 days in 4 phases of 25 MW (built at 50, 100, 150, 200); on-site power
    # (a power stage) finishes at 120.
    #   50, 100: built, not online (no power yet)
    #   120:     powered -> the 50 MW built so far come online
    #   150:     +25;  200: +25
    run = _run(
        _construction_world(
            {
                "gas": {"kind": "power", "duration": 120},
                "build": {"kind": "construction", "duration": 200, "phases": 4},
            }
        )
    )
    assert _times(run, "mw_built") == [50.0, 100.0, 150.0, 200.0]
    assert _times(run, "powered") == [120.0]
    assert _events(run, "mw_online")[["time", "amount"]].values.tolist() == [
        [120.0, 50.0],
        [150.0, 25.0],
        [200.0, 25.0],
    ]
    assert _capacity(run, "lab", "mw_own") == [
        (0.0, 0.0),
        (120.0, 50.0),
        (150.0, 75.0),
        (200.0, 100.0),
    ]
    assert _stage(run, "a", "build") == (0.0, 0.0, 200.0)


def test_construction_waits_for_every_grid_and_power_stage() -> None:
    # Construction 100 days in 2 phases (built at 50, 100); the grid connection (study 60) is
    # done at 60 but the power stage only at 130: powered at 130, all 100 MW online then.
    run = _run(
        _construction_world(
            {
                "grid": {"kind": "grid", "duration": 60},
                "gas": {"kind": "power", "duration": 130},
                "build": {"kind": "construction", "duration": 100, "phases": 2},
            }
        )
    )
    assert _stage(run, "a", "grid")[2] == 60.0
    assert _times(run, "powered") == [130.0]
    assert _events(run, "mw_online")[["time", "amount"]].values.tolist() == [[130.0, 100.0]]


def test_construction_without_power_stages_is_online_per_phase() -> None:
    # No grid or power stage: the site counts as powered; each 25 MW phase is online when built.
    run = _run(
        _construction_world({"build": {"kind": "construction", "duration": 200, "phases": 4}})
    )
    assert _events(run, "mw_online")[["time", "amount"]].values.tolist() == [
        [50.0, 25.0],
        [100.0, 25.0],
        [150.0, 25.0],
        [200.0, 25.0],
    ]


def test_construction_duration_scales_with_mw() -> None:
    # 100 days for 25 MW, exponent 0.5: a 100 MW site takes 100 x (100/25) ** 0.5 = 200 days.
    stage = {"kind": "construction", "duration": 100, "reference_mw": 25, "mw_exponent": 0.5}
    run = _run(_construction_world({"build": stage}))
    assert _stage(run, "a", "build") == (0.0, 0.0, 200.0)
    assert _times(run, "mw_online") == [200.0]


# =============================================================================================
# 5. Permits: refusal, appeal, concurrent reviews

PERMIT_THEN_BUILD = {
    "p": {
        "stages": {
            "permit": {"kind": "permit"},
            "build": {"duration": 10, "after": ["permit"]},
        }
    }
}


def _permit_world(jurisdiction: dict[str, Any], n: int = 1) -> Scenario:
    return _world(
        horizon=600,
        jurisdictions={"j": jurisdiction},
        pipelines=PERMIT_THEN_BUILD,
        sites=[
            {"name": name, "org": "lab", "pipeline": "p", "mw": 100, "jurisdiction": "j"}
            for name in "abc"[:n]
        ],
    )


def test_permit_granted_after_review() -> None:
    # Review 100, never refused: permit 0-100, build 100-110, online at 110.
    run = _run(_permit_world({"review": 100, "refusal": 0}))
    assert _stage(run, "a", "permit") == (0.0, 0.0, 100.0)
    assert _times(run, "permit_refused") == []
    assert _times(run, "mw_online") == [110.0]


def test_permit_refused_without_appeal_cancels_the_site() -> None:
    # Review 100, always refused, no appeal: refused and cancelled at 100; never online.
    run = _run(_permit_world({"review": 100, "refusal": 1}))
    assert _times(run, "permit_refused") == [100.0]
    assert _times(run, "cancelled") == [100.0]
    assert _times(run, "mw_online") == []
    stages = stage_table(run).set_index("stage")
    assert stages.loc["permit", "status"] == "cancelled"
    assert stages.loc["build", "status"] == "cancelled"
    assert math.isnan(stages.loc["build", "ready"])
    assert math.isnan(site_table(run).iloc[0]["online"])
    assert _capacity(run, "lab", "mw_own") == [(0.0, 0.0)]


def test_permit_appeal_won_completes_later() -> None:
    # Refused at 100, appeal of 50 always won: appeal_won at 150, permit finishes at 150,
    # build 150-160, online at 160.
    run = _run(_permit_world({"review": 100, "refusal": 1, "appeal": 50, "appeal_success": 1}))
    assert _times(run, "permit_refused") == [100.0]
    assert _times(run, "appeal_won") == [150.0]
    assert _times(run, "cancelled") == []
    assert _stage(run, "a", "permit") == (0.0, 0.0, 150.0)
    assert _stage(run, "a", "build") == (150.0, 150.0, 160.0)
    assert _times(run, "mw_online") == [160.0]


def test_permit_appeal_lost_cancels_the_site() -> None:
    # Refused at 100, appeal of 50 always lost: cancelled at 150, never online.
    run = _run(_permit_world({"review": 100, "refusal": 1, "appeal": 50, "appeal_success": 0}))
    assert _times(run, "permit_refused") == [100.0]
    assert _times(run, "appeal_won") == []
    assert _times(run, "cancelled") == [150.0]
    assert _times(run, "mw_online") == []


def test_reviews_at_once_limits_concurrent_reviews() -> None:
    # One review at a time, 30 days each: permits at 30, 60, 90; online 10 days later.
    run = _run(_permit_world({"review": 30, "reviews_at_once": 1}, n=3))
    assert [_stage(run, s, "permit")[2] for s in "abc"] == [30.0, 60.0, 90.0]
    online = _events(run, "mw_online")
    assert dict(zip(online["subject"], online["time"], strict=True)) == {
        "a": 40.0,
        "b": 70.0,
        "c": 100.0,
    }


# =============================================================================================
# 6. Risks: delay, pause, cancel, transfer; triggers by flag and energy price

RISK_PIPELINE = {
    "p": {
        "stages": {
            "prep": {"duration": 10},
            "build": {"kind": "construction", "duration": 100, "after": ["prep"]},
        }
    }
}


def _risk_world(risk: dict[str, Any], prep: float = 10, **parts: Any) -> Scenario:
    return _world(
        horizon=1000,
        orgs={"lab": {"kind": "lab"}, "cloud": {"kind": "hyperscaler"}},
        pipelines=RISK_PIPELINE,
        sites=[
            {
                "name": "a",
                "org": "lab",
                "pipeline": "p",
                "mw": 100,
                "region": "uk",
                "overrides": {"prep": {"duration": prep}},
            }
        ],
        grid_regions={
            "uk": {
                "energy_price": {
                    "path": [
                        {"from": 0, "usd_per_mwh": 100},
                        {"from": "2026-07-01", "usd_per_mwh": 300},
                    ]
                }
            }
        },
        risks={"r": {"sites": ["a"], **risk}},
        **parts,
    )


def test_risk_delay_lengthens_the_stage() -> None:
    # build ready at 10; the risk adds 20: build runs 10-130 instead of 10-110.
    run = _run(_risk_world({"stage": "build", "effect": {"delay": 20}}))
    assert _events(run, "delayed")[["time", "amount"]].values.tolist() == [[10.0, 20.0]]
    assert _stage(run, "a", "build") == (10.0, 10.0, 130.0)
    assert _times(run, "mw_online") == [130.0]


def test_risk_with_probability_zero_never_strikes() -> None:
    run = _run(_risk_world({"stage": "build", "probability": 0, "effect": {"delay": 20}}))
    assert _times(run, "delayed") == []
    assert _stage(run, "a", "build") == (10.0, 10.0, 110.0)


def test_risk_pause_holds_the_stage() -> None:
    # build ready at 10, paused 15: resumed and started at 25, finished at 125.
    run = _run(_risk_world({"stage": "build", "effect": {"pause": 15}}))
    assert _events(run, "paused")[["time", "amount"]].values.tolist() == [[10.0, 15.0]]
    assert _times(run, "resumed") == [25.0]
    assert _stage(run, "a", "build") == (10.0, 25.0, 125.0)
    assert _times(run, "mw_online") == [125.0]


def test_risk_pause_at_the_site_start() -> None:
    # No stage: strikes when the site starts (t=0); paused 15, prep 15-25, build 25-125.
    run = _run(_risk_world({"effect": {"pause": 15}}))
    assert _times(run, "paused") == [0.0]
    assert _times(run, "resumed") == [15.0]
    assert _stage(run, "a", "prep") == (15.0, 15.0, 25.0)
    assert _stage(run, "a", "build") == (25.0, 25.0, 125.0)


def test_risk_cancel_stops_the_site() -> None:
    run = _run(_risk_world({"stage": "build", "effect": {"cancel": True}}))
    assert _times(run, "cancelled") == [10.0]
    assert math.isnan(_stage(run, "a", "build")[1])
    assert _times(run, "mw_online") == []
    assert run.finished  # a cancelled site is not a blockage


def test_risk_transfer_moves_the_capacity_to_the_new_owner() -> None:
    # Site s of lab: construction 100 days in 2 phases of 5 MW (50, 100), no power stages; one
    # tranche of 2,000 GPUs (5 MW) delivered at 10, online with phase 1 at 50. "handover" is
    # ready at 70 (after "later", 70 days): the risk transfers the site to cloud then.
    #   lab:   0 -> 5 MW, 2,000 GPUs at 50 -> 0 at 70
    #   cloud: 5 MW, 2,000 GPUs at 70 -> 10 MW at 100 (phase 2 comes online under cloud)
    scenario = _world(
        horizon=400,
        orgs={"lab": {"kind": "lab"}, "cloud": {"kind": "hyperscaler"}},
        generations={"g1": G1},
        pipelines={
            "p": {
                "stages": {
                    "build": {"kind": "construction", "duration": 100, "phases": 2},
                    "gpus": {"kind": "gpus", "duration": 10},
                    "later": {"duration": 70},
                    "handover": {"duration": 1, "after": ["later"]},
                }
            }
        },
        sites=[_gpu_site("s", generation="g1", count=2000)],
        risks={"t": {"sites": ["s"], "stage": "handover", "effect": {"transfer": {"to": "cloud"}}}},
    )
    run = _run(scenario)
    transferred = _events(run, "transferred")
    assert transferred[["time", "org", "amount"]].values.tolist() == [[70.0, "cloud", 5.0]]
    assert _events(run, "mw_online")[["time", "org"]].values.tolist() == [
        [50.0, "lab"],
        [100.0, "cloud"],
    ]
    assert _capacity(run, "lab", "mw_own") == [(0.0, 0.0), (50.0, 5.0), (70.0, 0.0)]
    assert _capacity(run, "lab", "gpus_online") == [(0.0, 0.0), (50.0, 2000.0), (70.0, 0.0)]
    assert _capacity(run, "cloud", "mw_own") == [(0.0, 0.0), (70.0, 5.0), (100.0, 10.0)]
    assert _capacity(run, "cloud", "gpus_online") == [
        (0.0, 0.0),
        (70.0, 2000.0),
        (100.0, 2000.0),
    ]
    assert run.owners == ["cloud"]
    assert site_table(run).iloc[0]["owner"] == "cloud"


@pytest.mark.parametrize(("raised", "strikes"), [(1.0, True), (0.0, False)])
def test_risk_triggered_by_a_flag(raised: float, strikes: bool) -> None:
    # The delay strikes only if flag "ai_act" is raised (probability 1 or 0).
    run = _run(
        _risk_world(
            {"stage": "build", "trigger": {"flag": "ai_act"}, "effect": {"delay": 20}},
            flags={"ai_act": raised},
        )
    )
    assert _times(run, "delayed") == ([10.0] if strikes else [])
    assert _stage(run, "a", "build")[2] == (130.0 if strikes else 110.0)


@pytest.mark.parametrize(
    ("prep", "paused"),
    [
        (10, False),  # build ready at 10: energy 100 USD/MWh <= 200, no pause; online at 110
        (200, True),  # build ready at 200 (after 2026-07-01): 300 > 200, paused 30; online 330
    ],
)
def test_risk_triggered_by_energy_price(prep: float, paused: bool) -> None:
    run = _run(
        _risk_world(
            {"stage": "build", "trigger": {"energy_price_above": 200}, "effect": {"pause": 30}},
            prep=prep,
        )
    )
    assert _times(run, "paused") == ([prep] if paused else [])
    assert _times(run, "mw_online") == [prep + (30 if paused else 0) + 100]


def test_risk_delay_on_a_gpus_stage() -> None:
    # Construction 5 days; one tranche delivered 10 days after ordering at t=0; a 20-day delay on
    # the gpus stage: expected online at 10 + 20 = 30, stage 0-30 (as for any other stage).
    scenario = _world(
        horizon=400,
        generations={"g1": G1},
        pipelines={
            "p": {
                "stages": {
                    "build": {"kind": "construction", "duration": 5},
                    "gpus": {"kind": "gpus", "duration": 10},
                }
            }
        },
        sites=[_gpu_site("a", generation="g1", count=100)],
        risks={"d": {"sites": ["a"], "stage": "gpus", "effect": {"delay": 20}}},
    )
    run = _run(scenario)
    assert _events(run, "delayed")[["time", "amount"]].values.tolist() == [[0.0, 20.0]]
    assert _times(run, "gpus_online") == [30.0]
    assert _stage(run, "a", "gpus") == (0.0, 0.0, 30.0)


# =============================================================================================
# 7. Offtake agreements (leases)

LEASE_ORGS = {
    "lab": {"kind": "lab"},
    # 1,000 GPUs at the start, half of them (and half its new GPUs) for lease
    "cloud": {"kind": "hyperscaler", "fleet": {"g1": 1000}, "leasable": 0.5},
}
PROVIDER_SITE = {
    "p": {
        "stages": {
            "build": {"kind": "construction", "duration": 300},
            "gpus": {"kind": "gpus", "duration": 0},
        }
    }
}


def _lease(**changes: Any) -> dict[str, Any]:
    lease = {
        "provider": "cloud",
        "customer": "lab",
        "generation": "g1",
        "gpus": 800,
        "negotiation": {"fixed": 10},
        "start": "2026-03-01",
        "tranches": [{"at": 0, "gpus": 400}, {"at": 100, "gpus": 400}],
        "term": 365,
        "price": {"per_gpu_hour": 2.0},
    }
    lease.update(changes)
    return lease


def _lease_world(leases: dict[str, Any]) -> Scenario:
    # cloud's own site brings 1,000 new GPUs online at 300, 500 of them for lease
    return _world(
        horizon=1000,
        orgs=LEASE_ORGS,
        generations={"g1": G1},
        pipelines=PROVIDER_SITE,
        sites=[_gpu_site("cs", "cloud", generation="g1", count=1000)],
        leases=leases,
    )


def test_lease_tranches_from_the_providers_available_gpus() -> None:
    # Signed after 10 days of negotiation; deliveries from max(start 59, 10) = 59.
    #   59   tranche 1 due (400): cloud has 1000 x 0.5 = 500 free -> delivered, 100 left
    #   159  tranche 2 due (400): only 100 free -> lease_late
    #   300  cloud's site: 1000 new GPUs x 0.5 = 500 more -> 600 free: tranche 2 delivered
    #   424  tranche 1's term (365) ends: 59 + 365;  665: tranche 2's: 300 + 365
    # lab's leased MW: 400 GPUs x 2.5 kW = 1 MW per tranche.
    run = _run(_lease_world({"x": _lease()}))
    assert _times(run, "lease_signed") == [10.0]
    assert _events(run, "lease_delivered")[["time", "amount"]].values.tolist() == [
        [59.0, 400.0],
        [300.0, 400.0],
    ]
    assert _events(run, "lease_late")[["time", "amount"]].values.tolist() == [[159.0, 400.0]]
    assert _times(run, "lease_ended") == [424.0, 665.0]
    assert _times(run, "lease_terminated") == []
    assert set(_events(run, "lease_delivered")["org"]) == {"lab"}
    assert _capacity(run, "lab", "mw_leased") == [
        (0.0, 0.0),
        (59.0, 1.0),
        (300.0, 2.0),
        (424.0, 1.0),
        (665.0, 0.0),
    ]
    assert _capacity(run, "lab", "gpus_online") == [
        (0.0, 0.0),
        (59.0, 400.0),
        (300.0, 800.0),
        (424.0, 400.0),
        (665.0, 0.0),
    ]
    assert all(mw == 0.0 for _, mw in _capacity(run, "lab", "mw_own"))
    # the provider's own capacity: its fleet (2.5 MW) from the start, its site's 10 MW from 300
    assert _capacity(run, "cloud", "mw_own") == [(0.0, 2.5), (300.0, 12.5)]


def test_lease_negotiation_past_the_start_postpones_every_tranche() -> None:
    # Negotiation 100 > start 59: deliveries count from 100; tranche 1 at 100, tranche 2 due at
    # 200 (only 100 free) and delivered at 300 when cloud's site comes online.
    run = _run(_lease_world({"x": _lease(negotiation={"fixed": 100})}))
    assert _times(run, "lease_signed") == [100.0]
    assert _times(run, "lease_delivered") == [100.0, 300.0]
    assert _times(run, "lease_late") == [200.0]


def test_lease_sized_in_mw() -> None:
    # A 1 MW tranche of g1 (2.5 kW a GPU) is 400 GPUs, delivered at 59.
    lease = _lease(gpus=None, mw=1.0, tranches=[{"at": 0, "mw": 1.0}])
    run = _run(_lease_world({"x": lease}))
    assert _events(run, "lease_delivered")[["time", "amount"]].values.tolist() == [[59.0, 400.0]]
    assert _capacity(run, "lab", "mw_leased")[1] == (59.0, 1.0)


def test_lease_terminated_when_a_tranche_is_too_late() -> None:
    # As above with a termination right after 30 days late and a third tranche due at 59+200:
    #   159 tranche 2 late; 189 still not delivered -> lease_terminated
    #   259 tranche 3 never comes due; tranche 2 never arrives (not even at 300)
    #   424 tranche 1 ends at its term as agreed
    lease = _lease(
        gpus=1200,
        tranches=[{"at": 0, "gpus": 400}, {"at": 100, "gpus": 400}, {"at": 200, "gpus": 400}],
        terminate_if_late=30,
    )
    run = _run(_lease_world({"x": lease}))
    assert _times(run, "lease_late") == [159.0]
    assert _times(run, "lease_terminated") == [189.0]
    assert _times(run, "lease_delivered") == [59.0]
    assert _times(run, "lease_ended") == [424.0]
    assert _capacity(run, "lab", "gpus_online") == [(0.0, 0.0), (59.0, 400.0), (424.0, 0.0)]


def test_lease_late_tranche_delivered_before_the_termination_right() -> None:
    # Termination right after 200 days late: tranche 2 (due 159) arrives at 300, 141 days late,
    # so the agreement is not terminated.
    run = _run(_lease_world({"x": _lease(terminate_if_late=200)}))
    assert _times(run, "lease_terminated") == []
    assert _times(run, "lease_delivered") == [59.0, 300.0]


def test_terminated_lease_leaves_the_providers_queue() -> None:
    # x as in the termination test: terminated at 189, its tranche 2 (400) still waiting.
    # y asks for 100 GPUs at 200; cloud has 100 free (500 - 400 leased to x's tranche 1), so y
    # should be delivered at 200 -- not at 300 behind x's dead request.
    x = _lease(terminate_if_late=30)
    y = _lease(gpus=100, start=200, negotiation=0, tranches=[{"at": 0, "gpus": 100}])
    run = _run(_lease_world({"x": x, "y": y}))
    assert _times(run, "lease_terminated", "x") == [189.0]
    assert _times(run, "lease_delivered", "y") == [200.0]


def test_transferred_gpus_are_leasable_only_by_the_new_owner() -> None:
    # cloud's site s brings 1,000 GPUs online at 50 (both orgs lease all their GPUs); at 70 the
    # site passes to neo. At 100, x asks cloud and y asks neo for 1,000 GPUs each: only 1,000
    # exist, so at most one of the two can be delivered.
    leases = {
        name: _lease(provider=provider, gpus=1000, start=100, tranches=[{"at": 0, "gpus": 1000}])
        for name, provider in (("x", "cloud"), ("y", "neo"))
    }
    scenario = _world(
        horizon=400,
        orgs={"lab": {"kind": "lab"}, "cloud": {"leasable": 1.0}, "neo": {"leasable": 1.0}},
        generations={"g1": G1},
        pipelines={
            "p": {
                "stages": {
                    "build": {"kind": "construction", "duration": 50},
                    "gpus": {"kind": "gpus", "duration": 0},
                    "later": {"duration": 70},
                    "handover": {"duration": 1, "after": ["later"]},
                }
            }
        },
        sites=[_gpu_site("s", "cloud", generation="g1", count=1000)],
        risks={"t": {"sites": ["s"], "stage": "handover", "effect": {"transfer": {"to": "neo"}}}},
        leases=leases,
    )
    run = _run(scenario)
    assert _times(run, "transferred") == [70.0]
    assert _events(run, "lease_delivered")["amount"].sum() <= 1000


# =============================================================================================
# 8. Strategies and common random numbers


def _strategy_world() -> Scenario:
    return _world(
        horizon=3000,
        orgs=LEASE_ORGS,
        generations={"g1": G1},
        pipelines={
            "p": {
                "stages": {
                    "permit": {"duration": {"triangular": [30, 60, 200]}},
                    "build": {
                        "kind": "construction",
                        "duration": {"pert": [200, 300, 600]},
                        "after": ["permit"],
                    },
                }
            }
        },
        sites=[
            {"name": "a", "org": "lab", "pipeline": "p", "mw": 100},
            {"name": "shared", "org": "lab", "pipeline": "p", "mw": 50},
            {"name": "b", "org": "lab", "pipeline": "p", "mw": 100},
        ],
        leases={"x": _lease(negotiation={"uniform": [10, 90]})},
        strategies={"build": {"sites": ["a", "b"]}, "lease": {"leases": ["x"]}},
    )


def test_strategy_selects_its_sites_and_leases() -> None:
    scenario = _strategy_world()
    build, lease = Model(scenario, "build"), Model(scenario, "lease")
    assert [s.spec.name for s in build.sites if s.active] == ["a", "shared", "b"]
    assert [s.spec.name for s in lease.sites if s.active] == ["shared"]
    assert [x.active for x in build.leases] == [False]
    assert [x.active for x in lease.leases] == [True]

    run_build, run_lease = _run(scenario, "build"), _run(scenario, "lease")
    assert set(stage_table(run_build)["site"]) == {"a", "shared", "b"}
    assert set(stage_table(run_lease)["site"]) == {"shared"}
    assert _times(run_build, "lease_signed") == []
    assert len(_times(run_lease, "lease_delivered")) == 2
    assert set(_events(run_lease, "mw_online")["subject"]) == {"shared"}


def test_unknown_strategy_is_an_error() -> None:
    with pytest.raises(CapsimError, match="unknown strategy 'bild'; did you mean 'build'"):
        Model(_strategy_world(), "bild")


@pytest.mark.parametrize("replication", [0, 1, 7])
def test_common_random_numbers_across_strategies(replication: int) -> None:
    scenario = _strategy_world()
    build, lease = Model(scenario, "build"), Model(scenario, "lease")
    assert build.n_slots == lease.n_slots
    values_build = build.draw(replication_rng(3, replication))
    values_lease = lease.draw(replication_rng(3, replication))
    assert (values_build == values_lease).all()
    run_build, run_lease = build.run(values_build), lease.run(values_lease)
    shared = list(build.site_tasks[1])  # the shared site's tasks
    assert (run_build.durations[shared] == run_lease.durations[shared]).all()
    sb, sl = stage_table(run_build), stage_table(run_lease)
    cols = ["stage", "ready", "start", "finish"]
    pd.testing.assert_frame_equal(
        sb[sb["site"] == "shared"][cols].reset_index(drop=True),
        sl[sl["site"] == "shared"][cols].reset_index(drop=True),
    )
    # a different replication draws differently
    other = build.draw(replication_rng(3, replication + 1))
    assert not (other[shared] == values_build[shared]).all()


# =============================================================================================
# 9. Invariants over random replications of a small world


def _random_world() -> Scenario:
    gens = {
        "g1": {
            "hbm_gb": 80,
            "gpu_kw": 0.7,
            "pflops": 2,
            "available": {1: START, 2: "2026-04-01"},
        },
        "g2": {
            "hbm_gb": 288,
            "gpu_kw": 1.4,
            "pflops": 10,
            "available": {1: "2026-06-01", 2: "2027-01-01"},
        },
    }
    return _world(
        horizon=3 * 365,
        orgs={
            "lab": {"kind": "lab", "tier": 2},
            "cloud": {"kind": "hyperscaler", "tier": 1, "fleet": {"g1": 4000}, "leasable": 0.5},
            "neo": {"kind": "neocloud", "tier": 2, "leasable": 0.3},
        },
        generations=gens,
        hbm={
            "period": 30,
            "suppliers": {
                "sk": {
                    "output": [
                        {"from": 0, "gb_per_period": 300_000},
                        {"from": "2026-07-01", "gb_per_period": 600_000},
                    ],
                    "reserved": {"cloud": 0.3},
                },
                "mu": {"output": [{"from": "2026-03-01", "gb_per_period": 150_000}]},
            },
        },
        grid_regions={
            "r": {
                "study": {"triangular": [20, 60, 150]},
                "studies_at_once": 2,
                "mw_per_year": 150,
                "queue_ahead_mw": 100,
                "build": {"uniform": [10, 90]},
                "energy_price": {
                    "path": [{"from": 0, "usd_per_mwh": 90}],
                    "volatility": 0.5,
                },
            }
        },
        jurisdictions={
            "j": {
                "review": {"triangular": [20, 40, 120]},
                "reviews_at_once": 2,
                "refusal": 0.2,
                "appeal": {"uniform": [30, 90]},
                "appeal_success": 0.5,
            }
        },
        flags={"rules": 0.5},
        pipelines={
            "full": {
                "stages": {
                    "permit": {"kind": "permit"},
                    "grid": {"kind": "grid"},
                    "gas": {"kind": "power", "duration": {"uniform": [100, 300]}},
                    "build": {
                        "kind": "construction",
                        "duration": {"pert": [100, 200, 400]},
                        "phases": 3,
                        "after": ["permit"],
                    },
                    "gpus": {
                        "kind": "gpus",
                        "duration": {"triangular": [10, 30, 90]},
                        "after": ["permit"],
                    },
                }
            },
            "simple": {
                "stages": {
                    "grid": {"kind": "grid"},
                    "build": {"kind": "construction", "duration": {"uniform": [60, 200]}},
                    "gpus": {"kind": "gpus", "duration": {"uniform": [0, 60]}},
                }
            },
        },
        sites=[
            {
                "name": f"lab{i}",
                "org": "lab",
                "pipeline": "full",
                "mw": 60,
                "region": "r",
                "jurisdiction": "j",
                "start": 30 * i,
                "gpus": {"generation": "newest", "tranches": 3},
            }
            for i in range(3)
        ]
        + [
            {
                "name": "cloud0",
                "org": "cloud",
                "pipeline": "simple",
                "mw": 80,
                "region": "r",
                "gpus": {"generation": "g1", "count": 20000, "tranches": [5000, 15000]},
            },
            {
                "name": "neo0",
                "org": "neo",
                "pipeline": "simple",
                "mw": 40,
                "region": "r",
                "start": 60,
                "gpus": {"generation": "newest", "tranches": 2},
            },
        ],
        risks={
            "pause": {
                "sites": ["lab0", "lab1"],
                "stage": "build",
                "probability": 0.4,
                "trigger": {"energy_price_above": 80},
                "effect": {"pause": {"uniform": [30, 120]}},
            },
            "takeover": {
                "sites": ["lab2"],
                "stage": "gpus",
                "probability": 0.4,
                "effect": {"transfer": {"to": "cloud"}},
            },
            "rules": {
                "sites": ["lab1"],
                "probability": 0.5,
                "trigger": {"flag": "rules"},
                "effect": {"cancel": True},
            },
            "slip": {
                "sites": ["neo0"],
                "stage": "build",
                "probability": 0.5,
                "effect": {"delay": {"uniform": [10, 100]}},
            },
        },
        leases={
            "cloud_deal": {
                "provider": "cloud",
                "generation": "g1",
                "gpus": 9000,
                "negotiation": {"uniform": [0, 60]},
                "start": "2026-02-01",
                "tranches": [
                    {"at": 0, "gpus": 1500},
                    {"at": 90, "gpus": 3000},
                    {"at": 240, "gpus": 4500},
                ],
                "term": 400,
                "price": {"per_gpu_hour": 2.5},
                "terminate_if_late": 60,
            },
            "neo_deal": {
                "provider": "neo",
                "generation": "newest",
                "mw": 10,
                "start": "2026-06-01",
                "tranches": [{"at": 0, "mw": 4}, {"at": 120, "mw": 6}],
                "term": 300,
                "price": {"per_mw_year": 1.2e7},
            },
        },
    )


def _check_invariants(run: Run) -> None:
    scenario = run.model.scenario
    events = events_table(run)
    gens = scenario.generations
    sites = {info.spec.name: info for info in run.model.sites}

    # HBM: allocated so far never exceeds produced so far
    _assert_hbm_within_production(run)

    # per site: MW online never exceed its MW; each mw_online comes after every grid/power stage
    # finished; GPUs online never need more MW than are online at the site
    for name, info in sites.items():
        mine = events[events["subject"] == name]
        online = mine[mine["kind"] == "mw_online"]
        assert online["amount"].sum() <= info.spec.mw + 1e-9
        power_done = [run.finish[t] for t in info.power_tasks]
        for t in online["time"]:
            assert all(not math.isnan(f) and f <= t for f in power_done), (name, t, power_done)
        gpu_mw = 0.0
        for _, e in mine.sort_values("time", kind="stable").iterrows():
            if e["kind"] == "gpus_online":
                gpu_mw += e["amount"] * gens[e["generation"]].power_kw / 1000
                powered = online[online["time"] <= e["time"]]["amount"].sum()
                assert gpu_mw <= powered + 1e-9, (name, e["time"], gpu_mw, powered)
        # a tranche is ordered no earlier than its generation reaches the orderer's tier
        for _, e in mine[mine["kind"] == "gpus_ordered"].iterrows():
            tier = scenario.org(e["org"]).tier
            assert e["time"] >= gens[e["generation"]].available_to(tier) - 1e-9
        # and comes online no earlier than its HBM is allocated
        allocated = mine[mine["kind"] == "hbm_allocated"]["time"]
        gpus_on = mine[mine["kind"] == "gpus_online"]["time"]
        if len(gpus_on):
            assert gpus_on.min() >= allocated.min()
            assert len(gpus_on) <= len(allocated)

    # per org: own MW never exceed its fleet and the sites it ever owned
    table = capacity_table(run)
    for org_name in table["org"].unique():
        org = scenario.org(org_name)
        bound = sum(n * gens[g].power_kw / 1000 for g, n in org.fleet.items())
        bound += sum(
            info.spec.mw
            for info in run.model.sites
            if info.spec.org == org_name or run.owners[info.index] == org_name
        )
        assert (table[table["org"] == org_name]["mw_own"] <= bound + 1e-9).all()
    total_bound = sum(i.spec.mw for i in run.model.sites) + sum(
        n * gens[g].power_kw / 1000 for o in scenario.orgs.values() for g, n in o.fleet.items()
    )
    assert table["total_mw_online"].max() <= total_bound + 1e-9

    # leases: GPUs out on lease from a provider never exceed what it has offered so far
    # (its fleet x leasable, plus its new and taken-over GPUs x leasable)
    offered: dict[tuple[str, str], float] = defaultdict(float)
    for name, org in scenario.orgs.items():
        for g, n in org.fleet.items():
            offered[name, g] += math.floor(n * org.leasable)
    site_gpus: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    leased: dict[tuple[str, str], float] = defaultdict(float)
    for t, at_t in events.groupby("time", sort=True):
        for _, e in at_t.iterrows():
            share = scenario.org(e["org"]).leasable
            if e["kind"] == "gpus_online":
                site_gpus[e["subject"]][e["generation"]] += e["amount"]
                offered[e["org"], e["generation"]] += math.floor(e["amount"] * share)
            elif e["kind"] == "transferred":
                for g, n in site_gpus[e["subject"]].items():
                    offered[e["org"], g] += math.floor(n * share)
            elif e["kind"] in ("lease_delivered", "lease_ended"):
                provider = scenario.leases[e["subject"]].provider
                sign = 1 if e["kind"] == "lease_delivered" else -1
                leased[provider, e["generation"]] += sign * e["amount"]
        for key, n in leased.items():
            assert n <= offered[key] + 1e-9, (t, key, n, offered[key])

    # a tranche is never delivered before it is due
    for name, lease in scenario.leases.items():
        signed = events[(events["subject"] == name) & (events["kind"] == "lease_signed")]
        delivered = events[(events["subject"] == name) & (events["kind"] == "lease_delivered")]
        if len(delivered):
            first_due = max(lease.start, float(signed["time"].iloc[0])) + lease.tranches[0].at
            assert delivered["time"].min() >= first_due - 1e-9


def test_invariants_over_random_replications() -> None:
    model = Model(_random_world())
    seen: set[str] = set()
    for replication in range(40):
        run = model.run(model.draw(replication_rng(11, replication)))
        _check_invariants(run)
        seen |= set(events_table(run)["kind"])
    # the replications exercised the mechanisms the invariants are about
    assert {
        "hbm_allocated",
        "grid_granted",
        "gpus_online",
        "mw_online",
        "lease_delivered",
        "lease_late",
        "transferred",
        "cancelled",
        "paused",
        "permit_refused",
    } <= seen


def test_invariants_at_mean_durations() -> None:
    model = Model(_random_world())
    _check_invariants(model.run(model.mean_durations()))


# =============================================================================================
# 10. Bad input

BAD_BASE: dict[str, Any] = {
    "name": "bad",
    "start": START,
    "horizon": 1000,
    "orgs": {
        "lab": {"kind": "lab"},
        "cloud": {"kind": "hyperscaler", "fleet": {"g1": 10}, "leasable": 0.5},
    },
    "generations": {"g1": {"hbm_gb": 100, "gpu_kw": 1, "pflops": 1, "available": {1: START}}},
    "hbm": {
        "suppliers": {
            "sk": {"output": [{"from": 0, "gb_per_period": 100}], "reserved": {"cloud": 0.5}}
        }
    },
    "grid_regions": {"r": {"mw_per_year": 100}},
    "jurisdictions": {"j": {"review": 10}},
    "pipelines": {
        "p": {
            "stages": {
                "permit": {"kind": "permit"},
                "grid": {"kind": "grid"},
                "build": {"kind": "construction", "duration": 10},
                "gpus": {"kind": "gpus", "duration": 5},
            }
        }
    },
    "sites": [
        {
            "name": "a",
            "org": "lab",
            "pipeline": "p",
            "mw": 10,
            "region": "r",
            "jurisdiction": "j",
            "gpus": {"generation": "g1"},
        }
    ],
    "leases": {
        "x": {
            "provider": "cloud",
            "generation": "g1",
            "gpus": 10,
            "start": 0,
            "tranches": [{"at": 0, "gpus": 10}],
            "term": 100,
            "price": {"per_gpu_hour": 1},
        }
    },
    "strategies": {"build": {"sites": ["a"]}, "lease": {"leases": ["x"]}},
}


def test_bad_input_base_is_valid() -> None:
    parse_scenario(copy.deepcopy(BAD_BASE))


_DELETE = object()


def _set(path: str, value: Any) -> Any:
    """A change to BAD_BASE: set the value at a dotted path (list indices as numbers)."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if isinstance(node, list) else last] = value

    return change


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (_set("sites.0.org", "labb"), "sites[0].org", "unknown org 'labb'; did you mean 'lab'?"),
        (
            _set("sites.0.gpus.generation", "g2"),
            "sites[0].gpus.generation",
            "unknown generation 'g2'",
        ),
        (_set("leases.x.generation", "vr"), "leases.x.generation", "unknown generation 'vr'"),
        (_set("orgs.cloud.fleet", {"h100": 5}), "orgs.cloud.fleet.h100", "unknown generation"),
        (_set("sites.0.region", "rr"), "sites[0].region", "unknown grid region 'rr'"),
        (_set("sites.0.jurisdiction", "k"), "sites[0].jurisdiction", "unknown jurisdiction 'k'"),
        (
            _set("sites.0.region", _DELETE),
            "sites[0].region",
            "has a grid stage, so the site needs a grid region",
        ),
        (
            _set("hbm.suppliers.sk.reserved", {"clod": 0.5}),
            "hbm.suppliers.sk.reserved.clod",
            "unknown org 'clod'; did you mean 'cloud'?",
        ),
        (
            _set("hbm.suppliers.sk.reserved", {"cloud": 0.7, "lab": 0.6}),
            "hbm.suppliers.sk.reserved",
            "reserved shares add up to 1.3, more than 1",
        ),
        (_set("leases.x.provider", "nobody"), "leases.x.provider", "unknown org 'nobody'"),
        (_set("leases.x.customer", "cloud"), "leases.x.customer", "cannot lease from itself"),
        (
            _set("leases.x.tranches", [{"at": 0, "gpus": 10}, {"at": 10, "gpus": 5}]),
            "leases.x",
            "tranches add up to 15 gpus, more than the agreement's 10",
        ),
        (
            _set("generations.g1.hbm_gb", _DELETE),
            "generations.g1",
            "missing required key 'hbm_gb'",
        ),
        (
            _set("generations.g1.gpu_kw", _DELETE),
            "generations.g1",
            "missing required key 'gpu_kw'",
        ),
        (
            _set("generations.g1.available", {1: "2026-06-01", 2: "2026-03-01"}),
            "generations.g1",
            "dates out of order: tier 2 gets it before tier 1",
        ),
        (
            _set(
                "hbm.suppliers.sk.output",
                [
                    {"from": "2026-06-01", "gb_per_period": 1},
                    {"from": "2026-03-01", "gb_per_period": 2},
                ],
            ),
            "hbm.suppliers.sk.output",
            "dates out of order: output[1] does not come after output[0]",
        ),
        (_set("strategies.build.sites", ["zz"]), "strategies.build.sites[0]", "unknown site 'zz'"),
        (
            _set("strategies.lease.leases", ["y"]),
            "strategies.lease.leases[0]",
            "unknown lease 'y'",
        ),
        (
            _set("sites.0.gpus", _DELETE),
            "sites[0].gpus",
            "a site has 'gpus' exactly when its pipeline has a gpus stage",
        ),
        (
            _set("risks", {"r": {"sites": ["a"], "effect": {"transfer": {"to": "nobody"}}}}),
            "risks.r.effect.transfer.to",
            "unknown org 'nobody'",
        ),
        (
            _set("risks", {"r": {"sites": ["a"], "effect": {"delay": 5, "cancel": True}}}),
            "risks.r.effect",
            "give exactly one effect",
        ),
    ],
)
def test_bad_input(change: Any, path: str, message: str) -> None:
    data = copy.deepcopy(BAD_BASE)
    change(data)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    problems = [(p.path, p.message) for p in info.value.problems]
    assert any(p == path and message in m for p, m in problems), problems
