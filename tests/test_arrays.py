"""The compiled array helpers equal numpy: streams draw for draw, running sums bit for bit."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capsim import model as model_module
from capsim import tally
from capsim.model import replication_rng, replication_uniforms

# seeds and replication numbers at the edges of SeedSequence's 32-bit words
EDGES = [0, 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**63, 2**64 - 1, 2**64, 2**128 + 12345]


def numpy_streams(seed: int, reps: np.ndarray, n: int) -> np.ndarray:
    return np.array([replication_rng(seed, int(i)).random(n) for i in reps]).reshape(len(reps), n)


@pytest.mark.parametrize("seed", EDGES)
def test_edge_seeds_and_replications_equal_numpy(seed: int) -> None:
    reps = np.array([0, 1, 2, 999, 2**32 - 1, 2**32, 2**40 + 7, 2**64 - 1], dtype=np.uint64)
    assert np.array_equal(replication_uniforms(seed, reps, 7), numpy_streams(seed, reps, 7))


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**200),
    first=st.integers(0, 2**64 - 50),
    count=st.integers(0, 40),
    n=st.integers(0, 300),
)
def test_any_seed_and_chunk_equal_numpy(seed: int, first: int, count: int, n: int) -> None:
    reps = np.arange(count, dtype=np.uint64) + np.uint64(first)
    assert np.array_equal(replication_uniforms(seed, reps, n), numpy_streams(seed, reps, n))


def test_a_long_stream_equals_numpy() -> None:
    """Many steps of the generator: the 128-bit arithmetic's carries are exercised."""
    reps = np.arange(5)
    assert np.array_equal(replication_uniforms(42, reps, 20_000), numpy_streams(42, reps, 20_000))


def test_without_the_compiled_streams_numpy_seeds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    reps = np.arange(10, 14)
    compiled = replication_uniforms(3, reps, 6)
    monkeypatch.setattr(model_module, "_uniforms", None)
    assert np.array_equal(replication_uniforms(3, reps, 6), compiled)
    assert replication_uniforms(3, np.arange(0), 6).shape == (0, 6)


def left_fold(total: np.ndarray, values: np.ndarray) -> np.ndarray:
    total = total.copy()
    for row in values:
        total = total + row
    return total


@pytest.mark.parametrize("order", ["C", "F"])
def test_running_sums_add_rows_in_order(order: str) -> None:
    # magnitudes far apart: a pairwise or reordered sum would round differently
    rng = np.random.default_rng(1)
    values = np.asarray(rng.random((500, 37)) * 10.0 ** rng.integers(-8, 9, (500, 37)), order=order)
    start = rng.random(37)
    total = start.copy()
    tally.add_rows(total, values.copy(order=order))
    assert np.array_equal(total, left_fold(start, values))
    # batched: the same as all at once
    batched = start.copy()
    for part in np.array_split(values, 7):
        tally.add_rows(batched, part.copy(order=order))
    assert np.array_equal(batched, total)


def test_without_the_compiled_sums_numpy_adds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    values, start = rng.random((300, 5)) * 1e6, rng.random(5)
    compiled = start.copy()
    tally.add_rows(compiled, values.copy())
    monkeypatch.setattr(tally, "_add_rows", None)
    fallback = start.copy()
    tally.add_rows(fallback, values.copy())
    assert np.array_equal(fallback, compiled)
