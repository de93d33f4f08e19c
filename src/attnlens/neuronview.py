"""An interactive, self-contained HTML view of how one query's weights are computed.

`neuron_view_html` takes one head's queries and keys (or several heads') and, for a chosen
query token, writes out every step from q and k to the attention weights, as BertViz's
neuron view does: the query vector q, each key vector k, their elementwise product
q ∘ k, its sum q · k, the score q · k × scale (scale = 1/√D by default), and the softmax
of the scores over the keys, drawn as bars. Buttons choose the query token (Enter or
Space work on them), a menu chooses the head.

Every number fits on screen when the head dimension D is small, as in the walkthroughs
(D = 2 to 4); D is limited to `MAX_HEAD_DIM`.

Like `attnlens.head_view_html`, the fragment carries its own ``<style>`` and
``<script>`` (works offline), every token is HTML-escaped, the embedded JSON cannot end the
script, and its labels are in English or Japanese (``language``; ``"auto"`` follows the
page's ``<html lang>``).

DOM contract (relied on by browser tests)
-----------------------------------------
* root ``div.attnlens-neuronview`` with a unique ``id``, ``data-head`` and ``data-query``
  (0-based) for what is shown, and ``data-language`` once the view has loaded;
* query buttons ``button.attnlens-query[data-index="i"]`` with ``aria-pressed``; with
  several heads, ``select.attnlens-head-select``;
* ``td.attnlens-q[data-dim="d"]`` hold q; each key row ``tr[data-key="j"]`` holds
  ``td.attnlens-k[data-dim]``, ``td.attnlens-product[data-dim]``, ``td.attnlens-dot``,
  ``td.attnlens-score`` and ``td.attnlens-weight`` (its number in ``.attnlens-value``);
  the root's ``data-scale`` is the scale applied to q · k.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from attnlens._html import (
    HEAD_COLORS,
    L10N_JS,
    HtmlView,
    check_batch_index,
    check_element_id,
    check_language,
    check_tokens,
    embedded_labels,
    json_for_script,
    l10n_attrs,
    label,
    replace_nan,
    to_numpy,
)
from attnlens.attention import causal_mask, softmax_zero_masked_rows

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

__all__ = ["MAX_HEAD_DIM", "NEURON_VIEW_LABELS", "NeuronView", "neuron_view_html"]

#: The largest head dimension D the neuron view writes out.
MAX_HEAD_DIM = 16

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")

#: The view's labels in each language.
NEURON_VIEW_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "head": "head",
        "query": "query token",
        "key": "key token",
        "caption": "how the chosen query's attention weights are computed from q and k",
        "product": "elementwise product of q and k",
        "dot": "sum of the products: the dot product q · k",
        "score": "score: q · k times the scale",
        "mask": "mask added to the score: 0 takes part, −∞ masked out",
        "mask_column": "+ mask",
        "weight": "attention weight: softmax of the scores over the keys",
    },
    "ja": {
        "head": "ヘッド",
        "query": "クエリのトークン",
        "key": "キーのトークン",
        "caption": "選んだクエリの注意重みが q と k からどう計算されるか",
        "product": "q と k の要素ごとの積",
        "dot": "積の和（内積 q · k）",
        "score": "スコア：q · k にスケールを掛けた値",
        "mask": "スコアに足すマスク：0 は参加、−∞ はマスクで除外",
        "mask_column": "+ マスク",
        "weight": "注意重み：キーにわたるスコアの softmax",
    },
}

_CSS = """
.attnlens-neuronview{font-family:inherit;color:inherit;margin:0.5em 0;line-height:1.3}
.attnlens-neuronview .attnlens-controls{display:flex;flex-wrap:wrap;gap:0.3em 0.6em;
 align-items:center;margin-bottom:0.5em}
.attnlens-neuronview button.attnlens-query{margin:0;padding:0.1em 0.4em;cursor:pointer;
 font:inherit;background:transparent;color:inherit;white-space:pre;
 border:1px solid rgba(127,127,127,0.45);border-radius:3px}
.attnlens-neuronview button.attnlens-query[aria-pressed="true"]{
 background:rgba(127,127,127,0.25);box-shadow:inset 0 0 0 1px currentColor}
.attnlens-neuronview button.attnlens-query:focus-visible{outline:2px solid #1f77b4;
 outline-offset:1px}
