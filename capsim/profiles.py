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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from capsim.capacity import batch_on_grid, levels_on_grid, perspective_levels
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
#: the world's string columns, kept in a batch as codes into its ``strings``
STRING_COLUMNS = ("kind", "subject", "org")
DTYPES = {"replication": np.int64, "time": float, "amount": float}  # codes are int64


def grid(model: Model) -> np.ndarray:
    """The model times capacity is sampled at: the start, the first day of every month, the
    horizon."""
    return np.unique([0.0, *model.month_starts, model.scenario.horizon])


@dataclass(frozen=True)
class ProfileBatch:
    """The profiles of some replications as arrays: what a chunk of replications sends back
    (cheap to send and to put together); :meth:`frames` makes the tables once.

    ``replications`` (n), ``tasks`` (the active stages' task numbers), ``times`` (n x stages x
    3: ready, start, finish), ``capacity`` (n x :func:`grid` points x 3: MW, GPUs, PFLOPS) and
    ``world``: the notable world events, in log order, as the six :data:`WORLD_COLUMNS` arrays,
    amounts as floats (NaN for none) and kinds, subjects and orgs as codes into ``strings``.
    """

    replications: np.ndarray
    tasks: np.ndarray
    times: np.ndarray
    capacity: np.ndarray
    world: tuple[np.ndarray, ...]
    strings: tuple[str, ...]

    @property
    def size(self) -> int:
        """How many replications it holds."""
        return len(self.replications)

    @classmethod
    def concat(cls, batches: Sequence[ProfileBatch]) -> ProfileBatch:
        """``batches`` (at least one, of one model and the same ``strings``) one after the
        other."""
        first = batches[0]
        if len(batches) == 1:
            return first
        return cls(
            np.concatenate([b.replications for b in batches]), first.tasks,
            np.concatenate([b.times for b in batches]),
            np.concatenate([b.capacity for b in batches]),
            tuple(map(np.concatenate, zip(*(b.world for b in batches), strict=True))),
            first.strings,
        )  # fmt: skip

    def frames(self) -> dict[str, pd.DataFrame]:
        """The profiles as three long tables: ``stage_times``, ``capacity`` and ``world``."""
        reps, n = self.replications, self.size
        times = self.times.reshape(-1, 3)
        stage_times = pd.DataFrame(
            {"replication": np.repeat(reps, len(self.tasks)), "task": np.tile(self.tasks, n),
             "ready": times[:, 0], "start": times[:, 1], "finish": times[:, 2]},
            copy=False,  # the columns as they are (a copy into one block costs 20x more)
        )  # fmt: skip
        points, levels = self.capacity.shape[1], self.capacity.reshape(-1, 3)
        capacity = pd.DataFrame(
            {"replication": np.repeat(reps, points), "point": np.tile(np.arange(points), n),
             **{measure: levels[:, k] for k, measure in enumerate(MEASURES)}},
            copy=False,
        )  # fmt: skip
        strings = pd.array(list(self.strings), dtype="str")
        world = pd.DataFrame(
            {name: strings.take(column) if name in STRING_COLUMNS else column
             for name, column in zip(WORLD_COLUMNS, self.world, strict=True)},
            copy=False,
        )  # fmt: skip
        return {"stage_times": stage_times, "capacity": capacity, "world": world}

    @classmethod
    def from_frames(cls, frames: dict[str, pd.DataFrame]) -> ProfileBatch:
        """The batch whose :meth:`frames` are ``frames`` (as read back from a chunk's files)."""
        stage_times, capacity, world = frames["stage_times"], frames["capacity"], frames["world"]
        reps = capacity["replication"].unique()
        n_tasks = len(stage_times) // max(len(reps), 1)
        codes, strings = pd.factorize(
            np.concatenate([world[name].to_numpy(object) for name in STRING_COLUMNS])
        )
        parts = dict(zip(STRING_COLUMNS, np.split(codes.astype(np.int64), 3), strict=True))
        return cls(
            reps, stage_times["task"].to_numpy()[:n_tasks],
            stage_times[["ready", "start", "finish"]].to_numpy().reshape(len(reps), n_tasks, 3),
            capacity[list(MEASURES)].to_numpy().reshape(len(reps), -1, 3),
            tuple(parts[name] if name in parts else world[name].to_numpy(DTYPES[name])
                  for name in WORLD_COLUMNS),
            tuple(strings),
        )  # fmt: skip


