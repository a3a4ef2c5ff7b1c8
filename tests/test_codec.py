"""The codec's metrics against known values, its RVQ loop against `encodec`, and its tokenizer interface."""

from __future__ import annotations

import math

import pytest
import torch

from slm_course import codec as C
from slm_course import codec_recipe
from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens

TINY = C.CodecConfig(n_fft=256, hop=64, channels=16, blocks=1, code_dim=8, n_levels=4, codebook_size=16, steps=3,
                     batch_size=2, segment=2048, warmup_steps=1)


def _tone(n: int = 8000, f: float = 220.0) -> torch.Tensor:
    t = torch.arange(n) / 16000
    return 0.5 * torch.sin(2 * math.pi * f * t) + 0.2 * torch.sin(2 * math.pi * 3.1 * f * t)


@pytest.fixture(scope="module")
def tiny_codec() -> C.Codec:
    torch.manual_seed(0)
    wavs = [_tone(6000, f) + 0.01 * torch.randn(6000) for f in (150.0, 200.0, 300.0)]
    codec, history = codec_recipe.train_codec(wavs, TINY, progress=False)
    assert len(history.loss) == TINY.steps and all(math.isfinite(v) for v in history.loss)
    return codec


# -- SI-SNR -------------------------------------------------------------------------------------


def test_si_snr_of_a_scaled_copy_is_huge_and_sign_and_offset_do_not_matter():
    ref = _tone()
    assert C.si_snr(0.3 * ref, ref) > 100
    assert C.si_snr(-2.0 * ref + 0.5, ref) > 100  # scale, sign and DC offset are all forgiven


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_si_snr_of_added_noise_is_the_noise_level(snr_db):
    ref = _tone()
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    noise = noise - noise.mean()
    noise = noise - (noise @ ref) / (ref @ ref) * ref  # orthogonal to the reference: SI-SNR exactly snr_db
    ref0 = ref - ref.mean()
    noise = noise / noise.norm() * ref0.norm() * 10 ** (-snr_db / 20)
    assert C.si_snr(ref + noise, ref) == pytest.approx(snr_db, abs=0.05)


def test_si_snr_of_independent_noise_is_very_low():
    ref = _tone()
    other = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))
    assert C.si_snr(other, ref) < -20  # almost nothing of `other` lies along `ref`


def test_si_snr_matches_audiocraft_formula():
    """audiocraft's sisnr.py: zero-mean, proj = <e, r> r / |r|^2, 10 log10(|proj|^2 / |e - proj|^2)."""
    g = torch.Generator().manual_seed(5)
    ref, est = torch.randn(4000, generator=g), torch.randn(4000, generator=g)
    est = est + 2 * ref
    r, e = ref - ref.mean(), est - est.mean()
    proj = (e @ r) / (r @ r) * r
    expected = 10 * torch.log10((proj @ proj) / ((e - proj) @ (e - proj)))
    assert C.si_snr(est, ref) == pytest.approx(float(expected), abs=1e-4)


def test_si_snr_rejects_signals_of_different_lengths():
    with pytest.raises(ValueError, match="match_length"):
        C.si_snr(torch.randn(100), torch.randn(120))


# -- mel distance -------------------------------------------------------------------------------


def test_mel_distance_is_zero_for_a_copy_and_two_for_ten_times_louder():
    g = torch.Generator().manual_seed(0)
    x = 0.05 * torch.randn(16000, generator=g)  # white noise: every band far above the floor
    assert C.mel_distance(x, x) == 0.0
    assert C.mel_distance(10 * x, x) == pytest.approx(2.0, abs=0.02)  # power x100 = 2 decades of log10


def test_mel_distance_floor_bounds_silence():
    x = _tone()
    quiet = x.clone()
    quiet[4000:] = 1e-7 * torch.randn(4000)  # a gap of near-silence
    d = C.mel_distance(quiet, x)
    assert 0 < d < 5  # log10 of the floor (1e-5) bounds a silent band at -5, so no frame counts as -inf


# -- RVQ ----------------------------------------------------------------------------------------


def test_rvq_encode_matches_encodec():
    from encodec.quantization.core_vq import ResidualVectorQuantization

    torch.manual_seed(0)
    L, K, D, T = 4, 32, 8, 50
    rvq = ResidualVectorQuantization(num_quantizers=L, dim=D, codebook_size=K, kmeans_init=False).eval()
    books = torch.stack([layer._codebook.embed for layer in rvq.layers])  # (L, K, D)
    x = torch.randn(T, D)
    codes, quantized = C.rvq_encode(x, books)
    theirs = rvq.encode(x.T[None])[:, 0]  # encodec takes (B, D, T) and returns (L, B, T)
    assert torch.equal(codes, theirs)
    assert torch.allclose(quantized, rvq.decode(theirs[:, None])[0].T, atol=1e-5)


def test_rvq_error_shrinks_with_every_level():
    torch.manual_seed(0)
    x = torch.randn(400, 4)
    books = torch.stack([torch.randn(64, 4) * 0.6**level for level in range(4)])
    errors = [float((x - C.rvq_encode(x, books[:k])[1]).pow(2).mean()) for k in range(1, 5)]
    assert all(a >= b for a, b in zip(errors, errors[1:]))


