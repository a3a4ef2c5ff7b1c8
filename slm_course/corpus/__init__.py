"""The synthetic spoken corpus: grammar, voices, eSpeak synthesis, build and load (notebook 00)."""

from slm_course.corpus.builder import DEFAULT_UTTERANCES, EVAL_SETS, build
from slm_course.corpus.corpus import SPLITS, Corpus, CorpusError, Utterance, corpus_version, load_corpus
from slm_course.corpus.grammar import Grammar
from slm_course.corpus.voices import SPEAKERS, STYLES, Speaker, Style
from slm_course.tts import Espeak, Span, Synthesis

__all__ = [
    "DEFAULT_UTTERANCES", "EVAL_SETS", "SPEAKERS", "SPLITS", "STYLES", "Corpus", "CorpusError", "Espeak",
    "Grammar", "Span", "Speaker", "Style", "Synthesis", "Utterance", "build", "corpus_version", "load_corpus",
]
