r"""
Seeing the heads of a Transformer-encoder text classifier
=========================================================

The first three walkthroughs opened up one attention layer with random weights. This one
trains a small model that does something, and then looks inside it.

The model is a sentiment classifier built from stock PyTorch layers: an
``nn.TransformerEncoder`` with a ``[CLS]`` token. PyTorch's encoder never returns its
attention weights, so we record them with :func:`attnlens.capture_attention`, which leaves the
model untouched, and we check that it does. Then we draw what the heads do: every head of a
layer for one sentence, in English and in Japanese; the row of ``[CLS]`` in every layer and
head; attention rollout; and an interactive view. The walkthrough ends with what these pictures
can and cannot tell us.
"""

# %%
# A toy sentiment task in two languages
# -------------------------------------
#
# :func:`attnlens.datasets.make_sentiment_dataset` generates short reviews from templates, in
# English and in Japanese, already split into tokens. No download is needed, and the same seed
# always gives the same sentences.
#
# The label is the polarity of the sentiment word (*good*, *boring*, 良い, 退屈...), reversed when
# the sentence is negated. Labels are balanced and about three sentences in ten are negated,
# independently of the label. The negation alone therefore says nothing about the label, and the
# sentiment word alone gives it only for the sentences that are not negated. To do better than
# that, the model has to combine two tokens that may be several positions apart. Intensifiers
# (*very*, とても) and openers (*honestly*, 正直) never change the label; they are distractors.
#
# The Japanese sentences are split by a simple rule of the generator, not by a morphological
# analyser: the adjective stem, its inflection and the negation are tokens of their own, so
# 良くなかった becomes 良 / く / なかった (MeCab with UniDic splits it as 良く / なかっ / た).
# With a negation the Japanese templates use あまり or それほど where English has *very*:
# あまり良くなかった, as a Japanese reader would say it.

import torch

import attnlens
from attnlens.classifier import train_classifier
from attnlens.datasets import encode_batch, make_sentiment_dataset

data = make_sentiment_dataset(2000, seed=0)
train, test = data.split(0.2, seed=0)
print(data)
print(f"len(train) = {len(train)}, len(test) = {len(test)}")
for example in data[:6]:
    print(f"{example.label}  {example.language}  {' '.join(example.tokens)}")

# The best any model can do that reads the sentiment word and ignores the negation:
word_only = sum(not example.negated for example in test) / len(test)
print(f"word_only = {word_only:.1%}")

# %%
# A classifier from stock PyTorch layers
# --------------------------------------
#
# :class:`attnlens.classifier.SentimentClassifier` is deliberately ordinary. It prepends a
# ``[CLS]`` token to every sentence, adds a learned position embedding to each token embedding,
# runs a stock ``nn.TransformerEncoder`` and classifies the sentence from the output vector of
# ``[CLS]`` alone. Nothing in it exposes attention weights.
#
# :func:`attnlens.classifier.train_classifier` trains it with Adam. The model is tiny, so this
# takes a few seconds on a laptop CPU.

result = train_classifier(train, test, seed=0)
model, vocab = result.model, result.vocab
print(model)
print(f"seconds = {result.seconds:.1f}")
print(f"train_accuracy = {result.train_accuracy:.3f}, test_accuracy = {result.test_accuracy:.3f}")
assert result.test_accuracy is not None
assert result.test_accuracy >= 0.95
assert result.test_accuracy > word_only + 0.2  # so it reads the negation too

# %%
# The encoder sees :math:`L = S + 1` positions per sentence of :math:`S` tokens, ``[CLS]``
# first. Each of its layers has one ``nn.MultiheadAttention``, named as in
# ``model.named_modules()``.

layer_names = [
    name
    for name, module in model.named_modules()
    if isinstance(module, torch.nn.MultiheadAttention)
]
n_layers, n_heads = len(layer_names), model.encoder.layers[0].self_attn.num_heads
print(f"layer_names = {layer_names}, n_heads = {n_heads}")

# %%
# Capturing every head without changing the model
# -----------------------------------------------
#
# We run the whole held-out set through the model twice: once as it is, once inside
# :func:`attnlens.capture_attention`. The model is in evaluation mode and runs without autograd,
# which is exactly the case where each ``nn.TransformerEncoderLayer`` takes its fused fast path:
# one native function computes the whole layer and the attention module itself is never called.
# A forward hook on the attention module would not get the weights either: registering it turns
# that layer's fast path off, so the module does run, but the layer calls it with
# ``need_weights=False`` and the hook sees ``None`` in place of the weights (the cell after the
# next one checks it; see also :doc:`/concepts/pitfalls`). The capture does not change the path
# the model takes: it computes the weights beside the model, from the input each layer receives
# and the layer's own parameters.
#
# "Does not change the model" is a claim we can check: the logits must be bit for bit the same.

