"""What does it cost to look at attention? Ratios measured side by side in one run.

``nox -s bench`` runs this script; ``python benchmarks/run.py --help`` lists the options.
It is a report, not a test: it prints a table and exits with status 0.

For each case the variants run interleaved (the order rotates every repetition), after a
warm-up, and the table gives the median time of each and its ratio to the uncaptured run:

* ``uncaptured``: the model as it is;
* ``attnlens``: inside ``attnlens.capture_attention(model)`` (weights computed beside the
  model's own, possibly fused, path);
* ``stock``: the usual recipe, forward hooks on every attention module that force
  ``need_weights=True, average_attn_weights=False`` (which turns the encoder layers'
  fused fast path off and leaves the fused attention kernel);
* ``floor``: what the promises cost at the least, with no capture machinery at all: the
  uncaptured run, then the weights computed by plain code from tensors recorded before the
  timings (each encoder layer's input, from which the queries and keys must be projected
  again, since the fused fast path keeps them to itself; or each SDPA call's own queries,
  keys and mask). attnlens cannot be cheaper than this and keep the outputs bit-identical.

Cases: a Hugging Face ``BertModel`` of MiniLM's size (6 layers, d 384, 12 heads, N 8, L 128,
fp32, CPU; L 512 in bf16 on CUDA) in its default sdpa mode, against the peer recipe (the same
weights in ``attn_implementation="eager"`` with ``output_attentions=True``); a 6-layer
``nn.TransformerEncoder`` (d_model 384, 12 heads, batch 8, post-norm,
``batch_first``, eval, ``torch.inference_mode()``; feed-forward width 2048, torch's
default, and 1536 = 4 d_model as in MiniLM) at L 128 in float32 on the CPU,
and at L 512 and 2048 in bfloat16 on CUDA when there is a GPU; and one
``nn.MultiheadAttention`` with ``need_weights`` False vs True. On CUDA the peak memory
of each variant is reported too (it includes the recorded weights).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout too

from attnlens.capture import capture_attention


@dataclasses.dataclass
class Case:
    """One benchmark: a model, an input and the variants to time."""

    title: str
    device: torch.device
    variants: dict[str, Callable[[], Any]]
    baseline: str
    reps: int
    warmup: int
    check: Callable[[], str] | None = None


def layer_inputs(model: nn.Module, run: Callable[[], Any]) -> list[torch.Tensor]:
    """The input of every ``nn.TransformerEncoderLayer`` of ``model`` during ``run()``."""
    inputs: list[torch.Tensor] = []
    handles = [
        layer.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
        for layer in model.modules()
        if isinstance(layer, nn.TransformerEncoderLayer)
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def mha_weights_only(mha: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √D) of a batch-first self-attention module, the least work there is."""
    n, length, e = x.shape  # (N, L, E)
    h = mha.num_heads
    d = e // h
    qk = nn.functional.linear(x, mha.in_proj_weight[: 2 * e], mha.in_proj_bias[: 2 * e])
    qk = qk.view(n, length, 2, h, d).permute(2, 0, 3, 1, 4)  # (2, N, H, L, D)
    q, k = qk[0] * d**-0.5, qk[1]  # (N, H, L, D) each
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1)  # (N, H, L, L)


