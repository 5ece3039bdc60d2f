"""double-descent: the exact Gaussian risk against Monte Carlo, the claim on made-up records, specs and sweeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biaslab.experiments import CATALOG, run_spec
from biaslab.experiments.double_descent import (
    NAME,
    gaussian_risk,
    largest_rise,
    optimal_ridge,
    peak_at_threshold,
    signal_split,
)
from biaslab.spec import DataSpec, EstimatorSpec, GaussianFeatures, RunSpec, SpecError, canonical_json, with_values
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


# ---------------------------------------------------------------- the formula


def _monte_carlo(n: int, p: int, d: int, signal: float, noise: float, draws: int, seed: int = 0) -> tuple[float, float]:
    """Independent simulation: numpy's pinv, test risk on fresh test points (not the conditional-risk shortcut)."""
    rng = np.random.default_rng(seed)
    beta = np.full(d, signal / math.sqrt(d))
    risks = []
    for _ in range(draws):
        X = rng.standard_normal((n, d))
        y = X @ beta + noise * rng.standard_normal(n)
        w = np.linalg.pinv(X[:, :p]) @ y
        X_test = rng.standard_normal((200, d))
        y_test = X_test @ beta + noise * rng.standard_normal(200)
        risks.append(np.mean((y_test - X_test[:, :p] @ w) ** 2))
    return float(np.mean(risks)), float(np.std(risks, ddof=1) / math.sqrt(draws))


@pytest.mark.slow
@pytest.mark.parametrize("p", [4, 10, 32, 60])
def test_the_exact_risk_matches_an_independent_monte_carlo_away_from_the_threshold(p):
    n, d, signal, noise = 20, 60, 1.0, 0.5
    problem = GaussianFeatures(n=n, d=d, signal=signal, noise=noise)
    mean, se = _monte_carlo(n, p, d, signal, noise, draws=1500)
    assert abs(mean - gaussian_risk(n, p, *signal_split(problem, p))) <= 3.5 * se


def test_the_formula_is_hastie_et_al_all_features_risk_at_p_equal_d_and_infinite_at_the_threshold():
    n, p, r, sigma = 20, 50, 1.3, 0.4
    problem = GaussianFeatures(n=n, d=p, signal=r, noise=sigma)
    s_in, s_out = signal_split(problem, p)
    assert (s_in, s_out) == pytest.approx((r**2, sigma**2))
    excess = gaussian_risk(n, p, s_in, s_out) - sigma**2
    assert excess == pytest.approx(r**2 * (1 - n / p) + sigma**2 * n / (p - n - 1))
    assert gaussian_risk(n, 5, 0.0, 1.0) == pytest.approx((n - 1) / (n - 5 - 1))  # sigma^2 (1 + p/(n-p-1))
    assert all(math.isinf(gaussian_risk(n, q, s_in, s_out)) for q in (n - 1, n, n + 1))


def _gaussian_spec(p: int, n: int = 20, rule: str = "fixed", ridge: float = 0.0, draws: int = 300, seed: int = 0) -> RunSpec:
    problem = GaussianFeatures(n=n, d=60, draws=draws)
    return RunSpec(experiment=NAME, problem=problem, estimator=EstimatorSpec(kind="min_norm", n_features=p, ridge=ridge, ridge_rule=rule), seed=seed)


def test_a_run_reports_the_simulated_risk_its_se_and_the_formula():
    record = run_spec(_gaussian_spec(40))
    final = record.final
    assert record.status == "ok"
    assert final["formula_risk"] == pytest.approx(gaussian_risk(20, 40, *signal_split(GaussianFeatures(n=20, d=60), 40)))
    assert abs(final["test_risk"] - final["formula_risk"]) <= 3 * final["test_risk_se"]
    assert final["complexity"] == 40 and final["threshold"] == 20 and final["train_risk"] < 1e-20  # p > n interpolates


def test_the_optimal_ridge_beats_nearby_ridges_on_the_same_draws():
    p = 24
    s_in, s_out = signal_split(GaussianFeatures(n=20, d=60), p)
    best = optimal_ridge(p, s_in, s_out)
    optimal = run_spec(_gaussian_spec(p, rule="optimal", draws=400)).final
    assert optimal["ridge"] == pytest.approx(best)
    for factor in (0.25, 4.0):
        other = run_spec(_gaussian_spec(p, ridge=best * factor, draws=400)).final  # same seed: the same training sets
        assert optimal["test_risk"] < other["test_risk"]
    assert optimal["test_risk"] < run_spec(_gaussian_spec(p, draws=400)).final["test_risk"] / 3  # p near n: min-norm is far worse


