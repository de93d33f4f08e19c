"""The per-head weights of one ``nn.MultiheadAttention`` call, recomputed beside it.

The weights torch's ``need_weights=True, average_attn_weights=False`` path would return
for the same call, from the call's inputs and the module's own parameters: only the Q and
K projections and ``softmax(Q Kᵀ / √D + masks)`` are needed. Also the weights of an
``nn.TransformerEncoderLayer`` whose fused fast path ran without calling its ``self_attn``,
and of calls on nested tensors (``nn.TransformerEncoder``'s padding-free path).

Used by :func:`attnlens.capture.capture_attention`.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["attention_classes", "binder_for", "fast_path_weights", "weights_of_call"]


def attention_classes() -> tuple[type[nn.Module], ...]:
    """torch's MultiheadAttention and attnlens's."""
    from attnlens.multihead import MultiheadAttention  # noqa: PLC0415 (keeps import light)

    return (nn.MultiheadAttention, MultiheadAttention)


class _Binder:
    """Binds a call's arguments to the parameter names of a ``forward`` (fast, no inspect)."""

    def __init__(self, positional: tuple[str, ...], defaults: dict[str, Any]) -> None:
        self.positional = positional
        self.defaults = defaults

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        call = dict(self.defaults)
        call.update(zip(self.positional, args, strict=False))
        call.update(kwargs)
        return call


@functools.cache
def binder_for(
    function: Callable[..., Any], needed: tuple[str, ...], fallback: Callable[..., Any]
) -> _Binder:
    """A binder for the unbound ``forward`` of a module class.

    The class's ``forward`` gives the names (the instance's ``forward`` attribute may be
    a wrapper taking ``*args, **kwargs``); ``fallback``'s are used when it takes
    ``*args`` or lacks one of the ``needed`` names.
    """
    parameters = list(inspect.signature(function).parameters.values())[1:]  # without self
    if any(p.kind is p.VAR_POSITIONAL for p in parameters) or not all(
        any(p.name == name for p in parameters) for name in needed
    ):
        parameters = list(inspect.signature(fallback).parameters.values())[1:]
    positional = tuple(
        p.name for p in parameters if p.kind in {p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD}
    )
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    return _Binder(positional, defaults)


def weights_of_call(
    module: nn.Module, call: dict[str, Any], result: Any, full_length: int | None
) -> torch.Tensor:
    """Per-head weights (N, H, L, S) of one call of an attention module.

    ``call`` holds the call's arguments by name, ``result`` what the module returned and
    ``full_length`` the input length of the ``nn.TransformerEncoder`` running the call (for
    nested-tensor input, whose sequences may all be shorter), or None.
    """
    query: torch.Tensor = call["query"]
    key: torch.Tensor = call["key"]
    returned = result[1] if isinstance(result, tuple) and len(result) == 2 else None
    if (
        call.get("need_weights", True)
        and not call.get("average_attn_weights", True)
        and isinstance(returned, torch.Tensor)
        and returned.dim() == query.dim() + 1
        and not query.is_nested
        and not (module.training and float(getattr(module, "dropout", 0.0)) > 0.0)
    ):
        # The caller asked for exactly these: torch's own per-head weights, no dropout.
        return returned
    if query.is_nested or key.is_nested:
        # Only on torch's fast path, which takes no mask with nested input.
        padded_query, query_lengths = _pad_nested(query, full_length)
        padded_key, key_lengths = (
            (padded_query, query_lengths) if key is query else _pad_nested(key, full_length)
        )
        weights = _attention_weights(
            module,
            padded_query,
            padded_key,
            key_padding_mask=_padding_mask(key_lengths, padded_key.size(1)),
            attn_mask=None,
            batch_first=True,
        )
        return _zero_padded_queries(weights, query_lengths)
    return _attention_weights(
        module,
        query,
        key,
        key_padding_mask=call.get("key_padding_mask"),
        attn_mask=call.get("attn_mask"),
        batch_first=bool(getattr(module, "batch_first", False)),
    )


_LAYER_ARGUMENTS = ("src", "src_mask", "src_key_padding_mask")


