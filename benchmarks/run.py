#!/usr/bin/env python
"""capsim's benchmarks: speed against a plain SimPy reference model of the same workload, scaling,
parallel speed-up, memory and start-up time. See benchmarks/README.md.

Every speed figure is a ratio against a baseline measured in the same run: the two are alternated
``--rounds`` times and the medians are reported, so that a busy or slow machine moves both.

    python benchmarks/run.py              # everything but memory (~1.5-2 minutes)
    python benchmarks/run.py --quick      # reduced sizes: a smoke check (~10 s)
    python benchmarks/run.py --memory     # also the 100,000-replication memory run (5-10 min)
    python benchmarks/run.py --profile    # also cProfile's top functions of the 50-site case

Results go to benchmarks/results.json (git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import io
import json
import math
import multiprocessing
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import simpy  # noqa: E402
from reference import run_reference  # noqa: E402
from workload import (  # noqa: E402
    capsim_scenario,
    commission_tasks,
    precedence_scenario,
    stage_tasks,
    write_yaml,
)

import capsim  # noqa: E402
from capsim import fastpath, leanpath  # noqa: E402
from capsim.executors import LocalExecutor  # noqa: E402
from capsim.experiments import monte_carlo  # noqa: E402
from capsim.model import Model, replication_rng  # noqa: E402
from capsim.replications import StageTally, replication_row, run_chunk  # noqa: E402

SEED = 1
REF_SEED = 10_000  # the reference's replication i uses seed REF_SEED + i


# -- helpers ---------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of ``fn()``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_timed(fn: Callable[[], object]) -> float:
    """CPU seconds of this process spent in ``fn()``: for in-process, single-threaded figures,
    so that other work on a shared machine does not move them (it still moves wall time)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def children_cpu(running: Collection = ()) -> float:
    """CPU seconds used so far by this process's children, once all but those ``running``
    (which are to go on) have exited: a monte_carlo run does not wait for its idle workers to
    exit; this does, untimed."""
    import resource

    for child in set(multiprocessing.active_children()) - set(running):
        child.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load() -> float:
    """The 1-minute load average (runnable processes on the machine)."""
    return os.getloadavg()[0]


def median(values: list[float]) -> float:
    return float(statistics.median(values))


@contextlib.contextmanager
def count_simpy_events():
    """Count ``Environment.schedule`` (events scheduled) and ``Environment.step`` (events
    processed) calls of every SimPy environment, by patching the class while inside. Only for
    counting runs: the wrapper slows every event down."""
    counts = {"scheduled": 0, "processed": 0}
    schedule, step = simpy.Environment.schedule, simpy.Environment.step

    def counting_schedule(self, *args, **kwargs):
        counts["scheduled"] += 1
        return schedule(self, *args, **kwargs)

    def counting_step(self):
        counts["processed"] += 1
        return step(self)

    simpy.Environment.schedule, simpy.Environment.step = counting_schedule, counting_step
    try:
        yield counts
    finally:
        simpy.Environment.schedule, simpy.Environment.step = schedule, step


def capsim_loop(model: Model, reps: int, first: int = 0) -> list:
    return [model.run(model.draw(replication_rng(SEED, i))) for i in range(first, first + reps)]


def engine_rows(model: Model, reps: int) -> list[dict]:
    """Rows of replications 0 to ``reps - 1`` by the engine, as run_chunk computes them when no
    array path applies (one stage tally for them all)."""
    tally = StageTally(model)
    return [replication_row(model, SEED, i, tally) for i in range(reps)]


def chunk_path(model: Model) -> str:
    """Which path run_chunk (capsim mc) takes for ``model``."""
    if fastpath.eligible(model):
        return "fastpath"
    return "leanpath" if leanpath.eligible(model) else "engine"


def replication_loop(model: Model, reps: int, first: int = 0) -> list:
    """Replications drawn and simulated by the path capsim mc takes (the lean path's records,
    or the engine's Runs), without reducing them to rows."""
    if chunk_path(model) != "leanpath":
        return capsim_loop(model, reps, first)
    return [
        leanpath.simulate(model, model.draw(replication_rng(SEED, i)))
        for i in range(first, first + reps)
    ]


def run_chunk_events(model: Model, reps: int) -> float:
    """Events per replication of the path run_chunk takes: the lean path counts its own (the
    engine's SimPy events, each task end included), the engine's are counted by patching SimPy."""
    if chunk_path(model) == "leanpath":
        values = [model.draw(replication_rng(SEED, i)) for i in range(reps)]
        return sum(leanpath.simulate(model, v).events for v in values) / reps
    with count_simpy_events() as counts:
        capsim_loop(model, reps)
    return counts["scheduled"] / reps


