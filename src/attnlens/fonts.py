"""Japanese (CJK) glyphs in matplotlib figures.

matplotlib's default font, DejaVu Sans, has no Japanese glyphs: a token such as
``映画`` is drawn as empty boxes with ``UserWarning: Glyph ... missing from font(s)``.
The runtime dependency `matplotlib-fontja <https://pypi.org/project/matplotlib-fontja/>`_
ships the IPAexGothic font. This module registers that font with matplotlib and puts
it *after* the current font in the font family list, so matplotlib's font fallback
draws Latin text in the usual font and only the characters it lacks in IPAexGothic.

`use_cjk_font` sets this globally (idempotent); the plotting functions of
:mod:`attnlens.plot` apply the same fallback to their own text, so Japanese tokens
render even when `use_cjk_font` was never called.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib import font_manager

__all__ = [
    "CJK_FONT_FAMILY",
    "cjk_font_context",
    "cjk_font_family",
    "cjk_font_path",
    "use_cjk_font",
]

#: Family name of the CJK font bundled with matplotlib-fontja.
CJK_FONT_FAMILY = "IPAexGothic"

_registered = False


def cjk_font_path() -> Path:
    """Return the path of the bundled IPAexGothic font file.

    The file is located without importing ``matplotlib_fontja``, whose import
    would switch the global font family to IPAexGothic as a side effect.

    Returns
    -------
    pathlib.Path
        Path of ``ipaexg.ttf`` inside the installed ``matplotlib_fontja`` package.

    Raises
    ------
    ModuleNotFoundError
        If matplotlib-fontja is not installed.
    FileNotFoundError
        If the package is installed but its font file is missing.

    Examples
    --------
    >>> from attnlens.fonts import cjk_font_path
    >>> cjk_font_path().name
    'ipaexg.ttf'
    """
    spec = importlib.util.find_spec("matplotlib_fontja")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "matplotlib-fontja is required to draw Japanese text: pip install matplotlib-fontja",
            name="matplotlib_fontja",
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "fonts" / "ipaexg.ttf"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "matplotlib_fontja is installed but fonts/ipaexg.ttf was not found in "
        f"{list(spec.submodule_search_locations)}"
    )


def _register() -> bool:
    """Add IPAexGothic to matplotlib's font manager once; return whether it is available."""
    global _registered  # noqa: PLW0603 - module-level cache of a process-wide registration
    if _registered:
        return True
    try:
        path = cjk_font_path()
    except (ModuleNotFoundError, FileNotFoundError):
        return False
    known = {font.fname for font in font_manager.fontManager.ttflist}
    if str(path) not in known:
        font_manager.fontManager.addfont(str(path))
    _registered = True
    return True


def cjk_font_family(base: str | list[str] | None = None) -> list[str]:
    """Return a font family list that falls back to IPAexGothic.

    Parameters
    ----------
    base : str or list of str, optional
        Font families to try first. Default: the current ``rcParams["font.family"]``
        (``["sans-serif"]``, i.e. DejaVu Sans, after ``rcdefaults()``).

    Returns
    -------
    list of str
        ``base`` followed by ``"IPAexGothic"`` (not repeated if already present).
        If matplotlib-fontja is not installed, ``base`` unchanged.

    Examples
    --------
    >>> from attnlens.fonts import cjk_font_family
    >>> cjk_font_family("sans-serif")
    ['sans-serif', 'IPAexGothic']
    """
    if base is None:
        base = mpl.rcParams["font.family"]
    families = [base] if isinstance(base, str) else list(base)
    if _register() and CJK_FONT_FAMILY not in families:
        families.append(CJK_FONT_FAMILY)
    return families


def use_cjk_font() -> list[str]:
    """Make Japanese glyphs render in every matplotlib figure from now on.

    Registers IPAexGothic (from matplotlib-fontja) and sets
    ``rcParams["font.family"]`` to the current families followed by IPAexGothic:
    Latin text keeps its font (DejaVu Sans by default); characters it lacks fall
    back to IPAexGothic. Calling it again changes nothing. ``plt.rcdefaults()``
    undoes it; call it again afterwards (the documentation's sphinx-gallery
    ``reset_modules`` does).

    Returns
    -------
    list of str
        The new ``rcParams["font.family"]``.

    Raises
    ------
    ModuleNotFoundError
        If matplotlib-fontja is not installed.

    Examples
    --------
    >>> import matplotlib as mpl
    >>> from attnlens.fonts import use_cjk_font
    >>> families = use_cjk_font()
    >>> families[-1], use_cjk_font() == families
    ('IPAexGothic', True)
    >>> mpl.rcdefaults()
    """
    cjk_font_path()  # raise a clear error if the font is not installed
    families = cjk_font_family()
    mpl.rcParams["font.family"] = families
    return families


@contextmanager
def cjk_font_context() -> Iterator[list[str]]:
    """Context manager: CJK fallback for the figures and text created inside it.

    Like `use_cjk_font`, but the previous rcParams come back on exit. The font
    family of a text object is fixed when it is created, so figures built inside
    the block keep rendering Japanese after it.

    Yields
    ------
    list of str
        The font family list in effect inside the block.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from attnlens.fonts import cjk_font_context
    >>> with cjk_font_context():
    ...     fig, ax = plt.subplots()
    ...     _ = ax.set_title("この映画")
    >>> fig.canvas.draw()
    >>> plt.close(fig)
    """
    families = cjk_font_family()
    with mpl.rc_context({"font.family": families}):
        yield families
