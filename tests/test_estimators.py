"""The estimators layer: scikit-learn's own checks, and each fit against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from biaslab.estimators import (
    MinNormRegressor,
    NeuralNetClassifier,
    RandomFourierRegressor,
    SquaredLossClassifier,
    fit_estimator,
    make_estimator,
    squared_risk,
)
from biaslab.runtime import blas_threads_as_torch
from biaslab.spec import EstimatorSpec, ModelSpec, RunSpec, TrainSpec

# Every check passes for these wrappers (scikit-learn 1.9), with one documented exception: a random-feature
# model with far fewer features than the check's 200 training examples underfits it (training R^2 < 0.5 in
# check_regressors_train). That is the under-parameterized branch of double descent, not a protocol bug; the
# default (100 features) passes.
UNDERFITS = {"check_regressors_train": "20 random features underfit the check's 200 examples (R^2 < 0.5)"}


def _expected_failures(estimator):
    return UNDERFITS if isinstance(estimator, RandomFourierRegressor) and estimator.n_features == 20 else {}


@parametrize_with_checks(
    [
        MinNormRegressor(),
        MinNormRegressor(ridge=0.1),
        RandomFourierRegressor(),
        RandomFourierRegressor(n_features=20, random_state=0),
        RandomFourierRegressor(n_features=400, random_state=0),
        SquaredLossClassifier(),
        SquaredLossClassifier(RandomFourierRegressor(n_features=300, random_state=0)),
    ],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_sklearn_checks_on_the_neural_net():
    """All checks pass in float64 (in float32, outputs on a subset differ from the full batch by rounding)."""
    net = NeuralNetClassifier(ModelSpec(width=16), TrainSpec(optimizer="adam", lr=0.05, batch_size=None, max_steps=40, eval_every=40), dtype="float64")
    results = check_estimator(net, on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == []


def _data(n=12, p=30, k=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = rng.standard_normal(n if k is None else (n, k))
    return X, y


@pytest.mark.parametrize("n, p", [(12, 30), (30, 12)])
def test_min_norm_is_the_pseudo_inverse_solution(n, p):
    X, y = _data(n, p)
    fitted = MinNormRegressor().fit(X, y)
    np.testing.assert_allclose(fitted.coef_, np.linalg.pinv(X) @ y, atol=1e-10)
    assert fitted.coef_norm_ == pytest.approx(np.linalg.norm(np.linalg.pinv(X) @ y))
    if p > n:  # interpolates, and any other interpolant (add a null-space vector) is longer
        np.testing.assert_allclose(fitted.predict(X), y, atol=1e-10)
        null = np.linalg.svd(X)[2][-1]
        assert np.linalg.norm(fitted.coef_ + 0.1 * null) > fitted.coef_norm_


@pytest.mark.parametrize("n, p", [(12, 30), (30, 12)])
def test_ridge_matches_scikit_learn_ridge_in_primal_and_dual(n, p):
    X, y = _data(n, p, k=3)
    ours = MinNormRegressor(ridge=0.7).fit(X, y)
    reference = Ridge(alpha=0.7, fit_intercept=False, solver="svd").fit(X, y)
    np.testing.assert_allclose(ours.coef_, reference.coef_, atol=1e-10)
    assert ours.coef_.shape == (3, p)


def test_random_fourier_features_approximate_the_gaussian_kernel():
    X, _ = _data(5, 4)
    model = RandomFourierRegressor(n_features=200_000, bandwidth=2.0, random_state=0).fit(X, np.zeros(5))
    phi = model.features(X)
    squared = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(phi @ phi.T, np.exp(-squared / (2 * 2.0**2)), atol=0.01)  # Monte Carlo error ~ 1/sqrt(N)


def test_random_features_are_deterministic_in_random_state():
    X, y = _data(20, 3)
    X_new, _ = _data(5, 3, seed=1)
    a, b = (RandomFourierRegressor(50, random_state=3).fit(X, y).predict(X_new) for _ in range(2))
    c = RandomFourierRegressor(50, random_state=4).fit(X, y).predict(X_new)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_random_features_interpolate_past_n_and_not_before():
    X, y = _data(40, 3)
    assert np.abs(RandomFourierRegressor(80, random_state=0).fit(X, y).predict(X) - y).max() < 1e-8
    assert np.abs(RandomFourierRegressor(20, random_state=0).fit(X, y).predict(X) - y).max() > 1e-2


def test_squared_loss_classifier_regresses_one_hot_targets():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 50))
    y = rng.choice(np.array(["a", "b", "c"]), 30)
    clf = SquaredLossClassifier().fit(X, y)
    onehot = (y[:, None] == np.array(["a", "b", "c"])[None, :]).astype(float)
    np.testing.assert_allclose(clf.outputs(X), X @ (np.linalg.pinv(X) @ onehot), atol=1e-10)
    assert (clf.predict(X) == y).all()  # 50 features > 30 examples: it interpolates
    X_new = rng.standard_normal((7, 50))
    by_hand = np.square(clf.outputs(X_new) - (y[:7, None] == clf.classes_[None, :])).sum(1).mean()
    assert squared_risk(clf, X_new, y[:7]) == pytest.approx(by_hand)


def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 1, 8))  # (n, 1 channel, 8)
    X[np.arange(n), 0, y] += 4.0  # class c: a bump on coordinate c
    return X, y


TRAIN = TrainSpec(optimizer="adam", lr=0.05, batch_size=20, max_steps=60, eval_every=20)


def test_neural_net_is_deterministic_and_keeps_its_history():
    X, y = _blobs()
    nets = [NeuralNetClassifier(ModelSpec(width=8), TRAIN, random_state=1).fit(X, y) for _ in range(2)]
    np.testing.assert_array_equal(nets[0].outputs(X), nets[1].outputs(X))
    other = NeuralNetClassifier(ModelSpec(width=8), TRAIN, random_state=2).fit(X, y)
    assert not np.allclose(nets[0].outputs(X), other.outputs(X))
    assert [row["step"] for row in nets[0].history_] == [0.0, 20.0, 40.0, 60.0]
    assert nets[0].score(X, y) > 0.9
    assert clone(nets[0]).get_params() == nets[0].get_params()


def test_neural_net_history_measures_the_validation_set():
    X, y = _blobs()
    X_val, y_val = _blobs(30, seed=1)
    net = NeuralNetClassifier(ModelSpec(width=8), TRAIN).fit(X, y, X_val, y_val)
    assert net.history_[-1]["test_error"] == pytest.approx(np.mean(net.predict(X_val) != y_val))


@pytest.mark.parametrize("kind", ["min_norm", "random_features", "random_forest", "boosting", "kernel_ridge", "neural_net"])
def test_every_estimator_kind_fits_through_one_protocol(kind):
    X, y = _blobs(60)
    flat = X.reshape(len(X), -1)
    settings = {"n_features": 200, "bandwidth": 3.0, "ridge": 1e-3, "max_leaf_nodes": 8, "n_trees": 5}
    read = {"min_norm": ("ridge",), "random_features": ("n_features", "bandwidth", "ridge"), "random_forest": ("max_leaf_nodes", "n_trees"),
            "boosting": ("max_leaf_nodes", "n_trees"), "kernel_ridge": ("bandwidth", "ridge"), "neural_net": ()}  # fmt: skip
    spec = EstimatorSpec(kind=kind, **{name: settings[name] for name in read[kind]})
    model = make_estimator(spec, ModelSpec(width=8), TRAIN, seed=0)
    assert model.fit(flat, y) is model
    assert model.score(flat, y) > 0.8
    assert 0.0 <= squared_risk(model, flat, y) < 2.0


def test_fit_estimator_builds_from_the_run_spec_and_hands_the_validation_set_to_a_network_only():
    X, y = _blobs()
    X_val, y_val = _blobs(30, seed=1)
    net_spec = RunSpec(estimator=EstimatorSpec(kind="neural_net"), model=ModelSpec(width=8), train=TRAIN, seed=3)
    net = fit_estimator(net_spec, X, y, validation=(X_val, y_val))
    by_hand = NeuralNetClassifier(ModelSpec(width=8), TRAIN, random_state=3).fit(X, y, X_val, y_val)
    np.testing.assert_array_equal(net.outputs(X_val), by_hand.outputs(X_val))  # the same seed, model and training
    assert net.history_[-1]["test_error"] == pytest.approx(np.mean(net.predict(X_val) != y_val))
    flat = X.reshape(len(X), -1)
    forest_spec = RunSpec(estimator=EstimatorSpec(kind="random_forest", n_trees=3), seed=3)
    forest = fit_estimator(forest_spec, flat, y, validation=(X_val.reshape(len(X_val), -1), y_val))
    assert forest.n_features_in_ == flat.shape[1] and forest.random_state == 3


def test_blas_threads_follow_torch_inside_the_block_only():
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info()]
    assert before, "numpy's BLAS pool should be visible to threadpoolctl"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with blas_threads_as_torch():
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    finally:
        torch.set_num_threads(previous)
    assert [pool["num_threads"] for pool in threadpool_info()] == before
