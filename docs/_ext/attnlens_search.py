"""Japanese full-text search that finds what readers type: CJK bigrams and whole identifiers.

Sphinx's Japanese search splits the pages with TinySegmenter (自己 / 注意) when it builds the
index, while the browser splits the query only at spaces and punctuation (自己注意): a compound
term, or an identifier with an underscore, then finds nothing. Here both sides split text the
same way:

* runs of Han, kana and the prolonged-sound mark (ー) become overlapping character bigrams
  (注意重み -> 注意, 意重, 重み); a run of one character stays one token;
* any other run of letters, digits and underscores stays whole and lower-cased
  (``need_weights``, ``in_proj_weight``); the index also holds its underscore-separated
  parts, so ``weights`` finds ``need_weights``;
* text is NFKC-normalised first (full-width ``ＡＢＣ１２３`` is ASCII, half-width kana is
  full-width).

Sphinx's search requires every query token to be in a page, so a query of bigrams finds the
pages that contain all of its bigrams: every page that contains the term, and rarely one that
has the bigrams apart. No dictionary, no download, the same result offline.

:class:`BigramSplitter` is the index side (``html_search_options = {"type":
"attnlens_search.BigramSplitter"}``); :class:`SearchJapaneseBigram` is Sphinx's Japanese
search language with this splitter and :data:`JS_SPLITTER`, the same split in JavaScript
(``splitQuery``, which Sphinx's ``searchtools.js`` uses when it is defined).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sphinx.application import Sphinx
from sphinx.search.ja import BaseSplitter, SearchJapanese

#: One character of a CJK run: Han (with 々 〆 〇), hiragana, katakana (with ー).
CJK_CLASS = (
    "\u3005\u3006\u3007"  # 々 〆 〇
    "\u3040-\u309f"  # hiragana
    "\u30a0-\u30fa\u30fc-\u30ff"  # katakana and ー (not the middle dot ・)
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
)
_WORD = re.compile(r"\w+")
_RUNS = re.compile(f"([{CJK_CLASS}]+)|([^{CJK_CLASS}]+)")


def _bigrams(run: str) -> list[str]:
    if len(run) < 2:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def split_text(text: str, *, parts: bool = True) -> list[str]:
    """Tokens of ``text``: CJK bigrams and whole lower-cased words (``parts``: also a_b -> a, b).

    >>> split_text("need_weights=False のとき注意重み")
    ['need_weights', 'need', 'weights', 'false', 'のと', 'とき', 'き注', '注意', '意重', '重み']
    """
    tokens: list[str] = []
    for word in _WORD.findall(unicodedata.normalize("NFKC", text)):
        for cjk, other in _RUNS.findall(word):
            if cjk:
                tokens.extend(_bigrams(cjk))
                continue
            word_lower = other.lower()
            tokens.append(word_lower)
            if parts and "_" in word_lower.strip("_"):
                tokens.extend(p for p in word_lower.split("_") if p)
    return tokens


class BigramSplitter(BaseSplitter):
    """Index-side splitter for ``html_search_options["type"]`` (see the module docstring)."""

    def split(self, input: str) -> list[str]:
        return split_text(input)


#: ``splitQuery`` for the browser: the same split as :func:`split_text` without the parts
#: (a query for ``need_weights`` must find ``need_weights``, not every page with ``need``).
#: Tokens of one character are dropped, as the index drops them (``word_filter``).
JS_SPLITTER = """
/* attnlens: CJK bigrams + whole identifiers, as docs/_ext/attnlens_search.py indexes them */
var splitQuery = function (query) {
  var cjk = "[CJK_CLASS]";
  var runs = new RegExp("(" + cjk + "+)|((?:(?!" + cjk + ")[\\\\p{L}\\\\p{N}_])+)", "gu");
  var words = query.normalize("NFKC").match(/[\\p{L}\\p{N}_]+/gu) || [];
  var tokens = [];
  words.forEach(function (word) {
    var m;
    runs.lastIndex = 0;
    while ((m = runs.exec(word)) !== null) {
      if (m[1]) {
        if (m[1].length === 1) tokens.push(m[1]);
        for (var i = 0; i + 2 <= m[1].length; i++) tokens.push(m[1].slice(i, i + 2));
      } else if (m[2]) {
        tokens.push(m[2].toLowerCase());
      }
    }
  });
  var kept = tokens.filter(function (t) { return t.length > 1; });
  return kept.length ? kept : tokens;
};
""".replace("CJK_CLASS", CJK_CLASS.encode("unicode_escape").decode("ascii").replace("\\", "\\\\"))


class SearchJapaneseBigram(SearchJapanese):
    """Sphinx's Japanese search language, with :class:`BigramSplitter` on both sides."""

    js_splitter_code = JS_SPLITTER

    def __init__(self, options: dict[str, str]) -> None:
        options = {"type": f"{__name__}.BigramSplitter", **options}
        super().__init__(options)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_search_language(SearchJapaneseBigram)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
