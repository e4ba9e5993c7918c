"""The compiled model: a scenario (and one of its strategies) turned into flat task and slot tables
that every replication reuses.

Every random quantity of the whole world (each stage's duration, a permit's refusal, a tranche's
delivery time, a risk's occurrence, a flag, an energy-price factor, a lease's negotiation) has a
fixed *slot*. One replication draws one uniform per slot in a single numpy call and maps each
distribution's slots through its inverse CDF at once. Slots are laid out over every site and
agreement in the file, whatever the strategy, so replication ``i`` of two strategies shares the
draws of the world they share (common random numbers). The first ``len(tasks)`` slots are the
stages' own durations, in task order.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
>>> run = model.run(model.draw(replication_rng(seed=1)))
>>> run.finished
True
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

from capsim.distributions import Distribution, Lognormal
from capsim.engine import Blockage, Run, StageRecord, WorldEvent, simulate
from capsim.errors import CapsimError, did_you_mean
from capsim.graph import pipeline_graph, stage_order
from capsim.schema import Scenario, Site, Stage
from capsim.units import from_date
from capsim.world import NEWEST, Org

try:
    from capsim._arrays import uniforms as _uniforms
except ImportError:  # a source tree that was not built (pip install builds it): numpy seeds them
    _uniforms = None

__all__ = [
    "Blockage",
    "Model",
    "Run",
    "SiteInfo",
    "StageRecord",
    "Task",
    "WorldEvent",
    "replication_rng",
    "replication_uniforms",
]


def replication_rng(seed: int, replication: int = 0) -> np.random.Generator:
    """The random stream of one replication: a child of the root ``SeedSequence(seed)``.

    It depends only on (seed, replication), so results never depend on how replications are
    split among workers.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(replication,)))


def replication_uniforms(
    seed: int, replications: np.ndarray, n: int, order: Literal["C", "F"] = "C"
) -> np.ndarray:
    """The first ``n`` uniforms of each replication's stream, one row per replication: row ``k``
    equals ``replication_rng(seed, replications[k]).random(n)``, computed for a whole chunk at
    once (:mod:`capsim._arrays`) instead of building a generator for each. ``order="F"`` stores
    them by column (a slot's draws contiguous).

    >>> u = replication_uniforms(7, np.arange(3), 4)
    >>> u.shape, bool((u[2] == replication_rng(7, 2).random(4)).all())
    ((3, 4), True)
    """
    reps = np.asarray(replications, dtype=np.uint64)
    if _uniforms is None:
        drawn = [replication_rng(seed, int(i)).random(n) for i in reps]
        return np.array(drawn, order=order).reshape(len(reps), n)
    words = [seed & 0xFFFFFFFF]  # the seed's 32-bit words, least significant first
    while seed >> 32 * len(words):
        words.append((seed >> 32 * len(words)) & 0xFFFFFFFF)
    return _uniforms(np.array(words, dtype=np.uint32), reps, n, order)


@dataclass(frozen=True)
class Task:
    """A site x stage, compiled: its graph neighbours, resources, kind and random slots."""

    site: int
    stage: str
    kind: str
    spec: Stage
    predecessors: tuple[int, ...]
    successors: tuple[int, ...]
    needs: tuple[tuple[str, float], ...]  # in resource-name order
    slot: int  # its duration
    extra_slots: tuple[int, ...]  # kind-specific draws (refusal, build time, tranche deliveries)
    risks: tuple[int, ...]  # risks that may strike when it becomes ready


@dataclass
class SiteInfo:
    """A site, compiled."""

    index: int
    spec: Site
    active: bool
    tasks: range
    power_tasks: tuple[int, ...] = ()
    has_construction: bool = False
    tranches: tuple[int | None, ...] = ()  # GPUs per tranche; None = as many as its MW powers
    start_risks: tuple[int, ...] = ()
    start: float = 0.0  # earliest start, after any rollout order
    priority: int = 0  # for resources, after any rollout order
    rank: int = 0  # place in the rollout order among its org's HBM orders (0 if unordered)


@dataclass(frozen=True)
class RiskInfo:
    name: str
    sites: tuple[int, ...]
    occurrence: dict[int, int]  # site -> slot of its occurrence uniform
    effect: dict[int, int]  # site -> slot of its delay or pause duration


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    active: bool
    negotiation_slot: int
    customer: str


