r"""Record the per-head attention weights of an unmodified model.

Most models never hand out their attention weights. ``nn.TransformerEncoder`` calls its
attention with ``need_weights=False``; GPT-style code, Hugging Face models and timm's vision
transformers call the fused :func:`torch.nn.functional.scaled_dot_product_attention`
(SDPA), which computes no weights at all. The usual tricks (hooks that force
``need_weights=True``, switching a Hugging Face model to ``attn_implementation="eager"``)
change the very computation they observe, and cost 1.1x to 5x the forward pass.

:func:`capture_attention` lets the model run exactly as it would and computes the weights
*beside* it, from what each attention computation received:

* an ``nn.MultiheadAttention`` call (or an ``nn.TransformerEncoderLayer`` whose fused fast
  path ran instead): from the call's inputs and the module's parameters
  (:mod:`attnlens.capture_mha`);
* an SDPA call made by any module of the model: from the query, key and mask the kernel
  received (:mod:`attnlens.capture_sdpa`);
* a Hugging Face model in ``"eager"`` mode: the weights its attention function returned
  (:mod:`attnlens.capture_hf`), so that eager and sdpa models give the same capture.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeAlias

import torch
from torch import nn

from attnlens import capture_hf
from attnlens.capture_mha import attention_classes, binder_for, fast_path_weights, weights_of_call
from attnlens.capture_sdpa import SDPACallMode, sdpa_weights

__all__ = ["AttentionCapture", "capture_attention"]

#: ``modules=`` of :func:`capture_attention`: names or glob patterns, or a predicate.
ModuleSelector: TypeAlias = str | Iterable[str] | Callable[[str, nn.Module], bool] | None

#: Class names of modules that compute attention themselves (``BertSelfAttention``,
#: ``CausalSelfAttention``, timm's ``Attention``, ``GPT2Attention``...).
_LOOKS_LIKE_ATTENTION = re.compile(r"attention|attn", re.IGNORECASE)

SUPPORTED = (
    "calls of torch.nn.functional.scaled_dot_product_attention made inside the model's "
    "modules, torch.nn.MultiheadAttention (also inside nn.Transformer* layers) and "
    "attnlens.MultiheadAttention, and Hugging Face transformers models (sdpa or eager)"
)


class AttentionCapture:
    """The attention weights recorded by :func:`capture_attention`.

    Attributes
    ----------
    names : tuple of str
        Qualified names (as in ``model.named_modules()``) of the attention modules that can
        be captured, in the model's order: every selected ``nn.MultiheadAttention`` and
        every selected module that looks like attention (a class name with "Attention" or
        "Attn", with no such module inside it), e.g. ``("layers.0.self_attn", ...)`` or
        ``("encoder.layer.0.attention.self", ...)``. An SDPA call from a module that is not
        listed is still recorded, under that module's name.
    weights : dict of str to torch.Tensor
        Module name -> per-head weights of its most recent call: shape (N, H, L, S), the
        SDPA call's own leading dimensions, or (H, L, S) for unbatched input to
        ``nn.MultiheadAttention``. A module that has not been called yet has no entry. Keys
        are inserted in the order of the modules' first calls.
    calls : list of (str, torch.Tensor)
        ``(name, weights)`` for every attention computation, in call order; a module
        called twice appears twice. Empty when ``keep_calls=False``.

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


