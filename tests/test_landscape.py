"""Landscape slices against closed forms: a linear model with squared loss is an exact quadratic in its parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from biaslab.probes import landscape

N, D, K = 50, 6, 3


def squared_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    target = torch.zeros_like(out).scatter(1, y[:, None], 1.0)
    return 0.5 * (out - target).square().sum(dim=1).mean()


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (N,), generator=g)
    model = nn.Linear(D, K).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(K, D, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(K, generator=g, dtype=torch.float64))
    return model, x, y


def _outputs(weight, bias, x):
    return x @ weight.T + bias


def test_2d_slice_of_a_linear_model_is_the_closed_form_quadratic(problem):
    model, x, y = problem
    center = landscape.parameters(model)
    g = torch.Generator().manual_seed(1)
    d1 = landscape.random_direction(center, g, normalization="none")
    d2 = landscape.random_direction(center, g, normalization="none")
    alphas, betas = np.linspace(-1.0, 1.0, 5), np.linspace(-0.5, 1.5, 4)
    result = landscape.slice_2d(model, squared_loss, x, y, (d1, d2), alphas, betas)
    # independent computation: out = r0 + a o1 + b o2 exactly; L = 0.5 mean ||out - T||^2 expanded in numpy
    target = np.eye(K)[y.numpy()]
    r0 = _outputs(center["weight"], center["bias"], x).numpy() - target
    o1 = _outputs(d1["weight"], d1["bias"], x).numpy()
    o2 = _outputs(d2["weight"], d2["bias"], x).numpy()
    mean = lambda u, v: float((u * v).sum(axis=1).mean())  # noqa: E731
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            expected = 0.5 * (mean(r0, r0) + 2 * a * mean(r0, o1) + 2 * b * mean(r0, o2) + a * a * mean(o1, o1) + 2 * a * b * mean(o1, o2) + b * b * mean(o2, o2))
            assert abs(result.loss[i, j] - expected) < 1e-10
            predicted = (r0 + target + a * o1 + b * o2).argmax(axis=1)
            assert result.error[i, j] == pytest.approx(float((predicted != y.numpy()).mean()), abs=1e-12)
    assert result.loss.shape == (len(betas), len(alphas))


def test_1d_slice_along_the_top_hessian_eigenvector_has_the_eigenvalue_as_second_difference(problem):
    model, x, y = problem
    (direction,), (value,) = landscape.hessian_directions(model, squared_loss, [(x, y)], k=1, generator=torch.Generator().manual_seed(2), tol=1e-10)
    # dense Hessian of the same loss in the flat parameters (weight then bias), independently of Lanczos
    flat = torch.cat([model.weight.detach().flatten(), model.bias.detach()])

    def loss_of(theta):
        return squared_loss(x @ theta[: K * D].view(K, D).T + theta[K * D :], y)

    dense = torch.autograd.functional.hessian(loss_of, flat)
    assert value == pytest.approx(torch.linalg.eigvalsh(dense)[-1].item(), rel=1e-8)
    alphas = np.linspace(-0.2, 0.2, 5)
    curve = landscape.slice_1d(model, squared_loss, x, y, direction, alphas)
    assert landscape.second_difference(alphas, curve.loss) == pytest.approx(value, rel=1e-6)
    norm = torch.cat([d.flatten() for d in direction.values()]).norm().item()
    assert norm == pytest.approx(1.0, abs=1e-8)


def test_filter_normalization_gives_each_row_the_weight_rows_norm():
    model = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Conv1d(1, 4, 3))  # odd mix on purpose: a conv kernel (4, 1, 3)
    weights = landscape.parameters(model)
    direction = landscape.random_direction(weights, torch.Generator().manual_seed(0))
    for name, w in weights.items():
        d = direction[name]
        if w.ndim >= 2:
            assert torch.allclose(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5)
            assert not torch.allclose(d, w)  # a new direction, not the weights
        else:
            assert torch.count_nonzero(d) == 0  # biases zeroed (Li et al.'s --xignore biasbn)
    copied = landscape.random_direction(weights, torch.Generator().manual_seed(0), one_dim="weights")
    assert torch.equal(copied["0.bias"], weights["0.bias"])
    with pytest.raises(ValueError, match="one_dim"):
        landscape.filter_normalize(direction, weights, one_dim="drop")


def test_trajectory_pca_is_orthonormal_ends_at_the_origin_and_recovers_a_planar_path(problem):
    model, _, _ = problem
    final = landscape.parameters(model)
    g = torch.Generator().manual_seed(3)
    u = landscape.random_direction(final, g, normalization="none")
    v = landscape.random_direction(final, g, normalization="none")
    coeffs = [(3.0 * (1 - t) ** 2, np.sin(4 * t) * (1 - t)) for t in np.linspace(0, 1, 12)]  # ends at (0, 0)
    snapshots = [{n: final[n] + a * u[n] + b * v[n] for n in final} for a, b in coeffs]
    pca = landscape.trajectory_directions(snapshots, final, k=2)
    basis = torch.stack([torch.cat([d[n].flatten() for n in final]) for d in pca.directions])
    assert torch.allclose(basis @ basis.T, torch.eye(2, dtype=basis.dtype), atol=1e-10)
    assert np.allclose(pca.coordinates[-1], 0.0, atol=1e-12)
    assert sum(pca.explained) == pytest.approx(1.0, abs=1e-10)  # the path lies in a plane
    # the projected path reproduces every snapshot: reconstruct and compare
    for snapshot, (a, b) in zip(snapshots, pca.coordinates):
        rebuilt = {n: final[n] + a * pca.directions[0][n] + b * pca.directions[1][n] for n in final}
        assert all(torch.allclose(rebuilt[n], snapshot[n], atol=1e-10) for n in final)
    again = landscape.project(snapshots, final, pca.directions)
    assert np.allclose(again, pca.coordinates, atol=1e-10)


def test_slices_leave_the_model_unchanged(problem):
    model, x, y = problem
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    center = landscape.parameters(model)
    direction = landscape.random_direction(center, torch.Generator().manual_seed(0))
    landscape.slice_2d(model, squared_loss, x, y, (direction, direction), [-1.0, 0.0, 1.0], [0.0, 1.0])
    landscape.hessian_directions(model, squared_loss, [(x, y)], k=2, generator=torch.Generator().manual_seed(0))
    landscape.line(model, squared_loss, x, y, center, {n: 0 * t for n, t in center.items()}, [0.0, 0.5, 1.0])
    assert model.training
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in model.named_parameters())


def test_line_ends_at_its_endpoints_and_center_of_a_slice_is_the_model(problem):
    model, x, y = problem
    center = landscape.parameters(model)
    start = {n: torch.zeros_like(t) for n, t in center.items()}
    path = landscape.line(model, squared_loss, x, y, start, center, [0.0, 1.0])
    base_loss, base_error = landscape.loss_and_error(model, squared_loss, x, y, center)
    assert path.loss[1] == pytest.approx(base_loss, abs=1e-12) and path.error[1] == base_error
    assert path.loss[0] == pytest.approx(squared_loss(torch.zeros(N, K, dtype=torch.float64), y).item(), abs=1e-12)


def test_batch_norm_models_are_refused_clearly():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with pytest.raises(ValueError, match="batch-norm.*1"):
        landscape.loss_and_error(model, squared_loss, x, y, landscape.parameters(model))


def test_monotone_test_and_bump():
    assert landscape.is_monotone([2.0, 1.5, 1.0, 0.2])
    assert landscape.largest_bump([2.0, 1.0, 1.5, 0.5]) == pytest.approx(0.5)
    assert not landscape.is_monotone([2.0, 1.0, 1.5, 0.5])
    assert landscape.is_monotone([2.0, 1.0, 1.001, 0.5], tolerance=1e-3)  # a rise of 0.001 <= 1e-3 * 2.0
    assert not landscape.is_monotone([2.0, 1.0, 1.003, 0.5], tolerance=1e-3)
    assert not landscape.is_monotone([2.0, float("nan"), 0.5])


def test_second_difference_of_a_parabola_and_bad_grids():
    alphas = np.linspace(-1, 1, 11)
    assert landscape.second_difference(alphas, 3.0 * alphas**2 + alphas + 1) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="alphas"):
        landscape.second_difference(np.linspace(0.1, 1, 5), np.zeros(5))
