r"""
Positions: what attention does not know about order
===================================================

Self-attention compares every query with every key, and nothing in that comparison says where
a token stands. This walkthrough checks that claim exactly (permuting the tokens permutes the
outputs), then looks at the two usual ways of adding positions, the paper's fixed sinusoids and
a learned table, and finally asks what the classifier of walkthrough 4 does with its positions.
"""

# %%
# Permuting the tokens permutes the outputs
# -----------------------------------------
#
# Take a self-attention module and a sequence :math:`X` of :math:`L = 6` tokens. Let
# :math:`P` be a permutation. Then the output for :math:`P X` is :math:`P` applied to the
# output for :math:`X`, and the weights are permuted along both axes:
# :math:`A(PX) = P A(X) P^\top`. Self-attention is *permutation-equivariant*. A read-out that
# ignores the order, such as the mean over positions, cannot tell the two inputs apart at all.

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.testing import assert_close

from attnlens.positions import sinusoidal_positions

torch.manual_seed(0)
L, E, H = 6, 8, 2
mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
X = torch.randn(1, L, E)  # (N, L, E)
perm = torch.tensor([3, 0, 5, 1, 4, 2])

with torch.no_grad():
    out, weights = mha(X, X, X, average_attn_weights=False)  # (N, L, E), (N, H, L, S)
    out_p, weights_p = mha(X[:, perm], X[:, perm], X[:, perm], average_attn_weights=False)

print(f"perm = {perm.tolist()}")
assert_close(out_p, out[:, perm])  # outputs: permuted like the inputs
assert_close(weights_p, weights[:, :, perm][:, :, :, perm])  # weights: rows and columns
assert_close(out_p.mean(dim=1), out.mean(dim=1))  # an order-free read-out: no difference

# %%
# A sentence makes the point: *dog bites man* and *man bites dog* contain the same three
# token vectors. Without positions, every token gets the same output in both sentences.

vocab = {"dog": 0, "bites": 1, "man": 2}
embed = nn.Embedding(3, E)
a = embed(torch.tensor([[0, 1, 2]]))  # dog bites man: (1, 3, E)
b = embed(torch.tensor([[2, 1, 0]]))  # man bites dog
with torch.no_grad():
    out_a, _ = mha(a, a, a)
    out_b, _ = mha(b, b, b)
assert_close(out_a[0, 0], out_b[0, 2])  # "dog" is the same vector in both
assert_close(out_a[0, 1], out_b[0, 1])  # so is "bites"

# %%
# Sinusoidal positional encoding
# ------------------------------
#
# *Attention Is All You Need* adds a fixed vector to each token embedding: for position
# :math:`p` and feature pair :math:`i`,
# :math:`PE_{(p, 2i)} = \sin(p / 10000^{2i/E})` and :math:`PE_{(p, 2i+1)} = \cos(p / 10000^{2i/E})`.
# :func:`attnlens.positions.sinusoidal_positions` computes it. The first columns oscillate fast,
# the last ones slowly, so every position gets a different pattern.

pe = sinusoidal_positions(64, 32)  # (L, E)
print(tuple(pe.shape))
assert_close(pe[0, 0::2], torch.zeros(16))  # sin 0 = 0
assert_close(pe[0, 1::2], torch.ones(16))  # cos 0 = 1

fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
image = ax.imshow(pe.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xlabel(r"$p$")
ax.set_ylabel(r"$2i,\ 2i+1$")
fig.colorbar(image, ax=ax)

# %%
# Why sinusoids: the dot product of two encodings depends only on their distance,
# :math:`PE_p \cdot PE_{p+k} = \sum_i \cos(k\,\omega_i)`, whatever :math:`p` is. The matrix of
# all these dot products is therefore constant along each diagonal (a Toeplitz matrix), and it
# is largest on the main diagonal: each position is most similar to itself.

gram = pe @ pe.T  # (L, L)
for k in (1, 5, 20):
    diagonal = torch.diagonal(gram, offset=k)
    assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4, rtol=0)
assert torch.equal(gram.argmax(dim=1), torch.arange(64))

fig, ax = plt.subplots(figsize=(3.6, 3.2), layout="constrained")
ax.imshow(gram, cmap="viridis")
ax.set_xlabel(r"$p'$")
ax.set_ylabel(r"$p$")
ax.set_title(r"$PE_p \cdot PE_{p'}$")

# %%
# Added to the embeddings, the encoding breaks the symmetry: the same permutation now changes
# the outputs, not just their order.

pe_small = sinusoidal_positions(L, E)  # (L, E) = (6, 8)
with torch.no_grad():
    Y = X + pe_small  # (N, L, E) + (L, E)
    Y_p = X[:, perm] + pe_small  # the tokens move, the positions stay
    out_pos, _ = mha(Y, Y, Y)
    out_pos_p, _ = mha(Y_p, Y_p, Y_p)
assert not torch.allclose(out_pos_p, out_pos[:, perm], atol=1e-3)

# %%
# Learned positional embeddings
# -----------------------------
#
# The other common choice is a table of vectors learned with the model, ``nn.Embedding(max_len,
# E)``, as in BERT and in the classifier of walkthrough 4. It can learn whatever the task needs,
# but it has one row per position seen in training and nothing beyond: a longer input has no
# position vector at all, while the sinusoids are defined for any :math:`p`.

learned = nn.Embedding(32, E)  # max_len = 32
try:
    learned(torch.arange(40))