def capture_attention(
    model: nn.Module,
    modules: ModuleSelector = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    keep_calls: bool = True,
    detach: bool = True,
) -> contextlib.AbstractContextManager[AttentionCapture]:
    r"""Record the per-head attention weights of every attention computation in ``model``.

    A context manager. Inside the ``with`` block, every attention computation of ``model``
    records its weights

    .. math:: \operatorname{softmax}\!\left(Q_h K_h^\top \cdot \text{scale} + M\right)
              \quad\text{for every head } h,

    shape (N, H, L, S), into the :class:`AttentionCapture` the block yields. What counts
    as an attention computation:

    * a call of a :class:`torch.nn.MultiheadAttention` or :class:`attnlens.MultiheadAttention`
      (also when an ``nn.TransformerEncoderLayer``'s fused fast path computes it without
      calling the module); M merges ``attn_mask`` and ``key_padding_mask`` as torch does;
    * a call of :func:`torch.nn.functional.scaled_dot_product_attention` made while any
      module of ``model`` runs (GPT-style code, Hugging Face ``"sdpa"`` models, timm),
      also through a name imported with ``from torch.nn.functional import ...``. It is
      named after the innermost module whose ``forward`` made the call. M is the call's
      ``attn_mask`` and ``is_causal`` with SDPA's rules (:func:`attnlens.capture_sdpa.sdpa_weights`);
    * the attention function of a Hugging Face model in ``"eager"`` mode: the weights it
      returned.

    The model runs exactly as it would without the capture: same code path (fused kernels
    and fast paths included), same outputs, and every module returns to its caller what it
    returned before. One exception is asked for: a Hugging Face model called with
    ``output_attentions=True`` in its default sdpa mode now gets the weights in
    ``outputs.attentions`` (computed beside the kernel) instead of an empty tuple.

    Parameters
    ----------
    model : torch.nn.Module
        Any model: a stock ``nn.Transformer*``, a Hugging Face or timm model, a GPT-style
        model calling SDPA, or one attention module. It is not modified beyond the block.
        A ``torch.compile``'d model is refused (see Raises).
    modules : str, iterable of str, callable or None, default None
        Which attention modules to capture. None: all. Strings are qualified names from
        ``model.named_modules()`` (e.g. ``"layers.0.self_attn"``) or :mod:`fnmatch`
        patterns (``"layers.*.self_attn"``), matched against :attr:`AttentionCapture.names`;
        each must match at least one of them, or name exactly a module of the model that is
        not a stock ``torch.nn`` layer (a module calling SDPA under another class name). A
        callable is called as ``modules(name, module)`` for every attention module and every
        module making an SDPA call, and returns whether to capture it.
    device : torch.device or str, optional
        Move the recorded weights there (e.g. ``"cpu"`` to keep GPU memory free).
        Default: leave them where they were computed.
    dtype : torch.dtype, optional
        Store the weights in this floating dtype. Default: the dtype of the computation
        (the module's, e.g. bfloat16).
    keep_calls : bool, default True
        Keep every call's weights in :attr:`AttentionCapture.calls`. With False only the
        most recent weights of each module are kept (``weights``), which bounds the memory
        when the model runs many times inside the block.
    detach : bool, default True
        Compute the weights outside autograd. With False, and gradients enabled, the
        weights are part of the autograd graph of the model's inputs and parameters (for
        gradient-weighted attention maps, say).

    Returns
    -------
    contextlib.AbstractContextManager of AttentionCapture
        Use it in a ``with`` statement, once: it yields the :class:`AttentionCapture`,
        filled in as the model runs.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``, ``modules`` is not a string, an iterable of
        strings or a callable, or ``dtype`` is not a floating ``torch.dtype``.
    ValueError
        If ``model`` has nothing that can be captured (no ``nn.MultiheadAttention``, no
        Hugging Face model, no module that looks like attention, or only modules known to
        write their softmax by hand, such as timm's with fused attention off); if a name or
        pattern in ``modules`` matches none, the selection is empty, ``device`` is not a
        valid device, or ``model`` (or a module in it) is compiled with ``torch.compile``.
    RuntimeError
        When the same context manager is entered a second time.

    Warns
    -----
    RuntimeWarning
        When a subclass of ``nn.TransformerEncoderLayer`` with its own ``forward`` runs
        without calling its ``self_attn`` (presumably through torch's fused fast path): its
        weights could not be recorded for that call. When the model ran inside
        ``torch.func`` transforms (``vmap``, ``grad``...): those calls are not recorded.
        When the model ran inside the block but nothing could be recorded.

    See Also
    --------
    attnlens.capture_sdpa.sdpa_weights : The weights of one SDPA call.

    Notes
    -----
    **Promises.** (1) Outputs unchanged: the model's outputs are bit for bit those of the
    uncaptured run, in eval and training mode, on every device and dtype. (2) Callers'
    returns unchanged, except ``output_attentions=True`` of Hugging Face sdpa models
    (above). (3) Nothing left behind: on exit, also after an exception or when captures
    are exited in another order than they were entered, the model and torch are exactly
    as before. A ``copy.deepcopy`` or ``torch.save`` of the model made inside the block is
    an independent, clean model. Calls from several threads are each recorded with their
    own inputs.

    **How.** Nothing of the model is replaced or hooked: the capture sets the private
    per-instance slot that ``Module.__call__`` reserves for ``module.compile()``
    (``_compiled_call_impl``, which ``deepcopy`` and pickling leave out) to a dispatcher
    that keeps track of which module runs, and calls the module's usual
    ``Module._call_impl``. A module hook would turn off ``nn.TransformerEncoderLayer``'s
    fused fast path; a global setting would affect other models. SDPA calls are seen
    through a :class:`torch.overrides.TorchFunctionMode`, active on a thread only while
    the model runs there, and suspended while ``nn.MultiheadAttention`` and the stock
    ``nn.Transformer*`` layers run: an active mode would turn their fast paths off.

    **What is recorded for nn.MultiheadAttention.** The weights torch's
    ``need_weights=True, average_attn_weights=False`` path returns for the same call,
    equal up to float rounding; ``bias_k`` and ``add_zero_attn`` each add a key column.
    ``is_causal`` is only a hint in torch: the weights follow ``attn_mask``, as torch's
    weights path does. A query row whose keys are all masked is NaN, as in torch's
    weights path. With nested-tensor input (``nn.TransformerEncoder`` in eval mode under
    ``no_grad`` with a ``src_key_padding_mask``) the weights are still (N, H, L, L): the
    columns of padded keys and the rows of padded queries are 0.

    **What is recorded for SDPA.** ``softmax(q kᵀ · scale + mask)`` with SDPA's rules
    (bool masks keep True, float masks are added, ``is_causal`` is aligned at the top left
    when L != S, ``enable_gqa`` gives weights per query head), shape (..., H, L, S) as the
    call's leading dimensions. A query row whose keys are all masked out is all **zeros**:
    SDPA's output for it is zero, and ``weights @ v`` reproduces it.

    **Training mode.** The recorded weights are the probabilities *before dropout* (each
    row sums to 1): torch applies a random dropout mask that cannot be reproduced beside
    the model. Hugging Face eager models are the exception: their attention function
    returns the weights after dropout, and those are recorded.

    **What is not recorded.** Calls inside ``torch.func`` transforms (a warning says so);
    the recomputation of a checkpointed forward (``torch.utils.checkpoint``) during
    backward, which is not a new call; attention written out by hand outside Hugging Face
    (timm with fused attention off, custom softmax code); Hugging Face's ``flash_attention``
    and ``flex_attention`` implementations.

    **Refused.** A model compiled with ``torch.compile`` (an ``OptimizedModule``, or
    ``module.compile()``): the compiler would trace the capture too, and the compiled model
    would round differently. Capture the uncompiled model (``compiled._orig_mod``) and
    call that one inside the block.

    **Cost.** An ``nn.MultiheadAttention`` capture recomputes the Q and K projections
    beside the fused kernel; an SDPA capture only computes ``q kᵀ`` and a softmax, from the
    kernel's own q and k. ``nox -s bench`` measures both.

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

    A GPT-style block that calls SDPA itself:

    >>> import torch.nn.functional as F
    >>> class CausalSelfAttention(nn.Module):
    ...     def __init__(self, d: int = 16, heads: int = 4) -> None:
    ...         super().__init__()
    ...         self.heads, self.qkv = heads, nn.Linear(d, 3 * d)
    ...     def forward(self, x: torch.Tensor) -> torch.Tensor:
    ...         n, length, d = x.shape
    ...         q, k, v = self.qkv(x).split(d, dim=2)  # 3 x (N, L, E)
    ...         q, k, v = (t.view(n, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
    ...         y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (N, H, L, D)
    ...         return y.transpose(1, 2).reshape(n, length, d)  # (N, L, E)
    >>> gpt = nn.Sequential(CausalSelfAttention(), CausalSelfAttention())
    >>> with capture_attention(gpt) as cap:
    ...     _ = gpt(x)
    >>> cap.names, cap.weights["1"].shape
    (('0', '1'), torch.Size([3, 4, 7, 7]))
    >>> bool((cap.weights["1"][0, 0].triu(1) == 0).all())  # causal
    True

    Only some modules, stored on the CPU in float16:

    >>> with capture_attention(encoder, "layers.1.*", device="cpu", dtype=torch.float16) as cap:
    ...     _ = encoder(x)
    >>> list(cap.weights), cap.weights["layers.1.self_attn"].dtype
    (['layers.1.self_attn'], torch.float16)

    A Hugging Face model keeps its habits: ``output_attentions=True`` works in sdpa mode
    (``transformers`` is not needed by attnlens itself)::

        model = BertModel.from_pretrained(path)  # attn_implementation="sdpa", the default
        with capture_attention(model) as cap:
            outputs = model(**inputs, output_attentions=True)
        outputs.attentions[0].shape  # (N, H, L, S), also what BertViz reads
        cap.weights["encoder.layer.0.attention.self"]  # the same tensor values
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__qualname__}")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype: expected None or a floating torch.dtype, got {dtype!r}")
    target_device = _check_device(device)
    _refuse_compiled(model)
    names, selector = _select(model, modules)
    return _CaptureBlock(
        model,
        AttentionCapture(names),
        selector,
        device=target_device,
        dtype=dtype,
        keep_calls=keep_calls,
        detach=detach,
    )


# -- arguments ---------------------------------------------------------------------------------


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


def _refuse_compiled(model: nn.Module) -> None:
    for name, module in model.named_modules():
        compiled = module.__dict__.get("_compiled_call_impl")
        if compiled is not None and not isinstance(compiled, _Dispatcher):
            where = f"module {name!r}" if name else "model"
            raise ValueError(
                f"model: the {where} is compiled (module.compile()); capture_attention cannot "
                "keep a compiled model's outputs unchanged. Capture an uncompiled copy, or "
                "compile after the capture."
            )
        if type(module).__name__ == "OptimizedModule" and hasattr(module, "_orig_mod"):
            where = f"module {name!r} is" if name else "model is"
            raise ValueError(
                f"model: the {where} compiled with torch.compile; capture_attention cannot keep "
                "a compiled model's outputs unchanged (the compiler would trace the capture "
                "too). Capture and call the uncompiled model instead: "
                f"capture_attention({name or 'model'}._orig_mod)."
            )


def _looks_like_attention(module: nn.Module) -> bool:
    return bool(_LOOKS_LIKE_ATTENTION.search(type(module).__name__))


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The attention modules of ``model`` that can be captured, in the model's order."""
    mha = attention_classes()
    named = list(model.named_modules())
    # modules inside an nn.MultiheadAttention or containing one are not candidates themselves
    contains_mha = {id(m) for _, m in named if any(isinstance(c, mha) for c in m.modules())}
    found: list[tuple[str, nn.Module]] = []
    for name, module in named:
        if isinstance(module, mha) or (
            _looks_like_attention(module)
            and id(module) not in contains_mha
            and not any(
                _looks_like_attention(child) for child in module.modules() if child is not module
            )
        ):
            found.append((name, module))
    return found


