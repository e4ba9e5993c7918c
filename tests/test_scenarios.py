"""Every shipped scenario and the README's example validate and run to completion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from capsim.capacity import capacity_table
from capsim.loader import default_scenario_path, load_scenario, parse_scenario, parse_yaml
from capsim.model import Model, replication_rng
from capsim.results import site_table, stage_table

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_scenarios_are_shipped_in_the_package() -> None:
    assert SCENARIOS, "no scenarios/*.yaml"
    assert default_scenario_path().is_file()
    assert {p.name for p in SCENARIOS} >= {"greenfield-campus.yaml", "portfolio.yaml"}


def _strategies(path: Path) -> list[str | None]:
    return list(load_scenario(path).strategies) or [None]


@pytest.mark.parametrize(
    ("path", "strategy"),
    [(p, s) for p in SCENARIOS for s in _strategies(p)],
    ids=lambda v: v.name if isinstance(v, Path) else str(v),
)
def test_scenario_validates_and_runs_to_completion(path: Path, strategy: str | None) -> None:
    model = Model(load_scenario(path), strategy)
    sites = {info.spec.name for info in model.sites}
    for replication in range(10):
        run = model.run(model.draw(replication_rng(model.scenario.seed, replication)))
        # every site finishes; an agreement may still wait for its provider (and says so)
        stuck = [b for b in run.blockages if b.site in sites]
        assert not stuck, stuck[:3]
    stages, sites, capacity = stage_table(run), site_table(run), capacity_table(run)
    assert stages["status"].isin(["done", "cancelled"]).all()
    # MW are conserved: each org's own MW at the horizon is its fleet plus the MW online at the
    # sites it owns then (transfers move them), and the running total ends at all sites' MW
    scenario = model.scenario
    fleet = {
        org: sum(n * scenario.generations[g].power_kw / 1000 for g, n in spec.fleet.items())
        for org, spec in scenario.orgs.items()
    }
    last = capacity.groupby("org")["mw_own"].last()
    owned = sites.groupby("owner")["mw_online"].sum()
    for org, mw in last.items():
        assert mw == pytest.approx(owned.get(org, 0.0) + fleet.get(org, 0.0), abs=1e-6), org
    assert capacity["total_mw_online"].iloc[-1] == pytest.approx(
        sites["mw_online"].sum() + sum(fleet.values()), abs=1e-6
    )


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
    document = _json_ready(parse_yaml(path.read_text()))
    errors = [e.message for e in validator.iter_errors(document)]
    assert errors == []
