"""The Moshi recipe's data path (notebook 08): dialogues -> frame-level streams -> the model's grids."""

import pytest
import torch

from slm_course.corpus.dialogues import DialogueSet, build_dialogues
from slm_course.frame_codec import FRAME_S, n_frames
from slm_course.moshi import EPAD, PAD, MoshiLM, undelay
from slm_course.moshi_recipe import GridBatches, config_for, encode_dialogues, grids, words_of_text
from slm_course.speech_tokens import SpeechTokens


class CountingUnits:
    """A stand-in tokenizer: unit = loudness bucket of each 20 ms frame (no trained model needed)."""

    vocab_size = 6

    def encode(self, wav):
        frames = wav[: len(wav) // 320 * 320].view(-1, 320).abs().mean(1)
        ids = (frames * 50).clamp(0, 5).long()
        return SpeechTokens(ids, 50.0, torch.ones_like(ids))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("moshi") / "dlg"
    build_dialogues(root, n_dialogues=8, n_test=2, seed=1, workers=1, progress=False)
    dset = DialogueSet(root)
    return dset, encode_dialogues(dset, CountingUnits(), levels=2, codebook_size=4, progress=False)


def test_streams_line_up_with_the_dialogue(data):
    dset, d = data
    assert d["silence"] == 6 and d["n_semantic"] == 7 and d["rvq"]["codebooks"].shape == (2, 4, 640)
    assert len(d["train"]) + len(d["valid"]) == 8 and len(d["test"]) == 2
    for rec in d["train"]:
        dlg = dset[rec["id"]]
        T = n_frames(round(dlg.duration * dset.sr))
        assert rec["user"].shape == rec["system"].shape == (3, T) and rec["system_text"].shape == (T,)
        # the system's words, in order, on its text stream, each after an EPAD and no earlier than it is said
        sys_words = [w.label.lower() for t in dlg.turns if t.channel == "system" for w in t.word_spans]
        assert words_of_text(rec["system_text"].tolist(), d["words"]).split() == sys_words
        text = rec["system_text"].long()
        word_frames = [f for f in range(T) if text[f] not in (PAD, EPAD)]
        assert all(text[f - 1] == EPAD for f in word_frames)
        spans = [w for t in dlg.turns if t.channel == "system" for w in t.word_spans]
        assert all(f >= int(w.start / FRAME_S) for f, w in zip(word_frames, spans))
        # silence on the semantic stream before the first turn of each channel
        for name in ("user", "system"):
            first = min(t.start for t in dlg.turns if t.channel == name)
            assert (rec[name][0, : int(first / FRAME_S)] == d["silence"]).all()


def test_grids_delay_the_streams_and_batches_pad_with_initial(data):
    _, d = data
    cfg = config_for(d, max_frames=200, levels=2, codebook_size=4)
    g = grids(d["train"][:2], cfg)
    assert g[0].shape[0] == cfg.n_streams == 7
    rec = d["train"][0]
    back = undelay(g[0], cfg.delays)
    assert torch.equal(back[0], rec["system_text"].long()) and torch.equal(back[4:], rec["user"].long())
    one = grids(d["train"][:2], config_for(d, "asr", max_frames=200))
    assert len(one) == 4 and one[0].shape[0] == 4  # one grid per channel: text, semantic, 2 acoustic
    batch = GridBatches(g, 3, cfg.initial, seed=0)(1)["grid"]
    assert batch.shape[:2] == (3, 7) and torch.equal(batch, GridBatches(g, 3, cfg.initial, seed=0)(1)["grid"])
    out = MoshiLM(cfg)({"grid": batch})
    assert torch.isfinite(out["loss"]) and out["semantic_nll"] > 0
    with pytest.raises(ValueError, match="unknown variant"):
        config_for(d, "duplex")


class EchoAsr:
    """A stand-in recogniser that always hears ``text``."""

    def __init__(self, text):
        self.text = text

    def transcribe(self, wavs):
        return [self.text] * len(wavs)


def test_answer_test_scores_what_the_recogniser_hears_and_times_the_turn(data):
    from slm_course.corpus.dialogues import answer, answer_candidates
    from slm_course.moshi_eval import answer_test, stream_nll

    dset, d = data
    d = {**d, "test": d["test"] * 2}
    cfg = config_for(d, max_frames=200, levels=2, codebook_size=4, d_model=32, depth_d_model=16)
    torch.manual_seed(0)
    model = MoshiLM(cfg)
    q = dset[d["test"][0]["id"]].exchanges[0][0]
    right = answer_test(model, d, dset, EchoAsr(answer(q.text)), n=1, listen_s=1.0)
    assert right["accuracy"] == 1.0 and right["examples"][0]["said"] == answer(q.text)
    other = next(c for c in answer_candidates(q.text) if c != answer(q.text))
    wrong = answer_test(model, d, dset, EchoAsr(other), n=1, listen_s=1.0)
    assert wrong["accuracy"] == 0.0
    ex = right["examples"][0]
    assert ex["tokens"].shape[0] == cfg.n_system and 0 <= right["overlap_rate"] <= 1
    assert ex["latency_s"] is None or ex["latency_s"] > -q.end
    nll = stream_nll(model, d, "test")
    assert set(nll) == {"text_nll", "semantic_nll", "acoustic_nll"} and all(v > 0 for v in nll.values())


def test_delay_swap_measures_refuse_the_wrong_variant_and_score_the_right_one(data):
    from slm_course.moshi_eval import streaming_asr, streaming_tts

    dset, d = data
    small = {"max_frames": 200, "levels": 2, "codebook_size": 4, "d_model": 32, "depth_d_model": 16}
    torch.manual_seed(0)
    duplex, asr_model, tts_model = (MoshiLM(config_for(d, v, **small)) for v in ("full", "asr", "tts"))
    with pytest.raises(ValueError, match="variant 'asr'"):
        streaming_asr(duplex, d, n=1)
    with pytest.raises(ValueError, match="variant 'tts'"):
        streaming_tts(asr_model, d, EchoAsr("x"), n=1)
    assert streaming_asr(asr_model, d, n=1) >= 0
    said = words_of_text(d["test"][0]["system_text"].tolist(), d["words"])
    assert streaming_tts(tts_model, d, EchoAsr(said), n=1) == 0.0  # the recogniser hears the text: no error


def test_transcript_nll_weights_by_tokens_and_skips_empty_transcripts():
    from types import SimpleNamespace

    from slm_course.moshi_eval import transcript_nll

    class Chars:
        def encode(self, text, bos=False):
            return [1] * bos + [ord(c) for c in text]

    class FlatModel:  # every next token costs the same: 2.0 nats, except a text's first, which costs 5.0
        cfg = SimpleNamespace(max_len=64)

        def __call__(self, batch):
            n = batch["tokens"].shape[1] - 1
            return {"loss": torch.tensor((5.0 + 2.0 * (n - 1)) / n)}

    lm = SimpleNamespace(tokenizer=Chars(), model=FlatModel())
    assert transcript_nll(lm, ["ab", "", "abcd"]) == pytest.approx((5 + 2 + 5 + 2 * 3) / 6)
    assert transcript_nll(lm, ["", "  "]) != transcript_nll(lm, ["", "  "])  # nan when nothing was heard
    # a written answer scores as its transcript: lower case, punctuation as spaces
    assert transcript_nll(lm, ["The duck is in the park."]) == transcript_nll(lm, ["the duck is in the park"])
    with pytest.raises(TypeError, match="wrap it"):
        transcript_nll(lm, "the duck is in the park")


def test_answer_test_can_give_the_true_answer_text_and_the_model_keeps_it(data):
    from slm_course.moshi_eval import answer_test

    dset, d = data
    small = {"max_frames": 200, "levels": 2, "codebook_size": 4, "d_model": 32, "depth_d_model": 16}
    torch.manual_seed(0)
    model = MoshiLM(config_for(d, **small))
    rec = d["test"][0]
    a = dset[rec["id"]].exchanges[0][1]
    res = answer_test(model, d, dset, EchoAsr("x"), n=1, give_text=True)
    said = res["examples"][0]["monologue"]
    assert said == a.text.rstrip(".?").replace(",", "")  # the first answer's words, and nothing after them
    with pytest.raises(ValueError, match="inner monologue"):
        answer_test(MoshiLM(config_for(d, "no_monologue", **small)), d, dset, EchoAsr("x"), n=1, give_text=True)


@pytest.mark.parametrize("bad", [{"n": 0}, {"n": 1.5}, {"listen_s": 0}, {"temperature": -1}])
def test_answer_test_says_what_is_wrong_with_its_arguments(data, bad):
    from slm_course.moshi_eval import answer_test

    dset, d = data
    model = MoshiLM(config_for(d, max_frames=200, levels=2, codebook_size=4, d_model=32, depth_d_model=16))
    with pytest.raises(ValueError, match="n >= 1"):
        answer_test(model, d, dset, EchoAsr("x"), **{"n": 1, **bad})


@pytest.mark.parametrize("bad", [0, 1.5, True])
def test_bench_moshi_says_what_is_wrong_with_its_sampling_seeds(bad):
    from slm_course.moshi_eval import bench_moshi

    with pytest.raises(ValueError, match="sampling_seeds must be a positive int"):
        bench_moshi(sampling_seeds=bad)
