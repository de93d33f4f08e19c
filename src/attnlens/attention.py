r"""Scaled dot-product attention, one readable step at a time.

.. math::

    \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(
        \frac{Q K^\top}{\sqrt{d_k}} + M\right) V

:func:`scaled_dot_product_attention` computes exactly what
:func:`torch.nn.functional.scaled_dot_product_attention` computes, with the same
arguments and the same mask convention, and also returns the attention weights,
which torch's fused kernels never materialise.

Shapes: ``L`` is the target (query) length, ``S`` the source (key) length,
``E`` the query/key feature size and ``Ev`` the value feature size; ``...`` is any
number of leading batch dimensions (for multi-head attention typically ``(N, H)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlens._checks import (
    InputValueError,
    broadcast_shape,
    check_dtype,
    check_probability,
    check_same_device,
    check_same_dtype,
    check_shape,
    check_tensor,
    format_shape,
)

__all__ = [
    "apply_mask",
    "attention_scores",
    "causal_mask",
    "scaled_dot_product_attention",
    "softmax_zero_masked_rows",
]


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Scaled dot-product attention that returns its output **and** its weights.

    The textbook steps, in order:

    1. scores  = Q Kᵀ · scale, with scale = 1/√E unless given;
    2. mask    : a bool mask keeps the positions where it is True (the others get
       -inf), a float mask is added to the scores; ``is_causal`` uses a
       lower-triangular bool mask;
    3. weights = softmax(scores) over the key axis S;
    4. dropout on the weights (when ``dropout_p > 0``);
    5. output  = weights @ V.

    Parameters
    ----------
    query : torch.Tensor
        Queries, shape (..., L, E).
    key : torch.Tensor
        Keys, shape (..., S, E).
    value : torch.Tensor
        Values, shape (..., S, Ev). The leading dimensions of query, key and value
        broadcast against each other, as in torch.
    attn_mask : torch.Tensor, optional
        Shape broadcastable to (..., L, S). **bool: True means the position takes
        part** in attention (the convention of torch's SDPA, the *opposite* of
        :class:`torch.nn.MultiheadAttention`, where True means masked out). A float
        mask is added to the scores (use -inf to mask out); it has the query's dtype,
        or float32, which torch also accepts for every query dtype (it is then
        converted to the query's dtype).
    dropout_p : float, default 0.0
        Dropout probability applied to the weights. As in torch's function there is
        no ``training`` flag: pass ``dropout_p=0.0`` in evaluation.
    is_causal : bool, default False
        Use a causal mask: query i attends to keys 0..i. The mask is
        ``torch.ones(L, S).tril()``, aligned at the top left as in torch, which
        matters when L != S. Cannot be combined with ``attn_mask``.
    scale : float, optional
        Factor applied to Q Kᵀ. Default 1/√E.

    Returns
    -------
    output : torch.Tensor
        Shape (..., L, Ev), where ``...`` is the broadcast of the leading dimensions.
    weights : torch.Tensor
        Shape (..., L, S). Each row sums to 1, except a fully masked row (all zeros)
        and, when ``dropout_p > 0``, rows after dropout: the returned weights are the
        ones that multiplied V, so ``output == weights @ value`` always holds.

    Raises
    ------
    TypeError
        If an input is not a tensor, query/key/value are not of one floating-point
        dtype, or the mask is neither bool nor float32 nor of the query's dtype.
    ValueError
        If an input has fewer than 2 dimensions, the feature sizes or lengths do not
        agree, the leading dimensions do not broadcast, the mask does not broadcast to
        (..., L, S), ``dropout_p`` is outside [0, 1], both ``attn_mask`` and
        ``is_causal`` are given, or the tensors are not all on the query's device.

    Notes
    -----
    **Fully masked rows.** When every key of a query row is masked out, all of its
    scores are -inf and a plain softmax would give 0/0 = NaN. torch's SDPA (its CPU
    math and flash kernels, measured with torch 2.13) returns **zeros** for such a
    row instead, and so do we: the row's weights are all 0 and its output is 0.
    Note that :func:`attnlens.functional.multi_head_attention_forward` with
    ``need_weights=True``, like torch's, gives NaN for the same situation.

    **Dropout** is applied to the weights and the output is computed from the
    dropped weights, as in torch; random streams differ from torch's kernels, so the
    result equals torch's only in distribution.

    Examples
    --------
    >>> import torch
    >>> from attnlens.attention import scaled_dot_product_attention
    >>> _ = torch.manual_seed(0)
    >>> q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    >>> output, weights = scaled_dot_product_attention(q, k, v)
    >>> output.shape, weights.shape
    (torch.Size([2, 3, 6]), torch.Size([2, 3, 5]))
    >>> torch.allclose(weights.sum(-1), torch.ones(2, 3))
    True
    >>> expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    >>> torch.testing.assert_close(output, expected)

    A bool mask keeps the positions where it is True:

    >>> keep = torch.tensor([True, True, False, False, False])
    >>> _, weights = scaled_dot_product_attention(q, k, v, attn_mask=keep)
    >>> weights[0, 0, 2:]
    tensor([0., 0., 0.])
    """
    _check_inputs(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)
    length, source_length = query.size(-2), key.size(-2)
    if is_causal:
        attn_mask = causal_mask(length, source_length, device=query.device)  # (L, S)

    scores = attention_scores(query, key, scale)  # (..., L, S)
    if attn_mask is not None:
        scores = apply_mask(scores, attn_mask)  # (..., L, S)
    weights = softmax_zero_masked_rows(scores)  # (..., L, S)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    output = weights @ value  # (..., L, Ev)
    return output, weights


