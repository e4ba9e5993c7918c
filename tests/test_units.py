"""Durations and calendar conversion: capsim.units."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capsim.units import DAYS_PER, from_date, parse_duration, to_date, to_time_unit

UNITS = ["days", "weeks", "months", "years"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18 months", (18.0, "months")),
        ("6 wk", (6.0, "weeks")),
        ("6 WK", (6.0, "weeks")),
        ("1 week", (1.0, "weeks")),
        ("90d", (90.0, "days")),
        ("  2.5   years ", (2.5, "years")),
        (".5 y", (0.5, "years")),
        ("3. mo", (3.0, "months")),
        ("1e2 days", (100.0, "days")),
        ("2E-1 yr", (0.2, "years")),
        ("-3 days", (-3.0, "days")),
        ("+4 Day", (4.0, "days")),
        ("1 month", (1.0, "months")),
        ("7 year", (7.0, "years")),
    ],
)
def test_parse_duration_accepts(text: str, expected: tuple[float, str]) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["3 parsecs", "", "days", "3", "3 days extra", "three days", "3 d a y s", "1,5 days"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_duration(text)


def test_days_per_unit() -> None:
    assert DAYS_PER == {"days": 1.0, "weeks": 7.0, "months": 30.4375, "years": 365.25}
    assert 12 * DAYS_PER["months"] == DAYS_PER["years"]


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("18 months", "days", 547.875),  # 18 * 365.25 / 12
        ("3 months", "days", 91.3125),
        ("3 months", "months", 3.0),
        ("2.5 years", "months", 30.0),
        ("2 years", "months", 24.0),
        ("2 years", "weeks", 730.5 / 7),
        ("14 days", "weeks", 2.0),
        ("6 weeks", "days", 42.0),
        ("365.25 days", "years", 1.0),
        ("1 year", "days", 365.25),
        (6, "weeks", 6.0),
        (2.5, "years", 2.5),
        (0, "days", 0.0),
    ],
)
def test_to_time_unit(value: float | str, unit: str, expected: float) -> None:
    result = to_time_unit(value, unit)
    assert isinstance(result, float)
    assert result == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("value", [True, False, None, [1], {"days": 3}, "3 parsecs"])
def test_to_time_unit_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        to_time_unit(value, "days")  # type: ignore[arg-type]


def test_to_time_unit_boolean_message() -> None:
    with pytest.raises(ValueError, match="boolean"):
        to_time_unit(True, "days")


@given(
    amount=st.floats(min_value=0, max_value=1e4, allow_nan=False),
    src=st.sampled_from(UNITS),
    dst=st.sampled_from(UNITS),
)
def test_to_time_unit_round_trip(amount: float, src: str, dst: str) -> None:
    there = to_time_unit(f"{amount!r} {src}", dst)
    back = to_time_unit(f"{there!r} {dst}", src)
    assert back == pytest.approx(amount, rel=1e-12, abs=1e-12)
    assert there * DAYS_PER[dst] == pytest.approx(amount * DAYS_PER[src], rel=1e-12, abs=1e-12)


def test_to_date_examples() -> None:
    start = dt.date(2026, 1, 1)
    assert to_date(start, 31, "days") == dt.date(2026, 2, 1)
    assert to_date(start, 0, "days") == start
    assert to_date(start, 30.999, "days") == dt.date(2026, 1, 31)  # rounds down
    assert to_date(start, 2, "weeks") == dt.date(2026, 1, 15)
    # 1 year = 365.25 days -> 365 whole days; 2026 is not a leap year.
    assert to_date(start, 1, "years") == dt.date(2027, 1, 1)
    # 4 years = 1461 days exactly: 2026-01-01 + 1461 days (2028 is a leap year).
    assert to_date(start, 4, "years") == dt.date(2030, 1, 1)
    # 1 month = 30.4375 days -> 30 whole days.
    assert to_date(start, 1, "months") == dt.date(2026, 1, 31)
    # 24 months = 730.5 days -> 730 whole days = 365 (2026) + 365 (2027).
    assert to_date(start, 24, "months") == dt.date(2028, 1, 1)


def test_from_date_examples() -> None:
    start = dt.date(2026, 1, 1)
    assert from_date(start, dt.date(2026, 2, 1), "days") == 31.0
    assert from_date(start, dt.date(2026, 1, 15), "weeks") == 2.0
    assert from_date(start, dt.date(2028, 1, 1), "months") == pytest.approx(730 / 30.4375)
    assert from_date(start, dt.date(2030, 1, 1), "years") == 4.0
    assert from_date(start, dt.date(2025, 12, 31), "days") == -1.0


@given(
    start=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 1, 1)),
    offset=st.integers(min_value=0, max_value=40_000),
    unit=st.sampled_from(UNITS),
)
def test_date_round_trip(start: dt.date, offset: int, unit: str) -> None:
    date = start + dt.timedelta(days=offset)
    assert to_date(start, from_date(start, date, unit), unit) == date


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "inf days", "nan weeks"])
def test_to_time_unit_rejects_non_finite(value: float | str) -> None:
    with pytest.raises(ValueError):
        to_time_unit(value, "days")
