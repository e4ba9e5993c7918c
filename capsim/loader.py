"""Reading scenario files: YAML in, a validated :class:`~capsim.schema.Scenario` out, or one
:class:`~capsim.errors.ScenarioError` naming the file, each key path and what is allowed.

>>> scenario = load_scenario(default_scenario_path())
>>> scenario.name, list(scenario.strategies)
('stargate-pivot', ['build', 'lease', 'hybrid'])
"""

from __future__ import annotations

import datetime as dt
import re
import typing
from collections.abc import Hashable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from capsim.checks import check_scenario
from capsim.distributions import FAMILIES
from capsim.errors import Problem, ScenarioError, closest, did_you_mean
from capsim.schema import Scenario

DEFAULT_SCENARIO = "stargate-pivot"


def shipped_scenario(name: str) -> Path:
    """The path of a scenario shipped inside the package, e.g. ``"portfolio"``."""
    return Path(str(resources.files("capsim") / "scenarios" / f"{name}.yaml"))


def default_scenario_path() -> Path:
    """The built-in default scenario (the Stargate pivot), shipped inside the package."""
    return shipped_scenario(DEFAULT_SCENARIO)


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and cross-check the scenario at ``path``."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, [Problem("", "file not found")]) from None
    except IsADirectoryError:
        raise ScenarioError(
            source, [Problem("", "is a directory, expected a YAML scenario file")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, [Problem("", f"cannot read the file: {exc}")]) from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [Problem("", _yaml_message(exc))]) from None
    except ValueError as exc:  # PyYAML's constructors raise it for impossible dates (2027-02-30)
        raise ScenarioError(source, [Problem("", f"not valid YAML: {exc}")]) from None
    return parse_scenario(data, source)


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate an already-parsed scenario mapping (e.g. built in a notebook)."""
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ScenarioError(
            source,
            [Problem("", f"expected a mapping of scenario keys at the top level, got {kind}")],
        )
    context = {"time_unit": data.get("time_unit", "days"), "start": _start_date(data.get("start"))}
    if context["time_unit"] not in typing.get_args(Scenario.model_fields["time_unit"].annotation):
        context["time_unit"] = "days"  # reported by the schema; keep converting the rest
    try:
        scenario = Scenario.model_validate(data, context=context)
    except ValidationError as exc:
        raise ScenarioError(source, _problems(exc.errors(), data)) from None
    problems = check_scenario(scenario)
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def _start_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def parse_yaml(text: str) -> Any:
    """Parse YAML as capsim does: safe, duplicate keys rejected, ``1.5e6`` read as a number.

    >>> parse_yaml("capex: 1.5e6")
    {'capex': 1500000.0}
    """
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate keys instead of keeping the last one, and reads
    exponent floats without a dot or sign (``1.5e6``, ``2e9``) as numbers, as YAML 1.2 does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # merged keys may be overridden on purpose
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # PyYAML itself reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f"not valid YAML: {exc}"


def key_path(loc: tuple[int | str, ...], data: Any = None) -> str:
    """``('sites', 2, 'pipeline')`` -> ``sites[2].pipeline``.

    Drops the tags pydantic adds for distribution families, and the implicit ``fixed`` of a bare
    duration when ``data`` (the raw document) shows the user wrote no ``fixed:`` key.

    >>> key_path(("pipelines", "p", "stages", "a", "duration", "triangular", "triangular"))
    'pipelines.p.stages.a.duration.triangular'
    >>> raw = {"stages": {"a": {"duration": "12 mnths"}}}
    >>> key_path(("stages", "a", "duration", "fixed", "fixed"), raw)
    'stages.a.duration'
    """
    parts: list[str] = []
    node = data
    for i, item in enumerate(loc):
        if i > 0 and item == loc[i - 1] and item in FAMILIES:
            continue
        if item == "fixed" and data is not None and not isinstance(node, dict):
            break  # a bare duration: pydantic's implicit {fixed: ...}
        parts.append(f"[{item}]" if isinstance(item, int) else f".{item}")
        node = _child(node, item)
    return "".join(parts).lstrip(".")


def _child(node: Any, item: int | str) -> Any:
    if isinstance(node, dict):
        return node.get(item)
    if isinstance(node, list) and isinstance(item, int) and item < len(node):
        return node[item]
    return None


def _problems(errors: list[Any], data: Any) -> list[Problem]:
    """A problem for each of pydantic's ``errors``, but one for a misspelt required key: its
    'unknown key' says what it was meant to be, and the key it misses is not reported apart."""
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    meant = set()
    for err in errors:
        *where, name = err["loc"]
        if err["type"] == "extra_forbidden":
            close = closest(str(name), _allowed_keys(tuple(where)))
            if (*where, close) in missing:
                meant.add((*where, close))
    return [
        _problem(err, data)
        for err in errors
        if not (err["type"] == "missing" and tuple(err["loc"]) in meant)
    ]


def _problem(err: Any, data: Any) -> Problem:
    loc = tuple(err["loc"])
    kind, message = err["type"], err["msg"].removeprefix("Value error, ")
    if "[key]" in loc:
        where = loc[: loc.index("[key]") - 1]  # the mapping that holds the bad key
        return Problem(
            key_path(where, data),
            f"keys must be text; YAML read {err['input']!r} as a {type(err['input']).__name__} "
            "(write it in quotes)",
        )
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        message = (
            did_you_mean(str(loc[-1]), allowed, "key") if allowed else f"unknown key {loc[-1]!r}"
        )
    elif kind == "missing":
        return Problem(
            key_path(loc[:-1], data) or "(top level)", f"missing required key {loc[-1]!r}"
        )
    elif kind not in ("value_error", "distribution"):
        message = f"{message}; got {err['input']!r}"
    return Problem(key_path(loc, data), message)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping at ``loc`` may hold, found by walking the schema's type annotations."""
    node: Any = Scenario
    for item in loc:
        node = _strip(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(item))
            node = field.annotation if field else FAMILIES.get(str(item))
        elif typing.get_origin(node) in (dict, list):
            node = typing.get_args(node)[-1]
        elif isinstance(item, str) and item in FAMILIES:
            node = FAMILIES[item]
        else:
            return []
    node = _strip(node)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


def _strip(annotation: Any) -> Any:
    """Unwrap ``Annotated[...]`` and ``X | None`` down to the single type inside."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, type(int | None)) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation
