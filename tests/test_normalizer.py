"""The speech normaliser: CTC paths to units, the reference voice's targets, training end to end."""

from __future__ import annotations

import pytest
import torch

from slm_course import normalizer as N
from slm_course import units as U
from slm_course import units_recipe
from slm_course.hubert import HubertConfig, TinyHubert

TINY = HubertConfig(d_model=32, n_layers=1, n_heads=2, ff=64, n_targets=8, dropout=0.0, warp=0.0, gain=0.0,
                    noise=0.0, unit_layer=1)


def test_greedy_ctc_path_gives_units_with_durations_that_tile_the_frames(monkeypatch):
    model = N.SpeechNormalizer(TinyHubert(TINY), n_units=6)
    b = model.blank
    path = torch.tensor([b, 3, 3, b, 5, 5, 5, b, 3])  # a repeated unit after a blank is a new unit
    monkeypatch.setattr(model, "log_probs", lambda feats: torch.nn.functional.one_hot(path, 7).float()[None].log())
    units, durations = model.units(torch.zeros(len(path), 40))
    assert units.tolist() == [3, 5, 3]
    assert durations.tolist() == [4, 4, 1] and int(durations.sum()) == len(path)
    monkeypatch.setattr(model, "log_probs", lambda feats: torch.nn.functional.one_hot(torch.full((4,), b), 7).float()[None].log())
    assert len(model.units(torch.zeros(4, 40))[0]) == 0


def test_ctc_training_maps_two_voices_to_the_same_units():
    """Two 'voices' (a constant offset on every frame) saying the same content learn the same targets."""
    torch.manual_seed(0)
    model = N.SpeechNormalizer(TinyHubert(TINY), n_units=4)
    content = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 0, 0])
    frames = torch.nn.functional.one_hot(content, 40).float() * 3
    feats = torch.stack([frames, frames + 1.5])  # voice A, voice B
    target = torch.unique_consecutive(content)
    batch = {"feats": feats, "lengths": torch.tensor([12, 12]), "targets": torch.cat([target, target]),
             "target_lengths": torch.tensor([len(target)] * 2)}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    for voice in feats:
        assert model.units(voice)[0].tolist() == target.tolist()


def test_config_names_a_training_speaker():
    with pytest.raises(ValueError, match="training speaker"):
        N.NormalizerConfig(reference="zz")
    from slm_course.corpus.voices import SPEAKERS

    held_out = next(s.name for s in SPEAKERS if s.held_out)
    with pytest.raises(ValueError, match="training speaker"):
        N.NormalizerConfig(reference=held_out)
    with pytest.raises(ValueError, match="steps"):
        N.NormalizerConfig(steps=0)
    with pytest.raises(ValueError, match="n_units"):
        N.SpeechNormalizer(TinyHubert(TINY), n_units=1)


def test_reference_units_and_a_trained_normaliser_on_a_small_corpus(small_corpus):
    mel = units_recipe.train_mel_units(small_corpus, k=8, seed=0)
    norm = U.FeatureNorm(mel.norm.mean[40:80], mel.norm.std[40:80])
    hub = TinyHubert(TINY).eval()
    utts = small_corpus.split("train")
    feats = torch.cat([U.ssl_frames(hub, norm, small_corpus.wav(u), 1) for u in utts[:10]])
    ssl = U.SslUnits(hub, norm, 1, U.fit_kmeans(feats, 8, seed=0))

    targets = N.reference_units(small_corpus, ssl, utts[:3], "m00", workers=1)
    again = N.reference_units(small_corpus, ssl, utts[:3], "m00", workers=1)
    assert [t.tolist() for t in targets] == [t.tolist() for t in again]  # eSpeak in fresh processes: reproducible
    for t in targets:
        assert len(t) > 1 and int(t.max()) < 8 and bool((t[1:] != t[:-1]).all())  # de-duplicated
    with pytest.raises(ValueError, match="acoustic"):
        N.reference_units(small_corpus, ssl, small_corpus.split("eval_acoustic")[:1])

    config = N.NormalizerConfig(steps=3, batch_size=2)
    all_targets = N.reference_units(small_corpus, ssl, utts, "m00", workers=1)
    model, history = N.train_normalizer(small_corpus, ssl, config, targets=all_targets, progress=False)
    assert len(history.loss) == 3
    torch.randn(17)  # another global RNG state: training must not depend on it
    again, _ = N.train_normalizer(small_corpus, ssl, config, targets=all_targets, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    tok = N.NormalizedUnits(model, ssl, config)
    wav = small_corpus.wav(utts[0])
    tokens = tok.encode(wav)
    assert len(tokens.ids) >= 1 and int(tokens.ids.max()) < 8
    assert tokens.n_frames == len(U.mel_frames(wav))
    with pytest.raises(ValueError, match="Hz"):
        tok.encode(wav, sr=8000)
    with pytest.raises(ValueError, match="one target sequence per training utterance"):
        N.train_normalizer(small_corpus, ssl, config, targets=targets, progress=False)


def test_reference_parts_speak_at_the_utterances_speed_or_the_reference_voices_own():
    from types import SimpleNamespace

    from slm_course.corpus.voices import SPEAKER_BY_NAME, STYLE_BY_NAME, espeak_settings

    fast = max((s for s in SPEAKER_BY_NAME.values() if not s.held_out),
               key=lambda s: espeak_settings(s, STYLE_BY_NAME["neutral"])["rate"])
    own = espeak_settings(SPEAKER_BY_NAME["m00"], STYLE_BY_NAME["neutral"])
    utt = SimpleNamespace(text="the cook cuts the cake.", speaker=fast.name, style="neutral")
    theirs = espeak_settings(fast, STYLE_BY_NAME["neutral"])["rate"]
    assert theirs != own["rate"]  # otherwise the test cannot tell the two apart
    (at_their_speed,) = N._reference_parts(utt, "m00")
    (at_own_speed,) = N._reference_parts(utt, "m00", match_speed=False)
    assert at_their_speed["rate"] == theirs and at_own_speed == {"text": utt.text, **own}
    question = SimpleNamespace(text="is the cake hot?", speaker=fast.name, style="neutral")
    assert N._reference_parts(question, "m00", match_speed=False)[0]["ssml"]  # questions keep their raised last word
