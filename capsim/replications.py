"""One replication reduced to a row, and chunks of replications: what every Monte Carlo worker
runs. A row holds the milestone times, each site's online time, the perspective org's costs and
counts of notable events; a :class:`StageTally` adds up per-stage waits, durations and how often
each stage decided when its site came online.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import platform
import traceback
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from capsim import fastpath, leanpath
from capsim.blocks import Blocks
from capsim.capacity import first_reached, perspective_levels
from capsim.costs import cost_summary
from capsim.model import Model, replication_rng
from capsim.profiles import PROFILE_REPS, ProfileBatch, Profiles
from capsim.records import StageRecord, WorldEvent
from capsim.schema import Scenario
from capsim.tally import StageTally

NOTABLE_COUNTS = ("paused", "cancelled", "transferred", "lease_late", "lease_terminated")
#: The headline costs among them.
HEADLINE_COSTS = ("capex", "opex", "npv_cost", "usd_per_gpu_hour")
#: The perspective org's costs in each row (USD; the last is USD per GPU-hour).
COST_COLUMNS = ("capex", "opex", "npv_cost", "capex_facility", "capex_power", "capex_gpus",
                "energy", "lease", "usd_per_gpu_hour")  # fmt: skip


def replication_row(
    model: Model,
    seed: int,
    replication: int,
    tally: StageTally | None = None,
    logs: dict[str, list] | None = None,
    profiles: Profiles | None = None,
) -> dict[str, Any]:
    """One replication reduced to one row: milestone times, each site's online time, costs of the
    perspective org, counts of notable events; its stages are added to ``tally`` and, among the
    first :data:`~capsim.profiles.PROFILE_REPS`, its profile to ``profiles``. A replication that
    raises gives a row with ``failed`` set and the error, so that a batch goes on."""
    row: dict[str, Any] = {
        "replication": replication,
        "failed": False,
        "error": "",
        "finished": False,
    }
    try:
        run = model.run(model.draw(replication_rng(seed, replication)))
        row["finished"] = run.finished
        levels = perspective_levels(run)  # for the milestones and the profile
        for milestone, t in first_reached(levels, model.scenario.milestones).items():
            row[milestone.column] = t
        online = run.site_online().tolist()
        for info, t in zip((i for i in model.sites if i.active), online, strict=True):
            row[f"online:{info.spec.name}"] = t
        row["t_all_online"] = (
            max(online) if online and not any(map(math.isnan, online)) else math.nan
        )
        lab = model.scenario.lab
        if lab is not None:
            costs = cost_summary(run, lab)
            for key in COST_COLUMNS:
                row[key] = costs[key]
        counts = run.kind_counts()
        for kind in NOTABLE_COUNTS:
            row[f"n_{kind}"] = counts[kind]
        if tally is not None:
            tally.add(run)
        if profiles is not None and replication < PROFILE_REPS:
            profiles.add(replication, run, levels)
        if logs is not None:
            logs["stages"].extend((replication, *record) for record in run.events())
            logs["world"].extend((replication, *event) for event in run.world)
    except Exception as exc:
        row["failed"] = True
        row["error"] = f"{type(exc).__name__}: {exc} | " + traceback.format_exc(limit=-1).strip()
    return row


_MODELS: dict[tuple[str, str | None], Model] = {}


def compiled(scenario: Scenario, strategy: str | None, scenario_hash: str | None = None) -> Model:
    """The model of ``scenario`` and ``strategy``, compiled once per process (by the scenario's
    :func:`fingerprint`, or ``scenario_hash`` if it is at hand): ``monte_carlo`` and the chunks
    it runs in its own process share it, and worker processes forked after it inherit it."""
    key = (scenario_hash or fingerprint(scenario), strategy)
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = Model(scenario, strategy)
    return model


class Chunk(NamedTuple):
    """What a chunk of replications gives back."""

    rows: Blocks  # a row per replication
    stages: Blocks  # the StageTally sums (StageTally.table)
    profiles: ProfileBatch  # of its replications below PROFILE_REPS
    stage_log: pd.DataFrame | None  # with --save-events
    world_log: pd.DataFrame | None


def run_chunk(
    scenario: Scenario, strategy: str | None, seed: int, start: int, stop: int,
    save_events: bool = False, scenario_hash: str | None = None,
) -> Chunk:  # fmt: skip
    """Replications ``start`` to ``stop - 1``: their rows, their stages' tally and, with
    ``save_events``, their full logs. Compiles the model once per process; ``scenario_hash`` is
    the scenario's :func:`fingerprint` if the caller has it (it costs ~0.3 ms at 50 sites)."""
    keep_freed_memory()
    model = compiled(scenario, strategy, scenario_hash)
    tally, profiles = StageTally(model), Profiles(model)
    for path in (fastpath, leanpath):  # the first that applies, else the engine
        if not path.eligible(model) or save_events:
            continue
        try:
            rows, tally.sums = path.simulate_chunk(model, seed, start, stop, profiles)
        except Exception:  # the next path or the engine runs them again, recording what failed
            tally, profiles = StageTally(model), Profiles(model)
        else:
            tally.replications = stop - start
            return Chunk(rows, tally.table(), profiles.batch(), None, None)
    logs: dict[str, list] | None = {"stages": [], "world": []} if save_events else None
    rows = Blocks.from_frame(pd.DataFrame(
        [replication_row(model, seed, i, tally, logs, profiles) for i in range(start, stop)]
    ))  # fmt: skip
    if logs is None:
        return Chunk(rows, tally.table(), profiles.batch(), None, None)
    stage_log = pd.DataFrame(logs["stages"], columns=["replication", *StageRecord._fields])
    world_log = pd.DataFrame(logs["world"], columns=["replication", *WorldEvent._fields])
    return Chunk(rows, tally.table(), profiles.batch(), stage_log, world_log)


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc's allocator keep freed memory for the next chunk (up to 64 MB at the top of the
    heap; arrays below 32 MB from the heap): by default it hands a chunk's large arrays back to
    the system when they are freed and the next chunk maps them afresh, a page fault per 4 KB,
    which took about half of the fast path's time (``benchmarks/run.py --only fast``). Once per
    process computing replications; elsewhere (not glibc) nothing. Returns whether it applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    trim, mmap = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
    return bool(mallopt(trim, 64 << 20)) and bool(mallopt(mmap, 32 << 20))


def code_fingerprint() -> str:
    """A hash of capsim's own source, the compiled lean loop's included (its ``.pyx`` is installed
    with the package): chunks computed by other code are not reused."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *here.glob("*.pyx")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(scenario: Scenario) -> str:
    """A hash of the validated scenario: two runs share chunks only if it is equal."""
    return hashlib.sha256(scenario.model_dump_json(by_alias=True).encode()).hexdigest()[:16]
