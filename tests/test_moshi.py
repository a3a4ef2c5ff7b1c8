"""The Moshi-style model's parts (notebook 08): streams, delays, the text stream, the quantiser, the model."""

import math

import pytest
import torch

from slm_course.frame_codec import FRAME_S, MelRVQ, frame_units, n_frames
from slm_course.moshi import EPAD, PAD, MoshiConfig, MoshiLM, align_text, delay, undelay

TINY = dict(text_vocab=12, n_semantic=7, levels=2, codebook_size=5, d_model=32, n_layers=1, depth_d_model=16,
            max_frames=40)


def test_delay_shifts_each_stream_and_undelay_inverts_it():
    g = torch.arange(12).view(3, 4)
    d = delay(g, [0, 2, 1], fill=-9)
    assert d.shape == (3, 6)
    assert d[0].tolist() == [0, 1, 2, 3, -9, -9]
    assert d[1].tolist() == [-9, -9, 4, 5, 6, 7]
    assert d[2].tolist() == [-9, 8, 9, 10, 11, -9]
    assert torch.equal(undelay(d, [0, 2, 1]), g)
    batched = torch.stack([g, g + 100])
    assert torch.equal(undelay(delay(batched, [1, 0, 3], 0), [1, 0, 3]), batched)
    with pytest.raises(ValueError, match="one delay"):
        delay(g, [0, 1], 0)
    with pytest.raises(ValueError, match="one delay"):
        undelay(d, [0, -1, 0])


def test_align_text_puts_each_word_at_its_start_frame_after_an_epad():
    s = align_text([(5, 0.40), (6, 0.90)], 15)
    assert s[5] == 5 and s[4] == EPAD and s[11] == 6 and s[10] == EPAD
    assert int((s == PAD).sum()) == 11
    # words too close together run late, never early, and never lose their EPAD
    s = align_text([(5, 0.40), (6, 0.41), (7, 0.42)], 15)
    assert s[4:10].tolist() == [EPAD, 5, EPAD, 6, EPAD, 7]
    # a word at time 0 moves to frame 1, so that its EPAD fits
    assert align_text([(5, 0.0)], 3).tolist() == [EPAD, 5, PAD]
    with pytest.raises(ValueError, match="more frames"):
        align_text([(5, 1.0)], 5)
    with pytest.raises(ValueError, match="must not be PAD"):
        align_text([(EPAD, 0.2)], 5)


def test_frame_units_takes_the_majority_of_four_and_pads_with_the_last():
    assert frame_units(torch.tensor([1, 2, 2, 3, 4, 4, 4, 4, 9]), 3).tolist() == [2, 4, 9]
    assert frame_units(torch.tensor([1, 2, 3, 4]), 1).tolist() == [1]  # a tie goes to the first
    with pytest.raises(ValueError):
        frame_units(torch.tensor([], dtype=torch.long), 2)


def test_mel_rvq_round_trip():
    torch.manual_seed(0)
    t = torch.arange(16000 * 2) / 16000
    wav = 0.3 * torch.sin(2 * math.pi * 220 * t) * (t % 0.5 < 0.3)
    assert n_frames(len(wav)) == 25 and n_frames(1) == 1
    patches = MelRVQ.patches(wav)
    assert patches.shape == (25, 640)
    rvq = MelRVQ.fit(patches, levels=2, codebook_size=4)
    codes = rvq.encode(wav)
    assert codes.shape == (2, 25) and int(codes.max()) < 4
    # two levels are closer to the patches than one, and decoding gives 80 ms of audio per frame
    err = [(rvq.decode_mel(codes[:n]).T.reshape(25, 640) - patches).abs().mean() for n in (1, 2)]
    assert err[1] < err[0]
    out = rvq.decode(codes, n_iter=4)
    assert abs(len(out) - 25 * FRAME_S * 16000) <= 160 and float(out.abs().max()) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="were they made"):
        rvq.decode(codes + 4)


def test_config_streams_and_delays():
    c = MoshiConfig(**TINY)
    assert c.n_system == 4 and c.n_streams == 7 and c.delays == [0, 0, 1, 1, 0, 1, 1]
    assert MoshiConfig(**TINY, user_streams=False, text_delay=2).delays == [2, 0, 1, 1]
    assert MoshiConfig(**TINY, user_streams=False, text_delay=-2).delays == [0, 2, 3, 3]
    assert c.initial == c.vocab - 1 == 12


