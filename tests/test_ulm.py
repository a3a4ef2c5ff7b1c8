"""The unit LM (notebook 04): packing, scoring, n-gram baselines, pair accuracy and TWIST's warm start."""

import math

import pytest
import torch

from slm_course.lm import LM, LMConfig
from slm_course.ulm import (
    BOS,
    EOS,
    N_SPECIAL,
    NgramLM,
    UlmConfig,
    pack,
    warm_start,
)
from slm_course.ulm_recipe import pair_accuracy, train_unit_lm

SMALL = UlmConfig(d_model=32, n_layers=1, n_heads=2, context=24, batch_size=16, steps=150, lr=1e-2, dropout=0.0,
                  max_len=64, warmup_steps=10)


def _toy_language(n: int, seed: int = 0) -> list[torch.Tensor]:
    """'Words' are fixed unit strings; a sentence is 2-4 words. A unit LM should learn the words."""
    words = [[0, 1, 2], [3, 4], [5, 6, 7, 8], [9, 2, 4]]
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n):
        k = int(torch.randint(2, 5, (1,), generator=g))
        ids = [u for w in torch.randint(0, len(words), (k,), generator=g).tolist() for u in words[w]]
        seqs.append(torch.tensor(ids))
    return seqs


def test_pack_offsets_units_and_adds_specials():
    stream = pack([torch.tensor([0, 5]), torch.tensor([2])])
    assert stream.tolist() == [BOS, 0 + N_SPECIAL, 5 + N_SPECIAL, EOS, BOS, 2 + N_SPECIAL, EOS]


def test_bigram_matches_counts_by_hand():
    lm = NgramLM(order=2, n_units=2, alpha=0.0).fit([torch.tensor([0, 1]), torch.tensor([0, 0])])
    # transitions: bos->0 (x2), 0->1, 1->eos, 0->0, 0->eos; so p(1|0) = 1/3, p(0|bos) = 1
    s, n = lm.score([torch.tensor([0, 1])])
    assert n.tolist() == [3]
    assert float(s[0]) == pytest.approx(math.log(1.0) + math.log(1 / 3) + math.log(1.0))
    uni = NgramLM(order=1, n_units=2, alpha=0.0).fit([torch.tensor([0, 1])])  # tokens 0, 1, eos: 1/3 each
    assert float(uni.score([torch.tensor([1])])[0][0]) == pytest.approx(2 * math.log(1 / 3))
    with pytest.raises(ValueError, match="order"):
        NgramLM(order=3, n_units=2)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        NgramLM(order=2, n_units=2, alpha=-0.1)


def test_pair_accuracy_counts_ties_half():
    def scorer(items):
        return torch.tensor([float(x) for x in items]), torch.tensor([1 if x < 10 else 10 for x in items])

    acc = pair_accuracy(scorer, [5, 3, 2], [4, 3, 1])  # wins, tie, wins
    assert acc["summed"] == pytest.approx(2.5 / 3)
    acc = pair_accuracy(scorer, [20], [5])  # summed 20 > 5, but per token 2 < 5
    assert acc == {"summed": 1.0, "normalised": 0.0}
    with pytest.raises(ValueError, match="as many good as bad"):
        pair_accuracy(scorer, [1], [])


def test_unit_lm_learns_the_words_of_a_toy_language():
    train = _toy_language(300)
    ulm, history = train_unit_lm(train, 10, SMALL, valid_seqs=_toy_language(50, seed=1), progress=False)
    assert history.loss[-1] < 0.6 * history.loss[0]
    good = _toy_language(40, seed=2)
    g = torch.Generator().manual_seed(3)
    bad = [s[torch.randperm(len(s), generator=g)] for s in good]  # the same units, words broken
    acc = pair_accuracy(ulm.score, good, bad)
    assert acc["normalised"] >= 0.9
    bigram = NgramLM(2, 10).fit(train)
    assert ulm.metrics["val_loss"] < -float(bigram.score(_toy_language(50, seed=1))[0].sum()) / sum(
        len(s) + 1 for s in _toy_language(50, seed=1)
    )  # the Transformer beats the bigram on held-out sentences
    cont = ulm.continue_units(torch.tensor([0, 1]), max_new_units=20, temperature=0)
    assert cont.dtype == torch.long and (cont >= 0).all() and (cont < 10).all()
    assert cont[:1].tolist() == [2]  # "0 1" is always followed by 2 in this language
    longer = [ulm.continue_units(torch.tensor([0, 1]), max_new_units=60, seed=s, stop_at_eos=False) for s in range(5)]
    assert all(len(c) == 60 for c in longer)  # never ends the utterance early: a fixed-length continuation
    assert min(len(ulm.continue_units(torch.tensor([0, 1]), max_new_units=60, seed=s)) for s in range(5)) < 60


