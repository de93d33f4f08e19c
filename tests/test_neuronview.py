"""The neuron view: its numbers against PyTorch, the markup, labels, errors, and a real browser."""

from __future__ import annotations

import doctest
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from viewtools import chromium_page, embedded, page_with, parse

import attnlens
import attnlens.neuronview
from attnlens.neuronview import MAX_HEAD_DIM, NEURON_VIEW_LABELS, NeuronView, neuron_view_html

pytestmark = pytest.mark.usefixtures("single_thread")

EVIL = "</script><script>alert(1)</script>"
TOKENS = ["[CLS]", "<b>bold</b>", EVIL, "\"quoted\" & 'single'"]


def _qk(h: int, n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(h, n, d, generator=generator, dtype=dtype)  # (H, L, D)


# ------------------------------------------------------------------ the numbers


@given(
    heads=st.integers(1, 3),
    rows=st.integers(1, 5),
    cols=st.integers(1, 5),
    dim=st.integers(1, 4),
    scale=st.none() | st.floats(0.05, 3.0),
    seed=st.integers(0, 2**16),
    double=st.booleans(),
)
def test_numbers_agree_with_torch(
    heads: int, rows: int, cols: int, dim: int, scale: float | None, seed: int, double: bool
) -> None:
    dtype = torch.float64 if double else torch.float32
    q = _qk(heads, rows, dim, seed, dtype)  # (H, L, D)
    k = _qk(heads, cols, dim, seed + 1, dtype)  # (H, S, D)
    view = neuron_view_html(
        q, k, [f"q{i}" for i in range(rows)], [f"k{j}" for j in range(cols)], scale=scale
    )
    factor = 1 / math.sqrt(dim) if scale is None else scale
    assert view.scale == pytest.approx(factor)
    assert view.shape == (heads, rows, cols, dim)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    products = q[:, :, None, :] * k[:, None, :, :]  # (H, L, S, D)
    torch.testing.assert_close(torch.from_numpy(view.products).to(dtype), products, **tol)
    torch.testing.assert_close(
        torch.from_numpy(view.dots).to(dtype), q @ k.transpose(-2, -1), **tol
    )
    scores = q @ k.transpose(-2, -1) * factor  # (H, L, S)
    torch.testing.assert_close(torch.from_numpy(view.scores).to(dtype), scores, **tol)
    torch.testing.assert_close(
        torch.from_numpy(view.weights).to(dtype), torch.softmax(scores, dim=-1), **tol
    )
    _, weights = attnlens.scaled_dot_product_attention(q, k, k, scale=factor)  # (H, L, S)
    torch.testing.assert_close(torch.from_numpy(view.weights).to(dtype), weights, **tol)


def test_queries_and_keys_of_a_multihead_attention_module() -> None:
    """The walkthroughs' module (E = 4, 2 heads): the view's weights are the module's."""
    torch.manual_seed(55)
    x = torch.randn(1, 5, 4)  # (N, L, E)
    mha = torch.nn.MultiheadAttention(4, 2, bias=False, batch_first=True).eval()
    with torch.no_grad():
        _, expected = mha(x, x, x, average_attn_weights=False)  # (N, H, L, S)
        proj = attnlens.split_in_proj(mha)
        q = attnlens.split_heads(torch.nn.functional.linear(x, proj.q_weight), 2)  # (N, H, L, D)
        k = attnlens.split_heads(torch.nn.functional.linear(x, proj.k_weight), 2)  # (N, H, S, D)
    view = neuron_view_html(q, k, [f"x{i}" for i in range(5)], batch_index=0, head=1)
    assert view.shape == (2, 5, 5, 2)
    torch.testing.assert_close(torch.from_numpy(view.weights).float(), expected[0])


def test_markup_shows_the_chosen_query_and_head() -> None:
    q, k = _qk(2, 4, 3), _qk(2, 4, 3, seed=1)
    view = neuron_view_html(q, k, TOKENS, head=1, query_index=2, decimals=4)
    assert isinstance(view, NeuronView)
    assert attnlens.neuron_view_html is neuron_view_html
    parsed = parse(view.html)
    (root,) = parsed.find("div", "attnlens-neuronview")
    assert root[1]["data-head"] == "1"
    assert root[1]["data-query"] == "2"
    assert float(root[1]["data-scale"] or 0) == pytest.approx(1 / math.sqrt(3))

    def cells(cls: str) -> list[float]:
        return [float(parsed.texts[i]) for i, _ in parsed.find("td", cls)]

    np.testing.assert_allclose(cells("attnlens-q"), q[1, 2].numpy(), atol=6e-5)
    np.testing.assert_allclose(cells("attnlens-k"), k[1].numpy().ravel(), atol=6e-5)
    np.testing.assert_allclose(cells("attnlens-product"), view.products[1, 2].ravel(), atol=6e-5)
    np.testing.assert_allclose(cells("attnlens-dot"), view.dots[1, 2], atol=6e-5)
    np.testing.assert_allclose(cells("attnlens-score"), view.scores[1, 2], atol=6e-5)
    values = [float(parsed.texts[i]) for i, _ in parsed.find("span", "attnlens-value")]
    np.testing.assert_allclose(values, view.weights[1, 2], atol=6e-5)
    assert all(
        re.fullmatch(r"-?\d+\.\d{4}", parsed.texts[i]) for i, _ in parsed.find("td", "attnlens-dot")
    )
    buttons = parsed.find("button", "attnlens-query")
    assert [a["aria-pressed"] for _, a in buttons] == ["false", "false", "true", "false"]
    assert [parsed.texts[i] for i, _ in buttons] == TOKENS
    rows = [
        parsed.texts[i]
        for i, (tag, attrs) in enumerate(parsed.elements)
        if tag == "th" and attrs.get("scope") == "row"
    ][1:]  # the first is q's row
    assert rows == TOKENS
    assert "q · k / √3" in view.html
    assert "q · k × 0.5" in neuron_view_html(q, k, TOKENS, scale=0.5).html
    data = embedded(parsed.scripts[0])
    np.testing.assert_allclose(data["weights"], np.round(view.weights, 4), atol=1e-12)


# ------------------------------------------------------------------ masks

MINUS_INF = "\u2212\u221e"


@st.composite
def _masks(draw: st.DrawFn, heads: int, rows: int, cols: int) -> torch.Tensor:
    """A bool or float SDPA mask of shape (L, S), (1, L, S) or (H, L, S)."""
    shape = draw(st.sampled_from([(rows, cols), (1, rows, cols), (heads, rows, cols)]))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(shape, generator=generator) < draw(st.floats(0.2, 1.0))
    if draw(st.booleans()):
        return keep
    bias = torch.randn(shape, generator=generator, dtype=torch.float64)
    return bias.masked_fill(~keep, float("-inf"))  # finite additions, and -inf


@given(
    heads=st.integers(1, 3),
    rows=st.integers(1, 5),
    cols=st.integers(1, 5),
    dim=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    double=st.booleans(),
    data=st.data(),
)
def test_masked_weights_agree_with_sdpa(
    heads: int, rows: int, cols: int, dim: int, seed: int, double: bool, data: st.DataObject
) -> None:
    """Bool and float masks, and is_causal: the weights are SDPA's, weights @ v its output."""
    dtype = torch.float64 if double else torch.float32
    q = _qk(heads, rows, dim, seed, dtype)  # (H, L, D)
    k = _qk(heads, cols, dim, seed + 1, dtype)  # (H, S, D)
    v = _qk(heads, cols, dim, seed + 2, dtype)  # (H, S, D)
    causal = data.draw(st.booleans(), label="is_causal")
    mask = None if causal else data.draw(_masks(heads, rows, cols), label="attn_mask")
    sdpa_mask = mask if mask is None or mask.dtype == torch.bool else mask.to(dtype)
    view = neuron_view_html(
        q,
        k,
        [f"q{i}" for i in range(rows)],
        [f"k{j}" for j in range(cols)],
        attn_mask=mask,
        is_causal=causal,
    )
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    _, expected = attnlens.scaled_dot_product_attention(
        q, k, v, attn_mask=sdpa_mask, is_causal=causal
    )  # (H, L, S)
    weights = torch.from_numpy(view.weights)
    torch.testing.assert_close(weights.to(dtype), expected, **tol)
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=sdpa_mask, is_causal=causal)
    torch.testing.assert_close((weights @ v.double()).to(dtype), output, **tol)
    assert view.mask is not None
    assert view.mask.shape == (heads, rows, cols)
    blocked = view.mask == -math.inf  # (H, L, S)
    assert np.all(view.weights[blocked] == 0)
    fully = blocked.all(axis=-1)  # (H, L)
    np.testing.assert_allclose(view.weights.sum(axis=-1), np.where(fully, 0.0, 1.0), atol=1e-12)
    if causal:
        above = np.triu(np.ones((rows, cols)), 1) > 0  # (L, S): keys after the query
        np.testing.assert_array_equal(blocked, np.broadcast_to(above, blocked.shape))