def reference_loop(n_sites: int, reps: int) -> list[dict]:
    return [run_reference(n_sites, seed=REF_SEED + i) for i in range(reps)]


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def capsim_exe() -> str:
    """The ``capsim`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "capsim"
    return str(beside) if beside.exists() else (shutil.which("capsim") or "capsim")


def check(value: float, target: float, higher_is_better: bool = True) -> bool:
    return value >= target if higher_is_better else value < target


# -- sections ------------------------------------------------------------------------------------


def agreement(cfg: argparse.Namespace) -> dict:
    """Item 2: the distribution of the last commission (and of the HBM wait by class) in both."""
    n, reps = 50, cfg.agree_reps
    model = Model(capsim_scenario(n))
    commission = commission_tasks(model)
    hbm = stage_tasks(model, "hbm")
    index = {info.spec.name: info.index for info in model.sites}
    cap_last, cap_wait, unfinished = [], [], 0
    for run in capsim_loop(model, reps):
        unfinished += not run.finished
        cap_last.append(float(run.finish[commission].max()))
        granted = np.full(n, np.nan)
        for event in run.world:
            if event.kind == "hbm_allocated":
                granted[index[event.subject]] = event.time
        cap_wait.append(granted - run.ready[hbm])
    ref_last, ref_wait = [], []
    for out in reference_loop(n, reps):
        ref_last.append(max(out["commission"]))
        ref_wait.append(np.array(out["hbm_grant"]) - np.array(out["hbm_ready"]))
    cap_last, ref_last = np.array(cap_last), np.array(ref_last)
    cap_wait, ref_wait = np.array(cap_wait), np.array(ref_wait)

    def summary(x: np.ndarray) -> dict:
        return {
            "mean": float(x.mean()),
            "sd": float(x.std(ddof=1)),
            "se_mean": float(x.std(ddof=1) / math.sqrt(len(x))),
            "P50": float(np.percentile(x, 50)),
            "P90": float(np.percentile(x, 90)),
        }

    rng = np.random.default_rng(0)
    boot = [
        np.percentile(rng.choice(cap_last, len(cap_last)), 90)
        - np.percentile(rng.choice(ref_last, len(ref_last)), 90)
        for _ in range(2000)
    ]
    diff = cap_last.mean() - ref_last.mean()
    se = math.hypot(cap_last.std(ddof=1) / math.sqrt(reps), ref_last.std(ddof=1) / math.sqrt(reps))
    return {
        "replications_each": reps,
        "capsim_unfinished": unfinished,
        "last_commission_days": {"capsim": summary(cap_last), "reference": summary(ref_last)},
        "mean_difference": float(diff),
        "mean_difference_z": float(diff / se),
        "P90_difference": float(np.percentile(cap_last, 90) - np.percentile(ref_last, 90)),
        "P90_difference_95ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "hbm_wait_by_class_days": {
            "capsim": [float(np.nanmean(cap_wait[:, k::3])) for k in range(3)],
            "reference": [float(np.nanmean(ref_wait[:, k::3])) for k in range(3)],
        },
    }


def throughput(cfg: argparse.Namespace) -> dict:
    """(a) replications per CPU second at 50 sites: capsim's loop and monte_carlo(workers=1) vs
    the reference; also capsim with a 30-year horizon (it always simulates up to the horizon)."""
    n = 50
    scenario = capsim_scenario(n)
    model = Model(scenario)
    model30 = Model(capsim_scenario(n, horizon_days=30 * 365.25))
    cap_reps, ref_reps = cfg.cap_reps, cfg.ref_reps
    capsim_loop(model, 3), reference_loop(n, 3), capsim_loop(model30, 3)  # warm up
    monte_carlo(scenario, reps=10, seed=SEED, workers=1)
    rounds = []
    for _ in range(cfg.rounds):
        t_ref = cpu_timed(lambda: reference_loop(n, ref_reps))
        t_cap = cpu_timed(lambda: capsim_loop(model, cap_reps))
        t_one = cpu_timed(lambda: replication_loop(model, cap_reps))
        t_mc = cpu_timed(lambda: monte_carlo(scenario, reps=cap_reps, seed=SEED, workers=1))
        t_30y = cpu_timed(lambda: capsim_loop(model30, ref_reps))
        rounds.append(
            {
                "reference": ref_reps / t_ref,
                "capsim": cap_reps / t_cap,
                "replication": cap_reps / t_one,
                "monte_carlo": cap_reps / t_mc,
                "capsim_30y": ref_reps / t_30y,
            }
        )
    rates = {k: median([r[k] for r in rounds]) for k in rounds[0]}
    ratios = {
        k: median([r[k] / r["reference"] for r in rounds])
        for k in ("capsim", "replication", "monte_carlo", "capsim_30y")
    }
    with count_simpy_events() as cap_counts:
        capsim_loop(model, 20)
    with count_simpy_events() as ref_counts:
        ref_events = [out["events"] for out in reference_loop(n, 20)]
    events = {
        "capsim_scheduled": cap_counts["scheduled"] / 20,
        "capsim_processed": cap_counts["processed"] / 20,
        "reference_scheduled": ref_counts["scheduled"] / 20,
        "reference_processed": float(np.mean(ref_events)),
        "run_chunk": run_chunk_events(model, 20),
    }
    return {
        "sites": n,
        "capsim_replications": cap_reps,
        "reference_replications": ref_reps,
        "horizon_days": scenario.horizon,
        "rounds": rounds,
        "replications_per_s": rates,
        "ratio_vs_reference": ratios,
        "events_per_replication": events,
        "path": chunk_path(model),
        # events per CPU second of one replication of the path capsim mc takes (drawn and
        # simulated, no row), of capsim mc itself, and of the engine's loop
        "capsim_events_per_s": events["run_chunk"] * rates["replication"],
        "monte_carlo_events_per_s": events["run_chunk"] * rates["monte_carlo"],
        "engine_events_per_s": events["capsim_scheduled"] * rates["capsim"],
        "reference_events_per_s": events["reference_processed"] * rates["reference"],
        "target": 8.0,
        "ok": ratios["monte_carlo"] >= 8.0,
    }


def large(cfg: argparse.Namespace, small: dict | None) -> dict:
    """(b) one replication of many sites, CPU seconds: capsim vs the reference; capsim's events
    per CPU second against its 50-site figure."""
    n = cfg.large_sites
    t0 = time.perf_counter()
    scenario = capsim_scenario(n)
    t_parse = time.perf_counter() - t0
    model = Model(scenario)
    t_compile = time.perf_counter() - t0 - t_parse
    rounds, finished = [], True
    replication_loop(model, 1), run_chunk(scenario, None, SEED, 0, 1)  # compiled once, as in mc
    for r in range(cfg.large_rounds):
        t_ref = cpu_timed(lambda r=r: run_reference(n, seed=REF_SEED + r))
        # one replication of the path capsim mc takes, drawn and simulated (as Model.run)
        t_cap = cpu_timed(lambda r=r: replication_loop(model, 1, first=r))
        chunks: list = []
        # the same end to end as capsim mc runs it: run_chunk (its row, tally and profile)
        t_chunk = cpu_timed(
            lambda r=r, chunks=chunks: chunks.append(run_chunk(scenario, None, SEED, r, r + 1))
        )
        finished &= bool(chunks[0].rows.frame()["finished"].all())
        t_eng = cpu_timed(lambda r=r: capsim_loop(model, 1, first=r))
        rounds.append(
            {"reference_s": t_ref, "capsim_s": t_cap, "run_chunk_s": t_chunk, "engine_s": t_eng,
             "ratio": t_ref / t_cap}
        )  # fmt: skip
    with count_simpy_events() as cap_counts:
        capsim_loop(model, 1)
    with count_simpy_events() as ref_counts:
        ref = run_reference(n, seed=REF_SEED)
    cap_s = median([r["capsim_s"] for r in rounds])
    ref_s = median([r["reference_s"] for r in rounds])
    ratio = median([r["ratio"] for r in rounds])
    events = run_chunk_events(model, 1)
    eps = events / cap_s
    out = {
        "sites": n,
        "horizon_days": scenario.horizon,
        "capsim_finished": bool(finished),
        "scenario_build_s": t_parse,
        "model_compile_s": t_compile,
        "rounds": rounds,
        "capsim_s": cap_s,
        "reference_s": ref_s,
        "ratio_vs_reference": ratio,
        "target": 15.0,
        "ok": ratio >= 15.0,
        "path": chunk_path(model),
        "engine_s": median([r["engine_s"] for r in rounds]),
        "run_chunk_s": median([r["run_chunk_s"] for r in rounds]),
        "capsim_events": {"run_chunk": events, **cap_counts},
        "reference_events": {"scheduled": ref_counts["scheduled"], "processed": ref["events"]},
        "capsim_events_per_s": eps,
        "reference_events_per_s": ref["events"] / ref_s,
    }
    if small is not None:
        scaling = eps / small["capsim_events_per_s"]
        out["events_per_s_vs_50_sites"] = scaling
        out["scaling_target"] = 0.8
        out["scaling_ok"] = scaling >= 0.8
    return out


def parallel(cfg: argparse.Namespace) -> dict:
    """(c) monte_carlo with 2 worker processes against 1."""
    scenario = capsim_scenario(50)
    reps = cfg.mc_reps
    monte_carlo(scenario, reps=10, seed=SEED, workers=1)
    kept = LocalExecutor(2)  # a pool that outlives one run, as compare and order share theirs
    monte_carlo(scenario, reps=200, seed=SEED, executor=kept)
    rounds = []
    for _ in range(cfg.mc_rounds):
        c0, l0 = time.process_time(), load()
        t1 = timed(lambda: monte_carlo(scenario, reps=reps, seed=SEED, workers=1))
        cpu1 = time.process_time() - c0
        running = multiprocessing.active_children()  # the kept pool's
        c0, k0 = time.process_time(), children_cpu(running)
        t2 = timed(lambda: monte_carlo(scenario, reps=reps, seed=SEED, workers=2))
        cpu2 = time.process_time() - c0 + children_cpu(running) - k0
        t3 = timed(lambda: monte_carlo(scenario, reps=reps, seed=SEED, executor=kept))
        rounds.append(
            {
                "workers1_s": t1,
                "workers2_s": t2,
                "speedup": t1 / t2,
                "workers1_cpu_s": cpu1,
                "workers2_cpu_s": cpu2,  # the parent's and the workers' CPU
                "workers2_started_s": t3,  # the pool already started
                "speedup_started": t1 / t3,
                "load_before": l0,
            }
        )
    kept.close()
    # ten times as many replications: starting the second process (fork, then each process's
    # first writes to pages they share, ~2.5 us a page here) weighs a tenth as much
    larger = []
    for _ in range(max(1, cfg.mc_rounds // 2)):
        t1 = timed(lambda: monte_carlo(scenario, reps=10 * reps, seed=SEED, workers=1))
        t2 = timed(lambda: monte_carlo(scenario, reps=10 * reps, seed=SEED, workers=2))
        larger.append({"workers1_s": t1, "workers2_s": t2, "speedup": t1 / t2})
    speedup = median([r["speedup"] for r in rounds])
    efficiency = median([r["workers1_cpu_s"] / r["workers2_cpu_s"] for r in rounds])
    return {
        "replications": reps,
        "larger": {
            "replications": 10 * reps,
            "rounds": larger,
            "workers1_s": median([r["workers1_s"] for r in larger]),
            "workers2_s": median([r["workers2_s"] for r in larger]),
            "speedup": median([r["speedup"] for r in larger]),
        },
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "workers1_s": median([r["workers1_s"] for r in rounds]),
        "workers2_s": median([r["workers2_s"] for r in rounds]),
        "speedup": speedup,
        "speedup_started": median([r["speedup_started"] for r in rounds]),
        # CPU of one worker's run over the total CPU of the two workers' run: the speed-up two
        # idle cores would give is at most 2x this (less the wait for the last chunk)
        "cpu_efficiency": efficiency,
        "target": 1.6,
        "ok": speedup >= 1.6,
    }


def _watch(cmd: list[str], cwd: Path, poll: float = 0.2) -> dict:
    """Run ``cmd`` and poll its process tree: peak summed RSS, and peak summed PSS (which counts
    pages shared between the forked workers once; sampled about once a second)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peak_rss = peak_pss = peak_root = 0
    peak_rss_at = 0.0
    most = 0
    last_pss = 0.0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss, pss_due = 0, time.perf_counter() - last_pss >= 1.0
        pss = 0
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                own = p.memory_info().rss
                rss += own
                if p is root:
                    peak_root = max(peak_root, own)
                if pss_due:
                    pss += p.memory_full_info().pss
        if rss > peak_rss:
            peak_rss, peak_rss_at = rss, time.perf_counter() - t0
        if pss_due:
            peak_pss, last_pss = max(peak_pss, pss), time.perf_counter()
        most = max(most, len(tree))
        time.sleep(poll)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return {
        "returncode": proc.returncode,
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": peak_rss / 2**20,
        "peak_rss_at_s": peak_rss_at,
        "peak_pss_mb": peak_pss / 2**20,
        "peak_main_process_rss_mb": peak_root / 2**20,
        "processes": most,
        "stderr_tail": stderr[-500:] if proc.returncode else "",
    }


