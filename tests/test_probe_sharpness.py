"""Sharpness probes against closed forms on a linear model, and the rescaling (in)variance they claim."""

from __future__ import annotations

import math

import pytest
import torch
from unchanged import leaves_unchanged
from torch import nn

from biaslab.probes import sharpness


def squared(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out.squeeze(-1) - y).square().mean()


@pytest.fixture()
def linear_one_example():
    """L(w) = (w.x - y)^2 / 2 on one example: every maximum over a box or ball has a closed form."""
    model = nn.Linear(5, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -1.0, 2.0, 0.0, -0.3]], dtype=torch.float64))
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5, 3.0]], dtype=torch.float64)
    y = torch.tensor([1.0], dtype=torch.float64)
    return model, x, y


def test_keskar_reaches_the_box_vertex(linear_one_example):
    model, x, y = linear_one_example
    w = model.weight.detach()[0]
    r = (w @ x[0] - y[0]).item()
    eps = 1e-2
    worst = abs(r) + (eps * (w.abs() + 1) * x[0].abs()).sum().item()
    expected = 100 * (0.5 * worst**2 - 0.5 * r**2) / (1 + 0.5 * r**2)
    result = sharpness.keskar(model, squared, [(x, y)], epsilon=eps, steps=10)
    assert result.value == pytest.approx(expected, rel=1e-9)
    assert result.metrics()["sharpness_keskar_rescaling_invariant"] == 0.0


def test_adaptive_reaches_the_ball_boundary(linear_one_example):
    model, x, y = linear_one_example
    w = model.weight.detach()[0]
    r = (w @ x[0] - y[0]).item()
    rho = 0.1
    worst = abs(r) + rho * (w.abs() * x[0]).norm().item()
    result = sharpness.adaptive(model, squared, [(x, y)], rho=rho, steps=20)
    assert result.value == pytest.approx(0.5 * worst**2 - 0.5 * r**2, rel=1e-6)
    assert result.rescaling_invariant


def test_average_sharpness_matches_its_expectation(linear_one_example):
    model, x, y = linear_one_example
    sigma = 0.05
    expected = 0.5 * sigma**2 * x.square().sum().item()  # E[(r + z.x)^2 - r^2] / 2
    result = sharpness.average(model, squared, [(x, y)], sigma=sigma, samples=400, generator=torch.Generator().manual_seed(0))
    assert result.samples == 400 and result.stderr > 0
    assert abs(result.value - expected) <= 4 * result.stderr


def relu_net_and_rescaled(alpha: float) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)).double()
    twin = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)).double()
    with torch.no_grad():
        twin[0].weight.copy_(alpha * net[0].weight)
        twin[0].bias.copy_(alpha * net[0].bias)
        twin[2].weight.copy_(net[2].weight / alpha)
        twin[2].bias.copy_(net[2].bias)
    return net, twin


def test_adaptive_is_invariant_to_relu_rescaling_and_keskar_is_not():
    net, twin = relu_net_and_rescaled(alpha=8.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (64,), generator=g)
    loss = nn.functional.cross_entropy
    torch.testing.assert_close(net(x), twin(x))  # the same function
    a, b = sharpness.adaptive(net, loss, [(x, y)], rho=0.2), sharpness.adaptive(twin, loss, [(x, y)], rho=0.2)
    assert a.value > 0 and a.value == pytest.approx(b.value, rel=1e-9)
    relative = [sharpness.average(m, loss, [(x, y)], sigma=0.1, samples=10, relative=True, generator=torch.Generator().manual_seed(1)) for m in (net, twin)]
    assert relative[0].value == pytest.approx(relative[1].value, rel=1e-9)
    k1, k2 = sharpness.keskar(net, loss, [(x, y)], epsilon=1e-2), sharpness.keskar(twin, loss, [(x, y)], epsilon=1e-2)
    assert not math.isclose(k1.value, k2.value, rel_tol=0.05)  # the box sees the rescaling


def test_sharpness_probes_leave_the_model_unchanged():
    net, _ = relu_net_and_rescaled(alpha=1.0)
    net.train()
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    loss = nn.functional.cross_entropy
    with leaves_unchanged(net):
        sharpness.keskar(net, loss, [(x, y)], steps=3)
        sharpness.adaptive(net, loss, [(x, y)], steps=3)
        sharpness.average(net, loss, [(x, y)], samples=3, generator=torch.Generator().manual_seed(0))
        sharpness.pacbayes_flatness(net, [(x, y)], samples=3, generator=torch.Generator().manual_seed(0))


def test_pacbayes_flatness_finds_the_sigma_where_error_rises_by_the_target():
    """A linear classifier on 1-D data with margin: the error rise at sigma has a closed form; check the bisection hits it."""
    model = nn.Linear(1, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0], [-1.0]], dtype=torch.float64))
    x = torch.linspace(0.5, 2.0, 50, dtype=torch.float64)[:, None]
    y = torch.zeros(50, dtype=torch.int64)
    result = sharpness.pacbayes_flatness(model, [(x, y)], target=0.1, samples=200, generator=torch.Generator().manual_seed(0))
    sigma = result.value ** -0.5
    # independent check: with the same seed, the mean error at sigma is <= 0.1 and at 1.05 sigma it is above
    g = torch.Generator().manual_seed(0)
    draws = [torch.randn(2, 1, generator=g, dtype=torch.float64) for _ in range(200)]

    def rise(s: float) -> float:
        errors = [((x @ (model.weight + s * z).T).argmax(1) != y).double().mean() for z in draws]
        return torch.stack(errors).mean().item()

    assert rise(sigma) <= 0.1 < rise(1.05 * sigma)
    assert not result.rescaling_invariant
    assert sharpness.pacbayes_flatness(model, [(x, y)], relative=True, generator=torch.Generator().manual_seed(0)).rescaling_invariant
