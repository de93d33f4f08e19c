r"""
The cost of asking for attention weights
========================================

``nn.MultiheadAttention`` returns its attention weights by default (``need_weights=True``).
To return them it has to compute the full :math:`(N, H, L, S)` softmax explicitly and keep it
in memory. With ``need_weights=False`` it is free to call PyTorch's fused
``scaled_dot_product_attention``, which produces the same output without handing the weights
back. This example checks that the output is the same, counts the memory the weights take, and
times the calls with and without weights on the CPU for a few sequence lengths.
"""

# %%
# Same output either way
# ----------------------
#
# A module with :math:`E = 64` features and :math:`H = 4` heads, in evaluation mode and under
# ``torch.inference_mode()``, as it would run when serving a model. The weights are an extra
# result, not a different computation: the outputs agree.

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.utils import benchmark

torch.set_printoptions(precision=4)

torch.manual_seed(0)
E, H = 64, 4
mha = nn.MultiheadAttention(E, H, batch_first=True).eval()

X = torch.randn(1, 128, E)  # (N, L, E)
with torch.inference_mode():
    out_fused, none = mha(X, X, X, need_weights=False)
    out_weights, attn = mha(X, X, X, need_weights=True, average_attn_weights=False)
assert none is None
print(attn.shape)
torch.testing.assert_close(out_fused, out_weights)

# %%
# What the weights weigh
# ----------------------
#
# The per-head weights hold :math:`N \cdot H \cdot L \cdot S` numbers: quadratic in the sequence
# length. In float32, one sequence with 4 heads takes 256 KiB of weights at :math:`L = 128` and
# 256 MiB at :math:`L = 4096`, per attention layer, on top of everything else.


def weight_bytes(n, heads, length, element_size=4):
    """Bytes of an (N, H, L, L) float tensor."""
    return n * heads * length * length * element_size


assert attn.numel() * attn.element_size() == weight_bytes(1, H, 128)
for length in (128, 512, 1024, 4096):
    print(f"L = {length:4d}: {weight_bytes(1, H, length) / 2**20:8.2f} MiB")
assert weight_bytes(1, H, 128) == 256 * 2**10
assert weight_bytes(1, H, 4096) == 256 * 2**20

# %%
# Timing the calls
# ----------------
#
# We time three calls at :math:`L = 64, 256, 1024` with ``torch.utils.benchmark``, which
# repeats each call until it has a stable estimate: without weights, with weights averaged over
# the heads (the default), and with per-head weights (``average_attn_weights=False``, what you
# need to look at heads): columns ``t_none``, ``t_mean`` and ``t_heads``. The numbers below
# come from the machine that built this page. They are not asserted: they depend on the
# hardware, the number of threads, the dtype and whatever else the machine is doing.

calls = {
    "need_weights=False": {"need_weights": False},
    "need_weights=True": {"need_weights": True},
    "average_attn_weights=False": {"need_weights": True, "average_attn_weights": False},
}
lengths = [64, 256, 1024]
seconds = {name: [] for name in calls}
for length in lengths:
    x = torch.randn(1, length, E)  # (N, L, E)
    for name, kwargs in calls.items():
        timer = benchmark.Timer(
            "mha(x, x, x, **kwargs)", globals={"mha": mha, "x": x, "kwargs": kwargs}
        )
        with torch.inference_mode():
            seconds[name].append(timer.blocked_autorange(min_run_time=0.05).median)

print(f"{'L':>5} {'t_none':>12} {'t_mean':>12} {'t_heads':>12} {'ratio':>7}")
for i, length in enumerate(lengths):
    fused, averaged, per_head = (seconds[name][i] for name in calls)
    print(
        f"{length:5d} {fused * 1e3:9.3f} ms {averaged * 1e3:9.3f} ms {per_head * 1e3:9.3f} ms "
        f"{per_head / fused:6.2f}x"
    )

