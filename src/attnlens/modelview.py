"""An interactive, self-contained HTML view of every head of every layer: the model view.

`model_view_html` draws one thumbnail per layer and head, a grid of ``n_layers`` rows and
``H`` columns, as BertViz's model view does. Each thumbnail shows the head's weights as
lines from the query positions (left) to the key positions (right), their opacity the
weight. Clicking a thumbnail (or pressing Enter or Space on it: thumbnails are buttons)
enlarges it below the grid, with the tokens written out; hovering or focusing a query token
there keeps only its lines. Clicking the same thumbnail again, the close button, or Escape
closes the enlarged view.

Like `attnlens.head_view_html`, the fragment carries its own ``<style>`` and
``<script>`` (works offline), every token is HTML-escaped, the embedded JSON cannot end the
script, and its labels are in English or Japanese (``language``; ``"auto"`` follows the
page's ``<html lang>``).

DOM contract (relied on by browser tests)
-----------------------------------------
* root ``div.attnlens-modelview`` with a unique ``id``; ``data-language`` holds the language
  of the labels once the view has loaded;
* thumbnails ``button.attnlens-thumb`` with ``data-layer="l"`` and ``data-head="h"`` (from 0)
  and ``aria-pressed``, each holding an ``svg`` of ``line.attnlens-thumb-edge`` elements;
* enlarging thumbnail ``(l, h)`` sets the root attribute ``data-selected="l,h"``, shows
  ``div.attnlens-detail`` (``hidden`` otherwise) and draws ``line.attnlens-edge`` elements
  (``data-query``, ``data-key``) of non-zero opacity in it; its title
  ``.attnlens-detail-title`` names the layer and the head;
* in the enlarged view, tokens ``span.attnlens-token`` with ``data-side="query"|"key"`` and
  ``data-index``; hovering query ``i`` sets ``data-hover="i"`` on the detail element;
* ``button.attnlens-close`` closes the enlarged view.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np

from attnlens._html import (
    HEAD_COLORS,
    L10N_JS,
    HtmlView,
    WeightsLike,
    check_element_id,
    check_language,
    check_tokens,
    embedded_labels,
    json_for_script,
    l10n_attrs,
    replace_nan,
    stack_layers,
)

__all__ = ["MODEL_VIEW_LABELS", "ModelView", "model_view_html"]

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")

#: The view's labels in each language (``{0}``, ``{1}``: 1-based layer and head numbers).
MODEL_VIEW_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "grid": "attention of every layer and head; choose one to enlarge it",
        "thumb": "layer {0}, head {1}",
        "close": "close",
        "detail": "enlarged head",
    },
    "ja": {
        "grid": "すべての層とヘッドのアテンション。選ぶと拡大します",
        "thumb": "層 {0}、ヘッド {1}",
        "close": "閉じる",
        "detail": "拡大したヘッド",
    },
}

#: Thumbnail lines with a weight below this are left out (they would be invisible).
THUMB_MIN_WEIGHT = 0.005

_CSS = """
.attnlens-modelview{font-family:inherit;color:inherit;margin:0.5em 0;line-height:1.3}
.attnlens-modelview .attnlens-grid{display:grid;gap:4px;align-items:center;
 justify-items:center;width:max-content;max-width:100%;overflow-x:auto}
.attnlens-modelview .attnlens-colhead,.attnlens-modelview .attnlens-rowhead{
 font-size:0.85em;white-space:nowrap}
.attnlens-modelview .attnlens-rowhead{justify-self:end;padding-right:0.3em}
.attnlens-modelview button.attnlens-thumb{display:block;margin:0;padding:2px;
 background:transparent;color:inherit;border:1px solid rgba(127,127,127,0.35);
 border-radius:3px;cursor:pointer;line-height:0}
.attnlens-modelview button.attnlens-thumb:hover{border-color:currentColor}
.attnlens-modelview button.attnlens-thumb:focus-visible{outline:2px solid #1f77b4;
 outline-offset:1px}
.attnlens-modelview button.attnlens-thumb[aria-pressed="true"]{
 box-shadow:0 0 0 2px currentColor}
