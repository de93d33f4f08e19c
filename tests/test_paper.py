"""PaperMultiheadAttention: per-head form of the paper, against torch.nn.MultiheadAttention."""

from __future__ import annotations

import doctest
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import attnlens.paper
from attnlens.multihead import MultiheadAttention as AttnlensMultiheadAttention
from attnlens.paper import PaperMultiheadAttention

DTYPES = [torch.float32, torch.float64]


def assert_close(actual: Tensor, expected: Tensor) -> None:
    """assert_close with atol 1e-6 in float32 (NOTES: ~2.4e-7 seen), defaults in float64."""
    if actual.dtype == torch.float32:
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1.3e-6, equal_nan=True)
    else:
        torch.testing.assert_close(actual, expected, equal_nan=True)


def randomize_(module: nn.Module, generator: torch.Generator) -> None:
    """Overwrite every parameter (biases too, which start at zero) with random values.

    Weights get a standard deviation of 1/sqrt(fan_in), so that outputs stay of order 1 and
    float32 rounding stays near 1e-7, as with torch's own initialisation.
    """
    with torch.no_grad():
        for parameter in module.parameters():
            std = 1 / math.sqrt(parameter.shape[-1]) if parameter.dim() == 2 else 0.5
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * std
            )


def linears(group: nn.ModuleList) -> Iterator[nn.Linear]:
    for module in group:
        assert isinstance(module, nn.Linear)
        yield module


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    """Same state_dict keys, bitwise-equal values, same dtype and device, no shared storage."""
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert sa[name].device == sb[name].device, name
        assert sa[name].shape == sb[name].shape, name
        assert torch.equal(sa[name], sb[name]), name
        assert sa[name].data_ptr() != sb[name].data_ptr(), name


# --------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    dtype: torch.dtype
    num_heads: int
    head_dim: int
    bias: bool
    batch_first: bool
    batched: bool
    n: int
    length: int
    source_length: int
    self_attention: bool
    training: bool
    no_grad: bool
    key_padding_mask: str  # "none", "bool", "float"
    attn_mask: str  # "none", "bool2", "bool3", "float2", "float3"
    direction: str  # "from_torch" or "to_torch"
    seed: int

    @property
    def embed_dim(self) -> int:
        return self.num_heads * self.head_dim


