r"""The weights of a ``scaled_dot_product_attention`` call, and a way to see every call.

:func:`torch.nn.functional.scaled_dot_product_attention` (SDPA) is what GPT-style code,
Hugging Face models (``attn_implementation="sdpa"``, their default) and timm's vision
transformers call to compute attention. Its fused kernels never materialise the weights.
:func:`sdpa_weights` computes them from the arguments of one call, with SDPA's exact rules,
and :class:`SDPACallMode` is a :class:`torch.overrides.TorchFunctionMode` that reports every
call made while it is active, also calls through a name bound at import time
(``from torch.nn.functional import scaled_dot_product_attention``): a mode sees the call
itself, not the attribute it was looked up through.

Shapes: ``...`` is any number of leading batch dimensions (usually ``(N, H)``), ``L`` the
query length, ``S`` the key length, ``E`` the query/key feature size of a head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from attnlens.attention import apply_mask, causal_mask, softmax_zero_masked_rows

__all__ = ["SDPACallMode", "bind_sdpa_arguments", "sdpa_weights"]

#: The function object every caller of SDPA ends up calling (``F.scaled_dot_product_attention``
#: is torch's builtin itself, so an imported name is the same object).
SDPA: Callable[..., torch.Tensor] = F.scaled_dot_product_attention

_SDPA_PARAMETERS = (
    "query",
    "key",
    "value",
    "attn_mask",
    "dropout_p",
    "is_causal",
    "scale",
    "enable_gqa",
)
_SDPA_DEFAULTS: dict[str, Any] = {
    "attn_mask": None,
    "dropout_p": 0.0,
    "is_causal": False,
    "scale": None,
    "enable_gqa": False,
}


def bind_sdpa_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of one SDPA call by name, defaults filled in.

    Parameters
    ----------
    args : tuple
        Positional arguments of the call.
    kwargs : dict
        Keyword arguments of the call.

    Returns
    -------
    dict
        ``query``, ``key``, ``value``, ``attn_mask``, ``dropout_p``, ``is_causal``,
        ``scale`` and ``enable_gqa``.
    """
    call = dict(_SDPA_DEFAULTS)
    call.update(zip(_SDPA_PARAMETERS, args, strict=False))
    call.update(kwargs)
    return call


