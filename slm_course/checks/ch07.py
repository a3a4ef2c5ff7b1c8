"""Checks for notebook 07's exercises (solutions/07_spiritlm_exercises.ipynb)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import _fail, _ok
from .quiz import Question

__all__ = ["check_merge_pitch_units", "check_next_word_margin", "check_prompt_length_answer", "check_random_spans"]


def _toy_text():
    from slm_course.text import CharTokenizer

    return CharTokenizer("abcdefghijklmnopqrstuvwxyz ")


def _spans_of(got: object, call: str) -> list[tuple[str, int]]:
    """The learner's spans as ``[(modality, n), ...]``, or a message that says what to return."""
    if got is None:
        _fail(f"{call} returned None: end your function with return spans")
    if isinstance(got, str | bytes) or not isinstance(got, list | tuple):
        _fail(f"{call} returned {type(got).__name__}; return a list of (modality, n) pairs, "
              "e.g. [('text', 2), ('speech', 1)]")
    spans = []
    for span in got:
        if isinstance(span, str) or not isinstance(span, list | tuple) or len(span) != 2:
            _fail(f"{call} returned {got!r}; each span is one (modality, n) pair, e.g. ('text', 2)")
        modality, n = span
        if modality not in ("text", "speech"):
            _fail(f"{call} returned {got!r}: a span's modality is 'text' or 'speech', got {modality!r}")
        try:
            whole = not isinstance(n, bool) and float(n).is_integer()
        except (TypeError, ValueError):
            whole = False
        if not whole:
            _fail(f"{call} returned {got!r}: a span's length is a whole number of words, got {n!r}")
        spans.append((modality, int(n)))
    return spans


def check_random_spans(fn: Callable[..., list]) -> None:
    """``fn(n_words, rng, lengths=(lo, hi))`` -> alternating ``(modality, n)`` spans covering the words in order.

    Tested by its properties over many draws (not against :func:`slm_course.spiritlm.random_spans`' exact draws):
    the spans cover the words, alternate, are ``lo..hi`` words long (the last may be shorter), start with either
    modality, and come from ``rng`` alone.
    """
    import numpy as np

    first = fn(6, np.random.default_rng(0))  # the default lengths, (1, 3)
    _spans_of(first, "random_spans(6, rng)")
    again = [[_spans_of(fn(30, np.random.default_rng(seed), (1, 3)), "random_spans(30, rng, (1, 3))")
              for seed in range(5)] for _ in range(2)]
    if again[0] != again[1]:
        k = next(k for k in range(5) if again[0][k] != again[1][k])
        _fail(f"two generators seeded alike gave {again[0][k]} and {again[1][k]}: draw from rng, the generator passed "
              "in (not np.random or random), so that the same seed gives the same spans, as the same step gives the "
              "same training batch")
    seeds = range(200)
    for n_words, lengths in ((6, (1, 3)), (12, (2, 4)), (1, (1, 3)), (30, (1, 1)), (7, (3, 3))):
        lo, hi = lengths
        call = f"random_spans({n_words}, rng, lengths={lengths})"
        firsts, drawn, outputs = [], [], set()
        for seed in seeds:
            spans = _spans_of(fn(n_words, np.random.default_rng(seed), lengths), call)
            said = f"{call} returned {spans}"
            if not spans:
                _fail(f"{said}: a sentence of {n_words} words needs at least one span")
            covered = sum(n for _, n in spans)
            if any(n < 1 for _, n in spans):
                _fail(f"{said}: every span holds at least one word")
            if covered > n_words:
                _fail(f"{said}: the spans cover {covered} words, the sentence has {n_words}; the last span takes "
                      "only the words left (min(left, drawn))")
            if covered < n_words:
                _fail(f"{said}: the spans cover {covered} of the {n_words} words; keep drawing spans until every "
                      "word is in one")
            same = next((a for (a, _), (b, _) in zip(spans, spans[1:]) if a == b), None)
            if same:
                _fail(f"{said}: two {same} spans in a row; the modalities alternate (two spans of one modality "
                      "side by side are one span, with a marker too many)")
            if any(n > hi for _, n in spans):
                _fail(f"{said}: a span has at most lengths[1] = {hi} words (lengths is (lo, hi): use the argument, "
                      "not fixed numbers)")
            if any(n < lo for _, n in spans[:-1]):
                _fail(f"{said}: every span but the last has at least lengths[0] = {lo} words (lengths is (lo, hi): "
                      "use the argument, not fixed numbers; only the last span may be cut short, by the sentence's "
                      "end)")
            firsts.append(spans[0][0])
            drawn += [n for _, n in spans[:-1]]
            outputs.add(tuple(spans))
        if len(outputs) == 1 and n_words > 1:
            _fail(f"{call} gave {sorted(outputs)[0]} for every one of {len(seeds)} seeds: draw the modality and the "
                  "lengths from rng")
        share_text = firsts.count("text") / len(firsts)
        if share_text in (0, 1):
            _fail(f"{call} always starts with {firsts[0]}: draw the first modality at random ('text' if "
                  "rng.random() < 0.5 else 'speech'), as SpiRit-LM starts a sequence with either")
        if not 0.35 <= share_text <= 0.65:
            _fail(f"{call} starts with text in {share_text:.0%} of {len(seeds)} draws: draw the first modality with "
                  "equal odds")
        if lo < hi and drawn:
            counts = {n: drawn.count(n) for n in range(lo, hi + 1)}
            if counts[hi] == 0:
                _fail(f"{call}: in {len(seeds)} draws no span but the last ever has {hi} words (lengths {counts}): "
                      f"numpy's rng.integers(a, b) excludes b; draw rng.integers(lo, hi + 1)")
            if counts[lo] == 0:
                _fail(f"{call}: in {len(seeds)} draws no span ever has {lo} words (lengths {counts}): draw the "
                      "length from lo to hi, both included")
            share = {n: c / len(drawn) for n, c in counts.items()}
            if any(not 0.5 / len(counts) <= v <= 1.5 / len(counts) for v in share.values()):
                _fail(f"{call}: the lengths of the spans but the last come {counts} in {len(seeds)} draws; draw each "
                      f"length with equal odds from {lo} to {hi}")
    _ok("random_spans is right: the spans cover the words in order, alternate from a random first modality, "
        "are lo..hi words long (the last cut by the sentence's end), and come from rng alone")