def memory(cfg: argparse.Namespace) -> dict:
    """(d) peak memory of ``capsim mc <workload> --reps N --workers 2``, against a short run."""
    with tempfile.TemporaryDirectory(prefix="capsim-bench-") as tmp:
        folder = Path(tmp)
        scenario = write_yaml(folder / "workload.yaml", 50)
        runs = {}
        for label, reps in (("baseline", cfg.memory_baseline_reps), ("full", cfg.memory_reps)):
            out = folder / f"out-{label}"
            cmd = [capsim_exe(), "mc", str(scenario), "--reps", str(reps), "--workers", "2"]
            runs[label] = {"reps": reps, **_watch([*cmd, "--out", str(out)], folder)}
    full, base = runs["full"], runs["baseline"]
    return {
        **runs,
        "ratio_vs_baseline": (
            full["peak_rss_mb"] / base["peak_rss_mb"] if base["peak_rss_mb"] else None
        ),
        "target_mb": 500,
        "ok": full["returncode"] == 0 and full["peak_rss_mb"] < 500,
    }


@contextlib.contextmanager
def engine_only():
    """Run chunks in this process as they run when neither array path applies: the fast and
    lean paths switched off (the engine computes every replication, in chunks of 100)."""
    saved = fastpath.eligible, leanpath.eligible
    fastpath.eligible = leanpath.eligible = lambda model: False
    try:
        yield
    finally:
        fastpath.eligible, leanpath.eligible = saved


