"""attention_rollout: head fusion, residual, renormalisation over the key axis, layer order."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnlens.capture import capture_attention
from attnlens.rollout import attention_rollout

pytestmark = pytest.mark.usefixtures("single_thread")


def random_weights(
    *shape: int, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Row-stochastic attention weights of the given shape (rows over the last axis)."""
    logits = torch.randn(*shape, generator=generator, dtype=dtype) * 2
    return logits.softmax(dim=-1)


def by_hand(layers: list[torch.Tensor], fusion: str, residual: bool) -> torch.Tensor:
    """The textbook loop over one sequence: layers (H, L, L) -> (L, L)."""
    result = torch.eye(layers[0].size(-1), dtype=torch.float64)
    for weights in layers:
        heads = weights.double()
        if fusion == "mean":
            fused = heads.sum(0) / heads.size(0)
        elif fusion == "max":
            fused = heads.max(dim=0).values
        else:
            fused = heads.min(dim=0).values
        if residual:
            fused = fused + torch.eye(fused.size(0), dtype=torch.float64)
        for i in range(fused.size(0)):  # row i: attention of query i over all keys
            fused[i] = fused[i] / fused[i].sum()
        result = fused @ result  # the later layer on the left
    return result


@settings(max_examples=60)
@given(
    layers=st.integers(1, 4),
    batch=st.integers(1, 3),
    heads=st.integers(1, 4),
    length=st.integers(1, 6),
    fusion=st.sampled_from(["mean", "max", "min"]),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_the_textbook_loop_and_rows_sum_to_one(
    layers: int, batch: int, heads: int, length: int, fusion: Any, residual: bool, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    weights = [
        random_weights(batch, heads, length, length, generator=generator) for _ in range(layers)
    ]
    rollout = attention_rollout(weights, head_fusion=fusion, add_residual=residual)
    assert rollout.shape == (batch, length, length)
    assert rollout.dtype == torch.float64
    for b in range(batch):
        expected = by_hand([w[b] for w in weights], fusion, residual)
        torch.testing.assert_close(rollout[b], expected)
    # every row is a distribution over the input tokens (the key axis, the last one)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(batch, length, dtype=torch.float64))
    assert (rollout >= 0).all()


def test_rows_not_columns_are_normalised() -> None:
    """Max fusion gives rows that do not sum to 1: the renormalisation must be per row."""
    weights = torch.tensor(
        [
            [[0.9, 0.1, 0.0], [0.2, 0.2, 0.6], [0.0, 0.5, 0.5]],
            [[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.3, 0.3, 0.4]],
        ]
    )  # (H, L, S)
    fused = torch.tensor([[0.9, 0.1, 0.8], [0.7, 0.2, 0.6], [0.3, 0.5, 0.5]])  # max over H
    rollout = attention_rollout([weights], head_fusion="max", add_residual=False)
    torch.testing.assert_close(rollout, fused / fused.sum(dim=1, keepdim=True))
    torch.testing.assert_close(rollout.sum(-1), torch.ones(3))
    assert not torch.allclose(rollout.sum(-2), torch.ones(3))  # columns do not sum to 1
    wrong_axis = fused / fused.sum(dim=0, keepdim=True)  # the popular mistake
    assert not torch.allclose(rollout, wrong_axis)


def test_layers_multiply_first_layer_first() -> None:
    first = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])[None]  # (H, L, L)
    second = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])[None]
    rollout = attention_rollout([first, second], add_residual=False)
    torch.testing.assert_close(rollout, second[0] @ first[0])
    assert not torch.allclose(second[0] @ first[0], first[0] @ second[0])  # order matters


def test_residual_is_half_attention_half_identity() -> None:
    generator = torch.Generator().manual_seed(0)
    weights = random_weights(2, 3, 4, 4, generator=generator)  # (N, H, L, L)
    rollout = attention_rollout([weights])
    expected = 0.5 * weights.mean(1) + 0.5 * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(rollout, expected)


