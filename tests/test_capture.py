"""capture_attention: per-head weights of unmodified models, outputs untouched.

The reference for every captured tensor is torch's own weights path: the same attention
module called on the same inputs with ``need_weights=True, average_attn_weights=False``
(``stock_run`` forces that with hooks and with torch's fast paths switched off, the
"stock approach" that capture_attention must not need). One test also rebuilds the
weights from the parameters by hand.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attnlens.capture import AttentionCapture, capture_attention
from attnlens.multihead import MultiheadAttention as AttnlensMHA

pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    # nn.TransformerEncoder's nested-tensor path warns that nested tensors are a prototype
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning"),
]

TOL32 = {"rtol": 1e-5, "atol": 1e-6}

ATTENTION_TYPES = (nn.MultiheadAttention, AttnlensMHA)


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def grad_mode(mode: str) -> Iterator[None]:
    """ "grad" (autograd on), "no_grad" or "inference"."""
    if mode == "grad":
        with torch.enable_grad():
            yield
    elif mode == "no_grad":
        with torch.no_grad():
            yield
    else:
        with torch.inference_mode():
            yield


@contextlib.contextmanager
def fastpath(enabled: bool) -> Iterator[None]:
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def stock_run(model: nn.Module, run: Callable[[], Any]) -> list[tuple[str, torch.Tensor]]:
    """Every attention call's weights from torch's need_weights=True path (regular path)."""
    names = {id(m): n for n, m in model.named_modules() if isinstance(m, ATTENTION_TYPES)}
    calls: list[tuple[str, torch.Tensor]] = []

    def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def post(module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        calls.append((names[id(module)], output[1].detach()))

    handles = []
    for _, module in model.named_modules():
        if isinstance(module, ATTENTION_TYPES):
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(module.register_forward_hook(post, with_kwargs=True))
    try:
        with fastpath(False):
            run()
    finally:
        for handle in handles:
            handle.remove()
    return calls


class CallCounter:
    """Counts calls of a torch function patched with monkeypatch (proves a path ran)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.count = 0
        original = getattr(torch, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(torch, name, counting)


def assert_no_trace(model: nn.Module, global_state: tuple[int, int, bool]) -> None:
    """Nothing of a capture is left on the model or in torch's global state."""
    for name, module in model.named_modules():
        assert "forward" not in module.__dict__, name
        assert "_compiled_call_impl" not in module.__dict__, name
        assert not module._forward_hooks, name
        assert not module._forward_pre_hooks, name
    assert snapshot_global_state() == global_state


def snapshot_global_state() -> tuple[int, int, bool]:
    from torch.nn.modules import module as module_mod

    return (
        len(module_mod._global_forward_hooks),
        len(module_mod._global_forward_pre_hooks),
        torch.backends.mha.get_fastpath_enabled(),
    )


def assert_same_calls(
    captured: list[tuple[str, torch.Tensor]],
    expected: list[tuple[str, torch.Tensor]],
    **tol: float,
) -> None:
    assert [n for n, _ in captured] == [n for n, _ in expected]
    for (name, got), (_, want) in zip(captured, expected, strict=True):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, **(tol or TOL32), msg=name)


# -- a single attention module: every option ---------------------------------------------------


@st.composite
def mha_calls(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([2, 3]))
    embed_dim = heads * head_dim
    cross = draw(st.booleans())
    separate = cross and draw(st.booleans())  # kdim/vdim != embed_dim needs cross-attention
    return {
        "cls": draw(st.sampled_from(ATTENTION_TYPES)),
        "embed_dim": embed_dim,
        "heads": heads,
        "bias": draw(st.booleans()),
        "add_bias_kv": draw(st.booleans()),
        "add_zero_attn": draw(st.booleans()),
        "kdim": embed_dim + 1 if separate else None,
        "vdim": embed_dim + 2 if separate else None,
        "batch_first": draw(st.booleans()),
        "batched": draw(st.booleans()),
        "batch": draw(st.integers(1, 3)),
        "tgt_len": draw(st.integers(1, 5)),
        "src_len": draw(st.integers(1, 5)) if cross else None,
        "key_padding_mask": draw(st.sampled_from([None, "bool", "float"])),
        "attn_mask": draw(st.sampled_from([None, "bool2d", "float2d", "bool3d", "float3d"])),
        "need_weights": draw(st.booleans()),
        "average": draw(st.booleans()),
        "training": draw(st.booleans()),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "grad": draw(st.sampled_from(["grad", "no_grad", "inference"])),
        "seed": draw(st.integers(0, 2**16)),
    }


