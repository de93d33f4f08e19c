r"""
Causal decoding and the KV cache
================================

A decoder that writes one token at a time must not look at the tokens it has not written yet.
A causal mask enforces that during training, where the whole sequence is processed at once. At
generation time the decoder runs one step per token, and recomputing the keys and values of
every earlier token at each step would be wasteful: a *KV cache* keeps them. This walkthrough
checks that decoding step by step with a cache gives the same result as the full causal pass,
shows what the weights of one step look like, and points out how
``scaled_dot_product_attention``'s ``is_causal`` aligns the mask when :math:`L \neq S`.
"""

# %%
# The causal mask
# ---------------
#
# Position :math:`i` may attend to positions :math:`0, \dots, i`. With
# ``nn.MultiheadAttention`` the mask is boolean with ``True`` = *masked out* (the upper
# triangle); with ``scaled_dot_product_attention``, ``is_causal=True`` builds the mask itself.
# Either way every weight above the diagonal is 0.

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import attnlens

torch.set_printoptions(precision=3)
torch.manual_seed(0)
N, L, E, H = 1, 6, 8, 2  # D = E / H = 4: every number of a head fits on screen
D = E // H
mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
X = torch.randn(N, L, E)  # (N, L, E)

future = torch.ones(L, L, dtype=torch.bool).triu(1)  # True = masked out (MHA)
with torch.no_grad():
    full_out, full_weights = mha(X, X, X, attn_mask=future, average_attn_weights=False)
print(full_weights[0, 0])  # head 1: (L, S)
assert torch.all(full_weights[..., future] == 0)

proj = attnlens.split_in_proj(mha)
q = attnlens.split_heads(F.linear(X, proj.q_weight, proj.q_bias), H)  # (N, H, L, D)
k = attnlens.split_heads(F.linear(X, proj.k_weight, proj.k_bias), H)  # (N, H, S, D)
v = attnlens.split_heads(F.linear(X, proj.v_weight, proj.v_bias), H)  # (N, H, S, D)
with torch.no_grad():
    heads, sdpa_weights = attnlens.scaled_dot_product_attention(q, k, v, is_causal=True)
assert_close(sdpa_weights, full_weights.detach())

# %%
# One query under the mask: the neuron view
# -----------------------------------------
#
# The mask acts before the softmax: it adds :math:`-\infty` to the score of every key after the
# query, and :math:`e^{-\infty} = 0`, so those keys get a weight of exactly 0 while the weights
# of the others still sum to 1. The neuron view writes this out for one query token at a time:
# choose a token with the buttons; the keys after it are dimmed, the column "+ mask" shows
# :math:`-\infty` for them, and their weight is 0.

tokens = [f"x{t}" for t in range(L)]
neuron_view = attnlens.neuron_view_html(
    q, k, tokens, batch_index=0, is_causal=True, query_index=2, decimals=2
)
assert_close(torch.from_numpy(neuron_view.weights).float(), full_weights[0])
assert (neuron_view.weights[:, future] == 0).all()
neuron_view

# %%
# Decoding step by step with a KV cache
# -------------------------------------
#
# At step :math:`t` the decoder has one new token :math:`x_t`. It projects it to one query,
# one key and one value, appends the key and the value to the cache, and attends from its one
# query to the :math:`t + 1` cached keys. No mask is needed: the cache holds only the past and
# the present. The output of step :math:`t` equals row :math:`t` of the full causal pass.


def project(x):
    """(N, 1, E) -> query, key, value of each head, (N, H, 1, D) each."""
    return (
        attnlens.split_heads(F.linear(x, w, b), H)
        for w, b in [
            (proj.q_weight, proj.q_bias),
            (proj.k_weight, proj.k_bias),
            (proj.v_weight, proj.v_bias),
        ]
    )


cache_k = torch.empty(N, H, 0, D)  # (N, H, t, D)
cache_v = torch.empty(N, H, 0, D)
outputs, step_weights = [], []
with torch.no_grad():
    for t in range(L):
        q_t, k_t, v_t = project(X[:, t : t + 1])  # (N, H, 1, D) each
        cache_k = torch.cat([cache_k, k_t], dim=2)  # (N, H, t + 1, D)
        cache_v = torch.cat([cache_v, v_t], dim=2)
        head_t, w_t = attnlens.scaled_dot_product_attention(q_t, cache_k, cache_v)
        outputs.append(mha.out_proj(attnlens.merge_heads(head_t)))  # (N, 1, E)
        step_weights.append(w_t)  # (N, H, 1, t + 1)

incremental = torch.cat(outputs, dim=1)  # (N, L, E)
assert_close(incremental, full_out)
for t, w_t in enumerate(step_weights):
    assert w_t.shape == (N, H, 1, t + 1)
    assert_close(w_t[:, :, 0], full_weights[:, :, t, : t + 1])
print("max |incremental - full| =", (incremental - full_out).abs().max().item())

# %%
# The two computations agree to rounding error (they add the same numbers in a different
# order), not necessarily bit for bit. The cache saves work: without it, step :math:`t` would
# project all :math:`t + 1` tokens again, :math:`L(L+1)/2` projections in all instead of
# :math:`L`.

with_cache = L
without_cache = sum(t + 1 for t in range(L))
print(f"projections_with_cache = {with_cache}, projections_without_cache = {without_cache}")
assert without_cache == L * (L + 1) // 2

