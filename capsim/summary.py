"""Every table of one run, and the side-by-side summary of strategies, as pandas DataFrames.

The CLI prints and writes these; reports draw them. Nothing here knows about either.

>>> from capsim.loader import load_scenario, default_scenario_path
>>> from capsim.model import Model, replication_rng
>>> scenario = load_scenario(default_scenario_path())
>>> models = {name: Model(scenario, name) for name in scenario.strategies}
>>> runs = {name: m.run(m.draw(replication_rng(5))) for name, m in models.items()}
>>> list(strategy_summary(runs).index)
['build', 'lease', 'hybrid']
"""

from __future__ import annotations

import math

import pandas as pd

from capsim.capacity import capacity_table, milestone_times
from capsim.costs import cash_flows, cost_summary
from capsim.engine import Run
from capsim.results import events_table, site_table, stage_table, to_dates

#: World events a planner wants to see called out.
NOTABLE = ("paused", "delayed", "cancelled", "transferred", "permit_refused", "lease_late",
           "lease_terminated")  # fmt: skip


def run_tables(run: Run) -> dict[str, pd.DataFrame]:
    """All tables of one run, by file stem: stages, sites, capacity, events, costs, and hbm when
    the scenario has an HBM market."""
    stages, events = stage_table(run), events_table(run)
    tables = {
        "stages": stages,
        "sites": site_table(run, stages, events),
        "capacity": capacity_table(run),
        "events": events,
        "costs": cash_flows(run),
    }
    if run.model.scenario.hbm is not None:
        tables["hbm"] = hbm_table(run)
    return tables


def hbm_table(run: Run) -> pd.DataFrame:
    """HBM by period: GB produced, allocated to each buyer, and the backlog of orders (GB ordered
    and not yet allocated) at the end of the period."""
    scenario = run.model.scenario
    period = scenario.hbm.period
    schedule = run.model.hbm_schedule  # what the engine delivers, period by period
    n = len(schedule)
    produced = [common + sum(reserved.values()) for _, reserved, common in schedule]
    events = events_table(run)
    gens = scenario.generations
    allocated = events[events["kind"] == "hbm_allocated"]
    ordered = events[events["kind"] == "gpus_ordered"]
    ordered_gb = ordered["amount"] * ordered["generation"].map(lambda g: gens[g].hbm_gb)
    cancelled = events[events["kind"] == "hbm_cancelled"]
    ends = [t for t, _, _ in schedule]
    df = pd.DataFrame({"period": range(1, n + 1), "time": ends, "produced_gb": produced})
    bucket = ((allocated["time"] - 1e-9) // period).astype(int) + 1
    by_buyer = allocated.assign(period=bucket).pivot_table(
        index="period", columns="org", values="amount", aggfunc="sum", fill_value=0.0
    )
    # a column for every org, so that tables of different strategies line up
    by_buyer = by_buyer.reindex(columns=sorted({*scenario.orgs, *by_buyer.columns}), fill_value=0.0)
    by_buyer.columns = [f"allocated_gb_{c}" for c in by_buyer.columns]
    df = df.merge(by_buyer, left_on="period", right_index=True, how="left").fillna(0.0)
    df["backlog_gb"] = [
        float(
            ordered_gb[ordered["time"] <= t].sum()
            - allocated.loc[allocated["time"] <= t, "amount"].sum()
            - cancelled.loc[cancelled["time"] <= t, "amount"].sum()
        )
        for t in ends
    ]
    df.insert(1, "date", to_dates(run, df["time"]))
    return df


def strategy_summary(runs: dict[str | None, Run]) -> pd.DataFrame:
    """One row per strategy: milestone dates, capacity at the horizon, costs, what happened.

    Capacity and costs are the scenario's perspective org's (all orgs' own if it has none).
    """
    rows = {}
    for name, run in runs.items():
        scenario = run.model.scenario
        org = scenario.lab
        row: dict[str, object] = {}
        for milestone, t in milestone_times(run).items():
            row[f"{milestone.label} by"] = (
                to_dates(run, [t]).iloc[0] if not math.isnan(t) else pd.NaT
            )
        cap = capacity_table(run)
        last = (
            cap[cap["org"] == org].iloc[-1]
            if org
            else cap.groupby("org").last().sum(numeric_only=True)
        )
        row["MW online"] = float(last["mw_online"] if org else last["mw_own"])
        row["GPUs online"] = float(last["gpus_online"])
        row["PFLOPS online"] = float(last["pflops_online"])
        if org:
            costs = cost_summary(run, org)
            row.update(
                {
                    "CapEx (USD bn)": costs["capex"] / 1e9,
                    "OpEx (USD bn)": costs["opex"] / 1e9,
                    "NPV of cost (USD bn)": costs["npv_cost"] / 1e9,
                    "USD per GPU-hour": costs["usd_per_gpu_hour"],
                }
            )
        events = events_table(run)
        notable = events[events["kind"].isin(NOTABLE)]
        row["events"] = "; ".join(
            f"{kind.replace('_', ' ')}: {', '.join(dict.fromkeys(group['subject']))}"
            for kind, group in notable.groupby("kind", sort=False)
        )
        rows[name or "(scenario)"] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def gpus_by_generation(run: Run, org: str, every_years: int = 1) -> pd.DataFrame:
    """The ``org``'s GPUs online by generation (own and leased) at each 1 January."""
    cap = capacity_table(run)
    mine = cap[cap["org"] == org].set_index("time")
    gens = [c for c in mine.columns if c.startswith("gpus_") and c != "gpus_online"]
    scenario = run.model.scenario
    times = [t for t in run.model.year_starts[::every_years] if t <= scenario.horizon]
    rows = []
    for t in times:
        before = mine[mine.index <= t + 1e-9]
        rows.append(before[gens].iloc[-1] if len(before) else pd.Series(0.0, index=gens))
    table = pd.DataFrame(rows, index=to_dates(run, times).dt.year).rename_axis("year")
    table.columns = [c.removeprefix("gpus_") for c in table.columns]
    return table.loc[:, (table != 0).any()].astype(int)
