"""trees-vs-nets: the synthetic tabular tasks against hand computations, the claim on made-up records, bad specs."""

from __future__ import annotations

import numpy as np
import pytest

from biaslab.data.problems import checkerboard_labels, haar_orthogonal, smooth_labels, tabular
from biaslab.experiments import CATALOG, run_spec
from biaslab.experiments.trees_vs_nets import NAME, task_name
from biaslab.spec import EstimatorSpec, ModelSpec, RunSpec, SpecError, Tabular, TrainSpec, with_values
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


def test_checkerboard_labels_match_a_hand_computation():
    # cells=4 on [-1, 1]: cell edges at -0.5, 0, 0.5; cell index 0..3 per axis; label = (i + j) mod 2
    x = np.array([
        [-0.9, -0.9, 0.3],  # (0, 0) -> 0
        [-0.4, -0.9, 0.0],  # (1, 0) -> 1
        [0.1, 0.6, -1.0],  # (2, 3) -> 1
        [0.7, 0.7, 0.5],  # (3, 3) -> 0
        [0.49, -0.01, 0.9],  # (2, 1) -> 1
        [1.0, -1.0, 0.0],  # edges clip into (3, 0) -> 1
    ])
    assert checkerboard_labels(x, 4).tolist() == [0, 1, 1, 0, 1, 1]
    assert checkerboard_labels(np.array([[-0.1, 0.1], [0.1, 0.1]]), 2).tolist() == [1, 0]  # XOR of the signs


def test_checkerboard_ignores_every_feature_but_the_first_two():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (500, 10))
    shuffled = x.copy()
    shuffled[:, 2:] = rng.uniform(-1, 1, (500, 8))
    assert np.array_equal(checkerboard_labels(x, 4), checkerboard_labels(shuffled, 4))


def test_smooth_labels_are_the_sign_of_the_formula():
    u, v = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    x = np.array([[0.5, 0.0], [-0.5, 0.0], [-0.1, 0.5], [0.2, -0.5]])  # 0.5 + 0, -0.5, -0.1 + 1, 0.2 - 1
    assert smooth_labels(x, u, v).tolist() == [1, 0, 1, 0]


def test_the_rotation_is_orthogonal_and_applied_to_the_labelled_inputs():
    q = haar_orthogonal(12, np.random.default_rng(3))
    assert np.allclose(q @ q.T, np.eye(12), atol=1e-12) and np.allclose(q.T @ q, np.eye(12), atol=1e-12)
    plain = tabular(Tabular(n_train=50, n_test=30, uninformative=2), seed=4)
    rotated = tabular(Tabular(n_train=50, n_test=30, uninformative=2, rotation="random"), seed=4)
    assert rotated.rotation.shape == (12, 12) and plain.rotation is None
    assert np.allclose(rotated.rotation @ rotated.rotation.T, np.eye(12), atol=1e-12)
    back = rotated.x_train @ rotated.rotation  # x Q^T Q = x
    assert np.allclose(back, plain.x_train) and np.array_equal(rotated.y_train, plain.y_train)
    assert np.array_equal(checkerboard_labels(back, 4), rotated.y_train)


def test_tasks_have_the_stated_shapes_balance_and_determinism():
    data = tabular(Tabular(target="smooth", n_features=10, uninformative=90, n_train=400, n_test=300), seed=1)
    assert data.x_train.shape == (400, 100) and data.x_test.shape == (300, 100)
    assert 0.3 < data.y_train.mean() < 0.7
    again = tabular(Tabular(target="smooth", n_features=10, uninformative=90, n_train=400, n_test=300), seed=1)
    assert np.array_equal(data.x_train, again.x_train)
    board = tabular(Tabular(n_train=4000, n_test=10), seed=0)
    assert abs(board.y_train.mean() - 0.5) < 0.03


def test_one_run_fits_a_forest_through_the_protocol():
    spec = RunSpec(experiment=NAME, problem=Tabular(n_train=300, n_test=300, cells=2), estimator=EstimatorSpec(kind="boosting", n_trees=50))
    record = run_spec(spec)
    assert record.status == "ok" and record.final["train_accuracy"] >= 0.9
    assert 0.0 <= record.final["test_accuracy"] <= 1.0
    assert run_spec(spec).final == record.final  # deterministic


# ---------------------------------------------------------------- the claim on made-up records

TASK_PROBLEMS = {
    "checkerboard": Tabular(),
    "checkerboard rotated": Tabular(rotation="random"),
    "smooth": Tabular(target="smooth"),
    "smooth + uninformative": Tabular(target="smooth", uninformative=90),
}


