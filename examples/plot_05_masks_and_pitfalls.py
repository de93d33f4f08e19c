r"""
Masks and pitfalls
==================

Masks decide which keys each query may look at. They are simple in principle, but PyTorch's
attention functions disagree on what a boolean mask means, a query with nothing to look at
produces NaN or zeros depending on the code path, and the weights returned in training mode are
not the softmax at all. This walkthrough shows each of these with small tensors and asserts
what it claims: ``key_padding_mask``, causal masks (``attn_mask`` and ``is_causal``), the
opposite boolean conventions of ``scaled_dot_product_attention`` and ``nn.MultiheadAttention``,
the fully masked row, and dropout in the returned weights.
"""

# %%
# A batch with padding
# --------------------
#
# Two sequences of :math:`E = 4` features in one batch: the first has five tokens, the second
# only three, padded with zero vectors to length five so that the batch is one tensor of shape
# :math:`(N, L, E) = (2, 5, 4)`. The module has two heads, no biases, and no dropout for now.
# We only look at it, so gradient tracking is off for its parameters.

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import attnlens

torch.set_printoptions(precision=4)

torch.manual_seed(0)
N, L, E, H = 2, 5, 4, 2
X = torch.randn(N, L, E)  # (N, L, E)
X[1, 3:] = 0.0  # sequence 2 has 3 real tokens and 2 padding positions
mha = nn.MultiheadAttention(E, H, bias=False, batch_first=True).eval()
mha.requires_grad_(False)
tokens = ["x₁", "x₂", "x₃", "x₄", "x₅"]
padded_tokens = ["x₁", "x₂", "x₃", "[PAD]", "[PAD]"]
print(X)

# %%
# key_padding_mask: ignore the padding keys
# -----------------------------------------
#
# ``key_padding_mask`` has shape :math:`(N, S)`, one flag per key of each sequence. For
# ``nn.MultiheadAttention`` a boolean ``True`` means *this key is padding: ignore it*. The
# masked keys get a score of :math:`-\infty` before the softmax, hence a weight of exactly 0,
# and the remaining weights of the row still sum to 1.

key_padding_mask = torch.tensor(
    [
        [False, False, False, False, False],
        [False, False, False, True, True],
    ]
)  # (N, S)
out, attn = mha(X, X, X, key_padding_mask=key_padding_mask, average_attn_weights=False)
print(attn[1, 0])  # sequence 2, head 1: (L, S)

assert torch.all(attn[1, :, :, 3:] == 0)
torch.testing.assert_close(attn.sum(dim=-1), torch.ones(N, H, L))

# %%
# The real tokens of the padded sequence now get the same output as they would get on their
# own, without any padding. The padding *queries* (rows 4 and 5) still receive an output,
# computed from the real keys: nothing in attention removes them, so whatever comes next (a
# loss, a mean over positions) must ignore them too.
#
# The figure shows the weights averaged over the two heads: the first sequence on the left,
# the padded one on the right, where the two padding columns are 0.

alone, _ = mha(X[1:, :3], X[1:, :3], X[1:, :3])  # (1, 3, E)
torch.testing.assert_close(out[1:, :3], alone)
assert torch.isfinite(out[1, 3:]).all()

fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), layout="constrained")
attnlens.plot_attention(attn[0].mean(dim=0), tokens, ax=axes[0], annotate=True, vmax=1.0)
attnlens.plot_attention(
    attn[1].mean(dim=0), padded_tokens, ax=axes[1], annotate=True, vmax=1.0, xrotation=0
)

# %%
# To compare the module with ``scaled_dot_product_attention`` we need its per-head queries, keys
# and values. As in the walkthrough on the packed ``in_proj``, we project with the three blocks
# of ``in_proj_weight`` and split the features into heads. The helper returns the output of
# every head and every head's weights, shape :math:`(N, H, L, S)`, computed by
# :func:`attnlens.scaled_dot_product_attention`, which follows the mask convention of
# ``torch.nn.functional.scaled_dot_product_attention``.

proj = attnlens.split_in_proj(mha)
q = attnlens.split_heads(F.linear(X, proj.q_weight), H)  # (N, H, L, D)
k = attnlens.split_heads(F.linear(X, proj.k_weight), H)  # (N, H, S, D)
v = attnlens.split_heads(F.linear(X, proj.v_weight), H)  # (N, H, S, D)


def heads_by_sdpa(**mask_arguments):
    """Per-head (output, weights) of `mha` on X, via attnlens.scaled_dot_product_attention."""
    return attnlens.scaled_dot_product_attention(q, k, v, **mask_arguments)


