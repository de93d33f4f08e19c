"""attnlens.functional.multi_head_attention_forward against torch's, option by option."""

from __future__ import annotations

import doctest
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnlens.functional
from attnlens.attention import scaled_dot_product_attention
from attnlens.functional import multi_head_attention_forward
from attnlens.projections import split_heads, split_packed

pytestmark = pytest.mark.usefixtures("single_thread")

FLOAT_DTYPES = (torch.float32, torch.float64)
Tol = Callable[[torch.dtype], dict[str, float]]


def torch_mha(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """torch's function, silencing its deprecation warning for mixed bool/float masks."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Support for mismatched", UserWarning)
        return F.multi_head_attention_forward(*args, **kwargs)


@dataclass
class MhaCall:
    """Positional and keyword arguments of one call, valid for both functions."""

    args: list[Any]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        query: torch.Tensor = self.args[0]
        return query.dtype

    def ours(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return multi_head_attention_forward(*self.args, **self.kwargs)

    def torch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch_mha(*self.args, **self.kwargs)


def _random_mask(
    kind: str | None, shape: tuple[int, ...], p: float, gen: torch.Generator, dtype: torch.dtype
) -> torch.Tensor | None:
    """MultiheadAttention convention: bool True = masked out; float: added (-inf = out)."""
    if kind is None:
        return None
    masked = torch.rand(shape, generator=gen) < p
    if kind == "bool":
        return masked
    return torch.randn(shape, generator=gen, dtype=dtype).masked_fill(masked, float("-inf"))


@st.composite
def mha_calls(draw: st.DrawFn) -> MhaCall:
    """Every option of torch's function, in small sizes."""
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    heads, head_dim = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    embed_dim = heads * head_dim
    separate = draw(st.booleans())
    kdim = draw(st.integers(1, 5)) if separate else embed_dim
    vdim = draw(st.integers(1, 5)) if separate else embed_dim
    batched = draw(st.booleans())
    batch = draw(st.integers(1, 3)) if batched else 1
    length = draw(st.integers(1, 4))
    sharing = "none" if separate else draw(st.sampled_from(["none", "self", "kv"]))
    source_length = length if sharing == "self" else draw(st.integers(1, 4))

    def sequence(seq: int, features: int) -> torch.Tensor:
        return randn(seq, batch, features) if batched else randn(seq, features)

    query = sequence(length, embed_dim)
    key = query if sharing == "self" else sequence(source_length, kdim)
    value = key if sharing in {"self", "kv"} else sequence(source_length, vdim)

    bias = draw(st.booleans())
    add_bias_kv = draw(st.booleans())
    add_zero_attn = draw(st.booleans())
    statics = "none" if add_bias_kv else draw(st.sampled_from(["none", "k", "v", "kv"]))
    training, dropout_p = draw(st.sampled_from([(True, 0.0), (False, 0.0), (False, 0.4)]))
    args = [
        query,
        key,
        value,
        embed_dim,
        heads,
        None if separate else randn(3 * embed_dim, embed_dim),
        randn(3 * embed_dim) if bias else None,
        randn(1, 1, embed_dim) if add_bias_kv else None,
        randn(1, 1, embed_dim) if add_bias_kv else None,
        add_zero_attn,
        dropout_p,
        randn(embed_dim, embed_dim),
        randn(embed_dim) if bias else None,
    ]

    p = draw(st.sampled_from([0.2, 0.5, 0.9]))
    attn_kind = draw(st.sampled_from([None, "bool", "float"]))
    attn_shape = (
        (batch * heads, length, source_length) if draw(st.booleans()) else (length, source_length)
    )
    attn_mask = _random_mask(attn_kind, attn_shape, p, gen, dtype)
    is_causal = attn_mask is not None and draw(st.booleans())
    if is_causal and draw(st.booleans()):  # the hint is true
        attn_mask = torch.ones(length, source_length, dtype=torch.bool).triu(1)
        if attn_kind == "float":
            attn_mask = torch.zeros(attn_mask.shape, dtype=dtype).masked_fill(
                attn_mask, float("-inf")
            )
    kpm_shape = (batch, source_length) if batched else (source_length,)
    kwargs: dict[str, Any] = {
        "training": training,
        "key_padding_mask": _random_mask(
            draw(st.sampled_from([None, "bool", "float"])), kpm_shape, p, gen, dtype
        ),
        "need_weights": draw(st.booleans()),
        "attn_mask": attn_mask,
        "is_causal": is_causal,
        "average_attn_weights": draw(st.booleans()),
    }
    if separate:
        kwargs |= {
            "use_separate_proj_weight": True,
            "q_proj_weight": randn(embed_dim, embed_dim),
            "k_proj_weight": randn(embed_dim, kdim),
            "v_proj_weight": randn(embed_dim, vdim),
        }
    if statics in {"k", "kv"}:
        kwargs["static_k"] = randn(batch * heads, source_length, head_dim)
    if statics in {"v", "kv"}:
        kwargs["static_v"] = randn(batch * heads, source_length, head_dim)
    return MhaCall(args, kwargs)


@settings(max_examples=400)
@given(call=mha_calls())
def test_matches_torch(call: MhaCall, tol: Tol) -> None:
    """Same output and weights as torch for every option, NaN rows included."""
    output, weights = call.ours()
    expected_output, expected_weights = call.torch()
    torch.testing.assert_close(output, expected_output, equal_nan=True, **tol(call.dtype))
    if expected_weights is None:
        assert weights is None
    else:
        assert weights is not None
        torch.testing.assert_close(weights, expected_weights, equal_nan=True, **tol(call.dtype))


def test_signature_is_torchs() -> None:
    ours = inspect.signature(multi_head_attention_forward).parameters
    theirs = inspect.signature(F.multi_head_attention_forward).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


def _module_args(
    mha: torch.nn.MultiheadAttention, x: torch.Tensor, memory: torch.Tensor | None = None
) -> list[Any]:
    memory = x if memory is None else memory
    return [
        x,
        memory,
        memory,
        mha.embed_dim,
        mha.num_heads,
        mha.in_proj_weight,
        mha.in_proj_bias,
        mha.bias_k,
        mha.bias_v,
        mha.add_zero_attn,
        mha.dropout,
        mha.out_proj.weight,
        mha.out_proj.bias,
    ]


def _biased_mha(
    dtype: torch.dtype = torch.float32, dropout: float = 0.0
) -> torch.nn.MultiheadAttention:
    mha = torch.nn.MultiheadAttention(4, 2, dropout=dropout, dtype=dtype)
    with torch.no_grad():
        mha.out_proj.bias.normal_()  # zero by default: make the fully-masked result visible
        mha.in_proj_bias.normal_()  # type: ignore[union-attr]
    return mha


# --- Fully masked rows ------------------------------------------------------------------


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_fully_masked_row_nan_with_weights_zeros_without(
    float_dtype: torch.dtype, mask_kind: str
) -> None:
    """need_weights=True: NaN (explicit softmax); need_weights=False: out_proj.bias (SDPA's zeros).

    Exactly torch's two behaviours for the same calls.
    """
    mha = _biased_mha(float_dtype)
    x = torch.randn(3, 2, 4, dtype=float_dtype)  # (L, N, E)
    padding = torch.tensor([[False, False, True], [True, True, True]])  # batch 1: all padding
    if mask_kind == "float":
        padding = torch.zeros(2, 3, dtype=float_dtype).masked_fill(padding, float("-inf"))  # type: ignore[assignment]
    args = _module_args(mha, x)

    output, weights = multi_head_attention_forward(*args, key_padding_mask=padding)
    expected, expected_weights = torch_mha(*args, key_padding_mask=padding)
    assert weights is not None
    assert expected_weights is not None
    assert expected[:, 1].isnan().all()
    assert expected_weights[1].isnan().all()  # torch's weights path
    assert output[:, 1].isnan().all()
    assert weights[1].isnan().all()
    torch.testing.assert_close(output, expected, equal_nan=True)
    torch.testing.assert_close(weights, expected_weights, equal_nan=True)
    assert not output[:, 0].isnan().any()

    output, weights = multi_head_attention_forward(
        *args, key_padding_mask=padding, need_weights=False
    )
    expected, _ = torch_mha(*args, key_padding_mask=padding, need_weights=False)
    assert weights is None
    bias = mha.out_proj.bias.expand(3, 4)
    torch.testing.assert_close(expected[:, 1], bias)  # torch's SDPA path: zeros, then the bias
    torch.testing.assert_close(output[:, 1], bias)
    torch.testing.assert_close(output, expected)


def test_fully_masked_query_row_by_attn_mask() -> None:
    """One query row with every key masked out: only that row is NaN / the bias."""
    mha = _biased_mha()
    x = torch.randn(3, 2, 4)
    attn_mask = torch.zeros(3, 3, dtype=torch.bool)
    attn_mask[2] = True  # query 2 may attend to nothing
    args = _module_args(mha, x)
    output, weights = multi_head_attention_forward(*args, attn_mask=attn_mask)
    assert weights is not None
    assert output[2].isnan().all()
    assert not output[:2].isnan().any()
    assert weights[:, 2].isnan().all()
    torch.testing.assert_close(output, torch_mha(*args, attn_mask=attn_mask)[0], equal_nan=True)
    output, _ = multi_head_attention_forward(*args, attn_mask=attn_mask, need_weights=False)
    torch.testing.assert_close(output[2], mha.out_proj.bias.expand(2, 4))


# --- Mask conventions ---------------------------------------------------------------------


def test_bool_masks_mean_the_opposite_of_sdpa() -> None:
    """MultiheadAttention: True = masked out. SDPA: True = takes part. Same mask, opposite result."""
    mha = torch.nn.MultiheadAttention(4, 2).eval()
    x = torch.randn(3, 1, 4)
    mask = torch.tensor([[False, True, True], [False, False, True], [False, False, False]])
    args = _module_args(mha, x)
    _, weights = multi_head_attention_forward(*args, attn_mask=mask, average_attn_weights=False)
    assert weights is not None
    assert torch.equal(weights[0, 0] == 0, mask)  # True entries get no weight

    proj = split_packed(mha.in_proj_weight, mha.in_proj_bias)
    q = split_heads(F.linear(x.transpose(0, 1), proj.q_weight, proj.q_bias), 2)  # (N, H, L, D)
    k = split_heads(F.linear(x.transpose(0, 1), proj.k_weight, proj.k_bias), 2)
    _, sdpa_weights = scaled_dot_product_attention(q, k, k, attn_mask=mask)
    assert torch.equal(sdpa_weights[0, 0] == 0, ~mask)  # the opposite positions
    _, sdpa_weights = scaled_dot_product_attention(q, k, k, attn_mask=~mask)
    torch.testing.assert_close(sdpa_weights, weights)  # invert it to translate


def test_bool_and_float_masks_agree(float_dtype: torch.dtype, tol: Tol) -> None:
    mha = torch.nn.MultiheadAttention(4, 2, dtype=float_dtype)
    x = torch.randn(4, 2, 4, dtype=float_dtype)
    attn_bool = torch.rand(4, 4) < 0.3
    kpm_bool = torch.tensor([[False, False, True, False], [False, True, False, False]])

    def additive(mask: torch.Tensor) -> torch.Tensor:
        return torch.zeros(mask.shape, dtype=float_dtype).masked_fill(mask, float("-inf"))

    args = _module_args(mha, x)
    reference = multi_head_attention_forward(*args, attn_mask=attn_bool, key_padding_mask=kpm_bool)
    for attn_mask, kpm in [
        (additive(attn_bool), additive(kpm_bool)),
        (attn_bool, additive(kpm_bool)),
        (additive(attn_bool), kpm_bool),
    ]:
        got = multi_head_attention_forward(*args, attn_mask=attn_mask, key_padding_mask=kpm)
        torch.testing.assert_close(got, reference, equal_nan=True, **tol(float_dtype))


def test_mixed_mask_types_warn_in_torch_but_not_here() -> None:
    mha = torch.nn.MultiheadAttention(4, 2)
    x = torch.randn(3, 2, 4)
    kwargs = {
        "attn_mask": torch.zeros(3, 3),
        "key_padding_mask": torch.zeros(2, 3, dtype=torch.bool),
    }
    args = _module_args(mha, x)
    with pytest.warns(UserWarning, match="mismatched"):
        expected = F.multi_head_attention_forward(*args, **kwargs)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = multi_head_attention_forward(*args, **kwargs)  # type: ignore[arg-type]
    torch.testing.assert_close(got, expected)


# --- is_causal ----------------------------------------------------------------------------


def test_is_causal_is_only_a_hint() -> None:
    """need_weights=False without padding: the causal mask replaces attn_mask; else attn_mask is used."""
    mha = torch.nn.MultiheadAttention(4, 2)
    x = torch.randn(4, 2, 4)
    causal = torch.ones(4, 4, dtype=torch.bool).triu(1)
    not_causal = torch.zeros(4, 4, dtype=torch.bool)
    args = _module_args(mha, x)

    def ours(**kwargs: Any) -> torch.Tensor:
        return multi_head_attention_forward(*args, **kwargs)[0]

    def theirs(**kwargs: Any) -> torch.Tensor:
        return torch_mha(*args, **kwargs)[0]

    with_causal = ours(attn_mask=causal)
    without_mask = ours()
    # SDPA path, no padding: attn_mask ignored, causal used (in torch too).
    torch.testing.assert_close(
        ours(attn_mask=not_causal, is_causal=True, need_weights=False), with_causal
    )
    torch.testing.assert_close(
        theirs(attn_mask=not_causal, is_causal=True, need_weights=False), with_causal
    )
    # Weights path: the hint is ignored, attn_mask used.
    torch.testing.assert_close(ours(attn_mask=not_causal, is_causal=True), without_mask)
    torch.testing.assert_close(theirs(attn_mask=not_causal, is_causal=True), without_mask)


def test_is_causal_needs_attn_mask() -> None:
    mha = torch.nn.MultiheadAttention(4, 2)
    args = _module_args(mha, torch.randn(3, 2, 4))
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        F.multi_head_attention_forward(*args, is_causal=True)
    with pytest.raises(ValueError, match="attn_mask: expected a mask when is_causal=True") as info:
        multi_head_attention_forward(*args, is_causal=True)
    assert "got None" in str(info.value)


# --- Dropout ------------------------------------------------------------------------------


def test_dropout_is_in_the_returned_weights(torch_seed: int) -> None:
    """Training: weights are 0 or w/(1-p), rows do not sum to 1, output uses those weights."""
    p = 0.5
    mha = torch.nn.MultiheadAttention(4, 2, dropout=p)
    x = torch.randn(6, 3, 4)
    args = _module_args(mha, x)
    _, clean = multi_head_attention_forward(*args, training=False, average_attn_weights=False)
    output, dropped = multi_head_attention_forward(*args, training=True, average_attn_weights=False)
    assert clean is not None
    assert dropped is not None
    kept = dropped != 0
    assert 0.35 < 1 - kept.float().mean().item() < 0.65
    torch.testing.assert_close(dropped[kept], clean[kept] / (1 - p))
    assert not torch.allclose(dropped.sum(-1), torch.ones(3, 2, 6))
    # torch's training weights are not normalised either (issue #42929).
    _, torch_dropped = torch_mha(*args, training=True, average_attn_weights=False)
    assert torch_dropped is not None
    assert not torch.allclose(torch_dropped.sum(-1), torch.ones(3, 2, 6))
    # The output is computed from exactly the returned (dropped) weights.
    proj = split_packed(mha.in_proj_weight, mha.in_proj_bias)
    v = split_heads(F.linear(x.transpose(0, 1), proj.v_weight, proj.v_bias), 2)  # (N, H, S, D)
    heads = (dropped @ v).transpose(1, 2).flatten(2)  # (N, L, E)
    expected = F.linear(heads, mha.out_proj.weight, mha.out_proj.bias).transpose(0, 1)
    torch.testing.assert_close(output, expected)


@pytest.mark.parametrize("need_weights", [True, False])
def test_dropout_matches_torch_in_expectation(need_weights: bool, torch_seed: int) -> None:
    """Different random streams, same distribution: both average to the eval output."""
    mha = torch.nn.MultiheadAttention(4, 2, dropout=0.5)
    x = torch.randn(3, 1, 4).expand(3, 3000, 4)  # one sequence, 3000 dropout draws
    args = _module_args(mha, x)
    with torch.no_grad():
        clean = multi_head_attention_forward(*args, training=False)[0][:, 0]
        ours = multi_head_attention_forward(*args, need_weights=need_weights)[0]
        theirs = torch_mha(*args, need_weights=need_weights)[0]
    assert not torch.allclose(ours[:, 0], ours[:, 1])  # dropout is random per element
    torch.testing.assert_close(ours.mean(1), clean, atol=0.05, rtol=0)
    torch.testing.assert_close(theirs.mean(1), clean, atol=0.05, rtol=0)


def test_no_dropout_in_eval() -> None:
    mha = torch.nn.MultiheadAttention(4, 2, dropout=0.9)
    args = _module_args(mha, torch.randn(3, 2, 4))
    first = multi_head_attention_forward(*args, training=False)
    second = multi_head_attention_forward(*args, training=False)
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, F.multi_head_attention_forward(*args, training=False))