except IndexError as error:
    print(type(error).__name__)
else:
    raise AssertionError("expected an IndexError")
assert sinusoidal_positions(1000, E).isfinite().all()

# %%
# Walkthrough 4's classifier without positions
# --------------------------------------------
#
# :class:`attnlens.classifier.SentimentClassifier` adds a learned position embedding to each
# token embedding. We train it as walkthrough 4 does, then remove its positions by setting the
# whole table to zero: the model is then exactly a model without positions, and the order of
# the tokens can no longer reach its ``[CLS]`` read-out. We compare the two on the held-out
# sentences, as written and read backwards.

from attnlens.classifier import train_classifier
from attnlens.datasets import encode_batch, make_sentiment_dataset

train, test = make_sentiment_dataset(2000, seed=0).split(0.2, seed=0)
result = train_classifier(train, test, seed=0)
model = result.model

ids, padding = encode_batch(result.vocab, test.tokens)  # (N, S)
backwards = [list(reversed(tokens)) for tokens in test.tokens]
ids_b, padding_b = encode_batch(result.vocab, backwards)


def logits_and_accuracy(ids, padding):
    with torch.inference_mode():
        logits = model(ids, padding)  # (N, 2)
    return logits, (logits.argmax(dim=-1) == test.labels).float().mean().item()


table = {}
_, table["positions"] = logits_and_accuracy(ids, padding)
_, table["positions, reversed"] = logits_and_accuracy(ids_b, padding_b)
learned_table = model.position.weight.detach().clone()  # (max_len + 1, E)
with torch.no_grad():
    model.position.weight.zero_()  # positions removed
logits, table["no positions"] = logits_and_accuracy(ids, padding)
logits_b, table["no positions, reversed"] = logits_and_accuracy(ids_b, padding_b)
with torch.no_grad():
    model.position.weight.copy_(learned_table)  # put them back
for name, value in table.items():
    print(f"accuracy[{name}] = {value:.3f}")

assert_close(logits_b, logits, atol=1e-4, rtol=1e-4)  # without positions, order cannot matter
assert table["positions"] >= 0.95
assert table["no positions"] >= 0.95
assert table["positions, reversed"] < table["positions"]  # with positions, order mattered

# %%
# The model hardly needs its positions: without them it still classifies the held-out sentences
# almost as well, and it then gives the same logits to a sentence read backwards (up to
# rounding). This task does not need word order. The label depends on *which* sentiment word
# occurs and *whether* a negation occurs, and a bag of tokens holds both facts. With its
# positions the model was free to use the order, and did, a little: reading the sentences
# backwards changes some of its answers. A task whose label depends on order (who bites whom)
# needs positions. To train a model that never had any, pass ``positions=False`` to
# :func:`attnlens.classifier.train_classifier`.
#
# What we saw
# -----------
#
# - Self-attention is permutation-equivariant: permute the tokens and the outputs and weights
#   are permuted the same way, nothing else changes.
# - Positional encodings break that symmetry. Sinusoids are fixed, defined for every position,
#   and their dot products depend only on distance; a learned table fits the task but stops at
#   its last row.
# - A model can only use order if its inputs carry it, and it only needs to if the task
#   depends on it.

# %%
# Exercises
# ---------
#
# **Exercise 1.** A causal mask is not permutation-equivariant. Show it: permute the tokens of
# :math:`X`, apply a causal mask, and check that the output is no longer the permuted output.
#
# .. attnlens-solution::

causal = torch.ones(L, L, dtype=torch.bool).triu(1)  # True = masked out (MHA)
with torch.no_grad():
    out_c, _ = mha(X, X, X, attn_mask=causal)
    out_c_p, _ = mha(X[:, perm], X[:, perm], X[:, perm], attn_mask=causal)
assert not torch.allclose(out_c_p, out_c[:, perm], atol=1e-3)
# The mask itself tells each query where it stands: query i sees i + 1 keys.

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Check that shifting every position by :math:`k` acts on each sine/cosine pair
# of the sinusoidal encoding as a rotation by the angle :math:`k\,\omega_i`, i.e. a linear map
# that does not depend on :math:`p`.
#
# .. attnlens-solution::

k = 3
omega = 10000.0 ** (-torch.arange(0, 32, 2) / 32)  # (E / 2,)
cos, sin = torch.cos(k * omega), torch.sin(k * omega)
s, c = pe[:-k, 0::2], pe[:-k, 1::2]  # (L - k, E / 2)
assert_close(pe[k:, 0::2], s * cos + c * sin, atol=1e-5, rtol=0)
assert_close(pe[k:, 1::2], c * cos - s * sin, atol=1e-5, rtol=0)

# %%
# .. attnlens-solution-end::
#
# **Exercise 3.** Mean pooling without positions cannot tell *dog bites man* from *man bites
# dog*. Does adding sinusoidal positions to the embeddings make the two mean-pooled outputs
# differ?
#
# .. attnlens-solution::

with torch.no_grad():
    a_pos, b_pos = a + pe_small[:3], b + pe_small[:3]
    pooled_a = mha(a_pos, a_pos, a_pos)[0].mean(dim=1)
    pooled_b = mha(b_pos, b_pos, b_pos)[0].mean(dim=1)
assert not torch.allclose(pooled_a, pooled_b, atol=1e-3)

# %%
# .. attnlens-solution-end::