def fast(cfg: argparse.Namespace) -> dict:
    """(f) the vectorised fast path against capsim's own discrete-event engine, on the workload
    without shared resources (``workload.precedence_scenario``): replications per CPU second of
    the same ``monte_carlo`` run on either (the same results: checked), and of the chunk work
    alone (rows and stage tally; no profiles) against the engine's."""
    import pandas as pd

    scenario = precedence_scenario(50)
    model = Model(scenario)
    assert chunk_path(model) == "fastpath"
    reps, engine_reps = cfg.fast_reps, cfg.ref_reps
    monte_carlo(scenario, reps=10, seed=SEED)  # warm: imports, caches
    rounds, results = [], {}

    def run(key: str) -> None:
        results[key] = monte_carlo(scenario, reps=reps, seed=SEED)

    for _ in range(cfg.rounds):
        t_mc = cpu_timed(lambda: run("fast"))
        with engine_only():
            t_mc_engine = cpu_timed(lambda: run("engine"))
        t_raw = cpu_timed(lambda: fastpath.simulate_chunk(model, SEED, 0, reps))
        t_engine = cpu_timed(lambda: engine_rows(model, engine_reps))
        rounds.append(
            {
                "mc_reps_per_s": reps / t_mc,
                "mc_engine_reps_per_s": reps / t_mc_engine,
                "raw_reps_per_s": reps / t_raw,
                "engine_reps_per_s": engine_reps / t_engine,
                "ratio": t_mc_engine / t_mc,
                "raw_ratio": (reps / t_raw) / (engine_reps / t_engine),
                "mc_vs_rows_ratio": (reps / t_mc) / (engine_reps / t_engine),
            }
        )
    pd.testing.assert_frame_equal(
        results["fast"].replications, results["engine"].replications, check_exact=True
    )
    ratio = median([r["ratio"] for r in rounds])
    return {
        "sites": 50,
        "replications": reps,
        "engine_replications": engine_reps,
        "rounds": rounds,
        **{key: median([r[key] for r in rounds]) for key in rounds[0]},
        "ratio": ratio,
        "target": 50,
        "ok": ratio >= 50,
    }


