"""Rollout-ordering search: in which order should an org start its sites, and which of them gets
HBM and scarce resources first?

An ordering is evaluated by simulating it over the same replications as every other ordering
(common random numbers: replication ``i`` draws the same world whatever the order), so differences
between orderings are not sampling noise. Up to ``exhaustive_limit`` sites every permutation is
tried; beyond that a greedy construction (place, one position at a time, the site that scores
best next) is improved by local search (of all the orders that swap two sites, move to the best
while it is better). The orderings of each step are scored in chunks on an
:class:`~capsim.executors.Executor` (``workers`` processes or a Dask cluster), each on the
vectorised or lean path where Monte Carlo would use it (the capacity milestones and GPU-months
are read off their capacity changes), else on the engine: the same numbers either way.

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

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capsim import fastpath, leanpath
from capsim.capacity import iter_deltas, milestone_times
from capsim.costs import cost_summary
from capsim.engine import Run
from capsim.errors import CapsimError, did_you_mean
from capsim.executors import Executor, LocalExecutor
from capsim.fastpath import Outcome
from capsim.model import Model, replication_rng, replication_uniforms
from capsim.replications import compiled
from capsim.schema import Scenario
from capsim.units import DAYS_PER, from_date, parse_date, to_date

OBJECTIVES_HELP = (
    "p50:<milestone> (e.g. p50:1 GW, p50:all sites online, p50:<site> online), "
    "gpu-months:<date> (e.g. gpu-months:2030-01-01), npv"
)
ALL_ONLINE = "all sites online"


@dataclass(frozen=True)
class Objective:
    """What an ordering is scored on: a number per replication and how to aggregate it."""

    name: str
    metric: Callable[[Run, str], float]
    median: bool  # aggregate by the median (else the mean)
    lower_is_better: bool
    unit: str
    #: the metric of many replications at once from what an array path gives
    #: (:class:`capsim.fastpath.Outcome`; ``model`` measures ``org``), if it needs nothing else
    from_outcome: Callable[[Outcome, Model, str], np.ndarray] | None = None
    site: str | None = None  # the site whose online time it is, if it is one's

    def values(self, model: Model, org: str, draws: Draws) -> np.ndarray:
        """The metric of the replications of ``draws`` (``model`` measures ``org``'s
        capacity): on the fast or lean path if one applies, else on the engine."""
        if self.from_outcome is not None:
            for path in (fastpath, leanpath):
                if path.eligible(model):
                    return self.from_outcome(path.outcome(model, draws.values), model, org)
        runs = (model.run(model.draw(replication_rng(draws.seed, i))) for i in range(draws.reps))
        return np.array([self.metric(run, org) for run in runs])


class Draws:
    """Replications ``0 .. reps - 1`` of ``seed``, and their slot values (made on first use):
    the same whatever the order of the sites, so drawn once for every order scored."""

    def __init__(self, model: Model, reps: int, seed: int) -> None:
        self.model, self.reps, self.seed = model, reps, seed

    @functools.cached_property
    def values(self) -> np.ndarray:
        """Their slot values (:meth:`Model.values`), a row each."""
        uniforms = replication_uniforms(self.seed, np.arange(self.reps), self.model.n_slots)
        return self.model.values(uniforms)


def parse_objective(text: str, scenario: Scenario) -> Objective:
    """Read an objective such as ``p50:1 GW``; raise :class:`CapsimError` saying what is allowed.

    >>> from capsim.loader import load_scenario, shipped_scenario
    >>> goal = parse_objective("p50:1 gw", load_scenario(shipped_scenario("stargate-pivot")))
    >>> goal.name, goal.median, goal.lower_is_better, goal.unit
    ('p50:1 gw', True, True, 'months')
    """
    kind, _, arg = text.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind == "p50":
        return _time_to(text, arg, scenario)
    if kind == "gpu-months":
        return _gpu_months(text, arg, scenario)
    if kind == "npv" and not arg:
        return Objective(
            text,
            lambda run, org: cost_summary(run, org)["npv_cost"],
            median=False,
            lower_is_better=True,
            unit="USD",
        )
    raise CapsimError(f"unknown objective {text!r}; allowed: {OBJECTIVES_HELP}")


def _time_to(text: str, arg: str, scenario: Scenario) -> Objective:
    """``p50:<arg>``: the median time until a capacity milestone of the org, until all of its
    sites are online, or until one site is (+inf when not reached by the horizon)."""
    milestones = {m.label.lower(): m for m in scenario.milestones}
    sites = {f"{site.name} online".lower(): site.name for site in scenario.sites}
    key, site = " ".join(arg.lower().split()), None
    if key in milestones:
        milestone = milestones[key]

        def metric(run: Run, org: str) -> float:
            return milestone_times(run, [milestone], org)[milestone]

        def many(outcome: Outcome, model: Model, org: str) -> np.ndarray:
            return fastpath.reached(milestone, outcome.times, outcome.levels)

    elif key == ALL_ONLINE:

        def metric(run: Run, org: str) -> float:
            return _last_online(run.site_online()[None, :], run.model, org)[0]

        def many(outcome: Outcome, model: Model, org: str) -> np.ndarray:
            return _last_online(outcome.online, model, org)

    elif key in sites:
        site = sites[key]

        def metric(run: Run, org: str) -> float:
            return run.site_online()[_active(run.model).index(site)]

        def many(outcome: Outcome, model: Model, org: str) -> np.ndarray:
            return outcome.online[:, _active(model).index(site)]

    else:
        labels = [m.label for m in scenario.milestones]
        allowed = (
            f"p50 takes a capacity milestone of the scenario ({', '.join(labels) or 'none'}), "
            f"'{ALL_ONLINE}' or '<site> online'"
        )
        if not arg:
            raise CapsimError(f"objective {text!r}: a milestone is missing; {allowed}")
        known = [*labels, ALL_ONLINE, *(f"{name} online" for name in sites.values())]
        raise CapsimError(f"objective {text!r}: " + did_you_mean(arg, known, "milestone", allowed))

    def time(run: Run, org: str) -> float:
        t = metric(run, org)
        return math.inf if math.isnan(t) else t

    def times(outcome: Outcome, model: Model, org: str) -> np.ndarray:
        t = many(outcome, model, org)
        return np.where(np.isnan(t), math.inf, t)

    return Objective(
        text, time, median=True, lower_is_better=True, unit=scenario.time_unit,
        from_outcome=times, site=site,
    )  # fmt: skip


def _active(model: Model) -> list[str]:
    """The names of ``model``'s active sites, in site order (as ``online`` has them)."""
    return [info.spec.name for info in model.sites if info.active]