def test_runs_are_deterministic():
    assert run_spec(_gaussian_spec(30, draws=5)).final == run_spec(_gaussian_spec(30, draws=5)).final
    spec = RunSpec(
        experiment=NAME, data=DataSpec(name="digits", n_train=40, n_test=40, standardize=False), estimator=EstimatorSpec(kind="random_features", n_features=60, bandwidth=3.0)
    )
    first, second = run_spec(spec), run_spec(spec)
    assert first.status == "ok" and first.final == second.final


# ---------------------------------------------------------------- the claim on made-up records


def _record(estimator: EstimatorSpec, final: dict, seed: int = 0, problem=None, data=None) -> RunRecord:
    spec = RunSpec(experiment=NAME, estimator=estimator, problem=problem, data=data or DataSpec(), seed=seed)
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final)


N = 40
SIZES = (10, 20, 32, 36, 40, 44, 50, 80, 160)


def _linear(peak_at: int = N, misfit: float = 0.0, ridged_bump: float = 0.0) -> list[RunRecord]:
    """Gaussian-model records whose simulated risk equals the formula (plus `misfit` SE), peak moved to `peak_at`."""
    problem = GaussianFeatures(n=N, d=160)
    records = []
    for seed in (0, 1):
        for p in SIZES:
            formula = gaussian_risk(N, p, *signal_split(problem, p))
            simulated = formula if math.isfinite(formula) else 1e4
            if p == peak_at and peak_at != N:
                simulated = 1e5
            se = 0.01 * min(simulated, 100)
            plain = {"test_risk": simulated + misfit * se, "test_risk_se": se, "formula_risk": formula, "ridge": 0.0, "complexity": float(p), "threshold": float(N)}
            records.append(_record(EstimatorSpec(n_features=p), plain, seed, problem))
            ridged = 1.3 - 0.001 * p + (ridged_bump if p == N else 0.0)
            optimal = {"test_risk": ridged, "test_risk_se": 0.005, "formula_risk": math.nan, "ridge": 1.0, "complexity": float(p), "threshold": float(N)}
            records.append(_record(EstimatorSpec(n_features=p, ridge_rule="optimal"), optimal, seed, problem))
    return records


def _rff(largest: float = 0.1, peak_at: int = 500) -> list[RunRecord]:
    records = []
    data = DataSpec(name="digits", n_train=500)
    for seed in (0, 1):
        for size in (50, 200, 400, 500, 600, 2000, 4000):
            plain = 100.0 if size == peak_at else (largest if size == 4000 else 0.3)
            for ridge, risk in ((0.0, plain), (0.1, 0.3 - size * 1e-5)):
                final = {"test_risk": risk + 0.001 * seed, "test_error": 0.1, "coef_norm": 1.0, "complexity": float(size), "threshold": 500.0}
                records.append(_record(EstimatorSpec(kind="random_features", n_features=size, ridge=ridge), final, seed, data=data))
    return records


def test_the_claim_passes_on_textbook_curves():
    verdict = experiment.claim(_linear() + _rff())
    assert verdict.passed, verdict.reason
    assert verdict.numbers["linear_peak_at"] == N and verdict.numbers["digits_rff_peak_at"] == 500
    assert verdict.numbers["linear_formula_max_z"] == pytest.approx(0.0) and verdict.numbers["linear_sizes_checked"] == 5  # p = 10, 20, 50, 80, 160


@pytest.mark.parametrize(
    "records, why",
    [
        (lambda: _linear(peak_at=160) + _rff(), "(a) min-norm risk peaks at p=160"),
        (lambda: _linear(misfit=4.0) + _rff(), "simulation vs formula"),
        (lambda: _linear(ridged_bump=0.5) + _rff(), "optimal-ridge curve"),
        (lambda: _linear() + _rff(largest=0.5), "vs best under-parameterized"),
        (lambda: _linear() + _rff(peak_at=2000), "peaks at N=2000"),
        (lambda: _linear(), "no random-feature runs"),
    ],
)
def test_the_claim_fails_when_a_finding_does_not_hold(records, why):
    verdict = experiment.claim(records())
    assert not verdict.passed
    assert why in verdict.reason


def test_the_claim_without_records_fails_with_a_reason():
    verdict = experiment.claim([])
    assert not verdict.passed and verdict.reason == "no finished Gaussian-model or random-feature runs to judge"


