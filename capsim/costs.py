"""Cost accounting: CapEx, OpEx (energy, lease payments), NPV and cost per GPU-hour, by org,
derived from a run's event log on a monthly grid.

- CapEx is spent when it happens in the log: facility MW when built (``capex_per_mw``), on-site
  power when its stage finishes, GPUs when they come online (the generation's ``price``).
- Energy is paid for every month a site draws power: its GPUs' facility power (``power_kw``) or,
  for a site without GPUs, its MW online, times the hours of the month, times the price in its grid
  region that month (the path, scaled by the replication's energy factor). The owner pays; a
  transferred site's bills move with it. Fleets at the start are sunk: not counted.
- Leases are paid per GPU-hour (or MW-year) for every tranche from its delivery until it is given
  back: at the end of its term or, for an agreement without take-or-pay that the customer
  terminates, at the termination. A late tranche is not paid for until it arrives.
- NPV discounts each month's cash flow at ``costs.discount_rate`` per year.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> from capsim.model import Model, replication_rng
>>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
>>> summary = cost_summary(model.run(model.draw(replication_rng(1))), "lab")
>>> summary["capex"] / 1e9   # 1000 MW x $12M/MW
12.0
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from capsim.capacity import gpu_hours
from capsim.engine import Run, energy_price
from capsim.results import to_dates
from capsim.units import DAYS_PER

_HOURS_PER_DAY = 24.0
_MONTH_DAYS = DAYS_PER["months"]


def _month_grid(run: Run) -> np.ndarray:
    """Month boundaries in model time, from 0 to the horizon."""
    scenario = run.model.scenario
    month = _MONTH_DAYS / DAYS_PER[scenario.time_unit]
    n = math.ceil(scenario.horizon / month - 1e-9)
    return np.minimum(np.arange(n + 1) * month, scenario.horizon)


def cash_flows(run: Run) -> pd.DataFrame:
    """Cash out by month, org and category (USD, positive = spent).

    Categories: ``capex_facility``, ``capex_power``, ``capex_gpus``, ``energy``, ``lease``.
    """
    scenario = run.model.scenario
    grid = _month_grid(run)
    hours_per_unit = DAYS_PER[scenario.time_unit] * _HOURS_PER_DAY
    flows: dict[tuple[int, str, str], float] = defaultdict(float)

    def month_of(t: float) -> int:
        return int(min(max(np.searchsorted(grid, t, side="right") - 1, 0), len(grid) - 2))

    for e in run.world:
        if e.kind == "capex":
            category = {"facility": "capex_facility", "on-site power": "capex_power"}.get(
                e.detail, "capex_gpus"
            )
            flows[month_of(e.time), e.org, category] += e.amount
    for (month, org), usd in _energy(run, grid, hours_per_unit).items():
        flows[month, org, "energy"] += usd
    for (month, org), usd in _leases(run, grid, hours_per_unit).items():
        flows[month, org, "lease"] += usd
    rows = [(m, org, cat, usd) for (m, org, cat), usd in sorted(flows.items()) if usd]
    df = pd.DataFrame(rows, columns=["month", "org", "category", "usd"])
    df.insert(1, "time", grid[df["month"].to_numpy()] if len(df) else [])
    df.insert(1, "date", to_dates(run, df["time"]))
    return df


def _energy(run: Run, grid: np.ndarray, hours_per_unit: float) -> dict[tuple[int, str], float]:
    """Energy bills: each site's power draw, a step function of its events, priced monthly."""
    scenario = run.model.scenario
    gens = scenario.generations
    steps: dict[str, list[tuple[float, float]]] = defaultdict(list)  # site -> (time, +MW)
    owners = {i.spec.name: [(0.0, i.spec.org)] for i in run.model.sites}
    has_gpus = {i.spec.name: i.spec.gpus is not None for i in run.model.sites}
    region = {i.spec.name: i.spec.region for i in run.model.sites}
    for e in run.world:
        if e.kind == "gpus_online":
            steps[e.subject].append((e.time, e.amount * gens[e.generation].power_kw / 1000))
        elif e.kind == "mw_online" and not has_gpus[e.subject]:
            steps[e.subject].append((e.time, e.amount))
        elif e.kind == "transferred":
            owners[e.subject].append((e.time, e.org))
    bills: dict[tuple[int, str], float] = defaultdict(float)
    for site, changes in steps.items():
        for m in range(len(grid) - 1):
            begin, end = grid[m], grid[m + 1]
            # MW-time drawn in the month: each step counts from when it happened
            mw_time = sum(mw * (end - max(t, begin)) for t, mw in changes if t < end)
            if mw_time <= 0:
                continue
            owner = [o for t, o in owners[site] if t <= begin][-1]
            price = energy_price(scenario, region[site], begin, run.energy_factor)
            bills[m, owner] += mw_time * hours_per_unit * price
    return bills


def _leases(run: Run, grid: np.ndarray, hours_per_unit: float) -> dict[tuple[int, str], float]:
    """Lease payments per month: each delivered tranche from delivery until it is given back."""
    scenario = run.model.scenario
    years_per_unit = DAYS_PER[scenario.time_unit] / DAYS_PER["years"]
    held: dict[tuple[str, int], list] = {}  # (lease, tranche) -> [begin, end, GPUs, gen, customer]
    for e in run.world:
        if e.kind == "lease_delivered":
            held[e.subject, e.tranche] = [e.time, scenario.horizon, e.amount, e.generation, e.org]
        elif e.kind == "lease_ended":
            held[e.subject, e.tranche][1] = e.time
    paid: dict[tuple[int, str], float] = defaultdict(float)
    for (name, _), (begin, end, gpus, gen, customer) in held.items():
        price = scenario.leases[name].price
        mw = gpus * scenario.generations[gen].power_kw / 1000
        for m in range(len(grid) - 1):
            overlap = min(end, grid[m + 1]) - max(begin, grid[m])
            if overlap <= 0:
                continue
            if price.per_gpu_hour is not None:
                paid[m, customer] += gpus * overlap * hours_per_unit * price.per_gpu_hour
            else:
                paid[m, customer] += mw * overlap * years_per_unit * price.per_mw_year
    return paid


def cost_summary(run: Run, org: str) -> dict[str, float]:
    """Totals for ``org`` over the horizon: CapEx, OpEx, their split, NPV, cost per GPU-hour."""
    scenario = run.model.scenario
    flows = cash_flows(run)
    mine = flows[flows["org"] == org]
    capex = float(mine.loc[mine["category"].str.startswith("capex"), "usd"].sum())
    opex = float(mine.loc[~mine["category"].str.startswith("capex"), "usd"].sum())
    years = mine["time"].to_numpy() * DAYS_PER[scenario.time_unit] / DAYS_PER["years"]
    npv = float((mine["usd"].to_numpy() / (1 + scenario.costs.discount_rate) ** years).sum())
    hours = gpu_hours(run, org)
    total = capex + opex
    return {
        "capex": capex,
        "opex": opex,
        "energy": float(mine.loc[mine["category"] == "energy", "usd"].sum()),
        "lease": float(mine.loc[mine["category"] == "lease", "usd"].sum()),
        "capex_share": capex / total if total else math.nan,
        "npv_cost": npv,
        "gpu_hours": hours,
        "usd_per_gpu_hour": total / hours if hours else math.nan,
    }
