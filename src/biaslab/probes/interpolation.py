"""The loss along the straight line between two parameter settings of one architecture (Goodfellow et al. 2015;
Keskar et al. 2017, Fig. 3).

`linear_path(model, start, end, alphas, loss_fn, x, y)` evaluates the model at
w(alpha) = (1 - alpha) * start + alpha * end for each alpha (alpha = 0 is
`start`, 1 is `end`; values outside [0, 1] extrapolate), through
`torch.func.functional_call`: the model's own parameters are never touched.
Returns the loss and, for integer labels, the 0-1 error at each alpha.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from biaslab.probes.core import LossFn, measuring


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's named parameters (one end of a path)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def linear_path(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    end: dict[str, torch.Tensor],
    alphas: Sequence[float],
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
) -> dict[str, list[float]]:
    """{'loss': [...], 'error': [...]} at w = (1 - alpha) start + alpha end for each alpha (error NaN for real targets)."""
    if set(start) != set(end):
        raise ValueError("start and end: need the same parameter names (one architecture)")
    losses, errors = [], []
    with measuring(model):
        for alpha in alphas:
            params = {name: torch.lerp(start[name], end[name], float(alpha)) for name in start}
            out = functional_call(model, params, (x,))
            losses.append(loss_fn(out, y))
            errors.append(out.new_tensor(float("nan")) if y.is_floating_point() else (out.argmax(dim=1) != y).to(out.dtype).mean())
    return {"loss": torch.stack(losses).tolist(), "error": torch.stack(errors).tolist()}
