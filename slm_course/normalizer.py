"""Speaker-normalised units: a speech normaliser over the tiny HuBERT (notebook 05).

The SSL units of notebook 02 say who is speaking as well as what: a bag of units names which of the 4
held-out voices spoke nearly every time (:func:`slm_course.probes.speaker_probe`; chance 0.25). So a unit LM must learn each
word once per kind of voice, and a new voice spells the words with units it has rarely seen. A **speech
normaliser** (Lee et al., 2022, "Textless speech-to-speech translation on real data") maps any voice to the
units that *one reference voice* gives for the same words:

- pairs: each training utterance, and the same words spoken by the reference voice at the same
  speed. Lee et al. fine-tuned on real recordings of the same content by many speakers and by the
  reference speaker (10 minutes were enough); here eSpeak says each training utterance again with
  the reference voice (:func:`reference_units`);
- targets: the reference audio's SSL units, de-duplicated (their timing differs from the input's);
- model: the tiny HuBERT's body, initialised from notebook 02's, with a new head over the K units
  and a CTC blank, trained with CTC (no alignment needed) on the original voices' log-mel, with
  HuBERT's voice and loudness augmentation (:class:`SpeechNormalizer`);
- units: the greedy CTC path, repeats merged and blanks dropped (:class:`NormalizedUnits`).

No text enters the model: its input is audio and its targets are units. The supervision is the
*pairing*: knowing that two recordings say the same words.

>>> units = load_normalized_units()                     # doctest: +SKIP
>>> units.encode(wav).ids                               # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slm_course.corpus import corpus_version
from slm_course.probes import speaker_probe  # noqa: F401  (notebooks 05-06 call it as normalizer.speaker_probe)
from slm_course.runtime import artifact_record, digest, recipe_config
from slm_course.speech_tokens import SpeechTokenizer, SpeechTokens
from slm_course.train import model_record, restore

if TYPE_CHECKING:
    from slm_course.corpus import Corpus
    from slm_course.units import SslUnits

__all__ = ["NormalizedUnits", "NormalizerConfig", "SpeechNormalizer", "load_normalized_units", "reference_units",
           "speaker_probe", "train_normalizer"]

RECIPE = 2  # bump when the recipe changes in a way the config does not show: cached models are rebuilt


@artifact_record  # stored in the cached model's record
@dataclass(frozen=True)
class NormalizerConfig:
    """The reference voice and the CTC training budget (the notebook-05 recipe)."""

    reference: str = "m00"  # the corpus speaker whose units every voice is mapped to (a training voice)
    steps: int = 1500  # optimiser updates (a few minutes on one CPU thread; `slm-course prepare` prints the time)
    batch_size: int = 8  # whole utterances per batch
    lr: float = 1e-3
    warmup_steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        from slm_course.corpus.voices import SPEAKER_BY_NAME

        speaker = SPEAKER_BY_NAME.get(self.reference)
        if speaker is None or speaker.held_out:
            names = sorted(n for n, s in SPEAKER_BY_NAME.items() if not s.held_out)
            raise ValueError(f"reference must be a training speaker of the corpus ({', '.join(names)}), "
                             f"got {self.reference!r}")
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"NormalizerConfig.{name} must be a positive int, got {value!r}")

    def key(self) -> str:
        """A short hash of every field, for cache names: equal configs give equal keys."""
        return digest(self)


def _reference_parts(utt: Any, reference: str, match_speed: bool = True) -> list[dict]:
    """eSpeak settings that say ``utt`` 's words with the reference voice: at the utterance's speed (``match_speed``),
    or at the reference voice's own neutral speed."""
    from slm_course.corpus import builder
    from slm_course.corpus.voices import SPEAKER_BY_NAME, STYLE_BY_NAME, espeak_settings

    settings = espeak_settings(SPEAKER_BY_NAME[reference], STYLE_BY_NAME["neutral"])
    if match_speed:
        settings["rate"] = espeak_settings(SPEAKER_BY_NAME[utt.speaker], STYLE_BY_NAME[utt.style])["rate"]
    if utt.text.endswith("?"):
        return [{"text": builder.question_ssml(utt.text), "ssml": True, **settings}]
    return [{"text": utt.text, **settings}]


