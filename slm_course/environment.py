"""Is this Python environment the one the course is taught and measured with?

Two checks, each with an error that says what to run:

- torch and torchaudio load together. torchaudio ships compiled ops built against one torch
  release; beside another one its library can fail to load (an "undefined symbol" error), which pip
  does not catch because a wheel's metadata may accept a torch it cannot run with.
- every package pinned in the lock (`requirements.lock.txt`, written by `make lock`) is installed at
  its pinned version. Only the pins whose environment markers match this interpreter count.

`slm-course doctor` runs both and prints the versions and the CPU's vector extensions; `make test`
runs it after every install, so a broken environment stops there, not an hour later.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "requirements.lock.txt"
FIX = ("Rebuild the course's environment from the lock: `rm -rf .venv && make test` (or `make lab`). "
       "Conda users: `conda env update -f environment.yml --prune`, then `pip install --no-deps -e .`.")


COLAB_FIX = ("On Colab: Runtime > Restart session, then run the notebook's first cell again; it installs "
             "torch 2.11.0 and torchaudio 2.11.0 when Colab's own pair is another.")


def _fix() -> str:
    return COLAB_FIX if "google.colab" in sys.modules else FIX


class EnvironmentMismatch(RuntimeError):
    """The installed packages are not the set the course is measured with."""


@dataclass(frozen=True)
class Mismatch:
    name: str
    locked: str
    installed: str | None  # None: not installed

    def __str__(self) -> str:
        return f"{self.name}: locked {self.locked}, installed {self.installed or 'nothing'}"


def default_lock() -> Path | None:
    """The repository's lock beside an editable install of the package, or None (e.g. a pip install from git)."""
    path = Path(__file__).resolve().parents[1] / LOCK_NAME
    return path if path.is_file() else None


def read_lock(path: str | Path) -> dict[str, str]:
    """Exact pins of a `uv pip compile` / `pip-compile` lock that apply to this interpreter: {name: version}.

    >>> import tempfile, os
    >>> text = "torch==2.11.0 \\\\\\n    --hash=sha256:ab\\nnumpy==1.0 ; python_version < '3'\\n# a comment\\n"
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = os.path.join(d, "lock.txt"); _ = open(p, "w").write(text)
    ...     read_lock(p)
    {'torch': '2.11.0'}
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No lock file at {path}: run `make lock` in the repository to write one.")
    logical, pins = "", {}
    for raw in path.read_text().splitlines() + [""]:
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            logical += " " + line[:-1]
            continue
        logical = (logical + " " + line).strip()
        entry = " ".join(part for part in logical.split() if not part.startswith("--hash"))
        logical = ""
        if not entry or entry.startswith("-"):
            continue
        try:
            req = Requirement(entry)
        except InvalidRequirement as err:
            raise ValueError(f"{path}: cannot read the lock line {entry!r} ({err}); regenerate it with `make lock`.") from err
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==":
            raise ValueError(f"{path}: {entry!r} is not an exact pin (name==version); regenerate it with `make lock`.")
        if req.marker is None or req.marker.evaluate():
            pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def lock_mismatches(path: str | Path) -> list[Mismatch]:
    """The pinned packages of the lock whose installed version differs (local labels such as +cpu ignored)."""
    from packaging.version import InvalidVersion, Version

    out = []
    for name, locked in sorted(read_lock(path).items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out.append(Mismatch(name, locked, None))
            continue
        try:
            same = Version(installed).public == Version(locked).public
        except InvalidVersion:
            same = installed == locked
        if not same:
            out.append(Mismatch(name, locked, installed))
    return out


def check_lock(path: str | Path) -> None:
    """Raise EnvironmentMismatch, naming each package and what to run, if any pin of the lock is not installed."""
    bad = lock_mismatches(path)
    if bad:
        listed = "; ".join(str(m) for m in bad[:8]) + (f"; and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise EnvironmentMismatch(f"{len(bad)} installed package(s) differ from {Path(path).name}: {listed}. {FIX}")


def check_torch_pair() -> dict[str, str]:
    """Load torchaudio's compiled library beside torch and run one of its ops; return both versions.

    `forced_align` runs in torchaudio's C++ library, so a torchaudio built for another torch fails
    here (or already at import) instead of in the middle of a notebook.
    """
    versions = {}
    for name in ("torch", "torchaudio"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "(not installed)"
    try:
        import torch

        versions["torch"] = torch.__version__
        import torchaudio
        import torchaudio.functional as taf

        versions["torchaudio"] = torchaudio.__version__
        log_probs = torch.log_softmax(torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 0.0, 0.0]]]), dim=-1)
        path, _ = taf.forced_align(log_probs, torch.tensor([[1, 2]], dtype=torch.int32), blank=0)
    except (ImportError, OSError, RuntimeError) as err:
        raise EnvironmentMismatch(
            f"torch {versions.get('torch', '?')} and torchaudio {versions.get('torchaudio', '?')} do not work together "
            f"({type(err).__name__}: {err}). The course uses torch 2.11.0 with torchaudio 2.11.0. {_fix()}") from err
    if path.tolist() != [[1, 2, 0]]:
        raise EnvironmentMismatch(f"torchaudio's forced_align returned {path.tolist()} on a fixed example, "
                                  f"not [[1, 2, 0]]: its compiled ops are broken. {_fix()}")
    return versions


def cpu_features() -> list[str]:
    """The CPU's vector extensions that PyTorch's kernels may choose between (their order of sums can differ)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "asimd")
    return [f for f in wanted if f in flags]


def describe() -> dict:
    """What a benchmark records about the machine and packages it ran on; never raises (a mismatch is a field)."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": importlib.metadata.version("numpy"), "machine": platform.machine(),
            "cpu_features": cpu_features(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    lock = default_lock()
    try:
        info["lock_mismatches"] = [str(m) for m in lock_mismatches(lock)] if lock is not None else None
    except (OSError, ValueError) as err:
        info["lock_mismatches"] = f"unreadable lock: {err}"
    return info


def report(lock: str | Path | None = None) -> dict:
    """Check the environment; return what a benchmark should record about it. Raises EnvironmentMismatch."""
    import torch

    versions = check_torch_pair()
    lock = Path(lock) if lock is not None else default_lock()
    if lock is not None:
        check_lock(lock)
    return {
        "python": platform.python_version(), **versions, "numpy": importlib.metadata.version("numpy"),
        "machine": platform.machine(), "cpu_features": cpu_features(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "lock": str(lock) if lock else None,
    }