# %%
# Causal masks: attn_mask and is_causal
# -------------------------------------
#
# A causal (autoregressive) mask lets query :math:`i` look only at keys :math:`j \le i`. For
# the module, the usual way to write it is a float mask of zeros and :math:`-\infty` from
# ``nn.Transformer.generate_square_subsequent_mask``: it is *added* to the scores, so
# :math:`-\infty` entries get weight 0.

causal = nn.Transformer.generate_square_subsequent_mask(L)  # (L, S), float
print(f"causal mask =\n{causal}")
out_causal, attn_causal = mha(X, X, X, attn_mask=causal, average_attn_weights=False)
print(f"attn_causal[0, 0] =\n{attn_causal[0, 0]}")
assert torch.all(attn_causal.triu(diagonal=1) == 0)

# %%
# ``is_causal=True`` looks like a shortcut, but for ``nn.MultiheadAttention`` it is only a
# *hint* that the mask you pass is causal: without ``attn_mask`` it raises, and with one the
# result is the same as without the hint.

try:
    mha(X, X, X, is_causal=True)
except RuntimeError as error:
    print(f"RuntimeError: {error}")
else:
    raise AssertionError("is_causal=True without attn_mask was expected to raise")

out_hint, attn_hint = mha(X, X, X, attn_mask=causal, is_causal=True, average_attn_weights=False)
torch.testing.assert_close(out_hint, out_causal)
torch.testing.assert_close(attn_hint, attn_causal)

# %%
# In ``scaled_dot_product_attention`` (PyTorch's and attnlens') ``is_causal=True`` is a real
# mask and needs no ``attn_mask``. It gives the same per-head weights as the module with the
# explicit causal mask.

allowed = torch.ones(L, L, dtype=torch.bool).tril()  # (L, S), True on and below the diagonal
print(allowed)

heads_causal, weights_causal = heads_by_sdpa(is_causal=True)
torch.testing.assert_close(weights_causal, attn_causal)
torch.testing.assert_close(heads_causal, F.scaled_dot_product_attention(q, k, v, is_causal=True))

# %%
# One boolean mask, two opposite meanings
# ---------------------------------------
#
# Here is the trap. ``scaled_dot_product_attention`` reads a boolean mask as *True = this key
# takes part*. ``nn.MultiheadAttention`` (and ``nn.Transformer``) read it as *True = this key
# is masked out*. The same tensor ``allowed`` therefore means "causal" to the first and "the
# exact opposite of causal" to the second; the module needs its negation ``~allowed``.

_, weights_sdpa = heads_by_sdpa(attn_mask=allowed)  # SDPA: True = takes part
_, attn_negated = mha(X, X, X, attn_mask=~allowed, average_attn_weights=False)  # MHA: True = out
torch.testing.assert_close(weights_sdpa, attn_causal)
torch.testing.assert_close(attn_negated, attn_causal)
torch.testing.assert_close(
    F.scaled_dot_product_attention(q, k, v, attn_mask=allowed),
    F.scaled_dot_product_attention(q, k, v, is_causal=True),
)

# %%
# Passing ``allowed`` itself to the module is not an error. It silently masks the diagonal and
# everything below it. Every query then looks only at *later* tokens, and the last query,
# which has no later token, has nothing left to look at: its row is NaN (next section).

_, attn_wrong = mha(X, X, X, attn_mask=allowed, average_attn_weights=False)
print(attn_wrong[0, 0])
assert torch.all(attn_wrong[:, :, :-1].tril() == 0)
assert torch.isnan(attn_wrong[:, :, -1]).all()

fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), layout="constrained")
attnlens.plot_attention(
    attn_causal[0, 0], tokens, ax=axes[0], annotate=True, vmax=1.0, title="~allowed"
)
attnlens.plot_attention(
    attn_wrong[0, 0], tokens, ax=axes[1], annotate=True, vmax=1.0, title="allowed"
)

# %%
# Float masks have no such ambiguity: both functions *add* them to the scores. Converting a
# boolean mask to zeros and :math:`-\infty` once, in one place, avoids the trap.

float_mask = torch.zeros(L, L).masked_fill(~allowed, -math.inf)  # (L, S)
torch.testing.assert_close(float_mask, causal)
_, weights_float = heads_by_sdpa(attn_mask=float_mask)
torch.testing.assert_close(weights_float, attn_causal)