def fast_path_weights(
    layer: nn.TransformerEncoderLayer, call: dict[str, Any], full_length: int | None
) -> torch.Tensor:
    """The weights of a fast-path encoder layer call, from the layer's input."""
    src: torch.Tensor = call["src"]
    key_padding_mask: torch.Tensor | None = call["src_key_padding_mask"]
    lengths = None
    if src.is_nested:  # (the fast path takes no mask with nested input)
        src, lengths = _pad_nested(src, full_length)  # (N, L, E)
        key_padding_mask = _padding_mask(lengths, src.size(1))
    x = src
    if layer.norm_first:
        # as the fused kernel does: layer_norm with norm1's parameters
        norm = layer.norm1
        x = F.layer_norm(x, (x.size(-1),), norm.weight, norm.bias, norm.eps)
    weights = _attention_weights(
        layer.self_attn,
        x,
        x,
        key_padding_mask=key_padding_mask,
        attn_mask=call["src_mask"],
        batch_first=True,  # the fast path requires batch_first
    )
    return weights if lengths is None else _zero_padded_queries(weights, lengths)


def _pad_nested(x: torch.Tensor, full_length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A nested batch of (L_b, E) sequences -> padded (N, L, E) and the lengths (N,)."""
    components = x.unbind()
    sizes = [c.size(0) for c in components]
    lengths = torch.tensor(sizes, device=x.device)  # (N,)
    length = max([*sizes, full_length or 0])
    width = components[0].size(-1) if components else 0
    padded = x.to_padded_tensor(0.0, (len(components), length, width))  # (N, L, E)
    return padded, lengths


def _padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """Bool key padding mask (N, S), True at positions >= each sequence's length."""
    positions = torch.arange(length, device=lengths.device)  # (S,)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)  # (N, S)


def _zero_padded_queries(weights: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Set the rows of padded query positions of (N, H, L, S) weights to 0."""
    padded = _padding_mask(lengths, weights.size(2))  # (N, L)
    return weights.masked_fill(padded[:, None, :, None], 0.0)  # (N, H, L, S)


def _q_and_k(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, self_attention: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The projections Q = query W_Qᵀ + b_Q (N, L, E) and K = key W_Kᵀ + b_K (N, S, E).

    ``in_proj_weight`` (3E, E) holds [W_Q; W_K; W_V] and ``in_proj_bias`` (3E,) the
    biases likewise; with kdim/vdim != E the module has ``q_proj_weight`` (E, E) and
    ``k_proj_weight`` (E, kdim) instead. Slices of parameters are views: no copy.
    """
    embed_dim = query.size(-1)
    in_proj_weight: torch.Tensor | None = getattr(module, "in_proj_weight", None)
    in_proj_bias: torch.Tensor | None = getattr(module, "in_proj_bias", None)
    if self_attention and in_proj_weight is not None:
        # one matrix product for both: [Q | K] = x [W_Q; W_K]ᵀ + [b_Q; b_K]
        bias = None if in_proj_bias is None else in_proj_bias[: 2 * embed_dim]  # (2E,)
        qk = F.linear(query, in_proj_weight[: 2 * embed_dim], bias)  # (N, L, 2E)
        q, k = qk.chunk(2, dim=-1)  # 2 x (N, L, E), views
        return q, k
    if in_proj_weight is not None:
        q_weight, k_weight = in_proj_weight[: 2 * embed_dim].chunk(2)  # 2 x (E, E)
    else:
        q_weight = getattr(module, "q_proj_weight")  # noqa: B009  (E, E)
        k_weight = getattr(module, "k_proj_weight")  # noqa: B009  (E, kdim)
    q_bias = k_bias = None
    if in_proj_bias is not None:
        q_bias, k_bias = in_proj_bias[: 2 * embed_dim].chunk(2)  # 2 x (E,)
    return F.linear(query, q_weight, q_bias), F.linear(key, k_weight, k_bias)


def _attention_weights(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    key_padding_mask: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
    batch_first: bool,
) -> torch.Tensor:
    """softmax(Q Kᵀ / √D + masks) per head, as torch's weights path computes it.

    ``query`` (L, N, E) / (N, L, E) with ``batch_first`` / (L, E) unbatched; ``key``
    likewise with S and kdim. Masks in torch's MultiheadAttention convention (bool True
    = masked out; float added). Returns (N, H, L, S') or (H, L, S'), S' = S plus one
    column for ``bias_k`` and one for ``add_zero_attn``.
    """
    self_attention = query is key
    batched = query.dim() == 3
    if not batched:
        query = query.unsqueeze(0)  # (1, L, E)
        key = query if self_attention else key.unsqueeze(0)  # (1, S, kdim)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
    elif not batch_first:
        query = query.transpose(0, 1)  # (N, L, E)
        key = query if self_attention else key.transpose(0, 1)  # (N, S, kdim)
    batch, tgt_len, embed_dim = query.shape
    num_heads: int = getattr(module, "num_heads")  # noqa: B009
    head_dim = embed_dim // num_heads

    q, k = _q_and_k(module, query, key, self_attention)  # (N, L, E), (N, S, E)
    bias_k: torch.Tensor | None = getattr(module, "bias_k", None)
    if bias_k is not None:
        k = torch.cat([k, bias_k.expand(batch, 1, embed_dim)], dim=1)  # (N, S+1, E)
    src_len = k.size(1)
    # heads as the batch of one matrix product: (N*H, L, D) and (N*H, S, D), copies
    q = q.view(batch, tgt_len, num_heads, head_dim).transpose(1, 2)  # (N, H, L, D)
    q = q.reshape(batch * num_heads, tgt_len, head_dim)  # (N*H, L, D)
    k = k.view(batch, src_len, num_heads, head_dim).transpose(1, 2)  # (N, H, S, D)
    k = k.reshape(batch * num_heads, src_len, head_dim)  # (N*H, S, D)
    if getattr(module, "add_zero_attn", False):
        zeros = k.new_zeros(batch * num_heads, 1, head_dim)  # (N*H, 1, D)
        k = torch.cat([k, zeros], dim=1)  # (N*H, S+1, D)
        src_len += 1
    # torch scales q by sqrt(1/D) before the product. In place only outside autograd: with one
    # head, q can be a view of the projection, which autograd forbids modifying in place.
    factor = math.sqrt(1.0 / head_dim)
    q = q * factor if torch.is_grad_enabled() else q.mul_(factor)
    scores = torch.bmm(q, k.transpose(1, 2))  # (N*H, L, S)
    scores = scores.view(batch, num_heads, tgt_len, src_len)  # (N, H, L, S)
    if attn_mask is not None:
        if attn_mask.dim() == 3:  # (N*H, L, S), batch-major; (H, L, S) unbatched
            attn_mask = attn_mask.view(batch, num_heads, tgt_len, attn_mask.size(-1))
        scores = _apply_mask(scores, attn_mask)  # (L, S) or (N, H, L, S)
    if key_padding_mask is not None:
        padding = key_padding_mask.view(batch, 1, 1, key_padding_mask.size(-1))  # (N, 1, 1, S)
        scores = _apply_mask(scores, padding)  # (N, H, L, S)
    weights = _softmax(scores)  # (N, H, L, S)
    return weights if batched else weights.squeeze(0)  # (H, L, S) unbatched


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis; in place on the CPU outside autograd (saves a copy)."""
    if scores.device.type == "cpu" and not torch.is_grad_enabled():
        return torch._softmax(scores, -1, False, out=scores)
    return torch.softmax(scores, dim=-1)


def _apply_mask(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply a mask (bool True = masked out, or float added); in place outside autograd.

    The mask may have fewer key columns than ``scores`` (the ``bias_k`` and zero-attention
    columns are never masked).
    """
    if mask.size(-1) != scores.size(-1):  # pad the mask with "takes part" columns
        extra = scores.size(-1) - mask.size(-1)
        mask = F.pad(mask, (0, extra), value=False if mask.dtype == torch.bool else 0.0)
    if torch.is_grad_enabled():
        if mask.dtype == torch.bool:
            return scores.masked_fill(mask, float("-inf"))
        return scores + mask
    if mask.dtype == torch.bool:
        return scores.masked_fill_(mask, float("-inf"))
    return scores.add_(mask)