ids, padding = encode_batch(vocab, test.tokens)  # (N, S), True at padding
with torch.inference_mode():
    reference = model(ids, padding)  # (N, 2)
    with attnlens.capture_attention(model) as cap:
        captured = model(ids, padding)  # (N, 2)

assert torch.equal(captured, reference)
print(f"torch.equal(captured, reference) = {torch.equal(captured, reference)}")
for name, weights in cap.weights.items():
    print(name, tuple(weights.shape), "(N, H, L, S)")

# %%
# The plain hook, for comparison: it fires (the hooked layer leaves its fast path), and the
# weights it sees are ``None``.

seen = []
hook = model.encoder.layers[0].self_attn.register_forward_hook(
    lambda _module, _args, output: seen.append(output[1])  # (attn_output, weights)
)
with torch.inference_mode():
    model(ids[:4], padding[:4])
hook.remove()
print(f"hook_weights = {seen}")
assert seen == [None]

# %%
# In every sentence, every head and every layer, the row of a real token is a probability
# distribution over the keys, and the padded keys get weight zero, as the padding mask asks.

lengths = (~padding).sum(dim=1) + 1  # real positions per sentence, [CLS] included
is_pad = torch.arange(ids.shape[1] + 1) >= lengths[:, None]  # (N, L): padding, [CLS] first
for name in layer_names:
    weights = cap.weights[name]  # (N, H, L, S)
    row_sums = weights.sum(dim=-1)  # (N, H, L)
    real_rows = ~is_pad[:, None, :].expand_as(row_sums)
    torch.testing.assert_close(row_sums[real_rows], torch.ones(int(real_rows.sum())))
    assert torch.all(weights[is_pad[:, None, None, :].expand_as(weights)] == 0)

# %%
# Two sentences to look at
# ------------------------
#
# Pictures are easier to read for sentences we chose. Both of these negate a positive word, so
# both are negative, and an intensifier stands between the negation and the sentiment word. A
# model that ignored the negation would call them positive.

english = ["the", "movie", "was", "not", "very", "good"]
japanese = ["この", "映画", "は", "あまり", "良", "く", "なかった"]

ids2, padding2 = encode_batch(vocab, [english, japanese])  # (2, S)
with torch.inference_mode(), attnlens.capture_attention(model) as cap2:
    logits2 = model(ids2, padding2)  # (2, 2)
probabilities = logits2.softmax(dim=-1)
print(f"P(label = 1) = {probabilities[:, 1]}")
assert logits2.argmax(dim=-1).tolist() == [0, 0]  # both negative, as they should be


def per_layer(capture, index, tokens):
    """(H, L, L) weights of every layer for sentence ``index``, padding cut off."""
    n = len(tokens) + 1  # [CLS] + tokens
    return [capture.weights[name][index, :, :n, :n] for name in layer_names]


tokens_en = ["[CLS]", *english]
tokens_ja = ["[CLS]", *japanese]
layers_en = per_layer(cap2, 0, english)  # n_layers x (H, L, L)
layers_ja = per_layer(cap2, 1, japanese)

# %%
# Every head of the first layer, English sentence
# -----------------------------------------------
#
# :func:`attnlens.plot_heads` draws one map per head, all on the same colour scale. Row
# :math:`i` is the query at position :math:`i`, column :math:`j` the key at position :math:`j`:
# a bright cell means that, in this head, the output at position :math:`i` takes much of its
# mixture from the value vector at position :math:`j`. Every row sums to 1.
#
# The heads differ: some send most queries to one token, others spread their weight. The
# printout names, for each head, the key that receives the most weight on average over the
# queries. These patterns are what four heads learned for this task with this seed, not general
# facts about attention.

fig = attnlens.plot_heads(layers_en[0], tokens_en)
received = layers_en[0].mean(dim=1)  # (H, S): average weight each key receives
for h in range(n_heads):
    print(f"h{h + 1}: argmax = {tokens_en[int(received[h].argmax())]!r}")

# %%
# The same layer, Japanese sentence
# ---------------------------------
#
# The model is the same and shares one vocabulary between the two languages. The Japanese
# tokens are drawn with the CJK font that :mod:`attnlens.fonts` installs, so they appear as
# glyphs rather than empty boxes.

fig = attnlens.plot_heads(layers_ja[0], tokens_ja)

# %%
# The Japanese templates hold a trap for the eye. The token く appears only in front of a
# negation (良くない, 良くなかった), so a head that reads く learns as much about the negation as one
# that reads ない or なかった. If a head of this model prefers く, it is not wrong: which of two
# equally informative tokens a head picks says nothing about which one a human would call the
# reason. The data set check below confirms that く never occurs in a sentence without negation.

