"""The built site in a real browser (headless Chromium), served on localhost.

Run after ``nox -s docs``: ``nox -s browser`` (or ``pytest tests/browser``). Every page is
opened with all requests to other hosts blocked and recorded, so each test also checks that
the site works offline.
"""

from __future__ import annotations

import html as html_module
import re
from typing import Any

import pytest

from ._site import LANGUAGES, SITE, Tab, require_site, watch_page

pytestmark = pytest.mark.browser

OTHER = {"en": "ja", "ja": "en"}
#: The four walkthroughs of the specification; more examples are welcome.
MIN_WALKTHROUGHS = 4


def _pages(pattern: str, lang: str = "en") -> list[str]:
    """Pages (relative to the language root) matching ``pattern``; ["<no site>"] if unbuilt."""
    root = SITE / lang
    if not root.is_dir():
        return ["<no site>"]
    return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))


def _all_pages(lang: str) -> list[str]:
    root = SITE / lang
    if not root.is_dir():
        return ["<no site>"]
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.html")
        if p.relative_to(root).parts[0] not in ("_static", "_sources", "_images", "_downloads")
    )


def _pages_containing(needle: str, pattern: str = "**/*.html", lang: str = "en") -> list[str]:
    root = SITE / lang
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.glob(pattern)
        if needle in p.read_text(encoding="utf-8", errors="replace")
    )


WALKTHROUGHS = _pages("auto_examples/plot_*.html")


def _normal(text: str) -> str:
    """Whitespace collapsed, typographic quotes (Sphinx's smartquotes) made plain."""
    text = text.translate(
        str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
    )
    return " ".join(text.split())


def _check(page_name: str) -> None:
    require_site()
    assert page_name != "<no site>"


def _image_report(page: Any) -> list[dict[str, Any]]:
    """Every <img> of the page's article, scrolled into view and given time to decode."""
    images = page.locator("article img")
    count = images.count()
    for i in range(count):
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('article img')).every(i => i.complete)",
        timeout=20_000,
    )
    return page.eval_on_selector_all(
        "article img",
        "els => els.map(i => ({src: i.getAttribute('src'), w: i.naturalWidth, h: i.naturalHeight,"
        " cls: i.className}))",
    )


# --------------------------------------------------------------------------------------------
# the site as a whole
# --------------------------------------------------------------------------------------------
def test_site_has_the_walkthroughs() -> None:
    require_site()
    for lang in LANGUAGES:
        pages = _pages("auto_examples/plot_*.html", lang)
        assert len(pages) >= MIN_WALKTHROUGHS, f"{lang}: only {pages}"
        assert pages == WALKTHROUGHS, f"the {lang!r} build has other walkthroughs than 'en'"


def test_root_index_offers_both_languages(tab: Tab) -> None:
    tab.open("index.html?choose")
    assert tab.path() == "index.html"
    for lang in LANGUAGES:
        link = tab.page.locator(f"a[data-lang='{lang}']")
        assert link.get_attribute("href") == f"{lang}/index.html"
    tab.page.locator("a[data-lang='ja']").click()
    tab.page.wait_for_load_state("networkidle")
    assert tab.path() == "ja/index.html"
    assert tab.page.locator("html").get_attribute("lang") == "ja"
    tab.watch.assert_clean("root index")


@pytest.mark.parametrize(
    ("locale", "expected"), [("ja-JP", "ja"), ("en-GB", "en"), ("fr-FR", "en")]
)
def test_root_index_follows_the_browser_language(
    browser: Any, base_url: str, locale: str, expected: str
) -> None:
    ctx = browser.new_context(locale=locale)
    try:
        page = ctx.new_page()
        watch = watch_page(page)
        page.goto(f"{base_url}/index.html")
        page.wait_for_url(re.compile(rf"/{expected}/index\.html$"))
        page.wait_for_load_state("networkidle")
        assert page.locator("html").get_attribute("lang") == expected
        watch.assert_clean(f"root index with locale {locale}")
    finally:
        ctx.close()


