"""The lean discrete-event path: replications of scenarios with shared pools and an HBM market,
but without risks, agreements or permit, grid and power stages, in one compiled event loop.

The engine (:mod:`capsim.engine`) is general: SimPy events, resource objects, a logged world.
Here a model is laid out once as flat tables (:class:`_Plan`) and a chunk of replications runs
over them in :class:`capsim._lean.Kernel`, compiled with Cython: a heap of events ordered by time,
then by when they were scheduled (SimPy's order), counted joins, each pool's queue a heap by
(priority, arrival), strictly head of line (as :class:`capsim.resources.ResourcePool`), the HBM
market's queue the same by (tier, rank, arrival) (orders of one tier and rank arrive in time
order, so this is :class:`capsim.hbm.HbmMarket`'s order by tier, rank, order time and arrival)
served from the common pool at each delivery; only what rows, tallies and profiles read is
recorded: stage times, capacity changes and HBM allocations. The handlers schedule the same
events in the same order, with the same arithmetic, as the engine's, so that
:func:`simulate_chunk` gives exactly the engine's rows, stage tallies and profiles
(``tests/test_leanpath.py``). :func:`capsim.replications.run_chunk` uses it automatically when
:func:`eligible`.

Handled: ``task``, one- or many-phase ``construction`` and ``gpus`` stages (any of them needing
pool units), sites starting at their start times, GPU generations available by tier, the HBM
market's common pool, fleets, strategies. Not handled (the engine runs them): risks, offtake
agreements, permit, grid and power stages, reserved HBM shares, a perspective org (costs).

>>> import numpy as np
>>> from capsim.loader import parse_scenario
>>> scenario = parse_scenario({
...     "name": "queue", "start": "2026-01-01", "horizon": "10 years",
...     "resources": {"crew": {"capacity": 1}},
...     "pipelines": {"p": {"stages": {"a": {"duration": 10, "needs": {"crew": 1}}}}},
...     "sites": [{"name": f"s{i}", "org": "lab", "pipeline": "p", "mw": 10} for i in range(3)]})
>>> model = Model(scenario)
>>> eligible(model)
True
>>> rows, _ = simulate_chunk(model, seed=1, start=0, stop=2)
>>> rows.frame()[["online:s0", "online:s1", "online:s2"]].to_numpy().tolist()
[[10.0, 20.0, 30.0], [10.0, 20.0, 30.0]]
"""

from __future__ import annotations

import functools
import weakref
from itertools import chain
from typing import NamedTuple

import numpy as np

from capsim.blocks import Blocks
from capsim.fastpath import Outcome, chunk_rows, site_online
from capsim.kinds import StageKinds
from capsim.model import Model, replication_uniforms
from capsim.profiles import Profiles
from capsim.schema import Site
from capsim.tally import TallyLayout, stage_sums
from capsim.world import NEWEST, Generation

try:
    from capsim._lean import Kernel
except ImportError:  # a source tree that was not built (pip install builds it): the engine runs
    Kernel = None

KINDS = ("task", "construction", "gpus")  # their codes in the kernel: 0, 1, 2


def eligible(model: Model) -> bool:
    """Whether the lean path computes ``model``'s replications (else the engine does)."""
    found = _ELIGIBLE.get(model)
    if found is None:
        found = _ELIGIBLE[model] = _eligible(model)
    return found


def _eligible(model: Model) -> bool:
    s = model.scenario
    active = [info for info in model.sites if info.active]
    tasks = [model.tasks[t] for t in model.active_tasks]
    return (
        Kernel is not None
        and all(task.kind in KINDS and not task.risks for task in tasks)
        and not any(info.start_risks for info in active)
        and not any(lease.active for lease in model.leases)
        and s.lab is None  # costs come from the event log
        and not any(reserved for _, reserved, _ in model.hbm_schedule)
        # a task's duration is the slot of its own number (capsim.model lays them out so)
        and all(task.slot == t for t, task in enumerate(model.tasks))
        # a gpus stage asking for the newest generation has one to wait for
        and all(
            model.generation_times(model.org(model.sites[task.site].spec.org).tier)
            for task in tasks
            if task.kind == "gpus" and _wanted(model.sites[task.site].spec) == NEWEST
        )
    )


def _wanted(site: Site) -> str:
    """The generation ``site``'s GPUs are of (a name, or ``newest``)."""
    return site.gpus.generation if site.gpus else NEWEST


_ELIGIBLE: weakref.WeakKeyDictionary[Model, bool] = weakref.WeakKeyDictionary()


class LeanRun(NamedTuple):
    """What one lean replication records."""

    ready: np.ndarray  # by task
    start: np.ndarray
    finish: np.ndarray
    capacity: np.ndarray  # flat rows of (time, MW, GPUs, PFLOPS per GPU), the fleets' first
    hbm: np.ndarray  # HBM allocations, flat: time, site, GB
    events: int  # events scheduled


