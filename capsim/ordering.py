"""Rollout-ordering search: in which order should an org start its sites, and which of them gets
HBM and scarce resources first?

An ordering is evaluated by simulating it over the same replications as every other ordering
(common random numbers: replication ``i`` draws the same world whatever the order), so differences
between orderings are not sampling noise. Up to ``exhaustive_limit`` sites every permutation is
tried; beyond that a greedy construction (place, one position at a time, the site that scores
best next) is improved by local search (swap two sites while that helps).

Objectives:

- ``p50:<milestone>``: the median time to a capacity milestone (e.g. ``p50:1 GW``), lower is better;
- ``gpu-months:<date>``: the expected GPU-months the org has online by a date, higher is better;
- ``npv``: the expected NPV of the org's costs, lower is better.

>>> from capsim.loader import load_scenario, default_scenario_path
>>> scenario = load_scenario(default_scenario_path())
>>> result = search(scenario, strategy="build", objective="p50:1 GW", reps=8, seed=1)
>>> len(result.table), result.table.columns[0]
(6, 'order')
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capsim.capacity import iter_deltas, milestone_times
from capsim.costs import cost_summary
from capsim.engine import Run
from capsim.errors import CapsimError, did_you_mean
from capsim.model import Model, replication_rng
from capsim.schema import Scenario
from capsim.units import DAYS_PER, from_date

OBJECTIVES_HELP = (
    "p50:<milestone> (e.g. p50:1 GW), gpu-months:<date> (e.g. gpu-months:2030-01-01), npv"
)


@dataclass(frozen=True)
class Objective:
    """What an ordering is scored on: a number per replication and how to aggregate it."""

    name: str
    metric: Callable[[Run, str], float]
    median: bool  # aggregate by the median (else the mean)
    lower_is_better: bool
    unit: str


def parse_objective(text: str, scenario: Scenario) -> Objective:
    """Read an objective such as ``p50:1 GW``; raise :class:`CapsimError` saying what is allowed."""
    kind, _, arg = text.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind == "p50":
        labels = {m.label: m for m in scenario.milestones}
        if arg not in labels:
            raise CapsimError(f"objective {text!r}: " + did_you_mean(arg, labels, "milestone"))
        milestone = labels[arg]

        def time_to(run: Run, org: str) -> float:
            t = milestone_times(run, [milestone], org)[milestone]
            return math.inf if math.isnan(t) else t

        return Objective(text, time_to, median=True, lower_is_better=True, unit=scenario.time_unit)
    if kind == "gpu-months":
        import datetime as dt

        try:
            date = dt.date.fromisoformat(arg)
        except ValueError:
            raise CapsimError(f"objective {text!r}: expected gpu-months:YYYY-MM-DD") from None
        until = from_date(scenario.start, date, scenario.time_unit)
        months = DAYS_PER[scenario.time_unit] / DAYS_PER["months"]

        def gpu_months(run: Run, org: str) -> float:
            return months * sum(
                gpus * max(until - time, 0.0)
                for time, who, *_, gpus, _ in iter_deltas(run)
                if who == org
            )

        return Objective(text, gpu_months, median=False, lower_is_better=False, unit="GPU-months")
    if kind == "npv" and not arg:
        return Objective(
            text,
            lambda run, org: cost_summary(run, org)["npv_cost"],
            median=False,
            lower_is_better=True,
            unit="USD",
        )
    raise CapsimError(f"unknown objective {text!r}; allowed: {OBJECTIVES_HELP}")


@dataclass(frozen=True)
class Score:
    """An ordering's score over the replications, with a 95% confidence interval."""

    order: tuple[str, ...]
    value: float
    low: float
    high: float


