"""The SpiRit-LM toy (notebook 07): vocabulary, word alignment, interleaving, warm start, scoring, the mix."""

import numpy as np
import pytest
import torch

from slm_course.lm import LM, LMConfig
from slm_course.spiritlm import (
    BOS,
    EOS,
    MIXES,
    SpiritConfig,
    SpiritLM,
    SpiritVocab,
    interleave,
    random_spans,
    warm_start_text,
    word_units,
)
from slm_course.text import CharTokenizer
from slm_course.tts import Span

TOK = CharTokenizer("abcdefghijklmnopqrstuvwxyz ")


def small_lm(n_units: int = 10, seed: int = 0) -> SpiritLM:
    vocab = SpiritVocab(TOK.vocab_size, n_units)
    torch.manual_seed(seed)
    model = LM(LMConfig(vocab_size=vocab.size, d_model=32, n_layers=2, n_heads=2, max_len=64)).eval()
    return SpiritLM(model, vocab, TOK, SpiritConfig(), {})


def test_vocab_layout_and_errors():
    v = SpiritVocab(30, 100)
    assert (v.text_marker, v.speech_marker, v.unit_offset, v.size) == (30, 31, 32, 132)
    assert v.units([0, 7, 99]).tolist() == [32, 39, 131]
    with pytest.raises(ValueError, match="units"):
        v.units([100])
    with pytest.raises(ValueError, match="n_units"):
        SpiritVocab(30, 2)
    assert v.render([BOS, 30, *TOK.encode("ab"), 31, 32, 33, EOS], TOK) == "<bos>[TEXT]ab[SPEECH]<u0 u1 2 units><eos>"


def test_word_units_cuts_at_word_boundaries_and_keeps_every_unit():
    # 50 frames/s: units of 10, 5, 10, 5 and 20 frames = 0.2, 0.1, 0.2, 0.1, 0.4 s
    units, durations = torch.tensor([4, 5, 6, 7, 8]), torch.tensor([10, 5, 10, 5, 20])
    spans = [Span("a", 0.0, 0.3), Span("b", 0.3, 0.6), Span("c", 0.65, 1.0)]
    parts = word_units(units, durations, spans, 50.0)
    assert [p.tolist() for p in parts] == [[4, 5], [6, 7], [8]]
    assert torch.equal(torch.cat(parts), units)
    # a unit in a pause or past the last word goes to the nearest word; order is kept
    parts = word_units(torch.tensor([1, 2, 3]), torch.tensor([5, 5, 40]), [Span("a", 0.12, 0.2), Span("b", 0.2, 0.5)],
                       50.0)
    assert [p.tolist() for p in parts] == [[1, 2], [3]]
    with pytest.raises(ValueError, match="spans is empty"):
        word_units(units, durations, [], 50.0)
    with pytest.raises(ValueError, match="one length"):
        word_units(units, durations[:3], spans, 50.0)


def test_random_spans_alternate_and_cover_the_words():
    rng = np.random.default_rng(0)
    firsts = set()
    for n in range(1, 15):
        spans = random_spans(n, rng, (1, 3))
        assert sum(k for _, k in spans) == n and all(1 <= k <= 3 for _, k in spans)
        assert all(a[0] != b[0] for a, b in zip(spans, spans[1:]))
        firsts.add(spans[0][0])
    assert firsts == {"text", "speech"}
    with pytest.raises(ValueError, match="lengths"):
        random_spans(3, rng, (2, 1))


def test_interleave_builds_markers_text_and_shifted_units():
    v = SpiritVocab(TOK.vocab_size, 10)
    words = ["the", "cat", "sat"]
    units = [torch.tensor([1]), torch.tensor([2, 3]), torch.tensor([4])]
    ids = interleave(words, units, [("text", 2), ("speech", 1)], v, TOK.encode)
    assert ids.tolist() == [BOS, v.text_marker, *TOK.encode("the cat"), v.speech_marker, v.unit_offset + 4, EOS]
    assert v.render(ids, TOK) == "<bos>[TEXT]the cat[SPEECH]<u4 1 units><eos>"
    with pytest.raises(ValueError, match="cover"):
        interleave(words, units, [("text", 2)], v, TOK.encode)
    with pytest.raises(ValueError, match="modality"):
        interleave(words, units, [("audio", 3)], v, TOK.encode)