# --- Shapes of the results ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("batched", "average", "extra", "shape"),
    [
        (True, True, {}, (2, 3, 5)),
        (True, False, {}, (2, 2, 3, 5)),
        (False, True, {}, (3, 5)),
        (False, False, {}, (2, 3, 5)),
        (True, True, {"add_zero_attn": True}, (2, 3, 6)),
        (True, False, {"bias": True, "add_zero_attn": True}, (2, 2, 3, 7)),
    ],
)
def test_weight_shapes(
    batched: bool, average: bool, extra: dict[str, bool], shape: tuple[int, ...]
) -> None:
    mha = torch.nn.MultiheadAttention(
        4, 2, add_bias_kv=extra.get("bias", False), add_zero_attn=extra.get("add_zero_attn", False)
    )
    query = torch.randn(3, 2, 4) if batched else torch.randn(3, 4)
    memory = torch.randn(5, 2, 4) if batched else torch.randn(5, 4)
    output, weights = multi_head_attention_forward(
        *_module_args(mha, query, memory), average_attn_weights=average
    )
    assert output.shape == query.shape
    assert weights is not None
    assert weights.shape == shape


# --- Bad input ----------------------------------------------------------------------------


def _bad(**changes: Any) -> Callable[[], object]:
    """A call with E=4, H=2, L=3, S=5, N=2, packed projections, with some arguments changed."""

    def call() -> object:
        mha = torch.nn.MultiheadAttention(4, 2)
        args = _module_args(mha, torch.randn(3, 2, 4), torch.randn(5, 2, 4))
        names = list(inspect.signature(multi_head_attention_forward).parameters)
        kwargs = dict(zip(names, args, strict=False))
        kwargs |= {
            name: value(kwargs) if callable(value) else value for name, value in changes.items()
        }
        return multi_head_attention_forward(**kwargs)

    return call


