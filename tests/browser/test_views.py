"""The interactive views on the built site, in headless Chromium, in both languages.

The head view shows every head's lines before anything is hovered; the model view enlarges a
thumbnail on click and on Enter; the neuron view shows numbers that add up; every view's
labels are Japanese on the Japanese site. The data a view embeds is read back from the page's
own HTML (``var data = {...}`` in the view's script) to know what should be drawn.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from ._site import LANGUAGES, SITE, Tab, require_site

pytestmark = pytest.mark.browser


def _pages_with(css_class: str) -> list[str]:
    root = SITE / "en"
    if not root.is_dir():
        return ["<no site>"]
    pages = sorted(
        p.relative_to(root).as_posix()
        for p in root.glob("auto_examples/plot_*.html")
        if f'class="{css_class}"' in p.read_text(encoding="utf-8", errors="replace")
    )
    return pages or [f"<no {css_class}>"]


HEAD_VIEW_PAGES = _pages_with("attnlens-headview")
MODEL_VIEW_PAGES = _pages_with("attnlens-modelview")
NEURON_VIEW_PAGES = _pages_with("attnlens-neuronview")

#: What the labels say in each language (attnlens.headview/modelview/neuronview ..._LABELS).
LAYER = {"en": "layer", "ja": "層"}
THUMB = {"en": "layer {0}, head {1}", "ja": "層 {0}、ヘッド {1}"}
CLOSE = {"en": "close", "ja": "閉じる"}
KEY_TOKEN = {"en": "key token", "ja": "キーのトークン"}
MASK_COLUMN = {"en": "+ mask", "ja": "+ マスク"}


def _require(name: str) -> None:
    require_site()
    assert not name.startswith("<no "), f"no walkthrough page embeds a {name[4:-1]}"


def _view_data(lang: str, name: str, element_id: str) -> dict[str, Any]:
    """The JSON a view embeds, read from the page's HTML."""
    text = (SITE / lang / name).read_text(encoding="utf-8")
    start = text.index(f'document.getElementById("{element_id}")')
    match = re.compile(r"var data = (\{.*?\});\n", re.DOTALL).search(text, start)
    assert match is not None, f"{lang}/{name}: no data for #{element_id}"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def _opacities(root: Any, selector: str) -> list[float]:
    values: list[float] = root.evaluate(
        "(el, sel) => Array.from(el.querySelectorAll(sel))"
        ".map(e => parseFloat(getComputedStyle(e).opacity)).filter(o => o > 0)",
        selector,
    )
    return values


# --------------------------------------------------------------------------------------------
# head view
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", HEAD_VIEW_PAGES)
def test_head_view_shows_every_line_before_any_hover(tab: Tab, lang: str, name: str) -> None:
    _require(name)
    tab.open(f"{lang}/{name}")
    roots = tab.page.locator("div.attnlens-headview")
    assert roots.count() >= 1
    for r in range(roots.count()):
        root = roots.nth(r)
        assert root.get_attribute("data-hover") is None
        data = _view_data(lang, name, root.get_attribute("id"))
        layer = int(root.get_attribute("data-layer"))
        checked = [
            int(h)
            for h in root.locator("input.attnlens-head-toggle:checked").evaluate_all(
                "els => els.map(e => e.getAttribute('data-head'))"
            )
        ]
        expected = sorted(
            w
            for h in checked
            for row in data["weights"][layer][h]
            for w in row
            if isinstance(w, float | int) and w > 0
        )
        shown = sorted(_opacities(root, "line.attnlens-edge"))
        assert len(shown) == len(expected), f"{lang}/{name}: not every line is drawn"
        assert all(
            math.isclose(a, min(b, 1), abs_tol=1e-3) for a, b in zip(shown, expected, strict=True)
        )
        queries = root.locator("span.attnlens-token[data-side='query']").count()
        drawn_from = root.evaluate(
            "el => new Set(Array.from(el.querySelectorAll('line.attnlens-edge'))"
            ".map(e => e.getAttribute('data-query'))).size"
        )
        assert drawn_from == queries
        if root.locator("select.attnlens-layer-select").count():
            label = root.locator("select.attnlens-layer-select").get_attribute("aria-label")
            assert label == LAYER[lang]
        assert root.get_attribute("data-language") == lang
    tab.watch.assert_clean(f"{lang}/{name}")