# %%
# The ``ratio`` column is ``t_heads / t_none``: the time with per-head weights divided by the
# time without weights. The figure shows the three timings against the sequence length on
# log-log axes; a slope of 2 is the quadratic growth of the score matrix.

fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
for (name, values), marker in zip(seconds.items(), "osd", strict=True):
    ax.plot(lengths, [value * 1e3 for value in values], marker=marker, label=name)
ax.legend(fontsize="small")
ax.set_xlabel(r"$L$")
ax.set_ylabel(r"$\mathrm{ms}$")
ax.set_xscale("log", base=2)
ax.set_yscale("log")

# %%
# Why the three columns are so close on the CPU
# ---------------------------------------------
#
# On this machine the three calls take about the same time, and the averaged call is often the
# slowest. The reason is the module's *fast path*: in evaluation mode, without autograd, for
# self-attention, ``nn.MultiheadAttention`` hands the whole computation to one native function
# (``torch._native_multi_head_attention``). On the CPU that function computes the full
# :math:`(N, H, L, S)` score matrix with a batched matrix product whether or not you ask for the
# weights; returning them costs almost nothing more, and averaging them over the heads is one
# more operation. All three columns time the same kernel, so the table says nothing about
# fused attention.
#
# ``torch.profiler`` can count the bytes each call allocates. With the fast path, the call
# without weights allocates as much as the call with weights, and more than the weights
# themselves: the score matrix is there either way.

from torch.profiler import ProfilerActivity, profile


