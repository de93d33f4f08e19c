"""Sinusoidal positional encoding of *Attention Is All You Need* (Vaswani et al., 2017, §3.5).

Attention by itself has no notion of order: permuting the tokens of a sequence permutes the
outputs of self-attention in the same way (walkthrough 9). A Transformer therefore adds a
vector that depends on the position to each token embedding. The paper's fixed choice is

.. math::

    PE_{(p, 2i)} = \\sin\\left(p / 10000^{2i / E}\\right), \\qquad
    PE_{(p, 2i + 1)} = \\cos\\left(p / 10000^{2i / E}\\right),

for position :math:`p` and feature pair :math:`i`; the alternative is a learned table
(``nn.Embedding(max_len, E)``, as in `attnlens.classifier.SentimentClassifier`).
"""

from __future__ import annotations

import math

import torch

__all__ = ["sinusoidal_positions"]


def sinusoidal_positions(
    length: int,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The paper's fixed sinusoidal positional encoding, one row per position.

    Parameters
    ----------
    length : int
        Number of positions L (rows), positions ``0 .. L - 1``.
    dim : int
        Embedding size E (columns); must be even: features ``2i`` and ``2i + 1`` are the sine
        and cosine of the same frequency.
    base : float, default 10000.0
        The wavelengths grow geometrically from :math:`2\\pi` to :math:`2\\pi \\cdot` ``base``.
    dtype : torch.dtype, default torch.float32
        A floating dtype.
    device : torch.device or str, optional

    Returns
    -------
    Tensor of shape (L, E)
        Row ``p`` is the encoding of position ``p``; add it to the token embeddings
        (``x + pe`` broadcasts over a batch ``(N, L, E)``).

    Raises
    ------
    ValueError
        If ``length`` is negative, ``dim`` is not a positive even number or ``base`` is not
        greater than 1.
    TypeError
        If ``dtype`` is not a floating dtype.

    Examples
    --------
    >>> from attnlens.positions import sinusoidal_positions
    >>> pe = sinusoidal_positions(50, 8)
    >>> pe.shape  # (L, E)
    torch.Size([50, 8])
    >>> pe[0]  # position 0: sin 0 = 0, cos 0 = 1
    tensor([0., 1., 0., 1., 0., 1., 0., 1.])
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length: expected an int >= 0, got {length!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0 or dim % 2:
        raise ValueError(f"dim: expected a positive even int (sine/cosine pairs), got {dim!r}")
    if not base > 1:
        raise ValueError(f"base: expected a number > 1, got {base!r}")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating dtype, got {dtype}")
    # computed in float64, then rounded once to the requested dtype
    position = torch.arange(length, dtype=torch.float64, device=device)  # (L,)
    pair = torch.arange(0, dim, 2, dtype=torch.float64, device=device)  # (E / 2,): 2i
    frequency = torch.exp(-math.log(base) * pair / dim)  # (E / 2,): 1 / base^(2i / E)
    angle = position[:, None] * frequency[None, :]  # (L, E / 2)
    pe = torch.stack([angle.sin(), angle.cos()], dim=-1)  # (L, E / 2, 2)
    return pe.reshape(length, dim).to(dtype)  # (L, E): sin, cos, sin, cos, ...
