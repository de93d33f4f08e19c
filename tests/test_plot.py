"""Drawing: figures returned, shapes checked, tokens as labels, Japanese rendered."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from attnlens.fonts import CJK_FONT_FAMILY
from attnlens.plot import plot_attention, plot_heads, plot_layers

EN = ["[CLS]", "the", "movie", "was", "not", "very", "good"]
JA = ["[CLS]", "この", "映画", "は", "とても", "良", "く", "なかった"]


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    """Start from rcdefaults (no use_cjk_font), close every figure afterwards."""
    mpl.rcdefaults()
    yield
    plt.close("all")
    mpl.rcdefaults()


def _weights(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=generator), dim=-1)


def _render(fig: Figure) -> None:
    """Render with Agg under warnings-as-errors (a missing glyph is a UserWarning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(io.BytesIO(), format="png", dpi=50)


def _ticklabels(ax: plt.Axes, axis: str) -> list[str]:
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [label.get_text() for label in labels]


# ------------------------------------------------------------------ plot_attention


def test_plot_attention_returns_figure_with_token_labels() -> None:
    fig = plot_attention(_weights(7, 7), EN)
    assert isinstance(fig, Figure)
    ax, _colorbar = fig.axes
    assert _ticklabels(ax, "y") == EN
    assert _ticklabels(ax, "x") == EN
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), _weights(7, 7).numpy(), rtol=1e-6)
    assert image.norm.vmin == 0.0
    _render(fig)


def test_plot_attention_cross_attention_and_annotations() -> None:
    weights = _weights(3, 5)
    fig = plot_attention(weights, EN[:3], EN[2:], annotate=True, fmt=".1f", title="$A$")
    ax = fig.axes[0]
    assert _ticklabels(ax, "x") == EN[2:]
    texts = [text.get_text() for text in ax.texts]
    assert len(texts) == 15
    assert texts[0] == format(float(weights[0, 0]), ".1f")
    assert ax.get_title() == "$A$"
    _render(fig)


def test_plot_attention_into_given_axes_and_array_input() -> None:
    fig, (left, right) = plt.subplots(1, 2)
    returned = plot_attention(np.full((2, 2), 0.5), ["a", "b"], ax=right, colorbar=False)
    assert returned is fig
    assert right.get_images()
    assert not left.get_images()
    assert len(fig.axes) == 2  # no colorbar added


def test_plot_attention_accepts_grad_bfloat16_and_none_tokens() -> None:
    weights = _weights(3, 4).to(torch.bfloat16).requires_grad_()
    fig = plot_attention(weights, None, None)
    assert _ticklabels(fig.axes[0], "y") == ["0", "1", "2"]
    assert _ticklabels(fig.axes[0], "x") == ["0", "1", "2", "3"]


def test_plot_attention_dollar_tokens_are_not_mathtext() -> None:
    tokens = ["$x$", "$", "a$b$c"]
    fig = plot_attention(_weights(3, 3), tokens)
    assert _ticklabels(fig.axes[0], "x") == [r"\$x\$", r"\$", r"a\$b\$c"]
    _render(fig)


def test_plot_attention_errors() -> None:
    with pytest.raises(ValueError, match=r"weights: expected a 2-D array of shape \(L, S\)"):
        plot_attention(_weights(2, 3, 3), EN[:3])
    with pytest.raises(ValueError, match=r"query_tokens: expected 7 tokens .*got 6"):
        plot_attention(_weights(7, 7), EN[:6])
    with pytest.raises(ValueError, match=r"key_tokens: expected 5 tokens .*got 7"):
        plot_attention(_weights(3, 5), EN[:3], EN)
    with pytest.raises(
        ValueError, match=r"key_tokens: required when L != S, the weights have \(L, S\) = \(3, 5\)"
    ):
        plot_attention(_weights(3, 5), EN[:3])
    with pytest.raises(TypeError, match="query_tokens: expected a sequence of str, got str"):
        plot_attention(_weights(3, 3), "abc")
    with pytest.raises(TypeError, match=r"weights: expected a torch\.Tensor or array"):
        plot_attention(object(), EN)  # type: ignore[arg-type]


# ------------------------------------------------------------------ plot_heads


def test_plot_heads_grid_shared_scale_one_colorbar() -> None:
    weights = _weights(6, 7, 7)
    fig = plot_heads(weights, EN)
    maps = [ax for ax in fig.axes if ax.get_images()]
    assert len(maps) == 6
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1
    assert len(fig.axes) == 8 + 1  # 2 x 4 grid (two hidden) + colorbar
    norms = {id(ax.get_images()[0].norm) for ax in maps}
    assert len(norms) == 1  # one colour scale for every head
    norm = maps[0].get_images()[0].norm
    assert (norm.vmin, norm.vmax) == (0.0, pytest.approx(float(weights.max())))
    assert [ax.get_title() for ax in maps] == [f"$h_{{{h}}}$" for h in range(1, 7)]
    # token labels on the outer axes only
    assert _ticklabels(maps[0], "y") == EN
    assert _ticklabels(maps[4], "y") == EN
    assert not maps[1].yaxis.majorTicks[0].label1.get_visible()
    assert not maps[0].xaxis.majorTicks[0].label1.get_visible()  # row 1 above row 2
    assert _ticklabels(maps[5], "x") == EN
    _render(fig)


