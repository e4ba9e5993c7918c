"""Building blocks shared by every part of the scenario schema."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, pattern=r"^\S(.*\S)?$")]
"""A name used as a reference (site, stage, org, ...): non-empty, no surrounding spaces."""

Probability = Annotated[float, Field(ge=0, le=1)]


class SchemaModel(BaseModel):
    """Base of all scenario models: unknown keys are errors, values are immutable, no NaN."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
