"""Interactive charts (plotly) of runs and Monte Carlo experiments, drawn from tables alone.

Every chart with one panel per strategy (or per milestone, or per measure) shows one at a time,
with buttons to switch: :func:`_selector` is the one mechanism for that. Dates are calendar
dates; money is in USD bn; capacity in MW, GPUs or PFLOPS.

>>> import pandas as pd
>>> fig = cost_chart(pd.DataFrame({"capex_gpus": [2e9], "energy": [1e9]}, index=["build"]))
>>> [trace.name for trace in fig.data]
['CapEx: GPUs', 'OpEx: energy']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from capsim.gantt import EVENT_EDGE, EVENT_FACE, EVENT_MARKERS, Layout
from capsim.world import Milestone

#: One colour per strategy, in order.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
WAIT_COLOR = "#c8c8c8"
COST_LABELS = {
    "capex_facility": "CapEx: facility",
    "capex_power": "CapEx: on-site power",
    "capex_gpus": "CapEx: GPUs",
    "energy": "OpEx: energy",
    "lease": "OpEx: lease",
}
MEASURE_LABELS = {"mw": "MW online", "gpus": "GPUs online", "pflops": "PFLOPS online (FP8)"}
_MS_PER_DAY = 86_400_000.0


def _base(title: str, height: int = 480) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template="plotly_white",
        height=height,
        margin={"l": 70, "r": 30, "t": 90, "b": 60},
        legend={"orientation": "h", "y": -0.15, "x": 0},
        hovermode="closest",
    )
    return fig


def _selector(fig: go.Figure, groups: Sequence[tuple[str, list[int], dict]]) -> go.Figure:
    """Show one group of traces at a time, with a button per group: ``groups`` are (label, the
    indices of its traces, the layout changes it needs). The first group is shown."""
    n = len(fig.data)
    for k, trace in enumerate(fig.data):
        trace.visible = k in groups[0][1]
    fig.update_layout(groups[0][2])
    if len(groups) > 1:
        buttons = [
            {
                "label": label,
                "method": "update",
                "args": [{"visible": [k in indices for k in range(n)]}, changes],
            }
            for label, indices, changes in groups
        ]
        fig.update_layout(
            updatemenus=[
                {
                    "type": "buttons",
                    "direction": "right",
                    "buttons": buttons,
                    "x": 1.0,
                    "xanchor": "right",
                    "y": 1.02,
                    "yanchor": "bottom",
                    "pad": {"r": 4, "t": 4},
                    "showactive": True,
                }
            ]
        )
    return fig


def gantt_chart(
    layout: Layout, colors: dict[str, str], title: str, lines: pd.DataFrame | None = None
) -> go.Figure:
    """An interactive Gantt chart of a :class:`capsim.gantt.Layout` (one run's, or a
    probabilistic one): a panel per strategy, one at a time."""
    fig = _base(title)
    groups = []
    shown_legend: set[str] = set()
    for panel in layout.panels:
        first = len(fig.data)
        bars, rows, marks = (t if panel is None else t[t["panel"] == panel] for t in layout[:3])
        for (kind, stage), group in bars.groupby(["kind", "stage"], sort=False):
            wait = kind == "wait"
            band = kind.endswith("band")
            name = "waiting" if wait else stage.replace("_", " ")
            width_days = (group["end"] - group["begin"]).dt.total_seconds() * 1000
            hover = [
                f"{rows.set_index('row').loc[r, 'label']}<br>{name}"
                + (f" ({kind})" if band or kind == "median" else "")
                + f"<br>{b:%Y-%m-%d} → {e:%Y-%m-%d}"
                + (" (beyond the horizon)" if o else "")
                for r, b, e, o in zip(
                    group["row"], group["begin"], group["end"], group["open"], strict=True
                )
            ]
            fig.add_trace(
                go.Bar(
                    orientation="h",
                    base=group["begin"],
                    x=width_days,
                    y=group["y"] + group["height"] / 2,
                    width=group["height"],
                    marker={
                        "color": WAIT_COLOR if wait else colors[stage],
                        "opacity": 0.3 if band else 1.0,
                        "line": {
                            "color": "black",
                            "width": [
                                1.8 if c else (0.8 if o else 0)
                                for c, o in zip(group["critical"], group["open"], strict=True)
                            ],
                        },
                        "pattern": {"shape": "/" if wait else ""},
                    },
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown_legend and not band,
                    hovertext=hover,
                    hoverinfo="text",
                )
            )
            shown_legend.add(name)
        for kind, group in marks.groupby("kind", sort=False):
            symbol = "diamond" if kind == "online" else EVENT_MARKERS.get(kind, ("", "circle"))[1]
            fig.add_trace(
                go.Scatter(
                    x=group["date"],
                    y=group["row"],
                    mode="markers",
                    marker={
                        "symbol": symbol,
                        "size": 9 if kind == "online" else 11,
                        "color": "black"
                        if kind == "online" or symbol.endswith("open")
                        else EVENT_FACE,
                        "line": {"width": 1.5, "color": EVENT_EDGE},
                    },
                    name="site online" if kind == "online" else kind.replace("_", " "),
                    legendgroup=kind,
                    showlegend=kind not in shown_legend,
                    hovertext=[
                        f"{d}<br>{date:%Y-%m-%d}"
                        for d, date in zip(group["detail"], group["date"], strict=True)
                    ],
                    hoverinfo="text",
                )
            )
            shown_legend.add(kind)
        changes = {
            "yaxis.tickvals": list(rows["row"]),
            "yaxis.ticktext": list(rows["label"]),
            "yaxis.range": [len(rows) - 0.5, -0.5],
            # a tall chart shows its dates at the top, where the reader starts
            "xaxis.side": "top" if len(rows) > 30 else "bottom",
            "height": max(420, 22 * len(rows) + 220),
            "shapes": [
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": r - 0.5,
                    "y1": r - 0.5,
                    "line": {"color": "#555555", "width": 1},
                }
                for r in rows.loc[rows["new_org"], "row"]
            ]
            + _availability_shapes(lines),
        }
        label = f"strategy: {panel}" if panel is not None else "scenario"
        groups.append((label, list(range(first, len(fig.data))), changes))
    fig.update_layout(
        barmode="overlay",
        xaxis={"type": "date", "title": "Calendar date", "tickformat": "%Y", "dtick": "M12"},
        yaxis={"automargin": True, "tickfont": {"size": 10}},
        annotations=_availability_labels(lines),
    )
    return _selector(fig, groups)


def _availability_shapes(lines: pd.DataFrame | None) -> list[dict]:
    if lines is None:
        return []
    return [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": d,
            "x1": d,
            "y0": 0,
            "y1": 1,
            "line": {"color": "#7a5195", "width": 1, "dash": "dot"},
        }
        for d in lines["date"]
    ]


def _availability_labels(lines: pd.DataFrame | None) -> list[dict]:
    if lines is None:
        return []
    return [
        {
            "x": d,
            "xref": "x",
            "y": 1.0,
            "yref": "paper",
            "yanchor": "bottom",
            "yshift": 11 * (k % 3),
            "text": label,
            "showarrow": False,
            "font": {"size": 9, "color": "#7a5195"},
            "xanchor": "left",
        }
        for k, (d, label) in enumerate(zip(lines["date"], lines["label"], strict=True))
    ]


def fan_chart(bands: dict[str, pd.DataFrame], milestones: Sequence[Milestone]) -> go.Figure:
    """Capacity online over time per strategy: the P10-P90 band and the P50 line of
    :func:`capsim.profiles.capacity_bands`, with a line at each milestone of the measure shown;
    buttons switch between MW, GPUs and PFLOPS."""
    fig = _base("Capacity online: P50 line, P10-P90 band")
    groups = []
    for measure, label in MEASURE_LABELS.items():
        first = len(fig.data)
        for k, (name, table) in enumerate(bands.items()):
            color = PALETTE[k % len(PALETTE)]
            fig.add_trace(
                go.Scatter(
                    x=table["date"],
                    y=table[f"{measure} P90"],
                    mode="lines",
                    line={"width": 0},
                    legendgroup=name,
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=table["date"],
                    y=table[f"{measure} P10"],
                    mode="lines",
                    line={"width": 0},
                    fill="tonexty",
                    fillcolor=_transparent(color, 0.18),
                    legendgroup=name,
                    name=f"{name} P10-P90",
                    hoverinfo="skip",
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=table["date"],
                    y=table[f"{measure} P50"],
                    mode="lines",
                    line={"color": color, "width": 2.2},
                    legendgroup=name,
                    name=f"{name} P50",
                    hovertemplate=f"{name}<br>%{{x|%Y-%m}}: %{{y:,.0f}}<extra></extra>",
                )
            )
        levels = [(m.label, m.measure[1]) for m in milestones if m.measure[0] == measure]
        changes = {
            "yaxis.title.text": label,
            "shapes": [
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": v,
                    "y1": v,
                    "line": {"color": "#444444", "dash": "dash", "width": 1},
                }
                for _, v in levels
            ],
            "annotations": [
                {
                    "xref": "paper",
                    "x": 0.005,
                    "y": v,
                    "yanchor": "bottom",
                    "text": f"{name}",
                    "showarrow": False,
                    "font": {"size": 10},
                }
                for name, v in levels
            ],
        }
        groups.append((label, list(range(first, len(fig.data))), changes))
    fig.update_layout(
        xaxis={"type": "date", "title": "Calendar date"},
        yaxis={"title": MEASURE_LABELS["mw"], "rangemode": "tozero", "separatethousands": True},
    )
    return _selector(fig, groups)


def _transparent(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def milestone_chart(dates: dict[str, pd.DataFrame], reps: dict[str, int]) -> go.Figure:
    """When each milestone is reached, per strategy: a histogram (left) and the cumulative share of
    replications that reached it by each date (right; it stops below 1 when some never did).
    ``dates`` maps a milestone to a table of its dates (a column per strategy); ``reps`` is each
    strategy's number of replications. Buttons switch between milestones."""
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.08,
        subplot_titles=("Histogram", "Cumulative share of replications"),
    )
    fig.update_layout(_base("When milestones are reached").layout)
    groups = []
    for milestone, table in dates.items():
        first = len(fig.data)
        for k, name in enumerate(table.columns):
            color = PALETTE[k % len(PALETTE)]
            reached = table[name].dropna().sort_values()
            fig.add_trace(
                go.Histogram(
                    x=reached,
                    name=name,
                    legendgroup=name,
                    marker={"color": color},
                    opacity=0.6,
                    xbins={"size": "M3"},
                ),
                row=1,
                col=1,
            )
            share = np.arange(1, len(reached) + 1) / reps[name]
            fig.add_trace(
                go.Scatter(
                    x=reached,
                    y=share,
                    mode="lines",
                    line={"shape": "hv", "color": color},
                    name=name,
                    legendgroup=name,
                    showlegend=False,
                    hovertemplate=f"{name}<br>%{{x|%Y-%m-%d}}: %{{y:.0%}}<extra></extra>",
                ),
                row=1,
                col=2,
            )
        groups.append((milestone, list(range(first, len(fig.data))), {}))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(type="date", title_text="Calendar date")
    fig.update_yaxes(title_text="replications", row=1, col=1)
    fig.update_yaxes(title_text="share reached", tickformat=".0%", range=[0, 1.02], row=1, col=2)
    return _selector(fig, groups)


