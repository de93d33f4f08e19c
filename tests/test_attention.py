"""attnlens.attention.scaled_dot_product_attention against torch's SDPA."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnlens.attention
from attnlens.attention import (
    causal_mask,
    scaled_dot_product_attention,
    softmax_zero_masked_rows,
)

pytestmark = pytest.mark.usefixtures("single_thread")

FLOAT_DTYPES = (torch.float32, torch.float64)
Tol = Callable[[torch.dtype], dict[str, float]]


def torch_weights(query: torch.Tensor, key: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """torch's SDPA weights: attend to the identity, output = weights @ I = weights."""
    source_length = key.size(-2)
    identity = torch.eye(source_length, dtype=query.dtype)
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
    identity = identity.expand(*batch, source_length, source_length)
    return F.scaled_dot_product_attention(query, key, identity, **kwargs)  # type: ignore[arg-type]


@dataclass
class SdpaCase:
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    attn_mask: torch.Tensor | None
    is_causal: bool
    scale: float | None


@st.composite
def sdpa_cases(draw: st.DrawFn) -> SdpaCase:
    """Random shapes (with broadcasting leading dims), masks of both kinds, causal, scale."""
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    batch = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    length, source_length = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    features, value_features = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    def broadcastable(shape: list[int]) -> list[int]:
        # Drop some leading dims, and set some others to 1.
        keep = draw(st.integers(0, len(shape)))
        return [1 if draw(st.booleans()) else size for size in shape[len(shape) - keep :]]

    query = randn(*batch, length, features)
    key = randn(*broadcastable(batch), source_length, features)
    value = randn(*key.shape[:-1], value_features)
    mask_kind = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    mask_shape = [*broadcastable(batch), length, source_length]
    attn_mask: torch.Tensor | None = None
    if mask_kind == "bool":
        attn_mask = torch.rand(*mask_shape, generator=generator) > draw(st.sampled_from([0.2, 0.6]))
    elif mask_kind == "float":
        attn_mask = randn(*mask_shape)
        masked_out = torch.rand(*mask_shape, generator=generator) < 0.3
        attn_mask = attn_mask.masked_fill(masked_out, float("-inf"))
    scale = draw(st.one_of(st.none(), st.floats(0.05, 2.0)))
    return SdpaCase(query, key, value, attn_mask, mask_kind == "causal", scale)


@settings(max_examples=300)
@given(case=sdpa_cases())
def test_matches_torch(case: SdpaCase, tol: Tol) -> None:
    """Output equals torch's SDPA; weights equal torch's (read out through V = I)."""
    kwargs = {"attn_mask": case.attn_mask, "is_causal": case.is_causal, "scale": case.scale}
    output, weights = scaled_dot_product_attention(case.query, case.key, case.value, **kwargs)  # type: ignore[arg-type]
    expected = F.scaled_dot_product_attention(case.query, case.key, case.value, **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(output, expected, **tol(case.query.dtype))
    torch.testing.assert_close(
        weights, torch_weights(case.query, case.key, **kwargs), **tol(case.query.dtype)
    )
    # Rows sum to 1, or to 0 where every key is masked out.
    sums = weights.sum(-1)
    assert bool(((sums - 1).abs() < 1e-5).logical_or(sums == 0).all())
    torch.testing.assert_close(output, weights @ case.value)


def test_textbook_steps(float_dtype: torch.dtype) -> None:
    """softmax(Q Kᵀ / √E) V written out by hand."""
    q, k, v = (torch.randn(2, 3, 4, dtype=float_dtype) for _ in range(3))
    scores = q @ k.transpose(-2, -1) / 2.0  # √E = 2
    weights = torch.softmax(scores, dim=-1)
    output, got_weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(got_weights, weights)
    torch.testing.assert_close(output, weights @ v)


def test_gradients_match_torch(float_dtype: torch.dtype, tol: Tol) -> None:
    q, k, v = (torch.randn(2, 3, 4, dtype=float_dtype, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[True, True, False], [True, False, True], [True, True, True]])
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask)[0]
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expected = torch.autograd.grad(theirs.square().sum(), (q, k, v))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, **tol(float_dtype))


