"""Writing result files: every file of a command lands together or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from capsim.errors import CapsimError


def csv_writer(table) -> Callable[[Path], None]:
    return lambda path: table.to_csv(path, index=False)


def write_outputs(out: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write every file into a staging folder next to ``out``, then move them in: a failure
    leaves ``out`` as it was."""
    out = out.resolve()
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".capsim-", dir=parent))
    except OSError as exc:
        raise CapsimError(f"cannot write to {out}: {exc.strerror or exc}") from None
    try:
        for name, write in writers.items():
            write(staging / name)
        out.mkdir(exist_ok=True)
        for name in writers:
            os.replace(staging / name, out / name)
    except OSError as exc:
        raise CapsimError(f"cannot write to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
