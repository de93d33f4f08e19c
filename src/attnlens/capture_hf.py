"""Hugging Face models: their attention-function registry, seen from the inside.

Every Hugging Face ``transformers`` model (5.x) picks its attention function with
``ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)``
and calls it as ``function(module, query, key, value, attention_mask, **kwargs)``, which returns
``(attn_output, attn_weights)``: the weights for ``"eager"``, ``None`` for ``"sdpa"``.
While :func:`install` is in force, every function handed out that way is wrapped:

* the wrapper calls the function unchanged (same arguments, same kernel, same output);
* the weights an eager function returns are reported to ``on_weights(module, weights)``;
* for a function that returns no weights (``"sdpa"``), the weights computed beside its SDPA
  call (collected by :mod:`attnlens.capture` in the frame this module opens) are returned
  to the model when it asked for them with ``output_attentions=True``, so that Hugging
  Face's own ``outputs.attentions`` is filled, also in sdpa mode.

This module never imports ``transformers`` by itself: :func:`install` is only called for a
model whose modules come from it, i.e. when it is imported already.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["install", "is_hugging_face_module", "uninstall"]

#: on_weights(module, weights), open_frame() -> list, close_frame() -> None
_Hooks = tuple[
    Callable[[nn.Module, torch.Tensor], None],
    Callable[[], list[torch.Tensor]],
    Callable[[], None],
]

_LOCK = threading.Lock()
_USERS = 0
_ORIGINAL: Any = None
_HOOKS: _Hooks | None = None


def is_hugging_face_module(module: nn.Module) -> bool:
    """Whether ``module``'s class comes from the ``transformers`` package."""
    return type(module).__module__.startswith("transformers.")


def _interface_class() -> Any:
    modeling_utils = sys.modules.get("transformers.modeling_utils")
    return getattr(modeling_utils, "AttentionInterface", None)


def install(
    on_weights: Callable[[nn.Module, torch.Tensor], None],
    open_frame: Callable[[], list[torch.Tensor]],
    close_frame: Callable[[], None],
) -> bool:
    """Wrap the attention functions Hugging Face models look up (reference counted).

    Parameters
    ----------
    on_weights : callable
        Called as ``on_weights(module, weights)`` with the (N, H, L, S) weights an attention
        function returned.
    open_frame, close_frame : callable
        Called around each attention function: ``open_frame()`` returns a list to which
        the weights computed beside an SDPA call inside it are appended.

    Returns
    -------
    bool
        False when ``transformers`` (or its ``AttentionInterface``) is not imported.
    """
    global _USERS, _ORIGINAL, _HOOKS  # noqa: PLW0603 (one registry per process)
    interface = _interface_class()
    if interface is None:
        return False
    with _LOCK:
        if _USERS == 0:
            _ORIGINAL = interface.__dict__["get_interface"]
            _HOOKS = (on_weights, open_frame, close_frame)
            interface.get_interface = _get_interface
        _USERS += 1
    return True


def uninstall() -> None:
    """Undo one :func:`install`; the last one restores the registry exactly."""
    global _USERS, _ORIGINAL, _HOOKS  # noqa: PLW0603
    with _LOCK:
        if _USERS == 0:
            return
        _USERS -= 1
        if _USERS == 0:
            interface = _interface_class()
            if interface is not None:
                interface.get_interface = _ORIGINAL
            _ORIGINAL = _HOOKS = None
            _wrapped.cache_clear()


def _get_interface(self: Any, attn_implementation: str | None, default: Callable[..., Any]) -> Any:
    original = _ORIGINAL
    if original is None:  # uninstalled while a model was running
        return type(self).get_interface(self, attn_implementation, default)
    function = original(self, attn_implementation, default)
    return _wrapped(function) if callable(function) else function


@functools.lru_cache(maxsize=64)
def _wrapped(function: Callable[..., Any]) -> Callable[..., Any]:
    # Hugging Face's sdpa function reads output_attentions only to log that it returns no
    # weights; under the capture it does return them, so it is not told.
    quiet = getattr(function, "__module__", "") == "transformers.integrations.sdpa_attention"

    @functools.wraps(function)
    def attention(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        hooks = _HOOKS
        if hooks is None:
            return function(module, *args, **kwargs)
        on_weights, open_frame, close_frame = hooks
        frame = open_frame()
        try:
            if quiet and "output_attentions" in kwargs:
                passed = {k: v for k, v in kwargs.items() if k != "output_attentions"}
                result = function(module, *args, **passed)
            else:
                result = function(module, *args, **kwargs)
        finally:
            close_frame()
        if not (isinstance(result, tuple) and len(result) == 2):
            return result
        output, weights = result
        if isinstance(weights, torch.Tensor):
            on_weights(module, weights)  # eager: the model computed them itself
            return result
        if weights is None and frame and _wants_weights(module, kwargs):
            return output, frame[-1]  # sdpa: the weights computed beside the kernel
        return result

    return attention


def _wants_weights(module: nn.Module, kwargs: dict[str, Any]) -> bool:
    """Whether the model asked for attention weights (``output_attentions=True``)."""
    if "output_attentions" in kwargs:
        return bool(kwargs["output_attentions"])
    # Models that take output_attentions themselves (GPT-2) tell through Hugging Face's
    # per-context collector of outputs, which holds an "attentions" list when asked.
    capturing = sys.modules.get("transformers.utils.output_capturing")
    collector = getattr(capturing, "_active_collector", None)
    if collector is not None:
        outputs = collector.get()
        if isinstance(outputs, dict):
            return "attentions" in outputs or "cross_attentions" in outputs
    config = getattr(module, "config", None)
    return bool(getattr(config, "output_attentions", False))
