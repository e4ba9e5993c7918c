"""Gantt chart of one run (matplotlib), drawn from the ``stages`` table alone.

One row per site, grouped by org; stage bars coloured by stage; time spent waiting for resources
drawn as a hatched grey bar before the stage; stages that run in parallel on a site stack in lanes
inside the site's row; a diamond marks the date the site came online.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> from capsim.model import Model, replication_rng
>>> from capsim.results import stage_table
>>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
>>> fig = gantt_figure(stage_table(model.run(model.draw(replication_rng(1)))), title="demo")
>>> len(fig.axes)
1
"""

from __future__ import annotations

import matplotlib
import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
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
    """Draw the ``stages`` table (from :func:`capsim.results.stage_table`) as a Gantt chart; a
    ``strategy`` column gives one panel per strategy on a shared calendar axis.

    Stages unfinished at the horizon are drawn up to ``horizon`` (or the last date seen) with a
    dashed edge; stages of a cancelled site are drawn faded.
    """
    end_of_view = (
        horizon
        or pd.concat([stages["finish_date"], stages["start_date"], stages["ready_date"]]).max()
    )
    panels = (
        list(stages.groupby("strategy", sort=False)) if "strategy" in stages else [(None, stages)]
    )
    colors = stage_colors(list(dict.fromkeys(stages["stage"])))
    rows = [panel["site"].nunique() for _, panel in panels]
    height = max(3.0, 0.36 * sum(rows) + 1.3 * len(panels) + 0.8)
    fig = Figure(figsize=(13, height), layout="constrained")
    axes = fig.subplots(
        len(panels), 1, sharex=True, squeeze=False, height_ratios=[r + 1.5 for r in rows]
    )
    for ax, (name, panel) in zip(axes[:, 0], panels, strict=True):
        _draw_panel(ax, panel, colors, end_of_view)
        ax.set_title(f"strategy: {name}" if name is not None else "", loc="left", fontsize=10)
    bottom = axes[-1, 0]
    bottom.xaxis.set_major_locator(mdates.YearLocator())
    bottom.xaxis.set_minor_locator(mdates.MonthLocator(bymonth=[4, 7, 10]))
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    bottom.set_xlabel("Calendar date")
    fig.suptitle(title or "Site build-out by stage")
    handles = [Patch(facecolor=c, label=name.replace("_", " ")) for name, c in colors.items()]
    handles.append(Patch(label="waiting", **WAIT_STYLE))
    handles.append(
        Line2D(
            [], [], marker="D", color="black", linestyle="none", markersize=5, label="site online"
        )
    )
    axes[0, 0].legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
    return fig


def _draw_panel(ax: Axes, stages: pd.DataFrame, colors: dict, end_of_view: pd.Timestamp) -> None:
    """One Gantt panel: a row per site, grouped by org."""
    df = stages.dropna(subset=["ready_date"]).copy()
    df["bar_begin"] = df["ready_date"]
    df["bar_end"] = df["finish_date"].fillna(df["stop_date"]).fillna(end_of_view)
    sites = list(dict.fromkeys(stages.sort_values("org", kind="stable")["site"]))
    cancelled = set(stages.loc[stages["status"] == "cancelled", "site"])
    for row, site in enumerate(sites):
        bars = df[df["site"] == site].sort_values(["bar_begin", "bar_end"], kind="stable")
        lanes = _lanes(bars)
        lane_h = 0.8 / (max(lanes, default=0) + 1)
        alpha = 0.35 if site in cancelled else 1.0
        for lane, bar in zip(lanes, bars.itertuples(), strict=True):
            y = row - 0.4 + lane * lane_h
            started = pd.notna(bar.start_date)
            wait_end = bar.start_date if started else bar.bar_end
            if wait_end > bar.ready_date and (started or pd.isna(bar.finish_date)):
                ax.broken_barh(
                    [(bar.ready_date, wait_end - bar.ready_date)],
                    (y, lane_h),
                    alpha=alpha,
                    **WAIT_STYLE,
                )
            if started:
                ax.broken_barh(
                    [(bar.start_date, bar.bar_end - bar.start_date)],
                    (y, lane_h),
                    facecolor=colors[bar.stage],
                    edgecolor="black" if pd.isna(bar.finish_date) else "white",
                    linestyle="--" if pd.isna(bar.finish_date) else "-",
                    linewidth=0.6,
                    alpha=alpha,
                )
        site_rows = stages[stages["site"] == site]
        if site_rows["finish_date"].notna().all():
            ax.plot(
                site_rows["finish_date"].max(),
                row,
                marker="D",
                color="black",
                markersize=5,
                zorder=3,
            )

    orgs = stages.drop_duplicates("site").set_index("site")["org"]
    labels = [
        f"{site}  ({orgs[site]})" + ("  [cancelled]" if site in cancelled else "") for site in sites
    ]
    ax.set_yticks(range(len(sites)), labels, fontsize=8)
    ax.set_ylim(len(sites) - 0.5, -0.5)
    for row in range(1, len(sites)):
        if orgs[sites[row]] != orgs[sites[row - 1]]:
            ax.axhline(row - 0.5, color="#555555", linewidth=0.8)
    ax.grid(axis="x", which="major", color="#cccccc", linewidth=0.6)
    ax.grid(axis="x", which="minor", color="#eeeeee", linewidth=0.4)
    ax.set_axisbelow(True)
