"""The ``capsim`` command line: run, validate and describe scenarios.

Heavy modules (numpy, pandas, matplotlib, simpy) are imported inside the commands so that
``capsim --help`` stays fast. Input errors print one clear message and exit with code 2.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from capsim.console import cell, console, errors, print_frame, print_run, progress_bar
from capsim.errors import CapsimError
from capsim.outputs import (
    WORKBOOK,
    TableFormat,
    check_out,
    sheet_names,
    table_writers,
    write_outputs,
)

if TYPE_CHECKING:
    from capsim.executors import Executor
    from capsim.schema import Scenario

app = typer.Typer(
    name="capsim",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

ScenarioFile = Annotated[
    Path | None,
    typer.Argument(help="Scenario YAML file. Default: the built-in scenario.", show_default=False),
]


SeedOption = Annotated[
    int | None, typer.Option(min=0, help="Root seed; default: the scenario's own seed.")
]
WorkersOption = Annotated[
    int, typer.Option(min=1, help="Local processes computing replications, this one included.")
]
DaskOption = Annotated[
    str | None,
    typer.Option(help="Run on Dask: a scheduler address, or 'local' for a LocalCluster."),
]
FormatOption = Annotated[
    TableFormat,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="Format of the tables: a .csv or .parquet file per table, or one workbook "
        "tables.xlsx with a sheet per table.",
    ),
]


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        typer.echo(f"capsim {version('capsim')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print capsim's version and exit."
        ),
    ] = False,
) -> None:
    """Capacity planning for AI compute: when capacity comes online and what holds it up."""


def _load(path: Path | None) -> Scenario:
    from capsim.loader import default_scenario_path, load_scenario

    return load_scenario(path if path is not None else default_scenario_path())


@app.command(short_help="Simulate a scenario once per strategy: tables and a Gantt chart.")
def run(
    file: ScenarioFile = None,
    seed: SeedOption = None,
    strategy: Annotated[
        str | None,
        typer.Option(help="Run this strategy only; default: every strategy of the scenario."),
    ] = None,
    replication: Annotated[
        int, typer.Option(min=0, help="Which replication of the seed (as numbered by capsim mc).")
    ] = 0,
    out: Annotated[Path, typer.Option(help="Folder for the tables and the Gantt chart.")] = Path(
        "capsim-output"
    ),
    fmt: FormatOption = TableFormat.csv,
) -> None:
    """Simulate a scenario once (each of its strategies, with the same random draws) and write
    the tables stages, sites, capacity, events, costs and hbm (as .csv, .parquet or sheets of
    tables.xlsx, per --format) and gantt.png.

    Example: [bold]capsim run scenarios/stargate-pivot.yaml --strategy lease --out results/[/bold]
    """
    import pandas as pd

    from capsim.gantt import gantt_figure
    from capsim.model import Model, replication_rng
    from capsim.results import to_dates
    from capsim.summary import run_tables

    scenario = _load(file)
    seed = scenario.seed if seed is None else seed
    names = [strategy] if strategy is not None else (list(scenario.strategies) or [None])
    runs = {}
    for name in names:
        model = Model(scenario, name)
        runs[name] = model.run(model.draw(replication_rng(seed, replication)))
    per_run = {name: run_tables(r) for name, r in runs.items()}
    tables = {
        stem: pd.concat(
            [
                t[stem].assign(strategy=name) if scenario.strategies else t[stem]
                for name, t in per_run.items()
            ],
            ignore_index=True,
        )
        for stem in next(iter(per_run.values()))
    }
    first = next(iter(runs.values()))
    horizon = to_dates(first, [scenario.horizon]).iloc[0]
    figure = gantt_figure(
        tables["stages"],
        title=f"{scenario.name}: build-out by stage (seed {seed})",
        horizon=horizon,
        events=tables["events"],
        scenario=scenario,
    )
    writers = table_writers(tables, fmt)
    writers["gantt.png"] = lambda p: figure.savefig(p, dpi=130)
    write_outputs(out, writers)
    print_run(scenario, seed, runs, tables)
    _wrote(writers, tables, fmt, out)


@app.command(
    short_help="Monte Carlo: milestone dates (P10/P50/P90), costs, critical stages, sensitivity."
)
def mc(
    file: ScenarioFile = None,
    reps: Annotated[int, typer.Option(min=1, help="Number of replications.")] = 1000,
    seed: SeedOption = None,
    strategy: Annotated[
        str | None, typer.Option(help="The strategy to simulate (required if there are any).")
    ] = None,
    workers: WorkersOption = 1,
    dask: DaskOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for chunks and results (resumable); "
            "default: capsim-mc/<scenario>[-<strategy>]-seed<seed>."
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(help="Also give the probability of reaching each milestone by this date."),
    ] = None,
    until_stable: Annotated[
        str | None,
        typer.Option(
            help="Stop once P50 and P90 move less than this between checkpoints, e.g. 0.5%."
        ),
    ] = None,
    save_events: Annotated[
        bool,
        typer.Option(help="Also keep every replication's full logs, as Parquet in DIR/events."),
    ] = False,
    fmt: FormatOption = TableFormat.csv,
) -> None:
    """Run many replications (Monte Carlo) and summarise milestones (P10/P50/P90, mean with a
    95% CI, probability by a date) and costs; write the tables replications, summary,
    costs_summary, stages and sensitivity (as .csv, .parquet or sheets of tables.xlsx, per
    --format). Results do not depend on --workers or --dask; an interrupted run resumes from its
    last complete chunk.

    Example: [bold]capsim mc scenarios/portfolio.yaml --reps 2000 --workers 2 --by 2030-01-01[/bold]
    """
    from capsim.experiments import monte_carlo

    scenario = _load(file)
    seed = scenario.seed if seed is None else seed
    if strategy is None and scenario.strategies:
        raise CapsimError(
            f"{scenario.name} has strategies ({', '.join(scenario.strategies)}): pick one with "
            "--strategy, or compare them with capsim compare"
        )
    dates = [_parse_date(text, "--by") for text in by or []]
    tolerance = _parse_fraction(until_stable) if until_stable else None
    if out is not None:
        check_out(out)  # before any work; the default folder's parents are created
    out = out or _default_out("capsim-mc", scenario.name, strategy, seed)
    with _resume_hint(out), _executor(dask, workers) as executor, progress_bar() as bar:
        task = bar.add_task("replications", total=reps)
        result = monte_carlo(
            scenario,
            reps=reps,
            seed=seed,
            strategy=strategy,
            workers=workers,
            executor=executor,
            out=out,
            by=dates,
            until_stable=tolerance,
            save_events=save_events,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    milestones, costs = result.milestones, result.costs
    stages, sensitivity = result.stages, result.sensitivity()
    tables = {
        "replications": result.replications,
        "summary": milestones,
        "costs_summary": costs,
        "stages": stages,
        "sensitivity": sensitivity,
        # from the profiles of the first replications: the data of the report's charts
        "stage_bands": result.stage_bands,
        "capacity_bands": result.capacity_bands,
        "event_shares": result.event_shares,
    }
    if scenario.hbm is not None:
        tables["hbm_by_buyer"] = result.hbm_by_buyer
    index = {"summary": "milestone", "costs_summary": "cost", "sensitivity": "input",
             "hbm_by_buyer": "period end"}  # fmt: skip
    writers = table_writers(tables, fmt, index=index)
    write_outputs(out, writers)
    n = len(result.replications)
    console.print(
        f"[bold]{scenario.name}[/bold]"
        + (f", strategy {strategy}" if strategy else "")
        + f": {n} replications, seed {seed}"
        + (" (stopped once stable)" if n < reps else "")
    )
    print_frame(milestones.rename_axis("milestone"), "Milestones (calendar dates)")
    if len(costs):
        scaled = costs.copy()
        billions = scaled.index != "usd_per_gpu_hour"
        scaled.loc[billions] = scaled.loc[billions] / 1e9
        names = {
            "capex": "CapEx (USD bn)",
            "opex": "OpEx (USD bn)",
            "npv_cost": "NPV of cost (USD bn)",
            "usd_per_gpu_hour": "USD per GPU-hour",
        }
        print_frame(scaled.rename(index=names).rename_axis("cost"), f"Costs of {scenario.lab}")
    critical = stages.sort_values("criticality (site online)", ascending=False).head(10)
    print_frame(
        critical.set_index(["site", "stage"]).drop(columns="finished"),
        f"Most critical stages (mean and sd in {scenario.time_unit}; criticality: share of "
        "replications on the chain that decided the site's online date)",
    )
    if len(sensitivity):
        print_frame(
            sensitivity.head(10),
            "What moves the milestones most (Spearman rank correlation with each sampled input)",
        )
    failed = result.failed
    if len(failed):
        first = int(failed["replication"].iloc[0])
        console.print(
            f"[red]{len(failed)} replication(s) failed[/red], e.g. {first}: "
            f"{escape(failed['error'].iloc[0].split(' | ')[0])}. Reproduce one with: capsim run "
            f"{file or ''} --seed {seed} --replication {first}"
            + (f" --strategy {strategy}" if strategy else "")
        )
    _wrote(writers, tables, fmt, out)


@app.command(
    short_help="Compare strategies on common random numbers: paired differences, win rates."
)
def compare(
    file: ScenarioFile = None,
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies; default: all of them.")
    ] = None,
    reps: Annotated[int, typer.Option(min=1, help="Replications per strategy.")] = 500,
    seed: SeedOption = None,
    workers: WorkersOption = 1,
    dask: DaskOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for chunks and results (resumable); "
            "default: capsim-compare/<scenario>-seed<seed>."
        ),
    ] = None,
    fmt: FormatOption = TableFormat.csv,
) -> None:
    """Compare strategies with common random numbers: replication i of every strategy shares the
    draws of the world they share. Prints P50/P90 side by side, the paired difference of each
    milestone and cost against the first strategy (with a 95% CI) and how often each wins, and
    writes them as the tables side_by_side, differences and wins (as .csv, .parquet or sheets of
    tables.xlsx, per --format).

    Example: [bold]capsim compare scenarios/stargate-pivot.yaml --strategies build,lease[/bold]
    """
    from capsim.comparison import compare as run_comparison

    scenario = _load(file)
    seed = scenario.seed if seed is None else seed
    names = _names(strategies)
    if out is not None:
        check_out(out)  # before any work; the default folder's parents are created
    out = out or _default_out("capsim-compare", scenario.name, None, seed)
    with _resume_hint(out), _executor(dask, workers) as executor, progress_bar() as bar:
        result = run_comparison(
            scenario,
            strategies=names,
            reps=reps,
            seed=seed,
            workers=workers,
            executor=executor,
            out=out,
            progress=_progress(bar),
        )
    side, diffs, wins = result.side_by_side, result.differences, result.wins
    tables = {"side_by_side": side, "differences": diffs, "wins": wins}
    writers = table_writers(tables, fmt, index={"side_by_side": "strategy", "wins": "measure"})
    write_outputs(out, writers)
    console.print(
        f"[bold]{scenario.name}[/bold]: {', '.join(result.results)}; {reps} replications each, "
        f"seed {seed}, common random numbers"
    )
    print_frame(
        side.T.rename_axis("measure"),
        "Side by side (P50/P90 dates, share reached, mean costs in USD)",
    )
    first = next(iter(result.results))
    print_frame(
        diffs.set_index(["strategy", "measure"]).drop(columns="versus"),
        f"Paired differences against {first} (negative: earlier or cheaper)",
    )
    print_frame(
        wins.rename_axis("measure"),
        "How often each strategy wins (first, or cheapest)",
        shares=True,
    )
    _wrote(writers, tables, fmt, out)


@app.command(short_help="Search the rollout order of an org's sites for an objective.")
def order(
    file: ScenarioFile = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="The strategy to simulate (the sites and leases it pursues); needed when the "
            "org's sites belong to strategies, as in stargate-pivot."
        ),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            help="What to optimise. [bold]p50:<milestone>[/bold]: the median time (in the "
            "scenario's time unit; lower is better) until a capacity milestone of the scenario "
            "(e.g. '1 GW'), 'all sites online' (the org's) or '<site> online'; "
            "+inf, shown as 'never', when reached in fewer than half the replications. "
            "[bold]gpu-months:YYYY-MM-DD[/bold]: the expected GPU-months the org has online "
            "from the start to that date (higher is better). [bold]npv[/bold]: the expected NPV "
            "of the org's costs, in USD (lower is better; revenue is not modelled, so spending "
            "later scores better)."
        ),
    ] = "p50:1 GW",
    org: Annotated[
        str | None,
        typer.Option(
            help="Whose sites to order; default: the scenario's perspective org, else the only "
            "org with active sites."
        ),
    ] = None,
    reps: Annotated[int, typer.Option(min=2, help="Replications per ordering.")] = 100,
    seed: SeedOption = None,
    workers: WorkersOption = 1,
    dask: DaskOption = None,
    gap: Annotated[
        str,
        typer.Option(
            help="Time between the starts of consecutive sites in the order, e.g. '3 months', or "
            "a number in the scenario's time unit; 0: each starts when it can."
        ),
    ] = "0",
    top: Annotated[
        int,
        typer.Option(min=1, help="How many of the best orderings to print (all are written)."),
    ] = 5,
    out: Annotated[
        Path, typer.Option(help="Folder for the orderings table (every ordering tried).")
    ] = Path("capsim-order"),
    fmt: FormatOption = TableFormat.csv,
) -> None:
    """Search rollout orderings of an org's sites (which starts first, which gets HBM and scarce
    resources first) with common random numbers: every permutation up to 8 sites, greedy plus
    pairwise swaps beyond. Shows the best orderings and the gain over the scenario as written
    (its own starts and priorities). Results do not depend on --workers or --dask; a search is
    not resumable (rerunning it starts again).

    Example: [bold]capsim order scenarios/stargate-pivot.yaml --strategy build --gap 6mo[/bold]
    """
    import math

    from capsim.ordering import search
    from capsim.units import to_time_unit

    scenario = _load(file)
    seed = scenario.seed if seed is None else seed
    check_out(out)  # before any work
    try:
        spacing = to_time_unit(gap, scenario.time_unit)
    except ValueError as exc:
        raise CapsimError(f"--gap: {exc}") from None
    if spacing < 0:
        raise CapsimError(f"--gap must be 0 or more, got {gap!r}")
    with _executor(dask, workers) as executor, progress_bar() as bar:
        task = bar.add_task("orderings", total=None)
        result = search(
            scenario,
            strategy=strategy,
            objective=objective,
            reps=reps,
            seed=seed,
            org=org,
            gap=spacing,
            workers=workers,
            executor=executor,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = result.table
    writers = table_writers({"orderings": table}, fmt)
    write_outputs(out, writers)
    goal = result.objective
    console.print(
        f"[bold]{scenario.name}[/bold]: {len(table)} orderings tried ({result.method}), "
        f"{reps} replications each, objective {escape(objective)} ({goal.unit}; "
        f"{'lower' if goal.lower_is_better else 'higher'} is better)"
    )

    def shown(value: float) -> str:
        return "never" if value == math.inf else cell(value)

    console.print(f"The scenario as written scores {shown(result.baseline.value)}")
    values = {s.value for s in result.scores} | {result.baseline.value}
    if len(values) == 1:
        console.print(
            f"[yellow]Every ordering scores {shown(values.pop())}: the order makes no "
            f"difference to this objective here.[/yellow] {_why_all_equal(goal, reps)}",
            highlight=False,
        )
    columns = ["objective", "95% CI low", "95% CI high"]
    best = table.head(top).set_index("order")
    best[columns] = best[columns].astype(object).where(best[columns] != math.inf, "never")
    print_frame(best, "Best orderings")
    _wrote(writers, ["orderings"], fmt, out)


def _why_all_equal(goal, reps: int) -> str:
    """What an objective that no ordering changes may mean (``goal``: an ordering Objective)."""
    if goal.median:
        return (
            f"If it is 'never', the milestone is reached in fewer than half of the {reps} "
            "replications whatever the order: try a smaller milestone or a longer horizon."
        )
    if goal.unit == "GPU-months":
        return "If it is 0, the org has no GPUs online by that date in any replication."
    return ""


def _wrote(files: Iterable[str], tables: Iterable[str], fmt: TableFormat, out: Path) -> None:
    """The last line of a command: which files it wrote where (and the sheets of a workbook)."""
    files = list(files)
    listing = f"{', '.join(files[:-1])} and {files[-1]}" if len(files) > 1 else files[0]
    if fmt is TableFormat.xlsx:
        listing = listing.replace(
            WORKBOOK, f"{WORKBOOK} (sheets {', '.join(sheet_names(tables))})", 1
        )
    console.print(f"Wrote {escape(listing)} to [bold]{escape(str(out))}[/bold]")


def _default_out(root: str, scenario: str, strategy: str | None, seed: int) -> Path:
    """One folder per experiment, so that rerunning a command resumes it and another seed or
    strategy does not collide with it."""
    return Path(root) / f"{scenario}{f'-{strategy}' if strategy else ''}-seed{seed}"


@contextlib.contextmanager
def _resume_hint(out: Path) -> Iterator[None]:
    """On Ctrl-C, say where the chunks done so far are and how to go on (exit code 130)."""
    try:
        yield
    except KeyboardInterrupt:
        errors.print(
            f"interrupted: the chunks completed so far are kept in {escape(str(out))}; run the "
            "same command again to resume from them",
            highlight=False,
            soft_wrap=True,
        )
        raise


@contextlib.contextmanager
def _executor(dask: str | None, workers: int) -> Iterator[Executor | None]:
    """A Dask executor shared by the experiments of a command, closed after them; None for
    local workers."""
    if dask is None:
        yield None
        return
    from capsim.executors import DaskExecutor

    executor = DaskExecutor(dask, workers=max(workers, 2))
    try:
        yield executor
    finally:
        executor.close()


def _parse_date(text: str, option: str):
    """A calendar date written YYYY-MM-DD, as a pandas Timestamp."""
    import pandas as pd

    from capsim.units import parse_date

    try:
        return pd.Timestamp(parse_date(text))
    except ValueError:
        raise CapsimError(f"{option}: cannot read {text!r} as a date (YYYY-MM-DD)") from None


def _parse_fraction(text: str) -> float:
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise CapsimError(
            f"--until-stable: expected a fraction such as 0.5% or 0.005, got {text!r}"
        ) from None
    if not 0 < value < 1:
        raise CapsimError(f"--until-stable must be between 0 and 100%, got {text!r}")
    return value


@app.command(short_help="One self-contained HTML report: comparison, charts, Gantt, costs, events.")
def report(
    file: ScenarioFile = None,
    reps: Annotated[int, typer.Option(min=1, help="Replications per strategy.")] = 500,
    seed: SeedOption = None,
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated strategies; default: all of them.")
    ] = None,
    workers: WorkersOption = 1,
    dask: DaskOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "capsim-report.html"
    ),
) -> None:
    """Write one self-contained HTML report (works offline, no CLI needed to read it): the
    strategies side by side, capacity fans, milestone distributions, Gantt charts, critical
    stages, sensitivity, costs, HBM allocation, what was paused, cancelled or transferred, the
    scenario's inputs and how to reproduce it.

    Example: [bold]capsim report scenarios/stargate-pivot.yaml --reps 500 -o report.html[/bold]
    """
    import shlex

    from capsim.outputs import check_file, write_file
    from capsim.report import build_report

    scenario = _load(file)
    check_file(out)  # before any work
    seed = scenario.seed if seed is None else seed
    names = _names(strategies)
    command = shlex.join(
        ["capsim", "report", *([str(file)] if file else []), "--reps", str(reps),
         "--seed", str(seed), *(["--strategies", ",".join(names)] if names else [])]
    )  # fmt: skip
    with _executor(dask, workers) as executor, progress_bar() as bar:
        built = build_report(scenario, reps=reps, seed=seed, strategies=names,
                             workers=workers, executor=executor, command=command,
                             progress=_progress(bar))  # fmt: skip
    page = built.html()
    write_file(out, lambda path: path.write_text(page, encoding="utf-8"))
    console.print(
        f"Wrote [bold]{out}[/bold] ({len(page) / 1e6:.1f} MB): {scenario.name}, "
        f"{', '.join(built.names)}; {reps} replications each, seed {seed}"
    )


@app.command(
    short_help="A Gantt chart of one run, or P10-P90 bands over replications (.html/.png/.svg)."
)
def gantt(
    file: ScenarioFile = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="gantt.html (interactive), .png or .svg.")
    ] = Path("gantt.html"),
    reps: Annotated[
        int, typer.Option(min=1, help="1: one run; more: P10-P90 bands over replications.")
    ] = 1,
    seed: SeedOption = None,
    strategy: Annotated[
        str | None, typer.Option(help="This strategy only; default: one panel per strategy.")
    ] = None,
    replication: Annotated[
        int, typer.Option(min=0, help="Which replication to draw (with --reps 1).")
    ] = 0,
) -> None:
    """Draw a Gantt chart: one run by site and stage (waits, critical chain, risk events, GPU
    availability), or with --reps N the P10-P90 bands of every stage's start and finish. The
    file's suffix picks the kind: .html (interactive, offline) or .png/.svg (static).

    Example: [bold]capsim gantt scenarios/stargate-pivot.yaml --reps 200 --out gantt.html[/bold]
    """
    from capsim.outputs import check_file, write_file

    suffix = out.suffix.lower()
    if suffix not in (".html", ".png", ".svg"):
        raise CapsimError(f"--out {out}: unknown chart format {suffix or '(none)'!r}; "
                          "use a .html, .png or .svg file")  # fmt: skip
    scenario = _load(file)
    check_file(out)
    seed = scenario.seed if seed is None else seed
    names = [strategy] if strategy is not None else (list(scenario.strategies) or [None])
    from capsim.gantt import (
        availability,
        band_figure,
        band_layout,
        gantt_figure,
        gantt_layout,
        stage_colors,
    )
    from capsim.report import band_table, run_experiments, run_stage_tables
    from capsim.results import to_dates

    if reps == 1:
        stages, events = run_stage_tables(scenario, names, seed, replication)
        horizon = to_dates(scenario, [scenario.horizon]).iloc[0]
        title = f"{scenario.name}: replication {replication} of seed {seed}, by site and stage"
    else:
        with progress_bar() as bar:
            results = run_experiments(scenario, reps=reps, seed=seed,
                                      strategies=[n for n in names if n is not None],
                                      progress=_progress(bar))  # fmt: skip
        stages = band_table(results)
        title = f"{scenario.name}: stage start and finish over {reps} replications (P10-P90)"
    if suffix == ".html":
        from capsim.charts import gantt_chart

        layout = gantt_layout(stages, events, horizon) if reps == 1 else band_layout(stages)
        colors = stage_colors(list(dict.fromkeys(stages["stage"])))
        chart = gantt_chart(layout, colors, title, availability(scenario))
        write_file(out, lambda path: chart.write_html(path, include_plotlyjs=True, div_id="gantt"))
    else:
        figure = (gantt_figure(stages, title, horizon, events, scenario) if reps == 1
                  else band_figure(stages, title, scenario))  # fmt: skip
        write_file(out, lambda path: figure.savefig(path, format=suffix[1:], dpi=130))
    console.print(f"Wrote [bold]{out}[/bold]")


def _names(strategies: str | None) -> list[str] | None:
    """``--strategies a,b`` as a list (None: not given)."""
    if strategies is None:
        return None
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    if not names:
        raise CapsimError(f"--strategies: no strategy named in {strategies!r}; give a,b,...")
    return names


def _progress(bar):
    """A progress callback (strategy, done, total) with a bar per strategy."""
    tasks: dict[str, int] = {}

    def report(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = bar.add_task(name, total=total)
        bar.update(tasks[name], completed=done, total=total)

    return report


@app.command(short_help="Check a scenario and show each pipeline's critical path.")
def validate(
    file: Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)],
) -> None:
    """Check a scenario and show each pipeline's critical path on mean durations.

    Example: [bold]capsim validate scenarios/greenfield-campus.yaml[/bold]
    """
    import pandas as pd

    from capsim.graph import critical_chain, critical_path_method, pipeline_graph
    from capsim.model import Model

    scenario = _load(file)
    model = Model(scenario)
    unit = scenario.time_unit
    for name, pipeline in scenario.pipelines.items():
        graph = pipeline_graph(pipeline)
        users = [s for s, site in enumerate(scenario.sites) if site.pipeline == name]
        if users:  # permit and grid stages take their times from the site's jurisdiction/region
            means = model.stage_means(users[0])
            rows = critical_path_method(graph, means)
            basis = f"as for site {scenario.sites[users[0]].name}" if len(users) > 1 else ""
        else:
            means = {
                n: st.duration.mean if st.duration else 0.0 for n, st in pipeline.stages.items()
            }
            rows = critical_path_method(graph, means)
            basis = "no site follows it; permit and grid stages without a duration count 0"
        n = len(users)
        columns = ["duration", "early start", "early finish", "late start", "late finish", "float"]
        table = pd.DataFrame([r[1:] for r in rows], columns=columns, index=[r.stage for r in rows])
        table[""] = ["critical" if r.critical else "" for r in rows]
        print_frame(
            table.rename_axis("stage"),
            f"Pipeline {name} ({n} site{'s' * (n != 1)}), mean durations in {unit}"
            + (f" ({basis})" if basis else ""),
        )
        chain = critical_chain(graph, rows)
        length = max(r.early_finish for r in rows)
        console.print(f"Critical path: {' -> '.join(chain)}  ({length:,.1f} {unit})\n")
    console.print(
        f"[green]OK[/green] {file}: {len(scenario.sites)} sites, "
        f"{len(scenario.pipelines)} pipelines, {len(scenario.resources)} resources"
    )


@app.command(short_help="Print the JSON Schema of scenario files.")
def schema() -> None:
    """Print the JSON Schema of scenario files, for editors that check and complete YAML.

    Example: [bold]capsim schema > capsim.schema.json[/bold]
    """
    from capsim.schema import Scenario

    typer.echo(json.dumps(Scenario.model_json_schema(), indent=2))


def main() -> None:
    """Console entry point. Input errors print one message, no traceback, and exit with code 2;
    usage errors are typer's own (also code 2).

    pyarrow (pandas' strings, Parquet files) allocates with the system's malloc, not its default
    mimalloc, which keeps memory it has freed: ~20 MB more in ``capsim mc``'s main process, which
    writes a chunk's Parquet files as it arrives, and ~5 MB in each worker. Set before pyarrow is
    first used (the commands import it), unless the environment chose otherwise."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        app()
    except CapsimError as exc:
        errors.print(
            f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise SystemExit(2) from None
