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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import simpy

from capsim.hbm import HbmMarket
from capsim.resources import ResourcePool, Supply
from capsim.world import NEWEST

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from capsim.model import Model
    from capsim.schema import Scenario
    from capsim.world import Generation


class StageRecord(NamedTuple):
    """One stage of one site: when it became ready, started and finished (model time; ``nan``
    if it had not happened by the horizon)."""

    site: str
    stage: str
    ready: float
    start: float
    finish: float


class WorldEvent(NamedTuple):
    """Something that happened to a site or an agreement: capacity coming online, HBM allocated,
    a permit refused, a risk striking, a lease delivery."""

    time: float
    kind: str
    subject: str  # a site or an agreement
    org: str  # the org it concerns (the site's owner, the lease's customer)
    amount: float  # MW, GPUs or GB, by kind
    generation: str
    detail: str
    tranche: int = 0  # the tranche (1, 2, ...) of a site's GPUs or of an agreement; 0 if none


class Blockage(NamedTuple):
    """A task that had not finished at the horizon, and what it was waiting for."""

    site: str
    stage: str
    state: str
    waiting_on: str


@dataclass(frozen=True)
class Run:
    """The outcome of one replication: stage times as arrays, the world's events, what was stuck."""

    model: Model
    values: np.ndarray
    extra: np.ndarray  # time added to each task by risks
    ready: np.ndarray
    start: np.ndarray
    finish: np.ndarray
    world: list[WorldEvent]
    blockages: list[Blockage]
    owners: list[str]  # each site's owner at the horizon
    energy_factor: dict[str, float]

    @property
    def finished(self) -> bool:
        """Whether every active, uncancelled stage finished by the horizon."""
        return not self.blockages

    @property
    def durations(self) -> np.ndarray:
        """Each task's planned duration (its draw plus any risk delay)."""
        return self.values[: len(self.model.tasks)] + self.extra

    def events(self) -> list[StageRecord]:
        """The stage log: one record per active site x stage, in site then stage order."""
        tasks, names = self.model.tasks, [s.spec.name for s in self.model.sites]
        return [
            StageRecord(
                names[tasks[i].site],
                tasks[i].stage,
                float(self.ready[i]),
                float(self.start[i]),
                float(self.finish[i]),
            )
            for i in self.model.active_tasks
        ]


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
    """Run one replication of ``model`` with slot ``values`` (see :meth:`Model.draw`)."""
    return _Replication(model, values).run()