def _margin_ref(lm, prefix: str, true_units: torch.Tensor, other_units: torch.Tensor, marker: bool = False,
                eos: bool = False, shift: int = 1, probs: bool = False, bos: bool = True,
                switch: bool = True) -> float:
    """The margin; ``marker``/``eos``/``shift=0``/``probs``/``bos=False``/``switch=False`` give the usual mistakes
    (marker scored, <eos> scored, no shift, probabilities averaged in place of log-probabilities, no <bos>, no
    [SPEECH] marker at all)."""
    def mean_logp(units: torch.Tensor) -> float:
        prompt = [1] * bos + [*lm.text(prefix)] + ([] if marker or not switch else [lm.vocab.speech_marker])
        cont = (lm.speech(units) if marker else lm.vocab.units(units).tolist()) + ([2] if eos else [])
        ids = torch.tensor(prompt + cont)
        with torch.no_grad():
            logits = lm.model.logits(ids[None])[0]
            logp = logits.softmax(-1) if probs else logits.log_softmax(-1)
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
    # An untied head: with the embeddings as the head, a token's logit at its own position dominates, and a margin
    # read there (the no-shift mistake) would be about 0, like a constant answer
    model = LM(LMConfig(vocab_size=vocab.size, d_model=32, n_layers=2, n_heads=2, max_len=64, tie_weights=False)).eval()
    with torch.no_grad():  # a random model's log-probabilities are nearly flat: spread them so that mistakes show
        model.tok_emb[0].weight.normal_(0, 1.0)
        model.heads[0].weight.normal_(0, 1.0)
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
        if got is None:
            _fail("your function returned None: end it with return (the true word's mean log p minus the other's)")
        if isinstance(got, torch.Tensor) and got.numel() != 1:
            _fail(f"return one number (the margin), got a tensor of shape {tuple(got.shape)}")
        try:
            got = float(got)
        except (TypeError, ValueError):
            _fail(f"return one number (the margin), got {type(got).__name__}")
        if abs(got - want) < 1e-4:
            continue
        said = f"for prefix {prefix!r} and units {a.tolist()} vs {b.tolist()} you returned {got:.4f}, expected {want:.4f}"
        if abs(got) < 1e-3:
            _fail(f"{said}: your margin is 0. Take log_softmax of lm.model.logits (log-probabilities), average the "
                  "log p of each candidate's units, and return the true word's average minus the other's")
        mistakes = [
            (-want, "that is the margin the wrong way round: true word minus other word"),
            (_margin_ref(lm, prefix, a, b, probs=True), "you averaged probabilities (softmax): average "
             "log-probabilities (log_softmax), as every score of the chapter does"),
            (_margin_ref(lm, prefix, a, b, marker=True), "the margin with the [SPEECH] marker scored: the marker that "
             "switches modality belongs to the prompt; average over the units only"),
            (_margin_ref(lm, prefix, a, b, eos=True), "the margin with <eos> scored after the units: a next word is "
             "not the end of the sentence; score the units only (the story endings of the chapter end with <eos>, "
             "words do not)"),
            (_margin_ref(lm, prefix, a, b, shift=0), "the margin read at the units' own positions: the logits at "
             "position t predict token t + 1, so unit t is scored by the logits one position before it"),
            (_margin_ref(lm, prefix, a, b, bos=False), "the prompt has no <bos> (id 1): every sequence the model "
             "trained on starts with it, and lm.score puts it first too"),
            (_margin_ref(lm, prefix, a, b, switch=False), "no [SPEECH] marker between the text and the units: the "
             "model learned that units follow the marker (lm.vocab.speech_marker ends the prompt)"),
        ]
        switch = [*lm.text(prefix), lm.vocab.speech_marker]
        sa, _ = lm.score([switch], [lm.vocab.units(a).tolist()])
        sb, _ = lm.score([switch], [lm.vocab.units(b).tolist()])
        mistakes.append((float(sa[0] - sb[0]), "the difference of the summed scores: divide each by its number of "
                         "tokens first (token-normalised), or the longer word loses for its length alone"))
        for ref, why in mistakes:
            if abs(ref) > 1e-3 and abs(got - ref) < 1e-4:  # a reference near 0 would name the wrong mistake
                _fail(f"{said}: {why}")
        _fail(f"{said}: build <bos> + lm.text(prefix) + [SPEECH] + the units (lm.vocab.units), take log_softmax of "
              "lm.model.logits, and average log p of the units (each predicted from the position before it)")
    _ok("next_word_margin is correct: the token-normalised log-likelihood of the true word minus the other's")


