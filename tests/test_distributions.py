"""Duration distributions: analytic moments, sampling, inverse CDFs, units and validation.

Every expected value here is computed by hand or from a textbook formula, and the inverse CDFs are
checked against scipy.stats, an independent implementation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from capsim.distributions import Distribution, parse_distribution

Z90 = 1.2815515655446004  # standard normal 90th percentile


def _phi(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def _truncnorm_moments(m: float, s: float) -> tuple[float, float]:
    """Mean and variance of N(m, s^2) truncated to [0, inf), from the textbook formulas."""
    a = (0 - m) / s
    lam = _phi(a) / (1 - _ncdf(a))
    return m + s * lam, s * s * (1 + a * lam - lam * lam)


# PERT [6, 12, 36]: alpha = 1 + 4*(12-6)/30 = 1.8, beta = 1 + 4*(36-12)/30 = 4.2, alpha+beta = 6,
# var = 30^2 * 1.8 * 4.2 / (6^2 * 7) = 27.
# Lognormal median 60, p90 120: mu = ln 60, sigma = ln 2 / z_0.9.
_LN_SIGMA = math.log(2) / Z90
_TN_MEAN, _TN_VAR = _truncnorm_moments(5.0, 10.0)
# mean 90 sd 15 is 6 sd above the cut: truncation moves the mean by 15 * phi(6) / Phi(6) ~ 9e-8.
assert abs(_truncnorm_moments(90.0, 15.0)[0] - 90) < 1e-7
assert abs(_truncnorm_moments(90.0, 15.0)[1] - 225) < 1e-4

# (id, raw scenario value, hand-computed mean, hand-computed variance)
CASES: list[tuple[str, Any, float, float]] = [
    ("fixed", {"fixed": 30}, 30.0, 0.0),
    ("bare-number", 42, 42.0, 0.0),
    ("uniform", {"uniform": [20, 40]}, 30.0, 400 / 12),
    ("triangular", {"triangular": [10, 20, 60]}, 30.0, 2100 / 18),
    (
        "triangular-left",
        {"triangular": [10, 10, 40]},
        20.0,
        (100 + 1600 + 100 - 400 - 100 - 400) / 18,
    ),
    ("pert", {"pert": [6, 12, 36]}, (6 + 4 * 12 + 36) / 6, 27.0),
    ("pert-symmetric", {"pert": [0, 5, 10]}, 5.0, 100 * 3 * 3 / (36 * 7)),
    (
        "lognormal-quantiles",
        {"lognormal": {"median": 60, "p90": 120}},
        60 * math.exp(_LN_SIGMA**2 / 2),
        math.expm1(_LN_SIGMA**2) * 3600 * math.exp(_LN_SIGMA**2),
    ),
    (
        "lognormal-moments",
        {"lognormal": {"mu": 4.8, "sigma": 0.5}},
        math.exp(4.8 + 0.125),
        math.expm1(0.25) * math.exp(9.6 + 0.25),
    ),
    ("normal-barely-truncated", {"normal": {"mean": 90, "sd": 15}}, *_truncnorm_moments(90, 15)),
    ("normal-truncated", {"normal": {"mean": 5, "sd": 10}}, _TN_MEAN, _TN_VAR),
    ("empirical", {"empirical": [90, 30, 45, 45]}, 52.5, 506.25),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "raw", "mean", "var"), CASES, ids=IDS)
def test_analytic_moments(name: str, raw: Any, mean: float, var: float) -> None:
    d = parse_distribution(raw, "days")
    assert d.mean == pytest.approx(mean, rel=1e-9)
    assert d.var == pytest.approx(var, rel=1e-9, abs=1e-12)


def test_hand_computed_headline_values() -> None:
    tri = parse_distribution({"triangular": [10, 20, 60]}, "days")
    assert tri.mean == 30.0
    assert round(tri.var, 3) == 116.667
    ln = parse_distribution({"lognormal": {"median": 60, "p90": 120}}, "days")
    assert ln.lognormal.mu_sigma() == pytest.approx((math.log(60), math.log(2) / 1.28155), rel=1e-5)
    # median and p90 are what we asked for
    assert ln.ppf(np.array([0.5, 0.9])) == pytest.approx([60.0, 120.0], rel=1e-12)


def test_truncated_normal_mean_formula_matches_scipy() -> None:
    # mean 5 sd 10: a = -0.5, phi(a) = 0.35207, 1 - Phi(a) = 0.69146, lambda = 0.50916.
    assert math.isclose(_TN_MEAN, 5 + 10 * 0.3520653 / 0.6914625, rel_tol=1e-6)
    assert abs(_TN_MEAN - 10.0916) < 1e-4
    ref = stats.truncnorm(-0.5, np.inf, loc=5, scale=10)
    d = parse_distribution({"normal": {"mean": 5, "sd": 10}}, "days")
    assert d.mean == pytest.approx(ref.mean(), rel=1e-10)
    assert d.var == pytest.approx(ref.var(), rel=1e-10)
    # truncation matters here: the mean moved by about half a standard deviation
    assert d.mean - 5 > 5


def test_normal_zero_sd() -> None:
    d = parse_distribution({"normal": {"mean": 7, "sd": 0}}, "days")
    assert (d.mean, d.var) == (7.0, 0.0)
    assert d.ppf(np.array([0.0, 0.5, 0.99])).tolist() == [7.0, 7.0, 7.0]


@pytest.mark.parametrize(("name", "raw", "mean", "var"), CASES, ids=IDS)
def test_sample_moments(name: str, raw: Any, mean: float, var: float) -> None:
    n = 200_000
    d = parse_distribution(raw, "days")
    x = d.sample(np.random.default_rng(20260101), n)
    assert x.shape == (n,)
    assert np.all(np.isfinite(x))
    assert np.all(x >= 0)
    if var == 0:
        assert np.all(x == mean)
        return
    se_mean = math.sqrt(var / n)
    assert abs(x.mean() - mean) < 4 * se_mean
    m4 = float(np.mean((x - x.mean()) ** 4))
    se_var = math.sqrt(max(m4 - var**2, 0.0) / n)
    assert abs(x.var(ddof=1) - var) < 4 * se_var


def test_sample_is_ppf_of_uniforms() -> None:
    d = parse_distribution({"pert": [6, 12, 36]}, "days")
    a = d.sample(np.random.default_rng(7), 1000)
    b = d.ppf(np.random.default_rng(7).random(1000))
    np.testing.assert_array_equal(a, b)


U = np.concatenate([[0.0, 1e-9, 1e-4, 0.001], np.linspace(0.01, 0.99, 99), [0.999, 0.9999999]])


def _scipy_reference(raw: Any) -> Any:
    family, params = next(iter(raw.items()))
    if family == "uniform":
        a, b = params
        return stats.uniform(loc=a, scale=b - a)
    if family == "triangular":
        a, c, b = params
        return stats.triang((c - a) / (b - a), loc=a, scale=b - a)
    if family == "pert":
        a, m, b = params
        return stats.beta(1 + 4 * (m - a) / (b - a), 1 + 4 * (b - m) / (b - a), loc=a, scale=b - a)
    if family == "lognormal":
        if "median" in params:
            mu = math.log(params["median"])
            sigma = (math.log(params["p90"]) - mu) / Z90
        else:
            mu, sigma = params["mu"], params["sigma"]
        return stats.lognorm(sigma, scale=math.exp(mu))
    if family == "normal":
        m, s = params["mean"], params["sd"]
        return stats.truncnorm(-m / s, np.inf, loc=m, scale=s)
    raise AssertionError(family)


PPF_CASES = [
    {"uniform": [20, 40]},
    {"triangular": [10, 20, 60]},
    {"triangular": [10, 10, 40]},
    {"triangular": [10, 40, 40]},
    {"pert": [6, 12, 36]},
    {"pert": [90, 120, 400]},
    {"lognormal": {"median": 60, "p90": 120}},
    {"lognormal": {"mu": 4.8, "sigma": 0.5}},
    {"normal": {"mean": 90, "sd": 15}},
    {"normal": {"mean": 5, "sd": 10}},
    {"normal": {"mean": 0, "sd": 3}},
    {"normal": {"mean": -2, "sd": 1}},
]


@pytest.mark.parametrize(
    "raw", PPF_CASES, ids=lambda r: f"{next(iter(r))}-{next(iter(r.values()))}"
)
def test_ppf_matches_scipy(raw: Any) -> None:
    d = parse_distribution(raw, "days")
    expected = _scipy_reference(raw).ppf(U)
    np.testing.assert_allclose(d.ppf(U), expected, rtol=1e-8, atol=1e-8)
    # the inverse CDF is non-decreasing
    assert np.all(np.diff(d.ppf(U)) >= 0)


@pytest.mark.parametrize(
    "raw", PPF_CASES, ids=lambda r: f"{next(iter(r))}-{next(iter(r.values()))}"
)
def test_moments_match_scipy(raw: Any) -> None:
    d = parse_distribution(raw, "days")
    ref = _scipy_reference(raw)
    assert d.mean == pytest.approx(ref.mean(), rel=1e-9)
    assert d.var == pytest.approx(ref.var(), rel=1e-8)


def test_empirical_ppf_by_hand() -> None:
    d = parse_distribution({"empirical": [90, 30, 45, 45]}, "days")
    assert d.empirical == (30.0, 45.0, 45.0, 90.0)  # sorted
    u = np.array([0.0, 0.24, 0.25, 0.49, 0.5, 0.74, 0.75, 0.999999])
    assert d.ppf(u).tolist() == [30.0, 30.0, 45.0, 45.0, 45.0, 45.0, 90.0, 90.0]
    x = d.sample(np.random.default_rng(3), 40_000)
    assert set(np.unique(x).tolist()) == {30.0, 45.0, 90.0}
    # each observation equally likely: 45 appears twice, so about half of the draws
    assert abs(np.mean(x == 45.0) - 0.5) < 4 * math.sqrt(0.25 / 40_000)


def test_degenerate_ranges() -> None:
    for raw in ({"uniform": [5, 5]}, {"triangular": [5, 5, 5]}, {"pert": [5, 5, 5]}):
        d = parse_distribution(raw, "days")
        assert d.mean == 5.0
        assert d.var == 0.0
        assert d.ppf(np.array([0.0, 0.3, 0.99])).tolist() == [5.0, 5.0, 5.0]


def test_low_is_smallest_value() -> None:
    assert parse_distribution({"triangular": [10, 20, 60]}).low == 10.0
    assert parse_distribution({"pert": [6, 12, 36]}).low == 6.0
    assert parse_distribution({"normal": {"mean": 5, "sd": 10}}).low == pytest.approx(0.0, abs=1e-9)
    assert parse_distribution({"empirical": [4, 2, 9]}).low == 2.0


# ---------------------------------------------------------------------------------------------
# Units


def test_bare_duration_string_in_days() -> None:
    d = parse_distribution("3 months", "days")
    assert d.mean == 91.3125
    assert d.var == 0.0


def test_bare_duration_string_in_months() -> None:
    assert parse_distribution("3 months", "months").mean == 3.0
    assert parse_distribution("2 years", "months").mean == 24.0
    assert parse_distribution(3, "months").mean == 3.0  # bare numbers are already in time_unit


def test_default_time_unit_is_days() -> None:
    assert parse_distribution("2 weeks").mean == 14.0


def test_units_inside_families() -> None:
    tri = parse_distribution({"triangular": ["1 month", "2 months", "4 months"]}, "days")
    assert tri.triangular == pytest.approx((30.4375, 60.875, 121.75))
    assert tri.mean == pytest.approx(7 * 30.4375 / 3)
    mixed = parse_distribution({"uniform": [10, "3 weeks"]}, "days")
    assert mixed.uniform == (10.0, 21.0)
    pert = parse_distribution({"pert": ["6 months", "1 year", "3 years"]}, "months")
    assert pert.pert == pytest.approx((6.0, 12.0, 36.0))
    normal = parse_distribution({"normal": {"mean": "6 weeks", "sd": "1 week"}}, "days")
    assert (normal.normal.mean, normal.normal.sd) == (42.0, 7.0)
    emp = parse_distribution({"empirical": ["1 week", 14, "3 weeks"]}, "weeks")
    assert emp.empirical == pytest.approx((1.0, 3.0, 14.0))  # 14 is bare: already weeks
    ln = parse_distribution({"lognormal": {"median": "2 months", "p90": "4 months"}}, "days")
    assert ln.ppf(np.array([0.5, 0.9])) == pytest.approx([60.875, 121.75], rel=1e-12)
    fixed = parse_distribution({"fixed": "6 weeks"}, "days")
    assert fixed.mean == 42.0


def test_lognormal_mu_sigma_not_unit_converted() -> None:
    a = parse_distribution({"lognormal": {"mu": 1.0, "sigma": 0.2}}, "days")
    b = parse_distribution({"lognormal": {"mu": 1.0, "sigma": 0.2}}, "years")
    assert a.mean == b.mean == pytest.approx(math.exp(1.02))


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"uniform": [40, 20]}, id="uniform-low>high"),
        pytest.param({"uniform": ["2 months", "30 days"]}, id="uniform-low>high-units"),
        pytest.param({"triangular": [10, 60, 20]}, id="triangular-mode>high"),
        pytest.param({"triangular": [30, 20, 60]}, id="triangular-low>mode"),
        pytest.param({"pert": [30, 20, 10]}, id="pert-decreasing"),
        pytest.param({"triangular": [10, 20]}, id="triangular-two-values"),
        pytest.param({"uniform": [-5, 5]}, id="uniform-negative"),
        pytest.param({"normal": {"mean": 10, "sd": -1}}, id="normal-sd<0"),
        pytest.param({"normal": {"mean": 10}}, id="normal-missing-sd"),
        pytest.param({"lognormal": {"median": 120, "p90": 60}}, id="lognormal-median>p90"),
        pytest.param({"lognormal": {"median": 0, "p90": 60}}, id="lognormal-median-zero"),
        pytest.param({"lognormal": {"median": 60}}, id="lognormal-median-only"),
        pytest.param({"lognormal": {"mu": 4}}, id="lognormal-mu-only"),
        pytest.param({"lognormal": {"mu": 4, "sigma": -0.1}}, id="lognormal-sigma<0"),
        pytest.param({"lognormal": {"median": 60, "p90": 90, "mu": 4}}, id="lognormal-mixed"),
        pytest.param({"lognormal": {}}, id="lognormal-empty"),
        pytest.param({"lognormal": {"median": 60, "p95": 90}}, id="lognormal-unknown-key"),
        pytest.param({"empirical": []}, id="empirical-empty"),
        pytest.param({"empirical": [3, -1]}, id="empirical-negative"),
        pytest.param({"uniform": [1, 2], "fixed": 3}, id="two-families"),
        pytest.param({}, id="no-family"),
        pytest.param({"gamma": [1, 2]}, id="unknown-family"),
        pytest.param({"Fixed": 3}, id="family-case"),
        pytest.param({"fixed": -1}, id="fixed-negative"),
        pytest.param(-1, id="bare-negative"),
        pytest.param("-3 days", id="bare-negative-string"),
        pytest.param("3 parsecs", id="bad-unit"),
        pytest.param(True, id="boolean"),
        pytest.param(None, id="none"),
        pytest.param([1, 2], id="list"),
        pytest.param({"fixed": "soon"}, id="fixed-text"),
    ],
)
def test_invalid_parameters_raise_validation_error(raw: Any) -> None:
    with pytest.raises(ValidationError):
        parse_distribution(raw, "days")


def test_error_messages_are_helpful() -> None:
    with pytest.raises(ValidationError, match=r"low.*high"):
        parse_distribution({"triangular": [10, 60, 20]})
    with pytest.raises(ValidationError, match="exactly one family key"):
        parse_distribution({"uniform": [1, 2], "fixed": 3})
    with pytest.raises(ValidationError, match="unknown distribution family 'gamma'"):
        parse_distribution({"gamma": [1, 2]})
    with pytest.raises(ValidationError, match="median <= p90"):
        parse_distribution({"lognormal": {"median": 120, "p90": 60}})
    with pytest.raises(ValidationError, match="sd must be >= 0"):
        parse_distribution({"normal": {"mean": 10, "sd": -1}})
    with pytest.raises(ValidationError, match="negative"):
        parse_distribution({"fixed": -1})


def test_edge_values_accepted() -> None:
    assert parse_distribution({"lognormal": {"median": 60, "p90": 60}}).var == 0.0
    assert parse_distribution({"fixed": 0}).mean == 0.0
    assert parse_distribution({"normal": {"mean": -3, "sd": 2}}).mean > 0  # truncated at 0
    assert isinstance(parse_distribution({"empirical": [5]}), Distribution)


# ---------------------------------------------------------------------------------------------
# Regressions: bugs found while writing these tests, now fixed


@pytest.mark.parametrize(
    "raw",
    [{"fixed": math.nan}, {"uniform": [math.nan, 5]}, {"triangular": [1, math.nan, 5]}],
    ids=["fixed", "uniform", "triangular"],
)
def test_nan_durations_rejected(raw: Any) -> None:
    with pytest.raises(ValidationError):
        parse_distribution(raw, "days")


def test_normal_far_below_zero_ppf_is_finite() -> None:
    d = parse_distribution({"normal": {"mean": -10, "sd": 1}}, "days")
    u = np.array([0.1, 0.5, 0.9])
    expected = stats.truncnorm(10, np.inf, loc=-10, scale=1).ppf(u)  # ~0.0104, 0.0684, 0.2255
    np.testing.assert_allclose(d.ppf(u), expected, rtol=1e-6)


def test_normal_extreme_truncation_moments() -> None:
    d = parse_distribution({"normal": {"mean": -40, "sd": 1}}, "days")
    ref = stats.truncnorm(40, np.inf, loc=-40, scale=1)
    assert d.mean == pytest.approx(ref.mean(), rel=1e-6)  # ~0.025: about 1/40
    assert d.var == pytest.approx(ref.var(), rel=1e-3)
    x = d.ppf(np.linspace(0, 0.999, 50))
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x, ref.ppf(np.linspace(0, 0.999, 50)), rtol=1e-6, atol=1e-12)