# --- Pitfalls -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_row_gives_zeros_like_torch(float_dtype: torch.dtype, kind: str) -> None:
    """A row with no key to attend to: zeros (torch's SDPA), not NaN (a plain softmax)."""
    q = torch.randn(2, 3, 4, dtype=float_dtype)
    k, v = torch.randn(2, 5, 4, dtype=float_dtype), torch.randn(2, 5, 6, dtype=float_dtype)
    keep = torch.ones(3, 5, dtype=torch.bool)
    keep[1] = False  # query 1 may attend to nothing
    mask = (
        keep
        if kind == "bool"
        else torch.zeros(3, 5, dtype=float_dtype).masked_fill(~keep, float("-inf"))
    )
    output, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(expected[:, 1], torch.zeros(2, 6, dtype=float_dtype))  # torch's behaviour
    torch.testing.assert_close(output, expected)
    assert torch.equal(weights[:, 1], torch.zeros(2, 5, dtype=float_dtype))
    assert not output.isnan().any()
    torch.testing.assert_close(weights[:, [0, 2]].sum(-1), torch.ones(2, 2, dtype=float_dtype))


def test_plain_softmax_would_give_nan() -> None:
    scores = torch.tensor([[1.0, 2.0], [float("-inf"), float("-inf")]])
    assert torch.softmax(scores, dim=-1)[1].isnan().all()
    assert torch.equal(softmax_zero_masked_rows(scores)[1], torch.zeros(2))


def test_empty_source_gives_zeros_like_torch() -> None:
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 0, 4), torch.randn(2, 0, 6)
    output, weights = scaled_dot_product_attention(q, k, v)
    assert weights.shape == (2, 3, 0)
    assert torch.equal(output, F.scaled_dot_product_attention(q, k, v))
    assert torch.equal(output, torch.zeros(2, 3, 6))


def test_bool_mask_true_means_takes_part() -> None:
    """SDPA's convention (the opposite of nn.MultiheadAttention's masks)."""
    q, k, v = torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    keep = torch.tensor([[True, False, True], [False, True, False]])
    _, weights = scaled_dot_product_attention(q, k, v, attn_mask=keep)
    assert torch.equal(weights[0] > 0, keep)
    # The float form of the same mask: 0 where it takes part, -inf elsewhere.
    additive = torch.zeros(2, 3).masked_fill(~keep, float("-inf"))
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, attn_mask=additive)[1], weights
    )


@pytest.mark.parametrize(("length", "source_length"), [(3, 3), (2, 4), (4, 2)])
def test_causal_is_top_left_tril(length: int, source_length: int) -> None:
    q = torch.randn(2, length, 4)
    k, v = torch.randn(2, source_length, 4), torch.randn(2, source_length, 3)
    output, weights = scaled_dot_product_attention(q, k, v, is_causal=True)
    tril = torch.ones(length, source_length, dtype=torch.bool).tril()
    assert torch.equal(causal_mask(length, source_length), tril)
    assert torch.equal(weights[0] > 0, tril)
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    torch.testing.assert_close(output, scaled_dot_product_attention(q, k, v, attn_mask=tril)[0])


@pytest.mark.parametrize("query_dtype", [torch.float64, torch.bfloat16])
def test_float32_mask_for_any_query_dtype_like_torch(query_dtype: torch.dtype) -> None:
    """torch's SDPA takes a float32 mask whatever the query's dtype; so do we."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, generator=gen).to(query_dtype) for _ in range(3))
    mask = torch.randn(3, 3, generator=gen)  # float32
    output, weights = scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert output.dtype == weights.dtype == expected.dtype == query_dtype
    # bfloat16: torch's CPU kernel computes in float32 inside, we round at every step.
    tol = 1e-10 if query_dtype == torch.float64 else 1e-2
    torch.testing.assert_close(output, expected, rtol=tol, atol=tol)


def test_dropout_is_applied_to_returned_weights(torch_seed: int) -> None:
    """Dropped weights are 0 or w / (1 - p); rows no longer sum to 1; output = weights @ V."""
    p = 0.4
    q, k, v = torch.randn(4, 8, 4), torch.randn(4, 16, 4), torch.randn(4, 16, 5)
    _, clean = scaled_dot_product_attention(q, k, v)
    output, dropped = scaled_dot_product_attention(q, k, v, dropout_p=p)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], clean[kept] / (1 - p))
    assert 0.3 < 1 - kept.float().mean().item() < 0.5  # about p of them are zeroed
    assert not torch.allclose(dropped.sum(-1), torch.ones(4, 8))
    torch.testing.assert_close(output, dropped @ v)


def test_dropout_matches_torch_in_expectation(torch_seed: int) -> None:
    """Random streams differ from torch's, but both average to the dropout-free output."""
    q, k, v = torch.randn(1, 3, 4), torch.randn(1, 5, 4), torch.randn(1, 5, 2)
    clean = F.scaled_dot_product_attention(q, k, v)
    draws = 4000
    qs, ks, vs = (x.expand(draws, *x.shape[1:]) for x in (q, k, v))
    ours = scaled_dot_product_attention(qs, ks, vs, dropout_p=0.5)[0].mean(0)
    theirs = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=0.5).mean(0)
    torch.testing.assert_close(ours, clean[0], atol=0.06, rtol=0)
    torch.testing.assert_close(theirs, clean[0], atol=0.06, rtol=0)


