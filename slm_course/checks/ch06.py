"""Checks and quiz for notebook 06's exercises (solutions/06_audiolm_exercises.ipynb)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._common import _fail, _ok
from .quiz import Question

__all__ = ["check_duration_counts", "check_frames_from_units", "check_level_probs", "check_prompt_length"]


def _tensor(value, call: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        _fail(f"{call} returned {type(value).__name__}; return a torch.Tensor")
    return value


# ---------------------------------------------------------------------------------------------
# Exercise 1: the next token's distribution, restricted to one level's codes, with top-k
# ---------------------------------------------------------------------------------------------


def _level_range(pos: int, n_levels: int, codebook_size: int) -> tuple[int, int]:
    from slm_course.ulm import N_SPECIAL

    lo = N_SPECIAL + ((pos - 1) % n_levels) * codebook_size
    return lo, lo + codebook_size


def _level_probs(logits: torch.Tensor, pos: int, n_levels: int, codebook_size: int, temperature: float,
                 top_k: int | None, restrict_first: bool = True) -> torch.Tensor:
    """The reference (``restrict_first=False``: the usual mistake, top-k over the whole vocabulary first)."""
    lo, hi = _level_range(pos, n_levels, codebook_size)
    x = logits.double() / temperature
    if top_k is not None and not restrict_first:
        kth = x.topk(min(top_k, len(x))).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    level = x[lo:hi]
    if top_k is not None and restrict_first:
        kth = level.topk(min(top_k, len(level))).values[-1]
        level = level.masked_fill(level < kth, float("-inf"))
    p = torch.zeros(len(logits), dtype=torch.float64)
    if torch.isinf(level).all():
        return p  # (the mistake can leave no code of the level at all)
    p[lo:hi] = level.softmax(-1)
    return p


def check_level_probs(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(logits, pos, n_levels, codebook_size, temperature, top_k)``: the ``(V,)`` distribution of the token at ``pos``.

    Position ``pos`` of an acoustic stage's sequence (``<bos>`` at 0) holds a code of level
    ``(pos - 1) % n_levels``, ids ``N_SPECIAL + level * codebook_size`` onwards; the distribution is
    the softmax of ``logits / temperature`` over that level's ids only (the ``top_k`` best of them
    when given), and 0 everywhere else.
    """
    from slm_course.ulm import N_SPECIAL

    g = torch.Generator().manual_seed(8)
    cases = []
    for Q, N, pos, temperature, top_k in ((2, 8, 1, 1.0, None), (2, 8, 2, 1.0, None), (3, 6, 5, 0.7, None),
                                          (2, 8, 4, 1.0, 3), (2, 8, 3, 0.5, 2), (3, 6, 3, 1.3, 1), (2, 8, 6, 0.9, 5),
                                          (2, 5, 2, 1.0, 9)):
        V = N_SPECIAL + Q * N
        logits = torch.randn(V, generator=g) * 2
        lo, hi = _level_range(pos, Q, N)
        logits[:lo] += 4  # the other levels (and the specials) score higher: a top-k over all ids picks them
        logits[hi:] += 4
        cases.append((logits, pos, Q, N, temperature, top_k))
    for logits, pos, Q, N, temperature, top_k in cases:
        V = len(logits)
        lo, hi = _level_range(pos, Q, N)
        level = (pos - 1) % Q
        call = f"level_probs(logits ({V},), pos={pos}, n_levels={Q}, codebook_size={N}, temperature={temperature}, top_k={top_k})"
        try:
            got = fn(logits.clone(), pos, Q, N, temperature, top_k)
        except RuntimeError as err:
            if top_k is not None and top_k > N and "out of range" in str(err):
                _fail(f"{call} raised '{str(err).splitlines()[0]}': a top_k larger than the level keeps all its "
                      f"{N} codes (topk(min(top_k, codebook_size)))")
            raise
        got = _tensor(got, call)
        want = _level_probs(logits, pos, Q, N, temperature, top_k)
        if tuple(got.shape) != (V,):
            _fail(f"{call} returned shape {tuple(got.shape)}; return one probability per id of the vocabulary, "
                  f"shape ({V},), with 0 outside the level's {N} codes")
        got = got.detach().double()
        if torch.allclose(got, want, atol=1e-5):
            continue
        said = f"{call}: position {pos} holds a code of level {level}, ids {lo}..{hi - 1}"
        if top_k is not None:
            wrong_order = _level_probs(logits, pos, Q, N, temperature, top_k, restrict_first=False)
            if torch.allclose(got, wrong_order, atol=1e-5) or (float(wrong_order.sum()) == 0 and got[lo:hi].isnan().all()):
                _fail(f"{said}; you took the top {top_k} among all ids before keeping the level's: the other levels "
                      f"score higher here, so keep the {top_k} best *of the level's codes*")
        if not torch.isfinite(got).all() or (got < -1e-9).any():
            _fail(f"{said}; you returned negative, inf or nan values: return probabilities (a softmax), not logits")
        if abs(float(got.sum()) - 1) > 1e-4:
            _fail(f"{said}; your probabilities sum to {float(got.sum()):.3f}, not 1: take the softmax over the "
                  "level's ids only (not over the whole vocabulary, then cut)")
        outside = float(got[:lo].sum() + got[hi:].sum())
        if outside > 1e-6:
            if float(got[lo - N_SPECIAL : hi - N_SPECIAL].sum()) > 1 - 1e-6:
                _fail(f"{said}; your mass sits on ids {lo - N_SPECIAL}..{hi - N_SPECIAL - 1}: the codes start after "
                      f"the {N_SPECIAL} special tokens (<pad>, <bos>, <eos>): add N_SPECIAL")
            nxt = _level_range(pos + 1, Q, N)
            if float(got[nxt[0] : nxt[1]].sum()) > 1 - 1e-6:
                _fail(f"{said}; your mass sits on the next level's ids {nxt[0]}..{nxt[1] - 1}: position 0 is <bos>, "
                      "so position pos holds flat code pos - 1, of level (pos - 1) % n_levels")
            _fail(f"{said}; you put {outside:.3f} of the probability outside them: every other id must get 0")
        if top_k is not None:
            n_kept = int((got > 0).sum())
            if n_kept != int((want > 0).sum()):
                _fail(f"{said}; you kept {n_kept} codes with probability > 0, expected {int((want > 0).sum())} "
                      f"(the top {top_k} of the level's {N}, all of them when top_k >= {N})")
        if temperature != 1 and torch.allclose(got, _level_probs(logits * temperature ** 2, pos, Q, N, temperature, top_k),
                                               atol=1e-5):
            _fail(f"{said}; you multiplied the logits by the temperature: divide them by it (a low temperature sharpens)")
        _fail(f"{said}; expected {[round(v, 3) for v in want[lo:hi].tolist()]} on them, you returned "
              f"{[round(v, 3) for v in got[lo:hi].tolist()]}: softmax(logits[lo:hi] / temperature), with the "
              "codes below the k-th best set to -inf first")
    _ok("level_probs is correct: the softmax of logits / temperature over the level's own codes, top-k among them")