def build_call(c: dict[str, Any]) -> tuple[nn.Module, tuple[torch.Tensor, ...], dict[str, Any]]:
    torch.manual_seed(c["seed"])
    mha = c["cls"](
        c["embed_dim"],
        c["heads"],
        bias=c["bias"],
        add_bias_kv=c["add_bias_kv"],
        add_zero_attn=c["add_zero_attn"],
        kdim=c["kdim"],
        vdim=c["vdim"],
        batch_first=c["batch_first"],
        dtype=c["dtype"],
    )
    mha.train(c["training"])
    if c["add_bias_kv"] or not c["bias"]:
        with torch.no_grad():  # zero-initialised biases would hide mistakes
            for p in mha.parameters():
                p.normal_()
    batch, tgt_len = c["batch"], c["tgt_len"]
    src_len = tgt_len if c["src_len"] is None else c["src_len"]

    def seq(length: int, features: int) -> torch.Tensor:
        if not c["batched"]:
            return torch.randn(length, features, dtype=c["dtype"])
        shape = (batch, length, features) if c["batch_first"] else (length, batch, features)
        return torch.randn(shape, dtype=c["dtype"])

    query = seq(tgt_len, c["embed_dim"])
    if c["src_len"] is None:
        key = value = query
    else:
        key = seq(src_len, c["kdim"] or c["embed_dim"])
        value = seq(src_len, c["vdim"] or c["embed_dim"])
    n = batch if c["batched"] else 1
    kwargs: dict[str, Any] = {
        "need_weights": c["need_weights"],
        "average_attn_weights": c["average"],
    }
    # The last key always takes part, so that no query row is fully masked.
    keep = torch.zeros(n, src_len, dtype=torch.bool)
    keep[:, -1] = True
    if c["key_padding_mask"] is not None:
        padding = (torch.rand(n, src_len) < 0.4) & ~keep  # (N, S), True = padding
        if not c["batched"]:
            padding = padding[0]  # (S,)
        kwargs["key_padding_mask"] = (
            padding if c["key_padding_mask"] == "bool" else padding.to(c["dtype"]) * -1e4
        )
    if c["attn_mask"] is not None:
        shape = (
            (tgt_len, src_len)
            if c["attn_mask"].endswith("2d")
            else (n * c["heads"], tgt_len, src_len)
        )
        masked = (torch.rand(shape) < 0.4) & ~keep[0]
        if c["attn_mask"].startswith("bool"):
            kwargs["attn_mask"] = masked
        else:
            kwargs["attn_mask"] = masked.to(c["dtype"]) * -1e4 + torch.randn(
                shape, dtype=c["dtype"]
            )
        if c["key_padding_mask"] is not None and (c["key_padding_mask"] == "bool") != c[
            "attn_mask"
        ].startswith("bool"):
            # torch warns about (deprecated) mixed mask types; use the same type for both
            kpm = kwargs["key_padding_mask"]
            kwargs["key_padding_mask"] = (
                kpm.to(c["dtype"]) * -1e4 if kpm.dtype == torch.bool else kpm < 0
            )
    return mha, (query, key, value), kwargs


@settings(max_examples=100)
@given(mha_calls())
def test_single_module_matches_torchs_weights_and_returns_the_same(c: dict[str, Any]) -> None:
    mha, args, kwargs = build_call(c)
    with grad_mode(c["grad"]):
        torch.manual_seed(1)
        expected = mha(*args, **kwargs)
        with capture_attention(mha) as cap:
            torch.manual_seed(1)
            got = mha(*args, **kwargs)
        reference = mha(*args, **{**kwargs, "need_weights": True, "average_attn_weights": False})
    # what the caller gets is unchanged, bit for bit
    assert torch.equal(got[0], expected[0])
    if c["need_weights"]:
        assert torch.equal(got[1], expected[1])
    else:
        assert got[1] is None
    # the recorded weights are torch's per-head weights
    ((name, weights),) = cap.calls
    assert name == ""
    assert cap.weights[""] is weights
    assert weights.shape == reference[1].shape
    assert weights.dtype == c["dtype"]
    torch.testing.assert_close(weights, reference[1], **tolerance(c["dtype"]))
    assert not weights.requires_grad


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    return TOL32 if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}


