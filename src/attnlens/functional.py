"""Multi-head attention as :func:`torch.nn.functional.multi_head_attention_forward` does it.

:func:`multi_head_attention_forward` has torch's signature and returns torch's results
for every option, but is written as a sequence of small, named steps:

1. work batch-first, (N, L, E), and give unbatched input a batch of one;
2. turn both masks into *additive* float masks (0 = takes part, -inf = masked out);
3. project: q = query W_Qᵀ + b_Q, k = key W_Kᵀ + b_K, v = value W_Vᵀ + b_V;
4. ``add_bias_kv``: append the learned key/value ``bias_k``/``bias_v`` as one more
   source position;
5. split into heads, (N, H, L, D); ``static_k``/``static_v`` replace k/v here;
6. ``add_zero_attn``: append a zero key/value as one more source position;
7. merge the masks into one, broadcastable to (N, H, L, S);
8. attend: softmax(q kᵀ/√D + mask) v per head;
9. concatenate the heads and apply the output projection;
10. return torch's layout, and the weights averaged over heads, per head, or None.

Shapes: N batch, L target (query) length, S source (key) length, E embed_dim,
H num_heads, D = E/H head dim.

It is a drop-in for torch's function: it accepts what torch accepts (shapes, mixed
dtypes, an ``attn_mask`` that ``is_causal`` makes torch ignore), its errors are
instances of the classes torch raises (see :mod:`attnlens._checks`), and TorchScript
compiles torch's function in its place (see the function's Notes).
"""

from __future__ import annotations

import functools
from typing import cast

import torch
import torch.nn.functional as F

from attnlens._checks import (
    InputTypeError,
    InputValueError,
    check_ndim,
    check_positive_int,
    check_probability,
    check_same_device,
    check_same_dtype,
    check_shape,
    check_tensor,
    format_shape,
)
from attnlens.attention import attention_scores, scaled_dot_product_attention
from attnlens.projections import InProjection, merge_heads, split_heads, split_packed

__all__ = ["multi_head_attention_forward"]

#: torch's own function, as it was when attnlens was imported: what TorchScript compiles.
_TORCH_MULTI_HEAD_ATTENTION_FORWARD = F.multi_head_attention_forward


