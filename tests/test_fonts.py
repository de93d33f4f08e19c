"""Japanese glyphs render: the bundled IPAexGothic is registered and used as a fallback."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import matplotlib as mpl
import matplotlib.pyplot as plt
import pytest
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from attnlens.fonts import (
    CJK_FONT_FAMILY,
    cjk_font_context,
    cjk_font_family,
    cjk_font_path,
    use_cjk_font,
)

JAPANESE = "この映画はとても良くなかった"


@pytest.fixture(autouse=True)
def _restore_rc() -> Iterator[None]:
    """Each test starts from matplotlib's defaults and leaves them behind."""
    mpl.rcdefaults()
    yield
    mpl.rcdefaults()
    plt.close("all")


def _agg_figure() -> Figure:
    """A figure on the Agg canvas (a bare Figure's base canvas draws nothing)."""
    fig = Figure()
    FigureCanvasAgg(fig)
    return fig


def _draw_text(text: str) -> None:
    fig = _agg_figure()
    fig.text(0.1, 0.5, text)
    fig.canvas.draw()


def test_font_file_is_found_without_importing_matplotlib_fontja() -> None:
    path = cjk_font_path()
    assert path.name == "ipaexg.ttf"
    assert path.is_file()
    # importing matplotlib_fontja would have switched the global family; we did not
    assert mpl.rcParams["font.family"] == ["sans-serif"]


def test_defaults_cannot_draw_japanese() -> None:
    # the control for the tests below: without the fallback a glyph is missing
    with pytest.warns(UserWarning, match="missing from font"):
        _draw_text(JAPANESE)


def test_use_cjk_font_is_idempotent_and_keeps_latin_font_first() -> None:
    families = use_cjk_font()
    assert families == ["sans-serif", CJK_FONT_FAMILY]
    assert use_cjk_font() == families
    assert mpl.rcParams["font.family"] == families
    registered = font_manager.findfont(
        font_manager.FontProperties(family=CJK_FONT_FAMILY), fallback_to_default=False
    )
    assert registered.endswith("ipaexg.ttf")


def test_use_cjk_font_draws_japanese_without_missing_glyph() -> None:
    use_cjk_font()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _draw_text(JAPANESE + " [CLS] movie")


def test_use_cjk_font_after_rcdefaults_again() -> None:
    # what sphinx-gallery's reset_modules does before every example
    use_cjk_font()
    mpl.rcdefaults()
    assert CJK_FONT_FAMILY not in mpl.rcParams["font.family"]
    use_cjk_font()
    assert mpl.rcParams["font.family"][-1] == CJK_FONT_FAMILY


def test_family_respects_user_choice() -> None:
    mpl.rcParams["font.family"] = "serif"
    assert cjk_font_family() == ["serif", CJK_FONT_FAMILY]
    assert cjk_font_family(["monospace", CJK_FONT_FAMILY]) == ["monospace", CJK_FONT_FAMILY]


def test_context_restores_rc_and_figures_keep_rendering() -> None:
    with cjk_font_context() as families:
        assert mpl.rcParams["font.family"] == families
        fig = _agg_figure()
        fig.text(0.1, 0.5, JAPANESE)
    assert mpl.rcParams["font.family"] == ["sans-serif"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.canvas.draw()  # drawn after the block: the text kept its family
