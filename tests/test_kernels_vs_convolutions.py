"""kernels-vs-convolutions: the kernel interpolant and the permutation, the claim on made-up records, bad specs."""

from __future__ import annotations

import pytest

from biaslab.experiments import CATALOG, run_spec
from biaslab.experiments.kernels_vs_convolutions import NAME, model_name
from biaslab.spec import DataSpec, EstimatorSpec, ModelSpec, RunSpec, SpecError
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


def _kernel_spec(inputs: str) -> RunSpec:
    data = DataSpec(name="mnist1d", n_train=80, n_test=80, standardize=False, inputs=inputs)
    return RunSpec(experiment=NAME, data=data, estimator=EstimatorSpec(kind="kernel_ridge", bandwidth=8.4), dtype="float64")


def test_the_kernel_interpolates_and_a_fixed_permutation_changes_nothing_for_it():
    ordered, shuffled = run_spec(_kernel_spec("none")), run_spec(_kernel_spec("shuffled_pixels"))
    assert ordered.status == "ok" and shuffled.status == "ok"
    assert ordered.final["train_error"] == 0.0 and ordered.final["train_risk"] < 1e-6  # ridge -> 0: the interpolant
    # the RBF kernel sees only distances, which a permutation of coordinates keeps
    assert shuffled.final["test_error"] == ordered.final["test_error"]
    assert shuffled.final["test_risk"] == pytest.approx(ordered.final["test_risk"], rel=1e-8)


# ---------------------------------------------------------------- the claim on made-up records


def _records(errors: dict[tuple[str, str], float], train_error: float = 0.0, seeds=(0, 1)) -> list[RunRecord]:
    records = []
    for (model, order), value in errors.items():
        for seed in seeds:
            data = DataSpec(name="mnist1d", n_train=1000, n_test=1000, inputs="none" if order == "ordered" else "shuffled_pixels")
            if model == "kernel":
                spec = RunSpec(experiment=NAME, data=data, estimator=EstimatorSpec(kind="kernel_ridge"), seed=seed)
            else:
                spec = RunSpec(experiment=NAME, data=data, estimator=EstimatorSpec(kind="neural_net"), model=ModelSpec(kind=model), seed=seed)
            final = {"train_error": train_error, "test_error": value + 0.002 * seed}
            records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final))
    return records


GOOD = {
    ("kernel", "ordered"): 0.45, ("kernel", "shuffled"): 0.45,
    ("mlp", "ordered"): 0.40, ("mlp", "shuffled"): 0.41,
    ("cnn", "ordered"): 0.15, ("cnn", "shuffled"): 0.38,
}


def test_claim_passes_when_the_cnn_edge_vanishes_under_the_shuffle():
    verdict = experiment.claim(_records(GOOD))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["cnn_edge_ordered"] == pytest.approx(0.25) and verdict.numbers["cnn_edge_shuffled"] == pytest.approx(0.03)


def test_claim_fails_when_a_model_does_not_interpolate():
    verdict = experiment.claim(_records(GOOD, train_error=0.02))
    assert not verdict.passed and "(0)" in verdict.reason


def test_claim_fails_when_the_cnn_keeps_its_edge_on_shuffled_inputs():
    verdict = experiment.claim(_records(GOOD | {("cnn", "shuffled"): 0.20}))
    assert not verdict.passed and "(2)" in verdict.reason and "(1)" not in verdict.reason


def test_claim_fails_when_the_cnn_has_no_edge_on_ordered_inputs():
    verdict = experiment.claim(_records(GOOD | {("cnn", "ordered"): 0.35}))
    assert not verdict.passed and "(1)" in verdict.reason


def test_claim_fails_when_the_mlp_changes_beyond_the_test_noise():
    # SE at p = 0.4, n_test = 1000 is 0.0155: 3 SE = 0.046; a change of 0.08 fails
    verdict = experiment.claim(_records(GOOD | {("mlp", "shuffled"): 0.48}))
    assert not verdict.passed and "(3) MLP" in verdict.reason


def test_claim_fails_with_a_missing_cell():
    verdict = experiment.claim(_records({k: v for k, v in GOOD.items() if k != ("cnn", "shuffled")}))
    assert not verdict.passed and "cnn/shuffled" in verdict.reason


def test_model_names():
    assert model_name(_kernel_spec("none")) == "kernel"
    net = _kernel_spec("none").model_copy(update={"estimator": EstimatorSpec(kind="neural_net")})
    assert model_name(net.model_copy(update={"model": ModelSpec(kind="cnn")})) == "cnn"
    assert model_name(net.model_copy(update={"model": ModelSpec(kind="mlp")})) == "mlp"


# ---------------------------------------------------------------- bad input


def test_the_experiment_refuses_other_data_models_and_estimators():
    base = _kernel_spec("none")
    with pytest.raises(SpecError, match="data.name: .*'mnist1d'"):
        experiment.check(base.model_copy(update={"data": DataSpec(name="digits")}))
    with pytest.raises(SpecError, match="data.inputs: .*'none', 'shuffled_pixels'"):
        experiment.check(base.model_copy(update={"data": DataSpec(inputs="gaussian")}))
    with pytest.raises(SpecError, match="estimator.kind"):
        experiment.check(base.model_copy(update={"estimator": EstimatorSpec(kind="boosting")}))
    net = RunSpec(experiment=NAME, estimator=EstimatorSpec(kind="neural_net"), model=ModelSpec(kind="cnn"))
    experiment.check(net)
    with pytest.raises(SpecError, match="model.kind: .*'mlp', 'cnn'"):
        experiment.check(RunSpec(experiment=NAME, estimator=EstimatorSpec(kind="neural_net"), model=ModelSpec(kind="transformer"), data=DataSpec(name="modular")))