def order(cfg: argparse.Namespace) -> dict:
    """(g) the ordering search (``capsim order``) on the shipped portfolio, its lab's 5 sites
    spaced 60 days apart (all 120 orderings and the scenario's own): scoring each ordering on
    the lean path against scoring it on the engine (CPU seconds, the same results: checked),
    and with 2 worker processes against 1 (wall seconds)."""
    import pandas as pd

    from capsim.loader import load_scenario, shipped_scenario
    from capsim.ordering import search

    scenario = load_scenario(shipped_scenario("portfolio"))
    reps = cfg.order_reps

    def run(workers: int = 1):
        return search(scenario, objective="p50:1 GW", reps=reps, seed=SEED, org="lab",
                      gap=60.0, workers=workers)  # fmt: skip

    run()  # warm: imports, caches
    rounds, results = [], {}
    for _ in range(cfg.rounds):
        t_path = cpu_timed(lambda: results.__setitem__("path", run()))
        with engine_only():
            t_engine = cpu_timed(lambda: results.__setitem__("engine", run()))
        w1 = timed(run)
        w2 = timed(lambda: run(workers=2))
        rounds.append({"path_cpu_s": t_path, "engine_cpu_s": t_engine, "ratio": t_engine / t_path,
                       "workers1_s": w1, "workers2_s": w2, "speedup": w1 / w2})  # fmt: skip
    pd.testing.assert_frame_equal(results["path"].table, results["engine"].table, check_exact=True)
    return {
        "orderings": len(results["path"].table) + 1,
        "replications": reps,
        "rounds": rounds,
        **{key: median([r[key] for r in rounds]) for key in rounds[0]},
    }


def startup(cfg: argparse.Namespace) -> dict:
    """(e) wall time of ``capsim --help``, against the bare interpreter's start."""
    help_cmd = [capsim_exe(), "--help"]
    bare_cmd = [sys.executable, "-c", "pass"]
    env = {**os.environ, "COLUMNS": "100"}

    def once(cmd: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env
        )
        return time.perf_counter() - t0

    once(help_cmd), once(bare_cmd)  # warm the file cache
    helps, bares = [], []
    for _ in range(cfg.help_runs):
        helps.append(once(help_cmd))
        bares.append(once(bare_cmd))
    t = median(helps)
    return {
        "runs": cfg.help_runs,
        "help_s": t,
        "python_startup_s": median(bares),
        "ratio_vs_python_startup": t / median(bares),
        "all_help_s": helps,
        "target_s": 0.4,
        "ok": t < 0.4,
    }