def test_fusions_differ_and_are_mean_max_min_over_heads() -> None:
    weights = torch.tensor([[[0.25, 0.75], [0.5, 0.5]], [[0.75, 0.25], [1.0, 0.0]]])
    mean = attention_rollout([weights], "mean", add_residual=False)
    torch.testing.assert_close(mean, torch.tensor([[0.5, 0.5], [0.75, 0.25]]))
    maximum = attention_rollout([weights], "max", add_residual=False)
    torch.testing.assert_close(maximum, torch.tensor([[0.5, 0.5], [2 / 3, 1 / 3]]))
    minimum = attention_rollout([weights], "min", add_residual=False)
    torch.testing.assert_close(minimum, torch.tensor([[0.5, 0.5], [1.0, 0.0]]))


def test_stacked_tensor_and_batch_independence() -> None:
    generator = torch.Generator().manual_seed(1)
    weights = random_weights(3, 2, 4, 5, 5, generator=generator, dtype=torch.float32)
    as_list = attention_rollout(list(weights), head_fusion="max")
    stacked = attention_rollout(weights, head_fusion="max")  # (layers, N, H, L, L)
    torch.testing.assert_close(stacked, as_list)
    assert stacked.shape == (2, 5, 5)
    assert stacked.dtype == torch.float32
    for b in range(2):
        one = attention_rollout(weights[:, b], head_fusion="max")  # (layers, H, L, L)
        assert one.shape == (5, 5)
        torch.testing.assert_close(one, stacked[b])
    iterator = attention_rollout(iter(list(weights)), head_fusion="max")  # any iterable
    torch.testing.assert_close(iterator, stacked)


def test_low_precision_input_is_computed_in_float32() -> None:
    generator = torch.Generator().manual_seed(2)
    weights = random_weights(4, 2, 3, 6, 6, generator=generator, dtype=torch.float32)
    rollout = attention_rollout(weights.bfloat16())
    assert rollout.dtype == torch.float32
    torch.testing.assert_close(rollout, attention_rollout(weights), rtol=0.03, atol=0.01)


def test_zero_rows_stay_zero_and_nan_propagates() -> None:
    weights = torch.tensor([[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]])  # padded row
    rollout = attention_rollout([weights, weights], add_residual=False)
    assert not rollout.isnan().any()
    assert not rollout[2].any()
    with_residual = attention_rollout([weights, weights])
    torch.testing.assert_close(with_residual[2], torch.tensor([0.0, 0.0, 1.0]))
    nan = weights.clone()
    nan[0, 1] = float("nan")
    assert attention_rollout([nan])[1].isnan().all()


def test_from_a_captured_encoder() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    with torch.inference_mode(), capture_attention(encoder) as cap:
        encoder(torch.randn(2, 5, 8))
    per_layer = [cap.weights[name] for name in cap.names]
    rollout = attention_rollout(per_layer)
    assert rollout.shape == (2, 5, 5)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5))
    fused = [(w.mean(1) + torch.eye(5)) / 2 for w in per_layer]
    torch.testing.assert_close(rollout, fused[2] @ fused[1] @ fused[0])


@pytest.mark.parametrize(
    ("weights", "kwargs", "error", "match"),
    [
        ([torch.ones(1, 2, 2)], {"head_fusion": "avg"}, ValueError, "head_fusion: expected"),
        ([], {}, ValueError, "at least one layer"),
        (
            torch.ones(2, 2, 2),
            {},
            ValueError,
            r"stacked tensor .* got a tensor of shape \(2, 2, 2\)",
        ),
        (torch.ones(2, 2, 2, 2, 2, 2), {}, ValueError, "got a tensor of shape"),
        ([torch.ones(2, 2)], {}, ValueError, r"weights_per_layer\[0\]: expected shape"),
        (
            [torch.ones(1, 2, 3, 3), torch.ones(1, 2, 4, 4)],
            {},
            ValueError,
            (
                r"weights_per_layer\[1\]: expected shape \(1, 2, 3, 3\) like "
                r"weights_per_layer\[0\], got \(1, 2, 4, 4\)"
            ),
        ),
        ([torch.ones(2, 3, 4)], {}, ValueError, r"square maps, L == S.*\(H, L, S\) = \(2, 3, 4\)"),
        ([torch.ones(2, 2, 2), "x"], {}, TypeError, r"weights_per_layer\[1\]: expected a torch"),
        ([torch.ones(2, 2, 2, dtype=torch.long)], {}, TypeError, "floating point"),
        (3, {}, TypeError, "weights_per_layer: expected a list"),
    ],
)
def test_bad_input(
    weights: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        attention_rollout(weights, **kwargs)
