"""The HBM market: suppliers deliver memory every period; reserved shares go to their buyers'
accounts, the rest to a common pool allocated by buyer tier, then order date.

An order (GB for one tranche of GPUs) first draws on its buyer's reserved account; what is left
waits in the common queue, strictly first in line first served by (tier, order time). Nothing is
allocated that was not produced.

>>> market = HbmMarket()
>>> got = []
>>> market.order(0.0, "a", buyer="lab", gb=150, priority=(2, 0.0), on_grant=got.append)
>>> market.order(0.0, "b", buyer="cloud", gb=100, priority=(1, 0.0), on_grant=got.append)
>>> market.deliver(30.0, reserved={"lab": 50}, common=100)   # cloud (tier 1) first from the pool
>>> got
['b']
>>> market.deliver(60.0, reserved={"lab": 50}, common=50)    # lab: 100 reserved + 50 common
>>> got, market.produced, market.allocated_total
(['b', 'a'], 250.0, 250.0)
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Hashable
from itertools import count
from typing import Any, NamedTuple

_EPS = 1e-9


class HbmAllocation(NamedTuple):
    """GB of HBM allocated to one order at one time, from a reserved account or the pool."""

    time: float
    buyer: str
    order: Hashable
    gb: float
    source: str  # "reserved" or "pool"


class _Order:
    __slots__ = ("buyer", "done", "key", "on_grant", "priority", "remaining", "seq")

    def __init__(
        self,
        key: Hashable,
        buyer: str,
        gb: float,
        priority: Any,
        seq: int,
        on_grant: Callable[[Any], None],
    ) -> None:
        self.key, self.buyer, self.remaining = key, buyer, gb
        self.priority, self.seq, self.on_grant, self.done = priority, seq, on_grant, False

    def sort_key(self) -> tuple[Any, ...]:
        """(priority, arrival); a tuple priority is spread out, ``(*priority, arrival)``: the
        same order for priorities of one length, and cheaper to compare in a large queue."""
        if self.priority.__class__ is tuple:
            return (*self.priority, self.seq)
        return (self.priority, self.seq)


class HbmMarket:
    """Accounts per buyer, a common pool, and the queue of unfilled orders."""

    def __init__(self) -> None:
        self.accounts: dict[str, float] = defaultdict(float)
        self.pool = 0.0
        self.produced = 0.0
        self.log: list[HbmAllocation] = []
        self._queue: list[tuple[tuple[Any, ...], _Order]] = []
        # each buyer's orders, for its reserved account: kept from the first reserved delivery
        self._by_buyer: dict[str, list[tuple[tuple[Any, ...], _Order]]] = defaultdict(list)
        self._seq = count()
        self._open = 0
        self._reserved = False  # whether any reserved GB were ever delivered

    @property
    def allocated_total(self) -> float:
        return sum(a.gb for a in self.log)

    @property
    def waiting(self) -> int:
        """How many orders are not filled yet (kept as a count: asked at every order)."""
        return self._open

    def _close(self, order: _Order) -> None:
        order.done = True
        self._open -= 1

    def order(
        self,
        time: float,
        key: Hashable,
        buyer: str,
        gb: float,
        priority: Any,
        on_grant: Callable[[Any], None],
    ) -> None:
        """Order ``gb`` for ``buyer``; ``on_grant(key)`` once all of it is allocated. Orders are
        served by ``priority`` (lower first; a tuple's length the same for every order), then
        by arrival."""
        order = _Order(key, buyer, gb, priority, next(self._seq), on_grant)
        entry = (order.sort_key(), order)
        self._open += 1
        heapq.heappush(self._queue, entry)
        if self._reserved:
            heapq.heappush(self._by_buyer[buyer], entry)
        self._serve(time)

    def deliver(self, time: float, reserved: dict[str, float], common: float) -> None:
        """One period's output: ``reserved`` GB per buyer, ``common`` GB for everyone."""
        if reserved and not self._reserved:  # from now on, each buyer's orders are kept apart
            self._reserved = True
            for entry in self._queue:
                if not entry[1].done:
                    self._by_buyer[entry[1].buyer].append(entry)
            for heap in self._by_buyer.values():
                heapq.heapify(heap)
        for buyer, gb in reserved.items():
            self.accounts[buyer] += gb
        self.pool += common
        self.produced += common + sum(reserved.values())
        self._serve(time)

    def give_back(self, time: float, key: Hashable) -> float:
        """The unfilled order ``key`` is no longer needed (its site was cancelled): it leaves the
        queue, and what was already allocated to it returns to the common pool, logged as a
        negative allocation, so that allocated never exceeds produced. A filled order is left
        alone: its memory is already in GPUs. Returns the GB it no longer waits for."""
        order = next((o for _, o in self._queue if o.key == key and not o.done), None)
        if order is None:
            return 0.0
        self._close(order)
        gb = sum(a.gb for a in self.log if a.order == key)
        if gb > _EPS:
            self.log.append(HbmAllocation(time, order.buyer, key, -gb, "returned"))
            self.pool += gb
        self._serve(time)
        return order.remaining

    def remaining(self, key: Hashable) -> float:
        """GB ``key``'s order still waits for (0 if filled or unknown)."""
        return next((o.remaining for _, o in self._queue if o.key == key and not o.done), 0.0)

    def ahead_of(self, key: Hashable) -> float:
        """GB of unfilled orders ahead of ``key`` in the common queue."""
        mine = next((o for _, o in self._queue if o.key == key and not o.done), None)
        if mine is None:
            return 0.0
        return sum(
            o.remaining for _, o in self._queue if not o.done and o.sort_key() < mine.sort_key()
        )

    def _allocate(self, time: float, order: _Order, gb: float, source: str) -> None:
        order.remaining -= gb
        self.log.append(HbmAllocation(time, order.buyer, order.key, gb, source))

    def _serve(self, time: float) -> None:
        filled: list[_Order] = []
        for buyer in sorted(self._by_buyer) if self._reserved else ():  # no accounts: no loop
            heap = self._by_buyer[buyer]
            while heap and (heap[0][1].done or self.accounts[buyer] > _EPS):
                order = heap[0][1]
                if order.done:
                    heapq.heappop(heap)
                    continue
                take = min(order.remaining, self.accounts[buyer])
                self.accounts[buyer] -= take
                self._allocate(time, order, take, "reserved")
                if order.remaining > _EPS:
                    break
                heapq.heappop(heap)
                self._close(order)
                filled.append(order)
        queue = self._queue
        while queue:
            order = queue[0][1]
            if order.done:
                heapq.heappop(queue)
            elif order.remaining <= self.pool + _EPS:
                heapq.heappop(queue)
                self.pool -= order.remaining
                self._allocate(time, order, order.remaining, "pool")
                self._close(order)
                filled.append(order)
            else:
                break
        for order in filled:
            order.on_grant(order.key)
