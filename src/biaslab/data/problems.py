"""Instances of the solvable problems, drawn from a seed (float64 numpy; the callers move them to torch).

Each function returns a small dataclass with the instance and, where there is one,
its planted solution. The draws use `numpy.random.default_rng(seed)`: no global state.

One seed, one job: every generator takes the run's seed and draws the instance from
`problem_seed(problem, seed)`, which is problem.seed when the spec sets it and the
run's seed otherwise (the behaviour, and the numbers, from before problem.seed
existed). So a runner that passes its `spec.seed` honours problem.seed without
knowing about it, and keeps the run's seed for the init and the batch order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biaslab.runtime import numpy_generator
from biaslab.spec import LeastSquares, MarginGeometry, MatrixCompletion, OrthogonalInputs, Polynomial, Separable, SparseRegression, Tabular


def problem_seed(problem, seed: int) -> int:
    """The seed that draws the problem instance: problem.seed when set, else the run's `seed` (one seed for both)."""
    return seed if problem.seed is None else problem.seed


@dataclass(frozen=True)
class LinearSystem:
    A: np.ndarray  # (n, d)
    b: np.ndarray  # (n,)
    w_star: np.ndarray  # (d,) the planted solution
    w0: np.ndarray  # (d,) where gradient descent starts


def least_squares(problem: LeastSquares, seed: int) -> LinearSystem:
    """A ~ N(0, 1), w* ~ N(0, I/d), b = A w*; w0 a random direction of norm init_norm.

    A and w* come from the problem draw; w0's direction is the init, from the run's seed: with problem.seed None
    it continues the instance's draw (as it always did), otherwise it has a stream of its own ("init").
    """
    rng = np.random.default_rng(problem_seed(problem, seed))
    A = rng.standard_normal((problem.n, problem.d))
    w_star = rng.standard_normal(problem.d) / np.sqrt(problem.d)
    init = rng if problem.seed is None else numpy_generator(seed, "init")
    direction = init.standard_normal(problem.d)
    return LinearSystem(A, A @ w_star, w_star, problem.init_norm * direction / np.linalg.norm(direction))


def sparse_regression(problem: SparseRegression, seed: int) -> LinearSystem:
    """A ~ N(0, 1), w* with `sparsity` entries of +-1 at random places, b = A w*; starts at 0."""
    rng = np.random.default_rng(problem_seed(problem, seed))
    A = rng.standard_normal((problem.n, problem.d))
    w_star = np.zeros(problem.d)
    support = rng.choice(problem.d, size=problem.sparsity, replace=False)
    w_star[support] = rng.choice([-1.0, 1.0], size=problem.sparsity)
    return LinearSystem(A, A @ w_star, w_star, np.zeros(problem.d))


@dataclass(frozen=True)
class Labelled:
    X: np.ndarray  # (n, 2) separable points, or (n, d) orthogonal inputs
    y: np.ndarray  # (n,) in {-1, +1}


SOUDRY_SUPPORT = np.array([[0.5, 1.5], [1.5, 0.5]])  # Soudry et al. 2018, Fig. 1: the support vectors of class +1


def separable(problem: Separable, seed: int) -> Labelled:
    """Data separable by a line through the origin.

    "soudry": the two support vectors (0.5, 1.5), (1.5, 0.5) and (n_points - 4) / 2
    random points with x1 + x2 >= 2.5 for class +1, and the negatives of all of
    them for class -1; the max-margin separator is w = (0.5, 0.5).
    "gaussian": n_points / 2 points from N(+-(2, 0.5), 0.7^2 I) per class, redrawn
    until separable through the origin.
    """
    rng = np.random.default_rng(problem_seed(problem, seed))
    half = problem.n_points // 2
    if problem.points == "soudry":
        extra = rng.uniform(1.25, 3.0, size=(max(half - 2, 0), 2))
        positives = np.vstack([SOUDRY_SUPPORT, extra])
    else:
        for _ in range(1000):
            positives = rng.normal(0.0, 0.7, size=(half, 2)) + np.array([2.0, 0.5])
            negatives = rng.normal(0.0, 0.7, size=(half, 2)) - np.array([2.0, 0.5])
            X = np.vstack([positives, -negatives])  # reflect: separable through 0 iff all of these lie in an open half-plane
            if _in_open_half_plane(X):
                break
        else:
            raise ValueError("problem.n_points: could not draw separable Gaussian clouds; use fewer points")
        X = np.vstack([positives, negatives])
        return Labelled(X, np.concatenate([np.ones(half), -np.ones(half)]))
    X = np.vstack([positives, -positives])
    return Labelled(X, np.concatenate([np.ones(len(positives)), -np.ones(len(positives))]))


def margin_geometry(problem: MarginGeometry, seed: int) -> Labelled:
    """x ~ N(0, I_d), labelled by the sign of x_1 (sparse_teacher) or of <s, x> with s a random sign vector
    (dense_teacher). -> X (n, d), y (n,) in {-1, +1}; separable through the origin (by the teacher itself)."""
    rng = np.random.default_rng(problem_seed(problem, seed))
    X = rng.standard_normal((problem.n, problem.d))
    teacher = np.eye(problem.d)[0] if problem.labels == "sparse_teacher" else rng.choice([-1.0, 1.0], size=problem.d)
    return Labelled(X, np.where(X @ teacher >= 0.0, 1.0, -1.0))


