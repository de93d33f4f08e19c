"""Record the per-head attention weights of an unmodified model.

``nn.TransformerEncoder`` never returns attention weights (its layers call
``self_attn(..., need_weights=False)``), and the usual trick, hooks that force
``need_weights=True``, changes what it observes: a hook on a
``TransformerEncoderLayer`` or on any of its submodules turns off the layer's fused
fast path, and ``need_weights=True`` leaves the fused attention kernel. On a GPU in
bf16 that costs more than twice the forward pass.

:func:`capture_attention` lets the model run exactly as it would and computes the
weights *beside* it, from the inputs each attention module (or fast-path encoder
layer) received and the module's own parameters: only the Q and K projections and
``softmax(Q Kᵀ / √D + masks)`` are needed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttentionCapture", "capture_attention"]

#: ``modules=`` of :func:`capture_attention`: names or glob patterns, or a predicate.
ModuleSelector: TypeAlias = str | Iterable[str] | Callable[[str, nn.Module], bool] | None


class AttentionCapture:
    """The attention weights recorded by :func:`capture_attention`.

    Attributes
    ----------
    names : tuple of str
        Qualified names (as in ``model.named_modules()``) of the attention modules being
        captured, in the model's order, e.g. ``("layers.0.self_attn", ...)``.
    weights : dict of str to torch.Tensor
        Module name -> per-head weights of its most recent call: shape (N, H, L, S), or
        (H, L, S) for unbatched input. A module that has not been called yet has no
        entry. Keys are inserted in the order of the modules' first calls.
    calls : list of (str, torch.Tensor)
        ``(name, weights)`` for every call, in call order; a module called twice appears
        twice. Empty when ``keep_calls=False``.

    Notes
    -----
    The tensors stay readable after the ``with`` block has ended.

    Examples
    --------
    >>> import torch
    >>> from attnlens.capture import capture_attention
    >>> mha = torch.nn.MultiheadAttention(8, 2)
    >>> x = torch.randn(5, 8)  # unbatched (L, E)
    >>> with capture_attention(mha) as cap:
    ...     _ = mha(x, x, x)
    ...     _ = mha(x[:3], x, x)
    >>> cap
    AttentionCapture(names=('',), calls=2)
    >>> [tuple(w.shape) for _, w in cap.calls]  # (H, L, S)
    [(2, 5, 5), (2, 3, 5)]
    >>> cap.weights[""] is cap.calls[-1][1]
    True
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.weights: dict[str, torch.Tensor] = {}
        self.calls: list[tuple[str, torch.Tensor]] = []

    def clear(self) -> None:
        """Forget what has been recorded so far (``weights`` and ``calls``)."""
        self.weights.clear()
        self.calls.clear()

    def __repr__(self) -> str:
        return f"AttentionCapture(names={self.names!r}, calls={len(self.calls)})"


def _attention_classes() -> tuple[type[nn.Module], ...]:
    """torch's MultiheadAttention and, when it can be imported, attnlens's."""
    try:
        from attnlens.multihead import MultiheadAttention  # noqa: PLC0415 (import cycle)
    except ImportError:  # pragma: no cover - only while the package is incomplete
        return (nn.MultiheadAttention,)
    return (nn.MultiheadAttention, MultiheadAttention)


