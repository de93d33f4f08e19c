"""The Japanese search finds what a Japanese reader types: API names and every glossary term.

Each public name (``attnlens.__all__``, the public names of the modules documented in the API
reference, and every parameter name of the API reference, such as ``need_weights``) and each
term of both columns of the glossary (``docs/concepts/glossary.md``) is typed into the search
box of ``/ja/search.html``. The search must list at least one page that really contains the
term. Run after ``nox -s docs``: ``nox -s browser``.
"""

from __future__ import annotations

import ast
import html as html_module
import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from ._site import ROOT, SITE, Tab, require_site

pytestmark = pytest.mark.browser

GLOSSARY = ROOT / "docs" / "concepts" / "glossary.md"
PACKAGE = ROOT / "src" / "attnlens"
API_MODULES = ("__init__", "fonts", "datasets", "classifier")  # as docs/conf.py documents them
#: Names the issue reported as unfindable: they must be among the derived terms.
MUST_HAVE = {"need_weights", "average_attn_weights", "in_proj_weight", "因果マスク", "残差接続"}

_ROW = re.compile(r"^\|(?P<en>[^|]+)\|(?P<ja>[^|]+)\|(?P<definition>.+)\|\s*$")


def glossary_terms() -> list[str]:
    """Both columns of every glossary row; ``A（B）`` in the 日本語 column gives A and B too."""
    terms: list[str] = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if not m or set(m["en"].strip()) <= {"-", " "} or m["ja"].strip() == "日本語":
            continue
        en, ja = m["en"].strip(), m["ja"].strip()
        terms += [en, ja]
        alt = re.fullmatch(r"(?P<main>[^（]+)（(?P<alt>[^）]+)）", ja)
        if alt:
            terms += [alt["main"].strip(), alt["alt"].strip()]
    return terms


def module_all(name: str) -> list[str]:
    """``__all__`` of a module of the package, read from its source (no import of torch)."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [str(v) for v in ast.literal_eval(node.value)]
    return []


def api_parameter_names() -> list[str]:
    """Parameter and attribute names of the built Japanese API reference (numpydoc lists)."""
    page = SITE / "ja" / "api.html"
    if not page.is_file():
        return []
    text = page.read_text(encoding="utf-8")
    names = re.findall(r"<dt><strong>([A-Za-z_][A-Za-z0-9_]*)</strong>", text)
    return sorted(set(names))


def api_names() -> list[str]:
    names = [n for module in API_MODULES for n in module_all(module) if not n.startswith("__")]
    return sorted(set(names) | set(api_parameter_names()))


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@cache
def page_texts() -> dict[str, str]:
    """Folded visible text of every built Japanese page, by path relative to /ja/."""
    root = SITE / "ja"
    texts = {}
    for page in root.rglob("*.html"):
        rel = page.relative_to(root).as_posix()
        if rel.split("/")[0].startswith("_") or rel in ("search.html", "genindex.html"):
            continue
        raw = page.read_text(encoding="utf-8", errors="replace")
        body = re.search(r"<article.*?</article>", raw, re.DOTALL)
        raw = body[0] if body else raw
        raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.DOTALL)
        texts[rel] = _fold(html_module.unescape(re.sub(r"<[^>]+>", "", raw)))
    return texts


def pages_containing(term: str) -> set[str]:
    folded = _fold(term)
    return {rel for rel, text in page_texts().items() if folded in text}


TERMS = sorted(set(glossary_terms()) | set(api_names()))


def test_terms_are_derived_from_the_glossary_and_the_api() -> None:
    require_site()
    assert len(glossary_terms()) > 100
    assert {"capture_attention", "MultiheadAttention", "plot_heads"} <= set(api_names())
    assert set(TERMS) >= MUST_HAVE, sorted(MUST_HAVE - set(TERMS))


@pytest.mark.parametrize("term", TERMS)
def test_japanese_search_finds_the_term(tab: Tab, term: str) -> None:
    require_site()
    expected = pages_containing(term)
    if not expected:
        pytest.fail(f"no Japanese page contains {term!r}: nothing to find", pytrace=False)
    # Sphinx fetches every result page to show an excerpt: answer those fetches with a stub
    # page, so that 300 searches take minutes, not a quarter of an hour (the results list is
    # what is tested, not the excerpts).
    stub = f'<html><body><div role="main"><p>{html_module.escape(term)}</p></div></body></html>'
    tab.page.route(
        re.compile(r".*/ja/(?!search\.html).*\.html(\?.*)?$"),
        lambda route: (
            route.fulfill(status=200, content_type="text/html", body=stub)
            if route.request.resource_type == "fetch"
            else route.fallback()
        ),
    )
    tab.open("ja/search.html", settle=False)
    box = tab.page.locator("#search-results").locator("xpath=..").locator("input[name=q]")
    if box.count() == 0:
        box = tab.page.locator("form.bd-search input[name=q]").first
    box.first.fill("")
    box.first.type(term)
    box.first.press("Enter")
    tab.page.wait_for_url(re.compile(r"search\.html\?q="))
    # finished: the heading says "Search Results" (in Japanese) and no result is still pending
    tab.page.wait_for_function(
        "() => { const h = document.querySelector('#search-results h2');"
        " return h && h.innerText === Documentation.gettext('Search Results')"
        " && Search._pulse_status === -1; }",
        timeout=30_000,
    )
    hrefs = tab.page.eval_on_selector_all(
        "#search-results ul.search li a", "els => els.map(e => e.getAttribute('href'))"
    )
    found = {Path(h.split("#")[0].split("?")[0]).as_posix().removeprefix("./") for h in hrefs}
    assert found, f"{term!r}: no result on /ja/search.html (pages with it: {sorted(expected)})"
    assert found & expected, (
        f"{term!r}: results {sorted(found)} do not include a page that contains it "
        f"({sorted(expected)})"
    )
    tab.watch.assert_clean(f"ja/search.html?q={term}")