def _records(accuracy: dict[tuple[str, str], float], seeds=(0, 1, 2)) -> list[RunRecord]:
    records = []
    for (task, model), value in accuracy.items():
        for seed in seeds:
            spec = RunSpec(experiment=NAME, problem=TASK_PROBLEMS[task], estimator=EstimatorSpec(kind=model), seed=seed)
            final = {"train_accuracy": 1.0, "test_accuracy": value + 0.004 * seed}
            records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final))
    return records


GOOD = {
    ("checkerboard", "random_forest"): 0.80, ("checkerboard", "boosting"): 0.95, ("checkerboard", "neural_net"): 0.60,
    ("checkerboard rotated", "random_forest"): 0.52, ("checkerboard rotated", "boosting"): 0.55, ("checkerboard rotated", "neural_net"): 0.58,
    ("smooth", "random_forest"): 0.88, ("smooth", "boosting"): 0.90, ("smooth", "neural_net"): 0.96,
    ("smooth + uninformative", "random_forest"): 0.84, ("smooth + uninformative", "boosting"): 0.88, ("smooth + uninformative", "neural_net"): 0.80,
}


def test_claim_passes_on_records_showing_all_three_effects():
    verdict = experiment.claim(_records(GOOD))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["checkerboard_tree_minus_mlp"] == pytest.approx(0.35)
    assert verdict.numbers["rotation_drop_tree"] == pytest.approx(0.40) and verdict.numbers["rotation_drop_mlp"] == pytest.approx(0.02)


def test_claim_fails_when_the_mlp_matches_the_trees_on_the_checkerboard():
    verdict = experiment.claim(_records(GOOD | {("checkerboard", "neural_net"): 0.93}))
    assert not verdict.passed and "(1)" in verdict.reason


def test_claim_fails_when_the_rotation_costs_the_mlp_as_much():
    verdict = experiment.claim(_records(GOOD | {("checkerboard rotated", "neural_net"): 0.35}))
    assert not verdict.passed and "(2)" in verdict.reason and "(1)" not in verdict.reason


def test_claim_fails_when_the_mlp_never_learned_the_unrotated_board():
    """At chance before the rotation, the MLP has nothing to lose: 'costs the MLP nothing' must not count (issue 18)."""
    verdict = experiment.claim(_records(GOOD | {("checkerboard", "neural_net"): 0.52, ("checkerboard rotated", "neural_net"): 0.52}))
    assert not verdict.passed and "(2)" in verdict.reason and "need >= 0.60: it must have learned the board" in verdict.reason


def test_claim_fails_when_uninformative_features_cost_boosting_as_much():
    verdict = experiment.claim(_records(GOOD | {("smooth + uninformative", "boosting"): 0.70}))
    assert not verdict.passed and "(3)" in verdict.reason


def test_claim_fails_with_one_seed_as_the_noise_part_needs_a_spread():
    verdict = experiment.claim(_records(GOOD, seeds=(0,)))
    assert not verdict.passed and "(3)" in verdict.reason


def test_task_names():
    assert [task_name(p) for p in TASK_PROBLEMS.values()] == list(TASK_PROBLEMS)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "path, value, allowed",
    [("problem.target", "spiral", "checkerboard"), ("problem.rotation", "fixed", "random"), ("problem.uninformative", -1, "greater than or equal")],
)
def test_bad_tabular_fields_name_the_field_and_what_is_allowed(path, value, allowed):
    spec = RunSpec(experiment=NAME, problem=Tabular(), estimator=EstimatorSpec(kind="boosting"))
    field = path.split(".")[-1]
    with pytest.raises(SpecError, match=rf"problem\.tabular\.{field}: .*{allowed}"):  # pydantic names the union member
        with_values(spec, {path: value})


def test_the_experiment_refuses_other_problems_and_estimators():
    with pytest.raises(SpecError, match="problem.kind"):
        experiment.check(RunSpec(experiment=NAME, estimator=EstimatorSpec(kind="boosting")))
    with pytest.raises(SpecError, match="estimator.kind"):
        experiment.check(RunSpec(experiment=NAME, problem=Tabular(), estimator=EstimatorSpec(kind="kernel_ridge"), dtype="float64"))
    experiment.check(RunSpec(experiment=NAME, problem=Tabular(), estimator=EstimatorSpec(kind="neural_net"), model=ModelSpec(), train=TrainSpec()))


def test_the_mlp_history_measures_the_test_set_not_the_training_set():
    """The MLP's curves are labelled test_*: they must be measured on the test draw (they once measured the training set)."""
    spec = next(s for s in experiment.sweep("tiny").expand() if s.estimator.kind == "neural_net")
    record = experiment.run(spec)
    assert record.final["test_error"] == pytest.approx(1.0 - record.final["test_accuracy"], abs=1e-6)
    assert record.final["train_error"] == pytest.approx(1.0 - record.final["train_accuracy"], abs=1e-6)
    assert record.final["test_error"] != pytest.approx(record.final["train_error"], abs=1e-6)