def _writes_softmax_by_hand(module: nn.Module) -> bool:
    """timm's attention with its fused (SDPA) path turned off: no reliable hook exists."""
    return getattr(module, "fused_attn", None) is False


def _select(
    model: nn.Module, modules: ModuleSelector
) -> tuple[tuple[str, ...], Callable[[str, nn.Module], bool]]:
    """The names to list in ``AttentionCapture.names`` and a predicate on (name, module)."""
    candidates = _candidates(model)
    capturable = [(n, m) for n, m in candidates if not _writes_softmax_by_hand(m)]
    has_hf = any(capture_hf.is_hugging_face_module(m) for m in model.modules())
    if not capturable and not has_hf and modules is None:
        hand = [n for n, m in candidates if _writes_softmax_by_hand(m)]
        looked = (
            f"these modules look like attention but compute their softmax by hand "
            f"(fused_attn=False), which has no reliable hook: {hand}"
            if hand
            else "no module looks like attention (no class name with 'Attention' or 'Attn')"
        )
        raise ValueError(
            f"model: found no attention to capture in {type(model).__qualname__}: {looked}. "
            f"Supported are {SUPPORTED}. A module that calls scaled_dot_product_attention "
            "under another class name can be named with modules=."
        )
    if modules is None:
        return tuple(n for n, _ in capturable), _select_all
    if callable(modules):
        chooses = modules
        selected = [(n, m) for n, m in capturable if chooses(n, m)]
        if not selected and capturable:
            raise ValueError(
                "modules: the predicate selected none of the model's attention modules "
                f"{[n for n, _ in capturable]}"
            )
        return tuple(n for n, _ in selected), chooses
    patterns = _patterns(modules)
    names = [n for n, _ in capturable]
    all_modules = dict(model.named_modules())
    chosen: set[str] = set()
    extra: set[str] = set()
    for pattern in patterns:
        matched = {n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)}
        if matched:
            chosen |= matched
            continue
        if pattern in all_modules:
            module = all_modules[pattern]
            if type(module).__module__.startswith("torch.") or _writes_softmax_by_hand(module):
                raise ValueError(
                    f"modules: {pattern!r} is a {type(module).__qualname__}, not an attention "
                    f"module; the model's attention modules are {names}"
                )
            extra.add(pattern)  # a module of the user's that may call SDPA
            continue
        raise ValueError(
            f"modules: no attention module matches {pattern!r}; the model's attention "
            f"modules are {names}"
        )
    listed = tuple(n for n in all_modules if n in chosen or n in extra)

    def predicate(name: str, module: nn.Module) -> bool:  # noqa: ARG001 (a selector's signature)
        return name in chosen or name in extra

    return listed, predicate


