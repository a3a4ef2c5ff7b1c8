"""The speech-aware text LM's parts (notebook 09): adapters, LoRA, the frozen LM with new tokens, the prompts."""

import copy

import pytest
import torch
from torch import nn

from slm_course.lm import IGNORE, LM, LMConfig
from slm_course.salmonn import (
    AUDIO,
    SUMMARY,
    PoolAdapter,
    SpeechAwareLM,
    WindowQFormer,
    add_lora,
    frozen_digest,
    lora_layers,
    set_lora_scale,
)
from slm_course.salmonn_recipe import (
    NEW_TOKENS,
    PROMPTS,
    SEEN_FAMILIES,
    TASKS,
    Prompter,
    SalmonnConfig,
    answer_of,
    arithmetic_answer,
    collate,
    follows_continue,
    on_topic,
)
from slm_course.text import CharTokenizer


def tiny_lm(vocab: int = 10) -> LM:
    torch.manual_seed(0)
    return LM(LMConfig(vocab_size=vocab, d_model=32, n_heads=2, max_len=64))


def test_pool_adapter_is_a_masked_mean_of_stride_frames_then_the_mlp():
    torch.manual_seed(0)
    ad = PoolAdapter(6, 8, stride=3)
    x = torch.randn(2, 7, 6)
    out, n, summary = ad(x, torch.tensor([7, 4]))
    assert summary.shape == (2, 0, 8)
    assert out.shape == (2, 3, 8) and n.tolist() == [3, 2]
    normed = ad.norm(x)
    by_hand = [normed[0, 0:3].mean(0), normed[0, 3:6].mean(0), normed[0, 6:7].mean(0), normed[1, 3:4].mean(0)]
    got = [out[0, 0], out[0, 1], out[0, 2], out[1, 1]]
    for want, have in zip(by_hand, got):
        assert torch.allclose(ad.mlp(want), have, atol=1e-6)
    alone, _, _ = ad(x[1:, :4], torch.tensor([4]))  # padding does not leak into the means
    assert torch.allclose(alone[0], out[1, :2], atol=1e-6)
    ad.n_global = 1  # and a summary: the MLP of the mean of every frame
    out_g, n_g, summary = ad(x, torch.tensor([7, 4]))
    assert n_g.tolist() == [3, 2] and torch.allclose(out_g, out, atol=1e-6) and summary.shape == (2, 1, 8)
    assert torch.allclose(summary[1, 0], ad.mlp(normed[1, :4].mean(0)), atol=1e-6)


def test_window_qformer_gives_n_queries_per_window_and_windows_do_not_mix():
    torch.manual_seed(0)
    qf = WindowQFormer(6, 8, window=4, n_queries=2, d_model=16, n_heads=2).eval()
    x = torch.randn(1, 10, 6)
    out, n, _ = qf(x, torch.tensor([10]))
    assert out.shape == (1, 6, 8) and n.tolist() == [6]  # 3 windows x 2 queries
    y = x.clone()
    y[0, 5] += torch.randn(6)  # a frame of the second window (not a constant shift: the input LayerNorm removes it)
    out2, _, _ = qf(y, torch.tensor([10]))
    changed = (out2 - out).abs().amax(-1)[0] > 1e-6
    assert changed.tolist() == [False, False, True, True, False, False]
    padded = torch.cat([x, torch.randn(1, 5, 6)], 1)  # padding after the end changes nothing
    out3, n3, _ = qf(padded, torch.tensor([10]))
    assert n3.tolist() == [6] and torch.allclose(out3[0, :6], out[0], atol=1e-5)
    with pytest.raises(ValueError, match="encoder frames"):
        qf(torch.randn(1, 10, 5), torch.tensor([10]))
    torch.manual_seed(0)
    qg = WindowQFormer(6, 8, window=4, n_queries=2, d_model=16, n_heads=2, n_global=1).eval()
    out_g, n_g, s_g = qg(x, torch.tensor([10]))
    assert out_g.shape == (1, 6, 8) and n_g.tolist() == [6] and s_g.shape == (1, 1, 8)
    out_g2, _, s_g2 = qg(y, torch.tensor([10]))
    changed = (out_g2 - out_g).abs().amax(-1)[0] > 1e-6
    assert changed.tolist() == [False, False, True, True, False, False]
    assert not torch.allclose(s_g2, s_g)  # the utterance-level query hears every frame
    _, _, s_g3 = qg(padded, torch.tensor([10]))
    assert torch.allclose(s_g3, s_g, atol=1e-5)  # but not the padding
    with pytest.raises(ValueError, match="window"):
        WindowQFormer(6, 8, window=0)