def profile(cfg: argparse.Namespace, top: int = 10) -> dict:
    """cProfile of 50-site replications as capsim mc runs them (run_chunk): the top functions by
    cumulative time."""
    scenario = capsim_scenario(50)
    run_chunk(scenario, None, SEED, 0, 1)
    profiler = cProfile.Profile()
    profiler.runcall(run_chunk, scenario, None, SEED, 0, cfg.profile_reps)
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("cumulative")
    stats.print_stats(top + 8)  # the first rows are the loop itself
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({name})",
                "calls": calls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
            }
        )
    rows.sort(key=lambda r: -r["cumtime_s"])
    return {"replications": cfg.profile_reps, "top_cumulative": rows[: top + 8]}


# -- the report ----------------------------------------------------------------------------------


def table(results: dict) -> str:
    lines = [f"{'figure':58} {'measured':>14} {'baseline':>14} {'ratio':>8} {'target':>9}  ok"]

    def row(name, measured, baseline, ratio, target, ok):
        lines.append(
            f"{name:58} {measured:>14} {baseline:>14} {ratio:>8} {target:>9}  "
            f"{'yes' if ok else 'NO' if ok is not None else ''}"
        )

    if (a := results.get("agreement")) is not None:
        c, r = a["last_commission_days"]["capsim"], a["last_commission_days"]["reference"]
        row(
            f"last commission mean, days ({a['replications_each']} reps each)",
            f"{c['mean']:.0f}±{c['se_mean']:.0f}",
            f"{r['mean']:.0f}±{r['se_mean']:.0f}",
            f"z={a['mean_difference_z']:+.1f}",
            "|z|<2",
            abs(a["mean_difference_z"]) < 2,
        )
        lo, hi = a["P90_difference_95ci"]
        row(
            "last commission P90, days",
            f"{c['P90']:.0f}",
            f"{r['P90']:.0f}",
            f"{a['P90_difference']:+.0f}",
            "CI has 0",
            lo <= 0 <= hi,
        )
        cw, rw = a["hbm_wait_by_class_days"]["capsim"], a["hbm_wait_by_class_days"]["reference"]
        row(
            "HBM wait by class 0/1/2, days",
            "/".join(f"{x:.0f}" for x in cw),
            "/".join(f"{x:.0f}" for x in rw),
            "",
            "",
            None,
        )
    if (a := results.get("throughput")) is not None:
        rate, ratio = a["replications_per_s"], a["ratio_vs_reference"]
        ref = f"{rate['reference']:.0f}/s"
        row(
            f"(a) capsim monte_carlo(workers=1) [{a.get('path', 'engine')}], reps per CPU s",
            f"{rate['monte_carlo']:.0f}/s",
            ref,
            f"{ratio['monte_carlo']:.2f}x",
            ">= 8x",
            ratio["monte_carlo"] >= 8,
        )
        if "replication" in rate:
            row(
                f"(a)   one replication [{a.get('path', 'engine')}] (no row), reps per CPU s",
                f"{rate['replication']:.0f}/s",
                ref,
                f"{ratio['replication']:.2f}x",
                "",
                None,
            )
        row(
            "(a)   the engine: Model.run loop, 50 sites, reps per CPU s",
            f"{rate['capsim']:.0f}/s",
            ref,
            f"{ratio['capsim']:.2f}x",
            "",
            None,
        )
        row(
            "(a)   the engine with a 30-year horizon, reps per CPU s",
            f"{rate['capsim_30y']:.0f}/s",
            ref,
            f"{ratio['capsim_30y']:.2f}x",
            "",
            None,
        )
        e = a["events_per_replication"]
        row(
            "(a) SimPy events per replication (capsim: scheduled)",
            f"{e['capsim_scheduled']:.0f}",
            f"{e['reference_processed']:.0f}",
            "",
            "",
            None,
        )
        row(
            "(a) events per CPU s: one replication (as (b)), the reference",
            f"{a['capsim_events_per_s']:,.0f}",
            f"{a['reference_events_per_s']:,.0f}",
            "",
            "",
            None,
        )
    if (b := results.get("large")) is not None:
        row(
            f"(b) one replication of {b['sites']} sites [{b.get('path', 'engine')}], CPU s",
            f"{b['capsim_s']:.3f}",
            f"{b['reference_s']:.3f}",
            f"{b['ratio_vs_reference']:.2f}x",
            ">= 15x",
            b["ok"],
        )
        if "run_chunk_s" in b:
            row(
                "(b)   the same through run_chunk (row, tally, profile), CPU s",
                f"{b['run_chunk_s']:.3f}",
                f"{b['reference_s']:.3f}",
                f"{b['reference_s'] / b['run_chunk_s']:.2f}x",
                "",
                None,
            )
        if "engine_s" in b:
            row(
                "(b)   the engine: Model.run, CPU s",
                f"{b['engine_s']:.3f}",
                f"{b['reference_s']:.3f}",
                f"{b['reference_s'] / b['engine_s']:.2f}x",
                "",
                None,
            )
        if "events_per_s_vs_50_sites" in b:
            small = results["throughput"]["capsim_events_per_s"]
            row(
                f"(b) events per CPU s of one replication, {b['sites']} vs 50 sites",
                f"{b['capsim_events_per_s']:,.0f}",
                f"{small:,.0f}",
                f"{b['events_per_s_vs_50_sites']:.2f}",
                ">= 0.8",
                b["scaling_ok"],
            )
        row(
            f"(b) {b['sites']}-site scenario validation + Model compile, s",
            f"{b['scenario_build_s'] + b['model_compile_s']:.2f}",
            "",
            "",
            "",
            None,
        )
    if (c := results.get("parallel")) is not None:
        row(
            f"(c) monte_carlo {c['replications']} reps, workers=2 vs 1, s",
            f"{c['workers2_s']:.2f}",
            f"{c['workers1_s']:.2f}",
            f"{c['speedup']:.2f}x",
            ">= 1.6x",
            c["ok"],
        )
        row(
            "(c)   the same, the 2-process pool already started, s",
            f"{median([r['workers2_started_s'] for r in c['rounds']]):.2f}",
            f"{c['workers1_s']:.2f}",
            f"{c['speedup_started']:.2f}x",
            "",
            None,
        )
        big = c["larger"]
        row(
            f"(c)   the same at {big['replications']} reps, s",
            f"{big['workers2_s']:.2f}",
            f"{big['workers1_s']:.2f}",
            f"{big['speedup']:.2f}x",
            "",
            None,
        )
        row(
            "(c)   CPU of workers=1 / total CPU of workers=2",
            "",
            "",
            f"{c['cpu_efficiency']:.2f}",
            "",
            None,
        )
    if (d := results.get("memory")) is not None:
        f, base = d["full"], d["baseline"]
        row(
            f"(d) capsim mc --reps {f['reps']} --workers 2: peak RSS, MB",
            f"{f['peak_rss_mb']:.0f}",
            f"{base['peak_rss_mb']:.0f}",
            f"{d['ratio_vs_baseline']:.2f}x",
            "< 500 MB",
            d["ok"],
        )
        for label, key in (
            ("peak PSS (pages shared by the workers once), MB", "peak_pss_mb"),
            ("peak RSS of the main process alone, MB", "peak_main_process_rss_mb"),
            ("wall time, s", "wall_s"),
        ):
            row(f"(d)   {label}", f"{f[key]:.0f}", f"{base[key]:.0f}", "", "", None)
    if (e := results.get("startup")) is not None:
        row(
            "(e) capsim --help, s",
            f"{e['help_s']:.3f}",
            f"{e['python_startup_s']:.3f}",
            f"{e['ratio_vs_python_startup']:.1f}x",
            "< 0.4 s",
            e["ok"],
        )
    if (fp := results.get("fast")) is not None:
        row(
            f"(f) monte_carlo {fp['replications']} reps, fast path vs engine, reps per CPU s",
            f"{fp['mc_reps_per_s']:.0f}/s",
            f"{fp['mc_engine_reps_per_s']:.0f}/s",
            f"{fp['ratio']:.1f}x",
            ">= 50x",
            fp["ok"],
        )
        row(
            "(f)   chunk work alone: simulate_chunk vs the engine's rows and tally",
            f"{fp['raw_reps_per_s']:.0f}/s",
            f"{fp['engine_reps_per_s']:.0f}/s",
            f"{fp['raw_ratio']:.1f}x",
            "",
            None,
        )
        row(
            "(f)   monte_carlo on the fast path vs the engine's rows and tally alone",
            f"{fp['mc_reps_per_s']:.0f}/s",
            f"{fp['engine_reps_per_s']:.0f}/s",
            f"{fp['mc_vs_rows_ratio']:.1f}x",
            "",
            None,
        )
    if (g := results.get("order")) is not None:
        row(
            f"(g) capsim order, {g['orderings']} orderings x {g['replications']} reps: "
            "lean path vs engine, CPU s",
            f"{g['path_cpu_s']:.2f}",
            f"{g['engine_cpu_s']:.2f}",
            f"{g['ratio']:.1f}x",
            "",
            None,
        )
        row(
            "(g)   the same on the lean path, workers=2 vs 1, wall s",
            f"{g['workers2_s']:.2f}",
            f"{g['workers1_s']:.2f}",
            f"{g['speedup']:.2f}x",
            "",
            None,
        )
    return "\n".join(lines)


