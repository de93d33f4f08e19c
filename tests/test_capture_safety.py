"""capture_attention never breaks a model or silently misleads.

Each test here failed before the capture kept its state per thread and stopped replacing
``forward`` attributes (issue: "Capture never breaks a model or silently misleads").
"""

from __future__ import annotations

import copy
import io
import threading
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from attnlens.capture import capture_attention

pytestmark = [
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors:UserWarning"),
    pytest.mark.filterwarnings("ignore:enable_nested_tensor is True:UserWarning"),
]


def make_encoder(seed: int = 0, layers: int = 2) -> nn.TransformerEncoder:
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, layers).eval()


def assert_clean(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert "_compiled_call_impl" not in module.__dict__, name
        assert "forward" not in module.__dict__, name


def stock_weights(mha: nn.MultiheadAttention, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    _, weights = mha(x, x, x, need_weights=True, average_attn_weights=False, **kwargs)
    assert weights is not None
    return weights


# 1 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 2])
def test_detach_false_with_one_head(heads: int) -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, heads, batch_first=True)
    x = torch.randn(2, 5, 8)
    expected, _ = mha(x, x, x)
    with capture_attention(mha, detach=False) as cap:
        got, _ = mha(x, x, x)
    assert torch.equal(got, expected)
    weights = cap.weights[""]
    assert weights.requires_grad
    torch.testing.assert_close(weights, stock_weights(mha, x))
    weights[:, 0].sum().backward()
    assert mha.in_proj_weight.grad is not None


# 2 --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # torch's own
@pytest.mark.parametrize("requires_grad", [False, True])
def test_vmap_runs_inside_the_block_and_warns_that_it_records_nothing(
    requires_grad: bool,
) -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(3, 4, 8, requires_grad=requires_grad)

    def run() -> torch.Tensor:
        return torch.func.vmap(lambda xi: mha(xi, xi, xi, need_weights=False)[0])(x)

    expected = run()
    with capture_attention(mha) as cap:
        with pytest.warns(RuntimeWarning, match=r"torch\.func transform"):
            got = run()
        mha(x, x, x)  # outside the transform: recorded
    assert torch.equal(got, expected)
    assert [tuple(w.shape) for _, w in cap.calls] == [(3, 2, 4, 4)]


# 3 --------------------------------------------------------------------------------------------


def run_threads(*workers: Any) -> None:
    errors: list[BaseException] = []

    def guard(work: Any) -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=guard, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def padded_batch(length: int, real: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(length)
    x = torch.randn(2, length, 16)
    padding = torch.zeros(2, length, dtype=torch.bool)
    padding[1, real:] = True  # (N, S), True = padding
    return x, padding


def test_threads_each_get_their_own_weights_on_the_nested_tensor_path() -> None:
    encoder = make_encoder()
    inputs = {6: padded_batch(6, 4), 12: padded_batch(12, 9)}
    with torch.inference_mode():
        references = {}
        for length, (x, padding) in inputs.items():
            with capture_attention(encoder) as single:
                encoder(x, src_key_padding_mask=padding)
            references[length] = [w for _, w in single.calls]
        calls = 60

        def worker(length: int) -> Any:
            def work() -> None:
                x, padding = inputs[length]
                with torch.inference_mode():
                    for _ in range(calls):
                        encoder(x, src_key_padding_mask=padding)

            return work

        with capture_attention(encoder) as cap:
            run_threads(worker(6), worker(12))
    assert len(cap.calls) == 2 * calls * 2  # two threads, two layers
    counts = {6: 0, 12: 0}
    for name, weights in cap.calls:
        length = weights.size(-1)
        assert weights.shape == (2, 4, length, length)
        layer = int(name.split(".")[1])
        torch.testing.assert_close(weights, references[length][layer], rtol=0, atol=0)
        counts[length] += 1
    assert counts == {6: 2 * calls, 12: 2 * calls}


def test_threads_mixing_grad_modes_lose_no_call() -> None:
    encoder = make_encoder()
    x = torch.randn(2, 5, 16)
    calls = 100

    def in_mode(mode: Any) -> Any:
        def work() -> None:
            for _ in range(calls):
                with mode():
                    encoder(x)

        return work

    with capture_attention(encoder) as cap:
        run_threads(in_mode(torch.no_grad), in_mode(torch.enable_grad))
    assert len(cap.calls) == 2 * calls * 2
    with torch.no_grad(), capture_attention(encoder) as single:
        encoder(x)
    for name, weights in cap.calls:
        torch.testing.assert_close(weights, single.weights[name])


# 4 --------------------------------------------------------------------------------------------


def test_deepcopy_inside_the_block_is_an_independent_clean_model() -> None:
    encoder = make_encoder()
    x = torch.randn(2, 5, 16)
    with torch.no_grad(), capture_attention(encoder) as cap:
        twin = copy.deepcopy(encoder)
        assert_clean(twin)
        for p in twin.parameters():
            p.zero_()
        assert not torch.equal(twin(x), encoder(x))
    assert [n for n, _ in cap.calls] == ["layers.0.self_attn", "layers.1.self_attn"]
    assert_clean(encoder)


def test_torch_save_inside_the_block_saves_a_clean_model() -> None:
    encoder = make_encoder()
    x = torch.randn(2, 5, 16)
    buffer = io.BytesIO()
    with torch.no_grad(), capture_attention(encoder):
        torch.save(encoder, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert_clean(loaded)
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))


# 5 --------------------------------------------------------------------------------------------


def test_captures_exited_out_of_order() -> None:
    encoder = make_encoder()
    x = torch.randn(2, 5, 16)
    a, b = capture_attention(encoder), capture_attention(encoder, "layers.1.*")
    cap_a = a.__enter__()
    cap_b = b.__enter__()
    encoder(x)
    a.__exit__(None, None, None)
    encoder(x)  # B is still open: recorded
    b.__exit__(None, None, None)
    encoder(x)  # both closed: recorded by none
    assert len(cap_a.calls) == 2
    assert [n for n, _ in cap_b.calls] == ["layers.1.self_attn", "layers.1.self_attn"]
    assert_clean(encoder)
    torch.save(encoder, io.BytesIO())


# 6 --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")
def test_compiled_models_are_refused_with_a_way_out() -> None:
    encoder = make_encoder()
    compiled = torch.compile(encoder)
    with pytest.raises(ValueError, match=r"torch\.compile.*capture_attention\(model\._orig_mod\)"):
        capture_attention(compiled)
    inner = nn.Sequential(compiled)
    with pytest.raises(ValueError, match=r"module '0' is compiled.*0\._orig_mod"):
        capture_attention(inner)
    encoder.layers[1].compile()
    with pytest.raises(ValueError, match=r"module 'layers\.1' is compiled \(module\.compile\(\)\)"):
        capture_attention(encoder)


# 7 --------------------------------------------------------------------------------------------


def test_entering_the_same_capture_twice_is_a_clear_error() -> None:
    encoder = make_encoder()
    block = capture_attention(encoder)
    with block:
        pass
    with pytest.raises(RuntimeError, match="already been entered"), block:
        pass  # pragma: no cover
    assert_clean(encoder)


# 8 --------------------------------------------------------------------------------------------


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True) for _ in range(2)
        )
        self.reentrant = reentrant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = checkpoint(layer, x, use_reentrant=self.reentrant)
        return x


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_checkpointing_records_each_layer_once(reentrant: bool) -> None:
    model = Checkpointed(reentrant)
    x = torch.randn(2, 5, 16, requires_grad=True)
    with capture_attention(model) as cap:
        model(x).sum().backward()
    assert [n for n, _ in cap.calls] == ["layers.0.self_attn", "layers.1.self_attn"]
