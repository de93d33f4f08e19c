r"""
Inside nn.MultiheadAttention: the packed in_proj
================================================

``torch.nn.MultiheadAttention`` keeps the three projection matrices :math:`W_Q`, :math:`W_K`
and :math:`W_V` in a single parameter, ``in_proj_weight``, and computes the queries, keys and
values of every head with one matrix multiplication. This walkthrough opens up that matrix: it
slices the packed projection into per-head blocks with ``view``, ``transpose`` and ``unbind``,
recomputes each head's attention weights, and rebuilds the module's output from its parameters,
checking every step against the module itself.
"""

# %%
# A small module and its input
# ----------------------------
#
# A batch of :math:`N = 1` sequence of :math:`L = 5` tokens with :math:`E = 4` features, and a
# module with :math:`H = 2` heads, so each head works in :math:`D = E / H = 2` dimensions.
# ``bias=False`` keeps the arithmetic to matrix products; ``batch_first=True`` makes the input
# :math:`(N, L, E)`; ``eval()`` turns dropout off. We only inspect the module, so we also
# switch off gradient tracking for its parameters, which changes no number.

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import attnlens

torch.set_printoptions(precision=4, linewidth=120)

torch.manual_seed(55)
X = torch.randn(1, 5, 4)  # (N, L, E)
mha = nn.MultiheadAttention(4, 2, bias=False, batch_first=True).eval()
mha.requires_grad_(False)
N, L, E = X.shape
H = mha.num_heads
D = E // H
tokens = ["x₁", "x₂", "x₃", "x₄", "x₅"]
print(X)

# %%
# We call it as self-attention (query, key and value are all :math:`X`) and ask for the weights
# of each head separately with ``average_attn_weights=False``. The output has the shape of the
# input; the weights have shape :math:`(N, H, L, S)`, one :math:`L \times S` map per head, and
# here :math:`S = L = 5`.

out, attn = mha(X, X, X, average_attn_weights=False)
print(f"output {tuple(out.shape)} =\n{out}")
print(f"weights {tuple(attn.shape)} =\n{attn}")

# %%
# in_proj_weight is W_Q, W_K and W_V stacked
# ------------------------------------------
#
# ``in_proj_weight`` has shape :math:`(3E, E) = (12, 4)`. Its first four rows are :math:`W_Q`,
# the next four :math:`W_K`, the last four :math:`W_V`: the three matrices stacked along
# dimension 0. :func:`attnlens.split_in_proj` names the three blocks. They are views of the
# module's parameter, not copies: the memory address of the key block is the address of row 4
# of the packed matrix.

W = mha.in_proj_weight  # (3E, E) = (12, 4)
print(f"in_proj_weight =\n{W.detach()}")

W_Q, W_K, W_V = W.chunk(3, dim=0)  # each (E, E) = (4, 4)
proj = attnlens.split_in_proj(mha)
torch.testing.assert_close(proj.q_weight, W_Q)
torch.testing.assert_close(proj.k_weight, W_K)
torch.testing.assert_close(proj.v_weight, W_V)
assert proj.k_weight.data_ptr() == W[4:8].data_ptr()
assert proj.q_bias is None  # bias=False
print(f"W_K =\n{proj.k_weight}")

# %%
# Inside each of these blocks the rows are grouped by head: rows 0 and 1 of :math:`W_Q` produce
# the two query features of head 1, rows 2 and 3 those of head 2, and likewise for
# :math:`W_K` and :math:`W_V`. The figure colours the 12 rows by projection and by head.

blocks = ["Q", "K", "V"]
colours = plt.get_cmap("tab20").colors  # pairs of (dark, light) blues, oranges, greens, ...


