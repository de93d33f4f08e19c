"""Draw attention weights with matplotlib.

Every function returns the :class:`~matplotlib.figure.Figure` it drew on and never
calls ``plt.show()``. New figures are created with :func:`matplotlib.pyplot.figure`,
so Jupyter and sphinx-gallery display them; close them with ``plt.close(fig)`` when
drawing many. All drawing goes through the Figure / Axes object API, so the
functions work with any backend, Agg included.

Labels are language-neutral: tokens, numbers and math notation ($h_1$ for head 1,
$\\ell_1$ for layer 1; numbering starts at 1 as in the paper). Japanese tokens are
drawn with the CJK fallback font of :mod:`attnlens.fonts`, whether or not
:func:`attnlens.fonts.use_cjk_font` was called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure, SubFigure

from attnlens.fonts import cjk_font_context

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage
    from numpy.typing import ArrayLike, NDArray

__all__ = ["plot_attention", "plot_heads", "plot_layers"]

#: A weight tensor or anything ``numpy.asarray`` accepts.
WeightsLike = Union[torch.Tensor, "ArrayLike"]

_CELL = 0.42  # inches per heatmap cell
_MAX_CELL_FIG = 14.0  # inches: cap for the automatic figure size


# --------------------------------------------------------------------------- checks


def _to_numpy(weights: WeightsLike, name: str) -> NDArray[np.float64]:
    """Return ``weights`` as a float64 array (detached, on the CPU)."""
    if isinstance(weights, torch.Tensor):
        if weights.is_nested:
            raise TypeError(f"{name}: expected a dense tensor, got a nested tensor")
        if weights.is_complex():
            raise TypeError(f"{name}: expected real weights, got dtype {weights.dtype}")
        return weights.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name}: expected a torch.Tensor or array of numbers, got {type(weights).__name__}"
        ) from err
    return array


def _check_rank(array: NDArray[np.float64], rank: int, dims: str, name: str, hint: str) -> None:
    if array.ndim != rank:
        raise ValueError(
            f"{name}: expected a {rank}-D array of shape {dims}, "
            f"got shape {tuple(array.shape)}{hint}"
        )


def _select_batch(
    array: NDArray[np.float64], batch_index: int | None, rank: int, dims: str, name: str
) -> NDArray[np.float64]:
    """Apply ``batch_index`` to a batched array and check the rank of the result."""
    if batch_index is not None:
        _check_rank(array, rank + 1, "(N, " + dims[1:], name, "")
        n = array.shape[0]
        if not -n <= batch_index < n:
            raise ValueError(f"batch_index: expected an index in [{-n}, {n}), got {batch_index}")
        array = array[batch_index]
    hint = (
        "; pass batch_index=0 to draw the first sample of a batch"
        if array.ndim == rank + 1 and batch_index is None
        else ""
    )
    _check_rank(array, rank, dims, name, hint)
    return array


def _check_tokens(tokens: Sequence[str] | None, expected: int, name: str, what: str) -> list[str]:
    """Return the tokens as a list of labels, checking type and length."""
    if tokens is None:
        return [str(i) for i in range(expected)]
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"{name}: expected a sequence of str, got {type(tokens).__name__}")
    if len(tokens) != expected:
        raise ValueError(f"{name}: expected {expected} tokens ({what}), got {len(tokens)}")
    return [_label(token) for token in tokens]


def _token_labels(
    query_tokens: Sequence[str] | None,
    key_tokens: Sequence[str] | None,
    rows: int,
    cols: int,
    query_name: str,
) -> tuple[list[str], list[str]]:
    """Row (query) and column (key) labels of maps of shape (L, S) = (rows, cols).

    ``key_tokens`` default to the query tokens, which needs L == S.
    """
    row_labels = _check_tokens(query_tokens, rows, query_name, f"L = {rows}")
    if key_tokens is None and query_tokens is not None:
        if rows != cols:
            raise ValueError(
                f"key_tokens: required when L != S, the weights have (L, S) = ({rows}, {cols})"
            )
        key_tokens = query_tokens
    col_labels = _check_tokens(key_tokens, cols, "key_tokens", f"S = {cols}")
    return row_labels, col_labels


def _label(token: object) -> str:
    """A token as a tick label: ``$`` escaped so that no token is parsed as mathtext."""
    return str(token).replace("$", r"\$")


def _default_head_labels(count: int, labels: Sequence[str] | None, name: str) -> list[str]:
    if labels is None:
        return [f"$h_{{{h + 1}}}$" for h in range(count)]
    if isinstance(labels, str) or len(labels) != count:
        given = "a str" if isinstance(labels, str) else f"{len(labels)} labels"
        raise ValueError(f"{name}: expected {count} labels, got {given}")
    return list(labels)


def _default_layer_labels(count: int, labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return [f"$\\ell_{{{k + 1}}}$" for k in range(count)]
    if isinstance(labels, str) or len(labels) != count:
        given = "a str" if isinstance(labels, str) else f"{len(labels)} labels"
        raise ValueError(f"layer_labels: expected {count} labels, got {given}")
    return list(labels)


def _vmax(array: NDArray[np.float64], vmax: float | None) -> float:
    if vmax is not None:
        return float(vmax)
    finite = array[np.isfinite(array)]
    top = float(finite.max()) if finite.size else 1.0
    return top if top > 0 else 1.0


# --------------------------------------------------------------------------- drawing


def _text_extent(labels: list[str]) -> float:
    """Rough width in inches of the longest label at the default font size."""
    longest = max(
        (sum(2 if ord(ch) > 0x2E7F else 1 for ch in label) for label in labels), default=1
    )
    return 0.1 + 0.075 * longest


def _margins(row_labels: list[str], col_labels: list[str], rotation: float) -> tuple[float, float]:
    """Room in inches for the y tick labels (left) and the x tick labels (bottom)."""
    left = _text_extent(row_labels) + 0.2
    bottom = _text_extent(col_labels) * abs(np.sin(np.radians(rotation))) + 0.35
    return left, bottom


def _new_figure(width: float, height: float) -> Figure:
    width = float(np.clip(width, 2.5, _MAX_CELL_FIG))
    height = float(np.clip(height, 2.0, _MAX_CELL_FIG))
    return plt.figure(figsize=(width, height), layout="constrained")


def _draw_map(
    ax: Axes,
    array: NDArray[np.float64],
    *,
    row_labels: list[str] | None,
    col_labels: list[str] | None,
    families: list[str],
    cmap: str,
    norm: Normalize,
    annotate: bool,
    fmt: str,
    xrotation: float,
) -> AxesImage:
    """Draw one heatmap (rows = queries, columns = keys) with token tick labels."""
    image = ax.imshow(array, cmap=cmap, norm=norm, aspect="equal", interpolation="nearest")
    rows, cols = array.shape
    ax.set_yticks(np.arange(rows))
    ax.set_xticks(np.arange(cols))
    if row_labels is None:
        ax.tick_params(labelleft=False)
    else:
        ax.set_yticklabels(row_labels, fontfamily=families)
    if col_labels is None:
        ax.tick_params(labelbottom=False)
    else:
        kwargs: dict[str, Any] = {"rotation": xrotation}
        if xrotation % 180:
            kwargs.update(ha="right", rotation_mode="anchor")
        ax.set_xticklabels(col_labels, fontfamily=families, **kwargs)
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if annotate:
        colormap = colormaps[cmap]
        for i in range(rows):
            for j in range(cols):
                value = array[i, j]
                red, green, blue, _ = colormap(norm(value))
                luminance = 0.299 * red + 0.587 * green + 0.114 * blue
                ax.text(
                    j,
                    i,
                    format(value, fmt),
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color="black" if luminance > 0.5 else "white",
                )
    return image


def _root_figure(ax: Axes) -> Figure:
    """The top-level figure of ``ax`` (also when ``ax`` lives in a SubFigure)."""
    parent: Any = ax.get_figure()
    while isinstance(parent, SubFigure):
        parent = parent.get_figure()
    if not isinstance(parent, Figure):
        raise TypeError("ax: expected an Axes that belongs to a figure")
    return parent


def _rotation(labels: list[str], xrotation: float | None) -> float:
    if xrotation is not None:
        return xrotation
    return 0.0 if max((len(label) for label in labels), default=0) <= 2 else 60.0


def plot_attention(
    weights: WeightsLike,
    query_tokens: Sequence[str] | None,
    key_tokens: Sequence[str] | None = None,
    ax: Axes | None = None,
    annotate: bool = False,
    *,
    cmap: str = "viridis",
    vmin: float = 0.0,
    vmax: float | None = None,
    colorbar: bool = True,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    fmt: str = ".2f",
    xrotation: float | None = None,
) -> Figure:
    r"""Draw one attention map as a heatmap: rows are queries, columns are keys.

    Parameters
    ----------
    weights : Tensor or array_like, shape (L, S)
        Attention weights of one head (or averaged over heads), row ``i`` being
        the distribution of query ``i`` over the keys. Tensors are detached and
        moved to the CPU.
    query_tokens : sequence of str of length L, or None
        Labels of the rows. ``None`` labels them ``0 .. L-1``.
    key_tokens : sequence of str of length S, optional
        Labels of the columns. Default: ``query_tokens`` (self-attention, L = S).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into. Default: a new figure sized to the map.
    annotate : bool, default False
        Write each weight in its cell (formatted with ``fmt``).
    cmap : str, default "viridis"
        Colormap name.
    vmin, vmax : float, optional
        Colour scale limits. Default: 0 and the largest weight.
    colorbar : bool, default True
        Add a colorbar beside the map.
    title, xlabel, ylabel : str, optional
        Axes title and axis labels. None by default: figures on the site are
        shared by both languages, so words belong in the prose; math such as
        ``"$j$"`` or ``"$\\mathrm{softmax}(QK^\\top/\\sqrt{d_k})$"`` is fine.
    fmt : str, default ".2f"
        Format of the annotations.
    xrotation : float, optional
        Rotation of the key labels in degrees. Default: 0 for tokens of at most
        two characters, 60 otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``ax.figure`` when ``ax`` is given).

    Raises
    ------
    ValueError
        If ``weights`` is not 2-D, or a token list does not match its shape.
    TypeError
        If ``weights`` is not numeric, or tokens are a bare str.

    Examples
    --------
    >>> import torch
    >>> from attnlens.plot import plot_attention
    >>> weights = torch.softmax(torch.randn(3, 4), dim=-1)  # (L, S)
    >>> fig = plot_attention(weights, ["the", "movie", "was"], ["[CLS]", "the", "movie", "was"])
    >>> len(fig.axes)  # the map and its colorbar
    2
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    array = _to_numpy(weights, "weights")
    _check_rank(array, 2, "(L, S)", "weights", "; for (H, L, S) use plot_heads")
    rows, cols = array.shape
    row_labels, col_labels = _token_labels(query_tokens, key_tokens, rows, cols, "query_tokens")
    with cjk_font_context() as families:
        if ax is None:
            left, bottom = _margins(row_labels, col_labels, _rotation(col_labels, xrotation))
            fig: Figure = _new_figure(
                left + cols * _CELL + 1.0, bottom + rows * _CELL + (0.5 if title else 0.2)
            )
            ax = fig.add_subplot()
        else:
            fig = _root_figure(ax)
        norm = Normalize(vmin=vmin, vmax=_vmax(array, vmax))
        image = _draw_map(
            ax,
            array,
            row_labels=row_labels,
            col_labels=col_labels,
            families=families,
            cmap=cmap,
            norm=norm,
            annotate=annotate,
            fmt=fmt,
            xrotation=_rotation(col_labels, xrotation),
        )
        if title is not None:
            ax.set_title(title, fontfamily=families)
        if xlabel is not None:
            ax.set_xlabel(xlabel, fontfamily=families)
        if ylabel is not None:
            ax.set_ylabel(ylabel, fontfamily=families)
        if colorbar:
            holder: Any = ax.get_figure()  # the Figure or SubFigure that holds ax
            holder.colorbar(image, ax=ax, shrink=0.9)
    return fig


