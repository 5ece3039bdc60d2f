"""Tests for biaslab.data.files: tiny MNIST / CIFAR-10 files in the real formats, no network.

Everything is written into tmp_path with the layouts of the official files
(gzip'd IDX; a tar.gz of protocol-2 pickled batch dicts), checksummed here and
passed in through custom `files` tables. Downloads go to a closed loopback
port or to a local http.server thread.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from biaslab.data import files as F

MNIST_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CLOSED_PORT_URL = "http://127.0.0.1:9/"  # discard port: nothing listens, connection refused at once


# ----------------------------------------------------------------------------- writers for the real formats


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 00 00 08 <ndim>, big-endian uint32 dims, raw bytes."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> None:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def mnist_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=20, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=10, dtype=np.uint8),
    }


def write_mnist(directory: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> dict[str, tuple[str, str]]:
    """Write the four files; return a `files` table with their md5s (always keyed by the .gz names)."""
    directory.mkdir(parents=True, exist_ok=True)
    table = {}
    for key, name in MNIST_NAMES.items():
        path = directory / (name if gz else name[: -len(".gz")])
        write_idx(path, arrays[key])
        table[key] = (name, md5(path) if gz else "0" * 32)
    return table


def cifar_batches(seed: int = 0) -> dict[str, dict]:
    """Five 4-image training batches and a 6-image test batch, shaped like the originals' dicts."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    for name in names:
        n = 6 if name == "test_batch" else 4
        batches[name] = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
        }
    return batches


def write_cifar(directory: Path, payloads: dict[str, bytes]) -> dict[str, tuple[str, str]]:
    """A tar.gz with `cifar-10-batches-py/<name>` members; return its `files` table."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CIFAR_ARCHIVE
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in payloads.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return {"archive": (CIFAR_ARCHIVE, md5(path))}


def pickled(batches: dict[str, dict]) -> dict[str, bytes]:
    return {name: pickle.dumps(batch, protocol=2) for name, batch in batches.items()}


def expected_cifar(batches: dict[str, dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    x_train = np.concatenate([b[b"data"] for b in train]).reshape(-1, 3, 32, 32)
    y_train = np.concatenate([b[b"labels"] for b in train]).astype(np.int64)
    test = batches["test_batch"]
    return x_train, y_train, test[b"data"].reshape(-1, 3, 32, 32), np.asarray(test[b"labels"], dtype=np.int64)


def assert_mnist_equal(loaded, arrays: dict[str, np.ndarray]) -> None:
    x_train, y_train, x_test, y_test = loaded
    assert x_train.shape == (20, 28, 28) and x_test.shape == (10, 28, 28)
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert y_train.shape == (20,) and y_test.shape == (10,)
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    np.testing.assert_array_equal(x_train, arrays["train_images"])
    np.testing.assert_array_equal(y_train, arrays["train_labels"])
    np.testing.assert_array_equal(x_test, arrays["test_images"])
    np.testing.assert_array_equal(y_test, arrays["test_labels"])


def assert_cifar_equal(loaded, batches: dict[str, dict]) -> None:
    x_train, y_train, x_test, y_test = loaded
    assert x_train.shape == (20, 3, 32, 32) and x_test.shape == (6, 3, 32, 32)
    assert x_train.dtype == np.uint8 and x_test.dtype == np.uint8
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    for got, want in zip(loaded, expected_cifar(batches)):
        np.testing.assert_array_equal(got, want)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any network access an immediate test failure."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(F.urllib.request, "urlopen", refuse)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server over a fresh directory: yields (directory, base URL); always shut down."""
    directory = tmp_path / "mirror"
    directory.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield directory, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


# ----------------------------------------------------------------------------- tables


