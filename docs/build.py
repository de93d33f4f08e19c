"""Build driver of the attnlens site: English and Japanese from one source.

Usage (from the repository root; ``nox -s docs`` / ``nox -s i18n`` call the first two)::

    python docs/build.py html [OPTIONS] [SPHINX-BUILD ARGS...]
    python docs/build.py gettext [SPHINX-BUILD ARGS...]
    python docs/build.py check-i18n
    python docs/build.py clean

``html``
    Builds English into ``docs/_build/html/en/`` and Japanese (``-D language=ja``) into
    ``docs/_build/html/ja/`` with ``-W --keep-going`` (any warning, any failing example or
    notebook cell fails the build), writes ``docs/_build/html/index.html`` leading to both,
    checks that no page loads anything from another host, runs ``check-i18n`` (its message
    extraction runs beside the Japanese build, in a second process), and prints where to
    open the site. The examples and the concept pages execute once: the English
    build runs them, the Japanese build reuses sphinx-gallery's outputs in
    ``docs/auto_examples`` (re-run only when an example's MD5 changes) and myst-nb's
    execution cache in ``docs/_build/.jupyter_cache``. The Japanese build itself warns (so
    fails) on every message of a page that has no translation in its catalog
    (``docs/_ext/attnlens_docs.py``): no English sentence reaches a Japanese page.
    Options (everything else goes to sphinx-build):
      --lang en|ja         build one language only (no root page, no i18n check)
      --allow-untranslated do not fail on untranslated, fuzzy or stale Japanese messages
                           (for local work; CI never passes it)
      --no-i18n-check      skip the catalog check after the build
``gettext``
    Extracts the messages into ``docs/_build/gettext/*.pot`` (in a scratch copy of the
    sources, with ``-D plot_gallery=0``: no example runs, no computation time is recorded),
    updates ``docs/locales/ja/LC_MESSAGES/`` with sphinx-intl (one ``.po`` per page, no
    location lines, no obsolete entries), fills in sphinx-gallery's fixed sentences ("Download
    Jupyter notebook: ..."), removes catalogs of pages that no longer exist, and reports per
    file how many messages are untranslated or fuzzy. A changed sentence comes back fuzzy,
    with its old translation as a starting point.
``check-i18n``
    Extracts the messages afresh into a temporary directory and compares them with the
    committed catalogs. Fails when any message is untranslated or fuzzy, or the catalogs are
    stale (a message missing from its catalog, a catalog entry no page uses, a catalog of no
    page): "run nox -s i18n".
``clean``
    Removes the build outputs (``docs/_build``, ``docs/auto_examples``, ...).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
BUILD = DOCS / "_build"
HTML = BUILD / "html"
DOCTREES = BUILD / "doctrees"
POT_DIR = BUILD / "gettext"
NB_CACHE = BUILD / ".jupyter_cache"
LOCALES = DOCS / "locales"
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "ja")
TRANSLATED = ("ja",)
LANGUAGE_NAMES = {"en": "English", "ja": "日本語"}
GENERATED = ("_build", "auto_examples", "gen_modules", "jupyter_execute", ".jupyter_cache")

SPHINX_FLAGS = ["-W", "--keep-going"]  # any warning fails the build (after reporting all)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _say(text: str) -> None:
    print(f"[docs] {text}", flush=True)


def _env() -> dict[str, str]:
    """Environment of every sphinx-build: this checkout's ``src`` first on the path.

    So the examples, notebooks and autodoc see the library of the tree being built, also in a
    copy of the repository; with ``pip install -e .`` it is the same code anyway.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["ATTNLENS_NB_CACHE"] = str(NB_CACHE)
    env.setdefault("MPLBACKEND", "agg")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet ipykernel under -X frozen
    return env


