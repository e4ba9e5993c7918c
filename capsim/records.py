"""The records one replication produces: the stage log, the world's events, what was stuck, and
the :class:`Run` that holds them. Small immutable rows that become DataFrames in one call."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from capsim.model import Model


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
    """The outcome of one replication: stage times as arrays, the world's events, what was stuck.

    ``log`` holds the world's events as plain tuples in :class:`WorldEvent`'s field order (cheap
    to make while simulating, and to read by position); :attr:`world` makes them WorldEvents on
    first use."""

    model: Model
    values: np.ndarray
    extra: np.ndarray  # time added to each task by risks
    ready: np.ndarray
    start: np.ndarray
    finish: np.ndarray
    log: list[tuple]  # WorldEvent fields, in time order
    blockages: list[Blockage]
    owners: list[str]  # each site's owner at the horizon
    energy_factor: dict[str, float]

    @cached_property
    def world(self) -> list[WorldEvent]:
        """The world's events, in time order."""
        return [WorldEvent._make(event) for event in self.log]

    def site_online(self) -> np.ndarray:
        """When each active site (in site order) came online: its last stage's finish, NaN if
        any of its stages did not finish."""
        padded = np.append(self.finish, -np.inf)  # the padding column of active_site_tasks
        return padded[self.model.active_site_tasks].max(axis=1, initial=-np.inf)

    def kind_counts(self) -> Counter[str]:
        """How many world events there are of each kind."""
        return Counter(map(itemgetter(1), self.log))

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