# ---------------------------------------------------------------------------------------------
# Exercises 2 and 3: how long each unit lasts, and drawing durations for generated units
# ---------------------------------------------------------------------------------------------


def check_duration_counts(fn: Callable[[list, int], torch.Tensor]) -> None:
    """``fn(semantic, vocab_size)``: ``(vocab_size, MAX_DURATION)`` counts of each unit's run lengths."""
    from slm_course.audiolm import MAX_DURATION, duration_counts

    g = torch.Generator().manual_seed(7)
    seqs = [torch.tensor([3, 3, 3, 1, 1, 4])]
    seqs += [torch.randint(0, 5, (int(torch.randint(1, 30, ())),), generator=g).repeat_interleave(
        torch.randint(1, 4, (1,), generator=g)) for _ in range(10)]
    seqs += [torch.full((MAX_DURATION + 7,), 2)]  # one run longer than MAX_DURATION
    for name, case in (("[3, 3, 3, 1, 1, 4]", seqs[:1]), ("random sequences", seqs[1:-1]),
                       (f"a run of {MAX_DURATION + 7} frames", seqs[-1:])):
        want = duration_counts(case, 5)
        try:
            got = fn([s.clone() for s in case], 5)
        except IndexError as e:
            _fail(f"for {name}, your function raised IndexError ({e}): a run longer than MAX_DURATION = "
                  f"{MAX_DURATION} frames must go in the last column: clamp the duration")
        got = _tensor(got, f"duration_counts({name}, 5)")
        if got.shape != want.shape:
            _fail(f"for {name} you returned a tensor of shape {tuple(got.shape)}: return (vocab_size, MAX_DURATION) "
                  f"= (5, {MAX_DURATION}) counts")
        wrong = (got.float() != want).nonzero().tolist()[:3]
        said = f"for {name}, your counts differ at " + ", ".join(
            f"[{u}, {d}] (you {int(got[u, d])}, expected {int(want[u, d])})" for u, d in wrong)
        if torch.allclose(got.float(), want):
            continue
        if got.sum() == sum(len(s) for s in case):
            _fail(f"{said}: it counts frames; count runs (one per de-duplicated unit), at column duration - 1")
        if name.startswith("a run"):
            _fail(f"{said}: a run longer than MAX_DURATION = {MAX_DURATION} frames counts in the last column "
                  "(clamp the duration)")
        if not name.startswith("a run") and torch.allclose(got.float()[:, 1:], want[:, :-1]):
            _fail(f"{said}: a run of d frames goes in column d - 1 (a 1-frame run in column 0)")
        _fail(f"{said}, wrong counts: for each sequence, deduplicate it into units and durations, then add 1 at "
              "[unit, min(duration, MAX_DURATION) - 1]")
    _ok(f"duration_counts is correct: one count per run, at [unit, duration - 1], capped at {MAX_DURATION} frames")


