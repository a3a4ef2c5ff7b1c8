"""Checks for notebook 04's exercises (solutions/04_gslm_exercises.ipynb)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._common import _fail, _ok
from .quiz import Question

__all__ = [
    "check_bigram_logprob",
    "check_bigram_table",
    "check_duration_table",
    "check_sample_durations",
    "check_windowed_logprob",
]


def _copies(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [x.clone() for x in tensors]


def _left_alone(name: str, var: str, before: list[torch.Tensor], after: list[torch.Tensor],
                max_dur: int | None = None) -> None:
    """Fail if the learner's function changed the tensors it was handed (``after``: the copies it got)."""
    changed = [(a, b) for a, b in zip(before, after) if not torch.equal(a, b)]
    if not changed:
        return
    a, b = changed[0]
    same_shape = all(x.shape == y.shape for x, y in changed)
    for shift in (3, 1, -1):
        if same_shape and all(torch.equal(y, x + shift) for x, y in changed):
            op, sign = ("+=", "+") if shift > 0 else ("-=", "-")
            _fail(f"your function changed {name} in place ({var} {op} {abs(shift)}); build a new tensor "
                  f"({var} {sign} {abs(shift)}): the caller's tensors must stay as they were, or a second call sees "
                  "them shifted again, and the notebook's data is spoilt for the cells below")
    if max_dur is not None and same_shape and all(torch.equal(y, x.clamp(max=max_dur)) for x, y in changed):
        _fail(f"your function changed {name} in place (clamp_, or {var}[{var} > max_dur] = max_dur): the caller's "
              f"durations must stay as they were; use {var}.clamp(max=max_dur), which returns a new tensor")
    _fail(f"your function changed {name} in place ({a.tolist()[:8]} became {b.tolist()[:8]}); leave the tensors you "
          "are given as they are and build new ones (x + 1, not x += 1; x / s, not x /= s; x.clamp(...), not "
          "x.clamp_(...))")


def _bigram_counts(train: list[torch.Tensor], n: int, eos: bool = True, offset: int = 3,
                   packed: bool = False, bos: bool = True) -> torch.Tensor:
    counts = torch.zeros(n + 3, n + 3)
    for s in train:
        t = ([1] if bos else []) + (s + offset).tolist() + ([2] if eos else [])
        for a, b in zip(t[:-1], t[1:]):
            counts[a, b] += 1
    if packed:  # one stream <bos> ... <eos> <bos> ... (ulm.pack): an <eos> -> <bos> between neighbouring utterances
        counts[2, 1] += len(train) - 1
    return counts


def _bigram_ref(train: list[torch.Tensor], seq: torch.Tensor, n: int, alpha: float, eos: bool = True,
                offset: int = 3, bos: bool = True) -> float:
    """log p(seq) under an add-alpha bigram over n units + 3 specials; ``eos``/``offset``/``bos`` make the usual
    mistakes."""
    counts = _bigram_counts(train, n, eos, offset, bos=bos) + alpha
    logp = (counts / counts.sum(1, keepdim=True)).log()
    t = ([1] if bos else []) + (seq + offset).tolist() + ([2] if eos else [])
    return float(sum(logp[a, b] for a, b in zip(t[:-1], t[1:])))