def tornado_chart(sensitivity: dict[str, pd.Series], top: int = 12) -> go.Figure:
    """The inputs that move a milestone most, per strategy: Spearman rank correlation of each
    sampled input with the milestone's date (positive: a larger draw or the event happening makes
    it later). ``sensitivity`` maps a strategy to a series (input -> rho, named after the
    milestone). Buttons switch between strategies."""
    fig = _base("What moves the milestone date most (Spearman rank correlation)", 520)
    groups = []
    for name, rho in sensitivity.items():
        first = len(fig.data)
        rho = rho.dropna()
        rho = rho.reindex(rho.abs().sort_values(ascending=False).index[:top])[::-1]
        fig.add_trace(
            go.Bar(
                orientation="h",
                x=rho.to_numpy(),
                y=[str(i) for i in rho.index],
                marker={"color": ["#d62728" if v > 0 else "#1f77b4" for v in rho]},
                name=name,
                showlegend=False,
                hovertemplate="%{y}: %{x:.2f}<extra></extra>",
            )
        )
        groups.append((name, [first], {"xaxis.title.text": f"rank correlation with {rho.name}"}))
    fig.update_layout(
        xaxis={"range": [-1, 1], "zeroline": True, "zerolinecolor": "#444"},
        yaxis={"automargin": True},
    )
    return _selector(fig, groups)


