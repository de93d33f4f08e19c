"""Every Japanese page, as a reader sees it: no slanted CJK text, no English sentence.

CJK fonts have no italics, so a browser slants the glyphs of an ``<em>`` ("fake italics");
``docs/_static/attnlens.css`` turns emphasis on Japanese pages into weight instead. This test
reads the *computed* style of every text node of every page under ``/ja/``, so it also
catches emphasis that a theme or a view styles on its own.

"No English sentence outside code": a run of four or more English words in the prose of a
Japanese page is an untranslated sentence. Code, tensor printouts, signatures, maths, the
interactive views (whose data are the model's English tokens) and the bibliography are not
prose; a paper's title quoted in 『』 stays in its original language, as Japanese writers
quote it. Run after ``nox -s docs``: ``nox -s browser``.
"""

from __future__ import annotations

from typing import Any

import pytest

from ._site import SITE, Tab, require_site

pytestmark = pytest.mark.browser

#: Not prose: code, printed output, API signatures, maths, the views, navigation chrome
#: (its strings are the theme's, translated by its own catalogs) and the bibliography.
NOT_PROSE = (
    "code, pre, kbd, samp, script, style, .highlight, .sig, dt.sig, mjx-container, .math, svg, "
    ".sphx-glr-script-out, .attnlens-headview, .attnlens-modelview, .attnlens-neuronview, "
    ".headerlink, section#references, .rubric + p, dl.field-list dt"
)

#: Collects, per page, the CJK text drawn slanted and the English runs of 4+ words.
SCAN = r"""
(notProse) => {
  const CJK = /[\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]/;
  const ENGLISH = /[A-Za-z][a-z']+(?:[,;:]?\s+[A-Za-z][a-z']+){3,}/;
  const slanted = [], english = [];
  const root = document.querySelector("main") || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    const text = node.textContent;
    if (!element || !text.trim()) continue;
    if (CJK.test(text) && getComputedStyle(element).fontStyle !== "normal") {
      slanted.push(text.trim().slice(0, 80));
    }
    if (element.closest(notProse)) continue;
    const prose = text.replace(/『[^』]*』/g, "『』");
    const match = prose.match(ENGLISH);
    if (match) english.push(match[0].slice(0, 100));
  }
  return {slanted, english};
}
"""


def _japanese_pages() -> list[str]:
    root = SITE / "ja"
    if not root.is_dir():
        return ["<no site>"]
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.html")
        if p.relative_to(root).parts[0] not in ("_static", "_sources", "_images", "_downloads")
    )


def _scan(tab: Tab, path: str) -> dict[str, Any]:
    tab.open(path)
    result: dict[str, Any] = tab.page.evaluate(SCAN, NOT_PROSE)
    return result


def test_the_scan_sees_slanted_cjk_and_english_sentences(tab: Tab) -> None:
    """The check itself: on a page where both are injected, it reports both."""
    require_site()
    tab.open("ja/index.html")
    tab.page.evaluate(
        """() => {
          const p = document.createElement("p");
          p.innerHTML = "<span style='font-style: italic'>斜体の日本語</span>"
            + " This sentence was left in English.";
          document.querySelector("main").appendChild(p);
        }"""
    )
    result = tab.page.evaluate(SCAN, NOT_PROSE)
    assert result["slanted"] == ["斜体の日本語"]
    assert result["english"] == ["This sentence was left in English"]


def test_an_em_on_a_japanese_page_is_not_slanted(tab: Tab) -> None:
    """The stylesheet rule itself: ``<em>`` in Japanese text is upright (and bold)."""
    require_site()
    tab.open("ja/index.html")
    style = tab.page.evaluate(
        """() => {
          const em = document.createElement("em");
          em.textContent = "強調";
          document.querySelector("main p").appendChild(em);
          const s = getComputedStyle(em);
          return {fontStyle: s.fontStyle, fontWeight: Number(s.fontWeight)};
        }"""
    )
    assert style["fontStyle"] == "normal"
    assert style["fontWeight"] >= 600


@pytest.mark.parametrize("name", _japanese_pages())
def test_japanese_page_has_no_slanted_cjk_and_no_english_sentence(tab: Tab, name: str) -> None:
    require_site()
    result = _scan(tab, f"ja/{name}")
    assert not result["slanted"], f"ja/{name}: slanted CJK text: {result['slanted']}"
    assert not result["english"], f"ja/{name}: English in the prose: {result['english']}"
