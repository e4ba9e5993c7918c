"""The vectorised critical-path method: many replications of a pure precedence scenario at once.

When no active stage waits for anything but its predecessors (no shared resources, no stage
kinds, risks, leases or markets), every replication's schedule is a longest-path computation over
the stage DAG. Here it runs for all replications of a chunk at once, one numpy operation per
stage, and gives exactly the rows and per-stage tallies the discrete-event engine gives (the same
draws, the same arithmetic): :func:`capsim.replications.run_chunk` uses it automatically.

>>> from capsim.loader import parse_scenario
>>> scenario = parse_scenario({
...     "name": "chain", "start": "2026-01-01", "horizon": "10 years",
...     "pipelines": {"p": {"stages": {"a": {"duration": {"uniform": [10, 20]}},
...                                    "b": {"duration": 5, "after": ["a"]}}}},
...     "sites": [{"name": "s", "org": "lab", "pipeline": "p", "mw": 10}]})
>>> eligible(Model(scenario))
True
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from capsim.blocks import Blocks
from capsim.model import Model, replication_uniforms
from capsim.profiles import Profiles
from capsim.tally import TallyLayout, stage_sums
from capsim.world import Milestone

_KIND_COUNTS = ("paused", "cancelled", "transferred", "lease_late", "lease_terminated")


def eligible(model: Model) -> bool:
    """Whether every replication of ``model`` is a pure critical-path computation."""
    s = model.scenario
    tasks = [model.tasks[t] for t in model.active_tasks]
    return (
        all(t.kind == "task" and not t.needs and not t.risks for t in tasks)
        and not any(info.start_risks for info in model.sites if info.active)
        and not any(lease.active for lease in model.leases)
        and s.hbm is None
        and s.lab is None  # costs come from the event log
        and not any(org.fleet for org in s.orgs.values())  # fleets count towards milestones
        and all(m.mw is not None for m in s.milestones)
    )


def simulate_chunk(
    model: Model, seed: int, start: int, stop: int, profiles: Profiles | None = None
) -> tuple[Blocks, np.ndarray]:
    """Replications ``start`` to ``stop - 1`` as rows (the columns of
    :func:`capsim.replications.replication_row`) and the per-stage sums of
    :class:`capsim.replications.StageTally` (fields by active task); their profiles are added
    to ``profiles`` (:meth:`~capsim.profiles.Profiles.add_chunk`; no world events: nothing here
    pauses, is refused or buys HBM)."""
    reps = np.arange(start, stop)
    # arrays by replication (rows) and slot or task (columns), stored by column ("F"): what
    # is computed at once, a stage's replications, is contiguous
    uniforms = replication_uniforms(seed, reps, model.n_slots, order="F")
    ready, finish = _schedule(model, model.values(uniforms))
    online = site_online(model, finish)
    times, levels = _levels(model, online)
    rows = chunk_rows(model, reps, finish, online, times, levels)
    if len(model.active_tasks) < len(model.tasks):
        ready, finish = ready[:, model.active_tasks], finish[:, model.active_tasks]
    if profiles is not None:
        profiles.add_chunk(reps, ready, ready, finish, times, levels)
    return rows, stage_sums(TallyLayout.of(model), ready, ready, finish)


class Outcome(NamedTuple):
    """What replications on an array path give the ordering objectives: when each active site
    came online (``online``: replications x active sites, NaN if not by the horizon) and the
    perspective's capacity changes (``times`` and ``levels`` as :func:`chunk_rows` takes them)."""

    online: np.ndarray
    times: np.ndarray
    levels: np.ndarray


def outcome(model: Model, values: np.ndarray) -> Outcome:
    """The :class:`Outcome` of replications of slot ``values`` (a row each,
    :meth:`capsim.model.Model.values`)."""
    _, finish = _schedule(model, values)
    online = site_online(model, finish)
    return Outcome(online, *_levels(model, online))


