"""Shared capacities that stages hold while they run, granted first come first served within a
priority.

A :class:`ResourcePool` keeps its waiting requests in a heap keyed by (priority, arrival), so a
request costs O(log n) and nothing re-sorts or scans the queue. The head of the queue is served
strictly first: a large request at the head is not overtaken by smaller ones behind it, so it cannot
starve.

>>> granted = []
>>> pool = ResourcePool("crews", capacity=2)
>>> pool.request(0, 2, priority=0, on_grant=granted.append)
>>> pool.request(1, 1, priority=5, on_grant=granted.append)
>>> pool.request(2, 1, priority=0, on_grant=granted.append)   # same priority as 0, arrived later
>>> pool.release(0)
>>> granted
[0, 2, 1]
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count
from typing import NamedTuple

_EPS = 1e-9


class Waiting(NamedTuple):
    """Why a request is not granted yet."""

    position: int  # 1 = next in line
    amount_ahead: float  # units requested by those ahead of it
    in_use: float
    capacity: float


class ResourcePool:
    """``capacity`` interchangeable units; a task holds its ``amount`` from grant to release."""

    def __init__(self, name: str, capacity: float) -> None:
        self.name = name
        self.capacity = capacity
        self.available = capacity
        self.holders: dict[int, float] = {}
        self._queue: list[tuple[int, int, int, float, Callable[[int], None]]] = []
        self._arrival = count()

    def request(
        self, task: int, amount: float, priority: int, on_grant: Callable[[int], None]
    ) -> None:
        """Queue ``task`` for ``amount`` units; ``on_grant(task)`` is called once they are its."""
        heapq.heappush(self._queue, (priority, next(self._arrival), task, amount, on_grant))
        self._dispatch()

    def release(self, task: int) -> None:
        """Give back everything ``task`` holds and serve whoever is next."""
        self.available += self.holders.pop(task)
        self._dispatch()

    def _dispatch(self) -> None:
        queue = self._queue
        while queue and queue[0][3] <= self.available + _EPS:
            _, _, task, amount, on_grant = heapq.heappop(queue)
            self.available -= amount
            self.holders[task] = amount
            on_grant(task)

    def waiting(self, task: int) -> Waiting | None:
        """Where ``task`` stands in the queue, or None if it is not waiting here."""
        ordered = sorted(self._queue)
        for position, (_, _, waiter, _, _) in enumerate(ordered, start=1):
            if waiter == task:
                ahead = sum(entry[3] for entry in ordered[: position - 1])
                return Waiting(position, ahead, self.capacity - self.available, self.capacity)
        return None