def test_weights_by_hand_from_the_packed_projection() -> None:
    """softmax(Q_h K_hᵀ / √D) with Q = x W_Qᵀ + b_Q, K = x W_Kᵀ + b_K, head h = columns hD:(h+1)D."""
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(6, 3, batch_first=True)
    with torch.no_grad():
        mha.in_proj_bias.normal_()
    x = torch.randn(2, 4, 6)  # (N, L, E)
    with capture_attention(mha) as cap:
        mha(x, x, x, need_weights=False)
    w_q, w_k, _ = mha.in_proj_weight.detach().chunk(3)
    b_q, b_k, _ = mha.in_proj_bias.detach().chunk(3)
    q = (x @ w_q.T + b_q).view(2, 4, 3, 2).transpose(1, 2)  # (N, H, L, D)
    k = (x @ w_k.T + b_k).view(2, 4, 3, 2).transpose(1, 2)  # (N, H, S, D)
    by_hand = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(2), dim=-1)  # (N, H, L, S)
    torch.testing.assert_close(cap.weights[""], by_hand)
    torch.testing.assert_close(cap.weights[""].sum(-1), torch.ones(2, 3, 4))


def test_training_mode_records_weights_before_dropout() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True).train()
    x = torch.randn(3, 5, 8)
    torch.manual_seed(7)
    out_plain, returned_plain = mha(x, x, x, average_attn_weights=False)
    with capture_attention(mha) as cap:
        torch.manual_seed(7)  # capturing draws no random numbers: same dropout mask
        out, returned = mha(x, x, x, average_attn_weights=False)
    assert torch.equal(out, out_plain)
    assert torch.equal(returned, returned_plain)  # post-dropout, as torch returns them
    weights = cap.weights[""]
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 5))  # rows sum to 1
    assert not torch.allclose(returned.sum(-1), torch.ones(3, 2, 5))  # torch's do not
    expected = mha.eval()(x, x, x, average_attn_weights=False)[1]  # no dropout
    torch.testing.assert_close(weights, expected)


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("padding", [False, True])
def test_mha_fast_path_and_is_causal_hint(
    monkeypatch: pytest.MonkeyPatch, mode: str, training: bool, padding: bool
) -> None:
    """torch's native MHA fast path stays in use; is_causal with a causal mask is honoured."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).train(training)
    x = torch.randn(2, 5, 8)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    kwargs: dict[str, Any] = {"attn_mask": causal, "is_causal": True, "need_weights": False}
    if padding:
        kwargs["key_padding_mask"] = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    native = CallCounter(monkeypatch, "_native_multi_head_attention")
    with grad_mode(mode):
        expected = mha(x, x, x, **kwargs)
        plain_count = native.count
        with capture_attention(mha) as cap:
            got = mha(x, x, x, **kwargs)
        assert native.count == 2 * plain_count
        reference = mha(x, x, x, **{**kwargs, "need_weights": True, "average_attn_weights": False})
    assert plain_count == (1 if not training and mode != "grad" else 0)
    assert torch.equal(got[0], expected[0])
    assert got[1] is None
    torch.testing.assert_close(cap.weights[""], reference[1])
    assert not cap.weights[""].triu(1).any()


def test_fully_masked_row_is_nan_like_torchs_weights_path() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(4, 2, batch_first=True)
    x = torch.randn(1, 3, 4)
    attn_mask = torch.tensor([[True, True, True], [False, True, True], [False, False, False]])
    with capture_attention(mha) as cap:
        mha(x, x, x, attn_mask=attn_mask, need_weights=False)
    reference = mha(x, x, x, attn_mask=attn_mask, average_attn_weights=False)[1]
    assert cap.weights[""][:, :, 0].isnan().all()
    torch.testing.assert_close(cap.weights[""], reference, equal_nan=True)


# -- stock transformer models ------------------------------------------------------------------


def make_encoder(
    *, norm_first: bool, batch_first: bool, layers: int = 2, dropout: float = 0.0
) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        16, 4, 24, dropout=dropout, batch_first=batch_first, norm_first=norm_first
    )
    # torch warns when it cannot use nested tensors; ask for them only where it can
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=batch_first and not norm_first)


ENCODER_CASES = [
    pytest.param(norm_first, batch_first, training, mode, id=f"{nf}-{bf}-{tr}-{mode}")
    for norm_first, nf in ((False, "post"), (True, "pre"))
    for batch_first, bf in ((True, "bf"), (False, "sf"))
    for training, tr in ((False, "eval"), (True, "train"))
    for mode in ("grad", "no_grad", "inference")
]


@pytest.mark.parametrize(("norm_first", "batch_first", "training", "mode"), ENCODER_CASES)
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both"])
def test_encoder(
    monkeypatch: pytest.MonkeyPatch,
    norm_first: bool,
    batch_first: bool,
    training: bool,
    mode: str,
    masks: str,
) -> None:
    torch.manual_seed(0)
    encoder = make_encoder(norm_first=norm_first, batch_first=batch_first).train(training)
    batch, length = 3, 6
    x = torch.randn(batch, length, 16) if batch_first else torch.randn(length, batch, 16)
    lengths = torch.tensor([6, 4, 2])
    padding = torch.arange(length)[None, :] >= lengths[:, None]  # (N, S), left-aligned
    kwargs: dict[str, Any] = {}
    if masks in {"padding", "both"}:
        kwargs["src_key_padding_mask"] = padding
    if masks == "causal":  # float -inf/0 mask, detected as causal by torch
        kwargs["mask"] = nn.Transformer.generate_square_subsequent_mask(length)
    if masks == "both":  # bool (True = masked), the same type as the padding mask
        kwargs["mask"] = torch.ones(length, length, dtype=torch.bool).triu(1)
    global_state = snapshot_global_state()

    fused = CallCounter(monkeypatch, "_transformer_encoder_layer_fwd")
    nested = CallCounter(monkeypatch, "_nested_tensor_from_mask")
    with grad_mode(mode):
        expected = encoder(x, **kwargs)
        plain_counts = (fused.count, nested.count)
        with capture_attention(encoder) as cap:
            got = encoder(x, **kwargs)
        assert (fused.count, nested.count) == (2 * plain_counts[0], 2 * plain_counts[1])
    assert_no_trace(encoder, global_state)
    # the paths this case is about were taken (and kept) by the captured run
    fast = not training and mode != "grad" and batch_first
    assert plain_counts[0] == (2 if fast else 0)
    uses_nested = fast and not norm_first and masks == "padding"
    assert plain_counts[1] == (1 if uses_nested else 0)

    assert torch.equal(got, expected)  # outputs untouched, bit for bit
    assert cap.names == ("layers.0.self_attn", "layers.1.self_attn")
    assert [n for n, _ in cap.calls] == list(cap.names)
    reference = stock_run(encoder, lambda: encoder(x, **kwargs))
    for (name, weights), (_, want) in zip(cap.calls, reference, strict=True):
        assert weights.shape == (batch, 4, length, length), name
        assert weights.requires_grad is False
        if uses_nested:  # the model computes nothing at padded positions: rows are 0
            for b, n in enumerate(lengths.tolist()):
                torch.testing.assert_close(weights[b, :, :n], want[b, :, :n], **TOL32)
                assert not weights[b, :, n:].any()
        else:
            torch.testing.assert_close(weights, want, **TOL32)
        if "src_key_padding_mask" in kwargs:
            assert not weights.masked_select(padding[:, None, None, :]).any()


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference"])
@pytest.mark.parametrize("training", [False, True])
def test_unbatched_encoder(mode: str, training: bool) -> None:
    torch.manual_seed(0)
    encoder = make_encoder(norm_first=False, batch_first=True).train(training)
    x = torch.randn(5, 16)  # (L, E)
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    with grad_mode(mode):
        expected = encoder(x, mask=mask)
        with capture_attention(encoder) as cap:
            got = encoder(x, mask=mask)
    assert torch.equal(got, expected)
    reference = stock_run(encoder, lambda: encoder(x, mask=mask))
    assert_same_calls(cap.calls, reference)
    assert cap.weights["layers.1.self_attn"].shape == (4, 5, 5)  # (H, L, S)
    assert not cap.weights["layers.1.self_attn"].triu(1).any()  # causal


def test_nested_tensor_path_pads_to_the_encoders_length() -> None:
    """All sequences padded: the nested batch is shorter than L, the weights are not."""
    torch.manual_seed(0)
    encoder = make_encoder(norm_first=False, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    padding = torch.tensor([[False, False, False, True, True], [False] * 4 + [True]])
    with torch.inference_mode():
        expected = encoder(x, src_key_padding_mask=padding)
        with capture_attention(encoder) as cap:
            got = encoder(x, src_key_padding_mask=padding)
        # the stock approach (hooks on self_attn) sees trimmed nested shapes
        trimmed: list[torch.Size] = []
        handle = encoder.layers[0].self_attn.register_forward_hook(
            lambda m, a, o: trimmed.append(a[0].to_padded_tensor(0.0).shape)
        )
        try:
            encoder(x, src_key_padding_mask=padding)
        finally:
            handle.remove()
    assert trimmed == [torch.Size([2, 4, 16])]
    assert torch.equal(got, expected)
    assert all(w.shape == (2, 4, 5, 5) for _, w in cap.calls)
    reference = stock_run(encoder, lambda: encoder(x, src_key_padding_mask=padding))
    for (_, weights), (_, want) in zip(cap.calls, reference, strict=True):
        torch.testing.assert_close(weights[0, :, :3], want[0, :, :3], **TOL32)
        torch.testing.assert_close(weights[1, :, :4], want[1, :, :4], **TOL32)


def test_encoder_layer_with_users_hook_on_nested_input() -> None:
    """A user's hook turns the layer's fast path off while the encoder still nests."""
    torch.manual_seed(0)
    encoder = make_encoder(norm_first=False, batch_first=True).eval()
    seen: list[bool] = []
    handle = encoder.layers[1].register_forward_pre_hook(lambda m, a: seen.append(a[0].is_nested))
    x = torch.randn(2, 5, 16)
    padding = torch.tensor([[False, False, False, True, True], [False] * 4 + [True]])
    try:
        with torch.inference_mode():
            expected = encoder(x, src_key_padding_mask=padding)
            with capture_attention(encoder) as cap:
                got = encoder(x, src_key_padding_mask=padding)
    finally:
        handle.remove()
    assert seen == [True, True]  # layer 1 ran its regular path on a nested tensor
    assert torch.equal(got, expected)
    reference = stock_run(encoder, lambda: encoder(x, src_key_padding_mask=padding))
    for (_, weights), (_, want) in zip(cap.calls, reference, strict=True):
        assert weights.shape == (2, 4, 5, 5)
        torch.testing.assert_close(weights[0, :, :3], want[0, :, :3], **TOL32)
        torch.testing.assert_close(weights[1, :, :4], want[1, :, :4], **TOL32)
        assert not weights[0, :, 3:].any()


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning")
@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_and_decoder(mode: str, training: bool, norm_first: bool) -> None:
    torch.manual_seed(0)
    model = nn.Transformer(
        d_model=16,
        nhead=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=24,
        dropout=0.0,
        batch_first=True,
        norm_first=norm_first,
    ).train(training)
    src, tgt = torch.randn(2, 6, 16), torch.randn(2, 4, 16)
    src_padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    kwargs = {
        "tgt_mask": nn.Transformer.generate_square_subsequent_mask(4),
        "tgt_is_causal": True,
        "src_key_padding_mask": src_padding,
        "memory_key_padding_mask": src_padding,
    }
    with grad_mode(mode):
        expected = model(src, tgt, **kwargs)
        with capture_attention(model) as cap:
            got = model(src, tgt, **kwargs)
    assert torch.equal(got, expected)
    assert [n for n, _ in cap.calls] == [
        "encoder.layers.0.self_attn",
        "encoder.layers.1.self_attn",
        "decoder.layers.0.self_attn",
        "decoder.layers.0.multihead_attn",
        "decoder.layers.1.self_attn",
        "decoder.layers.1.multihead_attn",
    ]
    assert cap.weights["decoder.layers.1.multihead_attn"].shape == (2, 4, 4, 6)  # (N, H, L, S)
    assert not cap.weights["decoder.layers.0.self_attn"].triu(1).any()
    reference = stock_run(model, lambda: model(src, tgt, **kwargs))
    uses_nested = not training and mode != "grad" and not norm_first
    for (name, weights), (_, want) in zip(cap.calls, reference, strict=True):
        if uses_nested and name.startswith("encoder"):
            torch.testing.assert_close(weights[1, :, :4], want[1, :, :4], **TOL32, msg=name)
            torch.testing.assert_close(weights[0], want[0], **TOL32, msg=name)
        else:
            torch.testing.assert_close(weights, want, **TOL32, msg=name)


def test_decoder_alone_sequence_first() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0)
    decoder = nn.TransformerDecoder(layer, 2).eval()
    tgt, memory = torch.randn(3, 2, 8), torch.randn(5, 2, 8)  # (T, N, E), (S, N, E)
    with torch.no_grad():
        expected = decoder(
            tgt,
            memory,
            tgt_is_causal=True,
            tgt_mask=torch.triu(torch.ones(3, 3, dtype=torch.bool), 1),
        )
        with capture_attention(decoder, "layers.*.multihead_attn") as cap:
            got = decoder(
                tgt,
                memory,
                tgt_is_causal=True,
                tgt_mask=torch.triu(torch.ones(3, 3, dtype=torch.bool), 1),
            )
    assert torch.equal(got, expected)
    assert cap.names == ("layers.0.multihead_attn", "layers.1.multihead_attn")
    assert list(cap.weights) == list(cap.names)
    assert cap.weights["layers.0.multihead_attn"].shape == (2, 2, 3, 5)


# -- custom modules, selection, options ---------------------------------------------------------


class TwoCalls(nn.Module):
    """One module called twice, a cross-attention asking for averaged weights, and ours."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.shared = nn.MultiheadAttention(8, 2, batch_first=True)
        self.cross = nn.MultiheadAttention(8, 4, kdim=6, vdim=5)
        self.ours = AttnlensMHA(8, 2, batch_first=True, add_zero_attn=True)

    def forward(
        self, x: torch.Tensor, memory_k: torch.Tensor, memory_v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.shared(x, x, x, need_weights=False)[0]
        h = self.shared(self.proj(h), h, h, need_weights=False)[0]
        out, averaged = self.cross(
            h.transpose(0, 1), memory_k.transpose(0, 1), memory_v.transpose(0, 1)
        )
        h = out.transpose(0, 1)
        h = self.ours(h, h, h, need_weights=False)[0]
        return h, averaged


def test_custom_module_calls_in_order_and_averaged_weights_stay_averaged() -> None:
    torch.manual_seed(0)
    model = TwoCalls()
    x, mk, mv = torch.randn(2, 3, 8), torch.randn(2, 5, 6), torch.randn(2, 5, 5)
    expected = model(x, mk, mv)
    with capture_attention(model) as cap:
        got = model(x, mk, mv)
    assert torch.equal(got[0], expected[0])
    assert torch.equal(got[1], expected[1])
    assert got[1].shape == (2, 3, 5)  # the caller still gets head-averaged weights
    assert [n for n, _ in cap.calls] == ["shared", "shared", "cross", "ours"]
    assert cap.weights["shared"] is cap.calls[1][1]
    assert cap.weights["cross"].shape == (2, 4, 3, 5)
    assert cap.weights["ours"].shape == (2, 2, 3, 4)  # one zero-attention column
    torch.testing.assert_close(cap.weights["cross"].mean(1), got[1])
    reference = stock_run(model, lambda: model(x, mk, mv))
    assert_same_calls(cap.calls, reference)


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        (None, ["shared", "cross", "ours"]),
        ("cross", ["cross"]),
        (["ours", "sh*"], ["shared", "ours"]),
        (lambda name, m: isinstance(m, AttnlensMHA), ["ours"]),
        (lambda name, m: m.num_heads == 4, ["cross"]),
    ],
)
def test_selecting_modules(modules: Any, expected: list[str]) -> None:
    model = TwoCalls()
    with capture_attention(model, modules) as cap:
        model(torch.randn(1, 2, 8), torch.randn(1, 3, 6), torch.randn(1, 3, 5))
    assert list(cap.names) == expected
    assert sorted(cap.weights) == sorted(expected)
    assert_no_trace(model, snapshot_global_state())


