"""Monte Carlo experiments, strategy comparison and rollout ordering.

Reproducibility whatever the workers, chunking or executor; resuming after lost chunks and after a
real ``kill -9``; folders that belong to another run; failed replications; the summary statistics
recomputed by hand; early stopping; common random numbers in ``compare``; the ordering search; a
real Dask LocalCluster; and the command line's answers to bad input.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import Outcome, flat, run_cli_in_process

from capsim import experiments, fastpath, leanpath, replications
from capsim.comparison import Comparison, compare
from capsim.errors import CapsimError
from capsim.executors import DaskExecutor, Executor, LocalExecutor
from capsim.experiments import MonteCarloResult, monte_carlo
from capsim.loader import load_scenario, parse_scenario
from capsim.model import Model, replication_rng
from capsim.ordering import evaluate, parse_objective, search
from capsim.replications import StageTally, replication_row, run_chunk
from capsim.results import stage_table
from capsim.units import DAYS_PER

CAPSIM = str(Path(sys.executable).with_name("capsim"))
ROOT = Path(__file__).resolve().parents[1]
GREENFIELD = "scenarios/greenfield-campus.yaml"
PORTFOLIO = "scenarios/portfolio.yaml"
STARGATE = "scenarios/stargate-pivot.yaml"
LAB_SITES = ("uk-cobalt", "narvik", "us-campus")  # the lab's sites of stargate's build, file order


def capsim(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CAPSIM, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def greenfield():
    return load_scenario(ROOT / GREENFIELD)


@pytest.fixture(scope="module")
def portfolio():
    return load_scenario(ROOT / PORTFOLIO)


@pytest.fixture(scope="module")
def stargate():
    return load_scenario(ROOT / STARGATE)


@pytest.fixture(scope="module")
def greenfield_250(greenfield) -> MonteCarloResult:
    """The reference: 250 replications of seed 5, one in-process worker, default chunks."""
    return monte_carlo(greenfield, reps=250, seed=5)


def assert_same_replications(a: MonteCarloResult, b: MonteCarloResult) -> None:
    pd.testing.assert_frame_equal(a.replications, b.replications, check_exact=True)


def assert_same_stages(a: MonteCarloResult, b: MonteCarloResult, exact: bool = True) -> None:
    pd.testing.assert_frame_equal(
        a.stages, b.stages, check_exact=exact, **({} if exact else {"rtol": 1e-9})
    )


# -- 1. reproducibility ---------------------------------------------------------------------------


def test_two_workers_give_the_same_replications(greenfield, greenfield_250) -> None:
    two = monte_carlo(greenfield, reps=250, seed=5, workers=2)
    assert list(two.replications["replication"]) == list(range(250))
    assert_same_replications(two, greenfield_250)
    assert_same_stages(two, greenfield_250)


def test_chunk_size_does_not_change_the_replications(
    greenfield, greenfield_250, monkeypatch
) -> None:
    monkeypatch.setattr(experiments, "CHUNK_SIZE", 7)
    small = monte_carlo(greenfield, reps=250, seed=5)
    assert_same_replications(small, greenfield_250)
    # the per-stage tallies are sums over chunks: equal up to rounding
    assert_same_stages(small, greenfield_250, exact=False)


class ScrambledExecutor(Executor):
    """Runs chunks in this process but hands them back out of order: each run of three chunks
    last first."""

    def map_chunks(self, tasks, work, large=()):
        for start, stop in sorted(tasks, key=lambda task: (task[0] // 300, -task[0])):
            yield start, work(start=start, stop=stop)


def test_the_order_chunks_complete_in_changes_nothing(greenfield, greenfield_250) -> None:
    scrambled = monte_carlo(greenfield, reps=250, seed=5, executor=ScrambledExecutor())
    assert_same_replications(scrambled, greenfield_250)
    assert_same_stages(scrambled, greenfield_250)  # summed in replication order all the same
    stable = monte_carlo(greenfield, reps=3000, seed=2, until_stable=0.5)
    out_of_order = monte_carlo(
        greenfield, reps=3000, seed=2, until_stable=0.5, executor=ScrambledExecutor()
    )
    assert len(out_of_order.replications) == 1000
    assert_same_replications(out_of_order, stable)
    assert_same_stages(out_of_order, stable)  # chunks done beyond the stop are left out
    assert (out_of_order.stage_sums["replications"] == 1000).all()


@pytest.mark.parametrize("replication", [0, 3, 99, 100, 249])
def test_replication_i_is_replication_row_computed_directly(
    greenfield, greenfield_250, replication: int
) -> None:
    direct = pd.Series(replication_row(Model(greenfield), 5, replication))
    stored = greenfield_250.replications.iloc[replication]
    assert stored["replication"] == replication
    assert list(stored.index) == list(direct.index)
    for key, value in direct.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(stored[key]), key
        else:
            assert stored[key] == value, key


def test_replication_row_of_a_strategy_matches_monte_carlo(stargate) -> None:
    result = monte_carlo(stargate, reps=3, seed=8, strategy="lease")
    direct = pd.DataFrame([replication_row(Model(stargate, "lease"), 8, i) for i in range(3)])
    pd.testing.assert_frame_equal(result.replications, direct, check_exact=True)


@pytest.fixture(scope="module")
def precedence_only():
    """greenfield-campus without its shared resources: eligible for the vectorised fast path."""
    doc = yaml.safe_load((ROOT / GREENFIELD).read_text())
    doc.pop("resources")
    for pipeline in doc["pipelines"].values():
        for stage in pipeline["stages"].values():
            stage.pop("needs", None)
    return parse_scenario(doc)


def test_fast_path_rows_are_the_engines(precedence_only, monkeypatch) -> None:
    model = Model(precedence_only)
    assert fastpath.eligible(model)
    monkeypatch.setattr(experiments, "CHUNK_SIZE", 70)
    result = monte_carlo(precedence_only, reps=150, seed=5)
    tally = StageTally(model)
    direct = pd.DataFrame([replication_row(model, 5, i, tally) for i in range(150)])
    pd.testing.assert_frame_equal(result.replications, direct, check_exact=True)
    engine = tally.table().frame().set_index("task")
    pd.testing.assert_frame_equal(
        result.stage_sums.astype(float), engine.astype(float), check_exact=False, rtol=1e-9
    )


def test_different_seeds_differ(greenfield, greenfield_250) -> None:
    other = monte_carlo(greenfield, reps=250, seed=6)
    a = greenfield_250.replications["t_all_online"].to_numpy()
    b = other.replications["t_all_online"].to_numpy()
    assert not np.any(a == b)
    # ... and replications of one seed differ from each other
    assert len(set(a)) == len(a)


def test_capsim_run_replication_reproduces_a_monte_carlo_replication(
    tmp_path: Path, greenfield, monkeypatch, capsys
) -> None:
    expected = monte_carlo(greenfield, reps=4, seed=9).replications.iloc[3]
    args = ["run", GREENFIELD, "--seed", "9", "--replication", "3", "--out", str(tmp_path)]
    result = run_cli_in_process(args, monkeypatch, capsys)
    assert result.code == 0, result.stderr
    sites = pd.read_csv(tmp_path / "sites.csv").set_index("site")
    for site in sites.index:
        assert sites.loc[site, "online"] == pytest.approx(expected[f"online:{site}"], rel=1e-12)


# -- 2. resume: nothing lost ----------------------------------------------------------------------


def chunk_files(out: Path) -> dict[int, list[Path]]:
    """The chunk files of a Monte Carlo folder, by the first replication of their chunk."""
    files: dict[int, list[Path]] = {}
    for path in sorted((out / "chunks").glob("*.parquet")):
        files.setdefault(int(path.name.split(".")[0]), []).append(path)
    return files


class RecordingExecutor(LocalExecutor):
    """One in-process worker that remembers which chunks it was asked to run."""

    def __init__(self) -> None:
        super().__init__(1)
        self.asked: list[tuple[int, int]] = []

    def map_chunks(self, tasks, work, large=()):
        self.asked.extend(tasks)
        yield from super().map_chunks(tasks, work, large)


def test_resume_after_lost_chunks_recomputes_only_those(tmp_path: Path, greenfield) -> None:
    reference = monte_carlo(greenfield, reps=650, seed=5)
    out = tmp_path / "mc"
    first = monte_carlo(greenfield, reps=650, seed=5, out=out)
    assert_same_replications(first, reference)
    files = chunk_files(out)
    assert sorted(files) == list(range(0, 650, 100))

    for path in files[200]:  # a whole chunk lost
        path.unlink()
    for path in files[600]:  # the last, partial chunk lost
        path.unlink()
    rows = [p for p in files[400] if "rows" in p.name]
    assert rows, files[400]
    rows[0].unlink()  # a crash between a chunk's files: only its other files remain
    # stray temporary files of interrupted atomic writes
    (out / "chunks" / "000000300.rows.tmp").write_bytes(b"PAR1 half a parquet file")
    (out / "chunks" / "000000500.tmp").write_text("garbage")
    untouched = {p: p.stat().st_mtime_ns for s in (0, 100, 300, 500) for p in files[s]}

    executor = RecordingExecutor()
    resumed = monte_carlo(greenfield, reps=650, seed=5, out=out, executor=executor)
    assert sorted(executor.asked) == [(200, 300), (400, 500), (600, 650)]
    assert_same_replications(resumed, reference)
    assert_same_stages(resumed, reference)
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched
    assert sorted(chunk_files(out)) == list(range(0, 650, 100))

    # and a third run into the complete folder computes nothing
    executor = RecordingExecutor()
    again = monte_carlo(greenfield, reps=650, seed=5, out=out, executor=executor)
    assert executor.asked == []
    assert_same_replications(again, reference)
    assert_same_stages(again, reference)


def test_resume_with_more_replications_completes_the_partial_chunk(
    tmp_path: Path, greenfield, greenfield_250
) -> None:
    out = tmp_path / "mc"
    short = monte_carlo(greenfield, reps=150, seed=5, out=out)
    pd.testing.assert_frame_equal(
        short.replications, greenfield_250.replications.iloc[:150], check_exact=True
    )
    longer = monte_carlo(greenfield, reps=250, seed=5, out=out)
    assert_same_replications(longer, greenfield_250)
    assert_same_stages(longer, greenfield_250)


def test_resume_with_until_stable_is_the_fresh_result(tmp_path: Path, greenfield) -> None:
    fresh = monte_carlo(greenfield, reps=3000, seed=2, until_stable=0.5)
    out = tmp_path / "mc"
    monte_carlo(greenfield, reps=750, seed=2, out=out)  # chunks 0-700, the last one partial
    for path in chunk_files(out)[300]:
        path.unlink()
    resumed = monte_carlo(greenfield, reps=3000, seed=2, until_stable=0.5, out=out, workers=2)
    assert len(resumed.replications) == 1000
    assert_same_replications(resumed, fresh)
    assert_same_stages(resumed, fresh)
    for name, profile in fresh.profiles.items():
        pd.testing.assert_frame_equal(resumed.profiles[name], profile, check_exact=True)


def wait_for_a_chunk(process: subprocess.Popen, out: Path, within: float = 90) -> None:
    """Until ``process`` has completed a chunk into ``out`` (its rows file is written last)."""
    deadline = time.monotonic() + within
    while not list((out / "chunks").glob("*.rows.parquet")):
        assert process.poll() is None, "finished before a chunk was seen"
        assert time.monotonic() < deadline, f"no chunk written within {within:g} s"
        time.sleep(0.005)


def alive_in_session(session: int, within: float = 10.0) -> list[int]:
    """The processes of a session still running (not zombies) after up to ``within`` s."""
    import psutil  # with dask.distributed

    def alive() -> list[int]:
        found = []
        for proc in psutil.process_iter(["status"]):
            with contextlib.suppress(OSError, psutil.Error):
                if os.getsid(proc.pid) == session and proc.info["status"] != "zombie":
                    found.append(proc.pid)
        return found

    deadline = time.monotonic() + within
    while (found := alive()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def interruptible() -> None:
    """Ctrl-C as a terminal delivers it: a test run in the background (``&``, ``nohup``) ignores
    SIGINT, and a process started from it would too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_every_process_says_how_to_resume_and_resume_completes(tmp_path: Path):
    out = tmp_path / "mc"
    args = ["mc", STARGATE, "--strategy", "hybrid", "--reps", "400", "--seed", "3", "--out"]
    process = subprocess.Popen(
        [CAPSIM, *args, str(out), "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,  # its group, as a terminal's
        preexec_fn=interruptible,
    )  # fmt: skip
    try:
        wait_for_a_chunk(process, out)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err
    assert f"interrupted: the chunks completed so far are kept in {out}" in flat(err), err
    assert "Traceback" not in err, err
    assert not alive_in_session(process.pid), "a worker process outlived Ctrl-C"
    assert not (out / "replications.csv").exists()
    rerun = capsim(*args, str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert list(pd.read_csv(out / "replications.csv")["replication"]) == list(range(400))


@pytest.mark.slow  # three runs of 3,000 portfolio replications: ~13 s on an idle 2-core machine
def test_kill_9_then_rerun_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    args = [CAPSIM, "mc", PORTFOLIO, "--reps", "3000", "--seed", "9"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    quiet = {"cwd": ROOT, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    uninterrupted = subprocess.Popen([*args, "--out", str(clean)], **quiet)
    victim = subprocess.Popen([*args, "--out", str(killed)], **quiet)
    try:
        wait_for_a_chunk(victim, killed)
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    assert not (killed / "replications.csv").exists()
    kept = {p: p.stat().st_mtime_ns for p in (killed / "chunks").glob("*.rows.parquet")}
    assert 0 < len(kept) < 30

    rerun = capsim("mc", PORTFOLIO, "--reps", "3000", "--seed", "9", "--out", str(killed))
    assert rerun.returncode == 0, rerun.stderr
    assert uninterrupted.wait(timeout=180) == 0
    # chunks completed before the kill were reused, not recomputed
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    for name in ("replications.csv", "summary.csv", "costs_summary.csv"):
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name
    resumed = pd.read_csv(killed / "replications.csv")
    assert list(resumed["replication"]) == list(range(3000))
    stages = [pd.read_csv(d / "stages.csv") for d in (killed, clean)]
    pd.testing.assert_frame_equal(*stages, check_exact=False, rtol=1e-9)


# -- 3. a folder that is not this run's -----------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"seed": 2}, "seed"),
        ({"strategy": "lease"}, "strategy"),
        ({"scenario": "greenfield"}, "scenario"),
        ({"scenario": "edited"}, "fingerprint"),
    ],
)
def test_a_folder_of_another_run_is_refused(
    tmp_path: Path, stargate, greenfield, change: dict, differs: str
) -> None:
    out = tmp_path / "mc"
    monte_carlo(stargate, reps=3, seed=1, strategy="build", out=out)
    before = snapshot(out)
    run = {"scenario": stargate, "reps": 3, "seed": 1, "strategy": "build"}
    run.update(change)
    if change.get("scenario") == "greenfield":
        run.update(scenario=greenfield, strategy=None)
    elif change.get("scenario") == "edited":  # the same name, another scenario
        sites = list(stargate.sites)
        sites[0] = sites[0].model_copy(update={"mw": sites[0].mw + 1})
        run["scenario"] = stargate.model_copy(update={"sites": sites})
        assert run["scenario"].name == stargate.name
    with pytest.raises(CapsimError, match="holds another run's chunks") as error:
        monte_carlo(out=out, **run)
    assert differs in str(error.value)
    assert snapshot(out) == before


def test_cli_refuses_a_folder_of_another_seed_and_writes_nothing(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "mc"
    first = run_cli_in_process(
        ["mc", GREENFIELD, "--reps", "20", "--seed", "1", "--out", str(out)], monkeypatch, capsys
    )
    assert first.code == 0, first.stderr
    assert (out / "replications.csv").exists()
    before = snapshot(out)
    second = capsim("mc", GREENFIELD, "--reps", "20", "--seed", "2", "--out", str(out))
    assert second.returncode == 2
    assert "Traceback" not in second.stderr + second.stdout
    assert "holds another run's chunks" in flat(second.stderr)
    assert snapshot(out) == before


def test_cli_refuses_a_folder_of_an_edited_scenario(
    tmp_path: Path, greenfield, monkeypatch, capsys
) -> None:
    out = tmp_path / "mc"
    monte_carlo(greenfield, reps=10, seed=1, out=out)
    before = snapshot(out)
    doc = yaml.safe_load((ROOT / GREENFIELD).read_text())
    doc["sites"][0]["mw"] = 300
    edited = tmp_path / "greenfield-campus.yaml"
    edited.write_text(yaml.safe_dump(doc, sort_keys=False))
    args = ["mc", str(edited), "--reps", "10", "--seed", "1", "--out", str(out)]
    second = run_cli_in_process(args, monkeypatch, capsys)
    assert second.code == 2
    assert "Traceback" not in second.stderr
    assert "holds another run's chunks" in flat(second.stderr)
    assert "fingerprint" in flat(second.stderr)
    assert snapshot(out) == before


def test_a_folder_that_is_not_a_monte_carlo_folder_is_refused(
    tmp_path: Path, greenfield, monkeypatch, capsys
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(CapsimError, match="not a capsim Monte Carlo folder"):
        monte_carlo(greenfield, reps=5, seed=1, out=out)
    assert snapshot(out) == {"notes.txt": b"my notes"}
    args = ["mc", GREENFIELD, "--reps", "5", "--seed", "1", "--out", str(out)]
    result = run_cli_in_process(args, monkeypatch, capsys)
    assert result.code == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "not a capsim Monte Carlo folder" in flat(result.stderr)
    assert snapshot(out) == {"notes.txt": b"my notes"}


def test_an_empty_existing_folder_is_fine(tmp_path: Path, greenfield, greenfield_250) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    result = monte_carlo(greenfield, reps=30, seed=5, out=out)
    pd.testing.assert_frame_equal(
        result.replications, greenfield_250.replications.iloc[:30], check_exact=True
    )


# -- 4. failures are recorded ---------------------------------------------------------------------


def fail_replication(monkeypatch, bad: int | range) -> None:
    """Replication ``bad`` (or each of a range) raises on the engine; a chunk holding one raises
    on the fast and lean paths, so that the engine runs it again."""
    real_rng, real_uniforms = replications.replication_rng, fastpath.replication_uniforms
    bad = range(bad, bad + 1) if isinstance(bad, int) else bad

    def rng(seed: int, replication: int = 0):
        if replication in bad:
            raise RuntimeError("injected failure")
        return real_rng(seed, replication)

    def uniforms(seed: int, reps, n: int):
        if any(r in bad for r in reps):
            raise RuntimeError("injected failure")
        return real_uniforms(seed, reps, n)

    monkeypatch.setattr(replications, "replication_rng", rng)
    monkeypatch.setattr(fastpath, "replication_uniforms", uniforms)
    monkeypatch.setattr(leanpath, "replication_uniforms", uniforms)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_replication_is_recorded_and_the_rest_go_on(
    greenfield, greenfield_250, monkeypatch, workers: int
) -> None:
    fail_replication(monkeypatch, 3)
    result = monte_carlo(greenfield, reps=250, seed=5, workers=workers)
    rows = result.replications
    assert len(rows) == 250
    assert list(rows.loc[rows["failed"], "replication"]) == [3]
    failed = result.failed
    assert list(failed["replication"]) == [3]
    assert failed["error"].iloc[0].startswith("RuntimeError: injected failure")
    assert failed["t_all_online"].isna().all()
    # every other replication is exactly what it is without the failure
    ok = rows[rows["replication"] != 3]
    ref = greenfield_250.replications
    ref = ref[ref["replication"] != 3]
    assert (ok["error"] == "").all()
    for column in [c for c in ref.columns if c.startswith(("t_", "online:"))]:
        np.testing.assert_array_equal(ok[column].to_numpy(), ref[column].to_numpy())
    # summaries are over the replications that ran
    milestones = result.milestones
    assert milestones.loc["all sites online", "reached"] == 1.0
    expected = np.percentile(ref["t_all_online"], 50)
    assert milestones.loc["all sites online", "P50"] == day(greenfield, expected)


@pytest.mark.parametrize("bad", [3, 150])  # in the first chunk to arrive, in a later one
def test_a_chunk_with_a_failure_is_concatenated_as_pandas_does(
    greenfield, monkeypatch, bad: int
) -> None:
    fail_replication(monkeypatch, bad)
    result = monte_carlo(greenfield, reps=250, seed=5)
    chunks = [run_chunk(greenfield, None, 5, s, min(s + 100, 250)) for s in (0, 100, 200)]
    expected = pd.concat([chunk.rows.frame() for chunk in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(result.replications, expected, check_exact=True)
    # the failed row has no counts: that chunk's, and so the table's, are floats
    assert result.replications["n_paused"].dtype == float


def test_cli_reports_failures_with_a_reproduction_command(
    tmp_path: Path, greenfield, monkeypatch, capsys
) -> None:
    row = replication_row(Model(greenfield), 9, 3)  # what replication 3 is without the failure
    fail_replication(monkeypatch, 3)
    out = tmp_path / "mc"
    args = ["mc", GREENFIELD, "--reps", "20", "--seed", "9", "--out", str(out)]
    result = run_cli_in_process(args, monkeypatch, capsys)
    assert result.code == 0, result.stderr
    text = flat(result.stdout)
    assert "1 replication(s) failed" in text
    assert "RuntimeError: injected failure" in text
    command = re.search(r"capsim run (\S+) --seed (\d+) --replication (\d+)", text)
    assert command, text
    assert command.groups() == (GREENFIELD, "9", "3")
    rows = pd.read_csv(out / "replications.csv")
    assert list(rows.loc[rows["failed"], "replication"]) == [3]
    # the printed command runs, and runs that replication
    reproduce = run_cli_in_process(
        [*command.group(0).split()[1:], "--out", str(tmp_path / "one")], monkeypatch, capsys
    )
    assert reproduce.code == 0, reproduce.stderr
    sites = pd.read_csv(tmp_path / "one" / "sites.csv").set_index("site")
    for site in sites.index:
        assert sites.loc[site, "online"] == pytest.approx(row[f"online:{site}"], rel=1e-12)


def test_a_failing_replication_is_recorded_on_the_fast_path(precedence_only, monkeypatch) -> None:
    assert fastpath.eligible(Model(precedence_only))
    fail_replication(monkeypatch, 3)
    result = monte_carlo(precedence_only, reps=10, seed=1)
    assert list(result.failed["replication"]) == [3]
    assert len(result.replications) == 10


# -- 5. statistics by hand ------------------------------------------------------------------------


def day(scenario, t: float) -> pd.Timestamp:
    """The calendar day of model time ``t``: start + t time units, floored to the day."""
    days = t * DAYS_PER[scenario.time_unit]
    return (pd.Timestamp(scenario.start) + pd.Timedelta(days=days)).floor("D")


def column_of(name: str, scenario) -> str:
    """The replications column of a row of MonteCarloResult.milestones."""
    if name == "all sites online":
        return "t_all_online"
    labels = {m.label: m.column for m in scenario.milestones}
    if name in labels:
        return labels[name]
    return "online:" + name.removesuffix(" online")


BY = [pd.Timestamp(d) for d in ("2029-01-01", "2030-07-01", "2031-01-01", "2032-06-15")]


@pytest.fixture(scope="module")
def stargate_build_40(stargate) -> MonteCarloResult:
    return monte_carlo(stargate, reps=40, seed=3, strategy="build", by=BY)


@pytest.mark.parametrize("which", ["greenfield", "stargate"])
def test_milestone_statistics_by_hand(greenfield, which: str, stargate_build_40, stargate) -> None:
    if which == "greenfield":
        scenario = greenfield
        result = monte_carlo(greenfield, reps=300, seed=11, by=BY)
    else:
        scenario, result = stargate, stargate_build_40
    days_per = DAYS_PER[scenario.time_unit]
    table = result.milestones
    rows = result.replications
    expected_rows = (
        [m.label for m in scenario.milestones]
        + ["all sites online"]
        + [c.removeprefix("online:") + " online" for c in rows if c.startswith("online:")]
    )
    assert list(table.index) == expected_rows
    checked_by = 0
    for name in table.index:
        times = rows[column_of(name, scenario)].to_numpy(dtype=float)
        stats = table.loc[name]
        reached = times[~np.isnan(times)]
        assert stats["reached"] == pytest.approx(len(reached) / len(times))
        if len(reached):
            for key, q in (("P10", 10), ("P50", 50), ("P90", 90)):
                assert stats[key] == day(scenario, np.percentile(reached, q)), (name, key)
            assert stats["mean"] == day(scenario, reached.mean())
            half = 1.96 * reached.std(ddof=1) / math.sqrt(len(reached)) * days_per
            assert stats["mean 95% CI ±days"] == pytest.approx(half, rel=1e-9)
        else:
            assert pd.isna(stats.get("P50"))
        dates = pd.Series([day(scenario, t) if not np.isnan(t) else pd.NaT for t in times])
        for date in BY:
            if (dates == date).any():
                continue  # reached on that very day: see test_p_by_the_day_a_milestone_is_reached
            share = float((dates.notna() & (dates <= date)).mean())
            assert stats[f"P(by {date.date()})"] == pytest.approx(share), (name, date)
            checked_by += 1
    assert checked_by >= len(table.index)


def test_p_by_the_day_a_milestone_is_reached(greenfield, greenfield_250) -> None:
    times = greenfield_250.replications["t_all_online"]
    latest = day(greenfield, times.max())  # the day the last replication had all sites online
    result = monte_carlo(greenfield, reps=250, seed=5, by=[latest])
    stats = result.milestones.loc["all sites online"]
    assert stats["reached"] == 1.0
    # every replication's date in this table is <= latest, so every one is "by" it
    assert stats[f"P(by {latest.date()})"] == 1.0


def test_costs_percentiles_match_pandas(stargate_build_40) -> None:
    result = stargate_build_40
    ok = result.replications
    table = result.costs
    assert list(table.index) == ["capex", "opex", "npv_cost", "usd_per_gpu_hour"]
    assert list(table.columns) == ["10%", "50%", "90%", "mean"]
    for cost in table.index:
        values = ok[cost].to_numpy(dtype=float)
        assert not np.isnan(values).any()
        for column, q in (("10%", 10), ("50%", 50), ("90%", 90)):
            assert table.loc[cost, column] == pytest.approx(np.percentile(values, q), rel=1e-12)
        assert table.loc[cost, "mean"] == pytest.approx(values.mean(), rel=1e-12)


def test_no_costs_without_a_perspective_org(greenfield_250) -> None:
    assert greenfield_250.costs.empty


# -- 6. until_stable ------------------------------------------------------------------------------


def test_until_stable_stops_at_a_checkpoint_whatever_the_workers(greenfield) -> None:
    one = monte_carlo(greenfield, reps=3000, seed=2, until_stable=0.5)
    two = monte_carlo(greenfield, reps=3000, seed=2, until_stable=0.5, workers=2)
    n = len(one.replications)
    assert n % 500 == 0 and 500 <= n < 3000
    assert n == 1000  # the first checkpoint that has one before it to compare with
    assert list(one.replications["replication"]) == list(range(n))
    assert_same_replications(two, one)
    assert_same_stages(two, one)
    # the stopped run is the first n replications of a full run
    full = monte_carlo(greenfield, reps=n, seed=2)
    assert_same_replications(one, full)
    assert (one.stage_sums["replications"] == n).all()


def test_until_stable_on_the_fast_path_checks_at_whole_chunks(precedence_only) -> None:
    """The fast path's chunks hold 1,000 replications: its checkpoints are every 1,000, so the
    replications kept are exactly those the stop was decided on."""
    stable = monte_carlo(precedence_only, reps=5000, seed=2, until_stable=0.5)
    n = len(stable.replications)
    assert n == 2000  # the second checkpoint: the first one with one before it
    assert_same_replications(stable, monte_carlo(precedence_only, reps=n, seed=2))
    assert (stable.stage_sums["replications"] == n).all()


def test_until_stable_with_a_tiny_tolerance_runs_every_replication(greenfield) -> None:
    result = monte_carlo(greenfield, reps=1100, seed=2, until_stable=1e-12)
    assert len(result.replications) == 1100


def test_until_stable_does_not_depend_on_chunks_already_in_the_folder(
    tmp_path: Path, greenfield
) -> None:
    fresh = monte_carlo(greenfield, reps=1500, seed=2, until_stable=0.5)
    assert len(fresh.replications) == 1000
    out = tmp_path / "mc"
    monte_carlo(greenfield, reps=1500, seed=2, out=out)
    resumed = monte_carlo(greenfield, reps=1500, seed=2, until_stable=0.5, out=out)
    assert_same_replications(resumed, fresh)


def test_cli_until_stable_and_by(tmp_path: Path, greenfield, monkeypatch, capsys) -> None:
    out = tmp_path / "mc"
    args = ["mc", GREENFIELD, "--reps", "3000", "--seed", "2", "--until-stable", "50%"]
    result = run_cli_in_process(
        [*args, "--by", "2031-01-01", "--out", str(out)], monkeypatch, capsys
    )
    assert result.code == 0, result.stderr
    assert "1000 replications" in flat(result.stdout)
    assert "stopped once stable" in flat(result.stdout)
    rows = pd.read_csv(out / "replications.csv")
    assert list(rows["replication"]) == list(range(1000))
    summary = pd.read_csv(out / "summary.csv", index_col="milestone")
    expected = monte_carlo(greenfield, reps=1000, seed=2, by=[pd.Timestamp("2031-01-01")])
    pd.testing.assert_series_equal(
        summary["P(by 2031-01-01)"],
        expected.milestones["P(by 2031-01-01)"],
        check_names=False,
        check_index_type=False,
    )


# -- 7. compare: common random numbers ------------------------------------------------------------


def test_strategies_draw_the_same_world(stargate) -> None:
    models = {name: Model(stargate, name) for name in stargate.strategies}
    assert len({m.n_slots for m in models.values()}) == 1
    for i in range(5):
        draws = {name: m.draw(replication_rng(17, i)) for name, m in models.items()}
        first = draws["build"]
        for name, values in draws.items():
            np.testing.assert_array_equal(values, first, err_msg=f"{name}, replication {i}")
    assert not np.array_equal(
        models["build"].draw(replication_rng(17, 0)), models["build"].draw(replication_rng(17, 1))
    )


@pytest.fixture(scope="module")
def comparison(stargate) -> Comparison:
    return compare(stargate, strategies=["build", "lease", "hybrid"], reps=30, seed=3)


def test_compare_runs_each_strategy_as_monte_carlo_would(comparison, stargate) -> None:
    assert list(comparison.results) == ["build", "lease", "hybrid"]
    alone = monte_carlo(stargate, reps=30, seed=3, strategy="lease")
    assert_same_replications(comparison.results["lease"], alone)


COST_LABELS = {
    "CapEx (USD)": "capex",
    "OpEx (USD)": "opex",
    "NPV of cost (USD)": "npv_cost",
    "USD per GPU-hour": "usd_per_gpu_hour",
}


def test_paired_differences_by_hand(comparison, stargate) -> None:
    diffs = comparison.differences
    base = comparison.results["build"].replications.set_index("replication")
    days_per = DAYS_PER[stargate.time_unit]
    assert set(diffs["strategy"]) == {"lease", "hybrid"}
    assert set(diffs["versus"]) == {"build"}
    measures = set()
    for row in diffs.to_dict("records"):
        label = row["measure"]
        column = COST_LABELS.get(label) or column_of(label, stargate)
        assert column.startswith(("t_", "capex", "opex", "npv", "usd")), label
        measures.add(column)
        other = comparison.results[row["strategy"]].replications.set_index("replication")
        diff = (other[column] - base[column]).dropna()
        scale = days_per if column.startswith("t_") else 1.0
        assert row["unit"] == ("days" if column.startswith("t_") else "USD")
        assert row["pairs"] == len(diff)
        if len(diff) == 0:
            assert math.isnan(row["mean difference"])
            continue
        mean = diff.mean() * scale
        assert row["mean difference"] == pytest.approx(mean, rel=1e-9, abs=1e-9)
        if len(diff) > 1:
            half = 1.96 * diff.std(ddof=1) * scale / math.sqrt(len(diff))
            assert row["95% CI low"] == pytest.approx(mean - half, rel=1e-9, abs=1e-6)
            assert row["95% CI high"] == pytest.approx(mean + half, rel=1e-9, abs=1e-6)
    assert {"t_1GW", "t_all_online", "capex", "npv_cost"} <= measures


def test_wins_are_shares_that_sum_to_one(comparison, stargate) -> None:
    wins = comparison.wins
    assert list(wins.columns) == ["build", "lease", "hybrid"]
    reached_by_some = 0
    for _, row in wins.iterrows():
        if row.isna().all():  # nobody reached it in any replication
            continue
        reached_by_some += 1
        assert row.sum() == pytest.approx(1.0)
        assert ((row >= 0) & (row <= 1)).all()
    assert reached_by_some >= 3
    # the 1 GW row by hand: first to 1 GW wins, never reaching it loses, ties share
    table = pd.DataFrame(
        {n: r.replications.set_index("replication")["t_1GW"] for n, r in comparison.results.items()}
    ).fillna(np.inf)
    best = table.eq(table.min(axis=1), axis=0)[np.isfinite(table.min(axis=1))]
    shares = best.div(best.sum(axis=1), axis=0).mean()
    pd.testing.assert_series_equal(wins.loc["1 GW"], shares, check_names=False)


def test_cli_compare_writes_what_the_api_computes(
    tmp_path: Path, comparison, monkeypatch, capsys
) -> None:
    out = tmp_path / "cmp"
    args = [
        "compare",
        STARGATE,
        "--strategies",
        "build,lease,hybrid",
        "--reps",
        "30",
        "--seed",
        "3",
    ]
    result = run_cli_in_process([*args, "--out", str(out)], monkeypatch, capsys)
    assert result.code == 0, result.stderr
    assert "common random numbers" in flat(result.stdout)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["build", "hybrid", "lease"]
    diffs = pd.read_csv(out / "differences.csv")
    pd.testing.assert_frame_equal(
        diffs, comparison.differences, check_dtype=False, check_exact=False, rtol=1e-9
    )
    wins = pd.read_csv(out / "wins.csv", index_col="measure")
    pd.testing.assert_frame_equal(
        wins, comparison.wins, check_names=False, check_exact=False, rtol=1e-9
    )


def test_compare_needs_two_strategies(stargate, greenfield) -> None:
    with pytest.raises(CapsimError, match="at least two strategies"):
        compare(stargate, strategies=["build"], reps=2, seed=1)
    with pytest.raises(CapsimError, match="at least two strategies"):
        compare(greenfield, reps=2, seed=1)


# -- 8. order -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exhaustive(stargate):
    return search(stargate, strategy="build", objective="p50:1 GW", reps=10, seed=1)


def test_exhaustive_search_tries_every_ordering(exhaustive, stargate) -> None:
    assert exhaustive.method == "exhaustive"
    orders = [s.order for s in exhaustive.scores]
    assert len(orders) == 6
    assert set(orders) == set(itertools.permutations(LAB_SITES))
    assert exhaustive.baseline.order == ()  # the scenario as written, no rollout applied
    values = [s.value for s in exhaustive.scores]
    assert values == sorted(values)  # lower is better: best first
    assert all(exhaustive.scores[0].value <= v for v in values)
    table = exhaustive.table
    assert len(table) == 6
    assert table["order"].iloc[0] == " > ".join(exhaustive.scores[0].order)
    assert (
        table["gain over the scenario's order"] == exhaustive.baseline.value - table["objective"]
    ).all()


def test_scores_are_the_evaluation_of_each_order(exhaustive, stargate) -> None:
    goal = parse_objective("p50:1 GW", stargate)
    for score in exhaustive.scores[:2]:
        again = evaluate(stargate, "build", score.order, goal, "lab", 10, 1)
        assert again == score
        assert evaluate(stargate, "build", score.order, goal, "lab", 10, 1) == again
        assert score.low <= score.value <= score.high


def test_higher_is_better_objective_puts_the_highest_first(stargate) -> None:
    result = search(stargate, strategy="build", objective="gpu-months:2031-01-01", reps=6, seed=2)
    values = [s.value for s in result.scores]
    assert values == sorted(values, reverse=True)
    assert values[0] >= result.baseline.value
    assert (result.table["gain over the scenario's order"] >= -1e-9).iloc[0]


def test_greedy_search_returns_a_valid_permutation(stargate) -> None:
    result = search(
        stargate, strategy="build", objective="p50:1 GW", reps=6, seed=1, exhaustive_limit=2
    )
    assert result.method != "exhaustive"
    orders = [s.order for s in result.scores]
    assert len(set(orders)) == len(orders)
    for order in orders:
        assert sorted(order) == sorted(LAB_SITES)
    assert result.baseline.order == ()
    assert all(result.scores[0].value <= s.value for s in result.scores)


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ("p50:2 GW", "unknown milestone '2 GW'; did you mean"),
        ("p50:", "a milestone is missing"),
        ("p50:1 GWW", "did you mean '1 GW'"),
        ("gpu-months:2030-13-01", "gpu-months:YYYY-MM-DD"),
        ("gpu-months:soon", "gpu-months:YYYY-MM-DD"),
        ("p90:1 GW", "unknown objective"),
        ("npv:1 GW", "unknown objective"),
        ("", "unknown objective"),
    ],
)
def test_parse_objective_errors(stargate, objective: str, message: str) -> None:
    with pytest.raises(CapsimError, match=re.escape(message)):
        parse_objective(objective, stargate)


def test_parse_objective_accepts_the_documented_forms(stargate) -> None:
    assert parse_objective("p50:1 GW", stargate).lower_is_better
    assert not parse_objective("gpu-months:2030-01-01", stargate).lower_is_better
    assert parse_objective("npv", stargate).lower_is_better


def test_rollout_gap_delays_each_site_by_its_position(stargate) -> None:
    order = ("narvik", "us-campus", "uk-cobalt")
    gap = 6.0  # months
    for i in range(3):
        values = Model(stargate, "build").draw(replication_rng(4, i))
        spaced = stage_table(Model(stargate, "build", rollout=order, gap=gap).run(values))
        unspaced = stage_table(Model(stargate, "build", rollout=order).run(values))
        for k, site in enumerate(order):
            ready = spaced.loc[spaced["site"] == site, "ready"].dropna()
            assert len(ready) and (ready >= k * gap - 1e-9).all(), (site, ready.min())
        # without the gap the last site's first stage is ready earlier: the gap does bind
        first = unspaced.loc[unspaced["site"] == "uk-cobalt", "ready"].min()
        assert first < 2 * gap


def test_rollout_of_an_unknown_site_is_an_error(stargate) -> None:
    with pytest.raises(CapsimError, match="did you mean 'narvik'"):
        Model(stargate, "build", rollout=["narvick", "uk-cobalt"])


# -- 9. Dask --------------------------------------------------------------------------------------


def test_dask_local_cluster_gives_the_local_replications(portfolio, monkeypatch) -> None:
    monkeypatch.setattr(experiments, "CHUNK_SIZE", 15)  # four chunks over two workers
    local = monte_carlo(portfolio, reps=60, seed=4)
    executor = DaskExecutor("local", workers=2)
    try:
        assert len(executor.client.scheduler_info()["workers"]) == 2
        distributed = monte_carlo(portfolio, reps=60, seed=4, executor=executor)
    finally:
        executor.close()
    assert_same_replications(distributed, local)
    assert_same_stages(distributed, local)


def test_cli_dask_local(tmp_path: Path, portfolio, console_runs) -> None:
    """``capsim mc scenarios/portfolio.yaml --reps 60 --seed 4 --dask local --out D``."""
    result, out = finished(console_runs, "dask_local")
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    reference = tmp_path / "reference.csv"
    monte_carlo(portfolio, reps=60, seed=4).replications.to_csv(reference, index=False)
    assert (out / "replications.csv").read_bytes() == reference.read_bytes()


@pytest.mark.slow  # the client waits 10 s before giving up; the CLI test covers it by default
def test_unreachable_dask_scheduler_is_a_clear_error() -> None:
    with pytest.raises(CapsimError, match="cannot reach"):
        DaskExecutor("tcp://127.0.0.1:1")


# -- 10. bad input on the command line ------------------------------------------------------------

# an explicit --gap: the default one is refused (test_cli_order_with_the_default_gap)
ORDER = ["order", STARGATE, "--gap", "0 days"]

BAD_CLI = {
    "mc_reps_0": (["mc", GREENFIELD, "--reps", "0"], ["--reps"]),
    "mc_negative_seed": (["mc", GREENFIELD, "--seed", "-1"], ["--seed"]),
    "mc_workers_0": (["mc", GREENFIELD, "--workers", "0"], ["--workers"]),
    "mc_unknown_strategy": (
        ["mc", STARGATE, "--strategy", "leas", "--reps", "5"],
        ["unknown strategy 'leas'", "did you mean 'lease'"],
    ),
    "mc_strategy_of_a_plain_scenario": (
        ["mc", GREENFIELD, "--strategy", "build", "--reps", "5"],
        ["unknown strategy 'build'"],
    ),
    "mc_strategies_without_strategy": (
        ["mc", STARGATE, "--reps", "5"],
        ["--strategy", "capsim compare", "build, lease, hybrid"],
    ),
    "mc_bad_by_date": (
        ["mc", GREENFIELD, "--reps", "5", "--by", "2030-13-01"],
        ["--by", "YYYY-MM-DD"],
    ),
    "mc_by_not_a_date": (["mc", GREENFIELD, "--reps", "5", "--by", "soon"], ["--by", "'soon'"]),
    "mc_until_stable_text": (
        ["mc", GREENFIELD, "--reps", "5", "--until-stable", "abc"],
        ["--until-stable", "0.5%"],
    ),
    "mc_until_stable_too_big": (
        ["mc", GREENFIELD, "--reps", "5", "--until-stable", "150%"],
        ["--until-stable", "between"],
    ),
    "mc_until_stable_zero": (
        ["mc", GREENFIELD, "--reps", "5", "--until-stable", "0"],
        ["--until-stable", "between"],
    ),
    "mc_until_stable_negative": (
        ["mc", GREENFIELD, "--reps", "5", "--until-stable", "-1%"],
        ["--until-stable"],
    ),
    "mc_unreachable_dask": (
        ["mc", GREENFIELD, "--reps", "5", "--dask", "tcp://127.0.0.1:1"],
        ["cannot reach", "tcp://127.0.0.1:1"],
    ),
    "compare_reps_0": (["compare", STARGATE, "--reps", "0"], ["--reps"]),
    "compare_negative_seed": (["compare", STARGATE, "--seed", "-3"], ["--seed"]),
    "compare_unknown_strategy": (
        ["compare", STARGATE, "--strategies", "buidl,lease", "--reps", "2"],
        ["unknown strategy 'buidl'", "did you mean 'build'"],
    ),
    "compare_one_strategy": (
        ["compare", STARGATE, "--strategies", "build", "--reps", "2"],
        ["at least two strategies"],
    ),
    "compare_plain_scenario": (["compare", GREENFIELD, "--reps", "2"], ["at least two strategies"]),
    "order_reps_1": ([*ORDER, "--strategy", "build", "--reps", "1"], ["--reps"]),
    "order_negative_seed": ([*ORDER, "--strategy", "build", "--seed", "-1"], ["--seed"]),
    "order_unknown_strategy": (
        [*ORDER, "--strategy", "buidl", "--reps", "2"],
        ["unknown strategy 'buidl'", "did you mean 'build'"],
    ),
    "order_unknown_milestone": (
        [*ORDER, "--strategy", "build", "--reps", "2", "--objective", "p50:2 GW"],
        ["unknown milestone '2 GW'", "did you mean", "1 GW"],
    ),
    "order_unknown_objective": (
        [*ORDER, "--strategy", "build", "--reps", "2", "--objective", "fastest"],
        ["unknown objective 'fastest'", "p50:<milestone>", "npv"],
    ),
    "order_bad_objective_date": (
        [*ORDER, "--strategy", "build", "--reps", "2", "--objective", "gpu-months:2030-02-30"],
        ["gpu-months:YYYY-MM-DD"],
    ),
    "order_bad_gap": (
        ["order", STARGATE, "--strategy", "build", "--reps", "2", "--gap", "3 parsecs"],
        ["--gap"],
    ),
    "order_nothing_to_order": ([*ORDER, "--reps", "2"], ["nothing to order"]),
}

# Regressions: bugs these tests found, now fixed (the reasons say what was wrong).
BAD_CLI_BUGS = {
    "mc_dask_address_without_port": (
        (["mc", GREENFIELD, "--reps", "5", "--dask", "localhost"], ["--dask"]),
        "BUG: a Dask address without a port (or with an unknown scheme, e.g. http://...) raises "
        "distributed's ValueError from DaskExecutor, which only turns OSError/TimeoutError into "
        "CapsimError: a Traceback and exit code 1",
    ),
    "mc_empty_by_date": (
        (["mc", GREENFIELD, "--reps", "5", "--by", ""], ["--by"]),
        "BUG: --by '' is read by pd.Timestamp as NaT and accepted; every replication runs and "
        "chunks are written, then MonteCarloResult._stats crashes on NaT.date() - start "
        "(TypeError Traceback, exit 1, output folder left behind)",
    ),
    "compare_unknown_second_strategy": (
        (
            ["compare", STARGATE, "--strategies", "build,leas", "--reps", "2"],
            ["did you mean 'lease'"],
        ),
        "BUG: compare checks each strategy only when it reaches it: with --strategies build,leas "
        "every replication of build is simulated and OUT/build/ (manifest and chunks) is written "
        "before 'leas' is rejected with exit code 2",
    ),
    "compare_repeated_strategy": (
        (
            ["compare", STARGATE, "--strategies", "build,build", "--reps", "2"],
            ["build given twice"],
        ),
        "BUG (session 9 review): the second 'build' overwrote the first's results: a KeyError "
        "Traceback after both ran, OUT/build and the tables left behind",
    ),
    "compare_no_strategy_named": (
        (["compare", STARGATE, "--strategies", ",", "--reps", "2"], ["--strategies", "','"]),
        "BUG (session 9 review): --strategies ',' was read as every strategy",
    ),
    "mc_by_us_date": (
        (["mc", GREENFIELD, "--reps", "2", "--by", "02/01/2030"], ["--by", "YYYY-MM-DD"]),
        "BUG (session 9 review): pandas read 02/01/2030 as 1 February (US order), silently",
    ),
    "mc_by_year_only": (
        (["mc", GREENFIELD, "--reps", "2", "--by", "2030"], ["--by", "YYYY-MM-DD"]),
        "BUG (session 9 review): --by 2030 was read as 2030-01-01",
    ),
    "order_negative_gap": (
        ([*ORDER, "--strategy", "build", "--reps", "2", "--gap=-6mo"], ["--gap must be 0 or more"]),
        "BUG (session 9 review): a negative gap was accepted and ordered like no gap",
    ),
    "order_gpu_months_before_the_start": (
        (
            [*ORDER, "--strategy", "build", "--reps", "2", "--objective", "gpu-months:2020-01-01"],
            ["after the scenario's start (2026-01-01)", "no later than its horizon (2036-01-01)"],
        ),
        "BUG (session 9 review): a date before the start scored every ordering 0, silently",
    ),
    "order_gpu_months_after_the_horizon": (
        (
            [*ORDER, "--strategy", "build", "--reps", "2", "--objective", "gpu-months:2036-01-02"],
            ["no later than its horizon (2036-01-01)"],
        ),
        "BUG (session 9 review): a date past the horizon counted the last capacity on until it",
    ),
    "order_site_of_another_strategy": (
        (
            [*ORDER, "--strategy", "hybrid", "--reps", "2", "--objective", "p50:uk-cobalt online"],
            ["site uk-cobalt is not built under strategy hybrid"],
        ),
        "a site's online time is an objective only where the strategy builds it",
    ),
    "order_without_the_strategy_it_needs": (
        ([*ORDER, "--reps", "2"], ["nothing to order", "with --strategy build or hybrid"]),
        "BUG (session 9 review): said 'lab has 0 active site(s)' with no hint of --strategy",
    ),
}


def check_bad_cli(result: Outcome, out: Path, fragments: list[str]) -> None:
    output = result.stderr + result.stdout
    assert "Traceback" not in output, output[-3000:]
    assert result.code == 2, output[-3000:]
    message = flat(result.stderr)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))


@pytest.mark.parametrize("case", sorted(set(BAD_CLI) - {"mc_unreachable_dask"}))
def test_cli_bad_input_is_one_clear_error_and_writes_nothing(
    tmp_path: Path, monkeypatch, capsys, case: str
) -> None:
    args, fragments = BAD_CLI[case]
    out = tmp_path / "out"
    result = run_cli_in_process([*args, "--out", str(out)], monkeypatch, capsys)
    check_bad_cli(result, out, fragments)


@pytest.mark.parametrize(
    "case",
    [pytest.param(name, id=name) for name, (_, reason) in sorted(BAD_CLI_BUGS.items())],
)
def test_cli_bad_input_bugs(tmp_path: Path, monkeypatch, capsys, case: str) -> None:
    args, fragments = BAD_CLI_BUGS[case][0]
    out = tmp_path / "out"
    result = run_cli_in_process([*args, "--out", str(out)], monkeypatch, capsys)
    check_bad_cli(result, out, fragments)


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_cli_mc_out_that_is_a_file(tmp_path: Path, monkeypatch, capsys, where: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "out"
    args = ["mc", GREENFIELD, "--reps", "5", "--out", str(out)]
    result = run_cli_in_process(args, monkeypatch, capsys)
    assert "Traceback" not in result.stderr
    assert result.code == 2
    assert blocker.read_text() == "not a folder"


# Through the console script, as a user runs it. These start in the background when this
# module's first test starts and are checked at the end: the unreachable Dask address waits 10 s
# for its timeout, and --dask local starts a cluster.
CONSOLE_CASES = (
    "mc_unreachable_dask",
    "mc_reps_0",
    "mc_strategies_without_strategy",
    "compare_unknown_strategy",
    "order_unknown_objective",
)
BACKGROUND = {case: BAD_CLI[case][0] for case in CONSOLE_CASES}
BACKGROUND["dask_local"] = ["mc", PORTFOLIO, "--reps", "60", "--seed", "4", "--dask", "local"]


@pytest.fixture(scope="module", autouse=True)
def console_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("console")
    runs = {}
    for name, args in BACKGROUND.items():
        (root / name).mkdir()
        out = root / name / "out"
        with open(root / name / "stdout", "w") as stdout, open(root / name / "stderr", "w") as err:
            process = subprocess.Popen(
                [CAPSIM, *args, "--out", str(out)],
                cwd=ROOT,
                stdout=stdout,
                stderr=err,
                start_new_session=True,  # its own process group, Dask workers included
            )
        runs[name] = (process, out)
    yield runs
    for process, _ in runs.values():  # only if some tests were deselected
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def finished(runs: dict, name: str) -> tuple[Outcome, Path]:
    process, out = runs[name]
    code = process.wait(timeout=180)
    folder = out.parent
    return Outcome(code, (folder / "stdout").read_text(), (folder / "stderr").read_text()), out


@pytest.mark.parametrize("case", CONSOLE_CASES)
def test_console_script_bad_input(console_runs, case: str) -> None:
    result, out = finished(console_runs, case)
    check_bad_cli(result, out, BAD_CLI[case][1])


def test_cli_order_with_the_default_gap(tmp_path: Path, monkeypatch, capsys) -> None:
    args = ["order", STARGATE, "--strategy", "build", "--reps", "2", "--out", str(tmp_path)]
    result = run_cli_in_process(args, monkeypatch, capsys)
    assert result.code == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "orderings.csv")) == 6


def test_cli_order_with_a_gap(tmp_path: Path, stargate, monkeypatch, capsys) -> None:
    result = run_cli_in_process(
        [*ORDER[:2], "--strategy", "build", "--reps", "4", "--seed", "3", "--gap", "6 months",
         "--out", str(tmp_path)], monkeypatch, capsys,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    table = pd.read_csv(tmp_path / "orderings.csv")
    expected = search(stargate, strategy="build", objective="p50:1 GW", reps=4, seed=3, gap=6.0)
    assert list(table["order"]) == list(expected.table["order"])
    assert "exhaustive" in flat(result.stdout)
    assert " > ".join(LAB_SITES) in flat(result.stdout)


def test_compare_checks_every_strategy_before_any_work(stargate, tmp_path: Path) -> None:
    out = tmp_path / "compare"
    with pytest.raises(CapsimError, match="did you mean 'lease'"):
        compare(stargate, strategies=["build", "leas"], reps=2, seed=1, out=out)
    assert not out.exists(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))


def test_until_stable_is_not_fooled_by_a_first_chunk_that_failed_entirely(
    greenfield, monkeypatch
) -> None:
    """A chunk whose replications all raised has no milestone columns; the checkpoints still
    look at the others' (a tolerance nothing meets: the run goes to the end)."""
    fail_replication(monkeypatch, range(0, 100))
    result = monte_carlo(greenfield, reps=1500, seed=1, until_stable=1e-12)
    assert len(result.replications) == 1500
    assert int(result.replications["failed"].sum()) == 100