@contextlib.contextmanager
def capture_attention(
    model: nn.Module,
    modules: ModuleSelector = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    keep_calls: bool = True,
    detach: bool = True,
) -> Iterator[AttentionCapture]:
    r"""Record the per-head attention weights of every attention module in ``model``.

    A context manager. Inside the ``with`` block, each call of a selected
    :class:`torch.nn.MultiheadAttention` or :class:`attnlens.MultiheadAttention` in
    ``model`` (also when an ``nn.TransformerEncoderLayer``'s fused fast path computes the
    attention without calling the module) records

    .. math:: \operatorname{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{D}} + M\right)
              \quad\text{for every head } h,

    shape (N, H, L, S), or (H, L, S) for unbatched input, where M merges the call's
    ``attn_mask`` and ``key_padding_mask`` as torch does. The model runs exactly as it
    would without the capture: same code path, same outputs, and each attention module
    returns to its caller what it returned before (``None`` weights for
    ``need_weights=False``, head-averaged weights when those were asked for).

    Parameters
    ----------
    model : torch.nn.Module
        Any module containing attention modules (or one itself): a stock
        ``nn.TransformerEncoder``, ``nn.TransformerDecoder``, ``nn.Transformer``, a
        custom model. It is not modified beyond the block.
    modules : str, iterable of str, callable or None, default None
        Which attention modules to capture. None: all. Strings are qualified names from
        ``model.named_modules()`` (e.g. ``"layers.0.self_attn"``) or
        :mod:`fnmatch` patterns (``"layers.*.self_attn"``); each must match at least
        one attention module. A callable is called as ``modules(name, module)`` for
        every attention module and returns whether to capture it.
    device : torch.device or str, optional
        Move the recorded weights there (e.g. ``"cpu"`` to keep GPU memory free).
        Default: leave them where they were computed, on the module's device.
    dtype : torch.dtype, optional
        Store the weights in this floating dtype. Default: the dtype of the computation
        (the module's, e.g. bfloat16).
    keep_calls : bool, default True
        Keep every call's weights in :attr:`AttentionCapture.calls`. With False only
        the most recent weights of each module are kept (``weights``), which bounds the
        memory when the model runs many times inside the block.
    detach : bool, default True
        Compute the weights outside autograd. With False, and gradients enabled, the
        weights are part of the autograd graph of the model's inputs and parameters
        (for gradient-weighted attention maps, say).

    Yields
    ------
    AttentionCapture
        Filled in as the model runs: ``.weights[name]`` (most recent call) and
        ``.calls`` (every call, in order).

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``, ``modules`` is not a string, an iterable of
        strings or a callable, or ``dtype`` is not a floating ``torch.dtype``.
    ValueError
        If ``model`` contains no attention module, a name or pattern in ``modules``
        matches none, the selection is empty, or ``device`` is not a valid device.

    Warns
    -----
    RuntimeWarning
        When a subclass of ``nn.TransformerEncoderLayer`` with its own ``forward`` runs
        without calling its ``self_attn`` (presumably through torch's fused fast path):
        its weights could not be recorded for that call.

    Notes
    -----
    **What is recorded.** The weights are recomputed from the call's inputs and the
    module's parameters (``in_proj_weight`` or ``q_proj_weight``/``k_proj_weight``,
    ``in_proj_bias``, ``bias_k``, ``add_zero_attn``): they are the weights torch's
    ``need_weights=True, average_attn_weights=False`` path returns for the same call,
    equal up to float rounding. ``bias_k`` and ``add_zero_attn`` each add a key column,
    so S is the key length plus one for each. ``is_causal`` is only a hint in torch: the
    weights follow ``attn_mask``, as torch's weights path does. A query row whose keys
    are all masked is NaN, as in torch's weights path.

    **Training mode.** The recorded weights are the attention *probabilities before
    dropout*: every row sums to 1. Torch applies dropout to the weights it uses (and
    returns) in training mode, with a random mask that cannot be reproduced beside
    the model, so the weights the model actually multiplied with V differ from the
    recorded ones by that dropout mask (and the 1/(1-p) scaling). In eval mode, or
    with ``dropout=0``, the two are the same.

    **How the model keeps its fast paths.** The capture replaces the ``forward``
    attribute of each selected attention module and of each ``nn.TransformerEncoderLayer``
    and ``nn.TransformerEncoder`` that contains one, by a wrapper that calls the original
    and then computes the weights. It registers no hook: a module hook on an encoder
    layer or its submodules would turn off the layer's fused fast path, and it changes
    no global setting. On exit (also after an exception inside the block) the
    ``forward`` attributes are restored as they were.

    * When an encoder layer takes its fused fast path
      (``torch._transformer_encoder_layer_fwd``), its ``self_attn`` is never called; the
      wrapper then computes the weights from the layer's input (after ``norm1`` for
      ``norm_first=True``), ``src_mask`` and ``src_key_padding_mask``.
    * In eval mode under ``torch.no_grad()``/``torch.inference_mode()`` with a
      ``src_key_padding_mask``, ``nn.TransformerEncoder`` packs the sequences into a
      nested tensor and drops the padded positions. The weights are still returned
      full size (N, H, L, L), L being the encoder's input length: the columns of
      padded keys are 0 (as with a padding mask) and the rows of padded *queries* are
      0, because on that path the model computes nothing at padded positions. (On
      the regular path those rows hold the attention of the padded positions'
      hidden states; they mean nothing either way.)

    **Cost.** Per call: the Q and K projections, one batched product Q Kᵀ and a softmax,
    beside the model's own (possibly fused) computation; on a CPU about 1.2x the
    uncaptured forward of a 6-layer encoder (``benchmarks/run.py`` measures it).

    The capture is not thread-safe with respect to the model: a call of the same model
    from another thread during the block is recorded too.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from attnlens.capture import capture_attention
    >>> _ = torch.manual_seed(0)
    >>> layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, batch_first=True)
    >>> encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    >>> encoder = encoder.eval()
    >>> x = torch.randn(3, 7, 16)  # (N, L, E)
    >>> with torch.inference_mode():
    ...     expected = encoder(x)
    ...     with capture_attention(encoder) as cap:
    ...         output = encoder(x)
    >>> torch.equal(output, expected)  # the model's output is untouched
    True
    >>> cap.names
    ('layers.0.self_attn', 'layers.1.self_attn')
    >>> cap.weights["layers.1.self_attn"].shape  # (N, H, L, S)
    torch.Size([3, 4, 7, 7])
    >>> torch.allclose(cap.weights["layers.0.self_attn"].sum(-1), torch.ones(3, 4, 7))
    True

    Only some modules, stored on the CPU in float16:

    >>> with capture_attention(encoder, "layers.1.*", device="cpu", dtype=torch.float16) as cap:
    ...     _ = encoder(x)
    >>> list(cap.weights), cap.weights["layers.1.self_attn"].dtype
    (['layers.1.self_attn'], torch.float16)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__qualname__}")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected None or a floating torch.dtype, got {dtype!r}")
    target_device = _check_device(device)
    targets = _select(model, modules)
    capture = AttentionCapture(tuple(name for name, _ in targets))
    session = _Session(capture, target_device, dtype, keep_calls=keep_calls, detach=detach)
    try:
        session.install(model, targets)
        yield capture
    finally:
        session.uninstall()


def _check_device(device: torch.device | str | None) -> torch.device | None:
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"device: expected None, a str or a torch.device, got {type(device).__qualname__}"
        )
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"device: expected a device such as 'cpu' or 'cuda:0', got {device!r}"
        ) from error


def _select(model: nn.Module, modules: ModuleSelector) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs to capture, in the model's order."""
    classes = _attention_classes()
    candidates = [(name, m) for name, m in model.named_modules() if isinstance(m, classes)]
    if not candidates:
        raise ValueError(
            f"model: found no attention module to capture in {type(model).__qualname__}: it "
            "contains no torch.nn.MultiheadAttention or attnlens.MultiheadAttention"
        )
    if modules is None:
        return candidates
    if callable(modules):
        selected = [(name, m) for name, m in candidates if modules(name, m)]
    else:
        patterns = _patterns(modules)
        names = [name for name, _ in candidates]
        all_modules = dict(model.named_modules())
        chosen: set[str] = set()
        for pattern in patterns:
            matched = {
                name for name in names if name == pattern or fnmatch.fnmatchcase(name, pattern)
            }
            if not matched:
                if pattern in all_modules:
                    kind = type(all_modules[pattern]).__qualname__
                    raise ValueError(
                        f"modules: {pattern!r} is a {kind}, not an attention module; the "
                        f"model's attention modules are {names}"
                    )
                raise ValueError(
                    f"modules: no attention module matches {pattern!r}; the model's attention "
                    f"modules are {names}"
                )
            chosen |= matched
        selected = [(name, m) for name, m in candidates if name in chosen]
    if not selected:
        raise ValueError(
            "modules: the predicate selected none of the model's attention modules "
            f"{[name for name, _ in candidates]}"
        )
    return selected


