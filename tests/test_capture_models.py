"""capture_attention on the models people study: Hugging Face, timm, GPT-style code.

Small random configurations, built with no download. For each family:

* the outputs under capture equal the uncaptured outputs bit for bit (``torch.equal``), in
  eval and training mode, in float32 and under bfloat16 autocast;
* Hugging Face models: the weights captured from the default sdpa model equal what the
  eager model returns with ``output_attentions=True`` (within 1e-6 on every non-padding
  query row); ``output_attentions=True`` works on the sdpa model under capture;
* a nanoGPT-style model and timm's ViT: the weights equal a float64 computation from the
  q and k the kernel received.
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from attnlens.capture import capture_attention

transformers = pytest.importorskip("transformers")

#: transformers 5 needs torch >= 2.6; attnlens accepts torch >= 2.5 (nox -s tests-oldest-torch).
HF = pytest.mark.skipif(
    not transformers.utils.is_torch_available(),
    reason=f"transformers {transformers.__version__} does not run on torch {torch.__version__}",
)

pytestmark = pytest.mark.usefixtures("single_thread")

TOL = {"rtol": 0.0, "atol": 1e-6}


# -- Hugging Face ---------------------------------------------------------------------------


def bert() -> tuple[Any, Callable[[], dict[str, torch.Tensor]], str]:
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=16,
    )  # fmt: skip
    return config, transformers.BertModel, "encoder.layer.{}.attention.self"


def gpt2() -> tuple[Any, Callable[[], dict[str, torch.Tensor]], str]:
    config = transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=16)
    return config, transformers.GPT2Model, "h.{}.attn"


def distilbert() -> tuple[Any, Callable[[], dict[str, torch.Tensor]], str]:
    config = transformers.DistilBertConfig(
        vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=16
    )
    return config, transformers.DistilBertModel, "transformer.layer.{}.attention"


def llama() -> tuple[Any, Callable[[], dict[str, torch.Tensor]], str]:
    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
    )  # fmt: skip
    return config, transformers.LlamaModel, "layers.{}.self_attn"


def vit() -> tuple[Any, Callable[[], dict[str, torch.Tensor]], str]:
    config = transformers.ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=48,
    )  # fmt: skip
    # transformers 5.x renamed ViT's layers (encoder.layer.N.attention.attention before)
    model = transformers.ViTModel._from_config(copy.deepcopy(config))
    names = {name for name, _ in model.named_modules()}
    pattern = (
        "layers.{}.attention"
        if "layers.0.attention" in names
        else "encoder.layer.{}.attention.attention"
    )
    return config, transformers.ViTModel, pattern


FAMILIES = {"bert": bert, "gpt2": gpt2, "distilbert": distilbert, "llama": llama, "vit": vit}


def hf_inputs(family: str, padding: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Model inputs and the (N, L) bool mask of the query rows that are not padding."""
    torch.manual_seed(1)
    if family == "vit":
        pixels = torch.randn(2, 3, 16, 16)
        return {"pixel_values": pixels}, torch.ones(2, 17, dtype=torch.bool)
    ids = torch.randint(0, 50, (2, 7))
    real = torch.ones(2, 7, dtype=torch.long)
    if padding:
        real[1, 4:] = 0  # the second sequence has 4 tokens
        return {"input_ids": ids, "attention_mask": real}, real.bool()
    return {"input_ids": ids}, real.bool()


