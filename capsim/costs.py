"""Cost accounting: CapEx, OpEx (energy, lease payments), NPV and cost per GPU-hour, by org,
derived from a run's event log.

Every cost is either a *lump* (an amount at a time) or a *flow* (a constant rate over an interval);
totals and NPV integrate them exactly, and the monthly table spreads them over calendar months.

- CapEx is a lump when it happens in the log: facility MW when built (``capex_per_mw``), on-site
  power when its stage finishes, GPUs when they come online (the generation's ``price``).
- Energy flows while a site draws power: its GPUs' facility power (``power_kw``) or, for a site
  without GPUs, its MW online, at the price of its grid region (the path, scaled by the
  replication's energy factor). The owner pays; a transferred site's bills move with it. Fleets
  at the start are sunk: not counted.
- Leases flow per GPU-hour (or MW-year) for every tranche from its delivery until it is given back
  (end of term, or a termination without take-or-pay). A late tranche is not paid until it arrives.
- NPV discounts continuously at ``costs.discount_rate`` per year; costs after the horizon and
  residual values are not counted.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> from capsim.model import Model, replication_rng
>>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
>>> summary = cost_summary(model.run(model.draw(replication_rng(1))), "lab")
>>> summary["capex"] / 1e9   # 1000 MW x $12M/MW
12.0
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import NamedTuple

import numpy as np
import pandas as pd

from capsim.capacity import gpu_hours
from capsim.engine import Run, energy_price
from capsim.results import to_dates
from capsim.units import DAYS_PER

_HOURS_PER_DAY = 24.0
_CAPEX = {"facility": "capex_facility", "on-site power": "capex_power"}  # by detail; else GPUs


class Lump(NamedTuple):
    time: float
    org: str
    category: str
    usd: float


class Flow(NamedTuple):
    begin: float
    end: float
    org: str
    category: str
    usd_per_unit: float  # per unit of model time


def cost_items(run: Run) -> tuple[list[Lump], list[Flow]]:
    """Every cost of the run as lumps and constant-rate flows, up to the horizon."""
    scenario = run.model.scenario
    horizon = scenario.horizon
    hours = DAYS_PER[scenario.time_unit] * _HOURS_PER_DAY
    years = DAYS_PER[scenario.time_unit] / DAYS_PER["years"]
    gens = scenario.generations
    lumps: list[Lump] = []
    flows: list[Flow] = []
    owners = {i.spec.name: [(0.0, i.spec.org)] for i in run.model.sites}
    has_gpus = {i.spec.name: i.spec.gpus is not None for i in run.model.sites}
    region = {i.spec.name: i.spec.region for i in run.model.sites}
    draws: list[tuple[float, str, float]] = []  # (time, site, +MW drawn from then on)
    held: dict[tuple[str, int], list] = {}  # (lease, tranche) -> [begin, end, GPUs, gen, customer]
    for time, kind, subject, org, amount, generation, detail, tranche in run.log:
        if kind == "capex":
            category = _CAPEX.get(detail, "capex_gpus")
            lumps.append(Lump(time, org, category, amount))
        elif kind == "gpus_online":
            draws.append((time, subject, amount * gens[generation].power_kw / 1000))
        elif kind == "mw_online" and not has_gpus[subject]:
            draws.append((time, subject, amount))
        elif kind == "transferred":
            owners[subject].append((time, org))
        elif kind == "lease_delivered":
            held[subject, tranche] = [time, horizon, amount, generation, org]
        elif kind == "lease_ended":
            held[subject, tranche][1] = time
    for time, site, mw in draws:
        transfers = [t for t, _ in owners[site] if time < t < horizon]
        prices = _price_breaks(run, region[site], time, horizon)
        breaks = sorted({time, horizon, *transfers, *prices})
        for begin, end in itertools.pairwise(breaks):
            owner = [o for t, o in owners[site] if t <= begin][-1]
            price = _price(run, region[site], begin)
            flows.append(Flow(begin, end, owner, "energy", mw * hours * price))
    for (name, _), (begin, end, gpus, gen, customer) in held.items():
        price = scenario.leases[name].price
        if price.per_gpu_hour is not None:
            rate = gpus * hours * price.per_gpu_hour
        else:
            rate = gpus * gens[gen].power_kw / 1000 * years * price.per_mw_year
        flows.append(Flow(begin, min(end, horizon), customer, "lease", rate))
    return lumps, flows


def _price(run: Run, region: str | None, t: float) -> float:
    return energy_price(run.model.scenario, region, t, run.energy_factor)


def _price_breaks(run: Run, region: str | None, begin: float, end: float) -> list[float]:
    spec = run.model.scenario.grid_regions.get(region) if region else None
    if spec is None or spec.energy_price is None:
        return []
    return [s.from_ for s in spec.energy_price.path if begin < s.from_ < end]


def cash_flows(run: Run) -> pd.DataFrame:
    """Cash out by calendar month (model-time months from the start), org and category.

    Categories: ``capex_facility``, ``capex_power``, ``capex_gpus``, ``energy``, ``lease``.
    """
    scenario = run.model.scenario
    month = DAYS_PER["months"] / DAYS_PER[scenario.time_unit]
    n = math.ceil(scenario.horizon / month - 1e-9)
    grid = np.minimum(np.arange(n + 1) * month, scenario.horizon)
    lumps, flows = cost_items(run)
    totals: dict[tuple[int, str, str], float] = defaultdict(float)
    for lump in lumps:
        m = int(min(max(np.searchsorted(grid, lump.time, side="right") - 1, 0), n - 1))
        totals[m, lump.org, lump.category] += lump.usd
    for flow in flows:
        overlap = np.minimum(flow.end, grid[1:]) - np.maximum(flow.begin, grid[:-1])
        for m in np.flatnonzero(overlap > 0):
            totals[int(m), flow.org, flow.category] += overlap[m] * flow.usd_per_unit
    rows = [(m, org, cat, usd) for (m, org, cat), usd in sorted(totals.items()) if usd]
    df = pd.DataFrame(rows, columns=["month", "org", "category", "usd"])
    df.insert(1, "time", grid[df["month"].to_numpy()] if len(df) else [])
    df.insert(1, "date", to_dates(run, df["time"]))
    return df


def cost_summary(run: Run, org: str) -> dict[str, float]:
    """Totals for ``org`` over the horizon: CapEx (facility, on-site power, GPUs), OpEx (energy,
    lease), the CapEx share, NPV, GPU-hours and cost per GPU-hour.

    Exact integrals of the lumps and flows, no calendar grid: fast enough for every replication.
    """
    scenario = run.model.scenario
    years = DAYS_PER[scenario.time_unit] / DAYS_PER["years"]
    growth = math.log1p(scenario.costs.discount_rate) * years  # per unit of model time

    def discounted(t: float) -> float:
        return math.exp(-growth * t)

    lumps, flows = cost_items(run)
    total: dict[str, float] = defaultdict(float)
    npv = 0.0
    for lump in lumps:
        if lump.org == org:
            total[lump.category] += lump.usd
            npv += lump.usd * discounted(lump.time)
    for flow in flows:
        if flow.org == org and flow.end > flow.begin:
            total[flow.category] += flow.usd_per_unit * (flow.end - flow.begin)
            if growth:
                npv += flow.usd_per_unit * (discounted(flow.begin) - discounted(flow.end)) / growth
            else:
                npv += flow.usd_per_unit * (flow.end - flow.begin)
    capex = sum(v for k, v in total.items() if k.startswith("capex"))
    opex = sum(v for k, v in total.items() if not k.startswith("capex"))
    hours = gpu_hours(run, org)
    return {
        "capex": capex,
        "opex": opex,
        "capex_facility": total["capex_facility"],
        "capex_power": total["capex_power"],
        "capex_gpus": total["capex_gpus"],
        "energy": total["energy"],
        "lease": total["lease"],
        "capex_share": capex / (capex + opex) if capex + opex else math.nan,
        "npv_cost": npv,
        "gpu_hours": hours,
        "usd_per_gpu_hour": (capex + opex) / hours if hours else math.nan,
    }
