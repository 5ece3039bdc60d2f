"""soft-inductive-bias: the order-penalized fit against a closed form, the data, the claim on made-up records, bad specs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biaslab.data.problems import polynomial_data, polynomial_target
from biaslab.estimators import PolynomialRegressor, make_estimator, order_weights
from biaslab.experiments import CATALOG, run_spec
from biaslab.experiments.soft_inductive_bias import MODELS, NAME, VARIANTS, model_name
from biaslab.spec import EstimatorSpec, ModelSpec, Polynomial, RunSpec, SpecError, TrainSpec, with_values
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


def _legendre(x: np.ndarray, degree: int) -> np.ndarray:
    """P_0..P_degree by Bonnet's recursion (k + 1) P_{k+1} = (2k + 1) x P_k - k P_{k-1}; independent of numpy.polynomial."""
    columns = [np.ones_like(x), x]
    for k in range(1, degree):
        columns.append(((2 * k + 1) * x * columns[k] - k * columns[k - 1]) / (k + 1))
    return np.stack(columns[: degree + 1], axis=1)


@pytest.mark.parametrize("penalty, weight", [("none", lambda k: 1.0), ("quadratic", lambda k: (k + 1.0) ** 2), ("exponential", lambda k: math.exp(k))])
@pytest.mark.parametrize("n", [6, 40])  # fewer and more points than coefficients
def test_the_penalized_fit_is_the_closed_form_weighted_ridge(penalty, weight, n):
    rng = np.random.default_rng(n)
    x, y, degree, ridge = rng.uniform(-1, 1, n), rng.standard_normal(n), 12, 0.03
    Phi = _legendre(x, degree)
    W = np.diag([weight(k) for k in range(degree + 1)])
    expected = np.linalg.solve(Phi.T @ Phi + ridge * W, Phi.T @ y)  # normal equations of ||y - Phi c||^2 + ridge c^T W c
    fitted = PolynomialRegressor(degree, ridge, penalty).fit(x[:, None], y)
    assert np.allclose(fitted.coef_, expected, rtol=1e-7, atol=1e-9)
    assert np.allclose(fitted.predict(x[:, None]), Phi @ expected, atol=1e-8)


def test_without_penalty_the_high_order_fit_is_the_minimum_norm_interpolant():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, 8), rng.standard_normal(8)
    fitted = PolynomialRegressor(20, 0.0).fit(x[:, None], y)
    Phi = _legendre(x, 20)
    assert np.allclose(Phi @ fitted.coef_, y, atol=1e-8)  # interpolates
    assert np.allclose(fitted.coef_, np.linalg.pinv(Phi) @ y, atol=1e-8)  # the least-norm coefficients


def test_order_weights_and_make_estimator():
    assert order_weights(3, "quadratic").tolist() == [1.0, 4.0, 9.0, 16.0]
    assert np.allclose(order_weights(2, "exponential"), [1.0, math.e, math.e**2])
    est = make_estimator(EstimatorSpec(kind="polynomial", degree=7, ridge=0.5, order_penalty="quadratic"), ModelSpec(), TrainSpec(), 0)
    assert isinstance(est, PolynomialRegressor) and (est.degree, est.ridge, est.order_penalty) == (7, 0.5, "quadratic")


def test_the_targets_and_the_data():
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert np.allclose(polynomial_target(Polynomial(target="simple"), x), x**3 - x / 2)
    assert np.allclose(polynomial_target(Polynomial(target="complex"), x), np.abs(x) + 0.5 * np.sin(3 * np.pi * x))
    problem = Polynomial(n=500, noise=0.2)
    xs, ys = polynomial_data(problem, 3)
    assert xs.min() >= -1 and xs.max() <= 1 and abs(np.std(ys - polynomial_target(problem, xs)) - 0.2) < 0.03
    assert np.array_equal(polynomial_data(problem, 3)[1], ys)


def test_one_run_measures_the_error_to_the_target():
    spec = RunSpec(experiment=NAME, problem=Polynomial(n=30, noise=0.0), estimator=EstimatorSpec(kind="polynomial", degree=3), dtype="float64")
    record = run_spec(spec)
    assert record.status == "ok" and record.final["test_mse"] < 1e-20  # noiseless cubic fitted exactly by a cubic
    assert len(record.arrays["fit"]) == 200


