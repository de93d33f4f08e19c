"""attnlens: open up attention in PyTorch.

Exact, readable re-implementations of PyTorch's attention, per-head weight capture from
unmodified models, attention rollout, and drawings of the heads.

Public names are imported lazily: ``import attnlens`` does not import matplotlib until a
drawing function is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "scaled_dot_product_attention": "attention",
    "InProjection": "projections",
    "split_in_proj": "projections",
    "split_heads": "projections",
    "merge_heads": "projections",
    "multi_head_attention_forward": "functional",
    "MultiheadAttention": "multihead",
    "PaperMultiheadAttention": "paper",
    "capture_attention": "capture",
    "AttentionCapture": "capture",
    "sdpa_weights": "capture_sdpa",
    "attention_rollout": "rollout",
    "plot_attention": "plot",
    "plot_heads": "plot",
    "plot_layers": "plot",
    "head_view_html": "headview",
    "HeadView": "headview",
    "model_view_html": "modelview",
    "ModelView": "modelview",
    "neuron_view_html": "neuronview",
    "NeuronView": "neuronview",
    "use_cjk_font": "fonts",
    "BertEncoder": "pretrained",
    "load_minilm": "pretrained",
}

__all__ = [
    "AttentionCapture",
    "BertEncoder",
    "HeadView",
    "InProjection",
    "ModelView",
    "MultiheadAttention",
    "NeuronView",
    "PaperMultiheadAttention",
    "__version__",
    "attention_rollout",
    "capture_attention",
    "head_view_html",
    "load_minilm",
    "merge_heads",
    "model_view_html",
    "multi_head_attention_forward",
    "neuron_view_html",
    "plot_attention",
    "plot_heads",
    "plot_layers",
    "scaled_dot_product_attention",
    "sdpa_weights",
    "split_heads",
    "split_in_proj",
    "use_cjk_font",
]
assert set(__all__) == {"__version__", *_EXPORTS}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'attnlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"attnlens.{module_name}"), name)
    globals()[name] = value  # cache: later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from attnlens.attention import scaled_dot_product_attention
    from attnlens.capture import AttentionCapture, capture_attention
    from attnlens.capture_sdpa import sdpa_weights
    from attnlens.fonts import use_cjk_font
    from attnlens.functional import multi_head_attention_forward
    from attnlens.headview import HeadView, head_view_html
    from attnlens.modelview import ModelView, model_view_html
    from attnlens.multihead import MultiheadAttention
    from attnlens.neuronview import NeuronView, neuron_view_html
    from attnlens.paper import PaperMultiheadAttention
    from attnlens.plot import plot_attention, plot_heads, plot_layers
    from attnlens.pretrained import BertEncoder, load_minilm
    from attnlens.projections import InProjection, merge_heads, split_heads, split_in_proj
    from attnlens.rollout import attention_rollout
