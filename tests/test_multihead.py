"""attnlens.MultiheadAttention as a drop-in for torch.nn.MultiheadAttention."""

from __future__ import annotations

import doctest
import inspect
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

import attnlens.multihead
from attnlens.multihead import MultiheadAttention

pytestmark = pytest.mark.usefixtures("single_thread")

FLOAT_DTYPES = (torch.float32, torch.float64)
Tol = Callable[[torch.dtype], dict[str, float]]

CONFIGS = {
    "default": {},
    "no bias": {"bias": False},
    "bias_kv": {"add_bias_kv": True},
    "zero_attn": {"add_zero_attn": True},
    "kdim": {"kdim": 3},
    "kdim vdim no bias": {"kdim": 3, "vdim": 5, "bias": False},
    "everything": {
        "kdim": 3,
        "vdim": 5,
        "add_bias_kv": True,
        "add_zero_attn": True,
        "dropout": 0.1,
    },
}


def _pair(seed: int = 0, **config: Any) -> tuple[nn.MultiheadAttention, MultiheadAttention]:
    """torch's module and ours, each created right after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(6, 2, **config)
    torch.manual_seed(seed)
    ours = MultiheadAttention(6, 2, **config)
    return theirs, ours


def test_constructor_signature_is_torchs() -> None:
    ours = inspect.signature(MultiheadAttention).parameters
    theirs = inspect.signature(nn.MultiheadAttention).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
    forward_ours = inspect.signature(MultiheadAttention.forward).parameters
    forward_theirs = inspect.signature(nn.MultiheadAttention.forward).parameters
    assert [(p.name, p.default) for p in forward_ours.values()] == [
        (p.name, p.default) for p in forward_theirs.values()
    ]


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_same_parameters_state_dict_and_initial_values(config: dict[str, Any]) -> None:
    theirs, ours = _pair(**config)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [name for name, _ in ours.named_parameters()] == [
        name for name, _ in theirs.named_parameters()
    ]
    for (name, ours_value), theirs_value in zip(
        ours.state_dict().items(), theirs.state_dict().values(), strict=True
    ):
        assert ours_value.shape == theirs_value.shape, name
        assert torch.equal(ours_value, theirs_value), name  # same seed, same init order
    for attribute in (
        "embed_dim",
        "kdim",
        "vdim",
        "_qkv_same_embed_dim",
        "num_heads",
        "dropout",
        "batch_first",
        "head_dim",
        "add_zero_attn",
    ):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    for attribute in (
        "in_proj_weight",
        "q_proj_weight",
        "k_proj_weight",
        "v_proj_weight",
        "in_proj_bias",
        "bias_k",
        "bias_v",
    ):
        assert (getattr(ours, attribute) is None) == (getattr(theirs, attribute) is None), attribute
    assert isinstance(ours.out_proj, NonDynamicallyQuantizableLinear)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_load_state_dict_both_ways(config: dict[str, Any]) -> None:
    theirs, _ = _pair(seed=1, **config)
    _, ours = _pair(seed=2, **config)
    ours.load_state_dict(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    theirs_again, _ = _pair(seed=3, **config)
    _, ours_again = _pair(seed=4, **config)
    theirs_again.load_state_dict(ours_again.state_dict())
    for a, b in zip(
        ours_again.state_dict().values(), theirs_again.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_factory_kwargs(float_dtype: torch.dtype) -> None:
    mha = MultiheadAttention(4, 2, kdim=3, add_bias_kv=True, dtype=float_dtype, device="cpu")
    assert {p.dtype for p in mha.parameters()} == {float_dtype}
    assert {p.device.type for p in mha.parameters()} == {"cpu"}


@dataclass
class ModuleCase:
    config: dict[str, Any]
    train: bool
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    kwargs: dict[str, Any]
    dtype: torch.dtype


@st.composite
def module_cases(draw: st.DrawFn) -> ModuleCase:
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    heads, head_dim = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    embed_dim = heads * head_dim
    kdim = draw(st.sampled_from([None, 2, 5]))
    vdim = draw(st.sampled_from([None, 3]))
    train = draw(st.booleans())
    config = {
        "embed_dim": embed_dim,
        "num_heads": heads,
        "dropout": 0.0 if train else draw(st.sampled_from([0.0, 0.3])),
        "bias": draw(st.booleans()),
        "add_bias_kv": draw(st.booleans()),
        "add_zero_attn": draw(st.booleans()),
        "kdim": kdim,
        "vdim": vdim,
        "batch_first": draw(st.booleans()),
        "dtype": dtype,
    }
    batched = draw(st.booleans())
    batch, length, source_length = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 4)),
    )

    def sequence(seq: int, features: int) -> torch.Tensor:
        shape = ((batch, seq) if config["batch_first"] else (seq, batch)) if batched else (seq,)
        return torch.randn(*shape, features, generator=gen, dtype=dtype)

    self_attention = kdim is None and vdim is None and draw(st.booleans())
    query = sequence(length, embed_dim)
    if self_attention:
        inputs = (query, query, query)
        source_length = length
    else:
        inputs = (
            query,
            sequence(source_length, kdim or embed_dim),
            sequence(source_length, vdim or embed_dim),
        )

    kwargs: dict[str, Any] = {
        "need_weights": draw(st.booleans()),
        "average_attn_weights": draw(st.booleans()),
    }
    if draw(st.booleans()):
        shape = (batch, source_length) if batched else (source_length,)
        kwargs["key_padding_mask"] = torch.rand(shape, generator=gen) < 0.3
    mask_kind = draw(st.sampled_from([None, "bool", "float", "causal"]))
    per_head = draw(st.booleans())
    mask_shape = (
        ((batch if batched else 1) * heads, length, source_length)
        if per_head
        else (length, source_length)
    )
    if mask_kind == "bool":
        kwargs["attn_mask"] = torch.rand(mask_shape, generator=gen) < 0.3
    elif mask_kind == "float":
        kwargs["attn_mask"] = torch.randn(mask_shape, generator=gen, dtype=dtype)
    elif mask_kind == "causal":
        kwargs["attn_mask"] = torch.ones(length, source_length, dtype=torch.bool).triu(1)
        kwargs["is_causal"] = True
    return ModuleCase(config, train, inputs, kwargs, dtype)


@settings(max_examples=300)
@given(case=module_cases())
def test_matches_torch_module(case: ModuleCase, tol: Tol) -> None:
    """Outputs and weights equal torch's module for random configurations and calls."""
    theirs = nn.MultiheadAttention(**case.config).train(case.train)
    ours = MultiheadAttention(**case.config).train(case.train)
    ours.load_state_dict(theirs.state_dict())
    output, weights = ours(*case.inputs, **case.kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Support for mismatched", UserWarning)
        expected_output, expected_weights = theirs(*case.inputs, **case.kwargs)
    torch.testing.assert_close(output, expected_output, equal_nan=True, **tol(case.dtype))
    if expected_weights is None:
        assert weights is None
    else:
        assert weights is not None
        torch.testing.assert_close(weights, expected_weights, equal_nan=True, **tol(case.dtype))


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_gradients_match_torch(config: dict[str, Any], tol: Tol) -> None:
    config = {**config, "dropout": 0.0}
    theirs, ours = _pair(**config)
    x = torch.randn(4, 2, 6)
    memory = torch.randn(5, 2, config.get("kdim", 6))
    values = torch.randn(5, 2, config.get("vdim", 6))
    for module in (theirs, ours):
        output, weights = module(x, memory, values)
        (output.square().sum() + weights.square().sum()).backward()
    grads = {name: p.grad for name, p in ours.named_parameters()}
    for name, p in theirs.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(grads[name], p.grad, **tol(torch.float32))


# --- Pitfalls -------------------------------------------------------------------------------


def test_training_weights_have_dropout_applied(torch_seed: int) -> None:
    mha = MultiheadAttention(4, 2, dropout=0.5, batch_first=True)
    x = torch.randn(2, 6, 4)
    _, weights = mha.train()(x, x, x, average_attn_weights=False)
    assert weights is not None
    assert (weights == 0).any()
    assert not torch.allclose(weights.sum(-1), torch.ones(2, 2, 6))
    _, weights = mha.eval()(x, x, x, average_attn_weights=False)
    assert weights is not None
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 6))