def _merge_variant(units, durations, pitch, pitch_times, n_units, frame_rate, dtype=torch.float64, rounded=True,
                   at_end=False, pitch_first=True, offset=True, per_second=True) -> list[int]:
    """The merge, or one of its usual mistakes (float32 times, no rounding, units timed at their end, ...)."""
    ends = torch.cumsum(durations, 0).to(dtype)
    starts = (ends if at_end else ends - durations.to(dtype)) / (frame_rate if per_second else 1)
    key = (lambda t: round(t, 9)) if rounded else float
    timed = [(key(t), 0 if pitch_first else 2, k, (n_units if offset else 0) + p)
             for k, (p, t) in enumerate(zip(pitch, pitch_times))]
    timed += [(key(t), 1, k, int(u)) for k, (u, t) in enumerate(zip(units.tolist(), starts.tolist()))]
    return [i for *_, i in sorted(timed)]


_MERGE_MISTAKES = (
    (dict(pitch_first=False), "at equal times the pitch token comes first (it describes the units that follow it): "
     "sort a pitch token before a unit of the same time"),
    (dict(at_end=True), "a unit's time is its start, not its end: the sum of the durations before it (cumsum minus "
     "its own duration), divided by frame_rate"),
    (dict(dtype=torch.float32), "compute the times in float64 (.double()): in float32 4 / 50 is 0.0799999982, "
     "just before a pitch token at 0.08"),
    (dict(dtype=torch.float32, rounded=False), "compute the times in float64 (.double()): in float32 4 / 50 is "
     "0.0799999982, just before a pitch token at 0.08"),
    (dict(rounded=False), "compare times rounded to the nanosecond (round(t, 9)): 280 x 0.01 s is "
     "2.8000000000000003 in float64, 140 / 50 is 2.8, and the two are one time"),
    (dict(per_second=False), "divide the units' frames by frame_rate: the pitch times are in seconds"),
    (dict(offset=False), "pitch token p is id n_units + p, after the units' ids"),
)


