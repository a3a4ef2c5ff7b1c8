"""Checks for notebook 07's exercises (solutions/07_spiritlm_exercises.ipynb)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import _fail, _ok
from .quiz import Question

__all__ = ["check_interleave", "check_merge_pitch_units", "check_next_word_margin"]


def _toy_text():
    from slm_course.text import CharTokenizer

    return CharTokenizer("abcdefghijklmnopqrstuvwxyz ")


def check_interleave(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(words, units, spans, vocab, encode_text)`` -> the interleaved ids, ``<bos>`` ... ``<eos>``."""
    from slm_course.spiritlm import SpiritVocab, interleave

    tok = _toy_text()
    vocab = SpiritVocab(tok.vocab_size, 10)
    words = ["the", "cook", "cuts", "a", "cake"]
    units = [torch.tensor([1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6]), torch.tensor([7, 8]),
             torch.tensor([9, 0, 1])]
    cases = [
        ("text, speech, text", [("text", 2), ("speech", 2), ("text", 1)]),
        ("speech first", [("speech", 1), ("text", 3), ("speech", 1)]),
        ("all speech", [("speech", 5)]),
        ("all text", [("text", 5)]),
    ]
    for name, spans in cases:
        want = interleave(words, units, spans, vocab, tok.encode)
        got = fn(list(words), [u.clone() for u in units], list(spans), vocab, tok.encode)
        got = torch.as_tensor(got).long() if not isinstance(got, torch.Tensor) else got.long()
        if torch.equal(got, want):
            continue
        said = f"for spans {spans} ({name}) you returned {got.tolist()}, expected {want.tolist()}"
        if got.numel() and int(got[0]) != 1:
            _fail(f"{said}: the sequence starts with <bos> (id 1)")
        if got.numel() and int(got[-1]) != 2:
            _fail(f"{said}: the sequence ends with <eos> (id 2)")
        if not bool((got == vocab.text_marker).any() | (got == vocab.speech_marker).any()):
            _fail(f"{said}: open every span with its marker, vocab.text_marker ({vocab.text_marker}) or "
                  f"vocab.speech_marker ({vocab.speech_marker})")
        markers = int(((got == vocab.text_marker) | (got == vocab.speech_marker)).sum())
        if markers > len(spans):
            _fail(f"{said}: one marker per span, not per word ({markers} markers for {len(spans)} spans)")
        raw = [int(x) for u in units for x in u]
        if any(int(x) in raw for x in got[1:-1]) and not bool((got >= vocab.unit_offset).any()) and "speech" in name:
            _fail(f"{said}: a unit u is id vocab.unit_offset + u ({vocab.unit_offset} + u): use vocab.units(...)")
        text_ids = got[(got > 2) & (got < vocab.text_marker)]
        if len(text_ids) < len(want[(want > 2) & (want < vocab.text_marker)]):
            _fail(f"{said}: the words of one text span are joined by spaces (' '.join(...)) before encoding")
        _fail(f"{said}: walk the spans in order; a text span of n words adds [TEXT] + encode_text(' '.join(words)); "
              "a speech span adds [SPEECH] + the units of its n words, one after the other")
    _ok("interleave is correct: each span opens with its marker, text as characters, speech as shifted units")


def _margin_ref(lm, prefix: str, true_units: torch.Tensor, other_units: torch.Tensor, marker: bool = False,
                eos: bool = False, shift: int = 1) -> float:
    """The margin; ``marker``/``eos``/``shift=0`` give the usual mistakes (marker scored, <eos> scored, no shift)."""
    def mean_logp(units: torch.Tensor) -> float:
        prompt = [1, *lm.text(prefix)] + ([] if marker else [lm.vocab.speech_marker])
        cont = (lm.speech(units) if marker else lm.vocab.units(units).tolist()) + ([2] if eos else [])
        ids = torch.tensor(prompt + cont)
        with torch.no_grad():
            logp = lm.model.logits(ids[None])[0].log_softmax(-1)
        n = len(cont)
        picked = logp[len(ids) - n - shift : len(ids) - shift].gather(-1, ids[len(ids) - n :, None])
        return float(picked.mean())

    return mean_logp(true_units) - mean_logp(other_units)


