"""The SimPy model: every site x stage of a scenario as one task in one discrete-event run.

A task becomes *ready* when its last predecessor finishes (a counted join, not ``all_of``), then
asks for its resources one at a time in name order (a global order, so holding one while waiting
for the next cannot deadlock), *starts* when the last is granted, and *finishes* one SimPy timeout
later. That is one SimPy event per task plus one per site start: the event count per site is
small and fixed. All of a replication's durations are drawn before the run in one numpy call.

>>> from capsim.loader import load_scenario, default_scenario_path
>>> model = Model(load_scenario(default_scenario_path()))
>>> run = model.run(model.draw(replication_rng(seed=1)))
>>> run.finished
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import simpy

from capsim.distributions import Distribution
from capsim.graph import pipeline_graph, stage_order
from capsim.resources import ResourcePool
from capsim.schema import Scenario


def replication_rng(seed: int, replication: int = 0) -> np.random.Generator:
    """The random stream of one replication: a child of the root ``SeedSequence(seed)``.

    It depends only on (seed, replication), so results never depend on how replications are
    split among workers.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(replication,)))


class StageRecord(NamedTuple):
    """One line of the event log: when a site's stage became ready, started and finished.

    Times are model time; ``nan`` means it had not happened by the horizon.
    """

    site: str
    stage: str
    ready: float
    start: float
    finish: float


class Blockage(NamedTuple):
    """A task that had not finished at the horizon, and what it was waiting for."""

    site: str
    stage: str
    state: str  # "running", "waiting for resource" or "waiting for predecessors"
    waiting_on: str


@dataclass(frozen=True)
class Task:
    """A site x stage, compiled: its predecessors, successors and the resources it holds."""

    site: int
    stage: str
    predecessors: tuple[int, ...]
    successors: tuple[int, ...]
    needs: tuple[tuple[str, float], ...]  # in resource-name order


class Model:
    """A scenario compiled once into flat task arrays; :meth:`run` simulates one replication."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.tasks: list[Task] = []
        self.site_tasks: list[range] = []
        draws: dict[Distribution, list[int]] = {}
        for s, site in enumerate(scenario.sites):
            pipeline = scenario.pipelines[site.pipeline]
            graph = pipeline_graph(pipeline)
            order = stage_order(graph)
            first = len(self.tasks)
            index = {name: first + i for i, name in enumerate(order)}
            for name in order:
                stage = site.stage(pipeline, name)
                self.tasks.append(
                    Task(
                        site=s,
                        stage=name,
                        predecessors=tuple(sorted(index[p] for p in graph.predecessors(name))),
                        successors=tuple(sorted(index[n] for n in graph.successors(name))),
                        needs=tuple(sorted(stage.needs.items())),
                    )
                )
                draws.setdefault(stage.duration, []).append(index[name])
            self.site_tasks.append(range(first, len(self.tasks)))
        self._draws = [(dist, np.array(ids)) for dist, ids in draws.items()]
        self._pending = np.array([len(t.predecessors) for t in self.tasks])

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """Every task's duration for one replication: one uniform per task, then each
        distribution's inverse CDF over its tasks at once."""
        uniforms = rng.random(len(self.tasks))
        durations = np.empty(len(self.tasks))
        for dist, ids in self._draws:
            durations[ids] = dist.ppf(uniforms[ids])
        return durations

    def mean_durations(self) -> np.ndarray:
        """Every task's mean duration (for deterministic what-if runs and the critical path)."""
        durations = np.empty(len(self.tasks))
        for dist, ids in self._draws:
            durations[ids] = dist.mean
        return durations

    def run(self, durations: np.ndarray) -> Run:
        """Simulate one replication with the given task durations, up to the horizon."""
        return _Replication(self, durations).run()


