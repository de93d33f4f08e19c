"""An interactive, self-contained HTML view of per-head attention.

`head_view_html` turns per-head weights into an HTML fragment: query tokens on the
left, key tokens on the right. Hovering (or focusing, or clicking to pin) a query
token draws one line per head from it to every key, coloured by head, its opacity
the attention weight; small squares beside each key show the same weights head by
head. Checkboxes choose the heads; with several layers a menu chooses the layer.

The fragment carries its own ``<style>`` and ``<script>`` (no CDN, no external file),
works offline, and several views can share one page: each has a unique id and all
CSS selectors are scoped to ``.attnlens-headview``. Every token is HTML-escaped, and
the JSON embedded in the script has ``<``, ``>`` and ``&`` written as ``\\u003c``,
``\\u003e``, ``\\u0026``, so a token like ``</script><script>alert(1)</script>`` is
shown as text and never runs.

DOM contract (relied on by browser tests)
-----------------------------------------
* root ``div.attnlens-headview`` with a unique ``id``;
* tokens ``span.attnlens-token`` with ``data-side="query"|"key"`` and ``data-index="i"``;
* hovering query token ``i`` sets the root attribute ``data-hover="i"`` and draws
  ``line.attnlens-edge`` elements (``data-head``, ``data-query``, ``data-key``) of non-zero
  opacity for the visible heads only; leaving removes them and the attribute;
* head toggles ``input.attnlens-head-toggle[data-head="h"]`` (checkboxes, ``h`` from 0);
* per-head cells ``span.attnlens-cell[data-head="h"][data-key="j"]`` beside each key;
* with several layers, ``select.attnlens-layer-select``; the root's ``data-layer`` holds
  the layer shown.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

if TYPE_CHECKING:
    import os

    from numpy.typing import ArrayLike, NDArray

__all__ = ["HEAD_COLORS", "HeadView", "head_view_html"]

#: Weights for one layer (H, L, S) or several (n_layers, H, L, S): tensor or array-like.
WeightsLike = Union[torch.Tensor, "ArrayLike"]

#: Colour of head ``h`` is ``HEAD_COLORS[h % len(HEAD_COLORS)]`` (matplotlib's tab10).
HEAD_COLORS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
_ID_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

_CSS = """
.attnlens-headview{font-family:inherit;color:inherit;margin:0.5em 0;line-height:1.3}
.attnlens-headview .attnlens-controls{display:flex;flex-wrap:wrap;gap:0.3em 0.9em;
 align-items:center;margin-bottom:0.5em}
.attnlens-headview .attnlens-head-label{display:inline-flex;align-items:center;gap:0.25em;
 cursor:pointer;white-space:nowrap}
.attnlens-headview .attnlens-swatch{display:inline-block;width:0.8em;height:0.8em;
 border-radius:2px}
.attnlens-headview .attnlens-body{display:flex;align-items:flex-start}
.attnlens-headview .attnlens-column{display:flex;flex-direction:column}
.attnlens-headview .attnlens-queries{align-items:flex-end}
.attnlens-headview .attnlens-keys{align-items:flex-start}
.attnlens-headview .attnlens-row{display:flex;align-items:center;gap:0.4em;height:1.6em}
.attnlens-headview .attnlens-token{padding:0 0.3em;border-radius:3px;white-space:pre;
 height:1.6em;line-height:1.6em}
.attnlens-headview .attnlens-token[data-side="query"]{cursor:pointer}
.attnlens-headview .attnlens-token[data-side="query"]:hover,
.attnlens-headview .attnlens-token[data-side="query"]:focus,
.attnlens-headview .attnlens-token.attnlens-active{background:rgba(127,127,127,0.25);
 outline:none}
.attnlens-headview .attnlens-token.attnlens-pinned{box-shadow:inset 0 0 0 1px currentColor}
.attnlens-headview .attnlens-cells{display:inline-flex;gap:1px}
.attnlens-headview .attnlens-cellbox{display:inline-block;width:0.7em;height:0.7em;
 box-shadow:inset 0 0 0 1px rgba(127,127,127,0.3)}