def _last_online(online: np.ndarray, model: Model, org: str) -> np.ndarray:
    """When the last of ``org``'s active sites came online, by replication (NaN: one did not)."""
    mine = [k for k, info in enumerate(i for i in model.sites if i.active) if info.spec.org == org]
    return online[:, mine].max(axis=1, initial=-np.inf)  # NaN wins


def _gpu_months(text: str, arg: str, scenario: Scenario) -> Objective:
    """``gpu-months:<date>``: the expected GPU-months the org has online from the start to the
    date (within the horizon)."""
    try:
        date = parse_date(arg)
    except ValueError:
        raise CapsimError(f"objective {text!r}: expected gpu-months:YYYY-MM-DD") from None
    end = to_date(scenario.start, scenario.horizon, scenario.time_unit)
    if not scenario.start < date <= end:
        raise CapsimError(
            f"objective {text!r}: the date must be after the scenario's start ({scenario.start}) "
            f"and no later than its horizon ({end})"
        )
    until = from_date(scenario.start, date, scenario.time_unit)
    months = DAYS_PER[scenario.time_unit] / DAYS_PER["months"]

    def gpu_months(run: Run, org: str) -> float:
        return months * sum(
            gpus * max(until - time, 0.0)
            for time, who, *_, gpus, _ in iter_deltas(run)
            if who == org
        )

    def many(outcome: Outcome, model: Model, org: str) -> np.ndarray:
        times, levels = outcome.times, outcome.levels
        if not times.shape[1]:
            return np.zeros(len(times))
        gpus = np.diff(levels[:, :, 1], axis=1, prepend=0.0)  # each change's GPUs
        weight = np.where(np.isnan(times), 0.0, np.maximum(until - times, 0.0))
        return months * np.cumsum(gpus * weight, axis=1)[:, -1]  # summed in order, as above

    return Objective(
        text, gpu_months, median=False, lower_is_better=False, unit="GPU-months",
        from_outcome=many,
    )  # fmt: skip


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
    """Score one ordering over replications ``0 .. reps - 1`` of ``seed``
    (:meth:`Objective.values`)."""
    model = Model(scenario, strategy)
    return _score(model, order, objective, org, Draws(model, reps, seed), gap)


def _score(
    base: Model, order: Sequence[str], objective: Objective, org: str, draws: Draws, gap: float
) -> Score:
    """:func:`evaluate` of ``base`` (the scenario's model) in ``order``."""
    values = objective.values(base.ordered(order, gap, org), org, draws)
    reps = draws.reps
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


def score_orders(
    scenario: Scenario, strategy: str | None, objective: str, org: str, reps: int, seed: int,
    gap: float, orders: Sequence[tuple[str, ...]], start: int, stop: int,
) -> list[Score]:  # fmt: skip
    """:func:`evaluate` of ``orders[start:stop]``: the work of a chunk of the search (the
    objective as text: it is sent to other processes)."""
    goal, base = parse_objective(objective, scenario), compiled(scenario, strategy)
    draws = Draws(base, reps, seed)
    return [_score(base, order, goal, org, draws, gap) for order in orders[start:stop]]


