r"""
Cross-attention in an encoder–decoder
=====================================

In self-attention the queries, keys and values come from one sequence. In *cross-attention*
the queries come from the decoder and the keys and values from the encoder's output, so the
map is :math:`L \times S` with :math:`L` target positions and :math:`S` source positions, and
:math:`L \neq S` in general. This walkthrough trains a stock ``nn.Transformer`` in a few seconds
to reverse a sequence of digits, captures every decoder layer's cross-attention with
:func:`attnlens.capture_attention`, and checks that the map is what reversal needs: the
anti-diagonal.
"""

# %%
# The task: reverse a sequence
# ----------------------------
#
# The source is :math:`S = 6` random digits. The target is the same digits in reverse order,
# followed by an end token. The decoder reads the target shifted right by one (a start token
# first), so it sees :math:`L = 7` positions, and a causal mask stops each position from seeing
# the ones after it. To write output :math:`t` the decoder has to find source position
# :math:`S - 1 - t`: the alignment is the anti-diagonal.

import time

import torch
from torch import nn

import attnlens
from attnlens.positions import sinusoidal_positions

S, DIGITS = 6, 10
BOS, EOS = DIGITS, DIGITS + 1  # token ids 0-9 are digits
L = S + 1


def make_batch(n, generator):
    """Source (n, S), decoder input (n, L) and target (n, L) of the reversal task."""
    source = torch.randint(0, DIGITS, (n, S), generator=generator)  # (N, S)
    target = torch.cat([source.flip(1), torch.full((n, 1), EOS)], dim=1)  # (N, L)
    decoder_in = torch.cat([torch.full((n, 1), BOS), target[:, :-1]], dim=1)  # (N, L)
    return source, decoder_in, target


source, decoder_in, target = make_batch(1, torch.Generator().manual_seed(1))
print(f"source     = {source[0].tolist()}")
print(f"decoder_in = {decoder_in[0].tolist()}")
print(f"target     = {target[0].tolist()}")

# %%
# A stock nn.Transformer
# ----------------------
#
# Token embeddings plus the sinusoidal positions of walkthrough 9 (reversal is all about
# position, so the model must see it), one encoder layer, two decoder layers, two heads of
# :math:`D = 16`, and a linear read-out to the 12 tokens. Everything else is
# ``nn.Transformer`` as PyTorch ships it.


class Reverser(nn.Module):
    def __init__(self, d_model=32, nhead=2):
        super().__init__()
        self.embed = nn.Embedding(DIGITS + 2, d_model)
        self.register_buffer("pe", sinusoidal_positions(16, d_model))
        self.transformer = nn.Transformer(
            d_model,
            nhead,
            num_encoder_layers=1,
            num_decoder_layers=2,
            dim_feedforward=64,
            dropout=0.0,
            batch_first=True,
        )
        self.out = nn.Linear(d_model, DIGITS + 2)

    def forward(self, source, decoder_in):
        src = self.embed(source) + self.pe[: source.shape[1]]  # (N, S, E)
        tgt = self.embed(decoder_in) + self.pe[: decoder_in.shape[1]]  # (N, L, E)
        causal = nn.Transformer.generate_square_subsequent_mask(decoder_in.shape[1])
        hidden = self.transformer(src, tgt, tgt_mask=causal, tgt_is_causal=True)  # (N, L, E)
        return self.out(hidden)  # (N, L, tokens)