# %%
# The weights of one step: 1 × S
# ------------------------------
#
# A decoding step has one query, so its weights are one row per head: :math:`1 \times S`, with
# :math:`S = t + 1` keys. The last step of the sequence looks at all six positions.

last = step_weights[-1][0]  # (H, 1, S)
fig = attnlens.plot_heads(last, [f"x{L - 1}"], tokens)
assert_close(last.sum(dim=-1), torch.ones(H, 1))

# %%
# is_causal is aligned top-left when L ≠ S
# ----------------------------------------
#
# Now process two new tokens at once against a cache of four earlier ones: :math:`L = 2`
# queries, :math:`S = 6` keys. The queries are positions 4 and 5, so query 4 may see keys 0 to
# 4 and query 5 all six keys: the allowed region is the lower triangle aligned at the
# *bottom-right* corner. ``scaled_dot_product_attention(..., is_causal=True)`` aligns it at the
# *top-left* corner instead (``torch.ones(L, S).tril()``): query 4 would see only key 0. For a
# chunk of new tokens against a cache, pass the bottom-right mask explicitly.

q_new = q[:, :, 4:]  # (N, H, 2, D): positions 4 and 5
top_left = torch.ones(2, L, dtype=torch.bool).tril()  # (L, S), True = takes part (SDPA)
bottom_right = torch.ones(2, L, dtype=torch.bool).tril(diagonal=L - 2)
print(top_left.int())
print(bottom_right.int())

with torch.no_grad():
    out_causal = F.scaled_dot_product_attention(q_new, k, v, is_causal=True)
    out_top_left = F.scaled_dot_product_attention(q_new, k, v, attn_mask=top_left)
    out_bottom_right = F.scaled_dot_product_attention(q_new, k, v, attn_mask=bottom_right)
assert_close(out_causal, out_top_left)  # is_causal = top-left
assert_close(out_bottom_right, heads[:, :, 4:])  # bottom-right = rows 4, 5 of the full pass
assert not torch.allclose(out_causal, heads[:, :, 4:])

# %%
# PyTorch has a name for the bottom-right variant: ``torch.nn.attention.bias.causal_lower_right``
# builds a mask object that ``scaled_dot_product_attention`` accepts as ``attn_mask``.

from torch.nn.attention.bias import causal_lower_right

with torch.no_grad():
    out_lower_right = F.scaled_dot_product_attention(
        q_new, k, v, attn_mask=causal_lower_right(2, L)
    )
assert_close(out_lower_right, out_bottom_right)

fig, axes = plt.subplots(1, 2, figsize=(7, 2.2), layout="constrained")
for ax, mask, title in zip(
    axes, [top_left, bottom_right], ["is_causal=True", "causal_lower_right"], strict=True
):
    attnlens.plot_attention(mask.float(), ["x4", "x5"], tokens, ax=ax, vmax=1.0, title=title)

# %%
# What we saw
# -----------
#
# - A causal mask puts zero weight above the diagonal; ``is_causal=True`` and an explicit
#   triangular mask give the same weights. The mask adds :math:`-\infty` to the scores before
#   the softmax, which turns them into weights of exactly 0.
# - Decoding one token at a time with a KV cache reproduces the full causal pass (to rounding),
#   with one projection per token instead of one per token per step.
# - One decoding step has a :math:`1 \times S` map per head.
# - With :math:`L \neq S`, ``is_causal=True`` is aligned top-left; a chunk of new queries
#   against a cache needs the bottom-right alignment (``causal_lower_right``).

# %%
# Exercises
# ---------
#
# **Exercise 1.** Decode with a cache in chunks of two tokens (steps 0–1, 2–3, 4–5) and check
# that the result equals the full causal pass. Which mask does each chunk need?
#
# .. attnlens-solution::

cache_k = torch.empty(N, H, 0, D)
cache_v = torch.empty(N, H, 0, D)
chunks = []
with torch.no_grad():
    for first in range(0, L, 2):
        q_c, k_c, v_c = project(X[:, first : first + 2])  # (N, H, 2, D) each
        cache_k = torch.cat([cache_k, k_c], dim=2)
        cache_v = torch.cat([cache_v, v_c], dim=2)
        s = cache_k.shape[2]
        mask = torch.ones(2, s, dtype=torch.bool).tril(diagonal=s - 2)  # bottom-right
        head_c, _ = attnlens.scaled_dot_product_attention(q_c, cache_k, cache_v, attn_mask=mask)
        chunks.append(mha.out_proj(attnlens.merge_heads(head_c)))  # (N, 2, E)
assert_close(torch.cat(chunks, dim=1), full_out)

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Adding a new token changes nothing for the earlier ones: show that the
# causal pass over the first four tokens equals the first four rows of the pass over all six.
#
# .. attnlens-solution::

with torch.no_grad():
    prefix_out, _ = mha(X[:, :4], X[:, :4], X[:, :4], attn_mask=future[:4, :4])
assert_close(prefix_out, full_out[:, :4])

# %%
# .. attnlens-solution-end::
#
# **Exercise 3.** How many numbers does the cache hold after :math:`T` tokens, for a model with
# :math:`n` layers? Check your formula on the cache above (one layer).
#
# .. attnlens-solution::
#
# Keys and values, :math:`H \cdot D = E` numbers each per token and layer: :math:`2 n T E` per
# sequence.

n_layers = 1
assert cache_k.numel() + cache_v.numel() == 2 * n_layers * L * E

# %%
# .. attnlens-solution-end::
