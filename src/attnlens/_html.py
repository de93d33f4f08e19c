"""What the interactive HTML views share: safe embedding, input checks, labels in two languages.

The views (`attnlens.headview`, `attnlens.modelview`, `attnlens.neuronview`) are HTML
fragments with their own ``<style>`` and ``<script>``. This module holds the pieces they have
in common:

* `json_for_script`: JSON that cannot end the ``<script>`` element it is embedded in;
* `stack_layers`, `check_tokens`, `check_element_id`: argument checks with clear messages;
* the labels of a view in English and Japanese, and `L10N_JS`, the script that writes them
  into the view when it loads. With ``language="auto"`` both label sets are embedded and the
  script picks one from the page's ``<html lang>`` (``document.documentElement.lang``), so a
  view computed once can be shown on the English and on the Japanese site;
* `HtmlView`, the object every view function returns (``_repr_html_()``, ``save(path)``).

An element whose text or attribute is a label carries ``data-l10n-text``, ``data-l10n-aria``
or ``data-l10n-title`` naming the label, and ``data-l10n-args`` with comma-separated values
for the placeholders ``{0}``, ``{1}``... of the label.
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

__all__ = [
    "HEAD_COLORS",
    "L10N_JS",
    "LANGUAGES",
    "HtmlView",
    "WeightsLike",
    "check_batch_index",
    "check_element_id",
    "check_language",
    "check_tokens",
    "embedded_labels",
    "json_for_script",
    "l10n_attrs",
    "label",
    "replace_nan",
    "stack_layers",
    "to_numpy",
]

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

#: Languages a view's labels come in; ``"auto"`` picks one of them when the page loads.
LANGUAGES: tuple[str, ...] = ("en", "ja")

_ID_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

#: JavaScript run inside each view's script (after ``root`` and ``labels`` are defined):
#: chooses the language and writes the labels into the view's elements.
L10N_JS = """
  function chooseLanguage() {
    var fixed = root.getAttribute("data-language-setting");
    if (fixed && fixed !== "auto") { return fixed; }
    var lang = (document.documentElement.lang || navigator.language || "en").toLowerCase();
    return lang.indexOf("ja") === 0 ? "ja" : "en";
  }
  var language = chooseLanguage();
  var words = labels[language] || labels.en;
  function say(key, args) {
    var text = words[key];
    if (typeof text !== "string") { return ""; }
    return text.replace(/\\{(\\d+)\\}/g, function (m, n) {
      return args && args[Number(n)] !== undefined ? String(args[Number(n)]) : m;
    });
  }
  function localize(scope) {
    var kinds = [["data-l10n-text", null], ["data-l10n-aria", "aria-label"],
                 ["data-l10n-title", "title"]];
    for (var k = 0; k < kinds.length; k++) {
      var els = scope.querySelectorAll("[" + kinds[k][0] + "]");
      for (var e = 0; e < els.length; e++) {
        var raw = els[e].getAttribute("data-l10n-args");
        var text = say(els[e].getAttribute(kinds[k][0]), raw === null ? [] : raw.split(","));
        if (kinds[k][1] === null) { els[e].textContent = text; }
        else { els[e].setAttribute(kinds[k][1], text); }
      }
    }
  }
  root.setAttribute("data-language", language);
  localize(root);
"""


def check_language(language: str) -> str:
    """Return ``language`` if it is ``"auto"``, ``"en"`` or ``"ja"``; raise otherwise."""
    if not isinstance(language, str):
        raise TypeError(
            f"language: expected 'auto', 'en' or 'ja' (str), got {type(language).__name__}"
        )
    if language not in ("auto", *LANGUAGES):
        raise ValueError(f"language: expected 'auto', 'en' or 'ja', got {language!r}")
    return language


def embedded_labels(
    labels: Mapping[str, Mapping[str, str]], language: str
) -> dict[str, dict[str, str]]:
    """The label sets a view embeds: both with ``"auto"``, else only the chosen one."""
    chosen = LANGUAGES if language == "auto" else (language,)
    return {lang: dict(labels[lang]) for lang in chosen}


def label(labels: Mapping[str, Mapping[str, str]], language: str, key: str, *args: object) -> str:
    """A label as written into the markup (English stands in for ``"auto"`` until load)."""
    text = labels["en" if language == "auto" else language][key]
    return text.format(*args) if args else text


def l10n_attrs(
    labels: Mapping[str, Mapping[str, str]],
    language: str,
    key: str,
    *args: object,
    attr: str = "aria-label",
) -> str:
    """Attributes of an element whose ``attr`` (or text, ``attr="text"``) is a label.

    Returns e.g. ``aria-label="layer" data-l10n-aria="layer"``; for ``attr="text"`` only the
    ``data-l10n-*`` attributes (the caller writes the text itself with `label`).
    """
    kind = {"aria-label": "aria", "title": "title", "text": "text"}[attr]
    parts = (
        [] if attr == "text" else [f'{attr}="{html.escape(label(labels, language, key, *args))}"']
    )
    parts.append(f'data-l10n-{kind}="{key}"')
    if args:
        parts.append(f'data-l10n-args="{html.escape(",".join(str(a) for a in args))}"')
    return " ".join(parts)


def json_for_script(value: object) -> str:
    """JSON safe to embed in ``<script>``: no ``<``, ``>``, ``&`` or line separators."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def to_numpy(values: object, name: str) -> NDArray[np.float64]:
    """``values`` (tensor or array-like of numbers) as a float64 array; TypeError otherwise."""
    if isinstance(values, torch.Tensor):
        if values.is_nested:
            raise TypeError(f"{name}: expected a dense tensor, got a nested tensor")
        if values.is_complex():
            raise TypeError(f"{name}: expected real numbers, got dtype {values.dtype}")
        return values.detach().to(device="cpu", dtype=torch.float64).numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name}: expected a torch.Tensor or array of numbers, got {type(values).__name__}"
        ) from err