def _ids_of(got: object, call: str) -> list[int]:
    """The learner's merged ids as a flat list of ints, or a message that says what to return."""
    if got is None:
        _fail(f"{call} returned None: end your function with return (the merged ids, a list)")
    if isinstance(got, torch.Tensor):
        got = got.tolist()
    try:
        return [int(x) for x in got]
    except (TypeError, ValueError, RuntimeError):
        _fail(f"{call} returned {str(got)[:80]} ({type(got).__name__}); return one flat list of ids, in time order")


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
    args = [(units, durations, pitch, times, 10, 50.0) for _, units, durations, pitch, times in cases]
    expected = [want(*a) for a in args]
    gots = [_ids_of(fn(u.clone(), d.clone(), list(p), list(t), n, r), "merge_pitch_units") for u, d, p, t, n, r in args]
    if gots == expected:
        _ok("merge is correct: one stream in time order, each pitch token just before the units it describes")
        return
    k = next(k for k in range(len(cases)) if gots[k] != expected[k])
    units, pitch = cases[k][1], cases[k][3]
    got = gots[k]
    said = f"for {cases[k][0]} you returned {got}, expected {expected[k]}"
    if len(got) != len(expected[k]):
        _fail(f"{said}: every unit and every pitch token appears once (merging sorts, it drops nothing)")
    if sorted(got) == sorted(expected[k]) and [g for g in got if g < 10] != units.tolist():
        _fail(f"{said}: keep the units in their order; only the pitch tokens move in between them")
    for kwargs, why in _MERGE_MISTAKES:
        if [_merge_variant(*a, **kwargs) for a in args] == gots:
            _fail(f"{said}: {why}")
    if [g for g in got if g < 10] == units.tolist() and [g - 10 for g in got if g >= 10] == list(pitch):
        _fail(f"{said}: each stream is in order, but the two are not merged by time: sort all tokens by their "
              "times (a unit's is its start, in seconds), a pitch token first at a tie")
    _fail(f"{said}: a unit starts at the sum of the durations before it, divided by the frame rate (in float64: "
          "in float32 4 / 50 falls just before 0.08); sort all tokens by time, a pitch token before a unit at "
          "the same time, comparing times rounded to the nanosecond (280 x 0.01 s is 2.8000000000000003)")


def check_prompt_length_answer(explanation: object, gain: object, s2t: dict) -> None:
    """Exercise 3: ``gain``, the S->T accuracy with the whole sentence spoken minus with one word (``s2t`` maps
    k -> accuracy, k = 1, 2, 3, "all"), then the written answer (:func:`slm_course.checks.check_explanation`)."""
    from .quiz import check_explanation

    if not isinstance(s2t, dict) or not {1, "all"} <= set(s2t):
        _fail("pass the accuracies of the table, s2t (k -> S->T accuracy, for k = 1, 2, 3 and 'all'): run the cell "
              "above first")
    if gain is None or gain is ...:
        _fail("gain is not set: the S->T accuracy with the whole sentence spoken minus with one word, from your table")
    if isinstance(gain, torch.Tensor) and gain.numel() == 1:
        gain = gain.item()
    try:
        gain = float(gain)
    except (TypeError, ValueError):
        _fail(f"gain must be one number, got {type(gain).__name__}: the S->T accuracy at k = all minus at k = 1")
    want = float(s2t["all"]) - float(s2t[1])
    if abs(gain - want) > 0.015:
        said = f"gain {gain:g} is not what your table says"
        if abs(gain + want) <= 0.015:
            _fail(f"{said}: that is the gain the wrong way round: the whole sentence's accuracy minus one word's")
        if abs(gain / 100 - want) <= 0.015:
            _fail(f"{said}: give it as a share of pairs, as the table does (0.10, not 10)")
        _fail(f"{said}: read the S->T column (a spoken prompt, written endings; not T->T or S->S): the accuracy "
              "at k = all minus the accuracy at k = 1, gain = s2t['all'] - s2t[1]")
    # why: the words before the last constrain it (what agrees with what across the sentence)
    check_explanation(explanation, mentions=("more|rise|higher|increase|grow|help|better|improve",
                                             "topic|agree|subject|verb|object|noun|article|determiner|context"))


QUIZ = (
    Question(
        "Another text tokenizer has 30 ids (<pad>, <bos>, <eos> and 27 characters) and the speech units are "
        "K = 100. In a vocabulary laid out like the chapter's (the text ids, then [TEXT] and [SPEECH], then the "
        "units), what id does unit 7 get?",
        answer=30 + 2 + 7,
        tolerance=0,
        hint="notebook 07, section 1: the text ids first, then the two markers, then the units (the chapter's "
             "tokenizer has 29 ids, this one 30)",
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
