"""Reproducibility, device choice and the artifact cache (set up in the first cell of every notebook).

The idea: a notebook must give the same numbers when re-run, and must not depend on an earlier
notebook having run. So every notebook starts with::

    gen = seed_everything(0)
    device = pick_device()

and anything expensive it trains (a k-means codebook, a small LM) goes through :func:`cached`,
which loads the artifact from ``cache_dir()`` or, when missing or corrupted, rebuilds it with the
same recipe and seed. Artifacts are written atomically with a SHA-256 sidecar, and a file lock makes
two notebooks that build the same artifact at once wait for each other instead of corrupting it.
Notebook 00 introduces these helpers; every later notebook reuses them.

Cache names come from :func:`digest` (a short hash of a config, of a tokenizer's codebook, of a
list of file names), the one way the package turns "what was this built from" into a name.

Every artifact carries the version of the layout it was written with (:data:`ARTIFACT_FORMAT`):
one written in a layout this version cannot read (:data:`READABLE_FORMATS`) is reported as stale and
rebuilt, never misread. Many small tensors (a unit sequence per utterance) are stored packed into one
(:func:`pack_tensors`), since the weights-only loader reads each tensor separately and slowly.

Artifacts are loaded weights-only (``torch.load(..., weights_only=True)``): tensors, numbers,
strings and containers of them, plus the config records that a model file allow-lists with
:func:`artifact_record`. A file that asks for anything else (for instance a pickle that would run
code on load) is refused with :class:`UnsafeArtifact`, and :func:`cached` rebuilds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import filelock
import numpy as np
import torch

T = TypeVar("T")

CACHE_ENV = "SLM_COURSE_CACHE"  # environment variable that overrides the cache folder

__all__ = [
    "CACHE_ENV",
    "ARTIFACT_FORMAT",
    "READABLE_FORMATS",
    "CorruptArtifact",
    "StaleArtifact",
    "UnsafeArtifact",
    "artifact_record",
    "cache_dir",
    "cached",
    "recipe_config",
    "digest",
    "file_sha256",
    "load_artifact",
    "lock",
    "pack_tensors",
    "pick_device",
    "save_artifact",
    "seed_everything",
    "unpack_tensors",
]


# ---------------------------------------------------------------------------------------------
# Reproducibility and device
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask torch for deterministic kernels.

    Returns a ``torch.Generator`` seeded with ``seed``, to pass to splits and samplers explicitly.

    >>> g = seed_everything(0); a = torch.rand(2); _ = seed_everything(0); bool((a == torch.rand(2)).all())
    True
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}; pass e.g. seed_everything(0)")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        # cuBLAS needs this to be deterministic; it only takes effect if set before the first cuBLAS call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def pick_device(verbose: bool = True) -> torch.device:
    """Return CUDA if available, else Apple MPS, else the CPU; print the choice when ``verbose``."""
    if torch.cuda.is_available():
        device = torch.device("cuda")
        why = torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
        why = "Apple GPU"
    else:
        device = torch.device("cpu")
        why = "no CUDA or MPS found; the course runs on the CPU"
    if verbose:
        print(f"device: {device.type} ({why})")
    return device


# ---------------------------------------------------------------------------------------------
# Cache folder, locks and checksums
# ---------------------------------------------------------------------------------------------


def _repo_root() -> Path | None:
    """The first folder above this file that holds both ``pyproject.toml`` and ``notebooks/``."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return None