def test_warm_start_copies_body_and_text_rows_so_text_reads_the_same():
    text = LM(LMConfig(vocab_size=TOK.vocab_size, d_model=32, n_layers=2, n_heads=2, max_len=64)).eval()
    lm = small_lm()
    warm_start_text(lm.model, text)
    x = torch.tensor([[BOS, *TOK.encode("the cat")]])
    assert torch.allclose(lm.model.hidden(x), text.hidden(x), atol=1e-6)
    assert torch.allclose(lm.model.logits(x)[..., : TOK.vocab_size], text.logits(x), atol=1e-5)
    wider = LM(LMConfig(vocab_size=TOK.vocab_size, d_model=64, n_layers=2, n_heads=2, max_len=64))
    with pytest.raises(ValueError, match="share their body"):
        warm_start_text(lm.model, wider)


def test_score_is_the_conditional_log_likelihood_of_the_continuation():
    lm = small_lm()
    prompt, cont = lm.text("the cat"), lm.speech([3, 1, 4])
    s, n = lm.score([prompt, []], [cont, cont])
    ids = torch.tensor([BOS, *prompt, *cont])
    with torch.no_grad():
        logp = lm.model.logits(ids[None])[0].log_softmax(-1)
    want = sum(float(logp[i - 1, ids[i]]) for i in range(len(prompt) + 1, len(ids)))
    assert n.tolist() == [4, 4] and abs(float(s[0]) - want) < 1e-4
    assert abs(float(s[0]) - float(s[1])) > 1e-6  # the prompt matters
    with pytest.raises(ValueError, match="empty"):
        lm.score([prompt], [[]])
    with pytest.raises(ValueError, match="trained on windows"):
        lm.score([prompt], [lm.speech([1] * lm.config.context)])


def test_prompts_must_be_vocabulary_ids():
    lm = small_lm()
    with pytest.raises(TypeError, match="lm.text"):
        lm.continue_text("the cat")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        lm.continue_units([lm.vocab.size + 3])
    with pytest.raises(ValueError, match=r"continuations\[0\]"):
        lm.score([[]], [[-1]])


def test_continue_text_writes_only_characters():
    lm = small_lm()
    out = lm.continue_text(lm.speech([1, 2, 3]), max_new_tokens=12, temperature=1.0, seed=1)
    assert isinstance(out, str) and set(out) <= set("abcdefghijklmnopqrstuvwxyz ")


def test_continue_units_writes_only_units_and_at_least_one():
    lm = small_lm()
    for seed in range(3):
        out = lm.continue_units(lm.text("the cat"), max_new_units=10, temperature=1.0, seed=seed)
        assert 1 <= len(out) <= 10 and int(out.min()) >= 0 and int(out.max()) < lm.vocab.n_units


def test_a_prompt_in_the_same_modality_goes_on_without_a_second_marker(monkeypatch):
    lm = small_lm()
    seen = []
    real = lm.model.generate

    def spy(ids, *args, **kwargs):
        seen.append(ids.tolist())
        return real(ids, *args, **kwargs)

    monkeypatch.setattr(lm.model, "generate", spy)
    v = lm.vocab
    lm.continue_units(lm.speech([1, 2]), max_new_units=3)
    assert seen[0] == [BOS, v.speech_marker, v.unit_offset + 1, v.unit_offset + 2]  # speech goes on
    seen.clear()
    lm.continue_units(lm.text("ab"), max_new_units=3)
    assert seen[0][-1] == v.speech_marker and seen[0].count(v.speech_marker) == 1  # the switch is appended
    seen.clear()
    lm.continue_text(lm.text("ab"), max_new_tokens=3)
    assert seen[0].count(v.text_marker) == 1  # text goes on
    seen.clear()
    lm.continue_text([*lm.text("ab"), *lm.speech([4])], max_new_tokens=3)
    assert seen[0][-1] == v.text_marker and seen[0].count(v.text_marker) == 2  # after speech: switch back


