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

import hashlib
import json
import math
import os
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from capsim import __version__, fastpath
from capsim.capacity import milestone_times
from capsim.costs import cost_summary
from capsim.errors import CapsimError
from capsim.model import Model, replication_rng
from capsim.records import Run, StageRecord, WorldEvent
from capsim.schema import Scenario

CHUNK_SIZE = 100
FAST_CHUNKS = 10  # the vectorised fast path takes chunks this many times larger
MANIFEST = "manifest.json"
NOTABLE_COUNTS = ("paused", "cancelled", "transferred", "lease_late", "lease_terminated")


def column_key(label: str) -> str:
    """A milestone label as a column-name fragment: ``"1 GW"`` -> ``"1GW"``."""
    return re.sub(r"[^0-9A-Za-z.]+", "", label)


class StageTally:
    """Per-stage sums over replications, merged by addition (so memory does not grow with the
    number of replications): waits and durations, and how often each stage lay on the chain of
    stages that decided when its site came online (``critical_site``) and when the last site came
    online (``critical_last``)."""

    FIELDS = ("n", "wait", "wait_sq", "duration", "duration_sq", "critical_site", "critical_last")

    def __init__(self, model: Model) -> None:
        self.model = model
        self.tasks = np.array(model.active_tasks, dtype=int)
        self.sums = np.zeros((len(self.FIELDS), len(self.tasks)))
        self.replications = 0

    def add(self, run: Run) -> None:
        ready, start, finish = run.ready[self.tasks], run.start[self.tasks], run.finish[self.tasks]
        done = ~np.isnan(finish)
        wait = np.where(done, start - ready, 0.0)
        duration = np.where(done, finish - start, 0.0)
        on_site, on_last = critical_chains(run)
        position = {t: k for k, t in enumerate(self.tasks)}
        critical_site = np.zeros(len(self.tasks))
        critical_last = np.zeros(len(self.tasks))
        critical_site[[position[t] for t in on_site]] = 1
        critical_last[[position[t] for t in on_last]] = 1
        rows = (
            done,
            wait,
            wait * wait,
            duration,
            duration * duration,
            critical_site,
            critical_last,
        )
        self.sums += np.vstack(rows)
        self.replications += 1

    def frame(self) -> pd.DataFrame:
        """The sums as a table, one row per active site x stage."""
        table = pd.DataFrame(self.sums.T, columns=list(self.FIELDS))
        table.insert(0, "task", self.tasks)
        table.insert(1, "replications", self.replications)
        return table


def critical_chains(run: Run) -> tuple[set[int], set[int]]:
    """The stages that decided when each site came online (walking back from its last stage
    through the predecessor that finished last), and the chain of the last site to come online.

    >>> from capsim.loader import load_scenario, shipped_scenario
    >>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
    >>> sites, last = critical_chains(model.run(model.mean_durations()))
    >>> sorted(model.tasks[t].stage for t in last)
    ['commissioning', 'construction', 'permit_amendment']
    """
    model = run.model
    chains: dict[int, set[int]] = {}
    online: dict[int, float] = {}
    for info in model.sites:
        finish = run.finish[list(info.tasks)]
        if not info.active or np.isnan(finish).any():
            continue
        task = info.tasks[int(np.argmax(finish))]
        chain = {task}
        while model.tasks[task].predecessors:
            before = max(model.tasks[task].predecessors, key=lambda p: run.finish[p])
            if run.finish[before] < run.ready[task] - 1e-9:
                break  # it became ready at the site's start, not when a predecessor finished
            task = before
            chain.add(task)
        chains[info.index] = chain
        online[info.index] = float(finish.max())
    on_site = set().union(*chains.values()) if chains else set()
    last = chains[max(online, key=online.get)] if online else set()
    return on_site, last


