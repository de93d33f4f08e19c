r"""
Capturing attention from any model: GPT-style code and Hugging Face
====================================================================

Walkthrough 4 captured the heads of a stock ``nn.TransformerEncoder``. Most models that
people study are not built from ``nn.MultiheadAttention``: nanoGPT, Hugging Face models and
timm's vision transformers compute attention with
:func:`torch.nn.functional.scaled_dot_product_attention` (SDPA), a fused kernel that returns
the output and never the weights. Hugging Face's own ``output_attentions=True`` returns an
empty tuple in that mode.

:func:`attnlens.capture_attention` records those calls too. It lets the kernel compute the
output and computes the weights beside it, from the very query and key the kernel received.
This walkthrough captures a GPT-style model written the way nanoGPT writes it, then a
Hugging Face BERT, and checks every claim against an independent computation.
"""

# %%
# A GPT-style model that calls the fused kernel
# ---------------------------------------------
#
# The attention block below is nanoGPT's: one ``Linear`` makes q, k and v, the heads are
# split with ``view`` and ``transpose``, and ``F.scaled_dot_product_attention`` does the
# rest with a causal mask. There is no ``nn.MultiheadAttention`` anywhere, and no place
# where the weights exist as a tensor.

import copy

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

import attnlens


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(dim, 3 * dim)  # [W_Q; W_K; W_V], as in_proj_weight
        self.c_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.c_attn(x).split(dim, dim=2)  # 3 x (N, L, E)
        q = q.view(n, length, self.heads, -1).transpose(1, 2)  # (N, H, L, D)
        k = k.view(n, length, self.heads, -1).transpose(1, 2)  # (N, H, L, D)
        v = v.view(n, length, self.heads, -1).transpose(1, 2)  # (N, H, L, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (N, H, L, D)
        y = y.transpose(1, 2).reshape(n, length, dim)  # (N, L, E)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 64, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(32, dim)
        self.h = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))  # (N, L, E)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (N, L, vocab)


torch.manual_seed(0)
gpt = TinyGPT().eval()
idx = torch.randint(0, 64, (2, 8))  # (N, L)

with torch.no_grad():
    expected = gpt(idx)
    with attnlens.capture_attention(gpt) as cap:
        logits = gpt(idx)

print("torch.equal(logits, expected) =", torch.equal(logits, expected))
print("cap.names =", cap.names)
for name, weights in cap.calls:
    print(name, tuple(weights.shape), "(N, H, L, S)")
assert torch.equal(logits, expected)
assert cap.names == ("h.0.attn", "h.1.attn")

# %%
# Each record is named after the innermost module whose ``forward`` called the kernel, as
# in ``gpt.named_modules()``: here the ``CausalSelfAttention`` of each block. The model's
# logits are identical bit for bit: the kernel ran exactly as before.
#
# Are these the weights the kernel used? The kernel's output is ``weights @ v``. We rebuild
# q, k and v of the second block from its own ``c_attn`` layer, independently of attnlens,
# and compare both the weights (with a causal softmax written out by hand, in float64) and
# the kernel's output.

block = gpt.h[1]
with torch.no_grad():
    x = gpt.wte(idx) + gpt.wpe(torch.arange(8))  # (N, L, E)
    x = block.ln_1(gpt.h[0](x))  # the input of h.1.attn
    q, k, v = block.attn.c_attn(x).split(32, dim=2)  # 3 x (N, L, E)
    q, k, v = (t.view(2, 8, 4, 8).transpose(1, 2) for t in (q, k, v))  # 3 x (N, H, L, D)
    scores = (q.double() @ k.double().transpose(-2, -1)) / 8**0.5  # (N, H, L, S)
    future = torch.ones(8, 8, dtype=torch.bool).triu(1)  # (L, S): keys after the query
    by_hand = scores.masked_fill(future, float("-inf")).softmax(dim=-1)  # (N, H, L, S)

captured = cap.weights["h.1.attn"]
difference = (captured.double() - by_hand).abs().max().item()
print(f"max |captured - float64 by hand| = {difference:.1e}")
kernel = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (N, H, L, D)
torch.testing.assert_close(captured @ v, kernel)
assert difference < 1e-6
assert bool((captured[..., future] == 0).all())  # causal: no weight on the future

