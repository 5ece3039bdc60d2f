"""The empirical neural tangent kernel of any `nn.Module`, kernel alignment, and the first-order Taylor model.

- `empirical_ntk(model, params, x)`: K[i, j] = sum_c <d f_c(x_i)/d w, d f_c(x_j)/d w> (the trace over
  outputs of the tangent kernel), with the Jacobian from `torch.func.jacrev` at the given parameters.
  Memory is n * outputs * parameters numbers: keep n to a few hundred.
- `kernel_alignment(K1, K2) = <K1, K2>_F / (||K1||_F ||K2||_F)`: 1 when the kernels are proportional.
- `linearized_outputs(model, params0, params, x) = J(x; w0) (w - w0)` by a forward-mode product
  (`torch.func.jvp`), differentiable in `params`: the change of the first-order Taylor model around w0.

Parameters are passed as dicts name -> tensor (`torch.func.functional_call`), so the model itself is never
modified.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp

Params = dict[str, torch.Tensor]


def empirical_ntk(model: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """(n, n) tangent kernel of the model's outputs at `params`, summed over output coordinates."""
    detached = {name: p.detach() for name, p in params.items()}
    jacobians = jacrev(lambda q: functional_call(model, q, (x,)))(detached)  # name -> (n, outputs, *shape)
    n, outputs = x.shape[0], next(iter(jacobians.values())).shape[1]
    flat = torch.cat([j.reshape(n, outputs, -1) for j in jacobians.values()], dim=2)  # (n, outputs, P)
    return torch.einsum("ncp,mcp->nm", flat, flat)


def kernel_alignment(first: torch.Tensor, second: torch.Tensor) -> float:
    """<K1, K2>_F / (||K1||_F ||K2||_F)."""
    return ((first * second).sum() / (first.norm() * second.norm())).item()


def linearized_outputs(model: nn.Module, params0: Params, params: Params, x: torch.Tensor) -> torch.Tensor:
    """J(x; w0) (w - w0): (n, outputs), differentiable with respect to `params`."""
    delta = {name: params[name] - params0[name] for name in params0}
    _, tangent = jvp(lambda q: functional_call(model, q, (x,)), (params0,), (delta,))
    return tangent


def relative_change(params: Params, params0: Params) -> float:
    """||w - w0|| / ||w0|| over all parameters."""
    moved = sum((params[name].detach() - p0).square().sum() for name, p0 in params0.items())
    return (moved.sqrt() / torch.sqrt(sum(p0.square().sum() for p0 in params0.values()))).item()
