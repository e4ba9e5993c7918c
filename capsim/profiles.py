"""Replication profiles: what the charts of a Monte Carlo experiment need beyond one row per
replication. Kept for the first :data:`PROFILE_REPS` replications only (a fixed sample, whatever
the number of workers or chunks), so memory does not grow with the number of replications:

- ``stage_times``: when each active site x stage became ready, started and finished;
- ``capacity``: the perspective's MW, GPUs and PFLOPS online at the start, on the first day of
  every month and at the horizon (:func:`grid`);
- ``world``: the notable events (paused, delayed, cancelled, transferred, permits refused,
  late or terminated leases) and every HBM allocation.

The summaries below turn a sample into the tables the charts draw: P10/P50/P90 bands of stage
starts and finishes (a probabilistic Gantt), capacity fans, HBM by buyer, how often what happened.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> from capsim.model import Model, replication_rng
>>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
>>> profiles = Profiles(model)
>>> for i in range(20):
...     profiles.add(i, model.run(model.draw(replication_rng(1, i))))
>>> fan = capacity_bands(model, profiles.frames()["capacity"])
>>> float(fan["mw P50"].iloc[-1])
1000.0
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import pandas as pd

from capsim.capacity import levels_on_grid, perspective_levels
from capsim.model import Model
from capsim.records import Run
from capsim.results import to_dates
from capsim.summary import NOTABLE

#: Replications 0 .. PROFILE_REPS - 1 keep profiles.
PROFILE_REPS = 1000
#: World events kept in profiles.
PROFILE_KINDS = frozenset((*NOTABLE, "hbm_allocated"))
MEASURES = ("mw", "gpus", "pflops")
QUANTILES = (0.1, 0.5, 0.9)
WORLD_COLUMNS = ("replication", "time", "kind", "subject", "org", "amount")


def grid(model: Model) -> np.ndarray:
    """The model times capacity is sampled at: the start, the first day of every month, the
    horizon."""
    return np.unique([0.0, *model.month_starts, model.scenario.horizon])


class Profiles:
    """Collects the profiles of replications: one :meth:`add` per replication, or
    :meth:`add_batch` for several at once."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.tasks = np.array(model.active_tasks, dtype=int)
        self.grid = grid(model)
        self._replications: list[np.ndarray] = []
        self._times: list[np.ndarray] = []
        self._capacity: list[np.ndarray] = []
        # the world events, a batch at a time: its columns (WORLD_COLUMNS)
        self._world: list[tuple[Sequence, ...]] = []

    def add(self, replication: int, run: Run, levels: np.ndarray | None = None) -> None:
        """Keep the profile of one replication; ``levels`` are its
        :func:`~capsim.capacity.perspective_levels`, if they are at hand already."""
        times = np.stack([run.ready[self.tasks], run.start[self.tasks], run.finish[self.tasks]],
                         axis=1)  # fmt: skip
        # the log's plain tuples, in WorldEvent field order: time, kind, subject, org, amount, ...
        world = [(replication, *e[:5]) for e in run.log if e[1] in PROFILE_KINDS]
        levels = perspective_levels(run) if levels is None else levels
        capacity = levels_on_grid(levels, self.grid)
        columns = zip(*world, strict=True)
        self.add_batch(np.array([replication]), times[None], capacity[None], *columns)

    def add_batch(
        self, replications: np.ndarray, times: np.ndarray, capacity: np.ndarray,
        *world: Sequence,
    ) -> None:  # fmt: skip
        """Keep the profiles of several replications: their numbers, the active stages' (ready,
        start, finish) as an array (replications x stages x 3), the capacity on :attr:`grid`
        (replications x points x 3) and, if any, the notable world events as six columns
        (replication, time, kind, subject, org, amount: sequences, the strings as lists or
        pandas ``str`` arrays), in log order."""
        self._replications.append(replications)
        self._times.append(times)
        self._capacity.append(capacity)
        if world:
            self._world.append(world)

    def frames(self) -> dict[str, pd.DataFrame]:
        """The profiles as three long tables: ``stage_times``, ``capacity`` and ``world``."""
        reps = np.concatenate(self._replications) if self._replications else np.empty(0, int)
        n_tasks, n_points = len(self.tasks), len(self.grid)
        times = np.concatenate(self._times).reshape(-1, 3) if self._times else np.empty((0, 3))
        stage_times = pd.DataFrame(
            {"replication": np.repeat(reps, n_tasks), "task": np.tile(self.tasks, len(reps)),
             "ready": times[:, 0], "start": times[:, 1], "finish": times[:, 2]}
        )  # fmt: skip
        levels = (
            np.concatenate(self._capacity).reshape(-1, 3) if self._capacity else np.empty((0, 3))
        )
        capacity = pd.DataFrame(
            {"replication": np.repeat(reps, n_points),
             "point": np.tile(np.arange(n_points), len(reps)),
             **{measure: levels[:, k] for k, measure in enumerate(MEASURES)}}
        )  # fmt: skip
        columns = list(zip(*self._world, strict=True)) or [()] * len(WORLD_COLUMNS)
        replication, time, kind, subject, org, amount = columns  # each: its batches' parts
        amounts = list(chain.from_iterable(amount))
        world = pd.DataFrame(
            {"replication": np.fromiter(chain.from_iterable(replication), np.int64),
             "time": np.fromiter(chain.from_iterable(time), float),
             **{name: _strings(parts)
                for name, parts in (("kind", kind), ("subject", subject), ("org", org))},
             "amount": pd.Series(amounts, dtype=None if amounts else object)}
        )  # fmt: skip
        return {"stage_times": stage_times, "capacity": capacity, "world": world}