def test_lora_starts_as_the_frozen_lm_and_is_w_plus_scaled_ba():
    lm = tiny_lm()
    tokens = torch.randint(0, 10, (2, 7))
    before = lm.logits(tokens)
    digest = frozen_digest(lm)
    add_lora(lm, rank=4, alpha=8.0)
    assert torch.allclose(lm.logits(tokens), before, atol=1e-6)  # B = 0 at the start
    trainable = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    layer = lm.blocks[0].attn.qkv
    nn.init.normal_(layer.lora_B["default"].weight)  # as if trained
    x = torch.randn(3, 32)
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    by_hand = layer.base_layer(x) + (8.0 / 4) * x @ A.T @ B.T
    assert torch.allclose(layer(x), by_hand, atol=1e-5)
    set_lora_scale(lm, 0.5)
    assert torch.allclose(layer(x), layer.base_layer(x) + 0.5 * (8.0 / 4) * x @ A.T @ B.T, atol=1e-5)
    set_lora_scale(lm, 0.0)
    assert torch.allclose(lm.logits(tokens), before, atol=1e-6)  # scale 0: the frozen LM again
    assert frozen_digest(lm) == digest and len(lora_layers(lm)) == 4
    with pytest.raises(ValueError, match="factor"):
        set_lora_scale(lm, -1)
    with pytest.raises(ValueError, match="no LoRA"):
        set_lora_scale(tiny_lm(), 1.0)


def _model(adapter=None) -> SpeechAwareLM:
    lm = add_lora(tiny_lm(), rank=2)
    torch.manual_seed(1)
    return SpeechAwareLM(lm, adapter or PoolAdapter(6, 32, stride=2), n_new_tokens=3)


def _rows():
    # <bos>=1, new tokens 10, 11, 12; two rows with 2 and 3 audio slots
    a = [1, 10, AUDIO, AUDIO, 11, 5, 6, 12, 7, 8, 2]
    b = [1, 10, AUDIO, AUDIO, AUDIO, 11, 5, 12, 9, 2]
    ta = [IGNORE] * 7 + [7, 8, 2, IGNORE]
    tb = [IGNORE] * 7 + [9, 2, IGNORE]
    return [torch.randn(4, 6), torch.randn(5, 6)], [a, b], [ta, tb]


def test_speech_aware_lm_trains_only_adapter_lora_and_new_rows():
    model = _model()
    frames, ids, targets = _rows()
    batch = collate(frames, ids, targets)
    digest = frozen_digest(model.lm)
    out = model(batch)
    assert out["logits"].shape == (2, 11, 13) and torch.isfinite(out["loss"])
    out["loss"].backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("adapter.") for n in with_grad) and "new_emb.weight" in with_grad
    assert any("lora_" in n for n in with_grad)
    assert all(n.startswith(("adapter.", "new_emb.")) or "lora_" in n for n in with_grad)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    opt.step()
    assert frozen_digest(model.lm) == digest
    bad = dict(batch, tokens=batch["tokens"].clone())
    bad["tokens"][0, 2] = 5  # one slot too few
    with pytest.raises(ValueError, match="AUDIO slots"):
        model(bad)


@pytest.mark.parametrize("adapter", ["pool", "qformer", "qformer+summary"])
def test_greedy_generation_is_the_argmax_of_the_teacher_forced_logits(adapter):
    ad = PoolAdapter(6, 32, stride=2) if adapter == "pool" else WindowQFormer(
        6, 32, window=2, d_model=16, n_heads=2, n_global=int(adapter.endswith("summary")))
    model = _model(ad).eval()
    for layer in lora_layers(model):
        nn.init.normal_(layer.lora_B["default"].weight, std=0.5)  # a LoRA that changes something
    frames, ids, _ = _rows()
    prompts = [ids[0][:8], ids[1][:8]]  # different lengths: each fills its cache, then they decode together
    if ad.n_global:
        prompts = [p[:-1] + [SUMMARY] + p[-1:] for p in prompts]
    got = model.generate(collate(frames, prompts, prompts)["feats"], torch.tensor([4, 5]), prompts, 5, stop_token=-5)
    for b in range(2):
        row = prompts[b] + got[b]
        logits = model(collate([frames[b]], [row], [[IGNORE] * len(row)]))["logits"][0]
        assert got[b] == logits[len(prompts[b]) - 1 : -1].argmax(-1).tolist()
    # each row runs to the end of the context by its own length, not its batch's longest
    capped = model.generate(collate(frames, prompts, prompts)["feats"], torch.tensor([4, 5]), prompts, 60,
                            stop_token=-5, context=14)
    assert [len(c) for c in capped] == [14 - len(p) for p in prompts]
    assert [c[:5] for c in capped] == got
    with pytest.raises(ValueError, match="no room"):
        model.generate(collate(frames, prompts, prompts)["feats"], torch.tensor([4, 5]), prompts, 5, 2,
                       context=len(prompts[1]))
    with pytest.raises(ValueError, match="max_len"):
        model.generate(collate(frames, prompts, prompts)["feats"], torch.tensor([4, 5]), prompts, 5, 2, context=10**6)