def test_without_a_mask_there_is_no_mask_column() -> None:
    view = neuron_view_html(_qk(2, 3, 2), _qk(2, 3, 2, seed=1), ["a", "b", "c"])
    assert view.mask is None
    parsed = parse(view.html)
    assert parsed.find("td", "attnlens-mask") == []
    heads = [a for tag, a in parsed.elements if tag == "th" and a.get("data-l10n-title") == "mask"]
    assert heads == []
    assert embedded(parsed.scripts[0])["mask"] is None


def test_markup_of_a_causal_view() -> None:
    q, k = _qk(2, 4, 3), _qk(2, 4, 3, seed=1)
    view = neuron_view_html(q, k, TOKENS, is_causal=True, query_index=1, decimals=3)
    parsed = parse(view.html)
    masks = [parsed.texts[i] for i, _ in parsed.find("td", "attnlens-mask")]
    assert masks == ["0.000", "0.000", MINUS_INF, MINUS_INF]  # query 1 sees keys 0 and 1
    rows = [a for tag, a in parsed.elements if tag == "tr" and "data-key" in a]
    assert [a.get("class") for a in rows] == [None, None, "attnlens-masked", "attnlens-masked"]
    values = [float(parsed.texts[i]) for i, _ in parsed.find("span", "attnlens-value")]
    np.testing.assert_allclose(values, view.weights[0, 1], atol=6e-4)
    assert values[2:] == [0.0, 0.0]
    assert "+ mask" in view.html
    japanese = neuron_view_html(q, k, TOKENS, is_causal=True, language="ja").html
    assert "+ マスク" in japanese
    assert "+ mask" not in japanese
    (script,) = parsed.scripts
    data = embedded(script)
    assert data["mask"][0][1] == [0.0, 0.0, None, None]  # -inf is null in the JSON
    assert "Infinity" not in script
    assert NEURON_VIEW_LABELS["ja"]["mask"] in neuron_view_html(q, k, TOKENS, is_causal=True).html
    assert NEURON_VIEW_LABELS["ja"]["mask"] in japanese


