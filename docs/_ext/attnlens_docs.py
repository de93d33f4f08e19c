"""Small Sphinx helpers for the attnlens site (loaded from ``docs/conf.py``).

* :func:`reset_example_state` -- sphinx-gallery ``reset_modules`` callable: matplotlib defaults,
  then the project's CJK font, and torch's global print options / default dtype, before every
  example (examples share one interpreter during the build).
* A language switcher: ``attnlens_languages`` in every page's template context, linking the
  same page in each language (``docs/_build/html/<lang>/<pagename>.html``).
* A check that every translatable message of a non-English build has a translation in the
  committed catalogs (``docs/locales/<lang>/LC_MESSAGES``). A message without one is a warning,
  which ``-W`` turns into a failed build: no English prose slips into the Japanese site.
"""

from __future__ import annotations

import html
import importlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.locale import init as init_locale
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.i18n import docname_to_domain
from sphinx.util.nodes import extract_messages

logger = logging.getLogger(__name__)

#: (code, label) of every language the site is built in; the label is written in that language.
LANGUAGES: tuple[tuple[str, str], ...] = (("en", "English"), ("ja", "日本語"))
SOURCE_LANGUAGE = "en"


# --------------------------------------------------------------------------------------------
# sphinx-gallery: state reset before each example
# --------------------------------------------------------------------------------------------
def reset_example_state(_gallery_conf: dict[str, Any], _fname: str | None) -> None:
    """Reset global state before an example runs (sphinx-gallery ``reset_modules``).

    matplotlib's rcParams go back to the defaults (as sphinx-gallery's own reset does), then
    ``attnlens.fonts.use_cjk_font()`` installs the Japanese-capable font, so tokens such as
    ``映画`` render with real glyphs in every figure. torch's print options and default dtype
    are reset too, so that one example's ``torch.set_printoptions`` does not leak into the next.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    plt.rcdefaults()
    importlib.reload(matplotlib.units)
    importlib.reload(matplotlib.dates)
    importlib.reload(matplotlib.category)

    try:
        fonts = importlib.import_module("attnlens.fonts")
        use_cjk_font = fonts.use_cjk_font
    except (ImportError, AttributeError) as exc:  # pragma: no cover - clear failure
        msg = (
            "docs: attnlens.fonts.use_cjk_font() is needed to draw Japanese text in the "
            f"walkthrough figures, but it could not be imported ({exc!r}). Install the package "
            "(pip install -e .) with its runtime dependency matplotlib-fontja."
        )
        raise RuntimeError(msg) from exc
    use_cjk_font()

    import torch

    torch.set_printoptions(profile="default")
    torch.set_default_dtype(torch.float32)


# --------------------------------------------------------------------------------------------
# language switcher
# --------------------------------------------------------------------------------------------
def language_links(pagename: str, current: str, suffix: str = ".html") -> list[dict[str, Any]]:
    """Links to ``pagename`` in every language, relative to the page itself.

    The builds live side by side in ``html/en/`` and ``html/ja/``: from ``en/a/b.html`` the
    Japanese page is ``../../ja/a/b.html`` (one ``../`` per directory level, plus one for the
    language directory). Relative links work from ``file://`` and from any server path.
    """
    up = "../" * (pagename.count("/") + 1)
    return [
        {
            "code": code,
            "label": label,
            "url": f"{up}{code}/{pagename}{suffix}",
            "current": code == current,
        }
        for code, label in LANGUAGES
    ]


def _add_language_context(
    app: Sphinx,
    pagename: str,
    _templatename: str,
    context: dict[str, Any],
    _doctree: nodes.document | None,
) -> None:
    current = app.config.language or SOURCE_LANGUAGE
    suffix = getattr(app.builder, "out_suffix", ".html")
    context["attnlens_languages"] = language_links(pagename, current, suffix)
    context["attnlens_language"] = current


# --------------------------------------------------------------------------------------------
# display maths is not prose
# --------------------------------------------------------------------------------------------
class MathIsNotProse(SphinxTransform):
    """Keep display maths (``$$ ... $$``, ``.. math::``) out of the message catalogs.

    Sphinx extracts math blocks as messages; a translator could only copy them, and a typo
    in the copy would change the formula on the Japanese page. Inline maths stays part of
    its sentence.
    """

    default_priority = 5  # before PreserveTranslatableMessages (10) and Locale (20)

    def apply(self, **_kwargs: Any) -> None:
        for node in self.document.findall(nodes.math_block):
            node["translatable"] = False


class SignaturesAreNotProse(SphinxTransform):
    """Keep code-only text of API entries and gallery links out of the message catalogs.

    * numpydoc renders ``query : Tensor`` and ``ValueError`` as definition-list terms and
      classifiers inside each API entry: code, not prose (their descriptions stay
      translatable). With ``attnlens_translate_api = False`` nothing inside an API entry is
      translated: the Japanese API reference then shows the English docstrings.
    * A paragraph that is only a link to a page (sphinx-gallery's ``:doc:`...``` under each
      thumbnail) shows that page's title, which is translated on that page.
    """

    default_priority = 5

    def apply(self, **_kwargs: Any) -> None:
        translate_api = self.config.attnlens_translate_api
        for content in self.document.findall(addnodes.desc_content):
            for node in content.findall(nodes.TextElement):
                if not translate_api or isinstance(node, (nodes.term, nodes.classifier)):
                    node["translatable"] = False
        for para in self.document.findall(nodes.paragraph):
            if (
                len(para.children) == 1
                and isinstance(para[0], addnodes.pending_xref)
                and not para[0].get("refexplicit")
            ):
                para["translatable"] = False


# --------------------------------------------------------------------------------------------
# every message of a translated build must be translated
# --------------------------------------------------------------------------------------------
class UntranslatedMessages(SphinxTransform):
    """Warn about each document whose translatable messages lack a translation.

    Runs just before Sphinx's ``Locale`` transform (priority 20) and looks every message up
    the same way ``Locale`` does: in the compiled catalog of the document's own text domain
    (``gettext_compact = False``: one ``.po`` per document). Fuzzy entries are not compiled,
    so they count as missing. A msgstr identical to the msgid counts as translated (for a
    message that is the same in both languages, e.g. a bare API name).
    """

    default_priority = 19

    def apply(self, **_kwargs: Any) -> None:
        config = self.config
        language = config.language or SOURCE_LANGUAGE
        if language == SOURCE_LANGUAGE or not config.attnlens_require_translations:
            return
        docname = self.env.current_document.docname
        domain = docname_to_domain(docname, config.gettext_compact)
        dirs = [self.env.srcdir / d for d in config.locale_dirs]
        catalog, has_catalog = init_locale(dirs, language, domain)
        merged: dict[str, str] = {}
        if has_catalog:
            catalogues = [getattr(catalog, "_catalog", None)]
            while (catalog := catalog._fallback) is not None:  # type: ignore[attr-defined]
                catalogues.append(getattr(catalog, "_catalog", None))
            for catalogue in filter(None, reversed(catalogues)):
                merged |= catalogue
        for node, msg in extract_messages(self.document):
            msgstr = merged.get(msg, "")
            if not msgstr.strip():
                node.setdefault(_MARK, []).append(msg)


_MARK = "attnlens-untranslated"


def _collect_untranslated(app: Sphinx, doctree: nodes.document) -> None:
    """Record the marked messages whose nodes are still part of the page.

    Runs after the environment collectors (priority 900), which drop some nodes that the
    gettext builder never sees either, e.g. the ``docinfo`` of a page's front matter.
    """
    env = app.env
    docname = env.current_document.docname
    missing: list[str] = []
    for node in doctree.findall(nodes.Element):
        if _MARK in node.attributes:
            missing.extend(node.attributes.pop(_MARK))
    store = _untranslated_store(env)
    if missing:
        store[docname] = missing
    else:
        store.pop(docname, None)


def _untranslated_store(env: BuildEnvironment) -> dict[str, list[str]]:
    """Untranslated messages per document, kept in the pickled environment.

    Kept there (not just warned about while reading) so that an incremental build, which does
    not read an unchanged page again, still reports it: the warnings are emitted from
    ``build-finished`` of every build.
    """
    if not hasattr(env, "attnlens_untranslated"):
        env.attnlens_untranslated = {}  # type: ignore[attr-defined]
    return env.attnlens_untranslated  # type: ignore[attr-defined, no-any-return]


def _purge_untranslated(_app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    _untranslated_store(env).pop(docname, None)


def _merge_untranslated(
    _app: Sphinx, env: BuildEnvironment, docnames: set[str], other: BuildEnvironment
) -> None:
    theirs = _untranslated_store(other)
    _untranslated_store(env).update({d: theirs[d] for d in docnames if d in theirs})


def _report_untranslated(app: Sphinx, exc: Exception | None) -> None:
    if exc is not None:
        return
    env = app.env
    language = app.config.language or SOURCE_LANGUAGE
    if language == SOURCE_LANGUAGE or not app.config.attnlens_require_translations:
        return
    store = _untranslated_store(env)
    for docname in sorted(store):
        if docname not in env.found_docs:
            continue
        missing = store[docname]
        domain = docname_to_domain(docname, app.config.gettext_compact)
        po = f"docs/{app.config.locale_dirs[0].rstrip('/')}/{language}/LC_MESSAGES/{domain}.po"
        shown = "\n".join(f"    {m[:110]!r}" for m in missing[:8])
        more = f"\n    ... and {len(missing) - 8} more" if len(missing) > 8 else ""
        logger.warning(
            "%d untranslated message(s) in the %r build; run `nox -s i18n`, then translate "
            "them in %s (and clear any fuzzy flag):\n%s%s",
            len(missing),
            language,
            po,
            shown,
            more,
            location=docname,
            type="attnlens",
            subtype="untranslated",
        )


# --------------------------------------------------------------------------------------------
# API entries: the walkthroughs that use a name
# --------------------------------------------------------------------------------------------
class ExamplesUsing(SphinxDirective):
    """``.. attnlens-examples:: attnlens.name [attnlens.other]``.

    A rubric and sphinx-gallery's ``minigallery`` of the examples that use one of the names
    (read from sphinx-gallery's backreferences), or nothing at all when no example uses them,
    so that no entry ends with an empty heading.
    """

    required_arguments = 1
    final_argument_whitespace = True
    has_content = False

    def run(self) -> list[nodes.Node]:
        names = self.arguments[0].split()
        conf = self.config.sphinx_gallery_conf
        path = Path(conf["src_dir"], conf["backreferences_dir"], "backreferences_all.json")
        self.env.note_dependency(str(path))
        used = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if not any(used.get(name) for name in names):
            return []
        source, _line = self.get_source_info()
        lines = [
            ".. rubric:: Used in the walkthroughs",
            "",
            f".. minigallery:: {' '.join(names)}",
            "",
        ]
        self.state_machine.insert_input(lines, source)
        return []


def _resolve(fullname: str) -> Any:
    """The object named ``fullname`` (``package.module.Class.attr``), or None."""
    parts = fullname.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _check_api_documented(app: Sphinx, exc: Exception | None) -> None:
    """Warn about public names without an entry in the API reference.

    Public: ``attnlens.__all__``, and the ``__all__`` of each module named in
    ``attnlens_api_modules`` (documented under the module's own name).
    """
    if exc is not None or app.builder.format != "html":
        return
    documented = set(app.env.get_domain("py").objects)  # type: ignore[attr-defined]
    documented_ids = {id(obj) for obj in map(_resolve, documented) if obj is not None}
    missing = []
    for module_name in ["attnlens", *app.config.attnlens_api_modules]:
        module = importlib.import_module(module_name)
        public = getattr(module, "__all__", None)
        if public is None:
            public = [n for n in vars(module) if not n.startswith("_")]
        for name in public:
            if name.startswith("__"):
                continue
            obj = getattr(module, name, None)
            if f"{module_name}.{name}" in documented:
                continue
            # a function or class may be documented under another public path
            if callable(obj) and id(obj) in documented_ids:
                continue
            missing.append(f"{module_name}.{name}")
    if missing:
        logger.warning(
            "public name(s) without an entry in docs/api.rst: %s",
            ", ".join(sorted(missing)),
            type="attnlens",
            subtype="api",
        )


# --------------------------------------------------------------------------------------------
# gallery thumbnails in a translated build
# --------------------------------------------------------------------------------------------
_THUMB_RE = re.compile(r"sphx_glr_(?P<stem>.+)_thumb\.\w+$")
_TITLE_RE = re.compile(r'(<div class="sphx-glr-thumbnail-title">)(.*?)(</div>)', re.DOTALL)
_TOOLTIP_RE = re.compile(r'(tooltip=")(.*?)(")', re.DOTALL)


_INTRO_CACHE: dict[tuple[int, str], str] = {}


def _intro_text(env: BuildEnvironment, docname: str) -> str:
    """The first paragraph of a (translated) example page, shortened as sphinx-gallery does.

    Cached per build: every API entry's mini-gallery asks again for the same pages, and
    unpickling an example's doctree each time made the Japanese build slower than the English
    one, which runs the examples.
    """
    key = (id(env), docname)
    if key not in _INTRO_CACHE:
        _INTRO_CACHE[key] = _intro_text_uncached(env, docname)
    return _INTRO_CACHE[key]


def _intro_text_uncached(env: BuildEnvironment, docname: str) -> str:
    doctree = env.get_doctree(docname)
    for para in doctree.findall(nodes.paragraph):
        if not isinstance(para.parent, nodes.section):
            continue  # e.g. the "download the full example code" note above the text
        text = " ".join(para.astext().split())
        if text:
            return text if len(text) <= 95 else text[:95] + "..."
    return ""


def _translate_thumbnails(app: Sphinx, doctree: nodes.document, _docname: str) -> None:
    """Replace the English title and tooltip of gallery thumbnails in a translated build.

    sphinx-gallery writes each thumbnail's title and tooltip as raw HTML, which gettext never
    sees. In a non-English build they are replaced by the title and the first paragraph of
    the example page in that language (both already translated from its catalog).
    """
    if (app.config.language or SOURCE_LANGUAGE) == SOURCE_LANGUAGE:
        return
    env = app.env
    opening: nodes.raw | None = None  # <div class="sphx-glr-thumbcontainer" tooltip="...">
    target: str | None = None  # the example page of the thumbnail being read
    for node in doctree.findall(lambda n: isinstance(n, (nodes.raw, nodes.image))):
        if isinstance(node, nodes.image):
            match = _THUMB_RE.search(node.get("uri", ""))
            if not match:
                continue
            # <gallery>/<sub>/images/thumb/sphx_glr_<stem>_thumb.png -> <gallery>/<sub>/<stem>
            parts = [p for p in PurePosixPath(node["uri"]).parts if p not in ("/", "..", ".")]
            target = PurePosixPath(*parts).parent.parent.parent.joinpath(match["stem"]).as_posix()
            if target not in env.titles:
                target = None
            elif opening is not None:
                intro = html.escape(_intro_text(env, target), quote=True)
                text = _TOOLTIP_RE.sub(
                    lambda m, new=intro: m[1] + new + m[3], opening.astext(), count=1
                )
                opening.children = [nodes.Text(text)]
            opening = None
            continue
        text = node.astext()
        if "sphx-glr-thumbcontainer" in text:
            opening = node
        elif "sphx-glr-thumbnail-title" in text and target is not None:
            title = html.escape(env.titles[target].astext(), quote=False)
            text = _TITLE_RE.sub(lambda m, new=title: m[1] + new + m[3], text, count=1)
            node.children = [nodes.Text(text)]
            target = None


# --------------------------------------------------------------------------------------------
# exercises: solutions folded away
# --------------------------------------------------------------------------------------------
#: The label of a folded solution, per language (no catalog needed for one word).
SOLUTION_LABELS = {"en": "Solution", "ja": "解答"}


class Solution(SphinxDirective):
    """``.. attnlens-solution::`` opens a folded ``<details>``; ``.. attnlens-solution-end::``
    closes it.

    In a walkthrough the two directives sit in the text cells around the code cell of a
    solution, so the code and its output are folded away on the page, and still run (and
    assert) when the site is built. Other builders than HTML get nothing.
    """

    has_content = False

    def run(self) -> list[nodes.Node]:
        language = self.config.language or SOURCE_LANGUAGE
        label = SOLUTION_LABELS.get(language, SOLUTION_LABELS[SOURCE_LANGUAGE])
        opening = f'<details class="attnlens-solution"><summary>{html.escape(label)}</summary>'
        return [nodes.raw("", opening, format="html")]


class SolutionEnd(SphinxDirective):
    """``.. attnlens-solution-end::``: closes the ``<details>`` of ``attnlens-solution``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        return [nodes.raw("", "</details>", format="html")]


# --------------------------------------------------------------------------------------------
# interface text of a translated build that no catalog reaches
# --------------------------------------------------------------------------------------------
#: Per language: the theme's search placeholder (a theme option, not a gettext string), the
#: label sphinx-gallery puts before printed output (CSS ``content``, set in attnlens.css from
#: ``data-attnlens-out``), and the words of numpydoc's parameter type lines.
INTERFACE: dict[str, dict[str, str]] = {
    "ja": {"search_bar_text": "ドキュメントを検索…"},
}
TYPE_WORDS: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "ja": [
        (re.compile(r"\boptional\b"), "省略可"),
        (re.compile(r"\bdefault\b:?"), "既定値"),
        (re.compile(r"(?<=\s)or(?=\s)"), "または"),
    ],
}


def _interface_text(_app: Sphinx, config: Any) -> None:
    """Theme options that hold reader-facing text, in the language of the build."""
    texts = INTERFACE.get(config.language or SOURCE_LANGUAGE, {})
    if texts:
        config.html_theme_options = {**config.html_theme_options, **texts}


class TypeLinesInLanguage(SphinxTransform):
    """numpydoc's type lines (``float, optional``, ``int, default 0``) in the build's language.

    The type names stay (they are code); the English words around them (optional, default, or)
    are replaced in a translated build. The lines are not in any catalog
    (:class:`SignaturesAreNotProse`).
    """

    default_priority = 900

    def apply(self, **_kwargs: Any) -> None:
        rules = TYPE_WORDS.get(self.config.language or SOURCE_LANGUAGE)
        if not rules:
            return
        for classifier in self.document.findall(nodes.classifier):
            for text in list(classifier.findall(nodes.Text)):
                if isinstance(text.parent, (nodes.literal, addnodes.pending_xref)):
                    continue
                new = str(text)
                for pattern, replacement in rules:
                    new = pattern.sub(replacement, new)
                if new != str(text):
                    text.parent.replace(text, nodes.Text(new))


#: "Figure" in each language: the alt text of a gallery figure is "<Figure>: <section title>".
FIGURE_WORD = {"en": "Figure", "ja": "図"}


def _figure_alt_texts(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Meaningful, translated alt texts for sphinx-gallery's figures and thumbnails.

    sphinx-gallery writes the figure's title as alt text (raw LaTeX for a maths title) or the
    file name ("plot 01 self attention step by step"). Here every figure of an example page
    gets "Figure: <page title> - <section title>", and a thumbnail the title of its page, both
    already translated in a translated build.
    """
    language = app.config.language or SOURCE_LANGUAGE
    word = FIGURE_WORD.get(language, FIGURE_WORD[SOURCE_LANGUAGE])
    sep = "：" if language == "ja" else ": "
    page_title = app.env.titles[docname].astext() if docname in app.env.titles else ""
    for node in doctree.findall(nodes.Element):
        if "alt" not in node.attributes and not isinstance(node, nodes.image):
            continue
        uri = str(node.get("uri", ""))
        thumb = _THUMB_RE.search(uri)
        if thumb:
            parts = [p for p in PurePosixPath(uri).parts if p not in ("/", "..", ".")]
            target = PurePosixPath(*parts).parent.parent.parent.joinpath(thumb["stem"]).as_posix()
            if target in app.env.titles:
                node["alt"] = app.env.titles[target].astext()
            continue
        if "sphx_glr_" not in uri:
            continue
        section = node.parent
        while section is not None and not isinstance(section, nodes.section):
            section = section.parent
        heading = ""
        if section is not None and section.children and isinstance(section[0], nodes.title):
            heading = section[0].astext()
        label = page_title if not heading or heading == page_title else f"{page_title} - {heading}"
        alt = f"{word}{sep}{label}"
        # sphinx-gallery's image-sg node writes its alt attribute unescaped; docutils' image does
        # the escaping itself
        node["alt"] = alt if isinstance(node, nodes.image) else html.escape(alt, quote=True)


#: Words inside HTML that an example printed (the same output serves both languages): the head
#: view's layer menu is labelled for screen readers in the page's language.
RAW_HTML_WORDS: dict[str, list[tuple[str, str]]] = {
    "ja": [
        (
            'class="attnlens-layer-select" aria-label="layer"',
            'class="attnlens-layer-select" aria-label="層"',
        )
    ],
}


def _translate_raw_html(app: Sphinx, doctree: nodes.document, _docname: str) -> None:
    rules = RAW_HTML_WORDS.get(app.config.language or SOURCE_LANGUAGE)
    if not rules:
        return
    for node in doctree.findall(nodes.raw):
        text = node.astext()
        new = text
        for old, replacement in rules:
            new = new.replace(old, replacement)
        if new != text:
            node.children = [nodes.Text(new)]


GLOSSARY_DOCNAME = "concepts/glossary"


#: Where a Japanese term of the glossary may wrap: between the words of a compound
#: (スケール化 / ドット積 / アテンション). Elsewhere the CSS keeps its characters together.
_JA_WRAP = re.compile(
    r"(?<=.)(?=アテンション|ドット|マスク|ロールアウト|フロー|エンコーディング|キャッシュ|ネットワーク"
    r"|スコア|マップ|ビュー|ストリーム|テンソル|パス|カーネル|モード|ノルム|トークン|次元|（)"
)


def _mark_glossary_tables(_app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Class ``attnlens-glossary`` on the glossary's tables (CSS: terms never wrap mid-word)."""
    if docname != GLOSSARY_DOCNAME:
        return
    for table in doctree.findall(nodes.table):
        table["classes"].append("attnlens-glossary")


_TABLE_RE = re.compile(r'<table class="[^"]*attnlens-glossary.*?</table>', re.DOTALL)
_SECOND_CELL_RE = re.compile(r"(<tr[^>]*>\s*<td[^>]*>.*?</td>\s*<td[^>]*>)(.*?)(</td>)", re.DOTALL)


def _glossary_word_breaks(
    _app: Sphinx,
    pagename: str,
    _templatename: str,
    context: dict[str, Any],
    _doctree: nodes.document | None,
) -> None:
    """A ``<wbr>`` between the words of each Japanese compound of the glossary's tables.

    Done on the written HTML, after the search index has read the page (the index must see
    スケール化ドット積アテンション whole).
    """
    if pagename != GLOSSARY_DOCNAME or "body" not in context:
        return

    def cell(m: re.Match[str]) -> str:
        parts = re.split(r"(<[^>]+>)", m[2])
        text = "".join(p if p.startswith("<") else "<wbr>".join(_JA_WRAP.split(p)) for p in parts)
        return m[1] + text + m[3]

    context["body"] = _TABLE_RE.sub(lambda t: _SECOND_CELL_RE.sub(cell, t[0]), context["body"])


# --------------------------------------------------------------------------------------------
def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("attnlens_require_translations", True, "env", types=frozenset({bool}))
    app.add_config_value("attnlens_translate_api", True, "env", types=frozenset({bool}))
    app.add_config_value("attnlens_api_modules", [], "env", types=frozenset({list, tuple}))
    app.add_transform(MathIsNotProse)
    app.add_transform(SignaturesAreNotProse)
    app.add_transform(UntranslatedMessages)
    app.add_directive("attnlens-examples", ExamplesUsing)
    app.add_directive("attnlens-solution", Solution)
    app.add_directive("attnlens-solution-end", SolutionEnd)
    app.connect("html-page-context", _add_language_context)
    app.connect("html-page-context", _glossary_word_breaks)
    # Reported at the end of every build, also an incremental one that read no page again.
    app.connect("build-finished", _check_api_documented)
    app.connect("doctree-read", _collect_untranslated, priority=900)
    app.connect("env-purge-doc", _purge_untranslated)
    app.connect("env-merge-info", _merge_untranslated)
    app.connect("build-finished", _report_untranslated)
    app.connect("doctree-resolved", _translate_thumbnails)
    app.connect("doctree-resolved", _figure_alt_texts)
    app.connect("doctree-resolved", _mark_glossary_tables)
    app.connect("doctree-resolved", _translate_raw_html)
    app.connect("config-inited", _interface_text)
    app.add_transform(TypeLinesInLanguage)
    # env_version: bump when what the environment stores changes (forces a full re-read).
    return {
        "version": "1",
        "env_version": 2,
        "parallel_read_safe": True,
        "parallel_write_safe": True,
    }