def _schedule(model: Model, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """When each stage of the replications of slot ``values`` is ready and finishes (NaN: not
    by the horizon), by replication (rows) and task (columns)."""
    horizon = model.scenario.horizon
    n, n_tasks = len(values), len(model.tasks)
    ready = np.full((n, n_tasks), np.nan, order="F")
    finish = np.full((n, n_tasks + 1), np.nan, order="F")
    finish[:, n_tasks] = -np.inf  # what pads a stage's predecessors
    for depth in _depths(model):
        begin = np.broadcast_to(depth.start, (n, len(depth.tasks)))
        for column in depth.preds.T:  # NaN if any predecessor is unfinished
            begin = np.maximum(finish[:, column], begin)
        begin = np.where(begin > horizon, np.nan, begin)  # never ready by the horizon
        end = begin + values[:, depth.slots]
        ready[:, depth.tasks] = begin
        finish[:, depth.tasks] = np.where(end <= horizon, end, np.nan)
    return ready, finish[:, :n_tasks]


class _Depth(NamedTuple):
    """The active stages that are ``k`` stages after a stage without predecessors (the longest
    way): each is computed, for all replications, once its predecessors are."""

    tasks: np.ndarray
    preds: np.ndarray  # by stage, padded with len(model.tasks): finish's -inf column
    start: np.ndarray  # its site's start
    slots: np.ndarray  # its duration's slot


def _depths(model: Model) -> list[_Depth]:
    """The active stages by depth, built once per model."""
    found = _DEPTHS.get(model)
    if found is not None:
        return found
    depth: dict[int, int] = {}
    for info in model.sites:
        for t in info.tasks if info.active else ():  # topological order within the site
            depth[t] = 1 + max((depth[p] for p in model.tasks[t].predecessors), default=-1)
    found = []
    for k in range(max(depth.values(), default=-1) + 1):
        tasks = [t for t, d in depth.items() if d == k]
        preds = [model.tasks[t].predecessors for t in tasks]
        padded = np.full((len(tasks), max(map(len, preds))), len(model.tasks))
        for row, p in zip(padded, preds, strict=True):
            row[: len(p)] = p
        start = [model.sites[model.tasks[t].site].start for t in tasks]
        slots = [model.tasks[t].slot for t in tasks]
        found.append(_Depth(np.array(tasks), padded, np.array(start), np.array(slots)))
    _DEPTHS[model] = found
    return found


_DEPTHS: weakref.WeakKeyDictionary[Model, list[_Depth]] = weakref.WeakKeyDictionary()


def _levels(model: Model, online: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The capacity changes of each replication, as :func:`chunk_rows` takes them: each of the
    perspective's sites' MW at its ``online`` time (:func:`site_online`), in time order (NaN, not
    online, last), and the running sums."""
    active = [i for i in model.sites if i.active]
    if model.perspective is not None:  # its own sites (the fast path has no leases)
        mine = [k for k, i in enumerate(active) if i.spec.org == model.perspective]
        active, online = [active[k] for k in mine], online[:, mine]
    mw = np.array([i.spec.mw for i in active])
    order = np.argsort(online, axis=1, kind="stable")  # NaN sorts last
    times = np.take_along_axis(online, order, axis=1)
    levels = np.zeros((*times.shape, 3))
    levels[:, :, 0] = np.cumsum(np.where(np.isnan(times), 0.0, mw[order]), axis=1)
    return times, levels


def site_online(model: Model, finish: np.ndarray) -> np.ndarray:
    """When each active site came online (its last stage's finish; NaN if any did not finish),
    by replication (rows) and active site (columns)."""
    tasks = model.active_site_tasks  # padded with len(model.tasks); a site has a stage or more
    if not tasks.size:
        return np.empty((len(finish), 0))
    tasks = np.where(tasks < len(model.tasks), tasks, tasks[:, :1])  # a site's first: no change
    online = finish[:, tasks[:, 0]]
    for column in tasks.T[1:]:
        online = np.maximum(online, finish[:, column])  # NaN wins
    return online


def chunk_rows(
    model: Model, reps: np.ndarray, finish: np.ndarray, online: np.ndarray, times: np.ndarray,
    levels: np.ndarray,
) -> Blocks:  # fmt: skip
    """Rows (the columns of :func:`capsim.replications.replication_row`) of replications that
    have no costs (no perspective org) and no notable events, from arrays: ``finish``
    (replications x tasks), each site's ``online`` time (:func:`site_online`) and the
    perspective's capacity after each change, in log order: ``times`` (replications x changes;
    NaN pads) and ``levels`` (replications x changes x MW, GPUs, PFLOPS), the running sums
    :func:`capsim.capacity.perspective_levels` gives."""
    n, milestones = len(reps), model.scenario.milestones
    sites = [info.spec.name for info in model.sites if info.active]
    names = [m.column for m in milestones] + [f"online:{s}" for s in sites] + ["t_all_online"]
    floats = np.empty((n, len(names)))
    for j, milestone in enumerate(milestones):
        floats[:, j] = reached(milestone, times, levels)
    floats[:, len(milestones) : -1] = online
    if online.shape[1]:  # else NaN, as the engine's row has it
        floats[:, -1] = np.where(np.isnan(online).any(axis=1), np.nan, online.max(axis=1))
    else:
        floats[:, -1] = np.nan
    finished = ~np.isnan(finish[:, model.active_tasks]).any(axis=1)
    return Blocks.stack([
        (("replication",), reps.astype(np.int64)[:, None]),
        (("failed",), np.zeros((n, 1), dtype=bool)),
        (("error",), np.full((n, 1), "", dtype=object)),
        (("finished",), finished[:, None]),
        (names, floats),
        ([f"n_{kind}" for kind in _KIND_COUNTS], np.zeros((n, len(_KIND_COUNTS)), np.int64)),
    ])  # fmt: skip


def reached(milestone: Milestone, times: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """When each replication first reaches ``milestone`` (NaN: never), from its capacity
    changes as :func:`chunk_rows` takes them (:func:`capsim.capacity.first_reached` of many)."""
    if not times.shape[1]:  # no capacity ever came online
        return np.full(len(times), np.nan)
    measure, target = milestone.measure
    hit = (levels[:, :, ("mw", "gpus", "pflops").index(measure)] >= target - 1e-9) & ~np.isnan(
        times
    )
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), times[np.arange(len(times)), first], np.nan)
