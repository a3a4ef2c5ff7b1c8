"""Speech units: k-means, unit-quality metrics, ABX and the tokenizers, checked against scikit-learn and known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slm_course import unit_metrics, units_recipe
from slm_course import units as U
from slm_course.hubert import HubertConfig, TinyHubert, span_mask, warp_bands
from slm_course.speech_tokens import SpeechTokens, expand
from slm_course.tts import Span


def _wav(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * U.SR)) / U.SR
    return 0.3 * torch.sin(2 * math.pi * 220 * t) * (t < seconds / 2) + 0.05 * torch.randn(len(t), generator=g)


def _mel_units(k: int = 8) -> U.MelUnits:
    feats = [U.mel_features(_wav(1.0, s)) for s in range(3)]
    norm = U.FeatureNorm.fit(feats)
    return U.MelUnits(norm, U.fit_kmeans(torch.cat([norm(f) for f in feats]), k, seed=0))


# -- frames ----------------------------------------------------------------------------------


def test_mel_frames_are_50_hz_and_stack_context_matches_the_definition():
    frames = U.mel_frames(_wav(1.0))
    assert frames.shape == (51, U.N_MELS)  # 1 + 16000 // 320 centred frames
    x = torch.arange(6.0).reshape(3, 2)  # (T, D)
    stacked = U.stack_context(x, 1)
    assert stacked.tolist() == [[0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 4, 5]]
    assert U.mel_features(_wav(1.0)).shape == (51, 3 * U.N_MELS)


def test_feature_norm_uses_corpus_statistics():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(50, 4, generator=g) * 3 + 2, torch.randn(7, 4, generator=g) * 3 + 2]
    norm = U.FeatureNorm.fit(feats)
    allx = norm(torch.cat(feats))
    assert torch.allclose(allx.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(allx.std(0, unbiased=False), torch.ones(4), atol=1e-5)
    # per utterance, a short utterance is pulled to zero mean whatever it said
    assert torch.allclose(U.per_utterance_normalise(feats[1]).mean(0), torch.zeros(4), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(T, 4\)"):
        norm(torch.zeros(3, 5))


# -- k-means ---------------------------------------------------------------------------------


def test_kmeans_assign_matches_scikit_learn():
    from sklearn.cluster import KMeans

    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g)
    km = KMeans(n_clusters=7, n_init=1, random_state=0).fit(x.numpy())
    centroids = torch.from_numpy(km.cluster_centers_).float()
    assert U.kmeans_assign(x, centroids).tolist() == km.predict(x.numpy()).tolist()


def test_fit_kmeans_finds_well_separated_clusters_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(200, 2, generator=g) for c in centres])
    found = U.fit_kmeans(x, 3, seed=0)
    assert found.shape == (3, 2)
    nearest = torch.cdist(centres, found).min(dim=1).values
    assert float(nearest.max()) < 0.1
    assert torch.equal(found, U.fit_kmeans(x, 3, seed=0))
    with pytest.raises(ValueError, match="k must be"):
        U.fit_kmeans(x, 1)


# -- unit quality ----------------------------------------------------------------------------


def test_unit_quality_known_values():
    assert unit_metrics.unit_quality(["a", "a", "b", "b"], [0, 0, 1, 1]) == pytest.approx(
        {"pnmi": 1.0, "phone_purity": 1.0, "cluster_purity": 1.0})
    # units independent of phones: no information
    q = unit_metrics.unit_quality(["a", "b", "a", "b"], [0, 0, 1, 1])
    assert q["pnmi"] == pytest.approx(0.0, abs=1e-12)
    assert q["phone_purity"] == pytest.approx(0.5) and q["cluster_purity"] == pytest.approx(0.5)
    # one phone split over two units: phones still determined, purity of clusters halves
    q = unit_metrics.unit_quality(["a", "a", "b", "b"], [0, 1, 2, 2])
    assert q["pnmi"] == pytest.approx(1.0) and q["cluster_purity"] == pytest.approx(0.75)


def test_pnmi_matches_scikit_learn_mutual_information():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(0)
    phones = rng.choice(list("abcdef"), size=2000).tolist()
    units = [(ord(p) * 3 + int(rng.integers(0, 4))) % 17 if rng.random() < 0.7 else int(rng.integers(0, 17))
             for p in phones]
    counts = np.unique(phones, return_counts=True)[1] / len(phones)
    h_phone = float(-(counts * np.log(counts)).sum())
    got = unit_metrics.unit_quality(phones, units)
    assert got["pnmi"] == pytest.approx(mutual_info_score(phones, units) / h_phone, rel=1e-9)
    joint, _ = unit_metrics.phone_unit_counts(phones, units)
    assert got["phone_purity"] == pytest.approx(joint.max(axis=0).sum() / len(phones))


def test_frame_phones_labels_frame_centres():
    class Utt:
        phone_spans = (Span("k", 0.0, 0.05), Span("æ", 0.05, 0.13))

    assert unit_metrics.frame_phones(Utt(), 9) == ["k", "k", "k", "æ", "æ", "æ", "æ", U.SILENCE, U.SILENCE]


# -- DTW and ABX -----------------------------------------------------------------------------


def _brute_dtw(a: torch.Tensor, b: torch.Tensor) -> float:
    """Every monotone path, enumerated: the smallest mean cost."""
    cost = torch.arccos(F.normalize(a.double(), dim=1) @ F.normalize(b.double(), dim=1).T).clamp(0) / math.pi
    best = math.inf

    def walk(i, j, total, n):
        nonlocal best
        total, n = total + float(cost[i, j]), n + 1
        if i == len(a) - 1 and j == len(b) - 1:
            best = min(best, total / n)
            return
        for di, dj in ((1, 1), (1, 0), (0, 1)):
            if i + di < len(a) and j + dj < len(b):
                walk(i + di, j + dj, total, n)

    walk(0, 0, 0.0, 0)
    return best


def test_dtw_distance_known_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert unit_metrics.dtw_distance(a, a) == pytest.approx(0.0)
    assert unit_metrics.dtw_distance(a, torch.tensor([[0.0, 1.0]])) == pytest.approx(0.5)  # orthogonal: 90 degrees
    assert unit_metrics.dtw_distance(a, -a) == pytest.approx(1.0)


def _words(gen: torch.Generator, word_scale: float, voice_scale: float):
    """3 speakers x 4 words x 2 takes of 6 frames: each frame a word direction plus a speaker direction."""
    word_dirs, voice_dirs = torch.randn(4, 16, generator=gen), torch.randn(3, 16, generator=gen)
    frames, words, speakers = [], [], []
    for s in range(3):
        for w in range(4):
            for _ in range(2):
                noise = 0.05 * torch.randn(6, 16, generator=gen)
                frames.append(word_scale * word_dirs[w] + voice_scale * voice_dirs[s] + noise)
                words.append(f"w{w}")
                speakers.append(f"s{s}")
    return frames, words, speakers


def test_word_abx_is_zero_when_words_carry_across_voices_and_near_chance_when_only_the_voice_does():
    gen = torch.Generator().manual_seed(0)
    assert unit_metrics.word_abx(*_words(gen, 1.0, 0.3), trials=200) == 0.0
    voice_only = unit_metrics.word_abx(*_words(gen, 0.0, 1.0), trials=400)
    assert 0.35 < voice_only < 0.65  # X is from another voice: A and B are equally far
    assert unit_metrics.word_abx(*_words(gen, 1.0, 0.3), trials=50, seed=3) == 0.0


def test_word_abx_refuses_inputs_it_cannot_score():
    frames = [torch.randn(5, 4) for _ in range(4)]
    with pytest.raises(ValueError, match="one word and one speaker"):
        unit_metrics.word_abx(frames, ["a", "b", "a"], ["x", "x", "y", "y"])
    with pytest.raises(ValueError, match="2 words and 2 speakers"):
        unit_metrics.word_abx(frames, ["a"] * 4, ["x", "x", "y", "y"])
    with pytest.raises(ValueError, match="nothing to compare"):  # no word said by both speakers
        unit_metrics.word_abx(frames, ["a", "b", "c", "d"], ["x", "x", "y", "y"], trials=5)


def test_dtw_distance_is_the_best_path_mean():
    # the recursion keeps the smallest *summed* cost, then divides by that path's length
    # (ZeroSpeech's convention); on short random sequences this is the brute-force best mean or close to it
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a, b = torch.randn(4, 3, generator=g), torch.randn(3, 3, generator=g)
        assert unit_metrics.dtw_distance(a, b) >= _brute_dtw(a, b) - 1e-9
        assert unit_metrics.dtw_distance(a, b) <= _brute_dtw(a, b) * 1.35 + 1e-9


def _abx_toy(separable: bool):
    """Two phones x two contexts x two speakers, 3 tokens each; frames either reveal the phone or not."""
    g = torch.Generator().manual_seed(0)
    items, frames = [], {}
    for spk in ("s1", "s2"):
        for ctx in (("b", "d"), ("p", "t")):
            for phone, axis in (("æ", 0), ("ɛ", 1)):
                for tok in range(3):
                    uid = f"{spk}-{ctx[0]}-{phone}-{tok}"
                    x = torch.rand(5, 4, generator=g) * 0.3
                    if separable:
                        x[:, axis] += 1.0
                    frames[uid] = x
                    items.append(unit_metrics.AbxItem(uid, phone, ctx, spk, 0, 5))
    return items, frames


def test_abx_is_zero_on_separable_frames_and_near_chance_on_noise():
    items, frames = _abx_toy(True)
    assert unit_metrics.abx(items, frames) == 0.0 and unit_metrics.abx(items, frames, across=True) == 0.0
    items, frames = _abx_toy(False)
    assert 0.25 < unit_metrics.abx(items, frames, across=True) < 0.75
    # one-hot units: identical units score a tie against identical units (0.5), never below
    onehot = {k: F.one_hot(torch.zeros(5, dtype=torch.long), 3).float() for k in frames}
    assert unit_metrics.abx(items, onehot) == pytest.approx(0.5)


def test_abx_items_are_phones_in_context(small_corpus):
    utts = small_corpus.split("train")[:5]
    items = unit_metrics.abx_items(utts)
    assert items and all(it.last - it.first >= 2 for it in items)
    u = utts[0]
    first = next(it for it in items if it.utt == u.id)
    labels = [s.label for s in u.phone_spans]
    k = next(i for i in range(1, len(labels) - 1) if round(u.phone_spans[i].end * 50) - round(u.phone_spans[i].start * 50) >= 2)
    assert (first.context, first.phone) == ((labels[k - 1], labels[k + 1]), labels[k])


# -- tokenizers ------------------------------------------------------------------------------


def test_mel_units_encode_with_durations_and_bitrate():
    units = _mel_units(8)
    wav = _wav(1.0, 5)
    tokens = units.encode(wav)
    frames = units.frame_units(wav)
    assert isinstance(tokens, SpeechTokens) and tokens.durations is not None
    assert torch.equal(expand(tokens.ids, tokens.durations), frames)
    assert (tokens.ids[1:] != tokens.ids[:-1]).all()  # de-duplicated
    assert tokens.n_frames == len(frames) == 51 and tokens.frame_rate == 50.0
    assert units.bitrate() == pytest.approx(50 * 3.0)  # 50 frames/s x log2(8) bits
    assert units.bitrate(tokens) == pytest.approx(len(tokens) * 3.0 / tokens.seconds)


def test_silence_has_units_and_frames_like_speech():
    units = _mel_units(8)
    silence = torch.zeros(U.SR // 2)
    tokens = units.encode(silence)
    assert tokens.n_frames == len(units.frame_units(silence)) == 26
    assert torch.isfinite(U.mel_features(silence)).all()


def test_tokenizers_say_what_is_wrong():
    units = _mel_units(8)
    with pytest.raises(ValueError, match="resample"):
        units.encode(torch.randn(8000), sr=8000)
    with pytest.raises(ValueError, match="0..7"):
        units.decode(torch.tensor([1, 9]))
    with pytest.raises(NotImplementedError, match="UnitVocoder"):
        units.decode(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="must share D"):
        U.kmeans_assign(torch.zeros(3, 4), torch.zeros(2, 5))


def test_unit_vocoder_makes_a_waveform_of_the_right_length():
    torch.manual_seed(0)
    units = _mel_units(8)
    vocoder = U.UnitVocoder(8, U.VocoderConfig(embed=16, hidden=16, griffin_lim_iters=2))
    units.vocoder = vocoder
    tokens = units.encode(_wav(1.0))
    wav = units.decode(tokens)
    assert wav.ndim == 1 and abs(len(wav) - 2 * tokens.n_frames * U.VOC_HOP) <= U.VOC_HOP
    assert torch.isfinite(wav).all()
    with pytest.raises(ValueError, match="0..7"):
        vocoder.synthesize(torch.tensor([3, 12]))


# -- the tiny HuBERT -------------------------------------------------------------------------


def test_span_mask_hides_the_expected_share():
    g = torch.Generator().manual_seed(0)
    mask = span_mask(64, 400, 0.08, 5, generator=g)
    assert mask.shape == (64, 400) and mask.any(dim=1).all()
    assert float(mask.float().mean()) == pytest.approx(1 - 0.92**5, abs=0.03)
    for bad in ({"prob": 8}, {"prob": 0.0}, {"span": 0}, {"span": -2}):  # a percentage, nothing hidden, no span
        with pytest.raises(ValueError, match="span_mask needs"):
            span_mask(2, 10, **{"prob": 0.08, "span": 5, **bad})


def test_warp_bands_identity_and_direction():
    x = torch.zeros(1, 2, 10)
    x[..., 4] = 1.0  # a peak at band 4
    assert torch.allclose(warp_bands(x, torch.tensor([1.0])), x)
    stretched = warp_bands(x, torch.tensor([2.0]))  # band i reads band 2i: the peak moves down to band 2
    assert int(stretched[0, 0].argmax()) == 2


def test_tiny_hubert_learns_and_exposes_layers():
    cfg = HubertConfig(d_model=32, n_layers=2, n_heads=2, ff=64, n_targets=5, dropout=0.0, warp=0.0, gain=0.0,
                       noise=0.0)
    torch.manual_seed(0)
    model = TinyHubert(cfg)
    feats = torch.randn(4, 40, 40)
    labels = feats[..., :5].argmax(-1)  # the unit is readable from the frame itself
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        out = model({"feats": feats, "labels": labels})
        first = first if first is not None else float(out["loss"].detach())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(out["loss"].detach()) < 0.5 * first
    assert model.layer_output(feats[0], 2).shape == (40, 32)
    with pytest.raises(ValueError, match="layer must be"):
        model.layer_output(feats[0], 3)
    with pytest.raises(ValueError, match="normalised log-mel"):
        model.hidden_states(torch.randn(1, 10, 7))


# -- the recipes, end to end on a small corpus -----------------------------------------------


def test_recipes_run_end_to_end_on_a_small_corpus(small_corpus):
    from slm_course.units_recipe import train_hubert

    mel = units_recipe.train_mel_units(small_corpus, k=8, seed=0)
    utts = [u for split in ("train", "valid", "test") for u in small_corpus.split(split)]  # ABX needs minimal pairs
    wavs = [small_corpus.wav(u) for u in utts]
    result = units_recipe.evaluate_units(mel, utts, wavs)
    assert 0 < result["pnmi"] <= 1 and 0 <= result["abx_within"] <= 1 and 0 <= result["abx_across_onehot"] <= 1
    assert 0 < result["bitrate_bps"] <= mel.bitrate()  # de-duplication only removes tokens
    cfg = HubertConfig(d_model=32, n_layers=1, n_heads=2, ff=64, n_targets=8, steps=3, crop=40, batch_size=2,
                       unit_layer=1)
    model, history = train_hubert(small_corpus, mel, cfg, progress=False)
    assert len(history.loss) == 3 and all(math.isfinite(v) for v in history.loss)
    norm = U.FeatureNorm(mel.norm.mean[40:80], mel.norm.std[40:80])
    feats = torch.cat([U.ssl_frames(model, norm, w, 1) for w in wavs])
    ssl = U.SslUnits(model, norm, 1, U.fit_kmeans(feats, 8, seed=0))
    tokens = ssl.encode(wavs[0])
    assert tokens.n_frames == len(U.mel_frames(wavs[0])) and int(tokens.ids.max()) < 8
    with pytest.raises(ValueError, match="n_targets"):
        train_hubert(small_corpus, mel, HubertConfig(n_targets=50), progress=False)
