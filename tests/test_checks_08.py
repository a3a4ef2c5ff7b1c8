"""Notebook 08's exercise checks accept the solutions and name the usual mistakes."""

import pytest
import torch

from slm_course import checks
from slm_course.checks.ch08 import _toy_depth


def delay(grid, delays, fill):
    S, T = grid.shape
    out = torch.full((S, T + max(delays)), fill, dtype=grid.dtype)
    for s, d in enumerate(delays):
        out[s, d : d + T] = grid[s]
    return out


def undelay(grid, delays):
    T = grid.shape[1] - max(delays)
    return torch.stack([grid[s, d : d + T] for s, d in enumerate(delays)])


def align_text(words, frames, first=1, frame_of=lambda start: int(start / 0.08), last_from="placed", check_end=True):
    out, last = [0] * frames, -2
    for tok, start in words:
        f = max(frame_of(start), last + 2, first)
        if check_end and f >= frames:
            raise ValueError(f"a word lands at frame {f}, past the {frames} frames given: pass more frames")
        out[f - 1], out[f] = 1, tok
        last = f if last_from == "placed" else frame_of(start)
    return torch.tensor(out)


def crowded(words, frames):
    """Each word at its own start frame, whatever came before: crowded words overwrite each other's EPAD."""
    out = [0] * frames
    for tok, start in words:
        f = max(int(start / 0.08), 1)
        out[f - 1], out[f] = 1, tok
    return torch.tensor(out)


def depth_step(depth, z, text, temperature=0.0, top_k=None, generator=None, scale=True, use_generator=True):
    prev = [text]
    for k in range(len(depth.heads)):
        logits = depth(z, torch.tensor([prev]))[k][0]
        if temperature == 0:
            prev.append(int(logits.argmax()))
            continue
        logits = logits / temperature if scale else logits
        if top_k is not None:
            logits = logits.masked_fill(logits < logits.topk(top_k).values[-1], float("-inf"))
        prev.append(int(torch.multinomial(logits.softmax(-1), 1, generator=generator if use_generator else None)))
    return torch.tensor(prev[1:])


def test_the_solutions_pass(capsys):
    checks.check_delay(delay)
    checks.check_undelay(undelay)
    checks.check_align_text(align_text)
    with torch.no_grad():
        checks.check_depth_step(depth_step)
    assert capsys.readouterr().out.count("✓") == 4


def test_usual_mistakes_are_named():
    with pytest.raises(AssertionError, match="grows by max"):
        checks.check_delay(lambda g, d, f: torch.stack([torch.roll(g[s], d[s]) for s in range(len(d))]))
    with pytest.raises(AssertionError, match="row s starts"):
        checks.check_delay(lambda g, d, f: delay(g, d, f).flip(1))
    with pytest.raises(AssertionError, match="shorter"):
        checks.check_undelay(lambda g, d: g)
    with pytest.raises(AssertionError, match="token ids are integers"):  # the right values, as floats
        checks.check_delay(lambda g, d, f: delay(g, d, f).float())
    with pytest.raises(AssertionError, match="no frame before it"):
        checks.check_align_text(lambda w, n: align_text(w, n, first=0) if w and w[0][1] < 0.08 else align_text(w, n))
    with pytest.raises(AssertionError, match="previous word's frame"):
        checks.check_align_text(crowded)
    with pytest.raises(AssertionError, match="semantic token should be"):
        checks.check_depth_step(lambda d, z, t, **kw: depth_step(d, z, 0, **kw))
    with pytest.raises(AssertionError, match="not among the 2 most likely"):
        checks.check_depth_step(lambda d, z, t, temperature=0.0, top_k=None, generator=None:
                                depth_step(d, z, t, temperature, None, generator))
    with pytest.raises(AssertionError, match="sample"):
        checks.check_depth_step(lambda d, z, t, temperature=0.0, top_k=None, generator=None: depth_step(d, z, t))


def test_depth_step_check_wants_top_k_and_the_temperature():
    with pytest.raises(AssertionError, match="not only the best"):  # top-k taken as top-1
        checks.check_depth_step(lambda d, z, t, temperature=0.0, top_k=None, generator=None:
                                depth_step(d, z, t, temperature, 1 if top_k else None, generator))
    with pytest.raises(AssertionError, match="divide the logits by the temperature"):
        checks.check_depth_step(lambda d, z, t, temperature=0.0, top_k=None, generator=None:
                                depth_step(d, z, t, temperature, top_k, generator, scale=False))


def epad_after(words, frames):
    out, last = [0] * frames, -2
    for tok, start in words:
        f = max(int(start / 0.08), last + 2, 0)
        out[f], out[f + 1], last = tok, 1, f + 1
    return torch.tensor(out)