def block_colour(index):
    """Colour of row (or column) `index` of the packed projection: projection, then head."""
    which, head = divmod(index // D, H)
    return colours[2 * which + head]


def draw_cells(ax, values, blocks_along):
    """Draw a 2-D tensor as cells with their values, coloured by block along "rows" or "cols"."""
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            colour = block_colour(r if blocks_along == "rows" else c)
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color=colour))
            ax.text(c, r, f"{values[r, c].item():.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.spines[:].set_visible(False)


fig, ax = plt.subplots(figsize=(4.2, 6), layout="constrained")
draw_cells(ax, W, blocks_along="rows")
for b in range(1, 3 * H):  # thin lines between heads, thick ones between W_Q, W_K, W_V
    ax.axhline(b * D - 0.5, color="white", linewidth=1 if b % H else 4)
ax.set_xlabel(r"$e$")
ax.set_title(r"$\mathtt{in\_proj\_weight}\ (3E \times E)$")
left = ax.secondary_yaxis(-0.12)
left.set_yticks([which * E + (E - 1) / 2 for which in range(3)], [f"$W_{n}$" for n in blocks])
left.tick_params(length=0, labelsize=14)
left.spines[:].set_visible(False)
right = ax.secondary_yaxis("right")
centres = [which * E + h * D + (D - 1) / 2 for which in range(3) for h in range(H)]
right.set_yticks(centres, [f"$h_{h + 1}$" for _ in range(3) for h in range(H)])
right.tick_params(length=0, labelsize=11)
right.spines[:].set_visible(False)

# %%
# One multiplication for all projections of all heads
# ---------------------------------------------------
#
# ``F.linear(X, W)`` computes :math:`X W^\top`. With the packed matrix this is one
# multiplication that produces, side by side, the queries, keys and values of every head: a
# :math:`(1, 5, 12)` tensor. It equals the three separate projections concatenated.

QKV = F.linear(X, W)  # (N, L, 3E) = (1, 5, 12)
print(QKV)
torch.testing.assert_close(QKV, X @ W.T)
torch.testing.assert_close(QKV, torch.cat([X @ W_Q.T, X @ W_K.T, X @ W_V.T], dim=-1))

# %%
# Slicing QKV into six heads' worth of Q, K and V
# -----------------------------------------------
#
# The 12 columns of ``QKV`` follow the rows of ``in_proj_weight``: projection first, then head,
# then the feature within the head. In row-major order, the last axis therefore factorises as
# :math:`(3, H, D) = (3, 2, 2)`, and ``view`` can split it without moving any number. Two
# transposes bring the projection axis and the head axis in front of the tokens, and ``unbind``
# takes the pieces apart. Nothing is copied: every block is a view of ``QKV``.

qkv = QKV.view(N, L, 3, H, D)  # (N, L, 3, H, D) = (1, 5, 3, 2, 2)
qkv = qkv.transpose(1, 2)  # (N, 3, L, H, D)
qkv = qkv.transpose(2, 3)  # (N, 3, H, L, D)
Q, K, V = qkv.unbind(dim=1)  # each (N, H, L, D) = (1, 2, 5, 2)
Q1, Q2 = Q.unbind(dim=1)  # each (N, L, D) = (1, 5, 2)
K1, K2 = K.unbind(dim=1)  # each (N, L, D)
V1, V2 = V.unbind(dim=1)  # each (N, L, D)
print(f"Q_1 =\n{Q1}")
print(f"K_2 =\n{K2}")

# %%
# Each block is a pair of adjacent columns of ``QKV``: :math:`Q_1` is columns 0 and 1,
# :math:`Q_2` columns 2 and 3, :math:`K_1` columns 4 and 5, and so on. Equivalently, head
# :math:`i`'s queries come from rows :math:`2i-2` and :math:`2i-1` of :math:`W_Q` alone.
# :func:`attnlens.split_heads` does the head split for one projection, giving the same
# :math:`(N, H, L, D)` tensor.

for index, block in enumerate([Q1, Q2, K1, K2, V1, V2]):
    torch.testing.assert_close(block, QKV[..., index * D : (index + 1) * D])
torch.testing.assert_close(Q2, X @ W_Q[D : 2 * D].T)
torch.testing.assert_close(Q, attnlens.split_heads(QKV[..., :E], H))
storage = QKV.untyped_storage().data_ptr()
assert all(b.untyped_storage().data_ptr() == storage for b in [Q1, Q2, K1, K2, V1, V2])

fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
draw_cells(ax, QKV[0], blocks_along="cols")
for b in range(1, 3 * H):
    ax.axvline(b * D - 0.5, color="white", linewidth=1 if b % H else 4)
ax.set_yticks(range(L), tokens)
ax.set_title(r"$X W^\top\ (L \times 3E)$")
top = ax.secondary_xaxis("top")
top.set_xticks(
    [index * D + (D - 1) / 2 for index in range(3 * H)],
    [f"${blocks[index // H]}_{index % H + 1}$" for index in range(3 * H)],
)
top.tick_params(length=0, labelsize=12)
top.spines[:].set_visible(False)

# %%
# Each head's attention weights
# -----------------------------
#
# Each head runs ordinary scaled dot-product attention on its own two-dimensional queries and
# keys: :math:`A_i = \operatorname{softmax}(Q_i K_i^\top / \sqrt{D})`. Note the scale: the
# head dimension :math:`D = 2`, not the embedding dimension :math:`E = 4`. The result is the
# per-head map the module returned.

A = []
for i, (Q_i, K_i) in enumerate([(Q1, K1), (Q2, K2)]):
    A_i = torch.softmax(Q_i @ K_i.transpose(-2, -1) / math.sqrt(D), dim=-1)  # (N, L, S)
    torch.testing.assert_close(A_i, attn[:, i])
    A.append(A_i)
print(A[0])

wrong_scale = torch.softmax(Q1 @ K1.transpose(-2, -1) / math.sqrt(E), dim=-1)  # (N, L, S)
assert not torch.allclose(wrong_scale, attn[:, 0])

# %%
# Both heads at once: :func:`attnlens.scaled_dot_product_attention` accepts the
# :math:`(N, H, L, D)` tensors directly and returns all the maps, shape :math:`(N, H, L, S)`.
# Drawn side by side, the two heads of this untrained module spread their attention
# differently over the same five tokens.

head_outputs, head_weights = attnlens.scaled_dot_product_attention(Q, K, V)  # (N, H, L, D)
torch.testing.assert_close(head_weights, attn)

fig = attnlens.plot_heads(attn[0], tokens, annotate=True)

# %%
# Finishing the output: weights, concatenation, out_proj
# ------------------------------------------------------
#
# Each head averages its own values, :math:`O_i = A_i V_i`, shape :math:`(1, 5, 2)`. The heads
# are concatenated back along the feature axis into :math:`(1, 5, 4)`, and the output
# projection ``out_proj`` (a plain ``nn.Linear(4, 4)``, without bias here) mixes them. The
# result is the module's output.

O1 = A[0] @ V1  # (N, L, D)
O2 = A[1] @ V2  # (N, L, D)
concat = torch.cat([O1, O2], dim=-1)  # (N, L, E)
torch.testing.assert_close(concat, attnlens.merge_heads(head_outputs))

rebuilt = F.linear(concat, mha.out_proj.weight, mha.out_proj.bias)  # (N, L, E)
print(rebuilt)
torch.testing.assert_close(rebuilt, out)

# %%
# By default (``average_attn_weights=True``) the module returns one map per batch element: the
# mean of the head maps. That average is convenient but hides what each head does, which is why
# this walkthrough asked for the heads separately.

_, averaged = mha(X, X, X)  # (N, L, S)
torch.testing.assert_close(averaged, attn.mean(dim=1))

# %%
# What we saw
# -----------
#
# - ``in_proj_weight`` of shape :math:`(3E, E)` is :math:`W_Q`, :math:`W_K` and :math:`W_V`
#   stacked along dimension 0, and within each of them the rows are grouped by head.
# - One ``F.linear`` computes the queries, keys and values of all heads; the last axis of the
#   result factorises as :math:`(3, H, D)`, so ``view``, ``transpose`` and ``unbind`` split it
#   into per-head blocks without copying.
# - Each head is plain scaled dot-product attention in :math:`D = E / H` dimensions, scaled by
#   :math:`1/\sqrt{D}`, and reproduces the module's per-head weights.
# - Concatenating the heads' outputs and applying ``out_proj`` reproduces the module's output.

# %%
# One query, number by number: the neuron view
# ---------------------------------------------
#
# With :math:`D = 2`, every number of a head fits on the screen. :func:`attnlens.neuron_view_html`
# takes the per-head queries and keys, shape :math:`(N, H, L, D)`, and writes out, for one query
# token, the products :math:`q_d k_d`, their sum :math:`q \cdot k`, the score
# :math:`q \cdot k / \sqrt{D}` and the softmax over the keys. Choose the query token with the
# buttons and the head with the menu. The weights it computes are the module's.

neuron_view = attnlens.neuron_view_html(Q, K, tokens, batch_index=0)
torch.testing.assert_close(torch.from_numpy(neuron_view.weights).float(), attn[0])
neuron_view

# %%
# Exercises
# ---------
#
# **Exercise 1.** Without the ``view``/``transpose`` steps: slice the queries and keys of head 2
# straight out of ``in_proj_weight`` (rows :math:`[(i-1)D, iD)` of :math:`W_Q` for head
# :math:`i`, here rows 2 and 3) and recompute that head's weights.
#
# .. attnlens-solution::

i = 2
Q_i = F.linear(X, W_Q[(i - 1) * D : i * D])  # (N, L, D)
K_i = F.linear(X, W_K[(i - 1) * D : i * D])  # (N, S, D)
A_i = torch.softmax(Q_i @ K_i.transpose(-2, -1) / math.sqrt(D), dim=-1)  # (N, L, S)
torch.testing.assert_close(A_i, attn[:, i - 1])  # head 2 is index 1

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Permute the heads: reorder the row blocks of every head in :math:`W_Q`,
# :math:`W_K`, :math:`W_V` and the matching columns of ``out_proj``. The output does not change,
# only the order of the heads' maps does. Check it.
#
# .. attnlens-solution::

order = [1, 0]  # head 2 first, then head 1
rows = torch.cat([torch.arange(h * D, (h + 1) * D) for h in order])  # (E,)
swapped = nn.MultiheadAttention(4, 2, bias=False, batch_first=True).eval()
with torch.no_grad():
    swapped.in_proj_weight.copy_(torch.cat([W_Q[rows], W_K[rows], W_V[rows]]))
    swapped.out_proj.weight.copy_(mha.out_proj.weight[:, rows])
    out_swapped, attn_swapped = swapped(X, X, X, average_attn_weights=False)
torch.testing.assert_close(out_swapped, out)
torch.testing.assert_close(attn_swapped, attn[:, order])

# %%
# .. attnlens-solution-end::