def _patterns(modules: str | Iterable[str]) -> list[str]:
    if isinstance(modules, str):
        return [modules]
    if not isinstance(modules, Iterable):
        raise TypeError(
            "modules: expected None, a name, an iterable of names or a callable "
            f"(name, module) -> bool, got {type(modules).__qualname__}"
        )
    patterns = list(modules)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(
                f"modules: expected names (str), got an item of type {type(pattern).__qualname__}"
            )
    if not patterns:
        raise ValueError("modules: expected at least one name, got an empty collection")
    return patterns


class _Session:
    """The state of one ``with capture_attention(...)`` block."""

    def __init__(
        self,
        capture: AttentionCapture,
        device: torch.device | None,
        dtype: torch.dtype | None,
        *,
        keep_calls: bool,
        detach: bool,
    ) -> None:
        self.capture = capture
        self.device = device
        self.dtype = dtype
        self.keep_calls = keep_calls
        self.detach = detach
        self.active = False
        # id(attention module) -> number of calls of its forward seen so far
        self.counts: dict[int, int] = {}
        # full sequence length of each nn.TransformerEncoder running now (innermost last)
        self.encoder_lengths: list[int | None] = []
        # (module, had its own "forward" attribute, that attribute)
        self._patches: list[tuple[nn.Module, bool, Any]] = []

    # -- installing and removing the wrappers ------------------------------------------------

    def install(self, model: nn.Module, targets: list[tuple[str, nn.Module]]) -> None:
        self.active = True
        names = {id(m): name for name, m in targets}
        for name, module in targets:
            self.counts[id(module)] = 0
            self._patch(module, _attention_wrapper(self, name, module, module.forward))
        layers: list[nn.TransformerEncoderLayer] = []
        encoders: list[nn.TransformerEncoder] = []
        for module in model.modules():
            if isinstance(module, nn.TransformerEncoderLayer) and id(module.self_attn) in names:
                layers.append(module)
            elif isinstance(module, nn.TransformerEncoder):
                encoders.append(module)
        for layer in layers:
            name = names[id(layer.self_attn)]
            self._patch(layer, _encoder_layer_wrapper(self, name, layer, layer.forward))
        wrapped = {id(layer) for layer in layers}
        for encoder in encoders:
            if any(id(layer) in wrapped for layer in encoder.layers):
                self._patch(encoder, _encoder_wrapper(self, encoder, encoder.forward))

    def _patch(self, module: nn.Module, wrapper: Callable[..., Any]) -> None:
        had = "forward" in module.__dict__
        self._patches.append((module, had, module.__dict__.get("forward")))
        module.__dict__["forward"] = wrapper

    def uninstall(self) -> None:
        self.active = False  # a wrapper that somebody else kept now only passes calls on
        while self._patches:
            module, had, previous = self._patches.pop()
            if had:
                module.__dict__["forward"] = previous
            else:
                module.__dict__.pop("forward", None)

    # -- recording ----------------------------------------------------------------------------

    def grad_mode(self) -> contextlib.AbstractContextManager[Any]:
        if self.detach and torch.is_grad_enabled():
            return torch.no_grad()
        return contextlib.nullcontext()

    def record(self, name: str, weights: torch.Tensor) -> None:
        if self.detach and weights.requires_grad:
            weights = weights.detach()
        if self.device is not None or self.dtype is not None:
            weights = weights.to(device=self.device, dtype=self.dtype)
        self.capture.weights[name] = weights
        if self.keep_calls:
            self.capture.calls.append((name, weights))