# --------------------------------------------------------------------------------------------
# model view
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", MODEL_VIEW_PAGES)
def test_model_view_enlarges_on_click_and_on_enter(tab: Tab, lang: str, name: str) -> None:
    _require(name)
    tab.open(f"{lang}/{name}")
    root = tab.page.locator("div.attnlens-modelview").first
    root.scroll_into_view_if_needed()
    assert root.get_attribute("data-language") == lang
    data = _view_data(lang, name, root.get_attribute("id"))
    n_layers, n_heads = len(data["weights"]), len(data["weights"][0])
    thumbs = root.locator("button.attnlens-thumb")
    assert thumbs.count() == n_layers * n_heads
    detail = root.locator(".attnlens-detail")
    assert not detail.is_visible()

    def check_enlarged(layer: int, head: int) -> None:
        assert root.get_attribute("data-selected") == f"{layer},{head}"
        assert detail.is_visible()
        title = detail.locator(".attnlens-detail-title").inner_text()
        assert title == THUMB[lang].format(layer + 1, head + 1)
        expected = sorted(
            w for row in data["weights"][layer][head] for w in row if isinstance(w, float | int)
        )
        expected = [w for w in expected if w > 0]
        shown = sorted(_opacities(detail, "line.attnlens-edge"))
        assert len(shown) == len(expected)
        assert all(
            math.isclose(a, min(b, 1), abs_tol=1e-3) for a, b in zip(shown, expected, strict=True)
        )

    last = root.locator(
        f"button.attnlens-thumb[data-layer='{n_layers - 1}'][data-head='{n_heads - 1}']"
    )
    assert last.get_attribute("aria-label") == THUMB[lang].format(n_layers, n_heads)
    last.click()
    check_enlarged(n_layers - 1, n_heads - 1)
    assert root.locator("button.attnlens-close").get_attribute("aria-label") == CLOSE[lang]
    last.click()  # the same thumbnail again: closed
    assert root.get_attribute("data-selected") is None
    assert not detail.is_visible()
    # keyboard only: focus the first thumbnail, Enter enlarges it, Escape closes it
    root.locator("button.attnlens-thumb[data-layer='0'][data-head='0']").focus()
    tab.page.keyboard.press("Enter")
    check_enlarged(0, 0)
    tab.page.keyboard.press("Escape")
    assert root.get_attribute("data-selected") is None
    focused = tab.page.evaluate(
        "() => [document.activeElement.getAttribute('data-layer'),"
        " document.activeElement.getAttribute('data-head')]"
    )
    assert focused == ["0", "0"]
    tab.watch.assert_clean(f"{lang}/{name}")