class Input(NamedTuple):
    """What a slot is, for sensitivity analysis: a label, whose it is (a site or an agreement, by
    index; None for the world) and, for a chance (a risk, a refusal, a flag), its probability:
    the event happens when the slot's uniform is below it."""

    label: str
    site: int | None = None
    lease: int | None = None
    chance: float | None = None
    used: bool = True  # a gpus stage's own duration slot is kept for the layout but not used


@dataclass
class _Slots:
    """The slot table under construction: a distribution (None = a raw uniform), a scale and
    what the slot is."""

    dists: list[Distribution | None] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    inputs: list[Input] = field(default_factory=list)

    def add(self, dist: Distribution | None, input: Input, scale: float = 1.0) -> int:
        self.dists.append(dist)
        self.scale.append(scale)
        self.inputs.append(input)
        return len(self.dists) - 1


class Model:
    """A scenario compiled once; :meth:`draw` and :meth:`run` simulate one replication.

    ``strategy`` selects which optional sites and agreements (those named by any strategy) are
    pursued; sites and agreements no strategy names are always part of the world.
    """

    def __init__(
        self,
        scenario: Scenario,
        strategy: str | None = None,
        rollout: Sequence[str] | None = None,
        gap: float = 0.0,
        perspective: str | None = None,
    ) -> None:
        """``rollout`` is an order of active sites: the k-th starts no earlier than
        ``k * gap`` after the start, and the order replaces their resource priorities and ranks
        their HBM orders among those of equal tier. ``perspective`` is the org whose capacity
        (own and leased) milestones and capacity profiles measure, by default the scenario's
        perspective org (with none, every org's own capacity together); costs are always the
        scenario's perspective org's."""
        if strategy is not None and strategy not in scenario.strategies:
            raise CapsimError(did_you_mean(strategy, scenario.strategies, "strategy"))
        self.scenario = scenario
        self.strategy = strategy
        optional_sites = {n for s in scenario.strategies.values() for n in s.sites}
        optional_leases = {n for s in scenario.strategies.values() for n in s.leases}
        chosen = scenario.strategies[strategy] if strategy else None
        chosen_sites = set(chosen.sites) if chosen else set()
        chosen_leases = set(chosen.leases) if chosen else set()

        slots = _Slots()
        self.tasks: list[Task] = []
        self.sites: list[SiteInfo] = []
        graphs = {name: pipeline_graph(p) for name, p in scenario.pipelines.items()}
        orders = {name: stage_order(g) for name, g in graphs.items()}
        for s, site in enumerate(scenario.sites):
            pipeline = scenario.pipelines[site.pipeline]
            graph, order = graphs[site.pipeline], orders[site.pipeline]
            first = len(self.tasks)
            index = {name: first + i for i, name in enumerate(order)}
            for name in order:
                stage = site.stage(pipeline, name)
                self.tasks.append(
                    Task(
                        site=s,
                        stage=name,
                        kind=stage.kind,
                        spec=stage,
                        predecessors=tuple(sorted(index[p] for p in graph.predecessors(name))),
                        successors=tuple(sorted(index[n] for n in graph.successors(name))),
                        needs=tuple(sorted(stage.needs.items())),
                        slot=slots.add(
                            self._main_duration(site, stage),
                            Input(
                                f"{site.name}/{name}: duration", site=s, used=stage.kind != "gpus"
                            ),
                            self._scale(site, stage),
                        ),
                        extra_slots=(),
                        risks=(),
                    )
                )
            active = site.name in chosen_sites or site.name not in optional_sites
            info = SiteInfo(s, site, active, range(first, len(self.tasks)))
            info.start, info.priority = site.start, site.priority
            self.sites.append(info)
        # kind-specific slots come after all main durations, so plain scenarios keep slot == task
        for i, task in enumerate(self.tasks):
            extra = self._extra_slots(slots, task, self.sites[task.site].spec)
            self.tasks[i] = _replace(task, extra_slots=extra)
        for info in self.sites:
            kinds = [self.tasks[t].kind for t in info.tasks]
            info.power_tasks = tuple(
                t for t in info.tasks if self.tasks[t].kind in ("grid", "power")
            )
            info.has_construction = "construction" in kinds
            info.tranches = _tranche_sizes(info.spec)

        self.risks: list[RiskInfo] = []
        by_name = {site.name: s for s, site in enumerate(scenario.sites)}
        for r, (name, risk) in enumerate(scenario.risks.items()):
            sites = tuple(by_name[n] for n in risk.sites)
            occurrence = {
                s: slots.add(None, Input(f"risk {name} at {scenario.sites[s].name}: occurs", site=s,
                                         chance=risk.probability))
                for s in sites
            }  # fmt: skip
            duration = risk.effect.delay or risk.effect.pause
            effect = {
                s: slots.add(duration, Input(f"risk {name} at {scenario.sites[s].name}: "
                                             f"{risk.effect.kind}", site=s))
                for s in sites
            } if duration is not None else {}  # fmt: skip
            self.risks.append(RiskInfo(name, sites, occurrence, effect))
            for s in sites:
                info = self.sites[s]
                if risk.stage is None:
                    info.start_risks += (r,)
                else:
                    t = next(t for t in info.tasks if self.tasks[t].stage == risk.stage)
                    self.tasks[t] = _replace(self.tasks[t], risks=(*self.tasks[t].risks, r))
        self.flag_slots = {
            name: slots.add(None, Input(f"flag {name}: raised", chance=p))
            for name, p in scenario.flags.items()
        }
        self.energy_slots = {
            name: slots.add(
                Lognormal(lognormal={"mu": 0.0, "sigma": region.energy_price.volatility}),
                Input(f"energy price {name}: factor"),
            )
            for name, region in scenario.grid_regions.items()
            if region.energy_price is not None
        }
        self.leases = [
            LeaseInfo(
                name,
                active=name in chosen_leases or name not in optional_leases,
                negotiation_slot=slots.add(
                    lease.negotiation, Input(f"{name}: negotiation", lease=i)
                ),
                customer=lease.customer or scenario.lab or "",
            )
            for i, (name, lease) in enumerate(scenario.leases.items())
        ]
        months = _month_starts(scenario)
        #: model times of the first day of every month, and of every 1 January, to the horizon
        self.month_starts = [t for _, t in months]
        self.year_starts = [t for day, t in months if day.month == 1]
        self.hbm_schedule = _hbm_schedule(scenario)
        self._arrange(rollout, gap, perspective)

        groups: dict[Distribution, list[int]] = {}
        for slot, dist in enumerate(slots.dists):
            if dist is not None:
                groups.setdefault(dist, []).append(slot)
        self.n_slots = len(slots.dists)
        self.inputs = slots.inputs
        self.slot_dists = slots.dists
        self._groups = [(dist, np.array(ids)) for dist, ids in groups.items()]
        self._slot_scale = np.array(slots.scale)
        self.pending = [len(t.predecessors) for t in self.tasks]
        self.active_tasks = [t for info in self.sites if info.active for t in info.tasks]
        self._flatten()

    def ordered(
        self, rollout: Sequence[str], gap: float = 0.0, perspective: str | None = None
    ) -> Model:
        """This model with another ``rollout``, ``gap`` and ``perspective``, as
        ``Model(scenario, strategy, rollout, gap, perspective)`` would compile it, without
        compiling the scenario again (the ordering search scores thousands of orders).

        >>> from capsim.loader import load_scenario, shipped_scenario
        >>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
        >>> ordered = model.ordered(["campus-phase-2", "campus-phase-1"], gap=30.0)
        >>> [(info.start, info.priority) for info in ordered.sites][:2]
        [(30.0, 1), (730.0, 0)]
        """
        model = copy.copy(self)
        model.sites = [dataclasses.replace(info) for info in self.sites]
        model._arrange(rollout, gap, perspective)
        model._flatten()
        return model

    def _arrange(self, rollout: Sequence[str] | None, gap: float, perspective: str | None) -> None:
        """Apply a rollout order (see :meth:`__init__`) to the sites' own starts and priorities,
        and set the perspective."""
        scenario = self.scenario
        orgs = {*scenario.orgs, *(site.org for site in scenario.sites)}
        if perspective is not None and perspective not in orgs:
            raise CapsimError(did_you_mean(perspective, sorted(orgs), "org"))
        self.perspective = perspective or scenario.lab
        for info in self.sites:
            info.start, info.priority, info.rank = info.spec.start, info.spec.priority, 0
        self.rollout = tuple(rollout or ())
        by_site = {info.spec.name: info for info in self.sites if info.active}
        for position, name in enumerate(self.rollout):
            if name not in by_site:
                raise CapsimError(did_you_mean(name, by_site, "active site") + " (in the rollout)")
            info = by_site[name]
            info.start = max(info.spec.start, position * gap)
            info.priority = info.rank = position
        #: the active sites in the order their starts are scheduled (which of those starting at
        #: the same time starts first): file order, the rollout's sites taking the places of
        #: theirs in the rollout's order
        self.start_order = [info.index for info in self.sites if info.active]
        ordered = iter(by_site[name].index for name in self.rollout)
        mine = {by_site[name].index for name in self.rollout}
        self.start_order = [next(ordered) if s in mine else s for s in self.start_order]

    def _flatten(self) -> None:
        """Plain per-task and per-site lists for the engine's hot paths (no attribute chains)."""
        tasks = self.tasks
        self.task_site = [t.site for t in tasks]
        self.task_kind = [t.kind for t in tasks]
        self.task_slot = [t.slot for t in tasks]
        self.task_needs = [t.needs for t in tasks]
        self.task_successors = [t.successors for t in tasks]
        self.task_risks = [t.risks for t in tasks]
        self.task_priority = [self.sites[t.site].priority for t in tasks]
        # a plain task starts when ready and ends after its duration: no resources, no risks
        self.task_plain = [t.kind == "task" and not t.needs and not t.risks for t in tasks]
        self.site_names = [info.spec.name for info in self.sites]
        self.site_owners = [info.spec.org for info in self.sites]
        self.active_array = np.array(self.active_tasks, dtype=int)
        # each active site's tasks, padded with len(tasks): a column past the end, for Run
        active = [info for info in self.sites if info.active]
        width = max((len(info.tasks) for info in active), default=0)
        self.active_site_tasks = np.full((len(active), width), len(tasks), dtype=int)
        for k, info in enumerate(active):
            self.active_site_tasks[k, : len(info.tasks)] = info.tasks
        self._orgs: dict[str, Org] = {}
        self._generation_times: dict[int, list[tuple[float, str]]] = {}
        self._generation_time: dict[tuple[str, int], float] = {}
        self.starts_now = not any(lease.active for lease in self.leases) and all(
            info.start == 0 for info in self.sites if info.active
        )  # every site starts at time 0, and no agreement needs an event then
        # slot values by distribution: gathered in one go, each distribution's slots a slice
        order = [ids for _, ids in self._groups]
        self._gather = np.concatenate(order) if order else np.zeros(0, dtype=int)
        bounds = np.cumsum([0, *(len(ids) for ids in order)])
        self._slices = [
            (dist, slice(int(a), int(b)))
            for (dist, _), a, b in zip(self._groups, bounds[:-1], bounds[1:], strict=True)
        ]

    def org(self, name: str) -> Org:
        """The scenario's org ``name`` (:meth:`Scenario.org`), looked up once."""
        org = self._orgs.get(name)
        if org is None:
            org = self._orgs[name] = self.scenario.org(name)
        return org

    def generation_time(self, name: str, tier: int) -> float:
        """When an org of ``tier`` can get generation ``name``, looked up once."""
        key = (name, tier)
        when = self._generation_time.get(key)
        if when is None:
            when = self._generation_time[key] = self.scenario.generations[name].available_to(tier)
        return when

    def generation_times(self, tier: int) -> list[tuple[float, str]]:
        """(when an org of ``tier`` can get it, name) of every generation, looked up once."""
        times = self._generation_times.get(tier)
        if times is None:
            gens = self.scenario.generations.items()
            times = self._generation_times[tier] = [(g.available_to(tier), n) for n, g in gens]
        return times

    def generation_at(self, org: str, wanted: str, now: float) -> tuple[str | None, float]:
        """The generation ``org`` gets at ``now`` when it asks for ``wanted`` (a name or
        ``newest``): (its name, ``now``), or (None, when to ask again) if none is available yet."""
        tier = self.org(org).tier
        if wanted != NEWEST:
            when = self.generation_time(wanted, tier)
            return (wanted, now) if when <= now else (None, when)
        times = self.generation_times(tier)
        ready = [(t, name) for t, name in times if t <= now]
        if ready:
            return max(ready)[1], now
        return None, min(t for t, _ in times)

    @property
    def site_tasks(self) -> list[range]:
        """Each site's task indices."""
        return [info.tasks for info in self.sites]

    def _main_duration(self, site: Site, stage: Stage) -> Distribution:
        if stage.duration is not None:
            return stage.duration
        if stage.kind == "permit":
            return self.scenario.jurisdictions[site.jurisdiction].review
        return self.scenario.grid_regions[site.region].study  # grid

    @staticmethod
    def _scale(site: Site, stage: Stage) -> float:
        if stage.kind != "construction" or stage.reference_mw is None:
            return 1.0
        return (site.mw / stage.reference_mw) ** stage.mw_exponent

    def _extra_slots(self, slots: _Slots, task: Task, site: Site) -> tuple[int, ...]:
        stage, where, s = task.spec, f"{site.name}/{task.stage}", task.site
        if stage.kind == "permit":
            j = self.scenario.jurisdictions[site.jurisdiction]
            return (
                slots.add(None, Input(f"{where}: refused", site=s, chance=j.refusal)),
                slots.add(j.appeal, Input(f"{where}: appeal", site=s)),
                slots.add(None, Input(f"{where}: appeal won", site=s, chance=j.appeal_success)),
            )
        if stage.kind == "grid":
            build = self.scenario.grid_regions[site.region].build
            return (slots.add(build, Input(f"{where}: build", site=s)),)
        if stage.kind == "gpus":
            # each tranche's delivery time; the stage's own slot is unused
            return tuple(
                slots.add(stage.duration, Input(f"{where}: tranche {k + 1} delivery", site=s))
                for k in range(len(_tranche_sizes(site)))
            )
        return ()

    def stage_means(self, site: int) -> dict[str, float]:
        """Mean time of each stage of ``site`` without waiting: its duration, plus a grid
        stage's build, and for a gpus stage its slowest tranche's delivery (for the critical
        path method)."""
        means = self.mean_durations()
        out = {}
        for t in self.sites[site].tasks:
            task = self.tasks[t]
            if task.kind == "gpus":
                out[task.stage] = max((means[k] for k in task.extra_slots), default=0.0)
            else:
                out[task.stage] = means[task.slot] + sum(means[k] for k in task.extra_slots[:1]
                                                         if task.kind == "grid")  # fmt: skip
        return out

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Every slot's value for one replication: one uniform per slot, through :meth:`values`."""
        return self.values(rng.random(self.n_slots))

    def values(self, uniforms: np.ndarray) -> np.ndarray:
        """Slot values from slot uniforms (one row per replication, or a single row): each
        distribution's inverse CDF over its slots at once; raw-uniform slots keep the uniform."""
        values = np.array(uniforms, dtype=float)
        grouped = values[..., self._gather]
        for dist, part in self._slices:
            grouped[..., part] = dist.ppf(grouped[..., part])
        values[..., self._gather] = grouped
        values *= self._slot_scale  # values is this call's own copy
        return values

    def mean_durations(self) -> np.ndarray:
        """Every slot at its distribution's mean (raw uniforms at 0.5: the median outcome)."""
        values = np.full(self.n_slots, 0.5)
        for dist, ids in self._groups:
            values[ids] = dist.mean
        return values * self._slot_scale

    def run(self, values: np.ndarray) -> Run:
        """Simulate one replication with the given slot values, up to the horizon."""
        return simulate(self, np.asarray(values, dtype=float))


