"""The scenario file's schema: pydantic models that reject unknown keys and convert durations.

A scenario names its shared ``resources``, its ``pipelines`` (templates of stages with dependencies)
and its ``sites`` (each following one pipeline). Durations are converted to the scenario's
``time_unit`` while validating, so everything downstream works in one unit. Cross references
(pipeline names, ``after``, ``needs``) are checked by :mod:`capsim.graph`, which knows the graphs.

>>> s = Scenario.model_validate({
...     "name": "tiny", "start": "2026-01-01", "horizon": "2 years", "time_unit": "months",
...     "pipelines": {"p": {"stages": {"build": {"duration": "90 days"}}}},
...     "sites": [{"name": "a", "org": "lab", "pipeline": "p", "mw": 100}],
... }, context={"time_unit": "months"})
>>> s.horizon, round(s.pipelines["p"].stages["build"].duration.mean, 3)
(24.0, 2.957)
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from capsim.distributions import AnyDistribution
from capsim.fields import Name, Probability, SchemaModel
from capsim.units import Duration, Moment, TimeUnit
from capsim.world import (
    Costs,
    Generation,
    GridRegion,
    Hbm,
    Jurisdiction,
    Milestone,
    OfftakeAgreement,
    Org,
    Risk,
    SiteGpus,
    Strategy,
)

StageKind = Literal["task", "permit", "grid", "power", "construction", "gpus"]
KINDS_HELP = {
    "task": "runs for its duration (the default)",
    "permit": "a review by the site's jurisdiction, which may refuse",
    "grid": "a connection request in the site's grid region: study, MW budget, build",
    "power": "on-site power (e.g. gas turbines); with grid stages, gates the site's MW",
    "construction": "builds the site's MW in phases, each online once the site has power",
    "gpus": "orders HBM and installs GPUs in tranches, each online once delivered and powered",
}


class Stage(SchemaModel):
    """One step of a pipeline: how long it takes, what must finish first, what it holds."""

    kind: StageKind = Field(default="task", description="What the stage models; see docs/model.md.")
    duration: AnyDistribution | None = Field(
        default=None,
        description="A duration or a distribution. Permit and grid stages default to their "
        "jurisdiction's review and region's study; gpus stages: delivery time of each tranche.",
    )
    after: list[Name] = Field(default_factory=list, description="Stages that must finish first.")
    needs: dict[Name, PositiveFloat] = Field(
        default_factory=dict, description="Units of shared resources held while the stage runs."
    )
    phases: PositiveInt = Field(
        default=1, description="Construction only: equal phases, each bringing its MW online."
    )
    reference_mw: PositiveFloat | None = Field(
        default=None,
        description="Construction only: the duration is for this many MW and scales with "
        "(site MW / reference_mw) ** mw_exponent.",
    )
    mw_exponent: float = Field(default=0.0, ge=0, le=2)
    capex_per_mw: NonNegativeFloat | None = Field(
        default=None, description="Power stages: USD per MW of on-site generation."
    )
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Stage:
        if self.duration is None and self.kind not in ("permit", "grid"):
            raise ValueError(f"a {self.kind} stage needs a duration")
        only = {
            "construction": ("phases", "reference_mw", "mw_exponent"),
            "power": ("capex_per_mw",),
        }
        for kind, keys in only.items():
            misplaced = [k for k in keys if k in self.model_fields_set and self.kind != kind]
            if misplaced:
                raise ValueError(f"{', '.join(misplaced)} apply to {kind} stages only")
        return self


class Pipeline(SchemaModel):
    """A template of stages; every site following it gets its own copy."""

    stages: dict[Name, Stage] = Field(min_length=1, description="Stages by name, in any order.")
    description: str | None = None


class Resource(SchemaModel):
    """A shared capacity (permitting office, construction crews) granted first come first served
    within a priority."""

    capacity: PositiveFloat = Field(description="Units available at once.")
    description: str | None = None


class StageOverride(SchemaModel):
    """A site's own duration or needs for one stage of its pipeline."""

    duration: AnyDistribution | None = None
    needs: dict[Name, PositiveFloat] | None = None