def orthogonal_inputs(problem: OrthogonalInputs, seed: int) -> Labelled:
    """n orthonormal rows in d dimensions (Q^T from the QR decomposition of a d x n Gaussian matrix), the first
    n // 2 labelled +1 and the rest -1. -> X (n, d), y (n,)."""
    rng = np.random.default_rng(problem_seed(problem, seed))
    X = np.linalg.qr(rng.standard_normal((problem.d, problem.n)))[0].T  # (n, d) orthonormal rows
    return Labelled(X, np.where(np.arange(problem.n) < problem.n // 2, 1.0, -1.0))


def _in_open_half_plane(points: np.ndarray) -> bool:
    """Whether some w has <w, p> > 0 for every 2-D point p: their angles span less than pi."""
    angles = np.sort(np.arctan2(points[:, 1], points[:, 0]))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
    return bool(gaps.max() > np.pi)


@dataclass(frozen=True)
class Completion:
    W_star: np.ndarray  # (n, n) the low-rank ground truth
    rows: np.ndarray  # (observed,) indices of the observed entries
    cols: np.ndarray


def matrix_completion(problem: MatrixCompletion, seed: int) -> Completion:
    """W* = U V^T with U, V ~ N(0, 1)^{n x r}, scaled to ||W*||_F = n; entries observed uniformly without replacement."""
    if problem.observed > problem.n**2:
        raise ValueError(f"problem.observed: at most n^2 = {problem.n**2} entries exist, asked for {problem.observed}")
    rng = np.random.default_rng(problem_seed(problem, seed))
    U, V = rng.standard_normal((problem.n, problem.rank)), rng.standard_normal((problem.n, problem.rank))
    W = U @ V.T
    W *= problem.n / np.linalg.norm(W)
    flat = rng.choice(problem.n**2, size=problem.observed, replace=False)
    return Completion(W, flat // problem.n, flat % problem.n)


@dataclass(frozen=True)
class TabularData:
    x_train: np.ndarray  # (n_train, n_features + uninformative)
    y_train: np.ndarray  # (n_train,) in {0, 1}
    x_test: np.ndarray  # (n_test, n_features + uninformative)
    y_test: np.ndarray  # (n_test,)
    rotation: np.ndarray | None  # (features, features) orthogonal Q applied as x -> x Q^T, or None


def checkerboard_labels(x: np.ndarray, cells: int) -> np.ndarray:
    """(floor(cells (x_0 + 1) / 2) + floor(cells (x_1 + 1) / 2)) mod 2 for x in [-1, 1]: (n, d) -> (n,) in {0, 1}."""
    index = np.clip(np.floor(cells * (x[:, :2] + 1.0) / 2.0), 0, cells - 1).astype(np.int64)  # (n, 2) cell per axis
    return index.sum(axis=1) % 2


def smooth_labels(x: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1[u.x + sin(pi v.x) > 0]: a smooth, oblique boundary over every feature. (n, d) -> (n,)."""
    return (x @ u + np.sin(np.pi * (x @ v)) > 0).astype(np.int64)


def haar_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed d x d orthogonal matrix: QR of a Gaussian matrix with R's diagonal signs moved into Q."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))[None, :]


def tabular(problem: Tabular, seed: int) -> TabularData:
    """Train and test sets of one synthetic tabular task (see `Tabular`); every draw comes from `seed`."""
    rng = np.random.default_rng(problem_seed(problem, seed))
    d = problem.n_features
    n = problem.n_train + problem.n_test
    x = rng.uniform(-1.0, 1.0, (n, d))
    if problem.target == "checkerboard":
        y = checkerboard_labels(x, problem.cells)
    else:
        u, v = (w / np.linalg.norm(w) for w in rng.standard_normal((2, d)))
        y = smooth_labels(x, u, v)
    x = np.concatenate([x, rng.uniform(-1.0, 1.0, (n, problem.uninformative))], axis=1)
    rotation = None
    if problem.rotation == "random":
        rotation = haar_orthogonal(x.shape[1], rng)
        x = x @ rotation.T
    k = problem.n_train
    return TabularData(x[:k], y[:k], x[k:], y[k:], rotation)


def polynomial_target(problem: Polynomial, x: np.ndarray) -> np.ndarray:
    """The noiseless target f(x) of a `Polynomial` problem."""
    if problem.target == "simple":
        return x**3 - 0.5 * x
    return np.abs(x) + 0.5 * np.sin(3.0 * np.pi * x)


def polynomial_data(problem: Polynomial, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n training points: x ~ U[-1, 1], y = f(x) + noise * N(0, 1). -> x (n,), y (n,)."""
    rng = np.random.default_rng(problem_seed(problem, seed))
    x = rng.uniform(-1.0, 1.0, problem.n)
    return x, polynomial_target(problem, x) + problem.noise * rng.standard_normal(problem.n)
