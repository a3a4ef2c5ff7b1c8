"""AudioLM (notebook 05): flattening with offsets, frame alignment, acoustic stages and their inputs.

Tiny models on synthetic tokens only: no corpus, no cached model. The key test mirrors the
notebook's finding: a stage that sees an acoustic prompt continues its "voice"; one that sees the
conditioning tokens alone cannot know it.
"""

import pytest
import torch

from slm_course.audiolm import (
    MAX_DURATION,
    AcousticStage,
    AudioLM,
    AudioLMConfig,
    StageConfig,
    align_frames,
    duration_counts,
    flatten_levels,
    frame_tokens,
    make_stage,
    n_acoustic_frames,
    unflatten_levels,
)
from slm_course.audiolm_recipe import continuation_text, prompt_frames, train_stage
from slm_course.ulm import BOS, N_SPECIAL

N = 16  # codes per level of the toy "codec"
TINY = StageConfig(d_model=48, n_layers=2, n_heads=4, lookahead=1, max_frames=16, batch_size=16, steps=250,
                   lr=1e-2, warmup_steps=20)


# ---------------------------------------------------------------------------------------------
# Flattening and alignment
# ---------------------------------------------------------------------------------------------


def test_flatten_puts_frames_in_order_with_level_offsets():
    codes = torch.tensor([[1, 2, 3], [4, 5, 6]])  # (Q=2, T=3)
    flat = flatten_levels(codes, 10)
    assert flat.tolist() == [1, 14, 2, 15, 3, 16]  # level 2 is offset by N = 10 (AudioLM's o_i)
    g = torch.Generator().manual_seed(0)
    for Q in (1, 2, 3, 4):
        codes = torch.randint(0, N, (Q, 7), generator=g)
        flat = flatten_levels(codes, N)
        assert flat.shape == (Q * 7,) and int(flat.max()) < Q * N
        assert torch.equal(unflatten_levels(flat, Q, N), codes)


def test_unflatten_rejects_ids_out_of_order_or_cut_mid_frame():
    flat = flatten_levels(torch.tensor([[1, 2], [3, 4]]), N)
    with pytest.raises(ValueError, match="whole number of frames"):
        unflatten_levels(flat[:3], 2, N)
    swapped = flat.clone()
    swapped[[0, 1]] = swapped[[1, 0]]  # level 2's id where level 1's should be
    with pytest.raises(ValueError, match="belongs to level 1"):
        unflatten_levels(swapped, 2, N)
    with pytest.raises(ValueError, match=r"in 0\.\.15"):
        flatten_levels(torch.tensor([[1, N]]), N)  # a code outside the codebook
    with pytest.raises(TypeError, match="integer"):
        flatten_levels(torch.rand(2, 3), N)
    with pytest.raises(ValueError, match="n_levels, T"):
        flatten_levels(torch.tensor([1, 2]), N)


def test_alignment_gives_five_acoustic_frames_per_four_semantic_ones():
    sem = torch.arange(8)  # 8 frames at 50 Hz = 0.16 s = 10 frames at 62.5 Hz
    assert n_acoustic_frames(8) == 10
    assert n_acoustic_frames(172) == 215  # what the codec gives for the same 3.4 s utterance
    aligned = align_frames(sem, 10)
    assert aligned.tolist() == [0, 0, 1, 2, 3, 4, 4, 5, 6, 7]
    times_ac = torch.arange(10) / 62.5  # each acoustic frame lies inside its semantic frame
    assert ((aligned.float() * 0.02 <= times_ac + 1e-9) & (times_ac < (aligned.float() + 1) * 0.02)).all()
    assert align_frames(sem, 12).tolist()[-2:] == [7, 7]  # past the end: the last unit
    with pytest.raises(ValueError, match="non-empty"):
        align_frames(torch.tensor([], dtype=torch.long), 3)
    with pytest.raises(ValueError, match="positive int"):
        align_frames(sem, 0)


