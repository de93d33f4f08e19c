r"""
Self-attention, step by step
============================

Scaled dot-product attention is one line of mathematics:

.. math::

   \operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V

This walkthrough computes that line by hand on three tokens with four features each, printing
every intermediate tensor, and checks the result against PyTorch's
``torch.nn.functional.scaled_dot_product_attention`` and against
:func:`attnlens.scaled_dot_product_attention`. It then runs two experiments a curious reader
would run next: what goes wrong without the division by :math:`\sqrt{d_k}`, and what a
softmax temperature does.
"""

# %%
# Three tokens with four features
# -------------------------------
#
# A sequence of :math:`L = 3` tokens, each described by :math:`E = 4` numbers. In a real model
# these rows would be token embeddings; here they are small integers so that every product
# below can be followed by eye. We call the rows :math:`x_1`, :math:`x_2` and :math:`x_3`.

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import attnlens

torch.set_printoptions(precision=4)

X = torch.tensor(
    [
        [1.0, 0.0, 1.0, 0.0],  # x_1
        [0.0, 2.0, 0.0, 2.0],  # x_2
        [1.0, 1.0, 1.0, 1.0],  # x_3
    ]
)  # (L, E) = (3, 4)
tokens = ["x₁", "x₂", "x₃"]
print(X)

# %%
# Queries, keys and values
# ------------------------
#
# Attention compares *queries* with *keys* and mixes *values*. All three are linear maps of the
# input. To keep the first pass short we use a **single** bias-free ``nn.Linear(4, 4)`` for all
# three, so that :math:`Q`, :math:`K` and :math:`V` are the same matrix. This is a teaching
# simplification: a real attention layer learns three different matrices
# :math:`W_Q`, :math:`W_K` and :math:`W_V`, and we switch to that a few sections below.
#
# ``nn.Linear`` stores its weight as (out_features, in_features) and computes
# :math:`x W^\top`, which the assertion checks.

torch.manual_seed(42)
proj = nn.Linear(4, 4, bias=False).requires_grad_(False)
W = proj.weight  # (E, E) = (4, 4)
print(f"W =\n{W.detach()}")

Q = proj(X)  # (L, d_k) = (3, 4)
K = proj(X)  # (S, d_k) = (3, 4)
V = proj(X)  # (S, d_v) = (3, 4)
print(f"Q = K = V =\n{Q}")
torch.testing.assert_close(Q, X @ W.T)
torch.testing.assert_close(K, Q)
torch.testing.assert_close(V, Q)

# %%
# Raw scores: every query against every key
# -----------------------------------------
#
# Entry :math:`(i, j)` of :math:`Q K^\top` is the dot product :math:`q_i \cdot k_j`: how strongly
# query :math:`i` matches key :math:`j`. With :math:`L` queries and :math:`S` keys the score
# matrix has shape :math:`(L, S)`, here :math:`(3, 3)`.

scores = Q @ K.T  # (L, S) = (3, 3)
print(scores)
torch.testing.assert_close(scores[0, 1], torch.dot(Q[0], K[1]))

# %%
# Because this first pass uses one matrix for queries and keys, :math:`Q K^\top = Q Q^\top` is
# symmetric: token 1 matches token 2 as much as token 2 matches token 1. Separate
# :math:`W_Q` and :math:`W_K` remove that symmetry, as we will see.

torch.testing.assert_close(scores, scores.T)

# %%
# Dividing by the square root of the key dimension
# ------------------------------------------------
#
# The keys have :math:`d_k = 4` features, so every score is divided by :math:`\sqrt{4} = 2`.
# The first experiment below shows why it is this particular number.

d_k = K.shape[-1]
scaled = scores / math.sqrt(d_k)  # (L, S)
print(f"d_k = {d_k}, sqrt(d_k) = {math.sqrt(d_k)}")
print(f"scores / sqrt(d_k) =\n{scaled}")