def test_fully_masked_row_in_inference_differs_from_torchs_fast_path() -> None:
    """Documented difference: torch's fused inference path gives NaN; we follow its regular path.

    With need_weights=False, torch's regular (SDPA) path returns zeros before out_proj,
    so the output row is out_proj.bias; its fast path (eval, no grad, batch_first,
    self-attention) returns NaN. Ours always gives the regular path's answer.
    """
    theirs, ours = _pair(batch_first=True)
    with torch.no_grad():
        theirs.out_proj.bias.normal_()
    ours.load_state_dict(theirs.state_dict())
    theirs.eval()
    ours.eval()
    x = torch.randn(2, 3, 6)
    padding = torch.tensor([[False, False, True], [True, True, True]])
    with torch.no_grad():
        fast, _ = theirs(x, x, x, key_padding_mask=padding, need_weights=False)
        ours_output, _ = ours(x, x, x, key_padding_mask=padding, need_weights=False)
    assert fast[1].isnan().all()  # torch's fast path
    torch.testing.assert_close(ours_output[1], theirs.out_proj.bias.expand(3, 6))
    torch.testing.assert_close(ours_output[0], fast[0])
    # torch's regular path (grad enabled) agrees with ours.
    regular, _ = theirs(x, x, x, key_padding_mask=padding, need_weights=False)
    torch.testing.assert_close(ours_output, regular.detach())
    # With need_weights=True every path gives NaN.
    with torch.no_grad():
        ours_output, _ = ours(x, x, x, key_padding_mask=padding)
    assert ours_output[1].isnan().all()


