"""``--format csv|parquet|xlsx``: every table of run, mc and compare in each format, and the
rules for output paths (missing or read-only folders, unknown formats, no partial files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from capsim import outputs
from capsim.errors import CapsimError
from capsim.outputs import table_writers, write_file, write_outputs

CAPSIM = str(Path(sys.executable).with_name("capsim"))
SCENARIOS = Path(__file__).resolve().parents[1] / "capsim" / "scenarios"
GREENFIELD = str(SCENARIOS / "greenfield-campus.yaml")
STARGATE = str(SCENARIOS / "stargate-pivot.yaml")

#: Each command with the tables it writes, in order.
COMMANDS = {
    "run": (
        ["run", GREENFIELD],
        ["stages", "sites", "capacity", "events", "costs"],
    ),
    "mc": (
        ["mc", GREENFIELD, "--reps", "20"],
        [
            "replications",
            "summary",
            "costs_summary",
            "stages",
            "sensitivity",
            "stage_bands",
            "capacity_bands",
            "event_shares",
        ],
    ),
    "compare": (
        ["compare", STARGATE, "--reps", "8"],
        ["side_by_side", "differences", "wins"],
    ),
}
#: Columns that hold calendar dates (csv: YYYY-MM-DD text).
DATES = {
    ("run", "stages"): ["ready_date", "start_date", "finish_date"],
    ("run", "sites"): ["start_date", "online_date"],
    ("run", "capacity"): ["date"],
    ("run", "events"): ["date"],
    ("run", "costs"): ["date"],
    ("mc", "summary"): ["P10", "P50", "P90", "mean"],
    ("compare", "side_by_side"): ["1 GW P50", "1 GW P90"],
}


def capsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CAPSIM, *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[tuple[str, str], Path]:
    """The output folder of each command in each format, from the same seed."""
    root = tmp_path_factory.mktemp("exports")
    folders = {}
    for command, (args, _) in COMMANDS.items():
        for fmt in outputs.FORMATS:
            out = root / f"{command}-{fmt}"
            result = capsim(*args, "--seed", "3", "--format", fmt, "--out", str(out))
            assert result.returncode == 0, result.stderr
            folders[command, fmt] = out
    return folders


def read(folder: Path, fmt: str, stems: list[str]) -> dict[str, pd.DataFrame]:
    if fmt == "csv":
        return {stem: pd.read_csv(folder / f"{stem}.csv") for stem in stems}
    if fmt == "parquet":
        return {stem: pd.read_parquet(folder / f"{stem}.parquet") for stem in stems}
    return pd.read_excel(folder / "tables.xlsx", sheet_name=None)


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    """Dates as YYYY-MM-DD text and empty text as missing, as in a csv file read back."""
    table = table.copy()
    for column in table.columns:
        if pd.api.types.is_datetime64_any_dtype(table[column]):
            table[column] = table[column].dt.strftime("%Y-%m-%d")
    table = table.replace("", float("nan"))
    return table.astype(object).where(table.notna(), None)


@pytest.mark.parametrize("fmt", ["parquet", "xlsx"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_table_round_trips_like_its_csv(written, command: str, fmt: str) -> None:
    stems = COMMANDS[command][1]
    folder = written[command, fmt]
    files = {p.name for p in folder.iterdir() if not p.is_dir()} - {"gantt.png", "manifest.json"}
    if fmt == "xlsx":
        assert files == {"tables.xlsx"}
    else:
        assert files == {f"{stem}.{fmt}" for stem in stems}
    expected = read(written[command, "csv"], "csv", stems)
    found = read(folder, fmt, stems)
    assert list(found) == stems  # xlsx: one sheet per table, in order
    for stem in stems:
        csv, other = expected[stem], found[stem]
        assert list(other.columns) == list(csv.columns), stem
        assert len(other) == len(csv) > 0 or stem in ("costs_summary", "event_shares"), stem
        pd.testing.assert_frame_equal(
            comparable(other), comparable(csv), check_dtype=False, check_exact=False, rtol=1e-12
        )
        for column in DATES.get((command, stem), []):
            assert pd.api.types.is_datetime64_any_dtype(other[column]), (stem, column)


def test_run_keeps_the_gantt_png_in_every_format(written) -> None:
    for fmt in outputs.FORMATS:
        png = written["run", fmt] / "gantt.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", fmt


def test_mc_summary_keeps_its_milestone_column(written) -> None:
    for fmt in outputs.FORMATS:
        summary = read(written["mc", fmt], fmt, ["summary"])["summary"]
        assert summary.columns[0] == "milestone", fmt
        assert list(summary["milestone"][:2]) == ["1 GW", "5 GW"], fmt
        csv = pd.read_csv(written["mc", "csv"] / "summary.csv")
        assert pd.Timestamp(summary.loc[0, "P50"]) == pd.Timestamp(csv.loc[0, "P50"]), fmt


def test_workbook_has_a_frozen_bold_header_and_excel_dates(written) -> None:
    from openpyxl import load_workbook

    book = load_workbook(written["run", "xlsx"] / "tables.xlsx")
    assert book.sheetnames == COMMANDS["run"][1]
    sheet = book["sites"]
    assert sheet.freeze_panes == "A2"
    assert all(cell.font.b for cell in sheet[1])
    header = [cell.value for cell in sheet[1]]
    date = sheet.cell(row=2, column=header.index("start_date") + 1)
    assert date.is_date and date.number_format == "yyyy-mm-dd"
    assert sheet.column_dimensions["A"].width >= len("campus-phase-1")


def test_the_wrote_line_names_the_files(written) -> None:
    result = capsim("run", GREENFIELD, "--format", "xlsx", "--out", str(written["run", "xlsx"]))
    assert result.returncode == 0, result.stderr
    assert "Wrote tables.xlsx (sheets stages, sites, capacity, events, costs) and gantt.png" in (
        " ".join(result.stdout.split())
    )


def test_help_lists_the_formats_and_does_not_load_writers() -> None:
    result = capsim("mc", "--help")
    assert "csv|parquet|xlsx" in result.stdout
    heavy = "{'openpyxl', 'pyarrow', 'pandas'}"
    code = f"import sys, capsim.cli; print(sorted({heavy} & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


# bad input


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unknown_format_is_a_usage_error_listing_the_formats(tmp_path: Path, command) -> None:
    out = tmp_path / "out"
    result = capsim(*COMMANDS[command][0], "--format", "xls", "--out", str(out))
    assert result.returncode == 2
    assert all(f"'{fmt}'" in result.stderr for fmt in ("csv", "parquet", "xlsx")), result.stderr
    assert not out.exists()


def test_unknown_format_in_python_names_the_formats() -> None:
    with pytest.raises(CapsimError, match="unknown format 'xls'; use csv, parquet or xlsx"):
        table_writers({"t": pd.DataFrame({"a": [1]})}, "xls")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_out_in_a_missing_folder_is_an_error_and_creates_nothing(tmp_path: Path, command) -> None:
    out = tmp_path / "missing" / "out"
    result = capsim(*COMMANDS[command][0], "--out", str(out))
    assert result.returncode == 2
    assert f"folder {tmp_path / 'missing'} does not exist" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def read_only(tmp_path: Path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        yield folder
    else:
        (folder / "probe").unlink()
        pytest.skip("folder permissions do not stop this user (root?): cannot test read-only")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("where", ["the folder", "its parent"])
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_read_only_folder_is_an_error_and_leaves_no_file(read_only: Path, where, fmt) -> None:
    out = read_only if where == "the folder" else read_only / "out"
    result = capsim("run", GREENFIELD, "--format", fmt, "--out", str(out))
    assert result.returncode == 2
    assert f"cannot write to {read_only}: permission denied" in " ".join(result.stderr.split())
    assert list(read_only.iterdir()) == []


def test_write_file_leaves_nothing_when_write_raises(tmp_path: Path) -> None:
    def fails(path: Path) -> None:
        path.write_text("half a file")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        write_file(tmp_path / "new.csv", fails)
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "old.csv").write_text("kept")
    with pytest.raises(ValueError, match="boom"):
        write_file(tmp_path / "old.csv", fails)
    assert [p.name for p in tmp_path.iterdir()] == ["old.csv"]
    assert (tmp_path / "old.csv").read_text() == "kept"


def test_write_file_replaces_the_file_and_keeps_its_extension(tmp_path: Path) -> None:
    seen = []

    def write(path: Path) -> None:
        seen.append(path)
        path.write_text("new")

    (tmp_path / "report.html").write_text("old")
    write_file(tmp_path / "report.html", write)
    assert (tmp_path / "report.html").read_text() == "new"
    assert seen[0].parent == tmp_path and seen[0].name.endswith(".html") and seen[0].name[0] == "."
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_file_errors_name_the_path(tmp_path: Path) -> None:
    noop = Path.touch
    with pytest.raises(CapsimError, match=f"folder {tmp_path / 'nope'} does not exist"):
        write_file(tmp_path / "nope" / "x.png", noop)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(CapsimError, match=r"dir\.png: it is a folder"):
        write_file(tmp_path / "dir.png", noop)

    def denied(path: Path) -> None:
        path.write_text("part")
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.png"))

    with pytest.raises(CapsimError, match=f"cannot write to {tmp_path}/x.png: permission denied"):
        write_file(tmp_path / "x.png", denied)
    assert [p.name for p in tmp_path.iterdir()] == ["dir.png"]


def test_write_outputs_is_all_or_nothing(tmp_path: Path) -> None:
    def fails(path: Path) -> None:
        raise OSError(28, "No space left on device")

    out = tmp_path / "out"
    with pytest.raises(CapsimError, match="no space left on device"):
        write_outputs(out, {"a.csv": lambda p: p.write_text("a"), "b.csv": fails})
    assert not out.exists()  # it was created for this write, and removed again

    out.mkdir()
    (out / "a.csv").write_text("old")
    with pytest.raises(CapsimError):
        write_outputs(out, {"a.csv": lambda p: p.write_text("new"), "b.csv": fails})
    assert [p.name for p in out.iterdir()] == ["a.csv"]
    assert (out / "a.csv").read_text() == "old"


def test_xlsx_dates_lose_their_time_zone_not_their_wall_time(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "when": pd.to_datetime(["2030-01-01 09:30", None]).tz_localize("Asia/Tokyo"),
            "n": [1, 2],
        }
    )
    write_outputs(tmp_path, table_writers({"t": table}, "xlsx"))
    back = pd.read_excel(tmp_path / "tables.xlsx")
    assert back.loc[0, "when"] == pd.Timestamp("2030-01-01 09:30") and pd.isna(back.loc[1, "when"])


def test_a_table_too_long_for_excel_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(outputs, "MAX_ROWS", 4)
    with pytest.raises(CapsimError, match=r"replications has 4 rows.*use --format csv or parquet"):
        table_writers({"replications": pd.DataFrame({"a": range(4)})}, "xlsx")
