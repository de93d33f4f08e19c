"""A drop-in, readable :class:`torch.nn.MultiheadAttention`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from attnlens._checks import InputValueError, check_dtype, check_positive_int, check_probability
from attnlens.functional import _TORCH_MULTI_HEAD_ATTENTION_FORWARD, _multi_head_attention_forward

__all__ = ["MultiheadAttention"]

_Function = TypeVar("_Function", bound=Callable[..., object])


def _python_only(function: _Function) -> _Function:
    """:func:`torch.jit.ignore` (typed): TorchScript leaves this method to Python."""
    return torch.jit.ignore(function)  # type: ignore[no-untyped-call,no-any-return]


class MultiheadAttention(nn.Module):
    r"""Multi-head attention with the constructor, parameters and results of torch's.

    .. math::

        \operatorname{MultiHead}(Q, K, V) = \operatorname{Concat}(\mathrm{head}_1, \dots,
        \mathrm{head}_H)\, W^O, \quad
        \mathrm{head}_i = \operatorname{Attention}(Q W_i^Q, K W_i^K, V W_i^V)

    The parameter names, shapes, initialisation and ``state_dict`` keys are those of
    :class:`torch.nn.MultiheadAttention`, so ``load_state_dict`` works in both
    directions, and with the same seed both modules start from identical parameters.
    :meth:`forward` calls :func:`attnlens.functional.multi_head_attention_forward`.

    Parameters
    ----------
    embed_dim : int
        E, the model's feature size (and the query's).
    num_heads : int
        H; must divide E. Each head works on D = E/H features.
    dropout : float, default 0.0
        Dropout probability on the attention weights, in training mode.
    bias : bool, default True
        Give the input and output projections a bias.
    add_bias_kv : bool, default False
        Learn one extra key and value, ``bias_k`` and ``bias_v`` (1, 1, E), appended to
        every sequence: S grows by one.
    add_zero_attn : bool, default False
        Append a zero key and value to every head: S grows by one.
    kdim, vdim : int, optional
        Feature sizes of key and value; default E. If either differs from E the module
        keeps separate ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim) and
        ``v_proj_weight`` (E, vdim) instead of the packed ``in_proj_weight`` (3E, E).
    batch_first : bool, default False
        Inputs and output are (N, L, E) instead of (L, N, E).
    device, dtype : optional
        Where and in which dtype to create the parameters.

    Attributes
    ----------
    in_proj_weight : torch.nn.Parameter or None
        [W_Q; W_K; W_V], shape (3E, E), in the packed layout; else None.
    q_proj_weight, k_proj_weight, v_proj_weight : torch.nn.Parameter or None
        Shapes (E, E), (E, kdim), (E, vdim) in the separate layout; else None.
    in_proj_bias : torch.nn.Parameter or None
        [b_Q; b_K; b_V], shape (3E,), in both layouts; None if ``bias=False``.
    out_proj : torch.nn.Linear
        W_O and its bias (a ``NonDynamicallyQuantizableLinear``, as in torch).
    bias_k, bias_v : torch.nn.Parameter or None
        Shape (1, 1, E) with ``add_bias_kv``; else None.

    Raises
    ------
    TypeError
        If ``embed_dim``, ``num_heads``, ``kdim`` or ``vdim`` is not an int.
    ValueError
        If one of them is <= 0, ``embed_dim`` is not divisible by ``num_heads``, or
        ``dropout`` is outside [0, 1].

    Notes
    -----
    Differences from :class:`torch.nn.MultiheadAttention`, all deliberate:

    * torch has a fused *fast path* (inference: no grad, eval, batched self-attention
      with ``batch_first=True``, packed projections with bias, ...). It computes the
      same values, except that a fully masked query row gives **NaN** there even with
      ``need_weights=False``, where torch's regular path (and this module) gives zeros
      (the output row is then ``out_proj.bias``). The fast path also ignores
      ``is_causal=True`` without ``attn_mask`` instead of raising. This module always
      follows torch's regular path, the one documented in
      :func:`torch.nn.functional.multi_head_attention_forward`.
    * Bad input raises a ``ValueError``/``TypeError`` naming the argument and the
      expected and given shapes in the layout the caller used (``batch_first``
      included), and a bool and a float mask may be mixed without a warning. Each
      error is also an ``AssertionError`` and a ``RuntimeError``, the classes torch
      raises, so code that catches torch's errors catches these too.
    * Nested tensors are not supported.

    **TorchScript.** ``torch.jit.script`` works, on this module and on a model that
    contains it. TorchScript cannot compile attnlens's Python, so the scripted
    :meth:`forward` calls torch's
    :func:`~torch.nn.functional.multi_head_attention_forward` with this module's
    parameters (the same tensors), which computes the same; the scripted module
    then has torch's error messages.

    Examples
    --------
    >>> import torch
    >>> from attnlens.multihead import MultiheadAttention
    >>> torch_mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    >>> mha = MultiheadAttention(8, 2, batch_first=True)
    >>> mha.load_state_dict(torch_mha.state_dict())
    <All keys matched successfully>
    >>> x = torch.randn(3, 5, 8)  # (N, L, E)
    >>> output, weights = mha(x, x, x, average_attn_weights=False)
    >>> output.shape, weights.shape  # (N, L, E), (N, H, L, S)
    (torch.Size([3, 5, 8]), torch.Size([3, 2, 5, 5]))
    >>> expected, expected_weights = torch_mha(x, x, x, average_attn_weights=False)
    >>> torch.testing.assert_close(output, expected)
    >>> torch.testing.assert_close(weights, expected_weights)
    """

    if TYPE_CHECKING:  # for type checkers only: TorchScript types the attributes themselves
        in_proj_weight: nn.Parameter | None
        q_proj_weight: nn.Parameter | None
        k_proj_weight: nn.Parameter | None
        v_proj_weight: nn.Parameter | None
        in_proj_bias: nn.Parameter | None
        bias_k: nn.Parameter | None
        bias_v: nn.Parameter | None
        out_proj: NonDynamicallyQuantizableLinear

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        embed_dim = check_positive_int("embed_dim", embed_dim)
        num_heads = check_positive_int("num_heads", num_heads)
        if embed_dim % num_heads != 0:
            raise InputValueError(
                f"embed_dim: expected a multiple of num_heads = {num_heads}, got {embed_dim}"
            )
        kdim = embed_dim if kdim is None else check_positive_int("kdim", kdim)
        vdim = embed_dim if vdim is None else check_positive_int("vdim", vdim)
        dropout = check_probability("dropout", dropout)
        super().__init__()

        def parameter(*size: int) -> nn.Parameter:
            # Uninitialised here; _reset_parameters() fills it in.
            return nn.Parameter(torch.empty(*size, device=device, dtype=dtype))

        self.embed_dim = embed_dim
        self.kdim = kdim
        self.vdim = vdim
        self._qkv_same_embed_dim = kdim == embed_dim and vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads

        # The parameters are created in torch's order, so that state_dict keys come in the
        # same order and the same seed gives the same initial values.
        if self._qkv_same_embed_dim:
            self.in_proj_weight = parameter(3 * embed_dim, embed_dim)
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = parameter(embed_dim, embed_dim)
            self.k_proj_weight = parameter(embed_dim, kdim)
            self.v_proj_weight = parameter(embed_dim, vdim)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = parameter(3 * embed_dim)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(
            embed_dim, embed_dim, bias=bias, device=device, dtype=dtype
        )
        if add_bias_kv:
            self.bias_k = parameter(1, 1, embed_dim)
            self.bias_v = parameter(1, 1, embed_dim)
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """torch's initialisation: Xavier-uniform projections, zero biases."""
        # Packed: in_proj_weight only; separate: q, k, v (the others are None).
        for weight in (
            self.in_proj_weight,
            self.q_proj_weight,
            self.k_proj_weight,
            self.v_proj_weight,
        ):
            if weight is not None:
                nn.init.xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            nn.init.constant_(self.in_proj_bias, 0.0)
            nn.init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            nn.init.xavier_normal_(self.bias_v)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Parameters
        ----------
        query : torch.Tensor
            (L, N, E), or (N, L, E) with ``batch_first``, or (L, E) unbatched.
        key : torch.Tensor
            (S, N, kdim), (N, S, kdim) or (S, kdim).
        value : torch.Tensor
            (S, N, vdim), (N, S, vdim) or (S, vdim).
        key_padding_mask : torch.Tensor, optional
            (N, S), or (S,) unbatched. **bool: True = padding, masked out**; float:
            added to the scores.
        need_weights : bool, default True
            Return the attention weights. With False, a fully masked query row gives
            zeros instead of NaN (torch's SDPA path).
        attn_mask : torch.Tensor, optional
            (L, S) or (N*H, L, S) batch-major; (H, L, S) unbatched. **bool: True =
            masked out**; float: added to the scores.
        average_attn_weights : bool, default True
            Average the returned weights over heads.
        is_causal : bool, default False
            A hint that ``attn_mask`` is causal (``attn_mask`` is required).

        Returns
        -------
        output : torch.Tensor
            (L, N, E), (N, L, E) with ``batch_first``, or (L, E) unbatched.
        weights : torch.Tensor or None
            (N, L, S) averaged or (N, H, L, S) per head; (L, S) or (H, L, S)
            unbatched; None if ``need_weights=False``. In training mode with
            ``dropout > 0`` they have dropout applied (rows do not sum to 1).

        Raises
        ------
        TypeError, ValueError
            For bad input, naming the argument, the expected and the given shape
            or dtype; see :func:`attnlens.functional.multi_head_attention_forward`.
            Also an ``AssertionError`` and a ``RuntimeError``, as torch raises.
        """
        if torch._jit_internal.is_scripting():  # TorchScript compiles this branch only
            return self._torch_forward(
                query,
                key,
                value,
                key_padding_mask=key_padding_mask,
                need_weights=need_weights,
                attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal,
            )
        return self._forward(
            query,
            key,
            value,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )

    @_python_only
    def _forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        need_weights: bool,
        attn_mask: torch.Tensor | None,
        average_attn_weights: bool,
        is_causal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` in Python: the readable steps and checks of attnlens."""
        if isinstance(query, torch.Tensor):  # name the input, not a parameter, if dtypes differ
            parameters = self.out_proj.weight.dtype
            check_dtype("query", query, parameters, "the dtype of the module's parameters")
        return _multi_head_attention_forward(
            query,
            key,
            value,
            embed_dim_to_check=self.embed_dim,
            num_heads=self.num_heads,
            in_proj_weight=self.in_proj_weight,
            in_proj_bias=self.in_proj_bias,
            bias_k=self.bias_k,
            bias_v=self.bias_v,
            add_zero_attn=self.add_zero_attn,
            dropout_p=self.dropout,
            out_proj_weight=self.out_proj.weight,
            out_proj_bias=self.out_proj.bias,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            use_separate_proj_weight=not self._qkv_same_embed_dim,
            q_proj_weight=self.q_proj_weight,
            k_proj_weight=self.k_proj_weight,
            v_proj_weight=self.v_proj_weight,
            static_k=None,
            static_v=None,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
            batch_first=self.batch_first,
        )

    def _torch_forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        need_weights: bool,
        attn_mask: torch.Tensor | None,
        average_attn_weights: bool,
        is_causal: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` under TorchScript: torch's function, which computes the same.

        TorchScript cannot compile attnlens's Python; this is what
        :meth:`torch.nn.MultiheadAttention.forward` does on its regular path.
        """
        batched = query.dim() == 3
        if self.batch_first and batched:  # torch's function is sequence first
            query = query.transpose(1, 0)  # (L, N, E)
            key = key.transpose(1, 0)  # (S, N, kdim)
            value = value.transpose(1, 0)  # (S, N, vdim)
        output, weights = _TORCH_MULTI_HEAD_ATTENTION_FORWARD(
            query,
            key,
            value,
            self.embed_dim,
            self.num_heads,
            self.in_proj_weight,
            self.in_proj_bias,
            self.bias_k,
            self.bias_v,
            self.add_zero_attn,
            self.dropout,
            self.out_proj.weight,
            self.out_proj.bias,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            use_separate_proj_weight=not self._qkv_same_embed_dim,
            q_proj_weight=self.q_proj_weight,
            k_proj_weight=self.k_proj_weight,
            v_proj_weight=self.v_proj_weight,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )
        if self.batch_first and batched:
            output = output.transpose(1, 0)  # (N, L, E)
        return output, weights

    def merge_masks(
        self,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
        query: torch.Tensor,
    ) -> tuple[torch.Tensor | None, int | None]:
        """Combine the masks for torch's fused kernels, exactly as torch's method does.

        :class:`torch.nn.TransformerEncoderLayer` calls this on its ``self_attn`` in its
        inference fast path; it is here so that this module can stand in for torch's
        there. Unlike :meth:`forward`, it expects float masks (torch converts them first).

        Parameters
        ----------
        attn_mask : torch.Tensor or None
            (L, L) or (N*H, L, L).
        key_padding_mask : torch.Tensor or None
            (N, L).
        query : torch.Tensor
            (N, L, E), batch first.

        Returns
        -------
        merged_mask : torch.Tensor or None
            The key padding mask alone (N, L), or the attention mask expanded to
            (N, H, L, L) plus the key padding mask if given.
        mask_type : int or None
            1 for a key padding mask alone, 2 when an attention mask is involved,
            None without masks.
        """
        if attn_mask is None:
            return key_padding_mask, None if key_padding_mask is None else 1
        batch, length, _ = query.shape
        if attn_mask.dim() == 3:
            merged = attn_mask.view(batch, -1, length, length)  # (N, H, L, L)
        else:
            merged = attn_mask.view(1, 1, length, length).expand(batch, self.num_heads, -1, -1)
        if key_padding_mask is not None:
            padding = key_padding_mask.view(batch, 1, 1, length)  # (N, 1, 1, L)
            merged = merged + padding.expand(-1, self.num_heads, -1, -1)  # (N, H, L, L)
        return merged, 2

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        text = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.kdim != self.embed_dim or self.vdim != self.embed_dim:
            text += f", kdim={self.kdim}, vdim={self.vdim}"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bias_k is not None:
            text += ", add_bias_kv=True"
        if self.add_zero_attn:
            text += ", add_zero_attn=True"
        if self.batch_first:
            text += ", batch_first=True"
        return text