def test_prompter_rows_put_the_loss_on_the_answer_and_eos_only():
    tok = CharTokenizer("abcdefghiklmnopqrstuvwxyz ")
    p = Prompter(tok)
    ids, targets = p.row(3, "is it", "male")
    V = tok.vocab_size
    with_summary, _ = p.row(3, "is it", "male", n_summary=2)
    assert with_summary[with_summary.index(V + 2) - 2 : with_summary.index(V + 2)] == [SUMMARY, SUMMARY]
    assert ids[:6] == [tok.bos_id, V, AUDIO, AUDIO, AUDIO, V + 1]  # <bos> <audio> slots </audio>
    reply = ids.index(V + 2)
    assert tok.decode(ids[6:reply]) == "is it" and ids[-1] == tok.eos_id
    assert [t for t in targets if t != IGNORE] == tok.encode("male") + [tok.eos_id]
    assert targets[reply] == tok.encode("m")[0]  # <reply> predicts the first character
    tagged, _ = p.row(2, "ignored", "male", tag="gender")
    assert tagged[5] == V + NEW_TOKENS.index("<|gender|>") and tagged[6] == V + 2
    assert p.text(ids) == "is itmale"
    open_row, open_targets = p.row(3, "is it")
    assert open_row == ids[: reply + 1] and set(open_targets) == {IGNORE}


def test_prompts_are_spelled_with_the_text_lms_characters_and_families_are_complete():
    chars = set("abcdefghiklmnopqrstuvwxyz ")  # the text LM's characters: no j, no punctuation
    for task, families in PROMPTS.items():
        assert set(families) == set(SEEN_FAMILIES) | {"could"}, task
        for phrasings in families.values():
            for text in phrasings:
                assert set(text) <= chars, text
        seen = {t for f in SEEN_FAMILIES for t in families[f]}
        assert not seen & set(families["could"])
    # no prompt offers its answers: the frozen LM would copy them instead of listening
    offered = {"gender": ("male", "female", "man", "woman"), "style": ("calm", "neutral", "excited"), "question": ("question", "statement"),
               "transcribe_question": ("question", "statement")}
    for task, words in offered.items():
        for phrasings in PROMPTS[task].values():
            for text in phrasings:
                assert not set(text.split()) & set(words), text


class _U:
    def __init__(self, **kw):
        self.__dict__.update(dict(words=("the", "cup"), gender="male", style="calm", question=False, kind="statement",
                                  topic="kitchen") | kw)


def test_answers_come_from_the_corpus_labels():
    assert arithmetic_answer(("what", "is", "two", "plus", "three")) == "five"
    assert arithmetic_answer(("nine", "minus", "four", "is", "five")) == "five"
    assert arithmetic_answer(("the", "cup")) is None
    u = _U()
    assert [answer_of(u, t) for t in TASKS] == ["the cup", "male", "calm", "statement", "kitchen", None]
    q = _U(words=("what", "is", "ten", "minus", "six"), gender="female", question=True, kind="arithmetic", topic=None)
    assert [answer_of(q, t) for t in TASKS] == ["what is ten minus six", "female", "calm", "question", None, "four"]
    assert answer_of(q, "transcribe_question") == "what is ten minus six question"
    for task in ("gender", "question"):  # a yes/no label is decided by the first character the LM writes
        assert answer_of(u, task)[0] != answer_of(q, task)[0]
    assert answer_of(dict(vars(q)), "arithmetic") == "four"  # a stored utterance (a dict) answers the same
    with pytest.raises(ValueError, match="unknown task"):
        answer_of(u, "translate")


def test_following_the_continue_instruction_means_new_words_not_a_transcript_or_a_label():
    assert follows_continue("the pig is old", "the farmer counts the pig")
    assert follows_continue("the cow is muddy", "the farmer counts the pig")  # a new sentence: it follows
    assert not follows_continue("the farmer counts the pig", "the farmer counts the pig")
    assert not follows_continue("the farmer counts the pigs", "the farmer counts the pig")
    assert not follows_continue("male", "the farmer counts the pig")
    assert follows_continue("the pig is oldd", "the farmer counts the pig")  # one misspelt word is still a sentence
    assert not follows_continue("sheeeeenit platatemen the bench", "the farmer counts the pig")  # not words
    assert on_topic("the pig is old", "the farmer counts the pig")
    assert not on_topic("the cow is muddy", "the farmer counts the pig")  # ... but not about this story
    assert not on_topic("what is the pig", "what does the farmer feed")  # only function words shared


def test_pitch_frames_give_each_encoder_frame_the_voice_height():
    import numpy as np

    from slm_course.salmonn_recipe import pitch_frames

    sr, f0 = 16000, 200.0
    t = np.arange(sr) / sr
    wav = np.where(t < 0.5, 0.5 * np.sin(2 * np.pi * f0 * t), 0.0).astype(np.float32)  # voiced, then silence
    frames = pitch_frames(torch.from_numpy(wav), 33)
    assert frames.shape == (33, 2)
    assert frames[:10, 0].min() > 0.9 and frames[-8:, 0].max() == 0  # voiced share
    assert torch.allclose(frames[:, 1], torch.full((33,), np.log2(f0)), atol=0.05)  # unvoiced frames: the median


