"""Views of the loss landscape around a solution of any `nn.Module`: 1-D and 2-D slices, trajectories, lines.

A *slice* evaluates the training loss and the 0-1 error at theta* + a d1 (+ b d2)
on a grid of coordinates (a, b), for directions d1, d2 chosen one of three ways:

- `random_direction` with filter normalization (Li et al. 2018, "Visualizing
  the Loss Landscape of Neural Nets"): a Gaussian direction whose every filter
  (row of a weight matrix, output channel of a convolution kernel: the slice
  along the first dimension) is rescaled to the norm of the same filter of the
  weights, so slices of networks with different scales compare. Parameters with
  one dimension (biases, normalization scales) are zeroed, as with the paper's
  default `--xignore biasbn`; `one_dim="weights"` instead copies the weights
  there (the paper's other branch).
- `hessian_directions`: the top-k eigenvectors of the loss Hessian
  (`curvature.top_eigenvalues`), unit vectors in the full parameter space.
- `trajectory_directions`: the principal components of a training trajectory
  (Li et al. Sec. 7): PCA of the snapshots minus the final point; the
  trajectory projected on them (`project`) ends at the origin.

`line` evaluates the straight path (1 - t) theta_0 + t theta_1 (Goodfellow et
al. 2015's linear interpolation from init to solution), and `largest_bump` /
`is_monotone` test it; `second_difference` turns a 1-D slice into a curvature.

Every evaluation goes through `torch.func.functional_call` on perturbed copies
of the parameters, in eval mode, under `no_grad`, in data batches: the module,
its mode and its `.grad` are left as they were. Models with batch normalization
are refused (ValueError): the running statistics of theta* would be wrong at a
perturbed point and recomputing them per grid point is not implemented here.
Directions are dicts name -> tensor over the parameters that require grad.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from biaslab.probes.core import LossFn, measuring
from biaslab.probes.curvature import Batch, flatten, top_eigenvalues, trainable, unflatten

Params = dict[str, torch.Tensor]
OneDim = Literal["zero", "weights"]
NORMALIZATION_LAYERS = (nn.modules.batchnorm._BatchNorm,)


def parameters(model: nn.Module) -> Params:
    """Detached copies of the parameters that require grad (the point the landscape is viewed around)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def refuse_batch_norm(model: nn.Module, what: str = "landscape slices", advice: str = "remove it or fold it into the preceding layer") -> None:
    """ValueError for a model with batch normalization: its running statistics belong to the unperturbed weights."""
    found = [name for name, module in model.named_modules() if isinstance(module, NORMALIZATION_LAYERS)]
    if found:
        raise ValueError(f"model: {what} do not recompute batch-norm statistics at other weights; found batch norm in {', '.join(found)} ({advice})")


# ---------------------------------------------------------------- directions


def filter_normalize(direction: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], one_dim: OneDim = "zero") -> Params:
    """Li et al.'s filter normalization: each filter d[i] of a >= 2-D tensor scaled to ||w[i]|| / ||d[i]||.

    One-dimensional tensors (biases, norm scales) become 0 (`one_dim="zero"`, the paper's default) or
    a copy of the weights (`one_dim="weights"`).
    """
    if one_dim not in ("zero", "weights"):
        raise ValueError(f"one_dim: {one_dim!r}; allowed: zero, weights")
    normalized = {}
    for name, d in direction.items():
        w = weights[name]
        if d.ndim <= 1:
            normalized[name] = torch.zeros_like(d) if one_dim == "zero" else w.detach().clone()
            continue
        d_rows, w_rows = d.flatten(1), w.detach().flatten(1)  # (filters, rest)
        scale = w_rows.norm(dim=1, keepdim=True) / (d_rows.norm(dim=1, keepdim=True) + 1e-10)
        normalized[name] = (d_rows * scale).view_as(d)
    return normalized


