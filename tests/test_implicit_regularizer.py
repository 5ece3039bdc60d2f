"""estimate-implicit-regularizer: gradient matching against closed forms (early stopping in the eigenbasis, ridge,
Wager's dropout penalty by Monte Carlo), the claim on made-up records, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biaslab.experiments import CATALOG
from biaslab.experiments.implicit_regularizer import (
    NAME,
    expected_dropout_penalty,
    match_penalty,
    regression,
    ridge_path,
    solution_lambda,
)
from biaslab.spec import ImplicitRegularizer, SpecError, with_values
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


def _spec(procedure: str, **fields):
    base = experiment.sweep("tiny").base
    return with_values(base, {"problem": ImplicitRegularizer(procedure=procedure, n=50, d=5, **fields).model_dump(mode="json")})


def test_match_penalty_recovers_an_exact_multiple_and_reports_no_fit_for_an_orthogonal_penalty():
    r = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    exact = match_penalty(-0.7 * r, r)
    assert exact.coefficient == pytest.approx(0.7) and exact.r_squared == pytest.approx(1.0)
    none = match_penalty(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64))
    assert none.coefficient == pytest.approx(0.0) and none.r_squared == pytest.approx(0.0)


def test_ridge_path_and_solution_lambda_against_a_direct_solve():
    X, y = regression(ImplicitRegularizer(n=40, d=6), seed=0)
    lam = 0.37
    direct = torch.linalg.solve(X.T @ X / 40 + lam * torch.eye(6, dtype=X.dtype), X.T @ y / 40)
    assert torch.allclose(ridge_path(X, y)(lam), direct, rtol=1e-10)
    assert solution_lambda(X, y, direct) == pytest.approx(lam, rel=1e-4)


def test_early_stopping_lambda_matches_the_closed_form_in_the_eigenbasis():
    """GD from 0 at step t is V diag(1 - (1 - eta s)^t) c (c the least-squares solution in the eigenbasis); the matched
    lambda is sum s (1-eta s)^t (1-(1-eta s)^t) c^2 / sum (1-(1-eta s)^t)^2 c^2, computed here without the runner."""
    record = experiment.run(_spec("early_stopping"))
    assert record.status == "ok"
    X, y = regression(ImplicitRegularizer(n=50, d=5), seed=0)
    s, V = np.linalg.eigh((X.T @ X / 50).numpy())
    c = V.T @ np.linalg.solve((X.T @ X).numpy(), (X.T @ y).numpy())
    eta = record.final["eta"]
    for step, measured, known in zip(record.curves["step"][1:], record.curves["lambda_grad"][1:], record.curves["lambda_known"][1:]):
        kept = 1.0 - (1.0 - eta * s) ** step
        closed = np.sum(s * (1 - kept) * kept * c**2) / np.sum(kept**2 * c**2)
        assert measured == pytest.approx(closed, rel=1e-6, abs=1e-12)
        assert known == pytest.approx(1.0 / (eta * step))
    u = np.asarray(record.curves["u_max"][1:])
    ratio = np.asarray(record.curves["ratio"][1:])
    steps = np.asarray(record.curves["step"][1:])
    inside = u <= 0.25
    bound = 0.55 * u * (1.0 + 1.0 / steps)  # discrete GD: relative error (u + eta s_max) / 2 to first order
    assert inside.sum() >= 3 and np.all(np.abs(ratio[inside] - 1.0) <= bound[inside])


def test_expected_dropout_penalty_matches_a_monte_carlo_average():
    X, y = regression(ImplicitRegularizer(n=30, d=4), seed=1)
    w = torch.tensor([0.5, -1.0, 2.0, 0.3], dtype=torch.float64)
    p, g = 0.3, torch.Generator().manual_seed(0)
    masks = (torch.rand(20000, *X.shape, generator=g, dtype=X.dtype) >= p).to(X.dtype) / (1 - p)  # (draws, n, d)
    noisy = 0.5 * ((X * masks) @ w - y).square().mean(dim=1)  # (draws,)
    clean = 0.5 * (X @ w - y).square().mean()
    stderr = noisy.std() / np.sqrt(len(noisy))
    assert abs((noisy.mean() - clean) - expected_dropout_penalty(X, w, p)).item() < 4 * stderr.item()


def test_dropout_recovers_p_over_one_minus_p_and_the_expected_minimizer():
    record = experiment.run(with_values(_spec("dropout", dropout=0.5), {"train.max_steps": 20000}))  # a long chain: its mean is the estimate
    assert record.status == "ok"
    assert abs(record.final["rel_error"]) < 0.05 and record.final["dist_to_expected_minimizer"] < 0.02
    assert record.final["r_squared"] > record.final["r_squared_plain_l2"]


def _records(early_error: float, dropout_lambdas: dict[float, float], plain_better: bool = False) -> list[RunRecord]:
    records = []
    early = _spec("early_stopping")
    records.append(RunRecord(spec=early.model_dump(mode="json"), spec_id=early.spec_id, status="ok", final={
        "max_rel_error_in_regime": early_error, "evals_in_regime": 5.0, "ratio": 0.01, "r_squared": 0.1}))
    for p, lam in dropout_lambdas.items():
        spec = _spec("dropout", dropout=p)
        known = p / (1 - p)
        final = {"lambda_grad": lam, "lambda_known": known, "rel_error": lam / known - 1, "r_squared": 0.5 if plain_better else 0.99, "r_squared_plain_l2": 0.9, "median_rel_error_per_coordinate": 0.01}
        records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final))
    return records


def test_claim_passes_on_accurate_recoveries():
    verdict = experiment.claim(_records(0.08, {0.1: 0.112, 0.5: 0.98}))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["dropout_p0.5_known"] == pytest.approx(1.0)


def test_claim_fails_on_a_wrong_early_stopping_lambda_or_dropout_lambda_or_weighting():
    early = experiment.claim(_records(0.4, {0.1: 0.112}))
    assert not early.passed and "eta t s_max <= 0.25: 0.400 (needs <= 0.15)" in early.reason
    wrong = experiment.claim(_records(0.05, {0.1: 0.112, 0.5: 1.3}))
    assert not wrong.passed and wrong.numbers["dropout_max_rel_error"] == pytest.approx(1.3 / 1.0 - 1)
    assert f"against p/(1-p): {1.3 - 1:.3f} (needs <= 0.1)" in wrong.reason
    plain = experiment.claim(_records(0.05, {0.1: 0.112}, plain_better=True))
    assert not plain.passed and "weighted L2 fits better than plain L2 for every p: False" in plain.reason


def test_claim_needs_both_procedures():
    verdict = experiment.claim(_records(0.05, {})[:1])
    assert not verdict.passed and "needs" in verdict.reason


def test_bad_input_names_the_field_and_allowed_values():
    base = experiment.sweep("tiny").base
    with pytest.raises(SpecError, match="procedure.*early_stopping.*dropout.*mlp_early_stopping"):
        with_values(base, {"problem.procedure": "mixup"})
    with pytest.raises(SpecError, match="dropout.*less than 1"):
        with_values(base, {"problem.dropout": 1.0})
    with pytest.raises(SpecError, match="train.momentum"):
        experiment.check(with_values(base, {"train.momentum": 0.9}))
    with pytest.raises(SpecError, match="dtype"):
        experiment.check(with_values(base, {"dtype": "float32"}))