.attnlens-modelview svg.attnlens-thumb-svg{display:block}
.attnlens-modelview line.attnlens-thumb-edge{stroke-width:1.2;stroke-linecap:round}
.attnlens-modelview .attnlens-detail{margin-top:0.8em;padding:0.5em;
 border:1px solid rgba(127,127,127,0.35);border-radius:4px;width:max-content;max-width:100%}
.attnlens-modelview .attnlens-detail[hidden]{display:none}
.attnlens-modelview .attnlens-detail-bar{display:flex;align-items:center;gap:1em;
 margin-bottom:0.4em}
.attnlens-modelview .attnlens-detail-title{font-weight:bold}
.attnlens-modelview button.attnlens-close{margin:0;padding:0 0.5em;cursor:pointer;
 background:transparent;color:inherit;border:1px solid rgba(127,127,127,0.5);border-radius:3px}
.attnlens-modelview .attnlens-body{display:flex;align-items:flex-start}
.attnlens-modelview .attnlens-column{display:flex;flex-direction:column}
.attnlens-modelview .attnlens-queries{align-items:flex-end}
.attnlens-modelview .attnlens-keys{align-items:flex-start}
.attnlens-modelview .attnlens-token{padding:0 0.3em;border-radius:3px;white-space:pre;
 height:1.6em;line-height:1.6em}
.attnlens-modelview .attnlens-token[data-side="query"]{cursor:pointer}
.attnlens-modelview .attnlens-token[data-side="query"]:hover,
.attnlens-modelview .attnlens-token[data-side="query"]:focus{
 background:rgba(127,127,127,0.25);outline:none}
