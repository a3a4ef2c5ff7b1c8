"""Text tokenizers: characters and BPE, behind the course's one tokenizer interface (notebook 01).

Every tokenizer in the course, text or speech, answers the same questions: `encode(x) -> ids`,
`decode(ids) -> x`, `vocab_size`. The text LM of notebook 01 reads characters (the corpus has a
small closed vocabulary, so characters are short enough and never out of vocabulary); `BpeTokenizer`
is the same interface over a byte-pair encoding trained with Hugging Face `tokenizers`, for
comparison.

>>> tok = CharTokenizer.from_texts(["the cow is old."])
>>> tok.decode(tok.encode("the cow"))
'the cow'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SPECIALS = ("<pad>", "<bos>", "<eos>")  # ids 0, 1, 2 in every text tokenizer


class CharTokenizer:
    """One id per character, after the special tokens <pad>=0, <bos>=1, <eos>=2."""

    def __init__(self, chars: Iterable[str]) -> None:
        chars = sorted(set(chars))
        if not chars:
            raise ValueError("a CharTokenizer needs at least one character.")
        self.itos = list(SPECIALS) + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """The characters of `texts` become the vocabulary."""
        chars: set[str] = set()
        for t in texts:
            chars.update(t)
        return cls(chars)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Characters -> ids; a character outside the vocabulary is an error that names it."""
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a string, not {type(text).__name__}.")
        unknown = sorted({c for c in text if c not in self.stoi})
        if unknown:
            raise ValueError(f"characters {unknown} are not in this tokenizer's vocabulary "
                             f"({''.join(self.itos[3:])!r}); normalise the text or rebuild the tokenizer.")
        return ([self.bos_id] if bos else []) + [self.stoi[c] for c in text] + ([self.eos_id] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text; special tokens are dropped."""
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary (size {self.vocab_size}).")
        return "".join(self.itos[int(i)] for i in ids if int(i) >= len(SPECIALS))

    def state(self) -> dict:
        return {"kind": "char", "chars": self.itos[len(SPECIALS):]}


class BpeTokenizer:
    """Byte-pair encoding trained with Hugging Face `tokenizers`; same interface as CharTokenizer."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self.pad_id, self.bos_id, self.eos_id = (tokenizer.token_to_id(s) for s in SPECIALS)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 512) -> BpeTokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a string, not {type(text).__name__}.")
        return ([self.bos_id] if bos else []) + self.tok.encode(text).ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary (size {self.vocab_size}).")
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)
