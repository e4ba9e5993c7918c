"""A plain SimPy reference model of the benchmark workload, written the way a SimPy user would write
it by hand: one process per site x stage that waits for its predecessors with ``env.all_of``,
SimPy's own Resource / PriorityResource / Container, and scalar numpy draws (one ``rng`` call per
draw, made when the stage starts).

The workload (every site, ``i`` = 0 .. N-1)::

    select Tri(14, 30, 60) -> permit LogN(60, 0.4)         [permit office: 5 at once]
    permit -> grid LogN(120, 0.5)                            [grid studies: 3 at once]
    permit -> construct Tri(180, 270, 420)
    construct -> hbm: wait for the site's HBM allocation, then delivery LogN(21, 0.3)
    {grid, hbm} -> commission Tri(14, 21, 45)

LogN(m, s) is the lognormal with median ``m`` and log-sd ``s``: ``exp(ln m + s Z)``. HBM: 200 units
arrive every 30 days (first at day 30); site ``i`` needs ``hbm_need(i)`` units (64-256, fixed per
site index, the same in both models) and has priority class ``i % 3`` (0 is served first). The
allocation is strictly head of line: a ``PriorityResource(capacity=1)`` is the queue (highest class
first, first come first served within a class) and its holder takes its units with
``Container.get``, keeping its place at the head until it gets them.

>>> out = run_reference(6, seed=1)
>>> len(out["commission"]), out["horizon"] == max(out["commission"]), out["events"] > 6 * 6
(6, True, True)
"""

from __future__ import annotations

import functools
import math

import numpy as np
import simpy

SUPPLY_PERIOD = 30.0  # days between HBM deliveries
SUPPLY_UNITS = 200  # units per delivery
PERMITS_AT_ONCE = 5
STUDIES_AT_ONCE = 3
CLASSES = 3

# (family, parameters) of each stage's duration, in days; shared with workload.py
SELECT = ("triangular", (14.0, 30.0, 60.0))
PERMIT = ("lognormal", (60.0, 0.4))  # median, sigma
GRID = ("lognormal", (120.0, 0.5))
CONSTRUCT = ("triangular", (180.0, 270.0, 420.0))
DELIVERY = ("lognormal", (21.0, 0.3))
COMMISSION = ("triangular", (14.0, 21.0, 45.0))


@functools.cache
def hbm_need(site: int) -> int:
    """Units of HBM site ``site`` needs: 64-256, drawn from a generator seeded by the index
    (cached: it is part of the workload, not of a replication)."""
    return int(np.random.default_rng(site).integers(64, 257))


def run_reference(n_sites: int = 50, seed: int = 0) -> dict:
    """Simulate the workload once, until every site is commissioned.

    Returns each site's ``commission`` finish time (a list, by site), ``events`` (SimPy events
    processed: the number of ``env.step`` calls), ``horizon`` (the time the last site finished)
    and when each site's HBM order was placed (``hbm_ready``) and filled (``hbm_grant``).
    """
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    permits = simpy.Resource(env, capacity=PERMITS_AT_ONCE)
    studies = simpy.Resource(env, capacity=STUDIES_AT_ONCE)
    hbm_line = simpy.PriorityResource(env, capacity=1)
    hbm = simpy.Container(env)  # unbounded
    commission = [math.nan] * n_sites
    hbm_ready = [math.nan] * n_sites
    hbm_grant = [math.nan] * n_sites

    def tri(low: float, mode: float, high: float) -> float:
        return rng.triangular(low, mode, high)

    def logn(median: float, sigma: float) -> float:
        return math.exp(math.log(median) + sigma * rng.standard_normal())

    def supplier():
        while True:
            yield env.timeout(SUPPLY_PERIOD)
            yield hbm.put(SUPPLY_UNITS)

    def select(i, after):
        yield env.all_of(after)
        yield env.timeout(tri(*SELECT[1]))

    def permit(i, after):
        yield env.all_of(after)
        with permits.request() as req:
            yield req
            yield env.timeout(logn(*PERMIT[1]))

    def grid(i, after):
        yield env.all_of(after)
        with studies.request() as req:
            yield req
            yield env.timeout(logn(*GRID[1]))

    def construct(i, after):
        yield env.all_of(after)
        yield env.timeout(tri(*CONSTRUCT[1]))

    def gpus(i, after):
        yield env.all_of(after)
        hbm_ready[i] = env.now
        with hbm_line.request(priority=i % CLASSES) as req:
            yield req
            yield hbm.get(hbm_need(i))
        hbm_grant[i] = env.now
        yield env.timeout(logn(*DELIVERY[1]))

    def commissioning(i, after):
        yield env.all_of(after)
        yield env.timeout(tri(*COMMISSION[1]))
        commission[i] = env.now

    env.process(supplier())
    last = []
    for i in range(n_sites):
        s = env.process(select(i, []))
        p = env.process(permit(i, [s]))
        g = env.process(grid(i, [p]))
        c = env.process(construct(i, [p]))
        h = env.process(gpus(i, [c]))
        last.append(env.process(commissioning(i, [g, h])))
    done = env.all_of(last)
    events = 0
    while not done.processed:
        env.step()
        events += 1
    return {
        "commission": commission,
        "hbm_ready": hbm_ready,
        "hbm_grant": hbm_grant,
        "events": events,
        "horizon": env.now,
    }


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    out = run_reference(50, seed=1)
    print(
        f"50 sites: last commission {max(out['commission']):.0f} days, {out['events']} events, "
        f"{time.perf_counter() - t0:.3f} s"
    )
