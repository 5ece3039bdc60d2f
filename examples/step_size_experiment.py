"""Example experiment (CONTRIBUTING.md): on least squares, GD's solution does not depend on its step size.

From w0 = 0 every stable step size keeps the iterates in the row space of A, so GD converges to the same
minimum-norm interpolant A^+ b whatever the step (in units of 1 / sigma_max(A)^2, stable below 2). Figure:
distance to A^+ b against steps, one line per step size. Claim: every run ends within 1e-8 (relative) of A^+ b.
"""

from __future__ import annotations

import numpy as np
import torch

from biaslab.claims import Verdict
from biaslab.convex import min_norm_interpolant
from biaslab.data.problems import least_squares
from biaslab.experiments.base import CATALOG, Experiment, Result
from biaslab.plot import new_figure
from biaslab.spec import LeastSquares, RunSpec, SpecError, Sweep, TrainSpec
from biaslab.store import finished_table
from biaslab.train import MINIMIZE_ONLY, MINIMIZE_READS, minimize

NAME = "example-step-size"
FINDING = "GD from zero reaches the minimum-norm interpolant A^+ b at every stable step size."  # what the claim checks
PRECISION = 1e-8  # relative distance that counts as the same solution (float64, loss driven to 1e-26)


def sweep(n: int, d: int, steps: int) -> Sweep:
    train = TrainSpec(optimizer="gd", lr=0.5, batch_size=None, max_steps=steps, eval_spacing="log", eval_points=30, stop_loss=1e-26)
    base = RunSpec(experiment=NAME, problem=LeastSquares(n=n, d=d), train=train, dtype="float64")
    return Sweep(base=base, grid={"train.lr": (0.1, 0.5, 1.0, 1.9)})


def run(spec: RunSpec) -> Result:
    system = least_squares(spec.problem, spec.seed)
    A, b = torch.as_tensor(system.A), torch.as_tensor(system.b)
    target = torch.as_tensor(min_norm_interpolant(system.A, system.b))  # the theory's answer: A^+ b
    w = torch.zeros(A.shape[1], dtype=A.dtype, requires_grad=True)
    scale = torch.linalg.matrix_norm(A, ord=2).item() ** 2  # sigma_max^2: lr is in units of 1 / scale
    fit = minimize([w], lambda: 0.5 * (A @ w - b).square().sum(), spec.train.model_copy(update={"lr": spec.train.lr / scale}),
                   lambda step: {"distance": ((w - target).norm() / target.norm()).item()})  # fmt: skip
    return Result.of(fit)


class StepSize(Experiment):  # name (NAME) and runner (run) come from this module; presets could too (tiny(), ...)
    """Every stable step size reaches the same minimum-norm interpolant from zero."""

    title = "GD's solution on least squares does not depend on its step size"
    reference = "e.g. Gunasekar et al. 2018 (ICML)"
    presets = {"tiny": lambda: sweep(5, 12, 3000), "quick": lambda: sweep(20, 60, 30000), "paper": lambda: sweep(200, 1000, 300000)}
    reads = ("problem", "dtype", *MINIMIZE_READS)  # any other field set away from its default is refused
    allows = MINIMIZE_ONLY | {"dtype": ("float64",)}  # full batch, in the float64 of the numpy problem; other values refused
    axes_note = "the step size is its subject, and the bias is GD's"  # or `axes = Axes(...)`: what `biaslab atlas` may vary

    def refuse(self, spec: RunSpec) -> None:
        if spec.problem is None or spec.problem.kind != "least_squares" or spec.problem.init_norm != 0.0:
            raise SpecError(f"problem: {NAME} runs on least_squares from w0 = 0 (problem.init_norm 0)")

    def figures(self, records):
        fig, (ax,) = new_figure()
        for r in (r for r in records if r.status == "ok"):
            ax.plot(np.maximum(r.curves["step"], 1), np.maximum(r.curves["distance"], 1e-17), label=f"lr {r.run_spec.train.lr:g}")
        ax.set(xscale="log", yscale="log", xlabel="step", ylabel="||w - A+b|| / ||A+b||", title="distance to the min-norm interpolant")
        ax.legend(fontsize=8)
        return {"distance": fig}

    def claim(self, records) -> Verdict:
        table = finished_table(records)
        if not len(table):
            return Verdict(FINDING, False, {}, "no finished runs")
        worst = float(table["distance"].max())
        reason = f"largest final relative distance to A^+ b over {len(table)} step sizes {worst:.2e} (PASS needs <= {PRECISION:.0e})"
        return Verdict(FINDING, worst <= PRECISION, {"max_distance": worst, "runs": float(len(table))}, reason)


CATALOG.add(NAME, StepSize())
