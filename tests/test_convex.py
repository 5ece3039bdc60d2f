"""Convex references on cases whose answer is known in closed form, and the problem generators."""

from __future__ import annotations

import numpy as np
import pytest

from biaslab.convex import SolverFailed, basis_pursuit, effective_rank, hard_margin_svm, min_norm_interpolant, min_nuclear_norm_completion
from biaslab.data.problems import _in_open_half_plane, least_squares, matrix_completion, separable, sparse_regression
from biaslab.spec import LeastSquares, MatrixCompletion, Separable, SparseRegression


def test_min_norm_interpolant_is_the_pseudo_inverse_and_nearest_to_w0():
    A = np.array([[1.0, 1.0, 0.0]])
    b = np.array([2.0])
    np.testing.assert_allclose(min_norm_interpolant(A, b), [1.0, 1.0, 0.0])  # by symmetry
    w0 = np.array([0.0, 0.0, 5.0])  # the third coordinate is free: it stays where it starts
    np.testing.assert_allclose(min_norm_interpolant(A, b, w0), [1.0, 1.0, 5.0])


def test_hard_margin_svm_on_soudrys_support_vectors():
    X = np.array([[0.5, 1.5], [1.5, 0.5], [-0.5, -1.5], [-1.5, -0.5], [2.0, 2.0], [-3.0, -1.0]])
    y = np.array([1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    np.testing.assert_allclose(hard_margin_svm(X, y), [0.5, 0.5], atol=1e-6)  # w.x = 1 on both support vectors


def test_hard_margin_svm_refuses_inseparable_data():
    X = np.array([[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(SolverFailed):
        hard_margin_svm(X, np.array([1.0, -1.0]))


def test_basis_pursuit_recovers_a_sparse_vector_and_beats_l2_in_l1_norm():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 60))
    w = np.zeros(60)
    w[[3, 17, 42]] = [1.0, -2.0, 0.5]
    solution = basis_pursuit(A, A @ w)
    np.testing.assert_allclose(solution, w, atol=1e-6)
    assert np.abs(solution).sum() < np.abs(min_norm_interpolant(A, A @ w)).sum()


def test_basis_pursuit_of_a_single_equation_puts_all_weight_on_the_largest_coefficient():
    # min |w|_1 s.t. 1 w1 + 3 w2 = 6 -> w = (0, 2)
    np.testing.assert_allclose(basis_pursuit(np.array([[1.0, 3.0]]), np.array([6.0])), [0.0, 2.0], atol=1e-7)


def test_nuclear_norm_completion_of_a_fully_observed_matrix_is_the_matrix():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 2)) @ rng.standard_normal((2, 5))
    rows, cols = np.divmod(np.arange(25), 5)
    np.testing.assert_allclose(min_nuclear_norm_completion((5, 5), rows, cols, W[rows, cols]), W, atol=1e-6)


def test_nuclear_norm_completion_of_a_rank_one_matrix_with_one_entry_missing():
    # ones(3, 3) with (2, 2) hidden: the rank-one completion (value 1) has the least nuclear norm
    rows, cols = np.divmod(np.arange(9), 3)
    keep = (rows != 2) | (cols != 2)
    completed = min_nuclear_norm_completion((3, 3), rows[keep], cols[keep], np.ones(int(keep.sum())))
    assert completed[2, 2] == pytest.approx(1.0, abs=1e-5)


def test_effective_rank():
    assert effective_rank(np.diag([3.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert effective_rank(np.eye(4)) == pytest.approx(4.0)
    assert 1.0 < effective_rank(np.diag([1.0, 0.1])) < 2.0


def test_problem_generators_are_deterministic_and_planted():
    a, b = least_squares(LeastSquares(n=5, d=9, init_norm=2.0), 3), least_squares(LeastSquares(n=5, d=9, init_norm=2.0), 3)
    np.testing.assert_array_equal(a.A, b.A)
    np.testing.assert_allclose(a.A @ a.w_star, a.b)
    assert np.linalg.norm(a.w0) == pytest.approx(2.0)
    sparse = sparse_regression(SparseRegression(n=10, d=30, sparsity=4), 0)
    assert np.count_nonzero(sparse.w_star) == 4
    completion = matrix_completion(MatrixCompletion(n=10, rank=2, observed=40), 0)
    assert np.linalg.matrix_rank(completion.W_star) == 2 and np.linalg.norm(completion.W_star) == pytest.approx(10.0)
    assert len(set(zip(completion.rows, completion.cols))) == 40


@pytest.mark.parametrize("points", ["soudry", "gaussian"])
def test_separable_data_is_separable_through_the_origin(points):
    data = separable(Separable(points=points, n_points=40), 0)
    assert _in_open_half_plane(data.X * data.y[:, None])
    w = hard_margin_svm(data.X, data.y)
    assert (data.y * (data.X @ w)).min() == pytest.approx(1.0, abs=1e-6)


def test_soudry_data_has_the_published_max_margin_separator():
    data = separable(Separable(points="soudry", n_points=16), 0)
    np.testing.assert_allclose(hard_margin_svm(data.X, data.y), [0.5, 0.5], atol=1e-6)


def test_too_many_observations_is_a_clear_error():
    with pytest.raises(ValueError, match="problem.observed"):
        matrix_completion(MatrixCompletion(n=3, observed=10), 0)


def test_large_nuclear_norm_problems_go_to_scs_which_agrees_with_clarabel():
    """SCS (first order) replaces Clarabel above 30 x 30, where the interior-point KKT system needs gigabytes."""
    from biaslab.convex import nuclear_norm_solver

    assert nuclear_norm_solver((30, 30)) == "CLARABEL" and nuclear_norm_solver((31, 30)) == "SCS"
    g = np.random.default_rng(0)
    W = g.standard_normal((20, 2)) @ g.standard_normal((2, 20))
    index = g.choice(400, 150, replace=False)
    rows, cols = index // 20, index % 20
    exact = min_nuclear_norm_completion((20, 20), rows, cols, W[rows, cols], solver="CLARABEL")
    first_order = min_nuclear_norm_completion((20, 20), rows, cols, W[rows, cols], solver="SCS")
    assert np.linalg.norm(first_order - exact) / np.linalg.norm(exact) < 1e-4
    assert np.abs(first_order[rows, cols] - W[rows, cols]).max() < 1e-5
