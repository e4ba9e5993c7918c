"""Errors a user can fix. The CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class CapsimError(Exception):
    """Base of every error caused by input rather than by a bug in capsim."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, at a key path such as ``sites[2].pipeline``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ScenarioError(CapsimError):
    """A scenario file that cannot be used, with every problem found in it.

    >>> print(ScenarioError("x.yaml", [Problem("sites[0].mw", "must be > 0")]))
    x.yaml: sites[0].mw: must be > 0
    """

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


def did_you_mean(name: str, known: Iterable[str], what: str, listing: str | None = None) -> str:
    """A message for an unknown ``name`` that suggests the closest known one, then lists them
    (or says ``listing`` instead, where they are too many to list).

    >>> did_you_mean("permitt", ["permit", "build"], "stage")
    "unknown stage 'permitt'; did you mean 'permit'? Known: build, permit"
    """
    known = sorted(known)
    close = closest(name, known)
    hint = f"; did you mean {close!r}?" if close else ";"
    if listing is None:
        listing = "Known: " + (", ".join(known) if known else "none defined")
    return f"unknown {what} {name!r}{hint} {listing}"


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` is most likely a misspelling of, if one is close enough."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None
