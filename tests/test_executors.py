"""How LocalExecutor shares chunks between this process and the forked ones: every chunk once,
the chunks of large results here first, no pool for a single chunk, nothing more sent once the
consumer stops, and results equal to one process's whatever ran where."""

from __future__ import annotations

import contextlib
import functools
import os
import time

import pytest

from capsim.executors import LocalExecutor
from capsim.loader import load_scenario, shipped_scenario
from capsim.replications import run_chunk


def where(start: int, stop: int) -> tuple[int, int, int]:
    """Work that says which process ran which chunk. It takes a few milliseconds, as a chunk
    does: work that took none could be done by the other process, sent more chunks as each
    result comes in, before this one looked for a chunk of its own."""
    time.sleep(0.005)
    return os.getpid(), start, stop


TASKS = [(s, s + 10) for s in range(0, 100, 10)]


def test_every_chunk_is_handed_on_once() -> None:
    executor = LocalExecutor(2)
    try:
        got = list(executor.map_chunks(TASKS, where, large={0, 10}))
    finally:
        executor.close()
    assert sorted(start for start, _ in got) == [s for s, _ in TASKS]
    assert all(start == chunk[1] for start, chunk in got)
    pids = {chunk[0] for _, chunk in got}
    assert os.getpid() in pids  # this process computed some
    assert len(pids) == 2  # and the other process the others


def test_this_process_takes_the_large_results_first_the_other_the_rest() -> None:
    executor = LocalExecutor(2)
    try:
        got = list(executor.map_chunks(TASKS, where, large={50, 60}))  # in the order handed on
    finally:
        executor.close()
    mine = [start for start, chunk in got if chunk[0] == os.getpid()]
    theirs = sorted(start for start, chunk in got if chunk[0] != os.getpid())
    assert mine[0] == 50  # this process started with the first large one
    assert theirs[0] == 0  # the other process with the first chunk that is not large


def test_one_chunk_runs_here_without_starting_a_pool() -> None:
    executor = LocalExecutor(2)
    assert list(executor.map_chunks([(0, 5)], where)) == [(0, (os.getpid(), 0, 5))]
    assert executor._others == []
    executor.close()


def test_a_consumer_that_stops_early_is_sent_nothing_more() -> None:
    executor = LocalExecutor(2)
    try:
        chunks = executor.map_chunks(TASKS, where)
        first = next(chunks)
        chunks.close()  # as monte_carlo does once --until-stable is met
        assert first[0] in {s for s, _ in TASKS}
        # the pool is still usable for another run
        assert sorted(s for s, _ in executor.map_chunks(TASKS[:3], where)) == [0, 10, 20]
    finally:
        executor.close()


def test_chunks_computed_anywhere_equal_those_of_one_process() -> None:
    scenario = load_scenario(shipped_scenario("greenfield-campus"))
    work = functools.partial(run_chunk, scenario, None, 3)
    tasks = [(0, 7), (7, 14), (14, 21), (21, 30)]
    executor = LocalExecutor(2)
    try:
        got = dict(executor.map_chunks(tasks, work, large={0}))
    finally:
        executor.close()
    for start, stop in tasks:
        alone = work(start=start, stop=stop)
        assert got[start].rows.frame().equals(alone.rows.frame())
        assert got[start].stages.frame().equals(alone.stages.frame())
        assert got[start].profiles.frames()["world"].equals(alone.profiles.frames()["world"])


def dies_at_20(parent: int, start: int, stop: int) -> tuple[int, int, int]:
    if start == 20 and os.getpid() != parent:
        os._exit(3)  # as a worker killed by the OOM killer would
    return where(start, stop)


def fails_at_20(parent: int, start: int, stop: int) -> tuple[int, int, int]:
    if start == 20:
        raise ValueError("a bug in a chunk")
    return where(start, stop)


@pytest.mark.parametrize("stand_in", [dies_at_20, fails_at_20])
def test_a_worker_that_dies_or_fails_stops_the_run_with_a_clear_error(stand_in) -> None:
    executor = LocalExecutor(2)
    try:
        with pytest.raises(RuntimeError) as error:
            # chunk 20 is the first that is not large: the other process's first chunk
            work = functools.partial(stand_in, os.getpid())
            list(executor.map_chunks(TASKS, work, large={0, 10}))
    finally:
        executor.close()
    if stand_in is dies_at_20:
        assert "a capsim worker process died (exit code 3)" in str(error.value)
    else:  # the other process's traceback is kept
        assert "ValueError: a bug in a chunk" in str(error.value)


KILLED = """
import os, sys
from capsim.executors import LocalExecutor
from tests.test_executors import TASKS, where

executor = LocalExecutor(int(sys.argv[1]))
pids = {chunk[0] for _, chunk in executor.map_chunks(TASKS, where)} - {os.getpid()}
print(*pids, flush=True)
os.kill(os.getpid(), 9)  # no chance to close the executor
"""


@pytest.mark.parametrize("workers", [2, 3])
def test_the_other_processes_exit_when_this_one_is_killed(workers: int, tmp_path) -> None:
    """kill -9 leaves nobody to tell them: each sees its pipe's other end close (its own copies
    of this process's ends, and of the earlier pipes', closed when it started)."""
    import subprocess
    import sys
    from pathlib import Path

    import psutil

    root, said = Path(__file__).parent.parent, tmp_path / "pids"
    with said.open("w") as stdout:  # a file: a pipe would stay open as long as they live
        code = subprocess.call(
            [sys.executable, "-c", KILLED, str(workers)], cwd=root, stdout=stdout
        )
    assert code == -9
    others = [int(pid) for pid in said.read_text().split()]
    assert len(others) == workers - 1

    def living() -> list[psutil.Process]:  # a zombie has exited (whoever reaps it)
        found = []
        for pid in others:
            with contextlib.suppress(psutil.NoSuchProcess):
                if (process := psutil.Process(pid)).status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
        return found

    deadline = time.monotonic() + 10
    while living() and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = living()
    for process in alive:
        process.kill()
    assert alive == []