def test_options_device_dtype_keep_calls() -> None:
    torch.manual_seed(0)
    model = TwoCalls()
    args = (torch.randn(1, 2, 8), torch.randn(1, 3, 6), torch.randn(1, 3, 5))
    with capture_attention(model, device="cpu", dtype=torch.float64, keep_calls=False) as cap:
        model(*args)
        model(*args)
    assert cap.calls == []
    assert set(cap.weights) == {"shared", "cross", "ours"}
    assert all(w.dtype == torch.float64 and w.device.type == "cpu" for w in cap.weights.values())
    with capture_attention(model, dtype=torch.bfloat16) as cap16:
        model(*args)
    torch.testing.assert_close(
        cap16.weights["cross"], cap.weights["cross"].bfloat16(), rtol=0, atol=0
    )
    cap.clear()
    assert cap.weights == {}
    assert repr(cap16) == "AttentionCapture(names=('shared', 'cross', 'ours'), calls=4)"


def test_detach_false_keeps_the_graph() -> None:
    torch.manual_seed(0)
    encoder = make_encoder(norm_first=False, batch_first=True).eval()
    x = torch.randn(2, 4, 16)
    with capture_attention(encoder, detach=False) as cap:
        encoder(x)
    weights = cap.weights["layers.0.self_attn"]
    assert weights.requires_grad
    weights[:, :, 0, 1].sum().backward()
    grad = encoder.layers[0].self_attn.in_proj_weight.grad
    assert grad is not None
    assert grad.abs().sum() > 0
    with capture_attention(encoder) as cap:
        encoder(x)
    assert not cap.weights["layers.0.self_attn"].requires_grad