BAD_CALLS: dict[str, tuple[Callable[[], object], type[Exception], list[str]]] = {
    "query not a tensor": (_bad(query=[[0.0]]), TypeError, ["query", "torch.Tensor", "list"]),
    "query 4-D": (
        _bad(query=torch.zeros(3, 2, 4, 1)),
        ValueError,
        ["query", "2 or 3", "(3, 2, 4, 1)"],
    ),
    "key 2-D with 3-D query": (
        _bad(key=torch.zeros(5, 4)),
        ValueError,
        ["key", "3 dimensions", "(5, 4)"],
    ),
    "embed_dim_to_check": (
        _bad(embed_dim_to_check=6),
        ValueError,
        ["query", "(L, N, E) = (3, 2, 6)", "(3, 2, 4)"],
    ),
    "num_heads does not divide": (
        _bad(num_heads=3),
        ValueError,
        ["num_heads", "embed_dim = 4", "3"],
    ),
    "num_heads zero": (_bad(num_heads=0), ValueError, ["num_heads", "> 0", "0"]),
    "key/value lengths": (
        _bad(value=torch.zeros(4, 2, 4)),
        ValueError,
        ["value", "(S, N, vdim) = (5, 2, 4)", "(4, 2, 4)", "S from key"],
    ),
    "key batch": (
        _bad(key=torch.zeros(5, 3, 4), value=torch.zeros(5, 3, 4)),
        ValueError,
        ["key", "(S, N, kdim) = (5, 2, 4)", "(5, 3, 4)"],
    ),
    "key features": (
        _bad(key=torch.zeros(5, 2, 3), value=torch.zeros(5, 2, 3)),
        ValueError,
        ["key", "(S, N, kdim) = (5, 2, 4)", "(5, 2, 3)"],
    ),
    "key dtype": (
        _bad(key=torch.zeros(5, 2, 4, dtype=torch.float64)),
        TypeError,
        ["key", "torch.float32", "torch.float64"],
    ),
    "key on another device": (
        _bad(key=torch.zeros(5, 2, 4, device="meta"), value=torch.zeros(5, 2, 4, device="meta")),
        ValueError,
        ["key", "device cpu", "meta"],
    ),
    "integer query": (
        _bad(query=torch.zeros(3, 2, 4, dtype=torch.int64)),
        TypeError,
        ["query", "floating-point", "torch.int64"],
    ),
    "in_proj_weight shape": (
        _bad(in_proj_weight=torch.zeros(12, 3)),
        ValueError,
        ["in_proj_weight", "(3*E, E) = (12, 4)", "(12, 3)"],
    ),
    "in_proj_weight None": (
        _bad(in_proj_weight=None),
        ValueError,
        ["in_proj_weight", "use_separate_proj_weight=False", "None"],
    ),
    "in_proj_bias shape": (
        _bad(in_proj_bias=torch.zeros(8)),
        ValueError,
        ["in_proj_bias", "(3*E,) = (12,)", "(8,)"],
    ),
    "out_proj_weight shape": (
        _bad(out_proj_weight=torch.zeros(4, 5)),
        ValueError,
        ["out_proj_weight", "(E, E) = (4, 4)", "(4, 5)"],
    ),
    "separate weights missing": (
        _bad(use_separate_proj_weight=True),
        ValueError,
        ["q_proj_weight", "use_separate_proj_weight=True", "None"],
    ),
    "separate key weight": (
        _bad(
            use_separate_proj_weight=True,
            q_proj_weight=torch.zeros(4, 4),
            k_proj_weight=torch.zeros(4, 3),
            v_proj_weight=torch.zeros(4, 4),
        ),
        ValueError,
        ["key", "(S, N, kdim) = (5, 2, 3)", "(5, 2, 4)"],
    ),
    "only bias_k": (_bad(bias_k=torch.zeros(1, 1, 4)), ValueError, ["bias_v", "(1, 1, E)", "None"]),
    "bias_k shape": (
        _bad(bias_k=torch.zeros(1, 4), bias_v=torch.zeros(1, 1, 4)),
        ValueError,
        ["bias_k", "(1, 1, E) = (1, 1, 4)", "(1, 4)"],
    ),
    "bias_k with static_k": (
        _bad(
            bias_k=torch.zeros(1, 1, 4), bias_v=torch.zeros(1, 1, 4), static_k=torch.zeros(4, 5, 2)
        ),
        ValueError,
        ["static_k", "bias_k", "None"],
    ),
    "static_k shape": (
        _bad(static_k=torch.zeros(2, 5, 2)),
        ValueError,
        ["static_k", "(N*H, S, D) = (4, 5, 2)", "(2, 5, 2)"],
    ),
    "static_v length": (
        _bad(static_k=torch.zeros(4, 6, 2), static_v=torch.zeros(4, 5, 2)),
        ValueError,
        ["static_v", "(N*H, S, D) = (4, 6, 2)", "(4, 5, 2)", "S from static_k"],
    ),
    "key_padding_mask shape": (
        _bad(key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)),
        ValueError,
        ["key_padding_mask", "(N, S) = (2, 5)", "(2, 4)"],
    ),
    "key_padding_mask dtype": (
        _bad(key_padding_mask=torch.zeros(2, 5, dtype=torch.int64)),
        TypeError,
        ["key_padding_mask", "torch.bool", "torch.float32", "torch.int64"],
    ),
    "key_padding_mask float64": (
        _bad(key_padding_mask=torch.zeros(2, 5, dtype=torch.float64)),
        TypeError,
        ["key_padding_mask", "torch.float32", "torch.float64"],
    ),
    "attn_mask 2-D shape": (
        _bad(attn_mask=torch.zeros(3, 4, dtype=torch.bool)),
        ValueError,
        ["attn_mask", "(L, S) = (3, 5)", "(N*H, L, S) = (4, 3, 5)", "(3, 4)"],
    ),
    "attn_mask 3-D shape": (
        _bad(attn_mask=torch.zeros(2, 3, 5, dtype=torch.bool)),
        ValueError,
        ["attn_mask", "(N*H, L, S) = (4, 3, 5)", "(2, 3, 5)"],
    ),
    "attn_mask dtype": (
        _bad(attn_mask=torch.zeros(3, 5, dtype=torch.uint8)),
        TypeError,
        ["attn_mask", "torch.bool", "torch.uint8"],
    ),
    "attn_mask not a tensor": (
        _bad(attn_mask=[[True]]),
        TypeError,
        ["attn_mask", "torch.Tensor", "list"],
    ),
    "dropout_p": (_bad(dropout_p=-0.1), ValueError, ["dropout_p", "[0, 1]", "-0.1"]),
    "unbatched key_padding_mask": (
        _bad(
            query=torch.zeros(3, 4),
            key=torch.zeros(5, 4),
            value=torch.zeros(5, 4),
            key_padding_mask=torch.zeros(1, 5, dtype=torch.bool),
        ),
        ValueError,
        ["key_padding_mask", "(S,) = (5,)", "(1, 5)"],
    ),
    "unbatched 3-D attn_mask": (
        _bad(
            query=torch.zeros(3, 4),
            key=torch.zeros(5, 4),
            value=torch.zeros(5, 4),
            attn_mask=torch.zeros(4, 3, 5),
        ),
        ValueError,
        ["attn_mask", "(H, L, S) = (2, 3, 5)", "(4, 3, 5)"],
    ),
}