def test_model_names():
    assert [model_name(m) for m in MODELS.values()] == list(MODELS)
    assert [model_name(m) for m in VARIANTS.values()] == list(VARIANTS)


def test_the_variant_is_noted_but_never_changes_the_verdict():
    bad_variant = {(t, "soft bias, exponential prior"): [9.0, 9.0, 9.0] for t in ("simple", "complex")}
    records = _records(GOOD) + [r for r in _variant_records(bad_variant)]
    verdict = experiment.claim(records)
    assert verdict.passed and any("exponential prior (not in the verdict)" in note for note in verdict.notes)


def _variant_records(errors, sizes=(10, 30, 100)):
    out = []
    for (target, model), values in errors.items():
        for n, value in zip(sizes, values):
            spec = RunSpec(experiment=NAME, problem=Polynomial(target=target, n=n), estimator=VARIANTS[model])
            out.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"test_mse": value}))
    return out


# ---------------------------------------------------------------- the claim on made-up records


def _records(errors: dict[tuple[str, str], list[float]], sizes=(10, 30, 100)) -> list[RunRecord]:
    records = []
    for (target, model), values in errors.items():
        for n, value in zip(sizes, values):
            for seed in (0, 1):
                spec = RunSpec(experiment=NAME, problem=Polynomial(target=target, n=n), estimator=MODELS[model], seed=seed)
                records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"test_mse": value * (1 + 0.01 * seed)}))
    return records


GOOD = {
    ("simple", "low order"): [0.010, 0.003, 0.001], ("simple", "high order"): [1.0, 5.0, 2.0], ("simple", "soft bias"): [0.015, 0.005, 0.0015],
    ("complex", "low order"): [0.3, 0.12, 0.11], ("complex", "high order"): [0.8, 9.0, 3.0], ("complex", "soft bias"): [0.12, 0.03, 0.005],
}


def test_claim_passes_when_the_soft_model_is_near_the_best_on_both_targets():
    verdict = experiment.claim(_records(GOOD))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["simple_soft_over_best_worst"] == pytest.approx(5 / 3)


def test_claim_fails_when_the_soft_model_is_far_from_the_best_at_one_size():
    verdict = experiment.claim(_records(GOOD | {("simple", "soft bias"): [0.015, 0.005, 0.0025]}))
    assert not verdict.passed and "simple: soft / best other at most 2.50" in verdict.reason


def test_claim_fails_when_the_low_order_model_never_fails():
    verdict = experiment.claim(_records(GOOD | {("complex", "low order"): [0.12, 0.03, 0.005]}))
    assert not verdict.passed and "low order fails" in verdict.reason and "no target" in verdict.reason


def test_claim_fails_with_a_model_missing():
    verdict = experiment.claim(_records({k: v for k, v in GOOD.items() if k[1] != "high order"}))
    assert not verdict.passed and "high order" in verdict.reason


# ---------------------------------------------------------------- bad input


def test_bad_polynomial_fields_name_the_field_and_the_allowed_values():
    spec = RunSpec(experiment=NAME, problem=Polynomial(), estimator=EstimatorSpec(kind="polynomial"))
    with pytest.raises(SpecError, match=r"estimator\.order_penalty: .*'none', 'quadratic' or 'exponential'"):
        with_values(spec, {"estimator.order_penalty": "cubic"})
    with pytest.raises(SpecError, match=r"estimator\.degree: .*greater than or equal to 0"):
        with_values(spec, {"estimator.degree": -1})
    with pytest.raises(SpecError, match=r"problem\.polynomial\.target: .*'simple' or 'complex'"):
        with_values(spec, {"problem.target": "wiggly"})
    with pytest.raises(SpecError, match="order_penalty: only estimator.kind 'polynomial'"):
        with_values(RunSpec(estimator=EstimatorSpec(kind="min_norm")), {"estimator.order_penalty": "quadratic"})


def test_the_experiment_refuses_other_estimators():
    with pytest.raises(SpecError, match="estimator.kind"):
        experiment.check(RunSpec(experiment=NAME, problem=Polynomial(), estimator=EstimatorSpec(kind="kernel_ridge")))
    with pytest.raises(SpecError, match="problem.kind"):
        experiment.check(RunSpec(experiment=NAME, estimator=EstimatorSpec(kind="polynomial")))
