r"""Multi-head attention written the way *Attention Is All You Need* writes it.

The paper (Vaswani et al., 2017, section 3.2.2) defines

.. math::

    \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \ldots,
    \mathrm{head}_h)\, W^O, \qquad
    \mathrm{head}_i = \mathrm{Attention}(Q W_i^Q, K W_i^K, V W_i^V)

with one small projection per head, :math:`W_i^Q, W_i^K, W_i^V \in
\mathbb{R}^{d_\text{model} \times d_k}`, and :math:`W^O \in \mathbb{R}^{h d_k \times
d_\text{model}}`. :class:`PaperMultiheadAttention` keeps exactly those matrices as separate,
named parameters and computes the heads one at a time, in a Python loop, so every step can be
printed and inspected. It converts both ways with :class:`torch.nn.MultiheadAttention`, which
computes the same thing with one packed matrix (see the Notes of
:class:`PaperMultiheadAttention`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import cast

import torch
from torch import Tensor, nn

from attnlens._checks import (
    check_dtype,
    check_ndim,
    check_positive_int,
    check_probability,
    check_shape,
    check_tensor,
)
from attnlens.attention import scaled_dot_product_attention
from attnlens.multihead import MultiheadAttention

__all__ = ["PaperMultiheadAttention"]


class PaperMultiheadAttention(nn.Module):
    r"""Multi-head attention with the paper's per-head matrices :math:`W_i^Q, W_i^K, W_i^V, W^O`.

    For each head :math:`i` (of ``H = num_heads``) the module holds its own projections
    :math:`W_i^Q, W_i^K, W_i^V` from ``d_model = E = embed_dim`` features down to
    ``d_k = E / H`` features (the paper's :math:`d_k`; ``D`` elsewhere in attnlens, torch's
    ``head_dim``), and one output projection :math:`W^O` from ``E`` to ``E``.
    ``forward`` computes

    .. math::

        \mathrm{head}_i = \mathrm{softmax}\!\left(
            \frac{(Q W_i^Q)(K W_i^K)^\top}{\sqrt{d_k}} + M\right) (V W_i^V), \qquad
        \mathrm{output} = \mathrm{Concat}(\mathrm{head}_1, \ldots, \mathrm{head}_H)\, W^O

    one head at a time (``M`` is the optional additive mask), and returns the output together
    with every head's attention weights. The result equals
    ``torch.nn.MultiheadAttention(...)(query, key, value, need_weights=True,
    average_attn_weights=False)`` up to floating-point rounding (about ``2.4e-7`` in float32,
    ``1.8e-15`` in float64); :meth:`from_torch` and :meth:`to_torch` convert between the two
    without changing a single bit of the parameters.

    Parameters
    ----------
    embed_dim : int
        ``E`` (the paper's :math:`d_\text{model}`): features of query, key and value, and of the
        output.
    num_heads : int
        ``H`` (the paper's :math:`h`). Must divide ``embed_dim``; each head has
        ``d_k = E / H`` features.
    dropout : float, default 0.0
        Dropout probability on the attention weights, applied in training mode only, as
        :class:`torch.nn.MultiheadAttention` does. The returned weights are the ones after
        dropout (rows then no longer sum to 1). Must lie in ``[0, 1]``.
    bias : bool, default True
        Whether the per-head projections and :math:`W^O` have biases
        (:math:`b_i^Q, b_i^K, b_i^V, b^O`), like torch's ``in_proj_bias`` and
        ``out_proj.bias``.
    batch_first : bool, default False
        If True, batched inputs and outputs are ``(N, L, E)``; otherwise ``(L, N, E)``, as in
        :class:`torch.nn.MultiheadAttention`. Ignored for unbatched inputs.
    device : torch.device or str, optional
        Device of the parameters.
    dtype : torch.dtype, optional
        Floating-point type of the parameters.

    Attributes
    ----------
    w_q, w_k, w_v : torch.nn.ModuleList
        ``H`` modules :class:`torch.nn.Linear` ``(E -> d_k)`` each: heads are numbered
        ``i = 1 .. H`` as in the paper, and ``w_q[i - 1]`` is head ``i``'s query projection.
        **Orientation**: the paper multiplies row vectors from the right, :math:`X W_i^Q` with
        :math:`W_i^Q` of shape ``(E, d_k)``; :class:`torch.nn.Linear` stores the transpose, so
        ``w_q[i - 1].weight`` has shape ``(d_k, E)`` and :math:`W_i^Q` =
        ``w_q[i - 1].weight.T``; ``w_q[i - 1](x)`` computes :math:`X W_i^Q + b_i^Q`. The same
        holds for ``w_k`` and ``w_v``.
    w_o : torch.nn.Linear
        The output projection ``(E -> E)``: :math:`W^O` = ``w_o.weight.T``, shape
        ``(H * d_k, E)``.
    embed_dim, num_heads, head_dim, dropout, bias, batch_first
        The constructor's settings; ``head_dim`` is ``d_k``.

    Raises
    ------
    TypeError
        If ``embed_dim`` or ``num_heads`` is not an int, or ``dropout`` is not a number.
    ValueError
        If ``embed_dim`` or ``num_heads`` is not positive, ``num_heads`` does not divide
        ``embed_dim``, or ``dropout`` lies outside ``[0, 1]``.

    See Also
    --------
    torch.nn.MultiheadAttention : the packed form this module converts to and from.
    attnlens.scaled_dot_product_attention : the per-head ``Attention`` used here.
    attnlens.MultiheadAttention : the packed form, written out step by step.

    Notes
    -----
    **Why the paper's per-head projections equal PyTorch's single packed multiplication.**
    :class:`torch.nn.MultiheadAttention` keeps one matrix ``in_proj_weight`` of shape
    ``(3E, E)``: the rows ``[0:E]`` are :math:`W_Q`, ``[E:2E]`` are :math:`W_K` and
    ``[2E:3E]`` are :math:`W_V` (in :class:`~torch.nn.Linear` orientation, output features
    first). For self-attention it computes ``F.linear(x, in_proj_weight, in_proj_bias)`` once,
    giving ``(N, L, 3E)``, splits the last dimension into ``q, k, v`` of ``E`` features each and
    then each of those into ``H`` chunks of ``d_k`` features: chunk ``i`` (``i = 1 .. H``)
    belongs to head ``i``.

    In a product :math:`X W^\top` every output column is computed on its own: column ``j`` is
    :math:`X` times row ``j`` of :math:`W`. So columns ``[(i-1)*d_k, i*d_k)`` of
    :math:`X W_Q^\top` only ever see rows ``[(i-1)*d_k, i*d_k)`` of :math:`W_Q`, which gives

    .. math::

        (X W_Q^\top)_{[:,\ (i-1) d_k:i d_k]} = X \left((W_Q)_{[(i-1) d_k:i d_k,\ :]}\right)^\top
        = X W_i^Q .

    Projecting everything at once and then cutting the result into heads is the same as
    cutting the weight into row blocks and projecting per head: the paper's :math:`W_i^Q` is
    the transpose of row block ``i`` of :math:`W_Q`, and the paper's matrices placed side by
    side, :math:`[W_1^Q \cdots W_h^Q]^\top`, are PyTorch's :math:`W_Q`. Stacking the three
    gives ``in_proj_weight``: the packed form does one large matrix product instead of
    :math:`3H` small ones, and nothing else changes.

    The same argument collapses the two-step story some tutorials tell (first
    :math:`Q = X W^Q` with a full ``(E, E)`` matrix, then head ``i`` takes its ``d_k`` columns
    of :math:`Q`): taking columns is multiplying by a 0/1 selection matrix :math:`P_i` of
    shape ``(E, d_k)``, and :math:`(X W^Q) P_i = X (W^Q P_i) = X W_i^Q`. Two products of
    matrices are one product, with :math:`W_i^Q` the column block ``i`` of :math:`W^Q`.

    The output side works the other way round: :math:`\mathrm{Concat}(\mathrm{head}_i)\, W^O
    = \sum_i \mathrm{head}_i\, W^O_i` where :math:`W^O_i` are row blocks of :math:`W^O`, so
    one ``out_proj`` on the concatenation is the paper's :math:`W^O` exactly, and both forms
    store it the same way. :meth:`from_torch` and :meth:`to_torch` move these blocks.

    **Masks** follow :class:`torch.nn.MultiheadAttention`: a bool mask means ``True`` = *masked
    out* (may not be attended to), a float mask is added to the scores. This is the opposite of
    the bool convention of :func:`torch.nn.functional.scaled_dot_product_attention` and of
    :func:`attnlens.scaled_dot_product_attention` (``True`` = *takes part*); the
    module converts before calling it. ``key_padding_mask`` and ``attn_mask`` are merged into
    one mask per head: two bool masks with OR, otherwise by turning a bool mask into
    ``-inf``/``0`` and adding, which is what torch does. Mixing a bool and a float mask is
    accepted (torch accepts it too, with a deprecation warning).

    **Pitfalls.** A query row whose keys are all masked has no softmax: its weights and its
    output row come back as NaN, as they do from torch's ``need_weights=True`` path (torch's
    ``need_weights=False`` path returns zeros instead). In training mode with ``dropout > 0``
    the returned weights already have dropout applied, so their rows do not sum to 1 (as in
    torch, pytorch issue #42929); the dropout draws differ from torch's because the heads are
    computed one by one.

    **Initialisation** matches the distribution of :class:`torch.nn.MultiheadAttention`: every
    per-head weight is drawn as a block of a Xavier-uniform ``(3E, E)`` matrix, i.e. uniform on
    :math:`\pm\sqrt{6 / (4E)}`; :math:`W^O` keeps :class:`~torch.nn.Linear`'s default; all
    biases start at zero.

    Examples
    --------
    >>> import torch
    >>> from attnlens.paper import PaperMultiheadAttention
    >>> _ = torch.manual_seed(55)
    >>> x = torch.randn(1, 5, 4)  # (N, L, E)
    >>> mha = torch.nn.MultiheadAttention(4, 2, bias=False, batch_first=True).eval()
    >>> paper = PaperMultiheadAttention.from_torch(mha)
    >>> paper
    PaperMultiheadAttention(
      embed_dim=4, num_heads=2, dropout=0.0, bias=False, batch_first=True
      (w_q): ModuleList(
        (0-1): 2 x Linear(in_features=4, out_features=2, bias=False)
      )
      (w_k): ModuleList(
        (0-1): 2 x Linear(in_features=4, out_features=2, bias=False)
      )
      (w_v): ModuleList(
        (0-1): 2 x Linear(in_features=4, out_features=2, bias=False)
      )
      (w_o): Linear(in_features=4, out_features=4, bias=False)
    )

    Head 2's :math:`W_2^Q` (paper orientation, ``(E, d_k)``) is the transpose of rows 2:4 of
    torch's :math:`W_Q`:

    >>> w2q = paper.w_q[1].weight.T  # head 2 is index 1: (E, d_k) = (4, 2)
    >>> torch.equal(w2q, mha.in_proj_weight[2:4].T)
    True

    Same output and per-head weights as torch:

    >>> out, weights = paper(x, x, x)  # (N, L, E), (N, H, L, S)
    >>> out.shape, weights.shape
    (torch.Size([1, 5, 4]), torch.Size([1, 2, 5, 5]))
    >>> ref_out, ref_weights = mha(x, x, x, average_attn_weights=False)
    >>> torch.testing.assert_close(out, ref_out)
    >>> torch.testing.assert_close(weights, ref_weights)

    Back to torch, bit for bit:

    >>> back = paper.to_torch()
    >>> all(torch.equal(back.state_dict()[k], v) for k, v in mha.state_dict().items())
    True
    """

    embed_dim: int
    num_heads: int
    head_dim: int
    dropout: float
    bias: bool
    batch_first: bool

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        *,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_positive_int("embed_dim", embed_dim)
        check_positive_int("num_heads", num_heads)
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim: expected a multiple of num_heads = {num_heads} "
                f"(each head gets d_k = embed_dim / num_heads features), got {embed_dim}"
            )
        dropout = check_probability("dropout", dropout)
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = float(dropout)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)

        def per_head() -> nn.ModuleList:
            return nn.ModuleList(
                nn.Linear(embed_dim, self.head_dim, bias=bias, device=device, dtype=dtype)
                for _ in range(num_heads)
            )

        self.w_q = per_head()
        self.w_k = per_head()
        self.w_v = per_head()
        self.w_o = nn.Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Same distribution as torch.nn.MultiheadAttention: xavier_uniform_ on the packed
        # (3E, E) in_proj_weight has bound sqrt(6 / (fan_in + fan_out)) = sqrt(6 / (E + 3E)).
        bound = math.sqrt(6.0 / (4 * self.embed_dim))
        with torch.no_grad():
            for linear in self._per_head_linears():
                linear.weight.uniform_(-bound, bound)
                if linear.bias is not None:
                    linear.bias.zero_()
            if self.w_o.bias is not None:
                self.w_o.bias.zero_()

    def _per_head_linears(self) -> Iterator[nn.Linear]:
        for group in (self.w_q, self.w_k, self.w_v):
            yield from _linears(group)

    def extra_repr(self) -> str:
        """Settings shown by ``repr``."""
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"bias={self.bias}, batch_first={self.batch_first}"
        )

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Compute every head one at a time, concatenate, apply :math:`W^O`.

        Parameters
        ----------
        query : torch.Tensor
            ``(L, N, E)``, or ``(N, L, E)`` when ``batch_first=True``, or ``(L, E)`` unbatched.
        key : torch.Tensor
            ``(S, N, E)``, or ``(N, S, E)`` when ``batch_first=True``, or ``(S, E)`` unbatched.
        value : torch.Tensor
            Same shape as ``key``.
        key_padding_mask : torch.Tensor, optional
            ``(N, S)``, or ``(S,)`` unbatched; bool (``True`` = this key is padding, ignore it)
            or float of the query's dtype (added to the scores of that key).
        attn_mask : torch.Tensor, optional
            ``(L, S)`` (the same for every sequence and head) or ``(N * H, L, S)`` with entry
            ``n * H + h`` for sequence ``n`` and head ``h`` (``(H, L, S)`` unbatched); bool
            (``True`` = may not attend) or float of the query's dtype (added to the scores).

        Returns
        -------
        output : torch.Tensor
            ``(L, N, E)``, or ``(N, L, E)`` when ``batch_first=True``, or ``(L, E)`` unbatched.
        weights : torch.Tensor
            Per-head attention weights ``(N, H, L, S)``, or ``(H, L, S)`` unbatched (never
            averaged over heads; ``weights.mean(1)`` gives torch's default average). In training
            mode with ``dropout > 0`` they have dropout applied.

        Raises
        ------
        TypeError
            If an input is not a tensor, has a dtype other than the parameters', or a mask is
            neither bool nor of the query's floating dtype.
        ValueError
            If a shape does not fit: wrong number of dimensions, feature size other than
            ``E``, batch sizes or key/value lengths that differ, masks of the wrong shape.
        """
        is_batched = _check_inputs(
            self, query, key, value, key_padding_mask=key_padding_mask, attn_mask=attn_mask
        )

        # Bring everything to batch-first 3-D form.
        if not is_batched:
            query = query.unsqueeze(0)  # (1, L, E)
            key = key.unsqueeze(0)  # (1, S, E)
            value = value.unsqueeze(0)  # (1, S, E)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
        elif not self.batch_first:
            query = query.transpose(0, 1)  # (L, N, E) -> (N, L, E)
            key = key.transpose(0, 1)  # (S, N, E) -> (N, S, E)
            value = value.transpose(0, 1)  # (S, N, E) -> (N, S, E)
        n, length, _ = query.shape
        source_length = key.shape[1]

        # One mask in SDPA's convention, shape (N or 1, H or 1, L or 1, S).
        mask = _merge_masks(
            key_padding_mask,
            attn_mask,
            n=n,
            num_heads=self.num_heads,
            length=length,
            source_length=source_length,
            dtype=query.dtype,
        )
        # Query rows with no key left to attend to: (N or 1, H or 1, L or 1, 1).
        no_key = _fully_masked_rows(mask)
        dropout_p = self.dropout if self.training else 0.0

        heads: list[Tensor] = []
        head_weights: list[Tensor] = []
        for i, (w_q, w_k, w_v) in enumerate(
            zip(_linears(self.w_q), _linears(self.w_k), _linears(self.w_v), strict=True)
        ):
            q_i = w_q(query)  # Q W_i^Q: (N, L, d_k)
            k_i = w_k(key)  # K W_i^K: (N, S, d_k)
            v_i = w_v(value)  # V W_i^V: (N, S, d_k)
            mask_i = None if mask is None else _head(mask, i)  # (N or 1, L or 1, S)
            head_i, weights_i = scaled_dot_product_attention(
                q_i, k_i, v_i, attn_mask=mask_i, dropout_p=dropout_p
            )  # (N, L, d_k), (N, L, S)
            if no_key is not None:
                # SDPA returns zeros for such a row; torch.nn.MultiheadAttention's weights path
                # computes softmax over all -inf, i.e. 0/0 = NaN. Do as the torch module does.
                no_key_i = _head(no_key, i)  # (N or 1, L or 1, 1)
                head_i = head_i.masked_fill(no_key_i, math.nan)
                weights_i = weights_i.masked_fill(no_key_i, math.nan)
            heads.append(head_i)
            head_weights.append(weights_i)

        concat = torch.cat(heads, dim=-1)  # Concat(head_1, ..., head_H): (N, L, H * d_k)
        output = self.w_o(concat)  # Concat(...) W^O: (N, L, E)
        weights = torch.stack(head_weights, dim=1)  # (N, H, L, S)

        if not is_batched:
            return output.squeeze(0), weights.squeeze(0)  # (L, E), (H, L, S)
        if not self.batch_first:
            output = output.transpose(0, 1)  # (N, L, E) -> (L, N, E)
        return output, weights

    # ------------------------------------------------------------- conversions

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention | MultiheadAttention) -> PaperMultiheadAttention:
        """Build the paper form from a :class:`torch.nn.MultiheadAttention`.

        Head ``i`` (``i = 1 .. H``) gets rows ``[(i-1)*d_k, i*d_k)`` of each of :math:`W_Q` =
        ``in_proj_weight[0:E]``, :math:`W_K` = ``in_proj_weight[E:2E]`` and :math:`W_V` =
        ``in_proj_weight[2E:3E]`` (and the same slices of ``in_proj_bias``); ``out_proj``
        becomes ``w_o``. Values are copied bit for bit; ``batch_first``, ``dropout``, the
        dtype, the device and the training mode are kept. The conversion draws no random
        numbers (torch's random state is left as it was).

        Parameters
        ----------
        mha : torch.nn.MultiheadAttention or attnlens.MultiheadAttention
            The module to convert. It is not modified and shares no storage with the result.

        Returns
        -------
        PaperMultiheadAttention
            A module whose ``forward`` gives the same output and per-head weights as
            ``mha(..., need_weights=True, average_attn_weights=False)``.

        Raises
        ------
        TypeError
            If ``mha`` is not a MultiheadAttention module.
        ValueError
            If ``mha`` uses something the paper form does not have: ``kdim`` or ``vdim``
            different from ``embed_dim`` (key and value projected from other sizes, stored as
            separate ``q/k/v_proj_weight``), ``add_bias_kv`` (learned extra key/value) or
            ``add_zero_attn`` (an extra all-zero key/value), or a bias on only one of the
            input and output projections.

        Examples
        --------
        >>> import torch
        >>> mha = torch.nn.MultiheadAttention(6, 3)
        >>> paper = PaperMultiheadAttention.from_torch(mha)
        >>> paper.w_k[2].weight.shape  # (d_k, E): rows 6+4:6+6 of in_proj_weight
        torch.Size([2, 6])
        >>> torch.equal(paper.w_k[2].weight, mha.in_proj_weight[10:12])
        True
        >>> PaperMultiheadAttention.from_torch(torch.nn.MultiheadAttention(6, 3, kdim=4))
        Traceback (most recent call last):
            ...
        ValueError: mha: the paper form projects key and value from embed_dim = 6 features, \
got kdim = 4, vdim = 6 (separate q/k/v_proj_weight layout); use kdim = vdim = embed_dim
        """
        mha = _check_mha_type(mha)
        embed_dim = int(mha.embed_dim)
        num_heads = int(mha.num_heads)
        kdim, vdim = int(mha.kdim), int(mha.vdim)
        in_proj_weight = mha.in_proj_weight
        if kdim != embed_dim or vdim != embed_dim or in_proj_weight is None:
            raise ValueError(
                f"mha: the paper form projects key and value from embed_dim = {embed_dim} "
                f"features, got kdim = {kdim}, vdim = {vdim} (separate q/k/v_proj_weight "
                "layout); use kdim = vdim = embed_dim"
            )
        if getattr(mha, "bias_k", None) is not None or getattr(mha, "bias_v", None) is not None:
            raise ValueError(
                "mha: add_bias_kv=True (learned bias_k/bias_v appended as an extra key and "
                "value) is not part of the paper form; got a module with bias_k/bias_v set"
            )
        if bool(mha.add_zero_attn):
            raise ValueError(
                "mha: add_zero_attn=True (an extra all-zero key and value) is not part of "
                "the paper form; got a module with add_zero_attn=True"
            )
        in_proj_bias = mha.in_proj_bias
        out_proj = mha.out_proj
        if (in_proj_bias is None) != (out_proj.bias is None):
            raise ValueError(
                "mha: expected biases on both or neither of in_proj and out_proj, got "
                f"in_proj_bias {'None' if in_proj_bias is None else 'set'} and out_proj.bias "
                f"{'None' if out_proj.bias is None else 'set'}"
            )
        assert isinstance(in_proj_weight, Tensor)
        # Built on the meta device (no storage, no random initialisation), then given empty
        # storage and filled below: converting does not draw from torch's random generator.
        paper = cls(
            embed_dim,
            num_heads,
            dropout=float(mha.dropout),
            bias=in_proj_bias is not None,
            batch_first=bool(mha.batch_first),
            device="meta",
            dtype=in_proj_weight.dtype,
        ).to_empty(device=in_proj_weight.device)
        e, d = embed_dim, paper.head_dim
        with torch.no_grad():
            for block, group in enumerate((paper.w_q, paper.w_k, paper.w_v)):
                # Rows [block*E, (block+1)*E) of in_proj_weight are W_Q, W_K or W_V: (E, E).
                for i, linear in enumerate(_linears(group)):
                    rows = slice(block * e + i * d, block * e + (i + 1) * d)
                    linear.weight.copy_(in_proj_weight[rows])  # (d_k, E)
                    if linear.bias is not None and in_proj_bias is not None:
                        linear.bias.copy_(in_proj_bias[rows])  # (d_k,)
            paper.w_o.weight.copy_(out_proj.weight)  # (E, E)
            if paper.w_o.bias is not None and out_proj.bias is not None:
                paper.w_o.bias.copy_(out_proj.bias)  # (E,)
        paper.train(mha.training)
        return paper

    def to_torch(self) -> nn.MultiheadAttention:
        """Return an equivalent :class:`torch.nn.MultiheadAttention`.

        ``in_proj_weight`` is ``torch.cat`` of all ``w_q[i].weight``, then all
        ``w_k[i].weight``, then all ``w_v[i].weight`` (``(3E, E)``; likewise the biases), and
        ``out_proj`` is ``w_o``. Values are copied bit for bit into new parameters;
        ``dropout``, ``batch_first``, the dtype, the device and the training mode are kept, and
        no random numbers are drawn.
        ``PaperMultiheadAttention.from_torch(p.to_torch())`` has exactly ``p``'s parameters.

        Returns
        -------
        torch.nn.MultiheadAttention
            Its ``forward(..., need_weights=True, average_attn_weights=False)`` gives this
            module's output and weights.

        Examples
        --------
        >>> import torch
        >>> paper = PaperMultiheadAttention(4, 2, batch_first=True)
        >>> mha = paper.to_torch()
        >>> mha.in_proj_weight.shape  # (3E, E)
        torch.Size([12, 4])
        >>> torch.equal(mha.in_proj_weight[4:6], paper.w_k[0].weight)  # W_K, head 1
        True
        """
        weight = self.w_o.weight
        # As in from_torch: no random initialisation, storage filled below.
        mha = nn.MultiheadAttention(
            self.embed_dim,
            self.num_heads,
            dropout=self.dropout,
            bias=self.bias,
            batch_first=self.batch_first,
            device="meta",
            dtype=weight.dtype,
        ).to_empty(device=weight.device)
        linears = list(self._per_head_linears())  # w_q[0..H-1], w_k[0..H-1], w_v[0..H-1]
        with torch.no_grad():
            # (3E, E): [W_Q; W_K; W_V], each W_* the per-head (d_k, E) blocks stacked by head.
            weights: list[Tensor] = [linear.weight for linear in linears]
            mha.in_proj_weight.copy_(torch.cat(weights))
            if mha.in_proj_bias is not None:
                biases: list[Tensor] = [lin.bias for lin in linears if lin.bias is not None]
                mha.in_proj_bias.copy_(torch.cat(biases))  # (3E,)
            mha.out_proj.weight.copy_(self.w_o.weight)  # (E, E)
            if mha.out_proj.bias is not None and self.w_o.bias is not None:
                mha.out_proj.bias.copy_(self.w_o.bias)  # (E,)
        mha.train(self.training)
        return mha


# ---------------------------------------------------------------------- helpers


def _linears(group: nn.ModuleList) -> Iterator[nn.Linear]:
    """The per-head :class:`~torch.nn.Linear` modules of ``w_q``, ``w_k`` or ``w_v``, typed."""
    for module in group:
        assert isinstance(module, nn.Linear)
        yield module


def _check_mha_type(mha: object) -> nn.MultiheadAttention:
    """Refuse anything but a MultiheadAttention module; type the result for the checker."""
    if not isinstance(mha, (nn.MultiheadAttention, MultiheadAttention)):
        given = type(mha)
        raise TypeError(
            "mha: expected torch.nn.MultiheadAttention or attnlens.MultiheadAttention, "
            f"got {given.__module__}.{given.__qualname__}"
        )
    # attnlens.MultiheadAttention has the attributes and parameter names of torch's.
    return cast(nn.MultiheadAttention, mha)


def _check_inputs(
    module: PaperMultiheadAttention,
    query: object,
    key: object,
    value: object,
    *,
    key_padding_mask: object,
    attn_mask: object,
) -> bool:
    """Validate the arguments of ``forward``; return whether the input is batched."""
    e, h = module.embed_dim, module.num_heads
    query = check_tensor("query", query)
    key = check_tensor("key", key)
    value = check_tensor("value", value)
    check_ndim("query", query, (2, 3), f"{_layout(module, 'L')} batched or (L, E) unbatched")
    is_batched = query.dim() == 3

    # The allowed shapes in the caller's layout; None = any size.
    if not is_batched:
        n = 1
        check_shape("query", query, ("L, E", (None, e)))
        check_shape("key", key, ("S, E", (None, e)))
        length, source_length = query.shape[0], key.shape[0]
        check_shape("value", value, ("S, E", (source_length, e)), note="S from key")
    elif module.batch_first:
        check_shape("query", query, ("N, L, E", (None, None, e)))
        n, length = query.shape[0], query.shape[1]
        check_shape("key", key, ("N, S, E", (n, None, e)), note="N from query")
        source_length = key.shape[1]
        check_shape("value", value, ("N, S, E", (n, source_length, e)), note="N, S from key")
    else:
        check_shape("query", query, ("L, N, E", (None, None, e)))
        length, n = query.shape[0], query.shape[1]
        check_shape("key", key, ("S, N, E", (None, n, e)), note="N from query")
        source_length = key.shape[0]
        check_shape("value", value, ("S, N, E", (source_length, n, e)), note="S, N from key")
    dtype = module.w_o.weight.dtype
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        check_dtype(name, tensor, dtype, note="the parameters' dtype")

    masks = (("key_padding_mask", key_padding_mask), ("attn_mask", attn_mask))
    for name, mask in masks:
        if mask is not None:
            check_dtype(
                name,
                check_tensor(name, mask),
                (torch.bool, query.dtype),
                note="bool, or float of the query's dtype",
            )
    if isinstance(key_padding_mask, Tensor):
        if is_batched:
            check_shape("key_padding_mask", key_padding_mask, ("N, S", (n, source_length)))
        else:
            check_shape("key_padding_mask", key_padding_mask, ("S", (source_length,)))
    if isinstance(attn_mask, Tensor):
        per_head = ("N*H, L, S", (n * h, length, source_length))
        if not is_batched:
            per_head = ("H, L, S", (h, length, source_length))
        check_shape("attn_mask", attn_mask, ("L, S", (length, source_length)), per_head)
    return is_batched


def _layout(module: PaperMultiheadAttention, length: str) -> str:
    return f"(N, {length}, E)" if module.batch_first else f"({length}, N, E)"


def _head(mask: Tensor, i: int) -> Tensor:
    """Head ``i``'s part of a mask of shape ``(N or 1, H or 1, L or 1, S)``: drop the H axis."""
    return mask[:, i if mask.shape[1] > 1 else 0]  # (N or 1, L or 1, S)


def _fully_masked_rows(mask: Tensor | None) -> Tensor | None:
    """Where a merged SDPA-convention mask leaves a query row no key at all.

    Parameters
    ----------
    mask : torch.Tensor, optional
        The result of :func:`_merge_masks`, shape ``(N or 1, H or 1, L or 1, S)``.

    Returns
    -------
    torch.Tensor or None
        bool, shape ``(N or 1, H or 1, L or 1, 1)``: True for a row with every key masked.
    """
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return ~mask.any(dim=-1, keepdim=True)  # no key takes part
    return (mask == -math.inf).all(dim=-1, keepdim=True)  # every score becomes -inf


def _merge_masks(
    key_padding_mask: Tensor | None,
    attn_mask: Tensor | None,
    *,
    n: int,
    num_heads: int,
    length: int,
    source_length: int,
    dtype: torch.dtype,
) -> Tensor | None:
    """Merge torch-MHA-style masks into one mask in SDPA's convention.

    Parameters
    ----------
    key_padding_mask : torch.Tensor, optional
        ``(N, S)``: bool (``True`` = masked out) or float (added).
    attn_mask : torch.Tensor, optional
        ``(L, S)`` or ``(N * H, L, S)``: bool (``True`` = masked out) or float (added).
    n, num_heads, length, source_length : int
        ``N``, ``H``, ``L``, ``S``.
    dtype : torch.dtype
        The query's dtype, for float masks.

    Returns
    -------
    torch.Tensor or None
        Broadcastable to ``(N, H, L, S)``. Bool when both given masks are bool (or the only one
        is), with SDPA's meaning ``True`` = *takes part*; otherwise float, to be added to the
        scores (a bool mask becomes ``-inf`` where it was ``True``).
    """
    masks: list[Tensor] = []
    if attn_mask is not None:
        if attn_mask.dim() == 2:
            masks.append(attn_mask.view(1, 1, length, source_length))  # (1, 1, L, S)
        else:
            # Entry n * H + h is sequence n, head h: (N * H, L, S) -> (N, H, L, S).
            masks.append(attn_mask.view(n, num_heads, length, source_length))
    if key_padding_mask is not None:
        masks.append(key_padding_mask.view(n, 1, 1, source_length))  # (N, 1, 1, S)
    if not masks:
        return None
    if all(mask.dtype == torch.bool for mask in masks):
        masked_out = masks[0] if len(masks) == 1 else masks[0] | masks[1]
        return ~masked_out  # MHA's True = masked out -> SDPA's True = takes part
    additive = [
        torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, -math.inf)
        if mask.dtype == torch.bool
        else mask
        for mask in masks
    ]
    return additive[0] if len(additive) == 1 else additive[0] + additive[1]