def cache_dir() -> Path:
    """Folder for cached artifacts: ``$SLM_COURSE_CACHE``, else ``<repo>/data/cache``, else ``~/.cache/slm-course``.

    The folder is created if needed.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        folder = Path(env).expanduser()
    else:
        root = _repo_root()
        folder = root / "data" / "cache" if root is not None else Path.home() / ".cache" / "slm-course"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def lock(path: str | os.PathLike[str]) -> filelock.FileLock:
    """A cross-process lock for ``path`` (the lock file is ``<path>.lock``); use as ``with lock(p): ...``.

    Raises ``RuntimeError`` in a process that is still starting up (multiprocessing's "spawn" re-runs
    the parent script's top level there): a script that builds course data outside
    ``if __name__ == "__main__":`` would otherwise make each worker wait forever for the lock its
    parent holds while it builds the corpus with those very workers.
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(
            "slm-course: a worker process is re-running your script's top level while it starts (multiprocessing "
            "'spawn'), and that code loads or builds course data, which would wait forever for the lock its parent "
            'holds. Put the script\'s code under `if __name__ == "__main__":` (see the multiprocessing docs, '
            '"Safe importing of main module").'
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return filelock.FileLock(str(path) + ".lock")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recipe_config(config: Any, recipe: T) -> T:
    """What a loader trains with: ``recipe`` (the course's config) when ``config`` is None, else ``config``,
    which must be of the recipe's class.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cfg:
    ...     steps: int = 10
    >>> recipe_config(None, Cfg()).steps, recipe_config(Cfg(steps=3), Cfg()).steps
    (10, 3)
    """
    if config is None:
        return recipe
    if not isinstance(config, type(recipe)):
        name = type(recipe).__name__
        raise TypeError(f"config must be a {name} (or None for the course's recipe), got {type(config).__name__}; "
                        f"e.g. {name}(steps=100)")
    return config


def _digest_bytes(part: Any) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode()
    if isinstance(part, torch.Tensor):
        return part.detach().cpu().contiguous().numpy().tobytes()
    if isinstance(part, np.ndarray):
        return np.ascontiguousarray(part).tobytes()
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
        part = dataclasses.asdict(part)
    return json.dumps(part, sort_keys=True, default=str).encode()


def digest(*parts: Any, n: int = 10) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``parts``, for cache names: equal inputs, equal names.

    Each part is hashed as bytes: ``bytes`` as they are, a ``str`` as UTF-8, a tensor or array as its
    raw values, a dataclass (a config) or any JSON value as sorted JSON. Several parts are hashed one
    after the other.

    >>> digest({"steps": 100, "lr": 0.001}) == digest({"lr": 0.001, "steps": 100})
    True
    >>> len(digest(torch.zeros(3))), digest("a", "b") == digest("ab")
    (10, True)
    """
    if not parts:
        raise ValueError("digest needs something to hash, e.g. digest(config)")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
        raise ValueError(f"n must be an int from 1 to 64 (hex digits of a SHA-256), got {n!r}")
    h = hashlib.sha256()
    for part in parts:
        h.update(_digest_bytes(part))
    return h.hexdigest()[:n]


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(file)`` to a temp file in the same folder, fsync it, then rename into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# Artifacts
# ---------------------------------------------------------------------------------------------


class CorruptArtifact(RuntimeError):
    """A cached artifact whose bytes do not match its ``.sha256`` sidecar (or that has no sidecar)."""


class StaleArtifact(CorruptArtifact):
    """An artifact written with another layout (:data:`ARTIFACT_FORMAT`) than this code reads."""


ARTIFACT_FORMAT = 3  # bump when what artifacts hold changes shape: older files are rebuilt, not misread
READABLE_FORMATS = (2, 3)  # 2: as 3, but without packed tensors (:func:`pack_tensors`)


class UnsafeArtifact(CorruptArtifact):
    """An artifact that asks to build an object outside the allow-list: it is refused, never executed."""


SAFE_CLASSES: list[type] = []  # what artifacts may hold besides tensors and plain data: see artifact_record


def artifact_record(cls: type[T]) -> type[T]:
    """Allow instances of the dataclass ``cls`` (a model's config) in cached artifacts; use as a class decorator.

    >>> @artifact_record
    ... @dataclasses.dataclass(frozen=True)
    ... class ToyConfig:
    ...     width: int = 8
    >>> ToyConfig in SAFE_CLASSES
    True
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"artifact_record takes a dataclass (a config record), got {cls!r}")
    if cls not in SAFE_CLASSES:
        SAFE_CLASSES.append(cls)
    return cls


def save_artifact(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically, then write the sidecar ``<path>.sha256`` (digest and size).

    The sidecar is written after the artifact, so a crash in between leaves an artifact without a
    sidecar, which :func:`load_artifact` reports as corrupt (and :func:`cached` rebuilds).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = _sidecar(path)
    sidecar.unlink(missing_ok=True)  # an old sidecar must never vouch for the new bytes
    wrapped = {"artifact_format": ARTIFACT_FORMAT, "content": pack_tensors(obj)}
    _write_atomic(path, lambda f: torch.save(wrapped, f))
    line = f"{file_sha256(path)} {path.stat().st_size}\n"
    _write_atomic(sidecar, lambda f: f.write(line.encode()))
    return path


def load_artifact(path: str | os.PathLike[str]) -> Any:
    """Check ``path`` against its ``.sha256`` sidecar, then ``torch.load`` it.

    Raises ``FileNotFoundError`` if it does not exist and :class:`CorruptArtifact` if its size or
    digest disagree with the sidecar, or the sidecar is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"artifact {path} does not exist; build it first (slm_course.runtime.cached builds and saves it), "
            f"or check that {CACHE_ENV} points at the right cache folder"
        )
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        raise CorruptArtifact(
            f"{path} has no checksum file {sidecar.name} (its write was probably interrupted); "
            "it should be rebuilt: delete it, or let cached(...) rebuild it"
        )
    try:
        expected, size_text = sidecar.read_text().split()
        size = int(size_text)
    except ValueError as err:
        raise CorruptArtifact(f"checksum file {sidecar} is unreadable; {path} should be rebuilt") from err
    actual_size = path.stat().st_size
    if actual_size != size:
        raise CorruptArtifact(
            f"{path} is {actual_size} bytes but {sidecar.name} says {size} (truncated or overwritten); "
            "it should be rebuilt: delete it, or let cached(...) rebuild it"
        )
    if file_sha256(path) != expected:
        raise CorruptArtifact(
            f"{path} does not match its SHA-256 in {sidecar.name}; "
            "it should be rebuilt: delete it, or let cached(...) rebuild it"
        )
    import pickle

    try:
        with torch.serialization.safe_globals(SAFE_CLASSES):
            wrapped = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeArtifact(
            f"{path} holds objects outside the course's allow-list, so it was not loaded (loading it could run code): "
            f"{str(err).splitlines()[0]}. Delete it, or let cached(...) rebuild it; a config class of your own "
            "can be allowed with @runtime.artifact_record"
        ) from err
    found = wrapped.get("artifact_format") if isinstance(wrapped, dict) else None
    if found not in READABLE_FORMATS or "content" not in wrapped:
        raise StaleArtifact(
            f"{path} was written with artifact layout {found or 'of an older version'}, and this code reads layout "
            f"{ARTIFACT_FORMAT}; it should be rebuilt: delete it, or let cached(...) rebuild it"
        )
    return unpack_tensors(wrapped["content"]) if found >= 3 else wrapped["content"]


PACKED = "__slm_course_packed__"  # the key that marks a packed container (see pack_tensors)
PACK_MIN = 64  # containers of fewer tensors are stored as they are


def _packable(tensors: list) -> bool:
    """Enough plain CPU tensors of one dtype and one shape but their first dimension to pack together."""
    if len(tensors) < PACK_MIN or not all(type(t) is torch.Tensor for t in tensors):
        return False
    first = tensors[0]
    return first.ndim >= 1 and all(t.dtype == first.dtype and t.ndim == first.ndim and t.shape[1:] == first.shape[1:]
                                   and t.device.type == "cpu" and not t.requires_grad for t in tensors)


def _like(obj: dict, items: dict) -> dict:
    """``items`` in a dict of ``obj``'s own type (an OrderedDict state_dict keeps its ``_metadata``)."""
    if type(obj) is dict:
        return items
    out = type(obj)(items)
    out.__dict__.update(vars(obj))
    return out


def _own(t: torch.Tensor) -> torch.Tensor:
    """``t``, copied if it is a view into a larger tensor (saving the view would save all of that tensor)."""
    return t.clone() if t.untyped_storage().nbytes() > t.nbytes else t


def pack_tensors(obj: Any) -> Any:
    """``obj`` with each list or dict of many small tensors (a unit sequence per utterance, say) stored as one.

    The weights-only loader reads one large tensor fast and each small tensor slowly (tens of thousands of them
    took seconds), so a list of at least :data:`PACK_MIN` tensors of one dtype and trailing shape becomes their
    concatenation and their lengths, and so does a dict of such tensors and a list of lists of them (each
    utterance's units cut at its words). :func:`unpack_tensors` gives back the same containers and values.

    >>> unpack_tensors(pack_tensors({"ids": [torch.arange(n) for n in range(100)]}))["ids"][3]
    tensor([0, 1, 2])
    """
    if isinstance(obj, dict):
        if _packable(values := list(obj.values())):
            return {PACKED: "dict", "keys": list(obj), "data": torch.cat(values),
                    "lengths": torch.tensor([len(t) for t in values])}
        return _like(obj, {k: pack_tensors(v) for k, v in obj.items()})
    if isinstance(obj, list):
        if _packable(obj):
            return {PACKED: "list", "data": torch.cat(obj), "lengths": torch.tensor([len(t) for t in obj])}
        if obj and all(isinstance(x, list) for x in obj) and _packable(flat := [t for x in obj for t in x]):
            return {PACKED: "lists", "data": torch.cat(flat), "lengths": torch.tensor([len(t) for t in flat]),
                    "counts": torch.tensor([len(x) for x in obj])}
        return [pack_tensors(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(pack_tensors(v) for v in obj)
    return _own(obj) if isinstance(obj, torch.Tensor) else obj


def unpack_tensors(obj: Any) -> Any:
    """Undo :func:`pack_tensors`: each packed container back as a list or dict of (views into one) tensors."""
    if isinstance(obj, dict):
        kind = obj.get(PACKED)
        if kind is None:
            return _like(obj, {k: unpack_tensors(v) for k, v in obj.items()})
        parts = list(torch.split(obj["data"], obj["lengths"].tolist()))
        if kind == "list":
            return parts
        if kind == "dict":
            return dict(zip(obj["keys"], parts, strict=True))
        out, start = [], 0
        for n in obj["counts"].tolist():
            out.append(parts[start : start + n])
            start += n
        return out
    if isinstance(obj, list):
        return [unpack_tensors(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(unpack_tensors(v) for v in obj)
    return obj


def cached(name: str, build: Callable[[], T], *, rebuild: bool = False) -> T:
    """Load artifact ``name`` from the cache, or build it with ``build()``, save it and return it.

    The file is ``cache_dir() / f"{name}.pt"``. A file lock makes a second caller (another notebook,
    another process) wait while the first builds, then load the result. A corrupted artifact is
    reported and rebuilt; ``rebuild=True`` always rebuilds.

    >>> codebook = cached("kmeans_k100_seed0", lambda: torch.randn(100, 39))  # doctest: +SKIP
    """
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"cache name must be a plain non-empty file stem like 'kmeans_k100', got {name!r}")
    path = cache_dir() / f"{name}.pt"
    with lock(path):
        if path.exists() and not rebuild:
            try:
                return load_artifact(path)
            except CorruptArtifact as err:
                print(f"cache: {path} cannot be used ({err}); rebuilding it")
        obj = build()
        save_artifact(path, obj)
        return obj