def replication_row(
    model: Model,
    seed: int,
    replication: int,
    tally: StageTally | None = None,
    logs: dict[str, list] | None = None,
) -> dict[str, Any]:
    """One replication reduced to one row: milestone times, each site's online time, costs of the
    perspective org, counts of notable events; its stages are added to ``tally``. A replication
    that raises gives a row with ``failed`` set and the error, so that a batch goes on."""
    row: dict[str, Any] = {
        "replication": replication,
        "failed": False,
        "error": "",
        "finished": False,
    }
    try:
        run = model.run(model.draw(replication_rng(seed, replication)))
        row["finished"] = run.finished
        for milestone, t in milestone_times(run).items():
            row[f"t_{column_key(milestone.label)}"] = t
        online = []
        for info in model.sites:
            if info.active:
                finish = run.finish[list(info.tasks)]
                t = float(finish.max()) if not np.isnan(finish).any() else math.nan
                online.append(t)
                row[f"online:{info.spec.name}"] = t
        row["t_all_online"] = (
            max(online) if online and not any(map(math.isnan, online)) else math.nan
        )
        lab = model.scenario.lab
        if lab is not None:
            costs = cost_summary(run, lab)
            for key in ("capex", "opex", "npv_cost", "usd_per_gpu_hour"):
                row[key] = costs[key]
        kinds = [e.kind for e in run.world]
        for kind in NOTABLE_COUNTS:
            row[f"n_{kind}"] = kinds.count(kind)
        if tally is not None:
            tally.add(run)
        if logs is not None:
            logs["stages"].extend((replication, *record) for record in run.events())
            logs["world"].extend((replication, *event) for event in run.world)
    except Exception as exc:
        row["failed"] = True
        row["error"] = f"{type(exc).__name__}: {exc} | " + traceback.format_exc(limit=-1).strip()
    return row


# -- running chunks -------------------------------------------------------------------------------

_MODELS: dict[tuple[str, str | None], Model] = {}


class Chunk(NamedTuple):
    """What a chunk of replications gives back."""

    rows: pd.DataFrame
    stages: pd.DataFrame  # the StageTally sums
    stage_log: pd.DataFrame | None  # with --save-events
    world_log: pd.DataFrame | None


def run_chunk(
    scenario: Scenario, strategy: str | None, seed: int, start: int, stop: int,
    save_events: bool = False,
) -> Chunk:  # fmt: skip
    """Replications ``start`` to ``stop - 1``: their rows, their stages' tally and, with
    ``save_events``, their full logs. Compiles the model once per process."""
    key = (fingerprint(scenario), strategy)
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = Model(scenario, strategy)
    tally = StageTally(model)
    if fastpath.eligible(model) and not save_events:
        try:
            rows, tally.sums = fastpath.simulate_chunk(model, seed, start, stop)
            tally.replications = stop - start
            return Chunk(rows, tally.frame(), None, None)
        except Exception:
            tally = StageTally(model)
    logs: dict[str, list] | None = {"stages": [], "world": []} if save_events else None
    rows = pd.DataFrame([replication_row(model, seed, i, tally, logs) for i in range(start, stop)])
    if logs is None:
        return Chunk(rows, tally.frame(), None, None)
    stage_log = pd.DataFrame(logs["stages"], columns=["replication", *StageRecord._fields])
    world_log = pd.DataFrame(logs["world"], columns=["replication", *WorldEvent._fields])
    return Chunk(rows, tally.frame(), stage_log, world_log)