def attention_scores(
    query: torch.Tensor, key: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Scaled dot products of every query with every key.

    Parameters
    ----------
    query : torch.Tensor
        Shape (..., L, E).
    key : torch.Tensor
        Shape (..., S, E).
    scale : float, optional
        Default 1/√E.

    Returns
    -------
    torch.Tensor
        ``query @ key.T * scale``, shape (..., L, S).
    """
    if scale is None:
        scale = 1.0 / math.sqrt(query.size(-1))
    return (query @ key.transpose(-2, -1)) * scale  # (..., L, E) @ (..., E, S) -> (..., L, S)


def causal_mask(
    length: int, source_length: int, device: torch.device | None = None
) -> torch.Tensor:
    """The bool causal mask of torch's SDPA: query i may attend to keys 0..i.

    Parameters
    ----------
    length, source_length : int
        L and S.
    device : torch.device, optional
        Where to create it.

    Returns
    -------
    torch.Tensor
        bool, shape (L, S), True on and below the diagonal that starts at the top left.

    Examples
    --------
    >>> causal_mask(3, 4)
    tensor([[ True, False, False, False],
            [ True,  True, False, False],
            [ True,  True,  True, False]])
    """
    return torch.ones(length, source_length, dtype=torch.bool, device=device).tril()


def apply_mask(scores: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
    """Apply an SDPA-convention mask to attention scores.

    Parameters
    ----------
    scores : torch.Tensor
        Shape (..., L, S).
    attn_mask : torch.Tensor
        Broadcastable to (..., L, S). bool: True = takes part, False = set to -inf.
        Float: converted to the dtype of the scores and added to them.

    Returns
    -------
    torch.Tensor
        The masked scores, shape (..., L, S).
    """
    if attn_mask.dtype == torch.bool:
        return scores.masked_fill(~attn_mask, float("-inf"))
    return scores + attn_mask.to(scores.dtype)


def softmax_zero_masked_rows(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the key axis that gives zeros (not NaN) for a fully masked row.

    This is what torch's SDPA does (its ``_safe_softmax``): a row whose scores are all
    -inf has no key to attend to; a plain softmax returns 0/0 = NaN there.

    Parameters
    ----------
    scores : torch.Tensor
        Shape (..., L, S).

    Returns
    -------
    torch.Tensor
        Shape (..., L, S): each row sums to 1, or is all zeros if fully masked.

    Examples
    --------
    >>> scores = torch.tensor([[0.0, 0.0], [float("-inf"), float("-inf")]])
    >>> torch.softmax(scores, dim=-1)
    tensor([[0.5000, 0.5000],
            [   nan,    nan]])
    >>> softmax_zero_masked_rows(scores)
    tensor([[0.5000, 0.5000],
            [0.0000, 0.0000]])
    """
    weights = torch.softmax(scores, dim=-1)  # (..., L, S)
    fully_masked = (scores == float("-inf")).all(dim=-1, keepdim=True)  # (..., L, 1)
    return weights.masked_fill(fully_masked, 0.0)


def _check_inputs(
    query: object,
    key: object,
    value: object,
    *,
    attn_mask: object,
    dropout_p: float,
    is_causal: bool,
) -> None:
    """Raise a clear error for anything torch's SDPA would refuse (or silently misread)."""
    many = "at least 2 dimensions, (..., L, E)"
    query = check_tensor("query", query, floating=True)
    key = check_tensor("key", key)
    value = check_tensor("value", value)
    for name, x in (("query", query), ("key", key), ("value", value)):
        if x.dim() < 2:
            raise InputValueError(f"{name}: expected {many}, got shape {format_shape(x.shape)}")
    for name, x in (("key", key), ("value", value)):
        check_same_dtype(name, x, "query", query)
        check_same_device(name, x, "query", query)

    features, source_length = query.size(-1), key.size(-2)
    check_shape("key", key, ("..., S, E", (*key.shape[:-1], features)), note="E from query")
    check_shape(
        "value", value, ("..., S, Ev", (*value.shape[:-2], source_length, None)), note="S from key"
    )
    batch = broadcast_shape(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    if batch is None:
        raise InputValueError(
            "query, key, value: expected leading (batch) dimensions that broadcast, got "
            f"{format_shape(query.shape)}, {format_shape(key.shape)} and "
            f"{format_shape(value.shape)}"
        )

    if attn_mask is not None:
        attn_mask = check_tensor("attn_mask", attn_mask)
        allowed = (torch.bool, torch.float32, query.dtype)  # torch's SDPA takes float32 too
        check_dtype("attn_mask", attn_mask, allowed, "bool, float32 or the query's dtype")
        check_same_device("attn_mask", attn_mask, "query", query)
        scores_shape = (*batch, query.size(-2), source_length)
        if broadcast_shape(attn_mask.shape, scores_shape) != scores_shape:
            raise InputValueError(
                "attn_mask: expected a shape that broadcasts to (..., L, S) = "
                f"{format_shape(scores_shape)}, got {format_shape(attn_mask.shape)}"
            )
        if is_causal:
            raise InputValueError(
                "attn_mask: expected None when is_causal=True (the causal mask is built "
                f"for you), got a mask of shape {format_shape(attn_mask.shape)}"
            )
    check_probability("dropout_p", dropout_p)
