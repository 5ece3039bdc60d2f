"""Gradient descent on under-determined least squares finds the interpolant nearest its start.

For ||A w - b||^2 with more unknowns than equations there is a whole affine space
of zero-loss solutions. Gradients lie in the row space of A, so gradient descent
from w0 never leaves w0 + rowspace(A) and converges to the interpolant closest
to w0: from w0 = 0, the minimum-L2-norm solution A^+ b. This is the simplest
implicit bias there is, and it is exact, so the check is to numerical precision.

Figure: relative distance of the iterate to its reference (the interpolant
nearest w0) against steps on log axes, for starts at 0 and at a random w0 of
norm 1; and, beside it, each run's final distance to both references, which
shows that a nonzero start reaches a different interpolant than A^+ b.

Setup: A is n x d Gaussian (n = 20, d = 60 at `quick`), b = A w*; loss
0.5 ||A w - b||^2; full-batch GD in float64 with step train.lr / sigma_max(A)^2
(train.lr in units of the inverse top Hessian eigenvalue), stopped at loss 1e-26.
No reduction from the theory: it is the textbook statement at a small size.

Seeds: `problem.seed` draws A and w*, the run's `seed` the direction of w0 (the
init). The presets leave problem.seed unset, so the run's seed draws both, from
one stream, as before the field existed; set it to start from several w0 on one
system.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from biaslab.claims import Verdict
from biaslab.convex import min_norm_interpolant
from biaslab.data.problems import least_squares
from biaslab.experiments.base import Experiment, Result, CATALOG
from biaslab.plot import legend_once, new_figure
from biaslab.runtime import resolve_device, resolve_dtype
from biaslab.spec import LeastSquares, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord, finished_table, records_table
from biaslab.train import MINIMIZE_ONLY, MINIMIZE_READS, minimize

NAME = "min-norm"
FINDING = "GD from w0 converges to the interpolant nearest w0 (A^+ b from zero) to numerical precision."
PRECISION = 1e-8  # relative distance that counts as "the same solution" in float64 after convergence to loss 1e-26


def _sweep(problem: LeastSquares, seeds, max_steps: int) -> Sweep:
    train = TrainSpec(optimizer="gd", lr=1.0, batch_size=None, max_steps=max_steps, eval_spacing="log", eval_points=40, stop_loss=1e-26)
    base = RunSpec(experiment=NAME, problem=problem, train=train, dtype="float64")
    return Sweep(base=base, grid={"problem.init_norm": (0.0, 1.0), "seed": tuple(seeds)})


def tiny() -> Sweep:
    return _sweep(LeastSquares(n=5, d=12), (0,), 2000)


def quick() -> Sweep:
    return _sweep(LeastSquares(n=20, d=60), (0, 1, 2), 20000)


def paper() -> Sweep:
    return _sweep(LeastSquares(n=200, d=1000), (0, 1, 2, 3, 4), 200000)


def run(spec: RunSpec) -> Result:
    device, dtype = resolve_device(spec.device), resolve_dtype(spec.dtype)
    system = least_squares(spec.problem, spec.seed)
    tensor = lambda a: torch.as_tensor(a, device=device, dtype=dtype)  # noqa: E731
    A, b = tensor(system.A), tensor(system.b)
    nearest = tensor(min_norm_interpolant(system.A, system.b, system.w0))  # the theory's answer
    minimum = tensor(min_norm_interpolant(system.A, system.b))  # A^+ b
    w = tensor(system.w0).clone().requires_grad_(True)
    top = torch.linalg.matrix_norm(A, ord=2).item() ** 2  # top eigenvalue of the Hessian A^T A
    train = spec.train.model_copy(update={"lr": spec.train.lr / top})

    def on_eval(step: int) -> dict[str, float]:
        with torch.no_grad():
            return {
                "dist_to_nearest": ((w - nearest).norm() / nearest.norm()).item(),
                "dist_to_min_norm": ((w - minimum).norm() / minimum.norm()).item(),
                "norm": w.norm().item(),
            }

    result = minimize([w], lambda: 0.5 * (A @ w - b).square().sum(), train, on_eval)
    return Result.of(result, {"min_norm": minimum.norm().item(), "nearest_norm": nearest.norm().item()})


class MinNorm(Experiment):
    """Under-determined least squares has infinitely many zero-loss solutions. Gradient descent never leaves the row
    space through its start, so from zero it finds the minimum-norm interpolant and from w0 the one nearest w0."""

    title = "GD on least squares converges to the interpolant nearest its start"
    axes_note = "least squares by GD from a given start: the bias (the interpolant nearest the start) is GD's by construction"
    reference = "e.g. Gunasekar et al. 2018, Characterizing Implicit Bias in Terms of Optimization Geometry (ICML)"
    reads = ("problem", "dtype", "device", *MINIMIZE_READS)
    allows = MINIMIZE_ONLY

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        fig, (ax_curve, ax_final) = new_figure(ncols=2)
        finished = [r for r in records if r.status == "ok"]
        for r in finished:
            start = r.run_spec.problem.init_norm
            color = "C0" if start == 0 else "C1"
            steps = np.maximum(r.curves["step"], 1)
            ax_curve.plot(steps, np.maximum(r.curves["dist_to_nearest"], 1e-17), color=color, alpha=0.7, label=f"w0 norm {start:g}")
        ax_curve.set(xscale="log", yscale="log", xlabel="step", ylabel="||w - w_ref|| / ||w_ref||", title="distance to the interpolant nearest w0")
        legend_once(ax_curve)
        table = records_table(finished)
        if len(table):
            for offset, (column, label) in enumerate((("dist_to_nearest", "nearest to w0"), ("dist_to_min_norm", "min-norm A+b"))):
                for i, start in enumerate(sorted(table["problem.init_norm"].unique())):
                    values = table[table["problem.init_norm"] == start][column].clip(lower=1e-17)
                    ax_final.scatter([i + 0.2 * offset - 0.1] * len(values), values, color=f"C{offset + 2}", label=label if i == 0 else None)
            ax_final.set_xticks(range(table["problem.init_norm"].nunique()), [f"w0 norm {s:g}" for s in sorted(table["problem.init_norm"].unique())])
            ax_final.axhline(PRECISION, color="grey", linestyle="--", linewidth=1, label="precision threshold")
        ax_final.set(yscale="log", xlabel="initialization", ylabel="final relative distance", title="final distance to each reference")
        ax_final.legend(fontsize=8)
        return {"convergence": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        table = finished_table(records)
        if not len(table):
            return Verdict(FINDING, False, {}, "no finished runs")
        worst = float(table["dist_to_nearest"].max())
        from_zero = table[table["problem.init_norm"] == 0.0]
        from_w0 = table[table["problem.init_norm"] > 0.0]
        numbers = {"max_dist_to_nearest": worst, "runs": float(len(table))}
        if len(from_zero):
            numbers["max_dist_to_min_norm_from_zero"] = float(from_zero["dist_to_min_norm"].max())
        if len(from_w0):
            numbers["min_dist_to_min_norm_from_w0"] = float(from_w0["dist_to_min_norm"].min())
        passed = worst <= PRECISION
        reason = f"largest relative distance to the predicted interpolant {worst:.2e} (PASS needs <= {PRECISION:.0e} for every run)"
        notes = ()
        if len(from_w0):
            notes = (f"from a nonzero w0 the solution is {numbers['min_dist_to_min_norm_from_w0']:.3f} (relative) away from A^+ b at least: the start matters",)
        return Verdict(FINDING, passed, numbers, reason, notes)


CATALOG.add(NAME, MinNorm())