class _Plan:
    """A model's tables for the lean loop, built once per model, and its :class:`Kernel`."""

    def __init__(self, model: Model) -> None:
        s = model.scenario
        tasks, sites = model.tasks, model.sites
        self.n_tasks = len(tasks)
        pools = sorted(s.resources)  # the engine's pools, by name (needs are in name order)
        index = {name: p for p, name in enumerate(pools)}
        needs = [[(index[name], amount) for name, amount in t.needs] for t in tasks]
        roots = [[t for t in info.tasks if not model.pending[t]] for info in sites]
        # GPU tranches, numbered across the model (a gpus task's are consecutive), and what
        # each can buy: (when available, GPUs, GB of HBM, MW, PFLOPS per GPU) by time, the
        # generation a tranche gets being the last one available by then (the engine's
        # Model.generation_at)
        tr_task, tr_site, tr_slot, tr_rank, choices = [], [], [], [], []
        tr_first, tr_count = [0] * len(tasks), [0] * len(tasks)
        for t, task in enumerate(tasks):
            if task.kind != "gpus":
                continue
            info = sites[task.site]
            wanted = _wanted(info.spec)
            tier = model.org(info.spec.org).tier
            options = (
                [(model.generation_time(wanted, tier), wanted)]
                if wanted != NEWEST
                else sorted(model.generation_times(tier))
            )
            tr_first[t], tr_count[t] = len(tr_task), len(info.tranches)
            share = info.spec.mw / len(info.tranches)
            for k, size in enumerate(info.tranches):
                tr_task.append(t)
                tr_site.append(task.site)
                tr_slot.append(task.extra_slots[k])
                tr_rank.append((tier, info.rank))
                choices.append(
                    [(when, *_bought(size, share, s.generations[g])) for when, g in options]
                )
        # the market's order by (tier, rank), as one integer per tranche
        order = {pair: k for k, pair in enumerate(sorted(set(tr_rank)))}
        # capacity at the start: the perspective's fleet, else every org's (as
        # capsim.capacity.perspective_levels counts it)
        fleet: list[float] = []
        for name, org in s.orgs.items():
            if model.perspective not in (None, name):
                continue
            for gen, gpus in org.fleet.items():
                g = s.generations[gen]
                fleet.extend((0.0, gpus * g.power_kw / 1000, gpus, g.pflops))
        flat = list(chain.from_iterable(choices))
        tables = {
            "horizon": s.horizon,
            "market": s.hbm is not None,
            "starts_now": model.starts_now,
            "kind": [KINDS.index(t.kind) if t.kind in KINDS else -1 for t in tasks],
            "phases": [t.spec.phases if t.kind == "construction" else 0 for t in tasks],
            # a task's site if the site's MW come when its last stage ends (no construction)
            "end_site": [-1 if sites[t.site].has_construction else t.site for t in tasks],
            "pending": model.pending,
            "task_site": [t.site for t in tasks],
            "priority": model.task_priority,
            "tr_first": tr_first,
            "tr_count": tr_count,
            "need_ptr": _offsets(needs),
            "need_pool": [q for q, _ in chain.from_iterable(needs)],
            "need_amount": [amount for _, amount in chain.from_iterable(needs)],
            "succ_ptr": _offsets([t.successors for t in tasks]),
            "succ": list(chain.from_iterable(t.successors for t in tasks)),
            "root_ptr": _offsets(roots),
            "root": list(chain.from_iterable(roots)),
            "capacity": [float(s.resources[name].capacity) for name in pools],
            "active": model.start_order,
            "site_left": [len(info.tasks) for info in sites],
            "site_start": [info.start for info in sites],
            "site_mw": [info.spec.mw for info in sites],
            # whose capacity changes are recorded: the perspective's sites, else all of them
            "counted": [model.perspective in (None, info.spec.org) for info in sites],
            "tr_task": tr_task,
            "tr_site": tr_site,
            "tr_slot": tr_slot,
            "tr_prio": [order[pair] for pair in tr_rank],
            "choice_ptr": _offsets(choices),
            **{
                f"choice_{name}": [c[k] for c in flat]
                for k, name in enumerate(("time", "gpus", "gb", "mw", "pflops"))
            },
            "hbm_times": [t for t, _, _ in model.hbm_schedule],
            "hbm_common": [common for _, _, common in model.hbm_schedule],
            "fleet": fleet,
        }
        self.kernel = Kernel(tables)
        self._model = weakref.ref(model)

    @functools.cached_property
    def layout(self) -> TallyLayout:
        """The model's stage tally layout (not needed to read capacity alone)."""
        return TallyLayout.of(self._model())

    def run(self, values: np.ndarray) -> tuple[np.ndarray, ...]:
        """Replications of each row of slot ``values``: their (ready, start, finish) by task,
        the capacity changes (flat) and how many each has, the HBM allocations (flat) and how
        many each has, and each one's events (:meth:`Kernel.run`)."""
        delays = _delays(np.atleast_2d(values))
        ready, start, finish = (np.empty((len(delays), self.n_tasks)) for _ in range(3))
        return ready, start, finish, *self.kernel.run(delays, ready, start, finish)


