r"""
The paper's formulation, rebuilt
================================

*Attention Is All You Need* (Vaswani et al., 2017, section 3.2.2) writes multi-head attention
with one small set of projection matrices per head:

.. math::

   \operatorname{MultiHead}(Q, K, V) = \operatorname{Concat}(\mathrm{head}_1, \ldots, \mathrm{head}_h)\, W^O

.. math::

   \mathrm{head}_i = \operatorname{Attention}(Q W_i^Q, K W_i^K, V W_i^V)

where :math:`W_i^Q, W_i^K, W_i^V` have shape :math:`d_\text{model} \times d_k` and :math:`W^O`
has shape :math:`h d_k \times d_\text{model}`. ``torch.nn.MultiheadAttention`` stores none of
these matrices by name. This walkthrough reads them off the module of the previous walkthrough,
computes the paper's formula one head at a time, and gets the module's output. It then explains
why the two are the same computation and converts between the two forms with
:class:`attnlens.PaperMultiheadAttention`.
"""

# %%
# The same module as before
# -------------------------
#
# The seed, the input and the module are those of the previous walkthrough: :math:`N = 1`,
# :math:`L = 5`, :math:`d_\text{model} = E = 4`, :math:`h = H = 2` heads of
# :math:`d_k = D = 2` features, no biases, evaluation mode. In self-attention the paper's
# :math:`Q`, :math:`K` and :math:`V` (the inputs of :math:`\operatorname{MultiHead}`) are all
# :math:`X`.

import matplotlib.pyplot as plt
import torch
from torch import nn

import attnlens

torch.set_printoptions(precision=4, sci_mode=False)

torch.manual_seed(55)
X = torch.randn(1, 5, 4)  # (N, L, E)
mha = nn.MultiheadAttention(4, 2, bias=False, batch_first=True).eval()
mha.requires_grad_(False)
E, H = mha.embed_dim, mha.num_heads
D = E // H  # d_k

out, attn = mha(X, X, X, average_attn_weights=False)  # (N, L, E), (N, H, L, S)
print(out)

# %%
# The paper's matrices, read off the module
# -----------------------------------------
#
# The paper multiplies row vectors from the right, :math:`X W_i^Q`, so :math:`W_i^Q` has shape
# :math:`(d_\text{model}, d_k) = (4, 2)`. PyTorch stores weights the other way round, as
# (output features, input features), and computes :math:`X W^\top`. Head :math:`i`'s matrix is
# therefore the **transpose** of row block :math:`i` of :math:`W_Q`, that is rows
# :math:`[(i-1) d_k, i d_k)` of the first third of ``in_proj_weight``; likewise for keys and
# values. :math:`W^O` is the transpose of ``out_proj.weight``. As on every page of this site,
# heads are numbered :math:`i = 1, \dots, H` as in the paper, and rows from 0 as in Python:
# head :math:`i` is entry ``i - 1`` of the lists below.

W_Q, W_K, W_V = mha.in_proj_weight.chunk(3, dim=0)  # each (E, E) = (4, 4)
W_iQ = [W_Q[i * D : (i + 1) * D].T for i in range(H)]  # each (E, d_k) = (4, 2)
W_iK = [W_K[i * D : (i + 1) * D].T for i in range(H)]  # each (E, d_k)
W_iV = [W_V[i * D : (i + 1) * D].T for i in range(H)]  # each (E, d_k)
W_O = mha.out_proj.weight.T  # (H * d_k, E) = (4, 4)
print(f"W_1^Q =\n{W_iQ[0]}")
print(f"W_2^Q =\n{W_iQ[1]}")

# %%
# Every head on its own
# ---------------------
#
# Now the paper's formula, literally: for each head, project :math:`X` three times with that
# head's own matrices and apply scaled dot-product attention, here
# :func:`attnlens.scaled_dot_product_attention` (the steps of the first walkthrough). Each head
# produces a :math:`(1, 5, 2)` tensor and its own :math:`5 \times 5` weights, which match the
# module's per-head weights.

heads = []
for i in range(H):
    head_i, weights_i = attnlens.scaled_dot_product_attention(
        X @ W_iQ[i],  # X W_i^Q: (N, L, d_k)
        X @ W_iK[i],  # X W_i^K: (N, S, d_k)
        X @ W_iV[i],  # X W_i^V: (N, S, d_k)
    )  # (N, L, d_k), (N, L, S)
    torch.testing.assert_close(weights_i, attn[:, i])
    heads.append(head_i)
print(f"head_1 =\n{heads[0]}")

# %%
# Concatenate the heads along the feature axis and multiply by :math:`W^O`. The result is the
# module's output to within :math:`10^{-6}` (float32 rounding: the two computations add the
# same products in a different order).

multi_head = torch.cat(heads, dim=-1) @ W_O  # Concat(head_1, head_2) W^O: (N, L, E)
print(f"Concat(head_1, head_2) W^O =\n{multi_head}")
print(f"max |multi_head - out| = {(multi_head - out).abs().max().item():.2e}")
torch.testing.assert_close(multi_head, out, atol=1e-6, rtol=0)

