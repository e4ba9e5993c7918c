"""Gantt charts: the layout (which bar goes where) and its static rendering with matplotlib.

Two kinds, each from a table alone, so that the static (matplotlib) and the interactive (plotly,
:mod:`capsim.charts`) renderings draw the same layout:

- one run (:func:`gantt_layout`, from :func:`capsim.results.stage_table`): a row per site,
  grouped by org; stage bars coloured by stage; time spent waiting for resources as a hatched
  grey bar before the stage; stages that run in parallel stack in lanes inside the site's row;
  stages on the chain that decided the site's online date outlined; a diamond where the site came
  online; markers for pauses, delays, refusals, cancellations and transfers; a dotted line where
  each GPU generation becomes available to each customer tier.
- a Monte Carlo experiment (:func:`band_layout`, from :func:`capsim.profiles.stage_bands`): a row
  per site x stage with the P10-P90 band of its start and of its finish and a bar from the P50
  start to the P50 finish.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> from capsim.model import Model, replication_rng
>>> from capsim.results import stage_table
>>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
>>> fig = gantt_figure(stage_table(model.run(model.draw(replication_rng(1)))), title="demo")
>>> len(fig.axes)
1
"""

from __future__ import annotations

from typing import NamedTuple

import matplotlib
import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from capsim.results import to_dates
from capsim.schema import Scenario
from capsim.summary import NOTABLE

WAIT_STYLE = {"facecolor": "#e6e6e6", "edgecolor": "#8c8c8c", "hatch": "////", "linewidth": 0.4}
#: World-event markers: yellow with a black edge, apart from every stage colour.
EVENT_FACE, EVENT_EDGE = "#ffd92f", "black"
#: Marker symbols of world events on a Gantt row (matplotlib, plotly).
EVENT_MARKERS = {
    "paused": ("|", "line-ns-open"),
    "delayed": (">", "triangle-right"),
    "permit_refused": ("x", "x"),
    "cancelled": ("X", "x-thin-open"),
    "transferred": ("s", "square"),
    "lease_late": (">", "triangle-right"),
    "lease_terminated": ("X", "x-thin-open"),
}


class Layout(NamedTuple):
    """Where everything goes: ``bars`` (panel, row, y, height, kind ``wait`` or ``stage``,
    stage, begin, end, open, faded, critical), ``rows`` (panel, row, label, org, new_org),
    ``marks`` (panel, row, date, kind, detail) and the panels' names in order."""

    bars: pd.DataFrame
    rows: pd.DataFrame
    marks: pd.DataFrame
    panels: list


def stage_colors(stages: list[str]) -> dict[str, str]:
    """A stable colour (hex) per stage name, in order of first appearance."""
    cmap = matplotlib.colormaps["tab20" if len(stages) > 10 else "tab10"]
    return {name: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, name in enumerate(stages)}


