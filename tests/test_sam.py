"""SAM and ASAM (Foret et al. 2021; Kwon et al. 2021) as optimizers: one step equals the update written out by hand."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from biaslab.data import Dataset
from biaslab.spec import SpecError, TrainSpec, with_values, RunSpec
from biaslab.train import fit, minimize


def tiny_data(n: int = 12) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (n,), generator=g)
    return Dataset(x, y, x, y, 2, torch.zeros(n, dtype=torch.bool), "tiny")


def by_hand(model: nn.Module, data: Dataset, rho: float, lr: float, momentum: float, adaptive: bool, steps: int) -> nn.Module:
    """Full-batch SAM written out: g at w, e = rho T^2 g / ||T g||, gradient at w + e, heavy-ball SGD from w."""
    model = copy.deepcopy(model)
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    loss = lambda: nn.functional.cross_entropy(model(data.x_train), data.y_train)  # noqa: E731
    for _ in range(steps):
        g = torch.autograd.grad(loss(), params)
        t = [p.detach().abs() if adaptive else torch.ones_like(p) for p in params]
        norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
        e = [rho * ti**2 * gi / norm for ti, gi in zip(t, g)]
        with torch.no_grad():
            for p, ei in zip(params, e):
                p += ei
        g_sharp = torch.autograd.grad(loss(), params)
        with torch.no_grad():
            for p, ei, v, gs in zip(params, e, velocity, g_sharp):
                p -= ei
                v.mul_(momentum).add_(gs)
                p -= lr * v
    return model


@pytest.mark.parametrize("optimizer", ["sam", "asam"])
def test_a_sam_step_is_the_two_step_update(optimizer):
    data = tiny_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    expected = by_hand(model, data, rho=0.3, lr=0.1, momentum=0.9, adaptive=optimizer == "asam", steps=5)
    spec = TrainSpec(optimizer=optimizer, rho=0.3, lr=0.1, momentum=0.9, batch_size=None, max_steps=5, eval_every=5)
    fit(model, data, spec, torch.Generator().manual_seed(0))
    for a, b in zip(model.parameters(), expected.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())


def test_sam_differs_from_sgd_and_asam_from_sam():
    data = tiny_data()
    torch.manual_seed(1)
    start = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    finals = {}
    for optimizer in ("sgd", "sam", "asam"):
        model = copy.deepcopy(start)
        extra = {"rho": 0.5} if optimizer != "sgd" else {}
        fit(model, data, TrainSpec(optimizer=optimizer, lr=0.1, batch_size=None, max_steps=3, eval_every=3, **extra), torch.Generator())
        finals[optimizer] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.allclose(finals["sam"], finals["sgd"]) and not torch.allclose(finals["asam"], finals["sam"])


def test_minimize_takes_sam_steps_too():
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    result = minimize([w], lambda: (w**4).sum(), TrainSpec(optimizer="sam", rho=0.1, lr=0.01, batch_size=None, max_steps=50, eval_every=50))
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_rho_is_refused_unless_the_optimizer_reads_it():
    with pytest.raises(SpecError, match="train.rho: only optimizer 'sam' or 'asam' reads it"):
        with_values(RunSpec(), {"train.rho": 0.1})
    with_values(RunSpec(), {"train.optimizer": "sam", "train.rho": 0.1})
