"""benign-overfitting: the exact excess risk against closed forms and a Monte Carlo over label noise; the claim at tiny."""

from __future__ import annotations

import numpy as np
import pytest

from biaslab.experiments import CATALOG
from biaslab.experiments.benign_overfitting import FALLS_TO, effective_ranks, excess_risk, spectrum
from biaslab.spec import BenignRegression, LeastSquares, RunSpec, SpecError
from biaslab.store import Store
from biaslab.sweep import run_sweep


def test_isotropic_risk_matches_the_closed_form():
    """Sigma = I, p > n + 1: E bias = ||beta||^2 (1 - n/p), E variance = sigma^2 n / (p - n - 1) (Hastie et al. 2022)."""
    n, p, noise = 10, 40, 0.5
    rng = np.random.default_rng(0)
    beta = np.zeros(p)
    beta[:5] = 1 / np.sqrt(5)
    parts = np.array([excess_risk(np.ones(p), beta, noise, n, rng) for _ in range(3000)])
    bias, variance = parts.mean(axis=0)
    se = parts.std(axis=0, ddof=1) / np.sqrt(len(parts))
    assert abs(bias - (1 - n / p)) <= 4 * se[0]
    assert abs(variance - noise**2 * n / (p - n - 1)) <= 4 * se[1]


def test_the_exact_risk_given_x_equals_a_monte_carlo_over_label_noise():
    problem = BenignRegression(n=6, p_exponent=2.0, spikes=2, tail_exponent=1.0, noise=0.7)
    eigenvalues, beta = spectrum(problem)
    bias, variance = excess_risk(eigenvalues, beta, problem.noise, problem.n, np.random.default_rng(3))
    x = np.random.default_rng(3).standard_normal((problem.n, len(eigenvalues))) * np.sqrt(eigenvalues)  # the same X
    noise_rng = np.random.default_rng(4)
    risks = []
    for _ in range(4000):
        y = x @ beta + problem.noise * noise_rng.standard_normal(problem.n)
        error = np.linalg.pinv(x) @ y - beta
        risks.append(float(np.sum(eigenvalues * error**2)))
    risks = np.array(risks)
    assert abs(risks.mean() - (bias + variance)) <= 4 * risks.std(ddof=1) / np.sqrt(len(risks))


def test_effective_ranks_by_hand():
    # lambda = (1, 1, 0.1 x 8), n = 2, b = 1: r_0 = 2.8 >= 2 so k* = 0; R_0 = 2.8^2 / (2 + 0.08) = 3.769...
    ranks = effective_ranks(np.array([1.0, 1.0] + [0.1] * 8), n=2)
    assert ranks["k_star"] == 0 and ranks["r_0"] == pytest.approx(2.8) and ranks["R_k_star"] == pytest.approx(2.8**2 / 2.08)
    # n = 20: r_0 = 2.8, r_1 = 1.8, r_2 = 8 (0.8 / 0.1) ... never >= 20: k* = p, no R
    assert effective_ranks(np.array([1.0, 1.0] + [0.1] * 8), n=20)["k_star"] == 10


def test_tiny_runs_and_fails_only_for_the_reason_it_states(tmp_path):
    experiment = CATALOG.get("benign-overfitting")
    records = run_sweep(experiment.sweep("tiny"), Store(tmp_path), "tiny", executor="inprocess").records
    assert all(r.status == "ok" for r in records) and len(records) == 6
    verdict = experiment.claim(records)
    # at n <= 32 the spiked risk falls (Spearman -1) but only to 0.29 of its start: the tail is not yet heavy enough
    assert verdict.numbers["spiked_spearman_n"] == -1.0 and verdict.numbers["isotropic_ratio"] >= 0.5
    assert not verdict.passed and verdict.numbers["spiked_ratio"] >= FALLS_TO
    assert set(experiment.figures(records)) == {"risk"}


def test_other_problems_and_estimators_are_refused():
    experiment = CATALOG.get("benign-overfitting")
    with pytest.raises(SpecError, match="problem.kind"):
        experiment.check(RunSpec(experiment="benign-overfitting", problem=LeastSquares()))
    with pytest.raises(SpecError, match="probes"):
        experiment.check(RunSpec(experiment="benign-overfitting", problem=BenignRegression(), probes=("norms",)))