def _tiny_speech_lm():
    """A character LM with LoRA behind a pooling adapter, small enough for a unit test: (tokenizer, model)."""
    tok = CharTokenizer("abcdefghiklmnopqrstuvwxyz ")
    lm = add_lora(LM(LMConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, max_len=128)), rank=2, alpha=4.0)
    return tok, SpeechAwareLM(lm, PoolAdapter(6, 32, stride=2, n_global=1), n_new_tokens=len(NEW_TOKENS))


def _lora_scales(model):
    return {layer.scaling["default"] for layer in lora_layers(model)}


def test_activation_tuning_trains_lora_only_on_answers_the_model_wrote_with_its_lora_scaled_down(monkeypatch):
    from slm_course import salmonn_recipe
    from slm_course.salmonn_recipe import activation_examples, activation_tune

    tok, model = _tiny_speech_lm()
    torch.manual_seed(0)
    animals = ("pig", "cow", "hen", "goat") * 5
    data = {"frames": [torch.randn(8 + i % 5, 6) for i in range(20)],
            "utts": [{"words": ["the", "farmer", "feeds", "the", w], "gender": "male", "style": "calm",
                      "question": False, "kind": "statement", "topic": "farm"} for w in animals]}
    seen_scales = []

    def fake_answers(m, prompter, frames, prompts, tag=None, **kw):  # the damped model "writes" these
        seen_scales.append(_lora_scales(m))
        return ["the farmer feeds the pig" if k % 3 == 0 else "male" if k % 3 == 1 else
                "the big barn is old and red" if k % 6 == 2 else f"the barn is red {'x' * k}" for k in range(len(frames))]

    monkeypatch.setattr(salmonn_recipe, "answers", fake_answers)
    prompter = Prompter(tok)
    examples = activation_examples(model, data, prompter, n=4, scale=0.5)
    assert seen_scales == [{0.5 * 4.0 / 2}] and _lora_scales(model) == {4.0 / 2}  # a damped copy; the model as it was
    stories = [story for _, _, story in examples]
    assert len(stories) == 4 and all(s.startswith(("the barn is red", "the big barn")) for s in stories)
    assert all(prompt in PROMPTS["continue"]["tell"] + PROMPTS["continue"]["ask"] for _, prompt, _ in examples)
    with pytest.raises(ValueError, match="fewer"):
        activation_examples(model, data, prompter, n=40)
    with pytest.raises(ValueError, match="scale"):
        activation_examples(model, data, prompter, n=4, scale=1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    digest = frozen_digest(model.lm)
    cfg = SalmonnConfig(mix=(("transcribe", 0.5), ("gender", 0.5)))
    activation_tune(model, data, prompter, examples, cfg, steps=5, lr=1e-2, replay=2)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)  # the adapter and the new rows stay as they were
    assert frozen_digest(model.lm) == digest
    assert all(p.requires_grad == ("lora_" in n or not n.startswith("lm.")) for n, p in model.named_parameters())
    with pytest.raises(ValueError, match="examples"):
        activation_tune(model, data, prompter, [], cfg)


def test_rehearsal_keeps_the_models_own_answers_and_activation_tuning_trains_on_them_beside_the_examples(monkeypatch):
    from slm_course import salmonn_recipe
    from slm_course.salmonn_recipe import activation_tune, rehearsal

    tok, model = _tiny_speech_lm()
    model.cfg = SalmonnConfig(mix=(("transcribe", 0.5), ("gender", 0.5)))
    torch.manual_seed(0)
    data = {"frames": [torch.randn(8 + i % 5, 6) for i in range(12)],
            "utts": [{"words": ["the", "cow"], "gender": "male", "style": "calm", "question": False,
                      "kind": "statement", "topic": "farm"}] * 12}
    new = {"frames": [torch.randn(n, 6) for n in (9, 300, 10, 11)]}  # one too long to rehearse
    monkeypatch.setattr(salmonn_recipe, "answers",
                        lambda m, prompter, frames, prompts, tag=None, **kw: ["the hen " + "a" * len(f)
                                                                              for f in frames])
    prompter = Prompter(tok)
    kept = rehearsal(model, new, prompter, max_frames=140)
    assert [i for i, _, _ in kept["rows"]] == [0, 2, 3] and kept["task"] == "transcribe"
    assert [a for _, _, a in kept["rows"]] == ["the hen " + "a" * n for n in (9, 10, 11)]  # its own answers
    assert all(p in PROMPTS["transcribe"]["tell"] + PROMPTS["transcribe"]["ask"] for _, p, _ in kept["rows"])
    with pytest.raises(ValueError, match="trained task"):
        rehearsal(model, new, prompter, task="continue")
    with pytest.raises(ValueError, match="valid"):
        rehearsal(model, {"frames": []}, prompter)
    sizes = []
    real_collate = salmonn_recipe.collate
    monkeypatch.setattr(salmonn_recipe, "collate", lambda f, i, t, s=None: sizes.append(len(f)) or real_collate(f, i, t, s))
    examples = [(0, PROMPTS["continue"]["tell"][0], "the barn is red and old")]
    activation_tune(model, data, prompter, examples, model.cfg, steps=3, lr=1e-2, replay=2, rehearse=kept,
                    n_rehearse=2)
    assert sizes[-3:] == [1 + 2 + 2] * 3  # each batch: the examples, the replayed mix, the rehearsed rows
    # cut into parts by row length, each batch gives the same loss: the same tuning, with less padding
    tuned = [activation_tune(copy.deepcopy(model), data, prompter, examples, model.cfg, steps=2, lr=1e-2, replay=2,
                             rehearse=kept, n_rehearse=2, parts=p) for p in (1, 3)]
    assert sizes[-3:] == [2, 2, 1]  # the last step's five rows, in three parts
    lora = [{k: v for k, v in m.state_dict().items() if "lora_" in k} for m in tuned]
    assert all(torch.allclose(lora[0][k], lora[1][k], atol=1e-5) for k in lora[0])
    assert any(not torch.allclose(lora[0][k], model.state_dict()[k]) for k in lora[0])  # and it did tune
    with pytest.raises(ValueError, match="parts must be"):
        activation_tune(model, data, prompter, examples, model.cfg, steps=1, parts=0)
    with pytest.raises(ValueError, match="rehearsal"):
        activation_tune(model, data, prompter, examples, model.cfg, steps=1, n_rehearse=2)
    with pytest.raises(ValueError, match="n_rehearse"):
        activation_tune(model, data, prompter, examples, model.cfg, steps=1, rehearse=kept, n_rehearse=-1)