.attnlens-modelview svg.attnlens-edges{flex:none;overflow:visible}
.attnlens-modelview line.attnlens-edge{stroke-width:2;stroke-linecap:round}
"""

_JS = """
(function () {
  "use strict";
  var root = document.getElementById(%(id)s);
  if (!root || root.getAttribute("data-ready") === "1") { return; }
  root.setAttribute("data-ready", "1");
  var data = %(data)s;
  var labels = %(labels)s;
%(l10n)s
  var NS = "http://www.w3.org/2000/svg";
  var thumbs = root.querySelectorAll("button.attnlens-thumb");
  var detail = root.querySelector(".attnlens-detail");
  var title = detail.querySelector(".attnlens-detail-title");
  var closer = detail.querySelector("button.attnlens-close");
  var svg = detail.querySelector("svg.attnlens-edges");
  var queries = detail.querySelectorAll('.attnlens-token[data-side="query"]');
  var keys = detail.querySelectorAll('.attnlens-token[data-side="key"]');
  var qcol = detail.querySelector(".attnlens-queries");
  var kcol = detail.querySelector(".attnlens-keys");
  var selected = null, hover = null;

  function weight(l, h, i, j) {
    var w = data.weights[l][h][i][j];
    return (typeof w === "number" && isFinite(w)) ? w : 0;
  }
  function draw() {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    if (hover === null) { detail.removeAttribute("data-hover"); }
    else { detail.setAttribute("data-hover", String(hover)); }
    if (selected === null) { return; }
    var l = Number(selected.getAttribute("data-layer"));
    var h = Number(selected.getAttribute("data-head"));
    var height = Math.max(qcol.offsetHeight, kcol.offsetHeight);
    svg.setAttribute("height", String(height));
    svg.style.height = height + "px";
    var box = svg.getBoundingClientRect();
    var ky = [];
    for (var k = 0; k < keys.length; k++) {
      var kr = keys[k].getBoundingClientRect();
      ky.push((kr.top + kr.bottom) / 2 - box.top);
    }
    var first = hover === null ? 0 : hover;
    var last = hover === null ? queries.length - 1 : hover;
    for (var i = first; i <= last; i++) {
      var qr = queries[i].getBoundingClientRect();
      var y1 = (qr.top + qr.bottom) / 2 - box.top;
      for (var j = 0; j < keys.length; j++) {
        var w = weight(l, h, i, j);
        if (!(w > 0)) { continue; }
        var line = document.createElementNS(NS, "line");
        line.setAttribute("class", "attnlens-edge");
        line.setAttribute("data-query", String(i));
        line.setAttribute("data-key", String(j));
        line.setAttribute("x1", "2");
        line.setAttribute("y1", String(y1));
        line.setAttribute("x2", String(box.width - 2));
        line.setAttribute("y2", String(ky[j]));
        line.setAttribute("stroke", data.colors[h]);
        line.style.opacity = String(Math.min(1, w));
        var tip = document.createElementNS(NS, "title");
        tip.textContent = data.queries[i] + " \\u2192 " + data.keys[j] + "  " + w.toFixed(3);
        line.appendChild(tip);
        svg.appendChild(line);
      }
    }
  }
  function open(thumb) {
    selected = thumb;
    hover = null;
    for (var t = 0; t < thumbs.length; t++) {
      thumbs[t].setAttribute("aria-pressed", thumbs[t] === thumb ? "true" : "false");
    }
    var l = Number(thumb.getAttribute("data-layer"));
    var h = Number(thumb.getAttribute("data-head"));
    root.setAttribute("data-selected", l + "," + h);
    title.textContent = say("thumb", [l + 1, h + 1]);
    detail.hidden = false;
    draw();
  }
  function close() {
    var last = selected;
    selected = null;
    hover = null;
    for (var t = 0; t < thumbs.length; t++) { thumbs[t].setAttribute("aria-pressed", "false"); }
    root.removeAttribute("data-selected");
    detail.hidden = true;
    draw();
    if (last) { last.focus(); }
  }
  for (var t = 0; t < thumbs.length; t++) {
    thumbs[t].addEventListener("click", function (ev) {
      var thumb = ev.currentTarget;
      if (selected === thumb) { close(); } else { open(thumb); }
    });
  }
  closer.addEventListener("click", close);
  root.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && selected !== null) { ev.preventDefault(); close(); }
  });
  function bind(el, idx) {
    el.addEventListener("mouseenter", function () { hover = idx; draw(); });
    el.addEventListener("mouseleave", function () { hover = null; draw(); });
    el.addEventListener("focus", function () { hover = idx; draw(); });
    el.addEventListener("blur", function () { hover = null; draw(); });
  }
  for (var q = 0; q < queries.length; q++) {
    bind(queries[q], Number(queries[q].getAttribute("data-index")));
  }
  window.addEventListener("resize", draw);
})();
"""


class ModelView(HtmlView):
    """An interactive model view: HTML that Jupyter and sphinx-gallery embed.

    Created by `model_view_html`. Display it in a notebook (``_repr_html_``), get the
    fragment with `html`, or write a standalone page with `save`.

    Parameters
    ----------
    fragment : str
        The HTML fragment (root ``div.attnlens-modelview`` with inline style and script).
    element_id : str
        The root element's id.
    shape : tuple of int
        ``(n_layers, H, L, S)`` of the weights shown.
    title : str
        Title of the standalone page written by `save`.
    language : {"auto", "en", "ja"}, default "auto"
        Language of the labels; with ``"auto"`` the page's ``<html lang>`` decides.
    """

    def __init__(
        self,
        fragment: str,
        element_id: str,
        shape: tuple[int, int, int, int],
        title: str,
        language: str = "auto",
    ) -> None:
        super().__init__(fragment, element_id, title, language)
        self.shape = shape

    def __repr__(self) -> str:
        layers, heads, rows, cols = self.shape
        return (
            f"ModelView(id={self.element_id!r}, layers={layers}, heads={heads}, L={rows}, S={cols})"
        )


def model_view_html(
    weights: WeightsLike | Sequence[WeightsLike] | Mapping[str, WeightsLike],
    tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    *,
    batch_index: int | None = None,
    head_labels: Sequence[str] | None = None,
    layer_labels: Sequence[str] | None = None,
    thumb_size: int = 64,
    title: str = "attnlens model view",
    element_id: str | None = None,
    width: int = 160,
    decimals: int = 4,
    language: str = "auto",
) -> ModelView:
    """Build an interactive view of every head of every layer (self-contained HTML).

    One thumbnail per layer and head (rows: layers, columns: heads) draws the head's
    weights as lines from the queries to the keys. Click a thumbnail, or press Enter or
    Space on it, to enlarge it with its tokens.

    Parameters
    ----------
    weights : Tensor or array_like of shape (H, L, S) or (n_layers, H, L, S), or a sequence / mapping of (H, L, S)
        Per-head weights of one layer or of several. A mapping such as
        ``capture.weights`` is read in insertion order. With ``batch_index``,
        (N, H, L, S) per layer.
    tokens : sequence of str of length L
        Query tokens (left side of the enlarged view).
    key_tokens : sequence of str of length S, optional
        Key tokens (right side). Default: ``tokens`` (self-attention, L = S).
    batch_index : int, optional
        Select this sample from batched weights.
    head_labels : sequence of str of length H, optional
        Column headings (escaped). Default: h with subscript 1..H.
    layer_labels : sequence of str of length n_layers, optional
        Row headings (escaped). Default: ℓ₁, ℓ₂, ...
    thumb_size : int, default 64
        Width and height of a thumbnail in pixels.
    title : str, default "attnlens model view"
        ``<title>`` of the page written by `ModelView.save`.
    element_id : str, optional
        Id of the root element. Default: a fresh unique id.
    width : int, default 160
        Width in pixels of the band where the enlarged view draws its lines.
    decimals : int, default 4
        Weights are rounded to this many decimals in the embedded data.
    language : {"auto", "en", "ja"}, default "auto"
        Language of the view's labels (accessible names of the thumbnails, the title of
        the enlarged view). ``"auto"`` embeds both and uses the page's language
        (``<html lang>``) when the view loads.

    Returns
    -------
    ModelView
        With ``_repr_html_()``, ``html`` and ``save(path)``.

    Raises
    ------
    ValueError
        If ``weights`` does not have one of the shapes above, the tokens or labels do not
        match it, or ``thumb_size``, ``width``, ``element_id``, ``language`` are invalid.
    TypeError
        If the tokens are a bare str or the weights are not numeric.

    See Also
    --------
    head_view_html : the heads of one layer, overlaid, with the tokens.

    Notes
    -----
    The thumbnails are drawn in the markup (lines lighter than 0.005 are left out) and
    the data embedded for the enlarged view is ``n_layers * H * L * S`` numbers: fine for
    sentences, large for long sequences.

    Examples
    --------
    >>> import torch
    >>> from attnlens.modelview import model_view_html
    >>> weights = torch.softmax(torch.randn(2, 3, 4, 4), dim=-1)  # (n_layers, H, L, S)
    >>> view = model_view_html(weights, ["[CLS]", "not", "<b>", "good"])
    >>> view.shape
    (2, 3, 4, 4)
    >>> view.html.count('class="attnlens-thumb"')  # one per layer and head
    6
    >>> "&lt;b&gt;" in view.html and "<b>" not in view.html
    True
    """
    language = check_language(language)
    stacked = stack_layers(weights, batch_index)  # (n_layers, H, L, S)
    n_layers, n_heads, rows, cols = (int(d) for d in stacked.shape)
    query_tokens = check_tokens(tokens, rows, "tokens", f"L = weights.shape[-2] = {rows}")
    if key_tokens is None:
        if rows != cols:
            raise ValueError(
                f"key_tokens: required when L != S, weights have (L, S) = ({rows}, {cols})"
            )
        key_tokens = tokens
    keys = check_tokens(key_tokens, cols, "key_tokens", f"S = weights.shape[-1] = {cols}")
    esc = html.escape
    if head_labels is None:
        head_markup = [f"<i>h</i><sub>{h + 1}</sub>" for h in range(n_heads)]
    else:
        head_text = check_tokens(head_labels, n_heads, "head_labels", f"H = {n_heads}", "labels")
        head_markup = [esc(text) for text in head_text]
    if layer_labels is None:
        layer_text = [f"ℓ{k + 1}".translate(_SUBSCRIPTS) for k in range(n_layers)]
    else:
        layer_text = check_tokens(
            layer_labels, n_layers, "layer_labels", f"n_layers = {n_layers}", "labels"
        )
    if isinstance(thumb_size, bool) or not isinstance(thumb_size, int) or thumb_size < 16:
        raise ValueError(f"thumb_size: expected an int of at least 16 pixels, got {thumb_size!r}")
    if width < 20:
        raise ValueError(f"width: expected at least 20 pixels, got {width}")
    element_id = check_element_id(element_id, "attnlens-mv")
    rounded = np.round(stacked, decimals)  # (n_layers, H, L, S)
    colors = [HEAD_COLORS[h % len(HEAD_COLORS)] for h in range(n_heads)]

    labels = MODEL_VIEW_LABELS
    initial = "en" if language == "auto" else language
    parts: list[str] = [
        (
            f'<div class="attnlens-modelview" id="{element_id}" '
            f'data-language-setting="{language}" data-language="{initial}">'
        ),
        f"<style>{_CSS}</style>",
        (
            f'<div class="attnlens-grid" role="group" {l10n_attrs(labels, language, "grid")} '
            f'style="grid-template-columns:auto repeat({n_heads},{thumb_size + 6}px)">'
        ),
        '<span class="attnlens-corner"></span>',
    ]
    parts.extend(
        f'<span class="attnlens-colhead" style="color:{colors[h]}">{head_markup[h]}</span>'
        for h in range(n_heads)
    )
    for k in range(n_layers):
        parts.append(f'<span class="attnlens-rowhead">{esc(layer_text[k])}</span>')
        for h in range(n_heads):
            thumb_lines = _thumbnail_lines(rounded[k, h], colors[h])
            parts.append(
                f'<button type="button" class="attnlens-thumb" data-layer="{k}" data-head="{h}" '
                f'aria-pressed="false" {l10n_attrs(labels, language, "thumb", k + 1, h + 1)} '
                f"{l10n_attrs(labels, language, 'thumb', k + 1, h + 1, attr='title')}>"
                f'<svg class="attnlens-thumb-svg" xmlns="http://www.w3.org/2000/svg" '
                f'width="{thumb_size}" height="{thumb_size}" viewBox="0 0 100 100" '
                f'preserveAspectRatio="none" aria-hidden="true" focusable="false">'
                f"{thumb_lines}</svg></button>"
            )
    parts.append("</div>")
    parts.append(
        f'<div class="attnlens-detail" role="region" '
        f"{l10n_attrs(labels, language, 'detail')} hidden>"
    )
    parts.append(
        '<div class="attnlens-detail-bar"><span class="attnlens-detail-title" aria-live="polite">'
        f'</span><button type="button" class="attnlens-close" '
        f"{l10n_attrs(labels, language, 'close')}>×</button></div>"
    )
    parts.append('<div class="attnlens-body"><div class="attnlens-column attnlens-queries">')
    parts.extend(
        f'<span class="attnlens-token" data-side="query" data-index="{i}" tabindex="0">'
        f"{esc(token)}</span>"
        for i, token in enumerate(query_tokens)
    )
    parts.append("</div>")
    parts.append(
        f'<svg class="attnlens-edges" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="1" style="width:{width}px" aria-hidden="true"></svg>'
    )
    parts.append('<div class="attnlens-column attnlens-keys">')
    parts.extend(
        f'<span class="attnlens-token" data-side="key" data-index="{j}">{esc(token)}</span>'
        for j, token in enumerate(keys)
    )
    parts.append("</div></div></div>")
    data = {
        "weights": replace_nan(rounded.tolist()),
        "colors": colors,
        "queries": query_tokens,
        "keys": keys,
    }
    script = _JS % {
        "id": json_for_script(element_id),
        "data": json_for_script(data),
        "labels": json_for_script(embedded_labels(labels, language)),
        "l10n": L10N_JS,
    }
    parts.append(f"<script>{script}</script>")
    parts.append("</div>")
    return ModelView("\n".join(parts), element_id, (n_layers, n_heads, rows, cols), title, language)


def _thumbnail_lines(weights: np.ndarray, color: str) -> str:
    """SVG lines of one head's (L, S) weights in a 100 x 100 box, opacity = weight."""
    rows, cols = weights.shape
    lines = []
    for i in range(rows):
        y1 = (i + 0.5) * 100 / rows
        for j in range(cols):
            w = float(weights[i, j])
            if not np.isfinite(w) or w < THUMB_MIN_WEIGHT:
                continue
            y2 = (j + 0.5) * 100 / cols
            lines.append(
                f'<line class="attnlens-thumb-edge" x1="4" y1="{y1:.2f}" x2="96" y2="{y2:.2f}" '
                f'stroke="{color}" stroke-opacity="{min(w, 1.0):.3f}" '
                f'vector-effect="non-scaling-stroke"/>'
            )
    return "".join(lines)