# %%
# The causal mask shows as a lower triangle in every head:

tokens = [f"t{i}" for i in range(8)]
fig = attnlens.plot_heads(cap.weights["h.1.attn"][0], tokens, title="h.1.attn")
plt.show()

# %%
# How the calls are seen
# ----------------------
#
# ``nn.MultiheadAttention`` is a module, and attnlens can look at its inputs. SDPA is a
# function: the model may call it as ``F.scaled_dot_product_attention``, or through a name
# imported once with ``from torch.nn.functional import scaled_dot_product_attention``, which
# no attribute patching would ever reach. attnlens sees the call itself, with a
# :class:`torch.overrides.TorchFunctionMode` (:class:`attnlens.capture_sdpa.SDPACallMode`)
# that is active on a thread only while the captured model runs there.
#
# Such a mode has a side effect worth knowing: while any mode is active, torch considers
# every tensor to "have a torch function", and ``nn.TransformerEncoderLayer`` then silently
# leaves its fused fast path. So the capture suspends its mode while ``nn.MultiheadAttention``
# and the stock ``nn.Transformer*`` layers run; their outputs stay bit-identical too. The
# weights of one call come from :func:`attnlens.capture_sdpa.sdpa_weights`, which follows
# SDPA's rules for masks, ``is_causal``, ``scale`` and grouped-query attention
# (:func:`attnlens.sdpa_weights` is the same function):

q1, k1 = torch.randn(1, 2, 1, 4), torch.randn(1, 2, 5, 4)  # one new query, five cached keys
step = attnlens.sdpa_weights(q1, k1, is_causal=True)  # (N, H, 1, S)
print("is_causal, L = 1, S = 5:", step[0, 0])
assert torch.equal(step[0, 0, 0], torch.tensor([1.0, 0, 0, 0, 0]))

# %%
# With ``is_causal=True`` and L ≠ S, SDPA aligns the causal mask at the top left: the single
# new query sees only the *first* key, not the whole cache. That is SDPA's documented rule,
# and the recorded weights follow it; a decoder with a KV cache passes an explicit mask (or
# ``is_causal=False``) for that step.
#
# A Hugging Face model, eager or sdpa
# -----------------------------------
#
# Hugging Face models route every attention computation through a registry of attention
# functions (``"eager"``, ``"sdpa"``, ...); ``"sdpa"`` is the default. We build a small BERT
# from a config (no download) twice, with the same weights: once in sdpa mode and once in
# eager mode, where Hugging Face computes the weights itself. This section needs
# ``transformers``; in a downloaded notebook, this cell installs it:
#
# .. code-block:: ipython
#
#    %%capture
#    %pip install transformers

import transformers

config = transformers.BertConfig(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=32,
)
torch.manual_seed(0)
bert = transformers.BertModel._from_config(copy.deepcopy(config), attn_implementation="sdpa")
eager = transformers.BertModel._from_config(copy.deepcopy(config), attn_implementation="eager")
eager.load_state_dict(bert.state_dict())
bert, eager = bert.eval(), eager.eval()

input_ids = torch.randint(0, 64, (2, 7))
attention_mask = torch.ones(2, 7, dtype=torch.long)
attention_mask[1, 5:] = 0  # the second sentence has 5 tokens and 2 of padding

with torch.no_grad():
    plain = bert(input_ids, attention_mask=attention_mask, output_attentions=True)
    reference = eager(input_ids, attention_mask=attention_mask, output_attentions=True)
    with attnlens.capture_attention(bert) as cap:
        outputs = bert(input_ids, attention_mask=attention_mask, output_attentions=True)

print("len(plain.attentions) =", len(plain.attentions))
print("len(outputs.attentions) =", len(outputs.attentions))
print("cap.names =", cap.names)
assert plain.attentions == ()  # Hugging Face's sdpa mode returns no weights
assert torch.equal(outputs.last_hidden_state, plain.last_hidden_state)