def _select_all(name: str, module: nn.Module) -> bool:  # noqa: ARG001 (a selector's signature)
    return True


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


# -- the context manager -----------------------------------------------------------------------


class _CaptureBlock(contextlib.AbstractContextManager["AttentionCapture"]):
    """What :func:`capture_attention` returns: enter it once."""

    def __init__(
        self,
        model: nn.Module,
        capture: AttentionCapture,
        selector: Callable[[str, nn.Module], bool],
        *,
        device: torch.device | None,
        dtype: torch.dtype | None,
        keep_calls: bool,
        detach: bool,
    ) -> None:
        self._session = _Session(
            model,
            capture,
            selector,
            device=device,
            dtype=dtype,
            keep_calls=keep_calls,
            detach=detach,
        )
        self._state = "new"

    def __enter__(self) -> AttentionCapture:
        if self._state != "new":
            raise RuntimeError(
                "capture_attention: this capture has already been entered; each with block "
                "needs its own capture_attention(model, ...) call"
            )
        self._state = "entered"
        self._session.start()
        return self._session.capture

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._state = "exited"
        self._session.stop(warn=exc_type is None)


# -- what runs while a capture is open ---------------------------------------------------------


class _ThreadState(threading.local):
    """What one thread is running: modules of captured models, encoders, HF frames."""

    def __init__(self) -> None:
        self.stack: list[nn.Module] = []  # modules running now, innermost last
        self.attention_calls: dict[int, int] = {}  # id(MHA) -> calls seen on this thread
        self.encoder_lengths: list[int | None] = []  # input length of each running encoder
        self.hf_frames: list[list[torch.Tensor]] = []  # open Hugging Face attention calls


