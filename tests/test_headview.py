"""The interactive head view: structure, escaping, save, shape errors, and a real browser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from viewtools import chromium_page, embedded, page_with, parse

from attnlens.headview import HEAD_COLORS, HeadView, head_view_html

EN = ["[CLS]", "the", "movie", "was", "not", "very", "good"]
EVIL = "</script><script>alert(1)</script>"
TOKENS = ["[CLS]", "<b>bold</b>", EVIL, "\"quoted\" & 'single'", "<img src=x onerror=alert(2)>"]


def _weights(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=generator), dim=-1)


# ------------------------------------------------------------------ structure


def test_structure_follows_the_dom_contract() -> None:
    weights = _weights(3, 7, 7)
    view = head_view_html(weights, EN)
    assert isinstance(view, HeadView)
    assert view._repr_html_() == view.html
    parsed = parse(view.html)
    roots = parsed.find("div", "attnlens-headview")
    assert len(roots) == 1
    root_id = roots[0][1]["id"]
    assert root_id == view.element_id
    assert root_id is not None
    assert re.fullmatch(r"attnlens-hv-[0-9a-f]{12}", root_id)
    for side in ("query", "key"):
        spans = [(i, a) for i, a in parsed.find("span", "attnlens-token") if a["data-side"] == side]
        assert [a["data-index"] for _, a in spans] == [str(i) for i in range(7)]
        assert [parsed.texts[i] for i, _ in spans] == EN
    toggles = parsed.find("input", "attnlens-head-toggle")
    assert [a["data-head"] for _, a in toggles] == ["0", "1", "2"]
    assert all(a["type"] == "checkbox" and "checked" in a for _, a in toggles)
    cells = parsed.find("span", "attnlens-cell")
    assert len(cells) == 3 * 7
    assert not parsed.find("select", "attnlens-layer-select")  # one layer: no menu
    # self-contained: inline style and script, nothing fetched
    tags = {tag for tag, _ in parsed.elements}
    assert {"style", "script", "svg"} <= tags
    assert not [a for _, a in parsed.elements if "src" in a or "href" in a]
    assert "http://" not in view.html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in view.html
    # the script finds its own root and carries the weights
    (script,) = parsed.scripts
    assert f'document.getElementById("{root_id}")' in script
    data = embedded(script)
    np.testing.assert_allclose(np.array(data["weights"])[0], weights.numpy(), atol=5e-5)
    assert data["colors"] == list(HEAD_COLORS[:3])
    assert data["queries"] == EN


def test_every_view_has_its_own_id_and_scoped_css() -> None:
    views = [head_view_html(_weights(2, 3, 3), EN[:3]) for _ in range(3)]
    assert len({view.element_id for view in views}) == 3
    css = re.search(r"<style>(.*?)</style>", views[0].html, re.DOTALL)
    assert css is not None
    rules = [rule.strip() for rule in re.findall(r"([^{}]+)\{", css.group(1))]
    assert rules
    for rule in rules:
        for selector in rule.split(","):
            assert selector.strip().startswith(".attnlens-headview"), selector
    fixed = head_view_html(_weights(2, 3, 3), EN[:3], element_id="my-view")
    assert 'id="my-view"' in fixed.html


def test_layers_menu_cross_attention_and_options() -> None:
    layers = [_weights(2, 2, 3, 4, seed=k) for k in range(3)]  # (N, H, L, S) each
    view = head_view_html(
        {f"layers.{k}.self_attn": w for k, w in enumerate(layers)},
        EN[:3],
        EN[:4],
        batch_index=1,
        layer=-1,
        heads=[1],
        head_labels=["A", "<B>"],
    )
    assert view.shape == (3, 2, 3, 4)
    parsed = parse(view.html)
    (root,) = parsed.find("div", "attnlens-headview")
    assert root[1]["data-layer"] == "2"
    assert len(parsed.find("select", "attnlens-layer-select")) == 1
    options = [a for tag, a in parsed.elements if tag == "option"]
    assert [a["value"] for a in options] == ["0", "1", "2"]
    assert "selected" in options[2]
    toggles = parsed.find("input", "attnlens-head-toggle")
    assert ["checked" in a for _, a in toggles] == [False, True]
    assert "&lt;B&gt;" in view.html
    keys = [a for _, a in parsed.find("span", "attnlens-token") if a["data-side"] == "key"]
    assert len(keys) == 4
    data = embedded(parsed.scripts[0])
    np.testing.assert_allclose(data["weights"][2], layers[2][1].numpy(), atol=5e-5)
    assert "var hover = null, pinned = null, layer = 2;" in parsed.scripts[0]


def test_nan_rows_become_null() -> None:
    weights = _weights(1, 2, 2)
    weights[0, 1] = float("nan")  # a fully masked query row
    data = embedded(parse(head_view_html(weights, ["a", "b"]).html).scripts[0])
    assert data["weights"][0][0][1] == [None, None]


# ------------------------------------------------------------------ escaping


def test_tokens_are_escaped_and_cannot_inject_markup() -> None:
    view = head_view_html(_weights(2, 5, 5), TOKENS, head_labels=[EVIL, "h"])
    markup = view.html
    assert "<script>alert" not in markup
    assert "<img" not in markup
    assert "<b>bold" not in markup
    parsed = parse(markup)
    # exactly one script element (ours), and no element the tokens could have created
    assert [tag for tag, _ in parsed.elements].count("script") == 1
    assert not [tag for tag, _ in parsed.elements if tag in {"b", "img"}]
    # the tokens come back as text, unchanged
    queries = [i for i, a in parsed.find("span", "attnlens-token") if a["data-side"] == "query"]
    assert [parsed.texts[i] for i in queries] == TOKENS
    # the JSON in the script has no <, > or & and still decodes to the tokens
    (script,) = parsed.scripts
    assert "</" not in script
    data = embedded(script)
    assert data["queries"] == TOKENS
    assert data["heads"][0] == EVIL
    match = re.search(r"var data = (\{.*?\});\n", script)
    assert match is not None
    assert not set("<>&") & set(match.group(1))
    assert "\\u003c/script\\u003e" in match.group(1)


def test_line_separators_are_escaped_in_the_script() -> None:
    view = head_view_html(_weights(1, 2, 2), ["a\u2028b", "c\u2029d"])
    (script,) = parse(view.html).scripts
    assert "\u2028" not in script
    assert "\u2029" not in script


# ------------------------------------------------------------------ save


def test_save_writes_a_standalone_utf8_page(tmp_path: Path) -> None:
    view = head_view_html(_weights(2, 3, 3), ["[CLS]", "映画", EVIL], title="<t>")
    path = view.save(tmp_path / "view.html")
    assert path == tmp_path / "view.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text
    assert "<title>&lt;t&gt;</title>" in text
    assert view.html in text
    assert "映画" in text
    assert "<script>alert" not in text
    view.save(str(tmp_path / "again.html"))
    assert (tmp_path / "again.html").read_text(encoding="utf-8") == text


# ------------------------------------------------------------------ errors


def test_shape_and_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"weights: expected shape \(H, L, S\) or .* got \(7, 7\)"):
        head_view_html(_weights(7, 7), EN)
    with pytest.raises(ValueError, match=r"tokens: expected 7 tokens \(L = .*\), got 6"):
        head_view_html(_weights(2, 7, 7), EN[:6])
    with pytest.raises(ValueError, match=r"key_tokens: expected 5 tokens \(S = .*\), got 7"):
        head_view_html(_weights(2, 7, 5), EN, EN)
    with pytest.raises(ValueError, match="key_tokens: required when L != S"):
        head_view_html(_weights(2, 7, 5), EN)
    with pytest.raises(TypeError, match="tokens: expected a sequence of str, got str"):
        head_view_html(_weights(2, 3, 3), "abc")
    with pytest.raises(ValueError, match=r"weights\[1\]: expected shape \(H, L, S\) = \(2, 3, 3\)"):
        head_view_html([_weights(2, 3, 3), _weights(2, 4, 4)], EN[:3])
    with pytest.raises(ValueError, match=r"batch_index: expected an index in \[-1, 1\), got 3"):
        head_view_html(_weights(1, 2, 3, 3), EN[:3], batch_index=3)
    with pytest.raises(ValueError, match=r"layer: expected an index in \[-1, 1\), got 1"):
        head_view_html(_weights(2, 3, 3), EN[:3], layer=1)
    with pytest.raises(ValueError, match=r"heads: expected head indices in \[0, 2\), got 2"):
        head_view_html(_weights(2, 3, 3), EN[:3], heads=[2])
    with pytest.raises(ValueError, match="element_id: expected letters"):
        head_view_html(_weights(2, 3, 3), EN[:3], element_id='x" onclick="alert(1)')
    with pytest.raises(ValueError, match="head_labels: expected 2 labels"):
        head_view_html(_weights(2, 3, 3), EN[:3], head_labels=["a"])


# ------------------------------------------------------------------ languages


def test_labels_in_english_japanese_or_both() -> None:
    weights = _weights(2, 2, 3, 3)  # (n_layers, H, L, S): a layer menu
    english = head_view_html(weights, EN[:3], language="en")
    japanese = head_view_html(weights, EN[:3], language="ja")
    auto = head_view_html(weights, EN[:3])
    assert auto.language == "auto"
    assert 'aria-label="layer"' in english.html
    assert 'aria-label="層"' in japanese.html
    assert 'aria-label="ヘッド"' in japanese.html
    for view, languages in ((english, {"en"}), (japanese, {"ja"}), (auto, {"en", "ja"})):
        (script,) = parse(view.html).scripts
        labels = embedded(script, "labels")
        assert set(labels) == languages
    assert embedded(parse(auto.html).scripts[0], "labels")["ja"]["layer"] == "層"
    assert '<html lang="ja">' in japanese.to_document()
    assert "<html>" in auto.to_document()  # "auto": the reader's browser decides
    with pytest.raises(ValueError, match="language: expected 'auto', 'en' or 'ja', got 'fr'"):
        head_view_html(weights, EN[:3], language="fr")


# ------------------------------------------------------------------ real browser


@pytest.mark.parametrize(("lang", "expected"), [("ja", ("ja", "層")), ("en", ("en", "layer"))])
def test_auto_language_follows_the_page_in_chromium(
    tmp_path: Path, lang: str, expected: tuple[str, str]
) -> None:
    view = head_view_html(_weights(2, 2, 3, 3), EN[:3])
    path = page_with(view.html, lang=lang, tmp_path=tmp_path)
    with chromium_page(path) as (page, problems):
        root = page.locator(f"#{view.element_id}")
        assert root.get_attribute("data-language") == expected[0]
        assert (
            root.locator("select.attnlens-layer-select").get_attribute("aria-label")
            == (expected[1])
        )
        assert root.locator(".attnlens-edge").count() == 2 * 3 * 3  # every line, nothing hovered
    assert problems == []


def test_hover_and_toggles_in_headless_chromium(tmp_path: Path) -> None:
    weights = _weights(2, 3, 5, 5)  # (n_layers, H, L, S)
    first = head_view_html(weights, TOKENS)
    second = head_view_html(weights[0], TOKENS)  # a second view on the same page
    page_path = tmp_path / "page.html"
    page_path.write_text(
        first.to_document().replace("</body>", second.html + "\n</body>"), encoding="utf-8"
    )
    with chromium_page(page_path) as (page, problems):
        roots = page.locator("div.attnlens-headview")
        assert roots.count() == 2
        root = page.locator(f"#{first.element_id}")
        other = page.locator(f"#{second.element_id}")

        def shown(where: Any, head: str | None = None) -> list[float]:
            selector = ".attnlens-edge" + (f"[data-head='{head}']" if head else "")
            values: list[float] = where.evaluate(
                f'el => Array.from(el.querySelectorAll("{selector}"))'
                ".map(e => parseFloat(getComputedStyle(e).opacity))"
                ".filter(o => o > 0)"
            )
            return values

        def expected(layer: int, heads: slice, query: int | None = None) -> list[float]:
            w = weights[layer, heads] if query is None else weights[layer, heads, query]
            values = np.round(w.numpy().ravel(), 4)
            return sorted(values[values > 0].tolist())

        # nothing hovered: every head's lines from every query, as BertViz shows them
        assert root.get_attribute("data-hover") is None
        idle = shown(root)
        assert len(idle) == len(expected(0, slice(None)))
        np.testing.assert_allclose(sorted(idle), expected(0, slice(None)), atol=1e-3)
        assert root.get_attribute("data-language") == "en"  # the document has no lang="ja"
        token = root.locator("span.attnlens-token[data-side='query'][data-index='2']")
        assert token.inner_text() == EVIL  # the token is text
        token.hover()
        assert root.get_attribute("data-hover") == "2"
        opacities = shown(root)
        assert len(opacities) == 3 * 5  # every head, every key
        np.testing.assert_allclose(sorted(opacities), expected(0, slice(None), 2), atol=1e-3)
        assert other.get_attribute("data-hover") is None  # the views do not clash
        assert len(shown(other)) == len(expected(0, slice(None)))

        root.locator("input.attnlens-head-toggle[data-head='0']").uncheck()
        # the pointer left the token for the checkbox: all lines of heads 1 and 2
        assert root.get_attribute("data-hover") is None
        np.testing.assert_allclose(sorted(shown(root)), expected(0, slice(1, None)), atol=1e-3)
        assert shown(root, "0") == []
        token.hover()
        assert shown(root, "0") == []
        assert len(shown(root)) == 2 * 5
        root.locator("select.attnlens-layer-select").select_option(value="1")
        assert root.get_attribute("data-layer") == "1"
        token.hover()
        np.testing.assert_allclose(
            sorted(shown(root)),
            sorted(np.round(weights[1, 1:, 2, :].numpy().ravel(), 4).tolist()),
            atol=1e-3,
        )
        page.mouse.move(890, 890)
        assert root.get_attribute("data-hover") is None
        np.testing.assert_allclose(sorted(shown(root)), expected(1, slice(1, None)), atol=1e-3)
        # click pins a token until clicked again
        token.click()
        page.mouse.move(890, 890)
        assert root.get_attribute("data-hover") == "2"
        token.click()
        page.mouse.move(890, 890)
        assert root.get_attribute("data-hover") is None
    assert problems == [], "a token's script ran, or the script failed"
