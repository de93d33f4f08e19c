"""sdpa_weights and SDPACallMode against torch's own scaled_dot_product_attention.

The reference is SDPA's output: with dropout off, ``weights @ v`` must reproduce it for
every mask kind, causal alignment, scale, grouped-query layout and batch shape.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.functional import scaled_dot_product_attention as imported_sdpa

from attnlens.capture import capture_attention
from attnlens.capture_sdpa import SDPACallMode, bind_sdpa_arguments, sdpa_weights

pytestmark = pytest.mark.usefixtures("single_thread")

TOL = {
    torch.float32: {"rtol": 1e-5, "atol": 1e-6},
    torch.float64: {"rtol": 1e-10, "atol": 1e-12},
}


@st.composite
def sdpa_calls(draw: st.DrawFn) -> dict[str, Any]:
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))  # leading batch dims
    kv_heads = draw(st.integers(1, 3))
    gqa = draw(st.booleans())
    heads = kv_heads * draw(st.integers(2, 3)) if gqa else kv_heads
    return {
        "lead": lead,
        "heads": heads,
        "kv_heads": kv_heads,
        "gqa": gqa,
        "L": draw(st.integers(1, 6)),
        "S": draw(st.integers(1, 6)),
        "E": draw(st.sampled_from([1, 3, 8])),
        "Ev": draw(st.sampled_from([2, 5])),
        "mask": draw(st.sampled_from([None, "bool", "float", "bool-broadcast", "causal"])),
        "scale": draw(st.sampled_from([None, 0.3, 2.0])),
        "fully_masked_row": draw(st.booleans()),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "requires_grad": draw(st.booleans()),  # out-of-place path for autograd
        "seed": draw(st.integers(0, 2**16)),
    }


def build(c: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
    torch.manual_seed(c["seed"])
    dtype, lead = c["dtype"], c["lead"]
    q = torch.randn(
        *lead, c["heads"], c["L"], c["E"], dtype=dtype, requires_grad=c["requires_grad"]
    )
    k = torch.randn(*lead, c["kv_heads"], c["S"], c["E"], dtype=dtype)
    v = torch.randn(*lead, c["kv_heads"], c["S"], c["Ev"], dtype=dtype)
    kwargs: dict[str, Any] = {"scale": c["scale"]}
    if c["gqa"]:
        kwargs["enable_gqa"] = True
    if c["mask"] == "causal":
        kwargs["is_causal"] = True
    elif c["mask"] is not None:
        shape = (c["L"], c["S"]) if c["mask"] == "bool-broadcast" else (*lead, 1, c["L"], c["S"])
        keep = torch.rand(shape) < 0.6
        if c["fully_masked_row"]:
            keep[..., 0, :] = False  # query 0 sees no key
        if c["mask"] == "float":
            kwargs["attn_mask"] = torch.where(keep, 0.0, float("-inf")).to(dtype) + torch.randn(
                shape, dtype=dtype
            )
        else:
            kwargs["attn_mask"] = keep
    return q, k, v, kwargs


@settings(max_examples=300)
@given(c=sdpa_calls())
def test_weights_times_values_is_sdpas_output(c: dict[str, Any]) -> None:
    q, k, v, kwargs = build(c)
    expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
    weights = sdpa_weights(q, k, **kwargs)
    assert weights.shape == (*c["lead"], c["heads"], c["L"], c["S"])
    assert weights.dtype == c["dtype"]
    values = v.repeat_interleave(c["heads"] // c["kv_heads"], dim=-3) if c["gqa"] else v
    torch.testing.assert_close(weights @ values, expected, **TOL[c["dtype"]])
    assert weights.requires_grad == c["requires_grad"]
    sums = weights.detach().sum(-1)
    assert bool(((sums - 1).abs() < 1e-5).logical_or(sums == 0).all())


def test_fully_masked_rows_are_zero_like_sdpas_output() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    keep = torch.ones(3, 5, dtype=torch.bool)
    keep[1] = False
    weights = sdpa_weights(q, k, attn_mask=keep)
    assert torch.equal(weights[..., 1, :], torch.zeros(1, 2, 5))
    assert torch.equal(
        F.scaled_dot_product_attention(q, k, v, attn_mask=keep)[..., 1, :], torch.zeros(1, 2, 4)
    )


def test_causal_is_top_left_aligned_when_lengths_differ() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 5, 4), torch.randn(1, 1, 5, 4)
    weights = sdpa_weights(q, k, is_causal=True)
    assert (weights[0, 0, 0, 1:] == 0).all()  # query 0 sees key 0 only
    assert (weights[0, 0, 1, 2:] == 0).all()
    assert (weights[0, 0, 1, :2] > 0).all()
    torch.testing.assert_close(weights @ v, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_half_precision_weights_are_computed_in_float32() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    got = sdpa_weights(q.bfloat16(), k.bfloat16())
    assert got.dtype == torch.bfloat16
    want = sdpa_weights(q.bfloat16().float(), k.bfloat16().float())
    torch.testing.assert_close(got, want.bfloat16(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"key": torch.randn(2, 5, 3)}, r"key: expected the query's feature size E=4"),
        (
            {"key": torch.randn(1, 2, 5, 4), "enable_gqa": True},
            r"key: with enable_gqa the query's 3 heads must be a multiple",
        ),
    ],
)
def test_bad_shapes(kwargs: dict[str, Any], match: str) -> None:
    query = torch.randn(1, 3, 2, 4)
    with pytest.raises(ValueError, match=match):
        sdpa_weights(query, **kwargs)


def test_mode_sees_calls_through_an_imported_name() -> None:
    seen: list[dict[str, Any]] = []
    q = k = v = torch.randn(1, 2, 3, 4)
    with SDPACallMode(lambda arguments, output: seen.append(arguments)):
        out1 = imported_sdpa(q, k, v, is_causal=True)
        out2 = F.scaled_dot_product_attention(q, k, v, None, 0.0, False, scale=0.5)
        torch.relu(q)  # other functions pass through, unreported
    assert torch.equal(out1, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert out2.shape == (1, 2, 3, 4)
    assert [a["is_causal"] for a in seen] == [True, False]
    assert seen[1]["scale"] == 0.5
    assert bind_sdpa_arguments((q, k, v), {})["enable_gqa"] is False


class ImportedNameAttention(nn.Module):
    """Calls SDPA through ``from torch.nn.functional import scaled_dot_product_attention``."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=-1)  # 3 x (N, L, E)
        q, k, v = (t.view(n, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        y = imported_sdpa(q, k, v)  # (N, H, L, D)
        return y.transpose(1, 2).reshape(n, length, dim)  # (N, L, E)


def test_capture_records_calls_through_an_imported_name() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(ImportedNameAttention(), nn.ReLU(), ImportedNameAttention())
    x = torch.randn(2, 5, 8)
    expected = model(x)
    with capture_attention(model) as cap:
        got = model(x)
    assert torch.equal(got, expected)
    assert cap.names == ("0", "2")
    assert [n for n, _ in cap.calls] == ["0", "2"]
    assert cap.weights["2"].shape == (2, 2, 5, 5)