def stack_layers(weights: object, batch_index: int | None) -> NDArray[np.float64]:
    """Return per-head weights of one or several layers as (n_layers, H, L, S)."""
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
            _one_layer(to_numpy(w, f"weights[{k}]"), batch_index, f"weights[{k}]")
            for k, w in enumerate(items)
        ]
        for k, array in enumerate(arrays[1:], start=1):
            if array.shape != arrays[0].shape:
                raise ValueError(
                    f"weights[{k}]: expected shape (H, L, S) = {arrays[0].shape} like layer 0, "
                    f"got {array.shape}"
                )
        return np.stack(arrays)  # (n_layers, H, L, S)
    array = to_numpy(weights, "weights")
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
        array = array[check_batch_index(batch_index, array.shape[0])]
    if array.ndim != 3:
        raise ValueError(f"{name}: expected shape (H, L, S), got {tuple(array.shape)}")
    return array


def check_batch_index(batch_index: int, n: int) -> int:
    """``batch_index`` if it indexes a batch of ``n``; ValueError otherwise."""
    if not -n <= batch_index < n:
        raise ValueError(f"batch_index: expected an index in [{-n}, {n}), got {batch_index}")
    return batch_index


def check_tokens(
    tokens: Sequence[str], expected: int, name: str, what: str, noun: str = "tokens"
) -> list[str]:
    """``tokens`` as a list of str of length ``expected``; TypeError / ValueError otherwise."""
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"{name}: expected a sequence of str, got {type(tokens).__name__}")
    if len(tokens) != expected:
        raise ValueError(f"{name}: expected {expected} {noun} ({what}), got {len(tokens)}")
    return [str(token) for token in tokens]


def check_element_id(element_id: str | None, prefix: str) -> str:
    """A fresh unique id ``<prefix>-<12 hex digits>``, or ``element_id`` if it is a valid id."""
    if element_id is None:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"
    if not isinstance(element_id, str) or not _ID_PATTERN.fullmatch(element_id):
        raise ValueError(
            f"element_id: expected letters, digits, '-' or '_' starting with a letter, "
            f"got {element_id!r}"
        )
    return element_id


def replace_nan(value: Any) -> Any:
    """Replace NaN (e.g. fully masked rows) by None so that the data is valid JSON."""
    if isinstance(value, list):
        return [replace_nan(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


class HtmlView:
    """An interactive view: an HTML fragment that Jupyter and sphinx-gallery embed.

    Display it in a notebook (``_repr_html_``), get the fragment with `html`, or write a
    standalone page with `save`.

    Parameters
    ----------
    fragment : str
        The HTML fragment (root ``div`` with inline style and script).
    element_id : str
        The root element's id.
    title : str
        Title of the standalone page written by `save`.
    language : {"auto", "en", "ja"}, default "auto"
        Language of the labels; with ``"auto"`` the page's ``<html lang>`` decides.
    """

    def __init__(self, fragment: str, element_id: str, title: str, language: str = "auto") -> None:
        self._fragment = fragment
        self.element_id = element_id
        self.title = title
        self.language = language

    @property
    def html(self) -> str:
        """The HTML fragment (str)."""
        return self._fragment

    def _repr_html_(self) -> str:
        return self._fragment

    def __html__(self) -> str:
        """The fragment, for template engines that honour ``__html__`` (Jinja2, Markupsafe)."""
        return self._fragment

    def to_document(self) -> str:
        """Return a standalone HTML document (doctype, UTF-8 charset) holding the view.

        Its ``<html lang>`` is the view's language; with ``"auto"`` it has none and the
        view follows the browser's language.
        """
        lang = "" if self.language == "auto" else f' lang="{self.language}"'
        return (
            f'<!DOCTYPE html>\n<html{lang}>\n<head>\n<meta charset="utf-8">\n'
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