assert all(example.negated for example in data if "く" in example.tokens)

# %%
# The row of [CLS] in every layer and head
# ----------------------------------------
#
# The classifier reads only the last layer's output at ``[CLS]``. In the last layer, therefore,
# only the attention *from* ``[CLS]`` reaches the prediction directly; the other rows of that
# layer compute vectors nobody reads. :func:`attnlens.plot_layers` with ``query_index=0`` draws
# that one row for every head of every layer, one panel per layer.
#
# In earlier layers every row matters, because the vectors of all positions are passed on to the
# next layer.

fig = attnlens.plot_layers(layers_en, tokens_en, query_index=0)

# %%
# And for the Japanese sentence:

fig = attnlens.plot_layers(layers_ja, tokens_ja, query_index=0)

# %%
# Many sentences, not one
# -----------------------
#
# One sentence proves little. Over every negated sentence of the held-out set, we measure how
# much weight ``[CLS]`` puts on the negation token and on the sentiment word, in each head of
# each layer, relative to uniform attention (:math:`1/L` for a sentence of :math:`L` positions).
# A ratio of 1 means "no more than chance"; we print the ratio averaged over the sentences.
#
# The weights come from the capture of the whole held-out set above.

negated = [b for b, example in enumerate(test) if example.negated]
rows = torch.arange(len(negated))
neg_pos = torch.tensor([test[b].negation_index + 1 for b in negated])  # +1 for [CLS]
sent_pos = torch.tensor([test[b].sentiment_index + 1 for b in negated])
uniform = 1.0 / lengths[negated].to(torch.float32)  # (n,)

ratios = {}
for name in layer_names:
    cls_rows = cap.weights[name][negated, :, 0, :]  # (n, H, S): the [CLS] rows
    ratios[name, "negation"] = (cls_rows[rows, :, neg_pos] / uniform[:, None]).mean(dim=0)
    ratios[name, "sentiment"] = (cls_rows[rows, :, sent_pos] / uniform[:, None]).mean(dim=0)

print(f"len(negated) = {len(negated)}")
print(
    f"  {'layer':24s} {'target':9s}", "  ".join(f"{'h' + str(h + 1):>5s}" for h in range(n_heads))
)
for (name, target), ratio in ratios.items():
    print(f"  {name:24s} {target:9s}", "  ".join(f"{r:5.2f}" for r in ratio.tolist()))
best = max(float(r.max()) for r in ratios.values())
assert best > 2.0  # some head clearly singles these tokens out

# %%
# Attention rollout
# -----------------
#
# A map of one layer shows how that layer mixes the vectors it receives. But after the first
# layer, the vector at position :math:`j` is no longer the token at position :math:`j`: it is
# already a mixture of the whole sentence. Attention rollout (Abnar and Zuidema, 2020) follows
# the mixing back to the input. For each layer it averages the heads, adds the identity for the
# residual connection and renormalises the rows, :math:`\tilde A_\ell = (\bar A_\ell + I)/2`,
# then multiplies the layers: :math:`R = \tilde A_2 \tilde A_1`.
#
# The figure compares three rows for ``[CLS]``: the head average :math:`\bar A_1` of layer 1
# (row :math:`\ell_1`), the head average :math:`\bar A_2` of layer 2 (row :math:`\ell_2`),
# and the rollout (row :math:`R`). Because each layer keeps half of every row on the position
# itself, the rollout of two layers keeps at least a quarter of the row of ``[CLS]`` on
# ``[CLS]``, whatever the heads do.

rollout = attnlens.attention_rollout(layers_en)  # (L, L)
mean_rows = [w.mean(dim=0)[0] for w in layers_en]  # head-averaged [CLS] rows, (L,) each
rows_to_draw = torch.stack([*mean_rows, rollout[0]])  # (n_layers + 1, L)

by_hand = torch.eye(len(tokens_en))
for w in layers_en:
    step = (w.mean(dim=0) + torch.eye(len(tokens_en))) / 2
    by_hand = step @ by_hand
torch.testing.assert_close(rollout, by_hand)
torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(len(tokens_en)))
assert rollout[0, 0] >= 0.5**n_layers

labels = [f"ℓ{chr(0x2081 + k)}" for k in range(n_layers)] + ["R"]  # ℓ₁, ℓ₂, R
fig = attnlens.plot_attention(rows_to_draw, labels, tokens_en, annotate=True)

# %%
# An interactive head view
# ------------------------
#
# :func:`attnlens.head_view_html` builds a small self-contained web page: point at a token on the
# left to see where each head attends from it, tick the boxes to choose heads, and pick the
# layer from the menu. It needs no network connection. In a notebook, or here, it displays
# itself; ``.save("view.html")`` writes it to a file.

