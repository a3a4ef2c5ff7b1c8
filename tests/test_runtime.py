"""Tests for slm_course.runtime: seeding, the cache folder, atomic artifacts and the cache lock."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest
import torch

from slm_course import runtime
from slm_course.runtime import CorruptArtifact, cache_dir, cached, load_artifact, save_artifact


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(runtime.CACHE_ENV, str(folder))
    return folder


def test_cache_dir_honours_env_var(cache: Path) -> None:
    assert cache_dir() == cache
    assert cache.is_dir()


def test_cache_dir_without_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(runtime.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = cache_dir()
    root = runtime._repo_root()
    expected = root / "data" / "cache" if root is not None else tmp_path / ".cache" / "slm-course"
    assert folder == expected and folder.is_dir()


def test_seed_everything_makes_rand_reproducible() -> None:
    gen = runtime.seed_everything(123)
    a, a_gen = torch.rand(5), torch.rand(5, generator=gen)
    gen = runtime.seed_everything(123)
    b, b_gen = torch.rand(5), torch.rand(5, generator=gen)
    assert torch.equal(a, b) and torch.equal(a_gen, b_gen)
    runtime.seed_everything(124)
    assert not torch.equal(a, torch.rand(5))


def test_pick_device_prints_choice(capsys: pytest.CaptureFixture[str]) -> None:
    device = runtime.pick_device()
    assert isinstance(device, torch.device)
    assert f"device: {device.type}" in capsys.readouterr().out


def test_save_load_roundtrip(tmp_path: Path) -> None:
    obj = {"w": torch.arange(10.0), "name": "codebook", "k": 3}
    path = save_artifact(tmp_path / "sub" / "a.pt", obj)
    sidecar = path.with_name("a.pt.sha256")
    assert sidecar.is_file()
    digest, size = sidecar.read_text().split()
    assert digest == runtime.file_sha256(path) and int(size) == path.stat().st_size
    loaded = load_artifact(path)
    assert torch.equal(loaded["w"], obj["w"]) and loaded["name"] == "codebook" and loaded["k"] == 3
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []  # no temp files left


def test_truncated_artifact_is_corrupt(tmp_path: Path) -> None:
    path = save_artifact(tmp_path / "a.pt", torch.randn(1000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArtifact, match=r"a\.pt.*rebuilt"):
        load_artifact(path)


def test_same_size_different_bytes_is_corrupt(tmp_path: Path) -> None:
    path = save_artifact(tmp_path / "a.pt", torch.zeros(1000))
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="SHA-256"):
        load_artifact(path)


def test_missing_sidecar_is_corrupt(tmp_path: Path) -> None:
    path = save_artifact(tmp_path / "a.pt", 1)
    path.with_name("a.pt.sha256").unlink()
    with pytest.raises(CorruptArtifact, match="no checksum file"):
        load_artifact(path)


def test_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; build it"):
        load_artifact(tmp_path / "nope.pt")


def test_cached_builds_once_then_loads(cache: Path) -> None:
    calls = []

    def build() -> torch.Tensor:
        calls.append(1)
        return torch.arange(4)

    first = cached("thing", build)
    second = cached("thing", build)
    assert len(calls) == 1
    assert torch.equal(first, second) and (cache / "thing.pt").is_file()
    cached("thing", build, rebuild=True)
    assert len(calls) == 2


def test_cached_rebuilds_corrupted_artifact(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cached("model", lambda: torch.ones(100))
    path = cache / "model.pt"
    path.write_bytes(path.read_bytes()[:20])
    calls = []

    def build() -> torch.Tensor:
        calls.append(1)
        return torch.full((100,), 2.0)

    out = cached("model", build)
    assert calls == [1] and torch.equal(out, torch.full((100,), 2.0))
    message = capsys.readouterr().out
    assert f"cache: {path} cannot be used" in message and "rebuilding it" in message
    assert torch.equal(load_artifact(path), out)  # the rebuilt artifact is valid


def test_cached_concurrent_callers_build_once(cache: Path) -> None:
    calls = []
    results: list[torch.Tensor] = []

    def build() -> torch.Tensor:
        calls.append(threading.get_ident())
        time.sleep(0.3)  # long enough for the other threads to arrive and wait on the lock
        return torch.arange(3)

    def worker() -> None:
        results.append(cached("shared", build))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 4 and all(torch.equal(r, torch.arange(3)) for r in results)


def test_cached_rejects_bad_name(cache: Path) -> None:
    with pytest.raises(ValueError, match="plain non-empty file stem"):
        cached("a/b", lambda: 1)


_UNGUARDED_SCRIPT = """
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from slm_course.runtime import cached