def _sphinx(args: list[str], *, cwd: Path = ROOT, output: list[str] | None = None) -> int:
    """Run sphinx-build; with ``output``, collect what it prints there instead of printing."""
    cmd = [sys.executable, "-m", "sphinx", *args]
    line = "$ " + " ".join(str(a) for a in cmd)
    if output is None:
        _say(line)
        return subprocess.run(cmd, cwd=cwd, env=_env(), check=False).returncode
    done = subprocess.run(
        cmd, cwd=cwd, env=_env(), check=False, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output += [f"[docs] {line}\n", done.stdout]
    return done.returncode


def _elapsed(start: float) -> str:
    seconds = time.perf_counter() - start
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def _pop_flag(args: list[str], name: str) -> bool:
    if name in args:
        args.remove(name)
        return True
    return False


def _take_option(args: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` or ``name=VALUE`` from ``args`` and return VALUE."""
    for i, arg in enumerate(args):
        if arg == name:
            if i + 1 >= len(args):
                sys.exit(f"docs/build.py: {name} needs a value")
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


# --------------------------------------------------------------------------------------------
# html
# --------------------------------------------------------------------------------------------
ROOT_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>attnlens: documentation / ドキュメント</title>
<script>
  // Go to the reader's language: the one chosen last on this site, else the browser's.
  // Without JavaScript (or with ?choose in the address) the two links below are shown.
  (function () {{
    if (window.location.search.indexOf("choose") !== -1) return;
    var lang = null;
    try {{ lang = window.localStorage.getItem("attnlens-lang"); }} catch (e) {{}}
    if ({known}.indexOf(lang) === -1) {{
      lang = "{default}";
      var prefs = navigator.languages || [navigator.language || ""];
      for (var i = 0; i < prefs.length; i++) {{
        var code = String(prefs[i]).toLowerCase().split("-")[0];
        if ({known}.indexOf(code) !== -1) {{ lang = code; break; }}
      }}
    }}
    window.location.replace(lang + "/index.html");
  }})();
</script>
<style>
  body {{ font-family: system-ui, -apple-system, "Hiragino Sans", "Noto Sans CJK JP",
         "Yu Gothic UI", Meiryo, sans-serif; max-width: 36rem; margin: 4rem auto;
         padding: 0 1rem; line-height: 1.6; }}
  h1 {{ font-size: 1.6rem; }}
  ul {{ list-style: none; padding: 0; }}
  li {{ margin: 0.75rem 0; }}
  a {{ display: block; padding: 0.8rem 1rem; border: 1px solid #8884; border-radius: 0.4rem;
       text-decoration: none; font-size: 1.15rem; }}
  a:hover {{ border-color: currentColor; }}
  small {{ display: block; opacity: 0.75; font-size: 0.85rem; }}
</style>
</head>
<body>
<h1>attnlens</h1>
<p>Attention in PyTorch, opened up. / PyTorch のアテンション（attention）を内側から理解する。</p>
<ul class="attnlens-languages">
{links}
</ul>
</body>
</html>
"""

ROOT_LINK = (
    '<li><a href="{code}/index.html" hreflang="{code}" lang="{code}" data-lang="{code}">'
    "{name}<small>{code}/index.html</small></a></li>"
)


def _write_root_index(languages: tuple[str, ...]) -> Path:
    links = "\n".join(
        ROOT_LINK.format(code=code, name=html.escape(LANGUAGE_NAMES[code])) for code in languages
    )
    known = "[" + ", ".join(f'"{code}"' for code in languages) + "]"
    path = HTML / "index.html"
    path.write_text(
        ROOT_INDEX.format(links=links, known=known, default=SOURCE_LANGUAGE), encoding="utf-8"
    )
    (HTML / ".nojekyll").write_text("", encoding="utf-8")
    return path


# A page must not load anything from another host: scripts, styles, fonts, images, frames.
_LOADING_TAG = re.compile(
    r"<(script|link|img|iframe|source|video|audio|embed)\b[^>]*>", re.IGNORECASE | re.DOTALL
)
_URL_ATTR = re.compile(r"\b(src|href|srcset|data)\s*=\s*([\"'])(.*?)\2", re.IGNORECASE | re.DOTALL)
_EXTERNAL = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
_CSS_URL = re.compile(
    r"url\(\s*([\"']?)((https?:)?//[^)\"']+)\1\s*\)|@import\s+([\"'])((https?:)?//[^\"']+)\4",
    re.IGNORECASE,
)


def check_offline(roots: list[Path]) -> list[str]:
    """External resources that the built pages would load (``<a href>`` links are fine)."""
    problems = []
    for root in roots:
        for page in sorted(root.rglob("*.html")):
            text = page.read_text(encoding="utf-8", errors="replace")
            for tag in _LOADING_TAG.finditer(text):
                is_link = tag[1].lower() == "link"
                for attr in _URL_ATTR.finditer(tag[0]):
                    if attr[1].lower() not in ("src", "href", "srcset", "data"):
                        continue
                    if is_link and re.search(
                        r"rel\s*=\s*[\"']?(canonical|alternate)", tag[0], re.IGNORECASE
                    ):
                        continue  # not fetched by a browser
                    if _EXTERNAL.search(attr[3]):
                        rel = page.relative_to(HTML)
                        problems.append(f"{rel}: <{tag[1]} {attr[1]}={attr[3]!r}>")
        for css in sorted(root.rglob("*.css")):
            text = css.read_text(encoding="utf-8", errors="replace")
            for m in _CSS_URL.finditer(text):
                url = m[2] or m[5]
                problems.append(f"{css.relative_to(HTML)}: url({url})")
    return problems


def prune_stale_gallery() -> None:
    """Delete sphinx-gallery outputs of examples that no longer exist in ``examples/``.

    sphinx-gallery zips every ``.py`` it finds in ``docs/auto_examples`` for the "download all"
    links: a leftover copy of a removed or renamed example breaks the build.
    """
    gallery, examples = DOCS / "auto_examples", ROOT / "examples"
    if not gallery.is_dir():
        return
    for copy in sorted(gallery.rglob("*.py")):
        rel = copy.relative_to(gallery)
        if (examples / rel).exists():
            continue
        stem = copy.stem
        _say(f"removing the outputs of a removed example: auto_examples/{rel}")
        for path in copy.parent.glob(f"{stem}.*"):
            path.unlink()
        for path in (copy.parent / "images").glob(f"sphx_glr_{stem}_*"):
            if path.is_file():
                path.unlink()
        for path in (copy.parent / "images" / "thumb").glob(f"sphx_glr_{stem}_thumb.*"):
            path.unlink()


SPECIAL_PAGES = {"genindex", "search", "py-modindex"}
SOURCE_SUFFIXES = (".rst", ".md", ".ipynb")


def _source_docnames() -> set[str]:
    """Document names of the current sources (after sphinx-gallery wrote its pages)."""
    skip = {"_build", "_templates", "_static", "_ext", "locales", "gen_modules", "jupyter_execute"}
    names = set()
    for path in DOCS.rglob("*"):
        rel = path.relative_to(DOCS)
        if rel.parts[0] in skip or path.suffix not in SOURCE_SUFFIXES or not path.is_file():
            continue
        if path.suffix == ".ipynb" and rel.parts[0] == "auto_examples":
            continue  # downloads, not pages (conf.exclude_patterns)
        names.add(rel.with_suffix("").as_posix())
    return names


def prune_stale_pages(outdir: Path) -> None:
    """Delete built pages whose source is gone (Sphinx never deletes an output page)."""
    if not outdir.is_dir():
        return
    docnames = _source_docnames() | SPECIAL_PAGES
    for page in sorted(outdir.rglob("*.html")):
        rel = page.relative_to(outdir)
        if rel.parts[0].startswith("_"):
            continue  # _modules (viewcode), _static, _sources, ...
        if rel.with_suffix("").as_posix() not in docnames:
            _say(f"removing {page.relative_to(BUILD)}: its source no longer exists")
            page.unlink()


def cmd_html(args: list[str]) -> int:
    t0 = time.perf_counter()
    prune_stale_gallery()
    only = _take_option(args, "--lang")
    allow_untranslated = _pop_flag(args, "--allow-untranslated")
    no_check = _pop_flag(args, "--no-i18n-check") or only is not None
    languages = LANGUAGES if only is None else tuple(only.split(","))
    for lang in languages:
        if lang not in LANGUAGES:
            sys.exit(f"docs/build.py: unknown language {lang!r} (known: {', '.join(LANGUAGES)})")
    # English first: it runs the examples and notebooks; the other builds reuse the outputs.
    languages = tuple(sorted(languages, key=LANGUAGES.index))

    timings: list[tuple[str, str]] = []
    failed: list[str] = []
    built: list[str] = []
    extraction: Extraction | None = None
    for lang in languages:
        if failed:
            _say(f"skipping the {lang!r} build: the {failed[0]!r} build failed")
            failed.append(f"{lang} (skipped)")
            continue
        if lang != SOURCE_LANGUAGE and not no_check and extraction is None:
            extraction = Extraction()  # check-i18n's extraction, beside the translated builds
        t = time.perf_counter()
        opts = ["-b", "html", *SPHINX_FLAGS, "-d", str(DOCTREES / lang), "-D", f"language={lang}"]
        if allow_untranslated and lang != SOURCE_LANGUAGE:
            opts += ["-D", "attnlens_require_translations=0"]
        _say(f"building {LANGUAGE_NAMES[lang]} ({lang}) -> {HTML / lang}")
        code = _sphinx([*opts, *args, str(DOCS), str(HTML / lang)])
        timings.append((f"html {lang}", _elapsed(t)))
        prune_stale_pages(HTML / lang)
        if code != 0:
            failed.append(lang)
            _say(f"the {lang!r} build FAILED (sphinx-build exit status {code})")
        else:
            built.append(lang)
    index = None
    if only is None and not failed:
        index = _write_root_index(LANGUAGES)

    offline = check_offline([HTML / lang for lang in built])
    if offline:
        _say("pages load resources from other hosts (the site must work offline):")
        for line in offline[:40]:
            print("    " + line)
        failed.append("offline check")

    if not no_check and not failed:
        t = time.perf_counter()
        status = check_i18n(fail_untranslated=not allow_untranslated, extraction=extraction)
        timings.append(("check-i18n", _elapsed(t) + (" (after the builds)" if extraction else "")))
        if status != 0:
            failed.append("check-i18n")
    elif extraction is not None:
        extraction.close()

    print()
    for what, took in timings:
        _say(f"{what:<12} {took}")
    _say(f"{'total':<12} {_elapsed(t0)}")
    if index is not None:
        _say(f"open {index.as_uri()}")
        for lang in built:
            _say(f"  or {(HTML / lang / 'index.html').as_uri()}")
    elif built:
        for lang in built:
            _say(f"open {(HTML / lang / 'index.html').as_uri()}")
    if failed:
        _say("FAILED: " + ", ".join(failed))
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# gettext / check-i18n
# --------------------------------------------------------------------------------------------
def _scratch_copy(dest: Path) -> Path:
    """Copy the sources (docs/ and examples/) without any build output; return docs/ there."""
    ignore = shutil.ignore_patterns(*GENERATED, "locales", "__pycache__", "*.mo")
    shutil.copytree(DOCS, dest / "docs", ignore=ignore)
    if (ROOT / "examples").is_dir():
        shutil.copytree(ROOT / "examples", dest / "examples", ignore=ignore)
    return dest / "docs"


def extract_messages(
    pot_dir: Path, extra: list[str] | None = None, output: list[str] | None = None
) -> int:
    """Run the gettext builder on a pristine copy of the sources, writing ``pot_dir``.

    With ``output``, what sphinx-build prints is collected there (see :class:`Extraction`).
    """
    with tempfile.TemporaryDirectory(prefix="attnlens-gettext-") as tmp:
        src = _scratch_copy(Path(tmp))
        if pot_dir.exists():
            shutil.rmtree(pot_dir)
        opts = [
            "-b", "gettext", *SPHINX_FLAGS, "-q",
            "-d", str(Path(tmp) / "doctrees"),
            "-D", "plot_gallery=0",  # sphinx-gallery: write the pages, run no example
            "-D", "nb_execution_mode=off",  # myst-nb: outputs are never translated
        ]  # fmt: skip
        code = _sphinx([*opts, *(extra or []), str(src), str(pot_dir)], output=output)
    # Templates have no translatable string of ours: an empty sphinx.pot is noise.
    sphinx_pot = pot_dir / "sphinx.pot"
    if sphinx_pot.exists() and not _read_catalog(sphinx_pot).messages:
        sphinx_pot.unlink()
    return code


@dataclass
class Catalog:
    messages: dict[str, tuple[str, bool]] = field(default_factory=dict)  # id -> (str, fuzzy)
    obsolete: int = 0


def _read_catalog(path: Path) -> Catalog:
    from babel.messages.pofile import read_po

    with path.open("rb") as f:
        cat = read_po(f)
    result = Catalog(obsolete=len(cat.obsolete))
    for msg in cat:
        if not msg.id:
            continue  # the header
        msgid = msg.id if isinstance(msg.id, str) else msg.id[0]
        string = msg.string if isinstance(msg.string, str) else "".join(msg.string or ())
        result.messages[msgid] = (string or "", bool(msg.fuzzy))
    return result


def _catalogs(directory: Path, suffix: str) -> dict[str, Path]:
    return {
        p.relative_to(directory).with_suffix("").as_posix(): p
        for p in sorted(directory.rglob(f"*{suffix}"))
    }


@dataclass
class Report:
    domain: str
    total: int = 0
    untranslated: list[str] = field(default_factory=list)
    fuzzy: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the page, not in the catalog
    unused: list[str] = field(default_factory=list)  # in the catalog, not in the page
    note: str = ""


def compare_catalogs(pot_dir: Path, language: str) -> list[Report]:
    pots = _catalogs(pot_dir, ".pot")
    pos = _catalogs(LOCALES / language / "LC_MESSAGES", ".po")
    reports = []
    for domain in sorted(set(pots) | set(pos)):
        report = Report(domain)
        reports.append(report)
        if domain not in pots:
            report.note = "catalog of a page that no longer exists"
            continue
        template = _read_catalog(pots[domain])
        report.total = len(template.messages)
        if domain not in pos:
            report.note = "no catalog"
            report.missing = list(template.messages)
            continue
        po = _read_catalog(pos[domain])
        for msgid in template.messages:
            if msgid not in po.messages:
                report.missing.append(msgid)
                continue
            string, fuzzy = po.messages[msgid]
            if fuzzy:
                report.fuzzy.append(msgid)
            elif not string.strip():
                report.untranslated.append(msgid)
        report.unused = [m for m in po.messages if m not in template.messages]
        if po.obsolete:
            report.unused += [f"({po.obsolete} obsolete #~ entries)"]
    return reports


def _print_table(reports: list[Report], language: str) -> None:
    rel = (LOCALES / language / "LC_MESSAGES").relative_to(ROOT)
    print(f"\n  {rel}/")
    print(f"  {'catalog':<52} {'total':>6} {'untransl.':>9} {'fuzzy':>6} {'stale':>6}")
    for r in reports:
        stale = len(r.missing) + len(r.unused)
        flag = "" if not (r.untranslated or r.fuzzy or stale or r.note) else "  <--"
        note = f"  ({r.note})" if r.note else ""
        print(
            f"  {r.domain + '.po':<52} {r.total:>6} {len(r.untranslated):>9} {len(r.fuzzy):>6}"
            f" {stale:>6}{flag}{note}"
        )
    total = sum(r.total for r in reports)
    untranslated = sum(len(r.untranslated) + len(r.missing) for r in reports)
    fuzzy = sum(len(r.fuzzy) for r in reports)
    done = total - untranslated - fuzzy
    pct = 100.0 * done / total if total else 100.0
    print(f"  {'all':<52} {total:>6} {untranslated:>9} {fuzzy:>6}   {pct:.1f}% translated\n")


class Extraction:
    """check-i18n's fresh extraction of the messages, run in a thread beside other work.

    It reads only the sources (``plot_gallery=0``, no notebook runs), in its own sphinx-build
    process; ``html`` starts it when the translated builds begin, so that on two cores it
    costs hardly any wall time (a translated build is one busy Python process). Its output is
    collected and printed by :meth:`wait`, not interleaved with the build's.
    """

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="attnlens-pot-")
        self.pot_dir = Path(self._tmp.name) / "gettext"
        self._output: list[str] = []
        self._code = 1
        self._thread = threading.Thread(target=self._run, name="extract-messages", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._code = extract_messages(self.pot_dir, output=self._output)

    def wait(self) -> int:
        """Wait for the extraction; print its output; return sphinx-build's exit status."""
        self._thread.join()
        print("".join(self._output), end="")
        return self._code

    def close(self) -> None:
        self._thread.join()
        self._tmp.cleanup()


def check_i18n(*, fail_untranslated: bool = True, extraction: Extraction | None = None) -> int:
    """Fresh extraction compared with the committed catalogs; non-zero on any problem.

    ``extraction`` is one already started (by ``html``); without it, one is run now.
    """
    _say("check-i18n: extracting messages afresh (no example runs)")
    extraction = extraction or Extraction()
    try:
        return _compare_with_extraction(extraction, fail_untranslated=fail_untranslated)
    finally:
        extraction.close()


def _compare_with_extraction(extraction: Extraction, *, fail_untranslated: bool) -> int:
    if extraction.wait() != 0:
        _say("check-i18n FAILED: the gettext build failed")
        return 1
    pot_dir = extraction.pot_dir
    status = 0
    for language in TRANSLATED:
        reports = compare_catalogs(pot_dir, language)
        _print_table(reports, language)
        stale = [r for r in reports if r.missing or r.unused or r.note]
        incomplete = [r for r in reports if r.untranslated or r.fuzzy]
        for r in stale:
            what = r.note or (
                f"{len(r.missing)} message(s) of the page missing from the catalog, "
                f"{len(r.unused)} catalog entr(y/ies) no longer on the page"
            )
            _say(f"stale: {language}/LC_MESSAGES/{r.domain}.po: {what}")
            for m in (r.missing + r.unused)[:5]:
                print(f"      {m[:100]!r}")
        for r in incomplete:
            _say(
                f"incomplete: {language}/LC_MESSAGES/{r.domain}.po: "
                f"{len(r.untranslated)} untranslated, {len(r.fuzzy)} fuzzy"
            )
            for m in (r.untranslated + r.fuzzy)[:5]:
                print(f"      {m[:100]!r}")
        if stale and fail_untranslated:
            _say(
                f"check-i18n FAILED: the {language!r} catalogs are stale; run `nox -s i18n` "
                "(python docs/build.py gettext), translate, and commit docs/locales/"
            )
            status = 1
        elif stale:
            _say("check-i18n: stale catalogs allowed (--allow-untranslated); run nox -s i18n")
        if incomplete:
            if fail_untranslated:
                _say(
                    f"check-i18n FAILED: the {language!r} catalogs must be 100% translated "
                    "with no fuzzy entry (translate the msgstr, delete the '#, fuzzy' line)"
                )
                status = 1
            else:
                _say("check-i18n: untranslated/fuzzy messages allowed (--allow-untranslated)")
        if not stale and not incomplete:
            _say(f"check-i18n: {language!r} catalogs up to date and complete")
    return status


# sphinx-gallery's fixed sentences, the same on every example page: filled in by `gettext`
# (only where the entry is still empty), so that translators need not repeat them per page.
BOILERPLATE: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "ja": [
        (
            re.compile(
                r"^:ref:`Go to the end <(?P<ref>[^>]+)>` to download the full example code\.$"
            ),
            r":ref:`ページの末尾 <\g<ref>>` から、この例のコード一式をダウンロードできます。",
        ),
        (
            re.compile(r"^:download:`Download Jupyter notebook: (?P<f>\S+) <(?P<t>[^>]+)>`$"),
            r":download:`Jupyter ノートブックをダウンロード: \g<f> <\g<t>>`",
        ),
        (
            re.compile(r"^:download:`Download Python source code: (?P<f>\S+) <(?P<t>[^>]+)>`$"),
            r":download:`Python ソースコードをダウンロード: \g<f> <\g<t>>`",
        ),
        (
            re.compile(r"^:download:`Download zipped: (?P<f>\S+) <(?P<t>[^>]+)>`$"),
            r":download:`zip ファイルでダウンロード: \g<f> <\g<t>>`",
        ),
        (
            re.compile(
                r"^:download:`Download all examples in Python source code: (?P<f>\S+) "
                r"<(?P<t>[^>]+)>`$"
            ),
            r":download:`すべての例を Python ソースコードでダウンロード: \g<f> <\g<t>>`",
        ),
        (
            re.compile(
                r"^:download:`Download all examples in Jupyter notebooks: (?P<f>\S+) "
                r"<(?P<t>[^>]+)>`$"
            ),
            r":download:`すべての例を Jupyter ノートブックでダウンロード: \g<f> <\g<t>>`",
        ),
        (
            re.compile(r"^`Gallery generated by Sphinx-Gallery <(?P<u>[^>]+)>`_$"),
            r"`Sphinx-Gallery で生成したギャラリー <\g<u>>`_",
        ),
    ],
}
PO_WIDTH = 88


