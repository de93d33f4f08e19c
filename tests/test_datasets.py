"""The synthetic bilingual sentiment data: labels, negation, determinism, vocabulary, batching."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from attnlens.datasets import (
    _EN_NEGATIVE,
    _EN_POSITIVE,
    _JA_I_NEGATIVE,
    _JA_I_POSITIVE,
    _JA_NA_NEGATIVE,
    _JA_NA_POSITIVE,
    CLS,
    PAD,
    UNK,
    SentimentDataset,
    Vocab,
    encode_batch,
    lexicon,
    make_sentiment_dataset,
    pad_sequences,
    padding_mask,
    sentiment_vocab,
)

POSITIVE = set(_EN_POSITIVE) | set(_JA_I_POSITIVE) | set(_JA_NA_POSITIVE)
NEGATIVE = set(_EN_NEGATIVE) | set(_JA_I_NEGATIVE) | set(_JA_NA_NEGATIVE)
NEGATIONS = {"not", "never", "n't", "ない", "なかった"}


@pytest.fixture(scope="module")
def data() -> SentimentDataset:
    return make_sentiment_dataset(2000, seed=0)


def test_label_is_polarity_flipped_by_negation(data: SentimentDataset) -> None:
    for example in data:
        word = example.tokens[example.sentiment_index]
        assert word in POSITIVE | NEGATIVE
        polarity = int(word in POSITIVE)
        assert example.label == polarity ^ example.negated, example
        found = [i for i, token in enumerate(example.tokens) if token in NEGATIONS]
        if example.negated:
            assert found == [example.negation_index]
        else:
            assert found == []
            assert example.negation_index is None
        if example.intensifier_index is not None:
            assert example.intensifier_index < example.sentiment_index


def test_balanced_labels_languages_and_independent_negation(data: SentimentDataset) -> None:
    counts = Counter((example.language, example.label) for example in data)
    assert counts == {("en", 0): 500, ("en", 1): 500, ("ja", 0): 500, ("ja", 1): 500}
    assert [example.language for example in data[:4]] == ["en", "ja", "en", "ja"]
    negated = Counter((example.label, example.negated) for example in data)
    rate = (negated[0, True] + negated[1, True]) / len(data)
    assert 0.25 < rate < 0.35  # negation_rate=0.3
    # negation carries no information about the label
    assert abs(negated[0, True] / 1000 - negated[1, True] / 1000) < 0.05
    intensified = sum(example.intensifier_index is not None for example in data) / len(data)
    assert 0.45 < intensified < 0.55


def test_sentences_are_unique_and_split_is_disjoint(data: SentimentDataset) -> None:
    assert len({example.tokens for example in data}) == len(data)
    train, test = data.split(0.2, seed=0)
    assert (len(train), len(test)) == (1600, 400)
    assert not {e.tokens for e in train} & {e.tokens for e in test}
    assert {e.tokens for e in train} | {e.tokens for e in test} == {e.tokens for e in data}


def test_deterministic_for_a_seed_different_across_seeds() -> None:
    first = make_sentiment_dataset(300, seed=7)
    again = make_sentiment_dataset(300, seed=7, negation_rate=0.3)
    other = make_sentiment_dataset(300, seed=8)
    assert first.tokens == again.tokens
    assert torch.equal(first.labels, again.labels)
    assert first.tokens != other.tokens
    generator = torch.Generator().manual_seed(7)
    assert make_sentiment_dataset(300, seed=generator).tokens == first.tokens
    split_a = first.split(0.3, seed=1)
    split_b = first.split(0.3, seed=torch.Generator().manual_seed(1))
    assert split_a[1].tokens == split_b[1].tokens


def test_japanese_negation_is_a_suffix_token() -> None:
    ja = make_sentiment_dataset(400, language="ja", seed=3)
    assert {example.language for example in ja} == {"ja"}
    for example in ja:
        if example.negated:
            assert example.negation_index is not None
            assert example.negation_index > example.sentiment_index
            assert example.tokens[example.negation_index] in {"ない", "なかった"}
            between = example.tokens[example.sentiment_index + 1 : example.negation_index]
            assert between in (("く",), ("では",), ("じゃ",))
    texts = {example.text for example in ja}
    assert all(" " not in text for text in texts)
    en = make_sentiment_dataset(10, language="en", seed=3)
    assert all(example.text == " ".join(example.tokens) for example in en)


def test_intensifiers_and_openers_appear_with_both_labels(data: SentimentDataset) -> None:
    by_token: dict[str, set[int]] = {}
    for example in data:
        for token in example.tokens:
            by_token.setdefault(token, set()).add(example.label)
    for token in ("very", "とても", "honestly", "正直", "the", "この", "は"):
        assert by_token[token] == {0, 1}, token


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="n: expected a positive int, got 0"):
        make_sentiment_dataset(0)
    with pytest.raises(ValueError, match="language: expected one of"):
        make_sentiment_dataset(10, language="fr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"negation_rate: expected a probability in \[0, 1\]"):
        make_sentiment_dataset(10, negation_rate=1.5)
    with pytest.raises(TypeError, match=r"seed: expected an int or a torch\.Generator"):
        make_sentiment_dataset(10, seed="0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="could not generate"):
        make_sentiment_dataset(
            1000, language="en", negation_rate=0.0, intensifier_rate=0.0, prefix_rate=0.0
        )
    with pytest.raises(ValueError, match=r"test_fraction: expected a float in \(0, 1\)"):
        make_sentiment_dataset(10).split(1.0)


def test_dataset_sequence_protocol(data: SentimentDataset) -> None:
    part = data[10:20]
    assert isinstance(part, SentimentDataset)
    assert len(part) == 10
    assert part[0] == data[10]
    assert data.labels.dtype == torch.long
    assert data.labels.shape == (2000,)
    assert repr(data) == "SentimentDataset(n=2000, languages=['en', 'ja'])"


# ------------------------------------------------------------------ vocabulary


def test_vocab_specials_encode_decode() -> None:
    vocab = Vocab(["the", "movie", "the", PAD])
    assert vocab.itos == (PAD, CLS, UNK, "the", "movie")
    assert (vocab.pad_index, vocab.cls_index, vocab.unk_index) == (0, 1, 2)
    assert vocab.encode(["the", "film"]) == [3, 2]
    assert vocab.encode(["movie"], add_cls=True) == [1, 4]
    assert vocab.decode([1, 3, 4, 0]) == [CLS, "the", "movie", PAD]
    assert vocab.decode(torch.tensor([1, 3, 2, 0]), skip_special=True) == ["the"]
    assert "movie" in vocab
    assert "film" not in vocab
    assert vocab["film"] == vocab.unk_index
    assert Vocab.from_sequences([["the"], ["movie", "the"]]) == vocab
    with pytest.raises(ValueError, match=r"ids: expected ids in \[0, 5\), got 9"):
        vocab.decode([9])
    with pytest.raises(TypeError, match="tokens: expected a sequence of tokens, got a str"):
        vocab.encode("the")


def test_sentiment_vocab_covers_every_generated_token(data: SentimentDataset) -> None:
    vocab = sentiment_vocab()
    assert len(vocab) == 3 + len(lexicon())
    assert len(lexicon()) == len(lexicon("en")) + len(lexicon("ja"))
    for example in data:
        assert vocab.unk_index not in vocab.encode(example.tokens)
        assert vocab.decode(vocab.encode(example.tokens)) == list(example.tokens)


# ------------------------------------------------------------------ batching


def test_pad_sequences_and_padding_mask() -> None:
    ids = pad_sequences([[5, 6, 7], [8], []])
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert ids.dtype == torch.long
    assert pad_sequences([[5]], pad_index=9, length=3).tolist() == [[5, 9, 9]]
    assert padding_mask(ids).tolist() == [
        [False, False, False],
        [False, True, True],
        [True, True, True],
    ]
    with pytest.raises(ValueError, match=r"length: expected at least the longest sequence \(3\)"):
        pad_sequences([[1, 2, 3]], length=2)
    with pytest.raises(ValueError, match="sequences: expected at least one sequence"):
        pad_sequences([])


def test_encode_batch() -> None:
    vocab = sentiment_vocab()
    ids, mask = encode_batch(vocab, [["the", "movie", "was", "good"], ["この", "映画"]])
    assert ids.shape == mask.shape == (2, 4)
    assert mask.tolist() == [[False] * 4, [False, False, True, True]]
    assert vocab.decode(ids[1], skip_special=True) == ["この", "映画"]
    ids, mask = encode_batch(vocab, [["good"]], add_cls=True, length=3)
    assert ids.tolist() == [[vocab.cls_index, vocab["good"], 0]]
    assert mask.tolist() == [[False, False, True]]


def test_japanese_degree_adverb_agrees_with_negation() -> None:
    """とても良くなかった is not Japanese: a negated sentence takes あまり / それほど."""
    ja = make_sentiment_dataset(1000, language="ja", seed=5, intensifier_rate=1.0)
    negated_adverbs = {"あまり", "それほど"}
    seen = set()
    for example in ja:
        assert example.intensifier_index is not None
        adverb = example.tokens[example.intensifier_index]
        seen.add(adverb)
        assert (adverb in negated_adverbs) == example.negated, example.text
    assert negated_adverbs <= seen
    assert "とても" in seen
    assert any(
        example.tokens[example.intensifier_index :][:3] == ("あまり", "良", "く") for example in ja
    )
