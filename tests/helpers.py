"""Helpers shared by the test modules: running the CLI in this process, matching its output, and
shipped scenarios made resource-free (pure precedence: the vectorised fast path)."""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from capsim.loader import parse_yaml, shipped_scenario

ROOT = Path(__file__).resolve().parents[1]


def flat(text: str) -> str:
    """Output with rich's line wrapping undone, for matching messages."""
    return " ".join(text.split())


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_cli_in_process(args: list[str], monkeypatch, capsys) -> Outcome:
    """``capsim ARGS`` through the console entry point, in this process (no start-up cost), from
    the project root. An exception escaping ``main`` is what the user would see as a Traceback."""
    from capsim import cli

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["capsim", *args])
    capsys.readouterr()
    code, crash = 0, ""
    try:
        cli.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except Exception:
        code, crash = 1, traceback.format_exc()
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err + crash)


def without_resources(name: str) -> dict:
    """The document of shipped scenario ``name`` without its shared resources."""
    doc = parse_yaml(shipped_scenario(name).read_text())
    doc["resources"] = {}
    for pipeline in doc["pipelines"].values():
        for stage in pipeline["stages"].values():
            stage.pop("needs", None)
    for site in doc["sites"]:
        for override in site.get("overrides", {}).values():
            override.pop("needs", None)
    return doc