def random_direction(
    weights: Mapping[str, torch.Tensor], generator: torch.Generator, normalization: Literal["filter", "none"] = "filter", one_dim: OneDim = "zero"
) -> Params:
    """A Gaussian direction shaped like `weights` (drawn on the CPU from `generator`), filter-normalized by default."""
    raw = {name: torch.randn(w.shape, generator=generator, dtype=torch.float64).to(w) for name, w in weights.items()}
    if normalization == "none":
        return raw
    if normalization != "filter":
        raise ValueError(f"normalization: {normalization!r}; allowed: filter, none")
    return filter_normalize(raw, weights, one_dim)


def hessian_directions(
    model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], k: int = 2, generator: torch.Generator | None = None, tol: float = 1e-3
) -> tuple[list[Params], list[float]]:
    """The top-k Hessian eigenvectors as directions (unit norm in the full space) and their eigenvalues."""
    eigen = top_eigenvalues(model, loss_fn, batches, k=k, tol=tol, generator=generator)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    like = trainable(model)
    directions = [dict(zip(names, (t.detach().clone() for t in unflatten(v, like)))) for v in eigen.vectors]
    return directions, list(eigen.values)


@dataclass(frozen=True)
class TrajectoryPCA:
    """Principal directions of a trajectory around its final point, and the trajectory in their coordinates."""

    directions: list[Params]  # k orthonormal directions (as flat vectors)
    explained: list[float]  # fraction of the snapshots' variance (about the final point) each direction explains
    coordinates: np.ndarray  # (snapshots, k): each snapshot minus the final point, projected


def trajectory_directions(snapshots: Sequence[Mapping[str, torch.Tensor]], final: Mapping[str, torch.Tensor], k: int = 2) -> TrajectoryPCA:
    """PCA of the snapshots minus `final` (Li et al. 2018, Sec. 7), uncentred as in the paper's code."""
    names = list(final)
    end = flatten([final[n] for n in names]).double()
    matrix = torch.stack([flatten([s[n] for n in names]).double() - end for s in snapshots])  # (snapshots, dim)
    if matrix.shape[0] < k:
        raise ValueError(f"snapshots: need at least k={k} snapshots, got {matrix.shape[0]}")
    _, singular, vh = torch.linalg.svd(matrix, full_matrices=False)
    total = singular.square().sum().clamp_min(1e-300)
    like = [final[n] for n in names]
    directions = [dict(zip(names, (t.clone() for t in unflatten(vh[i].to(like[0]), like)))) for i in range(k)]
    explained = (singular[:k].square() / total).tolist()
    return TrajectoryPCA(directions, explained, (matrix @ vh[:k].T).cpu().numpy())


def project(points: Sequence[Mapping[str, torch.Tensor]], center: Mapping[str, torch.Tensor], directions: Sequence[Mapping[str, torch.Tensor]]) -> np.ndarray:
    """(points, k) least-squares coordinates of each point minus `center` in the span of `directions`."""
    names = list(center)
    basis = torch.stack([flatten([d[n] for n in names]).double() for d in directions])  # (k, dim)
    offsets = torch.stack([flatten([p[n] for n in names]).double() for p in points]) - flatten([center[n] for n in names]).double()
    coefficients = torch.linalg.lstsq(basis.T, offsets.T).solution  # (k, points)
    return coefficients.T.cpu().numpy()


# ---------------------------------------------------------------- evaluation


def loss_and_error(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, params: Mapping[str, torch.Tensor], batch_size: int = 4096
) -> tuple[float, float]:
    """Mean loss and 0-1 error of the model with `params` swapped in (the module's own tensors untouched)."""
    refuse_batch_norm(model)
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    wrong = torch.zeros((), dtype=torch.float64, device=x.device)
    with measuring(model):
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            out = functional_call(model, dict(params), (xb,))
            total_loss = total_loss + loss_fn(out, yb).double() * xb.shape[0]
            wrong = wrong + (out.argmax(dim=1) != yb).sum()
        values = torch.stack([total_loss, wrong]).div(x.shape[0]).tolist()
    return values[0], values[1]


def _shifted(center: Mapping[str, torch.Tensor], steps: Sequence[tuple[float, Mapping[str, torch.Tensor]]]) -> Params:
    """center + sum_i a_i d_i."""
    return {name: c + sum(a * d[name] for a, d in steps) for name, c in center.items()}


