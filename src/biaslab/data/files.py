"""Read the standard MNIST and CIFAR-10 files from a directory, checksummed.

Contract:

* `load_mnist(root)` and `load_cifar10(root)` return numpy arrays
  `(x_train, y_train, x_test, y_test)`: images uint8 (MNIST `(N, 28, 28)`,
  CIFAR-10 `(N, 3, 32, 32)`), labels int64 `(N,)`. No torch here: callers
  convert and scale.
* Every compressed file named in the `files` table (logical name ->
  `(filename, md5)`) that is present in `root` has its md5 verified before it
  is read; a mismatch raises `ChecksumMismatch` and the file is left alone.
* Fallbacks that cannot be checksummed (the official md5s are of the
  compressed files) are accepted as they are: uncompressed IDX files (the
  name without `.gz`) and an already-extracted `cifar-10-batches-py/`.
* A missing file raises `DataUnavailable` at once unless `download=True`; only
  then is the network touched. Downloads try each mirror in order, stream into
  a temporary file in `root`, check the md5 and only then `os.replace` it onto
  the real name, so a partial or corrupt download never appears there.
* The CIFAR-10 batches are pickles, and a pickle can run code when loaded.
  They are read with a restricted unpickler that resolves only the few numpy
  globals that array reconstruction needs and refuses everything else with
  `pickle.UnpicklingError`; `pickle.load` is never called on them.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import math
import os
import pickle
import struct
import tarfile
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

PathLike = str | os.PathLike  # accepted wherever a file or directory is named

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class DataUnavailable(FileNotFoundError):
    """A required data file is not in the directory and could not be downloaded."""


class ChecksumMismatch(ValueError):
    """A data file's md5 differs from the expected one (corrupt, truncated or not the standard file)."""


MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
MNIST_URLS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
CIFAR10_FILES: dict[str, tuple[str, str]] = {
    "archive": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
}
CIFAR10_URLS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)

MNIST_IMAGE_SHAPE = (28, 28)
CIFAR10_IMAGE_SHAPE = (3, 32, 32)
CIFAR10_DIR = "cifar-10-batches-py"  # the folder inside the archive
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

_CHUNK = 1 << 20  # bytes per read when hashing or downloading
_TIMEOUT_S = 30  # per network operation, so a dead mirror cannot hang a run
_GZIP_MAGIC = b"\x1f\x8b"
# IDX type codes (http://yann.lecun.com/exdb/mnist/): the data is big-endian.
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ----------------------------------------------------------------------------- public loaders


def load_mnist(
    root: PathLike,
    download: bool = False,
    files: Mapping[str, tuple[str, str]] = MNIST_FILES,
    urls: Sequence[str] = MNIST_URLS,
) -> Arrays:
    """MNIST from the four IDX files in `root`: x_train (N,28,28) uint8, y_train (N,) int64, x_test, y_test.

    Each `.gz` file present is md5-checked against `files` before it is read.
    When a `.gz` is absent its uncompressed twin (same name without `.gz`) is
    accepted *without* a checksum, because the official md5s are of the
    compressed files. Otherwise the file is downloaded from `urls` when
    `download=True`, or `DataUnavailable` is raised.
    """
    root = Path(root)
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    paths = {key: _locate_idx(root, files, key, download, urls) for key in keys}  # all present before any read
    x_train, y_train = _mnist_split(read_idx(paths["train_images"]), read_idx(paths["train_labels"]), "train")
    x_test, y_test = _mnist_split(read_idx(paths["test_images"]), read_idx(paths["test_labels"]), "test")
    return x_train, y_train, x_test, y_test


def load_cifar10(
    root: PathLike,
    download: bool = False,
    files: Mapping[str, tuple[str, str]] = CIFAR10_FILES,
    urls: Sequence[str] = CIFAR10_URLS,
) -> Arrays:
    """CIFAR-10 from the python archive in `root`: x_train (N,3,32,32) uint8, y_train (N,) int64, x_test, y_test.

    The archive is md5-checked, then its batches are read straight from the
    tar (nothing is extracted to disk) with a restricted unpickler. An
    already-extracted `cifar-10-batches-py/` directory in `root` is accepted
    (unchecksummed) when the archive is absent.
    """
    root = Path(root)
    filename, md5 = _entry(files, "archive")
    source = _locate(root, filename, md5, download, urls, root / CIFAR10_DIR)
    batches = _read_cifar_dir(source) if source.is_dir() else _read_cifar_archive(source)
    x_train = np.concatenate([batches[name][0] for name in CIFAR10_TRAIN_BATCHES])
    y_train = np.concatenate([batches[name][1] for name in CIFAR10_TRAIN_BATCHES])
    x_test, y_test = batches[CIFAR10_TEST_BATCH]
    return x_train, y_train, x_test, y_test


