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

from pydantic import Field, NonNegativeInt, PositiveFloat, field_validator

from capsim.distributions import AnyDistribution
from capsim.fields import Name, SchemaModel
from capsim.units import Duration, Moment, TimeUnit


class Stage(SchemaModel):
    """One step of a pipeline: how long it takes, what must finish first, what it holds."""

    duration: AnyDistribution = Field(description="A duration or a distribution of durations.")
    after: list[Name] = Field(default_factory=list, description="Stages that must finish first.")
    needs: dict[Name, PositiveFloat] = Field(
        default_factory=dict, description="Units of shared resources held while the stage runs."
    )
    description: str | None = None


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
        description="Facility power in MW, online when the pipeline finishes."
    )
    start: Moment = Field(
        default=0.0, description="Earliest start: a date, or a duration after the scenario start."
    )
    priority: int = Field(default=0, description="Lower numbers are served first for resources.")
    overrides: dict[Name, StageOverride] = Field(
        default_factory=dict, description="Per-stage duration or needs for this site only."
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