def evaluate(
    scenario: Scenario,
    strategy: str | None,
    order: Sequence[str],
    objective: Objective,
    org: str,
    reps: int,
    seed: int,
    gap: float = 0.0,
) -> Score:
    """Score one ordering over replications ``0 .. reps - 1`` of ``seed``."""
    model = Model(scenario, strategy, rollout=order, gap=gap)
    values = np.array(
        [
            objective.metric(model.run(model.draw(replication_rng(seed, i))), org)
            for i in range(reps)
        ]
    )
    if objective.median:
        ranked = np.sort(values)
        half = 1.96 * math.sqrt(reps) / 2  # order-statistic interval of the median
        low = ranked[max(math.floor(reps / 2 - half), 0)]
        high = ranked[min(math.ceil(reps / 2 + half), reps - 1)]
        return Score(tuple(order), float(np.median(values)), float(low), float(high))
    mean = float(values.mean())
    half = 1.96 * float(values.std(ddof=1)) / math.sqrt(reps) if reps > 1 else math.nan
    return Score(tuple(order), mean, mean - half, mean + half)


@dataclass
class OrderSearch:
    """The orderings tried, best first, and the scenario's own order for comparison."""

    objective: Objective
    method: str
    scores: list[Score]
    baseline: Score

    @property
    def table(self) -> pd.DataFrame:
        rows = [
            {
                "order": " > ".join(s.order),
                "objective": s.value,
                "95% CI low": s.low,
                "95% CI high": s.high,
                "gain over the scenario's order": self._gain(s),
            }
            for s in self.scores
        ]
        return pd.DataFrame(rows)

    def _gain(self, score: Score) -> float:
        sign = -1 if self.objective.lower_is_better else 1
        return sign * (score.value - self.baseline.value) + 0.0  # no -0.0


def search(
    scenario: Scenario,
    *,
    strategy: str | None = None,
    objective: str,
    reps: int,
    seed: int,
    org: str | None = None,
    gap: float = 0.0,
    exhaustive_limit: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> OrderSearch:
    """Find good rollout orders of ``org``'s sites (default: the scenario's perspective org)."""
    goal = parse_objective(objective, scenario)
    model = Model(scenario, strategy)
    org = org or scenario.lab or _only_org(model)
    sites = [i.spec.name for i in model.sites if i.active and i.spec.org == org]
    if len(sites) < 2:
        raise CapsimError(f"{org} has {len(sites)} active site(s); nothing to order")

    def score(order: Sequence[str]) -> Score:
        return evaluate(scenario, strategy, order, goal, org, reps, seed, gap)

    def key(s: Score) -> float:
        return s.value if goal.lower_is_better else -s.value

    # the scenario as written: its own starts and priorities, no rollout applied
    baseline = score(())
    if len(sites) <= exhaustive_limit:
        orders = list(itertools.permutations(sites))
        scores = []
        for n, order in enumerate(orders, 1):
            scores.append(score(order))
            if progress:
                progress(n, len(orders))
        return OrderSearch(goal, "exhaustive", sorted(scores, key=key), baseline)
    tried: dict[tuple[str, ...], Score] = {}
    order: list[str] = []
    remaining = list(sites)
    while remaining:  # greedy: the best next site, the rest following in file order
        candidates = []
        for site in remaining:
            trial = tuple([*order, site, *(s for s in remaining if s != site)])
            tried[trial] = tried.get(trial) or score(trial)
            candidates.append(tried[trial])
        best = min(candidates, key=key)
        order.append(best.order[len(order)])
        remaining.remove(order[-1])
        if progress:
            progress(len(order), len(sites))
    current = tried[tuple(order)]
    improved = True
    while improved:  # local search: swap two sites while that helps
        improved = False
        for i, j in itertools.combinations(range(len(sites)), 2):
            trial = list(current.order)
            trial[i], trial[j] = trial[j], trial[i]
            result = tried.get(tuple(trial)) or score(trial)
            tried[tuple(trial)] = result
            if key(result) < key(current):
                current, improved = result, True
    return OrderSearch(goal, "greedy + pairwise swaps", sorted(tried.values(), key=key), baseline)


def _only_org(model: Model) -> str:
    orgs = sorted({i.spec.org for i in model.sites if i.active})
    if len(orgs) == 1:
        return orgs[0]
    raise CapsimError(f"say whose sites to order with --org (one of {', '.join(orgs)})")