def _toy_lm():
    from slm_course.lm import LM, LMConfig
    from slm_course.spiritlm import SpiritConfig, SpiritLM, SpiritVocab

    tok = _toy_text()
    vocab = SpiritVocab(tok.vocab_size, 12)
    torch.manual_seed(3)
    model = LM(LMConfig(vocab_size=vocab.size, d_model=32, n_layers=2, n_heads=2, max_len=64)).eval()
    with torch.no_grad():  # a random model's log-probabilities are nearly flat: spread them so that mistakes show
        model.tok_emb[0].weight.normal_(0, 1.0)
    return SpiritLM(model, vocab, tok, SpiritConfig(), {})


def check_next_word_margin(fn: Callable[..., float]) -> None:
    """``fn(lm, prefix, true_units, other_units)`` -> mean log p(true word's speech | prefix text) minus the same for
    the other word: the token-normalised margin of one T->S next-word pair (> 0: the model chose the true word)."""
    lm = _toy_lm()
    g = torch.Generator().manual_seed(4)
    cases = [("the cook cuts the", torch.randint(0, 12, (5,), generator=g), torch.randint(0, 12, (8,), generator=g)),
             ("a dog", torch.randint(0, 12, (3,), generator=g), torch.randint(0, 12, (3,), generator=g))]
    for prefix, a, b in cases:
        want = _margin_ref(lm, prefix, a, b)
        got = fn(lm, prefix, a.clone(), b.clone())
        try:
            got = float(got)
        except (TypeError, ValueError):
            _fail(f"return one number (the margin), got {type(got).__name__}")
        if abs(got - want) < 1e-4:
            continue
        said = f"for prefix {prefix!r} and units {a.tolist()} vs {b.tolist()} you returned {got:.4f}, expected {want:.4f}"
        if abs(got + want) < 1e-4:
            _fail(f"{said}: that is the margin the wrong way round: true word minus other word")
        if abs(got - _margin_ref(lm, prefix, a, b, marker=True)) < 1e-4:
            _fail(f"{said}, the margin with the [SPEECH] marker scored: the marker that switches modality belongs "
                  "to the prompt; average over the units only")
        if abs(got - _margin_ref(lm, prefix, a, b, eos=True)) < 1e-4:
            _fail(f"{said}, the margin with <eos> scored after the units: a next word is not the end of the "
                  "sentence; score the units only (the story endings of the chapter end with <eos>, words do not)")
        if abs(got - _margin_ref(lm, prefix, a, b, shift=0)) < 1e-4:
            _fail(f"{said}, the margin read at the units' own positions: the logits at position t predict token "
                  "t + 1, so unit t is scored by the logits one position before it")
        switch = [*lm.text(prefix), lm.vocab.speech_marker]
        sa, na = lm.score([switch], [lm.vocab.units(a).tolist()])
        sb, nb = lm.score([switch], [lm.vocab.units(b).tolist()])
        if abs(got - float(sa[0] - sb[0])) < 1e-4:
            _fail(f"{said}, the difference of the summed scores: divide each by its number of tokens first "
                  "(token-normalised), or the longer word loses for its length alone")
        _fail(f"{said}: build <bos> + lm.text(prefix) + [SPEECH] + the units (lm.vocab.units), take log_softmax of "
              "lm.model.logits, and average log p of the units (each predicted from the position before it)")
    _ok("next_word_margin is correct: the token-normalised log-likelihood of the true word minus the other's")


