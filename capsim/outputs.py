"""Writing result files: every file of a command lands together or not at all.

Tables go out as csv or Parquet (a file per table) or as one Excel workbook, ``tables.xlsx``,
with a sheet per table (:func:`table_writers`). Each file is written under a hidden temporary
name in its own folder and renamed into place only once every file of the command is written
(:func:`write_outputs`, :func:`write_file`), so a failure leaves no partial or temporary file.
pandas' Parquet engine (pyarrow) and openpyxl are imported only when a file is written.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import math
import os
import re
import secrets
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capsim.errors import CapsimError

if TYPE_CHECKING:
    import pandas as pd

Writer = Callable[[Path], None]


class TableFormat(enum.StrEnum):
    """The formats of ``--format``: a file per table (csv, parquet) or one workbook (xlsx)."""

    csv = "csv"
    parquet = "parquet"
    xlsx = "xlsx"


FORMATS = tuple(f.value for f in TableFormat)
#: The workbook that ``xlsx`` writes, a sheet per table.
WORKBOOK = "tables.xlsx"
#: Excel's limits: rows (with the header row) and columns of a sheet, characters of a cell.
MAX_ROWS, MAX_COLUMNS, MAX_CELL = 1_048_576, 16_384, 32_767
#: Excel number formats of dates (capsim's are whole days) and of date-times.
DATE, DATETIME = "yyyy-mm-dd", "yyyy-mm-dd hh:mm:ss"


def csv_writer(table: pd.DataFrame) -> Writer:
    """Write ``table`` as csv, without its index."""
    return lambda path: table.to_csv(path, index=False)


def table_writers(
    tables: dict[str, pd.DataFrame], fmt: str, *, index: dict[str, str] | None = None
) -> dict[str, Writer]:
    """Writers, by file name, for ``tables`` (by file stem) in format ``fmt``: ``<stem>.csv`` or
    ``<stem>.parquet`` per table, or one ``tables.xlsx`` with a sheet per table.

    ``index`` names the tables whose index means something, with the label of its column: that
    index becomes the first column in every format. Other indexes are dropped.

    >>> import pandas as pd
    >>> summary = pd.DataFrame({"P50": [3.0]}, index=["1 GW"])
    >>> list(table_writers({"summary": summary}, "parquet", index={"summary": "milestone"}))
    ['summary.parquet']
    >>> table_writers({"summary": summary}, "xls")
    Traceback (most recent call last):
    capsim.errors.CapsimError: unknown format 'xls'; use csv, parquet or xlsx
    """
    fmt = fmt.value if isinstance(fmt, TableFormat) else fmt
    if fmt not in FORMATS:
        raise CapsimError(f"unknown format {fmt!r}; use {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
    labels = index or {}
    frames = {
        stem: table.rename_axis(labels[stem]).reset_index() if stem in labels else table
        for stem, table in tables.items()
    }
    if fmt == "csv":
        return {f"{stem}.csv": csv_writer(frame) for stem, frame in frames.items()}
    if fmt == "parquet":
        return {f"{stem}.parquet": partial(_write_parquet, frame) for stem, frame in frames.items()}
    for stem, frame in frames.items():
        if len(frame) >= MAX_ROWS or frame.shape[1] > MAX_COLUMNS:
            raise CapsimError(
                f"{stem} has {len(frame):,} rows and {frame.shape[1]:,} columns, more than an "
                f"Excel sheet holds ({MAX_ROWS - 1:,} rows under the header, {MAX_COLUMNS:,} "
                "columns); use --format csv or parquet"
            )
    return {WORKBOOK: partial(_write_workbook, frames)} if frames else {}


def sheet_names(stems: Iterable[str]) -> list[str]:
    """Excel sheet names for table stems: at most 31 characters, none of ``[]:*?/\\``, unique
    regardless of case.

    >>> sheet_names(["costs_summary", "a/b", "x" * 40, "X" * 40])
    ['costs_summary', 'a_b', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXX~2']
    """
    names: list[str] = []
    for stem in stems:
        base = re.sub(r"[\[\]:*?/\\]", "_", str(stem)).strip("'") or "sheet"
        name, n = base[:31], 1
        while name.lower() in {seen.lower() for seen in names}:
            n += 1
            name = f"{base[: 31 - len(str(n)) - 1]}~{n}"
        names.append(name)
    return names


def check_out(out: Path) -> None:
    """Check that the folder ``out`` can be written: it may not exist yet, but then the folder it
    goes in must. Raise :class:`CapsimError` naming what is wrong."""
    out = Path(os.path.abspath(out))
    if out.exists():
        _check_folder(out, out)
    else:
        _check_folder(out.parent, out)


def check_file(path: Path) -> None:
    """Check, before any work, that the file ``path`` can be written: its folder exists and is
    writable, and it is not a folder. Raise :class:`CapsimError` naming what is wrong."""
    path = Path(os.path.abspath(path))
    _check_folder(path.parent, path)
    if path.is_dir():
        raise CapsimError(f"cannot write to {path}: it is a folder")


def write_outputs(out: Path, writers: dict[str, Writer]) -> None:
    """Write the files of ``writers`` (by name) into the folder ``out``, creating it (not its
    parents) if needed. Files are renamed into place only once all are written: a failure leaves
    ``out`` as it was, and removes it again if it was created."""
    out = Path(os.path.abspath(out))
    check_out(out)
    created = not out.exists()
    with _cannot_write(out):
        out.mkdir(exist_ok=True)
    try:
        _write_together(out, writers)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def write_file(path: Path, write: Writer) -> None:
    """Write one file atomically: ``write`` fills a temporary file in the same folder, which then
    replaces ``path``. The folder must exist; no partial or temporary file is left behind."""
    path = Path(os.path.abspath(path))
    check_file(path)
    _write_together(path.parent, {path.name: write})


def _write_together(folder: Path, writers: dict[str, Writer]) -> None:
    """Write every file under a hidden temporary name in ``folder`` (keeping its extension, which
    some writers go by), then rename them all into place; remove the temporaries in any case."""
    for name in writers:
        if (folder / name).is_dir():
            raise CapsimError(f"cannot write to {folder / name}: it is a folder")
    token = secrets.token_hex(4)
    temporary = {name: folder / f".capsim-{token}-{name}" for name in writers}
    try:
        with _cannot_write(folder):
            for name, write in writers.items():
                write(temporary[name])
            for name in writers:
                os.replace(temporary[name], folder / name)
    finally:
        for path in temporary.values():
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def _check_folder(folder: Path, target: Path) -> None:
    if not folder.exists():
        raise CapsimError(f"cannot write to {target}: folder {folder} does not exist")
    if not folder.is_dir():
        raise CapsimError(f"cannot write to {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CapsimError(f"cannot write to {folder}: permission denied")


@contextlib.contextmanager
def _cannot_write(path: Path):
    """Turn an operating-system error into a :class:`CapsimError` naming ``path``."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = exc.filename if exc.filename and ".capsim-" not in str(exc.filename) else path
        raise CapsimError(f"cannot write to {where}: {reason[:1].lower()}{reason[1:]}") from None


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    frame.to_parquet(path, engine="pyarrow", index=False)


def _write_workbook(frames: dict[str, pd.DataFrame], path: Path) -> None:
    """One sheet per table: a bold, frozen header row, columns sized to their content, dates as
    Excel dates (timezone dropped), empty cells for missing values."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook(write_only=True)
    bold = Font(bold=True)
    for name, frame in zip(sheet_names(frames), frames.values(), strict=True):
        sheet = book.create_sheet(name)
        columns = [_excel_column(frame.iloc[:, i]) for i in range(frame.shape[1])]
        headers = [str(c) for c in frame.columns]
        for i, (header, (_, _, width)) in enumerate(zip(headers, columns, strict=True), 1):
            width = min(max(len(header), width), 50) + 2
            sheet.column_dimensions[get_column_letter(i)].width = width
        sheet.freeze_panes = "A2"
        cells = []
        for header in headers:
            cell = WriteOnlyCell(sheet, value=header)
            cell.font = bold
            cells.append(cell)
        sheet.append(cells)
        formats = [number_format for _, number_format, _ in columns]

        def cell(value, number_format, sheet=sheet):
            if number_format is None or value is None:
                return value
            dated = WriteOnlyCell(sheet, value=value)
            dated.number_format = number_format
            return dated

        for row in zip(*(values for values, _, _ in columns), strict=True):
            sheet.append([cell(v, f) for v, f in zip(row, formats, strict=True)])
    book.save(path)


def _excel_column(series: pd.Series) -> tuple[list[Any], str | None, int]:
    """A column's cell values (None for missing), the number format of its dates (None if it
    has none) and a width in characters."""
    import pandas as pd

    missing = series.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(series):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_localize(None)  # Excel has no time zones: keep the wall time
        values = [
            None if gap else t.to_pydatetime() for t, gap in zip(series, missing, strict=True)
        ]
        return values, *_date_format([v for v in values if v is not None])
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        values = series.astype(object).where(~missing, None).tolist()
        return values, None, max((len(str(v)) for v in values[:1000]), default=0)
    if pd.api.types.is_float_dtype(series):
        values = [
            None if gap else v if math.isfinite(v) else str(v)
            for v, gap in zip(series.tolist(), missing, strict=True)
        ]
        return values, None, 12
    values = [None if gap else _excel_value(v) for v, gap in zip(series, missing, strict=True)]
    width = max((len(str(v)) for v in values[:1000] if v is not None), default=0)
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, datetime.datetime) for v in present):
        return values, *_date_format(present)
    return values, None, width


def _date_format(dates: list[datetime.datetime]) -> tuple[str, int]:
    """The number format and width of dates: a day, or a time of day if any has one."""
    if all(d.time() == datetime.time() for d in dates):
        return DATE, len("2030-01-01")
    return DATETIME, len("2030-01-01 00:00:00")


def _excel_value(value: Any) -> Any:
    """A value openpyxl writes as it is: numbers, booleans, naive datetimes, clean text."""
    import numpy as np
    import pandas as pd
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        value = value.tz_localize(None).to_pydatetime()
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return ILLEGAL_CHARACTERS_RE.sub("", str(value))[:MAX_CELL]
