"""Result tables derived from one run's logs: stages, sites and the world's events.

Model times are in the scenario's ``time_unit``; each has a calendar-date twin (``*_date``).

>>> from capsim.loader import load_scenario, shipped_scenario
>>> from capsim.model import Model, replication_rng
>>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
>>> run = model.run(model.draw(replication_rng(seed=1)))
>>> list(stage_table(run).columns[:6])
['site', 'org', 'stage', 'ready', 'start', 'finish']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capsim.engine import Run, WorldEvent
from capsim.schema import Scenario
from capsim.tally import critical_chains
from capsim.units import DAYS_PER


def to_dates(run: Run | Scenario, times: np.ndarray | pd.Series) -> pd.Series:
    """Calendar dates (day resolution) of model times of a run or scenario; NaN becomes NaT."""
    scenario = run if isinstance(run, Scenario) else run.model.scenario
    days = np.asarray(times, dtype=float) * DAYS_PER[scenario.time_unit]
    # a hair over, so a date converted to model time and back is not floored to the day before
    offsets = pd.to_timedelta(days + 1e-6, unit="D")
    return pd.Series(pd.Timestamp(scenario.start) + offsets).dt.floor("D")


def stage_table(run: Run) -> pd.DataFrame:
    """One row per active site x stage: when it became ready, started (resources granted) and
    finished.

    ``wait`` is start - ready (time spent queueing for resources, up to the horizon for a stage
    still waiting); ``status`` is ``done``, ``running``, ``waiting`` or ``cancelled`` at the
    horizon; ``critical`` marks the stages on the chain that decided when their site came online
    (see :func:`capsim.tally.critical_chains`).
    """
    model = run.model
    ids = model.active_tasks
    tasks = [model.tasks[i] for i in ids]
    sites = [model.sites[t.site].spec for t in tasks]
    cancelled = {e.subject: e.time for e in run.world if e.kind == "cancelled"}
    df = pd.DataFrame(
        {
            "site": [s.name for s in sites],
            "org": [s.org for s in sites],
            "stage": [t.stage for t in tasks],
            "ready": run.ready[ids],
            "start": run.start[ids],
            "finish": run.finish[ids],
        }
    )
    # a stage of a cancelled site that never finished stopped when the site was cancelled
    stopped = df["site"].map(cancelled).where(df["finish"].isna())
    df["stop"] = stopped.where(stopped >= df["ready"])
    # time spent waiting for resources; one still waiting counts up to its stop or the horizon
    df["wait"] = df["start"].fillna(df["stop"]).fillna(model.scenario.horizon) - df["ready"]
    df["duration"] = df["finish"] - df["start"]
    df["status"] = np.select(
        [df["finish"].notna(), df["site"].isin(list(cancelled)), df["start"].notna()],
        ["done", "cancelled", "running"],
        default="waiting",
    )
    df["kind"] = [t.kind for t in tasks]
    on_chain, _ = critical_chains(run)
    df["critical"] = [i in on_chain for i in ids]
    for column in ("ready", "start", "finish", "stop"):
        df[f"{column}_date"] = to_dates(run, df[column])
    return df


def site_table(
    run: Run, stages: pd.DataFrame | None = None, events: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per active site: its earliest start, when it came online (its last stage
    finished), its owner at the horizon and what happened to it (paused, cancelled, transferred).
    ``stages`` and ``events`` are the run's own tables, if they are at hand already.
    """
    model = run.model
    infos = [info for info in model.sites if info.active]
    stages = stage_table(run) if stages is None else stages
    waits = stages.groupby("site", sort=False)["wait"].sum()
    events = events_table(run) if events is None else events
    happened = (
        events[
            events["kind"].isin(["paused", "delayed", "cancelled", "transferred", "permit_refused"])
        ]
        .groupby("subject")["kind"]
        .agg(lambda kinds: ", ".join(dict.fromkeys(kinds)))
    )
    mw_online = events[events["kind"] == "mw_online"].groupby("subject")["amount"].sum()
    gpus_online = events[events["kind"] == "gpus_online"].groupby("subject")["amount"].sum()
    df = pd.DataFrame(
        {
            "site": [i.spec.name for i in infos],
            "org": [i.spec.org for i in infos],
            "owner": [run.owners[i.index] for i in infos],
            "pipeline": [i.spec.pipeline for i in infos],
            "mw": [i.spec.mw for i in infos],
            "start": [i.spec.start for i in infos],
            "online": [_all_done(run, i.tasks) for i in infos],
            "mw_online": [mw_online.get(i.spec.name, 0.0) for i in infos],
            "gpus_online": [gpus_online.get(i.spec.name, 0.0) for i in infos],
            "total_wait": [waits.get(i.spec.name, 0.0) for i in infos],
            "events": [happened.get(i.spec.name, "") for i in infos],
        }
    )
    df["start_date"] = to_dates(run, df["start"])
    df["online_date"] = to_dates(run, df["online"])
    return df


def _all_done(run: Run, tasks: range) -> float:
    finish = run.finish[list(tasks)]
    return float(finish.max()) if not np.isnan(finish).any() else np.nan


def events_table(run: Run) -> pd.DataFrame:
    """The world's event log: capacity online, HBM allocations, permits, risks, leases.

    >>> from capsim.loader import load_scenario, shipped_scenario
    >>> from capsim.model import Model, replication_rng
    >>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
    >>> events = events_table(model.run(model.draw(replication_rng(1))))
    >>> sorted(set(events["kind"]))
    ['capex', 'mw_built', 'mw_online', 'site_complete']
    """
    columns = list(WorldEvent._fields)
    df = pd.DataFrame(run.log, columns=columns)
    df.insert(0, "date", to_dates(run, df["time"]))
    return df