_THREAD = _ThreadState()
_LOCK = threading.RLock()
_SESSIONS: tuple[_Session, ...] = ()  # open captures, all threads
_DISPATCHERS: dict[int, _Dispatcher] = {}  # id(module) -> its dispatcher
_DISPATCHER_USERS: dict[int, int] = {}  # id(module) -> number of open captures using it

_STOCK_LAYERS: tuple[type[nn.Module], ...] = (
    nn.TransformerEncoderLayer,
    nn.TransformerEncoder,
    nn.TransformerDecoderLayer,
    nn.TransformerDecoder,
    nn.Transformer,
)


class _Dispatcher:
    """``module._compiled_call_impl`` while captures are open: track, run, record."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        mha = attention_classes()
        self.is_attention = isinstance(module, mha)
        self.is_layer = isinstance(module, nn.TransformerEncoderLayer)
        self.is_encoder = isinstance(module, nn.TransformerEncoder)
        # an active torch function mode would turn these modules' fast paths off
        self.suspends_mode = isinstance(module, (*mha, *_STOCK_LAYERS))
        if self.is_attention:
            self.bind = binder_for(type(module).forward, ("query", "key"), mha[0].forward)
        elif self.is_layer:
            self.bind = binder_for(
                type(module).forward,
                ("src", "src_mask", "src_key_padding_mask"),
                nn.TransformerEncoderLayer.forward,
            )
            self.stock_layer = type(module).forward is nn.TransformerEncoderLayer.forward
        elif self.is_encoder:
            self.bind = binder_for(type(module).forward, ("src",), nn.TransformerEncoder.forward)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = _THREAD
        module = self.module
        stack = state.stack
        outermost = not stack
        stack.append(module)
        try:
            if outermost and _SESSIONS:
                for session in _SESSIONS:
                    if id(module) in session.names:
                        session.ran = True
                with SDPACallMode(_on_sdpa_call):
                    return self._run(state, args, kwargs)
            return self._run(state, args, kwargs)
        finally:
            stack.pop()

    def _run(self, state: _ThreadState, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        module = self.module
        if not self.suspends_mode:
            return _call(module, args, kwargs)
        with _mode_suspended():
            if self.is_attention:
                calls = state.attention_calls
                calls[id(module)] = calls.get(id(module), 0) + 1
                result = _call(module, args, kwargs)
                _record_attention_call(module, self.bind(args, kwargs), result, state)
                return result
            if self.is_layer:
                self_attn = module.self_attn
                before = state.attention_calls.get(id(self_attn), 0)
                result = _call(module, args, kwargs)
                if state.attention_calls.get(id(self_attn), 0) == before:
                    # self_attn was not called: the fused _transformer_encoder_layer_fwd ran
                    self._record_fast_path(args, kwargs, state)
                return result
            if self.is_encoder:
                src = self.bind(args, kwargs)["src"]
                length = None
                if isinstance(src, torch.Tensor) and not src.is_nested and src.dim() == 3:
                    first_layer: Any = module.layers[0]  # type: ignore[index]
                    batch_first = bool(getattr(first_layer.self_attn, "batch_first", False))
                    length = src.size(1 if batch_first else 0)
                state.encoder_lengths.append(length)
                try:
                    return _call(module, args, kwargs)
                finally:
                    state.encoder_lengths.pop()
            return _call(module, args, kwargs)

    def _record_fast_path(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], state: _ThreadState
    ) -> None:
        layer = self.module
        assert isinstance(layer, nn.TransformerEncoderLayer)
        for session in _SESSIONS:
            name = session.attention_name(layer.self_attn)
            if name is None or not session.may_record():
                continue
            if not self.stock_layer:
                warnings.warn(
                    f"capture_attention: {type(layer).__qualname__} overrides forward and did "
                    f"not call its self_attn {name!r} (torch's fused fast path?); the weights "
                    "of this call were not recorded. torch.backends.mha.set_fastpath_enabled"
                    "(False) around the call makes it take the regular path.",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            full_length = state.encoder_lengths[-1] if state.encoder_lengths else None
            with session.grad_mode():
                weights = fast_path_weights(layer, self.bind(args, kwargs), full_length)
            session.record(name, weights)


def _call(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """What ``Module.__call__`` does when no compiled call is set: hooks, then forward."""
    return module._call_impl(*args, **kwargs)  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def _mode_suspended() -> Iterator[None]:
    """Take our SDPA mode off this thread's stack while a stock attention layer runs."""
    if isinstance(torch.overrides._get_current_function_mode(), SDPACallMode):  # type: ignore[no-untyped-call]
        with torch.overrides._pop_mode_temporarily():
            yield
    else:
        yield