def _lanes(begins: list, ends: list) -> list[int]:
    """Interval partitioning: the lane of each bar so that bars in one lane never overlap."""
    lane_ends: list = []
    lanes = []
    for begin, end in zip(begins, ends, strict=True):
        lane = next((i for i, e in enumerate(lane_ends) if e <= begin), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(end)
        else:
            lane_ends[lane] = end
        lanes.append(lane)
    return lanes


def _panels(table: pd.DataFrame) -> list[tuple[object, pd.DataFrame]]:
    return list(table.groupby("strategy", sort=False)) if "strategy" in table else [(None, table)]


def _rows(panel: object, table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per distinct ``keys`` of ``table``, grouped by org (in order of appearance)."""
    orgs = list(dict.fromkeys(table["org"]))
    ordered = table.assign(_org=table["org"].map(orgs.index)).sort_values("_org", kind="stable")
    rows = ordered.drop_duplicates(keys)[[*keys, "org"]].reset_index(drop=True)
    rows.insert(0, "row", range(len(rows)))
    rows.insert(0, "panel", panel)
    rows["new_org"] = rows["org"].ne(rows["org"].shift()) & (rows["row"] > 0)
    return rows


def gantt_layout(
    stages: pd.DataFrame, events: pd.DataFrame | None = None, horizon: pd.Timestamp | None = None
) -> Layout:
    """The layout of one run's Gantt chart from its ``stages`` table (a ``strategy`` column gives
    one panel per strategy) and, optionally, its ``events`` table (for the markers). Stages still
    running or waiting at the horizon end at ``horizon`` (default: the last date seen), open."""
    end_of_view = (
        horizon
        or pd.concat([stages["finish_date"], stages["start_date"], stages["ready_date"]]).max()
    )
    bars, rows, marks = [], [], []
    for panel, table in _panels(stages):
        site_rows = _rows(panel, table, ["site"])
        site_rows["label"] = site_rows["site"] + "  (" + site_rows["org"] + ")"
        cancelled = set(table.loc[table["status"] == "cancelled", "site"])
        site_rows.loc[site_rows["site"].isin(cancelled), "label"] += "  [cancelled]"
        rows.append(site_rows)
        where = dict(zip(site_rows["site"], site_rows["row"], strict=True))
        df = table.dropna(subset=["ready_date"])
        for site, group in df.groupby("site", sort=False):
            end = group["finish_date"].fillna(group["stop_date"]).fillna(end_of_view)
            order = sorted(
                range(len(group)), key=lambda i: (group["ready_date"].iloc[i], end.iloc[i])
            )
            group, end = group.iloc[order], end.iloc[order]
            lanes = _lanes(list(group["ready_date"]), list(end))
            height = 0.8 / (max(lanes) + 1)
            for lane, bar, stop in zip(lanes, group.itertuples(), end, strict=True):
                y = where[site] - 0.4 + lane * height
                started = pd.notna(bar.start_date)
                common = {
                    "panel": panel,
                    "row": where[site],
                    "y": y,
                    "height": height,
                    "stage": bar.stage,
                    "open": pd.isna(bar.finish_date),
                    "faded": site in cancelled,
                    "critical": bool(bar.critical),
                }
                wait_end = bar.start_date if started else stop
                if wait_end > bar.ready_date:
                    bars.append(
                        {
                            **common,
                            "kind": "wait",
                            "begin": bar.ready_date,
                            "end": wait_end,
                            "critical": False,
                        }
                    )
                if started:
                    bars.append({**common, "kind": "stage", "begin": bar.start_date, "end": stop})
        online = table.groupby("site")["finish_date"].agg(
            lambda f: f.max() if f.notna().all() else pd.NaT
        )
        for site, date in online.dropna().items():
            marks.append(
                {
                    "panel": panel,
                    "row": where[site],
                    "date": date,
                    "kind": "online",
                    "detail": f"{site} online",
                }
            )
        if events is not None:
            mine = events if panel is None else events[events["strategy"] == panel]
            for e in mine[mine["kind"].isin(NOTABLE) & mine["subject"].isin(where)].itertuples():
                what = e.kind.replace("_", " ")
                detail = f"{e.subject} {what}" + (f" ({e.detail})" if e.detail else "")
                marks.append(
                    {
                        "panel": panel,
                        "row": where[e.subject],
                        "date": e.date,
                        "kind": e.kind,
                        "detail": detail,
                    }
                )
    return _layout(bars, rows, marks, stages)


_BAR_COLUMNS = ["panel", "row", "y", "height", "stage", "open", "faded", "critical", "kind",
                "begin", "end"]  # fmt: skip
_MARK_COLUMNS = ["panel", "row", "date", "kind", "detail"]


def _layout(bars: list[dict], rows: list[pd.DataFrame], marks: list[dict], table) -> Layout:
    """The :class:`Layout` of bars, rows and marks laid out from ``table``."""
    return Layout(
        pd.DataFrame(bars, columns=_BAR_COLUMNS),
        pd.concat(rows, ignore_index=True),
        pd.DataFrame(marks, columns=_MARK_COLUMNS),
        [p for p, _ in _panels(table)],
    )


def band_layout(bands: pd.DataFrame) -> Layout:
    """The layout of a probabilistic Gantt chart from :func:`capsim.profiles.stage_bands` (a
    ``strategy`` column gives one panel per strategy): per site x stage, bars ``start band``
    (P10-P90 of the start), ``finish band`` (P10-P90 of the finish) and ``median`` (P50 start to
    P50 finish). A band whose P90 fell beyond the horizon is open; a stage that always took no
    time gets no row."""
    bars, rows = [], []
    # stages that always take no time (e.g. a site selection already done) have nothing to draw
    bands = bands[~(bands["start P10"] == bands["finish P90"])]
    for panel, table in _panels(bands):
        keyed = _rows(panel, table, ["site", "stage"])
        keyed["label"] = keyed["site"] + " · " + keyed["stage"].str.replace("_", " ")
        rows.append(keyed)
        where = {
            (s, g): r for s, g, r in zip(keyed["site"], keyed["stage"], keyed["row"], strict=True)
        }
        last = table[[c for c in table.columns if c.endswith(" date")]].max().max()
        for d in table.to_dict("records"):
            row = where[(d["site"], d["stage"])]
            common = {
                "panel": panel,
                "row": row,
                "stage": d["stage"],
                "faded": False,
                "critical": False,
            }
            for kind, what, y, height in (
                ("start band", "start", row - 0.35, 0.7),
                ("finish band", "finish", row - 0.35, 0.7),
                ("median", "", row - 0.15, 0.3),
            ):
                begin = d[f"{what} P10 date"] if what else d["start P50 date"]
                end = d[f"{what} P90 date"] if what else d["finish P50 date"]
                if pd.isna(begin):
                    continue
                bars.append(
                    {
                        **common,
                        "kind": kind,
                        "y": y,
                        "height": height,
                        "begin": begin,
                        "end": last if pd.isna(end) else end,
                        "open": pd.isna(end),
                    }
                )
    return _layout(bars, rows, [], bands)


def availability(scenario: Scenario) -> pd.DataFrame:
    """When each GPU generation becomes available to each customer tier that some org is in:
    generation, tier, date, label (dates after the horizon left out)."""
    tiers = sorted({org.tier for org in scenario.orgs.values()})
    rows = [
        {
            "generation": name,
            "tier": tier,
            "time": gen.available_to(tier),
            "label": f"{name} → tier {tier}",
        }
        for name, gen in scenario.generations.items()
        for tier in tiers
        if 0 < gen.available_to(tier) <= scenario.horizon
    ]
    table = pd.DataFrame(rows, columns=["generation", "tier", "time", "label"])
    table.insert(2, "date", to_dates(scenario, table.pop("time")).to_numpy())
    return table


def gantt_figure(
    stages: pd.DataFrame,
    title: str = "",
    horizon: pd.Timestamp | None = None,
    events: pd.DataFrame | None = None,
    scenario: Scenario | None = None,
) -> Figure:
    """Draw one run's ``stages`` table as a static Gantt chart (see the module's description);
    ``events`` adds the risk markers, ``scenario`` the GPU-availability lines."""
    layout = gantt_layout(stages, events, horizon)
    colors = stage_colors(list(dict.fromkeys(stages["stage"])))
    lines = availability(scenario) if scenario is not None else None
    return _figure(layout, colors, title or "Site build-out by stage", lines, probabilistic=False)


def band_figure(bands: pd.DataFrame, title: str = "", scenario: Scenario | None = None) -> Figure:
    """Draw :func:`capsim.profiles.stage_bands` as a static probabilistic Gantt chart."""
    layout = band_layout(bands)
    colors = stage_colors(list(dict.fromkeys(bands["stage"])))
    lines = availability(scenario) if scenario is not None else None
    return _figure(layout, colors, title or "Stage start and finish, P10-P90", lines, True)


def _figure(
    layout: Layout, colors: dict, title: str, lines: pd.DataFrame | None, probabilistic: bool
) -> Figure:
    counts = [
        int((layout.rows["panel"] == p).sum()) if p is not None else len(layout.rows)
        for p in layout.panels
    ]
    per_row = 0.26 if probabilistic else 0.36
    height = max(3.0, per_row * sum(counts) + 1.3 * len(counts) + 1.2)
    fig = Figure(figsize=(13, height), layout="constrained")
    axes = fig.subplots(
        len(counts), 1, sharex=True, squeeze=False, height_ratios=[c + 1.5 for c in counts]
    )
    for ax, panel in zip(axes[:, 0], layout.panels, strict=True):
        _draw(ax, *(_pick(t, panel) for t in layout[:3]), colors, probabilistic)
        if lines is not None:
            for k, line in enumerate(lines.itertuples()):
                ax.axvline(line.date, color="#7a5195", linestyle=":", linewidth=0.8)
                if ax is axes[0, 0]:
                    ax.annotate(
                        line.label,
                        (line.date, 1.0),
                        xycoords=("data", "axes fraction"),
                        xytext=(2, 2 + 8 * (k % 4)),
                        textcoords="offset points",
                        fontsize=6.5,
                        color="#7a5195",
                    )
        if len(layout.panels) > 1:
            ax.set_title(f"strategy: {panel}", loc="right", fontsize=10)
    bottom = axes[-1, 0]
    bottom.xaxis.set_major_locator(mdates.YearLocator())
    bottom.xaxis.set_minor_locator(mdates.MonthLocator(bymonth=[4, 7, 10]))
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    bottom.set_xlabel("Calendar date")
    if sum(counts) > 30:  # a tall chart shows its dates at the top too
        axes[0, 0].tick_params(axis="x", labeltop=True)
    fig.suptitle(title)
    axes[0, 0].legend(
        handles=_legend(colors, layout, probabilistic, lines),
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
    )
    return fig


def _pick(table: pd.DataFrame, panel: object) -> pd.DataFrame:
    """The part of a layout table in ``panel``."""
    return table if panel is None else table[table["panel"] == panel]


def _legend(colors: dict, layout: Layout, probabilistic: bool, lines) -> list:
    handles = [Patch(facecolor=c, label=name.replace("_", " ")) for name, c in colors.items()]
    if probabilistic:
        handles.append(Patch(facecolor="#999999", alpha=0.3, label="P10-P90 of start / finish"))
        handles.append(Patch(facecolor="#555555", label="P50 start to P50 finish"))
        return handles
    handles.append(Patch(label="waiting", **WAIT_STYLE))
    handles.append(
        Patch(facecolor="white", edgecolor="black", linewidth=1.6, label="decided the online date")
    )
    handles.append(
        Line2D(
            [], [], marker="D", color="black", linestyle="none", markersize=5, label="site online"
        )
    )
    for kind in dict.fromkeys(layout.marks["kind"]):
        if kind in EVENT_MARKERS:
            handles.append(
                Line2D(
                    [],
                    [],
                    marker=EVENT_MARKERS[kind][0],
                    color=EVENT_EDGE,
                    markerfacecolor=EVENT_FACE,
                    linestyle="none",
                    label=kind.replace("_", " "),
                )
            )
    if lines is not None and len(lines):
        handles.append(
            Line2D([], [], color="#7a5195", linestyle=":", label="GPU generation available")
        )
    return handles


def _draw(
    ax: Axes,
    bars: pd.DataFrame,
    rows: pd.DataFrame,
    marks: pd.DataFrame,
    colors: dict,
    probabilistic: bool,
) -> None:
    for bar in bars.itertuples():
        span = [(bar.begin, bar.end - bar.begin)]
        alpha = 0.35 if bar.faded else 1.0
        if bar.kind == "wait":
            ax.broken_barh(span, (bar.y, bar.height), alpha=alpha, **WAIT_STYLE)
        elif bar.kind in ("start band", "finish band"):
            ax.broken_barh(
                span, (bar.y, bar.height), facecolor=colors[bar.stage], alpha=0.3, edgecolor="none"
            )
        else:
            ax.broken_barh(
                span,
                (bar.y, bar.height),
                facecolor=colors[bar.stage],
                alpha=alpha,
                edgecolor="black" if bar.open or bar.critical else "white",
                linestyle="--" if bar.open else "-",
                linewidth=1.4 if bar.critical else 0.6,
            )
    for mark in marks.itertuples():
        if mark.kind == "online":
            ax.plot(mark.date, mark.row, marker="D", color="black", markersize=5, zorder=3)
        elif mark.kind in EVENT_MARKERS:
            ax.plot(
                mark.date,
                mark.row,
                marker=EVENT_MARKERS[mark.kind][0],
                color=EVENT_EDGE,
                markerfacecolor=EVENT_FACE,
                markersize=9,
                markeredgewidth=1.2 if EVENT_MARKERS[mark.kind][0] in "s>X" else 2.5,
                zorder=4,
                linestyle="none",
            )
    fontsize = 8 if len(rows) <= 60 else 6
    ax.set_yticks(list(rows["row"]), list(rows["label"]), fontsize=fontsize)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    for row in rows.loc[rows["new_org"], "row"]:
        ax.axhline(row - 0.5, color="#555555", linewidth=0.8)
    ax.grid(axis="x", which="major", color="#cccccc", linewidth=0.6)
    ax.grid(axis="x", which="minor", color="#eeeeee", linewidth=0.4)
    ax.set_axisbelow(True)
