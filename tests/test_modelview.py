"""The model view: thumbnails of layers x heads, escaping, labels, errors, and a real browser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from viewtools import chromium_page, embedded, page_with, parse

import attnlens
from attnlens.headview import HEAD_COLORS
from attnlens.modelview import MODEL_VIEW_LABELS, THUMB_MIN_WEIGHT, ModelView, model_view_html

EVIL = "</script><script>alert(1)</script>"
TOKENS = ["[CLS]", "<b>bold</b>", EVIL, "\"quoted\" & 'single'", "<img src=x onerror=alert(2)>"]


def _weights(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, generator=generator), dim=-1)


def _thumb_lines(markup: str, layer: int, head: int) -> list[dict[str, str]]:
    match = re.search(
        rf'<button[^>]*data-layer="{layer}" data-head="{head}"[^>]*>(.*?)</button>', markup
    )
    assert match is not None
    return [
        dict(re.findall(r'([\w-]+)="([^"]*)"', line))
        for line in re.findall(r"<line [^>]*/>", match.group(1))
    ]


# ------------------------------------------------------------------ structure


def test_one_thumbnail_per_layer_and_head_drawing_its_weights() -> None:
    weights = _weights(3, 2, 5, 5)  # (n_layers, H, L, S)
    view = model_view_html(weights, TOKENS)
    assert isinstance(view, ModelView)
    assert view.shape == (3, 2, 5, 5)
    assert view._repr_html_() == view.html
    assert attnlens.model_view_html is model_view_html
    parsed = parse(view.html)
    (root,) = parsed.find("div", "attnlens-modelview")
    assert root[1]["id"] == view.element_id
    thumbs = parsed.find("button", "attnlens-thumb")
    assert [(a["data-layer"], a["data-head"]) for _, a in thumbs] == [
        (str(k), str(h)) for k in range(3) for h in range(2)
    ]
    assert all(a["type"] == "button" and a["aria-pressed"] == "false" for _, a in thumbs)
    for k in range(3):
        for h in range(2):
            lines = _thumb_lines(view.html, k, h)
            w = weights[k, h].numpy()  # (L, S)
            kept = w >= THUMB_MIN_WEIGHT
            assert len(lines) == int(kept.sum())
            assert {line["stroke"] for line in lines} == {HEAD_COLORS[h]}
            opacities = sorted(float(line["stroke-opacity"]) for line in lines)
            np.testing.assert_allclose(opacities, np.sort(w[kept]), atol=6e-4)
            # line from query i (left, y in row i) to key j (right, y in row j)
            first = lines[0]
            i, j = np.argwhere(kept)[0]
            assert float(first["y1"]) == pytest.approx((i + 0.5) * 20, abs=0.01)
            assert float(first["y2"]) == pytest.approx((j + 0.5) * 20, abs=0.01)
    detail = parsed.find("div", "attnlens-detail")
    assert len(detail) == 1
    assert "hidden" in detail[0][1]
    queries = [i for i, a in parsed.find("span", "attnlens-token") if a["data-side"] == "query"]
    assert [parsed.texts[i] for i in queries] == TOKENS
    # self-contained, scoped
    assert not [a for _, a in parsed.elements if "src" in a or "href" in a]
    assert "https://" not in view.html
    css = re.search(r"<style>(.*?)</style>", view.html, re.DOTALL)
    assert css is not None
    for rule in re.findall(r"([^{}]+)\{", css.group(1)):
        for selector in rule.split(","):
            assert selector.strip().startswith(".attnlens-modelview"), selector
    data = embedded(parsed.scripts[0])
    np.testing.assert_allclose(np.array(data["weights"]), weights.numpy(), atol=5e-5)


def test_mapping_batch_cross_attention_and_labels() -> None:
    layers = {f"layers.{k}.multihead_attn": _weights(2, 3, 2, 4, seed=k) for k in range(2)}
    view = model_view_html(
        layers,
        ["a", "b"],
        ["w", "x", "y", "z"],
        batch_index=-1,
        head_labels=["A", "<B>", "C"],
        layer_labels=["dec.0", "dec.1"],
    )
    assert view.shape == (2, 3, 2, 4)
    parsed = parse(view.html)
    rowheads = [parsed.texts[i] for i, _ in parsed.find("span", "attnlens-rowhead")]
    assert rowheads == ["dec.0", "dec.1"]
    assert "&lt;B&gt;" in view.html
    keys = [i for i, a in parsed.find("span", "attnlens-token") if a["data-side"] == "key"]
    assert [parsed.texts[i] for i in keys] == ["w", "x", "y", "z"]
    data = embedded(parsed.scripts[0])
    np.testing.assert_allclose(
        data["weights"][1], layers["layers.1.multihead_attn"][-1].numpy(), atol=5e-5
    )
    assert len({model_view_html(_weights(1, 2, 2), ["a", "b"]).element_id for _ in range(3)}) == 3


def test_nan_rows_are_not_drawn_and_become_null() -> None:
    weights = _weights(1, 2, 2)
    weights[0, 1] = float("nan")  # a fully masked query row
    view = model_view_html(weights, ["a", "b"])
    assert all(float(line["y1"]) < 50 for line in _thumb_lines(view.html, 0, 0))
    assert embedded(parse(view.html).scripts[0])["weights"][0][0][1] == [None, None]


# ------------------------------------------------------------------ escaping, save


def test_tokens_and_labels_are_escaped() -> None:
    view = model_view_html(_weights(2, 5, 5), TOKENS, head_labels=[EVIL, "h"], layer_labels=[EVIL])
    markup = view.html
    assert "<script>alert" not in markup
    assert "<img" not in markup
    assert "<b>bold" not in markup
    parsed = parse(markup)
    assert [tag for tag, _ in parsed.elements].count("script") == 1
    (script,) = parsed.scripts
    assert "</" not in script
    match = re.search(r"var data = (\{.*?\});\n", script)
    assert match is not None
    assert not set("<>&") & set(match.group(1))
    assert embedded(script)["queries"] == TOKENS


def test_save_writes_a_standalone_page(tmp_path: Path) -> None:
    view = model_view_html(_weights(1, 2, 3, 3), ["[CLS]", "映画", EVIL], language="ja")
    path = view.save(tmp_path / "model.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith('<!DOCTYPE html>\n<html lang="ja">')
    assert view.html in text
    assert "映画" in text


# ------------------------------------------------------------------ languages


def test_labels_in_each_language() -> None:
    weights = _weights(2, 2, 3, 3)
    english = model_view_html(weights, ["a", "b", "c"], language="en")
    japanese = model_view_html(weights, ["a", "b", "c"], language="ja")
    auto = model_view_html(weights, ["a", "b", "c"])
    assert 'aria-label="layer 2, head 1"' in english.html
    assert 'aria-label="層 2、ヘッド 1"' in japanese.html
    assert 'aria-label="閉じる"' in japanese.html
    assert 'aria-label="layer 2, head 1"' in auto.html  # until the page's language is known
    assert set(embedded(parse(auto.html).scripts[0], "labels")) == {"en", "ja"}
    assert set(embedded(parse(japanese.html).scripts[0], "labels")) == {"ja"}
    assert set(MODEL_VIEW_LABELS["en"]) == set(MODEL_VIEW_LABELS["ja"])


# ------------------------------------------------------------------ errors


def test_errors_name_the_argument_and_the_shapes() -> None:
    tokens = ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"weights: expected shape \(H, L, S\) or .* got \(3, 3\)"):
        model_view_html(_weights(3, 3), tokens)
    with pytest.raises(ValueError, match=r"tokens: expected 3 tokens \(L = .*\), got 2"):
        model_view_html(_weights(2, 3, 3), tokens[:2])
    with pytest.raises(
        ValueError, match=r"key_tokens: required when L != S, weights have \(L, S\) = \(3, 4\)"
    ):
        model_view_html(_weights(2, 3, 4), tokens)
    with pytest.raises(TypeError, match="tokens: expected a sequence of str, got str"):
        model_view_html(_weights(2, 3, 3), "abc")
    with pytest.raises(TypeError, match=r"weights: expected a torch\.Tensor or array of numbers"):
        model_view_html("weights", tokens)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"batch_index: expected an index in \[-2, 2\), got 2"):
        model_view_html(_weights(2, 2, 3, 3), tokens, batch_index=2)
    with pytest.raises(ValueError, match="layer_labels: expected 2 labels"):
        model_view_html(_weights(2, 2, 3, 3), tokens, layer_labels=["x"])
    with pytest.raises(ValueError, match="thumb_size: expected an int of at least 16"):
        model_view_html(_weights(2, 3, 3), tokens, thumb_size=4)
    with pytest.raises(ValueError, match="element_id: expected letters"):
        model_view_html(_weights(2, 3, 3), tokens, element_id="1<x>")
    with pytest.raises(ValueError, match="language: expected 'auto', 'en' or 'ja', got 'de'"):
        model_view_html(_weights(2, 3, 3), tokens, language="de")


# ------------------------------------------------------------------ real browser


def _nonzero(w: torch.Tensor) -> np.ndarray:
    values = np.round(w.numpy().ravel(), 4)  # as embedded
    return np.sort(values[values > 0])


def _edges(root: Any) -> list[float]:
    values: list[float] = root.evaluate(
        "el => Array.from(el.querySelectorAll('.attnlens-detail line.attnlens-edge'))"
        ".map(e => parseFloat(getComputedStyle(e).opacity)).filter(o => o > 0)"
    )
    return values


def test_click_and_keyboard_enlarge_a_thumbnail_in_chromium(tmp_path: Path) -> None:
    weights = _weights(2, 3, 5, 5)  # (n_layers, H, L, S)
    view = model_view_html(weights, TOKENS)
    other = model_view_html(weights[0], TOKENS)  # a second view on the same page
    path = page_with(view.html, other.html, lang="en", tmp_path=tmp_path)
    with chromium_page(path) as (page, problems):
        root = page.locator(f"#{view.element_id}")
        detail = root.locator(".attnlens-detail")
        assert root.get_attribute("data-selected") is None
        assert not detail.is_visible()
        # click: enlarged, with every line of that head and the tokens as text
        root.locator("button.attnlens-thumb[data-layer='1'][data-head='2']").click()
        assert root.get_attribute("data-selected") == "1,2"
        assert detail.is_visible()
        assert detail.locator(".attnlens-detail-title").inner_text() == "layer 2, head 3"
        np.testing.assert_allclose(sorted(_edges(root)), _nonzero(weights[1, 2]), atol=1e-3)
        token = detail.locator("span.attnlens-token[data-side='query'][data-index='2']")
        assert token.inner_text() == EVIL
        token.hover()  # only the lines of that query
        assert detail.get_attribute("data-hover") == "2"
        np.testing.assert_allclose(sorted(_edges(root)), _nonzero(weights[1, 2, 2]), atol=1e-3)
        assert page.locator(f"#{other.element_id}").get_attribute("data-selected") is None
        # the same thumbnail again closes it
        root.locator("button.attnlens-thumb[data-layer='1'][data-head='2']").click()
        assert root.get_attribute("data-selected") is None
        assert not detail.is_visible()
        # keyboard: Tab to a thumbnail, Enter enlarges, Escape closes and gives focus back
        first = root.locator("button.attnlens-thumb[data-layer='0'][data-head='0']")
        first.focus()
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        assert root.get_attribute("data-selected") == "0,1"
        pressed = root.locator("button.attnlens-thumb[aria-pressed='true']")
        assert pressed.count() == 1
        np.testing.assert_allclose(sorted(_edges(root)), _nonzero(weights[0, 1]), atol=1e-3)
        page.keyboard.press("Escape")
        assert root.get_attribute("data-selected") is None
        focused = page.evaluate("() => document.activeElement.getAttribute('data-head')")
        assert focused == "1"
        page.keyboard.press(" ")  # Space on the focused thumbnail
        assert root.get_attribute("data-selected") == "0,1"
        root.locator("button.attnlens-close").click()
        assert root.get_attribute("data-selected") is None
    assert problems == [], "a token's script ran, or the script failed"


def test_japanese_page_gets_japanese_labels_in_chromium(tmp_path: Path) -> None:
    view = model_view_html(_weights(2, 2, 3, 3), ["a", "b", "c"])  # language="auto"
    path = page_with(view.html, lang="ja", tmp_path=tmp_path)
    with chromium_page(path) as (page, problems):
        root = page.locator(f"#{view.element_id}")
        assert root.get_attribute("data-language") == "ja"
        thumb = root.locator("button.attnlens-thumb[data-layer='1'][data-head='0']")
        assert thumb.get_attribute("aria-label") == "層 2、ヘッド 1"
        thumb.click()
        assert root.locator(".attnlens-detail-title").inner_text() == "層 2、ヘッド 1"
        assert root.locator("button.attnlens-close").get_attribute("aria-label") == "閉じる"
    assert problems == []
