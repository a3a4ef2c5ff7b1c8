"""Writes solutions/01_cascade_exercises.ipynb (throw-away generator, not committed)."""
import sys

sys.path.insert(0, "/tmp/nbdev")
from nbtools import COLAB, badge, build, write  # noqa: E402

PATH = "solutions/01_cascade_exercises.ipynb"
C = []


def md(s):
    C.append(("md", s))


def code(s):
    C.append(("code", s))


md(rf"""
# 01 · Exercises: CTC decoding, word error rate, intonation and sampling

{badge(PATH)}

Four exercises on the ideas of notebook 01 (`notebooks/01_cascade.ipynb`). Each one has a
statement with its pass condition, a code cell where you write a function (replace the
`raise NotImplementedError(...)` line), and a check cell that runs your function on several cases
and tells you, in words, what is wrong.

The notebook comes in two versions: `exercises/01_cascade_exercises.ipynb`, with the code left for
you to write, and `solutions/01_cascade_exercises.ipynb`, with worked solutions. The first is
generated from the second (`python -m slm_course.exercises`). Try without the solutions first.
""")

code(COLAB)

code(r"""
import torch

from slm_course import asr as asr_lib
from slm_course import audio, checks, runtime
from slm_course.corpus import load_corpus

gen = runtime.seed_everything(0)  # the same numbers on every run
device = runtime.pick_device()  # everything here runs on the CPU
SR = audio.SR  # 16000 Hz
corpus = load_corpus()  # the course corpus, from the cache (built once, about a minute, if missing)
""")

# ---------------------------------------------------------------------------------------------
md(r"""
## Exercise 1: greedy CTC decoding

A CTC recogniser outputs, for each frame, log-probabilities over its symbols, with the blank
(id `asr.BLANK` = 0) meaning "no new symbol here". Write `ctc_greedy_decode(log_probs)`: given one
utterance's `(T, V)` log-probabilities, return the decoded symbol ids as a list of ints: the most
likely symbol per frame, then repeated symbols merged, then blanks dropped. Frames `a a _ a b b`
decode to `a a b`: the blank keeps the two a's apart.

**Pass:** `checks.check_ctc_greedy_decode(ctc_greedy_decode)` prints a line starting with ✓ (it
compares with `asr.greedy_decode` on hand-made and random cases).
""")

code(r"""
def ctc_greedy_decode(log_probs: torch.Tensor) -> list[int]:
    # log_probs: (T, V), blank = asr_lib.BLANK. Returns the decoded symbol ids.
    ### BEGIN SOLUTION
    best = log_probs.argmax(dim=-1).tolist()  # (T,): the most likely symbol per frame
    merged = [s for t, s in enumerate(best) if t == 0 or s != best[t - 1]]  # merge repeats first ...
    return [s for s in merged if s != asr_lib.BLANK]  # ... then drop blanks
    ### END SOLUTION
""")

code(r"""
checks.check_ctc_greedy_decode(ctc_greedy_decode)
""")

md(r"""
Use it on the course recogniser: decode a held-out utterance with your function (it loads the
recogniser from the cache, or trains it, about a minute and a half, if missing).
""")

code(r"""
asr = asr_lib.load_asr()
utt = corpus.split("test")[0]
feats = asr_lib.asr_features(corpus.wav(utt))  # (frames, 80)
with torch.no_grad():
    log_probs, lengths = asr.log_probs(feats[None], torch.tensor([len(feats)]))  # (1, T', 29), (1,)
ids = ctc_greedy_decode(log_probs[0, : int(lengths[0])])
print(f"said: {utt.text!r}\nyour decoding: {asr_lib.ids_to_text(ids)!r}")
assert asr_lib.ids_to_text(ids) == asr.transcribe(corpus.wav(utt))[0]
""")

# ---------------------------------------------------------------------------------------------
md(r"""
## Exercise 2: word error rate by hand

Write `word_error_rate(ref, hyp)`: the fewest word substitutions, deletions and insertions that
turn `hyp` into `ref` (the Levenshtein distance over words), divided by the number of words in
`ref`. Use dynamic programming: `d[i][j]` is the distance between the first `i` reference words and
the first `j` hypothesis words, with `d[i][0] = i`, `d[0][j] = j` and

$$d[i][j] = \min\big(d[i-1][j] + 1,\ d[i][j-1] + 1,\ d[i-1][j-1] + [r_i \ne h_j]\big).$$

The texts are already normalised (lower case, single spaces). An empty hypothesis has WER 1; many
insertions can push the WER above 1.

**Pass:** `checks.check_wer(word_error_rate)` prints a line starting with ✓ (it compares with
torchaudio's `edit_distance`, which `metrics.wer` uses).
""")

