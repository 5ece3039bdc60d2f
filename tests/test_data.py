"""Datasets and corruptions against independent computations."""

from __future__ import annotations

import gzip
import random
import struct

import numpy as np
import pytest
import torch

from biaslab import data as datasets
from biaslab.data import corruptions
from biaslab.spec import DataSpec


@pytest.mark.slow
def test_mnist1d_default_split_is_the_published_dataset():
    from mnist1d.data import get_dataset_args, make_dataset

    reference = make_dataset(get_dataset_args())
    data = datasets.load(DataSpec(name="mnist1d", standardize=False))
    np.testing.assert_allclose(data.x_train[:, 0].numpy(), reference["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(data.x_test[:, 0].numpy(), reference["x_test"], rtol=1e-6, atol=1e-6)
    assert np.array_equal(data.y_train.numpy(), reference["y"])


def test_loading_leaves_global_rngs_alone():
    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.random.get_rng_state()
    datasets.load(DataSpec(name="mnist1d", n_train=300, n_test=100, seed=3, label_noise=0.3, inputs="random_pixels"))
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert random.getstate() == py_state
    assert torch.equal(torch.random.get_rng_state(), torch_state)


def test_same_spec_same_data_and_seed_changes_it():
    spec = DataSpec(name="digits", label_noise=0.2)
    a, b, c = datasets.load(spec), datasets.load(spec), datasets.load(spec.model_copy(update={"seed": 1}))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_train, c.y_train)


def test_label_noise_redraws_the_stated_fraction():
    clean = datasets.load(DataSpec(name="digits"))
    noisy = datasets.load(DataSpec(name="digits", label_noise=0.25))
    assert int(noisy.noisy.sum()) == round(0.25 * 1200)
    assert torch.equal(noisy.y_train[~noisy.noisy], clean.y_train[~noisy.noisy])
    changed = (noisy.y_train != clean.y_train).float().mean().item()
    assert 0.25 * 0.8 < changed <= 0.25  # a redrawn label keeps its class with probability 1/10
    assert torch.equal(noisy.y_test, clean.y_test)


def test_random_labels_are_close_to_uniform():
    data = datasets.load(DataSpec(name="mnist1d", label_noise=1.0, standardize=False))
    counts = torch.bincount(data.y_train, minlength=10).float()
    assert counts.min() > 300 and counts.max() < 500  # 400 expected per class


def _recovered_permutation(clean: torch.Tensor, shuffled: torch.Tensor) -> dict[int, int]:
    """Which clean column each shuffled column came from, for columns whose values are unique."""
    fingerprint = lambda t: [tuple(col.tolist()) for col in t.flatten(1).T]  # noqa: E731
    prints = fingerprint(clean)
    unique = {f: i for i, f in enumerate(prints) if prints.count(f) == 1}
    return {j: unique[f] for j, f in enumerate(fingerprint(shuffled)) if f in unique}


def test_shuffled_pixels_use_one_permutation_for_train_and_test():
    clean = datasets.load(DataSpec(name="digits", standardize=False))
    shuffled = datasets.load(DataSpec(name="digits", inputs="shuffled_pixels", standardize=False))
    train = _recovered_permutation(clean.x_train, shuffled.x_train)
    test = _recovered_permutation(clean.x_test, shuffled.x_test)
    assert len(train) >= 40  # constant border pixels are not identifiable; the rest are
    assert any(j != i for j, i in train.items())
    shared = set(train) & set(test)
    assert len(shared) >= 30 and all(train[j] == test[j] for j in shared)


def test_random_pixels_permute_each_example_differently():
    x = torch.arange(24.0).reshape(3, 8) + torch.tensor([[0.0], [100.0], [200.0]])
    out = corruptions.random_pixels(x, torch.Generator().manual_seed(0))
    for row_in, row_out in zip(x, out):
        assert torch.equal(row_in.sort().values, row_out.sort().values)
    assert not torch.equal(out[0] - x[0, 0], out[1] - x[1, 0])


def test_gaussian_inputs_match_mean_and_variance():
    like = torch.randn(5000, 4, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.5, 3.0]) + 5.0
    out = corruptions.gaussian_inputs(like, like, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.mean(0), like.mean(0), atol=0.15, rtol=0)
    torch.testing.assert_close(out.std(0), like.std(0), atol=0.1, rtol=0.05)


def test_standardization_uses_training_statistics():
    data = datasets.load(DataSpec(name="teacher", n_train=500, n_test=500))
    torch.testing.assert_close(data.x_train.mean(0), torch.zeros(20), atol=1e-5, rtol=0)
    assert not torch.allclose(data.x_test.mean(0), torch.zeros(20), atol=1e-5)


def test_too_many_examples_is_an_error_naming_the_field():
    with pytest.raises(ValueError, match="data.n_train"):
        datasets.load(DataSpec(name="digits", n_train=2000))


def test_teacher_has_its_class_count_even_when_a_class_is_missing():
    data = datasets.load(DataSpec(name="teacher", n_train=3, n_test=3, n_classes=7))
    assert data.n_classes == 7


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_files_through_the_data_layer(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12)
    for prefix, n in (("train", 8), ("t10k", 4)):
        part = slice(0, 8) if prefix == "train" else slice(8, 12)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images[part])
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels[part])
    data = datasets.load(DataSpec(name="mnist", root=str(tmp_path), standardize=False))
    assert data.x_train.shape == (8, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(data.x_train[:, 0].numpy(), images[:8] / 255.0, rtol=1e-6)
    assert data.y_test.tolist() == labels[8:].tolist()


def test_mnist_without_root_says_which_field_to_set():
    with pytest.raises(ValueError, match="data.root"):
        datasets.load(DataSpec(name="mnist"))