def test_stands_in_for_torchs_module_in_an_encoder_layer(tol: Tol) -> None:
    """Swapped into nn.TransformerEncoderLayer: same outputs, also on its fused inference path."""
    layer = nn.TransformerEncoderLayer(6, 2, dim_feedforward=8, dropout=0.0, batch_first=True)
    swapped = nn.TransformerEncoderLayer(6, 2, dim_feedforward=8, dropout=0.0, batch_first=True)
    swapped.load_state_dict(layer.state_dict())
    swapped.self_attn = MultiheadAttention(6, 2, batch_first=True)
    swapped.self_attn.load_state_dict(layer.self_attn.state_dict())
    x = torch.randn(2, 4, 6)
    padding = torch.tensor([[False, False, False, True], [False, False, False, False]])
    torch.testing.assert_close(
        swapped(x, src_key_padding_mask=padding), layer(x, src_key_padding_mask=padding)
    )
    layer.eval()
    swapped.eval()
    mask = torch.zeros(4, 4, dtype=torch.bool)
    calls = []
    merge_masks = swapped.self_attn.merge_masks

    def spy(*args: Any) -> tuple[torch.Tensor | None, int | None]:
        calls.append(args)
        return merge_masks(*args)

    swapped.self_attn.merge_masks = spy  # type: ignore[method-assign]
    with torch.no_grad():  # torch's fast path, which calls self_attn.merge_masks
        expected = layer(x, src_mask=mask, src_key_padding_mask=padding)
        got = swapped(x, src_mask=mask, src_key_padding_mask=padding)
    assert len(calls) == 1
    torch.testing.assert_close(got, expected, **tol(torch.float32))


# --- Bad input ------------------------------------------------------------------------------


BAD_CONSTRUCTORS: dict[str, tuple[Callable[[], object], type[Exception], list[str]]] = {
    "not divisible": (
        lambda: MultiheadAttention(5, 2),
        ValueError,
        ["embed_dim", "multiple of num_heads = 2", "5"],
    ),
    "zero heads": (lambda: MultiheadAttention(4, 0), ValueError, ["num_heads", "> 0", "got 0"]),
    "negative heads": (
        lambda: MultiheadAttention(4, -2),
        ValueError,
        ["num_heads", "> 0", "got -2"],
    ),
    "zero embed_dim": (lambda: MultiheadAttention(0, 1), ValueError, ["embed_dim", "> 0", "got 0"]),
    "float embed_dim": (
        lambda: MultiheadAttention(4.0, 2),
        TypeError,
        ["embed_dim", "int", "float"],
    ),  # type: ignore[arg-type]
    "zero kdim": (lambda: MultiheadAttention(4, 2, kdim=0), ValueError, ["kdim", "> 0", "got 0"]),
    "dropout": (
        lambda: MultiheadAttention(4, 2, dropout=1.5),
        ValueError,
        ["dropout", "[0, 1]", "1.5"],
    ),
}