def _strings(parts: Sequence[Sequence[str]]) -> pd.api.extensions.ExtensionArray:
    """One pandas ``str`` array of ``parts`` (lists, or ``str`` arrays taken as they are)."""
    arrays = [pd.array(part, dtype="str") for part in parts] or [pd.array([], dtype="str")]
    return arrays[0]._concat_same_type(arrays)


def _quantiles(values: pd.DataFrame, by: str | list[str], column: str) -> pd.DataFrame:
    """P10/P50/P90 of ``column`` within each group, counting NaN (not by the horizon) as later
    than every date: a quantile that falls among them is NaN."""
    filled = values.assign(**{column: values[column].fillna(np.inf)})
    table = filled.groupby(by, sort=False)[column].quantile(list(QUANTILES)).unstack()
    table.columns = [f"{column} P{round(q * 100)}" for q in QUANTILES]
    return table.replace(np.inf, np.nan)


def stage_bands(model: Model, stage_times: pd.DataFrame) -> pd.DataFrame:
    """Per active site x stage: the share of replications in which it finished and the
    P10/P50/P90 of its start and finish, as model times and as dates (the probabilistic Gantt).
    A quantile that falls among replications in which it had not happened by the horizon is NaN.
    """
    out = pd.concat(
        [_quantiles(stage_times, "task", "start"), _quantiles(stage_times, "task", "finish")],
        axis=1,
    )
    out.insert(0, "finished", stage_times.groupby("task", sort=False)["finish"].count()
               / stage_times.groupby("task", sort=False).size())  # fmt: skip
    tasks = [model.tasks[t] for t in out.index]
    out.insert(0, "stage", [t.stage for t in tasks])
    out.insert(0, "org", [model.sites[t.site].spec.org for t in tasks])
    out.insert(0, "site", [model.sites[t.site].spec.name for t in tasks])
    for column in [c for c in out.columns if c.startswith(("start P", "finish P"))]:
        out[f"{column} date"] = to_dates(model.scenario, out[column]).to_numpy()
    return out.reset_index()


def capacity_bands(model: Model, capacity: pd.DataFrame) -> pd.DataFrame:
    """At each time of :func:`grid`: P10/P50/P90 and mean of the perspective's MW, GPUs and
    PFLOPS online (the capacity fan)."""
    times = grid(model)
    groups = capacity.groupby("point")[list(MEASURES)]
    table = groups.quantile(list(QUANTILES)).unstack()
    table.columns = [f"{measure} P{round(q * 100)}" for measure, q in table.columns]
    means = groups.mean().add_suffix(" mean")
    table = pd.concat([table, means], axis=1).reindex(range(len(times)))
    table.insert(0, "time", times)
    table.insert(0, "date", to_dates(model.scenario, times).to_numpy())
    return table.reset_index(drop=True)


def hbm_by_buyer(model: Model, world: pd.DataFrame, replications: int) -> pd.DataFrame:
    """Mean GB of HBM allocated to each buyer per HBM period (over ``replications``, counting
    those that allocated nothing), indexed by the period's end date."""
    hbm = model.scenario.hbm
    ends = [t for t, _, _ in model.hbm_schedule]
    if hbm is None or not ends:
        return pd.DataFrame()
    allocated = world[world["kind"] == "hbm_allocated"]
    period = ((allocated["time"] - 1e-9) // hbm.period).astype(int).clip(0, len(ends) - 1)
    table = (
        allocated.assign(period=period)
        .pivot_table(index="period", columns="org", values="amount", aggfunc="sum")
        .reindex(index=range(len(ends)), columns=sorted(model.scenario.orgs))
        .fillna(0.0)
        / replications
    )
    table.index = pd.Index(to_dates(model.scenario, ends).to_numpy(), name="period end")
    return table.loc[:, (table != 0).any()]


def event_shares(model: Model, world: pd.DataFrame, replications: int) -> pd.DataFrame:
    """What was paused, delayed, cancelled, transferred, refused or late: per kind and subject,
    the share of ``replications`` in which it happened and the median date it first did."""
    notable = world[world["kind"] != "hbm_allocated"]
    if notable.empty:
        return pd.DataFrame(columns=["kind", "subject", "org", "share", "median date"])
    first = notable.groupby(["kind", "subject", "replication"], sort=False).agg(
        time=("time", "min"), org=("org", "first")
    )
    table = first.groupby(level=["kind", "subject"], sort=False).agg(
        org=("org", "first"), count=("time", "size"), median=("time", "median")
    )
    table["share"] = table.pop("count") / replications
    table["median date"] = to_dates(model.scenario, table.pop("median")).to_numpy()
    return table.reset_index().sort_values("share", ascending=False, kind="stable")
