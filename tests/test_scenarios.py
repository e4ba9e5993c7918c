"""Every shipped scenario and the README's example validate and run to completion."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from capsim.capacity import capacity_table
from capsim.loader import default_scenario_path, load_scenario, parse_scenario
from capsim.model import Model, replication_rng
from capsim.results import site_table, stage_table

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_scenarios_are_shipped_in_the_package() -> None:
    assert SCENARIOS, "no scenarios/*.yaml"
    assert default_scenario_path().is_file()
    assert {p.name for p in SCENARIOS} >= {"greenfield-campus.yaml", "portfolio.yaml"}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_validates_and_runs_to_completion(path: Path) -> None:
    model = Model(load_scenario(path))
    for replication in range(20):
        run = model.run(model.draw(replication_rng(model.scenario.seed, replication)))
        assert run.finished, run.blockages[:3]
    stages, sites, capacity = stage_table(run), site_table(run), capacity_table(run)
    assert (stages["status"] == "done").all()
    assert sites["online"].notna().all()
    # MW are conserved: the capacity curve ends at the sum of the sites' MW, per org and in total
    last = capacity.groupby("org")["mw_online"].last()
    assert np.allclose(last.sort_index(), sites.groupby("org")["mw"].sum().sort_index())
    assert capacity["total_mw_online"].iloc[-1] == pytest.approx(sites["mw"].sum())


def test_readme_example_scenario_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no yaml example"
    for block in blocks:
        scenario = parse_scenario(yaml.safe_load(block), "README.md")
        model = Model(scenario)
        assert model.run(model.draw(replication_rng(0))).finished


def _json_ready(node):
    """YAML gives dates and non-string keys; JSON Schema sees what an editor would: text."""
    if isinstance(node, dict):
        return {str(k): _json_ready(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_json_ready(v) for v in node]
    return node.isoformat() if hasattr(node, "isoformat") else node


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_scenario_files_pass_the_published_json_schema(path: Path) -> None:
    """What `capsim schema` prints must accept every file capsim accepts (editors use it)."""
    import jsonschema

    from capsim.schema import Scenario

    validator = jsonschema.Draft202012Validator(Scenario.model_json_schema())
    errors = [
        e.message for e in validator.iter_errors(_json_ready(yaml.safe_load(path.read_text())))
    ]
    assert errors == []
