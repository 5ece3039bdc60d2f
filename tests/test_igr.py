"""implicit-gradient-regularization: the flow integrator and modified gradients against closed forms, the claim on
made-up records, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from biaslab.experiments import CATALOG
from biaslab.experiments.implicit_gradient_regularization import NAME, TinyRegression, log_slope, steps_for
from biaslab.spec import BackwardError, RunSpec, SpecError, TrainSpec, with_values
from biaslab.store import RunRecord
from biaslab.train.flow import gradient, gradient_descent, modified_gradient, rk4, sgd_modified_gradient, shuffled_sgd_mean

A = np.array([[2.0, 0.5], [0.5, 0.3]])  # a positive definite Hessian
THETA0 = np.array([1.0, -2.0])


def quadratic(theta: torch.Tensor) -> torch.Tensor:
    return 0.5 * theta @ torch.as_tensor(A) @ theta


def test_rk4_matches_the_exact_solution_of_a_linear_ode():
    exact = expm(-A * 1.5) @ THETA0  # gradient flow on a quadratic: theta(t) = exp(-A t) theta0
    numeric = rk4(gradient(quadratic), torch.as_tensor(THETA0), 1.5, 200).numpy()
    assert np.abs(numeric - exact).max() < 1e-10
    coarse = rk4(gradient(quadratic), torch.as_tensor(THETA0), 1.5, 20).numpy()  # RK4 is fourth order: 10x steps, ~1e4x smaller error
    assert 1e3 < np.abs(coarse - exact).max() / np.abs(numeric - exact).max() < 1e5


def test_modified_gradient_of_a_quadratic_is_a_plus_half_h_a_squared():
    theta = torch.as_tensor(THETA0)
    expected = (A + 0.5 * 0.1 * A @ A) @ THETA0  # grad of L + (h/4)|A theta|^2
    assert np.allclose(modified_gradient(quadratic, 0.1)(theta).numpy(), expected, rtol=1e-12)


def test_gd_is_second_order_close_to_the_modified_flow_in_closed_form():
    """Independent of the integrator: (I - hA)^n theta0 against exp(-A T) and exp(-(A + h/2 A^2) T)."""
    T, hs = 1.0, [0.1, 0.05, 0.025, 0.0125]
    plain, modified = [], []
    for h in hs:
        n = round(T / h)
        iterate = np.linalg.matrix_power(np.eye(2) - h * A, n) @ THETA0
        plain.append(np.linalg.norm(iterate - expm(-A * T) @ THETA0))
        modified.append(np.linalg.norm(iterate - expm(-(A + 0.5 * h * A @ A) * T) @ THETA0))
    assert abs(log_slope(hs, plain) - 1.0) < 0.1 and abs(log_slope(hs, modified) - 2.0) < 0.1
    gd = gradient_descent(gradient(quadratic), torch.as_tensor(THETA0), 0.1, 10).numpy()
    assert np.allclose(gd, np.linalg.matrix_power(np.eye(2) - 0.1 * A, 10) @ THETA0, rtol=1e-12)


def test_sgd_modified_gradient_adds_the_minibatch_gradient_variance():
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((3, 3)) for _ in range(3)]
    mats = [m @ m.T for m in mats]
    targets = [rng.standard_normal(3) for _ in range(3)]
    losses = [lambda t, M=M, b=b: 0.5 * t @ torch.as_tensor(M) @ t - torch.as_tensor(b) @ t for M, b in zip(mats, targets)]
    theta, h = rng.standard_normal(3), 0.2
    grads = [M @ theta - b for M, b in zip(mats, targets)]  # g_k = A_k theta - b_k
    expected = sum(grads) / 3 + h / (2 * 3) * sum(M @ g for M, g in zip(mats, grads))  # grad of (h/4m) sum |g_k|^2 = (h/2m) sum A_k g_k
    assert np.allclose(sgd_modified_gradient(losses, h)(torch.as_tensor(theta)).numpy(), expected, rtol=1e-12)
    mean_loss = lambda t: sum(loss(t) for loss in losses) / 3  # noqa: E731
    full = modified_gradient(mean_loss, h)(torch.as_tensor(theta)).numpy()
    g = sum(grads) / 3
    variance_grad = h / (2 * 3) * sum(M @ (gk - g) for M, gk in zip(mats, grads)) - h / 2 * (sum(mats) / 3) @ sum(gk - g for gk in grads) / 3
    assert np.allclose(expected, full + variance_grad, rtol=1e-10)  # the form L + (h/4)|g|^2 + (h/4m) sum |g_k - g|^2


def test_shuffled_sgd_mean_with_one_batch_is_gd_and_with_two_averages_the_orders():
    problem = BackwardError(model="mlp", n_points=8, batches=1)
    model = TinyRegression(problem, seed=0)
    g = torch.Generator().manual_seed(0)
    mean = shuffled_sgd_mean(model.path_batch_loss, model.theta0, 0.1, 5, 1, 3, g)
    assert torch.allclose(mean, gradient_descent(gradient(model.loss), model.theta0, 0.1, 5), rtol=1e-12, atol=1e-14)
    two = TinyRegression(BackwardError(model="mlp", n_points=8, batches=2), seed=0)
    first, second = (gradient(two.batch_loss(k)) for k in (0, 1))
    orders = [two.theta0 - 0.1 * first(two.theta0), two.theta0 - 0.1 * second(two.theta0)]
    a_then_b = orders[0] - 0.1 * second(orders[0])
    b_then_a = orders[1] - 0.1 * first(orders[1])
    mean = shuffled_sgd_mean(two.path_batch_loss, two.theta0, 0.1, 1, 2, 4000, g)
    weight = ((mean - b_then_a) @ (a_then_b - b_then_a) / (a_then_b - b_then_a).square().sum()).item()
    assert torch.allclose(mean, weight * a_then_b + (1 - weight) * b_then_a, atol=1e-12)  # on the segment: an average of the two orders
    assert abs(weight - 0.5) < 0.05  # each order with probability 1/2


def test_batched_outputs_match_one_path_at_a_time():
    model = TinyRegression(BackwardError(model="mlp"), seed=1)
    thetas = torch.stack([model.theta0, model.theta0 * 0.5])
    batched = model.outputs(thetas, model.x.expand(2, -1, -1))
    assert torch.allclose(batched[1], model.outputs(thetas[1], model.x), rtol=1e-12)


def _record(model: str, h: float, plain: float, modified: float, sgd: tuple[float, float] | None = None) -> RunRecord:
    problem = BackwardError(model=model, sgd_paths=4 if sgd else 0)
    spec = RunSpec(experiment=NAME, problem=problem, train=TrainSpec(optimizer="gd", batch_size=None, lr=h), dtype="float64")
    final = {"dist_plain": plain, "dist_modified": modified}
    if sgd:
        final |= {"sgd_dist_full_batch_modified": sgd[0], "sgd_dist_sgd_modified": sgd[1]}
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final)


claim = CATALOG.get(NAME).claim
HS = (0.1, 0.05, 0.025, 0.0125)


def test_claim_passes_with_first_and_second_order_distances():
    records = [_record("two_parameter", h, 0.3 * h, 2.0 * h**2) for h in HS]
    records += [_record("mlp", h, 0.2 * h, h**2, (0.1 * h, 0.5 * h**2)) for h in HS]
    verdict = claim(records)
    assert verdict.passed, verdict.reason
    assert abs(verdict.numbers["mlp_slope_modified"] - 2.0) < 1e-9 and abs(verdict.numbers["mlp_ratio_modified_last_halving"] - 4.0) < 1e-9


def test_claim_fails_when_the_modified_flow_is_only_first_order_close():
    verdict = claim([_record("two_parameter", h, 0.3 * h, 0.1 * h) for h in HS])
    assert not verdict.passed and abs(verdict.numbers["two_parameter_slope_modified"] - 1.0) < 1e-9


def test_claim_fails_when_sgd_tracks_the_full_batch_flow_better():
    records = [_record("mlp", h, 0.2 * h, h**2, (0.5 * h**2, 0.1 * h)) for h in HS]
    verdict = claim(records)
    closer = min(0.5 * h**2 / (0.1 * h) for h in HS)  # distance to the full-batch flow / to the SGD flow, at its smallest
    assert not verdict.passed and verdict.numbers["mlp_sgd_min_ratio_full_batch_to_sgd_modified"] == pytest.approx(closer)
    assert f"to the SGD modified flow >= {closer:.2f} over h (needs > 1 at every h)" in verdict.reason


def test_claim_needs_two_step_sizes():
    verdict = claim([_record("mlp", 0.1, 0.1, 0.01)])
    assert not verdict.passed and "two or more" in verdict.reason


def test_bad_input_names_the_field_and_allowed_values():
    base = CATALOG.get(NAME).sweep("tiny").base
    with pytest.raises(SpecError, match="problem.*model.*two_parameter.*mlp"):
        with_values(base, {"problem.model": "cnn"})
    with pytest.raises(SpecError, match="sgd_paths"):
        with_values(base, {"problem.sgd_paths": 8})  # the two-parameter model has no minibatches
    with pytest.raises(SpecError, match="batches must divide"):
        with_values(base, {"problem.model": "mlp", "problem.batches": 5})
    with pytest.raises(SpecError, match="whole number of steps"):
        steps_for(BackwardError(horizon=1.0), 0.3)
    with pytest.raises(SpecError, match="epochs"):
        steps_for(BackwardError(model="mlp", horizon=1.0, sgd_paths=2, batches=4), 0.1)
    with pytest.raises(SpecError, match="float64"):
        CATALOG.get(NAME).check(with_values(base, {"dtype": "float32"}))


@pytest.mark.slow
def test_the_integration_error_is_far_below_the_measured_distance():
    """RK4 at h/8 (the presets) against RK4 at h/32 on the MLP: the difference is < 1% of GD's O(h^2) distance."""
    model, h, horizon = TinyRegression(BackwardError(model="mlp"), seed=0), 0.025, 0.4
    steps = round(horizon / h)
    coarse, fine = (rk4(modified_gradient(model.loss, h), model.theta0, horizon, steps * k) for k in (8, 32))
    iterate = gradient_descent(gradient(model.loss), model.theta0, h, steps)
    assert (coarse - fine).norm() < 0.01 * (iterate - fine).norm()
