"""A small corpus of English paragraphs, shipped with attnlens (no download).

272 original sentences in 68 paragraphs on 34 everyday topics, written for attnlens and
dedicated to the public domain (CC0 1.0). Paragraphs come in pairs on one topic; a pair
makes one BERT input segment ``[CLS] first [SEP] second [SEP]`` of about 120 WordPiece
tokens, the kind of input Clark et al. (2019) fed BERT to measure what its heads look at.
The file is ``attnlens/data/paragraphs.txt``; its licence and format are written at its
top and in ``attnlens/data/README.md``.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["english_paragraphs"]


def english_paragraphs() -> list[tuple[str, ...]]:
    """Return the 68 English paragraphs of the corpus, each as its sentences.

    Returns
    -------
    list of tuple of str
        Paragraph ``2k`` and paragraph ``2k + 1`` are about the same topic (they form
        one segment in walkthrough 7); each paragraph is a tuple of 3 to 5 sentences.

    Examples
    --------
    >>> from attnlens.corpus import english_paragraphs
    >>> paragraphs = english_paragraphs()
    >>> len(paragraphs), sum(len(p) for p in paragraphs)  # paragraphs, sentences
    (68, 272)
    >>> paragraphs[0][0]
    'The bakery on the corner opens at six, long before the shops around it.'
    """
    text = (resources.files("attnlens") / "data" / "paragraphs.txt").read_text("utf-8")
    paragraphs: list[tuple[str, ...]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(tuple(current))
            current = []
    if current:
        paragraphs.append(tuple(current))
    return paragraphs
