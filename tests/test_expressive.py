"""Expressive tokens (notebook 07): pitch and style streams, merging by time, the duration model, the vocoder."""

import math

import numpy as np
import pytest
import torch

from slm_course.audio import SR
from slm_course.expressive import (
    ExpressiveTokens,
    ExpressiveVocoder,
    dedup_timed,
    frame_streams,
    log_f0,
    merge_by_time,
    pitch_windows,
    style_durations,
    style_features,
    with_durations,
)
from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens
from slm_course.spiritlm import word_units
from slm_course.units import UnitVocoder, VocoderConfig


def tone(hz: float, seconds: float = 1.0, vibrato: float = 0.0) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    f = hz * (1 + vibrato * torch.sin(2 * math.pi * 3 * t))
    phase = 2 * math.pi * torch.cumsum(f, 0) / SR
    return (0.3 * torch.sin(phase) + 0.1 * torch.sin(2 * phase)).float()


class FrameUnits(SpeechTokenizer):
    """A stand-in unit tokenizer: 50 Hz frames, unit = the frame's loudness bucket, de-duplicated."""

    name = "frame-units"
    vocab_size = 4
    frame_rate = 50.0

    def _encode(self, wav):
        frames = wav[: len(wav) // 320 * 320].reshape(-1, 320).abs().mean(1)
        ids = (frames * 20).long().clamp(0, 3)
        change = torch.ones(len(ids), dtype=torch.bool)
        change[1:] = ids[1:] != ids[:-1]
        run = torch.cumsum(change.long(), 0) - 1
        return SpeechTokens(ids[change], self.frame_rate, torch.bincount(run))


@pytest.fixture(scope="module")
def tokens():
    wavs = [tone(hz, 1.2, vibrato=v) for hz in (110, 160, 220, 300) for v in (0.0, 0.1)]
    return ExpressiveTokens.fit(FrameUnits(), wavs, n_bins=4, n_style=2)


def test_dedup_keeps_the_first_time_of_each_run():
    assert dedup_timed([3, 3, 5, 5, 5, 3], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]) == ([3, 5, 3], [0.0, 0.2, 0.5])
    with pytest.raises(ValueError, match="one time per token"):
        dedup_timed([1, 2], [0.0])


def test_merge_orders_by_time_and_breaks_ties_by_stream_order():
    style = ([100], [0.0])
    pitch = ([10, 11], [0.0, 0.08])
    units = ([1, 2, 3], [0.0, 0.04, 0.08])
    ids, times = merge_by_time(style, pitch, units)
    assert ids == [100, 10, 1, 2, 11, 3]
    assert times == sorted(times)
    assert merge_by_time(units, pitch)[0] == [1, 10, 2, 3, 11]  # the stream order decides ties, nothing else
    # 0.1 + 0.2 is 0.30000000000000004 in floating point: still a tie with 0.3, which the earlier stream wins
    assert merge_by_time(([7], [0.1 + 0.2]), ([1, 2], [0.0, 0.3]))[0] == [1, 7, 2]
    with pytest.raises(ValueError, match="backwards"):
        merge_by_time(([1, 2], [0.5, 0.1]))
    with pytest.raises(ValueError, match="one time per token"):
        merge_by_time(([1, 2], [0.1]))