# --------------------------------------------------------------------------------------------
# neuron view
# --------------------------------------------------------------------------------------------
def _numbers(root: Any) -> dict[str, list[Any]]:
    """The numbers a neuron view shows; with a mask, what it adds (``masked``: −∞)."""
    numbers: dict[str, list[Any]] = root.evaluate(
        """el => {
          const read = sel => Array.from(el.querySelectorAll(sel))
            .map(e => parseFloat(e.textContent));
          const masks = Array.from(el.querySelectorAll("td.attnlens-mask"))
            .map(e => e.textContent);
          return {q: read("td.attnlens-q"), products: read("td.attnlens-product"),
                  dots: read("td.attnlens-dot"), scores: read("td.attnlens-score"),
                  weights: read(".attnlens-value"),
                  masked: masks.map(t => t === "\u2212\u221e"),
                  masks: masks.map(t => t === "\u2212\u221e" ? 0 : parseFloat(t)),
                  dimmed: Array.from(el.querySelectorAll("tbody tr[data-key]"))
                    .map(e => e.classList.contains("attnlens-masked"))};
        }"""
    )
    return numbers


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", NEURON_VIEW_PAGES)
def test_neuron_view_shows_numbers_that_add_up(tab: Tab, lang: str, name: str) -> None:
    _require(name)
    tab.open(f"{lang}/{name}")
    root = tab.page.locator("div.attnlens-neuronview").first
    root.scroll_into_view_if_needed()
    assert root.get_attribute("data-language") == lang
    assert root.locator("thead th").first.inner_text() == KEY_TOKEN[lang]
    data = _view_data(lang, name, root.get_attribute("id"))
    scale = float(root.get_attribute("data-scale"))
    buttons = root.locator("button.attnlens-query")
    assert buttons.count() == len(data["queries"])

    def check(head: int, query: int) -> None:
        assert root.get_attribute("data-head") == str(head)
        assert root.get_attribute("data-query") == str(query)
        shown = _numbers(root)
        dim = len(shown["q"])
        keys = len(shown["dots"])
        assert len(shown["products"]) == keys * dim
        tol = 2 * 10 ** -data["decimals"] * (dim + 1)
        for j in range(keys):
            products = shown["products"][j * dim : (j + 1) * dim]
            assert math.isclose(sum(products), shown["dots"][j], abs_tol=tol)
            assert math.isclose(shown["dots"][j] * scale, shown["scores"][j], abs_tol=tol)
        if shown["masks"]:  # a masked view: what the mask adds, −∞ for a key masked out
            assert len(shown["masks"]) == keys
            assert shown["dimmed"] == shown["masked"]
        masked = shown["masked"] or [False] * keys
        added = shown["masks"] or [0.0] * keys
        exps = [
            0.0 if off else math.exp(s + m)
            for s, m, off in zip(shown["scores"], added, masked, strict=True)
        ]
        for w, e in zip(shown["weights"], exps, strict=True):
            assert math.isclose(w, e / sum(exps), abs_tol=tol)
        assert math.isclose(sum(shown["weights"]), 1, abs_tol=tol)
        assert shown["weights"] == pytest.approx(data["weights"][head][query], abs=1e-9)

    check(int(root.get_attribute("data-head")), int(root.get_attribute("data-query")))
    last = buttons.count() - 1
    buttons.nth(last).click()
    check(0, last)
    assert buttons.nth(last).get_attribute("aria-pressed") == "true"
    buttons.nth(1).focus()
    tab.page.keyboard.press("Enter")
    check(0, 1)
    select = root.locator("select.attnlens-head-select")
    if select.count():
        select.select_option(value="1")
        check(1, 1)
    tab.watch.assert_clean(f"{lang}/{name}")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_causal_neuron_view_masks_the_keys_after_the_query(tab: Tab, lang: str) -> None:
    """Walkthrough 11's view: the keys after the chosen query add −∞, are dimmed, weigh 0."""
    name = "auto_examples/plot_11_causal_decoding.html"
    require_site()
    tab.open(f"{lang}/{name}")
    root = tab.page.locator("div.attnlens-neuronview").first
    root.scroll_into_view_if_needed()
    assert root.locator("thead th[data-l10n-title='mask']").inner_text() == MASK_COLUMN[lang]
    buttons = root.locator("button.attnlens-query")
    keys = buttons.count()
    for query in (0, keys - 1, 1):
        buttons.nth(query).click()
        shown = _numbers(root)
        after = [j > query for j in range(keys)]
        assert shown["masked"] == after
        assert shown["dimmed"] == after
        assert all(w == 0 for w, off in zip(shown["weights"], after, strict=True) if off)
        assert math.isclose(sum(shown["weights"]), 1, abs_tol=0.02)
    tab.watch.assert_clean(f"{lang}/{name}")
