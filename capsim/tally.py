"""Per-stage sums over replications: waits, durations and criticality, reduced in batches.

:class:`StageTally` keeps each replication's ready, start and finish times of the active stages
and reduces them a batch at a time with :func:`stage_sums`: a few numpy operations over the whole
batch instead of a walk in Python per replication. The critical chains (the stages that decided
when each site came online) are found by following each stage's *binding* predecessor (the one
that finished last, if the stage became ready when it finished) back from the site's last stage,
one stage position at a time over all sites and replications at once.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np

from capsim.blocks import Blocks

try:
    from capsim._arrays import add_rows as _add_rows
except ImportError:  # a source tree that was not built (pip install builds it)
    _add_rows = None

if TYPE_CHECKING:
    from capsim.model import Model
    from capsim.records import Run

FIELDS = ("n", "wait", "wait_sq", "duration", "duration_sq", "critical_site", "critical_last")
_BATCH_VALUES = 1 << 18  # times kept before a batch is reduced (2 MB)


class TallyLayout:
    """The active stages of a model as index tables for :func:`stage_sums` (built once per
    model: :meth:`of`)."""

    @classmethod
    def of(cls, model: Model) -> TallyLayout:
        """The layout of ``model``, built on first use."""
        layout = _LAYOUTS.get(model)
        if layout is None:
            layout = _LAYOUTS[model] = cls(model)
        return layout

    def __init__(self, model: Model) -> None:
        self.tasks = np.array(model.active_tasks, dtype=int)
        local = {t: k for k, t in enumerate(model.active_tasks)}
        sites = [info for info in model.sites if info.active]
        width = max((len(info.tasks) for info in sites), default=0)
        n = len(self.tasks)
        # each site's stages by position, padded with ``n`` (a column that is always -inf)
        self.site_tasks = np.full((len(sites), width), n, dtype=int)
        self.site_of = np.zeros(n, dtype=int)
        for s, info in enumerate(sites):
            ids = [local[t] for t in info.tasks]
            self.site_tasks[s, : len(ids)] = ids
            self.site_of[ids] = s
        self.padded = self.site_tasks == n
        preds = [[local[p] for p in model.tasks[t].predecessors] for t in model.active_tasks]
        fan_in = max((len(p) for p in preds), default=0)
        self.preds = np.full((n, max(fan_in, 1)), n, dtype=int)
        for k, p in enumerate(preds):
            self.preds[k, : len(p)] = p
        self.has_preds = np.array([bool(p) for p in preds], dtype=bool)
        # stage positions from the last to the first: a stage's successors in its site come later
        self.by_position = [
            self.site_tasks[:, k][~self.padded[:, k]] for k in reversed(range(width))
        ]


_LAYOUTS: weakref.WeakKeyDictionary[Model, TallyLayout] = weakref.WeakKeyDictionary()


def stage_sums(
    layout: TallyLayout,
    ready: np.ndarray,
    start: np.ndarray,
    finish: np.ndarray,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """``initial`` (default zeros) plus the :data:`FIELDS` sums (rows) by active stage (columns)
    over a batch of replications: ``ready``, ``start`` and ``finish`` are (replications x active
    stages) arrays. Replications are added one after the other, in order, so the sums do not
    depend on how replications are batched."""
    done = ~np.isnan(finish)
    duration = np.where(done, finish - start, 0.0)
    on_site, on_last = critical_chains_batch(layout, ready, finish)
    # no stage waited (start is ready): the sums of waits stay as they are
    wait = None if start is ready else np.where(done, start - ready, 0.0)
    rows = (done, wait, None if wait is None else wait * wait, duration, duration * duration,
            on_site, on_last)  # fmt: skip
    total = np.zeros((len(FIELDS), finish.shape[1])) if initial is None else initial.copy()
    if not len(finish):
        return total
    for k, values in enumerate(rows):
        if values is None:
            continue
        if values.dtype == bool:  # counts: exact in any order
            total[k] += np.count_nonzero(values, axis=0)
        else:  # a running sum, in order (numpy's sum would add them pairwise)
            add_rows(total[k], values)
    return total


def add_rows(total: np.ndarray, values: np.ndarray) -> None:
    """Add the rows of ``values`` to ``total`` (a contiguous row) one after the other, in order,
    so that a sum does not depend on how the rows were batched: compiled
    (:mod:`capsim._arrays`) or, unbuilt, ``numpy.add.accumulate`` (in place: ``values`` is
    spent)."""
    if _add_rows is not None:
        _add_rows(total, values)
    elif len(values):
        values[0] += total
        total[:] = np.add.accumulate(values, axis=0, out=values)[-1]


def _first_latest(finished: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``table`` (m x k stages, padded with ``n``: ``finished``'s -inf row) and
    replication: the latest of its stages' finish times, ignoring NaN (-inf if all are), and
    the first stage finishing then, as its cell in a flat (stages x replications) array. Only
    the rows with a k-th stage take part in the k-th comparison (most stages have one
    predecessor)."""
    n, reps = len(finished) - 1, finished.shape[1]
    cell = np.arange(reps)
    best = finished[table[:, 0]]
    best[np.isnan(best)] = -np.inf
    label = table[:, :1] * reps + cell
    for column in table.T[1:]:
        rows = np.flatnonzero(column != n)
        if len(rows) < len(table):
            column = column[rows]
        else:
            rows = slice(None)
        other = finished[column]
        later = other > best[rows]  # NaN is never later
        best[rows] = np.where(later, other, best[rows])
        label[rows] = np.where(later, column[:, None] * reps + cell, label[rows])
    return best, label