SECTIONS = {
    "agreement": "distribution check, capsim vs reference (item 2)",
    "throughput": "(a) replications/s at 50 sites  [slow: ~30-40 s]",
    "large": "(b) one large replication, events/s scaling  [slow: ~10-20 s]",
    "parallel": "(c) monte_carlo workers=2 vs 1  [slow: ~1 min]",
    "memory": "(d) peak memory of capsim mc --reps 100000  [slow: minutes; only with --memory]",
    "startup": "(e) capsim --help wall time",
    "fast": "(f) the vectorised fast path vs capsim's engine",
    "order": "(g) the ordering search on the lean path vs the engine  [slow: ~30 s]",
    "profile": "cProfile of the 50-site case  [only with --profile]",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="sections: " + "; ".join(f"{k}: {v}" for k, v in SECTIONS.items()),
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes: a smoke check")
    parser.add_argument("--memory", action="store_true", help="also run (d), which takes minutes")
    parser.add_argument("--profile", action="store_true", help="also profile the 50-site case")
    parser.add_argument(
        "--only", help="comma-separated sections to run (default: all that apply)", default=""
    )
    parser.add_argument(
        "--rounds", type=int, help="alternations of capsim and its baseline (default 3, 2 for (c))"
    )
    parser.add_argument(
        "--parallel-reps",
        dest="mc_reps",
        type=int,
        help="replications of (c) (default 2000, the target's size)",
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "results.json", help="where to write the results"
    )
    cfg = parser.parse_args(argv)
    quick = cfg.quick
    defaults = {
        "rounds": 1 if quick else 3,
        "agree_reps": 30 if quick else 200,
        "cap_reps": 100 if quick else 1000,
        "ref_reps": 20 if quick else 200,
        "large_sites": 500 if quick else 5000,
        "large_rounds": 1 if quick else 3,
        "mc_reps": 200 if quick else 2000,
        "mc_rounds": 1 if quick else 2,
        "memory_reps": 5000 if quick else 100_000,
        "memory_baseline_reps": 500 if quick else 2000,
        "help_runs": 3 if quick else 5,
        "profile_reps": 50 if quick else 300,
        "fast_reps": 200 if quick else 2000,
        "order_reps": 10 if quick else 50,
    }
    if cfg.rounds is not None:
        defaults.update(large_rounds=cfg.rounds, mc_rounds=cfg.rounds)
    for key, value in defaults.items():
        if getattr(cfg, key, None) is None:
            setattr(cfg, key, value)
    wanted = [s for s in cfg.only.split(",") if s] or [
        s for s in SECTIONS if (s != "memory" or cfg.memory) and (s != "profile" or cfg.profile)
    ]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    results: dict = {
        "meta": {
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "quick": quick,
            "capsim_version": capsim.__version__,
            "git_commit": git_commit(),
            "python": platform.python_version(),
            "simpy": simpy.__version__,
            "numpy": np.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "section_seconds": {},
            "load_average_before": {},
        }
    }
    started = time.perf_counter()
    for name in wanted:
        busy = load()
        results["meta"]["load_average_before"][name] = round(busy, 2)
        note = f"  [load average {busy:.1f} on {os.cpu_count()} CPUs: wall times unreliable]"
        print(f"-- {name}: {SECTIONS[name]}{note if busy > 0.8 else ''}", flush=True)
        t0 = time.perf_counter()
        if name == "large":
            results[name] = large(cfg, results.get("throughput"))
        else:
            results[name] = globals()[name](cfg)
        took = time.perf_counter() - t0
        results["meta"]["section_seconds"][name] = round(took, 2)
        print(f"   {took:.1f} s{'  (slow)' if took > 30 else ''}", flush=True)
    results["meta"]["total_seconds"] = round(time.perf_counter() - started, 2)

    print()
    print(table(results))
    if "profile" in results:
        print(f"\ncProfile, {cfg.profile_reps} replications of 50 sites, by cumulative time:")
        for r in results["profile"]["top_cumulative"]:
            print(
                f"  {r['cumtime_s']:8.3f} s cum {r['tottime_s']:8.3f} s own "
                f"{r['calls']:>9} calls  {r['function']}"
            )
    busiest = max(results["meta"]["load_average_before"].values(), default=0.0)
    if busiest > 0.8:
        print(
            f"\nThe machine was busy (load average up to {busiest:.1f} on {os.cpu_count()} CPUs): "
            "(a) and (b) use CPU time and hold up, (c), (d) and (e) are wall times and do not."
        )
    print(f"\ntotal {results['meta']['total_seconds']:.0f} s; results in {cfg.output}")
    cfg.output.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