# -- errors and clean-up ------------------------------------------------------------------------


def test_model_without_attention() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with (
        pytest.raises(
            ValueError, match=r"found no attention to capture in Sequential.*Supported are"
        ),
        capture_attention(model),
    ):
        pass  # pragma: no cover


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"modules": "nope"}, ValueError, r"no attention module matches 'nope'.*\['shared'"),
        ({"modules": "proj"}, ValueError, "'proj' is a Linear, not an attention module"),
        ({"modules": []}, ValueError, "at least one name"),
        ({"modules": [1]}, TypeError, "expected names"),
        ({"modules": 3}, TypeError, "modules: expected None, a name"),
        ({"modules": lambda n, m: False}, ValueError, "selected none"),
        ({"dtype": torch.int64}, TypeError, "dtype: expected None or a floating"),
        ({"dtype": "float16"}, TypeError, "dtype"),
        ({"device": "gpu:x"}, ValueError, "device: expected a device"),
        ({"device": 3}, TypeError, "device: expected None, a str"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    model = TwoCalls()
    with pytest.raises(error, match=match), capture_attention(model, **kwargs):
        pass  # pragma: no cover
    assert_no_trace(model, snapshot_global_state())


def test_model_must_be_a_module() -> None:
    with (
        pytest.raises(TypeError, match=r"model: expected a torch\.nn\.Module, got function"),
        capture_attention(lambda x: x),  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover


@pytest.mark.parametrize("where", ["block", "model"])
def test_nothing_left_after_an_exception(where: str) -> None:
    torch.manual_seed(0)
    model = nn.Transformer(16, 4, 1, 1, 24, batch_first=True).eval()
    global_state = snapshot_global_state()
    src, tgt = torch.randn(1, 3, 16), torch.randn(1, 2, 16)
    captures: list[AttentionCapture] = []

    def run() -> None:
        with torch.inference_mode(), capture_attention(model) as cap:
            captures.append(cap)
            model(src, tgt)
            if where == "block":
                raise RuntimeError("boom")
            model.encoder(torch.randn(1, 3, 15))  # wrong feature size: raised in a wrapper

    with pytest.raises(RuntimeError, match=r"boom|embed_dim"):
        run()
    (cap,) = captures
    assert_no_trace(model, global_state)
    assert len(cap.calls) == 3  # what was recorded before stays readable
    with torch.inference_mode():
        model(src, tgt)  # the model works as before, unwrapped
    assert len(cap.calls) == 3


def test_users_own_forward_attribute_is_restored() -> None:
    mha = nn.MultiheadAttention(4, 2)
    original = mha.forward

    def mine(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    mha.forward = mine  # type: ignore[method-assign]
    x = torch.randn(3, 4)
    with capture_attention(mha) as cap:
        mha(x, x, x)
    assert mha.__dict__["forward"] is mine
    assert cap.weights[""].shape == (2, 3, 3)


def test_nested_captures() -> None:
    torch.manual_seed(0)
    encoder = make_encoder(norm_first=False, batch_first=True).eval()
    x = torch.randn(2, 4, 16)
    global_state = snapshot_global_state()
    with torch.inference_mode():
        expected = encoder(x)
        with capture_attention(encoder) as outer:
            with capture_attention(encoder, "layers.1.self_attn") as inner:
                got = encoder(x)
            encoder(x)
    assert torch.equal(got, expected)
    assert [n for n, _ in inner.calls] == ["layers.1.self_attn"]
    assert len(outer.calls) == 4
    torch.testing.assert_close(inner.calls[0][1], outer.calls[1][1])
    assert_no_trace(encoder, global_state)


def test_subclass_overriding_forward_warns_when_its_fast_path_hides_attention() -> None:
    class MyLayer(nn.TransformerEncoderLayer):
        def forward(self, src: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            return super().forward(src, *args, **kwargs)

    torch.manual_seed(0)
    layer = MyLayer(16, 4, 24, batch_first=True).eval()
    x = torch.randn(2, 3, 16)
    with torch.inference_mode(), capture_attention(layer) as cap:
        with pytest.warns(RuntimeWarning, match="did not call its self_attn 'self_attn'"):
            layer(x)
        with fastpath(False):
            layer(x)  # the regular path calls self_attn: recorded
    assert [n for n, _ in cap.calls] == ["self_attn"]


# -- GPU -------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("masks", ["none", "padding"])
def test_gpu_bf16_encoder_fast_path(masks: str) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 8, 128, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2).to("cuda", torch.bfloat16).eval()
    x = torch.randn(4, 32, 64, device="cuda", dtype=torch.bfloat16)
    lengths = torch.tensor([32, 20, 9, 1], device="cuda")
    padding = torch.arange(32, device="cuda")[None, :] >= lengths[:, None]
    kwargs = {"src_key_padding_mask": padding} if masks == "padding" else {}
    with torch.inference_mode():
        expected = encoder(x, **kwargs)
        with capture_attention(encoder) as cap:
            got = encoder(x, **kwargs)
        with capture_attention(encoder, device="cpu", dtype=torch.float32) as cap_cpu:
            encoder(x, **kwargs)
    assert torch.equal(got, expected)
    reference = stock_run(encoder, lambda: encoder(x, **kwargs))
    for (name, weights), (_, want) in zip(cap.calls, reference, strict=True):
        assert weights.device.type == "cuda"
        assert weights.dtype == torch.bfloat16
        assert weights.shape == (4, 8, 32, 32)
        rows = slice(None) if masks == "none" else slice(0, 9)
        torch.testing.assert_close(
            weights[:3, :, rows].float(),
            want[:3, :, rows].float(),
            rtol=0.05,
            atol=0.03,
            msg=name,
        )
    assert all(w.device.type == "cpu" and w.dtype == torch.float32 for _, w in cap_cpu.calls)


def test_capture_object_type() -> None:
    with capture_attention(nn.MultiheadAttention(4, 1)) as cap:
        pass
    assert isinstance(cap, AttentionCapture)
    assert cap.names == ("",)
    assert cap.calls == []
    assert cap.weights == {}