def _record_attention_call(
    module: nn.Module, call: dict[str, Any], result: Any, state: _ThreadState
) -> None:
    for session in _SESSIONS:
        name = session.attention_name(module)
        if name is None or not session.may_record():
            continue
        full_length = state.encoder_lengths[-1] if state.encoder_lengths else None
        with session.grad_mode():
            weights = weights_of_call(module, call, result, full_length)
        session.record(name, weights)


def _on_sdpa_call(arguments: dict[str, Any], output: torch.Tensor) -> None:  # noqa: ARG001
    """An SDPA call made while a captured model runs on this thread."""
    state = _THREAD
    targets: list[tuple[_Session, str]] = []
    for session in _SESSIONS:
        name = session.sdpa_name(state.stack)
        if name is not None and session.may_record():
            targets.append((session, name))
    if not targets and not state.hf_frames:
        return
    detach = all(session.detach for session, _ in targets) if targets else True
    with torch.no_grad() if detach else contextlib.nullcontext():
        weights = sdpa_weights(
            arguments["query"],
            arguments["key"],
            attn_mask=arguments["attn_mask"],
            is_causal=bool(arguments["is_causal"]),
            scale=arguments["scale"],
            enable_gqa=bool(arguments["enable_gqa"]),
        )
    if state.hf_frames:
        state.hf_frames[-1].append(weights)
    for session, name in targets:
        session.record(name, weights)


