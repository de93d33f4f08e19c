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
# What we saw
# -----------
#
# - ``need_weights=False`` gives the same output; the weights are an extra result that has to
#   be computed and stored as a full :math:`(N, H, L, S)` tensor.
# - That tensor grows with the square of the sequence length.
# - The time cost of asking for weights depends on the machine: measure it where your model
#   runs, and ask for weights only when you are going to look at them.