class Profiles:
    """Collects the profiles of replications: one :meth:`add` per replication, or
    :meth:`add_batch` for several at once; :meth:`batch` gives them all."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.tasks = np.array(model.active_tasks, dtype=int)
        self.grid = grid(model)
        self._batches: list[ProfileBatch] = []
        self._codes: dict[str, int] = {}  # of the world's strings, as they come

    def codes(self, strings: Iterable[str]) -> np.ndarray:
        """The codes of ``strings`` in the world columns of :meth:`add_batch`."""
        return _encode(self._codes, strings)

    def add_chunk(
        self, reps: np.ndarray, ready: np.ndarray, start: np.ndarray, finish: np.ndarray,
        times: np.ndarray, levels: np.ndarray,
        world: Callable[[int], Sequence[Sequence]] | None = None,
    ) -> None:  # fmt: skip
        """Keep the profiles of a chunk's replications ``reps`` (consecutive) below
        :data:`PROFILE_REPS`, from its arrays: the active stages' ``ready``, ``start`` and
        ``finish`` (replications x stages), the capacity changes (``times`` and ``levels``, as
        :func:`~capsim.capacity.batch_on_grid` takes them) and ``world(k)``, the world columns
        of its first ``k`` replications (see :meth:`add_batch`; none without ``world``)."""
        k = min(len(reps), PROFILE_REPS - int(reps[0])) if len(reps) else 0
        if k <= 0:
            return
        stage_times = np.empty((k, ready.shape[1], 3))  # in C order, whatever theirs
        for j, column in enumerate((ready, start, finish)):
            stage_times[:, :, j] = column[:k]
        on_grid = batch_on_grid(times[:k], levels[:k], self.grid)
        self.add_batch(reps[:k], stage_times, on_grid, *(world(k) if world else ()))

    def add(self, replication: int, run: Run, levels: np.ndarray | None = None) -> None:
        """Keep the profile of one replication; ``levels`` are its
        :func:`~capsim.capacity.perspective_levels`, if they are at hand already."""
        times = np.stack([run.ready[self.tasks], run.start[self.tasks], run.finish[self.tasks]],
                         axis=1)  # fmt: skip
        # the log's plain tuples, in WorldEvent field order: time, kind, subject, org, amount, ...
        world = [(replication, *e[:5]) for e in run.log if e[1] in PROFILE_KINDS]
        levels = perspective_levels(run) if levels is None else levels
        capacity = levels_on_grid(levels, self.grid)
        columns = [
            self.codes(column) if name in STRING_COLUMNS else column
            for name, column in zip(WORLD_COLUMNS, zip(*world, strict=True), strict=True)
        ] if world else []  # fmt: skip
        self.add_batch(np.array([replication]), times[None], capacity[None], *columns)

    def add_batch(
        self, replications: np.ndarray, times: np.ndarray, capacity: np.ndarray,
        *world: Sequence,
    ) -> None:  # fmt: skip
        """Keep the profiles of several replications: their numbers, the active stages' (ready,
        start, finish) as an array (replications x stages x 3), the capacity on :attr:`grid`
        (replications x points x 3) and, if any, the notable world events as the six
        :data:`WORLD_COLUMNS`, in log order, kinds, subjects and orgs by their :meth:`codes`."""
        reps = np.asarray(replications, dtype=np.int64)
        self._batches.append(ProfileBatch(reps, self.tasks, times, capacity, _world(world), ()))

    def batch(self) -> ProfileBatch:
        """Every profile kept, as one batch."""
        if not self._batches:
            self.add_batch(np.empty(0), np.empty((0, len(self.tasks), 3)),
                           np.empty((0, len(self.grid), 3)))  # fmt: skip
        strings = tuple(self._codes)  # the codes of every batch added: they only grow
        return ProfileBatch.concat([replace(b, strings=strings) for b in self._batches])

    def frames(self) -> dict[str, pd.DataFrame]:
        """The profiles as three long tables (:meth:`ProfileBatch.frames`)."""
        return self.batch().frames()


class Sample:
    """The profiles of a Monte Carlo run: its first ``size`` replications', kept as chunks bring
    them (in any order) and put together when asked (:meth:`batch`): a run whose profiles are
    not looked at does not copy them.

    >>> from capsim.loader import load_scenario, shipped_scenario
    >>> from capsim.model import Model, replication_rng
    >>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
    >>> sample, first, second = Sample(model, 3), Profiles(model), Profiles(model)
    >>> for i in (2, 3):
    ...     second.add(i, model.run(model.draw(replication_rng(1, i))))
    >>> for i in (0, 1):
    ...     first.add(i, model.run(model.draw(replication_rng(1, i))))
    >>> sample.add(second.batch()); sample.add(first.batch())
    >>> sample.batch(4).replications.tolist()
    [0, 1, 2]
    """

    def __init__(self, model: Model, size: int) -> None:
        self.size = size
        self.tasks = np.array(model.active_tasks, dtype=int)
        self.points = len(grid(model))
        self._batches: dict[int, ProfileBatch] = {}  # by first replication, those below size

    def add(self, batch: ProfileBatch) -> None:
        """Take the profiles of ``batch`` (those of replications below ``size``; a batch holds
        replications that no other batch added holds, as a chunk's do)."""
        batch = _below(batch, self.size)
        if batch.size:
            self._batches[int(batch.replications.min())] = batch

    def batch(self, stop: int) -> ProfileBatch:
        """The profiles kept of replications 0 to ``stop - 1``, in replication order (the world
        events of each in log order), as one batch."""
        parts = [_below(b, stop) for first, b in sorted(self._batches.items()) if first < stop]
        if not parts:
            empty = (np.empty(0, np.int64), self.tasks, np.empty((0, len(self.tasks), 3)),
                     np.empty((0, self.points, 3)), _world(()), ())  # fmt: skip
            return ProfileBatch(*empty)
        codes: dict[str, int] = {}  # one table of the world's strings for all of them
        for k, part in enumerate(parts):
            recode = _encode(codes, part.strings)
            world = tuple(
                recode[column] if name in STRING_COLUMNS else column
                for name, column in zip(WORLD_COLUMNS, part.world, strict=True)
            )
            parts[k] = replace(part, world=world)
        return replace(ProfileBatch.concat(parts), strings=tuple(codes))


def _below(batch: ProfileBatch, stop: int) -> ProfileBatch:
    """The profiles in ``batch`` of replications below ``stop`` (``batch`` itself if all are)."""
    keep = batch.replications < stop
    if keep.all():
        return batch
    events = batch.world[0] < stop
    return replace(
        batch, replications=batch.replications[keep], times=batch.times[keep],
        capacity=batch.capacity[keep], world=tuple(column[events] for column in batch.world),
    )  # fmt: skip


def _encode(codes: dict[str, int], strings: Iterable[str]) -> np.ndarray:
    """The codes of ``strings`` in ``codes``, new ones numbered as they come."""
    return np.fromiter((codes.setdefault(s, len(codes)) for s in strings), np.int64)


def _world(columns: Sequence[Sequence]) -> tuple[np.ndarray, ...]:
    """The world events' :data:`WORLD_COLUMNS` (none: empty ones) as a batch's arrays."""
    return tuple(
        np.asarray(column, dtype=DTYPES.get(name, np.int64))
        for name, column in zip(WORLD_COLUMNS, columns or [()] * len(WORLD_COLUMNS), strict=True)
    )


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