def read_idx(path: PathLike) -> np.ndarray:
    """The array in an IDX file (gzip'd or plain, detected by content), in native byte order.

    Validates the magic (two zero bytes, a known type code, the number of
    dimensions) and that the payload holds exactly the bytes the dimensions
    call for, so a truncated or padded file fails loudly instead of yielding a
    silently wrong array. Raises ValueError naming the file.
    """
    path = Path(path)
    return _parse_idx(_read_maybe_gzip(path), path.name)


# ----------------------------------------------------------------------------- locating, checksums, downloads


def _entry(files: Mapping[str, tuple[str, str]], key: str) -> tuple[str, str]:
    """(filename, md5) for a logical name, with an error that says which table entry is missing."""
    try:
        filename, md5 = files[key]
    except KeyError:
        raise ValueError(f"files table has no entry {key!r} (has {sorted(files)})") from None
    return filename, md5.lower()


def _locate_idx(root: Path, files: Mapping[str, tuple[str, str]], key: str, download: bool, urls: Sequence[str]) -> Path:
    """An MNIST file: the checksummed `.gz`, else its uncompressed twin, else a download."""
    filename, md5 = _entry(files, key)
    return _locate(root, filename, md5, download, urls, _uncompressed(root / filename))


def _uncompressed(path: Path) -> Path | None:
    """The plain twin of a `.gz` file (same name without `.gz`), or None for other names."""
    return path.with_name(path.name[: -len(".gz")]) if path.name.endswith(".gz") else None


def _locate(
    root: Path, filename: str, md5: str, download: bool, urls: Sequence[str], fallback: Path | None
) -> Path:
    """The path to read: the checksummed file, else an unchecksummed fallback, else a fresh download.

    A present file with a wrong md5 raises ChecksumMismatch rather than being
    replaced: it may be someone's deliberate copy, and deleting data is not
    this function's call.
    """
    path = root / filename
    if path.is_file():
        _verify(path, md5)
        return path
    if fallback is not None and fallback.exists():
        return fallback
    if not download:
        raise DataUnavailable(_missing_message(root, filename, fallback))
    root.mkdir(parents=True, exist_ok=True)
    return _download(root, filename, md5, urls)


def _missing_message(root: Path, filename: str, fallback: Path | None) -> str:
    also = f" (or {fallback.name})" if fallback is not None else ""
    return (
        f"{filename}{also} is missing from {root}: pass download=True on a machine with a network, "
        f"or copy the standard file there"
    )


def md5_of(path: PathLike) -> str:
    """Hex md5 of a file's bytes, read in chunks so large archives need no large buffer."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, md5: str) -> None:
    """Raise ChecksumMismatch when the file's md5 is not the expected one."""
    actual = md5_of(path)
    if actual != md5:
        raise ChecksumMismatch(_mismatch_message(str(path), md5, actual))


def _mismatch_message(name: str, expected: str, actual: str) -> str:
    return (
        f"{name}: md5 is {actual}, expected {expected}; the file is corrupt, truncated or not the "
        f"standard one (delete it and download again)"
    )


def _download(root: Path, filename: str, md5: str, urls: Sequence[str]) -> Path:
    """Fetch `filename` into `root` from the first mirror that serves it with the right md5."""
    target = root / filename
    last: tuple[str, BaseException] | None = None
    for base in urls:
        url = base if base.endswith("/") else base + "/"
        url += filename
        try:
            _fetch(url, target, md5)
            return target
        except (OSError, ValueError) as exc:  # URLError/HTTPError/timeouts are OSError; ChecksumMismatch is ValueError
            last = (url, exc)
    if last is None:
        raise DataUnavailable(f"{filename} is missing from {root} and no download mirrors were given")
    url, exc = last
    raise DataUnavailable(
        f"could not download {filename} into {root} from {len(urls)} mirror(s); last error, from {url}: "
        f"{type(exc).__name__}: {exc}. Without a network, copy the standard file there."
    ) from exc


def _fetch(url: str, target: Path, md5: str) -> None:
    """Stream `url` into a temporary file next to `target`, check its md5, then atomically rename it.

    The temporary name is unique per call, so concurrent downloaders never
    write the same file, and `os.replace` means readers see either no file or
    the whole verified one. The temporary file is removed on any failure.
    """
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "xb") as out:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise ChecksumMismatch(_mismatch_message(url, md5, digest.hexdigest()))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- IDX (MNIST)


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        with open(path, "rb") as f:
            compressed = f.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
        if not compressed:
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path.name}: not a readable gzip file ({exc})") from exc


