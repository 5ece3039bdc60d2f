"""Sharpness of a solution: how much the loss rises when the weights move a little.

Three measures, each a function of the model, its loss and data batches, that
perturbs a copy of the parameters through `torch.func.functional_call` (the
model itself is never touched):

- `keskar`: worst-case epsilon-sharpness of Keskar et al. 2017,
  100 * (max_{z in C} L(w + z) - L(w)) / (1 + L(w)) over the box
  C = {|z_i| <= eps * (|w_i| + 1)}, maximized by projected sign-gradient ascent
  (Keskar et al. used L-BFGS-B in the full space, A = I; the ascent here reaches
  the same box vertices for a convex loss). NOT invariant to the ReLU rescaling
  w_l -> a w_l, w_{l+1} -> w_{l+1} / a (Dinh et al. 2017): the "+ 1" and the
  absolute box both change under it.
- `adaptive`: max_{||z / |w| ||_2 <= rho} L(w + z) - L(w), the adaptive
  sharpness of Kwon et al. 2021 / Andriushchenko et al. 2023, by projected
  gradient ascent in the normalized coordinates u = z / |w|. Invariant to the
  rescaling: w + |w| * u scales with w, so the ascent path is the same.
- `average`: E_z[L(w + z)] - L(w) with z ~ N(0, sigma^2) per weight
  (`relative=False`, not invariant) or z ~ N(0, sigma^2 w^2) (`relative=True`,
  invariant), the flatness that PAC-Bayes bounds see (Jiang et al. 2020), with
  its standard error over samples.

Each returns a `Sharpness` whose `metrics()` names the value, its standard
error where it is an estimate, and `*_rescaling_invariant` (1.0 or 0.0), so a
report never shows a non-invariant number without saying so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from biaslab.probes.core import LossFn, Metrics
from biaslab.probes.curvature import Batch, evaluating


@dataclass(frozen=True)
class Sharpness:
    """One sharpness measure with what it is and how it was estimated."""

    name: str
    value: float
    stderr: float  # 0 for a maximization (it is a lower bound on the true maximum, not an estimate)
    samples: int  # ascent steps or Monte-Carlo samples
    rescaling_invariant: bool
    base_loss: float

    def metrics(self) -> Metrics:
        row = {self.name: self.value, f"{self.name}_rescaling_invariant": float(self.rescaling_invariant)}
        return row | ({f"{self.name}_se": self.stderr} if self.stderr > 0 else {})


class _Perturbable:
    """The model's loss as a function of an additive perturbation of its parameters."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch]):
        self.model, self.loss_fn, self.batches = model, loss_fn, list(batches)
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.weights = [p.detach() for name, p in model.named_parameters() if p.requires_grad]
        self.total = sum(x.shape[0] for x, _ in self.batches)

    def loss(self, deltas: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mean loss over the batches at w + delta (differentiable in delta)."""
        params = {name: w + d for name, w, d in zip(self.names, self.weights, deltas)}
        parts = [self.loss_fn(functional_call(self.model, params, (x,)), y) * (x.shape[0] / self.total) for x, y in self.batches]
        return torch.stack(parts).sum()

    def zeros(self) -> list[torch.Tensor]:
        return [torch.zeros_like(w) for w in self.weights]


def keskar(
    model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], epsilon: float = 1e-3, steps: int = 20
) -> Sharpness:
    """Keskar et al.'s epsilon-sharpness in the box |z_i| <= epsilon (|w_i| + 1), in percent of 1 + L(w)."""
    with evaluating(model):
        f = _Perturbable(model, loss_fn, batches)
        bounds = [epsilon * (w.abs() + 1) for w in f.weights]
        base = f.loss(f.zeros()).item()
        best = _sign_ascent(f, bounds, steps)
    return Sharpness("sharpness_keskar", 100 * (best - base) / (1 + base), 0.0, steps, False, base)


def _sign_ascent(f: _Perturbable, bounds: list[torch.Tensor], steps: int) -> float:
    """Projected sign-gradient ascent in the box |z| <= bounds from z = 0; the largest loss seen."""
    deltas = f.zeros()
    step_size = 2.5 / steps  # of the box half-width per step (Madry et al.'s rule: reach any vertex and back)
    seen = []
    for _ in range(steps):
        deltas = [d.requires_grad_(True) for d in deltas]
        loss = f.loss(deltas)
        grads = torch.autograd.grad(loss, deltas)
        seen.append(loss.detach())
        deltas = [torch.clamp(d.detach() + step_size * b * g.sign(), -b, b) for d, b, g in zip(deltas, bounds, grads)]
    seen.append(f.loss(deltas).detach())
    return torch.stack(seen).max().item()


def adaptive(
    model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], rho: float = 0.05, steps: int = 20
) -> Sharpness:
    """Adaptive sharpness: max over ||z / |w| ||_2 <= rho of L(w + z) - L(w), by projected gradient ascent."""
    with evaluating(model):
        f = _Perturbable(model, loss_fn, batches)
        base = f.loss(f.zeros()).item()
        scales = [w.abs() for w in f.weights]
        units = f.zeros()
        seen = []
        for _ in range(steps):
            units = [u.requires_grad_(True) for u in units]
            loss = f.loss([s * u for s, u in zip(scales, units)])
            grads = torch.autograd.grad(loss, units)
            seen.append(loss.detach())
            units = _project_ball([u.detach() + (2 * rho / steps) * g / _norm(grads) for u, g in zip(units, grads)], rho)
        seen.append(f.loss([s * u for s, u in zip(scales, units)]).detach())
    return Sharpness("sharpness_adaptive", torch.stack(seen).max().item() - base, 0.0, steps, True, base)