def test_official_tables() -> None:
    assert F.MNIST_FILES["train_images"] == ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873")
    assert F.MNIST_FILES["train_labels"] == ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")
    assert F.MNIST_FILES["test_images"] == ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3")
    assert F.MNIST_FILES["test_labels"] == ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")
    assert F.CIFAR10_FILES == {"archive": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")}
    assert all(url.endswith("/") for url in (*F.MNIST_URLS, *F.CIFAR10_URLS))
    assert issubclass(F.DataUnavailable, FileNotFoundError) and issubclass(F.ChecksumMismatch, ValueError)


# ----------------------------------------------------------------------------- MNIST


def test_mnist_round_trip(tmp_path: Path, no_network: None) -> None:
    arrays = mnist_arrays()
    table = write_mnist(tmp_path, arrays)
    assert_mnist_equal(F.load_mnist(tmp_path, files=table), arrays)
    assert_mnist_equal(F.load_mnist(str(tmp_path), files=table), arrays)  # str roots too


def test_mnist_uncompressed_files_are_accepted_unchecksummed(tmp_path: Path, no_network: None) -> None:
    arrays = mnist_arrays(1)
    table = write_mnist(tmp_path, arrays, gz=False)  # table md5s are all zeros: not checked for plain files
    assert not list(tmp_path.glob("*.gz"))
    assert_mnist_equal(F.load_mnist(tmp_path, files=table), arrays)


def test_mnist_wrong_checksum_names_the_file(tmp_path: Path, no_network: None) -> None:
    table = write_mnist(tmp_path, mnist_arrays())
    name, actual = table["train_labels"]
    table["train_labels"] = (name, "0" * 32)
    with pytest.raises(F.ChecksumMismatch) as info:
        F.load_mnist(tmp_path, files=table)
    message = str(info.value)
    assert name in message and "0" * 32 in message and actual in message


def test_mnist_corrupt_gz_fails_the_checksum(tmp_path: Path, no_network: None) -> None:
    table = write_mnist(tmp_path, mnist_arrays())
    path = tmp_path / table["test_images"][0]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(F.ChecksumMismatch, match=path.name):
        F.load_mnist(tmp_path, files=table)


def test_mnist_missing_without_download_never_touches_the_network(tmp_path: Path, no_network: None) -> None:
    empty = tmp_path / "empty"
    with pytest.raises(F.DataUnavailable) as info:
        F.load_mnist(empty)
    message = str(info.value)
    assert str(empty) in message and "train-images-idx3-ubyte.gz" in message and "download=True" in message
    assert isinstance(info.value, FileNotFoundError)
    assert not empty.exists()  # download=False creates nothing


def test_mnist_partly_missing(tmp_path: Path, no_network: None) -> None:
    table = write_mnist(tmp_path, mnist_arrays())
    (tmp_path / table["test_labels"][0]).unlink()
    with pytest.raises(F.DataUnavailable, match="t10k-labels-idx1-ubyte.gz"):
        F.load_mnist(tmp_path, files=table)


def test_download_from_closed_port_fails_quickly(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(F.DataUnavailable) as info:
        F.load_mnist(tmp_path / "data", download=True, urls=(CLOSED_PORT_URL,))
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "127.0.0.1:9" in message and "train-images-idx3-ubyte.gz" in message
    assert info.value.__cause__ is not None  # the last mirror's error is chained
    assert leftovers(tmp_path / "data") == [] and not list((tmp_path / "data").iterdir())


def test_download_with_no_mirrors(tmp_path: Path) -> None:
    with pytest.raises(F.DataUnavailable, match="no download mirrors"):
        F.load_cifar10(tmp_path, download=True, urls=())


def test_mnist_download_from_local_server(tmp_path: Path, serve: tuple[Path, str]) -> None:
    mirror, url = serve
    arrays = mnist_arrays(2)
    table = write_mnist(mirror, arrays)
    root = tmp_path / "root"
    loaded = F.load_mnist(root, download=True, files=table, urls=(CLOSED_PORT_URL, url))  # first mirror dead
    assert_mnist_equal(loaded, arrays)
    for name, digest in table.values():
        assert md5(root / name) == digest
    assert leftovers(root) == []


def test_download_is_verified_before_it_lands(tmp_path: Path, serve: tuple[Path, str]) -> None:
    """A mirror serving the wrong bytes: DataUnavailable caused by ChecksumMismatch, and no file under the real name."""
    mirror, url = serve
    table = write_mnist(mirror, mnist_arrays())
    name, _ = table["train_images"]
    table["train_images"] = (name, "f" * 32)
    root = tmp_path / "root"
    with pytest.raises(F.DataUnavailable) as info:
        F.load_mnist(root, download=True, files=table, urls=(url,))
    assert isinstance(info.value.__cause__, F.ChecksumMismatch)
    assert "f" * 32 in str(info.value) and name in str(info.value)
    assert not (root / name).exists() and leftovers(root) == []


def test_download_writes_atomically(tmp_path: Path, serve: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file is streamed to a temporary name in root, complete and verified, then os.replace'd onto its name."""
    mirror, url = serve
    table = write_mnist(mirror, mnist_arrays())
    root = tmp_path / "root"
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src, dst) -> None:
        src, dst = Path(src), Path(dst)
        assert src.parent == dst.parent == root and src.name != dst.name
        assert not dst.exists()  # nothing under the real name until the rename
        assert md5(src) == dict(table.values())[dst.name]  # already complete and correct
        replaced.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(F.os, "replace", spy)
    F.load_mnist(root, download=True, files=table, urls=(url,))
    assert sorted(dst.name for _, dst in replaced) == sorted(name for name, _ in table.values())
    assert leftovers(root) == []


def test_present_file_with_bad_checksum_is_not_overwritten(tmp_path: Path, serve: tuple[Path, str]) -> None:
    mirror, url = serve
    table = write_mnist(mirror, mnist_arrays())
    root = tmp_path / "root"
    root.mkdir()
    bad = root / table["train_images"][0]
    bad.write_bytes(b"not mnist")
    with pytest.raises(F.ChecksumMismatch, match=bad.name):
        F.load_mnist(root, download=True, files=table, urls=(url,))
    assert bad.read_bytes() == b"not mnist"


# ----------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    path = tmp_path / f"x-idx3-ubyte{suffix}"
    write_idx(path, array)
    out = F.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 5) and out.flags.writeable
    np.testing.assert_array_equal(out, array)


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    path = tmp_path / "ints-idx2"
    path.write_bytes(struct.pack(">BBBB", 0, 0, 0x0C, 2) + struct.pack(">2I", 2, 3) + values.tobytes())
    out = F.read_idx(path)
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_truncated_idx_raises_naming_the_file(tmp_path: Path, suffix: str) -> None:
    data = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-7]
    path = tmp_path / f"short-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(ValueError, match=f"short-idx3-ubyte{suffix}.*truncated"):
        F.read_idx(path)