def _replace(task: Task, **changes: object) -> Task:
    return Task(**{**task.__dict__, **changes})


def _tranche_sizes(site: Site) -> tuple[int | None, ...]:
    if site.gpus is None:
        return ()
    tranches = site.gpus.tranches
    if isinstance(tranches, list):
        return tuple(tranches)
    if site.gpus.count is None:
        return (None,) * tranches
    base, extra = divmod(site.gpus.count, tranches)
    return tuple(base + (1 if i < extra else 0) for i in range(tranches))


def _month_starts(scenario: Scenario) -> list[tuple[dt.date, float]]:
    """The first day of every month after the start and up to the horizon, with its model time."""
    out = []
    year, month = scenario.start.year, scenario.start.month
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        first = dt.date(year, month, 1)
        t = from_date(scenario.start, first, scenario.time_unit)
        if t > scenario.horizon:
            return out
        out.append((first, t))


def _hbm_schedule(scenario: Scenario) -> list[tuple[float, dict[str, float], float]]:
    """Every HBM delivery before the horizon: (time, GB reserved per buyer, GB for the pool).
    A period's output is delivered at its end, at the level in force when it began."""
    if scenario.hbm is None:
        return []
    period = scenario.hbm.period
    schedule = []
    k = 1
    while k * period <= scenario.horizon:
        began = (k - 1) * period
        reserved: dict[str, float] = {}
        common = 0.0
        for supplier in scenario.hbm.suppliers.values():
            level = next(
                (s.gb_per_period for s in reversed(supplier.output) if s.from_ <= began), 0.0
            )
            for buyer, share in supplier.reserved.items():
                reserved[buyer] = reserved.get(buyer, 0.0) + level * share
            common += level * (1 - sum(supplier.reserved.values()))
        schedule.append((k * period, reserved, common))
        k += 1
    return schedule