def build():  # like the corpus builder: the artifact is made by worker processes
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return {"x": pool.submit(abs, -1).result()}

print(cached("unguarded", build))  # no `if __name__ == "__main__":`
"""


def test_unguarded_script_fails_fast_instead_of_deadlocking(tmp_path: Path) -> None:
    """A spawned worker re-runs the script's top level: without the check it waits forever on its parent's lock."""
    import os
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(_UNGUARDED_SCRIPT)
    env = {**os.environ, runtime.CACHE_ENV: str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr


def test_lock_refuses_while_a_worker_is_starting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(RuntimeError, match="__main__"):
        runtime.lock(tmp_path / "x")


def test_digest_names_configs_tensors_and_strings_stably() -> None:
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        steps: int = 100
        sizes: tuple[int, int] = (2, 3)

    assert runtime.digest(Cfg()) == runtime.digest({"sizes": [2, 3], "steps": 100})  # a config is its sorted JSON
    assert runtime.digest(Cfg()) != runtime.digest(Cfg(steps=101))
    x = torch.arange(6, dtype=torch.float32)
    assert runtime.digest(x) == runtime.digest(x.numpy()) == runtime.digest(x.numpy().tobytes())
    assert runtime.digest("ab") == runtime.digest("a", "b") and len(runtime.digest("ab", n=8)) == 8
    import hashlib

    assert runtime.digest("abc") == hashlib.sha256(b"abc").hexdigest()[:10]
    with pytest.raises(ValueError, match="something to hash"):
        runtime.digest()
    with pytest.raises(ValueError, match="1 to 64"):
        runtime.digest("a", n=0)


class _Payload:
    """Unpickling this object calls Path.touch: the shape of an artifact that runs code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_artifact_is_refused_not_executed(tmp_path: Path, cache: Path) -> None:
    marker = tmp_path / "code-ran"
    path = save_artifact(tmp_path / "evil.pt", {"state": torch.zeros(2), "x": _Payload(marker)})
    with pytest.raises(runtime.UnsafeArtifact, match="outside the course's allow-list.*rebuild"):
        load_artifact(path)
    assert not marker.exists()
    # in the cache, the refused artifact is rebuilt by its recipe, still without running the payload
    save_artifact(cache / "evil.pt", {"x": _Payload(marker)})
    assert cached("evil", lambda: {"fine": torch.ones(1)})["fine"].item() == 1.0
    assert not marker.exists()


@dataclasses.dataclass(frozen=True)
class _NotListed:
    width: int = 3


def test_config_records_load_only_when_allow_listed(tmp_path: Path) -> None:
    from slm_course.lm import LMConfig

    path = save_artifact(tmp_path / "lm.pt", {"lm_config": LMConfig(vocab_size=7), "w": torch.ones(3)})
    assert load_artifact(path)["lm_config"] == LMConfig(vocab_size=7)  # LMConfig is an artifact_record
    other = save_artifact(tmp_path / "other.pt", {"config": _NotListed()})
    with pytest.raises(runtime.UnsafeArtifact, match="artifact_record"):
        load_artifact(other)
    with pytest.raises(TypeError, match="dataclass"):
        runtime.artifact_record(int)