def test_idx_with_trailing_bytes_raises(tmp_path: Path) -> None:
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(5, dtype=np.uint8)) + b"\0")
    with pytest.raises(ValueError, match="long-idx1-ubyte"):
        F.read_idx(path)


@pytest.mark.parametrize(
    "raw", [b"", b"\x00\x00", b"\x01\x00\x08\x01" + b"\0" * 8, b"\x00\x00\x07\x01" + b"\0" * 8, b"\x00\x00\x08\x03\x00"]
)
def test_bad_idx_headers_raise_naming_the_file(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="bad-idx"):
        F.read_idx(path)


def test_truncated_gzip_stream_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8)))[:-12])
    with pytest.raises(ValueError, match="cut-idx1-ubyte.gz"):
        F.read_idx(path)


# ----------------------------------------------------------------------------- CIFAR-10


def test_cifar_round_trip_from_archive(tmp_path: Path, no_network: None) -> None:
    batches = cifar_batches()
    table = write_cifar(tmp_path, pickled(batches))
    assert_cifar_equal(F.load_cifar10(tmp_path, files=table), batches)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CIFAR_ARCHIVE]  # nothing extracted to disk


def test_cifar_reads_an_extracted_directory(tmp_path: Path, no_network: None) -> None:
    batches = cifar_batches(3)
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    for name, payload in pickled(batches).items():
        (directory / name).write_bytes(payload)
    assert_cifar_equal(F.load_cifar10(tmp_path), batches)


def test_cifar_accepts_str_keys_and_array_labels(tmp_path: Path, no_network: None) -> None:
    batches = cifar_batches(4)
    as_py3 = {
        name: {"data": b[b"data"], "labels": np.asarray(b[b"labels"], dtype=np.uint8)} for name, b in batches.items()
    }
    table = write_cifar(tmp_path, pickled(as_py3))
    assert_cifar_equal(F.load_cifar10(tmp_path, files=table), batches)


def test_cifar_wrong_checksum(tmp_path: Path, no_network: None) -> None:
    table = write_cifar(tmp_path, pickled(cifar_batches()))
    actual = table["archive"][1]
    with pytest.raises(F.ChecksumMismatch) as info:
        F.load_cifar10(tmp_path, files={"archive": (CIFAR_ARCHIVE, "1" * 32)})
    assert CIFAR_ARCHIVE in str(info.value) and actual in str(info.value) and "1" * 32 in str(info.value)


def test_cifar_missing_without_download(tmp_path: Path, no_network: None) -> None:
    with pytest.raises(F.DataUnavailable) as info:
        F.load_cifar10(tmp_path)
    assert str(tmp_path) in str(info.value) and CIFAR_ARCHIVE in str(info.value)


def test_cifar_archive_missing_a_batch(tmp_path: Path) -> None:
    payloads = pickled(cifar_batches())
    del payloads["data_batch_4"]
    table = write_cifar(tmp_path, payloads)
    with pytest.raises(ValueError, match="data_batch_4"):
        F.load_cifar10(tmp_path, files=table)


