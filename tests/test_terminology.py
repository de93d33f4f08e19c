"""One term per concept on the Japanese site: the glossary decides, retired variants fail.

The Japanese term of each concept is the 日本語 column of ``docs/concepts/glossary.md``;
``docs/concepts/glossary-retired.toml`` lists the spellings it replaced. Every msgstr of the
Japanese catalogs (``docs/locales/ja/LC_MESSAGES``) is checked against those variants, as are
the glossary's own Japanese column, and no msgstr may use ``*emphasis*`` (slanted CJK).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "concepts" / "glossary.md"
RETIRED = ROOT / "docs" / "concepts" / "glossary-retired.toml"
CATALOGS = ROOT / "docs" / "locales" / "ja" / "LC_MESSAGES"

_ROW = re.compile(r"^\|(?P<en>[^|]+)\|(?P<ja>[^|]+)\|(?P<definition>.+)\|\s*$")


def glossary_rows() -> list[tuple[str, str]]:
    """(English, 日本語) of every row of the glossary's tables (header rows excluded)."""
    rows = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if not m or set(m["en"].strip()) <= {"-", " "} or m["ja"].strip() == "日本語":
            continue
        rows.append((m["en"].strip(), m["ja"].strip()))
    return rows


def glossary_forms(ja: str) -> set[str]:
    """The forms of one 日本語 cell: ``アテンションロールアウト（ロールアウト）`` gives both."""
    forms = {ja}
    m = re.fullmatch(r"(?P<main>[^（]+)（(?P<alt>[^）]+)）", ja)
    if m:
        forms |= {m["main"].strip(), m["alt"].strip()}
    return forms


def retired_table() -> dict[str, list[dict[str, object]]]:
    with RETIRED.open("rb") as f:
        return tomllib.load(f)


def _unquote(line: str) -> str:
    body = line[line.index('"') + 1 : line.rindex('"')]
    return re.sub(r'\\(["\\nt])', lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)


def read_po(path: Path) -> list[tuple[str, str, bool]]:
    """(msgid, msgstr, fuzzy) of every entry of a .po file (plain gettext syntax)."""
    entries: list[tuple[str, str, bool]] = []
    msgid: list[str] = []
    msgstr: list[str] = []
    fuzzy = False
    current: list[str] | None = None

    def flush() -> None:
        if msgid or msgstr:
            entries.append(("".join(msgid), "".join(msgstr), fuzzy))

    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            flush()
            msgid, msgstr, fuzzy, current = [], [], False, None
        elif line.startswith("#,"):
            fuzzy = fuzzy or "fuzzy" in line
        elif line.startswith("#"):
            continue
        elif line.startswith("msgid "):
            current = msgid
            current.append(_unquote(line))
        elif line.startswith("msgstr "):
            current = msgstr
            current.append(_unquote(line))
        elif line.startswith('"') and current is not None:
            current.append(_unquote(line))
    return [e for e in entries if e[0]]  # drop the header


def all_msgstrs() -> list[tuple[str, str, str]]:
    """(catalog, msgid, msgstr) of every translated entry of the Japanese catalogs."""
    out = []
    for po in sorted(CATALOGS.rglob("*.po")):
        rel = po.relative_to(CATALOGS).as_posix()
        out.extend((rel, msgid, msgstr) for msgid, msgstr, _ in read_po(po) if msgstr)
    return out


def test_catalogs_are_found() -> None:
    entries = all_msgstrs()
    assert len(entries) > 500, f"only {len(entries)} translated messages under {CATALOGS}"
    assert len(glossary_rows()) > 50


def test_po_reader_reads_multiline_entries(tmp_path: Path) -> None:
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Language: ja\\n"\n\n#, fuzzy\nmsgid "a"\nmsgstr ""\n"b "\n"\\"c\\""\n',
        encoding="utf-8",
    )
    assert read_po(po) == [("a", 'b "c"', True)]


def test_retired_terms_name_glossary_terms() -> None:
    """Each retired entry points at a term the glossary really uses, under its English name."""
    rows = glossary_rows()
    forms = {form for _, ja in rows for form in glossary_forms(ja)}
    english = {en for en, _ in rows}
    for entry in retired_table()["term"]:
        assert entry["ja"] in forms, f"{entry['ja']!r} is not in the glossary's 日本語 column"
        for en in str(entry["en"]).split(" / "):
            assert en in english, f"{en!r} is not in the glossary's English column"


def _variants() -> list[tuple[str, str, re.Pattern[str]]]:
    table = retired_table()
    return [
        (str(entry["ja"]), pattern, re.compile(pattern))
        for entry in [*table["term"], *table.get("plain", [])]
        for pattern in entry["retired"]  # type: ignore[union-attr]
    ]