def reference_units(corpus: Corpus, ssl: SslUnits, utterances: Sequence, reference: str = "m00",
                    workers: int = 2, progress: bool = False, match_speed: bool = True) -> list[torch.Tensor]:
    """The de-duplicated SSL units of each utterance's words spoken by the ``reference`` voice: the CTC targets.

    eSpeak speaks them (fresh processes, as the corpus builder does), with the corpus' processing
    (16 kHz, the same faint noise floor); utterances of several parts (the acoustic set) are refused.
    ``match_speed`` (default): at each utterance's speed, so that target and input last about as long;
    ``False``: at the reference voice's own, neutral speed (one voice, one speed: TWIST's units in notebook 05).
    """
    from tqdm.auto import tqdm

    from slm_course.corpus import builder

    if len(utterances) == 0:
        raise ValueError("no utterances: give some of the corpus' training utterances")
    if any(u.split == "eval_acoustic" for u in utterances):
        raise ValueError("reference_units needs one-part utterances (train/valid/test splits), not the acoustic set")
    jobs = [_reference_parts(u, reference, match_speed) for u in utterances]
    chunks = [jobs[i : i + builder.CHUNK] for i in range(0, len(jobs), builder.CHUNK)]
    out: list[torch.Tensor] = []
    bar = tqdm(total=len(jobs), desc="reference voice", unit="utt", disable=not progress, leave=False)
    seed = corpus.manifest.get("seed", 0)
    for results in builder.synth_chunks(chunks, workers):
        for wav22, _ in results:
            pcm = builder.finish_audio(wav22, [seed, 7_000_000 + len(out)])  # noise seeds unlike the corpus' own
            units = ssl.frame_units(torch.from_numpy(pcm.astype(np.float32) / 32768.0))
            out.append(torch.unique_consecutive(units).to(torch.int16))
            bar.update(1)
    bar.close()
    return out


