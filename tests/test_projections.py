"""attnlens.projections: W_Q, W_K, W_V as views, and the head split."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import attnlens._checks
import attnlens.projections
from attnlens.multihead import MultiheadAttention
from attnlens.projections import InProjection, merge_heads, split_heads, split_in_proj

pytestmark = pytest.mark.usefixtures("single_thread")

MODULES = {"torch": nn.MultiheadAttention, "attnlens": MultiheadAttention}
Tol = Callable[[torch.dtype], dict[str, float]]


def _shares_storage(view: torch.Tensor, base: torch.Tensor) -> bool:
    return view.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()


@pytest.mark.parametrize("module", MODULES.values(), ids=MODULES.keys())
def test_packed_layout_gives_views(module: type[nn.Module]) -> None:
    embed_dim = 6
    mha = module(embed_dim, 3)
    proj = split_in_proj(mha)
    assert isinstance(proj, InProjection)
    weight, bias = mha.in_proj_weight, mha.in_proj_bias
    assert torch.equal(torch.cat([proj.q_weight, proj.k_weight, proj.v_weight]), weight)
    assert torch.equal(torch.cat([proj.q_bias, proj.k_bias, proj.v_bias]), bias)  # type: ignore[list-item]
    block = embed_dim * embed_dim * weight.element_size()
    for index, part in enumerate((proj.q_weight, proj.k_weight, proj.v_weight)):
        assert part.shape == (embed_dim, embed_dim)
        assert _shares_storage(part, weight)
        assert part.data_ptr() == weight.data_ptr() + index * block
    for index, part in enumerate((proj.q_bias, proj.k_bias, proj.v_bias)):
        assert part is not None
        assert _shares_storage(part, bias)
        assert part.data_ptr() == bias.data_ptr() + index * embed_dim * bias.element_size()


@pytest.mark.parametrize("module", MODULES.values(), ids=MODULES.keys())
def test_editing_a_view_edits_the_module(module: type[nn.Module]) -> None:
    mha = module(4, 2)
    proj = split_in_proj(mha)
    with torch.no_grad():
        proj.k_weight.fill_(7.0)
        proj.v_bias.fill_(-1.0)  # type: ignore[union-attr]
    assert torch.equal(mha.in_proj_weight[4:8], torch.full((4, 4), 7.0))
    assert torch.equal(mha.in_proj_bias[8:], torch.full((4,), -1.0))
    assert not (mha.in_proj_weight[:4] == 7.0).any()


def test_gradient_flows_to_the_module_parameters() -> None:
    mha = nn.MultiheadAttention(4, 2)
    proj = split_in_proj(mha)
    proj.v_weight.sum().backward()
    grad = mha.in_proj_weight.grad
    assert grad is not None
    assert torch.equal(grad[8:], torch.ones(4, 4))
    assert torch.equal(grad[:8], torch.zeros(8, 4))


@pytest.mark.parametrize("module", MODULES.values(), ids=MODULES.keys())
def test_separate_layout(module: type[nn.Module]) -> None:
    mha = module(4, 2, kdim=3, vdim=5)
    assert mha.in_proj_weight is None
    proj = split_in_proj(mha)
    assert proj.q_weight is mha.q_proj_weight
    assert proj.k_weight is mha.k_proj_weight
    assert proj.v_weight is mha.v_proj_weight
    assert (proj.k_weight.shape, proj.v_weight.shape) == ((4, 3), (4, 5))
    assert proj.k_bias is not None
    assert _shares_storage(proj.k_bias, mha.in_proj_bias)
    assert torch.equal(torch.cat([proj.q_bias, proj.k_bias, proj.v_bias]), mha.in_proj_bias)  # type: ignore[list-item]


@pytest.mark.parametrize("module", MODULES.values(), ids=MODULES.keys())
@pytest.mark.parametrize("kdim", [None, 3])
def test_no_bias(module: type[nn.Module], kdim: int | None) -> None:
    proj = split_in_proj(module(4, 2, bias=False, kdim=kdim))
    assert (proj.q_bias, proj.k_bias, proj.v_bias) == (None, None, None)


@pytest.mark.parametrize("not_mha", [nn.Linear(4, 4), nn.TransformerEncoderLayer(4, 2), "mha"])
def test_split_in_proj_refuses_other_objects(not_mha: object) -> None:
    with pytest.raises(TypeError) as info:
        split_in_proj(not_mha)  # type: ignore[arg-type]
    message = str(info.value)
    assert "mha" in message
    assert "torch.nn.MultiheadAttention" in message
    assert type(not_mha).__qualname__ in message


@pytest.mark.parametrize("kdim", [None, 3])
def test_views_reproduce_torch_per_head_weights(
    float_dtype: torch.dtype, kdim: int | None, tol: Tol
) -> None:
    """Project with the views, split heads, softmax: the module's own per-head weights."""
    mha = nn.MultiheadAttention(
        6, 3, batch_first=True, kdim=kdim, vdim=kdim, dtype=float_dtype
    ).eval()
    x = torch.randn(2, 5, 6, dtype=float_dtype)
    memory = torch.randn(2, 4, kdim or 6, dtype=float_dtype)
    proj = split_in_proj(mha)
    q = split_heads(F.linear(x, proj.q_weight, proj.q_bias), 3)  # (N, H, L, D)
    k = split_heads(F.linear(memory, proj.k_weight, proj.k_bias), 3)  # (N, H, S, D)
    weights = torch.softmax(q @ k.transpose(-2, -1) / 2**0.5, dim=-1)  # D = 2
    _, expected = mha(x, memory, memory, average_attn_weights=False)
    torch.testing.assert_close(weights, expected, **tol(float_dtype))


