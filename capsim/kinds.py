"""The stage kinds beyond a plain timeout, as the part of a replication that runs them: permits
(review slots, refusal, appeal), grid connections (study slots, a yearly MW budget, the build),
construction in phases with MW online once powered, and GPU tranches (generation, HBM, delivery,
powered MW). :class:`~capsim.engine._Replication` mixes it in; the state lives there.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from capsim.resources import Supply

if TYPE_CHECKING:
    from collections.abc import Callable

    from capsim.resources import ResourcePool
    from capsim.world import Generation


class StageKinds:
    """Handlers ``_begin_<kind>`` and their continuations."""

    # -- permits -------------------------------------------------------------------------------

    def _hold(self, pool: ResourcePool | None, task: int, then: Callable[[int], None]) -> None:
        """Start ``task`` once it holds a slot of ``pool`` (at once without a pool), then
        ``then(task)``."""
        if pool is None:
            self.start[task] = self.env._now
            then(task)
            return
        self.gate[task] = f"pool:{pool.name}"
        self._queue(pool, task, 1, self.priority[task], lambda t: self._held(pool, t, then))

    def _held(self, pool: ResourcePool, task: int, then: Callable[[int], None]) -> None:
        if self.cancelled[self.task_site[task]]:
            pool.release(task)
            return
        self.gate.pop(task, None)
        self.start[task] = self.env._now
        then(task)

    def _begin_permit(self, task: int) -> None:
        site = self.model.sites[self.task_site[task]].spec
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
        region = self.model.sites[self.task_site[task]].spec.region
        self._hold(self.studies.get(region), task, self._study)

    def _study(self, task: int) -> None:
        self._at(self.values[self.tasks[task].slot] + self.extra[task], self._studied, task)

    def _studied(self, task: int) -> None:
        site = self.model.sites[self.task_site[task]].spec
        pool = self.studies.get(site.region)
        if pool is not None and task in pool.holders:
            pool.release(task)
        if self.cancelled[self.task_site[task]]:
            return self._release_needs(task)
        budget = self.budgets.get(site.region)
        if budget is None:
            return self._connected(task)
        self.gate[task] = f"budget:{site.region}"
        self._queue(budget, task, site.mw, self.ready[task], self._connected)

    def _connected(self, task: int) -> None:
        site = self.task_site[task]
        self.gate.pop(task, None)
        mw = self.model.sites[site].spec.mw
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
        log, now = self.log.append, self.env._now
        name, org = self.site_names[site], self.owner[site]
        log((now, "mw_built", name, org, mw, "", "", 0))
        log((now, "capex", name, org, mw * capex, "", "facility", 0))
        self._update_online(site)

    def _update_online(self, site: int) -> None:
        delta = (self.built_mw[site] if self.powered[site] else 0.0) - self.online_mw[site]
        if delta > 1e-9:
            self.online_mw[site] += delta
            self._site_log(site, "mw_online", delta)
            self._power(site).add(delta)

    def _power(self, site: int) -> Supply:
        """The site's powered MW, which its GPU tranches take as they arrive."""
        supply = self.site_power[site]
        if supply is None:
            supply = self.site_power[site] = Supply(f"{self.site_names[site]} powered MW")
        return supply

    # -- GPUs and HBM --------------------------------------------------------------------------

    def _begin_gpus(self, task: int) -> None:
        sizes = self.model.sites[self.task_site[task]].tranches
        self.tranche_left[task] = len(sizes)
        for k in range(len(sizes)):
            self._order_tranche((task, k))

    def _generation(self, org: str, wanted: str) -> tuple[str | None, float]:
        """The generation ``org`` gets now (None if none yet) and when to ask again."""
        return self.model.generation_at(org, wanted, self.env._now)

    def _order_tranche(self, key: tuple[int, int]) -> None:
        task, k = key
        site = self.task_site[task]
        if self.cancelled[site]:
            return
        info = self.model.sites[site]
        gen_name, when = self._generation(self.owner[site], info.spec.gpus.generation)
        if gen_name is None:
            self.tranche_state[key] = f"generation:{info.spec.gpus.generation}"
            self._at(when - self.env._now, self._order_tranche, key)
            return
        gen = self.scenario.generations[gen_name]
        gpus = info.tranches[k] or self._gpus_for(info.spec.mw / len(info.tranches), gen)
        self.tranche_gen[key], self.tranche_gpus[key] = gen_name, gpus
        self._site_log(site, "gpus_ordered", gpus, generation=gen_name, tranche=k + 1)
        if self.market is None:
            return self._hbm_granted(key)
        self.tranche_state[key] = "hbm"
        tier = self.model.org(self.owner[site]).tier
        self.hbm_orders[site].append(key)
        self._hbm_catch_up()
        self.market.order(
            self.env._now,
            key,
            self.owner[site],
            gpus * gen.hbm_gb,
            (tier, info.rank, self.env._now),
            self._hbm_granted,
        )
        self._hbm_wake()

    @staticmethod
    def _gpus_for(mw: float, gen: Generation) -> int:
        return max(1, math.floor(mw * 1000 / gen.power_kw + 1e-9))

    def _hbm_granted(self, key: tuple[int, int]) -> None:
        task, k = key
        site = self.task_site[task]
        gen = self.scenario.generations[self.tranche_gen[key]]
        if self.market is not None:
            gb = self.tranche_gpus[key] * gen.hbm_gb
            self._site_log(
                site, "hbm_allocated", gb, generation=self.tranche_gen[key], tranche=k + 1
            )
        self.tranche_state[key] = "delivery"
        delivery = self.values[self.tasks[task].extra_slots[k]] + self.extra[task]
        self._at(delivery, self._delivered, key)

    def _delivered(self, key: tuple[int, int]) -> None:
        task, _ = key
        site = self.task_site[task]
        if self.cancelled[site]:
            return
        gen = self.scenario.generations[self.tranche_gen[key]]
        mw = self.tranche_gpus[key] * gen.power_kw / 1000
        self.tranche_state[key] = "power"
        self._queue(self._power(site), key, mw, self.env._now, self._tranche_online)

    def _tranche_online(self, key: tuple[int, int]) -> None:
        task, k = key
        site = self.task_site[task]
        if self.cancelled[site]:
            return
        gen_name, gpus = self.tranche_gen[key], self.tranche_gpus[key]
        gen = self.scenario.generations[gen_name]
        self.tranche_state[key] = "online"
        self.gpus_online[site][gen_name] = self.gpus_online[site].get(gen_name, 0) + gpus
        log, now = self.log.append, self.env._now
        name, org = self.site_names[site], self.owner[site]
        log((now, "gpus_online", name, org, gpus, gen_name, "", k + 1))
        log((now, "capex", name, org, gpus * gen.price, gen_name, "GPUs", 0))
        self._offer(self.owner[site], gen_name, gpus)
        self.tranche_left[task] -= 1
        if self.tranche_left[task] == 0:
            self._complete(task)

    def _hbm_catch_up(self) -> None:
        """Make every HBM delivery due by now. Deliveries are lazy: nobody waits while none is
        scheduled, so stock that piled up unseen can be handed over in one go; while orders wait,
        :meth:`_hbm_wake` schedules each delivery at its own time."""
        schedule = self.model.hbm_schedule
        reserved: dict[str, float] = {}
        common = 0.0
        while self.hbm_next < len(schedule) and schedule[self.hbm_next][0] <= self.env._now:
            _, shares, pool = schedule[self.hbm_next]
            for buyer, gb in shares.items():
                reserved[buyer] = reserved.get(buyer, 0.0) + gb
            common += pool
            self.hbm_next += 1
        if reserved or common:
            self.market.deliver(self.env._now, reserved, common)

    def _hbm_wake(self) -> None:
        """While orders wait, the next delivery is an event."""
        schedule = self.model.hbm_schedule
        if self.hbm_woken or not self.market.waiting or self.hbm_next >= len(schedule):
            return
        self.hbm_woken = True
        self._at(schedule[self.hbm_next][0] - self.env._now, self._hbm_tick, None)

    def _hbm_tick(self, _: None) -> None:
        self.hbm_woken = False
        self._hbm_catch_up()
        self._hbm_wake()
