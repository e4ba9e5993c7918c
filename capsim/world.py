"""The compute-supply world's schema: organisations, GPU generations, HBM supply, grid regions,
permitting jurisdictions, risks, offtake agreements, strategies and costs.

Every section is optional, so a plain scheduling scenario needs none of it. ``docs/model.md``
explains what each mechanism models and the assumptions behind it.

>>> import datetime as dt
>>> g = Generation.model_validate(
...     {"hbm_gb": 288, "gpu_kw": 1.8, "pflops": 10,
...      "available": {1: "2026-09-01", 2: "2027-03-01"}},
...     context={"start": dt.date(2026, 1, 1), "time_unit": "days"})
>>> g.available_to(1), g.available_to(3), g.power_kw
(243.0, 424.0, 4.5)
"""

from __future__ import annotations

import itertools
import re
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

from capsim.distributions import AnyDistribution, Fixed
from capsim.fields import Name, Probability, SchemaModel
from capsim.units import Duration, Moment

#: All-in facility power per unit of GPU power when a generation gives no ``facility_kw``
#: (DOMAIN.md: GPUs are about 40% of a facility's power, i.e. the facility needs ~2.5x).
FACILITY_FACTOR = 2.5

NEWEST = "newest"


def _zero() -> Fixed:
    return Fixed(fixed=0.0)


class Org(SchemaModel):
    """An organisation that owns sites, buys HBM and GPUs, and may lease capacity out."""

    kind: Literal["lab", "hyperscaler", "neocloud", "other"] = "other"
    tier: PositiveInt = Field(
        default=1, description="Priority for HBM and new GPU generations; 1 is served first."
    )
    fleet: dict[Name, NonNegativeInt] = Field(
        default_factory=dict, description="GPUs by generation already running at the start."
    )
    leasable: Probability = Field(
        default=0.0,
        description="Share of its fleet and of its new GPUs it offers through offtake agreements.",
    )
    description: str | None = None


class Generation(SchemaModel):
    """A GPU generation: memory, power, performance, price, and when each customer tier gets it."""

    hbm_gb: PositiveFloat = Field(description="HBM per GPU in GB.")
    gpu_kw: PositiveFloat = Field(description="The GPU's own power in kW.")
    facility_kw: PositiveFloat | None = Field(
        default=None,
        description=f"All-in facility power per GPU in kW; default gpu_kw x {FACILITY_FACTOR}.",
    )
    pflops: PositiveFloat = Field(description="Dense FP8 PFLOPS per GPU.")
    price: NonNegativeFloat = Field(default=0.0, description="Purchase price per GPU in USD.")
    available: dict[PositiveInt, Moment] = Field(
        min_length=1, description="First date each customer tier can get it (tier: date)."
    )
    description: str | None = None

    @property
    def power_kw(self) -> float:
        """All-in facility power per GPU in kW."""
        return self.facility_kw if self.facility_kw is not None else self.gpu_kw * FACILITY_FACTOR

    @model_validator(mode="after")
    def _tiers_in_order(self) -> Generation:
        tiers = sorted(self.available)
        for a, b in itertools.pairwise(tiers):
            if self.available[b] < self.available[a]:
                raise ValueError(
                    f"dates out of order: tier {b} gets it before tier {a}; a later tier "
                    "cannot be served earlier"
                )
        return self

    def available_to(self, tier: int) -> float:
        """Model time from which an org of ``tier`` can get this generation: the date of the
        nearest listed tier at or above it in priority, else the earliest listed date."""
        listed = [t for t in sorted(self.available) if t <= tier]
        return self.available[listed[-1]] if listed else min(self.available.values())


class OutputStep(SchemaModel):
    """From ``from``, the supplier produces ``gb_per_period`` GB every period."""

    from_: Moment = Field(alias="from", description="Date the output level starts.")
    gb_per_period: NonNegativeFloat = Field(description="GB produced per period.")


class HbmSupplier(SchemaModel):
    """An HBM maker: its output path and the long-term allocations reserved for buyers."""

    output: list[OutputStep] = Field(min_length=1, description="Output levels, in date order.")
    reserved: dict[Name, Probability] = Field(
        default_factory=dict, description="Share of each period's output reserved for a buyer."
    )
    description: str | None = None

    @field_validator("output")
    @classmethod
    def _in_order(cls, steps: list[OutputStep]) -> list[OutputStep]:
        for i, (a, b) in enumerate(itertools.pairwise(steps), start=1):
            if b.from_ <= a.from_:
                raise ValueError(
                    f"dates out of order: output[{i}] does not come after output[{i - 1}]"
                )
        return steps

    @field_validator("reserved")
    @classmethod
    def _shares(cls, reserved: dict[str, float]) -> dict[str, float]:
        if sum(reserved.values()) > 1 + 1e-9:
            raise ValueError(f"reserved shares add up to {sum(reserved.values()):g}, more than 1")
        return reserved