.attnlens-headview .attnlens-cell{display:block;width:100%;height:100%;opacity:0}
.attnlens-headview svg.attnlens-edges{flex:none;overflow:visible}
.attnlens-headview line.attnlens-edge{stroke-width:2;stroke-linecap:round}
"""

_JS = """
(function () {
  "use strict";
  var root = document.getElementById(%(id)s);
  if (!root || root.getAttribute("data-ready") === "1") { return; }
  root.setAttribute("data-ready", "1");
  var data = %(data)s;
  var NS = "http://www.w3.org/2000/svg";
  var svg = root.querySelector("svg.attnlens-edges");
  var queries = root.querySelectorAll('.attnlens-token[data-side="query"]');
  var keys = root.querySelectorAll('.attnlens-token[data-side="key"]');
  var toggles = root.querySelectorAll("input.attnlens-head-toggle");
  var cells = root.querySelectorAll("span.attnlens-cell");
  var select = root.querySelector("select.attnlens-layer-select");
  var qcol = root.querySelector(".attnlens-queries");
  var kcol = root.querySelector(".attnlens-keys");
  var hover = null, pinned = null, layer = %(layer)d;

  function visibleHeads() {
    var shown = [];
    for (var t = 0; t < toggles.length; t++) {
      shown[Number(toggles[t].getAttribute("data-head"))] = toggles[t].checked;
    }
    return shown;
  }
  function weight(h, i, j) {
    var w = data.weights[layer][h][i][j];
    return (typeof w === "number" && isFinite(w)) ? w : 0;
  }
  function fmt(w) { return w.toFixed(3); }
  function draw() {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var i = pinned !== null ? pinned : hover;
    for (var q = 0; q < queries.length; q++) {
      queries[q].classList.toggle("attnlens-active", q === i);
      queries[q].classList.toggle("attnlens-pinned", q === pinned);
    }
    var shown = visibleHeads();
    for (var c = 0; c < cells.length; c++) {
      var h0 = Number(cells[c].getAttribute("data-head"));
      var j0 = Number(cells[c].getAttribute("data-key"));
      var w0 = (i === null || !shown[h0]) ? 0 : weight(h0, i, j0);
      cells[c].style.opacity = String(w0);
      cells[c].setAttribute("title", i === null ? "" :
        data.heads[h0] + ": " + data.queries[i] + " \\u2192 " + data.keys[j0] + "  " + fmt(w0));
    }
    if (i === null) { root.removeAttribute("data-hover"); return; }
    root.setAttribute("data-hover", String(i));
    var height = Math.max(qcol.offsetHeight, kcol.offsetHeight);
    svg.setAttribute("height", String(height));
    svg.style.height = height + "px";
    var box = svg.getBoundingClientRect();
    var width = box.width;
    var qr = queries[i].getBoundingClientRect();
    var y1 = (qr.top + qr.bottom) / 2 - box.top;
    var nh = data.heads.length;
    for (var h = 0; h < nh; h++) {
      if (!shown[h]) { continue; }
      var offset = (h - (nh - 1) / 2) * 1.5;
      for (var j = 0; j < keys.length; j++) {
        var w = weight(h, i, j);
        if (!(w > 0)) { continue; }
        var kr = keys[j].getBoundingClientRect();
        var y2 = (kr.top + kr.bottom) / 2 - box.top;
        var line = document.createElementNS(NS, "line");
        line.setAttribute("class", "attnlens-edge");
        line.setAttribute("data-head", String(h));
        line.setAttribute("data-query", String(i));
        line.setAttribute("data-key", String(j));
        line.setAttribute("x1", "2");
        line.setAttribute("y1", String(y1 + offset));
        line.setAttribute("x2", String(width - 2));
        line.setAttribute("y2", String(y2 + offset));
        line.setAttribute("stroke", data.colors[h]);
        line.style.opacity = String(Math.min(1, w));
        var tip = document.createElementNS(NS, "title");
        tip.textContent = data.heads[h] + ": " + data.queries[i] + " \\u2192 " + data.keys[j] +
          "  " + fmt(w);
        line.appendChild(tip);
        svg.appendChild(line);
      }
    }
  }
  function bind(el, idx) {
    el.addEventListener("mouseenter", function () { hover = idx; draw(); });
    el.addEventListener("mouseleave", function () { hover = null; draw(); });
    el.addEventListener("focus", function () { hover = idx; draw(); });
    el.addEventListener("blur", function () { hover = null; draw(); });
    el.addEventListener("click", function () { pinned = (pinned === idx) ? null : idx; draw(); });
    el.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        pinned = (pinned === idx) ? null : idx;
        draw();
      }
    });
  }
  for (var q = 0; q < queries.length; q++) {
    bind(queries[q], Number(queries[q].getAttribute("data-index")));
  }
  for (var t = 0; t < toggles.length; t++) { toggles[t].addEventListener("change", draw); }
  if (select) {
    select.addEventListener("change", function () {
      layer = Number(select.value);
      root.setAttribute("data-layer", String(layer));
      draw();
    });
  }
  window.addEventListener("resize", function () {
    if (hover !== null || pinned !== null) { draw(); }
  });
})();
"""


def _json_for_script(value: object) -> str:
    """JSON safe to embed in ``<script>``: no ``<``, ``>``, ``&`` or line separators."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _to_numpy(weights: object, name: str) -> NDArray[np.float64]:
    if isinstance(weights, torch.Tensor):
        if weights.is_nested:
            raise TypeError(f"{name}: expected a dense tensor, got a nested tensor")
        return weights.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name}: expected a torch.Tensor or array of numbers, got {type(weights).__name__}"
        ) from err