def test_unit_lm_rejects_bad_input():
    ulm, _ = train_unit_lm(_toy_language(50), 10, UlmConfig(**{**SMALL.__dict__, "steps": 2}), progress=False)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        ulm.score([torch.tensor([3, 10])])
    with pytest.raises(TypeError, match="integer"):
        ulm.score([torch.tensor([0.5])])
    too_long = ulm.model.cfg.max_len - 1  # units, with <bos> and <eos>: one position more than the LM has
    with pytest.raises(ValueError, match=f"sequence 1 has {too_long} units"):
        ulm.score([torch.tensor([0, 1]), torch.zeros(too_long, dtype=torch.long)])
    assert ulm.score([torch.zeros(too_long - 1, dtype=torch.long)])[1].tolist() == [too_long]  # the longest that fits
    with pytest.raises(ValueError, match="empty"):
        ulm.continue_units(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="no training sequences"):
        train_unit_lm([], 10, SMALL, progress=False)
    with pytest.raises(ValueError, match="context"):
        UlmConfig(context=1000, max_len=512)


def test_warm_start_copies_the_body_only():
    text = LM(LMConfig(vocab_size=29, d_model=32, n_layers=1, n_heads=2, max_len=32))
    unit = LM(LMConfig(vocab_size=13, d_model=32, n_layers=1, n_heads=2, max_len=64))
    emb_before = unit.tok_emb[0].weight.clone()
    warm_start(unit, text)
    for (name, a), b in zip(text.blocks.state_dict().items(), unit.blocks.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(unit.pos_emb.weight[:32], text.pos_emb.weight)
    assert torch.equal(unit.tok_emb[0].weight, emb_before)  # new vocabulary: new embeddings
    with pytest.raises(ValueError, match="same body"):
        warm_start(LM(LMConfig(vocab_size=13, d_model=64, n_layers=1, n_heads=2)), text)


def test_warm_start_shrink_and_perturb():
    torch.manual_seed(0)
    text = LM(LMConfig(vocab_size=29, d_model=32, n_layers=1, n_heads=2, max_len=32))
    unit = LM(LMConfig(vocab_size=13, d_model=32, n_layers=1, n_heads=2, max_len=64))
    warm_start(unit, text, shrink=0.5, noise=0.001)
    for (name, a), b in zip(text.blocks.state_dict().items(), unit.blocks.state_dict().values()):
        if a.ndim >= 2:  # matrices: half the size, plus a little noise
            assert torch.allclose(b, 0.5 * a, atol=0.01) and not torch.equal(b, 0.5 * a), name
        else:  # norms and biases: copied as they are
            assert torch.equal(a, b), name
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="shrink"):
            warm_start(unit, text, shrink=bad)


