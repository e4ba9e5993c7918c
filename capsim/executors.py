"""Where chunks of replications run: in this process, in a pool of local processes, or on a Dask
cluster. Every chunk's result depends only on its replications' numbers, never on where it ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from capsim.errors import CapsimError
from capsim.replications import Chunk, run_chunk


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
            yield futures.pop(future), future.result()  # a chunk handed on is not held here

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
            yield futures.pop(future), future.result()  # which lets the cluster drop it

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