def test_activation_tuning_draws_examples_from_a_pool_and_long_rehearsed_rows_more(monkeypatch):
    from slm_course import salmonn_recipe
    from slm_course.salmonn_recipe import activation_examples, activation_tune

    tok, model = _tiny_speech_lm()
    model.cfg = SalmonnConfig(mix=(("transcribe", 0.5), ("gender", 0.5)))
    torch.manual_seed(0)
    utt = {"words": ["the", "cow"], "gender": "male", "style": "calm", "question": False, "kind": "statement",
           "topic": "farm"}
    data = {"frames": [torch.randn(8, 6) for _ in range(6)], "utts": [utt] * 6}
    # examples written on other utterances (unheard ones): every candidate, every answer that passes, none with a
    # word that starts as "female" or "male" does
    unheard = {"frames": [torch.randn(9, 6) for _ in range(10)], "utts": [utt] * 10}
    stories = ["the barn is red and old", "the farmer feeds the hen", "the hen is big and red",
               "the duck is in the barn", "the map is old and muddy"]
    monkeypatch.setattr(salmonn_recipe, "answers",
                        lambda m, prompter, frames, prompts, tag=None, **kw: [stories[k % 5] for k in range(len(frames))])
    prompter = Prompter(tok)
    every = activation_examples(model, unheard, prompter, n=None, scale=0.4, candidates=None)
    assert len(every) == 10 and sorted({i for i, _, _ in every}) == list(range(10))
    pool = activation_examples(model, unheard, prompter, n=None, scale=0.4, candidates=None, avoid="fm")
    assert {a for _, _, a in pool} == {stories[k] for k in (0, 2, 3)}  # "farmer", "map" left out
    with pytest.raises(ValueError, match="avoid"):
        activation_examples(model, unheard, prompter, n=None, scale=0.4, avoid=["f"])
    with pytest.raises(ValueError, match="and avoid 'abcdefghiklmnopqrstuvwxyz'"):
        activation_examples(model, unheard, prompter, n=None, scale=0.4, avoid="abcdefghiklmnopqrstuvwxyz")

    short, long_ = torch.randn(4, 6), torch.randn(40, 6)
    rehearse = {"frames": [short, long_], "rows": [(0, "say it", "a"), (1, "say it", "the barn is red " * 3)],
                "task": "transcribe"}
    other = {"frames": [short], "rows": [(0, "who speaks", "male")], "task": "gender"}
    steps = []
    real_collate = salmonn_recipe.collate
    monkeypatch.setattr(salmonn_recipe, "collate", lambda f, i, t, s=None: steps.append(list(f)) or real_collate(f, i, t, s))
    pool_frames = {id(f) for f in unheard["frames"]}
    activation_tune(model, data, prompter, pool, model.cfg, steps=30, lr=1e-3, replay=1, per_step=2,
                    example_frames=unheard["frames"], rehearse=[rehearse, other], n_rehearse=4, by_length=True)
    drawn = [[id(f) for f in rows if id(f) in pool_frames] for rows in steps]
    assert all(len(d) == 2 for d in drawn) and len({tuple(d) for d in drawn}) > 1  # two a step, drawn anew
    assert {i for d in drawn for i in d} == {id(unheard["frames"][i]) for i, _, _ in pool}
    n_long = sum(f is long_ for rows in steps for f in rows)
    n_short = sum(f is short for rows in steps for f in rows)
    assert n_long + n_short == 30 * 4 and n_long > 3 * n_short  # with replacement, long rows far more often
    steps.clear()
    activation_tune(model, data, prompter, pool, model.cfg, steps=1, replay=1, example_frames=unheard["frames"],
                    rehearse=[rehearse, other], n_rehearse=3)  # evenly, without replacement: each row once
    assert sum(f is long_ for f in steps[0]) == 1 and sum(f is short for f in steps[0]) == 2
    batches = []
    monkeypatch.setattr(salmonn_recipe, "collate",
                        lambda f, i, t, s=None: batches.append(s) or real_collate(f, i, t, s))
    before = copy.deepcopy(model)
    activation_tune(model, data, prompter, pool, model.cfg, steps=2, replay=1, per_step=1,
                    example_frames=unheard["frames"], rehearse=[rehearse, other], n_rehearse=3, soft=True)
    taught = [p for s in batches[-2:] for p in s if p is not None]  # the rehearsed rows' soft targets
    assert len(taught) == 2 * 3 and all(p.shape[1] == before.vocab_size for p in taught)
    assert all(torch.allclose(p.sum(-1), torch.ones(len(p))) for p in taught)
    row = prompter.row(before.adapter.out_lengths(torch.tensor([40])).item(), "say it", "the barn is red " * 3,
                       n_summary=1)
    probs = before.example_losses(real_collate([long_], [row[0]], [row[1]]))[1].softmax(-1)[0]
    want = probs[torch.tensor(row[1]) != IGNORE]  # the model's own distribution before tuning, on the long row
    assert any(p.shape == want.shape and torch.allclose(p, want, atol=1e-5) for p in taught)
    for bad in (0, len(pool) + 1, True):
        with pytest.raises(ValueError, match="per_step"):
            activation_tune(model, data, prompter, pool, model.cfg, steps=1, per_step=bad,
                            example_frames=unheard["frames"])


