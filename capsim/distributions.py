"""Probability distributions of durations, written in scenario files as ``{family: parameters}``.

Every family samples by inverse transform: ``ppf(u)`` maps uniform numbers in [0, 1) to values. One
replication draws all its uniforms in a single numpy call and hands each stage its own slot. That
gives common random numbers across strategies (a stage keeps its slot as long as the sites and
stages before it in the file stay the same) and keeps sampling vectorised.

>>> d = parse_distribution({"triangular": [10, 20, 60]}, "days")
>>> d.mean, round(d.var, 3)
(30.0, 116.667)
>>> d.ppf(np.array([0.0, 0.2, 1.0])).tolist()
[10.0, 20.0, 60.0]
>>> parse_distribution("3 months", "days").mean
91.3125
"""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from scipy import special

from capsim.units import DURATION_HELP, Duration, TimeValue, time_value

_Z90 = float(special.ndtri(0.9))  # standard normal 90th percentile, 1.2815...


class Distribution(BaseModel):
    """Base of all families: analytic ``mean``/``var``, vectorised ``ppf`` and ``sample``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    family: ClassVar[str]

    @property
    def mean(self) -> float:
        raise NotImplementedError

    @property
    def var(self) -> float:
        raise NotImplementedError

    @property
    def low(self) -> float:
        """Smallest value the distribution can take."""
        return float(self.ppf(np.zeros(1))[0])

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse CDF, vectorised over ``u`` in [0, 1)."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws from ``rng``.

        >>> Fixed(fixed=3).sample(np.random.default_rng(0), 2).tolist()
        [3.0, 3.0]
        """
        return self.ppf(rng.random(size))


class Fixed(Distribution):
    """A deterministic value: ``{fixed: 30}`` or ``{fixed: "6 weeks"}``."""

    family: ClassVar[str] = "fixed"
    fixed: Duration

    @property
    def mean(self) -> float:
        return self.fixed

    @property
    def var(self) -> float:
        return 0.0

    def ppf(self, u: np.ndarray) -> np.ndarray:
        return np.full(np.shape(u), self.fixed)


def _ordered(names: str) -> Any:
    """A before-validator: convert a list of durations, check count and order, and report the
    values as written."""
    count = names.count(",") + 1

    def check(values: Any, info: ValidationInfo) -> Any:
        if not isinstance(values, list | tuple):
            raise ValueError(f"expected a list {names}; got {values!r}")
        written = ", ".join(map(str, values))
        if len(values) != count:
            raise ValueError(f"expected {count} values {names}; got {len(values)}: [{written}]")
        converted = [time_value(x, info) for x in values]
        if any(v < 0 for v in converted):
            raise ValueError(f"durations cannot be negative; got [{written}]")
        if any(a > b for a, b in itertools.pairwise(converted)):
            raise ValueError(f"expected {names} in increasing order; got [{written}]")
        return converted

    return check


class Uniform(Distribution):
    """Uniform on ``[low, high]``: ``{uniform: [20, 40]}``."""

    family: ClassVar[str] = "uniform"
    uniform: tuple[TimeValue, TimeValue]

    _check = field_validator("uniform", mode="before")(_ordered("[low, high]"))

    @property
    def mean(self) -> float:
        a, b = self.uniform
        return (a + b) / 2

    @property
    def var(self) -> float:
        a, b = self.uniform
        return (b - a) ** 2 / 12

    def ppf(self, u: np.ndarray) -> np.ndarray:
        a, b = self.uniform
        return a + (b - a) * np.asarray(u, dtype=float)


class Triangular(Distribution):
    """Triangular with ``[low, mode, high]``: ``{triangular: [14, 30, 60]}``."""

    family: ClassVar[str] = "triangular"
    triangular: tuple[TimeValue, TimeValue, TimeValue]

    _check = field_validator("triangular", mode="before")(_ordered("[low, mode, high]"))

    @property
    def mean(self) -> float:
        return sum(self.triangular) / 3

    @property
    def var(self) -> float:
        a, c, b = self.triangular
        return (a * a + b * b + c * c - a * b - a * c - b * c) / 18

    def ppf(self, u: np.ndarray) -> np.ndarray:
        a, c, b = self.triangular
        u = np.asarray(u, dtype=float)
        if b == a:
            return np.full(u.shape, a)
        cut = (c - a) / (b - a)
        left = a + np.sqrt(u * (b - a) * (c - a))
        right = b - np.sqrt((1 - u) * (b - a) * (b - c))
        return np.where(u < cut, left, right)


