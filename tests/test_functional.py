"""attnlens.functional.multi_head_attention_forward against torch's, option by option."""

from __future__ import annotations

import doctest
import inspect
import itertools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnlens.functional
from attnlens._checks import InputTypeError, InputValueError, format_shape
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


def test_is_causal_ignores_attn_mask_entirely() -> None:
    """need_weights=False, no padding: torch ignores attn_mask, its shape and dtype included.

    The issue's example: L = 1 (x is (L, N, E) = (1, 2, 4)), a 2 x 2 causal mask.
    """
    mha = torch.nn.MultiheadAttention(4, 1)
    x = torch.ones(1, 2, 4)
    args = _module_args(mha, x)
    for attn_mask in (
        torch.nn.Transformer.generate_square_subsequent_mask(2),  # (2, 2), not (L, S)
        torch.zeros(7, 1, 1, dtype=torch.bool),  # not (N*H, L, S)
        torch.zeros(1, 1, dtype=torch.int64),  # not bool or float
        torch.zeros(1, 1, dtype=torch.float16),  # not the query's dtype
    ):
        kwargs: dict[str, Any] = {"attn_mask": attn_mask, "is_causal": True, "need_weights": False}
        output, weights = multi_head_attention_forward(*args, **kwargs)
        expected, _ = torch_mha(*args, **kwargs)
        assert weights is None
        torch.testing.assert_close(output, expected)
        causal, _ = torch_mha(*args, need_weights=False)  # L = S = 1: causal = no mask
        torch.testing.assert_close(output, causal)


@pytest.mark.parametrize(
    ("attn_mask", "unbatched"),
    [
        (torch.zeros(1, 1, 1, 1), False),  # 4-D
        (torch.zeros(1, 1, 1, 1), True),
        (torch.zeros(3, 1, 1), True),  # unbatched 3-D: must be (H, L, S) = (1, 1, 1)
    ],
)
def test_is_causal_still_checks_what_torch_checks(attn_mask: torch.Tensor, unbatched: bool) -> None:
    """torch checks the number of dimensions (and unbatched 3-D shape) of an ignored mask."""
    mha = torch.nn.MultiheadAttention(4, 1)
    x = torch.ones(1, 4) if unbatched else torch.ones(1, 2, 4)
    args = _module_args(mha, x)
    kwargs: dict[str, Any] = {"attn_mask": attn_mask, "is_causal": True, "need_weights": False}
    with pytest.raises(AssertionError):
        torch_mha(*args, **kwargs)
    with pytest.raises(ValueError, match="attn_mask") as info:
        multi_head_attention_forward(*args, **kwargs)
    assert isinstance(info.value, AssertionError)
    assert format_shape(attn_mask.shape) in str(info.value)


def test_is_causal_with_padding_uses_attn_mask() -> None:
    """With a key_padding_mask the hint is dropped and attn_mask is checked and used."""
    mha = torch.nn.MultiheadAttention(4, 1)
    args = _module_args(mha, torch.ones(1, 2, 4))
    kwargs: dict[str, Any] = {
        "attn_mask": torch.nn.Transformer.generate_square_subsequent_mask(2),
        "is_causal": True,
        "need_weights": False,
        "key_padding_mask": torch.zeros(2, 1, dtype=torch.bool),
    }
    with pytest.raises(RuntimeError, match="attn_mask"):
        torch_mha(*args, **kwargs)
    with pytest.raises(ValueError, match=r"attn_mask: expected shape \(L, S\) = \(1, 1\)"):
        multi_head_attention_forward(*args, **kwargs)


