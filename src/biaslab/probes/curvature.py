"""Curvature of the loss of any `nn.Module`: top Hessian (or GGN) eigenvalues, trace and spectral density.

The operator is the Hessian (or the generalized Gauss-Newton matrix J^T H_out J)
of the *mean* loss over the given batches, with respect to every parameter that
requires grad, applied to flat vectors (double backward; the gradient graph of
each batch is built once and reused by every product). On top of it:

- `top_eigenvalues`: Lanczos with full reorthogonalization, stopped when every
  wanted Ritz pair has residual ||H s - theta s|| <= tol * |theta| (then theta is
  within that residual of a true eigenvalue). Warm start by passing the last
  eigenvector as `start`: tracking sharpness during training then costs a few
  products per check instead of a cold solve.
- `trace`: Hutchinson (Rademacher probes) or Hutch++ (Meyer et al. 2021), with
  the standard error over probes.
- `spectral_density`: stochastic Lanczos quadrature (Ghorbani et al. 2019):
  Ritz values and weights per probe, broadened by a Gaussian on a grid.
- `effective_dimensionality`: N_eff(H, z) = sum_i lambda_i / (lambda_i + z)
  (Maddox, Benton & Wilson 2020): the top-k eigenvalues by Lanczos, exactly,
  plus stochastic Lanczos quadrature on the deflated rest, with its standard error.

Why not curvlinops + SciPy: curvlinops gives the same products as SciPy linear
operators, but SciPy's `eigsh` on them was measured 3x slower than PyHessian's
power iteration on a 155k-parameter MLP on 2 cores (minimum Krylov size, NumPy
round trips), while this lean torch Lanczos is the one that wins (see
benchmarks/hessian.py). Where curvlinops is installed, a test checks our
products against its `HessianLinearOperator`.

Every function here leaves the model as it found it: eval mode while measuring
(dropout off, batch-norm running statistics used), the caller's mode restored,
no `.grad` written, parameters untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from biaslab.probes.core import LossFn, Metrics

Batch = tuple[torch.Tensor, torch.Tensor]
MatVec = Callable[[torch.Tensor], torch.Tensor]
CurvatureKind = Literal["hessian", "ggn"]
KINDS = ("hessian", "ggn")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with autograd on (curvature needs gradients); the caller's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the curvature is taken with respect to: those that require grad."""
    return [p for p in model.parameters() if p.requires_grad]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One flat vector from a list of tensors."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector into tensors shaped like `like`."""
    out, start = [], 0
    for t in like:
        out.append(vector[start : start + t.numel()].view_as(t))
        start += t.numel()
    return out