def _layers(weights: object, batch_index: int | None) -> NDArray[np.float64]:
    """Return weights as (n_layers, H, L, S)."""
    if isinstance(weights, Mapping) or (
        isinstance(weights, Sequence)
        and not isinstance(weights, str)
        and weights
        and all(isinstance(w, torch.Tensor | np.ndarray) for w in weights)
    ):
        items = list(weights.values()) if isinstance(weights, Mapping) else list(weights)
        if not items:
            raise ValueError("weights: expected at least one layer, got none")
        arrays = [
            _one_layer(_to_numpy(w, f"weights[{k}]"), batch_index, f"weights[{k}]")
            for k, w in enumerate(items)
        ]
        for k, array in enumerate(arrays[1:], start=1):
            if array.shape != arrays[0].shape:
                raise ValueError(
                    f"weights[{k}]: expected shape (H, L, S) = {arrays[0].shape} like layer 0, "
                    f"got {array.shape}"
                )
        return np.stack(arrays)  # (n_layers, H, L, S)
    array = _to_numpy(weights, "weights")
    if batch_index is not None:
        # (N, H, L, S) -> (H, L, S), or (n_layers, N, H, L, S) -> (n_layers, H, L, S)
        if array.ndim == 4:
            return _one_layer(array, batch_index, "weights")[None]
        if array.ndim == 5:
            return np.stack([_one_layer(a, batch_index, "weights") for a in array])
        raise ValueError(
            "weights: with batch_index expected shape (N, H, L, S) or (n_layers, N, H, L, S), "
            f"got {tuple(array.shape)}"
        )
    if array.ndim == 3:
        return array[None]  # (1, H, L, S)
    if array.ndim == 4:
        return array
    raise ValueError(
        "weights: expected shape (H, L, S) or (n_layers, H, L, S), "
        f"got {tuple(array.shape)}; for a batch pass batch_index"
    )


def _one_layer(array: NDArray[np.float64], batch_index: int | None, name: str) -> NDArray[Any]:
    if batch_index is not None:
        if array.ndim != 4:
            raise ValueError(
                f"{name}: with batch_index expected shape (N, H, L, S), got {tuple(array.shape)}"
            )
        n = array.shape[0]
        if not -n <= batch_index < n:
            raise ValueError(f"batch_index: expected an index in [{-n}, {n}), got {batch_index}")
        array = array[batch_index]
    if array.ndim != 3:
        raise ValueError(f"{name}: expected shape (H, L, S), got {tuple(array.shape)}")
    return array


def _tokens(
    tokens: Sequence[str], expected: int, name: str, what: str, noun: str = "tokens"
) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"{name}: expected a sequence of str, got {type(tokens).__name__}")
    if len(tokens) != expected:
        raise ValueError(f"{name}: expected {expected} {noun} ({what}), got {len(tokens)}")
    return [str(token) for token in tokens]