class Hbm(SchemaModel):
    """The HBM market: suppliers deliver every ``period``; allocations go first to reserved
    buyers, the rest by buyer tier, then order date."""

    period: Duration = Field(default="1 month", validate_default=True)
    suppliers: dict[Name, HbmSupplier] = Field(min_length=1)


class PriceStep(SchemaModel):
    from_: Moment = Field(alias="from")
    usd_per_mwh: NonNegativeFloat


class EnergyPrice(SchemaModel):
    """An industrial power price path, scaled once per replication by a lognormal factor with
    median 1 and log-sd ``volatility``."""

    path: list[PriceStep] = Field(min_length=1)
    volatility: NonNegativeFloat = 0.0

    def at(self, t: float) -> float:
        """The path's price at model time ``t`` (before any replication factor)."""
        price = self.path[0].usd_per_mwh
        for step in self.path:
            if step.from_ <= t:
                price = step.usd_per_mwh
        return price


class GridRegion(SchemaModel):
    """A utility region: a first-come-first-served queue of connection requests."""

    study: AnyDistribution = Field(default_factory=_zero, description="Study duration.")
    studies_at_once: PositiveInt | None = Field(default=None, description="Concurrent studies.")
    mw_per_year: PositiveFloat | None = Field(
        default=None, description="MW it can energise per calendar year; unused MW carry over."
    )
    queue_ahead_mw: NonNegativeFloat = Field(
        default=0.0, description="MW of older requests ahead of every new one at the start."
    )
    build: AnyDistribution = Field(
        default_factory=_zero, description="Lines and substations after the MW are granted."
    )
    energy_price: EnergyPrice | None = None
    description: str | None = None


class Jurisdiction(SchemaModel):
    """A permitting authority: limited concurrent reviews and a chance of refusal."""

    review: AnyDistribution
    reviews_at_once: PositiveInt | None = None
    refusal: Probability = 0.0
    appeal: AnyDistribution | None = Field(
        default=None, description="Delay of an appeal after a refusal; none means cancellation."
    )
    appeal_success: Probability = 1.0
    description: str | None = None


class Trigger(SchemaModel):
    """A condition checked when a risk may strike."""

    energy_price_above: PositiveFloat | None = Field(
        default=None, description="USD/MWh in the site's grid region at that moment."
    )
    flag: Name | None = Field(default=None, description="A regulation flag that must be raised.")

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        if self.energy_price_above is None and self.flag is None:
            raise ValueError("give energy_price_above, flag, or both")
        return self


class Transfer(SchemaModel):
    to: Name = Field(description="The org that takes the site and its capacity over.")


