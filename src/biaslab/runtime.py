"""Device, dtype, random generators and provenance, resolved once at the boundary.

The library never seeds global RNGs: every random draw takes a `torch.Generator`
made here from a seed and a purpose, so two draws never share a stream by accident.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' -> torch.device; a clear error when it is not available."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: unknown device {name!r}; allowed: cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but CUDA is not available here; use device=cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {name!r} requested but MPS is not available here; use device=cpu")
    return device


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype: unknown dtype {name!r}; allowed: {', '.join(DTYPES)}")
    return DTYPES[name]


def generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one purpose ('init', 'batches', 'labels', ...) derived from a seed.

    Mixing the purpose into the seed keeps streams independent: changing how many
    numbers the init draws does not shift the batch order.
    """
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    g = torch.Generator(device=device)
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


def numpy_generator(seed: int, purpose: str) -> "np.random.Generator":
    """A numpy Generator for one purpose, derived from a seed as `generator` derives torch's (for numpy-only code)."""
    import numpy as np

    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@contextmanager
def blas_threads_as_torch() -> Iterator[None]:
    """Within the block, numpy's and scikit-learn's BLAS and OpenMP pools use as many threads as torch may (one in
    a sweep worker), so two workers on two cores do not start four BLAS threads each."""
    with threadpool_limits(limits=torch.get_num_threads()):
        yield


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_commit(start: Path | None = None) -> str | None:
    """The commit of the checkout biaslab runs from, with '+dirty' if it has changes; None outside git."""
    where = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


_COMMIT: list[str | None] = []


def provenance(device: torch.device) -> dict[str, str | int | None]:
    """What produced a result: package and library versions, git commit, device, host."""
    if not _COMMIT:
        _COMMIT.append(git_commit())
    info: dict[str, str | int | None] = {
        "biaslab": _version("biaslab"),
        "git_commit": _COMMIT[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "host": platform.node(),
    }
    return info
