"""attnlens.positions: the sinusoidal positional encoding of Vaswani et al. (2017), section 3.5."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.testing import assert_close

from attnlens.positions import sinusoidal_positions

pytestmark = pytest.mark.usefixtures("single_thread")


@given(
    length=st.integers(0, 40),
    half=st.integers(1, 16),
    base=st.sampled_from([10.0, 100.0, 10000.0]),
)
def test_matches_the_papers_formula_entry_by_entry(length: int, half: int, base: float) -> None:
    dim = 2 * half
    pe = sinusoidal_positions(length, dim, base=base, dtype=torch.float64)
    assert pe.shape == (length, dim)
    expected = torch.empty(length, dim, dtype=torch.float64)
    for p in range(length):
        for i in range(half):
            angle = p / base ** (2 * i / dim)
            expected[p, 2 * i] = math.sin(angle)
            expected[p, 2 * i + 1] = math.cos(angle)
    assert_close(pe, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_and_rounding(dtype: torch.dtype) -> None:
    pe = sinusoidal_positions(64, 16, dtype=dtype)
    assert pe.dtype == dtype
    assert_close(pe, sinusoidal_positions(64, 16, dtype=torch.float64).to(dtype), rtol=0, atol=0)


def test_every_pair_lies_on_the_unit_circle_and_positions_differ() -> None:
    pe = sinusoidal_positions(200, 32, dtype=torch.float64)
    pairs = pe.view(200, 16, 2)  # (L, E / 2, 2)
    assert_close(pairs.norm(dim=-1), torch.ones(200, 16, dtype=torch.float64))
    distances = torch.cdist(pe, pe)  # (L, L)
    assert (distances + torch.eye(200, dtype=torch.float64)).min() > 0.1


def test_relative_shift_is_a_rotation() -> None:
    # PE(p + k) is PE(p) rotated pair by pair by the angle k * frequency: the reason the paper
    # gives for choosing sinusoids (a fixed offset is a linear function of the encoding).
    dim, k = 8, 3
    pe = sinusoidal_positions(20, dim, dtype=torch.float64)
    frequency = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (E / 2,)
    cos, sin = (k * frequency).cos(), (k * frequency).sin()
    s, c = pe[:-k, 0::2], pe[:-k, 1::2]  # (L - k, E / 2)
    assert_close(pe[k:, 0::2], s * cos + c * sin)
    assert_close(pe[k:, 1::2], c * cos - s * sin)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"length": -1, "dim": 4}, ValueError, "length: expected an int >= 0, got -1"),
        ({"length": 2.0, "dim": 4}, ValueError, "length"),
        ({"length": 3, "dim": 5}, ValueError, "dim: expected a positive even int.*got 5"),
        ({"length": 3, "dim": 0}, ValueError, "dim"),
        ({"length": 3, "dim": 4, "base": 1.0}, ValueError, "base: expected a number > 1"),
        ({"length": 3, "dim": 4, "dtype": torch.int64}, TypeError, "dtype: expected a floating"),
    ],
)
def test_bad_input(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        sinusoidal_positions(**kwargs)