# %%
# A fully masked row: NaN or zeros
# --------------------------------
#
# When every key of a query row is masked, all its scores are :math:`-\infty` and the softmax
# is :math:`0/0`. What comes back depends on the code path. Asking the module for weights
# (``need_weights=True``, the default) computes the softmax explicitly and returns NaN, in the
# weights and in the output row. With ``need_weights=False`` the module calls PyTorch's fused
# ``scaled_dot_product_attention``, which returns zeros for that row. Here the second sequence
# is entirely padding, as happens with an empty sentence in a batch.

empty = torch.tensor(
    [
        [False, False, False, False, False],
        [True, True, True, True, True],
    ]
)  # (N, S): sequence 2 has no real key at all
out_weights_path, attn_empty = mha(X, X, X, key_padding_mask=empty)
out_fused_path, no_weights = mha(X, X, X, key_padding_mask=empty, need_weights=False)
print(f"need_weights=True: out[1] =\n{out_weights_path[1]}")
print(f"need_weights=False: out[1] =\n{out_fused_path[1]}")

assert torch.isnan(out_weights_path[1]).all()
assert torch.isnan(attn_empty[1]).all()
assert no_weights is None
torch.testing.assert_close(out_fused_path[1], torch.zeros(L, E))
torch.testing.assert_close(out_fused_path[0], out_weights_path[0])

# %%
# :func:`attnlens.scaled_dot_product_attention` does what PyTorch's function does for the same
# call: zeros for a row with nothing to attend to, in the output and in the weights.

row_mask = torch.ones(L, L, dtype=torch.bool)  # (L, S), SDPA convention: True = takes part
row_mask[2] = False  # query 3 may look at nothing
heads_empty, weights_empty = heads_by_sdpa(attn_mask=row_mask)
torch.testing.assert_close(heads_empty, F.scaled_dot_product_attention(q, k, v, attn_mask=row_mask))
torch.testing.assert_close(weights_empty[:, :, 2], torch.zeros(N, H, L))

# %%
# A fast path can change the answer again. A module *with* biases, in evaluation mode and with
# gradients off, runs PyTorch's native fused kernel for self-attention, and that kernel returns
# NaN even with ``need_weights=False``. The same call returns zeros or NaN depending on whether
# autograd is on.

torch.manual_seed(1)
mha_bias = nn.MultiheadAttention(E, H, batch_first=True).eval()  # bias=True
with torch.no_grad():  # fast path: eval, no grad, self-attention, biases, batch_first
    fast, _ = mha_bias(X, X, X, key_padding_mask=empty, need_weights=False)
slow, _ = mha_bias(X, X, X, key_padding_mask=empty, need_weights=False)  # autograd on
print(f"torch.no_grad(): {fast[1, 0]}")
print(f"requires_grad:   {slow[1, 0].detach()}")
assert torch.isnan(fast[1]).all()
torch.testing.assert_close(slow[1].detach(), torch.zeros(L, E))

# %%
# NaN does not stay in its row
# ----------------------------
#
# It is tempting to ignore the NaN rows, since they belong to padding. In the forward pass that
# works, but not in the backward pass. Below, the last query is fully masked and the loss uses
# only the first three rows of the output, yet every gradient of the projection weights is NaN:
# the backward pass multiplies the NaN weights by zero gradients, and :math:`0 \times
# \mathrm{NaN} = \mathrm{NaN}`. The fused path, whose masked row is zeros, gives finite
# gradients. Masks must leave every query at least one key, or the NaN must be replaced before
# it reaches the loss.

last_row_masked = torch.zeros(L, L, dtype=torch.bool)  # (L, S), MHA convention: True = out
last_row_masked[-1] = True
trainable = nn.MultiheadAttention(E, H, bias=False, batch_first=True)
trainable.load_state_dict(mha.state_dict())

output, _ = trainable(X, X, X, attn_mask=last_row_masked)  # need_weights=True: NaN row
output[:, :3].sum().backward()
print(trainable.in_proj_weight.grad[:4])
assert torch.isnan(trainable.in_proj_weight.grad).all()
assert torch.isnan(trainable.out_proj.weight.grad).all()

trainable.zero_grad()
output, _ = trainable(X, X, X, attn_mask=last_row_masked, need_weights=False)
output[:, :3].sum().backward()
assert torch.isfinite(trainable.in_proj_weight.grad).all()
assert torch.isfinite(trainable.out_proj.weight.grad).all()

