"""The rollout-ordering search (``capsim order``, :mod:`capsim.ordering`).

- hand-computed two-site scenarios where the order matters, each on the engine and on the
  vectorised (fast) or lean path, the path in use forced (the others made to fail);
- :meth:`Objective.values` on the fast and lean paths equals the engine, replication by
  replication, for the ``p50`` and ``gpu-months`` objectives;
- :meth:`Model.ordered` equals compiling the model with that rollout, and leaves its base alone;
- the search does not depend on its workers or executor (two processes, a Dask cluster), and
  the greedy + steepest-descent search visits exactly the orders it should;
- the online objectives read the online times ``capsim mc`` reports;
- the command line writes what :func:`search` computes, shows a median never reached as never
  and refuses an unknown org.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pytest
from helpers import flat, run_cli_in_process, without_resources

from capsim import fastpath, leanpath
from capsim.errors import CapsimError
from capsim.executors import DaskExecutor, Executor
from capsim.loader import load_scenario, parse_scenario, shipped_scenario
from capsim.model import Model, replication_rng
from capsim.ordering import Draws, OrderSearch, Score, evaluate, parse_objective, search
from capsim.schema import Scenario
from capsim.units import to_time_unit

R = TypeVar("R")

PORTFOLIO_LAB = ("lab-ercot-1", "lab-ercot-2", "lab-ercot-3", "lab-nova-1", "lab-gb-1")
STARGATE_LAB = ("uk-cobalt", "narvik", "us-campus")  # the lab's sites of "build", file order


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def portfolio() -> Scenario:
    return load_scenario(shipped_scenario("portfolio"))


@pytest.fixture(scope="module")
def stargate() -> Scenario:
    return load_scenario(shipped_scenario("stargate-pivot"))


def two_sites(crew: bool, b_start: str | None = None, rival: bool = False) -> Scenario:
    """Sites A (100 MW, one stage of exactly 10 days) and B (100 MW, exactly 30 days), in that
    file order, both of org ``lab``; with ``crew`` each stage needs the one unit of ``crew``.
    With ``rival``, site R of org ``rival`` (100 MW, 20 days, the crew too) comes first."""
    needs = {"needs": {"crew": 1}} if crew else {}
    b = {"name": "B", "org": "lab", "pipeline": "slow", "mw": 100}
    if b_start is not None:
        b["start"] = b_start
    r = [{"name": "R", "org": "rival", "pipeline": "rival", "mw": 100}] if rival else []
    return parse_scenario({
        "name": "two-sites",
        "start": "2026-01-01",
        "horizon": "10 years",
        "resources": {"crew": {"capacity": 1}} if crew else {},
        "pipelines": {
            "quick": {"stages": {"build": {"duration": 10, **needs}}},
            "slow": {"stages": {"build": {"duration": 30, **needs}}},
            "rival": {"stages": {"build": {"duration": 20, **needs}}},
        },
        "sites": [*r, {"name": "A", "org": "lab", "pipeline": "quick", "mw": 100}, b],
        "milestones": [{"mw": 100}, {"mw": 200}],
    })  # fmt: skip


def gpu_scenario() -> Scenario:
    """A lean-path scenario whose GPUs (and so GPU-months) depend on the order: one crew builds
    every site, the HBM market is short, a newer generation arrives for tier 1 in September."""
    # (MW, GPUs) of lab-0, lab-1, lab-2: power for the newer generation (3.75 kW a GPU)
    lab = [(1.5, 400), (0.75, 200), (3, 800)]
    sites = [
        {"name": f"lab-{i}", "org": "lab", "pipeline": "p", "mw": mw,
         "gpus": {"generation": "newest", "count": n, "tranches": 2}}
        for i, (mw, n) in enumerate(lab)
    ]  # fmt: skip
    sites.append({"name": "rival-0", "org": "rival", "pipeline": "p", "mw": 1,
                  "gpus": {"generation": "g1", "count": 300, "tranches": 1}})  # fmt: skip
    return parse_scenario({
        "name": "gpus",
        "start": "2026-01-01",
        "horizon": "6 years",
        "resources": {"crew": {"capacity": 1}},
        "pipelines": {"p": {"stages": {
            "build": {"kind": "construction", "phases": 2, "duration": {"uniform": [60, 200]},
                      "needs": {"crew": 1}},
            "gpus": {"kind": "gpus", "duration": {"uniform": [10, 60]}, "after": ["build"]},
        }}},
        "orgs": {"lab": {"tier": 1}, "rival": {"tier": 2}},
        "generations": {
            "g1": {"hbm_gb": 1, "gpu_kw": 1.0, "pflops": 1, "available": {1: "2020-01-01"}},
            "g2": {"hbm_gb": 2, "gpu_kw": 1.5, "pflops": 3,
                   "available": {1: "2026-09-01", 2: "2027-01-01"}},
        },
        "hbm": {"period": "30 days", "suppliers": {"x": {"output": [
            {"from": "2026-01-01", "gb_per_period": 300}]}}},
        "sites": sites,
        "milestones": [{"mw": 1}, {"gpus": 1000}],
    })  # fmt: skip


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("this way of computing was meant to be off")


def force(monkeypatch: pytest.MonkeyPatch, way: str) -> None:
    """Make the ordering search compute on ``way`` only (``engine``, ``lean`` or ``fast``): the
    paths ahead of it are declared ineligible, what comes after it fails if reached."""
    if way == "engine":
        monkeypatch.setattr(fastpath, "eligible", lambda model: False)
        monkeypatch.setattr(leanpath, "eligible", lambda model: False)
        return
    monkeypatch.setattr(Model, "run", _refuse)  # the engine
    if way == "lean":
        monkeypatch.setattr(fastpath, "eligible", lambda model: False)
    else:
        monkeypatch.setattr(leanpath, "outcome", _refuse)


def values_of(result: OrderSearch) -> dict[tuple[str, ...], float]:
    return {s.order: s.value for s in result.scores}


def same_search(a: OrderSearch, b: OrderSearch) -> None:
    """Two searches found the same: the same table (exactly), method and baseline."""
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert a.method == b.method
    assert a.baseline == b.baseline
    assert a.scores == b.scores


# -- 1. by hand ------------------------------------------------------------------------------------

# (ways, crew, B's own start, rival, gap, objective, value by order, the scenario's own order's
# value). Fixed durations: every replication is the same, so the median is the value itself.
E, L, F = "engine", "lean", "fast"
HAND = {
    # One crew, 5 days between starts. A > B: A starts at 0 and takes the crew, 0 -> 10; B
    # starts at 5 and waits for it, 10 -> 40. B > A: B starts at 0, 0 -> 30; A starts at 5 and
    # waits, 30 -> 40. As written (both start at 0, A first in the file): A 0 -> 10, B 10 -> 40.
    "crew_100MW": ((E, L), True, None, False, 5.0, "p50:100 MW",
                   {("A", "B"): 10.0, ("B", "A"): 30.0}, 10.0),
    "crew_200MW": ((E, L), True, None, False, 5.0, "p50:200 MW",
                   {("A", "B"): 40.0, ("B", "A"): 40.0}, 40.0),
    # One crew, a gap of 50 that outlasts the first build. A > B: A 0 -> 10, B 50 -> 80.
    # B > A: B 0 -> 30, A 50 -> 60 (the crew is free again by then).
    "crew_long_gap_100MW": ((E, L), True, None, False, 50.0, "p50:100 MW",
                            {("A", "B"): 10.0, ("B", "A"): 30.0}, 10.0),
    "crew_long_gap_200MW": ((E, L), True, None, False, 50.0, "p50:200 MW",
                            {("A", "B"): 80.0, ("B", "A"): 60.0}, 40.0),
    # The same, by when A is online, and all the lab's sites are.
    "crew_long_gap_A_online": ((E, L), True, None, False, 50.0, "p50:A online",
                               {("A", "B"): 10.0, ("B", "A"): 60.0}, 10.0),
    "crew_long_gap_all_online": ((E, L), True, None, False, 50.0, "p50:all sites online",
                                 {("A", "B"): 80.0, ("B", "A"): 60.0}, 40.0),
    # The order's priorities decide the queue. R (the rival's, first in the file) holds the crew
    # 0 -> 20; B may not start before day 10; gap 5. A > B: A queues at 0, B at max(10, 5) = 10;
    # at 20 A (priority 0) goes, 20 -> 30, then B 30 -> 60. B > A: A queues first, at 5, B at
    # max(10, 0) = 10, but B has priority 0: B 20 -> 50, A 50 -> 60. As written (equal
    # priorities: first come, first served): A 20 -> 30, B 30 -> 60. R's MW are not the lab's.
    "queue_100MW": ((E, L), True, "10 days", True, 5.0, "p50:100 MW",
                    {("A", "B"): 30.0, ("B", "A"): 50.0}, 30.0),
    "queue_200MW": ((E, L), True, "10 days", True, 5.0, "p50:200 MW",
                    {("A", "B"): 60.0, ("B", "A"): 60.0}, 60.0),
    # No resources, gap 5. A > B: A 0 -> 10, B 5 -> 35. B > A: B 0 -> 30, A 5 -> 15.
    # As written: A 0 -> 10, B 0 -> 30.
    "free_100MW": ((E, L, F), False, None, False, 5.0, "p50:100 MW",
                   {("A", "B"): 10.0, ("B", "A"): 15.0}, 10.0),
    "free_200MW": ((E, L, F), False, None, False, 5.0, "p50:200 MW",
                   {("A", "B"): 35.0, ("B", "A"): 30.0}, 30.0),
    # The same with R (0 -> 20, not the lab's: counted, it would make 200 MW by 20 in B > A).
    "free_rival_200MW": ((E, L, F), False, None, True, 5.0, "p50:200 MW",
                         {("A", "B"): 35.0, ("B", "A"): 30.0}, 30.0),
    # All the lab's sites online: R's 20 days are not the lab's (as written A 10, B 30).
    "free_rival_all_online": ((E, L, F), False, None, True, 5.0, "p50:all sites online",
                              {("A", "B"): 35.0, ("B", "A"): 30.0}, 30.0),
    "free_rival_B_online": ((E, L, F), False, None, True, 5.0, "p50:b online",
                            {("A", "B"): 35.0, ("B", "A"): 30.0}, 30.0),
    # B may not start before day 20 (its own start), gap 5: a site starts at the later of its
    # own start and its place x gap. A > B: A 0 -> 10, B max(20, 5) = 20 -> 50.
    # B > A: B max(20, 0) = 20 -> 50, A 5 -> 15. As written: A 0 -> 10, B 20 -> 50.
    "own_start_100MW": ((E, L, F), False, "20 days", False, 5.0, "p50:100 MW",
                        {("A", "B"): 10.0, ("B", "A"): 15.0}, 10.0),
    "own_start_200MW": ((E, L, F), False, "20 days", False, 5.0, "p50:200 MW",
                        {("A", "B"): 50.0, ("B", "A"): 50.0}, 50.0),
}  # fmt: skip
HAND_CASES = [
    pytest.param(name, way, id=f"{name}-{way}") for name, case in HAND.items() for way in case[0]
]


@pytest.mark.parametrize(("case", "way"), HAND_CASES)
def test_hand_computed_orders(case: str, way: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, crew, b_start, rival, gap, objective, expected, as_written = HAND[case]
    scenario = two_sites(crew, b_start, rival)
    model = Model(scenario).ordered(("B", "A"), gap, "lab")
    assert leanpath.eligible(model)  # the paths forced below would be chosen anyway
    assert fastpath.eligible(model) == (not crew)
    force(monkeypatch, way)
    org = "lab" if rival else None  # None: the only org
    result = search(scenario, objective=objective, reps=5, seed=3, org=org, gap=gap)
    assert result.method == "exhaustive"
    assert values_of(result) == expected
    assert result.baseline == Score((), as_written, as_written, as_written)
    for score in result.scores:  # every replication the same: a zero-width interval
        assert score.low == score.value == score.high
    best, worst = min(expected.values()), max(expected.values())
    assert result.scores[0].value == best  # lower is better: the best first
    if best < worst:
        assert result.scores[0].order == min(expected, key=expected.__getitem__)
    gains = result.table["gain over the scenario's order"].tolist()
    assert gains == [as_written - s.value for s in result.scores]
    goal = parse_objective(objective, scenario)
    for order, value in expected.items():
        assert evaluate(scenario, None, order, goal, "lab", 4, 9, gap).value == value


@pytest.mark.parametrize("way", ["engine", "lean"])
def test_with_no_gap_the_order_decides_who_gets_a_free_crew_first(
    way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both start at 0: the first in the rollout asks first (Model.start_order). B > A: B 0 -> 30,
    then A 30 -> 40; A > B: A 0 -> 10."""
    force(monkeypatch, way)
    result = search(two_sites(crew=True), objective="p50:100 MW", reps=3, seed=1, gap=0.0)
    assert values_of(result) == {("A", "B"): 10.0, ("B", "A"): 30.0}


