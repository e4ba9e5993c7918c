"""Cross-reference checks of a schema-valid scenario: every name used must exist, graphs must be
acyclic, sizes must fit. Each problem carries its key path, such as ``sites[2].pipeline``.

>>> from capsim.loader import load_scenario, default_scenario_path
>>> check_scenario(load_scenario(default_scenario_path()))
[]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx

from capsim.errors import Problem, did_you_mean
from capsim.graph import pipeline_graph
from capsim.schema import Scenario
from capsim.world import NEWEST


def check_scenario(scenario: Scenario) -> list[Problem]:
    """Every cross-reference problem in a schema-valid scenario."""
    return _check_pipelines_and_sites(scenario) + _check_world(scenario)


def _check_pipelines_and_sites(scenario: Scenario) -> list[Problem]:
    problems: list[Problem] = []
    for pname, pipeline in scenario.pipelines.items():
        base = f"pipelines.{pname}.stages"
        for kind in ("construction", "gpus"):
            named = [n for n, st in pipeline.stages.items() if st.kind == kind]
            if len(named) > 1:
                problems.append(
                    Problem(base, f"at most one {kind} stage per pipeline; got {', '.join(named)}")
                )
        kinds = {st.kind for st in pipeline.stages.values()}
        if "gpus" in kinds and "construction" not in kinds:
            problems.append(
                Problem(base, "a gpus stage needs a construction stage in the same pipeline: "
                        "GPUs come online on built, powered MW")
            )  # fmt: skip
        for sname, stage in pipeline.stages.items():
            for i, before in enumerate(stage.after):
                if before == sname:
                    problems.append(
                        Problem(f"{base}.{sname}.after[{i}]", "a stage cannot come after itself")
                    )
                elif before not in pipeline.stages:
                    problems.append(
                        Problem(
                            f"{base}.{sname}.after[{i}]",
                            did_you_mean(before, pipeline.stages, "stage"),
                        )
                    )
            problems += _check_needs(scenario, stage.needs, f"{base}.{sname}.needs")
        graph = pipeline_graph(pipeline)
        graph.remove_edges_from(list(nx.selfloop_edges(graph)))
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            continue
        loop = " -> ".join([a for a, _ in cycle] + [cycle[0][0]])
        problems.append(
            Problem(base, f"the stages form a cycle: {loop}; 'after' must not loop back")
        )
    seen: dict[str, int] = {}
    for i, site in enumerate(scenario.sites):
        path = f"sites[{i}]"
        if site.name in seen:
            problems.append(
                Problem(
                    f"{path}.name",
                    f"duplicate site name {site.name!r} (also sites[{seen[site.name]}])",
                )
            )
        seen.setdefault(site.name, i)
        if site.start > scenario.horizon:
            problems.append(
                Problem(
                    f"{path}.start",
                    f"starts at {site.start:g} {scenario.time_unit}, after the horizon "
                    f"({scenario.horizon:g} {scenario.time_unit})",
                )
            )
        pipeline = scenario.pipelines.get(site.pipeline)
        if pipeline is None:
            problems.append(
                Problem(
                    f"{path}.pipeline", did_you_mean(site.pipeline, scenario.pipelines, "pipeline")
                )
            )
            continue
        for sname, override in site.overrides.items():
            if sname not in pipeline.stages:
                problems.append(
                    Problem(
                        f"{path}.overrides.{sname}", did_you_mean(sname, pipeline.stages, "stage")
                    )
                )
            elif override.needs is not None:
                problems += _check_needs(
                    scenario, override.needs, f"{path}.overrides.{sname}.needs"
                )
    return problems


def _check_needs(scenario: Scenario, needs: Mapping[str, float], path: str) -> list[Problem]:
    problems = []
    for resource, amount in needs.items():
        if resource not in scenario.resources:
            problems.append(
                Problem(
                    f"{path}.{resource}", did_you_mean(resource, scenario.resources, "resource")
                )
            )
        elif amount > scenario.resources[resource].capacity:
            capacity = scenario.resources[resource].capacity
            problems.append(
                Problem(
                    f"{path}.{resource}",
                    f"needs {amount:g} but resource {resource!r} has capacity "
                    f"{capacity:g}; it could never be granted",
                )
            )
    return problems


def _known(name: str | None, known: Iterable[str], what: str, path: str) -> list[Problem]:
    known = list(known)
    if name is None or name in known:
        return []
    return [Problem(path, did_you_mean(name, known, what))]


def _check_world(scenario: Scenario) -> list[Problem]:
    s = scenario
    problems: list[Problem] = []
    orgs = list(s.orgs) if s.orgs else sorted({site.org for site in s.sites})
    generations = list(s.generations)
    site_names = [site.name for site in s.sites]
    if s.orgs:
        for i, site in enumerate(s.sites):
            problems += _known(site.org, orgs, "org", f"sites[{i}].org")
    for name, org in s.orgs.items():
        for gen in org.fleet:
            problems += _known(gen, generations, "generation", f"orgs.{name}.fleet.{gen}")
    problems += _known(s.perspective, orgs, "org", "perspective")
    if s.hbm is not None:
        for name, supplier in s.hbm.suppliers.items():
            for buyer in supplier.reserved:
                problems += _known(buyer, orgs, "org", f"hbm.suppliers.{name}.reserved.{buyer}")
    for i, site in enumerate(s.sites):
        path = f"sites[{i}]"
        pipeline = s.pipelines.get(site.pipeline)
        kinds = {stage.kind for stage in pipeline.stages.values()} if pipeline else set()
        problems += _known(site.region, s.grid_regions, "grid region", f"{path}.region")
        problems += _known(
            site.jurisdiction, s.jurisdictions, "jurisdiction", f"{path}.jurisdiction"
        )
        needs = {"grid": ("region", "grid region"), "permit": ("jurisdiction", "jurisdiction")}
        for kind, (key, what) in needs.items():
            if kind in kinds and getattr(site, key) is None:
                problems.append(
                    Problem(
                        f"{path}.{key}",
                        f"pipeline {site.pipeline!r} has a {kind} stage, "
                        f"so the site needs a {what}",
                    )
                )
        if ("gpus" in kinds) != (site.gpus is not None):
            problems.append(
                Problem(
                    f"{path}.gpus", "a site has 'gpus' exactly when its pipeline has a gpus stage"
                )
            )
        if site.gpus is not None:
            problems += _known(
                site.gpus.generation,
                [*generations, NEWEST],
                "generation",
                f"{path}.gpus.generation",
            )
            tranches = site.gpus.tranches
            if (
                isinstance(tranches, list)
                and site.gpus.count is not None
                and sum(tranches) != site.gpus.count
            ):
                problems.append(
                    Problem(
                        f"{path}.gpus.tranches",
                        f"tranches add up to {sum(tranches)} GPUs, "
                        f"not the site's count {site.gpus.count}",
                    )
                )
            if (
                site.gpus.count is None
                and site.gpus.generation == NEWEST
                and isinstance(tranches, list)
            ):
                problems.append(Problem(f"{path}.gpus.count", "give count with explicit tranches"))
    for name, risk in s.risks.items():
        path = f"risks.{name}"
        for j, site_name in enumerate(risk.sites):
            problems += _known(site_name, site_names, "site", f"{path}.sites[{j}]")
            site = next((x for x in s.sites if x.name == site_name), None)
            pipeline = s.pipelines.get(site.pipeline) if site else None
            if risk.stage is not None and pipeline is not None:
                problems += _known(risk.stage, pipeline.stages, "stage", f"{path}.stage")
            if risk.trigger and risk.trigger.energy_price_above is not None and site is not None:
                region = s.grid_regions.get(site.region) if site.region else None
                if region is None or region.energy_price is None:
                    problems.append(
                        Problem(
                            f"{path}.trigger.energy_price_above",
                            f"site {site_name!r} has no "
                            "grid region with an energy_price to compare",
                        )
                    )
        if risk.trigger is not None:
            problems += _known(risk.trigger.flag, s.flags, "flag", f"{path}.trigger.flag")
        if risk.effect.transfer is not None:
            problems += _known(risk.effect.transfer.to, orgs, "org", f"{path}.effect.transfer.to")
    for name, lease in s.leases.items():
        path = f"leases.{name}"
        problems += _known(lease.provider, orgs, "org", f"{path}.provider")
        problems += _known(
            lease.generation, [*generations, NEWEST], "generation", f"{path}.generation"
        )
        for k, tranche in enumerate(lease.tranches):
            problems += _known(
                tranche.generation,
                [*generations, NEWEST],
                "generation",
                f"{path}.tranches[{k}].generation",
            )
        customer = lease.customer or s.lab
        if customer is None:
            problems.append(
                Problem(
                    f"{path}.customer",
                    "no customer given and no perspective org (set "
                    "'perspective' or give one org of kind lab)",
                )
            )
        else:
            problems += _known(customer, orgs, "org", f"{path}.customer")
            if customer == lease.provider:
                problems.append(Problem(f"{path}.customer", "an org cannot lease from itself"))
    for name, strategy in s.strategies.items():
        for j, site_name in enumerate(strategy.sites):
            problems += _known(site_name, site_names, "site", f"strategies.{name}.sites[{j}]")
        for j, lease in enumerate(strategy.leases):
            problems += _known(lease, s.leases, "lease", f"strategies.{name}.leases[{j}]")
    return problems