class SpeechNormalizer(nn.Module):
    """Log-mel frames of any voice -> per-frame log-probabilities over K units + a CTC blank (id K).

    The body is a copy of a :class:`slm_course.hubert.TinyHubert` (its weights are the starting point);
    ``forward(batch)`` returns the CTC loss (the contract of :func:`slm_course.train.train`).
    """

    def __init__(self, hubert: nn.Module, n_units: int) -> None:
        super().__init__()
        if isinstance(n_units, bool) or not isinstance(n_units, int) or n_units < 2:
            raise ValueError(f"n_units must be an int >= 2, got {n_units!r}")
        self.body = copy.deepcopy(hubert)
        self.body.head = nn.Identity()  # HuBERT's masked-prediction head is not used
        self.head = nn.Linear(self.body.config.d_model, n_units + 1)
        self.n_units = n_units
        self.blank = n_units

    def log_probs(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, T, n_mels)`` normalised log-mel -> ``(B, T, K + 1)`` log-probabilities."""
        return self.head(self.body.norm_out(self.body.hidden_states(feats)[-1])).log_softmax(-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"feats": (B, T, M), "lengths": (B,), "targets": (sum L,), "target_lengths": (B,)}`` -> CTC loss."""
        feats = self.body.augment(batch["feats"]) if self.training else batch["feats"]
        lp = self.log_probs(feats)
        loss = F.ctc_loss(lp.transpose(0, 1), batch["targets"], batch["lengths"], batch["target_lengths"],
                          blank=self.blank, zero_infinity=True)
        return {"loss": loss}

    @torch.no_grad()
    def units(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``(T, M)`` of one utterance -> (units ``(U,)``, durations ``(U,)`` in frames): the greedy CTC path.

        Each unit lasts from its first frame to the next unit's (blanks after it count as its own
        frames; blanks before the first unit go to the first unit), so the durations sum to T.
        """
        was = self.training
        if was:
            self.eval()
        path = self.log_probs(feats[None].float())[0].argmax(-1)  # (T,)
        if was:
            self.train()
        before = torch.cat([path.new_full((1,), -1), path[:-1]])
        starts = torch.nonzero((path != self.blank) & (path != before)).flatten()  # where each unit begins
        if len(starts) == 0:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        units = path[starts]
        bounds = torch.cat([starts.new_zeros(1), starts[1:], starts.new_full((1,), len(path))])
        return units.long(), bounds[1:] - bounds[:-1]


class NormalizedUnits(SpeechTokenizer):
    """A tokenizer whose units are those the reference voice would have given: :class:`SpeechNormalizer` + SSL features.

    ``encode(wav)`` returns de-duplicated units with durations (50 Hz frames), like the SSL units; an
    utterance in which the normaliser hears nothing but blanks gets the single unit it finds most likely.
    """

    name = "normalized-units"
    frame_rate = 50.0

    def __init__(self, normalizer: SpeechNormalizer, ssl: SslUnits, config: NormalizerConfig) -> None:
        self.normalizer, self.ssl, self.config = normalizer.eval(), ssl, config
        self.vocab_size = normalizer.n_units

    @property
    def cache_key(self) -> str:
        """Tells cached unit data and LMs of different normalisers apart."""
        return digest(self.ssl.centroids, f"{self.config.key()}-r{RECIPE}")

    def _encode(self, wav: torch.Tensor) -> SpeechTokens:
        from slm_course.units import mel_frames

        feats = self.ssl.norm(mel_frames(wav))
        units, durations = self.normalizer.units(feats)
        if len(units) == 0:
            with torch.no_grad():
                lp = self.normalizer.log_probs(feats[None])[0, :, : self.vocab_size]
            units, durations = lp.logsumexp(0).argmax()[None], torch.tensor([len(feats)])
        return SpeechTokens(units, self.frame_rate, durations)

    def __repr__(self) -> str:
        return f"NormalizedUnits(reference {self.config.reference}, K={self.vocab_size}, {self.frame_rate:g} Hz)"


def _batches(feats: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], batch_size: int, seed: int):
    keep = [i for i in range(len(feats)) if 0 < len(targets[i]) < len(feats[i])]  # CTC needs T > L
    if not keep:
        raise ValueError("no utterance has fewer target units than frames: check the reference audio")

    def batch(step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = [keep[int(j)] for j in torch.randint(len(keep), (batch_size,), generator=g)]
        T = max(len(feats[i]) for i in idx)
        x = torch.zeros(len(idx), T, feats[idx[0]].shape[1])
        for row, i in enumerate(idx):
            x[row, : len(feats[i])] = feats[i]
        return {"feats": x, "lengths": torch.tensor([len(feats[i]) for i in idx]),
                "targets": torch.cat([targets[i].long() for i in idx]),
                "target_lengths": torch.tensor([len(targets[i]) for i in idx])}

    return batch


def train_normalizer(corpus: Corpus, ssl: SslUnits, config: NormalizerConfig = NormalizerConfig(),
                     targets: Sequence[torch.Tensor] | None = None, progress: bool = True):
    """Train a :class:`SpeechNormalizer` on the training split (one training loop: :func:`slm_course.train.train`).

    ``targets``: the reference units of ``corpus.split("train")`` (default: :func:`reference_units`).
    Returns the model (eval mode) and the training history.
    """
    from slm_course.train import TrainConfig, train
    from slm_course.units import mel_frames

    utts = corpus.split("train")
    if targets is None:
        targets = reference_units(corpus, ssl, utts, config.reference, progress=progress)
    if len(targets) != len(utts):
        raise ValueError(f"need one target sequence per training utterance ({len(utts)}), got {len(targets)}")
    feats = [ssl.norm(mel_frames(corpus.wav(u))) for u in utts]
    torch.manual_seed(config.seed)  # the new head's initial weights: the same in every process
    model = SpeechNormalizer(ssl.model, ssl.vocab_size)
    history = train(model, _batches(feats, targets, config.batch_size, config.seed),
                    TrainConfig(steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, eval_every=0,
                                seed=config.seed, progress=progress, desc="normaliser"))
    return model.eval(), history


def load_normalized_units(config: NormalizerConfig | None = None, *, corpus: Corpus | None = None,
                          rebuild: bool = False, progress: bool = True) -> NormalizedUnits:
    """The notebook-05 speaker-normalised units, from the cache or trained now (a few minutes; same recipe and seed)."""
    from slm_course.runtime import cached
    from slm_course.units_recipe import load_ssl_units

    config = recipe_config(config, NormalizerConfig())
    if corpus is None:
        from slm_course.corpus import load_corpus

        corpus = load_corpus(progress=False)
    ssl = load_ssl_units(progress=progress)

    def build() -> dict:
        model, history = train_normalizer(corpus, ssl, config, progress=progress)
        return model_record(model, config, history)

    name = f"normalizer-r{RECIPE}-c{corpus_version(corpus)}-{digest(ssl.centroids)}-{config.key()}"
    record = cached(name, build, rebuild=rebuild)
    return NormalizedUnits(restore(SpeechNormalizer(ssl.model, ssl.vocab_size), record), ssl, config)