def build_pair(family: str, seed: int = 0) -> tuple[nn.Module, nn.Module, str]:
    """The same random weights as an sdpa model and an eager model."""
    config, cls, pattern = FAMILIES[family]()
    torch.manual_seed(seed)
    sdpa = cls._from_config(copy.deepcopy(config), attn_implementation="sdpa")
    eager = cls._from_config(copy.deepcopy(config), attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    return sdpa.eval(), eager.eval(), pattern


def rows_of(weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The query rows selected by an (N, L) bool mask: (R, H, S)."""
    return weights.transpose(1, 2)[rows]  # (N, L, H, S) -> (R, H, S)


def last_hidden(output: Any) -> torch.Tensor:
    hidden: torch.Tensor = output.last_hidden_state
    return hidden


CASES = [
    ("bert", True),
    ("gpt2", False),
    ("gpt2", True),
    ("distilbert", True),
    ("vit", False),
    ("llama", True),
]


@HF
@pytest.mark.parametrize(("family", "padding"), CASES)
def test_hf_sdpa_capture_equals_eager_output_attentions(family: str, padding: bool) -> None:
    sdpa, eager, pattern = build_pair(family)
    inputs, rows = hf_inputs(family, padding)
    with torch.no_grad():
        expected = eager(**inputs, output_attentions=True).attentions
        plain = last_hidden(sdpa(**inputs))
        with capture_attention(sdpa) as cap:
            got = last_hidden(sdpa(**inputs))
    assert torch.equal(got, plain)
    names = [pattern.format(i) for i in range(2)]
    assert list(cap.names) == names
    assert [n for n, _ in cap.calls] == names
    for name, want in zip(names, expected, strict=True):
        weights = cap.weights[name]
        assert weights.shape == want.shape  # (N, H, L, S)
        torch.testing.assert_close(rows_of(weights, rows), rows_of(want, rows), **TOL)


@HF
@pytest.mark.parametrize(("family", "padding"), CASES)
def test_hf_eager_capture_is_what_the_model_returns(family: str, padding: bool) -> None:
    _, eager, pattern = build_pair(family)
    inputs, _ = hf_inputs(family, padding)
    with torch.no_grad():
        expected = eager(**inputs, output_attentions=True)
        with capture_attention(eager) as cap:
            got = eager(**inputs, output_attentions=True)
    assert torch.equal(last_hidden(got), last_hidden(expected))
    for i, want in enumerate(expected.attentions):
        torch.testing.assert_close(cap.weights[pattern.format(i)], want, rtol=0, atol=0)
        torch.testing.assert_close(got.attentions[i], want, rtol=0, atol=0)


@HF
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_output_attentions_works_on_an_sdpa_model_under_capture(family: str) -> None:
    sdpa, eager, _ = build_pair(family)
    inputs, rows = hf_inputs(family, padding=True)
    with torch.no_grad():
        plain = sdpa(**inputs, output_attentions=True)
        assert plain.attentions == ()  # Hugging Face's own behaviour in sdpa mode
        expected = eager(**inputs, output_attentions=True).attentions
        with capture_attention(sdpa) as cap:
            got = sdpa(**inputs, output_attentions=True)
    assert torch.equal(last_hidden(got), last_hidden(plain))
    assert len(got.attentions) == 2
    for mine, want, (_, recorded) in zip(got.attentions, expected, cap.calls, strict=True):
        torch.testing.assert_close(rows_of(mine, rows), rows_of(want, rows), **TOL)
        assert torch.equal(mine, recorded)
    with torch.no_grad():
        after = sdpa(**inputs, output_attentions=True)  # outside the block: as before
    assert after.attentions == ()


@HF
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_hf_outputs_unchanged(
    family: str, training: bool, autocast: bool, implementation: str
) -> None:
    sdpa, eager, _ = build_pair(family)
    model = sdpa if implementation == "sdpa" else eager
    model.train(training)
    inputs, _ = hf_inputs(family, padding=family != "vit")

    def run() -> torch.Tensor:
        torch.manual_seed(7)  # the same dropout masks
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return last_hidden(model(**inputs))

    expected = run()
    with capture_attention(model) as cap:
        got = run()
    assert torch.equal(got, expected)
    assert len(cap.calls) == 2
    if training:
        got.float().sum().backward()  # the graph is intact


# -- GPT-style code on SDPA ------------------------------------------------------------------


class KernelInputs(TorchFunctionMode):
    """Records the q, k and is_causal every SDPA call receives (the test's own reference)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor, bool]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k = args[0], args[1]
            self.calls.append(
                (q.detach().clone(), k.detach().clone(), kwargs.get("is_causal", False))
            )
        return func(*args, **kwargs)


def float64_weights(q: torch.Tensor, k: torch.Tensor, causal: bool) -> torch.Tensor:
    q, k = q.double(), k.double()
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (N, H, L, S)
    if causal:
        keep = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, dim=-1)


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: one Linear for q, k, v, then the fused kernel."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.dropout = 0.1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.c_attn(x).split(dim, dim=2)  # 3 x (N, L, E)
        q = q.view(n, length, self.heads, dim // self.heads).transpose(1, 2)  # (N, H, L, D)
        k = k.view(n, length, self.heads, dim // self.heads).transpose(1, 2)  # (N, H, L, D)
        v = v.view(n, length, self.heads, dim // self.heads).transpose(1, 2)  # (N, H, L, D)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (N, H, L, D)
        y = y.transpose(1, 2).contiguous().view(n, length, dim)  # (N, L, E)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 32, heads: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(vocab, dim),
                "wpe": nn.Embedding(16, dim),
                "h": nn.ModuleList(Block(dim, heads) for _ in range(layers)),
                "ln_f": nn.LayerNorm(dim),
            }
        )
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.size(1))  # (L,)
        x = self.transformer["wte"](idx) + self.transformer["wpe"](positions)  # (N, L, E)
        for block in self.transformer["h"]:
            x = block(x)
        logits: torch.Tensor = self.lm_head(self.transformer["ln_f"](x))  # (N, L, V)
        return logits


def check_against_kernel_inputs(model: nn.Module, run: Callable[[], Any], names: list[str]) -> None:
    with torch.no_grad():
        reference = KernelInputs()
        with reference:
            expected = run()
        with capture_attention(model) as cap:
            got = run()
    assert torch.equal(got, expected)
    assert [n for n, _ in cap.calls] == names
    for (name, weights), (q, k, causal) in zip(cap.calls, reference.calls, strict=True):
        torch.testing.assert_close(weights.double(), float64_weights(q, k, causal), **TOL, msg=name)


def test_nanogpt_weights_equal_a_float64_computation_from_the_kernels_q_and_k() -> None:
    torch.manual_seed(0)
    model = NanoGPT().eval()
    idx = torch.randint(0, 50, (2, 9))
    names = [f"transformer.h.{i}.attn" for i in range(3)]
    check_against_kernel_inputs(model, lambda: model(idx), names)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
def test_nanogpt_outputs_unchanged(training: bool, autocast: bool) -> None:
    torch.manual_seed(0)
    model = NanoGPT().train(training)
    idx = torch.randint(0, 50, (2, 9))

    def run() -> torch.Tensor:
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model(idx)

    expected = run()
    with capture_attention(model) as cap:
        got = run()
    assert torch.equal(got, expected)
    rows = cap.weights["transformer.h.0.attn"].float().sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows), rtol=0, atol=1e-2)  # before dropout