def test_duration_counts_by_hand():
    counts = duration_counts([torch.tensor([0, 0, 1, 0, 0, 0, 0]), torch.tensor([1, 1, 1])], vocab_size=3)
    assert counts.shape == (3, MAX_DURATION)
    assert counts[0, :5].tolist() == [0, 1, 0, 1, 0]  # unit 0: runs of 2 and 4 frames
    assert counts[1, :4].tolist() == [1, 0, 1, 0]  # unit 1: runs of 1 and 3
    assert counts[2].sum() == 0  # never seen


# ---------------------------------------------------------------------------------------------
# An acoustic stage
# ---------------------------------------------------------------------------------------------


def _toy_utterances(n: int, T: int = 14, seed: int = 0) -> tuple[list, list, list]:
    """Codes (2, T) = a function of a conditioning token (the 'words') and of a hidden 'voice'.

    Level 0 is ``cond * 4 + voice``, level 1 is ``(cond + 3 * voice) % N``: the conditioning says
    what is said, only the codes say who says it (one voice per utterance).
    """
    g = torch.Generator().manual_seed(seed)
    codes, conds, voices = [], [], []
    for _ in range(n):
        voice = int(torch.randint(0, 4, (), generator=g))
        cond = torch.randint(0, 4, (T,), generator=g)
        codes.append(torch.stack([cond * 4 + voice, (cond + 3 * voice) % N]))
        conds.append(cond[None])
        voices.append(voice)
    return codes, conds, voices


@pytest.fixture(scope="module")
def toy_stage() -> tuple[AcousticStage, object]:
    codes, conds, _ = _toy_utterances(200)
    return train_stage(codes, conds, (0, 2), N, (4,), TINY, valid=_toy_utterances(20, seed=1)[:2], progress=False)


def test_tokens_and_conditioning_ids():
    stage = make_stage((0, 2), N, (4,), StageConfig(d_model=16, n_heads=2, n_layers=1, lookahead=1, max_frames=8))
    codes = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert stage.tokens(codes).tolist() == [BOS] + [N_SPECIAL + i for i in (1, 20, 2, 21, 3, 22)]
    ids = stage.cond_ids(torch.tensor([[3, 0, 2]]), 7)
    # position p predicts token p + 1, of frame p // 2: it sees that frame's token + 1 (0 = past the end)
    assert ids["c0_0"].tolist() == [4, 4, 1, 1, 3, 3, 0]
    assert ids["c0_1"].tolist() == [1, 1, 3, 3, 0, 0, 0]  # one frame of lookahead
    assert stage.model.cfg.vocab_size == N_SPECIAL + 2 * N and stage.model.cfg.max_len == 1 + 2 * 8


