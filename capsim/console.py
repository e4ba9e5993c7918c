"""What the command line prints: rich tables of DataFrames, the run summary, the site table, the
horizon report and progress bars. Only the CLI uses it."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from capsim.schema import Scenario

# Piped output (files, CI logs) gets wide tables instead of truncated cells.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def print_run(scenario: Scenario, seed: int, runs: dict, tables: dict) -> None:
    from capsim.summary import gpus_by_generation, strategy_summary
    from capsim.units import to_date

    end = to_date(scenario.start, scenario.horizon, scenario.time_unit)
    console.print(
        f"[bold]{scenario.name}[/bold]: {len(scenario.sites)} sites, seed {seed}, "
        f"simulated from {scenario.start} to {end}"
        + (f"; strategies: {', '.join(map(str, runs))}" if scenario.strategies else "")
    )
    if len(runs) == 1:
        print_sites(scenario, tables["sites"], tables["stages"])
    if scenario.lab is not None or scenario.strategies:
        who = scenario.lab or "all orgs"
        summary = strategy_summary(runs).T
        print_frame(summary, f"Strategies: capacity of {who}, costs and events (one replication)")
        if scenario.lab is not None:
            import pandas as pd

            gens = pd.concat(
                {name or "": gpus_by_generation(run, scenario.lab) for name, run in runs.items()},
                axis=1,
            )
            gens.columns = [" ".join(filter(None, c)) for c in gens.columns]
            if len(gens.columns):
                print_frame(gens, f"GPUs of {scenario.lab} online on 1 January, by generation")
    for name, run in runs.items():
        if run.blockages:
            print_blockages(run.blockages, name)


_SHARES = ("reached", "P(by", "wins")


def print_frame(df, title: str, shares: bool = False) -> None:
    """Print a DataFrame as a rich table; rows or columns about shares (``reached``, ``P(by``,
    or all cells with ``shares``) print as percentages."""
    table = Table(title=title, title_justify="left")
    table.add_column(str(df.index.name or ""), style="bold")
    for column in df.columns:
        table.add_column(str(column), justify="right")
    for index, row in df.iterrows():
        label = " ".join(map(str, index)) if isinstance(index, tuple) else str(index)
        cells = [
            cell(v, shares or any(s in f"{label} {c}" for s in _SHARES))
            for c, v in zip(df.columns, row, strict=True)
        ]
        table.add_row(escape(label), *cells)
    console.print(table)


def cell(value: object, share: bool = False) -> str:
    import pandas as pd

    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return "-"
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, float | int) and not isinstance(value, bool):
        value = value + 0  # no "-0"
        if value in (math.inf, -math.inf):
            return "∞" if value > 0 else "-∞"
        if share:
            return f"{value:.0%}"
        if value == int(value):
            return f"{value:,.0f}"
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
    return escape(str(value))


def print_sites(scenario: Scenario, sites, stages) -> None:
    import pandas as pd

    table = Table(title="Sites", title_justify="left")
    columns = (
        "site",
        "org",
        "MW",
        "start",
        "online",
        f"waited ({scenario.time_unit})",
        "slowest stage",
        "events",
    )
    for column in columns:
        table.add_column(
            column, justify="right" if column == "MW" or "waited" in column else "left"
        )
    slowest = (
        stages.dropna(subset=["duration"])
        .sort_values("duration", kind="stable")
        .groupby("site")["stage"]
        .last()
    )
    for row in sites.itertuples():
        online = (
            row.online_date.date().isoformat()
            if pd.notna(row.online_date)
            else "[red]not by horizon[/red]"
        )
        owner = row.org if row.owner == row.org else f"{row.org} -> {row.owner}"
        table.add_row(
            row.site,
            owner,
            f"{row.mw:,.0f}",
            row.start_date.date().isoformat(),
            online,
            f"{row.total_wait:,.0f}",
            slowest.get(row.site, "-"),
            escape(row.events),
        )
    console.print(table)
    online = sites.dropna(subset=["online_date"]).sort_values("online_date")
    if len(online):
        console.print(
            f"First site online {online['online_date'].iloc[0].date()}; "
            f"{online['mw'].sum():,.0f} of {sites['mw'].sum():,.0f} MW of sites online by "
            f"{online['online_date'].iloc[-1].date()}."
        )


def print_blockages(blockages: list, strategy: str | None) -> None:
    title = "Not finished by the horizon" + (f" ({strategy})" if strategy else "")
    stuck = Table(title=title, title_justify="left", title_style="bold red")
    for column in ("site", "stage", "state", "waiting on"):
        stuck.add_column(column)
    for b in sorted(blockages, key=lambda b: b.state == "waiting for predecessors"):
        stuck.add_row(b.site, b.stage, b.state, escape(b.waiting_on))
    console.print(stuck)


def progress_bar():
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,  # else it leaves an empty line in a log or pipe
    )