@dataclass(frozen=True)
class Slice:
    """Loss and error on a grid: 1-D (alphas only; arrays (n,)) or 2-D (arrays (len(betas), len(alphas)))."""

    alphas: np.ndarray
    betas: np.ndarray | None
    loss: np.ndarray
    error: np.ndarray


def slice_1d(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, direction: Mapping[str, torch.Tensor],
    alphas: Sequence[float], center: Mapping[str, torch.Tensor] | None = None, batch_size: int = 4096,
) -> Slice:  # fmt: skip
    """L(center + a d) and error for each a in `alphas` (center: the model's parameters)."""
    center = parameters(model) if center is None else center
    values = [loss_and_error(model, loss_fn, x, y, _shifted(center, [(float(a), direction)]), batch_size) for a in alphas]
    return Slice(np.asarray(alphas, dtype=float), None, np.array([v[0] for v in values]), np.array([v[1] for v in values]))


def slice_2d(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, directions: tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
    alphas: Sequence[float], betas: Sequence[float], center: Mapping[str, torch.Tensor] | None = None, batch_size: int = 4096,
) -> Slice:  # fmt: skip
    """L(center + a d1 + b d2) and error on the grid, arrays shaped (len(betas), len(alphas)) for contour plots."""
    center = parameters(model) if center is None else center
    d1, d2 = directions
    loss = np.empty((len(betas), len(alphas)))
    error = np.empty_like(loss)
    for i, b in enumerate(betas):
        for j, a in enumerate(alphas):
            loss[i, j], error[i, j] = loss_and_error(model, loss_fn, x, y, _shifted(center, [(float(a), d1), (float(b), d2)]), batch_size)
    return Slice(np.asarray(alphas, dtype=float), np.asarray(betas, dtype=float), loss, error)


def line(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, start: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor], ts: Sequence[float], batch_size: int = 4096,
) -> Slice:  # fmt: skip
    """Loss and error at (1 - t) start + t end: Goodfellow et al. 2015's linear path (t=0 start, t=1 end)."""
    if set(start) != set(end):
        raise ValueError("start and end: need the same parameter names (one architecture)")
    direction = {name: end[name] - start[name] for name in start}
    return slice_1d(model, loss_fn, x, y, direction, ts, center=start, batch_size=batch_size)


def largest_bump(loss: Sequence[float]) -> float:
    """max_t (L(t) - min_{s < t} L(s)): the largest rise above the best value seen so far (0 for a non-increasing curve)."""
    values = np.asarray(loss, dtype=float)
    if values.size < 2:
        return 0.0
    running_min = np.minimum.accumulate(values)[:-1]
    return float(max(0.0, np.max(values[1:] - running_min)))


def is_monotone(loss: Sequence[float], tolerance: float = 1e-3) -> bool:
    """No rise above the best value so far larger than `tolerance` times the starting loss L(0)."""
    values = np.asarray(loss, dtype=float)
    return bool(np.all(np.isfinite(values))) and largest_bump(values) <= tolerance * abs(values[0])


def second_difference(alphas: Sequence[float], loss: Sequence[float]) -> float:
    """(L(h) - 2 L(0) + L(-h)) / h^2 at the grid point a = 0 of an evenly spaced, symmetric 1-D slice."""
    a = np.asarray(alphas, dtype=float)
    zero = int(np.argmin(np.abs(a)))
    if abs(a[zero]) > 1e-12 or zero == 0 or zero == len(a) - 1:
        raise ValueError("alphas: need 0 inside the grid, with a point on each side")
    h_left, h_right = a[zero] - a[zero - 1], a[zero + 1] - a[zero]
    if not np.isclose(h_left, h_right):
        raise ValueError(f"alphas: need even spacing around 0, got steps {h_left} and {h_right}")
    values = np.asarray(loss, dtype=float)
    return float((values[zero + 1] - 2 * values[zero] + values[zero - 1]) / h_left**2)