@pytest.mark.parametrize("case", BAD_CONSTRUCTORS.values(), ids=BAD_CONSTRUCTORS.keys())
def test_bad_constructor_arguments(
    case: tuple[Callable[[], object], type[Exception], list[str]],
) -> None:
    call, error, fragments = case
    with pytest.raises(error) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def _forward(
    batch_first: bool = True, kdim: int | None = None, **kwargs: Any
) -> Callable[..., object]:
    """A batch-first module (E=4, H=2) called with N=2, L=3, S=5 and some inputs changed.

    ``call()`` uses our class, ``call(nn.MultiheadAttention)`` torch's.
    """

    def call(cls: type[nn.Module] = MultiheadAttention) -> object:
        mha = cls(4, 2, kdim=kdim, vdim=kdim, batch_first=batch_first)

        def seq(n: int, s: int, e: int) -> torch.Tensor:
            return torch.zeros(n, s, e) if batch_first else torch.zeros(s, n, e)

        inputs = {"query": seq(2, 3, 4), "key": seq(2, 5, kdim or 4), "value": seq(2, 5, kdim or 4)}
        inputs |= kwargs
        return mha(**inputs)

    return call


BAD_FORWARDS: dict[str, tuple[Callable[..., object], type[Exception], list[str]]] = {
    "query not a tensor": (_forward(query=[[1.0]]), TypeError, ["query", "torch.Tensor", "list"]),
    "key/value lengths": (
        _forward(value=torch.zeros(2, 4, 4)),
        ValueError,
        ["value", "(N, S, vdim) = (2, 5, 4)", "(2, 4, 4)"],
    ),
    "key batch": (
        _forward(key=torch.zeros(3, 5, 4)),
        ValueError,
        ["key", "(N, S, kdim) = (2, 5, 4)", "(3, 5, 4)"],
    ),
    "query features": (
        _forward(query=torch.zeros(2, 3, 5)),
        ValueError,
        ["query", "(N, L, E) = (2, 3, 4)", "(2, 3, 5)"],
    ),
    "key features (kdim)": (
        _forward(kdim=3, key=torch.zeros(2, 5, 4)),
        ValueError,
        ["key", "(N, S, kdim) = (2, 5, 3)", "(2, 5, 4)"],
    ),
    "sequence first": (
        _forward(batch_first=False, value=torch.zeros(4, 2, 4)),
        ValueError,
        ["value", "(S, N, vdim) = (5, 2, 4)", "(4, 2, 4)"],
    ),
    "key_padding_mask shape": (
        _forward(key_padding_mask=torch.zeros(2, 3, dtype=torch.bool)),
        ValueError,
        ["key_padding_mask", "(N, S) = (2, 5)", "(2, 3)"],
    ),
    "attn_mask shape": (
        _forward(attn_mask=torch.zeros(5, 3, dtype=torch.bool)),
        ValueError,
        ["attn_mask", "(L, S) = (3, 5)", "(5, 3)"],
    ),
    "attn_mask dtype": (
        _forward(attn_mask=torch.zeros(3, 5, dtype=torch.int32)),
        TypeError,
        ["attn_mask", "torch.bool", "torch.int32"],
    ),
    "input dtype": (
        _forward(
            query=torch.zeros(2, 3, 4, dtype=torch.float64),
            key=torch.zeros(2, 5, 4, dtype=torch.float64),
            value=torch.zeros(2, 5, 4, dtype=torch.float64),
        ),
        TypeError,
        ["query", "torch.float32", "parameters", "torch.float64"],
    ),
}


@pytest.mark.parametrize("case", BAD_FORWARDS.values(), ids=BAD_FORWARDS.keys())
def test_bad_forward_input_in_the_callers_layout(
    case: tuple[Callable[[], object], type[Exception], list[str]],
) -> None:
    call, error, fragments = case
    with pytest.raises(error) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


# --- TorchScript ----------------------------------------------------------------------------

#: torch.jit.script, save and load are deprecated in torch 2.13 and warn.
IGNORE_JIT_DEPRECATION = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated")


@IGNORE_JIT_DEPRECATION
def test_torchscript_the_issues_module() -> None:
    """``torch.jit.script(attnlens.MultiheadAttention(128, 8))`` works and computes the same."""
    mha = MultiheadAttention(128, 8)
    scripted = torch.jit.script(mha)
    x = torch.randn(5, 2, 128)
    torch.testing.assert_close(scripted(x, x, x), mha(x, x, x))
    buffer = io.BytesIO()  # and it saves and loads like any scripted module
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.jit.load(buffer)(x, x, x), mha(x, x, x))