class _Replication:
    """The mutable state of one run; discarded afterwards."""

    def __init__(self, model: Model, values: np.ndarray) -> None:
        self.model = model
        self.scenario = s = model.scenario
        self.tasks = model.tasks
        self.values = values.tolist()
        self.env = simpy.Environment()
        n, n_sites = len(model.tasks), len(model.sites)
        self.ready = [math.nan] * n
        self.start = [math.nan] * n
        self.finish = [math.nan] * n
        self.extra = [0.0] * n
        self.pending = list(model.pending)
        self.next_need = [0] * n
        self.gate: dict[int, str] = {}  # what a started task waits on besides time
        self.priority = [s.sites[t.site].priority for t in model.tasks]
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
        self.owner = [site.spec.org for site in model.sites]
        self.cancelled = [False] * n_sites
        self.requests: list[list[tuple[Supply, Hashable]]] = [[] for _ in model.sites]
        self.hbm_orders: list[list[tuple[int, int]]] = [[] for _ in model.sites]
        self.powered = [not site.power_tasks for site in model.sites]
        self.power_left = [len(site.power_tasks) for site in model.sites]
        self.built_mw = [0.0] * n_sites
        self.online_mw = [0.0] * n_sites
        self.site_power = [Supply(f"{site.spec.name} powered MW") for site in model.sites]
        self.tranche_left: dict[int, int] = {}
        self.tranche_gen: dict[tuple[int, int], str] = {}
        self.tranche_gpus: dict[tuple[int, int], int] = {}
        self.gpus_online = [dict[str, int]() for _ in model.sites]
        self.phases_left: dict[int, int] = {}
        self.lease_supply: dict[tuple[str, str], Supply] = {}
        self.lease_state: dict[tuple[int, int], str] = {}
        self.lease_tranche: dict[tuple[int, int], tuple[str, int, float]] = {}  # gen, GPUs, due
        self.terminated = [False] * len(model.leases)
        self.world: list[WorldEvent] = []
        self.flags = {
            name: self.values[slot] < s.flags[name] for name, slot in model.flag_slots.items()
        }
        self.energy_factor = {name: self.values[slot] for name, slot in model.energy_slots.items()}

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Run:
        env, horizon = self.env, self.scenario.horizon
        self._open_markets()
        for info in self.model.sites:
            if info.active:
                self._at(info.spec.start, self._site_starts, info.index)
        for i, lease in enumerate(self.model.leases):
            if lease.active:
                self._at(self.values[lease.negotiation_slot], self._lease_signed, i)
        while env.peek() <= horizon:
            env.step()
        return Run(
            self.model,
            np.asarray(self.values),
            np.asarray(self.extra),
            np.asarray(self.ready),
            np.asarray(self.start),
            np.asarray(self.finish),
            self.world,
            self._blockages(),
            self.owner,
            self.energy_factor,
        )

    def _at(self, delay: float, callback: Callable, arg: Hashable) -> None:
        """Call ``callback(arg)`` after ``delay``."""
        self.env.timeout(max(delay, 0.0), value=arg).callbacks.append(
            lambda event: callback(event.value)
        )

    def _log(
        self, kind: str, subject: str, org: str, amount: float = 0.0, **more: str | int
    ) -> None:
        """Log a :class:`WorldEvent` now; ``more``: generation, detail, tranche."""
        self.world.append(
            WorldEvent(
                self.env.now, kind, subject, org, amount, **{"generation": "", "detail": "", **more}
            )
        )

    def _site_log(self, site: int, kind: str, amount: float = 0.0, **more: str | int) -> None:
        self._log(kind, self.model.sites[site].spec.name, self.owner[site], amount, **more)

    def _open_markets(self) -> None:
        s = self.scenario
        for name, budget in self.budgets.items():
            region = s.grid_regions[name]
            budget.add(region.mw_per_year)
            if region.queue_ahead_mw:
                budget.request(("ahead", name), region.queue_ahead_mw, -math.inf, lambda _: None)
            for t in self.model.year_starts:
                self._at(t, budget.add, region.mw_per_year)
        if s.hbm is not None:
            period = s.hbm.period
            k = 1
            while k * period <= s.horizon:
                self._at(k * period, self._hbm_delivery, (k - 1) * period)
                k += 1
        for org_name, org in s.orgs.items():
            for gen, gpus in org.fleet.items():
                if org.leasable:
                    self._lease_pool(org_name, gen).add(math.floor(gpus * org.leasable))

    # -- tasks ---------------------------------------------------------------------------------

    def _site_starts(self, site: int) -> None:
        info = self.model.sites[site]
        pause = self._strike_all(info.start_risks, site, None)
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
        self.ready[task] = self.env.now
        site = self.tasks[task].site
        pause = self._strike_all(self.tasks[task].risks, site, task)
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
        needs = self.tasks[task].needs
        k = self.next_need[task]
        if k < len(needs):
            self.next_need[task] = k + 1
            name, amount = needs[k]
            self._queue(self.pools[name], task, amount, self.priority[task], self._granted)
            return
        kind = self.tasks[task].kind
        if kind not in ("permit", "grid"):  # those start when their review or study slot is free
            self.start[task] = self.env.now
        if kind in ("task", "power"):
            self._at(self.values[self.tasks[task].slot] + self.extra[task], self._complete, task)
        else:
            getattr(self, f"_begin_{kind}")(task)

    def _granted(self, task: int) -> None:
        if self.cancelled[self.tasks[task].site]:
            self._release_needs(task)
        else:
            self._acquire(task)

    def _release_needs(self, task: int) -> None:
        for name, _ in self.tasks[task].needs[: self.next_need[task]]:
            if task in self.pools[name].holders:
                self.pools[name].release(task)

    def _complete(self, task: int) -> None:
        spec = self.tasks[task]
        site = spec.site
        if self.cancelled[site]:
            self._release_needs(task)
            return
        self.finish[task] = self.env.now
        self.gate.pop(task, None)
        self._release_needs(task)
        if spec.kind == "power" and spec.spec.capex_per_mw:
            mw = self.model.sites[site].spec.mw
            self._site_log(site, "capex", mw * spec.spec.capex_per_mw, detail="on-site power")
        if spec.kind in ("grid", "power"):
            self.power_left[site] -= 1
            if self.power_left[site] == 0:
                self.powered[site] = True
                self._site_log(site, "powered")
                self._update_online(site)
        for successor in spec.successors:
            self.pending[successor] -= 1
            if self.pending[successor] == 0:
                self._make_ready(successor)
        info = self.model.sites[site]
        if all(not math.isnan(self.finish[t]) for t in info.tasks):
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
        task = key if isinstance(key, int) else key[0]
        self.requests[self.tasks[task].site].append((supply, key))
        supply.request(key, amount, priority, on_grant)

    def _cancel(self, site: int, why: str) -> None:
        self.cancelled[site] = True
        self._site_log(site, "cancelled", detail=why)
        for supply, key in self.requests[site]:
            supply.withdraw(key)  # nothing waits behind a request that will never be used
        if self.market is not None:
            for key in self.hbm_orders[site]:
                self.market.give_back(self.env.now, key)

    def _transfer(self, site: int, to: str, why: str) -> None:
        before = self.owner[site]
        self.owner[site] = to  # logged under the new owner, who holds the capacity from now on
        self._site_log(
            site, "transferred", self.online_mw[site], detail=f"from {before} to {to}; {why}"
        )
        for gen, gpus in self.gpus_online[site].items():
            # what the old owner offered for lease and has not leased out moves with the site
            offered = math.floor(gpus * self._leasable(before))
            pool = self._lease_pool(before, gen)
            pool.available -= min(offered, pool.available)
            self._offer(to, gen, gpus)

    def energy_price(self, site: int, t: float) -> float:
        return energy_price(
            self.scenario, self.model.sites[site].spec.region, t, self.energy_factor
        )

    # -- permits -------------------------------------------------------------------------------

    def _hold(self, pool: ResourcePool | None, task: int, then: Callable[[int], None]) -> None:
        """Start ``task`` once it holds a slot of ``pool`` (at once without a pool), then
        ``then(task)``."""
        if pool is None:
            self.start[task] = self.env.now
            then(task)
            return
        self.gate[task] = f"pool:{pool.name}"
        self._queue(pool, task, 1, self.priority[task], lambda t: self._held(pool, t, then))

    def _held(self, pool: ResourcePool, task: int, then: Callable[[int], None]) -> None:
        if self.cancelled[self.tasks[task].site]:
            pool.release(task)
            return
        self.gate.pop(task, None)
        self.start[task] = self.env.now
        then(task)

    def _begin_permit(self, task: int) -> None:
        site = self.model.sites[self.tasks[task].site].spec
        self._hold(self.reviews.get(site.jurisdiction), task, self._review)

    def _review(self, task: int) -> None:
        self._at(self.values[self.tasks[task].slot] + self.extra[task], self._decided, task)

    def _decided(self, task: int) -> None:
        spec = self.tasks[task]
        site = self.model.sites[spec.site].spec
        pool = self.reviews.get(site.jurisdiction)
        if pool is not None and task in pool.holders:
            pool.release(task)
        if self.cancelled[spec.site]:
            return self._release_needs(task)
        jurisdiction = self.scenario.jurisdictions[site.jurisdiction]
        refused, appeal, _ = spec.extra_slots
        if self.values[refused] >= jurisdiction.refusal:
            return self._complete(task)
        self._site_log(spec.site, "permit_refused", detail=f"{site.jurisdiction}: {spec.stage}")
        if jurisdiction.appeal is None:
            self._cancel(spec.site, "permit refused, no appeal")
            return self._release_needs(task)
        self.gate[task] = "appeal"
        self._at(self.values[appeal], self._appealed, task)

    def _appealed(self, task: int) -> None:
        spec = self.tasks[task]
        jurisdiction = self.scenario.jurisdictions[self.model.sites[spec.site].spec.jurisdiction]
        if self.values[spec.extra_slots[2]] < jurisdiction.appeal_success:
            self._site_log(spec.site, "appeal_won", detail=spec.stage)
            self._complete(task)
        else:
            self._cancel(spec.site, f"permit appeal lost ({spec.stage})")
            self._release_needs(task)

    # -- grid ----------------------------------------------------------------------------------

    def _begin_grid(self, task: int) -> None:
        region = self.model.sites[self.tasks[task].site].spec.region
        self._hold(self.studies.get(region), task, self._study)

    def _study(self, task: int) -> None:
        self._at(self.values[self.tasks[task].slot] + self.extra[task], self._studied, task)

    def _studied(self, task: int) -> None:
        site = self.model.sites[self.tasks[task].site].spec
        pool = self.studies.get(site.region)
        if pool is not None and task in pool.holders:
            pool.release(task)
        if self.cancelled[self.tasks[task].site]:
            return self._release_needs(task)
        budget = self.budgets.get(site.region)
        if budget is None:
            return self._connected(task)
        self.gate[task] = f"budget:{site.region}"
        self._queue(budget, task, site.mw, self.ready[task], self._connected)

    def _connected(self, task: int) -> None:
        site = self.tasks[task].site
        self.gate.pop(task, None)
        mw = self.model.sites[site].spec.mw
        if self.cancelled[site]:
            self.budgets[self.model.sites[site].spec.region].add(mw)  # back to the region
            return self._release_needs(task)
        self._site_log(site, "grid_granted", mw, detail=self.model.sites[site].spec.region or "")
        self._at(self.values[self.tasks[task].extra_slots[0]], self._complete, task)

    # -- construction and power ----------------------------------------------------------------

    def _begin_construction(self, task: int) -> None:
        spec = self.tasks[task]
        total = self.values[spec.slot] + self.extra[task]
        phases = spec.spec.phases
        self.phases_left[task] = phases
        for i in range(1, phases + 1):
            self._at(total * i / phases, self._phase_built, task)

    def _phase_built(self, task: int) -> None:
        spec = self.tasks[task]
        if self.cancelled[spec.site]:
            if self.phases_left[task] > 0:
                self.phases_left[task] = 0
                self._release_needs(task)
            return
        self._build(spec.site, self.model.sites[spec.site].spec.mw / spec.spec.phases)
        self.phases_left[task] -= 1
        if self.phases_left[task] == 0:
            self._complete(task)

    def _build(self, site: int, mw: float) -> None:
        info = self.model.sites[site].spec
        capex = (
            info.capex_per_mw if info.capex_per_mw is not None else self.scenario.costs.capex_per_mw
        )
        self.built_mw[site] += mw
        self._site_log(site, "mw_built", mw)
        self._site_log(site, "capex", mw * capex, detail="facility")
        self._update_online(site)

    def _update_online(self, site: int) -> None:
        delta = (self.built_mw[site] if self.powered[site] else 0.0) - self.online_mw[site]
        if delta > 1e-9:
            self.online_mw[site] += delta
            self._site_log(site, "mw_online", delta)
            self.site_power[site].add(delta)

    # -- GPUs and HBM --------------------------------------------------------------------------

    def _begin_gpus(self, task: int) -> None:
        sizes = self.model.sites[self.tasks[task].site].tranches
        self.tranche_left[task] = len(sizes)
        for k in range(len(sizes)):
            self._order_tranche((task, k))

    def _generation(self, org: str, wanted: str) -> tuple[str | None, float]:
        """The generation ``org`` gets now (None if none yet) and when to ask again."""
        tier = self.scenario.org(org).tier
        now = self.env.now
        gens = self.scenario.generations
        if wanted != NEWEST:
            when = gens[wanted].available_to(tier)
            return (wanted, now) if when <= now else (None, when)
        ready = [
            (g.available_to(tier), name) for name, g in gens.items() if g.available_to(tier) <= now
        ]
        if ready:
            return max(ready)[1], now
        return None, min(g.available_to(tier) for g in gens.values())

    def _order_tranche(self, key: tuple[int, int]) -> None:
        task, k = key
        site = self.tasks[task].site
        if self.cancelled[site]:
            return
        info = self.model.sites[site]
        gen_name, when = self._generation(self.owner[site], info.spec.gpus.generation)
        if gen_name is None:
            self.gate[task] = f"generation:{info.spec.gpus.generation}"
            self._at(when - self.env.now, self._order_tranche, key)
            return
        gen = self.scenario.generations[gen_name]
        gpus = info.tranches[k] or self._gpus_for(info.spec.mw / len(info.tranches), gen)
        self.tranche_gen[key], self.tranche_gpus[key] = gen_name, gpus
        self._site_log(site, "gpus_ordered", gpus, generation=gen_name, tranche=k + 1)
        if self.market is None:
            return self._hbm_granted(key)
        self.gate[task] = "hbm"
        tier = self.scenario.org(self.owner[site]).tier
        self.hbm_orders[site].append(key)
        self.market.order(
            self.env.now,
            key,
            self.owner[site],
            gpus * gen.hbm_gb,
            (tier, self.env.now),
            self._hbm_granted,
        )

    @staticmethod
    def _gpus_for(mw: float, gen: Generation) -> int:
        return max(1, math.floor(mw * 1000 / gen.power_kw + 1e-9))

    def _hbm_granted(self, key: tuple[int, int]) -> None:
        task, k = key
        site = self.tasks[task].site
        gen = self.scenario.generations[self.tranche_gen[key]]
        if self.cancelled[site]:
            if self.market is not None:  # a cancelled site's memory goes back to the pool
                self.market.give_back(self.env.now, key)
            return
        if self.market is not None:
            gb = self.tranche_gpus[key] * gen.hbm_gb
            self._site_log(
                site, "hbm_allocated", gb, generation=self.tranche_gen[key], tranche=k + 1
            )
        self.gate[task] = "delivery"
        delivery = self.values[self.tasks[task].extra_slots[k]] + self.extra[task]
        self._at(delivery, self._delivered, key)

    def _delivered(self, key: tuple[int, int]) -> None:
        task, _ = key
        site = self.tasks[task].site
        if self.cancelled[site]:
            return
        gen = self.scenario.generations[self.tranche_gen[key]]
        mw = self.tranche_gpus[key] * gen.power_kw / 1000
        self.gate[task] = "power"
        self._queue(self.site_power[site], key, mw, self.env.now, self._tranche_online)

    def _tranche_online(self, key: tuple[int, int]) -> None:
        task, k = key
        site = self.tasks[task].site
        if self.cancelled[site]:
            return
        gen_name, gpus = self.tranche_gen[key], self.tranche_gpus[key]
        gen = self.scenario.generations[gen_name]
        self.gpus_online[site][gen_name] = self.gpus_online[site].get(gen_name, 0) + gpus
        self._site_log(site, "gpus_online", gpus, generation=gen_name, tranche=k + 1)
        self._site_log(site, "capex", gpus * gen.price, generation=gen_name, detail="GPUs")
        self._offer(self.owner[site], gen_name, gpus)
        self.tranche_left[task] -= 1
        if self.tranche_left[task] == 0:
            self._complete(task)

    def _hbm_delivery(self, period_start: float) -> None:
        reserved: dict[str, float] = {}
        common = 0.0
        for supplier in self.scenario.hbm.suppliers.values():
            level = 0.0
            for step in supplier.output:
                if step.from_ <= period_start:
                    level = step.gb_per_period
            for buyer, share in supplier.reserved.items():
                reserved[buyer] = reserved.get(buyer, 0.0) + level * share
            common += level * (1 - sum(supplier.reserved.values()))
        self.market.deliver(self.env.now, reserved, common)

    # -- leases --------------------------------------------------------------------------------

    def _lease_pool(self, org: str, gen: str) -> Supply:
        key = (org, gen)
        if key not in self.lease_supply:
            self.lease_supply[key] = Supply(f"{org} {gen} for lease")
        return self.lease_supply[key]

    def _leasable(self, org: str) -> float:
        return self.scenario.org(org).leasable if self.scenario.orgs else 0.0

    def _offer(self, org: str, gen: str, gpus: int) -> None:
        """``org``'s new GPUs: its leasable share becomes available to offtake agreements."""
        if share := self._leasable(org):
            self._lease_pool(org, gen).add(math.floor(gpus * share))

    def _lease_signed(self, i: int) -> None:
        info = self.model.leases[i]
        lease = self.scenario.leases[info.name]
        self._log("lease_signed", info.name, info.customer, detail=f"with {lease.provider}")
        base = max(lease.start, self.env.now)
        for k, tranche in enumerate(lease.tranches):
            self._at(base + tranche.at - self.env.now, self._lease_due, (i, k))

    def _lease_due(self, key: tuple[int, int]) -> None:
        i, k = key
        if self.terminated[i]:
            return
        info = self.model.leases[i]
        lease = self.scenario.leases[info.name]
        tranche = lease.tranches[k]
        gen_name, when = self._generation(lease.provider, tranche.generation or lease.generation)
        if gen_name is None:  # the provider cannot get the generation yet: due once it can
            self._at(when - self.env.now, self._lease_due, key)
            return
        gen = self.scenario.generations[gen_name]
        gpus = tranche.gpus or self._gpus_for(tranche.mw, gen)
        self.lease_state[key] = "due"
        self.lease_tranche[key] = (gen_name, gpus, self.env.now)
        tags = {"generation": gen_name, "tranche": k + 1}
        self._log("lease_due", info.name, info.customer, gpus, detail=lease.provider, **tags)
        self._lease_pool(lease.provider, gen_name).request(
            key, gpus, self.env.now, self._lease_delivered
        )
        if self.lease_state[key] == "due":
            why = f"{lease.provider} has too few {gen_name} GPUs free"
            self._log("lease_late", info.name, info.customer, gpus, detail=why, **tags)
            if lease.terminate_if_late is not None:
                self._at(lease.terminate_if_late, self._lease_check, key)

    def _lease_delivered(self, key: tuple[int, int]) -> None:
        i, k = key
        info = self.model.leases[i]
        lease = self.scenario.leases[info.name]
        gen_name, gpus, due = self.lease_tranche[key]
        if self.terminated[i]:
            self._lease_pool(lease.provider, gen_name).add(gpus)
            return
        self.lease_state[key] = "delivered"
        late = self.env.now - due
        detail = f"from {lease.provider}" + (
            f", {late:.0f} {self.scenario.time_unit} late" if late else ""
        )
        self._log(
            "lease_delivered",
            info.name,
            info.customer,
            gpus,
            generation=gen_name,
            detail=detail,
            tranche=k + 1,
        )
        self._at(lease.term, self._lease_returned, key)

    def _lease_returned(self, key: tuple[int, int]) -> None:
        if self.lease_state[key] != "delivered":
            return  # already given back when the agreement was terminated
        self.lease_state[key] = "returned"
        i, k = key
        info = self.model.leases[i]
        lease = self.scenario.leases[info.name]
        gen_name, gpus, _ = self.lease_tranche[key]
        self._log(
            "lease_ended",
            info.name,
            info.customer,
            gpus,
            generation=gen_name,
            detail=f"term over, back to {lease.provider}",
            tranche=k + 1,
        )
        self._lease_pool(lease.provider, gen_name).add(gpus)

    def _lease_check(self, key: tuple[int, int]) -> None:
        i, k = key
        if self.lease_state.get(key) != "due" or self.terminated[i]:
            return
        info = self.model.leases[i]
        self.terminated[i] = True
        self._log(
            "lease_terminated",
            info.name,
            info.customer,
            detail="a tranche is later than the termination right allows",
            tranche=k + 1,
        )
        lease = self.scenario.leases[info.name]
        for other, state in self.lease_state.items():
            if other[0] == i and state == "due":  # undelivered tranches leave the provider's queue
                self._lease_pool(lease.provider, self.lease_tranche[other][0]).withdraw(other)
        if not lease.take_or_pay:
            # without take-or-pay the customer walks away from what it already has, too
            for other, state in list(self.lease_state.items()):
                if other[0] == i and state == "delivered":
                    self._lease_returned(other)

    # -- the horizon report --------------------------------------------------------------------

    def _blockages(self) -> list[Blockage]:
        unit = self.scenario.time_unit
        blockages = []
        for i in self.model.active_tasks:
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
        return blockages

    def _describe_gate(self, task: int) -> tuple[str, str]:
        gate = self.gate.get(task)
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
            ahead = min(self.market.ahead_of((task, k)) for k in range(len(site.tranches)))
            return "waiting for HBM", f"{_pb(ahead)} of orders ahead of it"
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