# %%
# Softmax, row by row
# -------------------
#
# The softmax turns each row of scores into weights that are positive and sum to 1:
# :math:`a_{ij} = \exp(s_{ij}) / \sum_{j'} \exp(s_{ij'})`. It is taken along the key axis
# (``dim=-1``), so row :math:`i` says how query :math:`i` divides its attention among the keys.
# We compute it once from its definition and once with ``torch.softmax``.

weights = torch.softmax(scaled, dim=-1)  # (L, S)
print(f"weights =\n{weights}")

by_hand = scaled.exp() / scaled.exp().sum(dim=-1, keepdim=True)  # (L, S)
torch.testing.assert_close(weights, by_hand)

row_sums = weights.sum(dim=-1)  # (L,)
print(f"row_sums = {row_sums}")
torch.testing.assert_close(row_sums, torch.ones(3))
assert torch.all(weights > 0)

# %%
# The output: a weighted average of the values
# --------------------------------------------
#
# Multiplying the weights by :math:`V` gives one output row per query. Row :math:`i` is the
# average of the value rows weighted by row :math:`i` of the attention weights, so every output
# lies inside the convex hull of the values.

output = weights @ V  # (L, d_v) = (3, 4)
print(output)

first_row = weights[0, 0] * V[0] + weights[0, 1] * V[1] + weights[0, 2] * V[2]  # (d_v,)
torch.testing.assert_close(output[0], first_row)
assert torch.all(output >= V.min(dim=0).values)
assert torch.all(output <= V.max(dim=0).values)

# %%
# Check against PyTorch and attnlens
# ----------------------------------
#
# PyTorch's fused ``scaled_dot_product_attention`` computes the same thing in one call, but it
# returns only the output: the weights never leave the kernel.
# :func:`attnlens.scaled_dot_product_attention` follows the textbook steps above and returns
# the output **and** the weights, with the same arguments and the same mask convention.

torch_output = F.scaled_dot_product_attention(Q, K, V)  # (L, d_v)
torch.testing.assert_close(torch_output, output)

lens_output, lens_weights = attnlens.scaled_dot_product_attention(Q, K, V)
torch.testing.assert_close(lens_output, output)
torch.testing.assert_close(lens_weights, weights)
print(f"attnlens weights =\n{lens_weights}")

# %%
# The attention weights as a heatmap
# ----------------------------------
#
# Rows are queries and columns are keys; each row sums to 1. In this first pass every token
# attends most to itself. With one shared projection, the diagonal score :math:`q_i \cdot q_i`
# is the squared length of :math:`q_i`, and here it beats every other dot product in its row
# (this is typical but not guaranteed). The token :math:`x_2` has the longest projected vector
# and the most concentrated row.

fig = attnlens.plot_attention(weights, tokens, annotate=True)
assert weights.argmax(dim=-1).tolist() == [0, 1, 2]
assert Q.norm(dim=-1).argmax() == 1
torch.testing.assert_close(weights.max(), weights[1, 1])

# %%
# Three projections instead of one
# --------------------------------
#
# A real attention layer has separate matrices :math:`W_Q`, :math:`W_K` and :math:`W_V`:
# :math:`Q = X W_Q^\top`, :math:`K = X W_K^\top`, :math:`V = X W_V^\top` (in PyTorch's
# weight layout). We draw three bias-free ``nn.Linear(4, 4)`` after the same seed. The first of
# the three is drawn right after the seed, so it is exactly the matrix used above.

torch.manual_seed(42)
proj_q = nn.Linear(4, 4, bias=False).requires_grad_(False)
proj_k = nn.Linear(4, 4, bias=False).requires_grad_(False)
proj_v = nn.Linear(4, 4, bias=False).requires_grad_(False)
assert torch.equal(proj_q.weight, W)

Q3 = proj_q(X)  # (L, d_k)
K3 = proj_k(X)  # (S, d_k)
V3 = proj_v(X)  # (S, d_v)
print(f"Q =\n{Q3}")
print(f"K =\n{K3}")
print(f"V =\n{V3}")