def check_merge_pitch_units(fn: Callable[..., list]) -> None:
    """``fn(units, durations, pitch, pitch_times, n_units, frame_rate)`` -> the merged ids, in time order."""
    from slm_course.expressive import merge_by_time

    def want(units, durations, pitch, pitch_times, n_units, frame_rate):
        starts = (torch.cumsum(durations, 0) - durations).double() / frame_rate
        return merge_by_time(([n_units + p for p in pitch], list(pitch_times)), (units.tolist(), starts.tolist()))[0]

    cases = [
        ("a pitch token at 0 s and one between units", torch.tensor([4, 7, 2]), torch.tensor([3, 2, 5]), [1, 3],
         [0.0, 0.08]),
        ("a pitch token at the same time as a unit", torch.tensor([4, 7, 2]), torch.tensor([4, 4, 4]), [0, 5],
         [0.02, 0.08]),
        ("no pitch tokens (an unvoiced stretch)", torch.tensor([1, 2]), torch.tensor([2, 2]), [], []),
        ("a pitch token after the last unit starts", torch.tensor([9, 8]), torch.tensor([1, 6]), [2, 4, 6],
         [0.0, 0.08, 0.16]),
        # 280 x 0.01 s is 2.8000000000000003 in float64, 140 / 50 is 2.8: one time to the nanosecond
        ("a pitch token at 2.8 s, when a unit starts", torch.tensor([4, 7, 2]), torch.tensor([140, 5, 5]), [3],
         [280 * 0.01]),
    ]
    for name, units, durations, pitch, times in cases:
        expected = want(units, durations, pitch, times, 10, 50.0)
        got = fn(units.clone(), durations.clone(), list(pitch), list(times), 10, 50.0)
        got = [int(x) for x in (got.tolist() if isinstance(got, torch.Tensor) else got)]
        if got == expected:
            continue
        said = f"for {name} you returned {got}, expected {expected}"
        if len(got) != len(expected):
            _fail(f"{said}: every unit and every pitch token appears once (merging sorts, it drops nothing)")
        if sorted(got) == sorted(expected) and [g for g in got if g < 10] != [e for e in expected if e < 10]:
            _fail(f"{said}: keep the units in their order; only the pitch tokens move in between them")
        if any(g in pitch and g < 10 for g in got if g not in units.tolist()):
            _fail(f"{said}: pitch token p is id n_units + p, after the units' ids")
        _fail(f"{said}: a unit starts at the sum of the durations before it, divided by the frame rate (in float64: "
              "in float32 4 / 50 falls just before 0.08); sort all tokens by time, a pitch token before a unit at "
              "the same time, comparing times rounded to the nanosecond (280 x 0.01 s is 2.8000000000000003)")
    _ok("merge is correct: one stream in time order, each pitch token just before the units it describes")


QUIZ = (
    Question(
        "A text tokenizer has 30 ids (<pad>, <bos>, <eos> and 27 characters) and the speech units are K = 100. In "
        "the chapter's vocabulary, what id does unit 7 get?",
        answer=30 + 2 + 7,
        tolerance=0,
        hint="notebook 07, section 1: the text ids first, then the two markers, then the units",
    ),
    Question(
        "The model trained on text and speech but never on interleaved sequences sits near chance on cross-modal "
        "next word. Why?",
        choices=(
            "a) it has too few parameters to hold both modalities",
            "b) no training sequence shows a word's units and its letters together, so nothing ties one to the other",
            "c) its text ability was lost when the units were added",
            "d) the held-out speakers' units differ from the training speakers', and without interleaved "
            "sequences the model never learns to map one voice's units onto another's",
        ),
        answer="b",
        hint="notebook 07, sections 4 and 5: what each model saw, and what a cross-modal pair asks",
    ),
    Question(
        "The warm start copies the text LM's body, its positions and which embeddings?",
        choices=("a) none: the vocabulary is new", "b) the units'",
                 "c) the characters' (the text ids keep their rows)", "d) all of them, markers included"),
        answer="c",
        hint="notebook 07, section 3: warm_start_text and the check that follows it",
    ),
    Question(
        "In a T->S pair the two endings are spoken words whose unit counts differ. Why does the chapter compare "
        "token-normalised scores rather than summed ones?",
        choices=(
            "a) every unit costs log-probability, so the summed score favours the shorter word whatever it means",
            "b) summed scores cannot be computed for speech, whose units have no fixed count per word, while a "
            "mean over tokens always can",
            "c) token-normalised scores are always higher",
            "d) to make speech and text scores equal",
        ),
        answer="a",
        hint="notebook 07, section 5 ('Four settings of one test'), and notebook 04, section 3 ('Summed or normalised?')",
    ),
    Question(
        "In the expressive stream, pitch and style tokens get a duration of 0 frames and the units keep theirs. "
        "What does that make possible?",
        choices=(
            "a) the LM trains faster on shorter sequences",
            "b) the durations still add up to the utterance's time, so the stream is cut at word times unchanged",
            "c) the vocoder ignores pitch",
            "d) nothing: it is a convention",
        ),
        answer="b",
        hint="notebook 07, section 8: the merged stream and word_units",
    ),
)