def test_codebook_usage_known_values():
    used, ppl = C.codebook_usage(torch.tensor([[0, 1, 2, 3], [5, 5, 5, 5]]), 8)
    assert used.tolist() == [4, 1]
    assert ppl.tolist() == pytest.approx([4.0, 1.0])
    with pytest.raises(ValueError, match="0..7"):
        C.codebook_usage(torch.tensor([[0, 9]]), 8)


# -- the tokenizer interface ---------------------------------------------------------------------


def test_codec_is_a_speech_tokenizer(tiny_codec):
    assert isinstance(tiny_codec, SpeechTokenizer)
    assert tiny_codec.n_levels == 4 and tiny_codec.vocab_size == 16
    assert tiny_codec.frame_rate == 16000 / 64
    assert tiny_codec.bitrate() == 250 * 4 * 4
    assert tiny_codec.bitrate(n_levels=1) == 250 * 4


def test_encode_decode_shapes_and_fewer_levels(tiny_codec):
    wav = _tone(1000)
    tokens = tiny_codec.encode(wav)
    assert isinstance(tokens, SpeechTokens)
    frames = 1 + math.ceil(1000 / 64)
    assert tokens.ids.shape == (4, frames) and tokens.ids.dtype == torch.long
    for k in (1, 2, 4):
        out = tiny_codec.decode(tokens.ids[:k])
        assert out.shape == ((frames - 1) * 64,) and torch.isfinite(out).all()
    assert tiny_codec.resynthesize(wav, 2).shape == wav.shape


def test_encode_is_the_rvq_loop_on_the_encoder_output(tiny_codec):
    wav = _tone(3000)
    codes, _ = C.rvq_encode(tiny_codec.embed(wav), tiny_codec.codebooks())
    assert torch.equal(codes, tiny_codec.encode(wav).ids)


def test_fewer_levels_decode_the_partial_sum(tiny_codec):
    ids = tiny_codec.encode(_tone(2000)).ids
    books = tiny_codec.codebooks()
    partial = sum(books[level][ids[level]] for level in range(2))  # (frames, D)
    with torch.no_grad():
        expected = tiny_codec.model.synthesize(partial.T[None])[1][0]
    assert torch.allclose(tiny_codec.decode(ids[:2]), expected, atol=1e-5)


def test_codec_errors_say_what_to_do(tiny_codec):
    ids = tiny_codec.encode(_tone(1000)).ids
    with pytest.raises(ValueError, match="resample"):
        tiny_codec.encode(_tone(1000), sr=8000)
    with pytest.raises(ValueError, match="0..15"):
        tiny_codec.decode(ids + 16)
    with pytest.raises(ValueError, match=r"fewer levels"):
        tiny_codec.decode(torch.cat([ids, ids]))
    with pytest.raises(TypeError, match="integer token ids"):
        tiny_codec.decode(ids.float())
    with pytest.raises(ValueError, match="1..4"):
        tiny_codec.resynthesize(_tone(1000), 5)
    silence = tiny_codec.encode(torch.zeros(1000)).ids  # a pause has codes like any other signal
    assert silence.shape == ids.shape[:1] + (silence.shape[1],) and silence.shape[1] > 0


def test_evaluate_levels_reports_bitrate_and_quality(tiny_codec):
    wavs = [_tone(3000, f) for f in (180.0, 260.0)]
    rows = codec_recipe.evaluate_levels(tiny_codec, wavs, levels=[1, 4])
    assert [r["n_levels"] for r in rows] == [1, 4]
    assert [r["bitrate_bps"] for r in rows] == [1000.0, 4000.0]
    assert all(math.isfinite(r["si_snr_db"]) and r["mel_distance"] >= 0 for r in rows)
    with pytest.raises(ValueError, match="both"):
        codec_recipe.evaluate_levels(tiny_codec, wavs, texts=["a", "b"])


def test_crop_batches_are_reproducible():
    wavs = [_tone(3000), _tone(500)]
    batches = codec_recipe.CropBatches(wavs, batch_size=4, segment=1024, seed=1)
    a, b = batches(7), batches(7)
    assert a.shape == (4, 1024) and torch.equal(a, b)
    assert not torch.equal(batches(7), batches(8))


def test_config_validates():
    with pytest.raises(ValueError, match="hop"):
        C.CodecConfig(n_fft=256, hop=512)
    with pytest.raises(ValueError, match="codebook_size"):
        C.CodecConfig(codebook_size=1)
    assert C.CodecConfig().frame_rate == 62.5
    assert C.CodecConfig().key() == C.CodecConfig().key() != C.CodecConfig(steps=7).key()


def test_load_codec_trains_once_then_loads_from_the_cache(tmp_path, monkeypatch, small_corpus):
    import slm_course.corpus

    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path))
    monkeypatch.setattr(slm_course.corpus, "load_corpus", lambda progress=True: small_corpus)
    first = codec_recipe.load_codec(TINY, progress=False)
    assert list(tmp_path.glob("codec-*.pt"))
    second = codec_recipe.load_codec(TINY, progress=False)
    wav = small_corpus.wav(small_corpus.split("train")[0])
    assert torch.equal(first.encode(wav).ids, second.encode(wav).ids)
    assert len(second.history["loss"]) == TINY.steps