# %%
# Dropout is inside the returned weights
# --------------------------------------
#
# With ``dropout > 0`` in training mode, the module applies dropout to the attention weights
# *before* returning them. The rows no longer sum to 1: each weight is either dropped to 0 or
# scaled by :math:`1/(1-p)`. These are the weights the output was actually computed with, but
# they are not the attention distribution, so attention maps should be read in ``eval()`` mode.

torch.manual_seed(2)
dropping = nn.MultiheadAttention(E, H, dropout=0.5, bias=False, batch_first=True)
dropping.load_state_dict(mha.state_dict())
dropping.requires_grad_(False)

dropping.eval()
_, attn_eval = dropping(X, X, X, average_attn_weights=False)  # (N, H, L, S)
dropping.train()
out_train, attn_train = dropping(X, X, X, average_attn_weights=False)  # (N, H, L, S)
print(f"train(): attn[0, 0] =\n{attn_train[0, 0]}")
print(f"attn[0, 0].sum(dim=-1) = {attn_train[0, 0].sum(dim=-1)}")

torch.testing.assert_close(attn_eval.sum(dim=-1), torch.ones(N, H, L))
kept = attn_train != 0
assert not kept.all()
torch.testing.assert_close(attn_train[kept], attn_eval[kept] / (1 - 0.5))

# %%
# The returned weights are indeed the ones used: multiplying them by each head's values,
# merging the heads and applying ``out_proj`` gives the training-mode output.

rebuilt = F.linear(attnlens.merge_heads(attn_train @ v), dropping.out_proj.weight)  # (N, L, E)
torch.testing.assert_close(rebuilt, out_train)

fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), layout="constrained")
attnlens.plot_attention(
    attn_eval[0, 0], tokens, ax=axes[0], annotate=True, vmax=1.0, title="eval()"
)
attnlens.plot_attention(
    attn_train[0, 0], tokens, ax=axes[1], annotate=True, vmax=1.0, title="train()"
)

# %%
# What we saw
# -----------
#
# - ``key_padding_mask`` (True = padding) gives padding keys weight 0; the real tokens of a
#   padded sequence get the output they would get alone, and padding queries still get an
#   output that later steps must ignore.
# - For ``nn.MultiheadAttention``, ``is_causal=True`` is only a hint and needs ``attn_mask``;
#   in ``scaled_dot_product_attention`` it is the causal mask itself.
# - A boolean mask means *True = takes part* in ``scaled_dot_product_attention`` and *True =
#   masked out* in ``nn.MultiheadAttention``. The wrong one is accepted silently. Float masks
#   (0 and :math:`-\infty`) mean the same to both.
# - A row with every key masked is NaN on the path that returns weights (and on the native fast
#   path) and zeros on the fused path. The NaN spreads to every gradient even when the loss
#   ignores that row.
# - In training mode the returned weights include dropout: rows do not sum to 1. Look at
#   attention in ``eval()`` mode.

# %%
# Exercises
# ---------
#
# **Exercise 1.** Turn the boolean ``key_padding_mask`` of the first section (True = padding,
# the ``nn.MultiheadAttention`` convention) into a float mask and into a boolean mask for
# ``scaled_dot_product_attention`` (True = takes part), and check that all three give the same
# per-head weights.
#
# .. attnlens-solution::

as_float = torch.zeros(N, L).masked_fill(key_padding_mask, -math.inf)  # (N, S)
_, w_bool = mha(X, X, X, key_padding_mask=key_padding_mask, average_attn_weights=False)
_, w_float = mha(X, X, X, key_padding_mask=as_float, average_attn_weights=False)
_, w_sdpa = heads_by_sdpa(attn_mask=~key_padding_mask[:, None, None, :])  # (N, 1, 1, S)
torch.testing.assert_close(w_float, w_bool)
torch.testing.assert_close(w_sdpa, w_bool)

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Left padding and a causal mask: the second sequence is padded at the *start*
# (two padding positions, then three tokens). Which query rows have no key left, and are they
# NaN on the path that returns weights?
#
# .. attnlens-solution::

left_padding = torch.tensor([[False] * 5, [True, True, False, False, False]])  # (N, S)
future = torch.ones(L, L, dtype=torch.bool).triu(1)  # True = masked out (MHA)
_, w_left = mha(X, X, X, attn_mask=future, key_padding_mask=left_padding)
no_key = (future[None] | left_padding[:, None, :]).all(dim=-1)  # (N, L): rows without keys
print(no_key)
assert no_key.tolist() == [[False] * 5, [True, True, False, False, False]]
assert torch.isnan(w_left[no_key]).all()
assert torch.isfinite(w_left[~no_key]).all()

# %%
# .. attnlens-solution-end::