def test_dropout_one_drops_everything() -> None:
    q = torch.randn(2, 3, 4)
    output, weights = scaled_dot_product_attention(q, q, q, dropout_p=1.0)
    assert torch.equal(weights, torch.zeros_like(weights))
    assert torch.equal(output, torch.zeros_like(output))


# --- Bad input ------------------------------------------------------------------------


def _qkv() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)


BAD_CALLS = {
    "query not a tensor": (
        lambda q, k, v: scaled_dot_product_attention(q.tolist(), k, v),  # type: ignore[arg-type]
        TypeError,
        ["query", "torch.Tensor", "list"],
    ),
    "key 1-D": (
        lambda q, k, v: scaled_dot_product_attention(q, k[0, 0], v),
        ValueError,
        ["key", "at least 2 dimensions", "(4,)"],
    ),
    "key features": (
        lambda q, k, v: scaled_dot_product_attention(q, k[..., :3], v),
        ValueError,
        ["key", "(..., S, E) = (2, 5, 4)", "(2, 5, 3)"],
    ),
    "value length": (
        lambda q, k, v: scaled_dot_product_attention(q, k, v[:, :4]),
        ValueError,
        ["value", "(..., S, Ev) = (2, 5, 6)", "(2, 4, 6)"],
    ),
    "batch mismatch": (
        lambda q, k, v: scaled_dot_product_attention(
            q, k[:1].expand(3, 5, 4), v[:1].expand(3, 5, 6)
        ),
        ValueError,
        ["query, key, value", "broadcast", "(2, 3, 4)", "(3, 5, 4)"],
    ),
    "dtype mismatch": (
        lambda q, k, v: scaled_dot_product_attention(q, k.double(), v),
        TypeError,
        ["key", "torch.float32", "torch.float64"],
    ),
    "value on another device": (
        lambda q, k, v: scaled_dot_product_attention(q, k, v.to("meta")),
        ValueError,
        ["value", "device cpu", "meta"],
    ),
    "integer query": (
        lambda q, k, v: scaled_dot_product_attention(q.long(), k.long(), v.long()),
        TypeError,
        ["query", "floating-point", "torch.int64"],
    ),
    "mask shape": (
        lambda q, k, v: scaled_dot_product_attention(
            q, k, v, attn_mask=torch.ones(3, 4, dtype=torch.bool)
        ),
        ValueError,
        ["attn_mask", "(2, 3, 5)", "(3, 4)"],
    ),
    "mask too many dims": (
        lambda q, k, v: scaled_dot_product_attention(
            q, k, v, attn_mask=torch.ones(7, 2, 3, 5, dtype=torch.bool)
        ),
        ValueError,
        ["attn_mask", "(2, 3, 5)", "(7, 2, 3, 5)"],
    ),
    "mask dtype": (
        lambda q, k, v: scaled_dot_product_attention(
            q, k, v, attn_mask=torch.ones(3, 5, dtype=torch.int64)
        ),
        TypeError,
        ["attn_mask", "torch.bool", "torch.float32", "torch.int64"],
    ),
    "float mask of another dtype": (
        lambda q, k, v: scaled_dot_product_attention(
            q, k, v, attn_mask=torch.zeros(3, 5, dtype=torch.float64)
        ),
        TypeError,
        ["attn_mask", "torch.float32", "torch.float64"],
    ),
    "mask and causal": (
        lambda q, k, v: scaled_dot_product_attention(
            q, k, v, attn_mask=torch.ones(3, 5, dtype=torch.bool), is_causal=True
        ),
        ValueError,
        ["attn_mask", "is_causal", "(3, 5)"],
    ),
    "dropout": (
        lambda q, k, v: scaled_dot_product_attention(q, k, v, dropout_p=1.5),
        ValueError,
        ["dropout_p", "[0, 1]", "1.5"],
    ),
}


@pytest.mark.parametrize("case", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_names_argument_and_shapes(
    case: tuple[Callable[..., object], type[Exception], list[str]],
) -> None:
    call, error, fragments = case
    with pytest.raises(error) as info:
        call(*_qkv())
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_docstring_examples_run() -> None:
    """The ``>>>`` examples in the docstrings run and print what they show."""
    result = doctest.testmod(attnlens.attention, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