@pytest.mark.parametrize(("term", "pattern", "regex"), _variants(), ids=str)
def test_no_retired_variant_in_japanese_catalogs(
    term: str, pattern: str, regex: re.Pattern[str]
) -> None:
    hits = [
        f"{rel}: ...{msgstr[max(0, m.start() - 20) : m.end() + 20]}..."
        for rel, _msgid, msgstr in all_msgstrs()
        for m in [regex.search(msgstr)]
        if m
    ]
    glossary_hits = [ja for _, ja in glossary_rows() if regex.search(ja)]
    problems = hits + glossary_hits
    assert not problems, (
        f"retired variant {pattern!r} (use {term!r}, see docs/concepts/glossary.md):\n  "
        + "\n  ".join(problems)
    )


def test_retired_pattern_catches_bare_chui() -> None:
    """The bare-注意 rule flags the mechanism and lets the kept uses through."""
    regex = {t: re.compile(p) for t, p, _ in _variants()}["アテンション"]
    assert regex.search("PyTorch で注意を調べる")
    assert regex.search("一様な注意")
    assert not regex.search("注意重みを返します")
    assert not regex.search("最後のトークンに注意を向けます")


# *emphasis* renders as slanted CJK: bold (**...**) or 「」 instead. A lone * (a product in
# maths, a glob) is not emphasis; neither is ** (bold). Code and maths keep their asterisks.
_EMPHASIS = re.compile(r"(?<![*\w\\])\*(?=[^*\s])[^*]+?(?<=[^*\s\\])\*(?![*\w])")
_NOT_PROSE = re.compile(r"(:[a-z:]+:)?`[^`]*`+|\$[^$]*\$|\*\*[^*]+\*\*")


def has_emphasis(msgstr: str) -> bool:
    return bool(_EMPHASIS.search(_NOT_PROSE.sub(" ", msgstr)))


def test_no_emphasis_in_japanese_msgstr() -> None:
    hits = [f"{rel}: {msgstr[:90]!r}" for rel, _, msgstr in all_msgstrs() if has_emphasis(msgstr)]
    assert not hits, "msgstr with *emphasis* (use **bold** or 「」):\n  " + "\n  ".join(hits)


def test_emphasis_rule() -> None:
    assert has_emphasis("適用して *から* 返します")
    assert has_emphasis("論文 *Attention Is All You Need* では")
    assert not has_emphasis("**太字** です")
    assert not has_emphasis("a * b * c")
    assert not has_emphasis(":math:`a *b* c` と ``x*y*z``")


# ---- the English original at first use ------------------------------------------------------
#: Terms whose English original a page gives where it first uses them in running text:
#: アテンション（attention）. (Japanese, English) as in the glossary.
FIRST_USE = [
    ("スケール化ドット積アテンション", "scaled dot-product attention"),
    ("マルチヘッドアテンション", "multi-head attention"),
    ("セルフアテンション", "self-attention"),
    ("クロスアテンション", "cross-attention"),
    ("アテンションロールアウト", "attention rollout"),
    ("アテンションマップ", "attention map"),
    ("アテンション", "attention"),
    ("注意重み", "attention weights"),
    ("因果マスク", "causal mask"),
    ("パディングマスク", "padding mask"),
    ("残差接続", "residual connection"),
    ("位置エンコーディング", "positional encoding"),
    ("KV キャッシュ", "KV cache"),
    ("クエリ", "query"),
    ("キー", "key"),
    ("バリュー", "value"),
    ("ヘッド", "head"),
]
_KATAKANA_OR_KANJI = re.compile(r"[\u30a0-\u30ff\u3400-\u9fff]")


def standalone_use(term: str, text: str) -> re.Match[str] | None:
    """First use of ``term`` as a word of its own (not inside a longer compound or code)."""
    for m in re.finditer(re.escape(term), text):
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        if _KATAKANA_OR_KANJI.match(before):
            continue
        if _KATAKANA_OR_KANJI.match(after) and _KATAKANA_OR_KANJI.match(term[-1]):
            same = re.match(r"[\u30a0-\u30ff]", after) and re.match(r"[\u30a0-\u30ff]", term[-1])
            if same:
                continue
        head = text[: m.start()]
        if head.count("`") % 2 or head.count("$") % 2:
            continue
        return m
    return None


def is_heading(msgid: str) -> bool:
    """A short English message without final punctuation: a title or heading."""
    return len(msgid) < 80 and not re.search(r"[.:?!)]\s*$", msgid)


def test_pages_give_the_english_original_of_their_terms() -> None:
    missing = []
    for po in sorted(CATALOGS.rglob("*.po")):
        if po.name == "glossary.po":
            continue  # the glossary gives both columns for every term
        entries = [(msgid, msgstr) for msgid, msgstr, _ in read_po(po) if msgstr]
        text = "".join(msgstr for _, msgstr in entries)
        for ja, en in FIRST_USE:
            used = any(
                standalone_use(ja, msgstr) and not is_heading(msgid) for msgid, msgstr in entries
            )
            if used and f"{ja}（{en}" not in text:
                missing.append(f"{po.relative_to(CATALOGS)}: {ja}（{en}）")
    assert not missing, "first use without the English original:\n  " + "\n  ".join(missing)