# %%
# Why one packed multiplication does the paper's work
# ---------------------------------------------------
#
# The paper's story is often told in two steps: first project the input, :math:`Q = X W^Q`, then
# give each head its own projection, :math:`Q_i = Q W_i^Q`. PyTorch does neither step
# separately. It multiplies :math:`X` once by the packed ``in_proj_weight`` and slices the
# result. Three facts about matrix products explain why nothing is lost.
#
# **Column blocks.** A product with a matrix made of column blocks is the column blocks of the
# product: :math:`X [W_1^Q \mid W_2^Q] = [X W_1^Q \mid X W_2^Q]`. The per-head matrices placed
# side by side are exactly :math:`W_Q^\top`, so one product computes the queries of every head,
# concatenated. This is the slicing of the previous walkthrough seen from the other side.

side_by_side = torch.cat(W_iQ, dim=1)  # [W_1^Q | W_2^Q]: (E, H * d_k)
assert torch.equal(side_by_side, W_Q.T)
torch.testing.assert_close(X @ side_by_side, torch.cat([X @ W for W in W_iQ], dim=-1))

# %%
# **Stacking.** The same holds one level up: the six per-head matrices side by side,
# :math:`[W_1^Q \mid W_2^Q \mid W_1^K \mid W_2^K \mid W_1^V \mid W_2^V]`, are
# ``in_proj_weight`` transposed, a :math:`4 \times 12` matrix. One multiplication by it gives
# the queries, keys and values of all heads: the paper's :math:`3h` small products done as one
# larger product, which saves kernel launches. The figure shows the blocks; its rows
# are the :math:`d_\text{model} = 4` input features.

all_heads = torch.cat(W_iQ + W_iK + W_iV, dim=1)  # (E, 3 * H * d_k) = (4, 12)
assert torch.equal(all_heads, mha.in_proj_weight.T)

colours = plt.get_cmap("tab20").colors  # the colours of the previous walkthrough's figure
fig, ax = plt.subplots(figsize=(8, 2.9), layout="constrained")
for c in range(3 * E):
    which, head = divmod(c // D, H)
    for r in range(E):
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, color=colours[2 * which + head]))
        ax.text(c, r, f"{all_heads[r, c].item():.2f}", ha="center", va="center", fontsize=8)
for b in range(1, 3 * H):
    ax.axvline(b * D - 0.5, color="white", linewidth=1 if b % H else 4)
for index in range(3 * H):
    which, head = divmod(index, H)
    label = f"$W_{head + 1}^{'QKV'[which]}$"
    ax.text(index * D + (D - 1) / 2, -0.7, label, ha="center", va="bottom", fontsize=13)
ax.set_xlim(-0.5, 3 * E - 0.5)
ax.set_ylim(E - 0.5, -1.5)
ax.set_xticks(range(3 * E))
ax.set_yticks(range(E))
ax.set_ylabel(r"$d_\mathrm{model}$")
ax.set_xlabel(r"$\mathtt{in\_proj\_weight}^\top$")
for spine in ax.spines.values():
    spine.set_visible(False)

# %%
# **Composition.** Two linear steps in a row are one linear step:
# :math:`(X A) W_i^Q = X (A W_i^Q)`. A first projection :math:`A` shared by all heads, followed
# by per-head matrices, could always be folded into the per-head matrices, so it would add
# nothing a model could learn. In the paper there is no such first step: the :math:`Q`,
# :math:`K`, :math:`V` handed to :math:`\operatorname{MultiHead}` are the layer's inputs, and a
# tutorial that draws "project, then split" is drawing the column blocks above. We check the
# folding with an arbitrary :math:`A`.

A = torch.randn(E, E, generator=torch.Generator().manual_seed(0))  # (E, E)
torch.testing.assert_close((X @ A) @ W_iQ[0], X @ (A @ W_iQ[0]))

# %%
# **The output side.** Concatenating the heads and multiplying by :math:`W^O` is a sum over
# heads: :math:`\operatorname{Concat}(\mathrm{head}_1, \mathrm{head}_2) W^O = \sum_i
# \mathrm{head}_i W_i^O`, where :math:`W_i^O` is row block :math:`i` of :math:`W^O`. Each head
# writes its contribution into the output independently, and ``out_proj`` is the paper's
# :math:`W^O` with no rearrangement at all.

per_head_sum = sum(heads[i] @ W_O[i * D : (i + 1) * D] for i in range(H))  # (N, L, E)
torch.testing.assert_close(per_head_sum, multi_head)

# %%
# The paper form as a module, and back
# ------------------------------------
#
# :class:`attnlens.PaperMultiheadAttention` keeps these matrices as named parameters: one
# ``nn.Linear`` per head and per projection in ``w_q``, ``w_k`` and ``w_v``, and ``w_o``.
# ``nn.Linear`` stores the transpose, so the paper's :math:`W_i^Q` is ``w_q[i].weight.T``.
# ``from_torch`` copies them out of the packed module; its forward pass computes the heads one
# at a time, as we just did.