class Pert(Distribution):
    """Beta-PERT with ``[low, mode, high]`` (shape 4): ``{pert: [6, 12, 36]}``."""

    family: ClassVar[str] = "pert"
    pert: tuple[TimeValue, TimeValue, TimeValue]

    _check = field_validator("pert", mode="before")(_ordered("[low, mode, high]"))

    def _shape(self) -> tuple[float, float]:
        a, m, b = self.pert
        return 1 + 4 * (m - a) / (b - a), 1 + 4 * (b - m) / (b - a)

    @property
    def mean(self) -> float:
        a, m, b = self.pert
        return (a + 4 * m + b) / 6

    @property
    def var(self) -> float:
        a, _, b = self.pert
        if b == a:
            return 0.0
        alpha, beta = self._shape()
        return (b - a) ** 2 * alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))

    def ppf(self, u: np.ndarray) -> np.ndarray:
        a, _, b = self.pert
        u = np.asarray(u, dtype=float)
        if b == a:
            return np.full(u.shape, a)
        return a + (b - a) * _beta_ppf(*self._shape(), u)


_BETA_TABLES: dict[tuple[float, float], tuple[np.ndarray, np.ndarray]] = {}
_TABLE_LOW, _TABLE_HIGH, _TABLE_NODES = 0.02, 0.98, 2049


def _beta_ppf(alpha: float, beta: float, u: np.ndarray) -> np.ndarray:
    """The beta inverse CDF: exact (``betaincinv``) in the 2% tails, and in between a cubic
    Hermite interpolation of a 2049-node table with exact slopes (1 / density), within 1e-9 of
    the exact value and some 30 times faster: PERT draws dominate a replication's sampling."""
    table = _BETA_TABLES.get((alpha, beta))
    if table is None:
        nodes = np.linspace(_TABLE_LOW, _TABLE_HIGH, _TABLE_NODES)
        x = special.betaincinv(alpha, beta, nodes)
        log_pdf = (alpha - 1) * np.log(x) + (beta - 1) * np.log1p(-x) - special.betaln(alpha, beta)
        table = _BETA_TABLES[alpha, beta] = (x, np.exp(-log_pdf))
    x, slope = table
    h = (_TABLE_HIGH - _TABLE_LOW) / (_TABLE_NODES - 1)
    inside = (u >= _TABLE_LOW) & (u <= _TABLE_HIGH)
    out = np.empty_like(u)
    q = u[inside]
    k = np.minimum(((q - _TABLE_LOW) / h).astype(np.int64), _TABLE_NODES - 2)
    t = (q - (_TABLE_LOW + k * h)) / h
    t2, t3 = t * t, t * t * t
    out[inside] = ((2 * t3 - 3 * t2 + 1) * x[k] + (t3 - 2 * t2 + t) * h * slope[k]
                   + (3 * t2 - 2 * t3) * x[k + 1] + (t3 - t2) * h * slope[k + 1])  # fmt: skip
    out[~inside] = special.betaincinv(alpha, beta, u[~inside])
    return out


class _LognormalParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    median: TimeValue | None = None
    p90: TimeValue | None = None
    mu: float | None = None
    sigma: float | None = None

    @model_validator(mode="after")
    def _check(self) -> _LognormalParams:
        by_quantiles = self.median is not None or self.p90 is not None
        by_moments = self.mu is not None or self.sigma is not None
        if by_quantiles == by_moments:
            raise ValueError("give either {median, p90} or {mu, sigma}")
        if by_quantiles:
            if self.median is None or self.p90 is None:
                raise ValueError("give both median and p90")
            if not 0 < self.median <= self.p90:
                raise ValueError(
                    f"need 0 < median <= p90; got median={self.median:g}, p90={self.p90:g}"
                )
        else:
            if self.mu is None or self.sigma is None:
                raise ValueError("give both mu and sigma")
            if self.sigma < 0:
                raise ValueError(f"sigma must be >= 0; got {self.sigma:g}")
        return self

    def mu_sigma(self) -> tuple[float, float]:
        if self.mu is not None and self.sigma is not None:
            return self.mu, self.sigma
        assert self.median is not None and self.p90 is not None
        mu = math.log(self.median)
        return mu, (math.log(self.p90) - mu) / _Z90


class Lognormal(Distribution):
    """Lognormal: ``{lognormal: {median: 120, p90: 240}}`` or ``{lognormal: {mu: 4.8, sigma: .5}}``.

    ``mu`` and ``sigma`` are those of the underlying normal, on the log of the time unit.
    """

    family: ClassVar[str] = "lognormal"
    lognormal: _LognormalParams

    @property
    def mean(self) -> float:
        mu, s = self.lognormal.mu_sigma()
        return math.exp(mu + s * s / 2)

    @property
    def var(self) -> float:
        mu, s = self.lognormal.mu_sigma()
        return math.expm1(s * s) * math.exp(2 * mu + s * s)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        mu, s = self.lognormal.mu_sigma()
        u = np.asarray(u, dtype=float)
        if s == 0:
            return np.full(u.shape, math.exp(mu))
        return np.exp(mu + s * special.ndtri(u))