class Site(SchemaModel):
    """A data-center campus: who builds it, how (its pipeline) and how big it is."""

    name: Name
    org: Name = Field(description="The organisation that owns the site.")
    pipeline: Name = Field(description="Name of the pipeline the site follows.")
    mw: PositiveFloat = Field(
        description="Facility power in MW: online phase by phase with a construction stage "
        "(once powered), else when the whole pipeline finishes."
    )
    start: Moment = Field(
        default=0.0, description="Earliest start: a date, or a duration after the scenario start."
    )
    priority: int = Field(default=0, description="Lower numbers are served first for resources.")
    overrides: dict[Name, StageOverride] = Field(
        default_factory=dict, description="Per-stage duration or needs for this site only."
    )
    region: Name | None = Field(default=None, description="Grid region (grid stages, energy).")
    jurisdiction: Name | None = Field(default=None, description="Permitting jurisdiction.")
    gpus: SiteGpus | None = Field(default=None, description="GPUs installed by its gpus stage.")
    capex_per_mw: NonNegativeFloat | None = Field(
        default=None, description="USD per MW of facility; default costs.capex_per_mw."
    )

    @field_validator("start")
    @classmethod
    def _not_before_scenario(cls, v: float) -> float:
        if v < 0:
            raise ValueError("a site cannot start before the scenario's start")
        return v

    def stage(self, pipeline: Pipeline, name: str) -> Stage:
        """The stage ``name`` of ``pipeline`` with this site's overrides applied."""
        base = pipeline.stages[name]
        override = self.overrides.get(name)
        if override is None:
            return base
        changes = {key: getattr(override, key) for key in ("duration", "needs")}
        return base.model_copy(update={k: v for k, v in changes.items() if v is not None})


class Scenario(SchemaModel):
    """A whole world: shared resources, pipeline templates and sites, over a horizon."""

    name: Name
    description: str | None = None
    start: dt.date = Field(description="Calendar date of model time 0.")
    horizon: Duration = Field(description="How long to simulate, e.g. '12 years'.")

    @field_validator("horizon")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("the horizon must be longer than 0")
        return v

    seed: NonNegativeInt = Field(default=0, description="Root seed of the random streams.")
    time_unit: TimeUnit = Field(
        default="days", description="Unit of bare numbers and of model time."
    )
    resources: dict[Name, Resource] = Field(default_factory=dict)
    pipelines: dict[Name, Pipeline] = Field(min_length=1)
    sites: list[Site] = Field(min_length=1)
    orgs: dict[Name, Org] = Field(
        default_factory=dict, description="Organisations; if given, every org named must be here."
    )
    generations: dict[Name, Generation] = Field(default_factory=dict)
    hbm: Hbm | None = None
    grid_regions: dict[Name, GridRegion] = Field(default_factory=dict)
    jurisdictions: dict[Name, Jurisdiction] = Field(default_factory=dict)
    flags: dict[Name, Probability] = Field(
        default_factory=dict,
        description="Regulation flags: the probability each is raised in a replication.",
    )
    risks: dict[Name, Risk] = Field(default_factory=dict, description="The risk register.")
    leases: dict[Name, OfftakeAgreement] = Field(default_factory=dict)
    strategies: dict[Name, Strategy] = Field(default_factory=dict)
    perspective: Name | None = Field(
        default=None, description="The org whose capacity and milestones are reported."
    )
    milestones: list[Milestone] = Field(
        default_factory=lambda: [Milestone(mw=1000), Milestone(mw=5000)]
    )
    costs: Costs = Field(default_factory=Costs)

    def org(self, name: str) -> Org:
        """The org called ``name`` (a default tier-1 org if the scenario lists none)."""
        return self.orgs.get(name) or Org()

    @property
    def lab(self) -> str | None:
        """The perspective org: ``perspective``, else the only org of kind lab."""
        if self.perspective is not None:
            return self.perspective
        labs = [name for name, org in self.orgs.items() if org.kind == "lab"]
        return labs[0] if len(labs) == 1 else None