# -- 2. the paths equal the engine -----------------------------------------------------------------


def engine_values(model: Model, objective: str, org: str, reps: int, seed: int) -> np.ndarray:
    """The objective's metric of each replication, run on the engine directly."""
    goal = parse_objective(objective, model.scenario)
    runs = (model.run(model.draw(replication_rng(seed, i))) for i in range(reps))
    return np.array([goal.metric(run, org) for run in runs])


PATH_CASES = {
    # name: (scenario, the path, org, the rollout, gap)
    "portfolio_lean": (
        lambda: load_scenario(shipped_scenario("portfolio")), "lean", "lab",
        ("lab-gb-1", "lab-ercot-3", "lab-nova-1", "lab-ercot-1", "lab-ercot-2"), 90.0,
    ),
    "portfolio_fast": (
        lambda: parse_scenario(without_resources("portfolio")), "fast", "lab",
        ("lab-ercot-2", "lab-gb-1", "lab-ercot-1", "lab-nova-1", "lab-ercot-3"), 45.0,
    ),
    "gpus_lean": (gpu_scenario, "lean", "lab", ("lab-2", "lab-0", "lab-1"), 30.0),
}  # fmt: skip
OBJECTIVES = {
    "portfolio_lean": ("p50:1 GW", "p50:all sites online", "p50:lab-nova-1 online",
                       "gpu-months:2029-01-01"),
    "portfolio_fast": ("p50:1 GW", "p50:all sites online", "p50:lab-nova-1 online",
                       "gpu-months:2029-01-01"),
    "gpus_lean": ("p50:1 MW", "p50:1,000 GPUs", "p50:all sites online", "p50:lab-1 online",
                  "gpu-months:2027-01-01"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "objective"),
    [(case, objective) for case, objectives in OBJECTIVES.items() for objective in objectives],
)
def test_objective_values_on_the_paths_equal_the_engine(case: str, objective: str) -> None:
    make, way, org, order, gap = PATH_CASES[case]
    scenario = make()
    base = Model(scenario)
    model = base.ordered(order, gap, org)
    # the path really is taken: else this would compare the engine with itself
    assert fastpath.eligible(model) == (way == "fast")
    assert leanpath.eligible(model)
    goal = parse_objective(objective, scenario)
    assert goal.from_outcome is not None
    reps, seed = 50, 11
    values = goal.values(model, org, Draws(base, reps, seed))
    engine = engine_values(model, objective, org, reps, seed)
    np.testing.assert_array_equal(values, engine)
    if objective.startswith("p50"):  # times that vary with the draws, all reached
        assert np.isfinite(values).all() and len(set(values)) > reps // 2
    elif case == "gpus_lean":
        assert (values > 0).all() and len(set(values)) > reps // 2
    else:  # portfolio has no GPUs: nothing to count, on either side
        assert (values == 0).all()


