"""marginal-likelihood: the run's marginal likelihood and predictions against a direct Cholesky computation, the
claim on made-up records, the tiny preset's verdict, and the specs it refuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from biaslab import data as datasets
from biaslab.experiments import CATALOG, run_spec
from biaslab.experiments.marginal_likelihood import FIXED_NOISE, NAME, judge, run_table
from biaslab.spec import DataSpec, EstimatorSpec, RunSpec, SpecError, with_values
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


def _spec(learn_noise: bool = True, label_noise: float = 0.4, restarts: int = 0, seed: int = 0) -> RunSpec:
    data = DataSpec(name="digits", n_train=60, n_test=40, standardize=False, label_noise=label_noise)
    estimator = EstimatorSpec(kind="gp", bandwidth=3.0, noise=FIXED_NOISE, learn_noise=learn_noise, restarts=restarts)
    return RunSpec(experiment=NAME, data=data, estimator=estimator, dtype="float64", seed=seed)


def _direct(spec: RunSpec, length_scale: float, signal: float, noise: float):
    """log p(Y | X) summed over the one-vs-rest outputs by a Cholesky factor of K, and the posterior means."""
    data = datasets.load(spec.data, "cpu", torch.float64)
    x, y = data.x_train.flatten(1).numpy(), data.y_train.numpy()
    x_test = data.x_test.flatten(1).numpy()
    classes = np.unique(y)
    Y = (y[:, None] == classes[None, :]) - 1.0 / len(classes)  # (n, K) centred one-hot

    def rbf(a, b):
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return signal * np.exp(-np.maximum(sq, 0.0) / (2.0 * length_scale**2))

    n = len(y)
    L = np.linalg.cholesky(rbf(x, x) + noise * np.eye(n))
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, Y))  # (K_theta + noise I)^-1 Y
    lml = -0.5 * np.sum(Y * alpha) - Y.shape[1] * (np.log(np.diag(L)).sum() + 0.5 * n * math.log(2.0 * math.pi))
    return lml, classes[(rbf(x, x) @ alpha).argmax(1)], classes[(rbf(x_test, x) @ alpha).argmax(1)], y, data.y_test.numpy()


@pytest.mark.parametrize("learn_noise", [True, False])
def test_the_run_reports_the_exact_marginal_likelihood_at_a_maximum_of_it(learn_noise):
    spec = _spec(learn_noise)
    record = run_spec(spec)
    assert record.status == "ok", record.error
    f = record.final
    theta = (f["length_scale"], f["signal_variance"], f["noise_variance"])
    lml, train_predicted, test_predicted, y, y_test = _direct(spec, *theta)
    assert f["lml_per_example"] * 60 == pytest.approx(lml, rel=1e-9, abs=1e-9)
    assert f["train_error"] == pytest.approx(np.mean(train_predicted != y))
    assert f["test_error"] == pytest.approx(np.mean(test_predicted != y_test))
    if not learn_noise:
        assert f["noise_variance"] == FIXED_NOISE
    # a maximum: moving any learned hyperparameter by 5% either way lowers the direct marginal likelihood
    learned = range(3) if learn_noise else range(2)
    for i in learned:
        for factor in (0.95, 1.05):
            moved = list(theta)
            moved[i] *= factor
            assert _direct(spec, *moved)[0] < lml + 1e-9


def test_restarts_are_drawn_from_the_seed_and_the_best_start_is_kept():
    first, again, other = run_spec(_spec(restarts=2)), run_spec(_spec(restarts=2)), run_spec(_spec(restarts=2, seed=1))
    assert first.final == again.final and first.arrays == again.arrays  # deterministic given the seed
    starts = first.arrays["start_lml_per_example"]
    assert len(starts) == 3 and first.final["starts"] == 3.0
    assert first.final["lml_per_example"] == pytest.approx(max(starts), rel=0, abs=0)
    assert other.arrays["start_lml_per_example"][0] == starts[0]  # the given start does not depend on the seed
    assert other.arrays["start_lml_per_example"][1:] != starts[1:]


def test_the_noise_free_likelihood_fits_random_labels():
    fixed = run_spec(_spec(False, label_noise=1.0))
    assert fixed.final["train_error"] == 0.0 and fixed.final["train_error_noisy"] == 0.0


# ---------------------------------------------------------------- the tiny preset


@pytest.fixture(scope="module")
def tiny_records() -> list[RunRecord]:
    return [run_spec(spec) for spec in experiment.sweep("tiny").expand()]


def test_tiny_passes_with_the_numbers_it_was_decided_on(tiny_records):
    verdict = experiment.claim(tiny_records)
    assert verdict.passed, verdict.reason
    assert verdict.numbers["digits_fixed_train_error_max"] == 0.0
    assert verdict.numbers["digits_fixed_lml_largest_step"] < 0 and verdict.numbers["digits_learned_lml_largest_step"] < 0
    assert set(experiment.figures(tiny_records)) == {"occam", "hyperparameters"}


# ---------------------------------------------------------------- the claim on made-up records


def _records(lml: dict[str, list[float]], train_error: float = 0.0, test_at_one: float = 0.9) -> list[RunRecord]:
    fractions = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    records = []
    for arm, values in lml.items():
        for seed in (0, 1):
            for p, value in zip(fractions, values):
                spec = with_values(_spec(arm == "learned", label_noise=p), {"data.seed": seed})
                test = 0.02 + (test_at_one - 0.02) * p
                final = {"train_error": train_error if arm == "fixed" else p / 2, "test_error": test, "lml_per_example": value + 0.01 * seed,
                         "length_scale": 1.0, "signal_variance": 0.1, "noise_variance": 1e-3}  # fmt: skip
                records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final))
    return records


FALLING = [7.7, 0.6, -1.3, -2.0, -2.1, -2.15]


def test_claim_passes_when_both_likelihoods_fall_and_the_noise_free_one_fits():
    verdict = judge(run_table(_records({"fixed": FALLING, "learned": FALLING})))
    assert verdict.passed, verdict.reason
    assert any("digits/learned: training error" in note for note in verdict.notes)


def test_claim_fails_on_a_tie_of_the_marginal_likelihood_at_the_memorization_floor():
    # what quick measured: with the noise fixed, 80% and 100% random labels are both memorized, at one floor
    tied = FALLING[:4] + [-2.149, -2.149]
    verdict = judge(run_table(_records({"fixed": tied, "learned": FALLING})))
    assert not verdict.passed and "(3) digits/fixed" in verdict.reason and "(3) digits/learned" not in verdict.reason


def test_claim_fails_when_the_noise_free_gp_does_not_fit():
    verdict = judge(run_table(_records({"fixed": FALLING, "learned": FALLING}, train_error=0.05)))
    assert not verdict.passed and "(1) digits/fixed" in verdict.reason


def test_claim_fails_when_random_labels_stay_far_from_chance():
    verdict = judge(run_table(_records({"fixed": FALLING, "learned": FALLING}, test_at_one=0.7)))
    assert not verdict.passed and "test error at p = 1 0.700" in verdict.reason


def test_claim_fails_with_an_arm_missing_or_no_runs():
    assert "digits/learned: no finished runs" in judge(run_table(_records({"fixed": FALLING}))).reason
    assert not judge(run_table([])).passed


# ---------------------------------------------------------------- specs it refuses


def test_gp_settings_are_refused_for_other_estimator_kinds():
    for field, value in (("signal", 2.0), ("noise", 0.1), ("learn_noise", False), ("restarts", 1)):
        with pytest.raises(ValueError, match=f"estimator.{field}: read only when estimator.kind is 'gp'"):
            EstimatorSpec(kind="kernel_ridge", **{field: value})


@pytest.mark.parametrize(("path", "value", "named"), [
    ("estimator", {"kind": "kernel_ridge"}, "estimator.kind"),
    ("data.inputs", "shuffled_pixels", "data.inputs"),
    ("data.name", "teacher", "data.name"),
    ("device", "cuda", "device"),
])  # fmt: skip
def test_specs_outside_the_experiment_are_refused(path, value, named):
    with pytest.raises(SpecError, match=named):
        experiment.check(with_values(_spec(), {path: value}))
