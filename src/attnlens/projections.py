"""Take a multi-head attention module apart: its W_Q, W_K, W_V, and its heads.

:class:`torch.nn.MultiheadAttention` stores the three input projections in one of two
layouts:

* **packed** (``kdim == vdim == embed_dim``, the usual case): one parameter
  ``in_proj_weight`` of shape (3E, E) whose rows are W_Q, W_K and W_V stacked along
  dim 0, and one ``in_proj_bias`` of shape (3E,) stacked the same way;
* **separate** (``kdim`` or ``vdim`` differs from ``embed_dim``): three parameters
  ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim) and ``v_proj_weight``
  (E, vdim); ``in_proj_weight`` is then None but ``in_proj_bias`` is still packed.

:func:`split_in_proj` hides the difference. :func:`split_heads` and
:func:`merge_heads` do the reshaping that turns one projection of width E into H
heads of width D = E/H and back.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import torch
from torch import nn

from attnlens._checks import (
    InputTypeError,
    InputValueError,
    check_positive_int,
    check_shape,
    check_tensor,
    format_shape,
)

__all__ = ["InProjection", "merge_heads", "split_heads", "split_in_proj"]


class InProjection(NamedTuple):
    """The input projections of a multi-head attention module, one per role.

    The tensors are **views** of the module's parameters (no copy): editing them in
    place (under :func:`torch.no_grad`) edits the module, and gradients flow back to
    the module's parameters. ``q = F.linear(x, q_weight, q_bias)`` computes the
    queries of all heads at once; rows ``h*D:(h+1)*D`` of each weight belong to head h.

    Attributes
    ----------
    q_weight : torch.Tensor
        W_Q, shape (E, E).
    k_weight : torch.Tensor
        W_K, shape (E, kdim).
    v_weight : torch.Tensor
        W_V, shape (E, vdim).
    q_bias, k_bias, v_bias : torch.Tensor or None
        Shape (E,) each; None when the module has no bias.
    """

    q_weight: torch.Tensor
    k_weight: torch.Tensor
    v_weight: torch.Tensor
    q_bias: torch.Tensor | None
    k_bias: torch.Tensor | None
    v_bias: torch.Tensor | None


def split_in_proj(mha: nn.Module) -> InProjection:
    """W_Q, W_K, W_V and their biases of a multi-head attention module, as views.

    Parameters
    ----------
    mha : torch.nn.MultiheadAttention or attnlens.MultiheadAttention
        The module, in either layout (packed ``in_proj_weight``, or separate
        ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when kdim/vdim differ
        from embed_dim).

    Returns
    -------
    InProjection
        ``(q_weight, k_weight, v_weight, q_bias, k_bias, v_bias)``, views of the
        module's parameters; the biases are None when the module has ``bias=False``.

    Raises
    ------
    TypeError
        If ``mha`` is not a module with the parameters of
        :class:`torch.nn.MultiheadAttention` (torch's class, attnlens's, or a subclass).

    Notes
    -----
    In the packed layout ``in_proj_weight.chunk(3)`` gives the three blocks of E rows;
    ``chunk`` returns views, so no data is copied.

    Examples
    --------
    >>> import torch
    >>> from attnlens.projections import split_in_proj
    >>> mha = torch.nn.MultiheadAttention(embed_dim=4, num_heads=2)
    >>> proj = split_in_proj(mha)
    >>> proj.q_weight.shape, proj.k_weight.shape, proj.v_bias.shape
    (torch.Size([4, 4]), torch.Size([4, 4]), torch.Size([4]))
    >>> torch.equal(torch.cat([proj.q_weight, proj.k_weight, proj.v_weight]), mha.in_proj_weight)
    True
    >>> proj.k_weight.data_ptr() == mha.in_proj_weight.data_ptr() + 4 * 4 * 4  # 16 floats later
    True
    """
    if not _has_mha_parameters(mha):
        raise InputTypeError(
            "mha: expected torch.nn.MultiheadAttention or attnlens.MultiheadAttention, "
            f"got {type(mha).__qualname__}"
        )
    mha = cast("nn.MultiheadAttention", mha)  # same parameter names, either class
    in_proj_bias: torch.Tensor | None = mha.in_proj_bias
    in_proj_weight: torch.Tensor | None = mha.in_proj_weight  # None in the separate layout
    if in_proj_weight is not None:
        return split_packed(in_proj_weight, in_proj_bias)
    return split_separate(
        check_tensor("mha.q_proj_weight", mha.q_proj_weight),
        check_tensor("mha.k_proj_weight", mha.k_proj_weight),
        check_tensor("mha.v_proj_weight", mha.v_proj_weight),
        in_proj_bias,
    )


def _has_mha_parameters(mha: object) -> bool:
    """A module with the projection parameters of :class:`torch.nn.MultiheadAttention`.

    torch's class, :class:`attnlens.MultiheadAttention` (which keeps torch's parameter
    names) and their subclasses. Checked by attribute, not by class, so that this low
    layer does not import :mod:`attnlens.multihead`, which imports it.
    """
    return isinstance(mha, nn.Module) and all(hasattr(mha, name) for name in _MHA_PARAMETERS)


_MHA_PARAMETERS = (
    "in_proj_weight",
    "q_proj_weight",
    "k_proj_weight",
    "v_proj_weight",
    "in_proj_bias",
)


def split_packed(in_proj_weight: torch.Tensor, in_proj_bias: torch.Tensor | None) -> InProjection:
    """Split a packed ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E,) into views.

    Parameters
    ----------
    in_proj_weight : torch.Tensor
        Shape (3E, E): rows [W_Q; W_K; W_V].
    in_proj_bias : torch.Tensor or None
        Shape (3E,): [b_Q; b_K; b_V].

    Returns
    -------
    InProjection
        Views of the two tensors.

    Raises
    ------
    ValueError
        If the shapes are not (3E, E) and (3E,).
    """
    in_proj_weight = check_tensor("in_proj_weight", in_proj_weight)
    embed_dim = in_proj_weight.size(-1)
    check_shape("in_proj_weight", in_proj_weight, ("3*E, E", (3 * embed_dim, embed_dim)))
    q_weight, k_weight, v_weight = in_proj_weight.chunk(3)  # 3 x (E, E)
    q_bias, k_bias, v_bias = _split_bias(in_proj_bias, embed_dim)
    return InProjection(q_weight, k_weight, v_weight, q_bias, k_bias, v_bias)


def split_separate(
    q_proj_weight: torch.Tensor,
    k_proj_weight: torch.Tensor,
    v_proj_weight: torch.Tensor,
    in_proj_bias: torch.Tensor | None,
) -> InProjection:
    """Gather separate projection weights and split the (still packed) bias.

    Parameters
    ----------
    q_proj_weight : torch.Tensor
        Shape (E, E).
    k_proj_weight : torch.Tensor
        Shape (E, kdim).
    v_proj_weight : torch.Tensor
        Shape (E, vdim).
    in_proj_bias : torch.Tensor or None
        Shape (3E,).

    Returns
    -------
    InProjection
        The weights themselves and views of the bias.

    Raises
    ------
    ValueError
        If the shapes do not fit together.
    """
    q_proj_weight = check_tensor("q_proj_weight", q_proj_weight)
    k_proj_weight = check_tensor("k_proj_weight", k_proj_weight)
    v_proj_weight = check_tensor("v_proj_weight", v_proj_weight)
    embed_dim = q_proj_weight.size(-1)
    check_shape("q_proj_weight", q_proj_weight, ("E, E", (embed_dim, embed_dim)))
    check_shape("k_proj_weight", k_proj_weight, ("E, kdim", (embed_dim, None)))
    check_shape("v_proj_weight", v_proj_weight, ("E, vdim", (embed_dim, None)))
    q_bias, k_bias, v_bias = _split_bias(in_proj_bias, embed_dim)
    return InProjection(q_proj_weight, k_proj_weight, v_proj_weight, q_bias, k_bias, v_bias)


def _split_bias(
    in_proj_bias: torch.Tensor | None, embed_dim: int
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """[b_Q; b_K; b_V] (3E,) -> three views of shape (E,), or three Nones."""
    if in_proj_bias is None:
        return None, None, None
    in_proj_bias = check_tensor("in_proj_bias", in_proj_bias)
    check_shape("in_proj_bias", in_proj_bias, ("3*E", (3 * embed_dim,)))
    q_bias, k_bias, v_bias = in_proj_bias.chunk(3)  # 3 x (E,)
    return q_bias, k_bias, v_bias


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Cut the feature axis into heads: (N, L, E) -> (N, H, L, E/H).

    Head h gets features ``h*D:(h+1)*D`` with D = E/H, the same slicing as
    :class:`torch.nn.MultiheadAttention` uses.

    Parameters
    ----------
    x : torch.Tensor
        Shape (N, L, E), or (L, E) unbatched (any number of leading dimensions works:
        (..., L, E) -> (..., H, L, D)).
    num_heads : int
        H; must divide E.

    Returns
    -------
    torch.Tensor
        A view of shape (N, H, L, D), or (H, L, D) for unbatched input.

    Raises
    ------
    TypeError
        If ``x`` is not a tensor or ``num_heads`` not an int.
    ValueError
        If ``x`` has fewer than 2 dimensions, ``num_heads <= 0`` or it does not divide E.

    See Also
    --------
    merge_heads : the inverse.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(8.0).reshape(1, 2, 4)  # N=1, L=2, E=4
    >>> heads = split_heads(x, num_heads=2)
    >>> heads.shape
    torch.Size([1, 2, 2, 2])
    >>> heads[0, 1]  # head 2 (index 1): features 2 and 3 of each position
    tensor([[2., 3.],
            [6., 7.]])
    >>> torch.equal(merge_heads(heads), x)
    True
    """
    x = check_tensor("x", x)
    num_heads = check_positive_int("num_heads", num_heads)
    if x.dim() < 2:
        raise InputValueError(
            f"x: expected at least 2 dimensions, (N, L, E) or (L, E), got shape "
            f"{format_shape(x.shape)}"
        )
    embed_dim = x.size(-1)
    if embed_dim % num_heads != 0:
        raise InputValueError(
            f"num_heads: expected a divisor of E = x.shape[-1] = {embed_dim}, got {num_heads}"
        )
    x = x.view(*x.shape[:-1], num_heads, embed_dim // num_heads)  # (N, L, H, D)
    return x.transpose(-3, -2)  # (N, H, L, D)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Concatenate the heads again: (N, H, L, D) -> (N, L, H*D).

    Parameters
    ----------
    x : torch.Tensor
        Shape (N, H, L, D), or (H, L, D) unbatched (generally (..., H, L, D)).

    Returns
    -------
    torch.Tensor
        Shape (N, L, E) with E = H*D, or (L, E); the features of head h are at
        ``h*D:(h+1)*D``. Usually a copy (flattening transposed axes).

    Raises
    ------
    TypeError
        If ``x`` is not a tensor.
    ValueError
        If ``x`` has fewer than 3 dimensions.

    See Also
    --------
    split_heads : the inverse.

    Examples
    --------
    >>> import torch
    >>> merge_heads(torch.zeros(2, 3, 5, 4)).shape  # N=2, H=3, L=5, D=4
    torch.Size([2, 5, 12])
    """
    x = check_tensor("x", x)
    if x.dim() < 3:
        raise InputValueError(
            f"x: expected at least 3 dimensions, (N, H, L, D) or (H, L, D), got shape "
            f"{format_shape(x.shape)}"
        )
    x = x.transpose(-3, -2)  # (N, L, H, D)
    return x.flatten(-2)  # (N, L, H*D)
