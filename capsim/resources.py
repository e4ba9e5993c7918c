"""Capacities that stages wait for, granted first come first served within a priority.

A :class:`Supply` is consumed: what is granted never comes back, and it grows only by
:meth:`Supply.add` (a grid region's yearly energisation budget, a site's powered MW). A
:class:`ResourcePool` is a supply whose grants are returned by :meth:`ResourcePool.release` (a
permitting office's review slots, construction crews).

Waiting requests sit in a heap keyed by (priority, arrival), so a request costs O(log n) and nothing
re-sorts or scans the queue. The head of the queue is served strictly first: a large request at the
head is not overtaken by smaller ones behind it, so it cannot starve.

>>> granted = []
>>> pool = ResourcePool("crews", capacity=2)
>>> pool.request(0, 2, priority=0, on_grant=granted.append)
>>> pool.request(1, 1, priority=5, on_grant=granted.append)
>>> pool.request(2, 1, priority=0, on_grant=granted.append)   # same priority as 0, arrived later
>>> pool.release(0)
>>> granted
[0, 2, 1]
>>> budget = Supply("ercot", available=300)
>>> for site in range(3):
...     budget.request(site, 200, priority=0, on_grant=granted.append)
>>> budget.add(300)   # next year's budget: both waiting requests fit
>>> granted[3:]
[0, 1, 2]
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from itertools import count
from typing import Any, NamedTuple

_EPS = 1e-9


class Waiting(NamedTuple):
    """Where a request stands in a queue."""

    position: int  # 1 = next in line
    amount_ahead: float  # units requested by those ahead of it
    available: float  # units free now


class Supply:
    """A stock of units, consumed by the requests it grants and grown by :meth:`add`."""

    def __init__(self, name: str, available: float = 0.0) -> None:
        self.name = name
        self.available = available
        self.granted = 0.0
        self._queue: list[tuple[Any, int, Hashable, float, Callable[[Any], None]]] = []
        self._arrival = count()
        self._withdrawn: set[Hashable] = set()

    def request(
        self, key: Hashable, amount: float, priority: Any, on_grant: Callable[[Any], None]
    ) -> None:
        """Queue ``key`` for ``amount`` units; ``on_grant(key)`` is called once they are its.

        ``priority`` is any comparable value; lower is served first, ties by arrival.
        """
        if not self._queue and amount <= self.available + _EPS:  # nobody waits and it fits
            self._grant(key, amount)
            on_grant(key)
            return
        heapq.heappush(self._queue, (priority, next(self._arrival), key, amount, on_grant))
        self._dispatch()

    def withdraw(self, key: Hashable) -> None:
        """Take ``key``'s waiting request out of the queue (no effect if it is not waiting)."""
        if any(entry[2] == key for entry in self._queue):
            self._withdrawn.add(key)
            self._dispatch()

    def add(self, amount: float) -> None:
        """Add ``amount`` units to the stock and serve whoever now fits."""
        self.available += amount
        self._dispatch()

    def _grant(self, key: Hashable, amount: float) -> None:
        self.available -= amount
        self.granted += amount

    def _dispatch(self) -> None:
        queue = self._queue
        while queue:
            if queue[0][2] in self._withdrawn:  # lazy removal: withdrawn requests leave at the head
                self._withdrawn.discard(heapq.heappop(queue)[2])
            elif queue[0][3] <= self.available + _EPS:
                _, _, key, amount, on_grant = heapq.heappop(queue)
                self._grant(key, amount)
                on_grant(key)
            else:
                break

    def _live(self) -> list[tuple[Any, int, Hashable, float, Callable[[Any], None]]]:
        return [entry for entry in self._queue if entry[2] not in self._withdrawn]

    def waiting(self, key: Hashable) -> Waiting | None:
        """Where ``key`` stands in the queue, or None if it is not waiting here."""
        ordered = sorted(self._live(), key=lambda entry: entry[:2])
        for position, entry in enumerate(ordered, start=1):
            if entry[2] == key:
                ahead = sum(e[3] for e in ordered[: position - 1])
                return Waiting(position, ahead, self.available)
        return None


class ResourcePool(Supply):
    """``capacity`` interchangeable units; a request holds its units from grant to release."""

    def __init__(self, name: str, capacity: float) -> None:
        super().__init__(name, capacity)
        self.capacity = capacity
        self.holders: dict[Hashable, float] = {}

    def _grant(self, key: Hashable, amount: float) -> None:
        super()._grant(key, amount)
        self.holders[key] = amount

    def release(self, key: Hashable) -> None:
        """Give back everything ``key`` holds and serve whoever is next."""
        self.add(self.holders.pop(key))