# %%
# Without attnlens, ``output_attentions=True`` in sdpa mode gives an empty tuple (and a log
# line). Inside the capture the kernel still computes the outputs, which are unchanged, and
# the weights computed beside it fill ``outputs.attentions``, so tools that read it, such
# as BertViz, work unchanged. They equal what the eager model computes, on every query row
# that is not padding (a padding row's weights mean nothing and differ between the two
# implementations):

real = attention_mask.bool()  # (N, L): the query rows that are not padding
for layer, (mine, theirs) in enumerate(zip(outputs.attentions, reference.attentions, strict=True)):
    gap = (mine - theirs).transpose(1, 2)[real].abs().max().item()  # (rows, H, S)
    print(f"layer {layer}: max |sdpa + attnlens - eager| = {gap:.1e}")
    assert gap < 1e-6
    assert torch.equal(mine, cap.weights[f"encoder.layer.{layer}.attention.self"])

fig = attnlens.plot_heads(
    cap.weights["encoder.layer.1.attention.self"][1, :, :5, :5],
    [f"w{i}" for i in range(5)],
    title="encoder.layer.1.attention.self",
)
plt.show()

# %%
# What capture promises
# ---------------------
#
# The model's outputs are bit-identical to the uncaptured run, and every module returns what
# it returned before (the one deliberate exception is the ``output_attentions=True`` above).
# Nothing is left on the model afterwards, also after an exception or when two captures are
# closed in another order; a copy or a ``torch.save`` made inside the block is a clean
# model; calls from several threads are each recorded with their own inputs. A model
# compiled with ``torch.compile`` is refused with an error that says what to capture
# instead, and attention written out by hand outside Hugging Face (for example timm with
# fused attention turned off) cannot be seen. The Notes of :func:`attnlens.capture_attention`
# list every promise and every refused case in one place.
#
# Where to go next
# ----------------
#
# The same ``cap.weights`` feed every drawing function of attnlens: :func:`attnlens.plot_layers`
# for all layers × heads, :func:`attnlens.head_view_html` for an interactive view and
# :func:`attnlens.attention_rollout` across layers. Walkthrough 7 uses them on a real
# pretrained model.

# %%
# Exercises
# ---------
#
# **Exercise 1.** Generate three tokens greedily with the GPT-style model, inside one capture
# that selects only the first block's attention (``modules="h.0.*"``) and keeps only the most
# recent call of each module (``keep_calls=False``). What shape do the weights have at the end?
#
# .. attnlens-solution::

sequence = idx[:1]  # (1, L)
first_block = attnlens.capture_attention(gpt, modules="h.0.*", keep_calls=False)
with torch.no_grad(), first_block as latest:
    for _ in range(3):
        next_token = gpt(sequence)[:, -1].argmax(dim=-1, keepdim=True)  # (1, 1)
        sequence = torch.cat([sequence, next_token], dim=1)  # (1, L + 1)
print("latest.names =", latest.names)
print("shape =", tuple(latest.weights["h.0.attn"].shape))
assert latest.names == ("h.0.attn",)
assert latest.weights["h.0.attn"].shape == (1, 4, 10, 10)  # the third call saw 10 tokens

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** In grouped-query attention four query heads share two key and value heads
# (``enable_gqa=True``): query heads 1 and 2 use key head 1, query heads 3 and 4 key head 2.
# Check it on :func:`attnlens.sdpa_weights`, and check that the weights times the shared
# values give SDPA's output.
#
# .. attnlens-solution::

q4 = torch.randn(1, 4, 3, 8)  # (N, H_q, L, D)
k2, v2 = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)  # (N, H_kv, S, D)
grouped = attnlens.sdpa_weights(q4, k2, enable_gqa=True)  # (N, H_q, L, S)
torch.testing.assert_close(grouped[:, :2], attnlens.sdpa_weights(q4[:, :2], k2[:, [0, 0]]))
torch.testing.assert_close(grouped[:, 2:], attnlens.sdpa_weights(q4[:, 2:], k2[:, [1, 1]]))
shared = v2.repeat_interleave(2, dim=1)  # (N, H_q, S, D): value head h // 2 for query head h
kernel_out = F.scaled_dot_product_attention(q4, k2, v2, enable_gqa=True)  # (N, H_q, L, D)
torch.testing.assert_close(grouped @ shared, kernel_out)

# %%
# .. attnlens-solution-end::
