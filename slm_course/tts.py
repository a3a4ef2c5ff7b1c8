"""Text-to-speech with eSpeak NG through ctypes: text -> 22.05 kHz waveform with word and phone spans.

eSpeak NG is a classic rule-based formant synthesiser (no neural network, no training): the voice
of the synthetic corpus (notebook 00) and the "TTS" stage of the cascade (notebook 01). The `espeakng-loader` package ships its
shared library and voice data, so nothing is installed system-wide. The corpus (notebook 00) and
the cascade's TTS (notebook 01) both speak through this module.

eSpeak keeps state between calls (its waveform generator is not reset), so the same text said twice
in one process can differ in its last bits. The corpus builder therefore synthesises in a fresh
process in a fixed order, which makes it reproducible: `synth_many` is what each such process runs. This module imports
no torch, so a fresh process starts in a fraction of a second.

>>> tts = Espeak()
>>> out = tts.synth("the cat sleeps", voice="en-us+m1")
>>> out.sr, [w.label for w in out.words]
(22050, ['the', 'cat', 'sleeps'])
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field

import numpy as np

# Values from eSpeak NG's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_SSML = 0x10
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_END, _EVENT_PHONEME = 0, 1, 5, 7
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_VOICE_ERRORS = {1: "buffer full", 2: "voice not found", -1: "internal error"}


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the text
        ("length", ctypes.c_int),  # word length in characters
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Span:
    """A labelled stretch of audio, in seconds."""

    label: str  # the word, or the phone in IPA
    start: float  # seconds
    end: float  # seconds


@dataclass(frozen=True)
class WordSpan(Span):
    phones: tuple[Span, ...] = field(default=())  # the phones inside this word


@dataclass(frozen=True)
class Synthesis:
    wav: np.ndarray  # (T,) int16 at `sr`
    sr: int  # 22050 for eSpeak NG
    words: tuple[WordSpan, ...]  # word spans with their phones

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sr


class Espeak:
    """A handle on the eSpeak NG library. One per process is enough (the library is global)."""

    _lib = None
    sr = 22050

    def __init__(self) -> None:
        if Espeak._lib is None:
            try:
                import espeakng_loader
            except ImportError as err:  # pragma: no cover - the package is a hard dependency
                raise ImportError("eSpeak NG is missing: run `pip install espeakng-loader`.") from err
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            lib.espeak_Synth.argtypes = [
                ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
            ]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
            sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), options)
            if sr <= 0:
                raise RuntimeError("eSpeak NG failed to initialise; reinstall `espeakng-loader`.")
            Espeak.sr = sr
            Espeak._callback = _CALLBACK(Espeak._on_audio)  # keep a reference: ctypes does not
            lib.espeak_SetSynthCallback(Espeak._callback)
            Espeak._lib = lib
        self.lib = Espeak._lib

    # The callback collects into class-level buffers; synthesis is synchronous, so this is safe.
    _chunks: list[np.ndarray] = []
    _events: list[tuple[int, int, int, str]] = []

    @staticmethod
    def _on_audio(wav, n, events) -> int:
        if n > 0:
            Espeak._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type in (_EVENT_WORD, _EVENT_PHONEME, _EVENT_END):
                name = ev.id.string.decode("utf-8", "replace") if ev.type == _EVENT_PHONEME else ""
                Espeak._events.append((ev.type, ev.text_position, ev.length, ev.audio_position, name))
            i += 1
        return 0

    def synth(self, text: str, voice: str = "en-us", pitch: int = 50, rate: int = 175, pitch_range: int = 50,
              ssml: bool = False) -> Synthesis:
        """Speak `text` with an eSpeak voice ('en-us+m3'), pitch and range in 0..100, rate in words/min.

        With `ssml=True` the text may carry SSML markup, e.g. `<prosody pitch="+30%">word</prosody>`.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("synth() needs a non-empty string of text to speak.")
        for name, value, lo, hi in (("pitch", pitch, 0, 100), ("pitch_range", pitch_range, 0, 100), ("rate", rate, 80, 450)):
            if not lo <= value <= hi:
                raise ValueError(f"{name}={value} is outside eSpeak's range {lo}..{hi}.")
        code = self.lib.espeak_SetVoiceByName(voice.encode())
        if code != 0:
            raise ValueError(f"eSpeak voice {voice!r}: {_VOICE_ERRORS.get(code, code)}; use names like 'en-us+m3' or 'en+f2'.")
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        Espeak._chunks, Espeak._events = [], []
        data = text.encode("utf-8")
        flags = _CHARS_UTF8 | (_SSML if ssml else 0)
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, flags, None, None)
        self.lib.espeak_Synchronize()
        wav = np.concatenate(Espeak._chunks) if Espeak._chunks else np.zeros(0, np.int16)
        plain = re.sub(r"<[^>]+>", "", text) if ssml else text
        return Synthesis(wav=wav, sr=self.sr, words=_word_spans(plain, Espeak._events, len(wav) / self.sr))