@pytest.mark.parametrize("kw", [{}, {"depth": False}, {"inner_monologue": False}, {"acoustic_delay": 0}])
def test_greedy_generation_is_the_argmax_of_the_training_logits(kw):
    """The frame-by-frame loop and the teacher-forced pass are one model: greedy tokens are the forward's argmax."""
    torch.manual_seed(0)
    cfg = MoshiConfig(**TINY, **kw)
    model = MoshiLM(cfg).eval()
    user = torch.randint(0, 5, (3, 12))
    out = model.generate(12, user=user, temperature=0.0)
    assert out.shape == (4, 12)
    grid = delay(torch.cat([out, user]), cfg.delays, cfg.initial)[None]
    text, audio = model.logits(grid)
    sys_grid = grid[0, :4]
    for k, lg in enumerate(([text] if text is not None else []) + audio):
        stream = k if text is not None else k + 1
        real = sys_grid[stream] != cfg.initial
        assert torch.equal(lg[0].argmax(-1)[real], sys_grid[stream][real]), f"stream {stream}"
    if not cfg.inner_monologue:
        assert bool((out[0] == PAD).all())


def test_generation_keeps_forced_tokens_and_listens_to_the_user():
    torch.manual_seed(0)
    cfg = MoshiConfig(**TINY)
    model = MoshiLM(cfg)
    user = torch.randint(0, 5, (3, 10))
    forced = torch.full((4, 10), -1)
    forced[0] = torch.tensor([PAD, EPAD, 3, PAD, PAD, EPAD, 4, PAD, PAD, PAD])
    out = model.generate(10, user=user, forced=forced, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[0], forced[0])
    assert int(out[1].max()) < 7 and int(out[2:].max()) < 5
    other = model.generate(10, user=(user + 1) % 5, forced=forced, temperature=0.0)
    same = model.generate(10, user=user, forced=forced, temperature=0.0)
    assert not torch.equal(other, same), "the user's streams must change what the model says"
    with pytest.raises(ValueError, match="this model listens"):
        model.generate(10)
    with pytest.raises(ValueError, match="holds"):
        model.generate(60, user=torch.zeros(3, 60, dtype=torch.long))


def test_generation_refuses_what_a_model_cannot_read():
    torch.manual_seed(0)
    one_channel = MoshiLM(MoshiConfig(**TINY, user_streams=False))
    with pytest.raises(ValueError, match="no user streams"):
        one_channel.generate(10, user=torch.zeros(3, 10, dtype=torch.long))
    assert one_channel.generate(10, temperature=0.0).shape == (4, 10)
    silent = MoshiLM(MoshiConfig(**TINY, inner_monologue=False))
    user = torch.randint(0, 5, (3, 10))
    forced = torch.full((4, 10), -1)
    forced[0, 3] = 4  # a word on the text stream of a model without one
    with pytest.raises(ValueError, match="no inner monologue"):
        silent.generate(10, user=user, forced=forced)
    forced[0] = PAD  # PAD there is what the model has anyway
    assert bool((silent.generate(10, user=user, forced=forced, temperature=0.0)[0] == PAD).all())


def test_a_batch_of_dialogues_generates_what_each_one_alone_does():
    torch.manual_seed(0)
    model = MoshiLM(MoshiConfig(**TINY)).eval()
    users = torch.randint(0, 5, (3, 3, 10))
    forced = torch.full((3, 4, 10), -1)
    forced[1, 0] = torch.tensor([PAD, EPAD, 3, PAD, PAD, EPAD, 4, PAD, PAD, PAD])  # one row speaks a given text
    together = model.generate(10, user=users, forced=forced, temperature=0.0)
    assert together.shape == (3, 4, 10)
    for b in range(3):
        assert torch.equal(together[b], model.generate(10, user=users[b], forced=forced[b], temperature=0.0))
    with pytest.raises(ValueError, match="batched"):
        model.generate(10, user=users, forced=forced[:2])


def test_the_temporal_transformer_is_causal_over_frames():
    torch.manual_seed(0)
    cfg = MoshiConfig(**TINY)
    model = MoshiLM(cfg).eval()
    g = delay(torch.randint(0, 5, (1, 7, 10)), cfg.delays, cfg.initial)
    h = g.clone()
    h[..., 6:] = (h[..., 6:] + 1) % 5
    with torch.no_grad():
        a, b = model.logits(g), model.logits(h)
    # steps up to 6 read frames up to 5 only: the same logits; step 7 reads frame 6: different
    assert torch.allclose(a[0][:, :7], b[0][:, :7])
    assert not torch.allclose(a[0][:, 7], b[0][:, 7])


def test_training_lowers_the_loss_on_a_repeated_dialogue():
    from slm_course.train import TrainConfig, train

    torch.manual_seed(0)
    cfg = MoshiConfig(**TINY)
    model = MoshiLM(cfg)
    g = delay(torch.randint(0, 5, (2, 7, 16)), cfg.delays, cfg.initial)
    h = train(model, lambda step: {"grid": g}, TrainConfig(steps=60, lr=1e-2, warmup_steps=5, progress=False))
    assert h.loss[-1] < 0.5 * h.loss[0]
    assert {"text_nll", "semantic_nll", "acoustic_nll"} <= set(model({"grid": g}))
