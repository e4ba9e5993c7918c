"""Stage graphs: one networkx DiGraph per pipeline, its validation and the critical path method.

>>> from capsim.schema import Pipeline
>>> p = Pipeline.model_validate({"stages": {
...     "permit": {"duration": 10}, "grid": {"duration": 30, "after": ["permit"]},
...     "build": {"duration": 20, "after": ["permit"]},
...     "commission": {"duration": 5, "after": ["grid", "build"]}}})
>>> rows = critical_path_method(pipeline_graph(p))
>>> [(r.stage, r.early_start, r.total_float) for r in rows]
[('permit', 0.0, 0.0), ('grid', 10.0, 0.0), ('build', 10.0, 10.0), ('commission', 40.0, 0.0)]
>>> critical_chain(pipeline_graph(p), rows)
['permit', 'grid', 'commission']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import networkx as nx

from capsim.schema import Pipeline

_TOLERANCE = 1e-9


def pipeline_graph(pipeline: Pipeline) -> nx.DiGraph:
    """The stage DAG of ``pipeline``: an edge ``a -> b`` when ``b`` lists ``a`` in ``after``.

    Node attributes: ``order`` (position in the file, used to break ties deterministically) and
    ``stage`` (the :class:`~capsim.schema.Stage`). Unknown ``after`` names are left out here; see
    :func:`capsim.checks.check_scenario`.
    """
    graph = nx.DiGraph()
    for order, (name, stage) in enumerate(pipeline.stages.items()):
        graph.add_node(name, order=order, stage=stage)
    for name, stage in pipeline.stages.items():
        graph.add_edges_from((before, name) for before in stage.after if before in pipeline.stages)
    return graph


def stage_order(graph: nx.DiGraph) -> list[str]:
    """Topological order of the stages, ties broken by their order in the file."""
    return list(nx.lexicographical_topological_sort(graph, key=lambda n: graph.nodes[n]["order"]))


class CpmRow(NamedTuple):
    """One stage's schedule from the critical path method (times relative to the pipeline start)."""

    stage: str
    duration: float
    early_start: float
    early_finish: float
    late_start: float
    late_finish: float
    total_float: float

    @property
    def critical(self) -> bool:
        return self.total_float <= _TOLERANCE


def critical_path_method(
    graph: nx.DiGraph, duration: Mapping[str, float] | Callable[[str], float] | None = None
) -> list[CpmRow]:
    """Forward and backward pass over the DAG; ``duration`` defaults to each stage's mean.

    Rows come in topological order. The project length is the largest early finish.
    """
    if duration is None:

        def length(n: str) -> float:
            return graph.nodes[n]["stage"].duration.mean
    elif callable(duration):
        length = duration
    else:
        length = duration.__getitem__
    order = stage_order(graph)
    early: dict[str, tuple[float, float]] = {}
    for n in order:
        es = max((early[p][1] for p in graph.predecessors(n)), default=0.0)
        early[n] = (es, es + length(n))
    end = max((ef for _, ef in early.values()), default=0.0)
    late: dict[str, tuple[float, float]] = {}
    for n in reversed(order):
        lf = min((late[s][0] for s in graph.successors(n)), default=end)
        late[n] = (max(lf - length(n), 0.0), lf)  # clamp -0.0 from rounding
    return [
        CpmRow(n, length(n), *early[n], *late[n], max(late[n][0] - early[n][0], 0.0)) for n in order
    ]


def critical_chain(graph: nx.DiGraph, rows: list[CpmRow]) -> list[str]:
    """One chain of zero-float stages, each a successor of the last, from start to finish."""
    by_stage = {r.stage: r for r in rows}
    current = next((r for r in rows if r.critical and r.early_start <= _TOLERANCE), None)
    chain: list[str] = []
    while current is not None:
        chain.append(current.stage)
        successors = sorted(graph.successors(current.stage), key=lambda n: graph.nodes[n]["order"])
        current = next(
            (
                by_stage[n]
                for n in successors
                if by_stage[n].critical
                and abs(by_stage[n].early_start - current.early_finish) <= _TOLERANCE
            ),
            None,
        )
    return chain