def allocated_bytes(call):
    """Bytes allocated on the CPU while ``call()`` runs (the sum of all allocations)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    return sum(max(event.self_cpu_memory_usage, 0) for event in prof.events())  # frees are < 0


x = torch.randn(1, 1024, E)  # (N, L, E)
with torch.inference_mode():
    fast_without = allocated_bytes(lambda x=x: mha(x, x, x, need_weights=False))
    fast_with = allocated_bytes(lambda: mha(x, x, x, need_weights=True, average_attn_weights=False))
print(f"allocated[fast path, need_weights=False] = {fast_without / 2**20:.1f} MiB")
print(f"allocated[fast path, need_weights=True]  = {fast_with / 2**20:.1f} MiB")
assert fast_without >= weight_bytes(1, H, 1024)
assert abs(fast_with - fast_without) < 0.1 * fast_without

# %%
# What the fused kernel never allocates
# -------------------------------------
#
# Off the fast path (autograd on, training, cross-attention, or
# ``torch.backends.mha.set_fastpath_enabled(False)`` as below), ``need_weights=False`` calls
# ``scaled_dot_product_attention``, whose fused CPU kernel works through the keys block by block
# and never holds a whole :math:`(N, H, L, S)` tensor. ``need_weights=True`` has to build the
# scores and the softmax explicitly: two tensors of :math:`N \cdot H \cdot L \cdot S` numbers.
# We count the bytes allocated by each call for growing :math:`L` and compare them with the
# bytes of the weights and with those of the layer's output :math:`(N, L, E)`.

lengths_mem = [64, 256, 1024, 2048]
allocated = {"need_weights=False": [], "need_weights=True": []}
torch.backends.mha.set_fastpath_enabled(False)
try:
    for length in lengths_mem:
        x = torch.randn(1, length, E)  # (N, L, E)
        with torch.inference_mode():
            allocated["need_weights=False"].append(
                allocated_bytes(lambda x=x: mha(x, x, x, need_weights=False))
            )
            allocated["need_weights=True"].append(
                allocated_bytes(lambda x=x: mha(x, x, x, average_attn_weights=False))
            )
finally:
    torch.backends.mha.set_fastpath_enabled(True)

output_bytes = [length * E * 4 for length in lengths_mem]  # (N, L, E) in float32, N = 1
print(f"{'L':>5} {'False':>10} {'True':>10} {'weights':>10} {'output':>10}   MiB")
for i, length in enumerate(lengths_mem):
    row = [allocated[name][i] for name in allocated]
    row += [weight_bytes(1, H, length), output_bytes[i]]
    print(f"{length:5d} " + " ".join(f"{value / 2**20:10.3f}" for value in row))

for i, length in enumerate(lengths_mem):
    assert allocated["need_weights=True"][i] >= 2 * weight_bytes(1, H, length)
    if length >= 1024:  # the fused path allocates less than the weights alone
        assert allocated["need_weights=False"][i] < weight_bytes(1, H, length)

# %%
# The weights take :math:`4 N H L S` bytes in float32 and the output :math:`4 N L E`: the weights
# are larger as soon as :math:`H L > E`, i.e. :math:`L > D = E / H`, here :math:`L > 16`, and
# their share grows linearly with :math:`L` from there. At :math:`L = 2048` the call that returns
# them allocates about 25 times what the fused call does. The figure shows the allocated bytes
# against :math:`L`: the fused call grows like :math:`L`, the call with weights like
# :math:`L^2`.

crossover = E // H
assert weight_bytes(1, H, crossover + 1) > (crossover + 1) * E * 4
assert weight_bytes(1, H, crossover) == crossover * E * 4
ratio_2048 = allocated["need_weights=True"][-1] / allocated["need_weights=False"][-1]
print(f"allocated[True] / allocated[False] at L = 2048: {ratio_2048:.1f}")
assert ratio_2048 > 10

fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
for (name, values), marker in zip(allocated.items(), "os", strict=True):
    ax.plot(lengths_mem, [v / 2**20 for v in values], marker=marker, label=name)
ax.plot(lengths_mem, [weight_bytes(1, H, n) / 2**20 for n in lengths_mem], "k--", label="NHLS")
ax.plot(lengths_mem, [b / 2**20 for b in output_bytes], "k:", label="NLE")
ax.legend(fontsize="small")
ax.set_xlabel(r"$L$")
ax.set_ylabel(r"$\mathrm{MiB}$")
ax.set_xscale("log", base=2)
ax.set_yscale("log")

# %%
# On a GPU, in half precision, the fused kernels are also much faster than the explicit softmax,
# and asking for weights then costs time as well as memory. The project's benchmark
# (``nox -s bench``) measures both side by side on the machine it runs on; this page, built on a
# CPU, shows no GPU figures.
#
# What we saw
# -----------
#
# - ``need_weights=False`` gives the same output; the weights are an extra result that has to
#   be computed and stored as a full :math:`(N, H, L, S)` tensor.
# - That tensor grows with the square of the sequence length and outgrows the layer's output as
#   soon as :math:`L > E / H`.
# - On the CPU, the module's fast path computes the score matrix whether or not the weights are
#   asked for, so the timings agree; off the fast path, the fused kernel allocates no
#   :math:`(N, H, L, S)` tensor at all.
# - Measure where your model runs, and ask for weights only when you are going to look at them.

# %%
# Exercises
# ---------
#
# **Exercise 1.** A BERT-base layer has :math:`H = 12` heads. How much memory do the per-head
# weights of all 12 layers take for a batch of 8 sequences of 512 tokens in float32?
#
# .. attnlens-solution::

bert = 12 * weight_bytes(8, 12, 512)
print(f"{bert / 2**30:.3f} GiB")
assert bert == 9 * 2**30 // 8  # 1.125 GiB

# %%
# .. attnlens-solution-end::
#
# **Exercise 2.** Check with the profiler that with autograd on (no ``inference_mode``), where
# there is no fast path, the call without weights allocates less than the weights would take at
# :math:`L = 1024`.
#
# .. attnlens-solution::

x = torch.randn(1, 1024, E)  # (N, L, E)
mha.requires_grad_(False)  # no gradient needed, but autograd stays on: no fast path
x.requires_grad_(True)
no_fast = allocated_bytes(lambda x=x: mha(x, x, x, need_weights=False))
assert no_fast < weight_bytes(1, H, 1024)
mha.requires_grad_(True)

# %%
# .. attnlens-solution-end::
