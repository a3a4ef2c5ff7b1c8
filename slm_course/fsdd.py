"""Real speech: the Free Spoken Digit Dataset (FSDD), the course's check on human voices (notebook 00).

FSDD (Zohar Jackson et al., CC BY-SA 4.0) holds English digits 0-9 spoken by real people, mono
8 kHz. File names are `{digit}_{speaker}_{take}.wav`; by FSDD's own convention takes 0-4 are the
test split and 5-49 the training split.

Where it comes from, in order:
1. the folder passed as `root`, or named by the environment variable `SLM_COURSE_FSDD`
   (either the dataset's top folder or its `recordings/` folder);
2. the cache (`<cache>/fsdd/`), filled by `download_fsdd()` when online: it fetches the tagged
   release v1.0.10 archive from GitHub, checks that it is a complete FSDD release, and unpacks it.

Nothing else in the course needs the network; without FSDD, `load_fsdd` raises `FsddMissing`
with instructions, and notebooks skip their real-speech cells.

Usage::

    fsdd = load_fsdd()
    rec = fsdd.split("test")[0]
    wav = fsdd.wav(rec, sr=16000)
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch

from slm_course.audio import resample
from slm_course.runtime import cache_dir, lock

ENV = "SLM_COURSE_FSDD"
RELEASE = "v1.0.10"
URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/{RELEASE}.tar.gz"
SR = 8000  # FSDD's sampling rate
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
HOW_TO_GET = (
    "FSDD (real spoken digits) is not on this machine. Either run `slm_course.fsdd.download_fsdd()` "
    f"while online (it fetches release {RELEASE}, about 10 MB), or download "
    f"{URL}, unpack it, and set the environment variable {ENV} to its folder."
)


class FsddMissing(FileNotFoundError):
    """FSDD is not available locally; the message says how to get it."""


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int  # 0..9
    speaker: str  # e.g. "jackson"
    take: int  # 0..49

    @property
    def split(self) -> str:
        return "test" if self.take < 5 else "train"

    @property
    def word(self) -> str:
        return DIGITS[self.digit]


class Fsdd:
    """The recordings of one FSDD folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        root = Path(root)
        rec_dir = root / "recordings" if (root / "recordings").is_dir() else root
        if not rec_dir.is_dir():
            raise FsddMissing(f"{root} is not a folder. {HOW_TO_GET}")
        self.root = rec_dir
        self.recordings: list[Recording] = []
        for p in sorted(rec_dir.glob("*.wav")):
            m = _NAME.match(p.name)
            if m:
                self.recordings.append(Recording(p, int(m.group(1)), m.group(2), int(m.group(3))))
        if not self.recordings:
            raise FsddMissing(f"{rec_dir} holds no FSDD recordings (files like 0_jackson_0.wav). {HOW_TO_GET}")

    def __len__(self) -> int:
        return len(self.recordings)

    def __repr__(self) -> str:
        return f"Fsdd({len(self)} recordings, speakers {', '.join(self.speakers)}, at {self.root})"

    @property
    def speakers(self) -> list[str]:
        return sorted({r.speaker for r in self.recordings})

    def split(self, name: str, speakers: list[str] | None = None) -> list[Recording]:
        """FSDD's own split: 'test' (takes 0-4) or 'train' (takes 5-49), optionally for some speakers."""
        if name not in ("train", "test"):
            raise ValueError(f"FSDD splits are 'train' and 'test', not {name!r}.")
        return [r for r in self.recordings if r.split == name and (speakers is None or r.speaker in speakers)]

    def wav(self, rec: Recording, sr: int = SR) -> torch.Tensor:
        """A recording as a float32 tensor (T,), resampled from 8 kHz to `sr` if asked."""
        data, file_sr = sf.read(rec.path, dtype="float32", always_2d=True)
        wav = torch.from_numpy(data.mean(axis=1))
        return wav if sr == file_sr else resample(wav, file_sr, sr)


def load_fsdd(root: str | os.PathLike | None = None) -> Fsdd:
    """FSDD from `root`, from $SLM_COURSE_FSDD, or from the cache; `FsddMissing` says how to get it."""
    for candidate in (root, os.environ.get(ENV), cache_dir() / "fsdd" / "recordings"):
        if candidate and Path(candidate).exists():
            return Fsdd(candidate)
    if root is not None:
        raise FsddMissing(f"{root} does not exist. {HOW_TO_GET}")
    raise FsddMissing(HOW_TO_GET)


def download_fsdd(url: str = URL, timeout: float = 60.0) -> Fsdd:
    """Download the tagged FSDD release into the cache (once), verify it, and load it. Needs the network."""
    dest = cache_dir() / "fsdd"
    with lock(dest.parent / "fsdd.lock"):
        if (dest / "recordings").is_dir():
            return Fsdd(dest)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except OSError as err:
            raise FsddMissing(f"could not download FSDD ({err}). {HOW_TO_GET}") from err
        return install_archive(data, dest)


def install_archive(data: bytes, dest: Path, expected_files: int = 3000) -> Fsdd:
    """Check an FSDD release archive (a complete set of well-named WAVs) and unpack its recordings to `dest`."""
    tmp = dest.parent / (dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "recordings").mkdir(parents=True)
    n = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and "/recordings/" in member.name and _NAME.match(name):
                    blob = tar.extractfile(member).read()
                    sf.info(io.BytesIO(blob))  # raises on a damaged WAV
                    (tmp / "recordings" / name).write_bytes(blob)
                    n += 1
    except (tarfile.TarError, EOFError, OSError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FsddMissing(f"the FSDD archive is damaged ({err}); try again. {HOW_TO_GET}") from err
    if n != expected_files:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FsddMissing(f"the FSDD archive holds {n} recordings, not {expected_files}: incomplete. {HOW_TO_GET}")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return Fsdd(dest)