def test_align_text_check_wants_the_frame_a_word_starts_in():
    with pytest.raises(AssertionError, match="just \\*before\\* its word"):
        checks.check_align_text(epad_after)
    with pytest.raises(AssertionError, match="do not round"):
        checks.check_align_text(lambda w, n: align_text(w, n, frame_of=lambda start: round(start / 0.08)))
    assert len(_toy_depth().heads) == 3


def test_align_text_check_names_a_lost_word_and_wants_the_value_error():
    with pytest.raises(AssertionError, match="where the previous word was \\*placed\\*"):  # +2 from its start frame
        checks.check_align_text(lambda w, n: align_text(w, n, last_from="wanted"))
    with pytest.raises(AssertionError, match="without an error: raise a ValueError that says to pass more frames"):
        checks.check_align_text(lambda w, n: align_text(w, n) if w and w[-1][1] < n * 0.08 else torch.zeros(n).long())
    with pytest.raises(AssertionError, match="raised IndexError.*raise a ValueError"):
        checks.check_align_text(lambda w, n: align_text(w, n, check_end=False))

    def off_by_one(words, frames):  # `f > frames`: a word in frame `frames` writes past the end
        if words and int(words[-1][1] / 0.08) > frames:
            raise ValueError("a word lands past the last frame: pass more frames")
        return align_text(words, frames, check_end=False)

    def before_the_push(words, frames):  # the start frame checked, not the frame a crowded word is moved to
        if words and max(int(start / 0.08) for _, start in words) >= frames:
            raise ValueError("a word lands past the last frame: pass more frames")
        return align_text(words, frames, check_end=False)

    for wrong, frame in ((off_by_one, "frame 10, and frames are numbered 0 to 9"), (before_the_push, "crowded")):
        with pytest.raises(AssertionError, match=f"raised IndexError.*{frame}"):
            checks.check_align_text(wrong)

    def vague(words, frames):
        if words and int(words[-1][1] / 0.08) >= frames:
            raise ValueError("bad input")
        return align_text(words, frames)

    with pytest.raises(AssertionError, match="to pass more frames"):
        checks.check_align_text(vague)


def test_depth_step_check_wants_the_generator_used():
    with pytest.raises(AssertionError, match="pass generator=generator to torch.multinomial"):
        checks.check_depth_step(lambda d, z, t, temperature=0.0, top_k=None, generator=None:
                                depth_step(d, z, t, temperature, top_k, generator, use_generator=False))


ROWS = {"whole question": [4] * 38 + [None] * 2, "last word cut": [5] * 40}  # it speaks after every cut question
ANSWER = ("The model starts to speak about a third of a second after the user falls silent, whether or not the "
          "question is finished: it answers the cut questions as often as the whole ones. It waits for a short "
          "silence. Training dialogues with pauses inside questions, where the system stays silent, would teach "
          "it to wait for a finished question.")


def test_turn_taking_check_grades_the_reading_and_wants_sentences(capsys):
    checks.check_turn_taking(ROWS, "a", ANSWER)
    checks.check_turn_taking({"whole question": [4] * 40, "last word cut": [None] * 36 + [6] * 4}, "b", ANSWER)
    assert capsys.readouterr().out.count("✓ waits_for") == 2
    with pytest.raises(AssertionError, match="speaks after 100% of the cut questions.*'last word cut' row"):
        checks.check_turn_taking(ROWS, "b", ANSWER)  # the reading that contradicts the printed rows
    with pytest.raises(AssertionError, match='set it to "a"'):
        checks.check_turn_taking(ROWS, None, ANSWER)
    with pytest.raises(AssertionError, match="run that cell first"):
        checks.check_turn_taking({"whole question": [4]}, "a", ANSWER)
    with pytest.raises(AssertionError, match="only 6 different words"):
        checks.check_turn_taking(ROWS, "a", "lorem ipsum dolor " * 10 + "stop end mid")
    off_topic = ("I ran the cell and some numbers were printed out. The model seems fine to me and I would train it "
                 "for longer with a larger learning rate, in the middle of the night, then stop and look at the end.")
    with pytest.raises(AssertionError, match="does not name question"):
        checks.check_turn_taking(ROWS, "a", off_topic)
    inside_words = ANSWER.replace("inside", "amid").replace("question", "spendthrift").replace("finished", "humid")
    with pytest.raises(AssertionError, match="does not name question.*mid or inside"):  # whole words, not parts
        checks.check_turn_taking(ROWS, "a", inside_words)
    with pytest.raises(AssertionError, match="has 12 words"):
        checks.check_turn_taking(ROWS, "a", "It waits for a silence, not for the end of the question.")