# --------------------------------------------------------------------------------------------
# walkthroughs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", WALKTHROUGHS)
def test_walkthrough_loads_cleanly_with_its_figures(tab: Tab, lang: str, name: str) -> None:
    _check(name)
    response = tab.open(f"{lang}/{name}")
    assert response is not None
    assert response.ok
    assert tab.page.locator("html").get_attribute("lang") == lang
    assert tab.page.locator("article h1").count() == 1
    images = _image_report(tab.page)
    broken = [i["src"] for i in images if not (i["w"] > 0 and i["h"] > 0)]
    assert not broken, f"{lang}/{name}: images not decoded: {broken}"
    figures = [i for i in images if "sphx-glr" in (i["cls"] or "")]
    html = (SITE / lang / name).read_text(encoding="utf-8")
    assert len(figures) == len(re.findall(r'class\s*=\s*"sphx-glr-(single|multi)-img', html))
    tab.watch.assert_clean(f"{lang}/{name}")


def test_japanese_gallery_titles_are_the_pages_titles(tab: Tab) -> None:
    """Thumbnail titles (raw HTML from sphinx-gallery) show each page's own, translated title."""
    _check(WALKTHROUGHS[0])
    for lang in LANGUAGES:
        tab.open(f"{lang}/auto_examples/index.html")
        titles = tab.page.locator(".sphx-glr-thumbnail-title").all_inner_texts()
        assert len(titles) == len(WALKTHROUGHS)
        for name, title in zip(WALKTHROUGHS, titles, strict=True):
            html = (SITE / lang / name).read_text(encoding="utf-8")
            h1 = re.search(r"<h1[^>]*>(.*?)<a class=\"headerlink\"", html, re.DOTALL)
            assert h1 is not None, name
            page_title = html_module.unescape(re.sub(r"<[^>]+>", "", h1[1]))
            assert _normal(title) == _normal(page_title), (lang, name)
        tab.watch.assert_clean(f"{lang}/auto_examples/index.html")


# --------------------------------------------------------------------------------------------
# every page, both languages: no console error, no failed or external request
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_page_loads_cleanly(tab: Tab, lang: str) -> None:
    pages = _all_pages(lang)
    _check(pages[0])
    problems = []
    for name in pages:
        tab.watch.clear()
        tab.open(f"{lang}/{name}")
        if tab.page.locator("html").get_attribute("lang") != lang:
            problems.append(f"{lang}/{name}: html lang is not {lang!r}")
        problems += [f"{lang}/{name}: {p}" for p in tab.watch.problems()]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# language switcher
# --------------------------------------------------------------------------------------------
def test_every_page_links_the_same_page_in_the_other_language() -> None:
    """Without a browser: every switcher link of every page names an existing page."""
    require_site()
    href = re.compile(r'<a class="attnlens-lang" href="([^"]+)" hreflang="([a-z]+)"')
    for lang in LANGUAGES:
        for name in _all_pages(lang):
            page = SITE / lang / name
            links = href.findall(page.read_text(encoding="utf-8"))
            assert links, f"{lang}/{name}: no language switcher"
            for url, code in links:
                assert code == OTHER[lang], f"{lang}/{name}: {url}"
                target = (page.parent / url).resolve()
                assert target == (SITE / code / name).resolve(), f"{lang}/{name}: {url}"
                assert target.is_file(), f"{lang}/{name}: {url} does not exist"


#: Pages whose switcher is clicked in the browser: one at each depth, and each kind of page.
SWITCH_PAGES = [
    "index.html",
    "api.html",
    "genindex.html",
    "auto_examples/index.html",
    *WALKTHROUGHS[:1],
    *_pages("concepts/index.html"),
]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", SWITCH_PAGES)
def test_language_switcher_leads_to_the_same_page(tab: Tab, lang: str, name: str) -> None:
    _check(name)
    other = OTHER[lang]
    tab.open(f"{lang}/{name}")
    current = tab.page.locator(".attnlens-language-switcher .attnlens-lang-current:visible")
    assert current.count() == 1
    assert current.get_attribute("lang") == lang
    tab.page.locator(f"a.attnlens-lang[data-lang='{other}']:visible").first.click()
    tab.page.wait_for_url(re.compile(rf"/{other}/{re.escape(name)}(#.*)?$"))
    tab.page.wait_for_load_state("networkidle")
    assert tab.path() == f"{other}/{name}"
    assert tab.page.locator("html").get_attribute("lang") == other
    # and back
    tab.page.locator(f"a.attnlens-lang[data-lang='{lang}']:visible").first.click()
    tab.page.wait_for_url(re.compile(rf"/{lang}/{re.escape(name)}(#.*)?$"))
    assert tab.page.locator("html").get_attribute("lang") == lang
    tab.watch.assert_clean(f"{lang}/{name} -> {other}")