class _BatchGraph:
    """The autograd graph of one batch's loss, built once; products with H or G reuse it."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, batch: Batch, params: list[nn.Parameter], kind: CurvatureKind):
        x, y = batch
        self.params, self.kind = params, kind
        self.out = model(x)
        loss = loss_fn(self.out, y)
        if kind == "hessian":
            self.grads = torch.autograd.grad(loss, params, create_graph=True)
        else:  # ggn: the loss's gradient in the outputs, and a dummy cotangent for J v
            (self.out_grad,) = torch.autograd.grad(loss, self.out, create_graph=True)
            self.dummy = torch.zeros_like(self.out, requires_grad=True)
            self.vjp_graph = torch.autograd.grad(self.out, params, self.dummy, create_graph=True)

    def product(self, v: list[torch.Tensor]) -> list[torch.Tensor]:
        """H v or G v = J^T H_out J v for this batch."""
        if self.kind == "hessian":
            return list(torch.autograd.grad(self.grads, self.params, v, retain_graph=True))
        (jv,) = torch.autograd.grad(self.vjp_graph, self.dummy, v, retain_graph=True)  # J v, shaped like the outputs
        (hjv,) = torch.autograd.grad(self.out_grad, self.out, jv, retain_graph=True)  # H_out J v
        return list(torch.autograd.grad(self.out, self.params, hjv, retain_graph=True))  # J^T H_out J v


@contextmanager
def curvature_operator(
    model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], kind: CurvatureKind = "hessian"
) -> Iterator[tuple[MatVec, int]]:
    """(v -> H v, dimension) of the mean loss over `batches`, weighted by batch size; valid inside the block.

    Holds one autograd graph per batch for the block's lifetime: pass as few
    batches as fit in memory (one batch of all training examples is typical for
    small models).
    """
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not a curvature; allowed: {', '.join(KINDS)}")
    if not batches:
        raise ValueError("batches: need at least one (x, y) batch")
    with evaluating(model):
        params = trainable(model)
        total = sum(x.shape[0] for x, _ in batches)
        graphs = [(_BatchGraph(model, loss_fn, b, params, kind), b[0].shape[0] / total) for b in batches]

        def matvec(vector: torch.Tensor) -> torch.Tensor:
            parts = unflatten(vector.to(params[0].dtype), params)
            result = None
            for graph, weight in graphs:
                product = flatten(graph.product(parts)).detach() * weight
                result = product if result is None else result + product
            return result

        yield matvec, sum(p.numel() for p in params)


@dataclass(frozen=True)
class Eigen:
    """Top eigenpairs from Lanczos, largest first, with what it took to get them."""

    values: list[float]
    vectors: torch.Tensor  # (k, dim), unit rows
    residuals: list[float]  # ||H s - theta s|| per pair: |lambda - theta| is at most this
    iterations: int  # operator products used
    converged: bool  # every pair met residual <= tol * |theta|

    def metrics(self, prefix: str = "hessian") -> Metrics:
        """Named scalars: {prefix}_top, _top_residual, _iterations, _converged, and _eig{i} for i >= 2."""
        row = {f"{prefix}_top": self.values[0], f"{prefix}_top_residual": self.residuals[0]}
        row |= {f"{prefix}_eig{i + 1}": v for i, v in enumerate(self.values[1:], start=1)}
        return row | {f"{prefix}_iterations": float(self.iterations), f"{prefix}_converged": float(self.converged)}


def lanczos(
    matvec: MatVec, start: torch.Tensor, k: int = 1, tol: float = 1e-4, max_iter: int = 100
) -> Eigen:
    """The k algebraically largest eigenpairs of a symmetric operator by Lanczos with full reorthogonalization."""
    q = start / start.norm()
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    beta_prev, q_prev = 0.0, torch.zeros_like(q)
    for step in range(1, max_iter + 1):
        w = matvec(q)
        alpha = torch.dot(w, q)
        w = w - alpha * q - beta_prev * q_prev
        stacked = torch.stack(basis)
        for _ in range(2):  # reorthogonalize twice: "twice is enough" (Parlett)
            w = w - stacked.T @ (stacked @ w)
        beta = w.norm()
        alpha_value, beta_value = torch.stack([alpha, beta]).tolist()
        alphas.append(alpha_value)
        theta, s, residuals = _ritz(alphas, betas, beta_value, k)
        exhausted = beta_value <= 1e-10 * max(1.0, abs(theta[0])) or step == start.numel()
        met = len(theta) >= min(k, start.numel()) and _met(theta, residuals, tol)
        if met or exhausted or step == max_iter:
            vectors = s.T.to(stacked.dtype) @ stacked  # (k, dim)
            return Eigen(theta, vectors, residuals, step, met or exhausted)
        betas.append(beta_value)
        beta_prev, q_prev, q = beta_value, q, w / beta_value
        basis.append(q)
    raise ValueError(f"max_iter: must be at least 1 (got {max_iter})")


def _ritz(alphas: list[float], betas: list[float], beta_next: float, k: int) -> tuple[list[float], torch.Tensor, list[float]]:
    """Top-k Ritz values of the tridiagonal T, their vectors in T's basis, and residuals |beta_next * s_last|."""
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        t = t + torch.diag(off, 1) + torch.diag(off, -1)
    theta, s = torch.linalg.eigh(t)
    order = torch.argsort(theta, descending=True)[:k]
    theta, s = theta[order], s[:, order]
    return theta.tolist(), s, (beta_next * s[-1].abs()).tolist()