def test_an_artifact_of_another_layout_is_stale_and_rebuilt(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = cache / "model.pt"
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"state": torch.zeros(2)}, old)  # written by an older version: no layout version
    old.with_name("model.pt.sha256").write_text(f"{runtime.file_sha256(old)} {old.stat().st_size}\n")
    with pytest.raises(runtime.StaleArtifact, match=f"reads layout {runtime.ARTIFACT_FORMAT}"):
        load_artifact(old)
    assert cached("model", lambda: {"state_dict": torch.ones(2)})["state_dict"].sum() == 2
    assert "cannot be used" in capsys.readouterr().out
    assert load_artifact(old)["state_dict"].sum() == 2  # rebuilt in the current layout


def test_recipe_config_defaults_and_checks() -> None:
    from slm_course.asr import AsrConfig

    assert runtime.recipe_config(None, AsrConfig()) == AsrConfig()
    assert runtime.recipe_config(AsrConfig(steps=5), AsrConfig()).steps == 5
    with pytest.raises(TypeError, match=r"config must be a AsrConfig \(or None for the course's recipe\)"):
        runtime.recipe_config({"steps": 5}, AsrConfig())


def test_many_small_tensors_are_stored_packed_and_come_back_equal(tmp_path: Path) -> None:
    from collections import OrderedDict

    g = torch.Generator().manual_seed(0)
    ids = {f"utt{i}": torch.randint(0, 100, (int(n),), generator=g, dtype=torch.int16)
           for i, n in enumerate(torch.randint(0, 30, (200,), generator=g))}
    words = [[torch.randint(0, 9, (int(k),), generator=g) for k in torch.randint(1, 6, (int(n),), generator=g)]
             for n in torch.randint(0, 5, (150,), generator=g)]  # some utterances without words
    frames = [torch.randn(int(n), 3, generator=g) for n in torch.randint(1, 9, (70,), generator=g)]
    state = OrderedDict(w=torch.randn(4, 3), b=torch.zeros(4))
    state._metadata = {"": {"version": 1}}
    big = torch.arange(10_000)
    obj = {"ids": ids, "units": words, "frames": frames, "few": [torch.ones(2)] * 3, "mixed": [torch.ones(2)] * 63 + [1],
           "state_dict": state, "pair": (frames[:2], "x"), "view": big[:5], "n": 3}
    path = save_artifact(tmp_path / "data.pt", obj)
    raw = torch.load(path, weights_only=True)["content"]
    assert raw["ids"][runtime.PACKED] == "dict" and raw["units"][runtime.PACKED] == "lists"  # one tensor each
    assert raw["frames"][runtime.PACKED] == "list" and isinstance(raw["few"], list)  # 3 tensors: left as they are
    assert path.stat().st_size < 60_000  # the 5-element view was saved without the 10,000 elements it looks into
    back = load_artifact(path)
    assert list(back["ids"]) == list(ids) and all(torch.equal(back["ids"][k], v) and back["ids"][k].dtype == v.dtype
                                                  for k, v in ids.items())
    assert [len(u) for u in back["units"]] == [len(u) for u in words]
    assert all(torch.equal(a, b) for u, v in zip(back["units"], words) for a, b in zip(u, v))
    assert all(torch.equal(a, b) and a.shape == b.shape for a, b in zip(back["frames"], frames))
    assert type(back["state_dict"]) is OrderedDict and back["state_dict"]._metadata == {"": {"version": 1}}
    assert isinstance(back["pair"], tuple) and back["mixed"][-1] == 1 and back["n"] == 3
    assert torch.equal(back["view"], big[:5])


def test_artifacts_of_the_layout_before_packing_still_load(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"artifact_format": 2, "content": {"units": [torch.arange(3)] * 100}}, path)
    path.with_name("old.pt.sha256").write_text(f"{runtime.file_sha256(path)} {path.stat().st_size}\n")
    assert 2 in runtime.READABLE_FORMATS and len(load_artifact(path)["units"]) == 100
