"""Gantt chart of one run (matplotlib), drawn from the ``stages`` table alone.

One row per site, grouped by org; stage bars coloured by stage; time spent waiting for resources
drawn as a hatched grey bar before the stage; stages that run in parallel on a site stack in lanes
inside the site's row; a diamond marks the date the site came online.

>>> from capsim.loader import load_scenario, default_scenario_path
>>> from capsim.model import Model, replication_rng
>>> from capsim.results import stage_table
>>> model = Model(load_scenario(default_scenario_path()))
>>> fig = gantt_figure(stage_table(model.run(model.draw(replication_rng(1)))), title="demo")
>>> len(fig.axes)
1
"""

from __future__ import annotations

import matplotlib
import matplotlib.dates as mdates
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

WAIT_STYLE = {"facecolor": "#e6e6e6", "edgecolor": "#8c8c8c", "hatch": "////", "linewidth": 0.4}


def stage_colors(stages: list[str]) -> dict[str, tuple[float, float, float, float]]:
    """A stable colour per stage name, in order of first appearance."""
    cmap = matplotlib.colormaps["tab20" if len(stages) > 10 else "tab10"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(stages)}


def _lanes(rows: pd.DataFrame) -> list[int]:
    """Interval partitioning: the lane of each bar so that bars in one lane never overlap."""
    ends: list[pd.Timestamp] = []
    lanes = []
    for begin, end in zip(rows["bar_begin"], rows["bar_end"], strict=True):
        lane = next((i for i, e in enumerate(ends) if e <= begin), len(ends))
        if lane == len(ends):
            ends.append(end)
        else:
            ends[lane] = end
        lanes.append(lane)
    return lanes


def gantt_figure(
    stages: pd.DataFrame, title: str = "", horizon: pd.Timestamp | None = None
) -> Figure:
    """Draw the ``stages`` table (from :func:`capsim.results.stage_table`) as a Gantt chart.

    Stages unfinished at the horizon are drawn up to ``horizon`` (or the last date seen) with a
    dashed edge.
    """
    df = stages.copy()
    end_of_view = (
        horizon or pd.concat([df["finish_date"], df["start_date"], df["ready_date"]]).max()
    )
    df["bar_begin"] = df["ready_date"]
    df["bar_end"] = df["finish_date"].fillna(end_of_view)
    df = df.dropna(subset=["ready_date"])
    sites = list(dict.fromkeys(stages.sort_values("org", kind="stable")["site"]))
    colors = stage_colors(list(dict.fromkeys(stages["stage"])))

    height = max(3.0, 0.42 * len(sites) + 1.8)
    fig = Figure(figsize=(13, height), layout="constrained")
    ax = fig.subplots()
    for row, site in enumerate(sites):
        bars = df[df["site"] == site].sort_values(["bar_begin", "bar_end"], kind="stable")
        lanes = _lanes(bars)
        n_lanes = max(lanes, default=0) + 1
        lane_h = 0.8 / n_lanes
        for lane, bar in zip(lanes, bars.itertuples(), strict=True):
            y = row - 0.4 + lane * lane_h
            if pd.notna(bar.start_date) and bar.start_date > bar.ready_date:
                ax.broken_barh(
                    [(bar.ready_date, bar.start_date - bar.ready_date)], (y, lane_h), **WAIT_STYLE
                )
            if pd.notna(bar.start_date):
                ax.broken_barh(
                    [(bar.start_date, bar.bar_end - bar.start_date)],
                    (y, lane_h),
                    facecolor=colors[bar.stage],
                    edgecolor="black" if pd.isna(bar.finish_date) else "white",
                    linestyle="--" if pd.isna(bar.finish_date) else "-",
                    linewidth=0.6,
                )
            elif pd.isna(bar.finish_date):  # waiting for resources at the horizon
                ax.broken_barh(
                    [(bar.ready_date, end_of_view - bar.ready_date)], (y, lane_h), **WAIT_STYLE
                )
        site_rows = df[df["site"] == site]
        if (
            site_rows["finish_date"].notna().all()
            and len(site_rows) == (stages["site"] == site).sum()
        ):
            ax.plot(
                site_rows["finish_date"].max(),
                row,
                marker="D",
                color="black",
                markersize=5,
                zorder=3,
            )

    orgs = stages.drop_duplicates("site").set_index("site")["org"]
    ax.set_yticks(range(len(sites)), [f"{site}  ({orgs[site]})" for site in sites], fontsize=8)
    ax.set_ylim(len(sites) - 0.5, -0.5)
    for row in range(1, len(sites)):
        if orgs[sites[row]] != orgs[sites[row - 1]]:
            ax.axhline(row - 0.5, color="#555555", linewidth=0.8)
    ax.xaxis.set_major_locator(mdates.YearLocator())
    ax.xaxis.set_minor_locator(mdates.MonthLocator(bymonth=[4, 7, 10]))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    ax.grid(axis="x", which="major", color="#cccccc", linewidth=0.6)
    ax.grid(axis="x", which="minor", color="#eeeeee", linewidth=0.4)
    ax.set_axisbelow(True)
    ax.set_xlabel("Calendar date")
    ax.set_title(title or "Site build-out by stage")
    handles = [Patch(facecolor=c, label=name.replace("_", " ")) for name, c in colors.items()]
    handles.append(Patch(label="waiting for resources", **WAIT_STYLE))
    handles.append(
        Line2D(
            [], [], marker="D", color="black", linestyle="none", markersize=5, label="site online"
        )
    )
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
    return fig
