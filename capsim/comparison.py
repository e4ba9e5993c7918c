"""Comparing strategies over the same draws (common random numbers): side by side, paired
differences with confidence intervals, and how often each strategy wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from capsim.errors import CapsimError
from capsim.executors import Executor
from capsim.experiments import MonteCarloResult, monte_carlo
from capsim.model import Model
from capsim.replications import HEADLINE_COSTS
from capsim.schema import Scenario


@dataclass
class Comparison:
    """Monte Carlo results of several strategies over the same draws (common random numbers)."""

    results: dict[str, MonteCarloResult]

    @property
    def _scenario(self) -> Scenario:
        return next(iter(self.results.values())).scenario

    def _measures(self) -> list[str]:
        first = next(iter(self.results.values())).replications
        keep = [c for c in first.columns if c.startswith("t_")]
        return keep + [c for c in HEADLINE_COSTS if c in first]

    @property
    def side_by_side(self) -> pd.DataFrame:
        """P50 and P90 of every milestone (as dates) and the mean of every cost, per strategy."""
        columns = {}
        for name, result in self.results.items():
            stats = result.milestones
            for milestone in stats.index[: len(result.scenario.milestones) + 1]:
                for key in ("P50", "P90"):
                    columns.setdefault(f"{milestone} {key}", {})[name] = stats.loc[milestone].get(
                        key
                    )
                columns.setdefault(f"{milestone} reached", {})[name] = stats.loc[
                    milestone, "reached"
                ]
            ok = result.succeeded
            for cost in HEADLINE_COSTS:
                if cost in ok:
                    label = _measure_label(cost, self._scenario).replace("(USD)", "(USD bn)")
                    scale = 1.0 if cost == "usd_per_gpu_hour" else 1e9
                    columns.setdefault(f"mean {label}", {})[name] = ok[cost].mean() / scale
        return pd.DataFrame(columns)

    @property
    def differences(self) -> pd.DataFrame:
        """Paired differences against the first strategy, replication by replication: the mean
        difference with a 95% confidence interval (in days for milestones, USD for costs), over
        the replications in which both reached the milestone."""
        names = list(self.results)
        base = self.results[names[0]].replications.set_index("replication")
        days = self.results[names[0]]._days_per_unit()
        rows = []
        for name in names[1:]:
            other = self.results[name].replications.set_index("replication")
            for measure in self._measures():
                if measure not in other:
                    continue
                diff = (other[measure] - base[measure]).dropna()
                scale = days if measure.startswith("t_") else 1.0
                n = len(diff)
                mean = diff.mean() * scale if n else math.nan
                half = 1.96 * diff.std(ddof=1) * scale / math.sqrt(n) if n > 1 else math.nan
                rows.append(
                    {
                        "strategy": name,
                        "versus": names[0],
                        "measure": _measure_label(measure, self._scenario),
                        "unit": "days" if measure.startswith("t_") else "USD",
                        "pairs": n,
                        "mean difference": mean,
                        "95% CI low": mean - half,
                        "95% CI high": mean + half,
                    }
                )
        return pd.DataFrame(rows)

    @property
    def wins(self) -> pd.DataFrame:
        """How often each strategy is first to each milestone (or cheapest), replication by
        replication; never reaching a milestone loses, ties share the win."""
        rows = {}
        for measure in self._measures():
            table = pd.DataFrame(
                {
                    n: r.replications.set_index("replication")[measure]
                    for n, r in self.results.items()
                }
            ).fillna(math.inf)
            best = table.eq(table.min(axis=1), axis=0)
            best = best[np.isfinite(table.min(axis=1))]
            rows[_measure_label(measure, self._scenario)] = (
                best.div(best.sum(axis=1), axis=0)
            ).mean()
        return pd.DataFrame(rows).T


def _measure_label(column: str, scenario: Scenario) -> str:
    """The reader's name of a replications.csv column."""
    labels = {m.column: m.label for m in scenario.milestones}
    labels.update(
        t_all_online="all sites online",
        capex="CapEx (USD)",
        opex="OpEx (USD)",
        npv_cost="NPV of cost (USD)",
        usd_per_gpu_hour="USD per GPU-hour",
    )
    return labels.get(column, column)


def compare(
    scenario: Scenario,
    *,
    strategies: list[str] | None = None,
    reps: int,
    seed: int,
    workers: int = 1,
    executor: Executor | None = None,
    out: Path | None = None,
    by: list[pd.Timestamp] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Comparison:
    """Run every strategy (default: all of the scenario's) with the same ``seed``: replication
    ``i`` of each shares the draws of the world they share."""
    names = list(scenario.strategies) if strategies is None else strategies
    for name in names:
        Model(scenario, name)  # every name is checked before any work
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise CapsimError(f"each strategy once, please: {', '.join(repeated)} given twice")
    if len(names) < 2:
        raise CapsimError(
            f"{scenario.name}: compare needs at least two strategies; the scenario has "
            f"{', '.join(scenario.strategies) or 'none'}"
        )
    results = {}
    for name in names:

        def report(done: int, total: int, name: str = name) -> None:
            if progress:
                progress(name, done, total)

        results[name] = monte_carlo(
            scenario,
            reps=reps,
            seed=seed,
            strategy=name,
            executor=executor,
            workers=workers,
            out=Path(out) / name if out is not None else None,
            by=by,
            progress=report,
        )
    return Comparison(results)
