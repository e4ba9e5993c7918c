"""Where chunks of work run: in this process, in a pool of local processes, or on a Dask cluster.
A chunk is a range ``(start, stop)`` and the work a picklable callable (for Monte Carlo,
:func:`capsim.replications.run_chunk` with its scenario, strategy and seed bound), so that every
chunk's result depends only on its range, never on where it ran.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from capsim.errors import CapsimError

R = TypeVar("R")
#: What a chunk runs: ``work(start=..., stop=...)``, picklable (it is sent to other processes).
Work = Callable[..., R]


class Executor:
    """Runs chunks somewhere and yields them as they complete (in any order)."""

    def map_chunks(
        self, tasks: list[tuple[int, int]], work: Work[R], large: Collection[int] = ()
    ) -> Iterator[tuple[int, R]]:
        """Run ``work(start=..., stop=...)`` for each (start, stop) in ``tasks``.
        ``large`` are the starts of chunks whose results are large (profiles, event logs): an
        executor that computes in this process too runs those here when it can, rather than
        send them over."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers."""


class LocalExecutor(Executor):
    """``workers`` processes on this machine computing chunks: this one and ``workers - 1``
    others (forked where the platform can, else spawned), started on first use and kept until
    :meth:`close`.

    Each other process has one chunk queued behind the one it runs; this process hands their
    results on, tops their queues up and, whenever no result is waiting, runs a chunk itself,
    the chunks of ``large`` results first (they need not be sent over). No thread of this
    process waits on the others: results are read between chunks, so ``workers`` cores compute
    (a pool's reader and feeder threads cost ~15% of a lean chunk on 2 cores). Each other
    process sends a small result at once and a large one from a thread of its own, going on
    with its next chunk meanwhile. Near the end nothing is queued: a chunk waiting behind
    another in one process would hold the run up while this one idles.

    >>> from capsim.loader import load_scenario, shipped_scenario
    >>> from capsim.replications import run_chunk
    >>> from functools import partial
    >>> work = partial(run_chunk, load_scenario(shipped_scenario("greenfield-campus")), None, 1)
    >>> executor = LocalExecutor(2)
    >>> sorted(start for start, _ in executor.map_chunks([(0, 5), (5, 10), (10, 15)], work))
    [0, 5, 10]
    >>> executor.close()
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._others: list[_Other] = []
        self._calls = 0  # map_chunks calls so far: results of an earlier one are dropped

    def map_chunks(
        self, tasks: list[tuple[int, int]], work: Work[R], large: Collection[int] = ()
    ) -> Iterator[tuple[int, R]]:
        # in order; this process takes the chunks of large results first, the others the rest
        here = deque(t for t in tasks if t[0] in large)
        there = deque(t for t in tasks if t[0] not in large)
        if len(tasks) > 1 and not self._others:
            self._others = [_Other() for _ in range(self.workers - 1)]
        self._calls += 1
        call, others = self._calls, self._others if len(tasks) > 1 else []
        for other in others:
            other.send(("work", call, work))

        def top_up(depth: int) -> None:
            for other in others:
                # a chunk to queue only while there is one left for every process: at the end,
                # one waiting in another process's queue would hold this one up
                while len(other.calls) < depth and len(here) + len(there) >= (
                    1 if not other.calls else self.workers
                ):
                    other.send(("run", call, *(there or here).popleft()))

        top_up(1)  # one running in each
        while True:
            for other in _ready(others, timeout=0):
                for answer, of, start, result in other.received():
                    top_up(2)  # and, once they run one, one queued in each
                    if of == call:  # else left by an earlier call that stopped early
                        yield start, _result(answer, result)  # a chunk handed on is not held
            if here or there:
                start, stop = (here or there).popleft()
                yield start, work(start=start, stop=stop)
            elif owing := [other for other in others if call in other.calls]:
                _ready(owing, timeout=None)
            else:
                return

    def close(self) -> None:
        for other in self._others:
            other.close()
        self._others = []


class _Other:
    """Another process that runs chunks (:func:`_serve`), and what was sent to it."""

    def __init__(self) -> None:
        import multiprocessing as mp

        # fork is cheap and inherits imports; every result depends only on (seed, replication)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        context = mp.get_context(method)
        self.conn, theirs = context.Pipe()
        _OURS.add(self.conn)
        # a forked process closes its copies of this process's ends of every pipe: else it
        # would never see this process go (killed, it cannot say so) and outlive it
        ours = tuple(_OURS) if method == "fork" else ()
        self.process = context.Process(target=_serve, args=(theirs, ours), daemon=True)
        self.process.start()
        theirs.close()
        self.calls: deque[int] = deque()  # the call of each chunk sent and not sent back

    def send(self, message: tuple) -> None:
        if message[0] == "run":
            self.calls.append(message[1])
        self.conn.send(message)

    def received(self) -> Iterator[tuple]:
        """The results that have come back (in the order sent), at least one (it waits)."""
        try:
            while True:
                message = self.conn.recv()
                self.calls.popleft()
                yield message
                if not self.conn.poll():
                    return
        except (EOFError, OSError):
            self.process.join(1)
            code = self.process.exitcode
            raise RuntimeError(f"a capsim worker process died (exit code {code})") from None

    def close(self) -> None:
        if self.calls:  # chunks nobody will read: no need to finish them
            self.process.terminate()
        with contextlib.suppress(OSError):
            self.conn.send(None)  # an idle one exits at once
        _OURS.discard(self.conn)
        self.conn.close()


#: This process's ends of the pipes to its other processes (those not closed).
_OURS: set[Any] = set()


def _ready(others: list[_Other], timeout: float | None) -> list[_Other]:
    """The ``others`` with a message waiting (after ``timeout`` seconds at most; None: until
    one has), or whose process died (:meth:`_Other.received` says so)."""
    from multiprocessing.connection import wait

    by_handle = {other.conn: other for other in others}
    by_handle.update({other.process.sentinel: other for other in others})
    return list(dict.fromkeys(by_handle[h] for h in wait(list(by_handle), timeout)))


def _result(answer: str, result: R) -> R:
    if answer == "failed":
        raise RuntimeError(f"a capsim worker process failed:\n{result}")
    return result


#: A result this small is sent at once (it fits the connection's buffer beside another); a
#: larger one (profiles) from a thread, so that the next chunk starts meanwhile.
SMALL_RESULT = 128 * 1024


def _serve(conn: Any, inherited: Collection[Any] = ()) -> None:
    """Run the chunks ``conn`` asks for and send back each (``("done", call, start, chunk)``,
    or ``"failed"`` and the traceback), in order. Exits at ``None`` or when the other end is
    gone (``inherited``: the other ends of this and other pipes, which a forked process has too
    and closes first). Ctrl-C is the capsim process's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for end in inherited:
        end.close()
    large: queue.SimpleQueue = queue.SimpleQueue()  # pickled results for the thread to send
    lock, unsent = threading.Lock(), [0]  # how many the thread has still to send

    def send_large() -> None:
        while (data := large.get()) is not None:
            with contextlib.suppress(OSError):  # else the capsim process is gone
                conn.send_bytes(data)
            with lock:
                unsent[0] -= 1

    sender = threading.Thread(target=send_large, daemon=True)
    sender.start()
    work: Work = _no_work
    try:
        while (message := conn.recv()) is not None:
            if message[0] == "work":
                work = message[2]
                continue
            _, call, start, stop = message
            try:
                result = ("done", call, start, work(start=start, stop=stop))
                data = pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
            except Exception:
                data = pickle.dumps(("failed", call, start, traceback.format_exc()))
            with lock:  # small and nothing before it still to send: at once, else in order
                later = len(data) > SMALL_RESULT or unsent[0] > 0
                unsent[0] += later
            if later:
                large.put(data)
            else:
                conn.send_bytes(data)
    except (EOFError, OSError):
        pass
    large.put(None)
    sender.join()


def _no_work(start: int, stop: int) -> None:
    raise RuntimeError("a chunk was sent before its work")


def _run(work: Work[R], start: int, stop: int) -> R:
    """``work`` on one chunk, on a Dask worker (which resolves the scattered ``work``)."""
    return work(start=start, stop=stop)


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
        self, tasks: list[tuple[int, int]], work: Work[R], large: Collection[int] = ()
    ) -> Iterator[tuple[int, R]]:  # every chunk runs on the cluster, whatever its size
        from dask.distributed import as_completed

        shared = self.client.scatter(work, broadcast=True, hash=False)  # sent once to each
        futures = {
            self.client.submit(_run, shared, start, stop, pure=False): start
            for start, stop in tasks
        }
        for future in as_completed(futures):
            yield futures.pop(future), future.result()  # which lets the cluster drop it

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()
