"""The HTML report: one self-contained file (plotly.js inlined, no network) that a decision maker
reads without the CLI: the scenario's key inputs, the strategies side by side, capacity fans,
milestone distributions, Gantt charts (one run and P10-P90 bands), the critical stages, what
moves the dates, costs, HBM allocation, what was paused, cancelled or transferred, and the seed
and version that reproduce it.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> report = build_report(load_scenario(shipped_scenario("greenfield-campus")), reps=20, seed=1)
>>> import re
>>> page = report.html()
>>> page.startswith("<!DOCTYPE html>"), re.search(r"<script[^>]+src=", page) is None
(True, True)
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capsim import __version__, charts
from capsim.comparison import Comparison, compare
from capsim.executors import Executor
from capsim.experiments import MonteCarloResult, monte_carlo
from capsim.gantt import availability, band_layout, gantt_layout, stage_colors
from capsim.model import Model, replication_rng
from capsim.replications import COST_COLUMNS, fingerprint
from capsim.results import events_table, stage_table, to_dates
from capsim.schema import Scenario
from capsim.units import DAYS_PER

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d1d1f; background: #fafafa; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.8em; margin-bottom: 0.2em; } h2 { margin-top: 2.2em; border-bottom: 2px solid
#ddd; padding-bottom: 0.2em; } h3 { margin-top: 1.5em; }
.meta { color: #555; } .note { color: #555; font-size: 0.92em; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.6em 0 1.2em; background: white; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f0f0f3; } td:first-child, th:first-child { text-align: left; }
.chart { background: white; border: 1px solid #e3e3e3; margin: 0.8em 0 1.6em; padding: 4px; }
.scroll { overflow-x: auto; } nav a { margin-right: 1em; } code { background: #eee;
padding: 1px 4px; }
"""