@dataclass(frozen=True)
class Run:
    """The outcome of one replication: the event log as arrays, and what was stuck."""

    model: Model
    durations: np.ndarray
    ready: np.ndarray
    start: np.ndarray
    finish: np.ndarray
    blockages: list[Blockage]

    @property
    def finished(self) -> bool:
        """Whether every stage of every site finished by the horizon."""
        return not self.blockages

    def events(self) -> list[StageRecord]:
        """The event log: one record per site x stage, in site then stage order."""
        names = [site.name for site in self.model.scenario.sites]
        return [
            StageRecord(
                names[task.site],
                task.stage,
                *(float(a[i]) for a in (self.ready, self.start, self.finish)),
            )
            for i, task in enumerate(self.model.tasks)
        ]


class _Replication:
    """The mutable state of one run; discarded afterwards."""

    def __init__(self, model: Model, durations: np.ndarray) -> None:
        self.model = model
        self.tasks = model.tasks
        self.durations = durations.tolist()
        self.env = simpy.Environment()
        self.pools = {
            name: ResourcePool(name, spec.capacity)
            for name, spec in sorted(model.scenario.resources.items())
        }
        self.priority = [model.scenario.sites[t.site].priority for t in self.tasks]
        self.pending = model._pending.tolist()
        self.next_need = [0] * len(self.tasks)
        n = len(self.tasks)
        self.ready = [math.nan] * n
        self.start = [math.nan] * n
        self.finish = [math.nan] * n

    def run(self) -> Run:
        env, horizon = self.env, self.model.scenario.horizon
        for s, site in enumerate(self.model.scenario.sites):
            env.timeout(site.start, value=s).callbacks.append(self._site_starts)
        while env.peek() <= horizon:
            env.step()
        return Run(
            self.model,
            np.asarray(self.durations),
            np.asarray(self.ready),
            np.asarray(self.start),
            np.asarray(self.finish),
            self._blockages(),
        )

    def _site_starts(self, event: simpy.Event) -> None:
        for task in self.model.site_tasks[event.value]:
            if self.pending[task] == 0:
                self._make_ready(task)

    def _make_ready(self, task: int) -> None:
        self.ready[task] = self.env.now
        self._acquire(task)

    def _acquire(self, task: int) -> None:
        needs = self.tasks[task].needs
        k = self.next_need[task]
        if k == len(needs):
            self.start[task] = self.env.now
            self.env.timeout(self.durations[task], value=task).callbacks.append(self._finishes)
            return
        self.next_need[task] = k + 1
        name, amount = needs[k]
        self.pools[name].request(task, amount, self.priority[task], self._acquire)

    def _finishes(self, event: simpy.Event) -> None:
        task = event.value
        self.finish[task] = self.env.now
        for name, _ in self.tasks[task].needs:
            self.pools[name].release(task)
        for successor in self.tasks[task].successors:
            self.pending[successor] -= 1
            if self.pending[successor] == 0:
                self._make_ready(successor)

    def _blockages(self) -> list[Blockage]:
        names = [site.name for site in self.model.scenario.sites]
        unit = self.model.scenario.time_unit
        blockages = []
        for i, task in enumerate(self.tasks):
            if not math.isnan(self.finish[i]):
                continue
            if not math.isnan(self.start[i]):
                state = "running"
                why = f"started at {self.start[i]:.1f}, needs {self.durations[i]:.1f} {unit} in all"
            elif not math.isnan(self.ready[i]):
                name, amount = self.tasks[i].needs[self.next_need[i] - 1]
                pool = self.pools[name]
                place = pool.waiting(i)
                assert place is not None
                state = "waiting for resource"
                why = (
                    f"{name}: wants {amount:g}, {pool.capacity - place.available:g} of "
                    f"{pool.capacity:g} in use, {place.position - 1} request(s) for "
                    f"{place.amount_ahead:g} ahead of it"
                )
            else:
                unfinished = [
                    self.tasks[p].stage for p in task.predecessors if math.isnan(self.finish[p])
                ]
                state = "waiting for predecessors"
                why = ", ".join(unfinished) if unfinished else "the site's start"
            blockages.append(Blockage(names[task.site], task.stage, state, why))
        return blockages