def test_stage_learns_and_continues_the_prompts_voice(toy_stage):
    stage, history = toy_stage
    assert history.loss[-1] < 0.3 * history.loss[0]
    assert stage.metrics["val_loss"] < 0.5
    codes, conds, voices = _toy_utterances(24, seed=2)
    P = 3  # frames of acoustic prompt
    out = stage.generate(conds, [c[:, :P] for c in codes], temperature=0)
    for c, o in zip(codes, out):
        assert o.shape == c.shape
        assert torch.equal(o[:, :P], c[:, :P])  # the prompt is kept as given
    exact = sum(bool(torch.equal(o[:, P:], c[:, P:])) for o, c in zip(out, codes)) / len(codes)
    assert exact >= 0.9  # with the prompt it knows the voice, and the conditioning says the rest
    free = stage.generate(conds, None, temperature=1.0, seed=1)
    voice_of = [int(torch.mode(o[0] % 4).values) for o in free]
    words_ok = sum(bool(torch.equal(o[0] // 4, k[0])) for o, k in zip(free, conds)) / len(conds)
    assert words_ok >= 0.9  # without a prompt the words still follow the conditioning ...
    assert sum(v == t for v, t in zip(voice_of, voices)) / len(voices) < 0.7  # ... but the voice is a guess


def test_generation_stays_in_each_levels_codebook_and_is_reproducible(toy_stage):
    stage, _ = toy_stage
    _, conds, _ = _toy_utterances(3, T=9, seed=4)
    a = stage.generate(conds, None, n_frames=[9, 5, 7], temperature=2.0, seed=3)
    b = stage.generate(conds, None, n_frames=[9, 5, 7], temperature=2.0, seed=3)
    assert [x.shape for x in a] == [(2, 9), (2, 5), (2, 7)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(int(x.min()) >= 0 and int(x.max()) < N for x in a)
    top1 = stage.generate(conds, None, temperature=1.0, top_k=1, seed=5)
    greedy = stage.generate(conds, None, temperature=0)
    assert all(torch.equal(x, y) for x, y in zip(top1, greedy))


def test_batched_generation_equals_one_at_a_time(toy_stage):
    stage, _ = toy_stage
    codes, conds, _ = _toy_utterances(3, T=10, seed=6)
    prompts = [codes[0][:, :2], None, codes[2][:, :5]]  # prompts of different lengths, and none
    together = stage.generate(conds, prompts, temperature=0)
    alone = [stage.generate([c], [p], temperature=0)[0] for c, p in zip(conds, prompts)]
    assert all(torch.equal(x, y) for x, y in zip(together, alone))


def test_stage_inputs_are_validated(toy_stage):
    stage, _ = toy_stage
    codes, conds, _ = _toy_utterances(2)
    with pytest.raises(ValueError, match="prompts\\[0\\] is empty"):
        stage.generate(conds, [codes[0][:, :0], None])
    with pytest.raises(ValueError, match="2 levels"):
        stage.generate(conds, [codes[0][:1, :3], None])  # one level where the stage models two
    with pytest.raises(ValueError, match=r"in 0\.\.3"):
        stage.generate([conds[0] + 4], None)  # conditioning out of its vocabulary
    with pytest.raises(ValueError, match=r"in 0\.\.15"):
        stage.generate(conds[:1], [codes[0][:, :3] + N])  # codes already offset for the LM
    with pytest.raises(ValueError, match="window"):
        stage.generate(conds[:1], None, n_frames=[TINY.max_frames + 1])
    with pytest.raises(ValueError, match="conds is empty"):
        stage.generate([], None)
    with pytest.raises(TypeError, match="integer"):
        stage.generate([conds[0].float()], None)
    with pytest.raises(ValueError, match="temperature"):
        stage.generate(conds, None, temperature=-1)
    with pytest.raises(ValueError, match="positive int"):
        StageConfig(steps=0)
    with pytest.raises(ValueError, match="fine_levels"):
        AudioLMConfig(fine_levels=-1)
    with pytest.raises(ValueError, match="semantic_units must be 'norm'"):
        AudioLMConfig(semantic_units="mel")


# ---------------------------------------------------------------------------------------------
# The whole model, with tiny untrained parts
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_audiolm() -> AudioLM:
    from slm_course.codec import Codec, CodecConfig, CodecModel
    from slm_course.hubert import HubertConfig, TinyHubert
    from slm_course.ulm import UlmConfig, UnitLM, make_unit_lm
    from slm_course.units import N_MELS, FeatureNorm, SslUnits

    torch.manual_seed(0)
    K = 8
    hubert = TinyHubert(HubertConfig(d_model=16, n_layers=1, n_heads=2, ff=32))
    ssl = SslUnits(hubert, FeatureNorm(torch.zeros(N_MELS), torch.ones(N_MELS)), 1, torch.randn(K, 16))
    codec = Codec(CodecModel(CodecConfig(channels=16, blocks=1, code_dim=8, n_levels=4, codebook_size=N)))
    ucfg = UlmConfig(d_model=16, n_layers=1, n_heads=2, context=16, max_len=128)
    semantic = UnitLM(make_unit_lm(K, ucfg).eval(), K, ucfg, {})
    small = StageConfig(d_model=16, n_layers=1, n_heads=2, lookahead=1, max_frames=160)
    coarse = make_stage((0, 2), N, (K,), small)
    fine = make_stage((2, 3), N, (N, N), small)
    durations = torch.zeros(K, MAX_DURATION)
    durations[:, 1] = 1  # every unit lasts 2 frames
    return AudioLM(ssl, codec, semantic, coarse, fine, durations,
                   AudioLMConfig(coarse_levels=2, fine_levels=1))


def test_whole_pipeline_shapes(tiny_audiolm):
    alm = tiny_audiolm
    wav = 0.1 * torch.randn(16000)  # 1 s
    sem = alm.semantic_frames(wav)
    assert sem.ndim == 1 and abs(len(sem) - 50) <= 1
    codes = alm.acoustic_codes(wav)
    assert codes.shape[0] == 3 and abs(codes.shape[1] - n_acoustic_frames(len(sem))) <= 1
    cont = alm.continue_semantic(sem[:20], 60, seed=0)
    assert cont.shape == (60,) and torch.equal(cont[:20], sem[:20]) and int(cont.max()) < alm.tokenizer.vocab_size
    out = alm.generate_acoustic([cont, sem], [codes[:, :10], None], seed=0)
    assert out[0].shape == (3, n_acoustic_frames(60)) and out[1].shape == (3, n_acoustic_frames(len(sem)))
    assert torch.equal(out[0][:, :10], codes[:, :10])  # the acoustic prompt, coarse and fine levels
    y = alm.continue_speech(wav[:8000], seconds=0.5, seed=0)
    assert y.ndim == 1 and abs(len(y) / 16000 - 1.0) < 0.05  # 0.5 s of prompt + 0.5 s generated


def test_frame_tokens_undo_deduplication(tiny_audiolm):
    alm = tiny_audiolm
    wav = 0.1 * torch.randn(12000)
    frames = frame_tokens(alm.tokenizer, wav)
    assert torch.equal(frames, alm.tokenizer.frame_units(wav))  # SSL units: the k-means label of every frame
    tokens = alm.tokenizer.encode(wav)
    assert len(frames) == int(tokens.durations.sum()) and len(tokens) <= len(frames)
    with pytest.raises(ValueError, match="de-duplicated units with durations"):
        frame_tokens(alm.codec, wav)  # codec codes: levels, no durations
    with pytest.raises(ValueError, match="aligned for 50"):  # a tokenizer at another frame rate
        AudioLM(alm.codec, alm.codec, alm.semantic, alm.coarse, alm.fine, alm.durations, alm.config)


def test_audiolm_inputs_are_validated(tiny_audiolm):
    alm = tiny_audiolm
    wav = 0.1 * torch.randn(8000)
    with pytest.raises(ValueError, match="16000"):
        alm.continue_speech(wav, sr=8000)  # wrong rate: resample first
    with pytest.raises(ValueError, match="at least 0.1 s"):
        alm.continue_speech(wav[:100])
    with pytest.raises(ValueError, match="read at most"):
        alm.continue_speech(wav, seconds=4.0)  # longer than the acoustic stages read
    with pytest.raises(ValueError, match="prompt is empty"):
        alm.continue_semantic(torch.tensor([], dtype=torch.long), 10)
    with pytest.raises(ValueError, match=r"in 0\.\.7"):
        alm.continue_semantic(torch.tensor([1, 9]), 10)  # a unit the tokenizer does not have
    sem = alm.semantic_frames(wav)
    with pytest.raises(ValueError, match="needs the first 3"):
        alm.generate_acoustic([sem], [torch.zeros(2, 5, dtype=torch.long)])
    with pytest.raises(ValueError, match="one prompt"):
        alm.generate_acoustic([sem, sem], [None])
    with pytest.raises(ValueError, match="semantic\\[0\\] is empty"):
        alm.generate_acoustic([sem[:0]])
    with pytest.raises(ValueError, match=r"\(T_sem,\)"):
        alm.generate_acoustic([sem[None]])


def test_perturb_voice_scales_pitch():
    from slm_course.audiolm_recipe import perturb_voice

    t = torch.arange(16000) / 16000
    wav = 0.5 * torch.sin(2 * torch.pi * 200 * t)  # 1 s at 200 Hz
    for rate, pitch in ((12800, 250.0), (19200, 200 / 1.2)):
        out = perturb_voice(wav, rate)
        assert abs(len(out) - rate) <= 1  # played at 16 kHz: rate / 16000 seconds
        spectrum = torch.fft.rfft(out * torch.hann_window(len(out)))
        peak = float(spectrum.abs().argmax()) * 16000 / len(out)
        assert abs(peak - pitch) < 3
    with pytest.raises(ValueError, match="rate must be"):
        perturb_voice(wav, 1000)
    with pytest.raises(ValueError, match="16000"):
        perturb_voice(wav, 12800, sr=8000)


def test_prompt_cut_at_a_word_boundary():
    from slm_course.tts import Span

    class Utt:
        id, duration = "u", 2.5
        word_spans = (Span("the", 0.0, 0.2), Span("cook", 0.2, 0.9), Span("cuts", 0.9, 1.4), Span("it", 1.4, 2.5))

    assert prompt_frames(Utt, 1.0) == 87  # the first word that starts after 1 s: 1.4 s = frame 87.5, rounded down
    assert prompt_frames(Utt, 0.5) == 56  # 0.9 s = frame 56.25
    for seconds in (0.5, 1.0):  # the prompt never holds the start of the next word; the reference text does
        cut = prompt_frames(Utt, seconds)
        assert cut / 62.5 <= min(s.start for s in Utt.word_spans if s.start >= seconds)
    assert continuation_text(Utt, prompt_frames(Utt, 1.0)) == "it"
    with pytest.raises(ValueError, match="no word starting after"):
        prompt_frames(Utt, 2.0)


def test_load_stages_checks_its_config():
    from slm_course import audiolm, audiolm_recipe

    with pytest.raises(TypeError, match="AudioLMConfig"):
        audiolm_recipe.load_stages(config="coarse")
    assert audiolm.AudioLMConfig().semantic is None  # notebook 04's recipe for the semantic units (ulm.default_config)


def test_build_data_reads_the_corpus_units_encoded_for_the_unit_lms(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from slm_course.audiolm_recipe import build_data
    from slm_course.runtime import CACHE_ENV
    from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens
    from slm_course.ulm_recipe import ZERO_SHOT_SETS, corpus_tokens

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    heard = []

    class Loudness(SpeechTokenizer):  # 50 Hz frames, unit = the frame's loudness bucket, de-duplicated
        name, vocab_size, frame_rate, cache_key = "loudness", 4, 50.0, "loudness"

        def _encode(self, wav):
            heard.append(len(wav))
            ids = (wav[: len(wav) // 320 * 320].reshape(-1, 320).abs().mean(1) * 20).long().clamp(0, 3)
            keep = torch.ones(len(ids), dtype=torch.bool)
            keep[1:] = ids[1:] != ids[:-1]
            return SpeechTokens(ids[keep], self.frame_rate, torch.bincount(torch.cumsum(keep.long(), 0) - 1))

    g = torch.Generator().manual_seed(0)
    wavs = {k: torch.rand(3200 * (i + 2), generator=g) * torch.linspace(0, 0.2, 3200 * (i + 2)) for i, k in enumerate("abcd")}
    utts = {k: SimpleNamespace(id=k) for k in wavs}
    splits = {"train": [utts["a"], utts["b"]], "valid": [utts["c"]], "test": [utts["d"]]}
    corpus = SimpleNamespace(manifest={"version": 8}, split=lambda name: splits[name],
                             pairs=lambda name: [(utts["a"], utts["d"])] if name == ZERO_SHOT_SETS[0] else [],
                             wav=lambda u: wavs[u.id])
    codec = SimpleNamespace(vocab_size=16, config=SimpleNamespace(key=lambda: "toy"),
                            encode=lambda wav: SimpleNamespace(ids=torch.zeros(2, len(wav) // 640, dtype=torch.long)))
    tok = Loudness()
    corpus_tokens(corpus, tok)
    n = len(heard)
    data = build_data(corpus, tok, codec)
    assert len(heard) == n  # nothing encoded again
    for split, members in splits.items():
        for u, sem in zip(members, data[split]["semantic"]):
            assert torch.equal(sem, frame_tokens(tok, wavs[u.id]))