def test_mix_batches_follow_the_mix_and_are_reproducible():
    from slm_course.spiritlm_recipe import mix_batches

    v = SpiritVocab(TOK.vocab_size, 10)
    speech = {"words": [["a", "b", "c"]] * 4, "units": [[torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4])]] * 4}
    for mix in MIXES:
        cfg = SpiritConfig(mix=mix, context=32, batch_size=8, warm=False)
        batch = mix_batches(["a b c"], speech, v, TOK.encode, cfg)
        x = batch(3)["tokens"]
        assert x.shape == (8, 32) and torch.equal(x, batch(3)["tokens"])
        starts = x[:, 1]  # every row opens with <bos> and a marker
        assert (x[:, 0] == BOS).all()
        has_text, has_speech = bool((x == v.text_marker).any()), bool((x >= v.unit_offset).any())
        assert has_text == (MIXES[mix][0] + MIXES[mix][2] > 0) and has_speech
        if mix == "speech_only":
            assert (starts == v.speech_marker).all()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="mix"):
        SpiritConfig(mix="both")
    with pytest.raises(ValueError, match="span_words"):
        SpiritConfig(span_words=(3, 1))
    with pytest.raises(ValueError, match="extra_speech"):
        SpiritConfig(extra_speech=-1)


def test_evaluations_on_a_toy_data_set():
    from slm_course.spiritlm_recipe import next_word, pair_accuracy, speech_pairs, story

    lm = small_lm()
    g = torch.Generator().manual_seed(0)

    def item(words):
        return [torch.randint(0, 10, (3,), generator=g) for _ in words]

    sentences = [["the", "cat", "sat"], ["a", "dog", "ran"], ["the", "cook", "cuts", "cake"]]
    data = {"test": {"words": sentences, "speakers": ["f08", "f08", "f08"], "units": [item(w) for w in sentences]}}
    for name in ("story", "lexical", "syntactic"):
        good = [["the", "cat", "sat"], ["a", "dog", "ran"]]
        bad = [["the", "cat", "ran"], ["a", "dog", "sat"]]
        data[f"{name}_good"] = {"words": good, "units": [item(w) for w in good]}
        data[f"{name}_bad"] = {"words": bad, "units": [item(w) for w in bad]}
    for setting in ("s", "t", "t2s", "s2t"):
        assert 0 <= story(lm, data, setting) <= 1 and 0 <= next_word(lm, data, setting) <= 1
    assert 0 <= speech_pairs(lm, data, "lexical") <= 1
    with pytest.raises(ValueError, match="setting"):
        story(lm, data, "s2s")
    with pytest.raises(ValueError, match="spirit_data"):
        next_word(lm, {"train": {}}, "t2s")
    # the same continuation for both members: a tie, which counts half
    assert pair_accuracy(lm, [[]], [lm.text("ab")], [lm.text("ab")]) == 0.5
    # a pair of prompts, one for each member, is a tuple of two lists; a prompt given as a tuple of ids is refused
    one = lm.text("a")
    assert pair_accuracy(lm, [(one, one)], [lm.text("ab")], [lm.text("ab")]) == 0.5
    with pytest.raises(ValueError, match="a prompt is a list of ids"):
        pair_accuracy(lm, [tuple(lm.text("a b"))], [lm.text("ab")], [lm.text("ab")])


def test_few_shot_asr_scores_each_number_of_shots_and_refuses_what_does_not_fit():
    from slm_course.spiritlm_recipe import few_shot_asr

    lm = small_lm()
    g = torch.Generator().manual_seed(1)
    words = [["cat"], ["dog"], ["sun"], ["the", "cat", "sat"]]
    data = {"train": {"words": words, "units": [[torch.randint(0, 10, (4,), generator=g)] * len(w) for w in words]},
            "test": {"words": words[:2], "speakers": ["f08", "f08"],
                     "units": [[torch.randint(0, 10, (4,), generator=g)] for _ in words[:2]]}}
    out = few_shot_asr(lm, data, shots=(0, 1, 2), n_words=1)
    assert sorted(out) == [0, 1, 2] and all(v >= 0 for v in out.values())
    with pytest.raises(ValueError, match="examples"):
        few_shot_asr(lm, data, shots=(0, 5), n_words=1)