attnlens.head_view_html(layers_en, tokens_en)

# %%
# Checking with an intervention
# -----------------------------
#
# The maps suggest where the model looks; they do not show that what it looks at matters. That
# needs an intervention: change the input and watch the prediction. Removing the negation should
# turn the English sentence positive, and so should replacing *good* by *bad*; removing the
# negation from the Japanese sentence (あまり良くなかった becomes とても良かった, as あまり goes
# only with a negation) should turn it positive too.

variants = [
    english,
    ["the", "movie", "was", "very", "good"],  # negation removed
    ["the", "movie", "was", "not", "very", "bad"],  # sentiment word flipped
    ["この", "映画", "は", "とても", "良", "かった"],  # Japanese, negation removed
]
ids3, padding3 = encode_batch(vocab, variants)
with torch.inference_mode():
    predicted = model(ids3, padding3).argmax(dim=-1)  # (4,)
for tokens, label in zip(variants, predicted.tolist(), strict=True):
    print(label, " ".join(tokens))
assert predicted.tolist() == [0, 1, 1, 1]

# %%
# What the maps show, and what they do not
# ----------------------------------------
#
# - :func:`attnlens.capture_attention` recorded every head of a stock ``nn.TransformerEncoder``
#   and the model's logits stayed bit for bit the same.
# - An attention weight is the share of one value vector in one head's output at one position.
#   The maps show these shares, for one layer at a time.
# - They do not show how long the value vectors are, what the output projection does with each
#   head, the residual connection that carries every token's own vector around the attention,
#   or the feed-forward blocks. Two heads with identical maps can move entirely different
#   information.
# - A high weight is therefore a hypothesis about what matters, not an explanation of the
#   prediction. The research on this question (Jain and Wallace, 2019; Wiegreffe and Pinter,
#   2019; Abnar and Zuidema, 2020) and a checklist for reading maps are collected in
#   :doc:`/concepts/reading-attention-maps`.
# - Look at many inputs, compare with uniform attention, and test what a map suggests by
#   changing the input, as the last section did.

# %%
# Every head at once: the model view
# ----------------------------------
#
# :func:`attnlens.model_view_html` draws every head of every layer as a small thumbnail, one
# row per layer and one column per head, here for the Japanese sentence. Click a thumbnail, or
# press Enter on it, to enlarge it with its tokens. Like the head view, it needs no network.

model_view = attnlens.model_view_html(layers_ja, tokens_ja)
assert model_view.shape == (n_layers, n_heads, len(tokens_ja), len(tokens_ja))
model_view

# %%
# Exercises
# ---------
#
# **Exercise 1.** Padding must not change a sentence's prediction. Classify the English sentence
# alone and in a batch with a much longer sentence (so that it gets padded), and compare the
# logits.
#
# .. attnlens-solution::

long_sentence = ["honestly", "the", "movie", "was", "not", "very", "good", "at", "all"]
long_sentence = [token for token in long_sentence if token in vocab]
ids_alone, padding_alone = encode_batch(vocab, [english])
ids_both, padding_both = encode_batch(vocab, [english, long_sentence])
assert padding_both[0].any()  # the short sentence is padded in the batch
with torch.inference_mode():
    alone = model(ids_alone, padding_alone)  # (1, 2)
    in_batch = model(ids_both, padding_both)[:1]
torch.testing.assert_close(in_batch, alone, atol=1e-5, rtol=1e-5)

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Find the layer and head whose ``[CLS]`` row puts the most weight on the
# negation, relative to uniform attention, over the negated held-out sentences. Heads are
# numbered from 1, as in the figures.
#
# .. attnlens-solution::

(layer_name, _), ratio = max(
    ((key, r) for key, r in ratios.items() if key[1] == "negation"),
    key=lambda item: float(item[1].max()),
)
head = int(ratio.argmax()) + 1  # head 1 .. H
print(f"{layer_name} h{head}: {float(ratio.max()):.2f}")
assert float(ratio.max()) > 1.0

# %%
# .. attnlens-solution-end::
#
# **Exercise 3.** Rollout keeps at least :math:`(1/2)^{\text{layers}}` of the ``[CLS]`` row on
# ``[CLS]``. Check that bound on every held-out sentence, from the capture of the whole set.
#
# .. attnlens-solution::

for b in range(len(test)):
    n = int(lengths[b])  # real positions of sentence b, [CLS] included
    maps = [cap.weights[name][b, :, :n, :n] for name in layer_names]  # (H, n, n) each
    assert attnlens.attention_rollout(maps)[0, 0] >= 0.5**n_layers

# %%
# .. attnlens-solution-end::
