"""capsim: a discrete-event capacity-planning simulator for AI compute.

The Python API mirrors the command line (heavy modules load on first use, so that importing
capsim stays fast)::

    import capsim

    scenario = capsim.load_scenario("scenarios/stargate-pivot.yaml")
    mc = capsim.monte_carlo(scenario, strategy="lease", reps=500, seed=1)
    mc.milestones                      # P10/P50/P90, mean and CI per milestone
    cmp = capsim.compare(scenario, reps=200, seed=1)
    cmp.differences                    # paired differences with 95% CIs
    capsim.search_orders(scenario, strategy="build", objective="p50:1 GW", reps=50, seed=1).table
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_scenario": "capsim.loader",
    "parse_scenario": "capsim.loader",
    "Model": "capsim.model",
    "replication_rng": "capsim.model",
    "monte_carlo": "capsim.experiments",
    "compare": "capsim.comparison",
    "run_tables": "capsim.summary",
    "strategy_summary": "capsim.summary",
}
__all__ = [*_API, "search_orders"]


def __getattr__(name: str) -> Any:
    if name == "search_orders":
        return import_module("capsim.ordering").search
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'capsim' has no attribute {name!r}")