class Effect(SchemaModel):
    """What a risk does when it strikes: exactly one of these."""

    delay: AnyDistribution | None = Field(default=None, description="Extra time on the stage.")
    pause: AnyDistribution | None = Field(
        default=None,
        description="The stage (and so what comes after it) waits this long before it starts; "
        "stages on parallel branches go on. At the site's start, the whole site waits.",
    )
    cancel: bool = False
    transfer: Transfer | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Effect:
        given = [k for k in ("delay", "pause", "transfer") if getattr(self, k) is not None] + (
            ["cancel"] if self.cancel else []
        )
        if len(given) != 1:
            raise ValueError(
                f"give exactly one effect of delay, pause, cancel, transfer; got {given or 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        if self.cancel:
            return "cancel"
        return next(k for k in ("delay", "pause", "transfer") if getattr(self, k) is not None)


class Risk(SchemaModel):
    """An entry of the risk register."""

    sites: list[Name] = Field(min_length=1)
    stage: Name | None = Field(
        default=None, description="Strikes when this stage is ready; default the site's start."
    )
    probability: Probability = 1.0
    trigger: Trigger | None = None
    effect: Effect
    description: str | None = None


class Tranche(SchemaModel):
    """A delivery of an offtake agreement, due ``at`` after the agreement's start."""

    at: Duration
    gpus: PositiveInt | None = None
    mw: PositiveFloat | None = None
    generation: Name | None = Field(
        default=None, description="This tranche's generation; default the agreement's."
    )

    @model_validator(mode="after")
    def _size(self) -> Tranche:
        if (self.gpus is None) == (self.mw is None):
            raise ValueError("give either gpus or mw")
        return self


class Price(SchemaModel):
    per_gpu_hour: NonNegativeFloat | None = None
    per_mw_year: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _one(self) -> Price:
        if (self.per_gpu_hour is None) == (self.per_mw_year is None):
            raise ValueError("give either per_gpu_hour or per_mw_year")
        return self


class OfftakeAgreement(SchemaModel):
    """A lease of capacity from a provider, delivered in tranches out of its available GPUs."""

    provider: Name
    customer: Name | None = Field(default=None, description="Default: the scenario's perspective.")
    generation: Name = Field(description=f"A generation name, or '{NEWEST}'.")
    gpus: PositiveInt | None = Field(default=None, description="Size of the agreement in GPUs.")
    mw: PositiveFloat | None = Field(default=None, description="Size of the agreement in MW.")
    negotiation: AnyDistribution = Field(default_factory=_zero)
    start: Moment = Field(description="Earliest start of deliveries.")
    tranches: list[Tranche] = Field(min_length=1)
    term: Duration = Field(description="How long each tranche is held once delivered.")
    price: Price
    take_or_pay: bool = Field(
        default=True,
        description="Delivered tranches are paid for their whole term even if the customer "
        "terminates; without it, termination hands back everything delivered.",
    )
    terminate_if_late: Duration | None = Field(
        default=None, description="The customer ends the agreement if a tranche is this late."
    )
    description: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OfftakeAgreement:
        if (self.gpus is None) == (self.mw is None):
            raise ValueError("give the agreement's size as either gpus or mw")
        unit = "gpus" if self.gpus is not None else "mw"
        if any(getattr(t, unit) is None for t in self.tranches):
            raise ValueError(f"the agreement is sized in {unit}; give every tranche in {unit}")
        total = sum(getattr(t, unit) for t in self.tranches)
        size = getattr(self, unit)
        if total > size + 1e-9:
            raise ValueError(
                f"tranches add up to {total:g} {unit}, more than the agreement's {size:g}"
            )
        for i, (a, b) in enumerate(itertools.pairwise(self.tranches), start=1):
            if b.at < a.at:
                raise ValueError(
                    f"dates out of order: tranches[{i}] is due before tranches[{i - 1}]"
                )
        return self


class Strategy(SchemaModel):
    """What the perspective org pursues: which of the optional sites and agreements."""

    sites: list[Name] = Field(default_factory=list)
    leases: list[Name] = Field(default_factory=list)
    description: str | None = None


class Costs(SchemaModel):
    """Money: CapEx per MW of facility, the discount rate for NPV."""

    capex_per_mw: NonNegativeFloat = Field(
        default=12e6, description="USD per MW of facility (DOMAIN.md: $7-12M conventional)."
    )
    discount_rate: NonNegativeFloat = Field(default=0.08, description="Per year, for NPV.")
    energy_price: NonNegativeFloat = Field(
        default=60.0, description="USD/MWh where a site's grid region gives no price."
    )


class Milestone(SchemaModel):
    """A capacity level for the perspective org: MW, GPUs or PFLOPS online."""

    mw: PositiveFloat | None = None
    gpus: PositiveFloat | None = None
    pflops: PositiveFloat | None = None

    @model_validator(mode="after")
    def _one(self) -> Milestone:
        if sum(v is not None for v in (self.mw, self.gpus, self.pflops)) != 1:
            raise ValueError("give exactly one of mw, gpus, pflops")
        return self

    @property
    def measure(self) -> tuple[str, float]:
        """(``"mw"``, ``"gpus"`` or ``"pflops"``, the level)."""
        return next((k, v) for k in ("mw", "gpus", "pflops") if (v := getattr(self, k)) is not None)

    @property
    def column(self) -> str:
        """Its column in replications.csv: ``t_1GW``, ``t_100000GPUs``."""
        return "t_" + re.sub(r"[^0-9A-Za-z.]+", "", self.label)

    @property
    def label(self) -> str:
        if self.mw is not None:
            return f"{self.mw / 1000:g} GW" if self.mw >= 1000 else f"{self.mw:g} MW"
        if self.gpus is not None:
            return f"{self.gpus:,.0f} GPUs"
        return f"{self.pflops:,.0f} PFLOPS"


class SiteGpus(SchemaModel):
    """The GPUs a site installs, in tranches, each needing HBM and powered MW."""

    generation: Name = Field(description=f"A generation name, or '{NEWEST}' at order time.")
    count: PositiveInt | None = Field(
        default=None, description="Default: as many as the site's MW can power."
    )
    tranches: PositiveInt | list[PositiveInt] = Field(
        default=1, description="Number of equal tranches, or the GPUs of each tranche."
    )
