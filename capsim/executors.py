"""Where chunks of replications run: in this process, in a pool of local processes, or on a Dask
cluster. Every chunk's result depends only on its replications' numbers, never on where it ran.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Collection, Iterator
from typing import Any

from capsim.errors import CapsimError
from capsim.replications import Chunk, run_chunk


class Executor:
    """Runs chunks somewhere and yields them as they complete (in any order)."""

    def map_chunks(
        self, tasks: list[tuple[int, int]], job: dict[str, Any], large: Collection[int] = ()
    ) -> Iterator[tuple[int, Chunk]]:
        """Run ``run_chunk(**job, start=..., stop=...)`` for each (start, stop) in ``tasks``.
        ``large`` are the starts of chunks whose results are large (profiles, event logs): an
        executor that computes in this process too runs those here when it can, rather than
        send them over."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers."""


class LocalExecutor(Executor):
    """``workers`` processes on this machine computing chunks: this one and ``workers - 1``
    forked ones (where the platform can fork, else spawned). Each other process has its next
    chunk queued behind the one it runs, and is sent another as soon as one comes back; this
    process runs a chunk whenever no result is waiting to be handed on, so ``workers`` cores
    are busy, not ``workers`` plus one collecting results.

    >>> from capsim.loader import load_scenario, shipped_scenario
    >>> job = {"scenario": load_scenario(shipped_scenario("greenfield-campus")),
    ...        "strategy": None, "seed": 1}
    >>> executor = LocalExecutor(2)
    >>> sorted(start for start, _ in executor.map_chunks([(0, 5), (5, 10), (10, 15)], job))
    [0, 5, 10]
    >>> executor.close()
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool = None

    def map_chunks(
        self, tasks: list[tuple[int, int]], job: dict[str, Any], large: Collection[int] = ()
    ) -> Iterator[tuple[int, Chunk]]:
        # in order; this process takes the chunks of large results first, the others the rest
        here = deque(t for t in tasks if t[0] in large)
        there = deque(t for t in tasks if t[0] not in large)
        lock = threading.Lock()
        back: queue.SimpleQueue = queue.SimpleQueue()  # (start, future) as they complete
        outstanding, sending = 0, True  # chunks sent and not handed on yet; whether to send more

        def take(queues: tuple[deque, deque]) -> tuple[int, int] | None:
            with lock:
                for q in queues:
                    if q:
                        return q.popleft()
            return None

        def send() -> None:  # also called by the pool's thread, when a result comes back
            nonlocal outstanding
            with lock:
                if not sending or not (task := (there or here or deque([None])).popleft()):
                    return
                outstanding += 1
            future = self._submit(run_chunk, **job, start=task[0], stop=task[1])
            future.add_done_callback(lambda done, start=task[0]: (back.put((start, done)), send()))

        try:
            for _ in range(min(self.workers, len(tasks)) - 1):  # one running in each
                send()
            while True:
                while not back.empty():
                    start, future = back.get()
                    with lock:
                        outstanding -= 1
                    yield start, future.result()  # a chunk handed on is not held here
                if task := take((here, there)):
                    while (here or there) and outstanding < 2 * (self.workers - 1):
                        send()  # and, once this process has its own, one queued in each
                    yield task[0], run_chunk(**job, start=task[0], stop=task[1])
                elif outstanding:
                    back.put(back.get())  # wait for the next result
                else:
                    return
        finally:
            with lock:
                sending = False  # a consumer that stopped early: send nothing more

    def _submit(self, fn: Any, **kwargs: Any) -> Any:
        """``fn(**kwargs)`` in one of the other processes (started on first use)."""
        if self._pool is None:
            import concurrent.futures as cf
            import multiprocessing as mp

            # fork is cheap and inherits imports; every result depends only on (seed, replication)
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self._pool = cf.ProcessPoolExecutor(self.workers - 1, mp_context=mp.get_context(method))
        return self._pool.submit(fn, **kwargs)

    def close(self) -> None:
        if self._pool is not None:
            # every result is in: the idle processes exit on their own, unwaited for
            self._pool.shutdown(wait=False, cancel_futures=True)
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
        self, tasks: list[tuple[int, int]], job: dict[str, Any], large: Collection[int] = ()
    ) -> Iterator[tuple[int, Chunk]]:  # every chunk runs on the cluster, whatever its size
        from dask.distributed import as_completed

        job = {**job, "scenario": self.client.scatter(job["scenario"], broadcast=True)}
        futures = {
            self.client.submit(run_chunk, **job, start=start, stop=stop, pure=False): start
            for start, stop in tasks
        }
        for future in as_completed(futures):
            yield futures.pop(future), future.result()  # which lets the cluster drop it

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