def _offsets(lists: list) -> list[int]:
    """Where each of ``lists`` starts when they are laid end to end, and where the last ends."""
    return np.cumsum([0, *(len(x) for x in lists)], dtype=int).tolist()


def _bought(size: int | None, share: float, gen: Generation) -> tuple[int, float, float, float]:
    """A tranche's GPUs, GB of HBM, MW and PFLOPS per GPU (as the engine's _order_tranche and
    capacity records compute them)."""
    gpus = size or StageKinds._gpus_for(share, gen)
    return (gpus, gpus * gen.hbm_gb, gpus * gen.power_kw / 1000, gen.pflops)


_PLANS: weakref.WeakKeyDictionary[Model, _Plan] = weakref.WeakKeyDictionary()


def plan(model: Model) -> _Plan:
    """The lean tables of ``model`` (built on first use)."""
    found = _PLANS.get(model)
    if found is None:
        found = _PLANS[model] = _Plan(model)
    return found


def simulate(model: Model, values: np.ndarray) -> LeanRun:
    """One replication with slot ``values`` (see :meth:`Model.draw`), as the engine would run it
    (:meth:`Model.run`), recording only stage times, capacity changes and HBM allocations."""
    ready, start, finish, capacity, _, hbm, _, events = plan(model).run(values)
    return LeanRun(ready[0], start[0], finish[0], capacity, hbm, int(events[0]))


def _delays(values: np.ndarray) -> np.ndarray:
    """Slot values as the engine's delays: negative (or NaN) ones are 0, as in its ``_at``.
    Every slot the lean path reads is a delay (a duration, a construction's total, a
    delivery), and a construction's phases of a negative total are all 0 as well."""
    return np.fmax(values, 0.0)


def simulate_chunk(
    model: Model, seed: int, start: int, stop: int, profiles: Profiles | None = None
) -> tuple[Blocks, np.ndarray]:
    """Replications ``start`` to ``stop - 1`` as rows (the columns of
    :func:`capsim.replications.replication_row`) and the per-stage sums of
    :class:`capsim.replications.StageTally`; their profiles are added to ``profiles``
    (:meth:`~capsim.profiles.Profiles.add_chunk`)."""
    p = plan(model)
    reps = np.arange(start, stop)
    uniforms = replication_uniforms(seed, reps, model.n_slots)
    ready, begun, finish, changes, counts, hbm, hbm_counts, _ = p.run(model.values(uniforms))
    times, levels = _levels(changes, counts)
    rows = chunk_rows(model, reps, finish, site_online(model, finish), times, levels)
    tasks = p.layout.tasks
    ready, begun, finish = ready[:, tasks], begun[:, tasks], finish[:, tasks]
    if profiles is not None:

        def world(k: int) -> tuple[np.ndarray, ...]:  # the first k replications' allocations
            allocations = hbm[: 3 * hbm_counts[:k].sum()].reshape(-1, 3)
            site = allocations[:, 1].astype(int)
            names, owners = profiles.codes(model.site_names), profiles.codes(model.site_owners)
            return (np.repeat(reps[:k], hbm_counts[:k]), allocations[:, 0],
                    np.repeat(profiles.codes(["hbm_allocated"]), len(site)), names[site],
                    owners[site], allocations[:, 2])  # fmt: skip

        profiles.add_chunk(reps, ready, begun, finish, times, levels, world)
    return rows, stage_sums(p.layout, ready, begun, finish)


def outcome(model: Model, values: np.ndarray) -> Outcome:
    """The :class:`~capsim.fastpath.Outcome` of replications of slot ``values``, as
    :func:`capsim.fastpath.outcome` gives it."""
    _, _, finish, changes, counts, *_ = plan(model).run(values)
    return Outcome(site_online(model, finish), *_levels(changes, counts))


def _levels(changes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's capacity ``changes`` (flat rows of time, MW, GPUs, PFLOPS per GPU; ``counts``
    of them by replication) as the perspective's capacity after each change
    (:func:`capsim.capacity.perspective_levels`): times and levels, NaN-padded."""
    n = len(counts)
    deltas = np.zeros((n, counts.max(initial=0), 4))
    deltas[:, :, 0] = np.nan
    starts = np.cumsum(counts) - counts
    deltas[np.repeat(np.arange(n), counts), np.arange(counts.sum()) - np.repeat(starts, counts)] = (
        changes.reshape(-1, 4)
    )
    levels = np.stack(
        [
            np.cumsum(deltas[:, :, 1], axis=1),
            np.cumsum(deltas[:, :, 2], axis=1),
            np.cumsum(deltas[:, :, 2] * deltas[:, :, 3], axis=1),
        ],
        axis=2,
    )
    return deltas[:, :, 0], levels