# %%
# The same steps now give scores that are no longer symmetric: how much token :math:`i` looks
# at token :math:`j` has nothing to do with how much :math:`j` looks at :math:`i`. Both
# implementations still agree with the steps written out. In the figure, the left map is the
# first pass (one shared projection) and the right map uses the three separate projections,
# on the same colour scale from 0 to 1.

scores3 = Q3 @ K3.T  # (L, S)
weights3 = torch.softmax(scores3 / math.sqrt(d_k), dim=-1)  # (L, S)
output3 = weights3 @ V3  # (L, d_v)
print(f"scores =\n{scores3}")
print(f"weights =\n{weights3}")
assert not torch.allclose(scores3, scores3.T)

torch.testing.assert_close(F.scaled_dot_product_attention(Q3, K3, V3), output3)
lens_output3, lens_weights3 = attnlens.scaled_dot_product_attention(Q3, K3, V3)
torch.testing.assert_close(lens_output3, output3)
torch.testing.assert_close(lens_weights3, weights3)

fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
attnlens.plot_attention(
    weights, tokens, ax=axes[0], annotate=True, vmax=1.0, title=r"$W_Q = W_K = W_V$"
)
attnlens.plot_attention(
    weights3, tokens, ax=axes[1], annotate=True, vmax=1.0, title=r"$W_Q \neq W_K \neq W_V$"
)

# %%
# Experiment: why divide by the square root of d_k?
# -------------------------------------------------
#
# Suppose the entries of a query :math:`q` and a key :math:`k` are independent with mean 0 and
# variance 1. Their dot product :math:`q \cdot k = \sum_{m=1}^{d_k} q_m k_m` is a sum of
# :math:`d_k` terms of variance 1, so its variance is :math:`d_k`. The wider the head, the more
# spread out the scores, and the softmax of widely spread scores puts almost all of the weight
# on the largest one. Dividing by :math:`\sqrt{d_k}` brings the variance back to 1 whatever the
# width.
#
# We measure this. For each :math:`d_k` from 1 to 512 we draw 1000 queries, each with
# :math:`S = 16` random keys (seeded), and record, averaged over the samples: the variance of the
# raw scores divided by :math:`d_k`, the largest weight in the row, the entropy of the row
# :math:`-\sum_j a_j \log a_j` (uniform attention over 16 keys has entropy
# :math:`\log 16 \approx 2.77`; all weight on one key has entropy 0), and the size of the
# softmax's Jacobian :math:`\partial a / \partial s = \operatorname{diag}(a) - a a^\top`,
# which is what gradients flow through.

generator = torch.Generator().manual_seed(0)
n_samples, S = 1000, 16
dims = [2**p for p in range(10)]  # d_k = 1, 2, 4, ..., 512


def row_statistics(row_scores):
    """Mean max weight, mean entropy and mean Jacobian norm of softmax over the last axis."""
    a = torch.softmax(row_scores, dim=-1)  # (n_samples, S)
    jacobian = torch.diag_embed(a) - a.unsqueeze(-1) * a.unsqueeze(-2)  # (n_samples, S, S)
    return (
        a.max(dim=-1).values.mean().item(),
        torch.special.entr(a).sum(dim=-1).mean().item(),
        torch.linalg.matrix_norm(jacobian).mean().item(),
    )