def test_unheard_utterances_and_load_activated_say_what_they_need():
    from slm_course.salmonn_recipe import (
        ACTIVATION,
        ACTIVATION_REHEARSED,
        ACTIVATION_SALMONN,
        load_activated,
        unheard_utterances,
    )

    with pytest.raises(ValueError, match="missing"):
        load_activated(activation={"n": 12})
    with pytest.raises(ValueError, match="unheard"):
        load_activated(activation={**ACTIVATION_SALMONN, "rehearse": 64})
    with pytest.raises(ValueError, match="unheard"):
        load_activated(activation={**ACTIVATION_SALMONN, "examples_from": "unheard"})
    with pytest.raises(ValueError, match="examples_from"):
        load_activated(activation={**ACTIVATION, "examples_from": "valid"})
    assert set(ACTIVATION_SALMONN) <= set(ACTIVATION_REHEARSED) & set(ACTIVATION)
    assert ACTIVATION_REHEARSED["rehearse"] > 0 and ACTIVATION["rehearse"] > 0

    valid = {"frames": [torch.randn(5, 3)], "utts": [{"words": ["the", "cow"]}]}
    got = unheard_utterances({"mean": 0.0, "std": 1.0, "valid": valid}, n_extra=0)
    assert got["frames"] == valid["frames"] and got["utts"] == valid["utts"]  # what it says, to write examples on

    with pytest.raises(ValueError, match="n_extra"):
        unheard_utterances({"mean": 0.0, "std": 1.0}, n_extra=-1)
    with pytest.raises(ValueError, match="load_salmonn_data"):
        unheard_utterances({"train": {}}, n_extra=10)


def test_evaluate_scores_labels_by_exact_match_and_the_combined_task_by_both_parts(monkeypatch):
    from slm_course import salmonn_recipe

    utts = [{"words": w, "gender": g, "style": "calm", "question": q, "kind": "statement", "topic": "kitchen"}
            for w, g, q in ((["the", "cook", "cuts", "the", "cake"], "male", False), (["the", "cake"], "female", True))]
    data = {"frames": [torch.randn(8, 6), torch.randn(10, 6)], "utts": utts}
    replies = {"gender": ["male", "a woman"],  # right, then wrong: only the exact label counts
               "transcribe_question": ["the cook cuts the cake statement",  # both parts right
                                       "the cake statement"]}  # the words right, the label wrong

    def fake_answers(model, prompter, frames, prompts, tag=None, **kw):
        return replies[task][: len(frames)]

    monkeypatch.setattr(salmonn_recipe, "answers", fake_answers)
    for task in ("gender", "transcribe_question"):
        r = salmonn_recipe.evaluate(_model(), None, data, families=("tell",), tasks=(task,))
        assert r[f"{task}/tell"].get("acc", r[f"{task}/tell"].get("follows")) == 0.5, task
    replies["transcribe_question"] = ["the cook cuts the cake statement", "the dog question"]  # a word wrong
    r = salmonn_recipe.evaluate(_model(), None, data, families=("tell",), tasks=("transcribe_question",))
    assert r["transcribe_question/tell"]["follows"] == 0.5