def check_frames_from_units(fn: Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]) -> None:
    """``fn(units, counts, generator)``: frame-level units ``(T,)``, each unit held for a duration drawn from its row of ``counts``.

    ``counts[u, d - 1]`` is how often unit ``u`` lasted ``d`` frames (:func:`slm_course.audiolm.duration_counts`);
    a unit whose row is all zeros (never seen) lasts 1 frame.
    """
    from slm_course.audiolm import MAX_DURATION
    from slm_course.speech_tokens import deduplicate

    K = 6
    counts = torch.zeros(K, MAX_DURATION)
    counts[0, 2] = 7  # unit 0 always lasts 3 frames
    counts[1, 0] = 4  # unit 1: 1 frame
    counts[2, 4] = 1  # unit 2: 5 frames
    counts[3, [0, 1, 3]] = torch.tensor([10.0, 10.0, 20.0])  # unit 3: 1, 2 or 4 frames, with probabilities 1/4, 1/4, 1/2
    # unit 4: never seen (a row of zeros); unit 5: 2 frames
    counts[5, 1] = 3

    def run(units: torch.Tensor, seed: int) -> torch.Tensor:
        call = f"frames_from_units(units {units.tolist() if len(units) <= 8 else tuple(units.shape)}, counts, generator)"
        try:
            out = fn(units.clone(), counts.clone(), torch.Generator().manual_seed(seed))
        except RuntimeError as e:
            if units.eq(4).any():
                _fail(f"{call} raised RuntimeError ({str(e).splitlines()[0]}): unit 4 was never seen, so its row of "
                      "counts is all zeros and cannot be sampled from; give such a unit 1 frame")
            raise
        out = _tensor(out, call)
        if out.ndim != 1 or out.is_floating_point():
            _fail(f"{call} returned a {out.dtype} tensor of shape {tuple(out.shape)}; return a 1-D tensor of unit "
                  "ids, one per 20 ms frame (torch.repeat_interleave(units, durations))")
        return out

    fixed = torch.tensor([0, 1, 2, 5, 0])
    want = fixed.repeat_interleave(torch.tensor([3, 1, 5, 2, 3]))
    got = run(fixed, 0)
    if not torch.equal(got.long(), want):
        shown = got.tolist() if got.numel() <= 20 else str(got[:20].tolist())[:-1] + f", ... ({got.numel()} frames)]"
        said = f"units {fixed.tolist()} whose durations are certain (3, 1, 5, 2 and 3 frames) gave {shown}"
        units, durs = deduplicate(got.long()) if got.numel() else (torch.tensor([]), torch.tensor([]))
        if units.tolist() == fixed.tolist() and durs.tolist() == [2, 0, 4, 1, 2][: len(durs)]:
            _fail(f"{said}: one frame short each: column d - 1 of the counts holds the runs of d frames: add 1")
        if units.tolist() == [0, 2, 5, 0]:
            _fail(f"{said}: one frame short each (unit 1 vanished with 0 frames): column d - 1 holds the runs of "
                  "d frames: add 1 to the drawn column")
        if units.tolist() == fixed.tolist() and durs.tolist() == [4, 2, 6, 3, 4]:
            _fail(f"{said}: one frame too long each: column 0 is a 1-frame run, so duration = column + 1, not + 2")
        _fail(f"{said}, expected {want.tolist()}: draw a column c from each unit's row (torch.multinomial on "
              "counts[u]), hold the unit for c + 1 frames, keep the units in order")
    got = run(torch.tensor([1, 4, 1]), 1)
    if got.tolist() != [1, 4, 1]:
        _fail(f"units [1, 4, 1] gave {got.tolist()}, expected [1, 4, 1]: unit 4 was never seen (its row is all "
              "zeros): give it 1 frame")
    many = torch.tensor([3, 1] * 400)  # unit 1 always lasts 1 frame: it separates unit 3's runs
    got = run(many, 2)
    units, durs = deduplicate(got.long())
    if units.tolist() != many.tolist():
        _fail(f"800 units [3, 1, 3, 1, ...] came back as {len(units)} runs: hold each unit for its own drawn "
              "duration, in order")
    d3 = durs[units == 3]
    seen = sorted(set(d3.tolist()))
    share = {d: float((d3 == d).float().mean()) for d in (1, 2, 4)}
    if seen == [4]:
        _fail("unit 3 (1, 2 or 4 frames, with probabilities 1/4, 1/4, 1/2) always lasted 4 frames: that is its most "
              "frequent duration (argmax); draw it at random from the row, in proportion to the counts (torch.multinomial)")
    if len(seen) == 1:
        _fail(f"unit 3 (1, 2 or 4 frames, with probabilities 1/4, 1/4, 1/2) always lasted {seen[0]} frames: a fixed "
              "duration (a mean, a median, a rounding) is not a draw; draw a column at random from the row, in "
              "proportion to the counts (torch.multinomial)")
    if not set(seen) <= {1, 2, 4}:
        _fail(f"unit 3 lasted {seen} frames; it only ever lasted 1, 2 or 4 in the counts: draw a column in proportion "
              "to the counts, not uniformly over 1..MAX_DURATION")
    if abs(share[1] - 0.25) > 0.08 or abs(share[2] - 0.25) > 0.08 or abs(share[4] - 0.5) > 0.08:
        _fail(f"unit 3 lasted 1, 2, 4 frames in {share[1]:.2f}, {share[2]:.2f}, {share[4]:.2f} of 400 draws; expected "
              "about 0.25, 0.25, 0.50 (counts 10, 10, 20): draw in proportion to the counts")
    again = run(many, 2)  # the same seed: the same frames, or the generator was not used
    if not torch.equal(again, got):
        _fail("two calls with generators seeded alike (torch.Generator().manual_seed(2)) gave different frames: draw "
              "with the generator you are given (torch.multinomial(counts[u], 1, generator=generator)), not from "
              "torch's global random state, so that a seed fixes the durations")
    other = run(many, 3)
    if torch.equal(other, got):
        _fail("a generator seeded 3 gave the same 400 random durations as one seeded 2: the durations must come from "
              "the generator you are given (torch.multinomial(counts[u], 1, generator=generator)), not from a seed "
              "of your own")
    _ok("frames_from_units is correct: each unit held for a duration drawn from its own counts (unseen units: 1 frame)")