#: About how many replications a chunk of orderings runs (fewer orderings when there are few).
CHUNK_REPS = 2000


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
    workers: int = 1,
    executor: Executor | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> OrderSearch:
    """Find good rollout orders of ``org``'s sites (default: the scenario's perspective org),
    scoring each step's orderings on ``executor`` (default: ``workers`` local processes).
    ``progress(done, total)`` after each chunk: orderings scored, and how many there will be
    (None while the local search goes on)."""
    goal = parse_objective(objective, scenario)
    if not gap >= 0:
        raise CapsimError(f"the gap between starts must be 0 or more, got {gap:g}")
    model = Model(scenario, strategy)
    org = org or scenario.lab or _only_org(model)
    orgs = {*scenario.orgs, *(info.spec.org for info in model.sites)}
    if org not in orgs:
        raise CapsimError(did_you_mean(org, orgs, "org"))
    if goal.site is not None and goal.site not in _active(model):
        raise CapsimError(f"objective {objective!r}: {_not_active(scenario, strategy, goal.site)}")
    sites = [i.spec.name for i in model.sites if i.active and i.spec.org == org]
    if len(sites) < 2:
        pursued = [
            name for name, s in scenario.strategies.items()
            if sum(i.active and i.spec.org == org for i in Model(scenario, name).sites) > 1
        ]  # fmt: skip
        hint = f"; with --strategy {' or '.join(pursued)} it has more" if pursued else ""
        where = f" under strategy {strategy}" if strategy else ""
        raise CapsimError(f"{org} has {len(sites)} active site(s){where}; nothing to order{hint}")
    owned = executor is None  # an executor passed in is the caller's to close
    executor = executor or LocalExecutor(workers)
    tried: dict[tuple[str, ...], Score] = {}

    def score(orders: list[tuple[str, ...]], total: int | None) -> list[Score]:
        """The scores of ``orders``, scoring those not tried yet in chunks."""
        new = [order for order in dict.fromkeys(orders) if order not in tried]
        per = max(1, min(CHUNK_REPS // reps, math.ceil(len(new) / 8)))
        tasks = [(i, min(i + per, len(new))) for i in range(0, len(new), per)]
        work = functools.partial(
            score_orders, scenario, strategy, objective, org, reps, seed, gap, new
        )
        done: dict[int, list[Score]] = {}
        for start, scores in executor.map_chunks(tasks, work):
            done[start] = scores
            if progress:
                progress(len(tried) + sum(map(len, done.values())), total)
        for start in sorted(done):  # in the order of orders, wherever they ran: ties too
            tried.update(zip(new[start : start + len(done[start])], done[start], strict=True))
        return [tried[order] for order in orders]

    def key(s: Score) -> float:
        return s.value if goal.lower_is_better else -s.value

    try:
        # the scenario as written: its own starts and priorities, no rollout applied
        baseline = score([()], None)[0]
        del tried[()]
        if len(sites) <= exhaustive_limit:
            scores = score(list(itertools.permutations(sites)), math.factorial(len(sites)))
            return OrderSearch(goal, "exhaustive", sorted(scores, key=key), baseline)
        order: list[str] = []
        remaining = list(sites)
        greedy = len(sites) * (len(sites) + 1) // 2  # orderings the greedy steps score
        while remaining:  # greedy: the best next site, the rest following in file order
            trials = [(*order, site, *(s for s in remaining if s != site)) for site in remaining]
            best = min(score(trials, greedy), key=key)
            order.append(best.order[len(order)])
            remaining.remove(order[-1])
        current = tried[tuple(order)]
        while True:  # local search: to the best order that swaps two sites, while it is better
            swaps = []
            for i, j in itertools.combinations(range(len(sites)), 2):
                trial = list(current.order)
                trial[i], trial[j] = trial[j], trial[i]
                swaps.append(tuple(trial))
            best = min(score(swaps, None), key=key)
            if key(best) >= key(current):
                break
            current = best
        method = "greedy + pairwise swaps"
        return OrderSearch(goal, method, sorted(tried.values(), key=key), baseline)
    finally:
        if owned:
            executor.close()


def _not_active(scenario: Scenario, strategy: str | None, site: str) -> str:
    """Why ``site`` has no online time under ``strategy``."""
    named = [name for name, s in scenario.strategies.items() if site in s.sites]
    if strategy is None and named:
        return f"site {site} is built only by strategy {' or '.join(named)}; say --strategy"
    return f"site {site} is not built under strategy {strategy}"


def _only_org(model: Model) -> str:
    orgs = sorted({i.spec.org for i in model.sites if i.active})
    if len(orgs) == 1:
        return orgs[0]
    raise CapsimError(f"say whose sites to order with --org (one of {', '.join(orgs)})")