def test_evaluate_and_load_salmonn_data_refuse_what_they_cannot_do():
    from slm_course.salmonn_recipe import evaluate, load_salmonn_data

    with pytest.raises(ValueError, match="tasks"):
        evaluate(_model(), None, {"frames": [], "utts": []}, tasks=("translate",))
    with pytest.raises(ValueError, match="families"):
        evaluate(_model(), None, {"frames": [], "utts": []}, families=("politely",))
    with pytest.raises(ValueError, match="limit"):
        load_salmonn_data(("test",), limit=0)


def test_the_loss_weighs_each_example_the_same_whatever_its_answers_length():
    import torch.nn.functional as F

    model = _model()
    frames, ids, targets = _rows()  # answers of 3 and 2 tokens
    out = model(collate(frames, ids, targets))
    per_row = []
    for b in range(2):
        logits = out["logits"][b, : len(ids[b])]
        per_row.append(F.cross_entropy(logits, torch.tensor(targets[b]), ignore_index=IGNORE))
    assert torch.allclose(out["loss"], torch.stack(per_row).mean(), atol=1e-6)
    per_token = F.cross_entropy(out["logits"].reshape(-1, 13), collate(frames, ids, targets)["targets"].reshape(-1),
                                ignore_index=IGNORE)
    assert not torch.allclose(out["loss"], per_token)  # not the mean over all tokens


def test_soft_targets_replace_a_rows_one_hot_targets_in_its_loss():
    import torch.nn.functional as F

    model = _model()
    frames, ids, targets = _rows()
    hard = model(collate(frames, ids, targets))
    one_hot = [F.one_hot(torch.tensor([t for t in row if t != IGNORE]), 13).float() for row in targets]
    assert torch.allclose(model(collate(frames, ids, targets, [one_hot[0], None]))["loss"], hard["loss"], atol=1e-6)
    even = torch.full_like(one_hot[1], 1 / 13)  # the second row asked to be unsure at each answer position
    got = model(collate(frames, ids, targets, [None, even]))
    logp = F.log_softmax(hard["logits"][1, : len(ids[1])], -1)[torch.tensor(targets[1]) != IGNORE]
    row0 = F.cross_entropy(hard["logits"][0, : len(ids[0])], torch.tensor(targets[0]), ignore_index=IGNORE)
    assert torch.allclose(got["loss"], (row0 - logp.mean(-1).mean()) / 2, atol=1e-6)


def test_training_has_two_stages_and_keeps_the_lm_frozen():
    from types import SimpleNamespace

    from slm_course.salmonn_recipe import SalmonnConfig, train_salmonn

    tok = CharTokenizer("abcdefghiklmnopqrstuvwxyz ")
    text_lm = SimpleNamespace(model=LM(LMConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, max_len=128)),
                              tokenizer=tok)
    digest = frozen_digest(text_lm.model)
    torch.manual_seed(0)
    utts = [dict(words=["the", "cup"], gender=g, style="calm", question=False, kind="statement", topic="kitchen",
                 speaker="s", id=str(i)) for i, g in enumerate(["male", "female"] * 4)]
    data = {"train": {"frames": [torch.randn(6, 5) for _ in utts], "utts": utts}}
    with pytest.raises(ValueError, match="arithmetic"):  # no utterance here is a sum
        train_salmonn(data, text_lm, SalmonnConfig(steps=1, batch_size=4), progress=False)
    cfg = SalmonnConfig(steps=3, pretrain_steps=2, batch_size=4, warmup_steps=0,
                        mix=(("transcribe", 0.5), ("gender", 0.5)))
    model, history = train_salmonn(data, text_lm, cfg, progress=False)
    assert len(history.loss) == 5 and history.step == [1, 2, 3, 4, 5]
    assert frozen_digest(model.lm) == digest == frozen_digest(text_lm.model)  # the text LM itself is untouched too
    assert not model.training


def tiny_text_lm_and_data(monkeypatch) -> dict:
    """A tiny text LM in place of the course's (``load_text_lm`` patched) and 8 training utterances of noise."""
    from types import SimpleNamespace

    import slm_course.textlm as textlm

    tok = CharTokenizer("abcdefghiklmnopqrstuvwxyz ")
    torch.manual_seed(0)
    text_lm = SimpleNamespace(model=LM(LMConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, max_len=128)),
                              tokenizer=tok)
    monkeypatch.setattr(textlm, "load_text_lm", lambda **kw: text_lm)
    utts = [dict(words=["the", "cup"], gender=g, style="calm", question=False, kind="statement", topic="kitchen",
                 speaker="s", id=str(i)) for i, g in enumerate(["male", "female"] * 4)]
    return {"train": {"frames": [torch.randn(6, 5) for _ in utts], "utts": utts}}


