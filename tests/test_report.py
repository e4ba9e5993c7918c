"""``capsim report`` and ``capsim gantt``: the pages open in a real headless Chromium with every
chart drawn and nothing fetched from the network; the report holds every section; the static
Gantt files are real images; bad input is refused before any work, leaving nothing behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from browser import Chromium, PageReport, require_chromium

from capsim import __version__
from capsim.loader import load_scenario, parse_scenario
from capsim.report import build_report

CAPSIM = str(Path(sys.executable).with_name("capsim"))
ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "capsim" / "scenarios"
STARGATE = str(SCENARIOS / "stargate-pivot.yaml")
SECTIONS = (
    "findings", "comparison", "capacity", "milestones", "gantt", "critical", "sensitivity",
    "costs", "hbm", "events", "inputs", "reproduce",
)  # fmt: skip
REMOTE_SCRIPT = re.compile(r"<script[^>]*\ssrc\s*=\s*['\"]?https?:", re.I)


def capsim(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CAPSIM, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def message(result: subprocess.CompletedProcess) -> str:
    """stderr on one line (rich wraps long messages)."""
    return " ".join(result.stderr.split())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".capsim-*"))


# -- in the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    require_chromium()
    with Chromium(timeout_ms=60_000) as session:
        yield session


def keep_screenshot(page: PageReport) -> None:
    """Copy the screenshot to $CAPSIM_SCREENSHOTS, if set, for a human to look at."""
    folder = os.environ.get("CAPSIM_SCREENSHOTS")
    if folder and page.screenshot is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(page.screenshot, Path(folder) / page.screenshot.name)


def assert_clean(page: PageReport, charts: int | None = None, at_least: int = 1) -> None:
    assert page.console_errors == []
    assert page.page_errors == []
    assert page.blocked_requests == []
    assert page.failed_requests == []
    assert page.settled
    if charts is not None:
        assert len(page.charts) == charts, [str(c) for c in page.charts]
    assert len(page.charts) >= at_least, [str(c) for c in page.charts]
    assert page.unrendered == [], [str(c) for c in page.unrendered]
    assert page.ok, page.problems
    assert all(c.width > 0 and c.height > 0 for c in page.charts)


def test_report_renders_in_chromium(chromium, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = capsim("report", STARGATE, "--reps", "40", "--seed", "1", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "Wrote" in result.stdout
    page_text = out.read_text(encoding="utf-8")
    assert REMOTE_SCRIPT.search(page_text) is None  # plotly.js is inlined: works offline
    assert len(page_text) > 3_000_000  # ... and it is big
    assert leftovers(tmp_path) == []

    page = chromium.render(out, tmp_path / "report.png")
    keep_screenshot(page)
    assert_clean(page, at_least=7)
    titles = " | ".join(c.title for c in page.charts)
    for words in ("Capacity online", "milestones", "One replication", "P10-P90", "Costs", "HBM"):
        assert words in titles, titles
    assert page.title == "capsim report: stargate-pivot"
    assert page.screenshot is not None and page.screenshot.stat().st_size > 50_000
    pixels = matplotlib.image.imread(page.screenshot)
    assert pixels.shape[1] == 1400 and pixels.shape[0] > 3000  # a long page, full width
    assert pixels.std() > 0.01


@pytest.mark.parametrize("reps", [1, 20], ids=["one run", "bands"])
def test_gantt_html_renders_in_chromium(chromium, tmp_path: Path, reps: int) -> None:
    out = tmp_path / "g.html"
    result = capsim("gantt", STARGATE, "--reps", str(reps), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert REMOTE_SCRIPT.search(out.read_text(encoding="utf-8")) is None
    assert leftovers(tmp_path) == []

    page = chromium.render(out, tmp_path / f"gantt-{reps}.png")
    keep_screenshot(page)
    assert_clean(page, charts=1)
    what = "replication 0" if reps == 1 else "over 20 replications (P10-P90)"
    assert what in page.charts[0].title
    assert page.charts[0].marks >= 10  # bars of many stages, not a lone mark


# -- the report's content ------------------------------------------------------------------------


def section_ids(page: str) -> list[str]:
    return re.findall(r"<h2 id=['\"]([\w-]+)['\"]", page)


def test_report_content_of_the_stargate_pivot() -> None:
    scenario = load_scenario(STARGATE)
    page = build_report(scenario, reps=8, seed=123).html()

    assert section_ids(page) == list(SECTIONS)
    assert "seed 123" in page
    assert f"capsim {__version__}" in page
    assert "--seed 123" in page  # the command that reproduces it
    for name in scenario.strategies:
        assert re.search(rf"<h3>Milestones: {name}</h3>", page), name
    assert REMOTE_SCRIPT.search(page) is None
    findings = re.search(r"<h2 id='findings'>.*?</ul>", page, re.S).group(0)
    for milestone in scenario.milestones:  # the P50 of every milestone for every strategy
        assert f"<b>{milestone.label}</b> (P50): " in findings
    for name in scenario.strategies:
        assert f"<b>{name}</b>: " in findings, name
    assert "Cost per GPU-hour" in findings


@pytest.mark.parametrize("name", ["greenfield-campus", "portfolio"])
def test_a_scenario_without_strategies_gets_a_report(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert not scenario.strategies
    page = build_report(scenario, reps=6, seed=2).html()

    assert page.startswith("<!DOCTYPE html>")
    assert section_ids(page) == list(SECTIONS)
    assert "6 replications each · seed 2" in page
    assert f"capsim {__version__}" in page
    assert page.count('class="plotly-graph-div"') >= 3


def test_a_horizon_shorter_than_a_month_still_gets_a_report() -> None:
    scenario = parse_scenario(
        {
            "name": "short",
            "start": "2026-01-01",
            "horizon": "20 days",  # no first day of a month between the start and the horizon
            "pipelines": {"p": {"stages": {"a": {"duration": 5}}}},
            "sites": [{"name": "s", "org": "lab", "pipeline": "p", "mw": 10}],
            "risks": {"r": {"sites": ["s"], "probability": 0.5, "effect": {"cancel": True}}},
        }
    )
    # Found by this test: the monthly capacity grid was empty, and the report raised KeyError.
    page = build_report(scenario, reps=4, seed=1).html()
    assert section_ids(page) == list(SECTIONS)
    assert "over 4 replications" in page  # the capacity fan's sample
    assert "inf%" not in page and "nan%" not in page


# -- static Gantt files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "reps"), [(".png", 1), (".svg", 1), (".png", 20)], ids=["png", "svg", "png bands"]
)
def test_static_gantt_files(tmp_path: Path, suffix: str, reps: int) -> None:
    out = tmp_path / f"gantt{suffix}"
    result = capsim("gantt", STARGATE, "--reps", str(reps), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left
    if suffix == ".png":
        assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        pixels = matplotlib.image.imread(out)
        height, width = pixels.shape[:2]
        assert width == 13 * 130  # 13 inches at 130 dpi
        assert 400 <= height <= 20_000
        assert pixels.std() > 0.01  # not blank
    else:
        root = ET.parse(out).getroot()
        assert root.tag.endswith("svg")
        assert len(list(root.iter())) > 100  # bars, labels, axes


# -- bad input -----------------------------------------------------------------------------------

HUGE = "10000000"  # replications: a command that simulated before refusing would time out


@pytest.mark.parametrize("command", ["report", "gantt"])
def test_output_in_a_missing_folder_is_refused_before_simulating(tmp_path: Path, command) -> None:
    missing = tmp_path / "missing"
    started = time.monotonic()
    result = capsim(command, STARGATE, "--reps", HUGE, "-o", str(missing / "x.html"), timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert f"folder {missing} does not exist" in message(result)
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # the folder is not created


@pytest.mark.parametrize("command", ["report", "gantt"])
def test_output_that_is_a_folder_is_refused(tmp_path: Path, command) -> None:
    folder = tmp_path / "taken.html"
    folder.mkdir()
    result = capsim(command, STARGATE, "--reps", HUGE, "-o", str(folder), timeout=60)
    assert result.returncode == 2
    assert f"cannot write to {folder}: it is a folder" in message(result)
    assert list(folder.iterdir()) == []
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["report", "gantt"])
def test_an_invalid_scenario_is_refused_and_writes_nothing(tmp_path: Path, command) -> None:
    doc = yaml.safe_load((SCENARIOS / "greenfield-campus.yaml").read_text())
    doc["horizn"] = "10 years"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "out.html"
    result = capsim(command, str(bad), "--reps", "3", "-o", str(out))
    assert result.returncode == 2
    assert "bad.yaml" in message(result) and "horizn" in message(result)
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_gantt_refuses_an_unknown_file_type(tmp_path: Path) -> None:
    result = capsim("gantt", STARGATE, "--out", str(tmp_path / "x.pdf"))
    assert result.returncode == 2
    text = message(result)
    assert "'.pdf'" in text
    assert all(suffix in text for suffix in (".html", ".png", ".svg"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [("report", "--strategies", "build,nope"), ("gantt", "--strategy", "nope")],
    ids=["report", "gantt"],
)
def test_an_unknown_strategy_is_refused(tmp_path: Path, args) -> None:
    command, *option = args
    out = tmp_path / "out.html"
    result = capsim(command, STARGATE, *option, "--reps", "3", "-o", str(out))
    assert result.returncode == 2
    assert "unknown strategy 'nope'" in message(result)
    assert "build, hybrid, lease" in message(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["report", "gantt"])
def test_help_has_an_example(command: str) -> None:
    result = capsim(command, "--help")
    assert result.returncode == 0
    assert f"capsim {command} scenarios/stargate-pivot.yaml" in " ".join(result.stdout.split())


def test_the_same_inputs_give_the_same_report_whatever_the_workers() -> None:
    scenario = load_scenario(SCENARIOS / "greenfield-campus.yaml")
    pages = [build_report(scenario, reps=12, seed=3, workers=w).html() for w in (1, 2)]
    stamp = re.compile(r"generated [0-9: -]+UTC")
    assert stamp.sub("", pages[0]) == stamp.sub("", pages[1])