# --- bias_k / bias_v ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(4,), (1, 4), (1, 1, 4), (2, 1, 4), (0, 1, 4)],
    ids=["E", "1,E", "1,1,E", "K=2", "K=0"],
)
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_bias_kv_every_shape_torch_accepts(
    shape: tuple[int, ...], need_weights: bool, batched: bool, float_dtype: torch.dtype, tol: Tol
) -> None:
    """torch appends ``bias_k.repeat(1, N, 1)``: (E,), (1, E), (1, 1, E), and K extra keys."""
    gen = torch.Generator().manual_seed(0)
    mha = torch.nn.MultiheadAttention(4, 2, dtype=float_dtype)
    x = torch.randn(3, 2, 4, generator=gen, dtype=float_dtype)
    memory = torch.randn(5, 2, 4, generator=gen, dtype=float_dtype)
    if not batched:
        x, memory = x[:, 0], memory[:, 0]
    args = _module_args(mha, x, memory)
    args[7] = torch.randn(shape, generator=gen, dtype=float_dtype)  # bias_k
    args[8] = torch.randn(shape, generator=gen, dtype=float_dtype)  # bias_v
    extra = shape[0] if len(shape) == 3 else 1
    output, weights = multi_head_attention_forward(*args, need_weights=need_weights)
    expected, expected_weights = torch_mha(*args, need_weights=need_weights)
    torch.testing.assert_close(output, expected, **tol(float_dtype))
    if need_weights:
        assert weights is not None
        assert weights.shape[-1] == 5 + extra
        torch.testing.assert_close(weights, expected_weights, **tol(float_dtype))
    if extra == 1:  # masks get one more column for the bias key
        padding = torch.tensor([[False, True, False, False, True]] * 2)
        attn_mask = torch.rand(3, 5, generator=gen) < 0.3
        kwargs: dict[str, Any] = {
            "need_weights": need_weights,
            "key_padding_mask": padding if batched else padding[0],
            "attn_mask": attn_mask,
        }
        output, _ = multi_head_attention_forward(*args, **kwargs)
        torch.testing.assert_close(output, torch_mha(*args, **kwargs)[0], **tol(float_dtype))


def test_scalar_bias_kv_with_one_feature() -> None:
    """E = 1: a 0-d bias_k is (1, 1, 1) for torch's ``repeat``."""
    mha = torch.nn.MultiheadAttention(1, 1, dtype=torch.float64)
    args = _module_args(mha, torch.randn(3, 2, 1, dtype=torch.float64))
    args[7], args[8] = (
        torch.tensor(0.5, dtype=torch.float64),
        torch.tensor(-1.0, dtype=torch.float64),
    )
    torch.testing.assert_close(multi_head_attention_forward(*args), torch_mha(*args))


def _opinfo_samples(
    dtype: torch.dtype, requires_grad: bool
) -> Iterator[tuple[torch.Tensor, tuple[Any, ...], dict[str, Any]]]:
    """The samples of torch's OpInfo ``nn.functional.multi_head_attention_forward``.

    As in ``sample_inputs_multi_head_attention_forward`` (torch 2.13,
    ``torch/testing/_internal/common_methods_invocations.py``): bias_k and bias_v of
    shape (E,), float masks, L = 3 and S = 3 or 5; with gradients only the small batched
    case with dropout 0.5 (192 samples without, 1 with).
    """
    gen = torch.Generator().manual_seed(0)

    def make(*shape: int) -> torch.Tensor:
        x = torch.rand(shape, generator=gen, dtype=dtype) * 18 - 9  # make_tensor's [-9, 9]
        return x.requires_grad_(requires_grad)

    batch = 2
    if requires_grad:
        grid = itertools.product([True], [False], ["2d"], [2], [3], [3], [2], [0.5])
    else:
        grid = itertools.product(
            [False, True],
            [False, True],
            [None, "2d", "3d"],
            [2, 4],
            [3],
            [3, 5],
            [1, 2],
            [0.0, 0.5],
        )
    for batched, separate, mask_type, emb, src_len, tgt_len, heads, dropout_p in grid:
        attn_mask = None
        if mask_type == "2d":
            attn_mask = make(src_len, tgt_len)
        elif mask_type == "3d":
            attn_mask = make((batch if batched else 1) * heads, src_len, tgt_len)
        q = make(src_len, batch, emb) if batched else make(src_len, emb)
        k = make(tgt_len, batch, emb) if batched else make(tgt_len, emb)
        v = make(tgt_len, batch, emb) if batched else make(tgt_len, emb)
        args = (
            k, v, emb, heads, None if separate else make(3 * emb, emb), make(3 * emb),
            make(emb), make(emb), False, dropout_p, make(emb, emb), make(emb),
        )  # fmt: skip
        kwargs = {
            "q_proj_weight": make(emb, emb) if separate else None,
            "k_proj_weight": make(emb, emb) if separate else None,
            "v_proj_weight": make(emb, emb) if separate else None,
            "attn_mask": attn_mask,
            "training": dropout_p > 0.0,
            "use_separate_proj_weight": separate,
        }
        yield q, args, kwargs