def cost_chart(costs: pd.DataFrame) -> go.Figure:
    """Mean CapEx and OpEx by category per strategy, stacked (USD bn). ``costs`` has a row per
    strategy and a column per category (USD)."""
    fig = _base("Costs to the horizon by category (mean, USD bn)", 440)
    for column in [c for c in COST_LABELS if c in costs]:
        fig.add_trace(
            go.Bar(
                x=list(costs.index),
                y=costs[column] / 1e9,
                name=COST_LABELS[column],
                hovertemplate="%{x}: %{y:,.1f} bn<extra>" + COST_LABELS[column] + "</extra>",
            )
        )
    fig.update_layout(barmode="stack", yaxis={"title": "USD bn"}, xaxis={"title": "strategy"})
    return fig


def hbm_chart(hbm: dict[str, pd.DataFrame]) -> go.Figure:
    """HBM allocated to each buyer since the start (mean over replications, TB), stacked, per
    strategy (buttons); ``hbm`` maps a strategy to :func:`capsim.profiles.hbm_by_buyer`."""
    fig = _base("HBM allocated by buyer since the start (mean, TB)")
    groups = []
    for name, table in hbm.items():
        first = len(fig.data)
        for k, buyer in enumerate(table.columns):
            fig.add_trace(
                go.Scatter(
                    x=table.index,
                    y=table[buyer].cumsum() / 1000,
                    name=buyer,
                    stackgroup="hbm",
                    mode="lines",
                    line={"width": 0.5, "color": PALETTE[k % len(PALETTE)]},
                    legendgroup=buyer,
                    hovertemplate=f"{buyer}<br>%{{x|%Y-%m}}: %{{y:,.0f}} TB<extra></extra>",
                )
            )
        groups.append((f"strategy: {name}", list(range(first, len(fig.data))), {}))
    fig.update_layout(
        xaxis={"type": "date", "title": "Calendar date"},
        yaxis={"title": "TB allocated (cumulative)"},
    )
    return _selector(fig, groups)