def test_story_and_next_word_build_the_pairs_the_chapter_describes():
    from slm_course.spiritlm_recipe import next_word, story

    lm = small_lm(seed=2)
    u = [torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4, 5]), torch.tensor([6])]
    v = [torch.tensor([7]), torch.tensor([8, 9]), torch.tensor([0]), torch.tensor([2, 2])]
    data = {"story_good": {"words": [["a", "cat", "sat", "up"]], "units": [u]},
            "story_bad": {"words": [["a", "cat", "ran", "off"]], "units": [v]}}
    calls = []
    real = lm.score

    def spy(prompts, conts, batch_size=64):
        calls.append((list(map(list, prompts)), list(map(list, conts))))
        return real(prompts, conts, batch_size)

    lm.score = spy
    story(lm, data, "s2t")  # spoken beginning (the fitting member's), written endings
    (pg, cg), (pb, cb) = calls
    T, S, off = lm.vocab.text_marker, lm.vocab.speech_marker, lm.vocab.unit_offset
    assert pg == pb == [[S, off + 1, off + 2, off + 3, T]]
    assert cg == [[*TOK.encode("sat up"), EOS]] and cb == [[*TOK.encode("ran off"), EOS]]
    calls.clear()
    story(lm, data, "t")  # the text goes on after a space, with no second marker
    (pg, cg), _ = calls
    assert pg == [lm.text("a cat")] and cg == [[*TOK.encode(" sat up"), EOS]]
    calls.clear()
    story(lm, data, "s")  # each member its own recording
    (pg, cg), (pb, cb) = calls
    assert pg == [[S, off + 1, off + 2, off + 3]] and pb == [[S, off + 7, off + 8, off + 9]]
    assert cg == [[off + 4, off + 5, off + 6, EOS]]

    # next word: the distractor is the next sentence by the same speaker that ends in another word
    g = torch.Generator().manual_seed(0)
    sentences = [["x", "y", "a"], ["x", "y", "b"], ["x", "y", "c"], ["x", "y", "a"]]
    data = {"test": {"words": sentences, "speakers": ["f08", "m08", "f08", "f08"],
                     "units": [[torch.randint(0, 10, (2,), generator=g) for _ in s] for s in sentences]}}
    calls.clear()
    next_word(lm, data, "s2t")
    (_, good), (_, bad) = calls
    # m08 has no other sentence: skipped; f08's "a" skips the other "a" and m08's sentence
    assert good == [TOK.encode(w) for w in ("a", "c", "a")]
    assert bad == [TOK.encode(w) for w in ("c", "a", "c")]


def test_units_given_per_word_tensors_says_to_concatenate_them():
    vocab = SpiritVocab(29, 100)
    per_word = [torch.tensor([3, 4]), torch.tensor([5])]
    with pytest.raises(TypeError, match=r"torch.cat\(...\) them into one tensor first"):
        vocab.units(per_word)
    assert vocab.units(torch.cat(per_word)).tolist() == [vocab.unit_offset + u for u in (3, 4, 5)]


def test_continuations_stop_at_the_training_window():
    vocab = SpiritVocab(TOK.vocab_size, 10)
    torch.manual_seed(0)
    model = LM(LMConfig(vocab_size=vocab.size, d_model=32, n_layers=2, n_heads=2, max_len=64)).eval()
    lm = SpiritLM(model, vocab, TOK, SpiritConfig(context=16, max_len=64), {})
    prompt = lm.speech([1, 2, 3, 4, 5])  # <bos> [SPEECH] 5 units: 7 of the 16 positions
    for seed in range(3):
        assert len(lm.continue_units(prompt, max_new_units=40, temperature=1.0, seed=seed)) <= 16 - 7
    ends = []
    real = lm.model.generate

    def spy(ids, n, *args, **kwargs):
        ends.append(len(ids) + n)
        return real(ids, n, *args, **kwargs)

    lm.model.generate = spy
    lm.continue_text(prompt, max_new_tokens=40)
    assert ends == [16]  # <bos> [SPEECH] 5 units [TEXT], then 8 characters at most
    with pytest.raises(ValueError, match="trained on windows of 16"):
        lm.continue_units(lm.speech([1] * 15), max_new_units=3)
    with pytest.raises(ValueError, match="trained on windows of 16"):
        lm.continue_text(lm.speech([1] * 14), max_new_tokens=3)