def _met(values: list[float], residuals: list[float], tol: float) -> bool:
    return all(r <= tol * max(abs(v), 1e-12) for v, r in zip(values, residuals))


def top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    k: int = 1,
    tol: float = 1e-4,
    max_iter: int = 100,
    start: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    kind: CurvatureKind = "hessian",
) -> Eigen:
    """The k largest eigenvalues of the loss Hessian (or GGN) at the model's parameters.

    `start` warm-starts Lanczos (e.g. the top eigenvector from the last check);
    otherwise a Gaussian vector drawn from `generator`.
    """
    with curvature_operator(model, loss_fn, batches, kind) as (matvec, dim):
        params = trainable(model)
        if start is None:
            start = torch.randn(dim, generator=generator, dtype=params[0].dtype, device="cpu").to(params[0].device)
        return lanczos(matvec, start.to(params[0].dtype), k=k, tol=tol, max_iter=min(max_iter, dim))


@dataclass(frozen=True)
class Estimate:
    """A stochastic estimate with its standard error and sample count."""

    value: float
    stderr: float
    samples: int
    method: str

    def metrics(self, name: str) -> Metrics:
        return {name: self.value, f"{name}_se": self.stderr, f"{name}_samples": float(self.samples)}


def rademacher(n: int, dim: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(n, dim) random signs, drawn on the CPU from `generator` for determinism across devices."""
    signs = torch.randint(0, 2, (n, dim), generator=generator, dtype=torch.int64) * 2 - 1
    return signs.to(dtype=like.dtype, device=like.device)


def trace(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    probes: int = 60,
    method: Literal["hutchinson", "hutch++"] = "hutch++",
    generator: torch.Generator | None = None,
    kind: CurvatureKind = "hessian",
) -> Estimate:
    """tr(H) with its standard error; `probes` is the total number of operator products."""
    with curvature_operator(model, loss_fn, batches, kind) as (matvec, dim):
        like = trainable(model)[0]
        return trace_of(matvec, dim, like, probes, method, generator)


def trace_of(
    matvec: MatVec, dim: int, like: torch.Tensor, probes: int, method: str, generator: torch.Generator | None
) -> Estimate:
    """Hutchinson: mean of z^T A z. Hutch++: exact trace on a sketched top subspace plus Hutchinson on the rest."""
    if method == "hutchinson":
        samples = torch.stack([torch.dot(z, matvec(z)) for z in rademacher(probes, dim, like, generator)])
        return _mean_estimate(samples, method)
    if method != "hutch++":
        raise ValueError(f"method: {method!r} is not a trace estimator; allowed: hutchinson, hutch++")
    third = max(1, probes // 3)
    sketch = torch.stack([matvec(s) for s in rademacher(third, dim, like, generator)], dim=1)  # (dim, third)
    q, _ = torch.linalg.qr(sketch)
    top = sum(torch.dot(q[:, i], matvec(q[:, i])) for i in range(q.shape[1]))
    rest = []
    for z in rademacher(max(1, probes - 2 * third), dim, like, generator):
        z = z - q @ (q.T @ z)
        rest.append(torch.dot(z, matvec(z)))
    residual = _mean_estimate(torch.stack(rest), method)
    return Estimate(float(top) + residual.value, residual.stderr, probes, method)


def _mean_estimate(samples: torch.Tensor, method: str) -> Estimate:
    n = samples.numel()
    stderr = samples.std().item() / math.sqrt(n) if n > 1 else float("inf")
    return Estimate(samples.mean().item(), stderr, n, method)


@dataclass(frozen=True)
class Density:
    """Stochastic Lanczos quadrature: per probe, Ritz values (nodes) and their weights (summing to 1)."""

    nodes: torch.Tensor  # (probes, steps)
    weights: torch.Tensor  # (probes, steps)
    dim: int

    def on_grid(self, grid: torch.Tensor, width: float | None = None) -> torch.Tensor:
        """Spectral density on `grid`, Gaussian-broadened (width: 1% of the spectrum's range by default)."""
        width = width or 0.01 * max(float(self.nodes.max() - self.nodes.min()), 1e-12)
        kernel = torch.exp(-0.5 * ((grid[None, None, :] - self.nodes[..., None]) / width) ** 2) / (width * math.sqrt(2 * math.pi))
        return (self.weights[..., None] * kernel).sum(dim=1).mean(dim=0)

    def trace(self) -> Estimate:
        """tr(H) = dim * E[sum_i w_i theta_i]: a cross-check of `trace`, with its standard error over probes."""
        per_probe = self.dim * (self.weights * self.nodes).sum(dim=1)
        return _mean_estimate(per_probe, "slq")

    def effective_dimensionality(self, z: float = 1.0) -> Estimate:
        """N_eff(H, z) = sum_i lambda_i / (lambda_i + z) (Maddox, Benton & Wilson 2020), with its s.e. over probes.

        The number of directions in which the data determine the weights more than a prior of precision z does.
        Negative eigenvalues (non-convex directions) count as 0: lambda is clamped at 0 before the ratio.
        """
        if z <= 0:
            raise ValueError(f"z: must be positive, got {z}")
        per_probe = self.dim * (self.weights * _saturation(self.nodes, z)).sum(dim=1)
        return _mean_estimate(per_probe, "slq")


def spectral_density(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    probes: int = 5,
    steps: int = 60,
    generator: torch.Generator | None = None,
    kind: CurvatureKind = "hessian",
) -> Density:
    """Stochastic Lanczos quadrature of the Hessian (or GGN) spectrum, `steps` Lanczos steps per probe."""
    with curvature_operator(model, loss_fn, batches, kind) as (matvec, dim):
        like = trainable(model)[0]
        nodes, weights = [], []
        for z in rademacher(probes, dim, like, generator):
            alphas, betas = _tridiagonal(matvec, z, min(steps, dim))
            t = torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)
            theta, s = torch.linalg.eigh(t)
            pad = min(steps, dim) - theta.numel()  # an invariant subspace found early: zero-weight padding
            nodes.append(torch.nn.functional.pad(theta, (0, pad), value=float(theta[-1])))
            weights.append(torch.nn.functional.pad(s[0] ** 2, (0, pad)))
        return Density(torch.stack(nodes), torch.stack(weights), dim)


def _tridiagonal(matvec: MatVec, start: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lanczos coefficients (alphas, betas) in float64, with full reorthogonalization."""
    q = start / start.norm()
    basis, alphas, betas = [q], [], []
    for _ in range(steps):
        w = matvec(q)
        alphas.append(torch.dot(w, q))
        stacked = torch.stack(basis)
        for _ in range(2):
            w = w - stacked.T @ (stacked @ w)
        beta = w.norm()
        if len(alphas) == steps or beta <= 1e-10 * max(1.0, abs(float(alphas[-1]))):
            break
        betas.append(beta)
        q = w / beta
        basis.append(q)
    return torch.stack(alphas).double(), (torch.stack(betas).double() if betas else torch.zeros(0, dtype=torch.float64))


def _saturation(values: torch.Tensor, z: float) -> torch.Tensor:
    """f(lambda) = lambda / (lambda + z), with lambda clamped at 0 (a negative, non-convex direction counts 0)."""
    positive = values.clamp_min(0.0)
    return positive / (positive + z)


def effective_dimensionality_of(
    matvec: MatVec,
    dim: int,
    like: torch.Tensor,
    eigen: Eigen,
    z: float,
    probes: int,
    steps: int,
    generator: torch.Generator | None,
) -> Metrics:
    """N_eff from the top eigenpairs already found (`eigen`) and SLQ on the operator with them projected out.

    With V the top-k Ritz vectors and P = I - V^T V, the rest of the spectrum is that
    of A = P H P (V's directions become eigenvalue 0, and f(0) = 0), so
    sum_{i > k} f(lambda_i) = tr f(A) = E[r^T f(A) r] over Rademacher r, and
    r^T f(A) r = ||P r||^2 sum_j w_j f(theta_j) from `steps` Lanczos steps started at P r.
    The top eigenvalues are the outliers that make plain SLQ noisy; deflating them
    leaves a tail of small, similar f values, so a few probes give a small s.e.
    """
    if z <= 0:
        raise ValueError(f"z: must be positive, got {z}")
    values = torch.tensor(eigen.values, dtype=torch.float64)
    top = float(_saturation(values, z).sum())
    basis = eigen.vectors.to(like.dtype)  # (k, dim), orthonormal Ritz vectors
    k = basis.shape[0]
    rest = dim - k
    row = {"n_eff_top": top, "n_eff_z": float(z), "n_eff_k": float(k), "n_eff_converged": float(eigen.converged)}
    if rest <= 0 or probes < 1:  # every eigenvalue found (or no tail asked for): the sum is the top part
        tail = Estimate(0.0, 0.0 if rest <= 0 else math.nan, 0, "none")
        return row | {"n_eff": top, "n_eff_se": tail.stderr, "n_eff_samples": 0.0, "n_eff_products": float(eigen.iterations)}

    def project(v: torch.Tensor) -> torch.Tensor:
        return v - basis.T @ (basis @ v)

    def deflated(v: torch.Tensor) -> torch.Tensor:
        return project(matvec(project(v)))

    per_probe, products = [], eigen.iterations
    for r in rademacher(probes, dim, like, generator):
        start = project(r)
        alphas, betas = _tridiagonal(deflated, start, min(steps, rest))
        products += alphas.numel()
        t = torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)
        theta, s = torch.linalg.eigh(t)
        per_probe.append(float(start.double().square().sum()) * float((s[0] ** 2 * _saturation(theta, z)).sum()))
    tail = _mean_estimate(torch.tensor(per_probe, dtype=torch.float64), "slq")
    return row | {
        "n_eff": top + tail.value,
        "n_eff_se": tail.stderr,
        "n_eff_samples": float(tail.samples),
        "n_eff_products": float(products),
    }


def effective_dimensionality(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Sequence[Batch],
    z: float = 1.0,
    k: int = 10,
    probes: int = 3,
    steps: int = 20,
    tol: float = 1e-3,
    max_iter: int = 100,
    generator: torch.Generator | None = None,
    kind: CurvatureKind = "hessian",
) -> Metrics:
    """Effective dimensionality N_eff(H, z) = sum_i lambda_i / (lambda_i + z) of the mean loss over `batches`
    (Maddox, Benton & Wilson 2020), summed over *all* eigenvalues of the Hessian (or GGN), negative ones counted 0.

    The k largest eigenvalues come from Lanczos (tolerance `tol` on each residual,
    at most `max_iter` products); their sum alone is `n_eff_top`, the truncation
    Maddox et al. compute. The rest is estimated by stochastic Lanczos quadrature
    on the operator with the top-k Ritz vectors projected out (`probes` Rademacher
    vectors, `steps` Lanczos steps each; see `effective_dimensionality_of`).

    Returns named scalars: n_eff (top + tail estimate), n_eff_se (the tail's
    standard error over probes; the top part is exact up to the Lanczos
    residuals, |f(lambda) - f(theta)| <= z r / (theta + z)^2 for a residual r,
    not included), n_eff_top, n_eff_z, n_eff_k (eigenvalues found: at most k),
    n_eff_converged, n_eff_samples (probes) and n_eff_products (Hessian-vector
    products used). Leaves the model's mode, parameters and `.grad` as they were.
    """
    if z <= 0:
        raise ValueError(f"z: must be positive, got {z}")
    if k < 1:
        raise ValueError(f"k: must be at least 1, got {k}")
    with curvature_operator(model, loss_fn, batches, kind) as (matvec, dim):
        like = trainable(model)[0]
        start = torch.randn(dim, generator=generator, dtype=like.dtype, device="cpu").to(like.device)
        eigen = lanczos(matvec, start, k=min(k, dim), tol=tol, max_iter=min(max_iter, dim))
        return effective_dimensionality_of(matvec, dim, like, eigen, z, probes, steps, generator)