torch.manual_seed(0)
model = Reverser()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
generator = torch.Generator().manual_seed(0)
start = time.perf_counter()
for _ in range(400):
    source, decoder_in, target = make_batch(64, generator)
    logits = model(source, decoder_in)  # (N, L, tokens)
    loss = nn.functional.cross_entropy(logits.reshape(-1, DIGITS + 2), target.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
model.eval()
print(f"loss = {loss.item():.4f}, {time.perf_counter() - start:.1f} s")

# %%
# Greedy decoding
# ---------------
#
# At inference the decoder writes one token at a time, feeding each prediction back in. On
# 500 new sequences, the reversed sequence comes out exactly.


def greedy(model, source):
    decoded = torch.full((source.shape[0], 1), BOS)  # (N, 1)
    for _ in range(L):
        logits = model(source, decoded)  # (N, t, tokens)
        decoded = torch.cat([decoded, logits[:, -1:].argmax(dim=-1)], dim=1)
    return decoded[:, 1:]  # (N, L)


test_source, test_in, test_target = make_batch(500, torch.Generator().manual_seed(123))
with torch.inference_mode():
    decoded = greedy(model, test_source)
exact = (decoded == test_target).all(dim=1).float().mean().item()
print(f"exact = {exact:.3f}")
assert exact >= 0.98

# %%
# Capturing every decoder layer's cross-attention
# ------------------------------------------------
#
# Each ``nn.TransformerDecoderLayer`` has two attention modules: ``self_attn`` (causal
# self-attention over the target, :math:`L \times L`) and ``multihead_attn`` (cross-attention,
# queries from the target, keys and values from the encoder's output ``memory``,
# :math:`L \times S`). Neither returns its weights to the decoder.
# :func:`attnlens.capture_attention` records all of them, and the logits do not change.

with torch.inference_mode():
    reference = model(test_source, test_in)
    with attnlens.capture_attention(model) as cap:
        captured = model(test_source, test_in)
assert torch.equal(captured, reference)
for name, weights in cap.weights.items():
    print(name, tuple(weights.shape))

cross_names = [name for name in cap.weights if name.endswith("multihead_attn")]
assert cross_names == [
    "transformer.decoder.layers.0.multihead_attn",
    "transformer.decoder.layers.1.multihead_attn",
]
for name in cross_names:
    assert cap.weights[name].shape == (500, 2, L, S)  # (N, H, L, S): L = 7 != S = 6

# %%
# The alignment map is the anti-diagonal
# --------------------------------------
#
# Averaged over the 500 sequences, each map shows where each target position looks in the
# source. For reversal, target position :math:`t < S` should look at source position
# :math:`S - 1 - t`. We assert it in the layer and head that put the most weight on the
# anti-diagonal: there, every row's largest weight sits on it. The last row (the end token)
# needs no particular source position.

anti = torch.arange(S - 1, -1, -1)  # source position for target t = 0 .. S-1
mean_maps = {name: cap.weights[name].mean(dim=0) for name in cross_names}  # (H, L, S) each
on_anti = {
    (name, h): maps[h, torch.arange(S), anti].mean().item()
    for name, maps in mean_maps.items()
    for h in range(maps.shape[0])
}
for (name, h), share in on_anti.items():
    print(f"anti_diagonal_weight[{name}, h{h + 1}] = {share:.2f}")
best_name, best_h = max(on_anti, key=on_anti.get)
best = mean_maps[best_name][best_h]  # (L, S)
assert torch.equal(best[:S].argmax(dim=1), anti)
assert on_anti[best_name, best_h] > 0.5

source_labels = [f"s{j}" for j in range(S)]
target_labels = [f"t{t}" for t in range(L)]
fig = attnlens.plot_heads(mean_maps[best_name], target_labels, source_labels)

# %%
# One sequence, read token by token: the query labels are the tokens the decoder writes at
# each position, the key labels the source digits.

one = cap.weights[best_name][0, best_h]  # (L, S)
written = [str(t) for t in test_target[0, :S].tolist()] + ["EOS"]
fig = attnlens.plot_attention(one, written, [str(t) for t in test_source[0].tolist()])
assert torch.equal(one[:S].argmax(dim=1), anti)

# %%
# What we saw
# -----------
#
# - In cross-attention the queries come from one sequence and the keys and values from another:
#   the weights are :math:`(N, H, L, S)` with :math:`L \neq S`.
# - :func:`attnlens.capture_attention` records the self-attention and the cross-attention of
#   every layer of a stock ``nn.Transformer`` without changing its output.
# - For a task with a known alignment, the cross-attention map shows it: here, reversal, the
#   anti-diagonal, asserted row by row.

# %%
# Exercises
# ---------
#
# **Exercise 1.** The encoder output ``memory`` is computed once per source. Check that the
# cross-attention of the first decoder layer can be recomputed by hand from it: call
# ``multihead_attn`` directly with the decoder layer's first-block output as query and
# ``memory`` as key and value.
#
# .. attnlens-solution::

with torch.inference_mode():
    transformer = model.transformer
    src = model.embed(test_source[:4]) + model.pe[:S]  # (N, S, E)
    tgt = model.embed(test_in[:4]) + model.pe[:L]  # (N, L, E)
    memory = transformer.encoder(src)  # (N, S, E)
    layer = transformer.decoder.layers[0]
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    x = layer.norm1(tgt + layer._sa_block(tgt, causal, None, is_causal=True))  # post-norm
    _, by_hand = layer.multihead_attn(x, memory, memory, average_attn_weights=False)
torch.testing.assert_close(by_hand, cap.weights[cross_names[0]][:4])

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** The decoder's self-attention is causal. Check that no captured
# ``self_attn`` weight of the decoder lies above the diagonal.
#
# .. attnlens-solution::

for name, weights in cap.weights.items():
    if name.startswith("transformer.decoder") and name.endswith("self_attn"):
        above = torch.ones(L, L, dtype=torch.bool).triu(1)
        assert torch.all(weights[..., above] == 0)

# %%
# .. attnlens-solution-end::
#
# **Exercise 3.** Sort the captured maps by shape: which modules give :math:`S \times S` maps,
# which :math:`L \times L`, which :math:`L \times S`? Check that every row of every map sums
# to 1.
#
# .. attnlens-solution::

shapes = {name: tuple(weights.shape[-2:]) for name, weights in cap.weights.items()}
assert shapes["transformer.encoder.layers.0.self_attn"] == (S, S)  # encoder: source to source
assert shapes["transformer.decoder.layers.0.self_attn"] == (L, L)  # decoder: target to target
assert shapes["transformer.decoder.layers.0.multihead_attn"] == (L, S)  # target to source
for weights in cap.weights.values():
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[:-1]))

# %%
# .. attnlens-solution-end::
