"""Sphinx configuration of the attnlens site (English source, Japanese from gettext catalogs).

Build it with ``python docs/build.py html`` (``nox -s docs``): English goes to
``docs/_build/html/en/`` and Japanese (``-D language=ja``) to ``docs/_build/html/ja/``.
Everything the pages load is served from the build itself: no CDN, no web font, no analytics.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).parent.resolve()
sys.path.insert(0, str(HERE / "_ext"))

import attnlens

# -- Project -----------------------------------------------------------------------------------
project = "attnlens"
author = "attnlens developers"
copyright = "2026, attnlens developers"
release = attnlens.__version__
version = release

language = "en"  # the source language; the Japanese build passes -D language=ja

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_nb",
    "sphinx_copybutton",
    # MathJax 3 from the ``sphinx-mathjax-offline`` package, copied into _static/mathjax:
    # no CDN at read time (the module name really has hyphens).
    "sphinx-mathjax-offline",
    "attnlens_docs",  # docs/_ext: language switcher, untranslated-message check
    "attnlens_search",  # docs/_ext: Japanese search by CJK bigrams and whole identifiers
]

root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "**.ipynb_checkpoints",
    "jupyter_execute",
    # sphinx-gallery writes a notebook next to each generated page; they are downloads, not
    # pages (myst-nb would otherwise read them as a second copy of every walkthrough).
    "auto_examples/*.ipynb",
    "auto_examples/**/*.ipynb",
    "locales",
    "gen_modules",
]
suppress_warnings: list[str] = []  # keep every warning: -W makes each of them fatal
nitpicky = False  # numpydoc type names such as "Tensor" have no target offline (no intersphinx)
default_role = "py:obj"  # `name` in a docstring links to that object, as in numpydoc's docs

# -- Internationalisation ----------------------------------------------------------------------
# pages; then strings the theme leaves untranslated (and _theme_locale/ja/LC_MESSAGES/sphinx.js,
# Sphinx's search strings for the browser, which Sphinx looks up from the working directory:
# hence an absolute path)
locale_dirs = ["locales/", str(HERE / "_theme_locale")]
gettext_compact = False  # one catalog per document: docs/locales/ja/LC_MESSAGES/<docname>.po
gettext_location = False  # no "#: file:line" comments: catalogs diff only when text changes
gettext_uuid = False
gettext_last_translator = "attnlens developers"
gettext_language_team = "attnlens developers"
# Translate the API docstrings too (docs/locales/ja/LC_MESSAGES/api.po). With False, the
# Japanese API reference keeps the English docstrings and api.po holds only the page's own
# headings and text (docs/_ext/attnlens_docs.py, SignaturesAreNotProse).
attnlens_translate_api = True

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "attnlens"
html_static_path = ["_static"]
html_css_files = ["attnlens.css"]
html_js_files = ["attnlens.js"]
html_last_updated_fmt = None
# Japanese search: the index and the query are split the same way (CJK bigrams, whole
# identifiers such as need_weights); docs/_ext/attnlens_search.py. English ignores the option.
html_search_options = {"type": "attnlens_search.BigramSplitter"}
html_show_sourcelink = True
html_copy_source = True
html_theme_options = {
    "navbar_end": ["language-switcher", "theme-switcher"],
    "navbar_persistent": ["search-button-field"],
    "icon_links": [],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "use_edit_page_button": False,
    "show_version_warning_banner": False,
    "analytics": {},
}
html_context = {"default_mode": "auto"}

# -- autodoc / numpydoc ----------------------------------------------------------------------
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters section documents the types
autodoc_preserve_defaults = True
# The build warns (fails) if a name of attnlens.__all__, or of these modules' __all__, has no
# entry in docs/api.rst (docs/_ext/attnlens_docs.py).
attnlens_api_modules = [
    "attnlens.fonts",
    "attnlens.datasets",
    "attnlens.classifier",
    "attnlens.pretrained",
    "attnlens.corpus",
    "attnlens.positions",
]
numpydoc_show_class_members = False  # members are listed explicitly in api.rst
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = True
# numpydoc's default aliases point at intersphinx targets (python:, numpy:), which do not
# exist offline and would warn; name local or plain targets instead. Public attnlens names
# link to their API entries.
_PUBLIC = [
    "scaled_dot_product_attention", "InProjection", "split_in_proj", "split_heads",
    "merge_heads", "multi_head_attention_forward", "MultiheadAttention",
    "PaperMultiheadAttention", "capture_attention", "AttentionCapture", "attention_rollout",
    "plot_attention", "plot_heads", "plot_layers", "head_view_html", "HeadView",
    "load_minilm", "BertEncoder", "sdpa_weights",
    "model_view_html", "ModelView", "neuron_view_html", "NeuronView",
]  # fmt: skip
numpydoc_xref_aliases = {
    **{name: f"attnlens.{name}" for name in _PUBLIC},
    "Tensor": "torch.Tensor",
    "Module": "torch.nn.Module",
    "Figure": "matplotlib.figure.Figure",
    "Axes": "matplotlib.axes.Axes",
    # Python and NumPy names: plain targets (numpydoc's defaults say "python:float" etc.)
    **{name: name for name in ("None", "True", "False", "list", "tuple", "str", "dict")},
    **{name: name for name in ("float", "int", "bool", "callable")},
    "boolean": "bool",
    "string": "str",
    "sequence": "collections.abc.Sequence",
    "iterable": "collections.abc.Iterable",
    "generator": "collections.abc.Generator",
    "contextmanager": "contextlib.contextmanager",
    "namedtuple": "collections.namedtuple",
    "array_like": "numpy.typing.ArrayLike",
    "array-like": "numpy.typing.ArrayLike",
    "scalar": "numpy.generic",
    "np.inf": "numpy.inf",
    "np.nan": "numpy.nan",
    "numpy": "numpy",
}
numpydoc_xref_ignore = {"of", "or", "optional", "default", "shape", "length", "each"}
numpydoc_validation_checks = {
    "GL08",  # the object has no docstring
    "PR01",  # a parameter is not documented
    "PR02",  # a documented parameter does not exist
}
# A class whose docstring documents Attributes and no Parameters (a NamedTuple, a dataclass,
# a result object made by the library such as AttentionCapture) is not asked to document its
# constructor's parameters one by one.
numpydoc_validation_overrides = {
    "PR01": [r"\A(?![\s\S]*\n\s*Parameters\n\s*-{3,})[\s\S]*\n\s*Attributes\n\s*-{3,}"],
}

# -- sphinx-gallery (the walkthroughs: examples/plot_*.py) --------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "within_subsection_order": "FileNameSortKey",
    # Fully qualified name (not a function object) so that Sphinx can cache the config.
    "reset_modules": ("attnlens_docs.reset_example_state",),
    "reset_modules_order": "before",
    "capture_repr": ("_repr_html_", "__repr__"),
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "doc_module": ("attnlens",),
    "backreferences_dir": "gen_modules/backreferences",
    "show_memory": False,
    "download_all_examples": True,
    "run_stale_examples": False,
    # A failing example fails the build at once (the md5 cache keeps it from being skipped).
    "abort_on_example_error": True,
    "remove_config_comments": True,
    # The "Total running time" line is a translatable message whose number changes on every
    # build (a stale Japanese catalog each time): never print it. The examples' speed is
    # tested elsewhere.
    "min_reported_time": float("inf"),
    "write_computation_times": False,
    # A downloaded notebook starts by installing what it needs (attnlens brings torch, numpy and
    # matplotlib); README.md says how to install from a clone instead.
    "first_notebook_cell": "%pip install attnlens\n%matplotlib inline",
    "promote_jupyter_magic": True,
    "show_signature": True,
    "line_numbers": False,
    "nested_sections": True,
}

# -- myst-nb (the concept pages: docs/concepts/*.md) ------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# Notebooks run once and are cached (keyed by their code cells), so the Japanese build reuses
# the English build's outputs. build.py points both builds at the same cache directory.
nb_execution_mode = "cache"
nb_execution_cache_path = os.environ.get(
    "ATTNLENS_NB_CACHE", str(HERE / "_build" / ".jupyter_cache")
)
nb_execution_raise_on_error = True
nb_execution_timeout = 120
nb_execution_show_tb = True
nb_merge_streams = True

# -- copybutton --------------------------------------------------------------------------------
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_exclude = ".linenos, .gp, .go"