def test_pitch_windows_find_a_tone_and_mark_silence_unvoiced():
    wav = torch.cat([tone(200, 0.5), torch.zeros(SR // 2)])
    values, starts = pitch_windows(log_f0(wav))
    assert np.allclose(np.diff(starts), 0.08)
    voiced = values[: len(values) // 2 - 1]
    assert np.nanmax(np.abs(voiced - math.log2(200))) < 0.05
    assert np.isnan(values[-3:]).all()


def test_pitch_windows_take_numpy_s_median_of_the_voiced_frames():
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 23, 64):
        lf0 = rng.normal(7.0, 0.5, n).astype(np.float32)
        lf0[rng.random(n) < 0.4] = np.nan
        values, starts = pitch_windows(lf0)
        want = [float(np.median(w[~np.isnan(w)])) if (~np.isnan(w)).sum() >= 2 else np.nan
                for w in (lf0[s : s + 8] for s in range(0, n, 8))]
        assert np.array_equal(values, np.array(want, dtype=np.float64), equal_nan=True)  # to the bit
        assert np.allclose(starts, np.arange(0, n, 8) * 0.01) and values.dtype == starts.dtype == np.float64


def test_style_features_tell_a_flat_tone_from_a_lively_one():
    flat, _ = style_features(log_f0(tone(200, 2.0)))
    lively, starts = style_features(log_f0(tone(200, 2.0, vibrato=0.15)))
    assert flat.shape == lively.shape == (2, 5) and list(starts) == [0.0, 1.0]
    assert (lively[:, 0] > flat[:, 0] + 0.05).all()  # pitch spread


def test_fitted_tokens_have_one_vocabulary_and_monotone_bins(tokens):
    assert tokens.n_pitch == 5 and tokens.n_style == 2 and tokens.vocab_size == 4 + 5 + 2
    assert (tokens.pitch_edges[1:] > tokens.pitch_edges[:-1]).all()
    centres = tokens.pitch_log2(torch.arange(5))
    assert (centres[1:4] > centres[:3]).all() and torch.isnan(centres[4])  # the last id: unvoiced
    with pytest.raises(ValueError, match="too few"):
        ExpressiveTokens.fit(FrameUnits(), [torch.zeros(SR)], n_bins=4, n_style=2)
    with pytest.raises(ValueError, match="in Hz"):
        tokens.pitch_tokens(np.array([150.0, 160.0, np.nan]))


def test_encode_merges_three_streams_and_keeps_the_units_time(tokens):
    wav = torch.cat([tone(120, 0.6), tone(280, 0.6)])
    t = tokens.encode(wav)
    parts = tokens.split(t.ids)
    unit_only = tokens.units.encode(wav)
    assert torch.equal(parts["units"], unit_only.ids)
    assert int(t.durations.sum()) == int(unit_only.durations.sum())  # pitch and style tokens take no time
    assert (t.durations[t.ids >= tokens.n_units] == 0).all()
    assert len(parts["style"]) >= 1 and int(t.ids[0]) >= tokens.n_units  # a window's tokens lead its units
    # word_units cuts the merged stream at words unchanged: nothing is lost, the order is kept
    spans = [("low", 0.0, 0.6), ("high", 0.6, 1.2)]
    words = word_units(t.ids, t.durations, spans, t.frame_rate)
    assert torch.equal(torch.cat(words), t.ids)
    low, high = (tokens.split(w)["pitch"] for w in words)
    voiced = [p for p in (*low.tolist(), *high.tolist()) if p < tokens.n_pitch - 1]
    assert voiced and max(low.tolist(), default=0) <= min(p for p in high.tolist() if p < tokens.n_pitch - 1)


def test_merge_reuses_stored_units_and_checks_them(tokens):
    wav = torch.cat([tone(120, 0.6), tone(280, 0.6)])
    units = tokens.units.encode(wav)
    stored = SpeechTokens(units.ids.to(torch.int16).long(), float(units.frame_rate), units.durations.to(torch.int16).long())
    got, want = tokens.merge(wav, stored), tokens.encode(wav)
    assert torch.equal(got.ids, want.ids) and torch.equal(got.durations, want.durations)
    with pytest.raises(TypeError, match="SpeechTokens"):
        tokens.merge(wav, units.ids)
    with pytest.raises(ValueError, match="frames/s"):
        tokens.merge(wav, SpeechTokens(units.ids, 25.0, units.durations))
    with pytest.raises(ValueError, match="ids"):
        tokens.merge(wav, SpeechTokens(units.ids + 10, units.frame_rate, units.durations))
    with pytest.raises(ValueError, match="Hz"):
        tokens.merge(wav, units, sr=8000)


def test_a_corpus_is_encoded_into_units_once_for_both_tokenizers(tokens, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from slm_course.runtime import CACHE_ENV
    from slm_course.ulm_recipe import ZERO_SHOT_SETS, corpus_tokens

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    heard = []

    class Counting(FrameUnits):
        cache_key = "counting"

        def _encode(self, wav):
            heard.append(len(wav))
            return super()._encode(wav)

    expressive = ExpressiveTokens(Counting(), tokens.pitch_edges, tokens.style_mean, tokens.style_std,
                                  tokens.style_centroids)
    wavs = {"a": tone(120, 0.6), "b": tone(250, 0.9), "c": torch.cat([tone(300, 0.4), tone(150, 0.4)])}
    utts = {k: SimpleNamespace(id=k) for k in wavs}
    corpus = SimpleNamespace(manifest={"version": 8}, split=lambda name: [utts["a"], utts["b"]] if name == "train" else [],
                             pairs=lambda name: [(utts["c"], utts["a"])] if name == ZERO_SHOT_SETS[0] else [],
                             wav=lambda u: wavs[u.id])
    got = corpus_tokens(corpus, expressive)
    assert len(heard) == 4  # each utterance's units once (the pair reads "a" again), for the units' own cache
    units = corpus_tokens(corpus, expressive.units)
    assert len(heard) == 4  # read from that cache
    for k, wav in wavs.items():
        want = expressive.encode(wav)
        assert got["ids"][k].tolist() == want.ids.tolist() and got["durations"][k].tolist() == want.durations.tolist()
        assert units["ids"][k].tolist() == expressive.units.encode(wav).ids.tolist()


def test_frame_streams_and_the_duration_model(tokens):
    n_u, n_p = tokens.n_units, tokens.n_pitch
    s0, s1 = n_u + n_p, n_u + n_p + 1
    ids = torch.tensor([1, s0, n_u + 2, 1, 3, s1, 3])
    dur = torch.tensor([2, 0, 0, 3, 1, 0, 4])
    units, pitch, style = frame_streams(ids, dur, n_u, n_p, tokens.n_style)
    assert units.tolist() == [1, 1, 1, 1, 1, 3, 3, 3, 3, 3]
    assert pitch.tolist() == [n_p] * 2 + [2] * 8  # n_p: no pitch token yet
    assert style.tolist() == [2] * 2 + [0] * 4 + [1] * 4  # 2 = n_style: no style token yet
    table = style_durations([SpeechTokens(ids, 50.0, dur)], tokens, prior=0.0)
    assert table.shape == (3, n_u) and table[0, 1] == 3 and table[1, 3] == 4 and table[2, 1] == 2
    t = with_durations(torch.tensor([s1, 3, s0, 1]), table, tokens)
    assert t.durations.tolist() == [0, 4, 0, 3]
    with pytest.raises(ValueError, match="style_durations"):
        with_durations(ids, table[:2], tokens)


def test_the_vocoder_sings_at_the_pitch_tokens_f0(tokens):
    torch.manual_seed(0)
    unit_voc = UnitVocoder(tokens.n_units, VocoderConfig(embed=16, hidden=16))
    voc = ExpressiveVocoder(unit_voc, tokens)
    for bin_ in (0, 3):
        ids = torch.tensor([tokens.n_units + bin_, 1, 2, 1, 2])
        wav = voc.synthesize(SpeechTokens(ids, 50.0, torch.tensor([0, 15, 15, 15, 15])))
        assert abs(len(wav) / SR - 1.2) < 0.05 and 0.4 < float(wav.abs().max()) <= 0.5
        heard = np.nanmedian(log_f0(wav))
        assert abs(heard - float(tokens.pitch_log2([bin_])[0])) < 0.1, (bin_, heard)
    unvoiced = voc.synthesize(SpeechTokens(torch.tensor([tokens.n_units + 4, 1]), 50.0, torch.tensor([0, 50])))
    assert np.isnan(log_f0(unvoiced)).mean() > 0.8
    with pytest.raises(TypeError, match="durations"):
        voc.synthesize(SpeechTokens(ids, 50.0))
    with pytest.raises(ValueError, match="load_unit_vocoder"):
        ExpressiveVocoder(UnitVocoder(7), tokens)


def test_style_prompts_second_halves_and_short_continuations(small_corpus):
    from slm_course.expressive_recipe import _predict_styles, second_half, style_prompts

    test = small_corpus.split("test")
    u = next(x for x in test if len(x.words) >= 4)
    whole, half = small_corpus.wav(u), second_half(small_corpus, u)
    cut = u.word_spans[len(u.words) // 2 - 1].end
    assert abs(len(half) - (len(whole) - cut * SR)) <= 1 and torch.equal(half, whole[-len(half):])
    cells = {(x.speaker, x.style) for x in test if len(x.words) >= 2}
    speakers = {x.speaker for x in test}
    try:
        which = style_prompts(small_corpus, per_cell=1, min_words=2)
    except ValueError as e:  # a small corpus may lack a speaker-style cell: the error says what to ask for
        assert "per_cell" in str(e) and len(cells) < 3 * len(speakers)
    else:
        assert sorted((test[i].speaker, test[i].style) for i in which) == sorted(cells)

    class Always:
        def predict(self, X):
            return np.array(["calm"] * len(X))

    wavs = [tone(150, 0.5), tone(150, 0.1), tone(200, 0.5)]
    out = _predict_styles(Always(), wavs, ["a", "a", "b"])
    assert out.tolist() == ["calm", "", "calm"]  # a continuation under 0.25 s is never right


def test_style_kept_refuses_a_bad_number_of_samples():
    from slm_course.expressive_recipe import style_kept

    with pytest.raises(ValueError, match="samples"):
        style_kept(None, {}, None, {}, None, samples=0)