@IGNORE_JIT_DEPRECATION
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize("batch_first", [False, True])
def test_torchscript_shares_parameters(config: dict[str, Any], batch_first: bool, tol: Tol) -> None:
    """The scripted module is torch's, on the same parameter tensors, in the same mode."""
    _, ours = _pair(**config, batch_first=batch_first)
    ours.eval()
    scripted = torch.jit.script(ours)
    assert list(scripted.state_dict()) == list(ours.state_dict())
    assert not scripted.training

    def seq(length: int, features: int) -> torch.Tensor:
        x = torch.randn(length, 2, features)
        return x.transpose(0, 1) if batch_first else x

    x, memory, values = seq(4, 6), seq(5, config.get("kdim", 6)), seq(5, config.get("vdim", 6))
    padding = torch.tensor([[False, False, True, False, False]] * 2)
    kwargs: dict[str, Any] = {"key_padding_mask": padding, "average_attn_weights": False}
    torch.testing.assert_close(
        scripted(x, memory, values, **kwargs), ours(x, memory, values, **kwargs)
    )
    with torch.no_grad():  # edit our parameter: the scripted module sees it
        ours.out_proj.weight.mul_(2.0)
    output, _ = scripted(x, memory, values)
    torch.testing.assert_close(output, ours(x, memory, values)[0], **tol(torch.float32))


@IGNORE_JIT_DEPRECATION
def test_torchscript_a_model_with_ours_inside(tol: Tol) -> None:
    """``torch.jit.script`` prepares every submodule: ours inside torch's encoder layer."""
    layer = nn.TransformerEncoderLayer(6, 2, dim_feedforward=8, dropout=0.0, batch_first=True)
    layer.self_attn = MultiheadAttention(6, 2, batch_first=True)
    layer.eval()
    scripted = torch.jit.script(layer)
    x = torch.randn(2, 4, 6)
    torch.testing.assert_close(scripted(x), layer(x), **tol(torch.float32))
    assert isinstance(layer.self_attn, MultiheadAttention)  # the eager model is unchanged


# --- Errors torch's callers catch -------------------------------------------------------------


@pytest.mark.parametrize("case", BAD_FORWARDS.items(), ids=BAD_FORWARDS.keys())
def test_bad_forward_input_is_caught_like_torchs(
    case: tuple[str, tuple[Callable[[], object], type[Exception], list[str]]],
) -> None:
    """Our error is an instance of what torch's module raises (AssertionError, RuntimeError).

    ``query not a tensor`` is left out: torch fails there with an AttributeError on the
    list, not with a check.
    """
    name, (call, error, _) = case
    with pytest.raises(error) as ours:
        call()
    assert isinstance(ours.value, AssertionError)
    assert isinstance(ours.value, RuntimeError)
    if name == "query not a tensor":
        return
    with pytest.raises(Exception) as theirs:  # noqa: PT011 - any class: compared below
        call(nn.MultiheadAttention)
    assert type(theirs.value) in {AssertionError, RuntimeError}
    assert isinstance(ours.value, type(theirs.value))


@pytest.mark.parametrize("case", BAD_CONSTRUCTORS.items(), ids=BAD_CONSTRUCTORS.keys())
def test_bad_constructor_error_classes(
    case: tuple[str, tuple[Callable[[], object], type[Exception], list[str]]],
) -> None:
    """Constructor errors are also AssertionError and RuntimeError (torch asserts there)."""
    _, (call, error, _) = case
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value, RuntimeError)


def test_docstring_examples_run() -> None:
    """The ``>>>`` examples in the docstrings run and print what they show."""
    result = doctest.testmod(attnlens.multihead, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# --- GPU ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_matches_torch_module_on_cuda(dtype: torch.dtype) -> None:
    theirs = nn.MultiheadAttention(16, 4, batch_first=True, device="cuda", dtype=dtype)
    ours = MultiheadAttention(16, 4, batch_first=True, device="cuda", dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 9, 16, device="cuda", dtype=dtype)
    padding = torch.zeros(2, 9, dtype=torch.bool, device="cuda")
    padding[1, 6:] = True
    tolerance = (
        {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 5e-3, "rtol": 5e-3}
    )
    for need_weights in (True, False):
        output, weights = ours(x, x, x, key_padding_mask=padding, need_weights=need_weights)
        expected, expected_weights = theirs(
            x, x, x, key_padding_mask=padding, need_weights=need_weights
        )
        torch.testing.assert_close(output, expected, **tolerance)
        if need_weights:
            torch.testing.assert_close(weights, expected_weights, **tolerance)
