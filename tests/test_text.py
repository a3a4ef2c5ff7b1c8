"""Text tokenizers share one interface; BPE round-trips like characters do."""

from __future__ import annotations

import pytest

from slm_course.text import BpeTokenizer, CharTokenizer

TEXTS = ["the cook cuts the cake", "two plus three is five", "where is the red ball"]


@pytest.mark.parametrize("make", [lambda: CharTokenizer.from_texts(TEXTS), lambda: BpeTokenizer.train(TEXTS, 300)])
def test_round_trip_and_specials(make):
    tok = make()
    for t in TEXTS:
        ids = tok.encode(t, bos=True, eos=True)
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == t
        assert all(0 <= i < tok.vocab_size for i in ids)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size + 5])
    with pytest.raises(TypeError, match="string"):
        tok.encode(42)


def test_bpe_is_shorter_than_characters():
    char, bpe = CharTokenizer.from_texts(TEXTS), BpeTokenizer.train(TEXTS * 20, 300)
    assert sum(len(bpe.encode(t)) for t in TEXTS) < sum(len(char.encode(t)) for t in TEXTS)


def test_unknown_character_is_named():
    with pytest.raises(ValueError, match=r"\['Z'\]"):
        CharTokenizer.from_texts(TEXTS).encode("Zebra")
