"""A disk cache for generated arrays that take seconds to make, so that worker processes and later runs read
them instead of generating them again (MNIST-1D: about 2 s for 5000 examples, paid by every worker of a sweep).

Where: the directory $BIASLAB_CACHE ("off", in any case, turns the cache off), else $XDG_CACHE_HOME/biaslab, else
~/.cache/biaslab. What: one .npz file per key, written atomically (a temporary file, then `os.replace`, so two
workers writing the same key leave one whole file) and read with `allow_pickle=False`. The cached arrays are a
deterministic function of the key, which names every version that decides them; a file that cannot be read, or
that does not hold what the caller expects, is generated again and rewritten. The cache can make a run faster,
never different (tested: cached and generated arrays are equal bit for bit). A directory that cannot be written
costs only the speed.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

CACHE_ENV = "BIASLAB_CACHE"
Arrays = dict[str, np.ndarray]


def cache_dir() -> Path | None:
    """The cache directory (not created here), or None when $BIASLAB_CACHE is "off"."""
    setting = os.environ.get(CACHE_ENV)
    if setting:
        return None if setting.strip().lower() == "off" else Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "biaslab"


def file_name(key: str) -> str:
    """The key as a file name: letters, digits, '.', '_', '-' kept, anything else replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key) + ".npz"


def cached(key: str, make: Callable[[], Arrays], valid: Callable[[Arrays], bool]) -> Arrays:
    """The arrays stored under `key` when a readable file holds arrays `valid` accepts; else `make()`, stored."""
    folder = cache_dir()
    if folder is None:
        return make()
    path = folder / file_name(key)
    stored = _read(path)
    if stored is not None and valid(stored):
        return stored
    arrays = make()
    _write(path, arrays)
    return arrays


def _read(path: Path) -> Arrays | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # missing, truncated, not an .npz: generate again
        return None


def _write(path: Path, arrays: Arrays) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, **arrays)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    except OSError:  # read-only or full: the run goes on without the cache
        pass
