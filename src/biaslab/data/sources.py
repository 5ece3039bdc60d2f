"""The built-in datasets, each a function (DataSpec, seed) -> numpy arrays.

Every source returns `(x_train, y_train, x_test, y_test)` as float32/int64 numpy
arrays (float32 targets shaped (examples, outputs) for the regression source `chebyshev`) with inputs shaped (examples, channels, length) or (examples, channels,
height, width), so the CNN sees the spatial structure and the MLP flattens it.
All of them work offline: `mnist1d`, `teacher` and `modular` are generated,
`digits` ships with scikit-learn, `mnist` and `cifar10` read the standard files
from a directory. `modular` is the exception to the input shape: its inputs are
token ids (int64, shape (examples, 2)), read by the token models.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache

import numpy as np

import torch

from biaslab.data.cache import cached
from biaslab.registry import Registry
from biaslab.runtime import generator
from biaslab.spec import REGRESSION_DATASETS, DataSpec

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
Source = Callable[[DataSpec], Arrays]

TEN_CLASSES = 10  # every built-in dataset but `teacher`, whose class count is data.n_classes

SOURCES: Registry[Source] = Registry("dataset")

MNIST1D_SEED = 42  # the generator seed of the published MNIST-1D; data.seed is added to it


@lru_cache(maxsize=8)
def _mnist1d_arrays(n_total: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D generated offline with the package's defaults (about 2 s for 5000 examples): from the disk cache
    (`biaslab.data.cache`, keyed by every version that decides the arrays) when it holds them, else generated."""
    from importlib.metadata import version

    import scipy

    key = f"mnist1d-{version('mnist1d')}-numpy{np.__version__}-scipy{scipy.__version__}-n{n_total}-seed{seed}"

    def valid(arrays: dict[str, np.ndarray]) -> bool:
        x, y = arrays.get("x"), arrays.get("y")
        return x is not None and y is not None and x.dtype == np.float32 and y.dtype == np.int64 and x.shape[0] == n_total and y.shape == (n_total,)

    arrays = cached(key, lambda: _generate_mnist1d(n_total, seed), valid)
    return arrays["x"], arrays["y"]


def _generate_mnist1d(n_total: int, seed: int) -> dict[str, np.ndarray]:
    """{"x": (n_total, 40) float32, "y": (n_total,) int64}; restores the global RNGs the generator seeds."""
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        args = get_dataset_args()
        args.num_samples = n_total
        args.train_split = 1.0
        args.seed = seed
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": data["x"].astype(np.float32), "y": data["y"].astype(np.int64)}


