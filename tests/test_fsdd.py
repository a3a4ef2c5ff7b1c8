"""The FSDD loader: real spoken digits, offline from a local copy; clear instructions when missing."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import soundfile as sf

from slm_course import fsdd


def test_loads_the_local_subset(fsdd_root, monkeypatch):
    monkeypatch.setenv(fsdd.ENV, str(fsdd_root))
    data = fsdd.load_fsdd()
    assert len(data) >= 2000 and len(data.speakers) >= 4
    test = data.split("test")
    assert test and all(r.take < 5 for r in test)
    assert all(r.take >= 5 for r in data.split("train", speakers=["theo"]))
    rec = test[0]
    wav8 = data.wav(rec)
    wav16 = data.wav(rec, sr=16000)
    assert wav8.ndim == 1 and abs(len(wav16) - 2 * len(wav8)) <= 2
    assert 0.01 < float(wav8.abs().max()) <= 1.0
    assert rec.word == fsdd.DIGITS[rec.digit]


def test_missing_fsdd_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(fsdd.ENV, raising=False)
    monkeypatch.setenv("SLM_COURSE_CACHE", str(tmp_path))
    with pytest.raises(fsdd.FsddMissing, match="download_fsdd"):
        fsdd.load_fsdd()
    with pytest.raises(fsdd.FsddMissing, match="does not exist"):
        fsdd.load_fsdd(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(fsdd.FsddMissing, match="no FSDD recordings"):
        fsdd.load_fsdd(tmp_path / "empty")


def _archive(n: int, corrupt: bool = False) -> bytes:
    """A small archive laid out like the FSDD release: free-spoken-digit-dataset-1.0.10/recordings/*.wav."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(n):
            wav = io.BytesIO()
            sf.write(wav, (0.1 * np.sin(np.arange(800) / 5)).astype(np.float32), 8000, format="WAV")
            blob = wav.getvalue() if not corrupt else b"not a wav"
            info = tarfile.TarInfo(f"free-spoken-digit-dataset-1.0.10/recordings/{i % 10}_tester_{i // 10}.wav")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def test_release_archive_is_verified_and_unpacked(tmp_path):
    data = fsdd.install_archive(_archive(30), tmp_path / "fsdd", expected_files=30)
    assert len(data) == 30 and data.speakers == ["tester"]
    with pytest.raises(fsdd.FsddMissing, match="incomplete"):
        fsdd.install_archive(_archive(20), tmp_path / "fsdd2", expected_files=30)
    with pytest.raises(fsdd.FsddMissing, match="damaged"):
        fsdd.install_archive(_archive(3, corrupt=True), tmp_path / "fsdd3", expected_files=3)
    with pytest.raises(fsdd.FsddMissing, match="damaged"):
        fsdd.install_archive(b"\x1f\x8b truncated", tmp_path / "fsdd4")
    assert not (tmp_path / "fsdd2").exists()