def _parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Decode IDX bytes: header `00 00 <type> <ndim>`, ndim big-endian uint32 dims, then the data."""
    if len(raw) < 4:
        raise ValueError(f"{name}: {len(raw)} bytes is too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{name}: not an IDX file (magic {raw[:4].hex()}, want 0000<type><ndim>)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(raw)} bytes, {ndim} dims need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(dims)
    expected, actual = count * dtype.itemsize, len(raw) - header
    if actual != expected:
        raise ValueError(f"{name}: dims {dims} need {expected} data bytes, file has {actual} (truncated or corrupt)")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _mnist_split(images: np.ndarray, labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Check an images/labels pair is MNIST-shaped and consistent; labels as int64."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != MNIST_IMAGE_SHAPE:
        raise ValueError(f"MNIST {split} images: want (N, 28, 28) uint8, got {images.shape} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"MNIST {split}: {len(images)} images but labels of shape {labels.shape}")
    return images, labels.astype(np.int64)


# ----------------------------------------------------------------------------- CIFAR-10 pickles


def _numpy_reconstruct() -> Callable[..., Any]:
    """numpy's `_reconstruct` (in `numpy._core` from numpy 2, `numpy.core` before)."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy has no multiarray._reconstruct")  # pragma: no cover


def _latin1_encode(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes: latin-1 only, nothing else."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in {"latin1", "latin-1", "iso-8859-1"}:
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


# The only globals a CIFAR-10 batch pickle needs: numpy array reconstruction,
# and (for protocol-2 pickles written by Python 3) bytes via _codecs.encode.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `_ALLOWED_GLOBALS`, so a hostile pickle cannot call anything else."""

    def find_class(self, module: str, name: str) -> Any:
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a data file")
        return resolve()


def _safe_load(f: IO[bytes]) -> Any:
    """Unpickle a data file with the restricted unpickler (py2 strings stay bytes)."""
    return _RestrictedUnpickler(f, encoding="bytes").load()


def _read_cifar_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every batch, read straight from the tar.gz members (no extraction)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            return {name: _decode_batch(_load_member(tar, name, path), f"{path.name}:{name}") for name in _batch_names()}
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path.name}: not a readable tar.gz archive ({exc})") from exc


def _load_member(tar: tarfile.TarFile, name: str, path: Path) -> Any:
    member_name = f"{CIFAR10_DIR}/{name}"
    try:
        member = tar.getmember(member_name)
    except KeyError:
        raise ValueError(f"{path.name}: archive has no {member_name}") from None
    f = tar.extractfile(member) if member.isfile() else None
    if f is None:
        raise ValueError(f"{path.name}: {member_name} is not a regular file")
    with f:
        return _safe_load(f)


def _read_cifar_dir(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every batch, from an already-extracted `cifar-10-batches-py/` directory."""
    batches = {}
    for name in _batch_names():
        path = directory / name
        if not path.is_file():
            raise DataUnavailable(f"{path} is missing: the extracted {CIFAR10_DIR}/ directory is incomplete")
        with open(path, "rb") as f:
            batches[name] = _decode_batch(_safe_load(f), str(path))
    return batches


def _batch_names() -> tuple[str, ...]:
    return (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)


def _field(batch: dict, key: str) -> Any:
    """A batch entry under its bytes key (py2 pickles) or str key (py3 pickles)."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise ValueError(f"no {key!r} entry (keys: {sorted(map(repr, batch))})")


def _decode_batch(batch: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N,3,32,32) uint8, labels (N,) int64) from one batch dict, validated."""
    if not isinstance(batch, dict):
        raise ValueError(f"{where}: expected a dict, got {type(batch).__name__}")
    try:
        data, labels = _field(batch, "data"), _field(batch, "labels")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    pixels = math.prod(CIFAR10_IMAGE_SHAPE)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        got = f"{data.shape} {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{where}: data should be an (N, {pixels}) uint8 array, got {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: labels are not integers ({exc})") from exc
    if y.shape != (len(data),):
        raise ValueError(f"{where}: {len(data)} images but labels of shape {y.shape}")
    return data.reshape(-1, *CIFAR10_IMAGE_SHAPE), y


__all__ = [
    "CIFAR10_FILES",
    "CIFAR10_URLS",
    "ChecksumMismatch",
    "DataUnavailable",
    "MNIST_FILES",
    "MNIST_URLS",
    "load_cifar10",
    "load_mnist",
    "md5_of",
    "read_idx",
]