.attnlens-neuronview .attnlens-scroll{overflow-x:auto;max-width:100%}
.attnlens-neuronview table.attnlens-neuron-table{border-collapse:collapse;
 font-variant-numeric:tabular-nums;width:auto;margin:0}
.attnlens-neuronview .attnlens-neuron-table caption{caption-side:top;text-align:left;
 font-size:0.85em;opacity:0.8;padding-bottom:0.3em}
.attnlens-neuronview .attnlens-neuron-table th,.attnlens-neuronview .attnlens-neuron-table td{
 padding:0.1em 0.25em;border:1px solid rgba(127,127,127,0.25);text-align:right;
 white-space:nowrap}
.attnlens-neuronview .attnlens-neuron-table th{font-weight:normal}
.attnlens-neuronview .attnlens-neuron-table thead th{text-align:center;font-style:normal;
 font-size:0.9em}
.attnlens-neuronview .attnlens-neuron-table tbody th{text-align:left;white-space:pre}
.attnlens-neuronview td.attnlens-weight{text-align:left;min-width:6em}
.attnlens-neuronview tr.attnlens-masked td,.attnlens-neuronview tr.attnlens-masked th{
 opacity:0.45}
.attnlens-neuronview .attnlens-bar{display:inline-block;height:0.8em;vertical-align:middle;
 margin-right:0.35em;border-radius:1px}
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
  var buttons = root.querySelectorAll("button.attnlens-query");
  var select = root.querySelector("select.attnlens-head-select");
  var qToken = root.querySelector(".attnlens-q-token");
  var rows = root.querySelectorAll("tbody tr[data-key]");
  var qCells = root.querySelectorAll("td.attnlens-q");
  var head = Number(root.getAttribute("data-head"));
  var query = Number(root.getAttribute("data-query"));

  function fmt(v) { return (v === 0 ? 0 : v).toFixed(data.decimals); }
  function fmtMask(v) { return v === null ? "\u2212\u221e" : fmt(v); }
  function tint(cell, v, top) {
    var a = top > 0 ? Math.min(1, Math.abs(v) / top) * 0.45 : 0;
    cell.style.backgroundColor = v >= 0 ? "rgba(255,127,14," + a + ")" :
      "rgba(31,119,180," + a + ")";
  }
  function largest(values) {
    var top = 0;
    for (var n = 0; n < values.length; n++) { top = Math.max(top, Math.abs(values[n])); }
    return top;
  }
  function update() {
    root.setAttribute("data-head", String(head));
    root.setAttribute("data-query", String(query));
    for (var b = 0; b < buttons.length; b++) {
      var on = Number(buttons[b].getAttribute("data-index")) === query;
      buttons[b].setAttribute("aria-pressed", on ? "true" : "false");
    }
    qToken.textContent = data.queries[query];
    var q = data.q[head][query];
    for (var c = 0; c < qCells.length; c++) {
      var d0 = Number(qCells[c].getAttribute("data-dim"));
      qCells[c].textContent = fmt(q[d0]);
      tint(qCells[c], q[d0], largest(q));
    }
    var products = data.products[head][query];
    var flat = [].concat.apply([], products);
    var topProduct = largest(flat);
    var topDot = largest(data.dots[head][query]);
    var topScore = largest(data.scores[head][query]);
    for (var r = 0; r < rows.length; r++) {
      var j = Number(rows[r].getAttribute("data-key"));
      var ks = rows[r].querySelectorAll("td.attnlens-k");
      for (var a = 0; a < ks.length; a++) {
        var d1 = Number(ks[a].getAttribute("data-dim"));
        ks[a].textContent = fmt(data.k[head][j][d1]);
      }
      var ps = rows[r].querySelectorAll("td.attnlens-product");
      for (var p = 0; p < ps.length; p++) {
        var d2 = Number(ps[p].getAttribute("data-dim"));
        ps[p].textContent = fmt(products[j][d2]);
        tint(ps[p], products[j][d2], topProduct);
      }
      var dot = rows[r].querySelector("td.attnlens-dot");
      dot.textContent = fmt(data.dots[head][query][j]);
      tint(dot, data.dots[head][query][j], topDot);
      var score = rows[r].querySelector("td.attnlens-score");
      score.textContent = fmt(data.scores[head][query][j]);
      tint(score, data.scores[head][query][j], topScore);
      if (data.mask) {
        var m = data.mask[head][query][j];
        rows[r].querySelector("td.attnlens-mask").textContent = fmtMask(m);
        rows[r].classList.toggle("attnlens-masked", m === null);
      }
      var w = data.weights[head][query][j];
      rows[r].querySelector(".attnlens-value").textContent = fmt(w);
      var bar = rows[r].querySelector(".attnlens-bar");
      bar.style.width = (w * 4).toFixed(3) + "em";
      bar.style.backgroundColor = data.colors[head];
    }
  }
  for (var b = 0; b < buttons.length; b++) {
    buttons[b].addEventListener("click", function (ev) {
      query = Number(ev.currentTarget.getAttribute("data-index"));
      update();
    });
  }
  if (select) {
    select.addEventListener("change", function () { head = Number(select.value); update(); });
  }
  update();
})();
"""


class NeuronView(HtmlView):
    """An interactive neuron view: HTML that Jupyter and sphinx-gallery embed.

    Created by `neuron_view_html`. Display it in a notebook (``_repr_html_``), get the
    fragment with `html`, or write a standalone page with `save`. The numbers it shows
    are attributes, computed in float64.

    Attributes
    ----------
    element_id : str
        The root element's id.
    shape : tuple of int
        ``(H, L, S, D)`` of the queries and keys shown.
    scale : float
        The factor applied to q · k.
    products : numpy.ndarray of shape (H, L, S, D)
        Elementwise products q ∘ k of every query with every key.
    dots : numpy.ndarray of shape (H, L, S)
        Their sums, q · k.
    scores : numpy.ndarray of shape (H, L, S)
        ``dots * scale``.
    mask : numpy.ndarray of shape (H, L, S) or None
        What the mask adds to the scores (0, −∞ where a key is masked out, or a float
        mask's values); ``None`` when the view was built without a mask.
    weights : numpy.ndarray of shape (H, L, S)
        Softmax of the (masked) scores over the keys (the last axis): the attention
        weights. A query whose keys are all masked out has weights 0.
    title : str
        Title of the standalone page written by `save`.
    language : {"auto", "en", "ja"}
        Language of the labels; with ``"auto"`` the page's ``<html lang>`` decides.
    """

    def __init__(
        self,
        fragment: str,
        element_id: str,
        title: str,
        language: str,
        *,
        scale: float,
        products: NDArray[np.float64],
        scores: NDArray[np.float64],
        weights: NDArray[np.float64],
        mask: NDArray[np.float64] | None = None,
    ) -> None:
        super().__init__(fragment, element_id, title, language)
        self.scale = scale
        self.products = products
        self.dots = products.sum(axis=-1)  # (H, L, S)
        self.scores = scores
        self.mask = mask
        self.weights = weights
        h, rows, cols, dim = products.shape
        self.shape = (int(h), int(rows), int(cols), int(dim))

    def __repr__(self) -> str:
        heads, rows, cols, dim = self.shape
        return (
            f"NeuronView(id={self.element_id!r}, heads={heads}, L={rows}, S={cols}, D={dim}, "
            f"scale={self.scale:.6g})"
        )


def _heads(values: object, name: str, batch_index: int | None, side: str) -> NDArray[np.float64]:
    """``values`` as (H, L, D) (``side`` names the length axis: "L" or "S")."""
    array = to_numpy(values, name)
    if array.ndim == 4:
        if batch_index is None:
            raise ValueError(
                f"{name}: got shape {tuple(array.shape)} (N, H, {side}, D); "
                "pass batch_index to choose a sample"
            )
        sample: NDArray[np.float64] = array[check_batch_index(batch_index, array.shape[0])]
        return sample  # (H, L, D)
    if array.ndim == 3:
        return array
    if array.ndim == 2:
        return array[None]  # (1, L, D): one head
    raise ValueError(
        f"{name}: expected shape ({side}, D), (H, {side}, D) or (N, H, {side}, D) with "
        f"batch_index, got {tuple(array.shape)}"
    )


def _additive_mask(
    attn_mask: object,
    is_causal: bool,
    batch_index: int | None,
    shape: tuple[int, int, int],
) -> NDArray[np.float64] | None:
    """What the mask adds to the scores, (H, L, S) float64: 0 or -inf for a bool mask."""
    n_heads, rows, cols = shape
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal: expected a bool, got {type(is_causal).__name__}")
    if is_causal:
        if attn_mask is not None:
            raise ValueError("attn_mask, is_causal: give one of them, not both (as in torch)")
        keep = causal_mask(rows, cols).numpy()  # (L, S), top-left aligned
        causal: NDArray[np.float64] = np.where(keep, 0.0, -math.inf)  # (L, S)
        everywhere: NDArray[np.float64] = np.broadcast_to(causal, shape).copy()  # (H, L, S)
        return everywhere
    if attn_mask is None:
        return None
    if isinstance(attn_mask, torch.Tensor) and attn_mask.dtype == torch.bool:
        array: NDArray[Any] = attn_mask.detach().cpu().numpy()
    elif isinstance(attn_mask, np.ndarray) and attn_mask.dtype == np.bool_:
        array = attn_mask
    else:
        array = to_numpy(attn_mask, "attn_mask")
    given = tuple(array.shape)
    expected = f"(L, S) = ({rows}, {cols}), (H, L, S) = ({n_heads}, {rows}, {cols})"
    if array.ndim == 4:
        if batch_index is None:
            raise ValueError(
                f"attn_mask: got shape {tuple(array.shape)} (N, H, L, S); pass batch_index "
                "to choose a sample"
            )
        array = array[check_batch_index(batch_index, array.shape[0])]
    if (
        array.ndim not in (2, 3)
        or array.shape[-2:] != (rows, cols)
        or (array.ndim == 3 and array.shape[0] not in (1, n_heads))
    ):
        raise ValueError(
            f"attn_mask: expected shape {expected} or (N, H, L, S) with batch_index, with "
            f"size 1 allowed for H, got {given}"
        )
    added: NDArray[np.float64]
    if array.dtype == np.bool_:
        added = np.where(array, 0.0, -math.inf)
    else:
        added = array.astype(np.float64)
        if np.isnan(added).any() or (added == math.inf).any():
            raise ValueError("attn_mask: expected finite numbers or -inf, got NaN or +inf")
    mask: NDArray[np.float64] = np.broadcast_to(added, shape).copy()  # (H, L, S)
    return mask


def neuron_view_html(
    query: torch.Tensor | ArrayLike,
    key: torch.Tensor | ArrayLike,
    tokens: Sequence[str],
    key_tokens: Sequence[str] | None = None,
    *,
    batch_index: int | None = None,
    head: int = 0,
    query_index: int = 0,
    scale: float | None = None,
    attn_mask: torch.Tensor | ArrayLike | None = None,
    is_causal: bool = False,
    head_labels: Sequence[str] | None = None,
    title: str = "attnlens neuron view",
    element_id: str | None = None,
    decimals: int = 3,
    language: str = "auto",
) -> NeuronView:
    """Build an interactive view of q ∘ k, q · k, the score and the softmax (self-contained HTML).

    For the chosen query token and head, each key gets one row: its vector k, the
    elementwise product q ∘ k, the sum q · k, the score q · k × ``scale``, and the
    attention weight, the softmax of the scores over the keys. Buttons choose the query
    token, a menu the head. With a mask (``attn_mask`` or ``is_causal``), a column shows
    what the mask adds to each score (0, or −∞ for a key that is masked out, whose row is
    dimmed) and the softmax is taken over the masked scores.

    Parameters
    ----------
    query : Tensor or array_like of shape (H, L, D), (L, D), or (N, H, L, D) with ``batch_index``
        The queries of each head, after the projection and the split into heads (for
        ``nn.MultiheadAttention``: ``split_heads(F.linear(x, W_Q, b_Q), H)``). D at most
        `MAX_HEAD_DIM`.
    key : Tensor or array_like of shape (H, S, D), (S, D), or (N, H, S, D) with ``batch_index``
        The keys of each head, with the same H and D as ``query``.
    tokens : sequence of str of length L
        Query tokens.
    key_tokens : sequence of str of length S, optional
        Key tokens. Default: ``tokens`` (self-attention, L = S).
    batch_index : int, optional
        Select this sample from batched (N, H, L, D) / (N, H, S, D) inputs.
    head : int, default 0
        Head shown first (0-based).
    query_index : int, default 0
        Query token shown first (0-based).
    scale : float, optional
        Factor applied to q · k. Default: 1/√D, as in scaled dot-product attention.
    attn_mask : Tensor or array_like of shape (L, S), (H, L, S), or (N, H, L, S) with ``batch_index``, optional
        A mask with the convention of ``torch.nn.functional.scaled_dot_product_attention``
        (the *opposite* of ``nn.MultiheadAttention``'s bool masks): **bool, True takes
        part** and False is masked out (−∞ added to the score); a float mask is added to
        the scores. A size-1 H broadcasts over the heads.
    is_causal : bool, default False
        Mask out the keys after each query: query i sees keys 0..i, aligned at the top
        left when L ≠ S, as ``scaled_dot_product_attention(..., is_causal=True)`` does.
        Cannot be combined with ``attn_mask``.
    head_labels : sequence of str of length H, optional
        Entries of the head menu (escaped). Default: h with subscript 1..H.
    title : str, default "attnlens neuron view"
        ``<title>`` of the page written by `NeuronView.save`.
    element_id : str, optional
        Id of the root element. Default: a fresh unique id.
    decimals : int, default 3
        Numbers are rounded to this many decimals (the attributes of the result are not).
    language : {"auto", "en", "ja"}, default "auto"
        Language of the view's labels. ``"auto"`` embeds both and uses the page's
        language (``<html lang>``) when the view loads.

    Returns
    -------
    NeuronView
        With ``_repr_html_()``, ``html``, ``save(path)``, and the numbers shown as
        float64 arrays: ``products`` (H, L, S, D), ``dots``, ``scores``, ``mask`` (what
        is added to the scores, ``None`` without a mask) and ``weights`` (H, L, S).

    Raises
    ------
    ValueError
        If ``query`` or ``key`` has none of the shapes above, their H or D differ, D is
        larger than `MAX_HEAD_DIM`, they hold NaN or infinity, the tokens do not match
        L or S, ``attn_mask`` does not broadcast to (H, L, S) or holds NaN or +∞, both
        ``attn_mask`` and ``is_causal`` are given, or ``head``, ``query_index``,
        ``scale``, ``decimals``, ``element_id``, ``language`` are invalid.
    TypeError
        If the tokens are a bare str, or ``query``, ``key``, ``attn_mask`` are not
        numeric.

    Notes
    -----
    **A query whose keys are all masked out** gets weights of 0 for every key (not NaN),
    as ``torch.nn.functional.scaled_dot_product_attention`` and
    `attnlens.scaled_dot_product_attention` give.

    See Also
    --------
    head_view_html : the resulting weights of every head at once.

    Examples
    --------
    >>> import torch
    >>> from attnlens.neuronview import neuron_view_html
    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (H, L, D) = (1, 2, 2)
    >>> k = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])  # (H, S, D) = (1, 2, 2)
    >>> view = neuron_view_html(q, k, ["a", "<b>"])
    >>> view.products[0, 0]  # q_a ∘ k for both keys: (S, D)
    array([[1., 0.],
           [2., 0.]])
    >>> view.dots[0, 0], view.scale  # q_a · k, and 1/√D
    (array([1., 2.]), 0.7071067811865475)
    >>> view.weights[0, 0].round(4)  # softmax(q_a · k / √2)
    array([0.3302, 0.6698])
    >>> "&lt;b&gt;" in view.html and "<b>" not in view.html
    True

    With a causal mask, the first query sees only the first key:

    >>> view = neuron_view_html(q, k, ["a", "b"], is_causal=True)
    >>> view.mask[0]  # added to the scores: (L, S)
    array([[  0., -inf],
           [  0.,   0.]])
    >>> view.weights[0].round(4)
    array([[1.    , 0.    ],
           [0.8044, 0.1956]])
    """
    language = check_language(language)
    q = _heads(query, "query", batch_index, "L")  # (H, L, D)
    k = _heads(key, "key", batch_index, "S")  # (H, S, D)
    n_heads, rows, dim = (int(d) for d in q.shape)
    if k.shape[0] != n_heads or k.shape[2] != dim:
        raise ValueError(
            f"key: expected shape (H, S, D) = ({n_heads}, *, {dim}) like query "
            f"{tuple(q.shape)} (H, L, D), got {tuple(k.shape)}"
        )
    cols = int(k.shape[1])
    if dim > MAX_HEAD_DIM:
        raise ValueError(
            f"query: expected a head dimension D of at most {MAX_HEAD_DIM} for the neuron "
            f"view, got shape {tuple(q.shape)} (H, L, D) with D = {dim}"
        )
    if dim == 0 or rows == 0 or cols == 0:
        raise ValueError(
            f"query, key: expected non-empty (H, L, D) and (H, S, D), got {tuple(q.shape)} "
            f"and {tuple(k.shape)}"
        )
    for name, array in (("query", q), ("key", k)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: expected finite numbers, got NaN or infinity")
    query_tokens = check_tokens(tokens, rows, "tokens", f"L = query.shape[-2] = {rows}")
    if key_tokens is None:
        if rows != cols:
            raise ValueError(
                f"key_tokens: required when L != S, query and key have L = {rows}, S = {cols}"
            )
        key_tokens = tokens
    keys = check_tokens(key_tokens, cols, "key_tokens", f"S = key.shape[-2] = {cols}")
    if scale is None:
        scale = 1.0 / math.sqrt(dim)
    elif (
        isinstance(scale, bool)
        or not isinstance(scale, int | float)
        or not (math.isfinite(scale) and scale > 0)
    ):
        raise ValueError(f"scale: expected a finite number > 0, got {scale!r}")
    scale = float(scale)
    if not -n_heads <= head < n_heads:
        raise ValueError(f"head: expected an index in [{-n_heads}, {n_heads}), got {head}")
    head %= n_heads
    if not -rows <= query_index < rows:
        raise ValueError(f"query_index: expected an index in [{-rows}, {rows}), got {query_index}")
    query_index %= rows
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 8:
        raise ValueError(f"decimals: expected an int in [0, 8], got {decimals!r}")
    if head_labels is None:
        head_text = [f"h{h + 1}".translate(_SUBSCRIPTS) for h in range(n_heads)]
    else:
        head_text = check_tokens(head_labels, n_heads, "head_labels", f"H = {n_heads}", "labels")
    element_id = check_element_id(element_id, "attnlens-nv")

    mask = _additive_mask(attn_mask, is_causal, batch_index, (n_heads, rows, cols))

    products = q[:, :, None, :] * k[:, None, :, :]  # (H, L, S, D)
    scores = products.sum(axis=-1) * scale  # (H, L, S)
    masked_scores = torch.from_numpy(scores if mask is None else scores + mask)  # (H, L, S)
    weights = softmax_zero_masked_rows(masked_scores).numpy()  # (H, L, S)

    def rounded(array: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.round(array, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0

    shown = {
        "q": rounded(q),
        "k": rounded(k),
        "products": rounded(products),
        "dots": rounded(products.sum(axis=-1)),
        "scores": rounded(scores),
        "weights": rounded(weights),
    }
    shown_mask = None if mask is None else rounded(mask)  # -inf stays -inf
    data: dict[str, object] = {
        **{name: array.tolist() for name, array in shown.items()},
        "mask": None if shown_mask is None else replace_nan(shown_mask.tolist()),
        "queries": query_tokens,
        "decimals": decimals,
    }
    colors = [HEAD_COLORS[h % len(HEAD_COLORS)] for h in range(n_heads)]
    data["colors"] = colors

    def fmt(value: float) -> str:
        return "\u2212\u221e" if value == -math.inf else f"{value:.{decimals}f}"

    esc = html.escape
    labels = NEURON_VIEW_LABELS
    initial = "en" if language == "auto" else language
    default_scale = scale == 1.0 / math.sqrt(dim)
    score_head = f"q · k / √{dim}" if default_scale else f"q · k × {scale:.4g}"
    parts: list[str] = [
        (
            f'<div class="attnlens-neuronview" id="{element_id}" data-head="{head}" '
            f'data-query="{query_index}" data-scale="{scale!r}" '
            f'data-language-setting="{language}" data-language="{initial}">'
        ),
        f"<style>{_CSS}</style>",
        '<div class="attnlens-controls">',
    ]
    if n_heads > 1:
        options = "".join(
            f'<option value="{h}"{" selected" if h == head else ""}>{esc(text)}</option>'
            for h, text in enumerate(head_text)
        )
        parts.append(
            f"<label><span {l10n_attrs(labels, language, 'head', attr='text')}>"
            f"{esc(label(labels, language, 'head'))}</span> "
            f'<select class="attnlens-head-select">{options}</select></label>'
        )
    parts.append(
        f"<span {l10n_attrs(labels, language, 'query', attr='text')}>"
        f"{esc(label(labels, language, 'query'))}</span>"
    )
    parts.append(
        f'<span class="attnlens-query-buttons" role="group" '
        f"{l10n_attrs(labels, language, 'query')}>"
    )
    parts.extend(
        f'<button type="button" class="attnlens-query" data-index="{i}" '
        f'aria-pressed="{"true" if i == query_index else "false"}">{esc(token)}</button>'
        for i, token in enumerate(query_tokens)
    )
    parts.append("</span></div>")

    mask_head = (
        f"<span {l10n_attrs(labels, language, 'mask_column', attr='text')}>"
        f"{esc(label(labels, language, 'mask_column'))}</span>"
    )

    def th(text: str, key: str, span: int = 1) -> str:
        colspan = f' colspan="{span}"' if span > 1 else ""
        return (
            f'<th scope="col"{colspan} {l10n_attrs(labels, language, key, attr="title")}>'
            f"{text}</th>"
        )

    parts.append('<div class="attnlens-scroll"><table class="attnlens-neuron-table">')
    parts.append(
        f"<caption {l10n_attrs(labels, language, 'caption', attr='text')}>"
        f"{esc(label(labels, language, 'caption'))}</caption>"
    )
    parts.append(
        "<thead><tr>"
        f'<th scope="col" {l10n_attrs(labels, language, "key", attr="text")}>'
        f"{esc(label(labels, language, 'key'))}</th>"
        f'<th scope="col" colspan="{dim}">k</th>'
        + th("q ∘ k", "product", dim)
        + th("q · k", "dot")
        + th(esc(score_head), "score")
        + ("" if mask is None else th(mask_head, "mask"))
        + th("softmax", "weight")
        + "</tr>"
    )
    q_cells = "".join(
        f'<td class="attnlens-q" data-dim="{d}">{fmt(shown["q"][head, query_index, d])}</td>'
        for d in range(dim)
    )
    parts.append(
        f'<tr class="attnlens-q-row"><th scope="row">q: '
        f'<span class="attnlens-q-token">{esc(query_tokens[query_index])}</span></th>'
        f'{q_cells}<td colspan="{dim + 3 + (mask is not None)}"></td></tr></thead>'
    )
    parts.append("<tbody>")
    for j, token in enumerate(keys):
        k_cells = "".join(
            f'<td class="attnlens-k" data-dim="{d}">{fmt(shown["k"][head, j, d])}</td>'
            for d in range(dim)
        )
        p_cells = "".join(
            f'<td class="attnlens-product" data-dim="{d}">'
            f"{fmt(shown['products'][head, query_index, j, d])}</td>"
            for d in range(dim)
        )
        weight = shown["weights"][head, query_index, j]
        masked, mask_cell = False, ""
        if shown_mask is not None:
            added = float(shown_mask[head, query_index, j])
            masked = added == -math.inf
            mask_cell = f'<td class="attnlens-mask">{fmt(added)}</td>'
        row_class = ' class="attnlens-masked"' if masked else ""
        parts.append(
            f'<tr data-key="{j}"{row_class}><th scope="row">{esc(token)}</th>{k_cells}{p_cells}'
            f'<td class="attnlens-dot">{fmt(shown["dots"][head, query_index, j])}</td>'
            f'<td class="attnlens-score">{fmt(shown["scores"][head, query_index, j])}</td>'
            f"{mask_cell}"
            f'<td class="attnlens-weight"><span class="attnlens-bar" '
            f'style="width:{weight * 4:.3f}em;background:{colors[head]}"></span>'
            f'<span class="attnlens-value">{fmt(weight)}</span></td></tr>'
        )
    parts.append("</tbody></table></div>")
    script = _JS % {
        "id": json_for_script(element_id),
        "data": json_for_script(data),
        "labels": json_for_script(embedded_labels(labels, language)),
        "l10n": L10N_JS,
    }
    parts.append(f"<script>{script}</script>")
    parts.append("</div>")
    return NeuronView(
        "\n".join(parts),
        element_id,
        title,
        language,
        scale=scale,
        products=products,
        scores=scores,
        mask=mask,
        weights=weights,
    )
