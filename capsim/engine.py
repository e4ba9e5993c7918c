"""The SimPy engine: one replication of a compiled :class:`~capsim.model.Model`.

A task (site x stage) becomes *ready* when its last predecessor finishes (a counted join, not
``all_of``); risks attached to it may strike then. It asks for its resources one at a time in name
order (a global order, so holding one while waiting for the next cannot deadlock), *starts* when the
last is granted, and then runs its kind:

- ``task``/``power``: one SimPy timeout.
- ``permit``: a review slot of the jurisdiction, the review, then a refusal draw; a refusal leads
  to an appeal (a delay, then won or lost) or to the site's cancellation.
- ``grid``: a study slot of the region, the study, then the region's yearly MW budget (first come
  first served, unused MW carry over), then the build of lines and substations.
- ``construction``: equal phases; each phase's MW come online once the site has power (all its
  grid and power stages finished).
- ``gpus``: each tranche picks its generation (fixed, or the newest its owner's tier can get),
  orders HBM, waits for its delivery time, then for powered MW, and comes online.

Every callback is a plain function on a SimPy event, not a process: a few events per task.
Everything that happens is logged as small immutable records.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import simpy
from simpy.core import NORMAL

from capsim.hbm import HbmMarket
from capsim.kinds import StageKinds
from capsim.offtake import Offtakes
from capsim.records import Blockage, Run, StageRecord, WorldEvent
from capsim.resources import ResourcePool, Supply

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from capsim.model import Model
    from capsim.schema import Scenario

__all__ = ["Blockage", "Run", "StageRecord", "WorldEvent", "energy_price", "simulate"]


def energy_price(
    scenario: Scenario, region: str | None, t: float, factor: dict[str, float]
) -> float:
    """USD/MWh in grid ``region`` at model time ``t``: the region's path times the replication's
    ``factor``, or ``costs.energy_price`` where the region gives no price."""
    spec = scenario.grid_regions.get(region) if region else None
    if spec is None or spec.energy_price is None:
        return scenario.costs.energy_price
    return spec.energy_price.at(t) * factor[region]


def simulate(model: Model, values: np.ndarray) -> Run:
    """Run one replication of ``model`` with slot ``values`` (see :meth:`Model.draw`).

    The garbage collector is paused meanwhile (:func:`gc_paused`)."""
    with gc_paused():
        return _Replication(model, values).run()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector inside: replications create many short-lived objects
    and no reference cycles worth chasing, and collections cost a quarter of a large run (they
    walk every container still alive, the records of a chunk's replications included).

    >>> with gc_paused():
    ...     gc.isenabled()
    False
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Call(simpy.Event):
    """A SimPy event that calls ``callback(arg)`` when processed (its value is the pair). Made by
    :meth:`_Replication._at` without :class:`simpy.Event`'s constructor: an event already
    triggered, with one callback, is all :meth:`simpy.Environment.step` needs."""

    __slots__ = ()


_new_call = object.__new__


def _fire(event: _Call) -> None:
    callback, arg = event._value
    callback(arg)


class _Replication(StageKinds, Offtakes):
    """The mutable state of one run; discarded afterwards."""

    def __init__(self, model: Model, values: np.ndarray) -> None:
        self.model = model
        self.scenario = s = model.scenario
        self.tasks = model.tasks
        self.value_array = values
        self.values = values.tolist()
        self.env = simpy.Environment()
        self._schedule = self.env.schedule
        self.task_site = model.task_site
        self.task_kind = model.task_kind
        self.task_successors = model.task_successors
        self.task_needs = model.task_needs
        self.task_slot = model.task_slot
        self.task_risks = model.task_risks
        self.task_plain = model.task_plain
        self.complete = self._complete  # bound once: scheduled for most tasks
        n, n_sites = len(model.tasks), len(model.sites)
        self.ready = [math.nan] * n
        self.start = [math.nan] * n
        self.finish = [math.nan] * n
        self.extra = [0.0] * n
        self.pending = list(model.pending)
        self.begin = {
            "permit": self._begin_permit,
            "grid": self._begin_grid,
            "construction": self._begin_construction,
            "gpus": self._begin_gpus,
        }
        self.next_need = [0] * n
        self.gate: dict[int, str] = {}  # what a started task waits on besides time
        self.priority = model.task_priority
        self.pools = {
            name: ResourcePool(name, r.capacity) for name, r in sorted(s.resources.items())
        }
        self.reviews = {
            name: ResourcePool(f"{name} reviews", j.reviews_at_once)
            for name, j in s.jurisdictions.items()
            if j.reviews_at_once
        }
        self.studies = {
            name: ResourcePool(f"{name} studies", g.studies_at_once)
            for name, g in s.grid_regions.items()
            if g.studies_at_once
        }
        self.budgets = {
            name: Supply(f"{name} MW budget") for name, g in s.grid_regions.items() if g.mw_per_year
        }
        self.market = HbmMarket() if s.hbm is not None else None
        self.hbm_next = 0  # the first HBM delivery not yet made
        self.hbm_woken = False  # whether a delivery is scheduled for waiting orders
        self.owner = list(model.site_owners)
        self.site_names = model.site_names
        self.cancelled = [False] * n_sites
        self.site_left = [len(site.tasks) for site in model.sites]  # stages not yet finished
        self.requests: list[list[tuple[Supply, Hashable]]] = [[] for _ in model.sites]
        self.hbm_orders: list[list[tuple[int, int]]] = [[] for _ in model.sites]
        self.powered = [not site.power_tasks for site in model.sites]
        self.power_left = [len(site.power_tasks) for site in model.sites]
        self.built_mw = [0.0] * n_sites
        self.online_mw = [0.0] * n_sites
        self.site_power: list[Supply | None] = [None] * n_sites  # made when first used
        self.tranche_left: dict[int, int] = {}
        self.tranche_gen: dict[tuple[int, int], str] = {}
        self.tranche_state: dict[tuple[int, int], str] = {}  # what each GPU tranche waits for
        self.tranche_gpus: dict[tuple[int, int], int] = {}
        self.gpus_online: list[dict[str, int]] = [{} for _ in model.sites]
        self.phases_left: dict[int, int] = {}
        self.lease_supply: dict[tuple[str, str], Supply] = {}
        self.lease_state: dict[tuple[int, int], str] = {}
        self.lease_tranche: dict[tuple[int, int], tuple[str, int, float]] = {}  # gen, GPUs, due
        self.lease_due_at: dict[tuple[int, int], float] = {}
        self.terminated = [False] * len(model.leases)
        self.log: list[tuple] = []  # WorldEvent fields
        self.flags = {
            name: self.values[slot] < s.flags[name] for name, slot in model.flag_slots.items()
        }
        self.energy_factor = {name: self.values[slot] for name, slot in model.energy_slots.items()}

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Run:
        env, horizon, model = self.env, self.scenario.horizon, self.model
        self._open_markets()
        leases = [i for i, lease in enumerate(model.leases) if lease.active]
        if model.starts_now:
            # every site starts now and nothing else is scheduled for now: starting them at
            # once runs the same callbacks in the same order as one event per site would
            for site in model.start_order:
                self._site_starts(site)
        else:
            for site in model.start_order:
                self._at(model.sites[site].start, self._site_starts, site)
        for i in leases:
            self._at(self.values[model.leases[i].negotiation_slot], self._lease_signed, i)
        queue, step = env._queue, env.step  # env.peek() and env.step(), without a call per peek
        while queue and queue[0][0] <= horizon:
            step()
        finish = np.asarray(self.finish)
        return Run(
            model,
            self.value_array,
            np.asarray(self.extra),
            np.asarray(self.ready),
            np.asarray(self.start),
            finish,
            self.log,
            self._blockages(finish),
            self.owner,
            self.energy_factor,
        )

    def _at(self, delay: float, callback: Callable, arg: Hashable) -> None:
        """Call ``callback(arg)`` after ``delay``: one SimPy event."""
        event = _new_call(_Call)
        event.callbacks = [_fire]
        event._ok = True
        event._value = (callback, arg)
        self._schedule(event, NORMAL, delay if delay > 0 else 0.0)

    def _log(
        self, kind: str, subject: str, org: str, amount: float = 0.0, generation: str = "",
        detail: str = "", tranche: int = 0,
    ) -> None:  # fmt: skip
        """Log a :class:`WorldEvent` now (as a plain tuple of its fields)."""
        self.log.append((self.env.now, kind, subject, org, amount, generation, detail, tranche))

    def _site_log(
        self, site: int, kind: str, amount: float = 0.0, generation: str = "", detail: str = "",
        tranche: int = 0,
    ) -> None:  # fmt: skip
        """Log a :class:`WorldEvent` of ``site`` now."""
        self.log.append(
            (self.env._now, kind, self.site_names[site], self.owner[site], amount, generation,
             detail, tranche)
        )  # fmt: skip

    def _open_markets(self) -> None:
        s = self.scenario
        for name, budget in self.budgets.items():
            region = s.grid_regions[name]
            budget.add(region.mw_per_year)
            if region.queue_ahead_mw:
                budget.request(("ahead", name), region.queue_ahead_mw, -math.inf, lambda _: None)
            for t in self.model.year_starts:
                self._at(t, budget.add, region.mw_per_year)
        for org_name, org in s.orgs.items():
            for gen, gpus in org.fleet.items():
                if org.leasable:
                    self._lease_pool(org_name, gen).add(math.floor(gpus * org.leasable))

    # -- tasks ---------------------------------------------------------------------------------

    def _site_starts(self, site: int) -> None:
        info = self.model.sites[site]
        pause = self._strike_all(info.start_risks, site, None) if info.start_risks else 0.0
        if self.cancelled[site]:
            return
        if pause:
            self._at(pause, self._resume_site, site)
        else:
            self._release_sources(site)

    def _resume_site(self, site: int) -> None:
        if not self.cancelled[site]:
            self._site_log(site, "resumed", detail="site start")
            self._release_sources(site)

    def _release_sources(self, site: int) -> None:
        for task in self.model.sites[site].tasks:
            if self.pending[task] == 0:
                self._make_ready(task)

    def _make_ready(self, task: int) -> None:
        self.ready[task] = self.env._now
        risks = self.task_risks[task]
        if not risks:  # the common case, kept short
            self._acquire(task)
            return
        site = self.task_site[task]
        pause = self._strike_all(risks, site, task)
        if self.cancelled[site]:
            return
        if pause:
            self.gate[task] = f"paused:{self.env.now + pause:.1f}"
            self._at(pause, self._resume, task)
        else:
            self._acquire(task)

    def _resume(self, task: int) -> None:
        site = self.tasks[task].site
        if not self.cancelled[site]:
            self.gate.pop(task, None)
            self._site_log(site, "resumed", detail=self.tasks[task].stage)
            self._acquire(task)

    def _acquire(self, task: int) -> None:
        needs = self.task_needs[task]
        if needs:
            k = self.next_need[task]
            if k < len(needs):
                self.next_need[task] = k + 1
                name, amount = needs[k]
                self._queue(self.pools[name], task, amount, self.priority[task], self._granted)
                return
        kind = self.task_kind[task]
        if kind == "task" or kind == "power":
            self.start[task] = self.env._now
            self._at(self.values[self.task_slot[task]] + self.extra[task], self.complete, task)
            return
        if kind != "permit" and kind != "grid":  # those start when their review or study slot frees
            self.start[task] = self.env._now
        self.begin[kind](task)

    def _granted(self, task: int) -> None:
        if self.cancelled[self.task_site[task]]:
            self._release_needs(task)
        else:
            self._acquire(task)

    def _release_needs(self, task: int) -> None:
        for name, _ in self.task_needs[task][: self.next_need[task]]:
            pool = self.pools[name]
            if task in pool.holders:
                pool.release(task)

    def _complete(self, task: int) -> None:
        site = self.task_site[task]
        if self.cancelled[site]:
            self._release_needs(task)
            return
        self.finish[task] = self.env._now
        if self.gate:
            self.gate.pop(task, None)
        if self.task_needs[task]:
            self._release_needs(task)
        kind = self.task_kind[task]
        if kind == "grid" or kind == "power":
            spec = self.tasks[task].spec
            if kind == "power" and spec.capex_per_mw:
                mw = self.model.sites[site].spec.mw
                self._site_log(site, "capex", mw * spec.capex_per_mw, detail="on-site power")
            self.power_left[site] -= 1
            if self.power_left[site] == 0:
                self.powered[site] = True
                self._site_log(site, "powered")
                self._update_online(site)
        pending = self.pending
        for successor in self.task_successors[task]:
            pending[successor] -= 1
            if pending[successor] == 0:
                if self.task_plain[successor]:  # _make_ready and _acquire, inlined
                    self.ready[successor] = self.start[successor] = self.env._now
                    duration = self.values[self.task_slot[successor]] + self.extra[successor]
                    self._at(duration, self.complete, successor)
                else:
                    self._make_ready(successor)
        self.site_left[site] -= 1
        if self.site_left[site] == 0:
            info = self.model.sites[site]
            if not info.has_construction:
                self._build(site, info.spec.mw)
            self._site_log(site, "site_complete")

    # -- risks ---------------------------------------------------------------------------------

    def _strike_all(self, risks: tuple[int, ...], site: int, task: int | None) -> float:
        """Apply every risk that strikes now; return the pause before going on."""
        pause = 0.0
        for r in risks:
            pause += self._strike(r, site, task)
        return pause

    def _strike(self, r: int, site: int, task: int | None) -> float:
        info = self.model.risks[r]
        risk = self.scenario.risks[info.name]
        if self.cancelled[site] or self.values[info.occurrence[site]] >= risk.probability:
            return 0.0
        trigger = risk.trigger
        why = ""
        if trigger is not None:
            if trigger.flag is not None:
                if not self.flags[trigger.flag]:
                    return 0.0
                why = f"flag {trigger.flag} raised"
            if trigger.energy_price_above is not None:
                price = self.energy_price(site, self.env.now)
                if price <= trigger.energy_price_above:
                    return 0.0
                why = ", ".join(
                    filter(
                        None, [why, f"energy {price:.0f} USD/MWh > {trigger.energy_price_above:g}"]
                    )
                )
        where = self.tasks[task].stage if task is not None else "site start"
        detail = f"risk {info.name} at {where}" + (f" ({why})" if why else "")
        effect = risk.effect
        if effect.kind == "delay":
            delay = self.values[info.effect[site]]
            self._site_log(site, "delayed", delay, detail=detail)
            if task is None:  # a delay at the site's start postpones it
                return delay
            self.extra[task] += delay
            return 0.0
        if effect.kind == "pause":
            pause = self.values[info.effect[site]]
            self._site_log(site, "paused", pause, detail=detail)
            return pause
        if effect.kind == "cancel":
            self._cancel(site, detail)
            return 0.0
        self._transfer(site, effect.transfer.to, detail)
        return 0.0

    def _queue(
        self, supply: Supply, key: Hashable, amount: float, priority: object, on_grant: Callable
    ) -> None:
        """Request from ``supply`` on behalf of a site's task (``key`` is the task or a
        (task, tranche) pair), remembering it so a cancellation can withdraw it."""
        task = key if key.__class__ is int else key[0]
        self.requests[self.task_site[task]].append((supply, key))
        supply.request(key, amount, priority, on_grant)

    def _cancel(self, site: int, why: str) -> None:
        self.cancelled[site] = True
        self._site_log(site, "cancelled", detail=why)
        for supply, key in self.requests[site]:
            supply.withdraw(key)  # nothing waits behind a request that will never be used
        for task in self.model.sites[site].tasks:  # and what its stages hold goes back now
            self._release_needs(task)
            for pool in (*self.reviews.values(), *self.studies.values()):
                if task in pool.holders:
                    pool.release(task)
        if self.market is not None:
            self._hbm_catch_up()
            for key in self.hbm_orders[site]:
                if self.market.give_back(self.env.now, key):
                    # the whole order leaves the backlog (what was filled went back to the pool)
                    self._hbm_wake()
                    gb = (
                        self.tranche_gpus[key]
                        * self.scenario.generations[self.tranche_gen[key]].hbm_gb
                    )
                    self._site_log(site, "hbm_cancelled", gb, tranche=key[1] + 1)

    def _transfer(self, site: int, to: str, why: str) -> None:
        before = self.owner[site]
        self.owner[site] = to  # logged under the new owner, who holds the capacity from now on
        self._site_log(
            site, "transferred", self.online_mw[site], detail=f"from {before} to {to}; {why}"
        )
        for gen, gpus in self.gpus_online[site].items():
            # The old owner's offer of this site's GPUs leaves with the site, as far as it is not
            # leased out; GPUs its customers hold stay theirs and cannot be offered again.
            offered = math.floor(gpus * self._leasable(before))
            pool = self._lease_pool(before, gen)
            freed = min(offered, pool.available)
            pool.available -= freed
            if share := self._leasable(to):
                self._lease_pool(to, gen).add(max(0, math.floor(gpus * share) - (offered - freed)))

    def energy_price(self, site: int, t: float) -> float:
        return energy_price(
            self.scenario, self.model.sites[site].spec.region, t, self.energy_factor
        )

    # -- the horizon report --------------------------------------------------------------------

    def _blockages(self, finish: np.ndarray) -> list[Blockage]:
        unit = self.scenario.time_unit
        blockages = []
        active = self.model.active_array
        for i in active[np.isnan(finish[active])].tolist():
            task = self.tasks[i]
            if not math.isnan(self.finish[i]) or self.cancelled[task.site]:
                continue
            name = self.model.sites[task.site].spec.name
            if not math.isnan(self.start[i]):
                state, why = self._describe_gate(i)
                if not why:
                    state = "running"
                    why = f"started at {self.start[i]:.1f} {unit}"
            elif i in self.gate:
                state, why = self._describe_gate(i)
            elif not math.isnan(self.ready[i]):
                resource, amount = task.needs[self.next_need[i] - 1]
                pool = self.pools[resource]
                place = pool.waiting(i)
                state = "waiting for resource"
                why = (
                    f"{resource}: wants {amount:g}, {pool.capacity - pool.available:g} of "
                    f"{pool.capacity:g} in use, {place.position - 1 if place else 0} request(s) "
                    f"for {place.amount_ahead if place else 0:g} ahead of it"
                )
            else:
                unfinished = [
                    self.tasks[p].stage for p in task.predecessors if math.isnan(self.finish[p])
                ]
                state = "waiting for predecessors"
                why = ", ".join(unfinished) if unfinished else "the site's start"
            blockages.append(Blockage(name, task.stage, state, why))
        return blockages + self._lease_blockages()

    def _describe_gate(self, task: int) -> tuple[str, str]:
        gate, task_key = self.gate.get(task), None
        if gate is None and self.tasks[task].kind == "gpus":
            # the first tranche not yet online tells what the stage waits for
            site = self.model.sites[self.tasks[task].site]
            states = [self.tranche_state.get((task, k), "") for k in range(len(site.tranches))]
            gate = next((s for s in states if s != "online"), None)
            task_key = (task, states.index(gate)) if gate is not None else None
        if gate is None:
            return "", ""
        kind, _, name = gate.partition(":")
        site = self.model.sites[self.tasks[task].site]
        if kind == "pool":
            pool = next(
                p for p in [*self.reviews.values(), *self.studies.values()] if p.name == name
            )
            place = pool.waiting(task)
            ahead = place.position - 1 if place else 0
            return (
                "waiting for resource",
                f"{name}: all {pool.capacity:g} busy, {ahead} ahead of it",
            )
        if kind == "budget":
            budget = self.budgets[name]
            place = budget.waiting(task)
            ahead = place.amount_ahead if place else 0.0
            return "waiting for grid capacity", (
                f"{name}: wants {site.spec.mw:g} MW, {ahead:,.0f} MW of requests ahead of it, "
                f"{budget.available:,.0f} MW of this year's budget left"
            )
        if kind == "generation":
            return (
                "waiting for GPU generation",
                f"{name} not yet available to {self.owner[site.index]}",
            )
        if kind == "hbm" and self.market is not None:
            wants, ahead = self.market.remaining(task_key), self.market.ahead_of(task_key)
            return "waiting for HBM", (
                f"tranche {task_key[1] + 1} wants {_pb(wants)}, {_pb(ahead)} of orders ahead of it"
            )
        if kind == "power":
            return (
                "waiting for powered MW",
                f"{self.online_mw[site.index]:g} of {site.spec.mw:g} MW online",
            )
        if kind == "paused":
            return "paused", f"by a risk until {name} {self.scenario.time_unit}"
        if kind == "appeal":
            return "running", "permit appeal under way"
        return "running", ""


def _pb(gb: float) -> str:
    return f"{gb / 1e6:,.1f} PB" if gb >= 1e5 else f"{gb:,.0f} GB"