def test_a_query_with_every_key_masked_gets_zero_weights() -> None:
    q, k = _qk(1, 3, 2), _qk(1, 3, 2, seed=1)
    keep = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    view = neuron_view_html(q, k, ["a", "b", "c"], attn_mask=keep)
    np.testing.assert_array_equal(view.weights[0, 1], [0.0, 0.0, 0.0])
    assert view.weights[0, 0, 1] == 0
    assert view.weights[0, 0].sum() == pytest.approx(1)
    output = F.scaled_dot_product_attention(q, k, k, attn_mask=keep)
    torch.testing.assert_close(output[0, 1], torch.zeros(2))  # SDPA's output for that query: 0


def test_a_batched_mask_follows_batch_index() -> None:
    q, k = _qk(3, 4, 2)[:, None], _qk(3, 4, 2, seed=1)[:, None]  # (N, H, L, D) = (3, 1, 4, 2)
    keep = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(3)) < 0.7
    keep[..., 0] = True
    for n in range(3):
        view = neuron_view_html(q, k, list("abcd"), batch_index=n, attn_mask=keep)
        _, expected = attnlens.scaled_dot_product_attention(
            q[n].double(), k[n].double(), k[n].double(), attn_mask=keep[n]
        )
        torch.testing.assert_close(torch.from_numpy(view.weights), expected)