stats = {"raw": [], "scaled": []}
print(" d_k  var/d_k | max_a: raw  scaled | entropy: raw  scaled | |J|: raw  scaled")
for dim in dims:
    q = torch.randn(n_samples, 1, dim, generator=generator)  # (n_samples, 1, d_k)
    k = torch.randn(n_samples, S, dim, generator=generator)  # (n_samples, S, d_k)
    raw = (q @ k.transpose(-2, -1)).squeeze(1)  # (n_samples, S)
    variance_ratio = raw.var().item() / dim
    stats["raw"].append(row_statistics(raw))
    stats["scaled"].append(row_statistics(raw / math.sqrt(dim)))
    (m_raw, e_raw, j_raw), (m_sc, e_sc, j_sc) = stats["raw"][-1], stats["scaled"][-1]
    print(
        f"{dim:4d}  {variance_ratio:7.3f} | {m_raw:10.3f} {m_sc:7.3f} | "
        f"{e_raw:12.3f} {e_sc:7.3f} | {j_raw:8.3f} {j_sc:7.3f}"
    )
    torch.testing.assert_close(variance_ratio, 1.0, rtol=0.1, atol=0.0)

# %%
# The raw scores' variance grows like :math:`d_k` (the ratio stays near 1). Without the
# scaling, the largest weight climbs towards 1, the entropy falls towards 0 and, once
# :math:`d_k` passes about 8, the Jacobian shrinks: at :math:`d_k = 512` the softmax is
# saturated, nearly one-hot, and passes little gradient back to the scores. With the scaling,
# all three stay where they were at :math:`d_k = 1`.

raw_max, raw_entropy, raw_jac = (torch.tensor(column) for column in zip(*stats["raw"], strict=True))
sc_max, sc_entropy, sc_jac = (torch.tensor(column) for column in zip(*stats["scaled"], strict=True))

fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), layout="constrained")
panels = [
    (raw_max, sc_max, r"$\max_j\, a_j$", 1 / S, r"$1/S$"),
    (raw_entropy, sc_entropy, r"$-\sum_j a_j \log a_j$", math.log(S), r"$\log S$"),
    (raw_jac, sc_jac, r"$\Vert \partial a / \partial s \Vert_F$", None, None),
]
for ax, (raw_values, scaled_values, ylabel, reference, reference_label) in zip(
    axes, panels, strict=True
):
    ax.plot(dims, raw_values, "o-", label=r"$a = \mathrm{softmax}(q^\top k)$")
    ax.plot(dims, scaled_values, "s-", label=r"$a = \mathrm{softmax}(q^\top k / \sqrt{d_k})$")
    if reference is not None:
        ax.axhline(reference, color="gray", linestyle=":", label=reference_label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(r"$d_k$")
    ax.set_ylabel(ylabel)
axes[0].legend(fontsize="small")
axes[1].legend(fontsize="small")

assert raw_max[-1] > 0.9
assert raw_entropy[-1] < 0.25
assert raw_jac[-1] < 0.3 * sc_jac[-1]
torch.testing.assert_close(sc_max, torch.full_like(sc_max, sc_max[0].item()), atol=0.05, rtol=0)
torch.testing.assert_close(
    sc_entropy, torch.full_like(sc_entropy, sc_entropy[0].item()), atol=0.1, rtol=0
)

# %%
# Experiment: a temperature sweep
# -------------------------------
#
# Dividing the scores by a number before the softmax is called a *temperature*:
# :math:`\operatorname{softmax}(s / \tau)`. The scaling above is simply the temperature
# :math:`\tau = \sqrt{d_k} = 2`. A low temperature sharpens the weights towards the single best
# key (the argmax); a high temperature flattens them towards uniform attention,
# :math:`1/S` on every key.
#
# We sweep :math:`\tau` from 0.01 to 100 on the raw scores of the first pass and follow the
# weights of query :math:`x_1`.

taus = torch.logspace(-2, 2, 41)  # (T,)
row = scores[0]  # raw scores of query x_1, (S,)
sweep = torch.softmax(row / taus[:, None], dim=-1)  # (T, S)

fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
for j, token in enumerate(tokens):
    ax.plot(taus, sweep[:, j], label=token)
ax.axvline(math.sqrt(d_k), color="gray", linestyle=":", label=r"$\tau = \sqrt{d_k}$")
ax.axhline(1 / 3, color="gray", linestyle="--", linewidth=0.8)
ax.set_xscale("log")
ax.set_xlabel(r"$\tau$")
ax.set_ylabel(r"$a_{1j} = \mathrm{softmax}(s_{1\cdot} / \tau)_j$")
ax.legend()

torch.testing.assert_close(torch.softmax(scores / 2.0, dim=-1), weights)
print(f"tau = 0.01: {sweep[0]}")
print(f"tau = 100:  {sweep[-1]}")
torch.testing.assert_close(sweep[0], F.one_hot(row.argmax(), 3).float(), atol=1e-4, rtol=0)
torch.testing.assert_close(sweep[-1], torch.full((3,), 1 / 3), atol=0.01, rtol=0)

# %%
# PyTorch exposes the temperature through the ``scale`` argument of
# ``scaled_dot_product_attention``, which multiplies the scores: ``scale = 1 / tau``. The
# default is :math:`1/\sqrt{d_k}`. The attnlens function takes the same argument.

tau = 0.5
expected = torch.softmax(scores / tau, dim=-1) @ V  # (L, d_v)
torch.testing.assert_close(F.scaled_dot_product_attention(Q, K, V, scale=1 / tau), expected)
lens_output_tau, _ = attnlens.scaled_dot_product_attention(Q, K, V, scale=1 / tau)
torch.testing.assert_close(lens_output_tau, expected)

# %%
# What we saw
# -----------
#
# - Attention compares every query with every key (:math:`Q K^\top`, shape :math:`(L, S)`),
#   scales the scores by :math:`1/\sqrt{d_k}`, turns each row into weights that sum to 1 with a
#   softmax over the keys, and averages the values with those weights.
# - PyTorch's ``scaled_dot_product_attention`` gives the same output but not the weights;
#   :func:`attnlens.scaled_dot_product_attention` gives both, and both match the steps.
# - With one projection for queries and keys the score matrix is symmetric; separate
#   :math:`W_Q` and :math:`W_K` let attention be one-directional.
# - Random dot products have variance :math:`d_k`. Without the :math:`\sqrt{d_k}` the softmax
#   saturates as heads get wider and its gradient vanishes; with it, the weights look the same
#   at every width.
# - The scaling is a temperature. Low temperatures approach the argmax, high ones approach
#   uniform attention; ``scale`` sets it in both implementations.

# %%
# Exercises
# ---------
#
# **Exercise 1.** Multiply every score by the same constant, or add a constant to a whole row:
# which of the two leaves the weights unchanged? Check your answer.
#
# .. attnlens-solution::

shifted = torch.softmax(scaled + 5.0, dim=-1)  # add 5 to every score of every row
torch.testing.assert_close(shifted, weights)  # softmax ignores a constant per row
multiplied = torch.softmax(scaled * 5.0, dim=-1)
assert not torch.allclose(multiplied, weights)  # a factor changes the temperature

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Swap the first two tokens of :math:`X`. How do the weights and the output
# change? (Attention has no notion of order; walkthrough 9 goes further.)
#
# .. attnlens-solution::

swap = torch.tensor([1, 0, 2])
swapped_out, swapped_w = attnlens.scaled_dot_product_attention(Q[swap], K[swap], V[swap])
torch.testing.assert_close(swapped_out, output[swap])  # rows follow the tokens
torch.testing.assert_close(swapped_w, weights[swap][:, swap])  # rows and columns

# %%
# .. attnlens-solution-end::
#
# **Exercise 3.** With a single key (:math:`S = 1`), what are the weights and the output,
# whatever the query?
#
# .. attnlens-solution::

one_out, one_w = attnlens.scaled_dot_product_attention(Q, K[:1], V[:1])
torch.testing.assert_close(one_w, torch.ones(3, 1))  # the only key gets everything
torch.testing.assert_close(one_out, V[:1].expand(3, -1))  # every output is that value

# %%
# .. attnlens-solution-end::
