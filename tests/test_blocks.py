"""Tables as numpy blocks (capsim.blocks): what chunks of replications send back."""

import pickle

import numpy as np
import pandas as pd
import pytest

from capsim.blocks import Blocks


def mixed_frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "replication": np.arange(n),
            "failed": np.zeros(n, bool),
            "error": ["", "ValueError: x", "", "", ""][:n],
            "finished": np.ones(n, bool),
            "t_1GW": np.linspace(1.0, 2.0, n),
            "online:a": np.full(n, np.nan),
            "n_paused": np.arange(n) * 2,
        }
    )


def test_a_frame_round_trips_exactly() -> None:
    frame = mixed_frame()
    blocks = Blocks.from_frame(frame)
    pd.testing.assert_frame_equal(blocks.frame(), frame, check_exact=True)
    assert len(blocks) == 5
    # adjacent columns of one dtype share a block; the same dtype apart does not
    assert [dtype for dtype, _ in blocks.layout[1]] == [
        "int64",
        "bool",
        "object",
        "bool",
        "float64",
        "int64",
    ]
    assert [b.shape[1] for b in blocks.blocks] == [1, 1, 1, 1, 2, 1]


def test_pickled_blocks_are_the_same_table() -> None:
    blocks = Blocks.from_frame(mixed_frame())
    again = pickle.loads(pickle.dumps(blocks, pickle.HIGHEST_PROTOCOL))
    assert again.layout == blocks.layout
    pd.testing.assert_frame_equal(again.frame(), blocks.frame(), check_exact=True)


def test_stack_joins_adjacent_parts_of_one_dtype() -> None:
    ids = np.array([[0, 1], [1, 1]])
    sums = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    blocks = Blocks.stack([(("task",), ids[:, :1]), (("n",), ids[:, 1:]), (("a", "b", "c"), sums)])
    assert blocks.layout == (("task", "n", "a", "b", "c"), (("int64", 2), ("float64", 3)))
    assert blocks.frame()["c"].tolist() == [3.0, 6.0]
    assert blocks.frame(pd.Index([7, 8], name="k")).index.tolist() == [7, 8]


def test_a_name_for_each_column() -> None:
    with pytest.raises(ValueError, match="3 names for 2 columns"):
        Blocks.stack([(("a", "b", "c"), np.zeros((4, 2)))])


def test_a_different_dtype_is_a_different_layout() -> None:
    frame = mixed_frame()
    floats = frame.astype({"n_paused": float})  # a failed replication's missing counts
    assert Blocks.from_frame(floats).layout != Blocks.from_frame(frame).layout


def test_no_columns() -> None:
    empty = Blocks((), ())
    assert len(empty) == 0 and empty.frame().empty


def test_select_keeps_the_tables_order_across_blocks() -> None:
    frame = mixed_frame()
    picked = Blocks.from_frame(frame).select(["n_paused", "t_1GW", "error"])
    assert picked.names == ("error", "t_1GW", "n_paused")
    pd.testing.assert_frame_equal(picked.frame(), frame[["error", "t_1GW", "n_paused"]])


def test_the_same_dtypes_blocked_differently_are_another_layout() -> None:
    """A chunk whose capex is an integer 0 and opex a float against one whose both are 0:
    int, float against int, int (the same dtypes in order, in blocks of other widths)."""
    one = Blocks.of({"n": np.arange(3), "capex": np.zeros(3, np.int64), "opex": np.ones(3)})
    two = Blocks.of(
        {"n": np.arange(3), "capex": np.zeros(3, np.int64), "opex": np.zeros(3, np.int64)}
    )
    assert one.layout[0] == two.layout[0] and one.layout != two.layout