def test_mask_errors_name_the_argument_and_the_shapes() -> None:
    q, k = _qk(2, 3, 2), _qk(2, 4, 2, seed=1)
    tokens, keys = ["a", "b", "c"], ["w", "x", "y", "z"]
    with pytest.raises(
        ValueError, match=r"attn_mask: expected shape \(L, S\) = \(3, 4\), .*got \(4, 3\)"
    ):
        neuron_view_html(q, k, tokens, keys, attn_mask=torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(H, L, S\) = \(2, 3, 4\).*got \(3, 3, 4\)"):
        neuron_view_html(q, k, tokens, keys, attn_mask=torch.zeros(3, 3, 4))
    with pytest.raises(
        ValueError, match=r"attn_mask: got shape \(1, 2, 3, 4\) \(N, H, L, S\); pass"
    ):
        neuron_view_html(q, k, tokens, keys, attn_mask=torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="attn_mask, is_causal: give one of them, not both"):
        neuron_view_html(q, k, tokens, keys, attn_mask=torch.zeros(3, 4), is_causal=True)
    with pytest.raises(ValueError, match=r"attn_mask: expected finite numbers or -inf, got NaN"):
        neuron_view_html(q, k, tokens, keys, attn_mask=torch.full((3, 4), float("nan")))
    with pytest.raises(
        ValueError, match=r"attn_mask: expected finite numbers or -inf, got NaN or \+inf"
    ):
        neuron_view_html(q, k, tokens, keys, attn_mask=torch.full((3, 4), float("inf")))
    with pytest.raises(TypeError, match=r"attn_mask: expected a torch\.Tensor or array of numbers"):
        neuron_view_html(q, k, tokens, keys, attn_mask="causal")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is_causal: expected a bool, got str"):
        neuron_view_html(q, k, tokens, keys, is_causal="yes")  # type: ignore[arg-type]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(attnlens.neuronview, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8
    assert result.failed == 0


# ------------------------------------------------------------------ escaping, languages, save


def test_tokens_are_escaped() -> None:
    view = neuron_view_html(_qk(2, 4, 2), _qk(2, 4, 2, seed=1), TOKENS, head_labels=[EVIL, "h"])
    markup = view.html
    assert "<script>alert" not in markup
    assert "<b>bold" not in markup
    parsed = parse(markup)
    assert [tag for tag, _ in parsed.elements].count("script") == 1
    (script,) = parsed.scripts
    assert "</" not in script
    assert embedded(script)["queries"] == TOKENS


def test_labels_in_each_language(tmp_path: Path) -> None:
    q, k = _qk(2, 3, 2), _qk(2, 3, 2, seed=1)
    japanese = neuron_view_html(q, k, ["a", "b", "c"], language="ja")
    english = neuron_view_html(q, k, ["a", "b", "c"], language="en")
    auto = neuron_view_html(q, k, ["a", "b", "c"])
    assert "キーのトークン" in japanese.html
    assert "key token" in english.html
    assert "キーのトークン" not in english.html
    assert set(embedded(parse(auto.html).scripts[0], "labels")) == {"en", "ja"}
    assert set(NEURON_VIEW_LABELS["en"]) == set(NEURON_VIEW_LABELS["ja"])
    text = japanese.save(tmp_path / "n.html").read_text(encoding="utf-8")
    assert text.startswith('<!DOCTYPE html>\n<html lang="ja">')


# ------------------------------------------------------------------ errors


def test_errors_name_the_argument_and_the_shapes() -> None:
    q, k = _qk(2, 3, 2), _qk(2, 4, 2, seed=1)
    keys = ["w", "x", "y", "z"]
    with pytest.raises(ValueError, match=r"key: expected shape \(H, S, D\) = \(2, \*, 2\) like"):
        neuron_view_html(q, _qk(2, 4, 3), ["a", "b", "c"], keys)
    with pytest.raises(ValueError, match=r"key: expected shape \(H, S, D\) = \(2, \*, 2\)"):
        neuron_view_html(q, _qk(3, 4, 2), ["a", "b", "c"], keys)
    with pytest.raises(ValueError, match=r"query: got shape \(1, 2, 3, 2\) \(N, H, L, D\); pass"):
        neuron_view_html(q[None], k[None], ["a", "b", "c"], keys)
    with pytest.raises(ValueError, match=r"query: expected shape \(L, D\), \(H, L, D\) or"):
        neuron_view_html(q[None, None], k, ["a", "b", "c"], keys)
    with pytest.raises(ValueError, match=rf"at most {MAX_HEAD_DIM} .* D = 17"):
        neuron_view_html(_qk(1, 3, 17), _qk(1, 3, 17), ["a", "b", "c"])
    with pytest.raises(ValueError, match="key_tokens: required when L != S"):
        neuron_view_html(q, k, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"key_tokens: expected 4 tokens \(S = .*\), got 3"):
        neuron_view_html(q, k, ["a", "b", "c"], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"tokens: expected 3 tokens \(L = .*\), got 2"):
        neuron_view_html(q, k, ["a", "b"], keys)
    with pytest.raises(ValueError, match=r"head: expected an index in \[-2, 2\), got 2"):
        neuron_view_html(q, k, ["a", "b", "c"], keys, head=2)
    with pytest.raises(ValueError, match=r"query_index: expected an index in \[-3, 3\), got 5"):
        neuron_view_html(q, k, ["a", "b", "c"], keys, query_index=5)
    with pytest.raises(ValueError, match="scale: expected a finite number > 0, got -1"):
        neuron_view_html(q, k, ["a", "b", "c"], keys, scale=-1.0)
    with pytest.raises(ValueError, match=r"batch_index: expected an index in \[-1, 1\), got 1"):
        neuron_view_html(q[None], k[None], ["a", "b", "c"], keys, batch_index=1)
    bad = q.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="query: expected finite numbers"):
        neuron_view_html(bad, k, ["a", "b", "c"], keys)
    with pytest.raises(TypeError, match=r"key: expected a torch\.Tensor or array of numbers"):
        neuron_view_html(q, object(), ["a", "b", "c"], keys)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="language: expected 'auto', 'en' or 'ja'"):
        neuron_view_html(q, k, ["a", "b", "c"], keys, language="EN")