# -- timm ------------------------------------------------------------------------------------


def import_timm() -> Any:
    try:
        return importlib.import_module("timm")
    except (ImportError, RuntimeError) as error:  # pragma: no cover - depends on the wheels
        pytest.skip(
            "timm imports torchvision, whose only wheel for this torch is a CUDA build that "
            f"fails to import on CPU torch ({error}); nox -s tests runs these tests under "
            "the torch release that has a matching torchvision"
        )


def timm_vit() -> nn.Module:
    timm = import_timm()
    torch.manual_seed(0)
    model: nn.Module = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=3
    )
    return model.eval()


def test_timm_vit_weights_equal_a_float64_computation() -> None:
    model = timm_vit()
    x = torch.randn(2, 3, 32, 32)
    check_against_kernel_inputs(model, lambda: model(x), [f"blocks.{i}.attn" for i in range(3)])


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
def test_timm_outputs_unchanged(training: bool, autocast: bool) -> None:
    model = timm_vit().train(training)
    x = torch.randn(2, 3, 32, 32)

    def run() -> torch.Tensor:
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out: torch.Tensor = model(x)
            return out

    expected = run()
    with capture_attention(model) as cap:
        got = run()
    assert torch.equal(got, expected)
    assert len(cap.calls) == 3


def test_timm_without_fused_attention_is_refused_with_what_is_supported() -> None:
    model = timm_vit()
    for block in model.blocks:  # type: ignore[union-attr]
        block.attn.fused_attn = False
    with pytest.raises(ValueError, match=r"fused_attn=False.*'blocks\.0\.attn'.*Supported are"):
        capture_attention(model)


# -- attention nobody can see ------------------------------------------------------------------


class HandWrittenAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # 3 x (N, L, E)
        return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v  # (N, L, E)


def test_handwritten_attention_warns_that_nothing_was_recorded() -> None:
    model = nn.Sequential(HandWrittenAttention())
    assert capture_attention(model).__enter__  # accepted: it looks like attention
    with (
        pytest.warns(RuntimeWarning, match=r"no attention was recorded.*\['0'\]"),
        capture_attention(model) as cap,
    ):
        model(torch.randn(1, 3, 8))
    assert cap.calls == []


def test_a_module_calling_sdpa_under_another_name_is_selected_by_name() -> None:
    class Mixer(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(x, x, x)

    model = nn.Sequential(nn.Linear(4, 4), Mixer())
    with pytest.raises(ValueError, match="no module looks like attention"):
        capture_attention(model)
    with capture_attention(model, "1") as cap:
        model(torch.randn(2, 3, 4))
    assert cap.names == ("1",)
    assert cap.weights["1"].shape == (2, 3, 3)
