"""The lean discrete-event path: replications of scenarios with shared pools and an HBM market,
but without risks, agreements or permit, grid and power stages, in one tight event loop.

The engine (:mod:`capsim.engine`) is general: SimPy events, resource objects, a logged world.
Here the same replication is one function: a heap of the times events are due at, each with
the list of its events in the order they were scheduled (SimPy's order: by time, then by when
scheduled; a float heap is cheaper than one of ``(time, sequence, event)`` tuples), counted joins,
each pool a heap of priorities with a first-in first-out line per priority (strictly head of
line, as :class:`capsim.resources.ResourcePool`), the HBM market's queue the same by (tier, rank)
(orders of one tier and rank arrive in time order, so this is :class:`capsim.hbm.HbmMarket`'s
order by tier, rank, order time and arrival) served from the common pool at each delivery, and
only what rows, tallies and profiles read is recorded: stage times, capacity changes and HBM
allocations. The handlers schedule the same events in the same order, with the same arithmetic,
as the engine's, so that :func:`simulate_chunk` gives exactly the engine's rows, stage tallies
and profiles. :func:`capsim.replications.run_chunk` uses it automatically when :func:`eligible`.
A plain task that nothing waits for ends without being queued (it changes nothing else), but is
counted among the events.

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
>>> rows[["online:s0", "online:s1", "online:s2"]].to_numpy().tolist()
[[10.0, 20.0, 30.0], [10.0, 20.0, 30.0]]
"""

from __future__ import annotations

import heapq
import math
import weakref
from collections import deque
from itertools import chain
from typing import NamedTuple

import numpy as np
import pandas as pd

from capsim.capacity import batch_on_grid
from capsim.engine import gc_paused
from capsim.fastpath import chunk_rows
from capsim.kinds import StageKinds
from capsim.model import Model, replication_rng
from capsim.profiles import PROFILE_REPS, Profiles
from capsim.tally import TallyLayout, stage_sums
from capsim.world import NEWEST, Generation

KINDS = ("task", "construction", "gpus")  # their codes: 0, 1, 2
_EPS = 1e-9  # capsim.resources' and capsim.hbm's tolerance
# what an event does (its code's low 3 bits; the rest is the task, tranche or site): a task
# ends, a construction phase is built, a GPU tranche is delivered, an HBM delivery is made, a
# tranche asks again for its generation, a site starts
_END, _PHASE, _DELIVERED, _TICK, _ORDER, _SITE = range(6)


def eligible(model: Model) -> bool:
    """Whether the lean path computes ``model``'s replications (else the engine does)."""
    found = _ELIGIBLE.get(model)
    if found is None:
        found = _ELIGIBLE[model] = _eligible(model)
    return found


def _eligible(model: Model) -> bool:
    s = model.scenario
    active = [info for info in model.sites if info.active]
    return (
        all(model.tasks[t].kind in KINDS and not model.tasks[t].risks for t in model.active_tasks)
        and not any(info.start_risks for info in active)
        and not any(lease.active for lease in model.leases)
        and s.lab is None  # costs come from the event log
        and not any(reserved for _, reserved, _ in model.hbm_schedule)
        # a task's duration is the slot of its own number (capsim.model lays them out so)
        and all(task.slot == t for t, task in enumerate(model.tasks))
    )


_ELIGIBLE: weakref.WeakKeyDictionary[Model, bool] = weakref.WeakKeyDictionary()


class LeanRun(NamedTuple):
    """What one lean replication records."""

    ready: list[float]  # by task
    start: list[float]
    finish: list[float]
    capacity: list[float]  # rows of (time, MW, GPUs, PFLOPS per GPU), the fleets' first
    hbm: list[float]  # HBM allocations, one after the other: time, site, GB
    events: int  # events scheduled