def test_plot_heads_batched_with_batch_index_and_options() -> None:
    weights = _weights(2, 2, 3, 3)  # (N, H, L, S)
    fig = plot_heads(weights, JA[:3], batch_index=1, ncols=1, head_labels=["A", "B"], vmax=1)
    maps = [ax for ax in fig.axes if ax.get_images()]
    np.testing.assert_allclose(maps[1].get_images()[0].get_array(), weights[1, 1].numpy())
    assert [ax.get_title() for ax in maps] == ["A", "B"]
    assert maps[0].get_images()[0].norm.vmax == 1.0
    _render(fig)


def test_plot_heads_errors() -> None:
    with pytest.raises(ValueError, match=r"weights: expected a 3-D .*\(H, L, S\).*batch_index"):
        plot_heads(_weights(1, 2, 7, 7), EN)
    with pytest.raises(ValueError, match=r"weights: expected a 3-D array .*got shape \(7, 7\)"):
        plot_heads(_weights(7, 7), EN)
    with pytest.raises(ValueError, match=r"tokens: expected 7 tokens \(L = .*\), got 8"):
        plot_heads(_weights(2, 7, 7), JA)
    with pytest.raises(ValueError, match="head_labels: expected 2 labels, got 3"):
        plot_heads(_weights(2, 7, 7), EN, head_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"batch_index: expected an index in \[-1, 1\), got 1"):
        plot_heads(_weights(1, 2, 7, 7), EN, batch_index=1)


# ------------------------------------------------------------------ plot_layers


def test_plot_layers_query_row_view() -> None:
    weights = _weights(3, 4, 8, 8)  # (n_layers, H, L, S)
    fig = plot_layers(weights, JA)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 3
    for k, ax in enumerate(panels):
        # panel k: rows are heads, columns keys; values are the [CLS] rows of layer k
        np.testing.assert_allclose(ax.get_images()[0].get_array(), weights[k, :, 0, :].numpy())
        assert _ticklabels(ax, "y") == [f"$h_{{{h}}}$" for h in range(1, 5)]
        assert ax.get_ylabel() == f"$\\ell_{{{k + 1}}}$"
    assert _ticklabels(panels[-1], "x") == JA
    assert fig.get_suptitle() == "[CLS]"
    _render(fig)


def test_plot_layers_accepts_sequence_mapping_and_batches() -> None:
    layers = [_weights(2, 2, 8, 8, seed=k) for k in range(2)]  # (N, H, L, S) each
    mapping = {"layers.0.self_attn": layers[0], "layers.1.self_attn": layers[1]}
    fig = plot_layers(mapping, JA, query_index=-1, batch_index=0, layer_labels=["a", "b"])
    panels = [ax for ax in fig.axes if ax.get_images()]
    np.testing.assert_allclose(panels[1].get_images()[0].get_array(), layers[1][0, :, -1].numpy())
    assert [ax.get_ylabel() for ax in panels] == ["a", "b"]
    assert fig.get_suptitle() == "なかった"
    _render(fig)


def test_plot_layers_grid_view() -> None:
    weights = [_weights(2, 7, 7, seed=k) for k in range(3)]
    fig = plot_layers(weights, EN, query_index=None, title="$A$")
    maps = [ax for ax in fig.axes if ax.get_images()]
    assert len(maps) == 6
    np.testing.assert_allclose(maps[3].get_images()[0].get_array(), weights[1][1].numpy())
    assert fig.get_suptitle() == "$A$"
    _render(fig)


def test_plot_layers_errors() -> None:
    with pytest.raises(ValueError, match=r"weights_per_layer\[1\]: expected shape"):
        plot_layers([_weights(2, 7, 7), _weights(2, 6, 6)], EN)
    with pytest.raises(ValueError, match=r"weights_per_layer\[0\]: expected a 3-D"):
        plot_layers([_weights(7, 7)], EN)
    with pytest.raises(ValueError, match=r"query_index: expected an index in \[-7, 7\), got 7"):
        plot_layers(_weights(1, 2, 7, 7), EN, query_index=7)
    with pytest.raises(ValueError, match=r"tokens: expected 7 tokens"):
        plot_layers(_weights(1, 2, 7, 7), EN[:5])
    with pytest.raises(ValueError, match="weights_per_layer: expected at least one layer"):
        plot_layers([], EN)
    with pytest.raises(ValueError, match="layer_labels: expected 1 labels, got 2"):
        plot_layers(_weights(1, 2, 7, 7), EN, layer_labels=["a", "b"])


# ------------------------------------------------------------------ Japanese glyphs


@pytest.mark.parametrize("draw", ["attention", "heads", "layers", "grid"])
def test_japanese_tokens_render_without_use_cjk_font(draw: str) -> None:
    # use_cjk_font() was never called (rcdefaults): the plot functions apply the fallback
    assert CJK_FONT_FAMILY not in mpl.rcParams["font.family"]
    weights = _weights(2, 2, 8, 8)
    if draw == "attention":
        fig = plot_attention(weights[0, 0], JA, annotate=True)
    elif draw == "heads":
        fig = plot_heads(weights[0], JA)
    elif draw == "layers":
        fig = plot_layers(weights, JA)
    else:
        fig = plot_layers(weights, JA, query_index=None)
    labels = [label for ax in fig.axes for label in ax.get_xticklabels() if label.get_text()]
    assert any(label.get_text() == "なかった" for label in labels)
    assert all(CJK_FONT_FAMILY in label.get_fontfamily() for label in labels)
    assert CJK_FONT_FAMILY not in mpl.rcParams["font.family"]  # rc left as it was
    _render(fig)


def test_missing_glyph_check_can_fail() -> None:
    # the same rendering check catches a Japanese label drawn without the fallback
    fig, ax = plt.subplots()
    ax.set_title("なかった")
    with pytest.raises(UserWarning, match="missing from font"):
        _render(fig)