# --- split_heads / merge_heads --------------------------------------------------------


def test_split_heads_slices_features_per_head() -> None:
    x = torch.randn(2, 5, 6)  # (N, L, E)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 2)
    for h in range(3):
        assert torch.equal(heads[:, h], x[..., 2 * h : 2 * h + 2])
    assert _shares_storage(heads, x)  # a view


def test_split_heads_unbatched() -> None:
    x = torch.randn(5, 6)  # (L, E)
    heads = split_heads(x, 2)
    assert heads.shape == (2, 5, 3)
    assert torch.equal(heads[1], x[:, 3:])
    assert torch.equal(merge_heads(heads), x)


@settings(max_examples=60)
@given(
    leading=st.lists(st.integers(1, 3), max_size=2),
    length=st.integers(0, 4),
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 3),
)
def test_merge_heads_inverts_split_heads(
    leading: list[int], length: int, heads: int, head_dim: int
) -> None:
    x = torch.randn(*leading, length, heads * head_dim)
    split = split_heads(x, heads)
    assert split.shape == (*leading, heads, length, head_dim)
    assert torch.equal(merge_heads(split), x)
    assert torch.equal(split_heads(merge_heads(split), heads), split)


@pytest.mark.parametrize(
    ("call", "error", "fragments"),
    [
        (lambda: split_heads(torch.zeros(2, 5, 6), 4), ValueError, ["num_heads", "6", "4"]),
        (lambda: split_heads(torch.zeros(2, 5, 6), 0), ValueError, ["num_heads", "> 0", "0"]),
        (lambda: split_heads(torch.zeros(2, 5, 6), 2.0), TypeError, ["num_heads", "int", "float"]),
        (lambda: split_heads(torch.zeros(6), 2), ValueError, ["x", "(N, L, E)", "(6,)"]),
        (lambda: split_heads([[1.0, 2.0]], 2), TypeError, ["x", "torch.Tensor", "list"]),
        (lambda: merge_heads(torch.zeros(5, 6)), ValueError, ["x", "(N, H, L, D)", "(5, 6)"]),
        (lambda: merge_heads(None), TypeError, ["x", "torch.Tensor", "NoneType"]),
    ],
)
def test_bad_input(
    call: Callable[[], object], error: type[Exception], fragments: list[str]
) -> None:
    with pytest.raises(error) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.parametrize(
    "module",
    [attnlens.projections, attnlens._checks],
    ids=["attnlens.projections", "attnlens._checks"],
)
def test_docstring_examples_run(module: object) -> None:
    """The ``>>>`` examples in the docstrings run and print what they show."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
