"""The speech-tokenizer interface: de-duplication, validation and bitrate arithmetic."""

import math

import numpy as np
import pytest
import torch

from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens, deduplicate, expand


def test_deduplicate_and_expand_round_trip():
    ids = torch.tensor([5, 5, 5, 2, 2, 7, 5, 5])
    units, durations = deduplicate(ids)
    assert units.tolist() == [5, 2, 7, 5]
    assert durations.tolist() == [3, 2, 1, 2]
    assert torch.equal(expand(units, durations), ids)
    empty_units, empty_durations = deduplicate([])
    assert empty_units.numel() == 0 and empty_durations.numel() == 0


def test_deduplicate_and_expand_reject_bad_input():
    with pytest.raises(ValueError, match=r"\(T,\)"):
        deduplicate(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 1"):
        expand(torch.tensor([1, 2]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="one length"):
        expand(torch.tensor([1, 2]), torch.tensor([1]))


class FrameEnergy(SpeechTokenizer):
    """A toy tokenizer: the energy of each 20 ms frame, quantised to 4 levels."""

    name = "energy"
    vocab_size = 4
    frame_rate = 50.0

    def _encode(self, wav):
        frames = wav[: len(wav) // 320 * 320].reshape(-1, 320)
        ids = (frames.pow(2).mean(1).sqrt() * 8).long().clamp(0, 3)
        units, durations = deduplicate(ids)
        return SpeechTokens(units, self.frame_rate, durations)


def test_tokenizer_validates_audio_and_ids():
    tok = FrameEnergy()
    wav = torch.cat([torch.zeros(3200), 0.3 * torch.ones(3200)])
    tokens = tok.encode(wav)
    assert tokens.ids.tolist() == [0, 2] and tokens.durations.tolist() == [10, 10]
    assert tokens.n_frames == 20 and tokens.seconds == pytest.approx(0.4)
    with pytest.raises(ValueError, match="16000"):
        tok.encode(wav, sr=8000)
    with pytest.raises(ValueError, match="empty"):
        tok.encode(torch.zeros(0))
    with pytest.raises(ValueError, match="stereo"):
        tok.encode(np.zeros((2, 3200), dtype=np.float32))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        tok.check_ids(torch.tensor([0, 4]))
    with pytest.raises(TypeError, match="integer token ids"):
        tok.check_ids(torch.tensor([0.5]))
    with pytest.raises(NotImplementedError, match="cannot turn tokens back"):
        tok.decode(tokens)


def test_bitrate_fixed_and_actual():
    tok = FrameEnergy()
    assert tok.bitrate() == pytest.approx(50 * math.log2(4))  # 100 bit/s before de-duplication
    tokens = SpeechTokens(torch.tensor([0, 2]), 50.0, torch.tensor([10, 10]))  # 2 tokens in 0.4 s
    assert tok.bitrate(tokens) == pytest.approx(2 * 2 / 0.4)


def test_check_ids_is_the_one_id_check():
    from slm_course.speech_tokens import check_ids

    assert check_ids([2, 0, 1], 3).dtype == torch.long
    assert check_ids(torch.zeros(2, 5, dtype=torch.int32), 3, ndim=(1, 2)).shape == (2, 5)
    with pytest.raises(TypeError, match="audio or features"):
        check_ids(torch.rand(4), 3)
    with pytest.raises(ValueError, match=r"units must have shape \(T,\), got \(2, 2\)"):
        check_ids(torch.zeros(2, 2, dtype=torch.long), 3, what="units", shape="(T,)")
    with pytest.raises(ValueError, match=r"must be in 0\.\.2, got values in -1\.\.3: offset"):
        check_ids([-1, 3], 3, hint="offset")
    with pytest.raises(ValueError, match="empty"):
        check_ids([], 3, allow_empty=False)
    assert check_ids([], 3).numel() == 0


def test_tokenizer_key_tells_codebooks_apart():
    from types import SimpleNamespace

    from slm_course.speech_tokens import tokenizer_key

    a, b = SimpleNamespace(centroids=torch.zeros(4, 2)), SimpleNamespace(centroids=torch.ones(4, 2))
    assert tokenizer_key(a) != tokenizer_key(b) and tokenizer_key(a) == tokenizer_key(SimpleNamespace(centroids=torch.zeros(4, 2)))
    assert tokenizer_key(SimpleNamespace(cache_key="abc")) == "abc"


def test_silence_is_tokenized_like_any_signal():
    tokens = FrameEnergy().encode(torch.zeros(3200))  # a pause: one unit for its 10 frames
    assert tokens.ids.tolist() == [0] and tokens.durations.tolist() == [10]