def test_fsdd_unit_data_encodes_takes_and_their_reversal(fsdd_root, tmp_path, monkeypatch):
    import shutil

    from slm_course.fsdd import Fsdd
    from slm_course.runtime import CACHE_ENV
    from slm_course.ulm_recipe import fsdd_unit_data
    from slm_course.units import FeatureNorm, MelUnits, mel_features

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    src = fsdd_root / "recordings" if (fsdd_root / "recordings").is_dir() else fsdd_root
    small = tmp_path / "fsdd"
    small.mkdir()
    for name in ("3_jackson_0.wav", "3_jackson_7.wav", "5_theo_1.wav", "5_theo_7.wav"):  # 2 test + 2 train takes
        shutil.copy(src / name, small / name)
    fsdd = Fsdd(small)
    feats = torch.cat([mel_features(fsdd.wav(r, sr=16000)) for r in fsdd.recordings])  # (frames, 120)
    norm = FeatureNorm.fit([feats])
    g = torch.Generator().manual_seed(0)
    tokenizer = MelUnits(norm, norm(feats)[torch.randperm(len(feats), generator=g)[:8]])  # 8 units
    data = fsdd_unit_data(tokenizer, fsdd)
    assert sorted(data["train_words"]) == sorted(data["test_words"]) == ["five", "three"]
    assert len(data["test"]) == len(data["test_reversed"]) == 2
    for fwd, rev, rec in zip(data["test"], data["test_reversed"], fsdd.split("test")):
        assert torch.equal(fwd, tokenizer.encode(fsdd.wav(rec, sr=16000)).ids)
        assert torch.equal(rev, tokenizer.encode(fsdd.wav(rec, sr=16000).flip(0)).ids)
        assert abs(len(fwd) - len(rev)) <= max(2, len(fwd) // 5)  # the same sounds, turned round
    again = fsdd_unit_data(tokenizer, fsdd)  # from the cache
    assert all(torch.equal(a, b) for a, b in zip(again["train"], data["train"]))


def test_cached_unit_lm_trains_once_then_loads(tmp_path, monkeypatch):
    from slm_course.runtime import CACHE_ENV
    from slm_course.ulm_recipe import cached_unit_lm

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    seqs = _toy_language(60)
    cfg = UlmConfig(d_model=32, n_layers=1, n_heads=2, context=24, batch_size=8, steps=20, dropout=0.0, max_len=64,
                    warmup_steps=5)
    text = LM(LMConfig(vocab_size=29, d_model=32, n_layers=1, n_heads=2, max_len=32))
    calls = []

    def init():
        calls.append(1)
        return text

    first = cached_unit_lm("toy-ulm", seqs, seqs[:10], 10, cfg, init, rebuild=False, progress=False)
    again = cached_unit_lm("toy-ulm", seqs, seqs[:10], 10, cfg, init, rebuild=False, progress=False)
    assert calls == [1]  # the text LM is asked for only when training
    assert first.metrics["warm_start"] and first.metrics["val_loss"] == again.metrics["val_loss"]
    assert first.score(seqs[:3])[0].allclose(again.score(seqs[:3])[0])
    assert len(again.history["loss"]) == cfg.steps


def test_reference_unit_data_is_one_voice_at_one_speed_and_cached(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from slm_course import normalizer, twist
    from slm_course.runtime import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    splits = {"train": ["a", "b", "c"], "valid": ["d"]}
    corpus = SimpleNamespace(manifest={"version": 7}, split=lambda name: splits[name])
    ssl = SimpleNamespace(centroids=torch.zeros(4, 2), vocab_size=4)
    monkeypatch.setattr(twist, "load_tokenizer", lambda kind: ssl)  # the name twist calls, not only its source
    calls = []

    def fake_reference_units(corpus_, tokenizer, utts, reference="m00", workers=2, progress=False, match_speed=True):
        calls.append((tuple(utts), match_speed))
        return [torch.tensor([1, 2, 3], dtype=torch.int16) for _ in utts]

    monkeypatch.setattr(normalizer, "reference_units", fake_reference_units)
    data = twist.reference_unit_data(corpus)
    assert calls == [(("a", "b", "c"), False), (("d",), False)]  # the train and valid texts, at the voice's own speed
    assert [len(data[s]) for s in ("train", "valid")] == [3, 1] and data["train"][0].dtype == torch.long
    again = twist.reference_unit_data(corpus)
    assert len(calls) == 2 and torch.equal(again["valid"][0], data["valid"][0])  # from the cache


def test_load_twist_comparison_names_the_units_it_knows():
    from slm_course.twist import load_twist_comparison

    with pytest.raises(ValueError, match="'reference'"):
        load_twist_comparison("hubert")


def test_training_windows_start_at_an_utterance():
    from slm_course.ulm_recipe import crops

    seqs = _toy_language(40)
    stream = pack(seqs)
    batch = crops(stream, 16, 8, seed=0)
    for step in (1, 2, 3):
        tokens = batch(step)["tokens"]
        assert tokens.shape == (8, 16) and bool((tokens[:, 0] == BOS).all())
        assert torch.equal(tokens, batch(step)["tokens"])  # reproducible per step
    assert not torch.equal(batch(1)["tokens"], batch(2)["tokens"])
    with pytest.raises(ValueError, match="longer than the context"):
        crops(stream, len(stream), 8, seed=0)
    one = crops(pack([torch.arange(50) % 10]), 20, 4, seed=0)(1)["tokens"]  # one long utterance: its start only
    assert bool((one == one[0]).all())


def test_norm_unit_lm_recipe_and_extra_speech_checks():
    from slm_course import ulm_recipe

    assert ulm_recipe.default_config("norm") == ulm_recipe.NORM_CONFIG and ulm_recipe.NORM_CONFIG.extra_speech > 0
    assert ulm_recipe.default_config("ssl") == UlmConfig() and UlmConfig().extra_speech == 0
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="extra_speech"):
            UlmConfig(extra_speech=bad)
    with pytest.raises(TypeError, match="UlmConfig"):
        ulm_recipe.load_unit_lm("norm", config={"steps": 10})
    with pytest.raises(ValueError, match="n_utterances"):
        ulm_recipe.extra_unit_data(None, 10)


def test_extra_unit_data_is_the_train_split_of_a_second_draw_and_cached(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import slm_course.corpus as corpus_pkg
    from slm_course import ulm_recipe
    from slm_course.runtime import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    asked = []
    splits = {name: [SimpleNamespace(id=i) for i in ids] for name, ids in (("train", "ab"), ("valid", "c"), ("test", "d"))}
    fake = SimpleNamespace(manifest={"version": 8}, split=lambda name: splits[name], wav=lambda u: u.id)

    def fake_load_corpus(n_utterances=3000, seed=0, rebuild=False, progress=True, pairs_per_set=320):
        asked.append((n_utterances, seed, pairs_per_set))
        return fake

    monkeypatch.setattr(corpus_pkg, "load_corpus", fake_load_corpus)
    encoded = []
    tok = SimpleNamespace(name="toy", cache_key="k", n_levels=1,
                          encode=lambda wav: encoded.append(wav) or SimpleNamespace(ids=torch.tensor([ord(wav) % 7]),
                                                                                    durations=torch.tensor([2]),
                                                                                    frame_rate=50))
    seqs = ulm_recipe.extra_unit_data(tok, 900)
    assert asked == [(900, ulm_recipe.EXTRA_SEED, 1)] and ulm_recipe.EXTRA_SEED != 0  # another draw than the course corpus (seed 0)
    assert encoded == ["a", "b"] and [s.tolist() for s in seqs] == [[ord("a") % 7], [ord("b") % 7]]  # train only
    again = ulm_recipe.extra_unit_data(tok, 900)
    assert encoded == ["a", "b"] and torch.equal(again[1], seqs[1])  # from the cache


def test_unit_lm_and_spiritlm_data_read_one_encoding_of_each_utterance(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from slm_course import spiritlm_recipe, ulm_recipe
    from slm_course.runtime import CACHE_ENV
    from slm_course.spiritlm import word_units

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def utt(i: str, split: str):  # two words, the second from 0.2 s
        return SimpleNamespace(id=i, split=split, words=["the", i], speaker="s1",
                               word_spans=[("the", 0.0, 0.2), (i, 0.2, 0.5)])

    splits = {name: [utt(f"{name[:2]}{k}", name) for k in range(n)] for name, n in (("train", 3), ("valid", 1), ("test", 2))}
    pairs = {name: [(utt(f"{name[:2]}g", name), utt(f"{name[:2]}b", name))] for name in ulm_recipe.ZERO_SHOT_SETS}
    corpus = SimpleNamespace(manifest={"version": 8}, split=lambda name: splits[name], pairs=lambda name: pairs[name],
                             wav=lambda u: u.id)
    encoded = []

    def encode(wav: str):  # one unit per 20 ms frame: 5 frames in the first word, 10 in the second
        encoded.append(wav)
        code = sum(map(ord, wav)) % 9
        return SimpleNamespace(ids=torch.tensor([code, code + 1, 9]), durations=torch.tensor([5, 7, 3]), frame_rate=50)

    tok = SimpleNamespace(name="toy", cache_key="k", n_levels=1, encode=encode)
    units = ulm_recipe.unit_data(corpus, tok)
    everything = [*splits["train"], *splits["valid"], *splits["test"], *(u for p in pairs.values() for u in p[0])]
    assert sorted(encoded) == sorted(u.id for u in everything)  # each utterance once
    spirit = spiritlm_recipe.spirit_data(corpus, tok)
    assert len(encoded) == len(everything)  # SpiRit-LM's data re-encodes nothing
    for split in ("train", "test"):
        for u, seq, cut in zip(splits[split], units[split], spirit[split]["units"]):
            t = encode(u.id)
            assert seq.tolist() == t.ids.tolist() and torch.equal(torch.cat(cut), seq)  # the same units, cut at words
            assert [c.tolist() for c in cut] == [c.tolist() for c in word_units(t.ids, t.durations, u.word_spans, 50)]
    assert units["story_bad"][0].tolist() == encode("stb").ids.tolist()
    n = len(encoded)
    other_draw = SimpleNamespace(**{**vars(corpus), "manifest": {"version": 8, "seed": 1}})  # same ids, other speech
    ulm_recipe.corpus_tokens(other_draw, tok, "train")
    assert len(encoded) == n + len(splits["train"])  # another draw of the corpus is encoded on its own
    with pytest.raises(ValueError, match="which must be"):
        ulm_recipe.corpus_tokens(corpus, tok, "valid")


def test_ngram_loss_is_the_mean_nll_per_token():
    uni = NgramLM(order=1, n_units=2, alpha=0.0).fit([torch.tensor([0, 1])])  # tokens 0, 1, eos: 1/3 each
    assert abs(uni.loss([torch.tensor([1, 0, 1])]) - math.log(3)) < 1e-6