# ---------------------------------------------------------------------------------------------
# Exercise 4: the experiment's results, rerun and compared
# ---------------------------------------------------------------------------------------------


def check_prompt_length(accuracy: dict, prompt_frames: tuple, *, alm, sems: list, codes: list,
                        score: Callable[[list], float], temperature: float, seed: int = 0, chance: float = 0.25) -> None:
    """``accuracy``: ``{prompt frames: speaker accuracy}`` from exercise 4, compared with a rerun of the experiment.

    ``alm``, ``sems``, ``score`` and ``temperature`` are the exercise's own; ``codes[i]`` is the whole
    codec grid of the utterance whose semantic tokens are ``sems[i]`` (``test["codes"][i]`` for each
    ``i`` in ``prompt_utts``). Generation is deterministic (``seed``, 0 by default), so the check
    generates again without a prompt and with the shortest and the longest prompts (each utterance's
    first ``n`` frames, ``codes[i][:k, :n]``) and requires the learner's numbers exactly: a
    few seconds.
    """
    if not isinstance(accuracy, dict):
        _fail(f"accuracy is a {type(accuracy).__name__}; make it a dict {{prompt frames: speaker accuracy}}, "
              "one entry per length in PROMPT_FRAMES")
    try:
        frames = [int(n) for n in prompt_frames]
    except (TypeError, ValueError):
        frames = None
    if frames is None or any(f != n or f < 0 for f, n in zip(frames, prompt_frames)):
        _fail(f"PROMPT_FRAMES = {prompt_frames!r}; give whole numbers of acoustic frames (62.5 per second), 0 or "
              "more, e.g. (0, 4, 16, 62)")
    if 0 not in frames:
        _fail(f"PROMPT_FRAMES = {tuple(prompt_frames)} has no 0: the no-prompt baseline (n = 0, prompts=None) is what "
              "every prompt length is compared with; put 0 back in PROMPT_FRAMES and run the loop again")
    lengths = sorted({n for n in frames if n > 0})
    if not lengths:
        _fail(f"PROMPT_FRAMES = {tuple(prompt_frames)} has no prompt at all: add a few lengths in acoustic frames "
              "beside the 0, e.g. (0, 4, 16, 62)")
    missing = [n for n in prompt_frames if n not in accuracy]
    if missing:
        _fail(f"accuracy has no entry for prompt lengths {missing}: fill accuracy[n] for every n in PROMPT_FRAMES")
    acc = {}
    for n in prompt_frames:
        value = accuracy[n]
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        try:
            acc[int(n)] = float(value)
        except (TypeError, ValueError):
            acc[int(n)] = float("nan")
        if not 0 <= acc[int(n)] <= 1:
            _fail(f"accuracy[{n}] = {accuracy[n]!r}; it must be a share of prompts recognised, a number in 0..1 "
                  "(score(out): the mean of classifier.predict(...) == truth)")
    if len(codes) != len(sems):
        _fail(f"codes holds {len(codes)} code grids for {len(sems)} utterances in sems: pass "
              "codes=[test[\"codes\"][i] for i in prompt_utts], one per prompt, in the same order")
    k = alm.n_levels
    runs: dict[str, float] = {}

    def rerun(what: str, prompts: list | None) -> float:
        if what not in runs:
            runs[what] = float(score(alm.generate_acoustic(sems, prompts, temperature=temperature, seed=seed)))
        return runs[what]

    def first(n: int) -> float:
        return rerun(f"first {n}", [c[:k, :n] for c in codes])

    def same(n: int, value: float) -> bool:
        return abs(acc[n] - value) < 1e-9

    setup = (f"with the same sems, temperature={temperature} and seed={seed} (generation is deterministic, so a rerun "
             "gives the same numbers)")
    want = rerun("none", None)
    if not same(0, want):
        said = f"accuracy[0] = {acc[0]:.2f}, but generating with prompts=None gives {want:.2f} {setup}"
        if same(0, first(1)):
            _fail(f"{said}: your n = 0 ran with a 1-frame prompt; for n = 0 pass prompts=None (no acoustic prompt at "
                  "all: an empty one is refused, and one frame is already a prompt)")
        _fail(f"{said}: for n = 0 call alm.generate_acoustic(sems, None, temperature=TEMPERATURE) and store score(out) "
              "in accuracy[0]")
    for n in sorted({lengths[0], lengths[-1]}):
        want = first(n)
        if same(n, want):
            continue
        said = (f"accuracy[{n}] = {acc[n]:.2f}, but {n}-frame prompts, each utterance's own first {n} frames "
                f"(codes[:k, :{n}]), give {want:.2f} {setup}")
        if all(c.shape[1] >= n for c in codes) and same(n, rerun(f"last {n}", [c[:k, -n:] for c in codes])):
            _fail(f"{said}. Yours are the last {n} frames (codes[:k, -{n}:]): a prompt is the start that the "
                  f"continuation follows on from, the first {n} frames: codes[:k, :{n}]")
        other = lengths[-1] if n == lengths[0] else lengths[0]
        if other != n and same(n, first(other)):
            _fail(f"{said}. Yours match {other}-frame prompts: build the prompts inside the loop with the loop's own "
                  "n, [test[\"codes\"][i][:k, :n] for i in prompt_utts]")
        _fail(f"{said}: inside the loop, prompts = [test[\"codes\"][i][:k, :n] for i in prompt_utts] (each "
              "utterance's own first n frames, in the order of sems), generate with temperature=TEMPERATURE and "
              "store score(out) in accuracy[n]")
    shown = ", ".join(f"{n} frames {acc[n]:.2f}" for n in sorted(acc))
    rerun_said = " and ".join(str(n) for n in sorted({lengths[0], lengths[-1]}))
    _ok(f"the experiment ran: speaker accuracy {shown} (chance {chance:.2f}); a rerun without a prompt and with "
        f"{rerun_said} frames of prompt gives the same numbers. Now say what happens, and why, in the cell below")