def multi_head_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: torch.Tensor | None,
    in_proj_bias: torch.Tensor | None,
    bias_k: torch.Tensor | None,
    bias_v: torch.Tensor | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    training: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: torch.Tensor | None = None,
    k_proj_weight: torch.Tensor | None = None,
    v_proj_weight: torch.Tensor | None = None,
    static_k: torch.Tensor | None = None,
    static_v: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention, step by step, with the results of torch's function.

    Parameters
    ----------
    query : torch.Tensor
        Shape (L, N, E), or (L, E) unbatched (sequence first, as in torch's function).
    key : torch.Tensor
        Shape (S, N, kdim), or (S, kdim). kdim = E unless ``use_separate_proj_weight``.
    value : torch.Tensor
        Shape (S, N, vdim), or (S, vdim). vdim = E unless ``use_separate_proj_weight``.
    embed_dim_to_check : int
        E; the query's feature size must equal it.
    num_heads : int
        H; must divide E.
    in_proj_weight : torch.Tensor or None
        Packed [W_Q; W_K; W_V], shape (3E, E). Ignored when ``use_separate_proj_weight``.
    in_proj_bias : torch.Tensor or None
        Packed [b_Q; b_K; b_V], shape (3E,), in both layouts. It may have another
        float dtype than the query (see Notes).
    bias_k, bias_v : torch.Tensor or None
        Shape (1, 1, E), (1, E) or (E,) each, both or neither (``add_bias_kv``): a
        learned key and value appended to every sequence as one more source position.
        (K, 1, E) appends K of them, as in torch, when no mask is given. The dtype is
        the query's or one that promotes to it, such as float16 for a float32 query.
    add_zero_attn : bool
        Append a key and a value of zeros (after the head split) as one more source
        position.
    dropout_p : float
        Dropout probability on the attention weights; used only when ``training``.
    out_proj_weight : torch.Tensor
        W_O, shape (E, E).
    out_proj_bias : torch.Tensor or None
        Shape (E,).
    training : bool, default True
        Apply dropout. (torch's default; :class:`attnlens.MultiheadAttention` passes
        its own ``training`` flag.)
    key_padding_mask : torch.Tensor, optional
        Shape (N, S), or (S,) unbatched. **bool: True = this key is padding, masked
        out** (the opposite of SDPA's convention). Float: added to the scores.
    need_weights : bool, default True
        Return the attention weights. With False, torch computes attention with
        SDPA instead, which changes the fully-masked-row result (see Notes).
    attn_mask : torch.Tensor, optional
        Shape (L, S), the same for every batch element and head, or (N*H, L, S),
        batch-major (index ``n*H + h``); (H, L, S) for unbatched input. **bool: True
        = masked out.** Float: added to the scores. Ignored, as in torch, when the
        ``is_causal`` hint is used (see Notes).
    use_separate_proj_weight : bool, default False
        Use ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim) and
        ``v_proj_weight`` (E, vdim) instead of ``in_proj_weight``.
    q_proj_weight, k_proj_weight, v_proj_weight : torch.Tensor or None
        The separate projection weights.
    static_k, static_v : torch.Tensor or None
        Already projected keys/values, shape (N*H, S, D), batch-major, used instead
        of projecting ``key``/``value``. Not with ``bias_k``/``bias_v``.
    average_attn_weights : bool, default True
        Return the weights averaged over heads, (N, L, S), instead of per head,
        (N, H, L, S).
    is_causal : bool, default False
        A *hint* that ``attn_mask`` is the causal mask; ``attn_mask`` is then
        required. See Notes for what torch does with it, which we reproduce.

    Returns
    -------
    output : torch.Tensor
        Shape (L, N, E), or (L, E) unbatched.
    weights : torch.Tensor or None
        None when ``need_weights=False``. Otherwise (N, L, S') averaged over heads
        or (N, H, L, S') per head; (L, S') or (H, L, S') unbatched. S' = S, plus 1
        with ``bias_k``/``bias_v``, plus 1 with ``add_zero_attn``. In training with
        ``dropout_p > 0`` these are the weights *after* dropout: their rows do not
        sum to 1.

    Raises
    ------
    TypeError
        If a tensor argument is not a tensor, the inputs are not floating point, a
        dtype does not fit where torch refuses it (see Notes), or a mask is neither
        bool nor floating point. Also an ``AssertionError`` and a ``RuntimeError``.
    ValueError
        If a shape does not fit (the message names the argument, the expected shape
        and the given one), E is not divisible by H, ``num_heads <= 0``,
        ``dropout_p`` is outside [0, 1], only one of ``bias_k``/``bias_v`` is given,
        ``bias_k`` is combined with ``static_k``, ``is_causal`` comes without
        ``attn_mask``, or a tensor is not on the query's device. Also an
        ``AssertionError`` and a ``RuntimeError``.

    Notes
    -----
    **Masks.** Both masks are turned into additive float masks: a bool True (masked
    out) becomes -inf, False becomes 0; float masks are used as they are. The two are
    then added. Mixing a bool and a float mask is allowed and well defined this way
    (torch accepts it too, with a deprecation warning; we do not warn).

    **Two paths, as in torch.** With ``need_weights=True`` the weights are computed
    explicitly: softmax(q kᵀ/√D + mask). A query row whose keys are all masked out
    gets 0/0 = **NaN** weights, and a NaN output row. With ``need_weights=False``
    torch calls SDPA, which returns **zeros** for such a row, so the output row is
    just ``out_proj_bias``. We do exactly the same for the same call.
    (:class:`torch.nn.MultiheadAttention`'s fused inference fast path gives NaN even
    with ``need_weights=False``; see :class:`attnlens.MultiheadAttention`.)

    **is_causal** is a hint, and torch uses it only on the SDPA path: with
    ``need_weights=False`` and no ``key_padding_mask``, ``attn_mask`` is *ignored*
    (its shape and dtype too; only its number of dimensions, and for unbatched input
    the shape of a 3-D mask, are checked) and SDPA's causal mask
    (``ones(L, S').tril()``, including any bias/zero column) is used; otherwise
    ``attn_mask`` is used and the hint is ignored. An ``attn_mask`` that is not
    causal therefore gives different results on the two paths, in torch and here.

    **Dtypes.** As in torch (2.13, CPU), query, key, value, the projection weights,
    ``out_proj_bias`` and ``static_k``/``static_v`` share one dtype, and so does the
    result. A bool mask becomes a float mask of the query's dtype; two float masks are
    added, which promotes their dtypes; the merged mask must have the query's dtype, or
    float32 with ``need_weights=False`` (torch's SDPA takes float32 masks for every
    query). ``bias_k``/``bias_v`` may have a dtype that promotes to the query's. An
    ``in_proj_bias`` of another float dtype is added to the projections and the sum is
    cast to the query's dtype; torch does the same only for non-contiguous inputs (a
    ``batch_first`` module's, for example) and refuses contiguous ones, which we accept
    with the same result.

    **Errors.** Every error is a ``ValueError`` or a ``TypeError``, as its message
    says, and *also* an ``AssertionError`` and a ``RuntimeError``: torch raises these
    two for the same mistakes (from its checks and from its kernels), so code that
    catches them around torch's function still catches ours. Two deliberate
    differences: a negative ``dropout_p`` is refused (torch ignores it), and a
    non-tensor argument raises a ``TypeError`` (torch fails with an ``AttributeError``).

    **TorchScript.** TorchScript cannot compile this Python. ``torch.jit.script``,
    called on this function or meeting it inside a module it compiles (after
    ``torch.nn.functional.multi_head_attention_forward`` has been replaced by it, for
    example), compiles torch's own function instead, which computes the same.

    **Dropout.** In training the weights are dropped out (zeroed with probability
    ``dropout_p``, the rest scaled by 1/(1 - p)) before they multiply v, and the
    returned weights are the dropped ones (pytorch issue #42929). Our random
    numbers are not torch's: results agree in distribution, not bitwise.

    Examples
    --------
    >>> import torch
    >>> from attnlens.functional import multi_head_attention_forward
    >>> _ = torch.manual_seed(0)
    >>> mha = torch.nn.MultiheadAttention(embed_dim=4, num_heads=2).eval()
    >>> x = torch.randn(5, 3, 4)  # (L, N, E)
    >>> args = (x, x, x, 4, 2, mha.in_proj_weight, mha.in_proj_bias, None, None, False,
    ...         0.0, mha.out_proj.weight, mha.out_proj.bias)
    >>> output, weights = multi_head_attention_forward(*args, average_attn_weights=False)
    >>> output.shape, weights.shape
    (torch.Size([5, 3, 4]), torch.Size([3, 2, 5, 5]))
    >>> expected = torch.nn.functional.multi_head_attention_forward(
    ...     *args, average_attn_weights=False)
    >>> torch.testing.assert_close(output, expected[0])
    >>> torch.testing.assert_close(weights, expected[1])

    A bool ``key_padding_mask`` marks padding with True:

    >>> padding = torch.tensor([[False, False, False, True, True]] * 3)  # (N, S)
    >>> _, weights = multi_head_attention_forward(*args, key_padding_mask=padding)
    >>> weights[0, 0, 3:].tolist()  # no weight on the padding
    [0.0, 0.0]
    """
    return _multi_head_attention_forward(
        query,
        key,
        value,
        embed_dim_to_check=embed_dim_to_check,
        num_heads=num_heads,
        in_proj_weight=in_proj_weight,
        in_proj_bias=in_proj_bias,
        bias_k=bias_k,
        bias_v=bias_v,
        add_zero_attn=add_zero_attn,
        dropout_p=dropout_p,
        out_proj_weight=out_proj_weight,
        out_proj_bias=out_proj_bias,
        training=training,
        key_padding_mask=key_padding_mask,
        need_weights=need_weights,
        attn_mask=attn_mask,
        use_separate_proj_weight=use_separate_proj_weight,
        q_proj_weight=q_proj_weight,
        k_proj_weight=k_proj_weight,
        v_proj_weight=v_proj_weight,
        static_k=static_k,
        static_v=static_v,
        average_attn_weights=average_attn_weights,
        is_causal=is_causal,
        batch_first=False,
    )


def _multi_head_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: torch.Tensor | None,
    in_proj_bias: torch.Tensor | None,
    bias_k: torch.Tensor | None,
    bias_v: torch.Tensor | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    training: bool,
    key_padding_mask: torch.Tensor | None,
    need_weights: bool,
    attn_mask: torch.Tensor | None,
    use_separate_proj_weight: bool,
    q_proj_weight: torch.Tensor | None,
    k_proj_weight: torch.Tensor | None,
    v_proj_weight: torch.Tensor | None,
    static_k: torch.Tensor | None,
    static_v: torch.Tensor | None,
    average_attn_weights: bool,
    is_causal: bool,
    batch_first: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`multi_head_attention_forward`, also for batch-first input.

    ``batch_first=True`` takes (N, L, E) input and returns (N, L, E) output, as
    :class:`attnlens.MultiheadAttention` with ``batch_first=True`` does; error messages
    then describe the batch-first shapes the caller passed.
    """
    # --- Checks: every problem is reported here, before any computation. ---
    layout = _Layout(query, batch_first)
    proj = _check_arguments(
        layout,
        query,
        key=key,
        value=value,
        embed_dim_to_check=embed_dim_to_check,
        num_heads=num_heads,
        in_proj_weight=in_proj_weight,
        in_proj_bias=in_proj_bias,
        bias_k=bias_k,
        bias_v=bias_v,
        dropout_p=dropout_p,
        out_proj_weight=out_proj_weight,
        out_proj_bias=out_proj_bias,
        key_padding_mask=key_padding_mask,
        attn_mask=attn_mask,
        use_separate_proj_weight=use_separate_proj_weight,
        q_proj_weight=q_proj_weight,
        k_proj_weight=k_proj_weight,
        v_proj_weight=v_proj_weight,
        static_k=static_k,
        static_v=static_v,
        need_weights=need_weights,
        is_causal=is_causal,
    )

    # 1. Batch first, with a batch of one for unbatched input.
    query, key, value = (layout.to_batch_first(x) for x in (query, key, value))
    # query (N, L, E), key (N, S, kdim), value (N, S, vdim)
    batch = query.size(0)
    if key_padding_mask is not None and not layout.batched:
        key_padding_mask = key_padding_mask.unsqueeze(0)  # (S,) -> (1, S)

    # 2. Additive float masks; the is_causal hint decides whether attn_mask is used.
    use_causal_hint = is_causal and key_padding_mask is None and not need_weights
    key_padding_mask = _to_additive_mask(key_padding_mask, query.dtype)  # (N, S)
    attn_mask = None if use_causal_hint else _to_additive_mask(attn_mask, query.dtype)
    if attn_mask is not None:
        attn_mask = _attn_mask_4d(attn_mask, batch, num_heads)  # (1 or N, 1 or H, L, S)
    if key_padding_mask is not None:
        key_padding_mask = key_padding_mask.view(batch, 1, 1, -1)  # (N, 1, 1, S)

    # 3. Input projections.
    q, k, v = _project_qkv(query, key, value, proj)  # (N, L, E), (N, S, E), (N, S, E)

    # 4. add_bias_kv: one more source position (K more, for bias_k of shape (K, 1, E)).
    if bias_k is not None and bias_v is not None:
        k, v = _append_bias_kv(k, v, bias_k, bias_v)  # (N, S+K, E) each
        attn_mask, key_padding_mask = _allow_new_key(attn_mask), _allow_new_key(key_padding_mask)

    # 5. Heads; static keys/values are already split into heads.
    q = split_heads(q, num_heads)  # (N, H, L, D)
    k = _heads_or_static(k, static_k, num_heads)  # (N, H, S, D)
    v = _heads_or_static(v, static_v, num_heads)  # (N, H, S, D)

    # 6. add_zero_attn: one more source position, of zeros.
    if add_zero_attn:
        k, v = _append_zero_attn(k, v)  # (N, H, S+1, D) each
        attn_mask, key_padding_mask = _allow_new_key(attn_mask), _allow_new_key(key_padding_mask)

    # 7. One mask.
    mask = _merge_masks(attn_mask, key_padding_mask)  # broadcastable to (N, H, L, S)

    # 8. Attention, on the path torch would take.
    dropout_p = dropout_p if training else 0.0
    weights: torch.Tensor | None
    if need_weights:
        heads, weights = _attention_with_weights(q, k, v, mask, dropout_p)
        # heads (N, H, L, D), weights (N, H, L, S)
    else:
        heads, _ = scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=use_causal_hint
        )  # (N, H, L, D)
        weights = None

    # 9. Concatenate the heads, then the output projection.
    output = F.linear(merge_heads(heads), out_proj_weight, out_proj_bias)  # (N, L, E)

    # 10. The caller's layout.
    output = layout.from_batch_first(output)  # (L, N, E), (N, L, E) or (L, E)
    if weights is not None:
        if average_attn_weights:
            weights = weights.mean(dim=1)  # (N, L, S)
        if not layout.batched:
            weights = weights.squeeze(0)  # (L, S) or (H, L, S)
    return output, weights


# ----------------------------------------------------------------------------------------
# The steps
# ----------------------------------------------------------------------------------------


def _to_additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """MultiheadAttention's bool mask (True = masked out) -> 0 / -inf; float: unchanged."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros_like(mask, dtype=dtype).masked_fill(mask, float("-inf"))


def _attn_mask_4d(attn_mask: torch.Tensor, batch: int, num_heads: int) -> torch.Tensor:
    """(L, S) -> (1, 1, L, S); (N*H, L, S), batch-major -> (N, H, L, S)."""
    if attn_mask.dim() == 2:
        return attn_mask.view(1, 1, *attn_mask.shape)  # (1, 1, L, S)
    return attn_mask.view(batch, num_heads, *attn_mask.shape[1:])  # (N, H, L, S)


def _project_qkv(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, proj: InProjection
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q = query W_Qᵀ + b_Q, k = key W_Kᵀ + b_K, v = value W_Vᵀ + b_V, all heads at once."""
    q = _linear(query, proj.q_weight, proj.q_bias)  # (N, L, E)
    k = _linear(key, proj.k_weight, proj.k_bias)  # (N, S, E)
    v = _linear(value, proj.v_weight, proj.v_bias)  # (N, S, E)
    return q, k, v


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x Wᵀ + b in the dtype of x, also for a bias of another dtype (e.g. float16).

    Computed like torch's ``F.linear`` on non-contiguous input (``matmul``, then an
    in-place ``add_`` of the bias): the sum is taken in the promoted dtype and cast to
    the dtype of x.
    """
    if bias is None or bias.dtype == x.dtype:
        return F.linear(x, weight, bias)
    return (F.linear(x, weight) + bias).to(x.dtype)


def _append_bias_kv(
    k: torch.Tensor, v: torch.Tensor, bias_k: torch.Tensor, bias_v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append the learned bias_k / bias_v to every sequence: S -> S+K (K = 1 usually).

    The biases are (E,), (1, E) or (1, 1, E): one extra key and value; or (K, 1, E):
    K of them. A bias of lower precision is converted to the dtype of k and v, as
    torch's ``cat`` does.
    """
    batch, embed_dim = k.size(0), k.size(-1)
    extra_k = bias_k.reshape(1, -1, embed_dim).to(k.dtype)  # (1, K, E)
    extra_v = bias_v.reshape(1, -1, embed_dim).to(v.dtype)  # (1, K, E)
    k = torch.cat([k, extra_k.expand(batch, -1, -1)], dim=1)  # (N, S+K, E)
    v = torch.cat([v, extra_v.expand(batch, -1, -1)], dim=1)  # (N, S+K, E)
    return k, v


def _heads_or_static(x: torch.Tensor, static: torch.Tensor | None, num_heads: int) -> torch.Tensor:
    """Split projected keys/values into heads, unless static ones, (N*H, S, D), are given."""
    if static is None:
        return split_heads(x, num_heads)  # (N, S, E) -> (N, H, S, D)
    return static.view(x.size(0), num_heads, *static.shape[1:])  # (N*H, S, D) -> (N, H, S, D)


def _append_zero_attn(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Append a key and a value of zeros to every head: S -> S+1."""
    k = torch.cat([k, k.new_zeros(*k.shape[:-2], 1, k.size(-1))], dim=-2)  # (N, H, S+1, D)
    v = torch.cat([v, v.new_zeros(*v.shape[:-2], 1, v.size(-1))], dim=-2)  # (N, H, S+1, D)
    return k, v


def _allow_new_key(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Give an additive mask one more key column, 0 = every query may attend to it."""
    if mask is None:
        return None
    return F.pad(mask, (0, 1))  # (..., S) -> (..., S+1)


def _merge_masks(
    attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None
) -> torch.Tensor | None:
    """Add the two additive masks: attn_mask (1|N, 1|H, L, S) + key_padding_mask (N, 1, 1, S)."""
    if attn_mask is None:
        return key_padding_mask
    if key_padding_mask is None:
        return attn_mask
    return attn_mask + key_padding_mask  # (N, H, L, S) or (N, 1, L, S)


def _attention_with_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_p: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's ``need_weights=True`` path: explicit weights, plain softmax.

    Unlike :func:`attnlens.scaled_dot_product_attention`, a fully masked row gives NaN
    here (softmax of a row of -inf is 0/0), because that is what torch returns.
    """
    scores = attention_scores(q, k)  # (N, H, L, S), scaled by 1/√D
    if mask is not None:
        scores = scores + mask  # (N, H, L, S)
    weights = torch.softmax(scores, dim=-1)  # (N, H, L, S)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights  # (N, H, L, D), (N, H, L, S)


# ----------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------


class _Layout:
    """Names and converts the caller's layout: (L, N, E), (N, L, E) or unbatched (L, E)."""

    def __init__(self, query: object, batch_first: bool) -> None:
        query = check_tensor("query", query)
        self.batch_first = batch_first
        self.batched = query.dim() == 3
        sequence = "N, L, E" if batch_first else "L, N, E"
        check_ndim("query", query, (2, 3), f"(L, E) unbatched or ({sequence}) batched")

    def dims(self, seq: str, features: str) -> str:
        """Axis names like ``"S, N, kdim"`` for a sequence named ``seq``."""
        if not self.batched:
            return f"{seq}, {features}"
        return f"N, {seq}, {features}" if self.batch_first else f"{seq}, N, {features}"

    def heads_dims(self, rest: str) -> str:
        """Axis names with batch and heads flattened first: ``"N*H, L, S"`` or ``"H, L, S"``."""
        return f"N*H, {rest}" if self.batched else f"H, {rest}"

    def shape(
        self, seq: int | None, batch: int | None, features: int | None
    ) -> tuple[int | None, ...]:
        """The sizes in the caller's layout."""
        if not self.batched:
            return (seq, features)
        return (batch, seq, features) if self.batch_first else (seq, batch, features)

    def sizes(self, x: torch.Tensor) -> tuple[int, int, int]:
        """(sequence length, batch size, features) of an input in this layout."""
        if not self.batched:
            return x.size(0), 1, x.size(1)
        if self.batch_first:
            return x.size(1), x.size(0), x.size(2)
        return x.size(0), x.size(1), x.size(2)

    def to_batch_first(self, x: torch.Tensor) -> torch.Tensor:
        """(L, N, E), (N, L, E) or (L, E) -> (N, L, E)."""
        if not self.batched:
            return x.unsqueeze(0)  # (1, L, E)
        return x if self.batch_first else x.transpose(0, 1)  # (N, L, E)

    def from_batch_first(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, E) -> the caller's layout."""
        if not self.batched:
            return x.squeeze(0)  # (L, E)
        return x if self.batch_first else x.transpose(0, 1)  # (L, N, E)


def _check_arguments(
    layout: _Layout,
    query: torch.Tensor,
    *,
    key: object,
    value: object,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: object,
    in_proj_bias: object,
    bias_k: object,
    bias_v: object,
    dropout_p: float,
    out_proj_weight: object,
    out_proj_bias: object,
    key_padding_mask: object,
    attn_mask: object,
    use_separate_proj_weight: bool,
    q_proj_weight: object,
    k_proj_weight: object,
    v_proj_weight: object,
    static_k: object,
    static_v: object,
    need_weights: bool,
    is_causal: bool,
) -> InProjection:
    """Check everything; return the input projections (views) to use."""
    check_tensor("query", query, floating=True)  # a tensor of 2 or 3 dimensions: see _Layout
    key = check_tensor("key", key)
    value = check_tensor("value", value)
    _check_like_query("key", key, query)
    _check_like_query("value", value, query)
    length, batch, embed_dim = layout.sizes(query)
    check_ndim("key", key, query.dim(), f"({layout.dims('S', 'kdim')}) like query")
    check_ndim("value", value, query.dim(), f"({layout.dims('S', 'vdim')}) like query")
    source_length = layout.sizes(key)[0]

    # Heads and the embedding size.
    num_heads = check_positive_int("num_heads", num_heads)
    check_shape(
        "query",
        query,
        (layout.dims("L", "E"), layout.shape(length, batch, embed_dim_to_check)),
        note="E = embed_dim_to_check",
    )
    if embed_dim % num_heads != 0:
        raise InputValueError(
            f"num_heads: expected a divisor of embed_dim = {embed_dim}, got {num_heads}"
        )
    head_dim = embed_dim // num_heads

    # Projections; they fix the feature sizes of key and value.
    proj = _check_projections(
        query,
        use_separate_proj_weight=use_separate_proj_weight,
        in_proj_weight=in_proj_weight,
        in_proj_bias=in_proj_bias,
        q_proj_weight=q_proj_weight,
        k_proj_weight=k_proj_weight,
        v_proj_weight=v_proj_weight,
    )
    kdim, vdim = proj.k_weight.size(1), proj.v_weight.size(1)
    check_shape(
        "key",
        key,
        (layout.dims("S", "kdim"), layout.shape(None, batch, kdim)),
        note="N from query, kdim from the key projection weight",
    )
    check_shape(
        "value",
        value,
        (layout.dims("S", "vdim"), layout.shape(source_length, batch, vdim)),
        note="S from key, N from query, vdim from the value projection weight",
    )
    out_proj_weight = check_tensor("out_proj_weight", out_proj_weight)
    _check_like_query("out_proj_weight", out_proj_weight, query)
    check_shape("out_proj_weight", out_proj_weight, ("E, E", (embed_dim, embed_dim)))
    if out_proj_bias is not None:
        out_proj_bias = check_tensor("out_proj_bias", out_proj_bias)
        _check_like_query("out_proj_bias", out_proj_bias, query)
        check_shape("out_proj_bias", out_proj_bias, ("E", (embed_dim,)))

    # torch ignores attn_mask (all but its number of dimensions) when it uses the
    # is_causal hint: SDPA path, no key padding mask.
    attn_mask_ignored = is_causal and key_padding_mask is None and not need_weights
    has_mask = key_padding_mask is not None or (attn_mask is not None and not attn_mask_ignored)

    # Extra keys and values.
    _check_bias_kv(
        query,
        bias_k=bias_k,
        bias_v=bias_v,
        static_k=static_k,
        static_v=static_v,
        embed_dim=embed_dim,
        has_mask=has_mask,
    )
    source_length = _check_static_kv(
        layout,
        query,
        static_k=static_k,
        static_v=static_v,
        batch_heads=batch * num_heads,
        source_length=source_length,
        head_dim=head_dim,
    )

    # Masks, sized by S before bias_k/bias_v or the zero attention are appended.
    _check_key_padding_mask(layout, query, key_padding_mask, batch, source_length)
    if attn_mask_ignored:
        _check_ignored_attn_mask(
            layout, attn_mask, num_heads=num_heads, length=length, key_length=key.size(0)
        )
    else:
        _check_attn_mask(
            layout,
            query,
            attn_mask,
            batch_heads=batch * num_heads,
            length=length,
            source_length=source_length,
        )
    _check_mask_dtypes(
        query,
        attn_mask=None if attn_mask_ignored else attn_mask,
        key_padding_mask=key_padding_mask,
        need_weights=need_weights,
    )
    if is_causal and attn_mask is None:
        raise InputValueError(
            "attn_mask: expected a mask when is_causal=True (in multi-head attention "
            "is_causal is only a hint about attn_mask), got None"
        )
    check_probability("dropout_p", dropout_p)
    return proj


def _check_projections(
    query: torch.Tensor,
    *,
    use_separate_proj_weight: bool,
    in_proj_weight: object,
    in_proj_bias: object,
    q_proj_weight: object,
    k_proj_weight: object,
    v_proj_weight: object,
) -> InProjection:
    """Check the input projection weights in either layout and split them (views)."""
    embed_dim = query.size(-1)
    if in_proj_bias is not None:
        in_proj_bias = check_tensor("in_proj_bias", in_proj_bias)
        if not torch.can_cast(in_proj_bias.dtype, query.dtype):
            raise InputTypeError(
                f"in_proj_bias: expected a dtype that can be cast to the query's, "
                f"{query.dtype}, got {in_proj_bias.dtype}"
            )
        check_same_device("in_proj_bias", in_proj_bias, "query", query)
        check_shape("in_proj_bias", in_proj_bias, ("3*E", (3 * embed_dim,)))
    if not use_separate_proj_weight:
        if in_proj_weight is None:
            raise InputValueError(
                "in_proj_weight: expected a tensor of shape (3*E, E) when "
                "use_separate_proj_weight=False, got None"
            )
        in_proj_weight = check_tensor("in_proj_weight", in_proj_weight)
        _check_like_query("in_proj_weight", in_proj_weight, query)
        check_shape("in_proj_weight", in_proj_weight, ("3*E, E", (3 * embed_dim, embed_dim)))
        return split_packed(in_proj_weight, in_proj_bias)

    weights = {}
    for name, given, dims in (
        ("q_proj_weight", q_proj_weight, ("E, E", (embed_dim, embed_dim))),
        ("k_proj_weight", k_proj_weight, ("E, kdim", (embed_dim, None))),
        ("v_proj_weight", v_proj_weight, ("E, vdim", (embed_dim, None))),
    ):
        if given is None:
            raise InputValueError(
                f"{name}: expected a tensor of shape ({dims[0]}) when "
                "use_separate_proj_weight=True, got None"
            )
        weight = check_tensor(name, given)
        _check_like_query(name, weight, query)
        check_shape(name, weight, dims)
        weights[name] = weight
    q_bias, k_bias, v_bias = (None, None, None) if in_proj_bias is None else in_proj_bias.chunk(3)
    return InProjection(
        weights["q_proj_weight"],
        weights["k_proj_weight"],
        weights["v_proj_weight"],
        q_bias,
        k_bias,
        v_bias,
    )


def _check_bias_kv(
    query: torch.Tensor,
    *,
    bias_k: object,
    bias_v: object,
    static_k: object,
    static_v: object,
    embed_dim: int,
    has_mask: bool,
) -> None:
    """bias_k, bias_v: (E,), (1, E) or (1, 1, E), or (K, 1, E), as torch accepts them.

    torch appends ``bias_k.repeat(1, N, 1)`` to the keys, (S, N, E): every shape that
    gives (K, N, E) there works, and K > 1 (or 0) only without masks, which torch pads
    by one column.
    """
    if bias_k is None and bias_v is None:
        return
    shapes = ("E", (embed_dim,)), ("1, E", (1, embed_dim)), ("K, 1, E", (None, 1, embed_dim))
    extra_keys = []
    for name, given, other in (("bias_k", bias_k, "bias_v"), ("bias_v", bias_v, "bias_k")):
        if given is None:
            raise InputValueError(
                f"{name}: expected a tensor of shape (1, 1, E), (1, E) or (E,) like {other}, "
                "got None"
            )
        bias = check_tensor(name, given)
        if torch.promote_types(bias.dtype, query.dtype) != query.dtype:
            raise InputTypeError(
                f"{name}: expected the query's dtype {query.dtype} or one that promotes to it "
                f"(a lower-precision float), got {bias.dtype}"
            )
        check_same_device(name, bias, "query", query)
        if not (bias.dim() == 0 and embed_dim == 1):  # a scalar is (1, 1, 1)
            check_shape(name, bias, *shapes, note="E from query")
        extra_keys.append(bias.size(0) if bias.dim() == 3 else 1)
    if extra_keys[0] != extra_keys[1]:
        raise InputValueError(
            f"bias_v: expected shape (K, 1, E) with K = {extra_keys[0]} from bias_k (as many "
            f"extra values as keys), got {format_shape(cast(torch.Tensor, bias_v).shape)}"
        )
    if extra_keys[0] != 1 and has_mask:
        raise InputValueError(
            f"bias_k: expected one extra key, shape (1, 1, E), (1, E) or (E,), when a mask is "
            f"given (the masks get one column for it, as in torch), got "
            f"{format_shape(cast(torch.Tensor, bias_k).shape)}"
        )
    for name, static in (("static_k", static_k), ("static_v", static_v)):
        if static is not None:
            raise InputValueError(
                f"{name}: expected None when bias_k and bias_v are given (no bias is added to "
                f"static keys and values), got a tensor"
            )


def _check_static_kv(
    layout: _Layout,
    query: torch.Tensor,
    *,
    static_k: object,
    static_v: object,
    batch_heads: int,
    source_length: int,
    head_dim: int,
) -> int:
    """Check static_k/static_v (N*H, S, D); return the source length S they imply."""
    if static_k is not None:
        static_k = check_tensor("static_k", static_k)
        _check_like_query("static_k", static_k, query)
        expected_length = None if static_v is not None else source_length
        check_shape(
            "static_k",
            static_k,
            (layout.heads_dims("S, D"), (batch_heads, expected_length, head_dim)),
            note="" if static_v is not None else "S from value, since static_v is None",
        )
        source_length = static_k.size(1)
    if static_v is not None:
        static_v = check_tensor("static_v", static_v)
        _check_like_query("static_v", static_v, query)
        check_shape(
            "static_v",
            static_v,
            (layout.heads_dims("S, D"), (batch_heads, source_length, head_dim)),
            note="S from static_k" if static_k is not None else "S from key",
        )
    return source_length


def _check_like_query(name: str, x: torch.Tensor, query: torch.Tensor) -> None:
    """The dtype and the device of the query."""
    check_same_dtype(name, x, "query", query)
    check_same_device(name, x, "query", query)


def _check_mask_type(name: str, mask: torch.Tensor, query: torch.Tensor) -> None:
    """bool or floating point (the dtypes torch converts); on the query's device."""
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise InputTypeError(
            f"{name}: expected dtype torch.bool or a floating-point dtype (the query's is "
            f"{query.dtype}), got {mask.dtype}"
        )
    check_same_device(name, mask, "query", query)


def _check_mask_dtypes(
    query: torch.Tensor,
    *,
    attn_mask: object,
    key_padding_mask: object,
    need_weights: bool,
) -> None:
    """The float dtype of the merged mask, as torch's kernels accept it.

    bool masks become the query's dtype; float masks keep theirs and are added, which
    promotes. The ``need_weights=True`` path (``baddbmm``) needs the query's dtype;
    torch's SDPA (``need_weights=False``) also takes float32.
    """
    dtypes = {
        name: query.dtype if mask.dtype == torch.bool else mask.dtype
        for name, mask in (("attn_mask", attn_mask), ("key_padding_mask", key_padding_mask))
        if isinstance(mask, torch.Tensor)
    }
    if not dtypes:
        return
    merged = functools.reduce(torch.promote_types, dtypes.values())
    allowed = (query.dtype,) if need_weights else (query.dtype, torch.float32)
    if merged in allowed:
        return
    floats = {name: dtype for name, dtype in dtypes.items() if dtype != query.dtype}
    also = "" if need_weights else " (or torch.float32, which torch's SDPA also takes)"
    given = ", ".join(f"{name} {dtype}" for name, dtype in floats.items())
    raise InputTypeError(
        f"{', '.join(floats)}: expected bool or float masks of the query's dtype "
        f"{query.dtype}{also}, got {given}"
        + (f", which add up to {merged}" if len(dtypes) > 1 else "")
    )


def _check_key_padding_mask(
    layout: _Layout, query: torch.Tensor, mask: object, batch: int, source_length: int
) -> None:
    if mask is None:
        return
    mask = check_tensor("key_padding_mask", mask)
    _check_mask_type("key_padding_mask", mask, query)
    if layout.batched:
        check_shape("key_padding_mask", mask, ("N, S", (batch, source_length)))
    else:
        check_shape("key_padding_mask", mask, ("S", (source_length,)))


def _check_attn_mask(
    layout: _Layout,
    query: torch.Tensor,
    mask: object,
    *,
    batch_heads: int,
    length: int,
    source_length: int,
) -> None:
    if mask is None:
        return
    mask = check_tensor("attn_mask", mask)
    _check_mask_type("attn_mask", mask, query)
    check_shape(
        "attn_mask",
        mask,
        ("L, S", (length, source_length)),
        (layout.heads_dims("L, S"), (batch_heads, length, source_length)),
    )


def _check_ignored_attn_mask(
    layout: _Layout, mask: object, *, num_heads: int, length: int, key_length: int
) -> None:
    """What torch still checks of an attn_mask that the is_causal hint replaces."""
    if mask is None:
        return  # reported with is_causal
    mask = check_tensor("attn_mask", mask)
    heads = layout.heads_dims("L, S")
    check_ndim("attn_mask", mask, (2, 3), f"(L, S) or ({heads})")
    if not layout.batched and mask.dim() == 3:
        check_shape(
            "attn_mask",
            mask,
            (heads, (num_heads, length, key_length)),
            note="checked by torch even when is_causal=True replaces the mask",
        )


# TorchScript cannot compile this module's Python. ``torch.jit.script`` calls a function's
# ``__prepare_scriptable__`` before compiling it, directly or when it meets the function
# inside a module it scripts (e.g. torch's MultiheadAttention, once this function has been
# swapped in for torch's): it then compiles torch's function, which computes the same.
multi_head_attention_forward.__prepare_scriptable__ = lambda: _TORCH_MULTI_HEAD_ATTENTION_FORWARD  # type: ignore[attr-defined]
