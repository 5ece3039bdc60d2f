"""Kernel and rich regimes of a diagonal linear network (Woodworth et al. 2020).

The model w = u * u - v * v (elementwise) is linear in its input but not in its
parameters. Trained by gradient descent from u = v = alpha * 1 on sparse
regression with fewer samples than dimensions, the init scale alpha decides
which interpolant it reaches: alpha -> 0 gives the minimum-L1 solution (the
"rich" regime, which recovers the sparse truth), alpha -> infinity the
minimum-L2 one (the "kernel" regime). The transition between them is smooth.

Figure: relative distance of GD's solution to the basis-pursuit (min-L1) and to
the pseudo-inverse (min-L2) interpolants against alpha, mean over seeds with
the range shaded; beside it the recovered coefficients at the smallest and
largest alpha against the truth.

Setup: A is n x d Gaussian (n = 40, d = 100, 5 nonzeros of +-1 at `quick`),
loss (1/2n) ||A w - b||^2, float64, full-batch GD with step
train.lr * n / (4 sigma_max(A)^2 max(alpha^2, 1)) (the curvature of the loss in
u, v scales with alpha^2 in the kernel regime and with |w*| ~ 1 late in the rich
one), stopped at loss 1e-12 or 1e5 steps. The updates are written out in numpy
(framework overhead dominates a d = 100 problem). No reduction from the paper's
setup beyond its size.

Seeds: `problem.seed` draws A and w* (the presets leave it unset: the run's
`seed` draws them). The init u = v = alpha is not random, so with problem.seed
set, runs that differ only in `seed` are the same run.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from biaslab.claims import Verdict, spearman
from biaslab.convex import basis_pursuit, min_norm_interpolant
from biaslab.data.problems import sparse_regression
from biaslab.experiments.base import CATALOG, Experiment, Result
from biaslab.plot import mean_band, new_figure
from biaslab.spec import ModelSpec, RunSpec, SparseRegression, Sweep, TrainSpec
from biaslab.store import RunRecord, finished_table, records_table
from biaslab.train import Fit, evaluation_steps

NAME = "diagonal-networks"
FINDING = "As the init shrinks, GD's solution moves toward the min-L1 interpolant and away from the min-L2 one."
TREND = 0.9  # rank correlation with alpha that counts as "falls / rises as the init shrinks" (one adjacent swap of five)


def _sweep(problem: SparseRegression, alphas, seeds, max_steps: int) -> Sweep:
    train = TrainSpec(optimizer="gd", lr=0.5, batch_size=None, max_steps=max_steps, eval_spacing="log", eval_points=40, stop_loss=1e-12)
    base = RunSpec(experiment=NAME, problem=problem, model=ModelSpec(init_scale=alphas[0]), train=train, dtype="float64")
    return Sweep(base=base, grid={"model.init_scale": tuple(alphas), "seed": tuple(seeds)})


def tiny() -> Sweep:
    return _sweep(SparseRegression(n=10, d=25, sparsity=2), (1e-2, 1.0, 10.0), (0,), 5000)


def quick() -> Sweep:
    return _sweep(SparseRegression(n=40, d=100, sparsity=5), (1e-3, 1e-2, 1e-1, 1.0, 10.0), (0, 1, 2), 100_000)


def paper() -> Sweep:
    return _sweep(SparseRegression(n=100, d=1000, sparsity=10), (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), tuple(range(5)), 1_000_000)


def descend(A: np.ndarray, b: np.ndarray, alpha: float, spec: TrainSpec, on_eval) -> tuple[Fit, np.ndarray]:
    """GD on (1/2n)||A (u*u - v*v) - b||^2 from u = v = alpha; returns the Fit and the final w."""
    n = A.shape[0]
    u, v = np.full(A.shape[1], float(alpha)), np.full(A.shape[1], float(alpha))
    step_size = spec.lr * n / (4 * np.linalg.norm(A, 2) ** 2 * max(alpha**2, 1.0))
    result = Fit()

    def evaluate(step: int) -> float:
        w = u * u - v * v
        loss = float(np.square(A @ w - b).sum() / (2 * n))
        result.history.append({"step": float(step), "loss": loss} | on_eval(w))
        return loss

    evaluate(0)
    pending = evaluation_steps(spec)
    for step in range(1, spec.max_steps + 1):
        gradient = A.T @ (A @ (u * u - v * v) - b) / n  # dL/dw
        u, v = u - step_size * 2 * u * gradient, v + step_size * 2 * v * gradient
        result.steps = step
        if step != pending[0]:
            continue
        pending.pop(0)
        loss = evaluate(step)
        if not math.isfinite(loss):
            result.status, result.stopped = "diverged", "diverged"
            break
        if spec.stop_loss is not None and loss <= spec.stop_loss:
            result.stopped = "loss"
            break
    return result, u * u - v * v


def run(spec: RunSpec) -> Result:
    system = sparse_regression(spec.problem, spec.seed)
    l1 = basis_pursuit(system.A, system.b)
    l2 = min_norm_interpolant(system.A, system.b)

    def on_eval(w: np.ndarray) -> dict[str, float]:
        return {
            "dist_l1": float(np.linalg.norm(w - l1) / np.linalg.norm(l1)),
            "dist_l2": float(np.linalg.norm(w - l2) / np.linalg.norm(l2)),
            "l1_norm": float(np.abs(w).sum()),
        }

    result, w = descend(system.A, system.b, spec.model.init_scale, spec.train, on_eval)
    arrays = {"w": w.tolist(), "truth": system.w_star.tolist()}
    return Result.of(result, {"l1_of_min_l1": float(np.abs(l1).sum())}, arrays)


class DiagonalNetworks(Experiment):
    """A diagonal linear network w = u*u - v*v trained by gradient descent on sparse regression reaches a different
    interpolant depending only on its init scale: the minimum-L1 solution from a small init, the minimum-L2 one from
    a large init."""

    title = "Small init finds the sparse (min-L1) interpolant, large init the min-L2 one"
    axes_note = 'the diagonal linear network is the object of study (its init scale decides the bias); it reads train.optimizer but only GD/SGD have the published bias'
    reference = "Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry & Srebro 2020, Kernel and Rich Regimes in Overparametrized Models (COLT)"
    reads = ("problem", "dtype", "train.batch_size", "model.init_scale", "train.optimizer", "train.lr", "train.max_steps", "train.eval_every", "train.eval_spacing", "train.eval_points", "train.stop_loss")
    allows = {"dtype": ("float64",), "train.optimizer": ("gd",), "train.momentum": (0.0,), "train.weight_decay": (0.0,), "train.schedule": ("constant",)}

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        finished = [r for r in records if r.status == "ok"]
        table = records_table(finished)
        fig, (ax_dist, ax_coef) = new_figure(ncols=2)
        if len(table):
            mean_band(ax_dist, table, "model.init_scale", "dist_l1", label="to min-L1 (basis pursuit)")
            mean_band(ax_dist, table, "model.init_scale", "dist_l2", label="to min-L2 (pseudo-inverse)")
        ax_dist.set(xscale="log", yscale="log", xlabel="init scale alpha", ylabel="relative distance", title="which interpolant GD reaches")
        ax_dist.legend(fontsize=8)
        first_seed = [r for r in finished if r.run_spec.seed == min(x.run_spec.seed for x in finished)] if finished else []
        if first_seed:
            smallest = min(first_seed, key=lambda r: r.run_spec.model.init_scale)
            largest = max(first_seed, key=lambda r: r.run_spec.model.init_scale)
            ax_coef.plot(smallest.arrays["truth"], "k.", label="truth")
            for record, color in ((smallest, "C0"), (largest, "C1")):
                ax_coef.plot(record.arrays["w"], color=color, linewidth=1, label=f"alpha {record.run_spec.model.init_scale:g}")
            ax_coef.legend(fontsize=8)
        ax_coef.set(xlabel="coordinate", ylabel="w", title="coefficients (first seed)")
        return {"regimes": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        table = finished_table(records)
        if table.empty or table["model.init_scale"].nunique() < 3:
            return Verdict(FINDING, False, {}, "fewer than three init scales finished")
        means = table.groupby("model.init_scale")[["dist_l1", "dist_l2"]].mean()
        alphas = list(means.index)
        rho_l1, rho_l2 = spearman(alphas, list(means["dist_l1"])), spearman(alphas, list(means["dist_l2"]))
        small, large = means.iloc[0], means.iloc[-1]
        numbers = {
            "spearman_alpha_vs_dist_l1": rho_l1,
            "spearman_alpha_vs_dist_l2": rho_l2,
            "smallest_alpha": float(alphas[0]),
            "dist_l1_at_smallest": float(small["dist_l1"]),
            "dist_l2_at_smallest": float(small["dist_l2"]),
            "largest_alpha": float(alphas[-1]),
            "dist_l1_at_largest": float(large["dist_l1"]),
            "dist_l2_at_largest": float(large["dist_l2"]),
        }
        passed = rho_l1 >= TREND and rho_l2 <= -TREND and small["dist_l1"] < small["dist_l2"] and large["dist_l2"] < large["dist_l1"]
        reason = (
            f"rank correlation of alpha with the distance to min-L1 {rho_l1:+.2f} (needs >= {TREND}) and to min-L2 {rho_l2:+.2f} "
            f"(needs <= -{TREND}); nearer to min-L1 at the smallest alpha and to min-L2 at the largest"
        )
        return Verdict(FINDING, bool(passed), numbers, reason)


CATALOG.add(NAME, DiagonalNetworks())