# ------------------------------------------------------------------ real browser


def _shown(page: object, view_id: str) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = page.evaluate(  # type: ignore[attr-defined]
        """id => {
          const root = document.getElementById(id);
          const numbers = sel => Array.from(root.querySelectorAll(sel))
            .map(e => parseFloat(e.textContent));
          return {q: numbers("td.attnlens-q"), k: numbers("td.attnlens-k"),
                  products: numbers("td.attnlens-product"), dots: numbers("td.attnlens-dot"),
                  scores: numbers("td.attnlens-score"), weights: numbers(".attnlens-value")};
        }""",
        view_id,
    )
    return rows


def test_numbers_follow_the_chosen_query_and_head_in_chromium(tmp_path: Path) -> None:
    q, k = _qk(2, 4, 3), _qk(2, 4, 3, seed=1)
    view = neuron_view_html(q, k, TOKENS)
    path = page_with(view.html, lang="en", tmp_path=tmp_path)
    with chromium_page(path) as (page, problems):
        root = page.locator(f"#{view.element_id}")

        def check(head: int, query: int) -> None:
            assert root.get_attribute("data-head") == str(head)
            assert root.get_attribute("data-query") == str(query)
            shown = _shown(page, view.element_id)
            np.testing.assert_allclose(shown["q"], q[head, query].numpy(), atol=6e-4)
            np.testing.assert_allclose(shown["k"], k[head].numpy().ravel(), atol=6e-4)
            products = np.array(shown["products"]).reshape(4, 3)  # (S, D)
            np.testing.assert_allclose(products, view.products[head, query], atol=6e-4)
            # the page's own arithmetic holds: the sum, the scale, the softmax
            np.testing.assert_allclose(shown["dots"], products.sum(axis=1), atol=2e-3)
            np.testing.assert_allclose(shown["scores"], np.array(shown["dots"]) / 3**0.5, atol=2e-3)
            softmax = np.exp(shown["scores"]) / np.exp(shown["scores"]).sum()
            np.testing.assert_allclose(shown["weights"], softmax, atol=3e-3)
            assert sum(shown["weights"]) == pytest.approx(1, abs=3e-3)
            np.testing.assert_allclose(shown["weights"], view.weights[head, query], atol=6e-4)
            assert root.locator(".attnlens-q-token").inner_text() == TOKENS[query]

        check(0, 0)
        root.locator("button.attnlens-query[data-index='2']").click()
        check(0, 2)
        root.locator("select.attnlens-head-select").select_option(value="1")
        check(1, 2)
        root.locator("button.attnlens-query[data-index='3']").focus()
        page.keyboard.press("Enter")
        check(1, 3)
        page.keyboard.press("Shift+Tab")
        page.keyboard.press(" ")
        check(1, 2)
        assert root.locator("button.attnlens-query[aria-pressed='true']").count() == 1
    assert problems == [], "a token's script ran, or the script failed"


