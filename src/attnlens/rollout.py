r"""Attention rollout (Abnar & Zuidema, 2020): follow attention through the layers.

One layer's attention map says how much each position mixes in from each position of
*that layer's input*. After several layers the input of layer l is itself a mixture of
the tokens, so the maps are chained: with Â_l the head-fused map of layer l, plus the
identity for the residual connection, renormalised so that each row sums to 1,

.. math:: \tilde A = \hat A_L \hat A_{L-1} \cdots \hat A_1 ,

whose row i estimates how much the output at position i draws on each input token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

__all__ = ["attention_rollout"]

HeadFusion = Literal["mean", "max", "min"]
_FUSIONS = ("mean", "max", "min")


def attention_rollout(
    weights_per_layer: torch.Tensor | Iterable[torch.Tensor],
    head_fusion: HeadFusion = "mean",
    add_residual: bool = True,
) -> torch.Tensor:
    r"""Attention rollout of Abnar & Zuidema (2020), first layer first.

    For each layer l (in the order given, the layer nearest the input first):

    1. fuse the heads: mean, max or min over H, giving A_l (N, L, L);
    2. with ``add_residual``, add the identity for the residual connection:
       A_l + I (the paper's 0.5 A + 0.5 I, before renormalising);
    3. renormalise every **row** (query i) to sum to 1 over the **key axis**, the last
       one: Â_l[i, j] = A_l[i, j] / Σ_j' A_l[i, j'];

    then multiply: rollout = Â_L ⋯ Â_2 Â_1. Each Â_l is row-stochastic, so every row of
    the result sums to 1 too: row i is a distribution over the input tokens j.

    Parameters
    ----------
    weights_per_layer : sequence of torch.Tensor, or torch.Tensor
        The per-head attention weights of each layer, first layer first: a list (or any
        iterable) of tensors of shape (N, H, L, L), or (H, L, L) for one unbatched
        sequence, all the same shape, e.g. ``[cap.weights[name] for name in cap.names]``
        after :func:`attnlens.capture_attention`. Or those stacked along a new first
        axis: (layers, N, H, L, L) or (layers, H, L, L).
    head_fusion : {"mean", "max", "min"}, default "mean"
        How the H heads of a layer become one map (the paper averages them).
    add_residual : bool, default True
        Add the identity to each layer's fused map before renormalising, to account for
        the residual connection around attention (the paper's choice).

    Returns
    -------
    torch.Tensor
        Shape (N, L, L), or (L, L) for unbatched input; ``rollout[..., i, j]`` is the
        share of input token j in the output at position i. Computed in float32, or in
        float64 for float64 input.

    Raises
    ------
    TypeError
        If an element is not a tensor or not floating point.
    ValueError
        If there is no layer, ``head_fusion`` is unknown, a tensor has the wrong rank,
        the layers' shapes differ, or the maps are not square (L != S: rollout chains
        layers, so keys and queries must be the same positions; ``bias_k`` and
        ``add_zero_attn`` add key columns that have no input token).

    Notes
    -----
    A row whose entries are all zero stays zero when ``add_residual=False`` (it is not
    divided by zero): :func:`attnlens.capture_attention` gives such rows for padded
    query positions on the nested-tensor path. With ``add_residual=True`` such a row
    becomes the identity row: the padded position keeps itself. A NaN row (a fully
    masked query) propagates NaN, as it should.

    Rollout shows how attention *flows*, assuming that heads mix linearly and that
    attention and the residual contribute equally; it is an approximation, not an
    explanation of the model's decision.

    References
    ----------
    S. Abnar and W. Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020,
    https://arxiv.org/abs/2005.00928

    Examples
    --------
    Two layers over three tokens, one head each. Layer 1 copies each token's left
    neighbour; layer 2 attends uniformly:

    >>> import torch
    >>> from attnlens.rollout import attention_rollout
    >>> shift = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> uniform = torch.full((3, 3), 1 / 3)
    >>> rollout = attention_rollout([shift[None], uniform[None]], add_residual=False)
    >>> rollout  # uniform @ shift: token 2 is not used by anybody
    tensor([[0.6667, 0.3333, 0.0000],
            [0.6667, 0.3333, 0.0000],
            [0.6667, 0.3333, 0.0000]])
    >>> attention_rollout([shift[None]])  # (shift + I) / 2: half stays with the token
    tensor([[1.0000, 0.0000, 0.0000],
            [0.5000, 0.5000, 0.0000],
            [0.0000, 0.5000, 0.5000]])

    From a captured encoder (N=2 sentences, L=5 tokens):

    >>> from torch import nn
    >>> from attnlens.capture import capture_attention
    >>> _ = torch.manual_seed(0)
    >>> layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    >>> encoder = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False).eval()
    >>> with torch.no_grad(), capture_attention(encoder) as cap:
    ...     _ = encoder(torch.randn(2, 5, 8))
    >>> rollout = attention_rollout([cap.weights[name] for name in cap.names])
    >>> rollout.shape  # (N, L, L)
    torch.Size([2, 5, 5])
    >>> torch.allclose(rollout.sum(dim=-1), torch.ones(2, 5))  # rows sum to 1
    True
    """
    if head_fusion not in _FUSIONS:
        raise ValueError(f"head_fusion: expected 'mean', 'max' or 'min', got {head_fusion!r}")
    layers = _layers(weights_per_layer)
    first = layers[0]
    dtype = torch.promote_types(first.dtype, torch.float32)
    length = first.size(-1)
    identity = torch.eye(length, dtype=dtype, device=first.device)  # (L, L)
    rollout: torch.Tensor | None = None
    for layer in layers:
        weights = layer.to(device=first.device, dtype=dtype)  # (N, H, L, L)
        if head_fusion == "mean":
            fused = weights.mean(dim=-3)  # (N, L, L)
        elif head_fusion == "max":
            fused = weights.amax(dim=-3)  # (N, L, L)
        else:
            fused = weights.amin(dim=-3)  # (N, L, L)
        if add_residual:
            fused = fused + identity  # (N, L, L)
        # rows (queries) sum to 1 over the key axis, the last one; zero rows stay zero
        row_sums = fused.sum(dim=-1, keepdim=True)  # (N, L, 1)
        fused = fused / torch.where(row_sums == 0, torch.ones_like(row_sums), row_sums)
        rollout = fused if rollout is None else fused @ rollout  # Â_l (Â_{l-1} ⋯ Â_1)
    assert rollout is not None  # _layers returns at least one layer
    return rollout


def _layers(weights_per_layer: torch.Tensor | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Validate the input and return one tensor per layer, (N, H, L, L) or (H, L, L)."""
    if isinstance(weights_per_layer, torch.Tensor):
        stacked = weights_per_layer
        if stacked.dim() not in (4, 5):
            raise ValueError(
                "weights_per_layer: expected a list of per-layer weights (N, H, L, L) or "
                "(H, L, L), or a stacked tensor (layers, N, H, L, L) or (layers, H, L, L), "
                f"got a tensor of shape {_shape(stacked.shape)}"
            )
        layers = list(stacked.unbind(0))
        names = [f"weights_per_layer[{i}]" for i in range(len(layers))]
    elif isinstance(weights_per_layer, Iterable):
        layers = list(weights_per_layer)
        names = [f"weights_per_layer[{i}]" for i in range(len(layers))]
        for name, layer in zip(names, layers, strict=True):
            if not isinstance(layer, torch.Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(layer).__qualname__}")
    else:
        raise TypeError(
            "weights_per_layer: expected a list of tensors or a stacked tensor, got "
            f"{type(weights_per_layer).__qualname__}"
        )
    if not layers:
        raise ValueError("weights_per_layer: expected at least one layer, got none")
    first = layers[0]
    for name, layer in zip(names, layers, strict=True):
        if not layer.is_floating_point():
            raise TypeError(f"{name}: expected a floating point tensor, got {layer.dtype}")
        if layer.dim() not in (3, 4):
            raise ValueError(
                f"{name}: expected shape (N, H, L, L) or (H, L, L), got {_shape(layer.shape)}"
            )
        if layer.shape != first.shape:
            raise ValueError(
                f"{name}: expected shape {_shape(first.shape)} like {names[0]}, got "
                f"{_shape(layer.shape)}"
            )
    if first.size(-1) != first.size(-2):
        axes = "(N, H, L, S)" if first.dim() == 4 else "(H, L, S)"
        raise ValueError(
            f"{names[0]}: expected square maps, L == S, to chain layers; got {axes} = "
            f"{_shape(first.shape)}"
        )
    return layers


def _shape(shape: torch.Size) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ("," if len(shape) == 1 else "") + ")"
