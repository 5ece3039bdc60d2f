"""Curvature probes against the dense Hessian / GGN of a tiny model (227 parameters, float64)."""

from __future__ import annotations

import pytest
import torch
from unchanged import leaves_unchanged
from torch import nn
from torch.func import functional_call

from biaslab.probes import curvature

TOL = 1e-8  # relative, for deterministic quantities in float64


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def tiny_data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 10, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


LOSS = nn.functional.cross_entropy


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(vector: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            size = shape.numel()
            params[name] = vector[start : start + size].view(shape)
            start += size
        return LOSS(functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss_of, flat)


def dense_ggn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def outputs_of(vector: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = vector[start : start + shape.numel()].view(shape)
            start += shape.numel()
        return functional_call(model, params, (x,)).reshape(-1)

    jac = torch.autograd.functional.jacobian(outputs_of, flat)  # (n * classes, dim)
    out = outputs_of(flat).detach()
    h_out = torch.autograd.functional.hessian(lambda o: LOSS(o.view(x.shape[0], -1), y), out)
    return jac.T @ h_out @ jac


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    x, y = tiny_data()
    return model, x, y, dense_hessian(model, x, y)


def test_operator_matches_dense_hessian_and_ggn(setup):
    model, x, y, hessian = setup
    v = torch.randn(hessian.shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with curvature.curvature_operator(model, LOSS, [(x, y)]) as (matvec, dim):
        assert dim == 227
        torch.testing.assert_close(matvec(v), hessian @ v, rtol=TOL, atol=1e-12)
    with curvature.curvature_operator(model, LOSS, [(x, y)], kind="ggn") as (matvec, _):
        torch.testing.assert_close(matvec(v), dense_ggn(model, x, y) @ v, rtol=TOL, atol=1e-12)


def test_batches_are_weighted_by_size(setup):
    model, x, y, hessian = setup
    v = torch.ones(hessian.shape[0], dtype=torch.float64)
    with curvature.curvature_operator(model, LOSS, [(x[:7], y[:7]), (x[7:], y[7:])]) as (matvec, _):
        torch.testing.assert_close(matvec(v), hessian @ v, rtol=TOL, atol=1e-12)


def test_lanczos_top_k_matches_dense_eigenvalues(setup):
    model, x, y, hessian = setup
    exact = torch.linalg.eigvalsh(hessian).flip(0)[:3]
    eigen = curvature.top_eigenvalues(model, LOSS, [(x, y)], k=3, tol=1e-10, max_iter=227, generator=torch.Generator().manual_seed(0))
    assert eigen.converged
    torch.testing.assert_close(torch.tensor(eigen.values, dtype=torch.float64), exact, rtol=1e-8, atol=1e-12)
    top_vector = eigen.vectors[0]
    torch.testing.assert_close(hessian @ top_vector, exact[0] * top_vector, rtol=1e-5, atol=1e-7)
    for value, residual, true in zip(eigen.values, eigen.residuals, exact.tolist()):
        assert abs(value - true) <= residual + 1e-12  # the residual bounds the error


def test_lanczos_stops_at_tolerance_and_warm_start_is_cheap(setup):
    model, x, y, hessian = setup
    exact = torch.linalg.eigvalsh(hessian)[-1].item()
    cold = curvature.top_eigenvalues(model, LOSS, [(x, y)], tol=1e-4, generator=torch.Generator().manual_seed(0))
    assert cold.converged and abs(cold.values[0] - exact) <= 1e-4 * exact
    warm = curvature.top_eigenvalues(model, LOSS, [(x, y)], tol=1e-4, start=cold.vectors[0])
    assert warm.converged and warm.iterations < cold.iterations and warm.iterations <= 3


def test_unconverged_lanczos_says_so(setup):
    model, x, y, _ = setup
    eigen = curvature.top_eigenvalues(model, LOSS, [(x, y)], k=3, tol=1e-12, max_iter=3, generator=torch.Generator().manual_seed(0))
    assert not eigen.converged and eigen.iterations == 3
    metrics = eigen.metrics()
    assert metrics["hessian_converged"] == 0.0 and "hessian_eig2" in metrics


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_estimates_cover_the_exact_trace(setup, method):
    model, x, y, hessian = setup
    exact = torch.trace(hessian).item()
    estimate = curvature.trace(model, LOSS, [(x, y)], probes=90, method=method, generator=torch.Generator().manual_seed(5))
    assert estimate.samples == 90 and estimate.stderr > 0
    assert abs(estimate.value - exact) <= 4 * estimate.stderr


def test_hutch_plus_plus_is_exact_when_the_sketch_spans_the_space():
    """On a rank-3 operator, a sketch of 10 vectors captures everything: the estimate is exact."""
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(50, 3, generator=g, dtype=torch.float64))[0]
    matrix = basis @ torch.diag(torch.tensor([5.0, 2.0, -1.0], dtype=torch.float64)) @ basis.T
    estimate = curvature.trace_of(lambda v: matrix @ v, 50, matrix, 30, "hutch++", g)
    assert estimate.value == pytest.approx(6.0, rel=1e-10)


def test_slq_with_full_steps_recovers_the_spectrum(setup):
    model, x, y, hessian = setup
    eigenvalues = torch.linalg.eigvalsh(hessian)
    density = curvature.spectral_density(model, LOSS, [(x, y)], probes=4, steps=227, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(density.weights.sum(dim=1), torch.ones(4, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    assert density.nodes.max().item() == pytest.approx(eigenvalues[-1].item(), rel=1e-6)
    assert density.nodes.min().item() == pytest.approx(eigenvalues[0].item(), rel=1e-6, abs=1e-8)
    estimate = density.trace()
    assert abs(estimate.value - eigenvalues.sum().item()) <= 4 * estimate.stderr
    grid = torch.linspace(eigenvalues[0].item() - 1, eigenvalues[-1].item() + 1, 2001, dtype=torch.float64)
    mass = torch.trapezoid(density.on_grid(grid), grid).item()
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_probes_leave_the_model_as_they_found_it(setup):
    model, x, y, _ = setup
    model.train()
    with leaves_unchanged(model):
        curvature.top_eigenvalues(model, LOSS, [(x, y)], k=2, generator=torch.Generator().manual_seed(0))
        curvature.trace(model, LOSS, [(x, y)], probes=6, generator=torch.Generator().manual_seed(0))
        curvature.spectral_density(model, LOSS, [(x, y)], probes=2, steps=10, generator=torch.Generator().manual_seed(0), kind="ggn")


def test_bad_kind_names_the_allowed_ones(setup):
    model, x, y, _ = setup
    with pytest.raises(ValueError, match="kind: 'fisher'.*allowed: hessian, ggn"):
        curvature.top_eigenvalues(model, LOSS, [(x, y)], kind="fisher")


def test_agrees_with_curvlinops_where_installed(setup):
    curvlinops = pytest.importorskip("curvlinops")
    model, x, y, hessian = setup
    params = [p for p in model.parameters()]
    operator = curvlinops.HessianLinearOperator(model, nn.CrossEntropyLoss(), params, [(x, y)])
    v = torch.randn(227, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with curvature.curvature_operator(model, LOSS, [(x, y)]) as (matvec, _):
        ours = matvec(v)
    theirs = operator @ v.numpy() if not hasattr(operator, "to_scipy") else operator @ v
    torch.testing.assert_close(torch.as_tensor(theirs, dtype=torch.float64).reshape(-1), ours, rtol=1e-8, atol=1e-12)
