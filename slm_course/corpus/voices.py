"""Speakers and speaking styles of the corpus (notebook 00).

A speaker is an eSpeak voice (accent) x variant (voice quality) x base pitch x rate. eSpeak's
`+f` variants alone do not sound reliably female (some sit near 110 Hz, like the male voices), so
the base pitch is set per gender: male speakers 25-45 (median F0 about 75-100 Hz), female speakers
65-85 (median F0 about 200-270 Hz). `bench corpus` checks with a classifier on held-out speakers that the
gender and style labels can be heard.

A style moves pitch level, pitch range and rate together; a final "?" adds eSpeak's rising
question contour, so the same words can be a statement or a question.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Speaker:
    name: str  # short id, e.g. "m01"
    voice: str  # eSpeak voice with variant, e.g. "en-us+m1"
    gender: str  # "male" | "female"
    pitch: int  # eSpeak base pitch, 0..100
    rate: int  # words per minute in the neutral style
    held_out: bool  # never in training: used for tests and the zero-shot evaluation sets


@dataclass(frozen=True)
class Style:
    name: str  # "neutral" | "excited" | "calm"
    pitch_shift: int  # added to the speaker's base pitch
    pitch_range: int  # eSpeak pitch range, 0..100 (50 is eSpeak's default)
    rate_scale: float  # multiplies the speaker's rate


def _speakers() -> tuple[Speaker, ...]:
    male = [("en-us+m1", 35, 165), ("en+m2", 30, 150), ("en-029+m3", 40, 175), ("en-gb-scotland+m4", 25, 160),
            ("en-us+m5", 45, 185), ("en+m6", 35, 170), ("en-us-nyc+m7", 30, 155), ("en-us+klatt", 40, 160),
            ("en-gb-x-rp+john", 35, 180), ("en-029+max", 30, 165)]
    female = [("en-us+f1", 70, 170), ("en+f4", 65, 160), ("en-029+f1", 75, 180), ("en-gb-scotland+f4", 80, 150),
              ("en-us+steph", 65, 175), ("en+steph", 70, 165), ("en-us-nyc+shelby", 75, 185), ("en-gb-x-rp+belinda", 65, 160),
              ("en-us+f4", 85, 165), ("en-029+steph2", 70, 155)]
    # No variant with a "breath" setting (f2, f3, f5, Alicia, ...): eSpeak's breath noise differs from
    # one process to the next, which would make the corpus irreproducible.
    held_out = {"en-us+f4", "en-029+steph2", "en-gb-x-rp+john", "en-029+max"}  # 2 male + 2 female voices
    out = []
    for gender, rows in (("male", male), ("female", female)):
        for i, (voice, pitch, rate) in enumerate(rows):
            out.append(Speaker(f"{gender[0]}{i:02d}", voice, gender, pitch, rate, voice in held_out))
    return tuple(out)


SPEAKERS: tuple[Speaker, ...] = _speakers()
STYLES: tuple[Style, ...] = (
    Style("neutral", 0, 50, 1.0),
    Style("excited", 18, 100, 1.35),
    Style("calm", -15, 20, 0.7),
)
SPEAKER_BY_NAME = {s.name: s for s in SPEAKERS}
STYLE_BY_NAME = {s.name: s for s in STYLES}


def espeak_settings(speaker: Speaker, style: Style) -> dict:
    """The eSpeak parameters for a speaker in a style: voice, pitch, pitch_range, rate."""
    return {
        "voice": speaker.voice,
        "pitch": max(0, min(100, speaker.pitch + style.pitch_shift)),
        "pitch_range": style.pitch_range,
        "rate": max(80, min(450, round(speaker.rate * style.rate_scale))),
    }
