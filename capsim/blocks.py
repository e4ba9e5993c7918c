"""Tables as blocks of numpy columns: what a chunk of replications sends back (its rows, its
stage sums). A DataFrame costs ~0.3-1 ms to build, to pickle and to take apart again, whatever
its size: as much as simulating a few dozen lean replications. A :class:`Blocks` is built from
the arrays a chunk computed, sent as a handful of arrays, stored by copying them and made a
DataFrame once (:meth:`Blocks.frame`) where one is wanted (a Parquet file, the final table).

>>> import numpy as np
>>> table = Blocks.of({"replication": np.arange(3), "failed": np.zeros(3, bool),
...                    "t_1GW": np.array([1.5, 2.0, np.nan]), "t_all": np.ones(3)})
>>> table.layout[1] == (("int64", 1), ("bool", 1), ("float64", 2))
True
>>> table.frame()["t_all"].tolist()
[1.0, 1.0, 1.0]
>>> Blocks.from_frame(table.frame()).layout == table.layout
True
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Blocks:
    """Named columns as 2-D ``blocks`` (rows x columns), each a run of adjacent columns of one
    numpy dtype, in column order; strings are object arrays (pandas' ``str`` in :meth:`frame`)."""

    names: tuple[str, ...]
    blocks: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, columns: Mapping[str, np.ndarray | Sequence]) -> Blocks:
        """Columns (1-D, of one length) by name, in order."""
        return cls.stack([((name,), np.asarray(v)[:, None]) for name, v in columns.items()])

    @classmethod
    def stack(cls, parts: Sequence[tuple[Sequence[str], np.ndarray]]) -> Blocks:
        """Blocks given as (names, 2-D values) parts, in order; adjacent parts of one dtype are
        joined into one block."""
        names = tuple(name for part_names, _ in parts for name in part_names)
        blocks = []
        for _, group in itertools.groupby((values for _, values in parts), key=lambda a: a.dtype):
            run = list(group)
            blocks.append(run[0] if len(run) == 1 else np.hstack(run))
        if sum(b.shape[1] for b in blocks) != len(names):
            raise ValueError(f"{len(names)} names for {sum(b.shape[1] for b in blocks)} columns")
        return cls(names, tuple(blocks))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Blocks:
        """The blocks of ``frame`` (numpy dtypes as they are, any other as Python objects)."""
        columns = {
            name: frame[name].to_numpy(dtype if isinstance(dtype, np.dtype) else object)
            for name, dtype in frame.dtypes.items()
        }
        return cls.of(columns)

    @property
    def layout(self) -> tuple[tuple[str, ...], tuple[tuple[np.dtype, int], ...]]:
        """The column names and each block's dtype and width: two tables with one layout store
        alike (the same names and dtypes in order can be blocked differently: int, float, int
        columns against int, int, int)."""
        return self.names, tuple((b.dtype, b.shape[1]) for b in self.blocks)

    def __sizeof__(self) -> int:  # what Dask counts a result as
        return object.__sizeof__(self) + sum(b.nbytes for b in self.blocks)

    def select(self, names: Sequence[str]) -> Blocks:
        """The columns ``names`` only, in this table's order.

        >>> table = Blocks.of({"a": [1, 2], "b": [0.5, 1.5], "c": [2.5, 3.5]})
        >>> table.select(["c", "a"]).names
        ('a', 'c')
        """
        wanted, parts, first = set(names), [], 0
        for values in self.blocks:
            keep = [k for k in range(values.shape[1]) if self.names[first + k] in wanted]
            if keep:
                parts.append(([self.names[first + k] for k in keep], values[:, keep]))
            first += values.shape[1]
        return Blocks.stack(parts)

    def __len__(self) -> int:
        """The number of rows."""
        return len(self.blocks[0]) if self.blocks else 0

    def frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """The table as a DataFrame (object blocks as pandas' ``str`` columns), without a copy
        of the numeric blocks."""
        parts, first = [], 0
        for values in self.blocks:
            names = list(self.names[first : first + values.shape[1]])
            first += values.shape[1]
            if values.dtype == object:
                columns = {n: pd.array(values[:, k], dtype="str") for k, n in enumerate(names)}
                parts.append(pd.DataFrame(columns, index=index))
            else:
                parts.append(pd.DataFrame(values, columns=names, index=index, copy=False))
        if not parts:
            return pd.DataFrame(index=index)
        return pd.concat(parts, axis=1) if len(parts) > 1 else parts[0]