def check_bigram_table(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(train_seqs, n_symbols, alpha)`` -> ``(n + 3, n + 3)``: row a holds log p(b | a), add-alpha smoothed."""
    from slm_course.ulm import NgramLM

    g = torch.Generator().manual_seed(3)
    train = [torch.randint(0, 5, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g) for _ in range(30)]
    for alpha in (1.0, 0.1):
        want = NgramLM(2, 5, alpha=alpha).fit(train).logp.double()
        call = f"bigram_table(train_seqs, 5, alpha={alpha})"
        given = _copies(train)
        got = fn(given, 5, alpha)
        _left_alone("train_seqs", "s", train, given)
        if not isinstance(got, torch.Tensor):
            _fail(f"{call} returned {type(got).__name__}; return the (8, 8) tensor of log p(b | a)")
        if tuple(got.shape) != (8, 8):
            _fail(f"{call} returned shape {tuple(got.shape)}; expected (8, 8): one row and one column per token, "
                  "the 5 units and the 3 specials (<pad>, <bos>, <eos>)")
        got = got.detach().double()
        if torch.allclose(got, want, atol=1e-5):
            continue
        if not torch.isfinite(got).all():
            _fail(f"{call} holds -inf or nan. An unseen bigram has count 0, and so has every bigram that starts "
                  "with <pad> or <eos> (nothing follows them): add alpha to every count before normalising")
        said = f"{call} differs from the expected table by up to {float((got - want).abs().max()):.3g}"
        if (got >= 0).all() and torch.allclose(got.log(), want, atol=1e-5):
            _fail(f"{said}: those are probabilities; return their log")
        counts = _bigram_counts(train, 5) + alpha
        if torch.allclose(got, (counts / counts.sum(0, keepdim=True)).log().double(), atol=1e-5):
            _fail(f"{said}: you normalised each column; row a must be the distribution p(. | a) of the token "
                  "after a, so divide each row by its own sum (dim=1). (A column-normalised table gives whole "
                  "<bos> ... <eos> sequences the same log p as the right one, which is why the score alone "
                  "cannot tell.)")
        variants = {
            "the table without <eos> (every sequence ends with the bigram (last unit, <eos>))":
                _bigram_counts(train, 5, eos=False) + alpha,
            "the table without the +3 offset of the units (unit u is token u + 3: 0-2 are <pad>, <bos>, <eos>)":
                _bigram_counts(train, 5, offset=0) + alpha,
            "the table with units at u + 2: unit u is token u + 3 (0, 1 and 2 are <pad>, <bos> and <eos>)":
                _bigram_counts(train, 5, offset=2) + alpha,
            "the table without <bos> (every sequence starts with the bigram (<bos>, first unit))":
                _bigram_counts(train, 5, bos=False) + alpha,
            "counted across utterances (<eos> -> <bos>): the packed stream of ulm.pack joins the utterances, so it "
            "adds a bigram from each one's <eos> to the next one's <bos>; count each <bos> seq <eos> on its own":
                _bigram_counts(train, 5, packed=True) + alpha,
        }
        for what, c in variants.items():
            if torch.allclose(got, (c / c.sum(1, keepdim=True)).log().double(), atol=1e-4):
                _fail(f"{said}: yours is {what}")
        if torch.allclose(got.T, want, atol=1e-5):
            _fail(f"{said}: yours is transposed: row a is the token before, column b the token after (table[a, b] "
                  "= log p(b | a))")
        if torch.allclose(got, want / math.log(2), atol=1e-5):
            _fail(f"{said}: those are log2 probabilities; use the natural log (torch.log), as LM.score does")
        _fail(f"{said}: count bigrams over <bos> seq <eos> for every training sequence, add alpha to each of "
              "the 8x8 counts, divide each row by its sum and take the log")
    _ok("bigram_table is correct: row a is log p(. | a), add-alpha smoothed, as ulm.NgramLM(2, ...)")


def check_bigram_logprob(fn: Callable[..., float]) -> None:
    """``fn(train_seqs, seq, n_symbols, alpha)`` -> log p(seq) under an add-alpha bigram with <bos>/<eos>."""
    from slm_course.ulm import NgramLM

    g = torch.Generator().manual_seed(2)
    train = [torch.randint(0, 5, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g) for _ in range(30)]
    cases = [("a short sequence", torch.tensor([0, 1, 2])), ("one unit", torch.tensor([4])),
             ("a longer sequence", torch.randint(0, 5, (12,), generator=g))]
    for alpha in (1.0, 0.1):
        ref = NgramLM(2, 5, alpha=alpha).fit(train)
        for name, seq in cases:
            want = float(ref.score([seq])[0][0])
            given, given_seq = _copies(train), seq.clone()
            got = float(fn(given, given_seq, 5, alpha))
            _left_alone("train_seqs", "s", train, given)
            _left_alone("seq", "seq", [seq], [given_seq])
            if abs(got - want) < 1e-4:
                continue
            said = f"for {name} {seq.tolist()} with alpha={alpha} you returned {got:.4f}, expected {want:.4f}"
            if math.isinf(got):
                _fail(f"{said}: an unseen bigram has probability 0 without smoothing; add alpha to every count")
            if got > 0:
                _fail(f"{said}: a log-probability is never above 0; return the sum of log p, not a probability")
            if abs(got - math.exp(want)) < 1e-4:
                _fail(f"{said}: that is the probability; return its log (the sum of log p over the transitions)")
            if abs(got - want / (len(seq) + 1)) < 1e-4:
                _fail(f"{said}: that is the mean log p over the {len(seq) + 1} transitions; return their sum")
            variants = {
                "the score without <eos> (in training and in scoring)": _bigram_ref(train, seq, 5, alpha, eos=False),
                "the score without <bos> (in training and in scoring: every sequence starts with the bigram "
                "(<bos>, first unit))": _bigram_ref(train, seq, 5, alpha, bos=False),
                "the score without the +3 offset of the units (unit u must be token u + 3: 0-2 are <pad>, <bos>, "
                "<eos>)": _bigram_ref(train, seq, 5, alpha, offset=0),
                "the score with alpha left out (add alpha to every count before normalising)":
                    _bigram_ref(train, seq, 5, 1e-9),
            }
            for what, value in variants.items():
                if abs(got - value) < 1e-4:
                    _fail(f"{said}: your value equals {what}")
            _fail(
                f"{said}: count bigrams over <bos> seq <eos> for every training sequence, add alpha to each of the "
                f"{5 + 3}x{5 + 3} counts (units + 3 specials), normalise each row, and sum log p over <bos> seq <eos>"
            )
    _ok("bigram_logprob is correct: add-alpha bigram with <bos>/<eos>, as ulm.NgramLM(2, ...)")


def _duration_table_ref(ids: list[torch.Tensor], durations: list[torch.Tensor], n_units: int, max_dur: int) -> torch.Tensor:
    counts = torch.zeros(n_units, max_dur)
    for u, d in zip(ids, durations):
        for a, b in zip(u.tolist(), d.tolist()):
            counts[a, min(b, max_dur) - 1] += 1
    counts[counts.sum(1) == 0, 0] = 1  # a unit never seen lasts one frame
    return counts / counts.sum(1, keepdim=True)


def check_duration_table(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(ids, durations, n_units, max_dur)`` -> ``(n_units, max_dur)``: row u is p(duration d + 1 | unit u)."""
    ids = [torch.tensor([0, 2, 0, 1]), torch.tensor([2, 0])]
    durs = [torch.tensor([1, 3, 1, 9]), torch.tensor([2, 2])]
    cases = [("a small example with units 0-2 (unit 3 never seen) and max_dur=4", ids, durs, 4, 4)]
    g = torch.Generator().manual_seed(3)
    rand_ids = [torch.randint(0, 6, (int(n),), generator=g) for n in torch.randint(1, 12, (20,), generator=g)]
    rand_durs = [torch.randint(1, 8, (len(u),), generator=g) for u in rand_ids]
    cases.append(("20 random sequences of 6 units, max_dur=5", rand_ids, rand_durs, 6, 5))
    for name, i, d, n_units, max_dur in cases:
        want = _duration_table_ref(i, d, n_units, max_dur)
        given_ids, given_durs = _copies(i), _copies(d)
        got = fn(given_ids, given_durs, n_units, max_dur)
        _left_alone("ids", "u", i, given_ids)
        _left_alone("durations", "d", d, given_durs, max_dur=max_dur)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (n_units, max_dur):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            _fail(f"for {name} you returned {shape}; expected a tensor of shape ({n_units}, {max_dur}): "
                  "one row per unit, one column per duration 1..max_dur")
        got = got.float()
        if torch.allclose(got, want, atol=1e-5):
            continue
        bad_rows = (~torch.isclose(got, want, atol=1e-5)).any(dim=1) | torch.isnan(got).any(dim=1)
        row = int(bad_rows.nonzero()[0])  # the first row that is wrong
        said = f"for {name} row {row} came back {[round(x, 3) for x in got[row].tolist()]}, expected " \
               f"{[round(x, 3) for x in want[row].tolist()]}"
        if torch.isnan(got).any():
            _fail(f"{said}: a row is NaN; a unit never seen has no counts to divide by: give it all its mass at "
                  "duration 1 (column 0)")
        if not torch.allclose(got.sum(1), torch.ones(n_units), atol=1e-4):
            _fail(f"{said}: each row must sum to 1 (divide the counts by the row's total); an unseen unit gets 1 "
                  "at duration 1")
        seen = torch.zeros(n_units, dtype=torch.bool)
        seen[torch.cat(i)] = True
        if bool((got[seen, 0] == 0).all()) and bool((want[seen, 0] > 0).any()):
            _fail(f"{said}: column d - 1 holds duration d (durations start at 1 frame, so column 0 is 1 frame)")
        _fail(f"{said}: count, for each unit, how often it lasted 1, 2, ... frames (longer than max_dur counts as "
              "max_dur), then normalise each row")
    _ok("duration_table is correct: one distribution over durations per unit, unseen units last one frame")


def check_sample_durations(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(units, table, generator)`` -> ``(N,)`` durations in frames, each drawn from ``table[unit]``."""
    fixed = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])  # unit 0 lasts 1, unit 1 lasts 3, unit 2 lasts 2
    units = torch.tensor([0, 1, 2, 1, 0])
    given_units, given_table = units.clone(), fixed.clone()
    got = fn(given_units, given_table, torch.Generator().manual_seed(0))
    _left_alone("units", "units", [units], [given_units])
    _left_alone("table", "table", [fixed], [given_table])
    if not isinstance(got, torch.Tensor) or got.shape != units.shape:
        _fail(f"return a tensor of one duration per unit, shape {tuple(units.shape)}; got "
              f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    want = torch.tensor([1, 3, 2, 3, 1])
    if not torch.equal(got.long(), want):
        said = f"with a table where unit 0 always lasts 1 frame, unit 1 3 and unit 2 2, units {units.tolist()} " \
               f"gave {got.tolist()}, expected {want.tolist()}"
        if torch.equal(got.long(), want - 1):
            _fail(f"{said}: column d - 1 of the table is duration d; add 1 to the index you draw")
        _fail(f"{said}: draw row table[u] for each unit u (torch.multinomial(table[units], 1, generator=generator))")
    if got.dtype not in (torch.long, torch.int64, torch.int32):
        _fail(f"return integer durations (frames), got dtype {got.dtype}: use .long()")
    mixed = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    many = torch.tensor([0, 1]).repeat(10000)
    draws = fn(many.clone(), mixed.clone(), torch.Generator().manual_seed(1)).long()
    again = fn(many.clone(), mixed.clone(), torch.Generator().manual_seed(1)).long()
    if not torch.equal(draws, again):
        _fail("two calls with generators seeded the same gave different durations: draw with the generator you are "
              "given (generator=generator), so that a continuation can be reproduced")
    alike = {u: sorted(set(draws[many == u].tolist())) for u in (0, 1)}
    if all(len(d) == 1 for d in alike.values()):  # every occurrence of a unit got one and the same duration
        frames = {u: f"{d[0]} frame" + ("s" if d[0] != 1 else "") for u, d in alike.items()}
        said = (f"over 10,000 occurrences each, unit 0 lasted {frames[0]} and unit 1 {frames[1]} every time, though "
                "the table gives unit 0 1 or 2 frames (half the time each) and unit 1 1, 2 or 3 frames (0.1, 0.2 "
                "and 0.7 of the time)")
        seeds = range(2, 8)  # a draw shared by the positions still changes with the seed, sooner or later
        if all(torch.equal(fn(many.clone(), mixed.clone(), torch.Generator().manual_seed(s)).long(), draws)
               for s in seeds):
            _fail(f"{said}: you return the same duration every time: draw at random with "
                  "torch.multinomial(..., generator=generator). The most likely duration, or a rounded mean, gives "
                  "every occurrence of a unit one length, the mechanical rhythm this exercise is meant to remove")
        _fail(f"{said}, and another seed gives other durations: you made one draw per call and shared it between "
              "the positions; draw a duration for every position, each from its unit's own row "
              "(torch.multinomial(table[units], 1, generator=generator) draws one per row)")
    for u in (0, 1):
        freq = torch.bincount(draws[many == u] - 1, minlength=3)[:3].float() / 10000
        if not torch.allclose(freq, mixed[u], atol=0.02):
            _fail(f"over 10,000 draws of unit {u}, durations 1/2/3 came {[round(x, 3) for x in freq.tolist()]} of the "
                  f"time; the table says {mixed[u].tolist()}: sample from each unit's own row, not one shared draw")
    _ok("sample_durations is correct: each unit's duration is drawn from its own row, reproducibly")


def _windowed_ref(model, tokens: torch.Tensor, k: int) -> float:
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(tokens)):
            ctx = tokens[max(0, t - k) : t]
            total += float(model.logits(ctx[None])[0, -1].log_softmax(-1)[tokens[t]])
    return total


def _windowed_padded(model, tokens: torch.Tensor, k: int, left: bool = False, last_column: bool = False) -> float:
    """The batched score with the usual slips: windows left-padded, or every window read at its last column."""
    T = len(tokens)
    K = min(k, T - 1)
    ctx = torch.zeros(T - 1, K, dtype=torch.long)
    last = torch.zeros(T - 1, dtype=torch.long)
    for t in range(1, T):
        w = tokens[max(0, t - k) : t]
        if left:
            ctx[t - 1, K - len(w) :] = w
        else:
            ctx[t - 1, : len(w)] = w
        last[t - 1] = K - 1 if left or last_column else len(w) - 1
    with torch.no_grad():
        logp = model.logits(ctx).log_softmax(-1)[torch.arange(T - 1), last]
    return float(logp.gather(-1, tokens[1:, None]).sum())


def check_windowed_logprob(fn: Callable[..., float]) -> None:
    """``fn(model, tokens, k)`` -> summed log p(tokens[t] | tokens[t-k:t]) for t = 1 .. T-1 (at most k tokens back)."""
    from slm_course.lm import LM, LMConfig

    torch.manual_seed(0)
    model = LM(LMConfig(vocab_size=13, d_model=32, n_layers=2, n_heads=2, max_len=64)).eval()
    with torch.no_grad():  # make the positions matter: a random model's are too small to notice
        model.pos_emb.weight.normal_(0, 0.5)
    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 13, (20,), generator=g)
    full = float(model.score(tokens[None])[0][0])
    for k in (1, 3, 8, 19, 40):
        want = _windowed_ref(model, tokens, k)
        given = tokens.clone()
        got = fn(model, given, k)
        _left_alone("tokens", "tokens", [tokens], [given])
        try:
            got = float(got)
        except (TypeError, ValueError):
            _fail(f"return one number (the summed log-probability), got {type(got).__name__}")
        if abs(got - want) < 1e-3:
            continue
        said = f"for 20 tokens and k={k} you returned {got:.4f}, expected {want:.4f}"
        if k < 19 and abs(got - full) < 1e-3:
            _fail(f"{said}, which is the score with the whole context: token t may see only tokens t-k .. t-1, run "
                  "as a sequence of their own whose positions start at 0 (masking the older tokens, or replacing "
                  "them by <pad>, keeps each token at its position in the whole sequence, and this check's model "
                  "reads mostly positions)")
        for other in (k - 1, k + 1):
            if other >= 1 and abs(got - _windowed_ref(model, tokens, other)) < 1e-3:
                _fail(f"{said}, which is the score with a window of {other} tokens: token t is predicted from "
                      f"tokens[max(0, t - k) : t], exactly k tokens (fewer at the start)")
        if abs(got - _windowed_padded(model, tokens, k, left=True)) < 1e-3:
            _fail(f"{said}: you left-padded the windows. Causal attention looks left, so the <pad> tokens before a "
                  "short window are read as context, and its tokens sit at later positions than the model saw in "
                  "training; pad on the right, after the window's last token (no position looks right), and read "
                  "each window at its own last token, position len(window) - 1")
        if abs(got - _windowed_padded(model, tokens, k, last_column=True)) < 1e-3:
            _fail(f"{said}: you read every window's logits at the last column, {min(k, 19) - 1}; a window near the "
                  "start is shorter (token t has only t tokens before it), so its last column is <pad>, a position "
                  "after its own last token. Read each window at its own last token, position len(window) - 1")
        if k >= 19:
            _fail(f"{said}: with k >= T - 1 every token sees its whole past, so this must equal LM.score ({full:.4f})")
        _fail(f"{said}: for each t, run the model on tokens[max(0, t - k) : t] alone (its positions start at 0) "
              "and take the log-softmax of its last position's logits at tokens[t]")
    _ok("windowed_logprob is correct: each token is scored from at most k tokens before it")


QUIZ = (
    Question(
        "A unit LM is trained on 32 windows of 128 tokens. How many next-token predictions does one batch "
        "contribute to the loss?",
        answer=32 * 127,
        tolerance=0,
        hint="notebook 04, section 2: position t predicts token t + 1, and the last position has nothing to predict",
    ),
    Question(
        "A word and a non-word are said by the same voice; the non-word comes out as 10 more units than the word. "
        "A model that knows nothing gives every unit the same log-probability. Which score prefers the word?",
        choices=("a) the summed score only", "b) the token-normalised score only", "c) both", "d) neither"),
        answer="a",
        hint="notebook 04, section 3 ('Summed or normalised?'): what each extra unit costs in each score",
    ),
    Question(
        "The unit LM beats the bigram on the lexical and syntactic sets but sits near chance on the story set, "
        "while the text LM on ASR transcripts passes it. What does that say?",
        choices=(
            "a) the two endings of a story pair differ in length, so a token-normalised score cannot rank them "
            "and any speech LM lands near chance",
            "b) the held-out voices were never heard in training, so no model that reads their speech could "
            "pass; the text LM reads letters instead",
            "c) the recordings carry what the test asks, since a recogniser and a text LM read it out of them; "
            "this unit LM has not learnt it",
            "d) a topic is a matter of what words mean, which units of sound cannot carry in any amount of "
            "speech, so only a text model can pass",
        ),
        answer="c",
        hint="notebook 04, section 3: the story column of the table, and what the topline reads",
    ),
    Question(
        "Notebook 04 measures loops as the share of a continuation's unit 4-grams seen earlier in it; GSLM's "
        "auto-BLEU counts repeated word n-grams in an ASR transcript of the generated speech. Which continuation "
        "shows a loop on the unit measure that auto-BLEU would miss?",
        choices=(
            "a) one word said clearly again and again (\"crab crab crab crab\"), which the recogniser writes "
            "down right every time",
            "b) one stretch of sound that is no word, said again and again, which the recogniser leaves out of "
            "its transcript",
            "c) new sentences that all keep to one topic, each of them saying something new about it, in "
            "which no word and no phrase comes twice",
            "d) one sentence of the corpus said twice, word for word, which the recogniser transcribes the same "
            "way both times",
        ),
        answer="b",
        hint="notebook 04, section 4: what each measure counts, and what it is computed on",
    ),
)