def test_the_gpu_scenario_has_orders_that_differ() -> None:
    """The GPU scenario above is one where the order matters (else equal values prove less)."""
    scenario = gpu_scenario()
    result = search(scenario, objective="gpu-months:2027-01-01", reps=20, seed=2, org="lab")
    values = sorted(values_of(result).values())
    assert len(result.scores) == 6 and values[-1] > 1.2 * values[0]


def test_online_objectives_are_the_online_times_mc_reports(portfolio: Scenario) -> None:
    """'all sites online' is the last of the org's sites (not every org's, as mc's is), '<site>
    online' that site's: read off the replications capsim mc computes, NaN (never) as +inf."""
    from capsim.experiments import monte_carlo

    reps, seed = 30, 5
    rows = monte_carlo(portfolio, reps=reps, seed=seed).replications
    base = Model(portfolio)
    assert leanpath.eligible(base)
    draws = Draws(base, reps, seed)
    lab = rows[[f"online:{site}" for site in PORTFOLIO_LAB]]
    expected = {
        "p50:all sites online": lab.max(axis=1, skipna=False),
        "p50:Lab-Nova-1  Online": rows["online:lab-nova-1"],  # in any case and spacing
    }
    for objective, times in expected.items():
        values = parse_objective(objective, portfolio).values(base, "lab", draws)
        np.testing.assert_array_equal(values, times.fillna(np.inf).to_numpy())
    assert (lab.max(axis=1) < rows["t_all_online"]).any()  # the other orgs' sites finish later