@dataclass
class Report:
    """Everything the report shows, computed; :meth:`html` renders it."""

    scenario: Scenario
    results: dict[str, MonteCarloResult]
    seed: int
    command: str

    def html(self) -> str:
        """The report as one self-contained HTML document."""
        from plotly.offline import get_plotlyjs

        body = "\n".join(section() for section in self._sections())
        title = html.escape(f"capsim report: {self.scenario.name}")
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{title}</title><style>{CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head>"
            f"<body><main>{body}</main></body></html>\n"
        )

    # -- sections ------------------------------------------------------------------------------

    def _sections(self) -> list[Callable[[], str]]:
        return [
            self._header,
            self._findings,
            self._comparison,
            self._capacity,
            self._milestones,
            self._gantt,
            self._critical,
            self._sensitivity,
            self._costs,
            self._hbm,
            self._events,
            self._inputs,
            self._reproduce,
        ]

    @property
    def names(self) -> list[str]:
        """The strategies' names as the report shows them."""
        return [_label(name) for name in self.results]

    def _header(self) -> str:
        s = self.scenario
        n = len(next(iter(self.results.values())).replications)
        links = " ".join(
            f"<a href='#{key}'>{label}</a>"
            for key, label in (
                ("findings", "Findings"),
                ("comparison", "Comparison"),
                ("capacity", "Capacity"),
                ("milestones", "Milestones"),
                ("gantt", "Gantt"),
                ("critical", "Critical stages"),
                ("sensitivity", "Sensitivity"),
                ("costs", "Costs"),
                ("hbm", "HBM"),
                ("events", "Events"),
                ("inputs", "Inputs"),
                ("reproduce", "Reproduce"),
            )
        )
        end = to_dates(s, [s.horizon]).iloc[0]
        return (
            f"<h1>{html.escape(s.name)}</h1>"
            + (f"<p>{html.escape(s.description)}</p>" if s.description else "")
            + f"<p class='meta'>strategies: {html.escape(', '.join(self.names))}"
            f" · {n:,} replications each · seed {self.seed} · {s.start:%Y-%m-%d} to "
            f"{end:%Y-%m-%d} · capsim {__version__} · generated "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC</p><nav>{links}</nav>"
        )

    def _findings(self) -> str:
        """A few sentences a reader takes away: when each capacity milestone comes (P50, and how
        often it is reached) per strategy, the cheapest strategy, the stage that most often
        decides the last site, the most frequent disruption."""
        items = []
        for milestone in self.scenario.milestones:
            parts = []
            for name, result in self._named():
                row = result.milestones.loc[milestone.label]
                if row["reached"] == 0:
                    parts.append(f"{html.escape(name)} never")
                else:
                    parts.append(f"{html.escape(name)} {row['P50']:%b %Y} "
                                 f"({row['reached']:.0%} reach it)")  # fmt: skip
            items.append(f"<b>{html.escape(milestone.label)}</b> (P50): " + "; ".join(parts))
        if self.scenario.lab is not None:
            ok = {n: r.succeeded for n, r in self._named()}
            per_hour = {n: rows["usd_per_gpu_hour"].mean() for n, rows in ok.items()}
            npv = {n: rows["npv_cost"].mean() / 1e9 for n, rows in ok.items()}
            ranked = sorted(per_hour, key=lambda n: (np.isnan(per_hour[n]), per_hour[n]))
            items.append(
                "<b>Cost per GPU-hour</b> (mean, to the horizon; NPV of all costs in brackets): "
                + "; ".join(f"{html.escape(n)} USD {per_hour[n]:.2f} ({npv[n]:,.1f} bn)"
                            for n in ranked)
            )  # fmt: skip
        for name, result in self._named():
            stages = result.stages
            owner = {site.name: site.org for site in self.scenario.sites}
            own = stages[stages["site"].map(owner) == self.scenario.lab]
            stages = own if len(own) else stages
            # the stage that holds its site up most: critical often, and long
            weight = stages["criticality (site online)"] * stages["mean duration"].fillna(0)
            top = stages.loc[weight.idxmax()] if len(stages) and weight.max() > 0 else None
            events = result.event_shares if result.profiles else pd.DataFrame()
            text = f"<b>{html.escape(name)}</b>: "
            if top is not None:
                text += (f"{html.escape(top['stage'].replace('_', ' '))} at "
                         f"{html.escape(top['site'])} holds its site up most (on the chain that "
                         f"decides its online date in {top['criticality (site online)']:.0%} of "
                         f"replications, mean {top['mean duration']:,.0f} "
                         f"{self.scenario.time_unit})")  # fmt: skip
            if len(events):
                first = events.iloc[0]
                text += (f"; most frequent disruption: {html.escape(first['subject'])} "
                         f"{first['kind'].replace('_', ' ')} ({first['share']:.0%})")  # fmt: skip
            items.append(text)
        return "<h2 id='findings'>Key findings</h2><ul>" + "".join(
            f"<li>{item}</li>" for item in items
        ) + "</ul>"  # fmt: skip

    def _comparison(self) -> str:
        out = ["<h2 id='comparison'>Strategies side by side</h2>"]
        if len(self.results) > 1:
            comparison = Comparison(dict(self._named()))
            out.append(
                _note(
                    "Milestone dates (P50 and P90 over replications; 'reached': the "
                    "share of replications that reached it by the horizon) and mean "
                    "costs of the perspective org. Every strategy ran on the same "
                    "random draws of the shared world (common random numbers)."
                )
            )
            out.append(_table(comparison.side_by_side.T.rename_axis("measure"), by_row=True))
            out.append("<h3>Paired differences</h3>")
            out.append(
                _note(
                    "Replication by replication against the first strategy: mean "
                    "difference with a 95% confidence interval (days for dates: "
                    "negative is earlier; USD for costs)."
                )
            )
            out.append(_table(_in_billions(comparison.differences), index=False))
            out.append("<h3>How often each strategy wins</h3>")
            out.append(
                _note(
                    "Share of replications in which it is first to the milestone (or "
                    "cheapest); never reaching it loses; ties share the win."
                )
            )
            out.append(_table(comparison.wins.map("{:.0%}".format).rename_axis("measure")))
        for name, result in self._named():
            out.append(f"<h3>Milestones: {html.escape(name)}</h3>")
            out.append(_table(result.milestones.rename_axis("milestone")))
        return "".join(out)

    def _capacity(self) -> str:
        bands = {n: r.capacity_bands for n, r in self._named() if r.profiles}
        who = self.scenario.lab or "all orgs' own sites"
        return (
            "<h2 id='capacity'>Capacity online over time</h2>"
            + _note(
                f"Capacity of {html.escape(who)} (own and leased) on the first day of each "
                f"month over {self._profiled()} replications: the line is the median, the "
                "band holds 80% of the replications. Buttons switch the measure."
            )
            + _chart(charts.fan_chart(bands, self.scenario.milestones), "capacity")
        )

    def _milestones(self) -> str:
        labels = {m.column: m.label for m in self.scenario.milestones}
        labels["t_all_online"] = "all sites online"
        dates, reps = {}, {}
        for name, result in self._named():
            ok = result.succeeded
            reps[name] = len(ok)
            for column, label in labels.items():
                if column in ok:
                    dates.setdefault(label, {})[name] = to_dates(self.scenario, ok[column]).values
        frames = {
            label: pd.DataFrame(v)
            for label, v in dates.items()
            if any(pd.notna(col).any() for col in v.values())
        }
        if not frames:
            return "<h2 id='milestones'>Milestones</h2><p>No milestone was reached.</p>"
        return (
            "<h2 id='milestones'>When the milestones are reached</h2>"
            + _note(
                "Distribution of each milestone's date over replications. The cumulative "
                "curve stops below 100% when some replications never reached it."
            )
            + _chart(charts.milestone_chart(frames, reps), "milestones")
        )

    def _gantt(self) -> str:
        stages, events = run_stage_tables(self.scenario, list(self.results), self.seed, 0)
        colors = stage_colors(list(dict.fromkeys(stages["stage"])))
        lines = availability(self.scenario)
        horizon = to_dates(self.scenario, [self.scenario.horizon]).iloc[0]
        title = "One replication (#0 of the seed), by site and stage"
        one = charts.gantt_chart(gantt_layout(stages, events, horizon), colors, title, lines)
        bands = band_table(self.results)
        banded = charts.gantt_chart(
            band_layout(bands),
            colors,
            "Start and finish of every stage: P10-P90 bands, P50 bar",
            lines,
        )
        return (
            "<h2 id='gantt'>Gantt charts</h2>"
            + _note(
                "One replication as it happened: hatched grey is time spent waiting for a "
                "resource (permit office, grid study, HBM, budget); outlined bars decided "
                "when their site came online; black diamonds mark a site online; yellow marks "
                "pauses, delays, refusals, cancellations and transfers; dotted lines are GPU "
                "generations reaching each customer tier. Hover for dates."
            )
            + _chart(one, "gantt-run")
            + _note(
                f"Over {self._profiled()} replications: the pale bands hold 80% of each "
                "stage's start and finish dates; the bar runs from the median start to the "
                "median finish. A band that reaches the right edge did not finish by the "
                "horizon in more than 10% of the replications."
            )
            + _chart(banded, "gantt-bands")
        )

    def _critical(self) -> str:
        out = [
            "<h2 id='critical'>Critical stages</h2>",
            _note(
                "Criticality: the share of replications in which the stage lay on the chain "
                "that decided its site's online date (or the last site's). Mean waits and "
                f"durations in {self.scenario.time_unit}."
            ),
        ]
        for name, result in self._named():
            stages = result.stages.sort_values(
                ["criticality (last site)", "criticality (site online)"], ascending=False
            ).head(12)
            out.append(f"<h3>{html.escape(name)}</h3>")
            out.append(_table(stages, index=False))
        return "".join(out)

    def _sensitivity(self) -> str:
        series = {}
        for name, result in self._named():
            table = result.sensitivity()
            if table.empty:
                continue
            target = next(
                (m.label for m in self.scenario.milestones if m.label in table), table.columns[0]
            )
            series[name] = table[target].rename(target)
        if not series:
            return "<h2 id='sensitivity'>Sensitivity</h2><p>No sampled input varies.</p>"
        return (
            "<h2 id='sensitivity'>What moves the dates</h2>"
            + _note(
                "Spearman rank correlation of each sampled input (a stage's duration, a "
                "risk's occurrence, a permit refusal, the energy price) with the milestone's "
                "date; red makes it later, blue earlier. A milestone not reached ranks last."
            )
            + _chart(charts.tornado_chart(series), "tornado")
        )

    def _costs(self) -> str:
        if self.scenario.lab is None:
            return "<h2 id='costs'>Costs</h2><p>The scenario has no perspective org.</p>"
        means = pd.DataFrame(
            {
                name: r.succeeded[[c for c in COST_COLUMNS if c in r.replications]].mean()
                for name, r in self._named()
            }
        ).T
        out = [
            "<h2 id='costs'>Costs</h2>",
            _note(
                f"Costs of {html.escape(self.scenario.lab)} to the horizon (no residual "
                "value): CapEx when facilities, on-site power and GPUs come online; OpEx "
                "for energy and lease payments."
            ),
            _chart(charts.cost_chart(means), "costs"),
        ]
        for name, result in self._named():
            costs = result.costs.copy()
            billions = costs.index != "usd_per_gpu_hour"
            costs.loc[billions] = costs.loc[billions] / 1e9
            costs.index = [
                i.replace("_", " ") + (" (USD bn)" if b else "")
                for i, b in zip(costs.index, billions, strict=True)
            ]
            out.append(f"<h3>{html.escape(name)}</h3>" + _table(costs.rename_axis("cost")))
        return "".join(out)

    def _hbm(self) -> str:
        if self.scenario.hbm is None:
            return "<h2 id='hbm'>HBM</h2><p>The scenario has no HBM market.</p>"
        tables = {n: r.hbm_by_buyer for n, r in self._named() if r.profiles}
        return (
            "<h2 id='hbm'>HBM allocation by buyer</h2>"
            + _note(
                "HBM allocated to each buyer since the start (mean over replications): "
                "reserved shares first, then the common pool by tier and order date."
            )
            + _chart(charts.hbm_chart(tables), "hbm")
        )

    def _events(self) -> str:
        out = [
            "<h2 id='events'>What was paused, delayed, cancelled or transferred</h2>",
            _note(
                "Share of replications in which each happened, and the median date it first did."
            ),
        ]
        for name, result in self._named():
            if not result.profiles:
                continue
            shares = result.event_shares
            shares["kind"] = shares["kind"].str.replace("_", " ")
            out.append(f"<h3>{html.escape(name)}</h3>")
            out.append(_table(shares, index=False) if len(shares) else "<p>Nothing.</p>")
        return "".join(out)

    def _inputs(self) -> str:
        s = self.scenario
        days = DAYS_PER[s.time_unit]
        orgs = pd.DataFrame(
            [
                {
                    "org": n,
                    "kind": o.kind,
                    "tier": o.tier,
                    "GPUs at start": sum(o.fleet.values()),
                    "leasable": o.leasable,
                }
                for n, o in s.orgs.items()
            ]
        )
        sites = pd.DataFrame(
            [
                {
                    "site": x.name,
                    "org": x.org,
                    "pipeline": x.pipeline,
                    "MW": x.mw,
                    "earliest start": to_dates(s, [x.start]).iloc[0],
                    "region": x.region or "",
                    "jurisdiction": x.jurisdiction or "",
                }
                for x in s.sites
            ]
        )
        gens = pd.DataFrame(
            [
                {
                    "generation": n,
                    "HBM GB": g.hbm_gb,
                    "facility kW": g.power_kw,
                    "PFLOPS": g.pflops,
                    "price USD": g.price,
                    **{
                        f"tier {t}": to_dates(s, [v]).iloc[0]
                        for t, v in sorted(g.available.items())
                    },
                }
                for n, g in s.generations.items()
            ]
        )
        strategies = pd.DataFrame(
            [{"strategy": n, "description": st.description or ""} for n, st in s.strategies.items()]
        )
        out = [
            "<h2 id='inputs'>Scenario inputs</h2>",
            _note(
                f"Time unit: {s.time_unit} ({days:g} days); perspective org: "
                f"{html.escape(s.lab or 'none')}."
            ),
        ]
        for title, table in (
            ("Strategies", strategies),
            ("Organisations", orgs),
            ("Sites", sites),
            ("GPU generations (first date per tier)", gens),
        ):
            if len(table):
                out.append(
                    f"<h3>{title}</h3><div class='scroll'>{_table(table, index=False)}</div>"
                )
        if s.leases:
            leases = pd.DataFrame(
                [
                    {"agreement": n, **_short(v.model_dump(exclude_none=True))}
                    for n, v in s.leases.items()
                ]
            )
            out.append(
                "<h3>Offtake agreements</h3><div class='scroll'>"
                f"{_table(leases, index=False)}</div>"
            )
        return "".join(out)

    def _reproduce(self) -> str:
        return (
            "<h2 id='reproduce'>Reproduce</h2>"
            f"<p><code>{html.escape(self.command)}</code></p>"
            f"<p class='meta'>capsim {__version__} · numpy {np.__version__} · seed {self.seed} · "
            f"scenario fingerprint {fingerprint(self.scenario)}. Replication i of every strategy "
            "draws from SeedSequence(seed, spawn_key=(i,)): the same command gives the same "
            "numbers on any machine and with any number of workers.</p>"
        )

    # -- helpers ---------------------------------------------------------------------------------

    def _named(self) -> list[tuple[str, MonteCarloResult]]:
        return list(zip(self.names, self.results.values(), strict=True))

    def _profiled(self) -> int:
        return next(iter(self.results.values())).profiled


