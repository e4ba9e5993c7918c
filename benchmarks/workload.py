"""The benchmark workload as a capsim scenario: the same sites, stages, resources and HBM supply as
:mod:`reference` (see its docstring), so that the two can be compared for speed and checked for
agreement.

- ``permit`` and ``grid`` are plain ``task`` stages that hold one unit of ``permit_office``
  (capacity 5) or ``grid_studies`` (capacity 3): SimPy's Resource.
- ``construct`` is a one-phase ``construction`` stage; ``hbm`` a ``gpus`` stage of one tranche
  whose duration is the delivery time after the HBM allocation. There is no grid or power stage,
  so every site is powered from the start and its GPUs come online as soon as they are delivered;
  ``commission`` waits for ``grid`` and ``hbm`` only, as in the reference.
- Orgs ``c0``, ``c1``, ``c2`` have tiers 1, 2, 3 (site ``i`` belongs to ``c{i % 3}``): the HBM
  market serves the highest tier first, then by order time, strictly head of line.
- One generation ``unit`` with 1 GB of HBM per GPU, so a site's GPU count is its HBM need.
- One HBM supplier delivering 200 GB every 30 days, nothing reserved.

>>> scenario = capsim_scenario(6)
>>> [s.gpus.count for s in scenario.sites] == [hbm_need(i) for i in range(6)]
True
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import (
    COMMISSION,
    CONSTRUCT,
    DELIVERY,
    GRID,
    PERMIT,
    PERMITS_AT_ONCE,
    SELECT,
    STUDIES_AT_ONCE,
    SUPPLY_PERIOD,
    SUPPLY_UNITS,
    hbm_need,
)

from capsim.loader import parse_scenario
from capsim.schema import Scenario

START = "2026-01-01"


def _dist(spec: tuple[str, tuple[float, ...]]) -> dict:
    family, params = spec
    if family == "triangular":
        return {"triangular": list(params)}
    median, sigma = params
    return {"lognormal": {"mu": math.log(median), "sigma": sigma}}


def _mean(spec: tuple[str, tuple[float, ...]]) -> float:
    family, params = spec
    if family == "triangular":
        return sum(params) / 3
    median, sigma = params
    return median * math.exp(sigma * sigma / 2)


def default_horizon(n_sites: int) -> float:
    """Days enough for every site to finish, with a wide margin: the slowest of the three queues
    (permits, grid studies, HBM supply) worked through at its mean rate, times 1.5, plus four
    years for the stages before and after it."""
    permits = n_sites * _mean(PERMIT) / PERMITS_AT_ONCE
    studies = n_sites * _mean(GRID) / STUDIES_AT_ONCE
    supply = sum(hbm_need(i) for i in range(n_sites)) / SUPPLY_UNITS * SUPPLY_PERIOD
    return math.ceil(1.5 * max(permits, studies, supply) + 4 * 365)


def scenario_dict(n_sites: int = 50, horizon_days: float | None = None) -> dict:
    """The workload as a plain scenario mapping (what a YAML file would hold)."""
    horizon = default_horizon(n_sites) if horizon_days is None else horizon_days
    return {
        "name": f"benchmark-{n_sites}-sites",
        "description": "capsim's benchmark workload (benchmarks/reference.py)",
        "start": START,
        "horizon": f"{horizon:g} days",
        "time_unit": "days",
        "seed": 1,
        "milestones": [{"mw": n_sites}],
        "resources": {
            "permit_office": {"capacity": PERMITS_AT_ONCE},
            "grid_studies": {"capacity": STUDIES_AT_ONCE},
        },
        "pipelines": {
            "site": {
                "stages": {
                    "select": {"duration": _dist(SELECT)},
                    "permit": {
                        "duration": _dist(PERMIT),
                        "after": ["select"],
                        "needs": {"permit_office": 1},
                    },
                    "grid": {
                        "duration": _dist(GRID),
                        "after": ["permit"],
                        "needs": {"grid_studies": 1},
                    },
                    "construct": {
                        "kind": "construction",
                        "phases": 1,
                        "duration": _dist(CONSTRUCT),
                        "after": ["permit"],
                    },
                    "hbm": {"kind": "gpus", "duration": _dist(DELIVERY), "after": ["construct"]},
                    "commission": {"duration": _dist(COMMISSION), "after": ["grid", "hbm"]},
                }
            }
        },
        "orgs": {f"c{k}": {"tier": k + 1} for k in range(3)},
        "generations": {
            "unit": {
                "hbm_gb": 1,
                "gpu_kw": 0.001,  # 256 GPUs x 2.5 W all-in: far below the site's 1 MW
                "pflops": 1,
                "available": {1: "2000-01-01"},
            }
        },
        "hbm": {
            "period": f"{SUPPLY_PERIOD:g} days",
            "suppliers": {"supplier": {"output": [{"from": START, "gb_per_period": SUPPLY_UNITS}]}},
        },
        "sites": [
            {
                "name": f"site{i:05d}",
                "org": f"c{i % 3}",
                "pipeline": "site",
                "mw": 1,
                "gpus": {"generation": "unit", "count": hbm_need(i), "tranches": 1},
            }
            for i in range(n_sites)
        ],
    }


def capsim_scenario(n_sites: int = 50, horizon_days: float | None = None) -> Scenario:
    """The workload as a validated capsim scenario (``parse_scenario``)."""
    return parse_scenario(scenario_dict(n_sites, horizon_days), f"benchmark-{n_sites}-sites")


def precedence_scenario(n_sites: int = 50) -> Scenario:
    """The workload without anything shared: no permit or grid-study slots, no HBM market, the
    HBM delivery a plain stage. Pure precedence, so ``capsim mc`` takes the vectorised fast path;
    the durations and the graph are the workload's."""
    doc = scenario_dict(n_sites)
    for key in ("resources", "hbm", "generations"):
        doc.pop(key)
    for stage in doc["pipelines"]["site"]["stages"].values():
        for key in ("needs", "kind", "phases"):
            stage.pop(key, None)
    for site in doc["sites"]:
        site.pop("gpus")
    doc["name"] = f"precedence-{n_sites}-sites"
    return parse_scenario(doc, doc["name"])


def commission_tasks(model) -> np.ndarray:
    """The task index of every site's ``commission`` stage, by site."""
    return stage_tasks(model, "commission")


def stage_tasks(model, stage: str) -> np.ndarray:
    """The task index of every site's stage ``stage``, by site."""
    return np.array(
        [next(t for t in i.tasks if model.tasks[t].stage == stage) for i in model.sites]
    )


def write_yaml(path: Path, n_sites: int = 50, horizon_days: float | None = None) -> Path:
    """Write the workload as a scenario file for the command line."""
    import yaml

    path.write_text(yaml.safe_dump(scenario_dict(n_sites, horizon_days), sort_keys=False))
    return path