# -- 3. Model.ordered ------------------------------------------------------------------------------


def arrangement(model: Model) -> tuple:
    """What a rollout changes in a model."""
    return (
        [(info.start, info.priority, info.rank, info.active) for info in model.sites],
        list(model.task_priority),
        model.starts_now,
        model.perspective,
        model.rollout,
        model.active_site_tasks.tolist(),
        list(model.active_tasks),
    )


def assert_same_runs(a: Model, b: Model, seed: int, reps: range) -> None:
    for i in reps:
        values = a.draw(replication_rng(seed, i))
        np.testing.assert_array_equal(values, b.draw(replication_rng(seed, i)))
        ran, again = a.run(values), b.run(values)
        np.testing.assert_array_equal(ran.ready, again.ready)
        np.testing.assert_array_equal(ran.start, again.start)
        np.testing.assert_array_equal(ran.finish, again.finish)
        assert ran.log == again.log


@pytest.mark.parametrize(
    ("rollout", "gap", "perspective"),
    [
        (("narvik", "us-campus", "uk-cobalt"), 6.0, "lab"),
        (("us-campus", "uk-cobalt"), 0.0, "microsoft"),  # part of the sites; another org's view
        ((), 3.0, None),  # no rollout: the scenario's own starts and priorities
    ],
)
def test_ordered_is_the_model_compiled_with_that_rollout(
    stargate: Scenario, rollout: tuple[str, ...], gap: float, perspective: str | None
) -> None:
    base = Model(stargate, "build")
    before = arrangement(base)
    reference = [base.run(base.draw(replication_rng(5, i))).finish for i in range(2)]
    ordered = base.ordered(rollout, gap, perspective)
    compiled = Model(stargate, "build", rollout=rollout, gap=gap, perspective=perspective)
    assert arrangement(ordered) == arrangement(compiled)
    assert ordered.perspective == (perspective or "lab")
    if rollout:
        assert arrangement(ordered) != before  # the rollout changed something
    assert_same_runs(ordered, compiled, 5, range(2))
    # the base model is as it was, and runs as it did
    assert arrangement(base) == before
    for i, finish in enumerate(reference):
        np.testing.assert_array_equal(base.run(base.draw(replication_rng(5, i))).finish, finish)
    # an ordered model ordered again starts from the scenario's own starts, not the first order
    again = ordered.ordered(STARGATE_LAB[::-1], 2.0, "lab")
    assert arrangement(again) == arrangement(
        Model(stargate, "build", rollout=STARGATE_LAB[::-1], gap=2.0, perspective="lab")
    )
    assert arrangement(ordered) == arrangement(compiled)


