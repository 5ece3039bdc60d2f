"""The disk cache of generated data (biaslab.data.cache): it makes a run faster, never different."""

from __future__ import annotations

import numpy as np
import pytest

from biaslab.data import sources
from biaslab.data.cache import CACHE_ENV, cache_dir, cached, file_name

N, SEED = 60, 42  # 6 examples per class: fast to generate


def _mnist1d(n_total: int = N, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    return sources._mnist1d_arrays.__wrapped__(n_total, seed)  # past the in-process lru_cache, to the disk cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_second_load_reads_the_file_and_equals_a_fresh_generation_bit_for_bit(cache, monkeypatch):
    fresh = sources._generate_mnist1d(N, SEED)
    first = _mnist1d()
    assert len(list(cache.glob("mnist1d-*.npz"))) == 1

    def no_generation(*args):
        raise AssertionError("generated again although the cache holds the arrays")

    monkeypatch.setattr(sources, "_generate_mnist1d", no_generation)
    second = _mnist1d()
    for arrays in (first, second):
        assert np.array_equal(arrays[0], fresh["x"]) and np.array_equal(arrays[1], fresh["y"])
        assert arrays[0].dtype == np.float32 and arrays[1].dtype == np.int64


def test_every_input_of_the_generator_is_in_the_key(cache):
    _mnist1d(N, SEED), _mnist1d(N, SEED + 1), _mnist1d(N + 10, SEED)
    names = sorted(p.name for p in cache.glob("*.npz"))
    assert len(names) == 3 and all("numpy" in n and "scipy" in n and "mnist1d-" in n for n in names)


@pytest.mark.parametrize("damage", ["garbage", "other-arrays", "truncated"])
def test_a_damaged_file_is_generated_again_and_rewritten(cache, damage):
    _mnist1d()
    (path,) = cache.glob("*.npz")
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "other-arrays":
        np.savez(path, x=np.zeros((3, 40), dtype=np.float32), y=np.zeros(3, dtype=np.int64))
    else:
        path.write_bytes(path.read_bytes()[:100])
    fresh = sources._generate_mnist1d(N, SEED)
    x, y = _mnist1d()
    assert np.array_equal(x, fresh["x"]) and np.array_equal(y, fresh["y"])
    with np.load(path, allow_pickle=False) as npz:
        assert np.array_equal(npz["x"], fresh["x"])


def test_off_writes_nothing_and_an_unwritable_directory_costs_only_speed(tmp_path, monkeypatch):
    for off in ("OFF", " off"):
        monkeypatch.setenv(CACHE_ENV, off)
        assert cache_dir() is None
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cached("k", lambda: {"a": np.arange(3)}, lambda arrays: True)["a"].tolist() == [0, 1, 2]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))  # a directory under a file cannot be made
    assert cached("k", lambda: {"a": np.arange(3)}, lambda arrays: True)["a"].tolist() == [0, 1, 2]
    assert not list(tmp_path.glob("**/*.npz"))


def test_the_default_place_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "biaslab"


def test_a_key_cannot_leave_the_directory():
    assert file_name("../../etc/passwd") == ".._.._etc_passwd.npz" and "/" not in file_name("a/b\\c")