@SOURCES.register("mnist1d")
def mnist1d(spec: DataSpec) -> Arrays:
    """MNIST-1D (Greydanus & Kobak 2024): 40-long 1-D digits; 4000/1000 by default, as published."""
    n_train, n_test = spec.n_train or 4000, spec.n_test or 1000
    n_total = -(-(n_train + n_test) // 10) * 10  # the generator makes num_samples // 10 per class
    x, y = _mnist1d_arrays(n_total, MNIST1D_SEED + spec.seed)
    x = x[:, None, :]  # (examples, 1 channel, 40)
    return x[:n_train], y[:n_train], x[n_train : n_train + n_test], y[n_train : n_train + n_test]


@SOURCES.register("digits")
def digits(spec: DataSpec) -> Arrays:
    """scikit-learn's bundled 8x8 digits (1797 images), pixels / 16, shuffled by data.seed; 1200/597 by default."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]  # (examples, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(spec.seed).permutation(len(y))
    n_train = spec.n_train or 1200
    if n_train >= len(y):
        raise ValueError(f"data.n_train: digits has {len(y)} examples, asked for {n_train} for training")
    n_test = spec.n_test or len(y) - n_train
    if n_train + n_test > len(y):
        raise ValueError(f"data.n_train + data.n_test: digits has {len(y)} examples, asked for {n_train + n_test}")
    train, test = order[:n_train], order[n_train : n_train + n_test]
    return x[train], y[train], x[test], y[test]


@SOURCES.register("teacher")
def teacher(spec: DataSpec) -> Arrays:
    """Gaussian inputs N(0, I_dim) labelled by the argmax of a random one-hidden-layer ReLU network."""
    rng = np.random.default_rng(spec.seed)
    n_train, n_test = spec.n_train or 1000, spec.n_test or 1000
    w1 = rng.standard_normal((spec.dim, spec.teacher_width)) / np.sqrt(spec.dim)
    w2 = rng.standard_normal((spec.teacher_width, spec.n_classes)) / np.sqrt(spec.teacher_width)
    x = rng.standard_normal((n_train + n_test, spec.dim)).astype(np.float32)
    y = (np.maximum(x @ w1, 0.0) @ w2).argmax(axis=1).astype(np.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


DEFAULT_TRAIN_FRACTION = 0.5  # modular, when data.train_fraction is unset


def modular_table(p: int, operation: str) -> tuple[np.ndarray, np.ndarray]:
    """Every equation a op b = c of Z_p: pairs (rows (a, b) in row-major order of a, then b) and results c.

    Division is a * b^(-1) with the inverse b^(p-2) mod p (Fermat; p prime), so pairs
    with b = 0 are left out: p * (p - 1) equations instead of p * p.
    """
    a, b = (grid.ravel() for grid in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if operation == "div":
        a, b = a[b != 0], b[b != 0]
    results = {
        "add": lambda: (a + b) % p,
        "sub": lambda: (a - b) % p,
        "mul": lambda: (a * b) % p,
        "div": lambda: (a * np.array([pow(int(v), p - 2, p) for v in b])) % p,
    }
    pairs = np.stack([a, b], axis=1).astype(np.int64)  # (equations, 2)
    return pairs, results[operation]().astype(np.int64)


@SOURCES.register("modular")
def modular(spec: DataSpec) -> Arrays:
    """a op b mod p (Power et al. 2022): a random train_fraction of the whole table for training, the rest for test.

    The split is a permutation drawn from `generator(data.seed, "modular-split")`,
    so it is the same for every model seed; round(fraction * equations) train.
    """
    pairs, results = modular_table(spec.modulus, spec.operation)
    fraction = spec.train_fraction if spec.train_fraction is not None else DEFAULT_TRAIN_FRACTION
    n_train = round(fraction * len(results))
    if not 0 < n_train < len(results):
        raise ValueError(f"data.train_fraction: {fraction} of {len(results)} equations leaves an empty train or test set")
    order = torch.randperm(len(results), generator=generator(spec.seed, "modular-split")).numpy()
    train, test = order[:n_train], order[n_train:]
    return pairs[train], results[train], pairs[test], results[test]


@SOURCES.register("chebyshev")
def chebyshev(spec: DataSpec) -> Arrays:
    """Regression on [-1, 1]: n_train evenly spaced x (20 by default) labelled y = T_degree(x), the Chebyshev
    polynomial of the first kind (Cohen et al. 2021's chebyshev-5-20); test: n_test evenly spaced x (100 by default).

    Inputs are shaped (examples, 1) and targets (examples, 1) float32: one real output per example.
    """
    coefficients = np.zeros(spec.degree + 1)
    coefficients[-1] = 1.0  # the series sum c_k T_k with only c_degree = 1

    def labelled(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.linspace(-1.0, 1.0, n)
        return x[:, None].astype(np.float32), np.polynomial.chebyshev.chebval(x, coefficients)[:, None].astype(np.float32)

    return (*labelled(spec.n_train or 20), *labelled(spec.n_test or 100))


def n_classes(spec: DataSpec) -> int:
    """How many classes the dataset has (not inferred from labels: a small split may miss one); for a regression
    dataset, how many real outputs each example has."""
    if spec.name in REGRESSION_DATASETS:
        return 1
    if spec.name == "modular":
        return spec.modulus
    return spec.n_classes if spec.name == "teacher" else TEN_CLASSES


def _subset(arrays: Arrays, spec: DataSpec) -> Arrays:
    """The first n_train / n_test examples of a standard split (all when unset)."""
    x_train, y_train, x_test, y_test = arrays
    n_train, n_test = spec.n_train or len(y_train), spec.n_test or len(y_test)
    for field, n, available in (("n_train", n_train, len(y_train)), ("n_test", n_test, len(y_test))):
        if n > available:
            raise ValueError(f"data.{field}: {spec.name} has {available} examples, asked for {n}")
    return x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test]


@SOURCES.register("mnist")
def mnist(spec: DataSpec) -> Arrays:
    """MNIST from the standard IDX files in data.root (checksummed); pixels / 255."""
    from biaslab.data.files import load_mnist

    x_train, y_train, x_test, y_test = _subset(load_mnist(_root(spec), download=spec.download), spec)
    scale = lambda x: (x.astype(np.float32) / 255.0)[:, None, :, :]  # noqa: E731  (examples, 1, 28, 28)
    return scale(x_train), y_train, scale(x_test), y_test


@SOURCES.register("cifar10")
def cifar10(spec: DataSpec) -> Arrays:
    """CIFAR-10 from the standard python archive in data.root (checksummed); pixels / 255."""
    from biaslab.data.files import load_cifar10

    x_train, y_train, x_test, y_test = _subset(load_cifar10(_root(spec), download=spec.download), spec)
    return (x_train.astype(np.float32) / 255.0), y_train, (x_test.astype(np.float32) / 255.0), y_test


def _root(spec: DataSpec) -> str:
    if spec.root is None:
        raise ValueError(f"data.root: {spec.name} reads its standard files from a directory; set data.root=PATH")
    return spec.root
