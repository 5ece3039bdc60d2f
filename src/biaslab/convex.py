"""Convex references: the solutions that theory says gradient descent's implicit bias selects.

Users compare their own optimizer's solution against these, so they are part of
the library. Each is the exact optimum of a convex program, solved with cvxpy
(Clarabel; SCS for nuclear-norm problems too large for an interior-point
method) or in closed form, in float64 numpy.

- `min_norm_interpolant(A, b, w0)`: argmin ||w - w0||_2 subject to A w = b.
  Gradient descent on ||A w - b||^2 from w0 converges to it (the iterates never
  leave w0 + rowspace(A)).
- `hard_margin_svm(X, y)`: argmin ||w||_2 subject to y_i <w, x_i> >= 1 (no bias),
  the direction gradient descent on the logistic loss converges to on separable
  data (Soudry et al. 2018).
- `l1_max_margin(X, y)` and `linf_max_margin(X, y)`: argmin ||w||_1 (||w||_inf) subject to
  y_i <w, x_i> >= 1, two linear programs: the directions that coordinate descent (steepest descent for L1, as
  boosting) and sign descent (for L-infinity) converge to on separable data (Gunasekar et al. 2018).
- `basis_pursuit(A, b)`: argmin ||w||_1 subject to A w = b, the limit of
  diagonal linear networks from a vanishing init (Woodworth et al. 2020).
- `min_nuclear_norm_completion(shape, rows, cols, values)`: argmin ||W||_* subject
  to W[rows, cols] = values, Gunasekar et al. 2017's conjectured limit of
  factorized gradient descent from a vanishing init.
- `effective_rank(W)`: exp of the entropy of the normalized singular values
  (Roy & Vetterli 2007), as used by Arora et al. 2019.
"""

from __future__ import annotations

import numpy as np


class SolverFailed(RuntimeError):
    """The convex solver did not reach an optimal solution (infeasible, unbounded or inaccurate)."""


def _solve(problem, what: str, solver: str = "CLARABEL", **settings) -> None:
    import cvxpy as cp

    problem.solve(solver=solver, **settings)
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise SolverFailed(f"{what}: the solver ended with status {problem.status!r}")


def min_norm_interpolant(A: np.ndarray, b: np.ndarray, w0: np.ndarray | None = None) -> np.ndarray:
    """The interpolant of A w = b closest to w0 (default 0), by the pseudo-inverse."""
    w0 = np.zeros(A.shape[1]) if w0 is None else w0
    return w0 + np.linalg.pinv(A) @ (b - A @ w0)


def hard_margin_svm(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The max-margin separator through the origin, scaled so the closest points have margin 1."""
    import cvxpy as cp

    w = cp.Variable(X.shape[1])
    problem = cp.Problem(cp.Minimize(cp.sum_squares(w)), [cp.multiply(y, X @ w) >= 1])
    _solve(problem, "hard_margin_svm (is the data linearly separable through the origin?)")
    return np.asarray(w.value)


def _max_margin(X: np.ndarray, y: np.ndarray, norm: str) -> np.ndarray:
    """argmin ||w|| subject to y_i <w, x_i> >= 1 in float64, for norm 'l1' or 'linf'."""
    import cvxpy as cp

    w = cp.Variable(X.shape[1])
    size = cp.norm1(w) if norm == "l1" else cp.norm_inf(w)
    problem = cp.Problem(cp.Minimize(size), [cp.multiply(np.asarray(y, dtype=np.float64), np.asarray(X, dtype=np.float64) @ w) >= 1])
    _solve(problem, f"{norm}_max_margin (is the data linearly separable through the origin?)")
    return np.asarray(w.value)


def l1_max_margin(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The L1 max-margin separator through the origin (sparse, as boosting's), scaled so the closest points have margin 1."""
    return _max_margin(X, y, "l1")


def linf_max_margin(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The L-infinity max-margin separator through the origin, scaled so the closest points have margin 1."""
    return _max_margin(X, y, "linf")


def basis_pursuit(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The minimum-L1-norm solution of A w = b."""
    import cvxpy as cp

    w = cp.Variable(A.shape[1])
    problem = cp.Problem(cp.Minimize(cp.norm1(w)), [A @ w == b])
    _solve(problem, "basis_pursuit")
    return np.asarray(w.value)


INTERIOR_POINT_MAX_ENTRIES = 900  # up to 30 x 30: Clarabel (interior point, exact); above: SCS (first order)
SCS_SETTINGS = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}  # within 3e-5 (relative) of Clarabel up to 30 x 30 (tested)


def nuclear_norm_solver(shape: tuple[int, int]) -> str:
    """Clarabel for small matrices; SCS above INTERIOR_POINT_MAX_ENTRIES entries.

    Clarabel's interior-point method builds the semidefinite program's KKT system, whose
    memory grows like the fourth power of the side: at 100 x 100 it used more than 15 GB
    and was killed, while SCS solved the same completion in about 2 s within 400 MB.
    """
    return "CLARABEL" if shape[0] * shape[1] <= INTERIOR_POINT_MAX_ENTRIES else "SCS"


SOLVER_MEMORY = {  # (fixed bytes, bytes x side^power, power) for side = rows + cols of the semidefinite program's matrix
    "CLARABEL": (20e6, 15.0, 4),  # its KKT system grows like side^4 (measured n x n, n = 20..40: 60, 110, 200, 350, 585 MB)
    "SCS": (25e6, 1250.0, 2),  # first order: like the matrix itself (measured n = 30..200: 30, 37, 49, 73, 118, 218 MB)
}


def nuclear_norm_memory(shape: tuple[int, int], solver: str | None = None) -> int:
    """Bytes `min_nuclear_norm_completion` needs at its peak beyond an idle process (cvxpy's canonicalization and the
    solver), by the solver chosen for `shape` unless given; fitted within 10% to the measurements in SOLVER_MEMORY."""
    fixed, per_unit, power = SOLVER_MEMORY[solver or nuclear_norm_solver(shape)]
    return int(fixed + per_unit * (shape[0] + shape[1]) ** power)


def min_nuclear_norm_completion(
    shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, values: np.ndarray, solver: str | None = None
) -> np.ndarray:
    """The minimum-nuclear-norm matrix that agrees with the observed entries (solver chosen by size unless given)."""
    import cvxpy as cp

    W = cp.Variable(shape)
    problem = cp.Problem(cp.Minimize(cp.normNuc(W)), [W[rows, cols] == values])
    solver = solver or nuclear_norm_solver(shape)
    _solve(problem, "min_nuclear_norm_completion", solver, **(SCS_SETTINGS if solver == "SCS" else {}))
    return np.asarray(W.value)


def effective_rank(W: np.ndarray) -> float:
    """exp(entropy of sigma_i / sum sigma_j): between 1 (rank one) and min(shape) (flat spectrum)."""
    sigma = np.linalg.svd(W, compute_uv=False)
    p = sigma / sigma.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))
