"""An interactive, self-contained HTML view of per-head attention.

`head_view_html` turns per-head weights into an HTML fragment: query tokens on the
left, key tokens on the right. With nothing hovered, every visible head's lines are
drawn, from every query to every key, coloured by head, their opacity the attention
weight (as BertViz does). Hovering (or focusing, or clicking to pin) a query token keeps
only the lines from that token; small squares beside each key show its weights head by
head. Checkboxes choose the heads; with several layers a menu chooses the layer. The
menu's label is in English or Japanese (``language``; ``"auto"``: the page's language).

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
* with nothing hovered or pinned, the root has no ``data-hover`` and ``line.attnlens-edge``
  elements (``data-head``, ``data-query``, ``data-key``) are drawn for every query, key and
  visible head whose weight is above zero, with that weight as opacity;
* hovering query token ``i`` sets the root attribute ``data-hover="i"`` and keeps only the
  edges from query ``i`` (visible heads only); leaving restores the full view;
* head toggles ``input.attnlens-head-toggle[data-head="h"]`` (checkboxes, ``h`` from 0);
* per-head cells ``span.attnlens-cell[data-head="h"][data-key="j"]`` beside each key;
* with several layers, ``select.attnlens-layer-select``; the root's ``data-layer`` holds
  the layer shown;
* the root's ``data-language`` is the language of the labels, chosen when the view loads.
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

__all__ = ["HEAD_COLORS", "HEAD_VIEW_LABELS", "HeadView", "head_view_html"]

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")

#: The view's labels in each language (``{0}`` is a 1-based number).
HEAD_VIEW_LABELS: dict[str, dict[str, str]] = {
    "en": {"layer": "layer", "heads": "heads", "tokens": "query tokens"},
    "ja": {"layer": "層", "heads": "ヘッド", "tokens": "クエリのトークン"},
}

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
  var labels = %(labels)s;
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
%(l10n)s
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
    if (i === null) { root.removeAttribute("data-hover"); }
    else { root.setAttribute("data-hover", String(i)); }
    var height = Math.max(qcol.offsetHeight, kcol.offsetHeight);
    svg.setAttribute("height", String(height));
    svg.style.height = height + "px";
    var box = svg.getBoundingClientRect();
    var width = box.width;
    var nh = data.heads.length;
    var ky = [];
    for (var k = 0; k < keys.length; k++) {
      var kr = keys[k].getBoundingClientRect();
      ky.push((kr.top + kr.bottom) / 2 - box.top);
    }
    // nothing hovered: every query's lines, as BertViz does; else only those of query i
    for (var q0 = (i === null ? 0 : i); q0 < (i === null ? queries.length : i + 1); q0++) {
      var qr = queries[q0].getBoundingClientRect();
      var y1 = (qr.top + qr.bottom) / 2 - box.top;
      for (var h = 0; h < nh; h++) {
        if (!shown[h]) { continue; }
        var offset = (h - (nh - 1) / 2) * 1.5;
        for (var j = 0; j < keys.length; j++) {
          var w = weight(h, q0, j);
          if (!(w > 0)) { continue; }
          var y2 = ky[j];
          var line = document.createElementNS(NS, "line");
          line.setAttribute("class", "attnlens-edge");
          line.setAttribute("data-head", String(h));
          line.setAttribute("data-query", String(q0));
          line.setAttribute("data-key", String(j));
          line.setAttribute("x1", "2");
          line.setAttribute("y1", String(y1 + offset));
          line.setAttribute("x2", String(width - 2));
          line.setAttribute("y2", String(y2 + offset));
          line.setAttribute("stroke", data.colors[h]);
          line.style.opacity = String(Math.min(1, w));
          var tip = document.createElementNS(NS, "title");
          tip.textContent = data.heads[h] + ": " + data.queries[q0] + " \\u2192 " +
            data.keys[j] + "  " + fmt(w);
          line.appendChild(tip);
          svg.appendChild(line);
        }
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
  window.addEventListener("resize", draw);
  window.addEventListener("load", draw);
  draw();
})();
"""


class HeadView(HtmlView):
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
            f"HeadView(id={self.element_id!r}, layers={layers}, heads={heads}, L={rows}, S={cols})"
        )


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
    language: str = "auto",
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
    language : {"auto", "en", "ja"}, default "auto"
        Language of the view's labels (the layer menu's accessible name, for example).
        ``"auto"`` embeds both and uses the page's language (``<html lang>``) when the
        view loads, so one view serves an English and a Japanese page.

    Returns
    -------
    HeadView
        With ``_repr_html_()``, ``html`` and ``save(path)``.

    Raises
    ------
    ValueError
        If ``weights`` does not have one of the shapes above, the tokens or labels
        do not match it, or ``layer``, ``heads``, ``element_id``, ``language`` are invalid.
    TypeError
        If the tokens are a bare str or the weights are not numeric.

    See Also
    --------
    model_view_html : every head of every layer at once.
    neuron_view_html : how one query's weights are computed from q and k.

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
    if head_labels is None:
        head_text = [f"h{h + 1}" for h in range(n_heads)]
        head_markup = [f"<i>h</i><sub>{h + 1}</sub>" for h in range(n_heads)]
    else:
        head_text = check_tokens(head_labels, n_heads, "head_labels", f"H = {n_heads}", "labels")
        head_markup = [html.escape(label) for label in head_text]
    if layer_labels is None:
        layer_text = [f"ℓ{k + 1}".translate(_SUBSCRIPTS) for k in range(n_layers)]
    else:
        layer_text = check_tokens(
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
    element_id = check_element_id(element_id, "attnlens-hv")
    if width < 20:
        raise ValueError(f"width: expected at least 20 pixels, got {width}")

    data = {
        "weights": replace_nan(np.round(stacked, decimals).tolist()),
        "colors": [HEAD_COLORS[h % len(HEAD_COLORS)] for h in range(n_heads)],
        "heads": head_text,
        "queries": query_tokens,
        "keys": keys,
    }
    esc = html.escape
    initial = "en" if language == "auto" else language
    heads_group = l10n_attrs(HEAD_VIEW_LABELS, language, "heads")
    parts: list[str] = [
        (
            f'<div class="attnlens-headview" id="{element_id}" data-layer="{layer}" '
            f'data-language-setting="{language}" data-language="{initial}">'
        ),
        f"<style>{_CSS}</style>",
        f'<div class="attnlens-controls" role="group" {heads_group}>',
    ]
    if n_layers > 1:
        options = "".join(
            f'<option value="{k}"{" selected" if k == layer else ""}>{esc(label)}</option>'
            for k, label in enumerate(layer_text)
        )
        parts.append(
            f'<select class="attnlens-layer-select" '
            f"{l10n_attrs(HEAD_VIEW_LABELS, language, 'layer')}>{options}</select>"
        )
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
    parts.append(
        f'<div class="attnlens-column attnlens-queries" role="group" '
        f"{l10n_attrs(HEAD_VIEW_LABELS, language, 'tokens')}>"
    )
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
        "id": json_for_script(element_id),
        "data": json_for_script(data),
        "labels": json_for_script(embedded_labels(HEAD_VIEW_LABELS, language)),
        "layer": layer,
        "l10n": L10N_JS,
    }
    parts.append(f"<script>{script}</script>")
    parts.append("</div>")
    return HeadView("\n".join(parts), element_id, (n_layers, n_heads, rows, cols), title, language)