def critical_chains_batch(
    layout: TallyLayout, ready: np.ndarray, finish: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (replications x active stages) arrays: whether a stage lies on the chain that
    decided when its site came online, and on the chain of the last site to come online (the
    first such site in site order on a tie). A site that did not finish has no chain.

    Computed on (stages x replications) arrays, whose rows are gathered whole."""
    reps, n = finish.shape
    on = np.zeros((n + 1, reps), dtype=bool)
    if n == 0 or reps == 0:
        return on[:n].T, on[:n].T
    finished = np.empty((n + 1, reps))
    finished[:n] = finish.T
    finished[n] = -np.inf  # what pads the layout's tables
    cell = np.arange(reps)  # + stage * reps: a stage's cell in the flat ``on``
    complete = np.ones((len(layout.site_tasks), reps), dtype=bool)
    for column in layout.site_tasks.T:
        complete &= ~np.isnan(finished[column])
    latest, last = _first_latest(finished, layout.site_tasks)
    on.reshape(-1)[np.where(complete, last, n * reps + cell)] = True
    # each stage's binding predecessor: the first of those that finished last (a finished
    # stage's predecessors all finished), if the stage became ready when it finished
    before, binding = _first_latest(finished, layout.preds)
    binds = layout.has_preds[:, None] & ~(before < ready.T - 1e-9)
    binding = np.where(binds, binding, n * reps + cell)
    for tasks in layout.by_position:  # successors before their predecessors
        on.reshape(-1)[binding[tasks]] |= on[tasks]
    online = np.where(complete, latest, -np.inf)
    last_site = np.argmax(online, axis=0)
    on_site = on[:n]
    on_last = on_site & (layout.site_of[:, None] == last_site) & complete.any(axis=0)
    return on_site.T, on_last.T


class StageTally:
    """Per-stage sums over replications, merged by addition (so memory does not grow with the
    number of replications): waits and durations, and how often each stage lay on the chain of
    stages that decided when its site came online (``critical_site``) and when the last site came
    online (``critical_last``). Replications are kept and reduced in batches; ``sums`` reduces
    what is pending."""

    FIELDS = FIELDS

    def __init__(self, model: Model) -> None:
        self.model = model
        self._layout = TallyLayout.of(model)
        self.tasks = self._layout.tasks
        # every stage active (the usual case): a run's arrays are taken whole, without indexing
        self._whole = len(self.tasks) == len(model.tasks)
        self._sums = np.zeros((len(FIELDS), len(self.tasks)))
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._batch = max(1, _BATCH_VALUES // max(3 * len(self.tasks), 1))
        self.replications = 0

    @property
    def sums(self) -> np.ndarray:
        """The sums so far: one row per field, one column per active stage."""
        self._reduce()
        return self._sums

    @sums.setter
    def sums(self, value: np.ndarray) -> None:
        self._pending.clear()
        self._sums = value

    def add(self, run: Run) -> None:
        """Count one replication."""
        if self._whole:
            self._pending.append((run.ready, run.start, run.finish))
        else:
            tasks = self.tasks
            self._pending.append((run.ready[tasks], run.start[tasks], run.finish[tasks]))
        self.replications += 1
        if len(self._pending) >= self._batch:
            self._reduce()

    def _reduce(self) -> None:
        if not self._pending:
            return
        ready, start, finish = (np.stack(x) for x in zip(*self._pending, strict=True))
        self._pending.clear()
        self._sums = stage_sums(self._layout, ready, start, finish, self._sums)

    def table(self) -> Blocks:
        """The sums as a table, one row per active site x stage: its ``task``, the
        ``replications`` counted and the :data:`FIELDS`."""
        counted = np.full(len(self.tasks), self.replications)
        ids = np.column_stack([self.tasks, counted]).astype(np.int64)
        return Blocks.stack([(("task", "replications"), ids), (FIELDS, self.sums.T)])


def critical_chains(run: Run) -> tuple[set[int], set[int]]:
    """The stages (task indices) that decided when each site came online (walking back from its
    last stage through the predecessor that finished last), and the chain of the last site to
    come online.

    >>> from capsim.loader import load_scenario, shipped_scenario
    >>> from capsim.model import Model
    >>> model = Model(load_scenario(shipped_scenario("greenfield-campus")))
    >>> sites, last = critical_chains(model.run(model.mean_durations()))
    >>> sorted(model.tasks[t].stage for t in last)
    ['commissioning', 'construction', 'permit_amendment']
    """
    layout = TallyLayout.of(run.model)
    tasks = layout.tasks
    on_site, on_last = critical_chains_batch(
        layout, run.ready[tasks][None], run.finish[tasks][None]
    )
    return set(tasks[on_site[0]].tolist()), set(tasks[on_last[0]].tolist())
