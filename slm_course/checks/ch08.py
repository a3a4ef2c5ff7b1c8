"""Checks for notebook 08's exercises (solutions/08_moshi_exercises.ipynb)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._common import _fail, _ok
from .quiz import Question

__all__ = ["check_align_text", "check_delay", "check_depth_step", "check_turn_taking", "check_undelay"]


def _as_long(value, call: str, keep_dtype: bool = False) -> torch.Tensor:
    if keep_dtype and isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
        _fail(f"{call} returned a {value.dtype} tensor: token ids are integers, and an embedding table reads no "
              "floats; keep the grid's dtype (grid.new_full(...) makes the new grid like the old one)")
    try:
        return torch.as_tensor(value).long()
    except (TypeError, ValueError, RuntimeError):
        _fail(f"{call} returned {type(value).__name__}; return a tensor of token ids")


def check_delay(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(grid (S, T), delays, fill) -> (S, T + max(delays))``: stream ``s`` moved ``delays[s]`` frames later."""
    from slm_course.moshi import delay

    grid = torch.arange(1, 16).view(3, 5)
    for delays in ([0, 0, 0], [0, 1, 1], [2, 0, 1], [0, 3, 0]):
        want = delay(grid, delays, fill=-1)
        got = _as_long(fn(grid.clone(), list(delays), -1), f"delay(grid, {delays}, -1)", keep_dtype=True)
        if tuple(got.shape) != tuple(want.shape):
            _fail(f"delays {delays}: you returned shape {tuple(got.shape)}, expected {tuple(want.shape)}: the grid "
                  f"grows by max(delays) = {max(delays)} frame{'s' if max(delays) != 1 else ''} so that no token is cut off")
        if not torch.equal(got, want):
            _fail(f"delays {delays}: you returned\n{got.tolist()}\nexpected\n{want.tolist()}\n(row s starts with "
                  "delays[s] fill tokens, then the whole stream, then fill up to the end)")
    _ok("delay is correct: each stream starts delays[s] frames later, fill before and after it")