def test_torchs_opinfo_samples_match() -> None:
    """All 192 float64 samples of torch's OpInfo run; those without dropout give torch's values.

    With dropout our random numbers are not torch's: those samples must agree with their
    eval-mode result in shape only.
    """
    count = 0
    for q, args, sample_kwargs in _opinfo_samples(torch.float64, requires_grad=False):
        output, weights = multi_head_attention_forward(q, *args, **sample_kwargs)
        kwargs = {**sample_kwargs, "training": False}
        expected, expected_weights = torch_mha(q, *args, **kwargs)
        assert weights is not None
        assert expected_weights is not None
        if sample_kwargs["training"]:
            assert (output.shape, weights.shape) == (expected.shape, expected_weights.shape)
        else:
            torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(weights, expected_weights, rtol=1e-10, atol=1e-10)
        count += 1
    assert count == 192


#: torch.jit.script is deprecated and warns (DeprecationWarning in 2.13, FutureWarning in 2.14);
#: forward AD uses it internally.
IGNORE_JIT_DEPRECATION = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated")


@IGNORE_JIT_DEPRECATION
def test_gradcheck_on_torchs_opinfo_sample() -> None:
    """gradcheck (reverse and forward mode) and gradgradcheck (with forward-over-reverse).

    The OpInfo's gradient sample has dropout 0.5 in training: like torch's
    ``wrapper_set_seed``, each evaluation starts from the same seed.
    """
    (q, args, kwargs) = next(_opinfo_samples(torch.float64, requires_grad=True))
    tensors = [q, *(a for a in args if isinstance(a, torch.Tensor))]
    tensors += [t for t in kwargs.values() if isinstance(t, torch.Tensor)]
    assert all(t.requires_grad for t in tensors)
    assert cast(torch.Tensor, args[6]).shape == (2,)  # bias_k (E,)

    def function(*inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        it = iter(inputs)
        query = next(it)
        call_args = [next(it) if isinstance(a, torch.Tensor) else a for a in args]
        call_kwargs = {k: next(it) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        torch.manual_seed(0)
        output, weights = multi_head_attention_forward(query, *call_args, **call_kwargs)
        return output, cast(torch.Tensor, weights)

    assert torch.autograd.gradcheck(function, tensors, check_forward_ad=True)
    assert torch.autograd.gradgradcheck(function, tensors, check_fwd_over_rev=True)
    no_dropout = dict(kwargs, training=False)
    assert torch.autograd.gradcheck(
        lambda *t: multi_head_attention_forward(
            t[0], *args[:4], *t[1:], False, 0.0, *args[10:], **no_dropout
        )[0],
        [q, *args[4:8]],
    )


# --- Mixed dtypes -------------------------------------------------------------------------

ALL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MIXABLE = (
    "query", "key", "value", "in_proj_weight", "in_proj_bias", "bias_k", "bias_v",
    "out_proj_weight", "out_proj_bias", "q_proj_weight", "k_proj_weight", "v_proj_weight",
    "static_k", "static_v", "attn_mask", "key_padding_mask",
)  # fmt: skip


def _noncontiguous(x: torch.Tensor) -> torch.Tensor:
    """The same values with transposed strides."""
    return x.transpose(0, -1).contiguous().transpose(0, -1)


def _mixed_call(
    name: str, dtype: torch.dtype, query_dtype: torch.dtype, layout: str
) -> dict[str, Any]:
    """E=4, H=2, L=3, S=5, N=2 in ``query_dtype``, with argument ``name`` in ``dtype``."""
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=query_dtype)

    def sequence(length: int) -> torch.Tensor:
        if layout == "unbatched":
            return randn(length, 4)
        x = randn(length, 2, 4)
        return _noncontiguous(x) if layout == "noncontiguous" else x

    separate = name in {"q_proj_weight", "k_proj_weight", "v_proj_weight"}
    kwargs: dict[str, Any] = {
        "query": sequence(3),
        "key": sequence(5),
        "value": sequence(5),
        "embed_dim_to_check": 4,
        "num_heads": 2,
        "in_proj_weight": None if separate else randn(12, 4),
        "in_proj_bias": randn(12),
        "bias_k": randn(1, 1, 4) if name in {"bias_k", "bias_v"} else None,
        "bias_v": randn(1, 1, 4) if name in {"bias_k", "bias_v"} else None,
        "add_zero_attn": False,
        "dropout_p": 0.0,
        "out_proj_weight": randn(4, 4),
        "out_proj_bias": randn(4),
        "training": False,
    }
    if separate:
        kwargs |= {"use_separate_proj_weight": True}
        kwargs |= {f"{x}_proj_weight": randn(4, 4) for x in "qkv"}
    batch_heads = 2 if layout == "unbatched" else 4
    if name in {"static_k", "static_v"}:
        kwargs[name] = randn(batch_heads, 5, 2)
    if name == "attn_mask":
        kwargs[name] = torch.randn(3, 5, generator=gen).masked_fill(
            torch.rand(3, 5, generator=gen) < 0.3, float("-inf")
        )
    if name == "key_padding_mask":
        kwargs[name] = torch.randn(5 if layout == "unbatched" else (2, 5), generator=gen)
    kwargs[name] = kwargs[name].to(dtype)
    return kwargs


def _outcome(
    function: Callable[..., tuple[torch.Tensor, torch.Tensor | None]], kwargs: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor | None] | Exception:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's mixed-mask warning
            return function(**kwargs)
    except (AssertionError, RuntimeError, TypeError, ValueError) as error:
        return error


def _same_outcome(
    ours: tuple[torch.Tensor, torch.Tensor | None] | Exception,
    theirs: tuple[torch.Tensor, torch.Tensor | None] | Exception,
    tol: dict[str, float],
) -> None:
    if isinstance(theirs, Exception):
        assert isinstance(ours, TypeError), (ours, theirs)
        assert isinstance(ours, type(theirs)), (ours, theirs)
        return
    assert not isinstance(ours, Exception), (ours, theirs)
    assert ours[0].dtype == theirs[0].dtype
    torch.testing.assert_close(ours[0], theirs[0], equal_nan=True, **tol)
    assert (ours[1] is None) == (theirs[1] is None)
    if ours[1] is not None:
        assert theirs[1] is not None
        assert ours[1].dtype == theirs[1].dtype
        torch.testing.assert_close(ours[1], theirs[1], equal_nan=True, **tol)


@pytest.mark.parametrize("query_dtype", FLOAT_DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", MIXABLE)
def test_mixed_dtypes_as_torch(name: str, query_dtype: torch.dtype, tol: Tol) -> None:
    """One argument in another float dtype: torch's result dtype and values, or its refusal.

    torch (2.13, CPU) accepts a lower-precision ``bias_k``/``bias_v`` (``cat`` promotes),
    a float32 mask on the ``need_weights=False`` path (its SDPA takes float32 masks for
    every query), and an ``in_proj_bias`` of any float dtype, but only when the inputs
    are non-contiguous (``F.linear`` then adds the bias in place). We accept that bias
    whatever the layout, with the result torch gives for the non-contiguous layout.
    """
    compared = 0
    for dtype, need_weights, layout in itertools.product(
        ALL_FLOATS, [True, False], ["contiguous", "noncontiguous", "unbatched"]
    ):
        if dtype == query_dtype or (layout == "unbatched" and name.startswith("static")):
            continue
        kwargs = _mixed_call(name, dtype, query_dtype, layout) | {"need_weights": need_weights}
        ours = _outcome(multi_head_attention_forward, kwargs)
        theirs = _outcome(F.multi_head_attention_forward, kwargs)
        if name == "in_proj_bias" and isinstance(theirs, Exception):
            nc = {x: _noncontiguous(kwargs[x]) for x in ("query", "key", "value")}
            theirs = _outcome(F.multi_head_attention_forward, kwargs | nc)
            assert not isinstance(theirs, Exception)
        _same_outcome(ours, theirs, tol(query_dtype))
        compared += 1
    assert compared >= 12


MASK_DTYPES = (torch.bool, *ALL_FLOATS)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("query_dtype", FLOAT_DTYPES, ids=["float32", "float64"])
def test_mixed_mask_dtypes_as_torch(need_weights: bool, query_dtype: torch.dtype, tol: Tol) -> None:
    """Both masks, every pair of dtypes: bool -> the query's dtype, floats add (promote)."""
    for attn_dtype, padding_dtype in itertools.product(MASK_DTYPES, MASK_DTYPES):
        gen = torch.Generator().manual_seed(0)
        masked = torch.rand(3, 5, generator=gen) < 0.3
        padding = torch.tensor([[False, True, False, False, False], [True] * 2 + [False] * 3])
        kwargs = _mixed_call("query", query_dtype, query_dtype, "contiguous")
        kwargs |= {
            "need_weights": need_weights,
            "attn_mask": masked if attn_dtype == torch.bool else _additive(masked, attn_dtype),
            "key_padding_mask": padding
            if padding_dtype == torch.bool
            else _additive(padding, padding_dtype),
        }
        ours = _outcome(multi_head_attention_forward, kwargs)
        theirs = _outcome(F.multi_head_attention_forward, kwargs)
        _same_outcome(ours, theirs, tol(query_dtype))


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(mask.shape, dtype=dtype).masked_fill(mask, float("-inf"))


def test_float16_in_proj_bias_with_float64_query() -> None:
    """The issue's case: torch returns float64 (non-contiguous input, e.g. batch_first)."""
    kwargs = _mixed_call("in_proj_bias", torch.float16, torch.float64, "noncontiguous")
    output, weights = multi_head_attention_forward(**kwargs)
    expected, expected_weights = F.multi_head_attention_forward(**kwargs)
    assert output.dtype == expected.dtype == torch.float64
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-10, atol=1e-10)
    # Contiguous input: torch refuses (its kernel choice); we give the same result.
    contiguous = {x: kwargs[x].contiguous() for x in ("query", "key", "value")}
    with pytest.raises(RuntimeError):
        F.multi_head_attention_forward(**kwargs | contiguous)
    output, _ = multi_head_attention_forward(**kwargs | contiguous)
    torch.testing.assert_close(output, expected, rtol=1e-10, atol=1e-10)


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


BadCall = Callable[..., object]


def _bad(**changes: Any) -> BadCall:
    """A call with E=4, H=2, L=3, S=5, N=2, packed projections, with some arguments changed.

    ``call()`` calls attnlens's function, ``call(F.multi_head_attention_forward)`` torch's.
    """

    def call(function: Callable[..., object] = multi_head_attention_forward) -> object:
        mha = torch.nn.MultiheadAttention(4, 2)
        args = _module_args(mha, torch.randn(3, 2, 4), torch.randn(5, 2, 4))
        names = list(inspect.signature(multi_head_attention_forward).parameters)
        kwargs = dict(zip(names, args, strict=False))
        kwargs |= {
            name: value(kwargs) if callable(value) else value for name, value in changes.items()
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's warning for mixed mask types
            return function(**kwargs)

    return call


BAD_CALLS: dict[str, tuple[BadCall, type[Exception], list[str]]] = {
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
        _bad(bias_k=torch.zeros(1, 2, 4), bias_v=torch.zeros(1, 1, 4)),
        ValueError,
        ["bias_k", "(E,) = (4,)", "(1, E) = (1, 4)", "(K, 1, E) = (1, 1, 4)", "(1, 2, 4)"],
    ),
    "bias_k 2-D with more rows": (
        _bad(bias_k=torch.zeros(2, 4), bias_v=torch.zeros(2, 4)),
        ValueError,
        ["bias_k", "(1, E) = (1, 4)", "(2, 4)"],
    ),
    "bias_k features": (
        _bad(bias_k=torch.zeros(3), bias_v=torch.zeros(4)),
        ValueError,
        ["bias_k", "(E,) = (4,)", "(3,)"],
    ),
    "bias_k 4-D": (
        _bad(bias_k=torch.zeros(1, 1, 1, 4), bias_v=torch.zeros(1, 1, 1, 4)),
        ValueError,
        ["bias_k", "(K, 1, E)", "(1, 1, 1, 4)"],
    ),
    "bias_k float64": (
        _bad(bias_k=torch.zeros(4, dtype=torch.float64), bias_v=torch.zeros(4)),
        TypeError,
        ["bias_k", "torch.float32", "promotes", "torch.float64"],
    ),
    "more bias keys than values": (
        _bad(bias_k=torch.zeros(2, 1, 4), bias_v=torch.zeros(1, 1, 4), need_weights=True),
        ValueError,
        ["bias_v", "(K, 1, E)", "K = 2 from bias_k", "(1, 1, 4)"],
    ),
    "two bias keys with a mask": (
        _bad(
            bias_k=torch.zeros(2, 1, 4),
            bias_v=torch.zeros(2, 1, 4),
            key_padding_mask=torch.zeros(2, 5, dtype=torch.bool),
        ),
        ValueError,
        ["bias_k", "one extra key", "(2, 1, 4)"],
    ),
    "in_proj_bias complex": (
        _bad(in_proj_bias=torch.zeros(12, dtype=torch.complex64)),
        TypeError,
        ["in_proj_bias", "cast", "torch.float32", "torch.complex64"],
    ),
    "out_proj_bias float64": (
        _bad(out_proj_bias=torch.zeros(4, dtype=torch.float64)),
        TypeError,
        ["out_proj_bias", "torch.float32", "torch.float64"],
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
    "attn_mask float16, with weights": (
        _bad(attn_mask=torch.zeros(3, 5, dtype=torch.float16)),
        TypeError,
        ["attn_mask", "query's dtype torch.float32", "torch.float16"],
    ),
    "attn_mask float16, without weights": (
        _bad(attn_mask=torch.zeros(3, 5, dtype=torch.float16), need_weights=False),
        TypeError,
        ["attn_mask", "torch.float32", "SDPA", "torch.float16"],
    ),
    "masks that add up to float64": (
        _bad(
            attn_mask=torch.zeros(3, 5, dtype=torch.float16),
            key_padding_mask=torch.zeros(2, 5, dtype=torch.float64),
        ),
        TypeError,
        ["attn_mask", "key_padding_mask", "torch.float16", "add up to torch.float64"],
    ),
    "is_causal: attn_mask 4-D": (
        _bad(attn_mask=torch.zeros(1, 1, 3, 5), is_causal=True, need_weights=False),
        ValueError,
        ["attn_mask", "2 or 3 dimensions", "(1, 1, 3, 5)"],
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
    case: tuple[BadCall, type[Exception], list[str]],
) -> None:
    call, error, fragments = case
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --- TorchScript ----------------------------------------------------------------------------


@IGNORE_JIT_DEPRECATION
def test_torchscript_compiles_torchs_function_for_ours() -> None:
    """``torch.jit.script(multi_head_attention_forward)`` compiles torch's, which computes the same."""
    scripted = torch.jit.script(multi_head_attention_forward)
    mha = _biased_mha(torch.float64)
    args = _module_args(mha, torch.randn(3, 2, 4, dtype=torch.float64))
    padding = torch.tensor([[False, False, True], [False, False, False]])
    for need_weights in (True, False):
        kwargs: dict[str, Any] = {"key_padding_mask": padding, "need_weights": need_weights}
        torch.testing.assert_close(
            scripted(*args, **kwargs), multi_head_attention_forward(*args, **kwargs)
        )


@IGNORE_JIT_DEPRECATION
def test_torchscript_after_swapping_ours_in_for_torchs(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``F.multi_head_attention_forward`` replaced by ours, torch's layers still script."""

    class FreshMultiheadAttention(torch.nn.MultiheadAttention):
        """A class TorchScript has not compiled in this process (it caches per class)."""

    monkeypatch.setattr(F, "multi_head_attention_forward", multi_head_attention_forward)
    layer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0).eval()
    fresh = FreshMultiheadAttention(8, 2)
    fresh.load_state_dict(layer.self_attn.state_dict())
    layer.self_attn = fresh
    scripted = torch.jit.script(layer)
    x = torch.randn(5, 3, 8)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5)
    torch.testing.assert_close(scripted(x, src_mask=mask), layer(x, src_mask=mask))


#: Bad calls that torch accepts (we refuse them on purpose), or where torch fails by accident
#: (an ``AttributeError`` on a list, a ``ZeroDivisionError``), not by a check of its own.
TORCH_DOES_NOT_CHECK = {
    "dropout_p": None,  # torch: p < 0 means no dropout
    "query not a tensor": AttributeError,
    "attn_mask not a tensor": AttributeError,
    "num_heads zero": ZeroDivisionError,
}


@pytest.mark.parametrize("case", BAD_CALLS.items(), ids=BAD_CALLS.keys())
def test_bad_input_is_caught_by_what_catches_torchs_error(
    case: tuple[str, tuple[BadCall, type[Exception], list[str]]],
) -> None:
    """A drop-in: ``except`` clauses written for torch's errors catch ours too.

    Whatever torch raises for the same bad call (AssertionError from its checks,
    RuntimeError from its kernels), our error is an instance of that class, and also the
    ValueError or TypeError that our message describes.
    """
    name, (call, error, _) = case
    with pytest.raises(error) as ours:
        call()
    assert isinstance(ours.value, (ValueError, TypeError))
    assert isinstance(ours.value, AssertionError)
    assert isinstance(ours.value, RuntimeError)
    if name in TORCH_DOES_NOT_CHECK:
        expected = TORCH_DOES_NOT_CHECK[name]
        if expected is None:
            call(F.multi_head_attention_forward)  # accepted by torch
        else:
            with pytest.raises(expected):
                call(F.multi_head_attention_forward)
        return
    with pytest.raises(Exception) as theirs:  # noqa: PT011 - any class: compared below
        call(F.multi_head_attention_forward)
    assert type(theirs.value) in {AssertionError, RuntimeError}
    assert isinstance(ours.value, type(theirs.value))


def test_error_classes() -> None:
    """ValueError/TypeError, and AssertionError and RuntimeError, as torch raises."""
    for cls in (InputValueError, InputTypeError):
        assert issubclass(cls, AssertionError)
        assert issubclass(cls, RuntimeError)
    assert issubclass(InputValueError, ValueError)
    assert issubclass(InputTypeError, TypeError)
    assert not issubclass(InputValueError, TypeError)


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
