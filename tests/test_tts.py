"""eSpeak NG text-to-speech: audio, word and phone spans, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from slm_course.tts import Espeak, synth_many


def test_synth_words_and_spans():
    out = Espeak().synth("the farmer feeds the old cow. the cow is old?", voice="en-us+m1")
    assert out.sr == 22050 and out.wav.dtype == np.int16 and 1.0 < out.duration < 6.0
    assert [w.label for w in out.words] == ["the", "farmer", "feeds", "the", "old", "cow", "the", "cow", "is", "old"]
    ends = 0.0
    for w in out.words:
        assert ends - 1e-6 <= w.start < w.end <= out.duration + 1e-6  # ordered, no overlap
        assert w.phones and w.phones[0].start == w.start and w.phones[-1].end == w.end
        assert all("ˈ" not in p.label for p in w.phones)  # stress marks are stripped
        ends = w.end


def test_pitch_and_rate_change_the_audio():
    tts = Espeak()
    slow = tts.synth("the cow is old", voice="en-us+m1", rate=120)
    fast = tts.synth("the cow is old", voice="en-us+m1", rate=240)
    assert slow.duration > 1.5 * fast.duration


def test_synth_many_joins_parts_with_a_gap():
    (one,) = synth_many([[{"text": "the cow"}]])
    (two,) = synth_many([[{"text": "the cow"}, {"text": "the cow", "voice": "en-us+f1", "pitch": 70}]], gap_s=0.1)
    assert len(two[0]) > 2 * len(one[0]) + 0.09 * 22050
    assert [w[0] for w in two[1]] == ["the", "cow", "the", "cow"]
    assert two[1][2][1] >= one[1][-1][2] + 0.1 - 1e-6  # the second part's words start after the gap


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text": ""}, "non-empty"),
        ({"text": "hello", "voice": "xx-nowhere"}, "voice not found"),
        ({"text": "hello", "pitch": 150}, "pitch=150 is outside"),
        ({"text": "hello", "rate": 10}, "rate=10 is outside"),
    ],
)
def test_synth_errors_say_what_to_do(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Espeak().synth(**kwargs)