def sdpa_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    r"""The attention weights of one ``scaled_dot_product_attention`` call.

    .. math:: A = \operatorname{softmax}\!\left(Q K^\top \cdot \text{scale} + M\right)

    with the rules of :func:`torch.nn.functional.scaled_dot_product_attention`, so that
    ``sdpa_weights(q, k, ...) @ v`` equals SDPA's output (without dropout).

    Parameters
    ----------
    query : torch.Tensor
        Shape (..., H, L, E).
    key : torch.Tensor
        Shape (..., H_kv, S, E); H_kv = H unless ``enable_gqa``. The leading dimensions
        broadcast against the query's, as in SDPA.
    attn_mask : torch.Tensor, optional
        Broadcastable to (..., H, L, S). bool: True where the key takes part; float: added
        to the scores.
    is_causal : bool, default False
        The causal mask ``torch.ones(L, S).tril()``: aligned at the top left, also when
        L != S (one new query against a cache of S keys sees only the first key; pass the
        mask yourself for bottom-right alignment).
    scale : float, optional
        Factor of Q Kᵀ; default 1/√E.
    enable_gqa : bool, default False
        Grouped-query attention: each key head serves H / H_kv consecutive query heads,
        as SDPA's ``repeat_interleave`` does. The weights are per query head.

    Returns
    -------
    torch.Tensor
        Shape (..., H, L, S), in the query's dtype. Each row sums to 1, except a row whose
        keys are all masked out: it is all zeros, as SDPA's output for it is zero.

    Raises
    ------
    ValueError
        If the feature sizes of query and key differ, or with ``enable_gqa`` the number
        of query heads is not a multiple of the number of key heads.

    Notes
    -----
    Half-precision inputs (float16, bfloat16) are computed in float32 and the weights
    rounded to the input's dtype at the end, as SDPA's math kernel does internally.

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from attnlens.capture_sdpa import sdpa_weights
    >>> _ = torch.manual_seed(0)
    >>> q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    >>> weights = sdpa_weights(q, k, is_causal=True)  # (N, H, L, S)
    >>> weights[0, 0]  # top-left causal alignment: query 0 sees key 0 only
    tensor([[1.0000, 0.0000, 0.0000, 0.0000, 0.0000],
            [0.8038, 0.1962, 0.0000, 0.0000, 0.0000],
            [0.3120, 0.5154, 0.1726, 0.0000, 0.0000]])
    >>> expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    >>> torch.testing.assert_close(weights @ v, expected)
    """
    if query.size(-1) != key.size(-1):
        raise ValueError(
            f"key: expected the query's feature size E={query.size(-1)} in its last "
            f"dimension, got shape {tuple(key.shape)} for query shape {tuple(query.shape)}"
        )
    if enable_gqa and query.dim() >= 3 and key.dim() >= 3 and query.size(-3) != key.size(-3):
        heads, kv_heads = query.size(-3), key.size(-3)
        if heads % kv_heads != 0:
            raise ValueError(
                f"key: with enable_gqa the query's {heads} heads must be a multiple of the "
                f"key's heads, got key shape {tuple(key.shape)} for query {tuple(query.shape)}"
            )
        key = key.repeat_interleave(heads // kv_heads, dim=-3)  # (..., H, S, E)
    dtype = query.dtype
    if dtype in (torch.float16, torch.bfloat16):
        query, key = query.float(), key.float()
        if attn_mask is not None and attn_mask.is_floating_point():
            attn_mask = attn_mask.float()
    factor = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    if is_causal:
        attn_mask = causal_mask(query.size(-2), key.size(-2), device=query.device)  # (L, S)
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
        scores = torch.matmul(query, key.transpose(-2, -1)) * factor  # (..., H, L, S)
        if attn_mask is not None:
            scores = apply_mask(scores, attn_mask)  # (..., H, L, S)
        return softmax_zero_masked_rows(scores).to(dtype)  # (..., H, L, S)
    # Outside autograd: scale the small query instead of the (..., H, L, S) scores, then
    # every step in place on that one buffer.
    scores = torch.matmul(query * factor, key.transpose(-2, -1))  # (..., H, L, S)
    if attn_mask is not None:
        shape = torch.broadcast_shapes(scores.shape, attn_mask.shape)  # type: ignore[no-untyped-call]
        if shape != scores.shape:  # a mask with more leading dimensions: grow the buffer
            scores = scores.expand(shape).clone()  # (..., H, L, S)
    if attn_mask is None:
        return torch._softmax(scores, -1, False, out=scores).to(dtype)
    if attn_mask.dtype == torch.bool:
        scores.masked_fill_(~attn_mask, float("-inf"))
        fully_masked = ~attn_mask.any(dim=-1, keepdim=True)  # (..., L, 1), on the small mask
    else:
        scores.add_(attn_mask)
        fully_masked = torch.isneginf(attn_mask).all(dim=-1, keepdim=True)  # (..., L, 1)
    weights = torch._softmax(scores, -1, False, out=scores)  # (..., H, L, S)
    if bool(fully_masked.any()):
        weights.masked_fill_(fully_masked, 0.0)  # SDPA's output for such a row is zero
    return weights.to(dtype)


class SDPACallMode(TorchFunctionMode):
    """A torch function mode that reports every SDPA call made while it is active.

    The call runs unchanged (the fused kernel computes the output); afterwards
    ``on_call(arguments, output)`` receives the call's arguments by name
    (:func:`bind_sdpa_arguments`) and its output. Every other torch function passes
    straight through. While ``on_call`` runs, the mode is off: what it computes is not
    seen again.

    Parameters
    ----------
    on_call : callable
        ``on_call(arguments: dict, output: torch.Tensor) -> None``.

    Notes
    -----
    Any active torch function mode makes :func:`torch.overrides.has_torch_function` true
    for plain tensors, which turns off the fused fast paths of ``nn.MultiheadAttention``
    and ``nn.TransformerEncoderLayer``. :func:`attnlens.capture_attention` therefore
    suspends the mode while those modules run.
    """

    def __init__(self, on_call: Callable[[dict[str, Any], torch.Tensor], None]) -> None:
        super().__init__()
        self.on_call = on_call

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if func is SDPA:
            self.on_call(bind_sdpa_arguments(args, kwargs), output)
        return output