def test_language_switcher_works_from_the_file_system(context: Any) -> None:
    """Opened without a server (file://), the relative links still lead to the other build."""
    name = WALKTHROUGHS[0]
    _check(name)
    page = context.new_page()
    page.goto((SITE / "en" / name).as_uri())
    page.locator("a.attnlens-lang[data-lang='ja']:visible").first.click()
    page.wait_for_load_state("load")
    assert page.url == (SITE / "ja" / name).as_uri()
    assert page.locator("html").get_attribute("lang") == "ja"


# --------------------------------------------------------------------------------------------
# interactive head view
# --------------------------------------------------------------------------------------------
HEADVIEW_PAGES = _pages_containing("attnlens-headview", "auto_examples/plot_*.html")


def test_a_walkthrough_has_a_head_view() -> None:
    require_site()
    assert HEADVIEW_PAGES, "no walkthrough page embeds the interactive head view"


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", HEADVIEW_PAGES or ["<no head view>"])
def test_head_view_responds_to_hover(tab: Tab, lang: str, name: str) -> None:
    if name == "<no head view>":
        require_site()
        pytest.fail("no walkthrough page embeds the interactive head view")
    tab.open(f"{lang}/{name}")
    roots = tab.page.locator("div.attnlens-headview")
    assert roots.count() >= 1
    for r in range(roots.count()):
        root = roots.nth(r)
        root.scroll_into_view_if_needed()
        tokens = root.locator("span.attnlens-token[data-side='query']")
        assert tokens.count() >= 2
        index = tokens.count() - 1
        tokens.nth(index).hover()
        assert root.get_attribute("data-hover") == str(index)
        visible = root.evaluate(
            "el => Array.from(el.querySelectorAll('.attnlens-edge'))"
            ".filter(e => parseFloat(getComputedStyle(e).opacity) > 0).length"
        )
        assert visible > 0, f"{lang}/{name}: hovering a query token shows no attention edge"
        # hide the first head: none of its edges may stay drawn
        toggle = root.locator("input.attnlens-head-toggle").first
        head = toggle.get_attribute("data-head")
        toggle.uncheck()
        tokens.nth(0).hover()
        tokens.nth(index).hover()
        shown = root.evaluate(
            "(el, h) => Array.from(el.querySelectorAll(`.attnlens-edge[data-head='${h}']`))"
            ".filter(e => parseFloat(getComputedStyle(e).opacity) > 0).length",
            head,
        )
        assert shown == 0, f"{lang}/{name}: edges drawn for the hidden head {head}"
    tab.watch.assert_clean(f"{lang}/{name}")


# --------------------------------------------------------------------------------------------
# maths
# --------------------------------------------------------------------------------------------
MATH_PAGES = _pages_containing('class="math', "concepts/*.html")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_math_renders_with_the_local_mathjax(tab: Tab, lang: str) -> None:
    require_site()
    assert MATH_PAGES, "no concept page contains maths"
    for name in MATH_PAGES:
        tab.watch.clear()
        tab.open(f"{lang}/{name}")
        scripts = tab.page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
        mathjax = [s for s in scripts if "mathjax" in s.lower()]
        assert mathjax, f"{lang}/{name}: MathJax is not loaded"
        assert all(s.startswith(tab.base_url) for s in mathjax), mathjax
        expected = tab.page.locator("span.math, div.math").count()
        tab.page.wait_for_function(
            "n => document.querySelectorAll('mjx-container').length >= n", arg=expected
        )
        assert tab.page.locator("mjx-merror").count() == 0, f"{lang}/{name}: a formula failed"
        tab.watch.assert_clean(f"{lang}/{name}")


def test_pages_name_their_language() -> None:
    require_site()
    for lang in LANGUAGES:
        for name in _all_pages(lang):
            head = (SITE / lang / name).read_text(encoding="utf-8", errors="replace")[:400]
            assert f'<html lang="{lang}"' in head, f"{lang}/{name}"
