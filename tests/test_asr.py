"""Tests for slm_course.asr: characters, CTC decoding and loss against torch, batching, learning, caching, FSDD."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from slm_course import asr, asr_recipe
from slm_course.metrics import cer

TINY = asr.AsrConfig(channels=32, hidden=32, layers=1, dropout=0.0, steps=3, frames_per_batch=2000)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread (and a busy machine does not stall them); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fake_examples(lengths: list[int], n_mels: int = 80) -> list[tuple[torch.Tensor, list[int]]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(n, n_mels, generator=gen), [2 + i % 26] * (1 + i % 3)) for i, n in enumerate(lengths)]


# ---------------------------------------------------------------------------------------------
# Characters
# ---------------------------------------------------------------------------------------------


def test_vocab_has_blank_first_then_space_letters_apostrophe():
    assert asr.VOCAB[asr.BLANK] == "<blank>" and asr.BLANK == 0
    assert "".join(asr.VOCAB[1:]) == " abcdefghijklmnopqrstuvwxyz'" and len(asr.VOCAB) == 29


def test_text_ids_roundtrip_normalises():
    ids = asr.text_to_ids("Don't STOP, the cook's cake?")
    assert all(isinstance(i, int) and 0 < i < len(asr.VOCAB) for i in ids)
    assert asr.ids_to_text(ids) == "don't stop the cook's cake"
    assert asr.ids_to_text(torch.tensor([0, *ids, 0])) == "don't stop the cook's cake"  # blanks are skipped
    assert asr.text_to_ids("") == []


def test_unknown_characters_say_what_to_do():
    with pytest.raises(ValueError, match=r"outside the recogniser's vocabulary.*'é'"):
        asr.text_to_ids("café")
    with pytest.raises(ValueError, match="numbers as words"):
        asr.text_to_ids("3 cats")
    with pytest.raises(ValueError, match="ints in"):
        asr.ids_to_text([1, 29])
    with pytest.raises(TypeError, match="str"):
        asr.text_to_ids(["a"])


# ---------------------------------------------------------------------------------------------
# Greedy decoding and the CTC loss
# ---------------------------------------------------------------------------------------------


def one_hot_log_probs(paths: list[list[int]], vocab: int = len(asr.VOCAB)) -> torch.Tensor:
    probs = torch.full((len(paths), max(map(len, paths)), vocab), 0.01)
    for b, path in enumerate(paths):
        for t, s in enumerate(path):
            probs[b, t, s] = 1.0
    return (probs / probs.sum(-1, keepdim=True)).log()  # (B, T, V)


def test_greedy_decode_merges_repeats_and_drops_blanks():
    a, b, c = 2, 3, 4
    lp = one_hot_log_probs([[0, a, a, 0, a, b, b, 0, 0, c], [b, b, b, 0, 0, 0, 0, 0, 0, 0]])
    assert asr.greedy_decode(lp) == [[a, a, b, c], [b]]  # a blank between two a's keeps both
    assert asr.greedy_decode(lp, torch.tensor([5, 3])) == [[a, a], [b]]  # frames past the length are ignored
    assert asr.greedy_decode(lp[0]) == [[a, a, b, c]]  # (T, V) is one utterance
    assert asr.greedy_decode(lp, [0, 10]) == [[], [b]]
    with pytest.raises(ValueError, match="lengths"):
        asr.greedy_decode(lp, [11, 3])
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        asr.greedy_decode(torch.zeros(3))


@pytest.fixture(scope="module")
def model() -> asr.CtcAsr:
    torch.manual_seed(0)
    return asr.CtcAsr(asr.AsrConfig(channels=48, hidden=40, layers=2, dropout=0.2)).eval()


def test_silence_is_transcribed(model):
    silence = torch.zeros(asr.SR)
    assert torch.isfinite(asr.asr_features(silence)).all()
    assert isinstance(model.transcribe(silence)[0], str)  # an untrained model's guess; the point: no error


def test_ctc_loss_matches_torch_by_hand(model):
    batch = asr_recipe.make_batches(fake_examples([40, 44, 37, 41]), frames_per_batch=1000)(1)
    with torch.no_grad():
        loss = model(batch)["loss"]
        lp, out_lengths = model.log_probs(batch["feats"], batch["feat_lengths"])  # (B, T', V)
    s1, s2 = model.config.strides
    assert lp.shape == (4, math.ceil(math.ceil(44 / s1) / s2), len(asr.VOCAB))
    assert out_lengths.tolist() == [math.ceil(math.ceil(n / s1) / s2) for n in batch["feat_lengths"].tolist()]
    assert torch.allclose(lp.exp().sum(-1), torch.ones(lp.shape[:2]), atol=1e-5)
    per_utt = nn.CTCLoss(blank=0, reduction="none")(
        lp.transpose(0, 1), batch["targets"], out_lengths, batch["target_lengths"]
    )  # (B,)
    by_hand = (per_utt / batch["target_lengths"]).mean()  # torch's "mean": per target length, then batch mean
    assert torch.allclose(loss, by_hand, atol=1e-5)


def test_an_utterance_scores_the_same_alone_or_padded_in_a_batch(model):
    feats = [f for f, _ in fake_examples([23, 30, 17])]
    x, lengths = asr.pad_features(feats)
    with torch.no_grad():
        together, _ = model.log_probs(x, lengths)
        for i, f in enumerate(feats):
            alone, n = model.log_probs(f[None], torch.tensor([len(f)]))
            assert torch.allclose(alone[0], together[i, : int(n)], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------


def test_batches_group_by_length_and_pad():
    lengths = [5, 50, 7, 48, 6, 49, 20, 21]
    examples = fake_examples(lengths)
    batches = asr_recipe.make_batches(examples, frames_per_batch=150, seed=1)
    # cut from the length-sorted list, each batch as large as fits 150 frames (padding included)
    assert [[lengths[i] for i in g] for g in batches.groups] == [[5, 6, 7, 20, 21], [48, 49, 50]]
    for step in range(1, len(batches) + 1):
        b = batches(step)
        B, T, D = b["feats"].shape
        assert D == 80 and T == int(b["feat_lengths"].max()) and b["targets"].shape[0] == B
        for row in range(B):
            n, s = int(b["feat_lengths"][row]), int(b["target_lengths"][row])
            original = next(f for f, _ in examples if len(f) == n)
            assert torch.equal(b["feats"][row, :n], original) and not b["feats"][row, n:].any()
            assert (b["targets"][row, :s] > 0).all() and not b["targets"][row, s:].any()
    epoch = [tuple(batches(s)["feat_lengths"].tolist()) for s in range(1, len(batches) + 1)]
    assert sorted(epoch) == sorted(tuple(sorted(lengths[i] for i in g)) for g in batches.groups)  # each batch once
    again = asr_recipe.make_batches(examples, frames_per_batch=150, seed=1)
    assert [again.order(e) for e in range(3)] == [batches.order(e) for e in range(3)]  # the seed fixes the order
    assert len({tuple(batches.order(e)) for e in range(6)}) > 1  # and epochs are shuffled


def test_make_batches_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        asr_recipe.make_batches([])
    with pytest.raises(ValueError, match="frames_per_batch"):
        asr_recipe.make_batches(fake_examples([300]), frames_per_batch=100)
    with pytest.raises(ValueError, match=r"\(frames, n_mels\)"):
        asr_recipe.make_batches([(torch.randn(80), [1])])
    with pytest.raises(ValueError, match="step"):
        asr_recipe.make_batches(fake_examples([10]))(0)


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def test_features_are_normalised_per_band():
    wav = torch.sin(torch.arange(16000) * 0.05) * torch.linspace(0.01, 0.5, 16000) + 0.01 * torch.randn(16000)
    feats = asr.asr_features(wav)
    assert feats.shape == (101, 80)
    assert feats.mean(0).abs().max() < 1e-4 and (feats.std(0, unbiased=False) < 1.0 + 1e-4).all()


def test_wrong_audio_raises_the_audio_modules_errors(model):
    wav = 0.1 * torch.randn(16000)
    with pytest.raises(ValueError, match="resample"):
        model.transcribe(0.1 * torch.randn(8000), sr=8000)
    with pytest.raises(ValueError, match="stereo"):
        model.transcribe(0.1 * torch.randn(2, 16000))
    with pytest.raises(ValueError, match="NaN"):
        model.transcribe([wav, torch.full((16000,), float("nan"))])
    with pytest.raises(ValueError, match="empty"):
        model.transcribe([])
    with pytest.raises(TypeError, match="int16"):
        model.transcribe((wav * 32767).to(torch.int16))
    with pytest.raises(ValueError, match=r"\(B, T, 80\)"):
        model.log_probs(torch.randn(2, 50, 40), torch.tensor([50, 50]))
    assert len(model.transcribe(wav)) == 1 and isinstance(model.transcribe([wav, wav[:8000]])[1], str)


def test_config_and_training_inputs_are_checked(small_corpus):
    with pytest.raises(ValueError, match="hidden"):
        asr.AsrConfig(hidden=0)
    with pytest.raises(ValueError, match="dropout"):
        asr.AsrConfig(dropout=1.0)
    with pytest.raises(ValueError, match="no training utterances"):
        asr_recipe.train_asr([], TINY, progress=False)
    with pytest.raises(ValueError, match="vocabulary"):
        asr_recipe.train_asr([(0.1 * torch.randn(16000), "3 cats")], TINY, progress=False)
    with pytest.raises(ValueError, match="stereo"):
        asr_recipe.train_asr([(0.1 * torch.randn(2, 16000), "cats")], TINY, progress=False)
    with pytest.raises(TypeError, match=r"\(wav, text\) pair"):
        asr_recipe.train_asr([0.1 * torch.randn(16000)], TINY, progress=False)
    with pytest.raises(TypeError, match="CtcAsr"):
        asr_recipe.evaluate_asr(nn.Linear(2, 2), small_corpus)


# ---------------------------------------------------------------------------------------------
# Learning, determinism, cache
# ---------------------------------------------------------------------------------------------


def test_a_tiny_model_overfits_a_few_utterances(small_corpus):
    utts = sorted(small_corpus.split("train"), key=lambda u: u.duration)[:4]
    pairs = [(small_corpus.wav(u), u.text) for u in utts]
    config = asr.AsrConfig(channels=64, hidden=64, layers=1, dropout=0.0, steps=150, lr=5e-3, warmup_steps=10)
    model, history = asr_recipe.train_asr(pairs, config, progress=False)
    assert history.loss[0] / history.final_loss(10) > 10
    hyps = model.transcribe([w for w, _ in pairs])
    assert cer([t for _, t in pairs], hyps) < 0.3, hyps


def test_training_is_deterministic(small_corpus):
    pairs = [(small_corpus.wav(u), u.text) for u in small_corpus.split("train")[:6]]
    a, ha = asr_recipe.train_asr(pairs, TINY, progress=False)
    b, hb = asr_recipe.train_asr(pairs, TINY, progress=False)
    assert ha.loss == hb.loss
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not a.training


def test_load_asr_trains_once_then_loads_from_the_cache(small_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path))
    calls = []
    real = asr_recipe.train_asr

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(asr_recipe, "train_asr", counting)
    first = asr_recipe.load_asr(TINY, progress=False, corpus=small_corpus)
    second = asr_recipe.load_asr(TINY, progress=False, corpus=small_corpus)
    assert len(calls) == 1 and len(list(tmp_path.glob("asr-*.pt"))) == 1
    assert not second.training and next(second.parameters()).device.type == "cpu"
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), second.state_dict().values()))
    assert set(second.metrics) >= {"cer", "wer"} and second.config == TINY
    asr_recipe.load_asr(TINY, rebuild=True, progress=False, corpus=small_corpus)
    asr_recipe.load_asr(asr.AsrConfig(**{**TINY.__dict__, "seed": 1}), progress=False, corpus=small_corpus)
    assert len(calls) == 3  # rebuild=True and another config both train


# ---------------------------------------------------------------------------------------------
# FSDD: real speech
# ---------------------------------------------------------------------------------------------


def test_fsdd_digits_are_learned_above_chance(fsdd_root):
    from slm_course.fsdd import load_fsdd

    fsdd = load_fsdd(fsdd_root)
    speaker = fsdd.speakers[:1]  # one voice: a tiny model leaves CTC's all-blank plateau within a few hundred steps
    train, test = fsdd.split("train", speakers=speaker), fsdd.split("test", speakers=speaker)
    config = asr.AsrConfig(channels=64, hidden=64, layers=1, dropout=0.0, steps=400, lr=3e-3, warmup_steps=10,
                           frames_per_batch=500)
    model, _ = asr_recipe.train_fsdd_asr(config, recordings=train, progress=False)
    acc = asr_recipe.digit_accuracy(model, test)
    assert acc > 0.3, acc  # chance (always the same digit) is 0.1; this budget gives 0.8-0.9
    assert asr_recipe.digit_accuracy(model, asr_recipe.fsdd_examples(test)) == acc
    with pytest.raises(ValueError, match="non-empty"):
        asr_recipe.digit_accuracy(model, [])


def test_load_fsdd_asr_caches_per_config(fsdd_root, tmp_path, monkeypatch):
    from dataclasses import replace

    from slm_course.fsdd import Fsdd

    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path))
    fsdd = Fsdd(fsdd_root)
    tiny = replace(asr_recipe.FSDD_CONFIG, steps=3, channels=16, hidden=16, layers=1)
    first = asr_recipe.load_fsdd_asr(tiny, fsdd=fsdd, progress=False)
    cached_files = sorted(p.name for p in tmp_path.glob("asr-fsdd-*.pt"))
    assert len(cached_files) == 1
    again = asr_recipe.load_fsdd_asr(tiny, fsdd=fsdd, progress=False)  # from the cache: the same weights
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    asr_recipe.load_fsdd_asr(replace(tiny, seed=1), fsdd=fsdd, progress=False)  # another config: another file
    assert len(list(tmp_path.glob("asr-fsdd-*.pt"))) == 2


def test_spec_augment_masks_only_in_training():
    torch.manual_seed(0)
    model = asr.CtcAsr(asr.AsrConfig(channels=16, hidden=16, layers=1, freq_masks=2, freq_mask_width=10,
                                     time_masks=2, time_mask_width=10))
    feats = torch.randn(4, 200, 80) + 5.0  # no value is 0 before masking
    masked = model.spec_augment(feats)
    assert masked.shape == feats.shape
    zero = masked == 0
    assert zero.any()  # something was masked ...
    assert not torch.equal(zero[0], zero[1])  # ... differently for each utterance (iid masks)
    bands = zero.all(dim=1)  # (B, n_mels): whole bands blanked
    frames = zero.all(dim=2)  # (B, T): whole frames blanked
    assert (zero == (bands[:, None, :] | frames[:, :, None])).all()  # masks are whole bands or whole frames
    assert int(bands.sum(dim=1).max()) <= 2 * 10 and int(frames.sum(dim=1).max()) <= 2 * 10
    off = asr.CtcAsr(asr.AsrConfig(channels=16, hidden=16, layers=1, freq_masks=0, time_masks=0))
    assert torch.equal(off.spec_augment(feats), feats)
    with pytest.raises(ValueError, match="freq_masks"):
        asr.AsrConfig(freq_masks=-1)