def test_load_salmonn_caches_only_the_trained_parts_and_restores_the_same_model(monkeypatch, tmp_path):
    from slm_course.runtime import load_artifact
    from slm_course.salmonn_recipe import SalmonnConfig, load_salmonn

    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path))
    data = tiny_text_lm_and_data(monkeypatch)
    cfg = SalmonnConfig(steps=2, batch_size=4, warmup_steps=0, mix=(("transcribe", 0.5), ("gender", 0.5)))
    model = load_salmonn(config=cfg, data=data, progress=False)
    files = list(tmp_path.glob("salmonn-*.pt"))
    assert len(files) == 1
    saved = load_artifact(files[0])["state_dict"]
    assert saved and all("lora_" in k or not k.startswith("lm.") for k in saved)  # not the frozen LM's weights
    again = load_salmonn(config=cfg, data={}, progress=False)  # from the cache: no data needed, nothing trained
    batch = collate([data["train"]["frames"][0]], [[1, 29, AUDIO, AUDIO, AUDIO, 30, 5, SUMMARY, 31, 6, 2]],
                    [[IGNORE] * 9 + [6, 2]])
    assert torch.allclose(model(batch)["logits"], again(batch)["logits"], atol=1e-6)
    assert again.metrics["params_trained"] > 0 and again.metrics["params_frozen"] > 0
    with pytest.raises(ValueError, match="unknown variant"):
        load_salmonn("whisper", progress=False)


def test_a_full_run_caches_its_state_at_the_comparison_step_as_the_run_cut_there(monkeypatch, tmp_path):
    import dataclasses

    import slm_course.salmonn_recipe as R

    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path / "a"))
    monkeypatch.setattr(R, "COMPARED_AT", 2)
    data = tiny_text_lm_and_data(monkeypatch)
    cfg = R.SalmonnConfig(steps=5, batch_size=4, warmup_steps=0, mix=(("transcribe", 0.5), ("gender", 0.5)))
    full = R.load_salmonn(config=cfg, data=data, progress=False)
    assert len(list((tmp_path / "a").glob("salmonn-*.pt"))) == 2  # the run, and its state at step 2
    short = dataclasses.replace(cfg, stop_at=2)
    kept = R.load_salmonn(config=short, data={}, progress=False)  # from the cache: nothing trained
    assert len(kept.history["loss"]) == 2 and kept.history["loss"] == full.history["loss"][:2]
    assert kept.metrics["train_seconds"] < full.metrics["train_seconds"]
    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path / "b"))  # now train the cut run itself
    alone = R.load_salmonn(config=short, data=data, progress=False)
    assert alone.history["loss"] == kept.history["loss"]
    for k, v in alone.state_dict().items():
        assert torch.equal(v, kept.state_dict()[k]), k
    assert not all(torch.equal(v, full.state_dict()[k]) for k, v in alone.state_dict().items())
    with pytest.raises(ValueError, match="stop_at"):
        R.SalmonnConfig(steps=5, stop_at=6)


def test_a_batch_cut_by_length_into_parts_has_the_whole_batchs_loss_and_gradient_for_less_padding():
    from types import SimpleNamespace

    from slm_course.salmonn_recipe import Batches, build_model

    tok = CharTokenizer("abcdefghiklmnopqrstuvwxyz ")
    text_lm = SimpleNamespace(model=LM(LMConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, max_len=128)),
                              tokenizer=tok)
    words = ["the", "cup", "is", "red", "and", "the", "cat", "is", "big"]
    utts = [dict(words=words[: 2 + i % 7], gender=g, style="calm", question=False, kind="statement", topic="kitchen",
                 speaker="s", id=str(i)) for i, g in enumerate(["male", "female"] * 10)]
    data = {"frames": [torch.randn(4 + 2 * (i % 7), 5) for i in range(len(utts))], "utts": utts}
    mix = (("transcribe", 0.5), ("gender", 0.5))
    whole_cfg, cut_cfg = (SalmonnConfig(batch_size=8, parts=p, mix=mix) for p in (1, 3))
    torch.manual_seed(0)
    model = build_model(whole_cfg, text_lm, 5)
    with torch.no_grad():  # LoRA's B starts at zero: give it a value so that its gradient is not trivial
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    whole, cut = Batches(data, Prompter(tok), model, whole_cfg)(2), Batches(data, Prompter(tok), model, cut_cfg)(2)
    assert len(cut["parts"]) == 3 and sum(len(p["tokens"]) for p in cut["parts"]) == 8
    lengths = [(p["tokens"] != 2).sum(1) for p in cut["parts"]]
    assert all(int(a.max()) <= int(b.min()) for a, b in zip(lengths, lengths[1:]))  # cut by row length
    assert sum(p["tokens"].numel() for p in cut["parts"]) < whole["tokens"].numel()  # fewer padded positions
    grads = []
    for batch in (whole, cut):
        model.zero_grad()
        loss = model(batch)["loss"]
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)  # the same examples, the same loss
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1]))  # and gradient
    with pytest.raises(ValueError, match="parts"):
        SalmonnConfig(parts=0)
    with pytest.raises(ValueError, match="step"):
        Batches(data, Prompter(tok), model, cut_cfg)(0)