def _word_spans(text: str, events: list[tuple[int, int, int, int, str]], duration: float) -> tuple[WordSpan, ...]:
    """Turn eSpeak's event list into word spans, each tiled by its phones.

    A word starts at its word event; each phone runs from its event to the next event (phone or
    word start); a word's first phone is stretched back to the word start (eSpeak marks a stop at
    its burst, after the closure); a word ends where its last phone ends. Pauses (empty phoneme
    names) end a phone but belong to no word.
    """
    words: list[list] = []  # [label, start, [(phone, start)], end]
    marks: list[tuple[str, float, int]] = []  # (phone or "", time, word index or -1)
    for kind, pos, length, ms, name in events:
        t = ms / 1000.0
        if kind == _EVENT_WORD:
            label = text[pos - 1 : pos - 1 + length].strip(" .,?!").lower()
            words.append([label, t])
            marks.append(("", t, -1))  # a word start ends the previous phone (a stop's closure starts here)
        elif kind == _EVENT_PHONEME:
            marks.append((name, t, len(words) - 1 if words else -1))
        elif kind == _EVENT_END:
            marks.append(("", t, -1))
    marks.append(("", duration, -1))
    phones: list[list[Span]] = [[] for _ in words]
    for (name, t, w), (_, t_next, _) in zip(marks[:-1], marks[1:]):
        if name and w >= 0 and t_next > t:
            phones[w].append(Span(name.replace("ˈ", "").replace("ˌ", ""), t, t_next))
    # eSpeak's character positions can be off after a sentence break; when the counts agree, take the
    # labels from the text in order instead.
    text_words = [w.strip(".,?!").lower() for w in text.split() if w.strip(".,?!")]
    if len(text_words) == len(words):
        for w, label in zip(words, text_words):
            w[0] = label
    out = []
    for (label, start), ph in zip(words, phones):
        if not label or not ph:
            continue
        first = Span(ph[0].label, min(start, ph[0].start), ph[0].end)
        ph = [first, *ph[1:]]
        out.append(WordSpan(label, first.start, ph[-1].end, tuple(ph)))
    return tuple(out)


def synth_many(jobs: list[list[dict]], gap_s: float = 0.06) -> list[tuple[np.ndarray, list]]:
    """Speak many utterances; each is a list of parts, each part `{"text": ..., **synth settings}`.

    Parts are joined with `gap_s` seconds of silence. Returns, per utterance, the int16 waveform at
    22.05 kHz and its words as `[word, start, end, [[phone, start, end], ...]]` in seconds.
    """
    tts = Espeak()
    gap = np.zeros(int(gap_s * tts.sr), np.int16)
    out = []
    for parts in jobs:
        wavs, words, t0 = [], [], 0.0
        for i, part in enumerate(parts):
            if i:
                wavs.append(gap)
                t0 += len(gap) / tts.sr
            syn = tts.synth(**part)
            wavs.append(syn.wav)
            for w in syn.words:
                words.append([w.label, t0 + w.start, t0 + w.end, [[p.label, t0 + p.start, t0 + p.end] for p in w.phones]])
            t0 += syn.duration
        out.append((np.concatenate(wavs), words))
    return out