class _Plan:
    """A model's tables for the lean loop, built once per model."""

    def __init__(self, model: Model) -> None:
        s = model.scenario
        tasks = model.tasks
        self.model = model
        self.horizon = s.horizon
        pools = sorted(s.resources)  # the engine's pools, by name (needs are in name order)
        index = {name: p for p, name in enumerate(pools)}
        self.capacity = [float(s.resources[name].capacity) for name in pools]
        self.kind = [KINDS.index(t.kind) if t.kind in KINDS else -1 for t in tasks]
        self.needs = [tuple((index[name], amount) for name, amount in t.needs) for t in tasks]
        self.site = [t.site for t in tasks]
        # a plain task (no needs) that nothing waits for, at a site whose MW come from
        # construction: its end changes nothing else, so it is not queued (but counted as the
        # engine's event)
        self.quiet = [
            t.kind == "task" and not t.needs and not t.successors
            and model.sites[t.site].has_construction
            for t in tasks
        ]  # fmt: skip
        self.priority = model.task_priority
        self.pending = list(model.pending)
        self.phases = [t.spec.phases if t.kind == "construction" else 0 for t in tasks]
        sites = model.sites
        self.active = [info.index for info in sites if info.active]
        self.starts_now = model.starts_now
        self.site_start = [info.start for info in sites]
        # each site's stages that wait for no other: they become ready when the site starts
        self.site_roots = [tuple(t for t in info.tasks if not model.pending[t]) for info in sites]
        self.site_left = [len(info.tasks) for info in sites]
        self.site_mw = [info.spec.mw for info in sites]
        # the profiles' world columns of HBM allocations, taken by site
        self.kinds = pd.array(["hbm_allocated"], dtype="str")
        self.names = pd.array(model.site_names, dtype="str")
        self.owners = pd.array(model.site_owners, dtype="str")
        # GPU tranches, numbered across the model: a gpus task's are consecutive
        self.tranches: list[range] = [range(0)] * len(tasks)
        self.tranche_task: list[int] = []
        self.tranche_site: list[int] = []
        self.tranche_size: list[int | None] = []
        self.tranche_slot: list[int] = []
        self.tranche_wanted: list[str] = []
        self.tranche_tier: list[int] = []
        self.tranche_rank: list[int] = []
        self.tranche_when: list[float] = []  # when a fixed generation becomes available
        self.tranche_share: list[float] = []  # the site's MW per tranche
        for t, task in enumerate(tasks):
            if task.kind != "gpus":
                continue
            info = sites[task.site]
            first = len(self.tranche_task)
            wanted = info.spec.gpus.generation if info.spec.gpus else NEWEST
            tier = model.org(info.spec.org).tier
            for k, size in enumerate(info.tranches):
                self.tranche_task.append(t)
                self.tranche_site.append(task.site)
                self.tranche_size.append(size)
                self.tranche_slot.append(task.extra_slots[k])
                self.tranche_wanted.append(wanted)
                self.tranche_tier.append(tier)
                self.tranche_rank.append(info.rank)
                self.tranche_when.append(
                    model.generation_time(wanted, tier) if wanted != NEWEST else math.nan
                )
                self.tranche_share.append(info.spec.mw / len(info.tranches))
            self.tranches[t] = range(first, len(self.tranche_task))
        self.generations = s.generations
        # the market's order by (tier, rank), as one integer per tranche (cheaper keys)
        pairs = list(zip(self.tranche_tier, self.tranche_rank, strict=True))
        order = {pair: k for k, pair in enumerate(sorted(set(pairs)))}
        self.tranche_priority = [order[pair] for pair in pairs]
        # what a tranche of a fixed generation buys, once it is available: (GPUs, GB, MW,
        # PFLOPS per GPU), with the engine's arithmetic; None for the newest generation
        self.tranche_bought = [
            None if wanted == NEWEST else self._bought(size, share, s.generations[wanted])
            for wanted, size, share in zip(
                self.tranche_wanted, self.tranche_size, self.tranche_share, strict=True
            )
        ]
        self.market = s.hbm is not None
        self.hbm_times = [t for t, _, _ in model.hbm_schedule]
        self.hbm_common = [common for _, _, common in model.hbm_schedule]
        # capacity at the start: every org's fleet (as capsim.capacity.iter_deltas)
        self.fleet: list[float] = []
        for org in s.orgs.values():
            for gen, gpus in org.fleet.items():
                g = s.generations[gen]
                self.fleet.extend((0.0, gpus * g.power_kw / 1000, gpus, g.pflops))
        self.layout = TallyLayout.of(model)
        # what a task's end reads, in one tuple: its needs, its successors and its site if the
        # site's MW come when its last stage ends (no construction stage), else -1
        self.ends = [
            (self.needs[t], tuple(task.successors),
             -1 if sites[task.site].has_construction else task.site)
            for t, task in enumerate(tasks)
        ]  # fmt: skip

    @staticmethod
    def _bought(size: int | None, share: float, gen: Generation) -> tuple[int, float, float, float]:
        """A tranche's GPUs, GB of HBM, MW and PFLOPS per GPU (as the engine's
        _order_tranche and capacity records compute them)."""
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
    (:meth:`Model.run`), recording only stage times, capacity changes and HBM allocations.
    The garbage collector is paused meanwhile, as the engine does."""
    with gc_paused():
        return _simulate(plan(model), _delays(values).tolist())


def _delays(values: np.ndarray) -> np.ndarray:
    """Slot values as the engine's delays: negative (or NaN) ones are 0, as in its ``_at``.
    Every slot the lean path reads is a delay (a duration, a construction's total, a
    delivery), and a construction's phases of a negative total are all 0 as well."""
    return np.fmax(values, 0.0)


