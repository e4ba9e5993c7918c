"""Capacities that stages wait for, granted first come first served within a priority.

A :class:`Supply` is consumed: what is granted never comes back, and it grows only by
:meth:`Supply.add` (a grid region's yearly energisation budget, a site's powered MW). A
:class:`ResourcePool` is a supply whose grants are returned by :meth:`ResourcePool.release` (a
permitting office's review slots, construction crews).

Waiting requests are served by priority, then by arrival: each priority has its own first-in
first-out line (a deque), and a heap holds the priorities that have one. A request costs O(1) when
its priority already waits (the usual case: most requests share a few priorities) and O(log p)
for a new one among p; nothing re-sorts or scans the queue. The head of the queue is served
strictly first: a large request at the head is not overtaken by smaller ones behind it, so it
cannot starve.

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
from collections import deque
from collections.abc import Callable, Hashable
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
        self._levels: list[Any] = []  # heap of the priorities that have a line
        self._lines: dict[Any, deque[tuple[Hashable, float, Callable[[Any], None]]]] = {}
        self._withdrawn: set[Hashable] = set()

    def request(
        self, key: Hashable, amount: float, priority: Any, on_grant: Callable[[Any], None]
    ) -> None:
        """Queue ``key`` for ``amount`` units; ``on_grant(key)`` is called once they are its.

        ``priority`` is any comparable value; lower is served first, ties by arrival.
        """
        if not self._levels and amount <= self.available + _EPS:  # nobody waits and it fits
            self._grant(key, amount)
            on_grant(key)
            return
        line = self._lines.get(priority)
        if line is None:
            line = self._lines[priority] = deque()
            heapq.heappush(self._levels, priority)
        line.append((key, amount, on_grant))
        self._dispatch()

    def withdraw(self, key: Hashable) -> None:
        """Take ``key``'s waiting request out of the queue (no effect if it is not waiting)."""
        if any(entry[0] == key for line in self._lines.values() for entry in line):
            self._withdrawn.add(key)
            self._dispatch()

    def add(self, amount: float) -> None:
        """Add ``amount`` units to the stock and serve whoever now fits."""
        self.available += amount
        if self._levels:
            self._dispatch()

    def _grant(self, key: Hashable, amount: float) -> None:
        self.available -= amount
        self.granted += amount

    def _dispatch(self) -> None:
        levels, lines, withdrawn = self._levels, self._lines, self._withdrawn
        while levels:
            priority = levels[0]
            line = lines[priority]
            key, amount, on_grant = line[0]
            if key in withdrawn:  # lazy removal: withdrawn requests leave at the head
                withdrawn.discard(key)
                served = False
            elif amount <= self.available + _EPS:
                served = True
            else:
                break
            line.popleft()
            if not line:
                del lines[priority]
                heapq.heappop(levels)
            if served:
                self._grant(key, amount)
                on_grant(key)

    def _live(self) -> list[tuple[Hashable, float, Callable[[Any], None]]]:
        """The waiting requests in the order they will be served."""
        return [
            entry
            for priority in sorted(self._lines)
            for entry in self._lines[priority]
            if entry[0] not in self._withdrawn
        ]

    def waiting(self, key: Hashable) -> Waiting | None:
        """Where ``key`` stands in the queue, or None if it is not waiting here."""
        ordered = self._live()
        for position, entry in enumerate(ordered, start=1):
            if entry[0] == key:
                ahead = sum(e[1] for e in ordered[: position - 1])
                return Waiting(position, ahead, self.available)
        return None


class ResourcePool(Supply):
    """``capacity`` interchangeable units; a request holds its units from grant to release."""

    def __init__(self, name: str, capacity: float) -> None:
        super().__init__(name, capacity)
        self.capacity = capacity
        self.holders: dict[Hashable, float] = {}

    def _grant(self, key: Hashable, amount: float) -> None:
        self.available -= amount
        self.granted += amount
        self.holders[key] = amount

    def release(self, key: Hashable) -> None:
        """Give back everything ``key`` holds and serve whoever is next."""
        self.available += self.holders.pop(key)
        if self._levels:
            self._dispatch()