def _grid(count: int, ncols: int | None) -> tuple[int, int]:
    if ncols is None:
        ncols = min(count, 4)
    if ncols < 1:
        raise ValueError(f"ncols: expected a positive int, got {ncols}")
    ncols = min(ncols, count)
    return -(-count // ncols), ncols


def plot_heads(
    weights: WeightsLike,
    tokens: Sequence[str] | None,
    key_tokens: Sequence[str] | None = None,
    *,
    batch_index: int | None = None,
    ncols: int | None = None,
    head_labels: Sequence[str] | None = None,
    title: str | None = None,
    annotate: bool = False,
    cmap: str = "viridis",
    vmin: float = 0.0,
    vmax: float | None = None,
    fmt: str = ".2f",
    xrotation: float | None = None,
) -> Figure:
    r"""Draw every head's attention map in a grid with one shared colour scale.

    Parameters
    ----------
    weights : Tensor or array_like, shape (H, L, S), or (N, H, L, S) with ``batch_index``
        Per-head attention weights, e.g. ``nn.MultiheadAttention(...,
        average_attn_weights=False)`` or :func:`attnlens.capture_attention`.
    tokens : sequence of str of length L, or None
        Query (row) labels. ``None`` labels them ``0 .. L-1``.
    key_tokens : sequence of str of length S, optional
        Key (column) labels. Default: ``tokens`` (self-attention, L = S).
    batch_index : int, optional
        Select this sample from batched (N, H, L, S) weights.
    ncols : int, optional
        Heads per row of the grid. Default: ``min(H, 4)``.
    head_labels : sequence of str of length H, optional
        Title of each map. Default: ``"$h_1$", "$h_2$", ...``.
    title : str, optional
        Figure title (none by default).
    annotate : bool, default False
        Write each weight in its cell.
    cmap : str, default "viridis"
        Colormap name.
    vmin, vmax : float, optional
        Shared colour scale limits. Default: 0 and the largest weight of all heads.
    fmt : str, default ".2f"
        Format of the annotations.
    xrotation : float, optional
        Rotation of the key labels (see `plot_attention`).

    Returns
    -------
    matplotlib.figure.Figure
        One heatmap per head (queries on the y axis, keys on the x axis; labels on
        the outer axes only) and one colorbar.

    Raises
    ------
    ValueError
        If ``weights`` does not have shape (H, L, S), or the tokens or
        ``head_labels`` do not match it.

    Examples
    --------
    >>> import torch
    >>> from attnlens.plot import plot_heads
    >>> mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    >>> x = torch.randn(1, 3, 8)  # (N, L, E)
    >>> _, w = mha(x, x, x, average_attn_weights=False)  # (N, H, L, S)
    >>> fig = plot_heads(w, ["この", "映画", "は"], batch_index=0)
    >>> len(fig.axes)  # two heads and the colorbar
    3
    >>> import matplotlib.pyplot as plt
    >>> plt.close(fig)
    """
    array = _to_numpy(weights, "weights")
    array = _select_batch(array, batch_index, 3, "(H, L, S)", "weights")
    heads, rows, cols = array.shape
    row_labels, col_labels = _token_labels(tokens, key_tokens, rows, cols, "tokens")
    titles = _default_head_labels(heads, head_labels, "head_labels")
    nrows, ncols = _grid(heads, ncols)
    norm = Normalize(vmin=vmin, vmax=_vmax(array, vmax))
    rotation = _rotation(col_labels, xrotation)
    cell = _CELL if heads <= 4 else _CELL * 0.8
    with cjk_font_context() as families:
        left, bottom = _margins(row_labels, col_labels, rotation)
        fig = _new_figure(
            left + ncols * (cols * cell + 0.15) + 1.0,
            bottom + nrows * (rows * cell + 0.4) + (0.4 if title else 0.1),
        )
        axes = fig.subplots(nrows, ncols, squeeze=False)
        image = None
        for h in range(nrows * ncols):
            ax = axes[h // ncols, h % ncols]
            if h >= heads:
                ax.set_axis_off()
                continue
            image = _draw_map(
                ax,
                array[h],
                row_labels=row_labels if h % ncols == 0 else None,
                col_labels=col_labels if h + ncols >= heads else None,
                families=families,
                cmap=cmap,
                norm=norm,
                annotate=annotate,
                fmt=fmt,
                xrotation=rotation,
            )
            ax.set_title(titles[h], fontfamily=families)
        if image is not None:
            fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
        if title is not None:
            fig.suptitle(title, fontfamily=families)
    return fig


def _stack_layers(
    weights_per_layer: WeightsLike | Sequence[WeightsLike] | Mapping[str, WeightsLike],
    batch_index: int | None,
) -> NDArray[np.float64]:
    """Return (n_layers, H, L, S) from a stacked array, a sequence or a mapping of layers."""
    if isinstance(weights_per_layer, Mapping):
        items: list[Any] = list(weights_per_layer.values())
    elif isinstance(weights_per_layer, torch.Tensor | np.ndarray) or (
        isinstance(weights_per_layer, Sequence) and not isinstance(weights_per_layer, str)
    ):
        items = list(weights_per_layer)
    else:
        raise TypeError(
            "weights_per_layer: expected a sequence or mapping of (H, L, S) weights or a "
            f"(n_layers, H, L, S) array, got {type(weights_per_layer).__name__}"
        )
    if not items:
        raise ValueError("weights_per_layer: expected at least one layer, got none")
    arrays = [
        _select_batch(
            _to_numpy(w, f"weights_per_layer[{k}]"),
            batch_index,
            3,
            "(H, L, S)",
            f"weights_per_layer[{k}]",
        )
        for k, w in enumerate(items)
    ]
    first = arrays[0].shape
    for k, array in enumerate(arrays[1:], start=1):
        if array.shape != first:
            raise ValueError(
                f"weights_per_layer[{k}]: expected shape (H, L, S) = {first} like layer 0, "
                f"got {array.shape}"
            )
    return np.stack(arrays)  # (n_layers, H, L, S)


def plot_layers(
    weights_per_layer: WeightsLike | Sequence[WeightsLike] | Mapping[str, WeightsLike],
    tokens: Sequence[str] | None,
    key_tokens: Sequence[str] | None = None,
    *,
    query_index: int | None = 0,
    batch_index: int | None = None,
    layer_labels: Sequence[str] | None = None,
    head_labels: Sequence[str] | None = None,
    title: str | None = None,
    annotate: bool = False,
    cmap: str = "viridis",
    vmin: float = 0.0,
    vmax: float | None = None,
    fmt: str = ".2f",
    xrotation: float | None = None,
) -> Figure:
    r"""Draw attention across layers and heads.

    Two views:

    * ``query_index=i`` (default 0, the ``[CLS]`` position of a classifier): one
      panel per layer, stacked vertically; panel rows are heads and columns are
      keys, so each row is the distribution of query ``i`` in one head of one
      layer. The whole model's attention from one token on one page.
    * ``query_index=None``: a grid of full (L, S) maps, one row per layer and one
      column per head.

    All panels share one colour scale and one colorbar.

    Parameters
    ----------
    weights_per_layer : sequence or mapping of (H, L, S), or array of shape (n_layers, H, L, S)
        Per-head weights of each layer, in order. A mapping such as
        ``capture.weights`` (name -> weights) is read in insertion order. With
        ``batch_index``, each layer may be (N, H, L, S).
    tokens : sequence of str of length L, or None
        Query labels. ``None`` labels them ``0 .. L-1``.
    key_tokens : sequence of str of length S, optional
        Key labels. Default: ``tokens`` (self-attention).
    query_index : int or None, default 0
        Query position whose row is drawn, or None for full maps.
    batch_index : int, optional
        Select this sample from batched weights.
    layer_labels : sequence of str of length n_layers, optional
        Default: ``"$\\ell_1$", "$\\ell_2$", ...``.
    head_labels : sequence of str of length H, optional
        Default: ``"$h_1$", "$h_2$", ...``.
    title : str, optional
        Figure title. Default with ``query_index``: the query token itself
        (e.g. ``[CLS]``); none otherwise.
    annotate : bool, default False
        Write each weight in its cell.
    cmap : str, default "viridis"
        Colormap name.
    vmin, vmax : float, optional
        Shared colour scale limits. Default: 0 and the largest weight drawn.
    fmt : str, default ".2f"
        Format of the annotations.
    xrotation : float, optional
        Rotation of the key labels (see `plot_attention`).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If a layer is not (H, L, S), layers differ in shape, ``query_index`` is out
        of range, or the tokens or labels do not match the weights.

    Examples
    --------
    >>> import torch
    >>> from attnlens.plot import plot_layers
    >>> weights = torch.softmax(torch.randn(2, 4, 5, 5), dim=-1)  # (n_layers, H, L, S)
    >>> tokens = ["[CLS]", "the", "movie", "was", "good"]
    >>> fig = plot_layers(weights, tokens)  # the [CLS] row, layers x heads
    >>> len(fig.axes)  # two layer panels and the colorbar
    3
    >>> fig2 = plot_layers(weights, tokens, query_index=None)  # 2 x 4 grid of maps
    >>> len(fig2.axes)
    9
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")
    """
    stacked = _stack_layers(weights_per_layer, batch_index)  # (n_layers, H, L, S)
    layers, heads, rows, cols = stacked.shape
    row_labels, col_labels = _token_labels(tokens, key_tokens, rows, cols, "tokens")
    layer_names = _default_layer_labels(layers, layer_labels)
    head_names = _default_head_labels(heads, head_labels, "head_labels")
    rotation = _rotation(col_labels, xrotation)

    if query_index is not None:
        if not -rows <= query_index < rows:
            raise ValueError(
                f"query_index: expected an index in [{-rows}, {rows}), got {query_index}"
            )
        selected = stacked[:, :, query_index, :]  # (n_layers, H, S)
        norm = Normalize(vmin=vmin, vmax=_vmax(selected, vmax))
        if title is None:
            title = row_labels[query_index]
        with cjk_font_context() as families:
            left, bottom = _margins(head_names, col_labels, rotation)
            fig = _new_figure(
                left + 0.4 + cols * _CELL + 1.0, bottom + layers * (heads * _CELL + 0.15) + 0.5
            )
            axes = fig.subplots(layers, 1, squeeze=False)[:, 0]
            image = None
            for k, ax in enumerate(axes):
                image = _draw_map(
                    ax,
                    selected[k],
                    row_labels=head_names,
                    col_labels=col_labels if k == layers - 1 else None,
                    families=families,
                    cmap=cmap,
                    norm=norm,
                    annotate=annotate,
                    fmt=fmt,
                    xrotation=rotation,
                )
                ax.set_ylabel(
                    layer_names[k], rotation=0, ha="right", va="center", fontfamily=families
                )
            assert image is not None  # at least one layer
            fig.colorbar(image, ax=list(axes), shrink=0.9)
            fig.suptitle(title, fontfamily=families)
        return fig

    norm = Normalize(vmin=vmin, vmax=_vmax(stacked, vmax))
    cell = _CELL * 0.7
    with cjk_font_context() as families:
        left, bottom = _margins(row_labels, col_labels, rotation)
        fig = _new_figure(
            left + 0.4 + heads * (cols * cell + 0.15) + 1.0,
            bottom + layers * (rows * cell + 0.15) + 0.4 + (0.4 if title else 0.0),
        )
        axes2d = fig.subplots(layers, heads, squeeze=False)
        image = None
        for k in range(layers):
            for h in range(heads):
                ax = axes2d[k, h]
                image = _draw_map(
                    ax,
                    stacked[k, h],
                    row_labels=row_labels if h == 0 else None,
                    col_labels=col_labels if k == layers - 1 else None,
                    families=families,
                    cmap=cmap,
                    norm=norm,
                    annotate=annotate,
                    fmt=fmt,
                    xrotation=rotation,
                )
                if k == 0:
                    ax.set_title(head_names[h], fontfamily=families)
                if h == 0:
                    ax.set_ylabel(
                        layer_names[k], rotation=0, ha="right", va="center", fontfamily=families
                    )
        assert image is not None
        fig.colorbar(image, ax=axes2d.ravel().tolist(), shrink=0.8)
        if title is not None:
            fig.suptitle(title, fontfamily=families)
    return fig