@pytest.mark.parametrize("case", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_input_names_argument_and_shapes(
    case: tuple[Callable[[], object], type[Exception], list[str]],
) -> None:
    call, error, fragments = case
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_docstring_examples_run() -> None:
    """The ``>>>`` examples in the docstrings run and print what they show."""
    result = doctest.testmod(attnlens.functional, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_matches_torch_on_cuda(need_weights: bool, mask_kind: str) -> None:
    """Same results as torch on a CUDA device, where torch's SDPA path uses its CUDA kernels."""
    gen = torch.Generator().manual_seed(0)
    mha = torch.nn.MultiheadAttention(8, 2, add_zero_attn=True).cuda()
    x = torch.randn(5, 3, 8, generator=gen).cuda()
    memory = torch.randn(7, 3, 8, generator=gen).cuda()
    padding = torch.rand(3, 7, generator=gen) < 0.3
    attn_mask = torch.rand(3 * 2, 5, 7, generator=gen) < 0.3
    kwargs: dict[str, Any] = {"need_weights": need_weights, "average_attn_weights": False}
    if mask_kind == "bool":
        kwargs |= {"key_padding_mask": padding.cuda(), "attn_mask": attn_mask.cuda()}
    else:
        kwargs |= {
            "key_padding_mask": torch.zeros(3, 7).masked_fill(padding, float("-inf")).cuda(),
            "attn_mask": torch.randn(3 * 2, 5, 7, generator=gen)
            .masked_fill(attn_mask, float("-inf"))
            .cuda(),
        }
    args = _module_args(mha, x, memory)
    output, weights = multi_head_attention_forward(*args, **kwargs)
    expected, expected_weights = torch_mha(*args, **kwargs)
    assert output.device.type == "cuda"
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-4)
    if need_weights:
        torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-4)