def test_japanese_page_gets_japanese_labels_in_chromium(tmp_path: Path) -> None:
    view = neuron_view_html(_qk(2, 3, 2), _qk(2, 3, 2, seed=1), ["a", "b", "c"], is_causal=True)
    path = page_with(view.html, lang="ja", tmp_path=tmp_path)
    with chromium_page(path) as (page, problems):
        root = page.locator(f"#{view.element_id}")
        assert root.get_attribute("data-language") == "ja"
        assert root.locator("caption").inner_text() == NEURON_VIEW_LABELS["ja"]["caption"]
        assert root.locator("thead th").first.inner_text() == "キーのトークン"
        mask_head = root.locator("thead th[data-l10n-title='mask']")
        assert mask_head.inner_text() == "+ マスク"
        assert mask_head.get_attribute("title") == NEURON_VIEW_LABELS["ja"]["mask"]
    assert problems == []


def test_a_masked_view_follows_the_chosen_query_in_chromium(tmp_path: Path) -> None:
    """Causal mask: the keys after the query show −∞, are dimmed, and get weight 0."""
    q, k = _qk(2, 4, 3), _qk(2, 4, 3, seed=1)
    view = neuron_view_html(q, k, TOKENS, is_causal=True)
    path = page_with(view.html, lang="en", tmp_path=tmp_path)
    with chromium_page(path) as (page, problems):
        root = page.locator(f"#{view.element_id}")

        def check(head: int, query: int) -> None:
            shown = _shown(page, view.element_id)
            masks = root.locator("td.attnlens-mask").all_inner_texts()
            assert masks == [f"{0:.3f}"] * (query + 1) + [MINUS_INF] * (3 - query)
            dimmed = root.locator("tr.attnlens-masked").evaluate_all(
                "rows => rows.map(r => Number(r.getAttribute('data-key')))"
            )
            assert dimmed == list(range(query + 1, 4))
            visible = np.array(shown["scores"][: query + 1])
            softmax = np.exp(visible) / np.exp(visible).sum()
            np.testing.assert_allclose(shown["weights"][: query + 1], softmax, atol=3e-3)
            assert shown["weights"][query + 1 :] == [0.0] * (3 - query)
            np.testing.assert_allclose(shown["weights"], view.weights[head, query], atol=6e-4)

        check(0, 0)
        root.locator("button.attnlens-query[data-index='2']").click()
        check(0, 2)
        root.locator("select.attnlens-head-select").select_option(value="1")
        check(1, 2)
        root.locator("button.attnlens-query[data-index='3']").click()
        check(1, 3)
    assert problems == []