QUIZ = (
    Question(
        "AudioLM's coarse stage models Q' = 4 SoundStream levels of N = 1024 codes, flattened with per-level offsets "
        "(no special tokens). Which id stands for code 5 of the third level?",
        answer=2053, tolerance=0,
        hint="section 2: level q (counting from 0) is offset by q * N",
    ),
    Question(
        "In the course's coarse stage (Q' = 2 levels, <bos> at position 0), which codec level does the token at "
        "position 6 belong to, and which acoustic frame?",
        choices=("a) level 0 of frame 3", "b) level 1 of frame 2", "c) level 0 of frame 2", "d) level 1 of frame 3"),
        answer="b",
        hint="section 3's sampling loop: position pos holds flat code pos - 1, of level (pos - 1) % Q and frame (pos - 1) // Q",
    ),
    Question(
        "The semantic units come at 50 frames/s, the codec at 62.5. Acoustic frame 9 is given the unit of which "
        "semantic frame (counting from 0)?",
        answer=7, tolerance=0,
        hint="section 2: frame t starts at t / 62.5 s, inside semantic frame floor(t * 50 / 62.5)",
    ),
    Question(
        "Suppose the semantic tokens named the speaker as well as the words (as the tiny HuBERT's units do). "
        "What happens to the speaker accuracy of 'semantic only' continuations, and to the gap the acoustic prompt makes?",
        choices=(
            "a) 'semantic only' stays near chance and the gap is unchanged: the acoustic stage takes its voice from "
            "codec tokens alone and ignores what its conditioning says",
            "b) 'semantic only' rises, but the gap stays as large: the prompt still adds its voice on top of whatever "
            "the semantic tokens already say",
            "c) 'semantic only' climbs towards 'acoustic prompt' and the gap narrows: the conditioning already names "
            "the voice, leaving the prompt little to add",
            "d) 'semantic only' rises and the gap widens: with the semantic tokens and the prompt naming the same "
            "voice, the stage copies the prompt more faithfully",
        ),
        answer="c",
        hint="section 6: why the semantic tokens must not carry the voice",
    ),
    Question(
        "AudioLM's 92.6% and 3.2% (its Table III) come from which settings, and so which of the course's numbers "
        "do they compare with?",
        choices=(
            "a) 92.6%: the full model continuing a prompt (speaker_acc_acoustic_prompt); 3.2%: the full model with "
            "no acoustic prompt (speaker_acc_semantic_only)",
            "b) 92.6%: the acoustic stage on real semantic tokens, with a prompt (speaker_acc_acoustic_prompt_gt_semantic); "
            "3.2%: the same stage, no prompt (speaker_acc_semantic_only_gt_semantic)",
            "c) 92.6%: the acoustic stage on real semantic tokens, with a prompt (speaker_acc_acoustic_prompt_gt_semantic); "
            "3.2%: the full model, no acoustic prompt (speaker_acc_semantic_only)",
            "d) 92.6%: the full model continuing a prompt (speaker_acc_acoustic_prompt); 3.2%: the acoustic stage "
            "on real semantic tokens, no prompt (speaker_acc_semantic_only_gt_semantic)",
        ),
        answer="d",
        hint="the introduction and section 5: which model generated each of AudioLM's two numbers",
    ),
)