def code_fingerprint() -> str:
    """A hash of capsim's own source: chunks computed by other code are not reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(scenario: Scenario) -> str:
    """A hash of the validated scenario: two runs share chunks only if it is equal."""
    return hashlib.sha256(scenario.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


class Executor:
    """Runs chunks somewhere and yields them as they complete (in any order)."""

    def map_chunks(
        self, tasks: list[tuple[int, int]], job: dict[str, Any]
    ) -> Iterator[tuple[int, Chunk]]:
        """Run ``run_chunk(**job, start=..., stop=...)`` for each (start, stop) in ``tasks``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers."""


class LocalExecutor(Executor):
    """``workers`` processes on this machine (in-process for one worker)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool = None

    def map_chunks(
        self, tasks: list[tuple[int, int]], job: dict[str, Any]
    ) -> Iterator[tuple[int, Chunk]]:
        if self.workers == 1:
            for start, stop in tasks:
                yield start, run_chunk(**job, start=start, stop=stop)
            return
        import concurrent.futures as cf
        import multiprocessing as mp

        if self._pool is None:
            # fork is cheap and inherits imports; every result depends only on (seed, replication)
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context(method))
        futures = {
            self._pool.submit(run_chunk, **job, start=start, stop=stop): start
            for start, stop in tasks
        }
        for future in cf.as_completed(futures):
            yield futures[future], future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """A Dask distributed cluster: ``"local"`` starts a LocalCluster of processes, anything else
    is the address of a running scheduler."""

    def __init__(self, address: str, workers: int = 2) -> None:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise CapsimError("--dask needs dask.distributed: pip install 'capsim[dask]'") from None
        self._cluster = None
        try:
            if address == "local":
                self._cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
                self.client = Client(self._cluster)
            else:
                self.client = Client(address, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise CapsimError(
                f"--dask: cannot reach the Dask scheduler at {address}: {exc}"
            ) from None

    def map_chunks(
        self, tasks: list[tuple[int, int]], job: dict[str, Any]
    ) -> Iterator[tuple[int, Chunk]]:
        from dask.distributed import as_completed

        job = {**job, "scenario": self.client.scatter(job["scenario"], broadcast=True)}
        futures = {
            self.client.submit(run_chunk, **job, start=start, stop=stop, pure=False): start
            for start, stop in tasks
        }
        for future in as_completed(futures):
            yield futures[future], future.result()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


# -- the experiment -------------------------------------------------------------------------------


@dataclass
class MonteCarloResult:
    """What a Monte Carlo run produced: one row per replication, and summaries."""

    scenario: Scenario
    strategy: str | None
    seed: int
    replications: pd.DataFrame
    stage_sums: pd.DataFrame  # StageTally sums by task
    by: list[pd.Timestamp] = field(default_factory=list)

    @property
    def stages(self) -> pd.DataFrame:
        """Per site x stage: mean and standard deviation of its wait and duration (over the
        replications in which it finished), and its criticality index: the share of replications
        in which it lay on the chain that decided its site's online date, and the last site's."""
        model = Model(self.scenario, self.strategy)
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

        model = Model(self.scenario, self.strategy)
        ok = self.replications[~self.replications["failed"]].head(max_reps)
        keep = [
            k for k, inp in enumerate(model.inputs)
            if inp.used and (inp.site is None or model.sites[inp.site].active)
            and (inp.lease is None or model.leases[inp.lease].active)
            and (0 < inp.chance < 1 if inp.chance is not None else model.slot_dists[k] is not None
                 and model.slot_dists[k].var > 0)
        ]  # fmt: skip
        if not keep or len(ok) < 3:
            return pd.DataFrame()
        uniforms = np.array(
            [
                replication_rng(self.seed, int(i)).random(model.n_slots)[keep]
                for i in ok["replication"]
            ]
        )
        chances = np.array(
            [model.inputs[k].chance if model.inputs[k].chance is not None else np.nan for k in keep]
        )
        inputs = np.where(np.isnan(chances), uniforms, (uniforms < chances).astype(float))
        targets = [c for c in ok.columns if c.startswith("t_")]
        labels = {f"t_{column_key(m.label)}": m.label for m in self.scenario.milestones}
        out = {}
        for column in targets:
            y = ok[column].to_numpy(dtype=float)
            if np.isnan(y).all() or np.nanstd(y) == 0:
                continue
            y = np.where(np.isnan(y), np.inf, y)
            rho = [stats.spearmanr(inputs[:, j], y).statistic if inputs[:, j].std() > 0 else np.nan
                   for j in range(len(keep))]  # fmt: skip
            out[labels.get(column, "all sites online")] = rho
        table = pd.DataFrame(out, index=[model.inputs[k].label for k in keep]).rename_axis("input")
        return table.reindex(table.abs().max(axis=1).sort_values(ascending=False).index)

    @property
    def failed(self) -> pd.DataFrame:
        """Replications that raised, with their errors."""
        return self.replications[self.replications["failed"]]

    @property
    def milestones(self) -> pd.DataFrame:
        """Per milestone (each capacity level, each site online, all sites online): how often it
        was reached by the horizon, P10/P50/P90 and the mean with a 95% confidence interval (as
        calendar dates), and the probability of reaching it by each ``by`` date."""
        ok = self.replications[~self.replications["failed"]]
        columns = [c for c in ok.columns if c.startswith("t_") and c != "t_all_online"]
        labels = {f"t_{column_key(m.label)}": m.label for m in self.scenario.milestones}
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
        return (
            pd.Timestamp(self.scenario.start)
            + pd.to_timedelta(t * self._days_per_unit() + 1e-6, unit="D")
        ).floor("D")

    @property
    def costs(self) -> pd.DataFrame:
        """P10/P50/P90 and mean of the perspective org's costs (USD)."""
        ok = self.replications[~self.replications["failed"]]
        columns = [c for c in ("capex", "opex", "npv_cost", "usd_per_gpu_hour") if c in ok]
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
    checkpoint every 500 replications, once every milestone's P50 and P90 moved by less than that
    fraction of the elapsed time since the start over the last checkpoint.
    """
    if reps < 1:
        raise CapsimError(f"--reps must be at least 1, got {reps}")
    model = Model(scenario, strategy)  # an unknown strategy fails here, before any work
    size = CHUNK_SIZE * (FAST_CHUNKS if fastpath.eligible(model) and not save_events else 1)
    owned = executor is None  # an executor passed in is the caller's to close
    executor = executor or LocalExecutor(workers)
    chunks = Path(out) / "chunks" if out is not None else None
    done: dict[int, pd.DataFrame] = {}
    tallies: dict[int, pd.DataFrame] = {}
    if chunks is not None:
        _claim(Path(out), scenario, strategy, seed, save_events, size)
        for path in sorted(chunks.glob("*.rows.parquet")):  # written last: the chunk is complete
            start = int(path.name.split(".")[0])
            if start < reps:
                done[start] = pd.read_parquet(path)
                tallies[start] = pd.read_parquet(chunks / f"{start:09d}.stages.parquet")
    plan = [(s, min(s + size, reps)) for s in range(0, reps, size)]
    todo = [(s, e) for s, e in plan if s not in done or len(done[s]) != e - s]
    keep = {s for s, e in todo if s in done and len(done[s]) > e - s}  # a longer run's chunk
    checkpoint, seen = 500, {}
    try:
        if progress:
            progress(sum(len(done[s]) for s, _ in plan if s in done), reps)
        job = {"scenario": scenario, "strategy": strategy, "seed": seed, "save_events": save_events}
        for start, chunk in executor.map_chunks(todo, job):
            done[start], tallies[start] = chunk.rows, chunk.stages
            if chunks is not None and start not in keep:
                if chunk.stage_log is not None:
                    events = Path(out) / "events"
                    events.mkdir(exist_ok=True)
                    _write_atomically(chunk.stage_log, events / f"{start:09d}.stages.parquet")
                    _write_atomically(chunk.world_log, events / f"{start:09d}.world.parquet")
                _write_atomically(chunk.stages, chunks / f"{start:09d}.stages.parquet")
                _write_atomically(chunk.rows, chunks / f"{start:09d}.rows.parquet")
            if progress:
                progress(sum(len(r) for r in done.values()), reps)
            if until_stable is not None and _stop_at(done, plan, checkpoint, until_stable, seen):
                break
    finally:
        if owned:
            executor.close()
    if until_stable is not None and (stop := _stop_at(done, plan, checkpoint, until_stable, seen)):
        plan = [(s, e) for s, e in plan if e <= stop]  # also when resumed with every chunk done
    frames = [done[s] for s, _ in plan if s in done]
    replications = pd.concat(frames, ignore_index=True).sort_values("replication", kind="stable")
    stages = sum(tallies[s].set_index("task") for s, _ in plan if s in tallies)
    return MonteCarloResult(
        scenario, strategy, seed, replications.reset_index(drop=True), stages, by or []
    )


def _stop_at(
    done: dict, plan: list, every: int, tol: float, seen: dict[int, np.ndarray]
) -> int | None:
    """The first checkpoint (a multiple of ``every`` replications, all chunks before it done) at
    which P50 and P90 of every milestone moved by less than ``tol`` (relative to the time since
    the start) since the previous checkpoint. A milestone first reached, or no longer reached,
    at a checkpoint has not settled. ``seen`` caches each checkpoint's quantiles."""
    complete = 0
    for start, stop in plan:
        if start not in done:
            break
        complete = stop
    previous = None
    for point in range(every, complete + 1, every):
        if point not in seen:
            rows = pd.concat([done[s] for s, e in plan if e <= point], ignore_index=True)
            columns = [c for c in rows.columns if c.startswith("t_")]
            seen[point] = rows[columns].quantile([0.5, 0.9]).to_numpy()
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
    out: Path, scenario: Scenario, strategy: str | None, seed: int, save_events: bool, size: int
) -> None:
    """Create ``out`` for this experiment, or check that the chunks already there are its own."""
    manifest = {
        "capsim": __version__, "code": code_fingerprint(), "numpy": np.__version__,
        "scenario": scenario.name, "fingerprint": fingerprint(scenario),
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


# -- comparing strategies -------------------------------------------------------------------------


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
        return keep + [c for c in ("capex", "opex", "npv_cost", "usd_per_gpu_hour") if c in first]

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
            ok = result.replications[~result.replications["failed"]]
            for cost in ("capex", "opex", "npv_cost", "usd_per_gpu_hour"):
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
    labels = {f"t_{column_key(m.label)}": m.label for m in scenario.milestones}
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
    names = strategies or list(scenario.strategies)
    for name in names:
        Model(scenario, name)  # every name is checked before any work
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