def _simulate(p: _Plan, values: list[float]) -> LeanRun:
    """One replication; ``values`` are :func:`_delays`."""
    # SimPy's order (by time, then by when scheduled): a heap of the times events are due at,
    # and for each such time the code of its event, or a list of them in the order they were
    # scheduled when several are due then (seldom)
    times: list[float] = []
    due: dict[float, int | list[int]] = {}
    push, pop = heapq.heappush, heapq.heappop
    quiet_ends = 0
    now = 0.0
    n = len(p.kind)
    ready, start, finish = [math.nan] * n, [math.nan] * n, [math.nan] * n
    pending = p.pending[:]
    site_roots = p.site_roots
    next_need = [0] * n
    kind, needs, task_site = p.kind, p.needs, p.site
    priority, ends, quiet = p.priority, p.ends, p.quiet
    horizon = p.horizon
    eps = _EPS
    available = p.capacity[:]
    levels: list[list] = [[] for _ in available]  # per pool: heap of priorities with a line
    lines: list[dict] = [{} for _ in available]  # per pool: priority -> deque of (task, amount)
    site_left = p.site_left[:]
    n_sites = len(site_left)
    built, online = [0.0] * n_sites, [0.0] * n_sites
    powered: list[float] = [0.0] * n_sites  # each site's powered MW not yet taken by GPUs
    power_line: list[deque | None] = [None] * n_sites
    phases_left = [0] * n
    tranche_left = [0] * n
    n_tranches = len(p.tranche_task)
    bought: list[tuple] = [()] * n_tranches  # each ordered tranche's GPUs, GB, MW, PFLOPS/GPU
    tranche_size, tranche_share = p.tranche_size, p.tranche_share
    tranche_priority, tranche_bought = p.tranche_priority, p.tranche_bought
    gens = p.generations
    phases_of, tranches_of, site_mw = p.phases, p.tranches, p.site_mw
    tranche_task, tranche_site, tranche_slot = p.tranche_task, p.tranche_site, p.tranche_slot
    tranche_when, market = p.tranche_when, p.market
    capacity = p.fleet[:]
    record = capacity.extend
    hbm_log: list[float] = []
    order_levels: list[int] = []  # the HBM queue: a heap of (tier, rank) priorities with
    order_lines: dict[int, deque] = {}  # a line of (tranche, GB) for each
    hbm_pool = 0.0
    hbm_next = 0
    hbm_woken = False
    hbm_times, hbm_common = p.hbm_times, p.hbm_common
    n_deliveries = len(hbm_times)

    def acquire(task: int) -> None:
        """The engine's _acquire: ask for the next resource, or start the task (a loop where the
        engine calls itself again on a grant made at once)."""
        wants = needs[task]
        if wants:
            k = next_need[task]
            for q, amount in wants[k:] if k else wants:
                k += 1
                level = levels[q]
                if not level and amount <= available[q] + eps:
                    available[q] -= amount
                    continue
                next_need[task] = k
                prio = priority[task]
                line = lines[q].get(prio)
                if line is None:
                    line = lines[q][prio] = deque()
                    push(level, prio)
                line.append((task, amount))
                # served now only if it is the new head (of a higher priority than the waiting
                # head) and fits: else dispatch would stop at once
                if len(line) == 1 and level[0] == prio and amount <= available[q] + eps:
                    dispatch(q)
                return
        start[task] = now
        code = kind[task]
        if code == 0:
            d = values[task]
            t = now + d
            if quiet[task]:
                nonlocal quiet_ends
                quiet_ends += 1
                if t <= horizon:
                    finish[task] = t
            elif t in due:
                schedule(t, task)
            else:
                due[t] = task  # a task's end: its number
                push(times, t)
        elif code == 1:
            total = values[task]
            phases = phases_of[task]
            phases_left[task] = phases
            for i in range(1, phases + 1):
                schedule(now + total * i / phases, ~(task << 3 | _PHASE))
        else:
            tranche_left[task] = len(tranches_of[task])
            for tranche in tranches_of[task]:
                order(tranche)

    def dispatch(q: int) -> None:
        """Serve pool ``q``'s queue, strictly head of line."""
        level, line_of = levels[q], lines[q]
        while level:
            prio = level[0]
            line = line_of[prio]
            task, amount = line[0]
            if amount > available[q] + eps:
                break
            line.popleft()
            if not line:
                del line_of[prio]
                pop(level)
            available[q] -= amount
            acquire(task)

    def complete(task: int) -> None:
        finish[task] = now
        wants, followers, site = ends[task]
        if wants:  # give back everything it holds
            for q, amount in wants:
                available[q] += amount
                if levels[q]:
                    dispatch(q)
        for successor in followers:
            if (left := pending[successor]) == 1:  # it was the last one waited for
                ready[successor] = now
                acquire(successor)
            else:
                pending[successor] = left - 1
        if site >= 0:  # a site whose MW come when its last stage ends
            site_left[site] -= 1
            if site_left[site] == 0:
                build(site, site_mw[site])

    def build(site: int, mw: float) -> None:
        built[site] += mw
        delta = built[site] - online[site]  # every site is powered: no grid or power stages
        if delta > 1e-9:
            online[site] += delta
            record((now, delta, 0.0, 0.0))
            powered[site] += delta
            line = power_line[site]
            if line:
                power_dispatch(site, line)

    def power_dispatch(site: int, line: deque) -> None:
        # the engine's Supply of powered MW, by request time then arrival: arrival order
        while line:
            tranche, mw = line[0]
            if mw > powered[site] + eps:
                break
            line.popleft()
            powered[site] -= mw
            tranche_online(tranche)

    def tranche_online(tranche: int) -> None:
        gpus, _, _, pflops = bought[tranche]
        record((now, 0.0, gpus, pflops))
        task = tranche_task[tranche]
        tranche_left[task] -= 1
        if tranche_left[task] == 0:
            complete(task)

    def order(tranche: int) -> None:
        """The engine's _order_tranche."""
        got = tranche_bought[tranche]
        if got is not None:  # a fixed generation
            when = tranche_when[tranche]
            available_now = when <= now
        else:
            site = tranche_site[tranche]
            gen_name, when = p.model.generation_at(p.model.site_owners[site], NEWEST, now)
            if available_now := gen_name is not None:
                got = _Plan._bought(tranche_size[tranche], tranche_share[tranche], gens[gen_name])
        if not available_now:
            d = when - now
            schedule(now + (d if d > 0 else 0.0), ~(tranche << 3 | _ORDER))
            return
        bought[tranche] = got
        gb = got[1]
        if not market:
            granted(tranche)
            return
        if hbm_next < n_deliveries and hbm_times[hbm_next] <= now:
            catch_up()
        # the market's order (tier, rank, order time, arrival): within a (tier, rank), orders
        # arrive in time order, so a first-in first-out line per (tier, rank) keeps it
        level = tranche_priority[tranche]
        line = order_lines.get(level)
        if line is None:
            line = order_lines[level] = deque()
            push(order_levels, level)
        line.append((tranche, gb))
        # filled now only if it is the new head and fits (the last serve left a head too big)
        if len(line) == 1 and order_levels[0] == level and gb <= hbm_pool + eps:
            serve()
        if not hbm_woken:
            wake()

    def serve() -> None:
        nonlocal hbm_pool
        filled = []
        while order_levels:
            level = order_levels[0]
            line = order_lines[level]
            tranche, gb = line[0]
            if gb > hbm_pool + eps:
                break
            line.popleft()
            if not line:
                del order_lines[level]
                pop(order_levels)
            filled.append(tranche)
            hbm_pool -= gb
        for tranche in filled:
            granted(tranche)

    def catch_up() -> None:
        nonlocal hbm_next, hbm_pool
        common = 0.0
        while hbm_next < n_deliveries and hbm_times[hbm_next] <= now:
            common += hbm_common[hbm_next]
            hbm_next += 1
        if common:
            hbm_pool += common
            serve()

    def wake() -> None:
        nonlocal hbm_woken
        if hbm_woken or not order_levels or hbm_next >= n_deliveries:
            return
        hbm_woken = True
        d = hbm_times[hbm_next] - now
        schedule(now + (d if d > 0 else 0.0), ~_TICK)

    def granted(tranche: int) -> None:
        if market:
            hbm_log.extend((now, tranche_site[tranche], bought[tranche][1]))
        schedule(now + values[tranche_slot[tranche]], ~(tranche << 3 | _DELIVERED))

    def schedule(t: float, code: int) -> None:
        """An event at time ``t``: a task's end (its number) or ``~(which << 3 | what)``."""
        codes = due.get(t)
        if codes is None:
            due[t] = code
            push(times, t)
        elif codes.__class__ is int:
            due[t] = [codes, code]
        else:
            codes.append(code)

    def delivered(tranche: int) -> None:
        site = tranche_site[tranche]
        mw = bought[tranche][2]
        line = power_line[site]
        if not line and mw <= powered[site] + eps:
            powered[site] -= mw
            tranche_online(tranche)
            return
        if line is None:
            line = power_line[site] = deque()
        line.append((tranche, mw))
        power_dispatch(site, line)

    def site_starts(site: int) -> None:
        for task in site_roots[site]:
            ready[task] = now
            acquire(task)

    if p.starts_now:
        for site in p.active:
            site_starts(site)
    else:
        for site in p.active:
            d = p.site_start[site]
            schedule(0.0 + (d if d > 0 else 0.0), ~(site << 3 | _SITE))
    phase, delivery, tick = _PHASE, _DELIVERED, _TICK
    processed = 0
    while times:
        now = pop(times)
        if now > horizon:  # the engine stops before it
            break
        codes = due.pop(now)  # those scheduled meanwhile for now are due after these
        if codes.__class__ is int:
            processed += 1
            if codes >= 0:  # the usual event: one task ends
                complete(codes)
                continue
            codes = (codes,)
        else:
            processed += len(codes)
        for code in codes:
            if code >= 0:
                complete(code)
                continue
            what, which = ~code & 7, ~code >> 3
            if what == phase:
                site = task_site[which]
                build(site, site_mw[site] / phases_of[which])
                phases_left[which] -= 1
                if phases_left[which] == 0:
                    complete(which)
            elif what == delivery:
                delivered(which)
            elif what == tick:
                hbm_woken = False
                catch_up()
                wake()
            elif what == _ORDER:
                order(which)
            else:
                site_starts(which)
    # the handlers call one another through their closure cells: a reference cycle that would
    # keep this replication's state alive until the garbage collector runs; emptying the cells
    # frees it now (ruff takes the rebinding for a redefinition)
    acquire = dispatch = complete = build = power_dispatch = tranche_online = None  # noqa: F811
    order = serve = catch_up = wake = granted = delivered = site_starts = None  # noqa: F811
    # with those due past the horizon
    events = processed + quiet_ends + sum(1 if c.__class__ is int else len(c) for c in due.values())
    return LeanRun(ready, start, finish, capacity, hbm_log, events)