def test_ordered_of_an_unknown_site_or_org_is_an_error(stargate: Scenario) -> None:
    base = Model(stargate, "build")
    with pytest.raises(CapsimError, match="did you mean 'narvik'"):
        base.ordered(["narvick"], 1.0, "lab")
    with pytest.raises(CapsimError, match="unknown org 'labb'; did you mean 'lab'"):
        base.ordered(["narvik"], 1.0, "labb")


# -- 4. workers ------------------------------------------------------------------------------------


def test_two_workers_give_the_same_exhaustive_search(portfolio: Scenario) -> None:
    args = {"objective": "p50:1 GW", "reps": 20, "seed": 4, "org": "lab", "gap": 60.0}
    one = search(portfolio, **args)
    two = search(portfolio, **args, workers=2)
    same_search(two, one)
    assert one.method == "exhaustive"
    assert {s.order for s in one.scores} == set(itertools.permutations(PORTFOLIO_LAB))


GREEDY = {"objective": "p50:1 GW", "reps": 20, "seed": 4, "org": "lab", "gap": 60.0,
          "exhaustive_limit": 2}  # fmt: skip


def replay(scores: dict[tuple[str, ...], float], sites: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The orders the greedy construction and steepest descent (lower is better) visit, from the
    scores the search found: a KeyError if the search skipped an order it should have scored."""
    tried: set[tuple[str, ...]] = set()

    def best(orders: list[tuple[str, ...]]) -> tuple[str, ...]:
        tried.update(orders)
        return min(orders, key=scores.__getitem__)  # ties: the first, as the search breaks them

    order: list[str] = []
    remaining = list(sites)
    while remaining:  # the best next site, the rest in file order
        trials = [(*order, s, *(r for r in remaining if r != s)) for s in remaining]
        order.append(best(trials)[len(order)])
        remaining.remove(order[-1])
    current = tuple(order)
    while True:  # to the best of all pairwise swaps, while strictly better
        swaps = []
        for i, j in itertools.combinations(range(len(sites)), 2):
            trial = list(current)
            trial[i], trial[j] = trial[j], trial[i]
            swaps.append(tuple(trial))
        candidate = best(swaps)
        if scores[candidate] >= scores[current]:
            return tried
        current = candidate


def test_greedy_and_local_search_do_not_depend_on_workers(portfolio: Scenario) -> None:
    one = search(portfolio, **GREEDY)
    two = search(portfolio, **GREEDY, workers=2)
    assert {s.order: s for s in two.scores} == {s.order: s for s in one.scores}
    assert [s.value for s in two.scores] == [s.value for s in one.scores]
    assert two.baseline == one.baseline and two.method == one.method
    assert one.method == "greedy + pairwise swaps"
    orders = [s.order for s in one.scores]
    assert len(set(orders)) == len(orders)
    for order in orders:
        assert sorted(order) == sorted(PORTFOLIO_LAB)
    assert one.baseline.order == ()
    values = [s.value for s in one.scores]
    assert values == sorted(values)
    # it scored exactly the orders the greedy steps and the steepest descent reach
    assert replay(values_of(one), PORTFOLIO_LAB) == set(orders)
    assert len(orders) > 15  # 5 + 4 + 3 + 2 + 1 greedy trials, then at least one round of swaps


class Reversing(Executor):
    """Runs the chunks here and hands them back last first (as another process may)."""

    def map_chunks(
        self, tasks: list[tuple[int, int]], work: Callable[..., R], large: Collection[int] = ()
    ) -> Iterator[tuple[int, R]]:
        done = [(start, work(start=start, stop=stop)) for start, stop in tasks]
        yield from reversed(done)


def test_greedy_table_does_not_depend_on_the_order_chunks_complete(portfolio: Scenario) -> None:
    one = search(portfolio, **GREEDY)
    same_search(search(portfolio, **GREEDY, executor=Reversing()), one)
    same_search(search(portfolio, **GREEDY, workers=2), one)


# -- 5. Dask ---------------------------------------------------------------------------------------


def test_a_dask_cluster_gives_the_local_search(portfolio: Scenario) -> None:
    args = {"objective": "p50:1 GW", "reps": 10, "seed": 6, "org": "lab", "gap": 30.0}
    local = search(portfolio, **args)
    executor = DaskExecutor("local", workers=2)
    try:
        assert len(executor.client.scheduler_info()["workers"]) == 2
        distributed = search(portfolio, **args, executor=executor)
        # the executor is the caller's: still usable after the search
        again = search(portfolio, **{**args, "reps": 2}, executor=executor)
    finally:
        executor.close()
    same_search(distributed, local)
    assert len(again.scores) == 120


# -- 6. the command line ---------------------------------------------------------------------------


def test_cli_order_writes_what_search_computes(
    portfolio: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    args = ["order", "scenarios/portfolio.yaml", "--org", "lab", "--reps", "10", "--gap", "2mo"]
    result = run_cli_in_process([*args, "--workers", "2", "--out", str(out)], monkeypatch, capsys)
    assert result.code == 0, result.stderr
    gap = to_time_unit("2mo", "days")
    assert gap == 2 * 365.25 / 12  # two average months, in the scenario's days
    expected = search(
        portfolio, objective="p50:1 GW", reps=10, seed=portfolio.seed, org="lab", gap=gap
    )
    reference = tmp_path / "reference.csv"
    expected.table.to_csv(reference, index=False)
    assert (out / "orderings.csv").read_bytes() == reference.read_bytes()
    written = pd.read_csv(out / "orderings.csv")
    assert len(written) == 120
    assert written["order"].iloc[0] == " > ".join(expected.scores[0].order)
    assert "120 orderings tried (exhaustive)" in flat(result.stdout)


def test_cli_order_shows_a_median_never_reached_as_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """stargate's build strategy never reaches 5 GW: every median is +inf (it crashed the
    table), written as inf and shown as never, with a note that the order changes nothing."""
    out = tmp_path / "out"
    args = ["order", "scenarios/stargate-pivot.yaml", "--strategy", "build", "--reps", "4"]
    result = run_cli_in_process([*args, "--objective", "p50:5 GW", "--out", str(out)],
                                monkeypatch, capsys)  # fmt: skip
    assert result.code == 0, result.stderr
    written = pd.read_csv(out / "orderings.csv")
    assert len(written) == 6 and (written["objective"] == np.inf).all()
    assert written["gain over the scenario's order"].isna().all()  # inf - inf
    shown = flat(result.stdout)
    assert "The scenario as written scores never" in shown
    assert "Every ordering scores never: the order makes no difference" in shown
    assert "fewer than half of the 4 replications" in shown
    row = next(line for line in result.stdout.splitlines() if "uk-cobalt > narvik" in line)
    assert [cell.strip() for cell in row.split("│")[2:6]] == ["never", "never", "never", "-"]


def test_cli_order_of_an_unknown_org_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    args = ["order", "scenarios/portfolio.yaml", "--org", "labb", "--reps", "10"]
    result = run_cli_in_process([*args, "--out", str(out)], monkeypatch, capsys)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    assert result.code == 2, result.stderr
    assert "labb" in flat(result.stderr)
    assert not out.exists()


def test_cli_order_of_an_unknown_org_says_it_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "out"
    args = ["order", "scenarios/portfolio.yaml", "--org", "labb", "--reps", "10"]
    result = run_cli_in_process([*args, "--out", str(out)], monkeypatch, capsys)
    assert result.code == 2
    message = flat(result.stderr)
    assert "unknown org 'labb'" in message and "did you mean 'lab'" in message
