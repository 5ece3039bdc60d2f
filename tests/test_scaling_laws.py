"""scaling-laws: the exact excess loss against test sampling, the slope claim on made-up records, bad specs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biaslab.experiments import CATALOG
from biaslab.experiments.scaling_laws import NAME, excess_loss, fitted_slopes, spectrum
from biaslab.spec import EstimatorSpec, PowerLawFeatures, RunSpec, SpecError, with_values
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


def test_the_spectrum_is_the_stated_power_law():
    lam = spectrum(PowerLawFeatures(latent=5, alpha=0.5))
    assert np.allclose(lam, [1.0, 2**-1.5, 3**-1.5, 4**-1.5, 5**-1.5])


@pytest.mark.parametrize("n_features", [60, 15])  # all features (min-norm), random projections
def test_the_exact_excess_loss_matches_the_error_on_fresh_test_points(n_features):
    problem = PowerLawFeatures(n=20, latent=60, alpha=1.0)
    exact = excess_loss(problem, n_features, 0.0, np.random.default_rng(5))
    # replay the same draws independently: beta, X, (P), then the fit by pinv; test on fresh points
    rng = np.random.default_rng(5)
    lam = np.arange(1, 61) ** -2.0
    beta = rng.standard_normal(60)
    X = rng.standard_normal((20, 60)) * np.sqrt(lam)
    y = X @ beta + 0.0 * rng.standard_normal(20)
    if n_features == 60:
        beta_hat = np.linalg.pinv(X) @ y
    else:
        P = rng.standard_normal((n_features, 60)) / math.sqrt(60)
        beta_hat = P.T @ (np.linalg.pinv(X @ P.T) @ y)
    X_test = np.random.default_rng(9).standard_normal((200_000, 60)) * np.sqrt(lam)
    sampled = float(np.mean((X_test @ (beta - beta_hat)) ** 2))
    assert exact == pytest.approx(sampled, rel=0.02)


def test_with_more_examples_than_dimensions_and_no_noise_the_teacher_is_recovered():
    assert excess_loss(PowerLawFeatures(n=50, latent=20, alpha=1.0), 20, 0.0, np.random.default_rng(0)) < 1e-20


# ---------------------------------------------------------------- the claim on made-up records


def _records(exponent: float, spread: float = 0.03, seeds=(0, 1, 2, 3)) -> list[RunRecord]:
    wiggle = np.random.default_rng(0).standard_normal((len(seeds) // 2 + 1, 4))  # seeds in pairs with opposite wiggles:
    records = []  # the seed-mean slope is exactly the exponent, and the seeds still spread
    for axis, sizes in (("train_size", (10, 20, 40, 80)), ("model_size", (4, 8, 16, 32))):
        for seed in seeds:
            for i, size in enumerate(sizes):
                problem = PowerLawFeatures(alpha=1.0, latent=1000, n=size if axis == "train_size" else 500)
                est = EstimatorSpec(kind="min_norm", n_features=1000 if axis == "train_size" else size, axis=axis)
                spec = RunSpec(experiment=NAME, problem=problem, estimator=est, seed=seed)
                loss = 3.0 * size**-exponent * math.exp((-1) ** seed * spread * wiggle[seed // 2, i])
                records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"test_loss": loss, "size": float(size)}))
    return records


def test_claim_passes_when_the_loss_falls_with_the_predicted_exponent():
    verdict = experiment.claim(_records(1.0))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["train_size_slope"] == pytest.approx(-1.0, abs=0.05)


def test_claim_fails_when_the_exponent_is_off():
    verdict = experiment.claim(_records(0.6))
    assert not verdict.passed and "predicted -1" in verdict.reason


def test_claim_fails_with_one_seed_as_there_is_no_interval():
    verdict = experiment.claim(_records(1.0, seeds=(0,)))
    assert not verdict.passed


def test_fitted_slopes_are_per_seed_least_squares():
    import pandas as pd

    frame = pd.DataFrame({"seed": [0, 0, 0], "size": [1.0, 10.0, 100.0], "test_loss": [1.0, 0.1, 0.01]})
    assert fitted_slopes(frame)[0] == pytest.approx(-1.0)


# ---------------------------------------------------------------- bad input


def test_bad_fields_name_the_field():
    spec = RunSpec(experiment=NAME, problem=PowerLawFeatures(), estimator=EstimatorSpec(kind="min_norm", n_features=1000, axis="train_size"))
    with pytest.raises(SpecError, match=r"problem\.power_law_features\.alpha: .*greater than 0"):
        with_values(spec, {"problem.alpha": 0.0})
    with pytest.raises(SpecError, match=r"estimator\.axis: .*'model_size' or 'train_size'"):
        with_values(spec, {"estimator.axis": "width"})
    with pytest.raises(SpecError, match="estimator.n_features: at most problem.latent"):
        experiment.check(with_values(spec, {"estimator.n_features": 2000}))
    with pytest.raises(SpecError, match="estimator.kind"):
        experiment.check(with_values(spec, {"estimator.kind": "random_features"}))