class _Binder:
    """Binds a call's arguments to the parameter names of a ``forward`` (fast, no inspect)."""

    def __init__(self, positional: tuple[str, ...], defaults: dict[str, Any]) -> None:
        self.positional = positional
        self.defaults = defaults

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        call = dict(self.defaults)
        call.update(zip(self.positional, args, strict=False))
        call.update(kwargs)
        return call


@functools.cache
def _binder_for(
    function: Callable[..., Any], needed: tuple[str, ...], fallback: Callable[..., Any]
) -> _Binder:
    """A binder for the unbound ``forward`` of a module class.

    The class's ``forward`` gives the names (the instance's ``forward`` attribute may be
    a wrapper taking ``*args, **kwargs``); ``fallback``'s are used when it takes
    ``*args`` or lacks one of the ``needed`` names.
    """
    parameters = list(inspect.signature(function).parameters.values())[1:]  # without self
    if any(p.kind is p.VAR_POSITIONAL for p in parameters) or not all(
        any(p.name == name for p in parameters) for name in needed
    ):
        parameters = list(inspect.signature(fallback).parameters.values())[1:]
    positional = tuple(
        p.name for p in parameters if p.kind in {p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD}
    )
    defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
    return _Binder(positional, defaults)


def _attention_wrapper(
    session: _Session, name: str, module: nn.Module, original: Callable[..., Any]
) -> Callable[..., Any]:
    """``forward`` of an attention module: call it, then record its weights."""
    bind = _binder_for(type(module).forward, ("query", "key"), nn.MultiheadAttention.forward)
    key = id(module)

    def forward(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if session.active:
            session.counts[key] += 1
            call = bind(args, kwargs)
            with session.grad_mode():
                weights = _weights_of_call(module, call, result, session)
            session.record(name, weights)
        return result

    return forward


def _weights_of_call(
    module: nn.Module, call: dict[str, Any], result: Any, session: _Session
) -> torch.Tensor:
    """Per-head weights of one call of an attention module."""
    query: torch.Tensor = call["query"]
    key: torch.Tensor = call["key"]
    returned = result[1] if isinstance(result, tuple) and len(result) == 2 else None
    if (
        call.get("need_weights", True)
        and not call.get("average_attn_weights", True)
        and isinstance(returned, torch.Tensor)
        and returned.dim() == query.dim() + 1
        and not query.is_nested
        and not (module.training and float(getattr(module, "dropout", 0.0)) > 0.0)
    ):
        # The caller asked for exactly these: torch's own per-head weights, no dropout.
        return returned
    if query.is_nested or key.is_nested:
        # Only on torch's fast path, which takes no mask with nested input.
        full_length = session.encoder_lengths[-1] if session.encoder_lengths else None
        padded_query, query_lengths = _pad_nested(query, full_length)
        padded_key, key_lengths = (
            (padded_query, query_lengths) if key is query else _pad_nested(key, full_length)
        )
        weights = _attention_weights(
            module,
            padded_query,
            padded_key,
            key_padding_mask=_padding_mask(key_lengths, padded_key.size(1)),
            attn_mask=None,
            batch_first=True,
        )
        return _zero_padded_queries(weights, query_lengths)
    return _attention_weights(
        module,
        query,
        key,
        key_padding_mask=call.get("key_padding_mask"),
        attn_mask=call.get("attn_mask"),
        batch_first=bool(getattr(module, "batch_first", False)),
    )


_LAYER_ARGUMENTS = ("src", "src_mask", "src_key_padding_mask")


def _encoder_layer_wrapper(
    session: _Session, name: str, layer: nn.TransformerEncoderLayer, original: Callable[..., Any]
) -> Callable[..., Any]:
    """``forward`` of an encoder layer: record the weights when its fast path ran."""
    bind = _binder_for(type(layer).forward, _LAYER_ARGUMENTS, nn.TransformerEncoderLayer.forward)
    key = id(layer.self_attn)
    stock = type(layer).forward is nn.TransformerEncoderLayer.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        before = session.counts[key]
        result = original(*args, **kwargs)
        if session.active and session.counts[key] == before:
            # self_attn was not called: the fused torch._transformer_encoder_layer_fwd ran.
            if not stock:
                warnings.warn(
                    f"capture_attention: {type(layer).__qualname__} overrides forward and did "
                    f"not call its self_attn {name!r} (torch's fused fast path?); the weights "
                    "of this call were not recorded. torch.backends.mha.set_fastpath_enabled"
                    "(False) around the call makes it take the regular path.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return result
            call = bind(args, kwargs)
            with session.grad_mode():
                weights = _fast_path_weights(layer, call, session)
            session.record(name, weights)
        return result

    return forward


def _fast_path_weights(
    layer: nn.TransformerEncoderLayer, call: dict[str, Any], session: _Session
) -> torch.Tensor:
    """The weights of a fast-path encoder layer call, from the layer's input."""
    src: torch.Tensor = call["src"]
    key_padding_mask: torch.Tensor | None = call["src_key_padding_mask"]
    lengths = None
    if src.is_nested:  # (the fast path takes no mask with nested input)
        full_length = session.encoder_lengths[-1] if session.encoder_lengths else None
        src, lengths = _pad_nested(src, full_length)  # (N, L, E)
        key_padding_mask = _padding_mask(lengths, src.size(1))
    x = src
    if layer.norm_first:
        # as the fused kernel does: layer_norm with norm1's parameters
        norm = layer.norm1
        x = F.layer_norm(x, (x.size(-1),), norm.weight, norm.bias, norm.eps)
    weights = _attention_weights(
        layer.self_attn,
        x,
        x,
        key_padding_mask=key_padding_mask,
        attn_mask=call["src_mask"],
        batch_first=True,  # the fast path requires batch_first
    )
    return weights if lengths is None else _zero_padded_queries(weights, lengths)


def _encoder_wrapper(
    session: _Session, encoder: nn.TransformerEncoder, original: Callable[..., Any]
) -> Callable[..., Any]:
    """``forward`` of an encoder: remember its sequence length for nested-tensor layers."""
    bind = _binder_for(type(encoder).forward, ("src",), nn.TransformerEncoder.forward)
    batch_first = bool(getattr(encoder.layers[0].self_attn, "batch_first", False))

    def forward(*args: Any, **kwargs: Any) -> Any:
        src = bind(args, kwargs)["src"]
        length = None
        if isinstance(src, torch.Tensor) and not src.is_nested and src.dim() == 3:
            length = src.size(1 if batch_first else 0)
        session.encoder_lengths.append(length)
        try:
            return original(*args, **kwargs)
        finally:
            session.encoder_lengths.pop()

    return forward


def _pad_nested(x: torch.Tensor, full_length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A nested batch of (L_b, E) sequences -> padded (N, L, E) and the lengths (N,)."""
    components = x.unbind()
    sizes = [c.size(0) for c in components]
    lengths = torch.tensor(sizes, device=x.device)  # (N,)
    length = max([*sizes, full_length or 0])
    width = components[0].size(-1) if components else 0
    padded = x.to_padded_tensor(0.0, (len(components), length, width))  # (N, L, E)
    return padded, lengths


def _padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """Bool key padding mask (N, S), True at positions >= each sequence's length."""
    positions = torch.arange(length, device=lengths.device)  # (S,)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)  # (N, S)


def _zero_padded_queries(weights: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Set the rows of padded query positions of (N, H, L, S) weights to 0."""
    padded = _padding_mask(lengths, weights.size(2))  # (N, L)
    return weights.masked_fill_(padded[:, None, :, None], 0.0)  # (N, H, L, S)


def _q_and_k(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, self_attention: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The projections Q = query W_Qᵀ + b_Q (N, L, E) and K = key W_Kᵀ + b_K (N, S, E).

    ``in_proj_weight`` (3E, E) holds [W_Q; W_K; W_V] and ``in_proj_bias`` (3E,) the
    biases likewise; with kdim/vdim != E the module has ``q_proj_weight`` (E, E) and
    ``k_proj_weight`` (E, kdim) instead. Slices of parameters are views: no copy.
    """
    embed_dim = query.size(-1)
    in_proj_weight: torch.Tensor | None = getattr(module, "in_proj_weight", None)
    in_proj_bias: torch.Tensor | None = getattr(module, "in_proj_bias", None)
    if self_attention and in_proj_weight is not None:
        # one matrix product for both: [Q | K] = x [W_Q; W_K]ᵀ + [b_Q; b_K]
        bias = None if in_proj_bias is None else in_proj_bias[: 2 * embed_dim]  # (2E,)
        qk = F.linear(query, in_proj_weight[: 2 * embed_dim], bias)  # (N, L, 2E)
        q, k = qk.chunk(2, dim=-1)  # 2 x (N, L, E), views
        return q, k
    if in_proj_weight is not None:
        q_weight, k_weight = in_proj_weight[: 2 * embed_dim].chunk(2)  # 2 x (E, E)
    else:
        q_weight = getattr(module, "q_proj_weight")  # noqa: B009  (E, E)
        k_weight = getattr(module, "k_proj_weight")  # noqa: B009  (E, kdim)
    q_bias = k_bias = None
    if in_proj_bias is not None:
        q_bias, k_bias = in_proj_bias[: 2 * embed_dim].chunk(2)  # 2 x (E,)
    return F.linear(query, q_weight, q_bias), F.linear(key, k_weight, k_bias)


def _attention_weights(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    key_padding_mask: torch.Tensor | None,
    attn_mask: torch.Tensor | None,
    batch_first: bool,
) -> torch.Tensor:
    """softmax(Q Kᵀ / √D + masks) per head, as torch's weights path computes it.

    ``query`` (L, N, E) / (N, L, E) with ``batch_first`` / (L, E) unbatched; ``key``
    likewise with S and kdim. Masks in torch's MultiheadAttention convention (bool True
    = masked out; float added). Returns (N, H, L, S') or (H, L, S'), S' = S plus one
    column for ``bias_k`` and one for ``add_zero_attn``.
    """
    self_attention = query is key
    batched = query.dim() == 3
    if not batched:
        query = query.unsqueeze(0)  # (1, L, E)
        key = query if self_attention else key.unsqueeze(0)  # (1, S, kdim)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
    elif not batch_first:
        query = query.transpose(0, 1)  # (N, L, E)
        key = query if self_attention else key.transpose(0, 1)  # (N, S, kdim)
    batch, tgt_len, embed_dim = query.shape
    num_heads: int = getattr(module, "num_heads")  # noqa: B009
    head_dim = embed_dim // num_heads

    q, k = _q_and_k(module, query, key, self_attention)  # (N, L, E), (N, S, E)
    bias_k: torch.Tensor | None = getattr(module, "bias_k", None)
    if bias_k is not None:
        k = torch.cat([k, bias_k.expand(batch, 1, embed_dim)], dim=1)  # (N, S+1, E)
    src_len = k.size(1)
    # heads as the batch of one matrix product: (N*H, L, D) and (N*H, S, D), copies
    q = q.view(batch, tgt_len, num_heads, head_dim).transpose(1, 2)  # (N, H, L, D)
    q = q.reshape(batch * num_heads, tgt_len, head_dim)  # (N*H, L, D)
    k = k.view(batch, src_len, num_heads, head_dim).transpose(1, 2)  # (N, H, S, D)
    k = k.reshape(batch * num_heads, src_len, head_dim)  # (N*H, S, D)
    if getattr(module, "add_zero_attn", False):
        zeros = k.new_zeros(batch * num_heads, 1, head_dim)  # (N*H, 1, D)
        k = torch.cat([k, zeros], dim=1)  # (N*H, S+1, D)
        src_len += 1
    # torch scales q by sqrt(1/D) before the product (q is our own projection: in place is safe)
    q = q.mul_(math.sqrt(1.0 / head_dim))
    scores = torch.bmm(q, k.transpose(1, 2))  # (N*H, L, S)
    scores = scores.view(batch, num_heads, tgt_len, src_len)  # (N, H, L, S)
    if attn_mask is not None:
        if attn_mask.dim() == 3:  # (N*H, L, S), batch-major; (H, L, S) unbatched
            attn_mask = attn_mask.view(batch, num_heads, tgt_len, attn_mask.size(-1))
        _apply_mask(scores, attn_mask)  # (L, S) or (N, H, L, S)
    if key_padding_mask is not None:
        _apply_mask(scores, key_padding_mask.view(batch, 1, 1, key_padding_mask.size(-1)))
    weights = _softmax(scores)  # (N, H, L, S)
    return weights if batched else weights.squeeze(0)  # (H, L, S) unbatched


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis; in place on the CPU outside autograd (saves a copy)."""
    if scores.device.type == "cpu" and not (torch.is_grad_enabled() and scores.requires_grad):
        return torch._softmax(scores, -1, False, out=scores)
    return torch.softmax(scores, dim=-1)


def _apply_mask(scores: torch.Tensor, mask: torch.Tensor) -> None:
    """Apply a mask (bool True = masked out, or float added) in place.

    The mask may have fewer key columns than ``scores`` (the ``bias_k`` and zero-attention
    columns are never masked).
    """
    columns = scores if mask.size(-1) == scores.size(-1) else scores[..., : mask.size(-1)]
    if mask.dtype == torch.bool:
        columns.masked_fill_(mask, float("-inf"))
    else:
        columns.add_(mask)