class _NormalParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    mean: TimeValue
    sd: TimeValue

    @field_validator("sd")
    @classmethod
    def _check(cls, v: float) -> float:
        if v < 0:
            raise ValueError(f"sd must be >= 0; got {v:g}")
        return v


class Normal(Distribution):
    """Normal truncated at 0 (durations are never negative): ``{normal: {mean: 90, sd: 15}}``."""

    family: ClassVar[str] = "normal"
    normal: _NormalParams

    def _mills(self) -> tuple[float, float]:
        """Standardised truncation point alpha = -mean/sd and the inverse Mills ratio
        phi(alpha) / (1 - Phi(alpha)), in log space so that far tails neither underflow nor
        divide by zero."""
        m, s = self.normal.mean, self.normal.sd
        alpha = -m / s
        log_phi = -alpha * alpha / 2 - 0.5 * math.log(2 * math.pi)
        return alpha, math.exp(log_phi - float(special.log_ndtr(-alpha)))

    @property
    def mean(self) -> float:
        m, s = self.normal.mean, self.normal.sd
        if s == 0:
            return max(m, 0.0)
        return m + s * self._mills()[1]

    @property
    def var(self) -> float:
        s = self.normal.sd
        if s == 0:
            return 0.0
        alpha, lam = self._mills()
        return s * s * max(1 + alpha * lam - lam * lam, 0.0)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        m, s = self.normal.mean, self.normal.sd
        u = np.asarray(u, dtype=float)
        if s == 0:
            return np.full(u.shape, max(m, 0.0))
        # Upper-tail inversion: P(X > x) = (1 - u) * P(X > 0), computed in log space.
        log_tail = special.log_ndtr(m / s) + np.log1p(-u)
        return np.maximum(m - s * special.ndtri_exp(log_tail), 0.0)


class Empirical(Distribution):
    """Resampling of observed values, each equally likely: ``{empirical: [30, 45, 45, 90]}``."""

    family: ClassVar[str] = "empirical"
    empirical: tuple[Duration, ...] = Field(min_length=1)

    @field_validator("empirical")
    @classmethod
    def _sort(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(sorted(v))

    @property
    def mean(self) -> float:
        return float(np.mean(self.empirical))

    @property
    def var(self) -> float:
        return float(np.var(self.empirical))

    def ppf(self, u: np.ndarray) -> np.ndarray:
        values = np.asarray(self.empirical)
        index = np.minimum((np.asarray(u) * len(values)).astype(np.int64), len(values) - 1)
        return values[index]


FAMILIES: dict[str, type[Distribution]] = {
    cls.family: cls for cls in (Fixed, Uniform, Triangular, Pert, Lognormal, Normal, Empirical)
}
FAMILY_HELP = (
    "{fixed: 30}, {uniform: [a, b]}, {triangular: [low, mode, high]}, {pert: [low, mode, high]}, "
    "{lognormal: {median: m, p90: q}} or {lognormal: {mu: m, sigma: s}}, "
    "{normal: {mean: m, sd: s}}, {empirical: [x1, x2, ...]}"
)


def _family_of(value: Any) -> str | None:
    """Discriminator: the family a raw value names (a bare duration means ``fixed``)."""
    if isinstance(value, Distribution):
        return value.family
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return "fixed"
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if key in FAMILIES else None
    return None


def _bare_to_fixed(value: Any) -> Any:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return {"fixed": value}
    if isinstance(value, dict) and len(value) != 1:
        families = ", ".join(map(repr, value)) or "none"
        raise ValueError(
            f"a distribution has exactly one family key; got {families}. Allowed: {FAMILY_HELP}"
        )
    if isinstance(value, dict) and next(iter(value)) not in FAMILIES:
        raise ValueError(
            f"unknown distribution family {next(iter(value))!r}; allowed: {FAMILY_HELP}"
        )
    return value


AnyDistribution = Annotated[
    Annotated[Fixed, Tag("fixed")]
    | Annotated[Uniform, Tag("uniform")]
    | Annotated[Triangular, Tag("triangular")]
    | Annotated[Pert, Tag("pert")]
    | Annotated[Lognormal, Tag("lognormal")]
    | Annotated[Normal, Tag("normal")]
    | Annotated[Empirical, Tag("empirical")],
    Discriminator(
        _family_of,
        custom_error_type="distribution",
        custom_error_message=f"expected {DURATION_HELP}, or a distribution: {FAMILY_HELP}",
    ),
    BeforeValidator(
        _bare_to_fixed,
        json_schema_input_type=float
        | str
        | Fixed
        | Uniform
        | Triangular
        | Pert
        | Lognormal
        | Normal
        | Empirical,
    ),
]

_ADAPTER: TypeAdapter[Distribution] = TypeAdapter(AnyDistribution)


def parse_distribution(raw: Any, time_unit: str = "days") -> Distribution:
    """Validate a raw scenario value (number, duration string or ``{family: params}``)."""
    return _ADAPTER.validate_python(raw, context={"time_unit": time_unit})