def fill_boilerplate(language: str) -> int:
    """Translate sphinx-gallery's fixed sentences in empty entries; return how many."""
    from sphinx_intl import catalog as c

    rules = BOILERPLATE.get(language, [])
    filled = 0
    for po_path in _catalogs(LOCALES / language / "LC_MESSAGES", ".po").values():
        cat = c.load_po(str(po_path))
        changed = 0
        for msg in cat:
            if not msg.id or msg.string or msg.fuzzy or not isinstance(msg.id, str):
                continue
            for pattern, replacement in rules:
                if pattern.match(msg.id):
                    msg.string = pattern.sub(replacement, msg.id)
                    changed += 1
                    break
        if changed:
            c.dump_po(str(po_path), cat, width=PO_WIDTH, ignore_obsolete=True)
            filled += changed
    return filled


def cmd_gettext(args: list[str]) -> int:
    t0 = time.perf_counter()
    _say(f"extracting messages -> {POT_DIR}")
    if extract_messages(POT_DIR, args) != 0:
        _say("FAILED: the gettext build failed")
        return 1
    pots = _catalogs(POT_DIR, ".pot")
    for language in TRANSLATED:
        cmd = [
            sys.executable, "-m", "sphinx_intl", "update",
            "--pot-dir", str(POT_DIR),
            "--locale-dir", str(LOCALES),
            "--language", language,
            "--no-obsolete",
            "--line-width", str(PO_WIDTH),
        ]  # fmt: skip
        _say("$ " + " ".join(cmd))
        code = subprocess.run(cmd, cwd=ROOT, check=False).returncode
        if code != 0:
            _say("FAILED: sphinx-intl update failed")
            return code
        lc = LOCALES / language / "LC_MESSAGES"
        for domain, po in _catalogs(lc, ".po").items():
            if domain not in pots:
                _say(f"removing {po.relative_to(ROOT)}: its page no longer exists")
                po.unlink()
                po.with_suffix(".mo").unlink(missing_ok=True)
        filled = fill_boilerplate(language)
        if filled:
            _say(f"filled {filled} sphinx-gallery boilerplate message(s) in {language!r}")
        for mo in lc.rglob("*.mo"):
            if not mo.with_suffix(".po").exists():
                mo.unlink()
        for d in sorted(lc.rglob("*"), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        _print_table(compare_catalogs(POT_DIR, language), language)
    _say(f"done in {_elapsed(t0)}; translate the untranslated and fuzzy entries in {LOCALES}")
    return 0


def cmd_check_i18n(args: list[str]) -> int:
    if args:
        sys.exit(f"docs/build.py check-i18n: unexpected arguments {args}")
    return check_i18n()


def cmd_clean(_args: list[str]) -> int:
    for name in GENERATED:
        path = DOCS / name
        if path.exists():
            _say(f"removing {path}")
            shutil.rmtree(path)
    for mo in LOCALES.rglob("*.mo") if LOCALES.exists() else []:
        mo.unlink()
    return 0


COMMANDS = {
    "html": cmd_html,
    "gettext": cmd_gettext,
    "check-i18n": cmd_check_i18n,
    "clean": cmd_clean,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