def check_undelay(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(delayed (S, T + D), delays) -> (S, T)``: the inverse of ``delay``."""
    from slm_course.moshi import delay

    grid = torch.arange(1, 16).view(3, 5)
    for delays in ([0, 1, 1], [2, 0, 1], [1, 1, 1]):
        d = delay(grid, delays, fill=-1)
        got = _as_long(fn(d.clone(), list(delays)), f"undelay(delayed, {delays})", keep_dtype=True)
        if tuple(got.shape) != tuple(grid.shape):
            _fail(f"delays {delays}: you returned shape {tuple(got.shape)}, expected {tuple(grid.shape)}: the result "
                  f"is max(delays) = {max(delays)} frame{'s' if max(delays) != 1 else ''} shorter than its input")
        if not torch.equal(got, grid):
            _fail(f"delays {delays}: undelay(delay(grid)) gave\n{got.tolist()}\ninstead of the grid\n{grid.tolist()}"
                  "\n(row s of the result is row s of the input from index delays[s] on)")
    _ok("undelay is correct: undelay(delay(grid)) gives the grid back for every set of delays")


def check_align_text(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(words [(id, start s)], frames) -> (frames,)``: each word at its start frame (80 ms), EPAD before it."""
    from slm_course.moshi import EPAD, PAD, align_text

    cases = [
        ("well spaced words", [(5, 0.40), (6, 0.90), (7, 1.30)], 20),
        ("a word in frame 0", [(5, 0.02), (6, 0.50)], 10),
        ("words too close together", [(5, 0.40), (6, 0.45), (7, 0.50)], 12),
        ("a word late in its frame", [(5, 0.45), (6, 1.30)], 20),
        ("no words", [], 4),
    ]
    for name, words, frames in cases:
        want = align_text(words, frames)
        got = _as_long(fn(list(words), frames), f"align_text(..., {frames})")
        if torch.equal(got, want):
            continue
        said = f"{name} {words}: you returned {got.tolist()}, expected {want.tolist()}"
        if tuple(got.shape) != (frames,):
            _fail(f"{said}: return one id per frame, shape ({frames},)")
        if name == "a word in frame 0":
            _fail(f"{said}: a word that starts in frame 0 has no frame before it for its EPAD: move it to frame 1")
        if name == "a word late in its frame":
            _fail(f"{said}: a word that starts at 0.45 s starts in frame 5 (0.40-0.48 s): floor with int(start / 0.08), "
                  "do not round to the nearest frame")
        placed = int((got > EPAD).sum())
        if name == "words too close together" and placed < len(words):
            _fail(f"{said}: {placed} of the {len(words)} words made it into your stream: a crowded word was lost "
                  "(overwritten by the next word or its EPAD, or dropped). Move it to the previous word's frame + 2, "
                  "counted from the frame where the previous word was *placed* (after its own move), not from the "
                  "frame where it starts")
        if name == "words too close together":
            _fail(f"{said}: a word goes to its start frame int(start / 0.08), or to the previous word's frame + 2 if "
                  "that is later (the frame in between holds its EPAD)")
        epads = (got == EPAD).nonzero().flatten().tolist()
        if words and len(epads) == len(words) and all(i > 0 and int(got[i - 1]) > max(PAD, EPAD) for i in epads):
            _fail(f"{said}: each EPAD goes in the frame just *before* its word (it announces the word), not after it")
        if int((got == EPAD).sum()) != len(words):
            _fail(f"{said}: every word gets exactly one EPAD ({EPAD}), in the frame just before it; PAD ({PAD}) "
                  "fills every other frame")
        _fail(f"{said}: a word goes to the frame int(start / 0.08) in which it starts")
    # words past the end: far past it, in the frame just past it (frame 10 of 10), and pushed past it by crowding
    for late, why in (([(5, 2.0)], "a word at 2.0 s lands in frame 25"),
                      ([(5, 0.8)], "a word at 0.8 s lands in frame 10, and frames are numbered 0 to 9"),
                      ([(5, 0.70), (6, 0.72)], "the second word, crowded, is moved to frame 8 + 2 = 10")):
        call = f"align_text({late}, 10)"
        try:
            got = fn(list(late), 10)
        except ValueError as error:
            if "frame" not in str(error).lower():
                _fail(f"{call} raised ValueError({str(error)!r}): say in the message that the word lands past the "
                      "last frame, and to pass more frames")
        except Exception as error:  # an IndexError from writing past the end, most likely
            _fail(f"{call} raised {type(error).__name__}: {error}. {why}, past the 10 frames given: check the frame a "
                  "word is placed at (after any move, >= frames) before you write it, and raise a ValueError that "
                  "says to pass more frames")
        else:
            _fail(f"{call}: {why}, past the 10 frames given, and you returned {_as_long(got, call).tolist()} without "
                  "an error: raise a ValueError that says to pass more frames")
    _ok("align_text is correct: words at their start frames, EPAD before each, late (never early) when crowded")


def _toy_depth():
    from slm_course.moshi import DepthTransformer, MoshiConfig

    torch.manual_seed(4)
    cfg = MoshiConfig(text_vocab=9, n_semantic=6, levels=2, codebook_size=5, d_model=16, depth_d_model=8)
    depth = DepthTransformer(cfg).eval()
    for p in depth.parameters():  # larger weights than the initial ones: the tokens then depend on each other
        p.data.normal_(0, 0.5)
    for emb in depth.emb:  # ... and on the token before them
        emb.weight.data.mul_(4)
    return depth


def _reference_step(depth, z, text, pick):
    prev, out = [text], []
    for k in range(len(depth.heads)):
        logits = depth(z, torch.tensor([prev]))[k]
        out.append(pick(logits[0], k))
        prev.append(out[-1])
    return out


def check_depth_step(fn: Callable[..., torch.Tensor]) -> None:
    """``fn(depth, z (1, d), text_token, temperature=0.0, top_k=None, generator=None) -> (K,)`` audio tokens."""
    depth = _toy_depth()
    with torch.no_grad():
        for i in range(4):
            z = torch.randn(1, 16, generator=torch.Generator().manual_seed(i))
            text = i + 2
            want = _reference_step(depth, z, text, lambda lg, k: int(lg.argmax()))
            got = _as_long(fn(depth, z, text, temperature=0.0), "depth_step(..., temperature=0.0)").flatten().tolist()
            if got == want:
                continue
            first = _reference_step(depth, z, text, lambda lg, k: int(lg.argmax()) if k == 0 else 0)[0]
            if len(got) != len(want):
                _fail(f"you returned {len(got)} tokens, expected {len(want)}: one per audio stream (semantic, then "
                      "each acoustic level), one head of the depth transformer each")
            if got[0] != first:
                _fail(f"frame {i}: the semantic token should be {first}, you gave {got[0]}: step 0 reads the frame's "
                      "text token, so prev starts as [text_token]")
            _fail(f"frame {i}: greedy tokens {got}, expected {want}: after each step append the token you chose to "
                  "prev and run the depth transformer again; step k reads logits[k]")
        for i in range(20):  # top-k sampling: every token among the k best, given the tokens before it
            z = torch.randn(1, 16, generator=torch.Generator().manual_seed(100 + i))
            got = _as_long(fn(depth, z, 3, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(i)),
                           "depth_step(..., top_k=2)").flatten().tolist()
            prev = [3]
            for k, tok in enumerate(got):
                best = depth(z, torch.tensor([prev]))[k][0].topk(2).indices.tolist()
                if tok not in best:
                    _fail(f"with top_k=2, step {k} drew token {tok}, which is not among the 2 most likely {best} given "
                          "the tokens drawn before it: keep the top_k logits (the others -inf) before the softmax, "
                          "and give each next step the tokens you drew (not, say, the argmax)")
                prev.append(tok)
        draws = {tuple(_as_long(fn(depth, torch.zeros(1, 16), 3, temperature=1.0,
                                   generator=torch.Generator().manual_seed(s)), "depth_step").flatten().tolist())
                 for s in range(30)}
        if len(draws) == 1:
            _fail("with temperature 1.0 and 30 different generators you always returned the same tokens: sample "
                  "(torch.multinomial on the softmax, with the generator) instead of taking the argmax")
        for i in range(5):  # the same seed, the same draw, whatever else used torch's global random numbers
            z = torch.randn(1, 16, generator=torch.Generator().manual_seed(200 + i))
            twice = []
            for _ in range(2):
                twice.append(_as_long(fn(depth, z, 3, temperature=3.0, generator=torch.Generator().manual_seed(7)),
                                      "depth_step(..., generator=...)").flatten().tolist())
                torch.rand(10)
            if twice[0] != twice[1]:
                _fail(f"two calls with torch.Generator().manual_seed(7) drew {twice[0]} and then {twice[1]}: pass "
                      "generator=generator to torch.multinomial so that the same seed gives the same draw")
        z = torch.zeros(1, 16)
        best = depth(z, torch.tensor([[3]]))[0][0].topk(2).indices.tolist()
        firsts = {int(_as_long(fn(depth, z, 3, temperature=3.0, top_k=2, generator=torch.Generator().manual_seed(s)),
                               "depth_step(..., top_k=2)").flatten()[0]) for s in range(40)}
        if firsts != set(best):
            _fail(f"with temperature 3.0 and top_k=2, 40 draws of step 0 gave only {sorted(firsts)}, but both of the "
                  f"2 most likely tokens {best} should come up: keep the top_k largest logits (not only the best) "
                  "and sample among them")

        def argmax_share(temperature: float) -> float:
            picks = [int(_as_long(fn(depth, z, 3, temperature=temperature, generator=torch.Generator().manual_seed(s)),
                                  "depth_step").flatten()[0]) for s in range(60)]
            return sum(p == best[0] for p in picks) / len(picks)

        cold, hot = argmax_share(0.1), argmax_share(3.0)
        if cold <= hot + 0.1:
            _fail(f"step 0's most likely token came up in {cold:.0%} of draws at temperature 0.1 and {hot:.0%} at "
                  "3.0: a low temperature must sharpen the distribution, so divide the logits by the temperature "
                  "before the softmax")
    _ok("depth_step is correct: each audio token drawn given the text token and the tokens before it")


# what it waits for; for what it should wait
_TURN_IDEAS = ("silence|silent|pause|stop|quiet", "question|sentence|finish|complete",
               # what to change: questions that pause before they end, in the training dialogues
               "mid|inside|unfinished|incomplete|within|hesitat|resum|partial|truncat|before the last")


def check_turn_taking(rows: dict, waits_for: Any, explanation: Any) -> None:
    """Exercise 4: ``waits_for`` ("a" a silence, "b" a finished question), read from ``rows``, and why, in words.

    ``rows`` is the experiment cell's ``{"whole question": [...], "last word cut": [...]}``: for each
    dialogue, the frames to the model's first speech, ``None`` where it never spoke. The letter is graded
    against them; the explanation must be sentences (:func:`~slm_course.checks.quiz.check_explanation`: 30 words, 15 different ones) that name what it waits
    for, what it should wait for, and what to change, each as a word that starts with one of the
    alternatives (``"end"`` in "ends", not in "spend"). The explanation itself is not graded.
    """
    if not isinstance(rows, dict) or not {"whole question", "last word cut"} <= set(rows):
        _fail("rows should be the experiment cell's dict with a 'whole question' and a 'last word cut' row; run "
              "that cell first")
    share = {}
    for name in ("whole question", "last word cut"):
        firsts = list(rows[name])
        if not firsts:
            _fail(f"rows[{name!r}] is empty; run the experiment cell again")
        share[name] = sum(x is not None for x in firsts) / len(firsts)
    whole, cut = share["whole question"], share["last word cut"]
    if whole == 0:
        _fail("in your rows the model never spoke, even after a whole question: run the experiment cell with "
              "notebook 08's full model, as given")
    letter = str(waits_for).strip().lower() if waits_for is not None else ""
    letter = letter[0] if letter[:1] in ("a", "b") and not letter[1:2].isalpha() else None
    if letter is None:
        _fail(f'waits_for is {waits_for!r}; set it to "a" (the model waits for a silence) or "b" (it waits for a '
              "finished question)")
    want = "a" if cut >= whole / 2 else "b"
    if letter != want:
        if want == "a":
            _fail(f"waits_for = \"b\", but your rows say the model speaks after {cut:.0%} of the cut questions "
                  f"({whole:.0%} of the whole ones): a model that waited for a finished question would stay silent "
                  "after most of the cut ones. Read the 'last word cut' row again")
        _fail(f"waits_for = \"a\", but your rows say the model speaks after only {cut:.0%} of the cut questions "
              f"({whole:.0%} of the whole ones): a silence alone does not make it speak. Read the 'last word cut' "
              "row again")
    from .quiz import check_explanation

    _ok(f"waits_for = {letter!r} fits your rows (it speaks after {cut:.0%} of the cut questions, {whole:.0%} of the "
        "whole ones)")
    check_explanation(explanation, mentions=_TURN_IDEAS, min_words=30)


QUIZ = (
    Question(
        "A dialogue lasts 10 s. At 12.5 frames/s, with an acoustic delay of 1 frame and the text in step with "
        "the semantic tokens, how many steps does the temporal transformer take to read or write it all?",
        answer=126,
        tolerance=0,
        hint="notebook 08, section 2: frames = seconds x 12.5, and delay() adds max(delays) frames",
    ),
    Question(
        "Why does a one-frame acoustic delay lower the acoustic tokens' NLL?",
        choices=(
            "a) the temporal transformer then takes one more step per dialogue, and that extra step of "
            "compute gives it the capacity the acoustic tokens need",
            "b) the acoustic tokens are then scored on fewer frames",
            "c) the acoustic tokens of a frame are then predicted with that frame's semantic token already in "
            "the temporal context, so they need only say how it sounds",
            "d) the user's audio is then heard one frame earlier",
        ),
        answer="c",
        hint="notebook 08, sections 2 and 5: what one column of the delayed grid holds",
    ),
    Question(
        "What do independent per-codebook heads assume that the depth transformer does not?",
        choices=(
            "a) that the text token of the frame is known before any of the frame's audio tokens is predicted",
            "b) that the codebooks have the same size",
            "c) that the user is silent",
            "d) that a frame's audio tokens are independent of each other given the past frames",
        ),
        answer="d",
        hint="notebook 08, section 5: residual levels refine the same patch",
    ),
    Question(
        "The same architecture becomes a streaming recogniser when it is trained with ...",
        choices=(
            "a) the text two frames after the audio, and given audio at inference",
            "b) the text two frames before the audio, and given text at inference",
            "c) no text stream at all",
            "d) the user's streams removed and a larger depth transformer",
        ),
        answer="a",
        hint="notebook 08, section 7: which stream is known when the model writes the other",
    ),
    Question(
        "One generation step takes 12 ms of compute for a frame of 80 ms. What is the real-time factor?",
        answer=0.15,
        tolerance=0.005,
        hint="notebook 08, section 6: seconds of compute per second of audio",
    ),
    Question(
        "Why does the cascade's latency include a wait that Moshi's does not?",
        choices=(
            "a) its recogniser is slower than Moshi's depth transformer",
            "b) its recogniser must first adapt to each new user's voice, which takes a few hundred "
            "milliseconds of the user's speech before it can transcribe anything",
            "c) eSpeak needs half a second to start",
            "d) it must wait for a silence long enough to decide that the user has finished before it starts; "
            "Moshi hears every frame and decides itself when to speak",
        ),
        answer="d",
        hint="notebook 08, section 6: the latency beside the cascade's",
    ),
)