def simulate_chunk(
    model: Model, seed: int, start: int, stop: int, profiles: Profiles | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Replications ``start`` to ``stop - 1`` as rows (the columns of
    :func:`capsim.replications.replication_row`) and the per-stage sums of
    :class:`capsim.replications.StageTally`; the profiles of those below
    :data:`~capsim.profiles.PROFILE_REPS` are added to ``profiles``. The garbage collector is
    paused meanwhile, as the engine does."""
    with gc_paused():
        return _simulate_chunk(model, seed, start, stop, profiles)


def _simulate_chunk(
    model: Model, seed: int, start: int, stop: int, profiles: Profiles | None
) -> tuple[pd.DataFrame, np.ndarray]:
    p = plan(model)
    reps = np.arange(start, stop)
    values = model.values(
        np.stack([replication_rng(seed, int(i)).random(model.n_slots) for i in reps])
    )
    runs = [_simulate(p, row) for row in _delays(values).tolist()]
    n = len(runs)
    ready, begun, finish = (
        np.fromiter(chain.from_iterable(getattr(run, name) for run in runs), float, n * len(p.kind))
        .reshape(n, len(p.kind))
        for name in ("ready", "start", "finish")
    )  # fmt: skip
    # the perspective's capacity after each change (capsim.capacity.perspective_levels), padded
    counts = np.array([len(run.capacity) // 4 for run in runs], dtype=int)
    changes = np.fromiter(chain.from_iterable(run.capacity for run in runs), float)
    deltas = np.zeros((n, counts.max(initial=0), 4))
    deltas[:, :, 0] = np.nan
    starts = np.cumsum(counts) - counts
    deltas[np.repeat(np.arange(n), counts), np.arange(counts.sum()) - np.repeat(starts, counts)] = (
        changes.reshape(-1, 4)
    )
    times = deltas[:, :, 0]
    levels = np.stack(
        [
            np.cumsum(deltas[:, :, 1], axis=1),
            np.cumsum(deltas[:, :, 2], axis=1),
            np.cumsum(deltas[:, :, 2] * deltas[:, :, 3], axis=1),
        ],
        axis=2,
    )
    rows = chunk_rows(model, reps, finish, times, levels)
    tasks = p.layout.tasks
    ready, begun, finish = ready[:, tasks], begun[:, tasks], finish[:, tasks]
    if profiles is not None and (k := min(stop, PROFILE_REPS) - start) > 0:
        on_grid = batch_on_grid(times[:k], levels[:k], profiles.grid)
        hbm = list(chain.from_iterable(run.hbm for run in runs[:k]))
        site = np.array(hbm[1::3], dtype=int)
        world = (np.repeat(reps[:k], [len(run.hbm) // 3 for run in runs[:k]]), hbm[0::3],
                 p.kinds.take(np.zeros(len(site), int)), p.names.take(site),
                 p.owners.take(site), hbm[2::3])  # fmt: skip
        profiles.add_batch(reps[:k], np.stack([ready, begun, finish], axis=2)[:k], on_grid, *world)
    return rows, stage_sums(p.layout, ready, begun, finish)
