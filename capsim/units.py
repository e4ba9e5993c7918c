"""Time units and durations: the bridge between model time and the calendar.

Model time is a float in the scenario's ``time_unit``. Durations in scenario files are either a bare
number (already in ``time_unit``) or a string with a unit, which is converted here:

>>> to_time_unit("18 months", "days")
547.875
>>> to_time_unit(6, "weeks")
6.0
>>> to_time_unit("2.5 years", "months")
30.0
>>> to_date(dt.date(2026, 1, 1), 31, "days")
datetime.date(2026, 2, 1)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ValidationInfo

TimeUnit = Literal["days", "weeks", "months", "years"]

#: Length of each unit in days. Months and years are Julian averages, so that 12 months == 1 year.
DAYS_PER: dict[str, float] = {"days": 1.0, "weeks": 7.0, "months": 365.25 / 12, "years": 365.25}

_ALIASES = {
    "d": "days", "day": "days", "days": "days",
    "w": "weeks", "wk": "weeks", "week": "weeks", "weeks": "weeks",
    "mo": "months", "month": "months", "months": "months",
    "y": "years", "yr": "years", "year": "years", "years": "years",
}  # fmt: skip
_DURATION = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]+)\s*$")

DURATION_HELP = (
    "a number (in the scenario's time_unit) or a string such as "
    "'90 days', '6 weeks', '18 months', '2.5 years'"
)


def parse_duration(text: str) -> tuple[float, str]:
    """Split ``"18 months"`` into ``(18.0, "months")``; raise ``ValueError`` with what is allowed.

    >>> parse_duration("6 wk")
    (6.0, 'weeks')
    """
    match = _DURATION.match(text)
    if not match or match.group(2).lower() not in _ALIASES:
        raise ValueError(f"cannot read {text!r} as a duration; expected {DURATION_HELP}")
    return float(match.group(1)), _ALIASES[match.group(2).lower()]


def to_time_unit(value: float | int | str, unit: str) -> float:
    """Convert a duration (a number in ``unit``, or a string with its own unit) into ``unit``."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}, got a boolean")
    if isinstance(value, int | float):
        amount, own_unit = float(value), unit
    elif isinstance(value, str):
        try:  # a number written as text ("0", "90") is in the scenario's unit, like a bare number
            amount, own_unit = float(value), unit
        except ValueError:
            amount, own_unit = parse_duration(value)
    else:
        raise ValueError(f"expected {DURATION_HELP}, got {type(value).__name__}")
    if not math.isfinite(amount):
        raise ValueError(f"a duration must be a finite number, got {value!r}")
    return amount * DAYS_PER[own_unit] / DAYS_PER[unit]


def to_date(start: dt.date, t: float, unit: str) -> dt.date:
    """Calendar date of model time ``t`` (in ``unit``) after ``start``, rounded down to the day."""
    return start + dt.timedelta(days=int(t * DAYS_PER[unit] + 1e-9))


def parse_date(text: str) -> dt.date:
    """A calendar date written exactly YYYY-MM-DD (not 2030, 20300201 or 02/01/2030); raise
    ValueError otherwise.

    >>> parse_date("2030-02-01")
    datetime.date(2030, 2, 1)
    """
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise ValueError(f"expected a date YYYY-MM-DD, got {text!r}")
    return dt.date.fromisoformat(text.strip())


def from_date(start: dt.date, date: dt.date, unit: str) -> float:
    """Model time of a calendar ``date`` relative to ``start``, in ``unit``."""
    return (date - start).days / DAYS_PER[unit]


def time_value(value: Any, info: ValidationInfo) -> float:
    """Pydantic validator: convert a duration into ``info.context["time_unit"]`` (default days)."""
    return to_time_unit(value, (info.context or {}).get("time_unit", "days"))


def duration_value(value: Any, info: ValidationInfo) -> float:
    converted = time_value(value, info)
    if converted < 0:
        raise ValueError(f"a duration cannot be negative; got {value!r}")
    return converted


TimeValue = Annotated[float, BeforeValidator(time_value, json_schema_input_type=float | str)]
"""A time in the scenario's unit, written as a number or a string such as ``"18 months"``."""

Duration = Annotated[float, BeforeValidator(duration_value, json_schema_input_type=float | str)]
"""A non-negative :data:`TimeValue`."""


def moment_value(value: Any, info: ValidationInfo) -> float:
    """Pydantic validator: a point in time, written as a calendar date or as a duration after the
    scenario's start (``info.context["start"]``), as model time (negative before the start)."""
    context = info.context or {}
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = dt.date.fromisoformat(value)
    if isinstance(value, dt.date):
        if context.get("start") is None:
            raise ValueError("a date needs the scenario's own 'start' date")
        return from_date(context["start"], value, context.get("time_unit", "days"))
    return duration_value(value, info)


Moment = Annotated[
    float, BeforeValidator(moment_value, json_schema_input_type=dt.date | float | str)
]
"""A point in model time: a date (``2027-06-01``) or a duration after the start (``18 months``)."""