def _on_hf_weights(module: nn.Module, weights: torch.Tensor) -> None:
    """The weights a Hugging Face eager attention function returned."""
    for session in _SESSIONS:
        name = session.attention_name(module)
        if name is None:
            name = session.sdpa_name(_THREAD.stack)
        if name is not None and session.may_record():
            session.record(name, weights)


def _open_hf_frame() -> list[torch.Tensor]:
    frame: list[torch.Tensor] = []
    _THREAD.hf_frames.append(frame)
    return frame


def _close_hf_frame() -> None:
    _THREAD.hf_frames.pop()


class _Session:
    """One open capture: which modules it names, where its records go."""

    def __init__(
        self,
        model: nn.Module,
        capture: AttentionCapture,
        selector: Callable[[str, nn.Module], bool],
        *,
        device: torch.device | None,
        dtype: torch.dtype | None,
        keep_calls: bool,
        detach: bool,
    ) -> None:
        self.model = model
        self.capture = capture
        self.selector = selector
        self.device = device
        self.dtype = dtype
        self.keep_calls = keep_calls
        self.detach = detach
        self.active = False
        self.modules: list[nn.Module] = []
        self.names: dict[int, str] = {}  # id(module) -> qualified name, every module
        self.decisions: dict[int, bool] = {}  # id(module) -> selected?
        self.mha = attention_classes()
        self.uses_hf = False
        self.warned_functorch = False
        self.ran = False  # a module of the model ran inside the block

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> None:
        global _SESSIONS  # noqa: PLW0603
        for name, module in self.model.named_modules():
            if id(module) not in self.names:
                self.names[id(module)] = name
                self.modules.append(module)
        with _LOCK:
            for module in self.modules:
                key = id(module)
                if key not in _DISPATCHERS:
                    dispatcher = _Dispatcher(module)
                    _DISPATCHERS[key] = dispatcher
                    module.__dict__["_compiled_call_impl"] = dispatcher
                _DISPATCHER_USERS[key] = _DISPATCHER_USERS.get(key, 0) + 1
            if any(capture_hf.is_hugging_face_module(m) for m in self.modules):
                self.uses_hf = capture_hf.install(_on_hf_weights, _open_hf_frame, _close_hf_frame)
            self.active = True
            _SESSIONS = (*_SESSIONS, self)

    def stop(self, *, warn: bool) -> None:
        global _SESSIONS  # noqa: PLW0603
        with _LOCK:
            self.active = False
            _SESSIONS = tuple(s for s in _SESSIONS if s is not self)
            for module in self.modules:
                key = id(module)
                users = _DISPATCHER_USERS.get(key, 0) - 1
                if users > 0:
                    _DISPATCHER_USERS[key] = users
                    continue
                _DISPATCHER_USERS.pop(key, None)
                dispatcher = _DISPATCHERS.pop(key, None)
                if module.__dict__.get("_compiled_call_impl") is dispatcher:
                    del module.__dict__["_compiled_call_impl"]
            if self.uses_hf:
                capture_hf.uninstall()
                self.uses_hf = False
        if (
            warn
            and self.ran
            and not self.warned_functorch
            and not self.capture.calls
            and not self.capture.weights
        ):
            warnings.warn(
                f"capture_attention: {type(self.model).__qualname__} ran inside the block but "
                f"no attention was recorded. Supported are {SUPPORTED}; modules that look like "
                f"attention: {list(self.capture.names)}.",
                RuntimeWarning,
                stacklevel=3,
            )

    # -- naming and selecting ------------------------------------------------------------------

    def _selected(self, module: nn.Module) -> bool:
        key = id(module)
        decision = self.decisions.get(key)
        if decision is None:
            decision = bool(self.selector(self.names[key], module))
            self.decisions[key] = decision
        return decision

    def attention_name(self, module: nn.Module) -> str | None:
        """The name of an nn.MultiheadAttention (or HF attention module) if captured."""
        name = self.names.get(id(module))
        if name is None or not self._selected(module):
            return None
        return name

    def sdpa_name(self, stack: list[nn.Module]) -> str | None:
        """The innermost running module of this model, if selected."""
        for module in reversed(stack):
            if id(module) in self.names:
                return self.names[id(module)] if self._selected(module) else None
        return None

    # -- recording -----------------------------------------------------------------------------

    def may_record(self) -> bool:
        """False inside torch.func transforms and during a backward recomputation."""
        if not self.active:
            return False
        if torch._C._functorch.peek_interpreter_stack() is not None:
            if not self.warned_functorch:
                self.warned_functorch = True
                warnings.warn(
                    "capture_attention: the model runs inside a torch.func transform (vmap, "
                    "grad, ...); attention computed there is not recorded. Call the model "
                    "outside the transform to capture it.",
                    RuntimeWarning,
                    stacklevel=5,
                )
            return False
        # activation checkpointing recomputes the forward during backward: not a new call
        return bool(torch._C._current_graph_task_id() == -1)

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
