"""Implicit gradient regularization: GD follows the flow of a modified loss (Barrett & Dherin 2021; Smith et al. 2021).

Backward error analysis: gradient descent with step h is the explicit Euler
discretization of gradient flow on L, so after n steps (flow time T = n h) it is
O(h) away from that flow. It is only O(h^2) away from the flow of the modified
loss L + (h/4) ||grad L||^2: GD implicitly penalizes the gradient norm, more so
with a larger step. For SGD that visits m minibatches in a random order each
epoch, Smith et al. (2021) show that the mean iterate follows the flow of
L_SGD = L + (h / 4m) sum_k ||grad L_k||^2
      = L + (h/4) ||grad L||^2 + (h / 4m) sum_k ||grad L_k - grad L||^2,
i.e. SGD adds the variance of the minibatch gradients to the implicit penalty.

Each run takes one step size h (`train.lr`) and one model (`problem.model`):
it runs GD for T / h steps and integrates both flows from the same start with
classical RK4 in float64 (`problem.substeps` RK4 steps per interval h, so the
integration error, O((h / substeps)^4), is orders of magnitude below the
distances measured), and measures ||theta_GD - theta_flow|| at time T.

Figure 1: distance of GD's iterate to the plain and to the modified flow against h
on log-log axes, with fitted slopes, per model. Figure 2 (MLP): the distance of
SGD's mean iterate (averaged over `problem.sgd_paths` random batch orders, 2048 at
`quick`; its Monte Carlo error falls like 1/sqrt(paths)) to the
full-batch modified flow and to Smith et al.'s SGD modified flow.

Claim: slope of log distance against log h is 2 +- 0.3 for the modified flow
(ratio near 4 per halving of h) and 1 +- 0.3 for the plain flow; and SGD's mean
iterate is closer to the SGD modified flow than to the full-batch one at every h.

Models: (a) the two-parameter model Barrett & Dherin use for their illustration,
a single data point fitted by y = a b x, loss (y - a b x)^2 / 2; here x = y = 1
from (a, b) = (2, 0.2) (constants ours: problem.x, problem.y, problem.a0,
problem.b0); (b) a one-hidden-layer tanh MLP
(4 -> 8 -> 1, NTK-style 1/sqrt(fan-in) scaling, N(0, 1) parameters) on 16
Gaussian points labelled by sin(v . x), squared loss, float64. For SGD the 16 points are a
fixed partition into 4 minibatches visited in a fresh random order each epoch
(the setting of Smith et al.'s derivation: the expectation is over batch orders).
Reduced from the papers: no image classifiers (Barrett & Dherin's MNIST nets,
Smith et al.'s Wide-ResNets on CIFAR-10); the explicit-regularizer comparison of
test accuracy is not made; the check is the backward-error statement itself,
which the papers derive and which tiny models show exactly.

Seeds (MLP): `problem.seed` draws the points and the labelling direction v, the
run's `seed` the initial parameters and the SGD batch orders. The presets leave
problem.seed unset, so the run's seed draws both; the two-parameter model draws
nothing at random.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from biaslab.claims import Verdict
from biaslab.experiments.base import CATALOG, Experiment, Result
from biaslab.plot import new_figure
from biaslab.runtime import generator
from biaslab.data.problems import problem_seed
from biaslab.spec import BackwardError, RunSpec, SpecError, Sweep, TrainSpec
from biaslab.store import RunRecord, finished_table
from biaslab.train.flow import gradient, gradient_descent, modified_gradient, rk4, sgd_modified_gradient, shuffled_sgd_mean

NAME = "implicit-gradient-regularization"
FINDING = (
    "GD's distance to the gradient flow of L + (h/4)||grad L||^2 shrinks like h^2 and to the flow of L like h; "
    "SGD's mean iterate is closer to the flow of the SGD modified loss than to the full-batch one."
)
MODIFIED_SLOPE, PLAIN_SLOPE, SLOPE_TOLERANCE = 2.0, 1.0, 0.3  # backward error analysis: O(h^2) and O(h)


def _sweep(problems: list[BackwardError], steps_sizes, seeds=(0,)) -> Sweep:
    train = TrainSpec(optimizer="gd", lr=steps_sizes[0], batch_size=None)  # GD takes horizon / lr steps: no max_steps
    base = RunSpec(experiment=NAME, problem=problems[0], train=train, dtype="float64")
    sections = tuple(p.model_dump(mode="json") for p in problems)
    return Sweep(base=base, grid={"problem": sections, "train.lr": tuple(steps_sizes), "seed": tuple(seeds)})


def tiny() -> Sweep:
    mlp = BackwardError(model="mlp", horizon=0.8, substeps=4, sgd_paths=64)
    return _sweep([BackwardError(horizon=0.8, substeps=4), mlp], (0.1, 0.05, 0.025))


def quick() -> Sweep:
    return _sweep([BackwardError(), BackwardError(model="mlp", sgd_paths=2048)], (0.1, 0.05, 0.025, 0.0125))


def paper() -> Sweep:
    mlp = BackwardError(model="mlp", n_points=64, width=32, batches=8, sgd_paths=8192, substeps=16)
    return _sweep([BackwardError(substeps=16), mlp], (0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125), seeds=(0, 1, 2))


def steps_for(problem: BackwardError, h: float) -> int:
    """GD steps that reach flow time `horizon` exactly; SpecError when h does not divide it (or, with SGD, epochs)."""
    steps = round(problem.horizon / h)
    if steps < 1 or abs(steps * h - problem.horizon) > 1e-9 * problem.horizon:
        raise SpecError(f"train.lr: {NAME} needs problem.horizon / train.lr to be a whole number of steps, got {problem.horizon} / {h}")
    if problem.sgd_paths and steps % problem.batches:
        raise SpecError(f"train.lr: horizon / lr = {steps} steps is not a whole number of epochs of {problem.batches} minibatches")
    return steps


# --- the models: losses of a flat parameter vector -------------------------------------------------------


def two_parameter_loss(problem: BackwardError):
    """theta -> (y - a b x)^2 / 2 for theta = (a, b) (..., 2), summed over leading dimensions; (x, y) = problem.x, problem.y."""
    x, y = problem.x, problem.y
    return lambda theta: 0.5 * (y - theta[..., 0] * theta[..., 1] * x).square().sum()


class TinyRegression:
    """A one-hidden-layer tanh MLP on a few Gaussian points labelled by sin(v . x); parameters as one flat vector."""

    def __init__(self, problem: BackwardError, seed: int, dtype: torch.dtype = torch.float64) -> None:
        """Points and labels from the problem draw (problem.seed, else `seed`); theta0 from the run's `seed`."""
        g = generator(problem_seed(problem, seed), "data")
        self.dim, self.width = problem.dim, problem.width
        self.x = torch.randn(problem.n_points, problem.dim, generator=g, dtype=dtype)  # (n, dim)
        self.y = torch.sin(self.x @ torch.randn(problem.dim, generator=g, dtype=dtype))  # (n,)
        self.batches = torch.arange(problem.n_points).view(problem.batches, -1)  # (m, n / m): a fixed partition
        self.theta0 = torch.randn(self.n_params, generator=generator(seed, "init"), dtype=dtype)

    @property
    def n_params(self) -> int:
        return self.width * self.dim + 2 * self.width + 1

    def outputs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """theta (..., P), x (..., n, dim) -> (..., n), with 1/sqrt(fan-in) scaling so N(0, 1) parameters are well scaled."""
        W, rest = theta[..., : self.width * self.dim], theta[..., self.width * self.dim :]
        W = W.reshape(*theta.shape[:-1], self.width, self.dim)  # (..., width, dim)
        b, v, c = rest[..., : self.width], rest[..., self.width : 2 * self.width], rest[..., -1]
        hidden = torch.tanh(x @ W.transpose(-1, -2) / math.sqrt(self.dim) + b[..., None, :])  # (..., n, width)
        return (hidden @ v[..., :, None]).squeeze(-1) / math.sqrt(self.width) + c[..., None]

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """Mean squared error / 2 on all points (theta (P,))."""
        return 0.5 * (self.outputs(theta, self.x) - self.y).square().mean()

    def batch_loss(self, k: int):
        """The loss on minibatch k, as a function of theta (P,)."""
        idx = self.batches[k]
        return lambda theta: 0.5 * (self.outputs(theta, self.x[idx]) - self.y[idx]).square().mean()

    def path_batch_loss(self, thetas: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """thetas (paths, P), batch (paths,) -> sum over paths of each path's minibatch loss."""
        idx = self.batches[batch]  # (paths, b)
        return 0.5 * (self.outputs(thetas, self.x[idx]) - self.y[idx]).square().mean(dim=1).sum()


# --- one run ---------------------------------------------------------------------------------------------


def run(spec: RunSpec) -> Result:
    problem, h = spec.problem, spec.train.lr
    steps = steps_for(problem, h)
    if problem.model == "two_parameter":
        loss, theta0, model = two_parameter_loss(problem), torch.tensor((problem.a0, problem.b0), dtype=torch.float64), None
    else:
        model = TinyRegression(problem, spec.seed)
        loss, theta0 = model.loss, model.theta0
    rk_steps = steps * problem.substeps
    iterate = gradient_descent(gradient(loss), theta0, h, steps)
    flow = rk4(gradient(loss), theta0, problem.horizon, rk_steps)
    modified = rk4(modified_gradient(loss, h), theta0, problem.horizon, rk_steps)
    row = {
        "h": h,
        "steps": float(steps),
        "loss_start": loss(theta0).item(),
        "loss_end": loss(iterate).item(),
        "displacement": (flow - theta0).norm().item(),  # how far the flow moves: the scale of the distances
        "dist_plain": (iterate - flow).norm().item(),
        "dist_modified": (iterate - modified).norm().item(),
    }
    if model is not None and problem.sgd_paths:
        batch_losses = [model.batch_loss(k) for k in range(problem.batches)]
        sgd_flow = rk4(sgd_modified_gradient(batch_losses, h), theta0, problem.horizon, rk_steps)
        mean = shuffled_sgd_mean(model.path_batch_loss, theta0, h, steps // problem.batches, problem.batches, problem.sgd_paths, generator(spec.seed, "batches"))
        row |= {
            "sgd_dist_full_batch_modified": (mean - modified).norm().item(),
            "sgd_dist_sgd_modified": (mean - sgd_flow).norm().item(),
            "sgd_dist_plain": (mean - flow).norm().item(),
            "modified_flows_apart": (sgd_flow - modified).norm().item(),
        }
    finite = all(math.isfinite(v) for v in row.values())
    return Result([row], dict(row), status="ok" if finite else "diverged", stopped="budget" if finite else "diverged")  # row has the steps


def log_slope(h, distance) -> float:
    """Least-squares slope of log(distance) on log(h); NaN with fewer than two points."""
    h, distance = np.asarray(h, float), np.asarray(distance, float)
    if len(h) < 2 or len(set(h)) < 2 or (distance <= 0).any():
        return math.nan
    return float(np.polyfit(np.log(h), np.log(distance), 1)[0])


def _by_model(records: list[RunRecord]):
    table = finished_table(records)
    if table.empty:
        return {}
    return {model: part.groupby("train.lr").mean(numeric_only=True) for model, part in table.groupby("problem.model")}


class ImplicitGradientRegularization(Experiment):
    """Backward error analysis: gradient descent with step h tracks the gradient flow of a modified loss that adds
    (h/4)||grad L||^2, an implicit penalty on the gradient norm. Measured against accurately integrated flows, GD's
    distance to the modified flow shrinks like h^2 and to the plain flow like h; SGD's mean iterate follows a flow
    that also penalizes the variance of the minibatch gradients."""

    title = "GD follows the gradient flow of L + (h/4)||grad L||^2: distance O(h^2) to it, O(h) to the plain flow"
    axes_note = "its claim is GD's modified equation at step h (against gradient flows): the optimizer is the subject"
    reference = (
        "Barrett & Dherin 2021, Implicit Gradient Regularization (ICLR); Smith, Dherin, Barrett & De 2021, "
        "On the Origin of Implicit Regularization in Stochastic Gradient Descent (ICLR)"
    )
    reads = ("problem", "train.batch_size", "train.optimizer", "train.lr", "dtype")

    allows = {  # plain full-batch GD in float64 on the backward-error problem only
        "problem.kind": ("backward_error",), "train.optimizer": ("gd",), "dtype": ("float64",),
        "train.momentum": (0.0,), "train.weight_decay": (0.0,), "train.schedule": ("constant",),
    }  # fmt: skip

    def refuse(self, spec: RunSpec) -> None:
        steps_for(spec.problem, spec.train.lr)

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        groups = _by_model(records)
        fig, axes = new_figure(ncols=max(len(groups), 1))
        for ax, (model, part) in zip(axes, groups.items()):
            h = part.index.to_numpy()
            for column, label, marker in (("dist_plain", "to the flow of L", "o"), ("dist_modified", "to the flow of L + (h/4)|grad L|^2", "s")):
                ax.plot(h, part[column], marker=marker, label=f"{label} (slope {log_slope(h, part[column]):.2f})")
            ax.plot(h, part["dist_plain"].iloc[0] * (h / h[0]), color="grey", linestyle=":", linewidth=1, label="slope 1")
            ax.plot(h, part["dist_modified"].iloc[0] * (h / h[0]) ** 2, color="grey", linestyle="--", linewidth=1, label="slope 2")
            ax.set(xscale="log", yscale="log", xlabel="step size h", ylabel="||theta_GD(T) - theta_flow(T)||", title=f"{model}: GD vs flows at T = n h")
            ax.legend(fontsize=7)
        sgd, (ax,) = new_figure()
        for model, part in groups.items():
            if "sgd_dist_sgd_modified" not in part or part["sgd_dist_sgd_modified"].isna().all():
                continue
            h = part.index.to_numpy()
            ax.plot(h, part["sgd_dist_full_batch_modified"], marker="o", label="to full-batch modified flow")
            ax.plot(h, part["sgd_dist_sgd_modified"], marker="s", label="to SGD modified flow (+ minibatch variance)")
            ax.plot(h, part["dist_modified"], marker="^", linestyle="--", label="GD to full-batch modified flow")
            ax.set(xscale="log", yscale="log", xlabel="step size h", ylabel="distance at T", title=f"{model}: SGD mean iterate vs modified flows")
            ax.legend(fontsize=7)
        figures = {"distance-vs-step": fig}
        if ax.has_data():
            figures["sgd"] = sgd
        return figures

    def claim(self, records: list[RunRecord]) -> Verdict:
        groups = {m: p for m, p in _by_model(records).items() if len(p) >= 2}
        if not groups:
            return Verdict(FINDING, False, {}, "needs finished runs at two or more step sizes")
        numbers: dict[str, float] = {}
        passed, reasons = True, []
        for model, part in groups.items():
            h = part.index.to_numpy()
            plain, modified = log_slope(h, part["dist_plain"]), log_slope(h, part["dist_modified"])
            ratios = part["dist_modified"].to_numpy()[::-1]  # largest h first
            numbers |= {
                f"{model}_slope_modified": modified,
                f"{model}_slope_plain": plain,
                f"{model}_ratio_modified_last_halving": float(ratios[-2] / ratios[-1]) if len(ratios) >= 2 else math.nan,
                f"{model}_dist_modified_smallest_h": float(part["dist_modified"].iloc[0]),
            }
            ok = abs(modified - MODIFIED_SLOPE) <= SLOPE_TOLERANCE and abs(plain - PLAIN_SLOPE) <= SLOPE_TOLERANCE
            passed &= ok
            reasons.append(f"{model}: slope {modified:.2f} to the modified flow, {plain:.2f} to the plain flow")
            if "sgd_dist_sgd_modified" in part and not part["sgd_dist_sgd_modified"].isna().all():
                closer = part["sgd_dist_full_batch_modified"] / part["sgd_dist_sgd_modified"]
                numbers |= {f"{model}_sgd_min_ratio_full_batch_to_sgd_modified": float(closer.min()), f"{model}_sgd_slope_sgd_modified": log_slope(h, part["sgd_dist_sgd_modified"])}
                passed &= bool((closer > 1.0).all())
                reasons.append(f"{model} SGD mean iterate: distance to the full-batch modified flow / to the SGD modified flow >= {closer.min():.2f} over h (needs > 1 at every h)")
        reason = "; ".join(reasons) + f" (PASS needs slopes within {SLOPE_TOLERANCE} of {MODIFIED_SLOPE:g} and {PLAIN_SLOPE:g})"
        return Verdict(FINDING, passed, numbers, reason)


CATALOG.add(NAME, ImplicitGradientRegularization())