def _label(strategy: str | None) -> str:
    return strategy if strategy is not None else "(scenario)"


def run_stage_tables(
    scenario: Scenario, strategies: list[str | None], seed: int, replication: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stages and events tables of one replication of each strategy, with a ``strategy``
    column: what a Gantt chart of one run draws."""
    stages, events = [], []
    for name in strategies:
        model = Model(scenario, name)
        run = model.run(model.draw(replication_rng(seed, replication)))
        stages.append(stage_table(run).assign(strategy=_label(name)))
        events.append(events_table(run).assign(strategy=_label(name)))
    return pd.concat(stages, ignore_index=True), pd.concat(events, ignore_index=True)


def band_table(results: dict[str | None, MonteCarloResult]) -> pd.DataFrame:
    """:func:`capsim.profiles.stage_bands` of each Monte Carlo result, with a ``strategy``
    column: what a probabilistic Gantt chart draws."""
    return pd.concat(
        [r.stage_bands.assign(strategy=_label(name)) for name, r in results.items() if r.profiles],
        ignore_index=True,
    )


def run_experiments(
    scenario: Scenario,
    *,
    reps: int,
    seed: int,
    strategies: list[str] | None = None,
    workers: int = 1,
    executor: Executor | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str | None, MonteCarloResult]:
    """Monte Carlo results of every strategy (or ``strategies``) with common random numbers, or
    of the scenario itself when it has none."""
    names = strategies or list(scenario.strategies)
    if len(names) > 1:
        return compare(
            scenario,
            strategies=names,
            reps=reps,
            seed=seed,
            workers=workers,
            executor=executor,
            progress=progress,
        ).results
    name = names[0] if names else None
    return {
        name: monte_carlo(
            scenario,
            reps=reps,
            seed=seed,
            strategy=name,
            workers=workers,
            executor=executor,
            progress=(lambda d, t: progress(_label(name), d, t)) if progress else None,
        )
    }


def _in_billions(differences: pd.DataFrame) -> pd.DataFrame:
    """Paired differences with totals in USD bn (costs per GPU-hour stay in USD)."""
    out = differences.copy()
    totals = (out["unit"] == "USD") & ~out["measure"].str.contains("per GPU-hour")
    columns = ["mean difference", "95% CI low", "95% CI high"]
    out.loc[totals, columns] = out.loc[totals, columns] / 1e9
    out.loc[totals, "unit"] = "USD bn"
    out["measure"] = out["measure"].str.replace(" (USD)", "", regex=False)
    return out


def _short(values: dict) -> dict:
    """Scalars as they are, anything nested as compact text (for a table cell)."""
    return {k: v if isinstance(v, str | int | float) else str(v)[:120] for k, v in values.items()}


def _note(text: str) -> str:
    return f"<p class='note'>{text}</p>"


_SHARES = ("share", "reached", "criticality", "P(by", "finished", "leasable")


def _table(table: pd.DataFrame, index: bool = True, by_row: bool = False) -> str:
    """A DataFrame as an HTML table: dates as YYYY-MM-DD (a missing date: never), shares as
    percentages, numbers with thousands separators. Whether a number is a share is read from
    its column's name, or its row's with ``by_row`` (a transposed table)."""
    shown = table.astype(object).copy()
    for i, row_label in enumerate(shown.index):
        for j, column in enumerate(shown.columns):
            dated = pd.api.types.is_datetime64_any_dtype(table.dtypes.iloc[j])
            label = str(row_label if by_row else column)
            shown.iat[i, j] = _cell(table.iat[i, j], label, dated)
    return shown.to_html(index=index, border=0, na_rep="", escape=True)


def _number(value: float) -> str:
    """A number for a table cell: thousands separated, sensible precision.

    >>> _number(1234.5), _number(2.345), _number(0.01234)
    ('1,234', '2.35', '0.0123')
    """
    magnitude = abs(value)
    if magnitude >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}" if magnitude >= 1 else f"{value:.3g}"


def _cell(value: object, label: str, dated: bool) -> str:
    if value is pd.NaT or (dated and pd.isna(value)):
        return "never"
    if isinstance(value, pd.Timestamp | dt.date):
        return f"{value:%Y-%m-%d}"
    if isinstance(value, bool | np.bool_ | str):
        return str(value)
    if isinstance(value, int | float | np.number):
        if pd.isna(value):
            return ""
        return f"{value:.0%}" if any(w in label for w in _SHARES) else _number(float(value))
    return str(value)


def _chart(figure, key: str) -> str:
    """A figure as a <div> (plotly.js is in the page's head); a fixed id per chart, so that the
    same inputs give the same file, byte for byte, but for the time it was generated."""
    html_div = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{key}",
        config={"displaylogo": False, "responsive": True},
    )
    return f"<div class='chart'>{html_div}</div>"


def build_report(
    scenario: Scenario,
    *,
    reps: int,
    seed: int,
    strategies: list[str] | None = None,
    workers: int = 1,
    executor: Executor | None = None,
    command: str = "",
    progress: Callable[[str, int, int], None] | None = None,
) -> Report:
    """Run the experiments a report needs (:func:`run_experiments`) and hold them for rendering."""
    results = run_experiments(
        scenario,
        reps=reps,
        seed=seed,
        strategies=strategies,
        workers=workers,
        executor=executor,
        progress=progress,
    )
    command = command or f"capsim report <scenario> --reps {reps} --seed {seed}"
    return Report(scenario, results, seed, command)