@st.composite
def configs(draw: st.DrawFn) -> Config:
    self_attention = draw(st.booleans())
    batched = draw(st.booleans())
    length = draw(st.integers(1, 6))
    kpm = draw(st.sampled_from(["none", "bool", "float"]))
    # torch warns about a bool key_padding_mask with a float attn_mask (and the reverse), and
    # warnings are errors here: the mixed case has its own test.
    if kpm == "none":
        attn = draw(st.sampled_from(["none", "bool2", "bool3", "float2", "float3"]))
    else:
        attn = draw(st.sampled_from(["none", f"{kpm}2", f"{kpm}3"]))
    return Config(
        dtype=draw(st.sampled_from(DTYPES)),
        num_heads=draw(st.integers(1, 4)),
        head_dim=draw(st.integers(1, 4)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        batched=batched,
        n=draw(st.integers(1, 3)) if batched else 1,
        length=length,
        source_length=length if self_attention else draw(st.integers(1, 6)),
        self_attention=self_attention,
        training=draw(st.booleans()),
        no_grad=draw(st.booleans()),
        key_padding_mask=kpm,
        attn_mask=attn,
        direction=draw(st.sampled_from(["from_torch", "to_torch"])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def make_pair(cfg: Config, g: torch.Generator) -> tuple[nn.MultiheadAttention, Any]:
    """A torch module and its paper form, with random parameters, converted either way."""
    if cfg.direction == "from_torch":
        mha = nn.MultiheadAttention(
            cfg.embed_dim,
            cfg.num_heads,
            bias=cfg.bias,
            batch_first=cfg.batch_first,
            dtype=cfg.dtype,
        )
        randomize_(mha, g)
        mha.train(cfg.training)
        paper = PaperMultiheadAttention.from_torch(mha)
        assert_same_state(paper.to_torch(), mha)
    else:
        paper = PaperMultiheadAttention(
            cfg.embed_dim,
            cfg.num_heads,
            bias=cfg.bias,
            batch_first=cfg.batch_first,
            dtype=cfg.dtype,
        )
        randomize_(paper, g)
        paper.train(cfg.training)
        mha = paper.to_torch()
        assert_same_state(PaperMultiheadAttention.from_torch(mha), paper)
    assert paper.training == mha.training == cfg.training
    return mha, paper


def make_masks(cfg: Config, g: torch.Generator) -> tuple[Tensor | None, Tensor | None]:
    """Masks in torch-MHA convention, batch-major; every query row keeps at least one key."""
    n, h, ln, s = cfg.n, cfg.num_heads, cfg.length, cfg.source_length
    keep = torch.randint(s, (n,), generator=g)  # one key per sequence that nothing masks

    kpm: Tensor | None = None
    if cfg.key_padding_mask != "none":
        masked = torch.rand(n, s, generator=g) < 0.4  # (N, S)
        masked[torch.arange(n), keep] = False
        kpm = masked if cfg.key_padding_mask == "bool" else to_float(masked, cfg.dtype, g)

    attn: Tensor | None = None
    if cfg.attn_mask != "none":
        if cfg.attn_mask.endswith("2"):
            masked = torch.rand(ln, s, generator=g) < 0.4  # (L, S)
            masked[:, keep] = False
        else:
            masked = torch.rand(n, h, ln, s, generator=g) < 0.4  # (N, H, L, S)
            masked[torch.arange(n), :, :, keep] = False
            masked = masked.reshape(n * h, ln, s)  # (N * H, L, S), batch-major
        attn = masked if cfg.attn_mask.startswith("bool") else to_float(masked, cfg.dtype, g)

    if not cfg.batched and kpm is not None:
        kpm = kpm[0]  # (S,)
    return kpm, attn


def to_float(masked: Tensor, dtype: torch.dtype, g: torch.Generator) -> Tensor:
    """A float mask: random finite offsets, -inf where ``masked``."""
    values = torch.randn(masked.shape, generator=g, dtype=dtype)
    return values.masked_fill(masked, -math.inf)


def make_inputs(cfg: Config, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """query, key, value in the caller's layout; one tensor for all three in self-attention."""
    n, e = cfg.n, cfg.embed_dim
    query = torch.randn(n, cfg.length, e, generator=g, dtype=cfg.dtype)  # (N, L, E)
    key = torch.randn(n, cfg.source_length, e, generator=g, dtype=cfg.dtype)  # (N, S, E)
    value = torch.randn(n, cfg.source_length, e, generator=g, dtype=cfg.dtype)  # (N, S, E)
    if not cfg.batched:
        query, key, value = query[0], key[0], value[0]  # (L, E), (S, E), (S, E)
    elif not cfg.batch_first:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))  # (L, N, E) ...
    if cfg.self_attention:
        return query, query, query
    return query, key, value


# ------------------------------------------------------------------ equivalence


@settings(max_examples=200, deadline=None)
@given(cfg=configs())
def test_matches_torch_multihead_attention(cfg: Config) -> None:
    g = torch.Generator().manual_seed(cfg.seed)
    mha, paper = make_pair(cfg, g)
    query, key, value = make_inputs(cfg, g)
    kpm, attn = make_masks(cfg, g)

    with torch.no_grad() if cfg.no_grad else nullcontext():
        expected_out, expected_weights = mha(
            query,
            key,
            value,
            key_padding_mask=kpm,
            attn_mask=attn,
            need_weights=True,
            average_attn_weights=False,
        )
        out, weights = paper(query, key, value, key_padding_mask=kpm, attn_mask=attn)

    h, ln, s = cfg.num_heads, cfg.length, cfg.source_length
    if cfg.batched:
        assert weights.shape == (cfg.n, h, ln, s)
    else:
        assert weights.shape == (h, ln, s)
    assert out.shape == query.shape
    assert out.dtype == weights.dtype == cfg.dtype
    assert not out.isnan().any()
    assert_close(out, expected_out)
    assert_close(weights, expected_weights)
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masks", ["none", "key_padding_mask", "attn_mask"])
def test_matches_torch_fused_fast_path(
    dtype: torch.dtype, masks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In eval under no_grad torch may answer from its fused kernel; we still agree."""
    calls: list[int] = []
    native = torch._native_multi_head_attention

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return native(*args, **kwargs)

    monkeypatch.setattr(torch, "_native_multi_head_attention", counting)
    g = torch.Generator().manual_seed(17)
    mha = nn.MultiheadAttention(8, 2, batch_first=True, dtype=dtype)
    randomize_(mha, g)
    mha.eval()
    paper = PaperMultiheadAttention.from_torch(mha)
    x = torch.randn(3, 5, 8, generator=g, dtype=dtype)  # (N, L, E)
    kpm = attn = None
    if masks == "key_padding_mask":
        kpm = torch.tensor([[False] * 5, [False, False, False, True, True], [True] + [False] * 4])
    elif masks == "attn_mask":
        attn = torch.ones(5, 5, dtype=torch.bool).triu(1)  # causal: True above the diagonal
    with torch.no_grad():
        expected = mha(x, x, x, key_padding_mask=kpm, attn_mask=attn, average_attn_weights=False)
        actual = paper(x, x, x, key_padding_mask=kpm, attn_mask=attn)
    assert calls == [1]  # torch took its fused path
    assert_close(actual[0], expected[0])
    assert_close(actual[1], expected[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_match_torch(dtype: torch.dtype, bias: bool) -> None:
    g = torch.Generator().manual_seed(7)
    mha = nn.MultiheadAttention(6, 3, bias=bias, batch_first=True, dtype=dtype)
    randomize_(mha, g)
    paper = PaperMultiheadAttention.from_torch(mha)
    query = torch.randn(2, 4, 6, generator=g, dtype=dtype, requires_grad=True)
    key = torch.randn(2, 5, 6, generator=g, dtype=dtype, requires_grad=True)
    kpm = torch.tensor([[False, False, True, False, True], [False] * 5])
    probe_out = torch.randn(2, 4, 6, generator=g, dtype=dtype)
    probe_w = torch.randn(2, 3, 4, 5, generator=g, dtype=dtype)

    out, w = mha(query, key, key, key_padding_mask=kpm, average_attn_weights=False)
    ((out * probe_out).sum() + (w * probe_w).sum()).backward()
    expected = (query.grad, key.grad, mha.in_proj_weight.grad, mha.out_proj.weight.grad)
    query.grad = key.grad = None

    out, w = paper(query, key, key, key_padding_mask=kpm)
    ((out * probe_out).sum() + (w * probe_w).sum()).backward()
    in_proj_grad = torch.cat(
        [lin.weight.grad for grp in (paper.w_q, paper.w_k, paper.w_v) for lin in linears(grp)]
    )  # (3E, E)
    actual = (query.grad, key.grad, in_proj_grad, paper.w_o.weight.grad)
    for a, b in zip(actual, expected, strict=True):
        assert a is not None
        assert b is not None
        assert_close(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mixed_bool_and_float_masks_combine_like_torch(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    mha = nn.MultiheadAttention(4, 2, batch_first=True, dtype=dtype)
    randomize_(mha, g)
    paper = PaperMultiheadAttention.from_torch(mha)
    x = torch.randn(2, 3, 4, generator=g, dtype=dtype)
    kpm = torch.tensor([[False, True, False], [False, False, True]])  # bool, True = masked out
    attn = torch.randn(3, 3, generator=g, dtype=dtype)  # float, added
    with pytest.warns(UserWarning, match="mismatched key_padding_mask and attn_mask"):
        expected = mha(x, x, x, key_padding_mask=kpm, attn_mask=attn, average_attn_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the paper form accepts this silently
        actual = paper(x, x, x, key_padding_mask=kpm, attn_mask=attn)
    assert_close(actual[0], expected[0])
    assert_close(actual[1], expected[1])
    assert (actual[1][0, :, :, 1] == 0).all()  # key 1 of sequence 0 is padding


def test_fully_masked_row_gives_nan_like_torch_weights_path() -> None:
    g = torch.Generator().manual_seed(5)
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    randomize_(mha, g)
    paper = PaperMultiheadAttention.from_torch(mha)
    x = torch.randn(1, 3, 4, generator=g)
    attn = torch.zeros(3, 3, dtype=torch.bool)
    attn[1] = True  # query 1 may attend to nothing
    expected_out, expected_w = mha(x, x, x, attn_mask=attn, average_attn_weights=False)
    out, w = paper(x, x, x, attn_mask=attn)
    assert expected_w is not None
    assert expected_w[:, :, 1].isnan().all()
    assert w[:, :, 1].isnan().all()
    assert out[:, 1].isnan().all()
    assert not w[:, :, [0, 2]].isnan().any()
    assert not out[:, [0, 2]].isnan().any()
    assert_close(out, expected_out)
    assert_close(w, expected_w)


# ----------------------------------------------------------- per-head parameters


def test_parameters_are_named_per_head() -> None:
    paper = PaperMultiheadAttention(6, 3)
    names = [name for name, _ in paper.named_parameters()]
    expected = [
        f"{group}.{i}.{kind}"
        for group in ("w_q", "w_k", "w_v")
        for i in range(3)
        for kind in ("weight", "bias")
    ] + ["w_o.weight", "w_o.bias"]
    assert names == expected
    assert paper.w_q[0].weight.shape == (2, 6)  # (d_k, E): the transpose of the paper's W_i^Q
    assert paper.w_o.weight.shape == (6, 6)
    pointers = {p.data_ptr() for p in paper.parameters()}
    assert len(pointers) == len(names)  # no two parameters share storage
    assert [n for n, _ in PaperMultiheadAttention(6, 3, bias=False).named_parameters()] == [
        n for n in expected if n.endswith("weight")
    ]


@pytest.mark.parametrize("group", ["w_q", "w_k"])
def test_changing_one_heads_projection_changes_only_that_head(group: str) -> None:
    g = torch.Generator().manual_seed(11)
    paper = PaperMultiheadAttention(8, 4, batch_first=True)
    randomize_(paper, g)
    x = torch.randn(2, 5, 8, generator=g)
    out_before, w_before = paper(x, x, x)
    with torch.no_grad():
        getattr(paper, group)[1].weight.mul_(3.0)
    out_after, w_after = paper(x, x, x)
    for head in (0, 2, 3):
        assert torch.equal(w_after[:, head], w_before[:, head])
    assert (w_after[:, 1] - w_before[:, 1]).abs().max() > 1e-3
    assert (out_after - out_before).abs().max() > 1e-3


def test_changing_one_heads_value_projection_changes_no_weights() -> None:
    g = torch.Generator().manual_seed(12)
    paper = PaperMultiheadAttention(8, 4, batch_first=True)
    randomize_(paper, g)
    x = torch.randn(2, 5, 8, generator=g)
    out_before, w_before = paper(x, x, x)
    with torch.no_grad():
        paper.w_v[2].weight.mul_(3.0)
    out_after, w_after = paper(x, x, x)
    assert torch.equal(w_after, w_before)
    assert (out_after - out_before).abs().max() > 1e-3


def test_head_blocks_are_row_blocks_of_in_proj() -> None:
    mha = nn.MultiheadAttention(6, 3)
    randomize_(mha, torch.Generator().manual_seed(1))
    paper = PaperMultiheadAttention.from_torch(mha)
    e, d = 6, 2
    for block, group in enumerate((paper.w_q, paper.w_k, paper.w_v)):
        for i, lin in enumerate(linears(group)):
            rows = slice(block * e + i * d, block * e + (i + 1) * d)
            assert torch.equal(lin.weight, mha.in_proj_weight[rows])
            assert lin.bias is not None
            assert mha.in_proj_bias is not None
            assert torch.equal(lin.bias, mha.in_proj_bias[rows])
    # The paper's W_i^Q (E, d_k) times X equals the head's slice of the packed projection.
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))  # (L, E)
    packed = nn.functional.linear(x, mha.in_proj_weight)  # (L, 3E)
    w1q = paper.w_q[1].weight.T  # (E, d_k)
    torch.testing.assert_close(x @ w1q, packed[:, 2:4])


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_round_trip_from_torch_to_torch_is_bitwise(
    dtype: torch.dtype, bias: bool, batch_first: bool, training: bool
) -> None:
    mha = nn.MultiheadAttention(
        12, 4, dropout=0.25, bias=bias, batch_first=batch_first, dtype=dtype
    )
    randomize_(mha, torch.Generator().manual_seed(4))
    mha.train(training)
    paper = PaperMultiheadAttention.from_torch(mha)
    assert (paper.embed_dim, paper.num_heads, paper.head_dim) == (12, 4, 3)
    assert (paper.dropout, paper.bias, paper.batch_first) == (0.25, bias, batch_first)
    assert paper.training == training
    assert all(p.dtype == dtype for p in paper.parameters())
    back = paper.to_torch()
    assert type(back) is nn.MultiheadAttention
    assert_same_state(back, mha)
    assert [n for n, _ in back.named_parameters()] == [n for n, _ in mha.named_parameters()]
    assert (back.dropout, back.batch_first, back.training) == (0.25, batch_first, training)
    assert back._qkv_same_embed_dim
    assert back.bias_k is None
    assert not back.add_zero_attn
    # The converted module owns its parameters: changing it leaves the source alone.
    with torch.no_grad():
        paper.w_q[0].weight.add_(1.0)
    assert torch.equal(back.in_proj_weight, mha.in_proj_weight)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_to_torch_from_torch_gives_back_parameters(
    dtype: torch.dtype, bias: bool
) -> None:
    paper = PaperMultiheadAttention(8, 2, dropout=0.1, bias=bias, batch_first=True, dtype=dtype)
    randomize_(paper, torch.Generator().manual_seed(9))
    back = PaperMultiheadAttention.from_torch(paper.to_torch())
    assert_same_state(back, paper)
    assert (back.dropout, back.bias, back.batch_first) == (0.1, bias, True)
    x = torch.randn(3, 4, 8, dtype=dtype, generator=torch.Generator().manual_seed(1))
    paper.eval()
    out, w = paper(x, x, x)
    out2, w2 = back.eval()(x, x, x)
    assert torch.equal(out, out2)
    assert torch.equal(w, w2)


def test_conversions_draw_no_random_numbers() -> None:
    mha = nn.MultiheadAttention(8, 2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    paper = PaperMultiheadAttention.from_torch(mha)
    paper.to_torch()
    assert torch.equal(torch.get_rng_state(), state)
    # whereas constructing one initialises its weights at random, like torch's module
    PaperMultiheadAttention(8, 2)
    assert not torch.equal(torch.get_rng_state(), state)


def test_from_torch_accepts_a_subclass_and_keeps_device() -> None:
    class Tagged(nn.MultiheadAttention):
        pass

    mha = Tagged(4, 1, batch_first=True)
    paper = PaperMultiheadAttention.from_torch(mha)
    assert paper.w_o.weight.device == mha.in_proj_weight.device
    assert_same_state(paper.to_torch(), mha)


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_torch_accepts_attnlens_multihead_attention(dtype: torch.dtype) -> None:
    mha = AttnlensMultiheadAttention(6, 2, batch_first=True, dtype=dtype)
    randomize_(mha, torch.Generator().manual_seed(21))
    paper = PaperMultiheadAttention.from_torch(mha)
    x = torch.randn(2, 3, 6, dtype=dtype, generator=torch.Generator().manual_seed(2))
    expected = mha(x, x, x, average_attn_weights=False)
    actual = paper(x, x, x)
    assert_close(actual[0], expected[0])
    assert_close(actual[1], expected[1])
    assert_same_state(paper.to_torch(), mha)  # same keys, same bits
    with pytest.raises(ValueError, match=r"^mha: the paper form projects key and value"):
        PaperMultiheadAttention.from_torch(AttnlensMultiheadAttention(6, 2, vdim=3))


# ----------------------------------------------------------------------- dropout


def test_dropout_in_training_is_inverted_dropout_on_returned_weights() -> None:
    g = torch.Generator().manual_seed(13)
    paper = PaperMultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    randomize_(paper, g)
    x = torch.randn(4, 6, 8, generator=g)
    clean_out, clean = paper.eval()(x, x, x)
    torch.manual_seed(0)
    out, dropped = paper.train()(x, x, x)
    kept = dropped != 0
    assert 0 < kept.float().mean() < 1  # some weights dropped, some kept
    torch.testing.assert_close(dropped[kept], clean[kept] / 0.5)  # kept ones scaled by 1/(1-p)
    assert not torch.allclose(dropped.sum(-1), torch.ones(4, 2, 6))  # rows no longer sum to 1
    # The output is computed from exactly the returned (dropped) weights.
    heads = [
        dropped[:, i] @ lin(x)  # (N, L, S) @ (N, S, d_k) -> (N, L, d_k)
        for i, lin in enumerate(linears(paper.w_v))
    ]
    torch.testing.assert_close(out, paper.w_o(torch.cat(heads, dim=-1)))
    assert not torch.allclose(out, clean_out)


def test_dropout_is_off_in_eval_like_torch() -> None:
    g = torch.Generator().manual_seed(14)
    mha = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    randomize_(mha, g)
    mha.eval()
    paper = PaperMultiheadAttention.from_torch(mha)
    assert paper.dropout == 0.5
    assert not paper.training
    x = torch.randn(2, 5, 8, generator=g)
    expected = mha(x, x, x, average_attn_weights=False)
    actual = paper(x, x, x)
    assert_close(actual[0], expected[0])
    assert_close(actual[1], expected[1])


# --------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kdim": 4}, r"kdim = 4, vdim = 6 .*use kdim = vdim = embed_dim"),
        ({"vdim": 3}, r"kdim = 6, vdim = 3"),
        ({"kdim": 5, "vdim": 5}, r"projects key and value from embed_dim = 6"),
        ({"add_bias_kv": True}, r"mha: add_bias_kv=True .* not part of the paper form"),
        ({"add_zero_attn": True}, r"mha: add_zero_attn=True .* not part of the paper form"),
    ],
)
def test_from_torch_refuses_what_the_paper_form_lacks(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PaperMultiheadAttention.from_torch(nn.MultiheadAttention(6, 2, **kwargs))


def test_from_torch_refuses_bias_on_only_one_projection() -> None:
    mha = nn.MultiheadAttention(4, 2, bias=False)
    mha.out_proj.bias = nn.Parameter(torch.zeros(4))
    with pytest.raises(ValueError, match=r"in_proj_bias None and out_proj.bias set"):
        PaperMultiheadAttention.from_torch(mha)


@pytest.mark.parametrize(
    ("given", "type_name"),
    [
        (nn.Linear(4, 4), "torch.nn.modules.linear.Linear"),
        (nn.TransformerEncoderLayer(4, 2), "TransformerEncoderLayer"),
        ("mha", "builtins.str"),
        (None, "builtins.NoneType"),
    ],
)
def test_from_torch_type_error_names_argument_and_type(given: object, type_name: str) -> None:
    with pytest.raises(TypeError) as info:
        PaperMultiheadAttention.from_torch(given)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("mha: expected torch.nn.MultiheadAttention")
    assert type_name in message


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0, 1), {}, ValueError, "embed_dim: expected an int > 0, got 0"),
        ((4, -2), {}, ValueError, "num_heads: expected an int > 0, got -2"),
        (
            (10, 3),
            {},
            ValueError,
            (
                "embed_dim: expected a multiple of num_heads = 3 "
                "(each head gets d_k = embed_dim / num_heads features), got 10"
            ),
        ),
        ((4.0, 2), {}, TypeError, "embed_dim: expected an int > 0, got float 4.0"),
        ((4, True), {}, TypeError, "num_heads: expected an int > 0, got bool True"),
        (
            (4, 2),
            {"dropout": 1.5},
            ValueError,
            "dropout: expected a probability in [0, 1], got 1.5",
        ),
        (
            (4, 2),
            {"dropout": "0.1"},
            TypeError,
            "dropout: expected a float in [0, 1], got str '0.1'",
        ),
    ],
)
def test_constructor_rejects_bad_settings(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        PaperMultiheadAttention(*args, **kwargs)


X = torch.randn(2, 3, 4)  # (N, L, E) = (2, 3, 4), for a module with batch_first=True
KV = torch.randn(2, 5, 4)  # (N, S, E) = (2, 5, 4)
BOOL = torch.bool
BAD_FORWARD = [
    (
        (X[0, 0], X[0, 0], X[0, 0]),
        {},
        ValueError,
        (
            "query: expected 2 or 3 dimensions, (N, L, E) batched or (L, E) unbatched, "
            "got 1 dimensions, shape (4,)"
        ),
    ),
    (
        (X, KV[0], KV),
        {},
        ValueError,
        "key: expected shape (N, S, E) = (2, *, 4), got (5, 4) (N from query)",
    ),
    (
        (X, KV, KV[..., :3]),
        {},
        ValueError,
        "value: expected shape (N, S, E) = (2, 5, 4), got (2, 5, 3) (N, S from key)",
    ),
    (
        (X[..., :2], KV, KV),
        {},
        ValueError,
        "query: expected shape (N, L, E) = (2, 3, 4), got (2, 3, 2)",
    ),
    (
        (X, KV[:1], KV[:1]),
        {},
        ValueError,
        "key: expected shape (N, S, E) = (2, 5, 4), got (1, 5, 4) (N from query)",
    ),
    (
        (X, KV, KV[:, :4]),
        {},
        ValueError,
        "value: expected shape (N, S, E) = (2, 5, 4), got (2, 4, 4) (N, S from key)",
    ),
    (
        (X.double(), KV, KV),
        {},
        TypeError,
        "query: expected dtype torch.float32 (the parameters' dtype), got torch.float64",
    ),
    (
        (X, KV, KV.double()),
        {},
        TypeError,
        "value: expected dtype torch.float32 (the parameters' dtype), got torch.float64",
    ),
    (([1.0], KV, KV), {}, TypeError, "query: expected a torch.Tensor, got list"),
    (
        (X, KV, KV),
        {"key_padding_mask": torch.zeros(2, 4, dtype=BOOL)},
        ValueError,
        "key_padding_mask: expected shape (N, S) = (2, 5), got (2, 4)",
    ),
    (
        (X, KV, KV),
        {"key_padding_mask": torch.zeros(5, dtype=BOOL)},
        ValueError,
        "key_padding_mask: expected shape (N, S) = (2, 5), got (5,)",
    ),
    (
        (X, KV, KV),
        {"key_padding_mask": torch.zeros(2, 5, dtype=torch.int64)},
        TypeError,
        (
            "key_padding_mask: expected dtype torch.bool or torch.float32 "
            "(bool, or float of the query's dtype), got torch.int64"
        ),
    ),
    (
        (X, KV, KV),
        {"attn_mask": torch.zeros(3, 5, dtype=torch.float64)},
        TypeError,
        (
            "attn_mask: expected dtype torch.bool or torch.float32 "
            "(bool, or float of the query's dtype), got torch.float64"
        ),
    ),
    (
        (X, KV, KV),
        {"attn_mask": torch.zeros(5, 3, dtype=BOOL)},
        ValueError,
        "attn_mask: expected shape (L, S) = (3, 5) or (N*H, L, S) = (4, 3, 5), got (5, 3)",
    ),
    (
        (X, KV, KV),
        {"attn_mask": torch.zeros(2, 3, 5, dtype=BOOL)},
        ValueError,
        "attn_mask: expected shape (L, S) = (3, 5) or (N*H, L, S) = (4, 3, 5), got (2, 3, 5)",
    ),
    (
        (X[0], KV[0], KV[0]),
        {"attn_mask": torch.zeros(4, 3, 5, dtype=BOOL)},
        ValueError,
        "attn_mask: expected shape (L, S) = (3, 5) or (H, L, S) = (2, 3, 5), got (4, 3, 5)",
    ),
    (
        (X[0], KV[0], KV[0]),
        {"key_padding_mask": torch.zeros(1, 5, dtype=BOOL)},
        ValueError,
        "key_padding_mask: expected shape (S,) = (5,), got (1, 5)",
    ),
    (
        (X, KV, KV),
        {"attn_mask": [[True]]},
        TypeError,
        "attn_mask: expected a torch.Tensor, got list",
    ),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), BAD_FORWARD)
def test_forward_rejects_bad_input(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    paper = PaperMultiheadAttention(4, 2, batch_first=True)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        paper(*args, **kwargs)


def test_forward_checks_batch_in_sequence_first_layout() -> None:
    paper = PaperMultiheadAttention(4, 2)  # batch_first=False: (L, N, E)
    query = torch.randn(3, 2, 4)  # (L, N, E)
    key = torch.randn(5, 1, 4)  # (S, N, E) with the wrong N
    message = "key: expected shape (S, N, E) = (5, 2, 4), got (5, 1, 4) (N from query)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        paper(query, key, key)


# ----------------------------------------------------------------- construction


@pytest.mark.parametrize("dtype", DTYPES)
def test_initialisation_follows_torch(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    paper = PaperMultiheadAttention(16, 4, dtype=dtype)
    bound = math.sqrt(6 / (4 * 16))  # xavier_uniform_ of a (3E, E) matrix
    weights = torch.cat(
        [lin.weight for g in (paper.w_q, paper.w_k, paper.w_v) for lin in linears(g)]
    )
    assert weights.dtype == dtype
    assert weights.abs().max() <= bound
    assert weights.abs().max() > 0.8 * bound  # uses the range, not a narrower one
    assert weights.std() > 0.8 * bound / math.sqrt(3)
    biases = [lin.bias for g in (paper.w_q, paper.w_k, paper.w_v) for lin in linears(g)]
    assert all(b is not None and not b.any() for b in biases)
    assert paper.w_o.bias is not None
    assert not paper.w_o.bias.any()
    assert paper.w_o.weight.abs().max() > 0


def test_repr_names_the_settings() -> None:
    text = repr(PaperMultiheadAttention(6, 3, dropout=0.1, bias=False, batch_first=True))
    assert "embed_dim=6, num_heads=3, dropout=0.1, bias=False, batch_first=True" in text
    assert "(w_q): ModuleList" in text
    assert "Linear(in_features=6, out_features=2" in text


def test_docstring_examples_run() -> None:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    tests = finder.find(attnlens.paper)  # globals: the module's own, as in doctest.testmod
    assert sum(len(t.examples) for t in tests) > 10
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0


# -------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_on_gpu(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(31)
    mha = nn.MultiheadAttention(16, 4, batch_first=True, dtype=dtype)
    randomize_(mha, g)
    mha = mha.cuda().eval()
    paper = PaperMultiheadAttention.from_torch(mha)
    assert paper.w_o.weight.is_cuda
    x = torch.randn(3, 7, 16, generator=g, dtype=dtype).cuda()
    kpm = torch.zeros(3, 7, dtype=torch.bool, device="cuda")
    kpm[0, 5:] = True
    expected = mha(x, x, x, key_padding_mask=kpm, average_attn_weights=False)
    actual = paper(x, x, x, key_padding_mask=kpm)
    # TF32 or reduced-precision matmuls may differ from the CPU tolerances a little.
    torch.testing.assert_close(actual[0], expected[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(actual[1], expected[1], atol=1e-4, rtol=1e-4)
    assert_same_state(paper.to_torch(), mha)