code(r"""
def word_error_rate(ref: str, hyp: str) -> float:
    # Word-level Levenshtein distance between ref and hyp, divided by the number of reference words.
    ### BEGIN SOLUTION
    r, h = ref.split(), hyp.split()
    d = [[0] * (len(h) + 1) for _ in range(len(r) + 1)]  # (len(r) + 1, len(h) + 1)
    for i in range(len(r) + 1):
        d[i][0] = i  # delete the first i reference words
    for j in range(len(h) + 1):
        d[0][j] = j  # insert the first j hypothesis words
    for i in range(1, len(r) + 1):
        for j in range(1, len(h) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (r[i - 1] != h[j - 1]))
    return d[len(r)][len(h)] / len(r)
    ### END SOLUTION
""")

code(r"""
checks.check_wer(word_error_rate)
""")

# ---------------------------------------------------------------------------------------------
md(r"""
## Exercise 3: what the text cannot carry, question intonation

"the cook cuts the cake." and "the cook cuts the cake?" have the same transcript; only the pitch
tells them apart: a declarative question rises at the end. Write `final_rise(wav)`: the rise, in
semitones, of the end of the utterance over the rest of it, from the pitch contour
`audio.pitch(wav, SR)` (F0 in Hz per 10 ms frame, NaN where unvoiced). Then write
`is_question(wav)`, which compares the rise with a threshold.

Hints: keep only voiced frames; semitones are $12 \log_2 F_0$; compare the median of the last fifth
of the voiced frames with the median of the rest (medians shrug off the tracker's octave errors).

**Pass:** `checks.check_question_classifier(is_question, corpus)` prints a line starting with ✓:
accuracy at least 0.8 on the held-out speakers' statements and declarative questions (chance is
about 0.5). It takes about 15 seconds.
""")

code(r"""
def final_rise(wav: torch.Tensor) -> float:
    # The pitch rise (semitones) of the last voiced fifth of the utterance over the rest.
    ### BEGIN SOLUTION
    _, f0 = audio.pitch(wav, SR)  # (frames,), NaN where unvoiced
    voiced = f0[~f0.isnan()]
    if len(voiced) < 6:
        return 0.0  # too little voicing to tell
    semitones = 12 * torch.log2(voiced)
    n_end = max(3, len(voiced) // 5)
    return float(semitones[-n_end:].median() - semitones[:-n_end].median())
    ### END SOLUTION


def is_question(wav: torch.Tensor) -> bool:
    # True when the utterance ends with a rise.
    ### BEGIN SOLUTION
    return final_rise(wav) > 0.0
    ### END SOLUTION
""")

code(r"""
statement = next(u for u in checks.question_cases(corpus) if not u.question)
question = next(u for u in checks.question_cases(corpus) if u.question)
for u in (statement, question):
    print(f"{u.text!r:>40}: final rise {final_rise(corpus.wav(u)):+.1f} semitones")
checks.check_question_classifier(is_question, corpus)
""")

# ---------------------------------------------------------------------------------------------
md(r"""
## Exercise 4 (optional): sampling with a temperature

`TextLM.complete(prompt, temperature=...)` picks each next character from the LM's logits. Write
`sample(logits, temperature, generator)`: at temperature 0 the argmax (greedy); otherwise one id
drawn from $\mathrm{softmax}(\text{logits} / T)$ with `torch.multinomial`, using `generator`.
Above 1 the distribution gets flatter (more varied text), below 1 sharper.

**Pass:** `checks.check_sample_with_temperature(sample)` prints a line starting with ✓ (it draws
4,000 tokens at several temperatures and compares the frequencies with the softmax).
""")

code(r"""
def sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    # logits: (V,). Returns one token id.
    ### BEGIN SOLUTION
    if temperature == 0:
        return int(logits.argmax())
    probs = (logits / temperature).softmax(dim=-1)  # (V,)
    return int(torch.multinomial(probs, 1, generator=generator))
    ### END SOLUTION
""")

code(r"""
checks.check_sample_with_temperature(sample)
""")

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else f"/work/main/{PATH}"
    write(build(C, "ex01"), out)
    print("wrote", out, len(C), "cells")
