"""A synthetic bilingual sentiment data set, generated on the fly (no download).

Sentences come from templates with negation and intensifiers, in English and
Japanese, already split into tokens::

    the movie was not very good          ->  negative
    この 映画 は あまり 良 く なかった       ->  negative
    honestly this plot is really boring   ->  negative
    その 演技 は 素敵 だった 。              ->  positive

The label is the polarity of the sentiment word, flipped by negation: a model has
to read both the sentiment word and the negation to classify a sentence, while
the intensifier (very, とても, ...) and the rest are distractors. Labels are balanced
and negation is drawn independently of the label (three sentences in ten by default), so
the negation alone says nothing about the label and the sentiment word alone is right
only for the sentences that are not negated.

English negation is a word (``not``, ``never``, ``n't`` as in ``was n't``).
Japanese negation is a suffix. The Japanese tokens follow a simple rule of this
generator, not a morphological analyser: the adjective stem keeps its polarity, the
inflection is a token, and the negation is a token of its own: 良い = ``良 い``,
良くなかった = ``良 く なかった``, 退屈ではない = ``退屈 では ない``. (MeCab with UniDic
splits 良くなかった as ``良く なかっ た``, and つまらない as ``つまら ない``, which would
make a negation token of a word that is not negated.)

A negated Japanese sentence takes あまり or それほど where an affirmative one takes
とても, すごく, ...: 「あまり良くなかった」, as Japanese is written (とても does not go with
a negation). English keeps ``not very good``.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, overload

import torch

__all__ = [
    "CLS",
    "PAD",
    "UNK",
    "SentimentDataset",
    "SentimentExample",
    "Vocab",
    "encode_batch",
    "lexicon",
    "make_sentiment_dataset",
    "pad_sequences",
    "padding_mask",
    "sentiment_vocab",
]

#: Padding token, id 0 in every `Vocab`.
PAD = "[PAD]"
#: Classification token, id 1, prepended to every sentence by the classifier.
CLS = "[CLS]"
#: Unknown token, id 2: what `Vocab.encode` gives a token outside the vocabulary.
UNK = "[UNK]"

Language = Literal["en", "ja"]

# ----------------------------------------------------------------------------- lexicon

_EN_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("honestly",),
    ("overall",),
    ("i", "think"),
    ("frankly",),
)
_EN_DETERMINERS = ("the", "this", "that")
_EN_NOUNS = (
    "movie",
    "film",
    "story",
    "plot",
    "acting",
    "ending",
    "music",
    "book",
    "show",
    "soundtrack",
)
_EN_COPULAS = ("was", "is")
_EN_NEGATIONS = ("not", "never", "n't")
_EN_INTENSIFIERS = ("very", "really", "so", "quite", "extremely", "truly")
_EN_POSITIVE = (
    "good",
    "great",
    "fun",
    "wonderful",
    "excellent",
    "enjoyable",
    "brilliant",
    "lovely",
)
_EN_NEGATIVE = ("bad", "boring", "awful", "terrible", "dull", "poor", "weak", "horrible")

_JA_PREFIXES: tuple[tuple[str, ...], ...] = (("正直", "、"), ("全体的に", "、"), ("やはり",))
_JA_DETERMINERS = ("この", "その", "あの")
_JA_NOUNS = ("映画", "話", "物語", "演技", "結末", "音楽", "本", "番組", "脚本")
_JA_TOPIC = "は"
_JA_INTENSIFIERS = ("とても", "すごく", "本当に", "かなり", "非常に", "実に")
# degree adverbs that go with a negation (あまり良くなかった; とても良くなかった is not Japanese)
_JA_NEGATED_INTENSIFIERS = ("あまり", "それほど")
# i-adjective stems: 良 い / 良 く ない / 良 かった / 良 く なかった
_JA_I_POSITIVE = ("良", "面白", "楽し", "素晴らし", "美し")
_JA_I_NEGATIVE = ("悪", "つまらな", "ひど", "くだらな", "弱")
# na-adjective stems: 素敵 だ / 素敵 では ない / 素敵 だった / 素敵 じゃ なかった
_JA_NA_POSITIVE = ("素敵", "見事", "立派")
_JA_NA_NEGATIVE = ("退屈", "残念", "下手")
_JA_I_FORMS = {  # (negated, past) -> inflection tokens after the stem
    (False, False): ("い",),
    (False, True): ("かった",),
    (True, False): ("く", "ない"),
    (True, True): ("く", "なかった"),
}
_JA_NA_AFFIRMATIVE = {False: ("だ",), True: ("だった",)}
_JA_NA_NEGATORS = ("では", "じゃ")
_JA_END = "。"


def lexicon(language: Literal["en", "ja", "both"] = "both") -> tuple[str, ...]:
    """Return every token the generator can produce, in a fixed order.

    Parameters
    ----------
    language : {"en", "ja", "both"}, default "both"

    Returns
    -------
    tuple of str
        Unique tokens, English first when ``language="both"``.

    Examples
    --------
    >>> from attnlens.datasets import lexicon
    >>> "not" in lexicon("en"), "なかった" in lexicon("ja")
    (True, True)
    """
    _check_language(language, allow_both=True)
    words: list[str] = []
    if language in ("en", "both"):
        for prefix in _EN_PREFIXES:
            words.extend(prefix)
        for group in (
            _EN_DETERMINERS,
            _EN_NOUNS,
            _EN_COPULAS,
            _EN_NEGATIONS,
            _EN_INTENSIFIERS,
            _EN_POSITIVE,
            _EN_NEGATIVE,
        ):
            words.extend(group)
    if language in ("ja", "both"):
        for prefix in _JA_PREFIXES:
            words.extend(prefix)
        words.extend([*_JA_DETERMINERS, *_JA_NOUNS, _JA_TOPIC, *_JA_INTENSIFIERS])
        words.extend(_JA_NEGATED_INTENSIFIERS)
        words.extend([*_JA_I_POSITIVE, *_JA_I_NEGATIVE, *_JA_NA_POSITIVE, *_JA_NA_NEGATIVE])
        for forms in _JA_I_FORMS.values():
            words.extend(forms)
        for forms in _JA_NA_AFFIRMATIVE.values():
            words.extend(forms)
        words.extend([*_JA_NA_NEGATORS, "ない", "なかった", _JA_END])
    return tuple(dict.fromkeys(words))


def _check_language(language: str, *, allow_both: bool) -> None:
    allowed = ("en", "ja", "both") if allow_both else ("en", "ja")
    if language not in allowed:
        raise ValueError(f"language: expected one of {allowed}, got {language!r}")


# ----------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class SentimentExample:
    """One generated sentence.

    Attributes
    ----------
    tokens : tuple of str
        The sentence, pre-tokenised (no ``[CLS]``).
    label : int
        1 for positive, 0 for negative.
    language : {"en", "ja"}
    negated : bool
        Whether the sentence contains a negation (which flips the polarity).
    sentiment_index : int
        Position of the sentiment word (the adjective, or its stem) in ``tokens``.
    negation_index : int or None
        Position of the negation token (``not``, ``never``, ``n't``, ``ない``,
        ``なかった``), None when not negated.
    intensifier_index : int or None
        Position of the intensifier, None when there is none.
    """

    tokens: tuple[str, ...]
    label: int
    language: Language
    negated: bool
    sentiment_index: int
    negation_index: int | None
    intensifier_index: int | None

    @property
    def text(self) -> str:
        """The sentence as text: words joined by spaces in English, glued in Japanese."""
        return (" " if self.language == "en" else "").join(self.tokens)


class _Draws:
    """Uniform draws from a torch.Generator, fetched in blocks (deterministic, fast)."""

    def __init__(self, generator: torch.Generator) -> None:
        self._generator = generator
        self._block: list[float] = []
        self._next = 0

    def uniform(self) -> float:
        if self._next == len(self._block):
            self._block = torch.rand(4096, generator=self._generator, dtype=torch.float64).tolist()
            self._next = 0
        value = self._block[self._next]
        self._next += 1
        return value

    def choice(self, options: Sequence[str] | Sequence[tuple[str, ...]]) -> int:
        return min(int(self.uniform() * len(options)), len(options) - 1)

    def bernoulli(self, p: float) -> bool:
        return self.uniform() < p


def _english(
    draws: _Draws, label: int, negated: bool, intensifier_rate: float, prefix_rate: float
) -> SentimentExample:
    tokens: list[str] = []
    if draws.bernoulli(prefix_rate):
        tokens.extend(_EN_PREFIXES[draws.choice(_EN_PREFIXES)])
    tokens.append(_EN_DETERMINERS[draws.choice(_EN_DETERMINERS)])
    tokens.append(_EN_NOUNS[draws.choice(_EN_NOUNS)])
    tokens.append(_EN_COPULAS[draws.choice(_EN_COPULAS)])
    negation_index = None
    if negated:
        negation_index = len(tokens)
        tokens.append(_EN_NEGATIONS[draws.choice(_EN_NEGATIONS)])
    intensifier_index = None
    if draws.bernoulli(intensifier_rate):
        intensifier_index = len(tokens)
        tokens.append(_EN_INTENSIFIERS[draws.choice(_EN_INTENSIFIERS)])
    positive_word = bool(label) != negated
    adjectives = _EN_POSITIVE if positive_word else _EN_NEGATIVE
    sentiment_index = len(tokens)
    tokens.append(adjectives[draws.choice(adjectives)])
    return SentimentExample(
        tuple(tokens), label, "en", negated, sentiment_index, negation_index, intensifier_index
    )


def _japanese(
    draws: _Draws, label: int, negated: bool, intensifier_rate: float, prefix_rate: float
) -> SentimentExample:
    tokens: list[str] = []
    if draws.bernoulli(prefix_rate):
        tokens.extend(_JA_PREFIXES[draws.choice(_JA_PREFIXES)])
    tokens.append(_JA_DETERMINERS[draws.choice(_JA_DETERMINERS)])
    tokens.append(_JA_NOUNS[draws.choice(_JA_NOUNS)])
    tokens.append(_JA_TOPIC)
    intensifier_index = None
    if draws.bernoulli(intensifier_rate):
        intensifier_index = len(tokens)
        adverbs = _JA_NEGATED_INTENSIFIERS if negated else _JA_INTENSIFIERS
        tokens.append(adverbs[draws.choice(adverbs)])
    positive_word = bool(label) != negated
    past = draws.bernoulli(0.5)
    na_adjective = draws.bernoulli(0.375)
    sentiment_index = len(tokens)
    stems: tuple[str, ...]
    if na_adjective:
        stems = _JA_NA_POSITIVE if positive_word else _JA_NA_NEGATIVE
        tokens.append(stems[draws.choice(stems)])
        if negated:
            tokens.append(_JA_NA_NEGATORS[draws.choice(_JA_NA_NEGATORS)])
            tokens.append("なかった" if past else "ない")
        else:
            tokens.extend(_JA_NA_AFFIRMATIVE[past])
    else:
        stems = _JA_I_POSITIVE if positive_word else _JA_I_NEGATIVE
        tokens.append(stems[draws.choice(stems)])
        tokens.extend(_JA_I_FORMS[(negated, past)])
    negation_index = len(tokens) - 1 if negated else None
    if draws.bernoulli(0.5):
        tokens.append(_JA_END)
    return SentimentExample(
        tuple(tokens), label, "ja", negated, sentiment_index, negation_index, intensifier_index
    )


class SentimentDataset(Sequence[SentimentExample]):
    """An immutable list of `SentimentExample` with helpers for training.

    Parameters
    ----------
    examples : iterable of SentimentExample

    Examples
    --------
    >>> from attnlens.datasets import make_sentiment_dataset
    >>> data = make_sentiment_dataset(100, seed=0)
    >>> train, test = data.split(0.2)
    >>> len(train), len(test), data.labels.shape
    (80, 20, torch.Size([100]))
    """

    def __init__(self, examples: Iterable[SentimentExample]) -> None:
        self._examples = tuple(examples)

    def __len__(self) -> int:
        return len(self._examples)

    @overload
    def __getitem__(self, index: int) -> SentimentExample: ...

    @overload
    def __getitem__(self, index: slice) -> SentimentDataset: ...

    def __getitem__(self, index: int | slice) -> SentimentExample | SentimentDataset:
        if isinstance(index, slice):
            return SentimentDataset(self._examples[index])
        return self._examples[index]

    def __iter__(self) -> Iterator[SentimentExample]:
        return iter(self._examples)

    def __repr__(self) -> str:
        languages = sorted({example.language for example in self._examples})
        return f"SentimentDataset(n={len(self)}, languages={languages})"

    @property
    def tokens(self) -> list[list[str]]:
        """The token lists of all examples."""
        return [list(example.tokens) for example in self._examples]

    @property
    def labels(self) -> torch.Tensor:
        """Labels as an int64 tensor of shape (N,): 1 positive, 0 negative."""
        return torch.tensor([example.label for example in self._examples], dtype=torch.long)

    def split(
        self, test_fraction: float = 0.2, *, seed: int | torch.Generator = 0
    ) -> tuple[SentimentDataset, SentimentDataset]:
        """Shuffle and split into a training and a held-out part (no sentence in both).

        Parameters
        ----------
        test_fraction : float, default 0.2
            Share of the examples in the held-out part, in (0, 1).
        seed : int or torch.Generator, default 0
            Seed of the shuffle.

        Returns
        -------
        (SentimentDataset, SentimentDataset)
            The training part and the held-out part.
        """
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction: expected a float in (0, 1), got {test_fraction}")
        generator = _generator(seed)
        order = torch.randperm(len(self), generator=generator).tolist()
        n_test = round(len(self) * test_fraction)
        test = [self._examples[i] for i in order[:n_test]]
        train = [self._examples[i] for i in order[n_test:]]
        return SentimentDataset(train), SentimentDataset(test)


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def make_sentiment_dataset(
    n: int = 2000,
    *,
    language: Literal["en", "ja", "both"] = "both",
    seed: int | torch.Generator = 0,
    negation_rate: float = 0.3,
    intensifier_rate: float = 0.5,
    prefix_rate: float = 0.3,
) -> SentimentDataset:
    """Generate ``n`` distinct labelled sentences.

    Parameters
    ----------
    n : int, default 2000
        Number of sentences. No sentence is repeated, and the templates yield
        about 35 000 distinct sentences per language, so keep ``n`` to a few
        thousand per language.
    language : {"en", "ja", "both"}, default "both"
        With ``"both"``, the sentences alternate English, Japanese.
    seed : int or torch.Generator, default 0
        Seed; the same seed gives the same data set.
    negation_rate : float, default 0.3
        Probability that a sentence is negated (independent of the label). At 0.3
        the sentiment word alone gives the label for seven sentences in ten; to do better a
        model has to read the negation. At 0.5 the sentiment word alone says
        nothing (a pure XOR), which small models learn much more slowly.
    intensifier_rate : float, default 0.5
        Probability of an intensifier (very, とても, ...); it never changes the label.
    prefix_rate : float, default 0.3
        Probability of a sentence opener (honestly, 正直 、, ...).

    Returns
    -------
    SentimentDataset
        Labels are balanced within each language (equal counts, or one more of
        one label for an odd count), in shuffled order.

    Raises
    ------
    ValueError
        If ``n`` is not positive, a rate is outside [0, 1], ``language`` is unknown,
        or ``n`` distinct sentences cannot be found.

    Examples
    --------
    >>> from attnlens.datasets import make_sentiment_dataset
    >>> data = make_sentiment_dataset(4, seed=1)
    >>> [example.language for example in data]
    ['en', 'ja', 'en', 'ja']
    >>> int(data.labels.sum())
    2
    >>> data.tokens == make_sentiment_dataset(4, seed=1).tokens  # deterministic
    True
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    _check_language(language, allow_both=True)
    for name, rate in (
        ("negation_rate", negation_rate),
        ("intensifier_rate", intensifier_rate),
        ("prefix_rate", prefix_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {rate}")
    generator = _generator(seed)
    languages: list[Language] = [
        "en" if language == "en" or (language == "both" and i % 2 == 0) else "ja" for i in range(n)
    ]
    labels = [0] * n
    for lang in ("en", "ja"):  # balanced labels within each language, shuffled
        positions = [i for i in range(n) if languages[i] == lang]
        shuffled = (torch.arange(len(positions)) % 2)[
            torch.randperm(len(positions), generator=generator)
        ]
        for position, label in zip(positions, shuffled.tolist(), strict=True):
            labels[position] = label
    draws = _Draws(generator)
    seen: set[tuple[str, ...]] = set()
    examples: list[SentimentExample] = []
    for label, lang in zip(labels, languages, strict=True):
        make = _english if lang == "en" else _japanese
        for _ in range(1000):
            example = make(
                draws, label, draws.bernoulli(negation_rate), intensifier_rate, prefix_rate
            )
            if example.tokens not in seen:
                break
        else:
            raise ValueError(f"n: could not generate {n} distinct sentences, try a smaller n")
        seen.add(example.tokens)
        examples.append(example)
    return SentimentDataset(examples)


# ----------------------------------------------------------------------------- vocabulary


class Vocab:
    """Token <-> id mapping with the special tokens ``[PAD]`` = 0, ``[CLS]`` = 1, ``[UNK]`` = 2.

    Parameters
    ----------
    tokens : iterable of str
        Ordinary tokens, in id order (duplicates and special tokens are skipped).

    Examples
    --------
    >>> from attnlens.datasets import Vocab
    >>> vocab = Vocab(["the", "movie", "was", "good"])
    >>> vocab.encode(["the", "movie", "was", "great"])  # unknown -> [UNK] = 2
    [3, 4, 5, 2]
    >>> vocab.decode([1, 3, 4, 0], skip_special=True)
    ['the', 'movie']
    """

    pad_index = 0
    cls_index = 1
    unk_index = 2

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        itos = [PAD, CLS, UNK]
        for token in tokens:
            if not isinstance(token, str):
                raise TypeError(f"tokens: expected str, got {type(token).__name__}")
            itos.append(token)
        self._itos: tuple[str, ...] = tuple(dict.fromkeys(itos))
        self._stoi = {token: index for index, token in enumerate(self._itos)}

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[str]]) -> Vocab:
        """Build a vocabulary from token sequences, ids in order of first appearance.

        Parameters
        ----------
        sequences : iterable of sequence of str
            Token sequences, e.g. ``dataset.tokens``.

        Returns
        -------
        Vocab
        """
        return cls(token for sequence in sequences for token in sequence)

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __getitem__(self, token: str) -> int:
        return self._stoi.get(token, self.unk_index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and other._itos == self._itos

    def __hash__(self) -> int:
        return hash(self._itos)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    @property
    def itos(self) -> tuple[str, ...]:
        """All tokens in id order (specials first)."""
        return self._itos

    def encode(self, tokens: Sequence[str], *, add_cls: bool = False) -> list[int]:
        """Map tokens to ids (unknown tokens to ``[UNK]``); optionally prepend ``[CLS]``.

        Parameters
        ----------
        tokens : sequence of str
            One tokenised sentence (a list of tokens, not a string).
        add_cls : bool, default False
            Prepend the ``[CLS]`` id, whose final state a classifier reads.

        Returns
        -------
        list of int

        Raises
        ------
        TypeError
            If ``tokens`` is a plain string.
        """
        if isinstance(tokens, str):
            raise TypeError("tokens: expected a sequence of tokens, got a str")
        ids = [self._stoi.get(token, self.unk_index) for token in tokens]
        return [self.cls_index, *ids] if add_cls else ids

    def decode(self, ids: Iterable[int] | torch.Tensor, *, skip_special: bool = False) -> list[str]:
        """Map ids back to tokens.

        Parameters
        ----------
        ids : iterable of int or torch.Tensor
            Token ids, e.g. one row of a padded batch.
        skip_special : bool, default False
            Drop ``[PAD]``, ``[CLS]`` and ``[UNK]``.

        Returns
        -------
        list of str

        Raises
        ------
        ValueError
            If an id is outside ``[0, len(vocab))``.
        """
        values: list[int] = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        tokens = []
        for index in values:
            if not 0 <= index < len(self._itos):
                raise ValueError(f"ids: expected ids in [0, {len(self._itos)}), got {index}")
            if skip_special and index <= self.unk_index:
                continue
            tokens.append(self._itos[index])
        return tokens


def sentiment_vocab(language: Literal["en", "ja", "both"] = "both") -> Vocab:
    """The vocabulary of every token `make_sentiment_dataset` can produce.

    Parameters
    ----------
    language : {"en", "ja", "both"}, default "both"
        Include the English tokens, the Japanese tokens or both.

    Returns
    -------
    Vocab

    Examples
    --------
    >>> from attnlens.datasets import sentiment_vocab
    >>> vocab = sentiment_vocab()
    >>> vocab.decode(vocab.encode(["この", "映画", "は", "良", "く", "なかった"]))
    ['この', '映画', 'は', '良', 'く', 'なかった']
    """
    return Vocab(lexicon(language))


# ----------------------------------------------------------------------------- batching


def pad_sequences(
    sequences: Sequence[Sequence[int]], *, pad_index: int = 0, length: int | None = None
) -> torch.Tensor:
    """Right-pad id sequences into one tensor.

    Parameters
    ----------
    sequences : sequence of sequences of int, N of them
    pad_index : int, default 0
    length : int, optional
        Padded length S. Default: the longest sequence.

    Returns
    -------
    Tensor of shape (N, S), dtype int64

    Raises
    ------
    ValueError
        If there is no sequence or one is longer than ``length``.

    Examples
    --------
    >>> from attnlens.datasets import pad_sequences
    >>> pad_sequences([[5, 6, 7], [8]])
    tensor([[5, 6, 7],
            [8, 0, 0]])
    """
    if len(sequences) == 0:
        raise ValueError("sequences: expected at least one sequence, got none")
    longest = max(len(sequence) for sequence in sequences)
    if length is None:
        length = longest
    elif longest > length:
        raise ValueError(
            f"length: expected at least the longest sequence ({longest}), got {length}"
        )
    out = torch.full((len(sequences), length), pad_index, dtype=torch.long)  # (N, S)
    for row, sequence in enumerate(sequences):
        if len(sequence):
            out[row, : len(sequence)] = torch.as_tensor(list(sequence), dtype=torch.long)
    return out


def padding_mask(ids: torch.Tensor, *, pad_index: int = 0) -> torch.Tensor:
    """``key_padding_mask`` for ``nn.MultiheadAttention``: True where ``ids`` is padding.

    Parameters
    ----------
    ids : Tensor of shape (N, S)
    pad_index : int, default 0

    Returns
    -------
    Tensor of shape (N, S), dtype bool (True = ignored, the MultiheadAttention convention)

    Examples
    --------
    >>> import torch
    >>> from attnlens.datasets import padding_mask
    >>> padding_mask(torch.tensor([[5, 6, 0]]))
    tensor([[False, False,  True]])
    """
    return ids == pad_index


def encode_batch(
    vocab: Vocab,
    token_sequences: Sequence[Sequence[str]],
    *,
    add_cls: bool = False,
    length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode, pad and mask a batch of token lists.

    Parameters
    ----------
    vocab : Vocab
    token_sequences : sequence of sequences of str, N of them
    add_cls : bool, default False
        Prepend ``[CLS]`` (`attnlens.classifier.SentimentClassifier` prepends it itself).
    length : int, optional
        Padded length S (default: the longest).

    Returns
    -------
    ids : Tensor of shape (N, S), int64
    key_padding_mask : Tensor of shape (N, S), bool, True at padding

    Examples
    --------
    >>> from attnlens.datasets import encode_batch, sentiment_vocab
    >>> ids, mask = encode_batch(sentiment_vocab(), [["the", "movie"], ["この"]])
    >>> ids.shape, mask.tolist()
    (torch.Size([2, 2]), [[False, False], [False, True]])
    """
    if isinstance(token_sequences, str):
        raise TypeError("token_sequences: expected a sequence of token lists, got a str")
    encoded = [vocab.encode(tokens, add_cls=add_cls) for tokens in token_sequences]
    ids = pad_sequences(encoded, pad_index=vocab.pad_index, length=length)  # (N, S)
    mask = torch.zeros_like(ids, dtype=torch.bool)  # (N, S)
    for row, sequence in enumerate(encoded):
        mask[row, len(sequence) :] = True
    return ids, mask
