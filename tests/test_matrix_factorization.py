"""matrix-factorization against computations that do not go through its code: the minimum-nuclear-norm reference
against an independently posed and solved convex program (the semidefinite primal and the spectral-norm dual, by SCS
rather than Clarabel), depth-1 GD against its closed-form limit, and the problem draw (problem.seed) apart from the
init draw (seed)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from biaslab.data.problems import Completion, matrix_completion
from biaslab.experiments.matrix_factorization import NAME, run
from biaslab.spec import MatrixCompletion, ModelSpec, RunSpec, TrainSpec

PROBLEM = MatrixCompletion(n=8, rank=1, observed=30)  # the tiny preset's instance size
SCS = {"solver": "SCS", "eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}


def _spec(problem: MatrixCompletion = PROBLEM, depth: int = 1, init_scale: float = 1e-8, lr: float = 10.0, steps: int = 200, seed: int = 0) -> RunSpec:
    """A short full-batch GD run; at depth 1 lr 10 shrinks each observed residual by 1 - 10/30 per step."""
    train = TrainSpec(optimizer="gd", lr=lr, batch_size=None, max_steps=steps, eval_every=steps)
    return RunSpec(experiment=NAME, problem=problem, model=ModelSpec(depth=depth, init_scale=init_scale), train=train, dtype="float64", seed=seed)


def _observed(c: Completion) -> np.ndarray:
    """P_Omega(W*): the observed entries, zero elsewhere. (n, n)"""
    P = np.zeros_like(c.W_star)
    P[c.rows, c.cols] = c.W_star[c.rows, c.cols]
    return P


def _dual_nuclear_minimum(c: Completion) -> float:
    """min ||W||_* s.t. W_Omega = M_Omega, from its dual: max <Y, P_Omega(M)> s.t. ||Y||_2 <= 1, Y zero off Omega.

    The nuclear and spectral norms are dual, so every feasible Y bounds every completion from below (weak duality),
    and the bound is tight at the optimum (strong duality holds: the primal is feasible and the dual strictly so).
    """
    mask = np.zeros_like(c.W_star)
    mask[c.rows, c.cols] = 1.0
    Y = cp.Variable(c.W_star.shape)
    problem = cp.Problem(cp.Maximize(cp.sum(cp.multiply(Y, _observed(c)))), [cp.sigma_max(Y) <= 1, cp.multiply(1.0 - mask, Y) == 0])
    problem.solve(**SCS)
    return float(problem.value)


def _sdp_completion(c: Completion) -> np.ndarray:
    """argmin ||W||_* s.t. W_Omega = M_Omega as the semidefinite program min (tr A + tr B) / 2 s.t. [[A, W], [W^T, B]] >= 0
    (Fazel's embedding; a different formulation from cvxpy's normNuc atom the runner uses)."""
    n = c.W_star.shape[0]
    W = cp.Variable((n, n))
    A, B = cp.Variable((n, n), symmetric=True), cp.Variable((n, n), symmetric=True)
    constraints = [cp.bmat([[A, W], [W.T, B]]) >> 0, W[c.rows, c.cols] == c.W_star[c.rows, c.cols]]
    cp.Problem(cp.Minimize((cp.trace(A) + cp.trace(B)) / 2), constraints).solve(**SCS)
    return np.asarray(W.value)


@pytest.fixture(scope="module")
def depth_one():
    """Depth-1 GD from a near-zero init on the tiny instance, and the instance."""
    return run(_spec()), matrix_completion(PROBLEM, 0)


@pytest.mark.slow
def test_the_nuclear_norm_reference_is_optimal_by_the_dual_and_matches_the_semidefinite_primal(depth_one):
    result, c = depth_one
    assert result.final["nuc_ref_nuclear_norm"] == pytest.approx(_dual_nuclear_minimum(c), rel=1e-6)
    W = _sdp_completion(c)
    truth = c.W_star
    assert np.linalg.svd(W, compute_uv=False).sum() == pytest.approx(result.final["nuc_ref_nuclear_norm"], rel=1e-6)
    assert result.final["nuc_ref_error"] == pytest.approx(np.linalg.norm(W - truth) / np.linalg.norm(truth), rel=1e-2, abs=1e-5)
    sigma = np.linalg.svd(W, compute_uv=False)
    p = sigma / sigma.sum()
    assert result.final["nuc_ref_effective_rank"] == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-3)
    # the truth is a feasible completion, so the minimum cannot exceed its nuclear norm
    assert result.final["nuc_ref_nuclear_norm"] <= np.linalg.svd(truth, compute_uv=False).sum() * (1 + 1e-9)


def test_depth_one_gd_from_a_near_zero_init_reaches_the_minimum_frobenius_norm_completion(depth_one):
    """The loss only sees the observed entries, so the unobserved ones keep their init values (about 1e-8 / sqrt(n)
    here) and the observed ones converge to the data: the limit is P_Omega(W*), the minimum-Frobenius-norm completion,
    whose error against W* is ||P_Omega^c(W*)|| / ||W*|| and whose singular values are those of P_Omega(W*)."""
    result, c = depth_one
    closed_form = _observed(c)
    sigma = np.linalg.svd(closed_form, compute_uv=False)
    assert result.final["loss"] < 1e-25
    assert result.final["error"] == pytest.approx(np.linalg.norm(c.W_star - closed_form) / np.linalg.norm(c.W_star), rel=1e-6)
    assert result.final["nuclear_norm"] == pytest.approx(sigma.sum(), rel=1e-6)
    assert [result.final[f"sv_{i + 1}"] for i in range(5)] == pytest.approx(sigma[:5].tolist(), rel=1e-6)
    assert result.final["nuclear_norm"] > result.final["nuc_ref_nuclear_norm"]  # zero-filling is not the nuclear-norm minimum


def test_problem_seed_fixes_the_matrix_and_the_observed_entries_while_seed_varies_the_init():
    fixed = PROBLEM.model_copy(update={"seed": 5})
    a, b = matrix_completion(fixed, 0), matrix_completion(fixed, 1)
    assert np.array_equal(a.W_star, b.W_star) and np.array_equal(a.rows, b.rows) and np.array_equal(a.cols, b.cols)
    first, second = (run(_spec(fixed, depth=2, init_scale=0.1, lr=0.5, steps=5, seed=s)) for s in (0, 1))
    assert first.final["nuc_ref_nuclear_norm"] == second.final["nuc_ref_nuclear_norm"]  # one instance, one reference
    assert first.history[0]["nuclear_norm"] != second.history[0]["nuclear_norm"]  # two inits
    other = matrix_completion(PROBLEM.model_copy(update={"seed": 6}), 0)
    assert not np.array_equal(other.W_star, a.W_star)


def test_without_problem_seed_the_runs_seed_draws_the_instance_as_before():
    """problem.seed None is problem.seed = seed: the same instance and the same init, so the same numbers."""
    for seed in (0, 3):
        implicit = run(_spec(depth=2, init_scale=0.1, lr=0.5, steps=20, seed=seed))
        explicit = run(_spec(PROBLEM.model_copy(update={"seed": seed}), depth=2, init_scale=0.1, lr=0.5, steps=20, seed=seed))
        assert implicit.history == explicit.history and implicit.final == explicit.final
    assert RunSpec(problem=MatrixCompletion()).spec_id == RunSpec(problem={"kind": "matrix_completion", "seed": None}).spec_id


def test_recovery_over_init_draws_counts_each_fixed_instance_and_depth_apart():
    import pandas as pd

    from biaslab.experiments.matrix_factorization import RECOVERED, init_draw_recovery

    fixed = pd.DataFrame(  # instance 0: depth 3 recovers on 2 of 3 draws, depth 2 on none; instance 1: depth 3 on all
        {
            "problem.seed": [0] * 6 + [1] * 2,
            "model.depth": [2, 2, 2, 3, 3, 3, 3, 2],
            "error": [0.5, 0.4, 0.6, 0.01, RECOVERED * 2, 0.02, 0.03, 0.3],
        }
    )
    numbers, (note,) = init_draw_recovery(fixed)
    assert numbers == {
        "init_draws_recovered_depth2_instance0": 0.0,
        "init_draws_recovered_depth3_instance0": 2 / 3,
        "init_draws_recovered_depth2_instance1": 0.0,
        "init_draws_recovered_depth3_instance1": 1.0,
    }
    assert "instance 0: depth 2 0 of 3, depth 3 2 of 3; instance 1: depth 2 0 of 1, depth 3 1 of 1" in note
    assert init_draw_recovery(fixed.iloc[:0]) == ({}, ())


def test_the_fixed_instance_study_holds_the_matrix_and_varies_only_the_init():
    from biaslab.experiments import CATALOG

    specs = CATALOG.get("matrix-factorization").sweep("quick").expand()
    fixed = [s for s in specs if s.problem.seed is not None]
    assert {(s.problem.seed, s.model.depth) for s in fixed} == {(k, d) for k in range(4) for d in (2, 3)}
    assert {s.seed for s in fixed} == {100, 101, 102} and {s.model.init_scale for s in fixed} == {1e-3}
    assert len(specs) - len(fixed) == 36  # the main grid is unchanged: 3 depths x 3 scales x 4 seeds


def test_with_the_instance_fixed_for_the_whole_sweep_every_run_is_the_main_grid():
    from biaslab.experiments import CATALOG
    from biaslab.experiments.matrix_factorization import _studies
    from biaslab.store import RunRecord

    specs = CATALOG.get("matrix-factorization").sweep("tiny").override({"problem.seed": 0}).expand()
    assert {s.problem.seed for s in specs} == {0}
    records = [RunRecord(spec=s.model_dump(mode="json"), spec_id=s.spec_id, status="ok", final={"error": 0.5}) for s in specs]
    main, fixed = _studies(records)
    assert len(main) == len(specs) and len(fixed) == len(specs)  # the seeds are init draws on instance 0 in both
    default = [RunRecord(spec=s.model_dump(mode="json"), spec_id=s.spec_id, status="ok", final={"error": 0.5}) for s in CATALOG.get("matrix-factorization").sweep("tiny").expand()]
    main, fixed = _studies(default)
    assert main["problem.seed"].isna().all() and fixed["problem.seed"].notna().all() and len(main) + len(fixed) == len(default)
