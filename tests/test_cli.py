"""The ``capsim`` command as a user runs it: its console entry point, in a subprocess."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

CAPSIM = str(Path(sys.executable).with_name("capsim"))
ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "name": "tiny",
    "start": "2026-01-01",
    "horizon": "10 years",
    "time_unit": "days",
    "resources": {"office": {"capacity": 1}},
    "pipelines": {
        "p": {
            "stages": {
                "a": {"duration": {"triangular": [10, 20, 30]}},
                "b": {"duration": 40, "after": ["a"], "needs": {"office": 1}},
            }
        }
    },
    "sites": [
        {"name": "s1", "org": "lab", "pipeline": "p", "mw": 100},
        {"name": "s2", "org": "lab", "pipeline": "p", "mw": 200},
    ],
}


def capsim(
    *args: str, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CAPSIM, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120, check=False
    )


def write(tmp_path: Path, doc: dict | str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def mutate(change) -> dict:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


def _set(path: list, value):
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _drop_key(key):
    return lambda doc: doc["sites"][0].pop(key)


def _rename_horizon(doc):
    doc["horizn"] = doc.pop("horizon")


BAD = {
    "malformed_yaml": ("name: tiny\n  : - [unclosed\n\tbad", ["YAML", "line 2"]),
    "wrong_type": (mutate(_set(["sites", 0, "mw"], "lots")), ["sites[0].mw", "valid number"]),
    "unknown_key": (mutate(_rename_horizon), ["horizn", "did you mean 'horizon'"]),
    "missing_field": (
        mutate(_drop_key("pipeline")),
        ["sites[0]", "missing required key 'pipeline'"],
    ),
    "low_above_high": (
        mutate(_set(["pipelines", "p", "stages", "a", "duration"], {"triangular": [30, 20, 10]})),
        ["pipelines.p.stages.a.duration.triangular", "[low, mode, high]", "increasing order"],
    ),
    "negative_sd": (
        mutate(
            _set(["pipelines", "p", "stages", "a", "duration"], {"normal": {"mean": 5, "sd": -1}})
        ),
        ["pipelines.p.stages.a.duration.normal.sd", "sd must be >= 0"],
    ),
    "unknown_family": (
        mutate(_set(["pipelines", "p", "stages", "a", "duration"], {"gamma": [1, 2]})),
        ["pipelines.p.stages.a.duration", "unknown distribution family 'gamma'", "triangular"],
    ),
    "cycle": (
        mutate(_set(["pipelines", "p", "stages", "a", "after"], ["b"])),
        ["pipelines.p.stages", "cycle", "a -> b -> a"],
    ),
    "unknown_pipeline": (
        mutate(_set(["sites", 1, "pipeline"], "q")),
        ["sites[1].pipeline", "unknown pipeline 'q'", "Known: p"],
    ),
    "unknown_stage": (
        mutate(_set(["pipelines", "p", "stages", "b", "after"], ["aa"])),
        ["pipelines.p.stages.b.after[0]", "unknown stage 'aa'", "did you mean 'a'"],
    ),
    "unknown_resource": (
        mutate(_set(["pipelines", "p", "stages", "b", "needs"], {"ofice": 1})),
        ["pipelines.p.stages.b.needs.ofice", "did you mean 'office'"],
    ),
    "needs_above_capacity": (
        mutate(_set(["pipelines", "p", "stages", "b", "needs"], {"office": 2})),
        ["pipelines.p.stages.b.needs.office", "capacity 1"],
    ),
    "start_after_horizon": (
        mutate(_set(["sites", 0, "start"], "2040-01-01")),
        ["sites[0].start", "after the horizon"],
    ),
    "bad_duration_unit": (
        mutate(_set(["horizon"], "10 parsecs")),
        ["horizon", "'10 parsecs'", "months"],
    ),
    "bad_time_unit": (mutate(_set(["time_unit"], "fortnights")), ["time_unit", "'days'"]),
    "empty_file": ("", ["expected a mapping"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_one_clear_error_and_writes_nothing(tmp_path: Path, case: str) -> None:
    doc, expected = BAD[case]
    path = write(tmp_path, doc, f"{case}.yaml")
    out = tmp_path / "out"
    result = capsim("run", str(path), "--out", str(out))
    message = result.stderr + result.stdout
    assert result.returncode == 2, message
    assert "Traceback" not in message
    assert f"{case}.yaml" in message
    for text in expected:
        assert text in message
    assert not out.exists()


def test_validate_reports_the_same_errors(tmp_path: Path) -> None:
    doc, expected = BAD["cycle"]
    result = capsim("validate", str(write(tmp_path, doc)))
    assert result.returncode == 2
    assert all(text in result.stderr for text in expected)


def test_missing_file(tmp_path: Path) -> None:
    result = capsim("run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "nope.yaml: file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_negative_seed_is_a_usage_error(tmp_path: Path) -> None:
    result = capsim("run", "--seed", "-1", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "--seed" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = capsim("run", str(write(tmp_path, BASE)), "--out", str(blocker / "out"))
    assert result.returncode == 2
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


def test_default_run_is_the_stargate_pivot_per_strategy(tmp_path: Path) -> None:
    result = capsim("run", "--seed", "5", "--out", "results", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stargate-pivot" in result.stdout
    out = tmp_path / "results"
    assert sorted(p.name for p in out.iterdir()) == [
        "capacity.csv", "costs.csv", "events.csv", "gantt.png", "hbm.csv", "sites.csv", "stages.csv"
    ]  # fmt: skip
    assert (out / "gantt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("stages", "sites", "capacity", "events", "costs"):
        table = pd.read_csv(out / f"{name}.csv")
        assert set(table["strategy"]) == {"build", "lease", "hybrid"}, name
    # the comparison table: a row per metric, a column per strategy
    for text in ("1 GW by", "5 GW by", "CapEx (USD bn)", "OpEx (USD bn)", "GPUs of lab online"):
        assert text in result.stdout
    events = pd.read_csv(out / "events.csv")
    build = events[events["strategy"] == "build"]
    assert {"transferred", "paused"} <= set(build["kind"])


def test_run_one_strategy(tmp_path: Path) -> None:
    scenario = str(ROOT / "scenarios" / "stargate-pivot.yaml")
    result = capsim("run", scenario, "--strategy", "lease", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    sites = pd.read_csv(tmp_path / "o" / "sites.csv")
    assert set(sites["strategy"]) == {"lease"}
    assert "us-campus" not in set(sites["site"])  # a build-only site
    bad = capsim("run", scenario, "--strategy", "leese", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "did you mean 'lease'" in bad.stderr
    assert not (tmp_path / "x").exists()


def test_plain_run_writes_tables_and_gantt(tmp_path: Path) -> None:
    scenario = str(ROOT / "scenarios" / "greenfield-campus.yaml")
    result = capsim("run", scenario, "--out", "results", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "greenfield-campus" in result.stdout
    out = tmp_path / "results"
    assert {"capacity.csv", "gantt.png", "sites.csv", "stages.csv"} <= {
        p.name for p in out.iterdir()
    }
    stages = pd.read_csv(out / "stages.csv")
    assert {"site", "org", "stage", "ready", "start", "finish", "wait", "duration"} <= set(stages)
    assert {"ready_date", "start_date", "finish_date"} <= set(stages)
    sites = pd.read_csv(out / "sites.csv")
    assert {"site", "org", "mw", "start", "online", "online_date"} <= set(sites)
    capacity = pd.read_csv(out / "capacity.csv")
    assert capacity["total_mw_online"].iloc[-1] == sites["mw"].sum()
    # the summary names every site with its online date
    for row in sites.itertuples():
        assert row.site in result.stdout and row.online_date in result.stdout


def test_run_reports_what_is_stuck_at_the_horizon(tmp_path: Path) -> None:
    doc = mutate(_set(["horizon"], 50))  # s1: a ends by 30, b needs 40 more; s2 waits for office
    result = capsim("run", str(write(tmp_path, doc)), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "Not finished by the horizon" in result.stdout
    assert "waiting for resource" in result.stdout and "office" in result.stdout
    stages = pd.read_csv(tmp_path / "out" / "stages.csv")
    assert set(stages["status"]) == {"done", "running", "waiting"}


def test_same_seed_same_tables_under_any_hash_seed(tmp_path: Path) -> None:
    scenario = str(ROOT / "scenarios" / "greenfield-campus.yaml")
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        assert capsim("run", scenario, "--seed", "11", "--out", str(out), env=env).returncode == 0
        outputs.append(
            [(out / name).read_bytes() for name in ("stages.csv", "sites.csv", "capacity.csv")]
        )
    assert outputs[0] == outputs[1]


def test_different_seeds_differ(tmp_path: Path) -> None:
    scenario = str(ROOT / "scenarios" / "greenfield-campus.yaml")
    for seed in ("1", "2"):
        assert (
            capsim("run", scenario, "--seed", seed, "--out", str(tmp_path / seed)).returncode == 0
        )
    assert (tmp_path / "1" / "stages.csv").read_bytes() != (
        tmp_path / "2" / "stages.csv"
    ).read_bytes()


def test_validate_prints_critical_path(tmp_path: Path) -> None:
    result = capsim("validate", str(write(tmp_path, BASE)))
    assert result.returncode == 0, result.stderr
    assert "Critical path: a -> b  (60.0 days)" in result.stdout


def test_pyarrow_allocates_with_the_system_malloc() -> None:
    probe = (
        "import capsim.cli as cli; "
        "cli.app = lambda: print(__import__('pyarrow').default_memory_pool().backend_name); "
        "cli.main()"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "system"


def test_schema_is_json_schema_of_scenarios() -> None:
    result = capsim("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert {"name", "start", "horizon", "pipelines", "sites"} <= set(schema["required"])


@pytest.mark.parametrize("command", ["run", "validate", "schema"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = capsim(command, "--help")
    assert result.returncode == 0
    assert "Example" in result.stdout and f"capsim {command}" in result.stdout


def test_version() -> None:
    from importlib.metadata import version

    result = capsim("--version")
    assert (result.returncode, result.stdout) == (0, f"capsim {version('capsim')}\n")


def test_a_progress_bar_leaves_nothing_in_a_log(tmp_path: Path) -> None:
    """Not a terminal: no bar (it left an empty line on stderr, before any error too)."""
    result = capsim("mc", str(write(tmp_path, BASE)), "--reps", "3", "--out", str(tmp_path / "o"))
    assert (result.returncode, result.stderr) == (0, "")
    bad = ["--objective", "gpu-months:2020-01-01", "--out", str(tmp_path / "p")]
    result = capsim("order", str(write(tmp_path, BASE)), *bad)  # found once the bar is up
    assert result.returncode == 2 and result.stderr.startswith("error: objective")


def test_impossible_calendar_date_is_a_clear_error(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace("'2026-01-01'", "2026-02-30")
    result = capsim("run", str(write(tmp_path, text)), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "day is out of range" in result.stderr and "Traceback" not in result.stderr


def test_unquoted_boolean_key_is_explained(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace("office:", "no:", 1)
    result = capsim("validate", str(write(tmp_path, text)))
    assert result.returncode == 2
    assert "resources: keys must be text" in result.stderr


STARGATE = ROOT / "scenarios" / "stargate-pivot.yaml"


def _stargate(change) -> dict:
    from capsim.loader import parse_yaml

    doc = parse_yaml(STARGATE.read_text())
    change(doc)
    return doc


def test_world_that_cannot_meet_demand_reports_what_is_stuck(tmp_path: Path) -> None:
    def starve(doc):
        for supplier in doc["hbm"]["suppliers"].values():
            for step in supplier["output"]:
                step["gb_per_period"] = 1e6  # a thousandth of the market

    path = write(tmp_path, yaml.safe_dump(_json(starve), sort_keys=False))
    result = capsim("run", str(path), "--strategy", "build", "--out", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "Not finished by the horizon (build)" in result.stdout
    assert re.search(
        r"uk-cobalt +│ gpus +│ waiting for HBM +│ tranche 1 wants 2\.3 PB", result.stdout
    )
    assert "PB of orders ahead of it" in result.stdout


def _json(change) -> dict:
    """The Stargate scenario changed, with dates as text so that yaml.safe_dump keeps them."""
    import datetime as dt

    def text(node):
        if isinstance(node, dict):
            return {k: text(v) for k, v in node.items()}
        if isinstance(node, list):
            return [text(v) for v in node]
        return node.isoformat() if isinstance(node, dt.date) else node

    return text(_stargate(change))


WORLD_BAD = {
    "unknown_provider": (
        lambda d: d["leases"]["oracle-offtake"].update(provider="orcale"),
        ["leases.oracle-offtake.provider", "did you mean 'oracle'"],
    ),
    "unknown_generation": (
        lambda d: d["sites"][0]["gpus"].update(generation="GB3000"),
        ["sites[0].gpus.generation", "did you mean 'GB300'"],
    ),
    "unknown_region": (
        lambda d: d["sites"][1].update(region="nordlnd"),
        ["sites[1].region", "did you mean 'nordland'"],
    ),
    "unknown_buyer": (
        lambda d: d["hbm"]["suppliers"]["samsung"]["reserved"].update(nvidia=0.01),
        ["hbm.suppliers.samsung.reserved.nvidia", "unknown org"],
    ),
    "tranches_too_large": (
        lambda d: d["leases"]["aws-offtake"]["tranches"][1].update(mw=900),
        ["leases.aws-offtake", "tranches add up to 1550 mw, more than the agreement's 1000"],
    ),
    "generation_without_hbm": (
        lambda d: d["generations"]["H100"].pop("hbm_gb"),
        ["generations.H100", "missing required key 'hbm_gb'"],
    ),
    "tier_dates_out_of_order": (
        lambda d: d["generations"]["VeraRubin"]["available"].update({3: "2026-01-01"}),
        ["generations.VeraRubin", "dates out of order"],
    ),
    "unknown_strategy_site": (
        lambda d: d["strategies"]["build"]["sites"].append("stargate-uae"),
        ["strategies.build.sites[3]", "unknown site 'stargate-uae'"],
    ),
}


@pytest.mark.parametrize("case", sorted(WORLD_BAD))
def test_world_bad_input_gets_one_clear_error(tmp_path: Path, case: str) -> None:
    change, expected = WORLD_BAD[case]
    path = write(tmp_path, yaml.safe_dump(_json(change), sort_keys=False), f"{case}.yaml")
    result = capsim("run", str(path), "--out", str(tmp_path / "out"))
    message = result.stderr + result.stdout
    assert result.returncode == 2, message
    assert "Traceback" not in message and f"{case}.yaml" in message
    for text in expected:
        assert text in message
    assert not (tmp_path / "out").exists()


def test_validate_world_scenario_resolves_permit_and_grid_times() -> None:
    """Permit and grid stages without a duration of their own take their jurisdiction's review
    and their region's study (plus build) time in the critical path."""
    result = capsim("validate", str(STARGATE))
    assert result.returncode == 0, result.stderr
    assert "as for site oracle-shackelford" in result.stdout
    assert "Critical path: site_selection -> site_control -> grid -> commissioning" in result.stdout
