"""Monte Carlo experiments: many replications of one scenario and strategy, run in chunks on local
processes or a Dask cluster, written to disk as they complete, and summarised.

Replication ``i`` always draws from ``SeedSequence(seed, spawn_key=(i,))``, so its result does not
depend on the number of workers, the chunking, the machine or on being resumed. A chunk is written
atomically (a temporary file, then a rename); running the same experiment again into the same
folder skips the chunks already there.

>>> from capsim.loader import load_scenario, shipped_scenario
>>> mc = monte_carlo(load_scenario(shipped_scenario("greenfield-campus")), reps=40, seed=1)
>>> len(mc.replications), list(mc.milestones.index[:4])
(40, ['1 GW', '5 GW', 'all sites online', 'campus-phase-1 online'])
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capsim import __version__, fastpath, profiles
from capsim.blocks import Blocks
from capsim.errors import CapsimError
from capsim.executors import Executor, LocalExecutor
from capsim.model import Model, replication_uniforms
from capsim.replications import (
    HEADLINE_COSTS,
    code_fingerprint,
    compiled,
    fingerprint,
    run_chunk,
)
from capsim.results import to_dates
from capsim.schema import Scenario
from capsim.tally import FIELDS

CHUNK_SIZE = 100
FAST_CHUNKS = 10  # the vectorised fast path takes chunks this many times larger
MANIFEST = "manifest.json"


@dataclass
class MonteCarloResult:
    """What a Monte Carlo run produced: one row per replication, and summaries."""

    scenario: Scenario
    strategy: str | None
    seed: int
    replications: pd.DataFrame
    stage_sums: pd.DataFrame  # StageTally sums by task
    by: list[pd.Timestamp] = field(default_factory=list)
    #: what gives the profiles of the first PROFILE_REPS replications (see :attr:`profiles`)
    profile_batch: Callable[[], profiles.ProfileBatch] | None = field(default=None, repr=False)

    @functools.cached_property
    def profiles(self) -> dict[str, pd.DataFrame]:
        """The profiles of the first PROFILE_REPS replications (:mod:`capsim.profiles`) as
        tables: ``stage_times``, ``capacity`` and ``world``; none if no replication kept one.
        Made on first use: a run that only needs its summaries does not make them."""
        batch = self.profile_batch() if self.profile_batch is not None else None
        self.profile_batch = None  # the chunks' batches it held: the tables hold their copy
        return batch.frames() if batch is not None and batch.size else {}

    @functools.cached_property
    def model(self) -> Model:
        """The compiled model of the scenario and strategy (built once)."""
        return Model(self.scenario, self.strategy)

    @property
    def stages(self) -> pd.DataFrame:
        """Per site x stage: mean and standard deviation of its wait and duration (over the
        replications in which it finished), and its criticality index: the share of replications
        in which it lay on the chain that decided its site's online date, and the last site's."""
        model = self.model
        sums = self.stage_sums
        n = sums["n"].replace(0, np.nan)
        out = pd.DataFrame(
            {
                "site": [model.sites[model.tasks[t].site].spec.name for t in sums.index],
                "stage": [model.tasks[t].stage for t in sums.index],
                "finished": sums["n"] / sums["replications"],
            }
        )
        for what in ("wait", "duration"):
            mean = sums[what] / n
            out[f"mean {what}"] = mean.to_numpy()
            out[f"sd {what}"] = np.sqrt(
                np.maximum(sums[f"{what}_sq"] / n - mean**2, 0.0)
            ).to_numpy()
        out["criticality (site online)"] = (sums["critical_site"] / sums["replications"]).to_numpy()
        out["criticality (last site)"] = (sums["critical_last"] / sums["replications"]).to_numpy()
        return out

    def sensitivity(self, max_reps: int = 2000) -> pd.DataFrame:
        """Spearman rank correlation of every milestone with every sampled input (a stage's
        duration, a risk's occurrence, a refusal, a flag, an energy-price factor), over the first
        ``max_reps`` successful replications: the inputs of a tornado chart. Inputs are rebuilt
        from the seed, not stored. Chances count as 1 when the event happens, else 0; a milestone
        never reached ranks last."""
        from scipy import stats

        model = self.model
        ok = self.succeeded.head(max_reps)
        keep = [
            k for k, inp in enumerate(model.inputs)
            if inp.used and (inp.site is None or model.sites[inp.site].active)
            and (inp.lease is None or model.leases[inp.lease].active)
            and (0 < inp.chance < 1 if inp.chance is not None else model.slot_dists[k] is not None
                 and model.slot_dists[k].var > 0)
        ]  # fmt: skip
        if not keep or len(ok) < 3:
            return pd.DataFrame()
        drawn = replication_uniforms(self.seed, ok["replication"].to_numpy(), model.n_slots)
        uniforms = drawn[:, keep]
        chances = np.array(
            [model.inputs[k].chance if model.inputs[k].chance is not None else np.nan for k in keep]
        )
        inputs = np.where(np.isnan(chances), uniforms, (uniforms < chances).astype(float))
        targets = [c for c in ok.columns if c.startswith("t_")]
        labels = {m.column: m.label for m in self.scenario.milestones}
        out = {}
        for column in targets:
            y = ok[column].to_numpy(dtype=float)
            y = np.where(np.isnan(y), np.inf, y)  # never reached: later than any date
            if np.all(y == y[0]):
                continue
            rho = [stats.spearmanr(inputs[:, j], y).statistic if inputs[:, j].std() > 0 else np.nan
                   for j in range(len(keep))]  # fmt: skip
            out[labels.get(column, "all sites online")] = rho
        table = pd.DataFrame(out, index=[model.inputs[k].label for k in keep]).rename_axis("input")
        return table.reindex(table.abs().max(axis=1).sort_values(ascending=False).index)

    # -- from the profiles of the first PROFILE_REPS replications (capsim.profiles) --------------

    @property
    def profiled(self) -> int:
        """How many replications kept profiles (the first ones, up to ``PROFILE_REPS``)."""
        return int(self.profiles["capacity"]["replication"].nunique()) if self.profiles else 0

    @property
    def stage_bands(self) -> pd.DataFrame:
        """Per site x stage: P10/P50/P90 of its start and finish (the probabilistic Gantt)."""
        return profiles.stage_bands(self.model, self.profiles["stage_times"])

    @property
    def capacity_bands(self) -> pd.DataFrame:
        """Per month: P10/P50/P90 and mean of MW, GPUs and PFLOPS online (the capacity fan)."""
        return profiles.capacity_bands(self.model, self.profiles["capacity"])

    @property
    def hbm_by_buyer(self) -> pd.DataFrame:
        """Mean GB of HBM allocated to each buyer per HBM period (empty without a market)."""
        return profiles.hbm_by_buyer(self.model, self.profiles["world"], self.profiled)

    @property
    def event_shares(self) -> pd.DataFrame:
        """Per kind of notable event and subject: share of replications, median first date."""
        return profiles.event_shares(self.model, self.profiles["world"], self.profiled)

    @property
    def failed(self) -> pd.DataFrame:
        """Replications that raised, with their errors."""
        return self.replications[self.replications["failed"]]

    @property
    def succeeded(self) -> pd.DataFrame:
        """Replications that did not raise (the table itself, not a copy, when none did)."""
        rows = self.replications
        return rows[~rows["failed"]] if rows["failed"].any() else rows

    @property
    def milestones(self) -> pd.DataFrame:
        """Per milestone (each capacity level, each site online, all sites online): how often it
        was reached by the horizon, P10/P50/P90 and the mean with a 95% confidence interval (as
        calendar dates), and the probability of reaching it by each ``by`` date."""
        ok = self.succeeded
        columns = [c for c in ok.columns if c.startswith("t_") and c != "t_all_online"]
        labels = {m.column: m.label for m in self.scenario.milestones}
        rows = {}
        for column in [
            *columns,
            "t_all_online",
            *(c for c in ok.columns if c.startswith("online:")),
        ]:
            if column not in ok:
                continue
            name = labels.get(column) or (
                "all sites online"
                if column == "t_all_online"
                else column.removeprefix("online:") + " online"
            )
            rows[name] = self._stats(ok[column].to_numpy(dtype=float))
        return pd.DataFrame.from_dict(rows, orient="index")

    def _stats(self, times: np.ndarray) -> dict[str, Any]:
        reached = times[~np.isnan(times)]
        out: dict[str, Any] = {"reached": len(reached) / len(times) if len(times) else math.nan}
        if len(reached):
            p10, p50, p90 = np.percentile(reached, [10, 50, 90])
            mean = reached.mean()
            half = (
                1.96 * reached.std(ddof=1) / math.sqrt(len(reached))
                if len(reached) > 1
                else math.nan
            )
            for key, t in (("P10", p10), ("P50", p50), ("P90", p90), ("mean", mean)):
                out[key] = self._date(t)
            out["mean 95% CI ±days"] = half * self._days_per_unit()
        for date in self.by:
            # by the end of that day, as the table dates it (dates are model times floored)
            end = ((date.date() - self.scenario.start).days + 1) / self._days_per_unit()
            out[f"P(by {date.date()})"] = float(np.mean(np.nan_to_num(times, nan=math.inf) < end))
        return out

    def _days_per_unit(self) -> float:
        from capsim.units import DAYS_PER

        return DAYS_PER[self.scenario.time_unit]

    def _date(self, t: float) -> pd.Timestamp:
        return to_dates(self.scenario, [t]).iloc[0]

    @property
    def costs(self) -> pd.DataFrame:
        """P10/P50/P90 and mean of the perspective org's costs (USD)."""
        ok = self.succeeded
        columns = [c for c in HEADLINE_COSTS if c in ok]
        if not columns:
            return pd.DataFrame(columns=["10%", "50%", "90%", "mean"])
        return ok[columns].describe(percentiles=[0.1, 0.5, 0.9]).T[["10%", "50%", "90%", "mean"]]


def monte_carlo(
    scenario: Scenario,
    *,
    reps: int,
    seed: int,
    strategy: str | None = None,
    workers: int = 1,
    executor: Executor | None = None,
    out: Path | None = None,
    by: list[pd.Timestamp] | None = None,
    until_stable: float | None = None,
    save_events: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MonteCarloResult:
    """Run ``reps`` replications of ``scenario`` (one ``strategy``) and summarise them.

    ``out`` keeps completed chunks (resumable); ``until_stable`` (e.g. 0.005) stops early, at a
    checkpoint every 500 replications (1,000 on the fast path, a chunk), once every milestone's
    P50 and P90 moved by less than that fraction of the elapsed time since the start over the
    last checkpoint.
    """
    if reps < 1:
        raise CapsimError(f"--reps must be at least 1, got {reps}")
    scenario_hash = fingerprint(scenario)  # once: the chunks are told it
    model = compiled(scenario, strategy, scenario_hash)  # an unknown strategy fails here
    size = CHUNK_SIZE * (FAST_CHUNKS if fastpath.eligible(model) and not save_events else 1)
    owned = executor is None  # an executor passed in is the caller's to close
    executor = executor or LocalExecutor(workers)
    chunks = Path(out) / "chunks" if out is not None else None
    plan = [(s, min(s + size, reps)) for s in range(0, reps, size)]
    rows, sums = _Rows(reps), _StageSums(plan)
    sample = profiles.Sample(model, min(reps, profiles.PROFILE_REPS))
    found: dict[int, int] = {}  # rows of the chunks already in the folder, by start
    if chunks is not None:
        _claim(Path(out), scenario, scenario_hash, strategy, seed, save_events, size)
        planned = dict(plan)
        for path in sorted(chunks.glob("*.rows.parquet")):  # written last: the chunk is complete
            start = int(path.name.split(".")[0])
            if start not in planned:
                continue
            chunk_rows = Blocks.from_frame(pd.read_parquet(path))
            found[start] = len(chunk_rows)
            if found[start] == planned[start] - start:  # else it is simulated again
                rows.add(start, chunk_rows)
                tally = pd.read_parquet(chunks / f"{start:09d}.stages.parquet")
                sums.add(start, Blocks.from_frame(tally))
                frames = {
                    p.name.split(".")[1].removeprefix("profile-"): pd.read_parquet(p)
                    for p in chunks.glob(f"{start:09d}.profile-*.parquet")
                }
                if frames:
                    sample.add(profiles.ProfileBatch.from_frames(frames))
    todo = [(s, e) for s, e in plan if found.get(s) != e - s]
    keep = {s for s, e in todo if found.get(s, 0) > e - s}  # a longer run's chunk
    checkpoint, seen = max(500, size), {}  # whole chunks: the fast path's hold 1,000
    try:
        if progress:
            progress(rows.count, reps)
        work = functools.partial(run_chunk, scenario, strategy, seed,
                                 save_events=save_events, scenario_hash=scenario_hash)  # fmt: skip
        large = {s for s, _ in todo if s < profiles.PROFILE_REPS or save_events}  # profiles, logs
        for start, chunk in executor.map_chunks(todo, work, large):
            rows.add(start, chunk.rows)
            sums.add(start, chunk.stages)
            sample.add(chunk.profiles)  # chunks past the sampled replications have none
            if chunks is not None and start not in keep:
                if chunk.stage_log is not None:
                    events = Path(out) / "events"
                    events.mkdir(exist_ok=True)
                    _write_atomically(chunk.stage_log, events / f"{start:09d}.stages.parquet")
                    _write_atomically(chunk.world_log, events / f"{start:09d}.world.parquet")
                _write_atomically(chunk.stages.frame(), chunks / f"{start:09d}.stages.parquet")
                for name, frame in (chunk.profiles.frames() if chunk.profiles.size else {}).items():
                    _write_atomically(frame, chunks / f"{start:09d}.profile-{name}.parquet")
                _write_atomically(chunk.rows.frame(), chunks / f"{start:09d}.rows.parquet")
            if progress:
                progress(rows.count, reps)
            if until_stable is not None and _stop_at(rows, plan, checkpoint, until_stable, seen):
                break
            # every checkpoint so far is unsettled: a later stop keeps every chunk done by now
            sums.advance(reps)
    finally:
        if owned:
            executor.close()
    if until_stable is not None and (stop := _stop_at(rows, plan, checkpoint, until_stable, seen)):
        plan = [(s, e) for s, e in plan if e <= stop]  # also when resumed with every chunk done
    n = plan[-1][1]
    return MonteCarloResult(
        scenario, strategy, seed, rows.frame(n), sums.total(n), by or [],
        functools.partial(sample.batch, n),
    )  # fmt: skip


class _Rows:
    """The rows of a run's replications, stored as their chunks arrive: an array per block of
    the first chunk's :class:`~capsim.blocks.Blocks` (a row per replication), allocated for
    every replication at once, a chunk copied in block by block. Only the replications done so
    far occupy memory (they are the first rows), and the table is built on these arrays without
    a copy (concatenating the chunks made a second one).

    A chunk of another layout (one in which replications failed, whose missing values turn
    integer columns into floats) is kept as it is, and the table is then concatenated in
    replication order as ``pd.concat`` makes it.
    """

    def __init__(self, reps: int) -> None:
        self.reps = reps
        self.chunks: dict[int, int] = {}  # stop by start of every chunk added
        self.count = 0  # rows added
        self._first: Blocks | None = None  # its names and layout
        self._values: list[np.ndarray] = []  # its blocks', for every replication
        self._others: dict[int, Blocks] = {}  # chunks of another layout

    def add(self, start: int, rows: Blocks) -> None:
        """Take the rows of the chunk of replications ``start`` to ``start + len(rows) - 1``
        (each chunk once)."""
        if self._first is None:
            self._first = rows
            self._values = [np.empty((self.reps, b.shape[1]), b.dtype) for b in rows.blocks]
        if rows.layout == self._first.layout:
            for values, block in zip(self._values, rows.blocks, strict=True):
                values[start : start + len(rows)] = block
        else:
            self._others[start] = rows
        self.chunks[start] = start + len(rows)
        self.count += len(rows)

    def frame(self, stop: int, names: list[str] | None = None) -> pd.DataFrame:
        """The rows of replications 0 to ``stop - 1`` (every chunk before ``stop`` added), in
        order, with a RangeIndex; without a copy of the stored columns unless a chunk differed.
        ``names``: those columns only (in the table's order)."""
        if self._first is None:
            return pd.DataFrame()
        table = Blocks(self._first.names, tuple(values[:stop] for values in self._values))
        table = table if names is None else table.select(names)
        if not self._others:
            return table.frame()
        stored = table.frame()  # once: the stored chunks are slices of it
        pieces = [
            (other if names is None else other.select(names)).frame()
            if (other := self._others.get(start)) is not None
            else stored.iloc[start:end]
            for start, end in sorted(self.chunks.items())
            if start < stop
        ]
        return pd.concat(pieces, ignore_index=True).iloc[:stop]

    @property
    def names(self) -> tuple[str, ...]:
        """The columns of every chunk added, in the first one's order, then the others' (a chunk
        whose replications all failed has none of the milestones)."""
        first = self._first.names if self._first is not None else ()
        others = (name for other in self._others.values() for name in other.names)
        return tuple(dict.fromkeys((*first, *others)))


class _StageSums:
    """The stage tallies of a run's chunks (:meth:`capsim.tally.StageTally.table`), added up in
    the order of the plan as they arrive: the floating-point sums are those of the plan's order
    whatever chunk finished first, and only chunks waiting for an earlier one are held."""

    def __init__(self, plan: list[tuple[int, int]]) -> None:
        self.plan = plan
        self._tasks: np.ndarray | None = None  # of the first tally (every tally's)
        self._counted: np.ndarray | None = None  # replications counted, by task
        self._sum: np.ndarray | None = None  # the FIELDS' sums (tasks x fields)
        self._next = 0  # the plan's first chunk not added up
        self._waiting: dict[int, Blocks] = {}

    def add(self, start: int, tally: Blocks) -> None:
        """Hold the tally of the chunk starting at replication ``start`` until it is its turn."""
        self._waiting[start] = tally

    def advance(self, stop: int) -> None:
        """Add up the waiting tallies that are next in the plan, of chunks ending by ``stop``."""
        while self._next < len(self.plan):
            start, end = self.plan[self._next]
            if start not in self._waiting or end > stop:
                return
            ids, sums = self._waiting.pop(start).blocks  # (task, replications), the fields
            if self._tasks is None:
                self._tasks, self._counted, self._sum = ids[:, 0], ids[:, 1].copy(), sums.copy()
            else:
                self._counted, self._sum = self._counted + ids[:, 1], self._sum + sums
            self._next += 1

    def total(self, stop: int) -> pd.DataFrame:
        """The sums by task over the plan's chunks up to replication ``stop``."""
        self.advance(stop)
        if self._tasks is None:
            return pd.DataFrame()
        index = pd.Index(self._tasks, name="task")
        table = pd.DataFrame(self._sum, index=index, columns=list(FIELDS))
        table.insert(0, "replications", self._counted)
        return table


def _stop_at(
    rows: _Rows, plan: list[tuple[int, int]], every: int, tol: float, seen: dict[int, np.ndarray]
) -> int | None:
    """The first checkpoint (a multiple of ``every`` replications, all chunks before it done) at
    which P50 and P90 of every milestone moved by less than ``tol`` (relative to the time since
    the start) since the previous checkpoint. A milestone first reached, or no longer reached,
    at a checkpoint has not settled. ``seen`` caches each checkpoint's quantiles."""
    complete = 0
    for start, stop in plan:
        if start not in rows.chunks:
            break
        complete = stop
    previous = None
    for point in range(every, complete + 1, every):
        if point not in seen:
            columns = [c for c in rows.names if c.startswith("t_")]
            seen[point] = rows.frame(point, columns).quantile([0.5, 0.9]).to_numpy()
        current = seen[point]
        if previous is not None:
            scale = np.maximum(np.abs(previous), 1.0)
            change = np.abs(current - previous) / scale
            change = np.where(np.isnan(current) & np.isnan(previous), 0.0, change)
            if np.all(np.nan_to_num(change, nan=np.inf) < tol):
                return point
        previous = current
    return None


def _claim(
    out: Path, scenario: Scenario, scenario_hash: str, strategy: str | None, seed: int,
    save_events: bool, size: int,
) -> None:  # fmt: skip
    """Create ``out`` for this experiment, or check that the chunks already there are its own."""
    manifest = {
        "capsim": __version__, "code": code_fingerprint(), "numpy": np.__version__,
        "scenario": scenario.name, "fingerprint": scenario_hash,
        "strategy": strategy, "seed": seed, "chunk_size": size, "save_events": save_events,
    }  # fmt: skip
    path = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise CapsimError(f"cannot write to {out}: it is a file, not a folder")
    if path.exists():
        found = json.loads(path.read_text())
        differs = [k for k in manifest if found.get(k) != manifest[k]]
        if differs:
            what = ", ".join(f"{k} {found.get(k)!r}, now {manifest[k]!r}" for k in differs)
            raise CapsimError(
                f"{out} holds another run's chunks ({what}); use another --out folder or delete it"
            )
        for stray in out.rglob("*.tmp"):  # a write cut short by a kill
            stray.unlink()
        return
    if out.exists() and any(out.iterdir()):
        raise CapsimError(f"{out} exists and is not a capsim Monte Carlo folder; use another --out")
    try:
        (out / "chunks").mkdir(parents=True, exist_ok=True)
        _write_text_atomically(json.dumps(manifest, indent=2), path)
    except OSError as exc:
        raise CapsimError(f"cannot write to {out}: {exc.strerror or exc}") from None


def _write_atomically(rows: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    rows.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _write_text_atomically(text: str, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
