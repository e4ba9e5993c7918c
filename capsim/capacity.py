"""Capacity accounting: MW, GPUs by generation and PFLOPS online over time, by org and source
(``own`` sites and the fleet at the start, ``lease`` through offtake agreements), and the dates
capacity milestones are reached. Everything is derived from the run's event log.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> from capsim.model import Model, replication_rng
>>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
>>> run = model.run(model.draw(replication_rng(1)))
>>> capacity_table(run)["total_mw_online"].iloc[-1]
np.float64(1000.0)
>>> {m.label: bool(t > 0) for m, t in milestone_times(run).items()}
{'1 GW': True, '5 GW': False}
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pandas as pd

from capsim.engine import Run
from capsim.results import to_dates
from capsim.units import DAYS_PER
from capsim.world import Milestone

_DELTA_COLUMNS = ["time", "org", "source", "generation", "gpus", "mw"]
_CAPACITY_KINDS = frozenset(
    {"mw_online", "gpus_online", "transferred", "lease_delivered", "lease_ended"}
)


def iter_deltas(run: Run) -> Iterator[tuple[float, str, str, str, float, float]]:
    """Every change of capacity, in time order: (time, org, source, generation, gpus, mw).

    Fleets count at time 0; a site's MW and GPUs count for its owner when they come online and
    move with the site when it is transferred; leased GPUs count for the customer from delivery
    until the term ends, as MW of the generation's facility power.
    """
    scenario = run.model.scenario
    gens = scenario.generations
    for org_name, org in scenario.orgs.items():
        for gen, gpus in org.fleet.items():
            yield (0.0, org_name, "own", gen, gpus, gpus * gens[gen].power_kw / 1000)
    owner = {info.spec.name: info.spec.org for info in run.model.sites}
    site_mw: dict[str, float] = defaultdict(float)
    site_gpus: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    changes = [event for event in run.log if event[1] in _CAPACITY_KINDS]
    for time, kind, subject, org, amount, generation, _, _ in changes:
        if kind == "mw_online":
            yield (time, org, "own", "", 0.0, amount)
            site_mw[subject] += amount
        elif kind == "gpus_online":
            yield (time, org, "own", generation, amount, 0.0)
            site_gpus[subject][generation] += amount
        elif kind == "transferred":
            before, owner[subject] = owner[subject], org
            yield (time, before, "own", "", 0.0, -site_mw[subject])
            yield (time, org, "own", "", 0.0, site_mw[subject])
            for gen, gpus in site_gpus[subject].items():
                yield (time, before, "own", gen, -gpus, 0.0)
                yield (time, org, "own", gen, gpus, 0.0)
        elif kind in ("lease_delivered", "lease_ended"):
            sign = 1 if kind == "lease_delivered" else -1
            mw = amount * gens[generation].power_kw / 1000
            yield (time, org, "lease", generation, sign * amount, sign * mw)


def capacity_deltas(run: Run) -> pd.DataFrame:
    """:func:`iter_deltas` as a DataFrame."""
    table = pd.DataFrame(list(iter_deltas(run)), columns=_DELTA_COLUMNS)
    return table.astype(
        {"time": float, "org": str, "source": str, "generation": str, "gpus": float, "mw": float}
    )


def capacity_table(run: Run) -> pd.DataFrame:
    """Capacity online by org over time: one row per org whenever its capacity changes, starting
    with every org at time 0.

    Columns: ``mw_own`` (its sites and fleet), ``mw_leased`` (leased GPUs' facility MW),
    ``mw_online`` (both), ``gpus_online`` and ``gpus_<generation>``, ``pflops_online``, and
    ``total_mw_online``: all orgs' own MW at that time.
    """
    scenario = run.model.scenario
    deltas = capacity_deltas(run)
    gens = list(scenario.generations)
    pflops = {g: scenario.generations[g].pflops for g in gens}
    orgs = sorted(
        {*scenario.orgs, *(i.spec.org for i in run.model.sites if i.active), *deltas["org"]}
    )
    own = deltas["source"] == "own"
    per_gpu = deltas["generation"].map(pflops).astype(float).fillna(0.0)
    d = pd.DataFrame(
        {
            "time": deltas["time"],
            "org": deltas["org"],
            "mw_own": deltas["mw"].where(own, 0.0),
            "mw_leased": deltas["mw"].where(~own, 0.0),
            "gpus_online": deltas["gpus"],
            "pflops_online": deltas["gpus"] * per_gpu,
            **{f"gpus_{g}": deltas["gpus"].where(deltas["generation"] == g, 0.0) for g in gens},
        }
    )
    start = pd.DataFrame({"time": 0.0, "org": orgs})
    d = pd.concat([start, d], ignore_index=True).fillna(0.0)
    measures = [c for c in d.columns if c not in ("time", "org")]
    steps = d.groupby(["time", "org"], sort=True)[measures].sum().reset_index()
    total_own = steps["mw_own"].cumsum()  # rows are in time order
    steps[measures] = steps.groupby("org")[measures].cumsum()
    steps.insert(
        steps.columns.get_loc("mw_leased") + 1, "mw_online", steps["mw_own"] + steps["mw_leased"]
    )
    steps["total_mw_online"] = total_own
    rounded = [*measures, "mw_online", "total_mw_online"]
    steps[rounded] = steps[rounded].round(9)  # sums of fractions of MW: no 999.9999999
    steps.insert(0, "date", to_dates(run, steps["time"]))
    return steps


def perspective_levels(run: Run, org: str | None = None) -> np.ndarray:
    """The perspective's capacity after each change, in time order: an array of rows (time, MW,
    GPUs, PFLOPS). The perspective is the ``org``'s own plus leased capacity (default: the
    model's :attr:`~capsim.model.Model.perspective`); with no perspective, all orgs' own capacity
    together. The levels are running sums (numpy's, added in order as a loop would) over its
    capacity changes.
    """
    scenario = run.model.scenario
    org = org or run.model.perspective
    if org is not None:
        deltas = [d for d in iter_deltas(run) if d[1] == org]
    else:
        deltas = [d for d in iter_deltas(run) if d[2] == "own"]
    if not deltas:
        return np.empty((0, 4))
    times, _, _, gens, gpus, mw = zip(*deltas, strict=True)
    pflops = {name: g.pflops for name, g in scenario.generations.items()}
    counts = np.array(gpus, dtype=float)
    per_gpu = np.array([pflops.get(gen, 0.0) for gen in gens])
    return np.column_stack(
        [
            times,
            np.cumsum(np.array(mw, dtype=float)),
            np.cumsum(counts),
            np.cumsum(counts * per_gpu),
        ]
    )


def milestone_times(
    run: Run, milestones: list[Milestone] | None = None, org: str | None = None
) -> dict[Milestone, float]:
    """The first model time each milestone is reached (NaN if never by the horizon), for the
    capacity of :func:`perspective_levels`. This runs once per Monte Carlo replication."""
    milestones = run.model.scenario.milestones if milestones is None else milestones
    return first_reached(perspective_levels(run, org), milestones)


def first_reached(levels: np.ndarray, milestones: list[Milestone]) -> dict[Milestone, float]:
    """The first time each milestone is reached (NaN if never) in ``levels``, rows of time, MW,
    GPUs and PFLOPS as :func:`perspective_levels` gives them."""
    out = dict.fromkeys(milestones, math.nan)
    column = {"mw": 1, "gpus": 2, "pflops": 3}
    for m in milestones:
        measure, target = m.measure
        reached = np.flatnonzero(levels[:, column[measure]] >= target - 1e-9)
        if len(reached):
            out[m] = float(levels[reached[0], 0])
    return out


def capacity_on_grid(run: Run, times: np.ndarray, org: str | None = None) -> np.ndarray:
    """The perspective's (MW, GPUs, PFLOPS) online at each of ``times`` (sorted model times),
    counting changes at exactly that time: an array of shape ``(len(times), 3)``.

    >>> from capsim.loader import load_scenario, shipped_scenario
    >>> from capsim.model import Model, replication_rng
    >>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
    >>> run = model.run(model.mean_durations())
    >>> capacity_on_grid(run, np.array([0.0, model.scenario.horizon]))[:, 0].tolist()
    [0.0, 1000.0]
    """
    return levels_on_grid(perspective_levels(run, org), times)


def levels_on_grid(levels: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The (MW, GPUs, PFLOPS) of ``levels`` (rows of time and the three levels after each change,
    as :func:`perspective_levels` gives them) at each of ``times``, counting changes at exactly
    that time."""
    return batch_on_grid(levels[None, :, 0], levels[None, :, 1:], times)[0]


def batch_on_grid(changes: np.ndarray, levels: np.ndarray, times: np.ndarray) -> np.ndarray:
    """:func:`levels_on_grid` of several replications at once: ``changes`` (replications x
    changes, the times; NaN pads a shorter replication's row at its end) and ``levels``
    (replications x changes x 3) give an array of shape (replications, len(times), 3)."""
    points = np.asarray(times) + 1e-9
    reps, n = len(changes), len(points)
    # how many changes are at or before each time (a row's changes are in time order; NaN
    # comes after every time): each change counts from the first time not before it on
    first = np.searchsorted(points, changes, side="left")
    counted = np.bincount((first + (n + 1) * np.arange(reps)[:, None]).ravel(),
                          minlength=reps * (n + 1)).reshape(reps, n + 1)  # fmt: skip
    at = np.cumsum(counted[:, :n], axis=1)
    before = np.concatenate([np.zeros((reps, 1, 3)), levels], axis=1)  # 0 before the first
    rows = at + before.shape[1] * np.arange(reps)[:, None]
    triples = before.reshape(-1, 3).view(np.dtype((np.void, 24))).ravel()  # a row each
    return np.take(triples, rows.ravel()).view(np.float64).reshape(reps, n, 3)


def gpu_hours(run: Run, org: str) -> float:
    """GPU-hours the ``org`` had online (own and leased) between the start and the horizon."""
    scenario = run.model.scenario
    hours_per_unit = 24 * DAYS_PER[scenario.time_unit]
    return hours_per_unit * sum(
        gpus * max(scenario.horizon - time, 0.0)
        for time, who, _, _, gpus, _ in iter_deltas(run)
        if who == org
    )