class HeadView:
    """An interactive head view: HTML that Jupyter and sphinx-gallery embed.

    Created by `head_view_html`. Display it in a notebook (``_repr_html_``), get
    the fragment with `html`, or write a standalone page with `save`.

    Parameters
    ----------
    fragment : str
        The HTML fragment (root ``div.attnlens-headview`` with inline style and script).
    element_id : str
        The root element's id.
    shape : tuple of int
        ``(n_layers, H, L, S)`` of the weights shown.
    title : str
        Title of the standalone page written by `save`.
    """

    def __init__(
        self, fragment: str, element_id: str, shape: tuple[int, int, int, int], title: str
    ) -> None:
        self._fragment = fragment
        self.element_id = element_id
        self.shape = shape
        self.title = title

    @property
    def html(self) -> str:
        """The HTML fragment (str)."""
        return self._fragment

    def _repr_html_(self) -> str:
        return self._fragment

    def __html__(self) -> str:
        """The fragment, for template engines that honour ``__html__`` (Jinja2, Markupsafe)."""
        return self._fragment

    def __repr__(self) -> str:
        layers, heads, rows, cols = self.shape
        return (
            f"HeadView(id={self.element_id!r}, layers={layers}, heads={heads}, L={rows}, S={cols})"
        )

    def to_document(self) -> str:
        """Return a standalone HTML document (doctype, UTF-8 charset) holding the view."""
        return (
            '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(self.title)}</title>\n"
            '</head>\n<body style="font-family:sans-serif">\n'
            f"{self._fragment}\n</body>\n</html>\n"
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the view as a standalone HTML file (UTF-8) that works offline.

        Parameters
        ----------
        path : str or os.PathLike
            File to write (overwritten if it exists).

        Returns
        -------
        pathlib.Path
            The path written.
        """
        target = Path(path)
        target.write_text(self.to_document(), encoding="utf-8")
        return target


def head_view_html(
    weights: WeightsLike | Sequence[WeightsLike] | Mapping[str, WeightsLike],
    tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    *,
    batch_index: int | None = None,
    head_labels: Sequence[str] | None = None,
    layer_labels: Sequence[str] | None = None,
    layer: int = 0,
    heads: Sequence[int] | None = None,
    title: str = "attnlens head view",
    element_id: str | None = None,
    width: int = 160,
    decimals: int = 4,
) -> HeadView:
    """Build an interactive per-head attention view (self-contained HTML).

    Parameters
    ----------
    weights : Tensor or array_like of shape (H, L, S) or (n_layers, H, L, S), or a sequence / mapping of (H, L, S)
        Per-head weights of one layer, or of several (a layer menu appears). A
        mapping such as ``capture.weights`` is read in insertion order. With
        ``batch_index``, (N, H, L, S) per layer.
    tokens : sequence of str of length L
        Query tokens (the left column).
    key_tokens : sequence of str of length S, optional
        Key tokens (the right column). Default: ``tokens`` (self-attention, L = S).
    batch_index : int, optional
        Select this sample from batched weights.
    head_labels : sequence of str of length H, optional
        Text of the head checkboxes (escaped). Default: h with subscript 1..H.
    layer_labels : sequence of str of length n_layers, optional
        Text of the layer menu entries. Default: ℓ₁, ℓ₂, ... (values are 0-based).
    layer : int, default 0
        Layer shown first.
    heads : sequence of int, optional
        Heads checked at first (0-based). Default: all.
    title : str, default "attnlens head view"
        ``<title>`` of the page written by `HeadView.save`.
    element_id : str, optional
        Id of the root element. Default: a fresh unique id, so that several views
        can share a page.
    width : int, default 160
        Width in pixels of the band where the edges are drawn.
    decimals : int, default 4
        Weights are rounded to this many decimals in the embedded data.

    Returns
    -------
    HeadView
        With ``_repr_html_()``, ``html`` and ``save(path)``.

    Raises
    ------
    ValueError
        If ``weights`` does not have one of the shapes above, the tokens or labels
        do not match it, or ``layer``, ``heads``, ``element_id`` are invalid.
    TypeError
        If the tokens are a bare str or the weights are not numeric.

    Notes
    -----
    The data embedded is ``n_layers * H * L * S`` numbers: fine for a sentence,
    large for many layers of long sequences (select layers or slice first).

    Examples
    --------
    >>> import torch
    >>> from attnlens.headview import head_view_html
    >>> weights = torch.softmax(torch.randn(2, 4, 4), dim=-1)  # (H, L, S)
    >>> view = head_view_html(weights, ["[CLS]", "not", "<b>", "good"])
    >>> "&lt;b&gt;" in view.html and "<b>" not in view.html
    True
    >>> view.shape  # (n_layers, H, L, S)
    (1, 2, 4, 4)
    >>> import pathlib, tempfile
    >>> path = view.save(pathlib.Path(tempfile.mkdtemp()) / "head_view.html")  # works offline
    >>> path.name
    'head_view.html'
    """
    stacked = _layers(weights, batch_index)  # (n_layers, H, L, S)
    n_layers, n_heads, rows, cols = (int(d) for d in stacked.shape)
    query_tokens = _tokens(tokens, rows, "tokens", f"L = weights.shape[-2] = {rows}")
    if key_tokens is None:
        if rows != cols:
            raise ValueError(
                f"key_tokens: required when L != S, weights have (L, S) = ({rows}, {cols})"
            )
        key_tokens = tokens
    keys = _tokens(key_tokens, cols, "key_tokens", f"S = weights.shape[-1] = {cols}")
    if head_labels is None:
        head_text = [f"h{h + 1}" for h in range(n_heads)]
        head_markup = [f"<i>h</i><sub>{h + 1}</sub>" for h in range(n_heads)]
    else:
        head_text = _tokens(head_labels, n_heads, "head_labels", f"H = {n_heads}", "labels")
        head_markup = [html.escape(label) for label in head_text]
    if layer_labels is None:
        layer_text = [f"ℓ{k + 1}".translate(_SUBSCRIPTS) for k in range(n_layers)]
    else:
        layer_text = _tokens(
            layer_labels, n_layers, "layer_labels", f"n_layers = {n_layers}", "labels"
        )
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer: expected an index in [{-n_layers}, {n_layers}), got {layer}")
    layer %= n_layers
    checked = set(range(n_heads)) if heads is None else set()
    for h in heads or ():
        if not 0 <= h < n_heads:
            raise ValueError(f"heads: expected head indices in [0, {n_heads}), got {h}")
        checked.add(h)
    if element_id is None:
        element_id = f"attnlens-hv-{uuid.uuid4().hex[:12]}"
    elif not _ID_PATTERN.fullmatch(element_id):
        raise ValueError(
            f"element_id: expected letters, digits, '-' or '_' starting with a letter, "
            f"got {element_id!r}"
        )
    if width < 20:
        raise ValueError(f"width: expected at least 20 pixels, got {width}")

    data = {
        "weights": _replace_nan(np.round(stacked, decimals).tolist()),
        "colors": [HEAD_COLORS[h % len(HEAD_COLORS)] for h in range(n_heads)],
        "heads": head_text,
        "queries": query_tokens,
        "keys": keys,
    }
    esc = html.escape
    parts: list[str] = [
        f'<div class="attnlens-headview" id="{element_id}" data-layer="{layer}">',
        f"<style>{_CSS}</style>",
        '<div class="attnlens-controls">',
    ]
    if n_layers > 1:
        options = "".join(
            f'<option value="{k}"{" selected" if k == layer else ""}>{esc(label)}</option>'
            for k, label in enumerate(layer_text)
        )
        parts.append(f'<select class="attnlens-layer-select" aria-label="layer">{options}</select>')
    for h in range(n_heads):
        color = HEAD_COLORS[h % len(HEAD_COLORS)]
        parts.append(
            f'<label class="attnlens-head-label">'
            f'<input type="checkbox" class="attnlens-head-toggle" data-head="{h}"'
            f"{' checked' if h in checked else ''}>"
            f'<span class="attnlens-swatch" style="background:{color}"></span>'
            f"{head_markup[h]}</label>"
        )
    parts.append("</div>")
    parts.append('<div class="attnlens-body">')
    parts.append('<div class="attnlens-column attnlens-queries">')
    parts.extend(
        f'<div class="attnlens-row"><span class="attnlens-token" data-side="query" '
        f'data-index="{i}" tabindex="0">{esc(token)}</span></div>'
        for i, token in enumerate(query_tokens)
    )
    parts.append("</div>")
    parts.append(
        f'<svg class="attnlens-edges" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="1" style="width:{width}px" aria-hidden="true"></svg>'
    )
    parts.append('<div class="attnlens-column attnlens-keys">')
    for j, token in enumerate(keys):
        cells = "".join(
            f'<span class="attnlens-cellbox"><span class="attnlens-cell" data-head="{h}" '
            f'data-key="{j}" style="background:{HEAD_COLORS[h % len(HEAD_COLORS)]}"></span></span>'
            for h in range(n_heads)
        )
        parts.append(
            f'<div class="attnlens-row"><span class="attnlens-token" data-side="key" '
            f'data-index="{j}">{esc(token)}</span><span class="attnlens-cells">{cells}</span></div>'
        )
    parts.append("</div></div>")
    script = _JS % {
        "id": _json_for_script(element_id),
        "data": _json_for_script(data),
        "layer": layer,
    }
    parts.append(f"<script>{script}</script>")
    parts.append("</div>")
    return HeadView("\n".join(parts), element_id, (n_layers, n_heads, rows, cols), title)


def _replace_nan(value: Any) -> Any:
    """Replace NaN (e.g. fully masked rows) by None so that the data is valid JSON."""
    if isinstance(value, list):
        return [_replace_nan(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