def test_largest_rise_and_peak_location():
    import pandas as pd

    falling = pd.DataFrame({"mean": [3.0, 2.0, 1.0], "se": [0.1, 0.1, 0.1]}, index=[1, 2, 3])
    bump = pd.DataFrame({"mean": [3.0, 2.0, 2.5, 1.0], "se": [0.1, 0.1, 0.1, 0.1]}, index=[1, 2, 3, 4])
    assert largest_rise(falling) == 0.0
    assert largest_rise(bump) == pytest.approx(0.5 / math.sqrt(0.02))
    assert largest_rise(pd.DataFrame({"mean": [2.0, 2.02], "se": [0.001, 0.001]}, index=[1, 2])) == 0.0  # under 5%: not a peak
    peaked = pd.DataFrame({"mean": [1.0, 2.0, math.inf, 1.5], "se": [0.1] * 4}, index=[10, 20, 30, 40])
    assert peak_at_threshold(peaked, 30.0) == (True, 30.0)
    assert peak_at_threshold(peaked, 25.0) == (True, 30.0)  # within 1.25 x the threshold
    assert peak_at_threshold(peaked, 20.0) == (False, 30.0)


# ---------------------------------------------------------------- specs, checks and sweeps with parts


def test_specs_without_an_estimator_keep_their_hash():
    assert '"estimator"' not in canonical_json(RunSpec())
    assert '"estimator"' in canonical_json(RunSpec(estimator=EstimatorSpec()))


def test_a_bad_estimator_kind_names_the_allowed_ones():
    with pytest.raises(SpecError, match="estimator.kind.*random_features.*neural_net"):
        with_values(RunSpec(estimator=EstimatorSpec()), {"estimator.kind": "svm"})
    with pytest.raises(SpecError, match="estimator.ridge"):
        with_values(RunSpec(estimator=EstimatorSpec()), {"estimator.ridge": -1})


@pytest.mark.parametrize(
    "spec, message",
    [
        (RunSpec(experiment=NAME), "estimator section"),
        (RunSpec(experiment=NAME, estimator=EstimatorSpec(kind="min_norm")), "gaussian_features"),
        (RunSpec(experiment=NAME, problem=GaussianFeatures(d=30), estimator=EstimatorSpec(n_features=31)), "at most problem.d"),
        (RunSpec(experiment=NAME, problem=GaussianFeatures(), estimator=EstimatorSpec(kind="random_features")), "min_norm"),
    ],
)
def test_specs_the_runner_would_not_honour_are_refused(spec, message):
    with pytest.raises(SpecError, match=message):
        experiment.check(spec)


def test_overrides_reach_every_part_that_has_the_field():
    sweep = experiment.sweep("tiny")
    specs = sweep.override({"problem.draws": 7}).expand()
    assert {s.problem.draws for s in specs if s.problem is not None} == {7}
    assert len(specs) == len(sweep.expand())
    ridged = sweep.override({"estimator.ridge": 0.5}).expand()
    assert {s.estimator.ridge for s in ridged if s.estimator.kind == "random_features"} == {0.5}  # the ridge axis replaced
    assert {s.estimator.kind for s in ridged} == {s.estimator.kind for s in specs}  # forests keep their section axis
    widths = sweep.override({"model.width": [16]}).expand()
    assert {s.model.width for s in widths if s.estimator.kind == "neural_net"} == {16}


def test_an_override_no_part_can_take_is_an_error():
    from biaslab.experiments.double_descent import _forest, _mnist1d

    forests = _forest(_mnist1d(50, 50), (5,), (2,), (0,))
    joined = forests.model_copy(update={"also": (forests,)})
    with pytest.raises(SpecError, match="problem is not set"):
        joined.override({"problem.draws": 7})


def test_epochwise_shape_reads_a_second_descent():
    from biaslab.experiments.double_descent import epochwise_shape

    assert epochwise_shape(np.array([0.9, 0.5, 0.6, 0.7, 0.55, 0.45]), 1000).endswith("falls, rises, falls again")
    assert "no second descent" in epochwise_shape(np.array([0.9, 0.7, 0.6, 0.5, 0.45, 0.4]), 1000)
    assert "no second descent" in epochwise_shape(np.array([0.9, 0.5, 0.51, 0.5]), 1000)  # 0.01 is within 2 SE (0.032)


def test_samplewise_note_says_whether_more_data_hurts():
    problem = GaussianFeatures(n=40, d=160)
    records = []
    for n in (10, 20, 40, 80):
        risk = 1e4 if n == 40 else 2.0
        final = {"test_risk": risk, "test_risk_se": 0.01, "formula_risk": risk, "ridge": 0.0, "complexity": float(n), "threshold": 40.0}
        records.append(_record(EstimatorSpec(n_features=40, axis="train_size"), final, problem=problem.model_copy(update={"n": n})))
    verdict = experiment.claim(_linear() + _rff() + records)
    assert any("more data hurts near the threshold" in note for note in verdict.notes)
    assert verdict.numbers["samplewise_risk_near_threshold"] == 1e4