paper = attnlens.PaperMultiheadAttention.from_torch(mha)
print(paper)
for i in range(H):
    assert torch.equal(paper.w_q[i].weight.T, W_iQ[i])
    assert torch.equal(paper.w_k[i].weight.T, W_iK[i])
    assert torch.equal(paper.w_v[i].weight.T, W_iV[i])
assert torch.equal(paper.w_o.weight.T, W_O)

paper.requires_grad_(False)
paper_out, paper_attn = paper(X, X, X)  # (N, L, E), (N, H, L, S)
torch.testing.assert_close(paper_out, out, atol=1e-6, rtol=0)
torch.testing.assert_close(paper_attn, attn)

# %%
# ``to_torch`` goes the other way: it packs the per-head matrices back into one
# ``in_proj_weight`` and returns an ordinary ``nn.MultiheadAttention``. The round trip changes
# no bit of any parameter, so the rebuilt module's outputs are identical to the original's, not
# merely close.

back = paper.to_torch().requires_grad_(False)
for name, tensor in mha.state_dict().items():
    assert torch.equal(back.state_dict()[name], tensor), name

back_out, back_attn = back(X, X, X, average_attn_weights=False)
assert torch.equal(back_out, out)
assert torch.equal(back_attn, attn)
print(back_out)

# %%
# The conversion works from the paper's side too. A paper-form module created from scratch
# (with its own random per-head matrices) converts to an ``nn.MultiheadAttention`` that
# computes the same output and the same per-head weights, and converting that back gives the
# paper-form parameters unchanged.

torch.manual_seed(3)
scratch = attnlens.PaperMultiheadAttention(4, 2, bias=False, batch_first=True).eval()
scratch.requires_grad_(False)
as_torch = scratch.to_torch().requires_grad_(False)

scratch_out, scratch_attn = scratch(X, X, X)  # (N, L, E), (N, H, L, S)
torch_out, torch_attn = as_torch(X, X, X, average_attn_weights=False)
torch.testing.assert_close(torch_out, scratch_out, atol=1e-6, rtol=0)
torch.testing.assert_close(torch_attn, scratch_attn)

again = attnlens.PaperMultiheadAttention.from_torch(as_torch)
for name, tensor in scratch.state_dict().items():
    assert torch.equal(again.state_dict()[name], tensor), name

# %%
# What we saw
# -----------
#
# - The paper's :math:`W_i^Q`, :math:`W_i^K`, :math:`W_i^V` are the transposed row blocks of
#   :math:`W_Q`, :math:`W_K`, :math:`W_V` inside ``in_proj_weight``; :math:`W^O` is
#   ``out_proj.weight`` transposed.
# - Computing the heads one at a time with those matrices, concatenating and applying
#   :math:`W^O` reproduces the module's output to within :math:`10^{-6}` in float32.
# - The per-head matrices side by side are the packed matrix, so one multiplication computes all
#   the heads' queries, keys and values; a shared first projection would fold into the per-head
#   ones; and the output projection is a sum over the heads,
#   :math:`\mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_H) W^O
#   = \sum_i \mathrm{head}_i W_i^O`.
# - :class:`attnlens.PaperMultiheadAttention` holds the paper's matrices by name and converts
#   to and from ``nn.MultiheadAttention`` without changing a bit.

# %%
# Exercises
# ---------
#
# **Exercise 1.** Write :math:`W_2^O`, the block of :math:`W^O` that head 2 multiplies, as a
# slice of ``out_proj.weight``, and check :math:`\mathrm{head}_2 W_2^O` against the difference
# between the module's output and head 1's share.
#
# .. attnlens-solution::

i = 2
W_2O = mha.out_proj.weight[:, (i - 1) * D : i * D].T  # (d_k, E): rows (i-1)D .. iD-1 of W^O
share_1 = heads[0] @ W_O[:D]  # head_1 W_1^O: (N, L, E)
torch.testing.assert_close(heads[i - 1] @ W_2O, out - share_1, atol=1e-6, rtol=0)

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Give every head a shared first projection, as in the paper's two-step story:
# :math:`Q = X A` with a random :math:`(E, E)` matrix :math:`A`, then :math:`Q_i = Q W_i^Q`.
# Find the single packed matrix that gives the same queries in one step.
#
# .. attnlens-solution::

A_shared = torch.randn(E, E, generator=torch.Generator().manual_seed(1))  # (E, E)
two_steps = torch.cat([(X @ A_shared) @ W_iQ[h] for h in range(H)], dim=-1)  # (N, L, E)
packed = A_shared @ torch.cat(W_iQ, dim=1)  # (E, E): A [W_1^Q | ... | W_H^Q]
torch.testing.assert_close(X @ packed, two_steps)

# %%
# .. attnlens-solution-end::
