"""Result tables derived from one run's event log: stages, sites and capacity over time.

Model times are in the scenario's ``time_unit``; each has a calendar-date twin (``*_date``).

>>> from capsim.loader import load_scenario, default_scenario_path
>>> from capsim.model import Model, replication_rng
>>> model = Model(load_scenario(default_scenario_path()))
>>> run = model.run(model.draw(replication_rng(seed=1)))
>>> list(stage_table(run).columns[:6])
['site', 'org', 'stage', 'ready', 'start', 'finish']
>>> capacity_table(run)["total_mw_online"].iloc[-1]
np.float64(1000.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capsim.model import Run
from capsim.units import DAYS_PER


def to_dates(run: Run, times: np.ndarray | pd.Series) -> pd.Series:
    """Calendar dates (day resolution) of model times; NaN becomes NaT."""
    scenario = run.model.scenario
    days = np.asarray(times, dtype=float) * DAYS_PER[scenario.time_unit]
    # a hair over, so a date converted to model time and back is not floored to the day before
    offsets = pd.to_timedelta(days + 1e-6, unit="D")
    return pd.Series(pd.Timestamp(scenario.start) + offsets).dt.floor("D")


def stage_table(run: Run) -> pd.DataFrame:
    """One row per site x stage: when it became ready, started (resources granted) and finished.

    ``wait`` is start - ready (time spent queueing for resources, up to the horizon for a stage
    still waiting); ``status`` is ``done``, ``running`` or ``waiting`` at the horizon.
    """
    tasks = run.model.tasks
    sites = run.model.scenario.sites
    df = pd.DataFrame(
        {
            "site": [sites[t.site].name for t in tasks],
            "org": [sites[t.site].org for t in tasks],
            "stage": [t.stage for t in tasks],
            "ready": run.ready,
            "start": run.start,
            "finish": run.finish,
        }
    )
    # time spent waiting for resources; a stage still waiting at the horizon counts up to it
    df["wait"] = df["start"].fillna(run.model.scenario.horizon) - df["ready"]
    df["duration"] = df["finish"] - df["start"]
    df["status"] = np.select(
        [df["finish"].notna(), df["start"].notna()], ["done", "running"], default="waiting"
    )
    for column in ("ready", "start", "finish"):
        df[f"{column}_date"] = to_dates(run, df[column])
    return df


def site_table(run: Run) -> pd.DataFrame:
    """One row per site: its earliest start and when it came online (its last stage finished)."""
    scenario = run.model.scenario
    online = [
        run.finish[list(tasks)].max() if not np.isnan(run.finish[list(tasks)]).any() else np.nan
        for tasks in run.model.site_tasks
    ]
    waits = stage_table(run).groupby("site", sort=False)["wait"].sum()
    df = pd.DataFrame(
        {
            "site": [s.name for s in scenario.sites],
            "org": [s.org for s in scenario.sites],
            "pipeline": [s.pipeline for s in scenario.sites],
            "mw": [s.mw for s in scenario.sites],
            "start": [s.start for s in scenario.sites],
            "online": online,
            "total_wait": [waits.get(s.name, 0.0) for s in scenario.sites],
        }
    )
    df["start_date"] = to_dates(run, df["start"])
    df["online_date"] = to_dates(run, df["online"])
    return df


def capacity_table(run: Run) -> pd.DataFrame:
    """MW online over time by org: a row whenever an org's capacity changes, starting at zero.

    ``mw_online`` is the org's cumulative MW, ``total_mw_online`` all orgs' at that time.
    """
    sites = site_table(run)
    orgs = sorted(sites["org"].unique())
    steps = (
        sites.dropna(subset=["online"])
        .groupby(["online", "org"], sort=True)["mw"]
        .sum()
        .rename("mw_added")
        .reset_index()
        .rename(columns={"online": "time"})
    )
    start = pd.DataFrame({"time": 0.0, "org": orgs, "mw_added": 0.0})
    df = pd.concat([start, steps], ignore_index=True)
    df["mw_online"] = df.groupby("org")["mw_added"].cumsum()
    df["total_mw_online"] = df["mw_added"].cumsum()
    df.insert(0, "date", to_dates(run, df["time"]))
    return df.reset_index(drop=True)


def milestones(run: Run, levels_mw: list[float]) -> dict[float, float]:
    """The first model time at which total MW online reaches each level (NaN if never).

    >>> from capsim.loader import load_scenario, default_scenario_path
    >>> from capsim.model import Model
    >>> model = Model(load_scenario(default_scenario_path()))
    >>> m = milestones(model.run(model.mean_durations()), [250, 5000])
    >>> bool(m[250] > 0), bool(np.isnan(m[5000]))
    (True, True)
    """
    cap = capacity_table(run)
    out = {}
    for level in levels_mw:
        reached = cap.loc[cap["total_mw_online"] >= level - 1e-9, "time"]
        out[level] = float(reached.min()) if len(reached) else float("nan")
    return out