def test_cifar_batch_with_wrong_shape(tmp_path: Path) -> None:
    batches = cifar_batches()
    batches["test_batch"][b"data"] = np.zeros((6, 100), dtype=np.uint8)
    table = write_cifar(tmp_path, pickled(batches))
    with pytest.raises(ValueError, match="test_batch.*3072"):
        F.load_cifar10(tmp_path, files=table)


def test_cifar_download_from_local_server(tmp_path: Path, serve: tuple[Path, str]) -> None:
    mirror, url = serve
    batches = cifar_batches(5)
    table = write_cifar(mirror, pickled(batches))
    root = tmp_path / "root"
    assert_cifar_equal(F.load_cifar10(root, download=True, files=table, urls=(url,)), batches)
    assert md5(root / CIFAR_ARCHIVE) == table["archive"][1] and leftovers(root) == []


# ----------------------------------------------------------------------------- hostile pickles


class CreatesFile:
    """A payload whose unpickling calls open(marker, "w"): harmless, but leaves evidence if it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class RunsShell:
    """A payload whose unpickling would call os.system; the command only touches a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("payload_type", [CreatesFile, RunsShell])
@pytest.mark.parametrize("where", ["whole batch", "inside labels"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, payload_type: type, where: str) -> None:
    marker = tmp_path / "pwned"
    batches = pickled(cifar_batches())
    if where == "whole batch":
        batches["data_batch_3"] = pickle.dumps(payload_type(marker), protocol=2)
    else:
        batch = cifar_batches()["data_batch_3"]
        batch[b"labels"] = [payload_type(marker)]
        batches["data_batch_3"] = pickle.dumps(batch, protocol=2)
    table = write_cifar(tmp_path / "data", batches)  # md5 matches: the checksum is no defence against a bad table
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        F.load_cifar10(tmp_path / "data", files=table)
    assert not marker.exists()


def test_the_hostile_payload_is_live(tmp_path: Path) -> None:
    """Control for the test above: plain pickle.loads does run the payload, so the refusal is what stops it."""
    marker = tmp_path / "control"
    result = pickle.loads(pickle.dumps(CreatesFile(marker), protocol=2))
    result.close()
    assert marker.exists()


def test_malicious_pickle_in_extracted_directory(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    for name, payload in pickled(cifar_batches()).items():
        (directory / name).write_bytes(payload)
    (directory / "test_batch").write_bytes(pickle.dumps(CreatesFile(marker), protocol=4))
    with pytest.raises(pickle.UnpicklingError):
        F.load_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [("builtins", "eval"), ("__builtin__", "open"), ("os", "system"), ("posix", "system"), ("numpy", "load"),
     ("numpy", "frombuffer"), ("numpy.core.multiarray", "scalar"), ("_codecs", "decode"), ("subprocess", "Popen")],
)
def test_unpickler_refuses_everything_outside_the_allowlist(module: str, name: str) -> None:
    with pytest.raises(pickle.UnpicklingError):
        F._RestrictedUnpickler(io.BytesIO(b""), encoding="bytes").find_class(module, name)


def test_unpickler_allows_numpy_reconstruction() -> None:
    unpickler = F._RestrictedUnpickler(io.BytesIO(b""), encoding="bytes")
    assert unpickler.find_class("numpy", "ndarray") is np.ndarray
    assert unpickler.find_class("numpy", "dtype") is np.dtype
    assert callable(unpickler.find_class("numpy.core.multiarray", "_reconstruct"))
    assert callable(unpickler.find_class("numpy._core.multiarray", "_reconstruct"))


def test_codecs_encode_is_latin1_only() -> None:
    encode = F._RestrictedUnpickler(io.BytesIO(b""), encoding="bytes").find_class("_codecs", "encode")
    assert encode("\x00\xff", "latin1") == b"\x00\xff"
    with pytest.raises(pickle.UnpicklingError):
        encode("x", "rot13")


def test_pickles_written_by_numpy_1_load(tmp_path: Path, no_network: None) -> None:
    """The official batches name `numpy.core.multiarray._reconstruct` (numpy 1.x); numpy 2 writes `numpy._core`."""
    batches = cifar_batches(6)
    payloads = {
        name: payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        for name, payload in pickled(batches).items()
    }
    assert all(b"numpy.core.multiarray\n_reconstruct" in p for p in payloads.values())
    table = write_cifar(tmp_path, payloads)
    assert_cifar_equal(F.load_cifar10(tmp_path, files=table), batches)