def _norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum(t.square().sum() for t in tensors)).clamp_min(1e-30)


def _project_ball(tensors: list[torch.Tensor], radius: float) -> list[torch.Tensor]:
    factor = torch.clamp(radius / _norm(tensors), max=1.0)
    return [t * factor for t in tensors]


def average(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    sigma: float = 0.01,
    samples: int = 20,
    relative: bool = False,
    generator: torch.Generator | None = None,
) -> Sharpness:
    """E[L(w + z)] - L(w) over Gaussian z (std sigma, or sigma * |w| when `relative`), with its standard error."""
    with evaluating(model), torch.no_grad():
        f = _Perturbable(model, loss_fn, batches)
        base = f.loss(f.zeros()).item()
        rises = []
        for _ in range(samples):
            noise = [torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device) for w in f.weights]
            rises.append(f.loss([sigma * (w.abs() if relative else 1) * z for w, z in zip(f.weights, noise)]) - base)
        values = torch.stack(rises)
    stderr = values.std().item() / math.sqrt(samples) if samples > 1 else float("inf")
    name = "sharpness_average_relative" if relative else "sharpness_average"
    return Sharpness(name, values.mean().item(), stderr, samples, relative, base)


def error_rate(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of wrong argmax predictions: the 0-1 loss the PAC-Bayes flatness measures perturb."""
    return (out.argmax(dim=1) != y).to(out.dtype).mean()


def pacbayes_flatness(
    model: nn.Module,
    batches: Sequence[Batch],
    target: float = 0.1,
    relative: bool = False,
    samples: int = 10,
    generator: torch.Generator | None = None,
    bracket: tuple[float, float] = (1e-4, 10.0),
    iterations: int = 14,
) -> Sharpness:
    """1 / sigma'^2 for the largest sigma' whose Gaussian perturbation raises the expected training error by <= target.

    Jiang et al. 2020's "pacbayes.flatness" (z ~ N(0, sigma^2)) and, with
    `relative`, "pacbayes.mag.flatness" (z ~ N(0, sigma^2 w^2): invariant to the
    rescaling). Bisection on log sigma inside `bracket` with the same noise
    draws at every sigma (common random numbers keep the search monotone); a
    sigma' at the bracket's end is reported as is.
    """
    with evaluating(model), torch.no_grad():
        f = _Perturbable(model, error_rate, batches)
        base = f.loss(f.zeros()).item()
        draws = [[torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device) for w in f.weights] for _ in range(samples)]
        scales = [w.abs() if relative else torch.ones_like(w) for w in f.weights]

        def rise(sigma: float) -> float:
            errors = [f.loss([sigma * s * z for s, z in zip(scales, draw)]) for draw in draws]
            return torch.stack(errors).mean().item() - base

        low, high = math.log(bracket[0]), math.log(bracket[1])
        if rise(math.exp(high)) <= target:
            low = high
        elif rise(math.exp(low)) > target:
            high = low
        for _ in range(iterations if low < high else 0):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if rise(math.exp(middle)) <= target else (low, middle)
    sigma = math.exp(low)
    name = "pacbayes_mag_flatness" if relative else "pacbayes_flatness"
    return Sharpness(name, 1.0 / sigma**2, 0.0, samples, relative, base)