def sdpa_arguments(run: Callable[[], Any]) -> list[tuple[torch.Tensor, ...]]:
    """(q, k, mask) of every ``scaled_dot_product_attention`` call during ``run()``."""
    calls: list[tuple[torch.Tensor, ...]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    class Record(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            if func is sdpa:
                mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
                calls.append((args[0], args[1], mask))
            return func(*args, **kwargs)

    with Record():
        run()
    return calls


def scores_softmax(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q kᵀ / √D + mask) for one recorded SDPA call (float or boolean mask)."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (N, H, L, S)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    return torch.softmax(scores, dim=-1)


@contextlib.contextmanager
def stock_capture(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The usual recipe: hooks forcing ``need_weights=True`` on every attention module."""
    weights: list[torch.Tensor] = []

    def pre(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def post(_module: nn.Module, _args: Any, _kwargs: Any, output: Any) -> None:
        weights.append(output[1])

    handles = []
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(module.register_forward_hook(post, with_kwargs=True))
    try:
        yield weights
    finally:
        for handle in handles:
            handle.remove()


def encoder_case(
    *,
    device: torch.device,
    dtype: torch.dtype,
    length: int,
    dim_feedforward: int,
    reps: int,
    warmup: int,
) -> Case:
    torch.manual_seed(0)
    d_model, heads, layers, batch = 384, 12, 6, 8
    layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward, batch_first=True)
    model = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    model = model.to(device=device, dtype=dtype).eval()
    x = torch.randn(batch, length, d_model, device=device, dtype=dtype)

    def uncaptured() -> Any:
        with torch.inference_mode():
            return model(x)

    def attnlens() -> Any:
        with torch.inference_mode(), capture_attention(model) as cap:
            out = model(x)
        return out, cap

    def stock() -> Any:
        with torch.inference_mode(), stock_capture(model) as weights:
            out = model(x)
        return out, weights

    inputs = layer_inputs(model, uncaptured)
    mhas = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]

    def floor() -> Any:
        with torch.inference_mode():
            out = model(x)
            weights = [mha_weights_only(m, h) for m, h in zip(mhas, inputs, strict=True)]
        return out, weights

    def check() -> str:
        expected = uncaptured()
        out, cap = attnlens()
        stock_out, stock_weights = stock()
        same = torch.equal(out, expected)
        diff = max(
            float((ours.float() - theirs.float()).abs().max())
            for (_, ours), theirs in zip(cap.calls, stock_weights, strict=True)
        )
        stock_diff = float((stock_out.float() - expected.float()).abs().max())
        return (
            f"attnlens output identical to uncaptured: {same}; "
            f"stock output differs by up to {stock_diff:.2g}; "
            f"max |attnlens - stock weights| = {diff:.2g}"
        )

    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))
    return Case(
        title=(
            f"6-layer encoder, d 384, 12 heads, feed-forward {dim_feedforward}, N {batch}, "
            f"L {length}, {name}, {device.type}"
        ),
        device=device,
        variants={"uncaptured": uncaptured, "attnlens": attnlens, "stock": stock, "floor": floor},
        baseline="uncaptured",
        reps=reps,
        warmup=warmup,
        check=check,
    )


def mha_case(
    *, device: torch.device, dtype: torch.dtype, length: int, reps: int, warmup: int
) -> Case:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(384, 12, batch_first=True).to(device=device, dtype=dtype).eval()
    x = torch.randn(8, length, 384, device=device, dtype=dtype)

    def no_weights() -> Any:
        with torch.inference_mode():
            return mha(x, x, x, need_weights=False)

    def per_head_weights() -> Any:
        with torch.inference_mode():
            return mha(x, x, x, need_weights=True, average_attn_weights=False)

    def attnlens() -> Any:
        with torch.inference_mode(), capture_attention(mha):
            return mha(x, x, x, need_weights=False)

    def floor() -> Any:
        with torch.inference_mode():
            return mha(x, x, x, need_weights=False), mha_weights_only(mha, x)

    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))
    return Case(
        title=f"nn.MultiheadAttention, E 384, 12 heads, N 8, L {length}, {name}, {device.type}",
        device=device,
        variants={
            "need_weights=False": no_weights,
            "attnlens (need_weights=False)": attnlens,
            "need_weights=True": per_head_weights,
            "floor": floor,
        },
        baseline="need_weights=False",
        reps=reps,
        warmup=warmup,
    )


def hf_bert_case(
    *, device: torch.device, dtype: torch.dtype, length: int, reps: int, warmup: int
) -> Case | None:
    """A BERT-sized Hugging Face model in its default sdpa mode (no download)."""
    try:
        import transformers
    except ImportError:
        print("transformers is not installed: Hugging Face cases skipped")
        return None
    import copy

    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
    )
    torch.manual_seed(0)
    sdpa = transformers.BertModel._from_config(copy.deepcopy(config), attn_implementation="sdpa")
    eager = transformers.BertModel._from_config(copy.deepcopy(config), attn_implementation="eager")
    eager.load_state_dict(sdpa.state_dict())
    sdpa = sdpa.to(device=device, dtype=dtype).eval()
    eager = eager.to(device=device, dtype=dtype).eval()
    ids = torch.randint(0, config.vocab_size, (8, length), device=device)
    real = torch.ones(8, length, dtype=torch.long, device=device)
    real[1, length // 2 :] = 0  # one padded sequence: the masks are real

    def uncaptured() -> Any:
        with torch.inference_mode():
            return sdpa(ids, attention_mask=real).last_hidden_state

    def attnlens() -> Any:
        with torch.inference_mode(), capture_attention(sdpa) as cap:
            out = sdpa(ids, attention_mask=real).last_hidden_state
        return out, cap

    def eager_recipe() -> Any:
        with torch.inference_mode():
            out = eager(ids, attention_mask=real, output_attentions=True)
        return out.last_hidden_state, out.attentions

    recorded = sdpa_arguments(uncaptured)

    def floor() -> Any:
        with torch.inference_mode():
            out = sdpa(ids, attention_mask=real).last_hidden_state
            weights = [scores_softmax(*call) for call in recorded]
        return out, weights

    def check() -> str:
        expected = uncaptured()
        out, cap = attnlens()
        eager_out, attentions = eager_recipe()
        rows = real.bool()  # (N, L): non-padding query rows
        diff = max(
            float((ours - theirs).transpose(1, 2)[rows].float().abs().max())
            for (_, ours), theirs in zip(cap.calls, attentions, strict=True)
        )
        eager_diff = float((eager_out.float() - expected.float()).abs().max())
        return (
            f"attnlens output identical to uncaptured: {torch.equal(out, expected)}; "
            f"eager output differs by up to {eager_diff:.2g}; "
            f"max |attnlens - eager weights| on non-padding rows = {diff:.2g}"
        )

    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))
    return Case(
        title=(
            f"Hugging Face BertModel (sdpa), 6 layers, d 384, 12 heads, N 8, L {length}, "
            f"{name}, {device.type}"
        ),
        device=device,
        variants={
            "uncaptured (sdpa)": uncaptured,
            "attnlens (sdpa)": attnlens,
            "eager + output_attentions": eager_recipe,
            "floor (sdpa)": floor,
        },
        baseline="uncaptured (sdpa)",
        reps=reps,
        warmup=warmup,
        check=check,
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timings(case: Case) -> dict[str, list[float]]:
    """Seconds per call of each variant, interleaved, order rotating every repetition."""
    names = list(case.variants)
    for _ in range(case.warmup):
        for name in names:
            case.variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(case.reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(case.device)
            start = time.perf_counter()
            result = case.variants[name]()
            synchronize(case.device)
            times[name].append(time.perf_counter() - start)
            del result
    return times


def peak_memory(case: Case) -> dict[str, float]:
    """Peak CUDA memory of each variant, above what was allocated before it, in MiB."""
    peaks = {}
    for name, run in case.variants.items():
        synchronize(case.device)
        before = torch.cuda.memory_allocated(case.device)
        torch.cuda.reset_peak_memory_stats(case.device)
        result = run()
        synchronize(case.device)
        peaks[name] = (torch.cuda.max_memory_allocated(case.device) - before) / 2**20
        del result
    return peaks


def report(case: Case) -> None:
    print(f"\n{case.title}")
    if case.check is not None:
        print(f"  check: {case.check()}")
    times = timings(case)
    memory = peak_memory(case) if case.device.type == "cuda" else None
    base = statistics.median(times[case.baseline])
    header = f"  {'variant':<31}{'median ms':>11}{'ratio':>8}{'IQR ms':>14}"
    if memory is not None:
        header += f"{'peak MiB':>11}"
    print(header)
    for name, values in times.items():
        median = statistics.median(values)
        q1, _, q3 = statistics.quantiles(values, n=4)
        line = (
            f"  {name:<31}{median * 1e3:>11.2f}{median / base:>7.2f}x"
            f"{f'{q1 * 1e3:.1f}-{q3 * 1e3:.1f}':>14}"
        )
        if memory is not None:
            line += f"{memory[name]:>11.0f}"
        print(line)
    print(f"  ({case.reps} interleaved repetitions after {case.warmup} warm-up rounds)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device",
        choices=["all", "cpu", "cuda"],
        default="all",
        help="where to run: all (default: the CPU, and CUDA if available), cpu or cuda",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no L 2048")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per variant")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--dim-feedforward",
        type=int,
        action="append",
        default=None,
        help="encoder feed-forward width; repeat for several (default: 2048, torch's "
        "default, and 1536 = 4 * d_model as in MiniLM; --quick: 2048 only)",
    )
    args = parser.parse_args(argv)
    feedforward: list[int] = args.dim_feedforward or ([2048] if args.quick else [2048, 1536])
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}")
    cases: list[Case] = []
    if args.device in {"all", "cpu"}:
        reps = args.reps or (10 if args.quick else 40)
        warmup = 2 if args.quick else 5
        print(f"CPU: {torch.get_num_threads()} threads")
        cpu = torch.device("cpu")
        for ff in feedforward:
            cases.append(
                encoder_case(
                    device=cpu,
                    dtype=torch.float32,
                    length=128,
                    dim_feedforward=ff,
                    reps=reps,
                    warmup=warmup,
                )
            )
        cases.append(
            mha_case(device=cpu, dtype=torch.float32, length=128, reps=reps, warmup=warmup)
        )
        hf = hf_bert_case(device=cpu, dtype=torch.float32, length=128, reps=reps, warmup=warmup)
        if hf is not None:
            cases.append(hf)
    if args.device in {"all", "cuda"}:
        if not torch.cuda.is_available():
            print("CUDA: not available, CUDA cases skipped")
        else:
            cuda = torch.device("cuda")
            print(f"CUDA: {torch.cuda.get_device_name(cuda)}")
            reps = args.reps or (20 if args.quick else 100)
            warmup = 5 if args.quick else 10
            lengths = [512] if args.quick else [512, 2048]
            for length in lengths:
                for ff in feedforward:
                    cases.append(
                        encoder_case(
                            device=cuda,
                            dtype=torch.bfloat16,
                            length=length,
                            dim_feedforward=ff,
                            reps=reps,
                            warmup=warmup,
                        )
                    )
            for length in lengths:
                cases.append(
                    mha_case(
                        device=cuda, dtype=torch.bfloat16, length=length, reps=reps, warmup=warmup
                    )
                )
            hf = hf_bert_case(
                device=cuda, dtype=torch.bfloat16, length=512, reps=reps, warmup=warmup
            )
            if hf is not None:
                cases.append(hf)
    for case in cases:
        report(case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
