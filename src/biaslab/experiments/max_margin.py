"""Gradient descent on separable data converges to the max-margin direction (Soudry et al. 2018, Fig. 1).

Logistic regression on linearly separable data has no minimizer: the loss goes
to zero only as ||w|| grows without bound. Soudry et al. prove that gradient
descent picks a direction anyway: w(t) = w_svm ln t + O(1), with w_svm the
hard-margin SVM. So the norm grows by ||w_svm|| ln 10 per decade of steps, the
loss falls as 1/t, and the angle to w_svm shrinks, but only like 1/ln t.

Figure, on log-t axes as in their Fig. 1: the norm ||w(t)|| with the slope
||w_svm|| ln t drawn beside it, the loss (log-log, with a 1/t guide), the angle
to w_svm, and the gap between the normalized margin and the SVM margin. Lines
for GD, GD with momentum and Adam on both datasets; Adam has no such guarantee
(its implicit bias is a different geometry), which the angle shows.

Setup: summed logistic loss, w0 = 0, float64. GD and heavy-ball momentum (0.9)
use the step train.lr / sigma_max(X)^2 with train.lr = 4 (below the stability
limit 8 / sigma_max^2 of the summed logistic loss, whose smoothness is
sigma_max^2 / 4); Adam uses train.lr as its step. That is the presets' unit
rule, problem.lr_unit None ("by optimizer"); problem.lr_unit
'inverse_sigma_max_squared' or 'absolute' puts every optimizer in that one unit,
so train.lr means what the spec says it means. Data: Soudry's Fig. 1 points
(two support vectors and 6 more points per class, n_points = 16) and two Gaussian clouds
N(+-(2, 0.5), 0.7^2 I) of 20 points each. Reduced from the paper: 3e6 steps at
`quick` instead of 1e7 and more. The updates are written out in numpy: for a
2-D problem, framework overhead is the whole cost (torch autograd measured at
60 us per step here, these closed-form steps at 3 us).

Seeds: `problem.seed` draws the points (the presets leave it unset: the run's
`seed` draws them). Nothing else is random here (w0 = 0, full-batch steps), so
with problem.seed set, runs that differ only in `seed` are the same run.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from scipy.special import expit

from biaslab.claims import Verdict, last_decade
from biaslab.convex import hard_margin_svm
from biaslab.data.problems import separable
from biaslab.experiments.base import CATALOG, Experiment, Result
from biaslab.plot import figure_legend, new_figure
from biaslab.spec import RunSpec, Separable, Sweep, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import Fit, evaluation_steps

NAME = "max-margin"
FINDING = "Under GD the norm grows by ||w_svm|| ln 10 per decade, the loss falls as 1/t, and the angle to w_svm keeps shrinking."
NORM_TOLERANCE = 0.10  # growth per decade within 10% of ||w_svm|| ln 10
LOSS_SLOPE = (-1.1, -0.9)  # log-log slope of the loss over the last decade: 1/t


def _methods(steps: int, adam_steps: int) -> tuple[dict, ...]:
    common = dict(batch_size=None, eval_spacing="log", eval_points=60)
    return (
        TrainSpec(optimizer="gd", lr=4.0, max_steps=steps, **common).model_dump(mode="json"),
        TrainSpec(optimizer="gd", lr=4.0, momentum=0.9, max_steps=steps, **common).model_dump(mode="json"),
        TrainSpec(optimizer="adam", lr=1e-2, max_steps=adam_steps, **common).model_dump(mode="json"),
    )


def _sweep(steps: int, adam_steps: int, seeds=(0,)) -> Sweep:
    base = RunSpec(experiment=NAME, problem=Separable(), dtype="float64")
    datasets = (Separable(points="soudry", n_points=16).model_dump(mode="json"), Separable(points="gaussian", n_points=40).model_dump(mode="json"))
    return Sweep(base=base, grid={"problem": datasets, "train": _methods(steps, adam_steps), "seed": tuple(seeds)})


def tiny() -> Sweep:
    return _sweep(20_000, 20_000)


def quick() -> Sweep:
    return _sweep(3_000_000, 300_000)


def paper() -> Sweep:
    return _sweep(30_000_000, 3_000_000, seeds=(0, 1, 2))


def step_size(train: TrainSpec, lr_unit: str | None, sigma_max: float) -> float:
    """The step that train.lr stands for under problem.lr_unit (see `Separable.lr_unit`): train.lr / sigma_max^2 for
    'inverse_sigma_max_squared', train.lr for 'absolute'; None picks by optimizer (absolute for Adam, else 1/sigma_max^2)."""
    unit = lr_unit or ("absolute" if train.optimizer == "adam" else "inverse_sigma_max_squared")
    return train.lr / sigma_max**2 if unit == "inverse_sigma_max_squared" else train.lr


def descend(Z: np.ndarray, spec: TrainSpec, on_eval, lr_unit: str | None = None) -> Fit:
    """Minimize sum log(1 + exp(-Z w)) from w = 0 (Z = y * X), evaluating at `evaluation_steps(spec)`; `lr_unit`
    is problem.lr_unit, the unit of spec.lr (None: by optimizer)."""
    sigma = np.linalg.norm(Z, 2)
    w, velocity = np.zeros(Z.shape[1]), np.zeros(Z.shape[1])
    m, v = np.zeros(Z.shape[1]), np.zeros(Z.shape[1])
    beta1, beta2 = spec.betas
    result = Fit()

    def evaluate(step: int) -> bool:
        loss = float(np.logaddexp(0.0, -Z @ w).sum())
        result.history.append({"step": float(step), "loss": loss} | on_eval(w))
        return math.isfinite(loss)

    evaluate(0)
    pending = evaluation_steps(spec)
    eta = step_size(spec, lr_unit, sigma)
    for step in range(1, spec.max_steps + 1):
        gradient = -(Z.T @ expit(-(Z @ w)))
        if spec.optimizer == "adam":
            m = beta1 * m + (1 - beta1) * gradient
            v = beta2 * v + (1 - beta2) * gradient * gradient
            w = w - eta / (1 - beta1**step) * m / (np.sqrt(v / (1 - beta2**step)) + 1e-8)
        else:  # heavy-ball momentum as torch.optim.SGD (momentum 0 is plain GD)
            velocity = spec.momentum * velocity + gradient
            w = w - eta * velocity
        result.steps = step
        if step == pending[0]:
            pending.pop(0)
            if not evaluate(step):
                result.status, result.stopped = "diverged", "diverged"
                break
    return result


def run(spec: RunSpec) -> Result:
    data = separable(spec.problem, spec.seed)
    Z = data.X * data.y[:, None]
    w_svm = hard_margin_svm(data.X, data.y)
    svm_norm = float(np.linalg.norm(w_svm))

    def on_eval(w: np.ndarray) -> dict[str, float]:
        norm = float(np.linalg.norm(w))
        if norm == 0.0:
            return {"norm": 0.0}
        cosine = float(np.clip(w @ w_svm / (norm * svm_norm), -1.0, 1.0))
        return {"norm": norm, "angle_deg": math.degrees(math.acos(cosine)), "margin": float((Z @ w).min() / norm)}

    result = descend(Z, spec.train, on_eval, spec.problem.lr_unit)
    return Result.of(result, {"svm_norm": svm_norm, "svm_margin": 1.0 / svm_norm})


def _label(record: RunRecord) -> str:
    spec = record.run_spec
    method = "Adam" if spec.train.optimizer == "adam" else ("GD + momentum" if spec.train.momentum > 0 else "GD")
    return f"{method}, {spec.problem.points}"


def _lr_text(record: RunRecord) -> str:
    """train.lr with the unit it was used in (problem.lr_unit, or the by-optimizer rule when unset)."""
    spec = record.run_spec
    unit = spec.problem.lr_unit or ("absolute" if spec.train.optimizer == "adam" else "inverse_sigma_max_squared")
    return f"lr {spec.train.lr:g}" + (" / sigma_max^2" if unit == "inverse_sigma_max_squared" else "")


def gd_diagnostics(record: RunRecord) -> dict[str, float]:
    """Norm growth per decade relative to ||w_svm|| ln 10, loss slope and angle change over the last decade."""
    t1, n1, t0, n0 = last_decade(record.curves["step"], record.curves["norm"])
    _, l1, _, l0 = last_decade(record.curves["step"], record.curves["loss"])
    _, a1, _, a0 = last_decade(record.curves["step"], record.curves["angle_deg"])
    decades = math.log10(t1 / t0)
    return {
        "growth_ratio": ((n1 - n0) / decades) / (record.final["svm_norm"] * math.log(10)),
        "loss_slope": math.log10(l1 / l0) / decades,
        "angle_end_deg": a1,
        "angle_decade_before_deg": a0,
    }


class MaxMargin(Experiment):
    """Logistic regression on separable data has no finite minimizer, yet gradient descent singles out one
    direction: the hard-margin SVM. The norm grows like ln t and the loss falls like 1/t, but the direction
    converges only like 1/ln t."""

    title = "GD on separable data converges to the max-margin direction, at a 1/ln t rate"
    axes_note = 'logistic regression with numpy fast paths for GD, momentum and Adam, compared inside the experiment; no network'
    reference = "Soudry, Hoffer, Nacson, Gunasekar & Srebro 2018, The Implicit Bias of Gradient Descent on Separable Data (JMLR)"
    reads = ("problem", "dtype", "train.batch_size", "train.optimizer", "train.lr", "train.momentum", "train.betas", "train.max_steps", "train.eval_every", "train.eval_spacing", "train.eval_points")
    allows = {"dtype": ("float64",), "train.optimizer": ("gd", "adam"), "train.batch_size": (None,), "train.weight_decay": (0.0,), "train.nesterov": (False,), "train.schedule": ("constant",)}

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        fig, (ax_norm, ax_loss, ax_angle, ax_margin) = new_figure(ncols=4, width=3.6)
        for i, record in enumerate(r for r in records if r.status == "ok"):
            steps = np.maximum(np.array(record.curves["step"]), 1)
            style = {"color": f"C{i}", "label": f"{_label(record)} ({_lr_text(record)})"}
            ax_norm.plot(steps, record.curves["norm"], **style)
            if record.run_spec.train.optimizer != "adam":
                t_end, n_end = steps[-1], record.curves["norm"][-1]
                guide = n_end + record.final["svm_norm"] * (np.log(steps) - np.log(t_end))
                ax_norm.plot(steps[steps > t_end / 1e3], guide[steps > t_end / 1e3], color=f"C{i}", linestyle=":", linewidth=1)
            ax_loss.plot(steps, record.curves["loss"], **style)
            ax_angle.plot(steps, record.curves.get("angle_deg", [math.nan] * len(steps)), **style)
            gap = (record.final["svm_margin"] - np.array(record.curves.get("margin", [math.nan] * len(steps)), dtype=float)) / record.final["svm_margin"]
            ax_margin.plot(steps, gap, **style)
        if any(line.get_linestyle() == ":" for line in ax_norm.lines):
            ax_norm.plot([], [], color="grey", linestyle=":", linewidth=1, label="slope ||w_svm|| ln t (GD, momentum)")
        ax_norm.set(xscale="log", xlabel="step t", ylabel="||w(t)||_2", title="weight norm")
        ax_loss.set(xscale="log", yscale="log", xlabel="step t", ylabel="summed logistic loss", title="loss (1/t expected)")
        ax_angle.set(xscale="log", yscale="log", xlabel="step t", ylabel="angle to w_svm (degrees)", title="direction")
        ax_margin.set(xscale="log", xlabel="step t", ylabel="(svm margin - margin) / svm margin", title="relative margin gap to the SVM", ylim=(-0.05, 1.0))
        figure_legend(fig, ncols=4)
        return {"trajectories": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        gd = [r for r in records if r.status == "ok" and r.run_spec.train.optimizer == "gd" and r.run_spec.train.momentum == 0]
        if not gd:
            return Verdict(FINDING, False, {}, "no finished plain-GD runs")
        numbers: dict[str, float] = {}
        passed = True
        for record in gd:
            d = gd_diagnostics(record)
            key = record.run_spec.problem.points
            numbers |= {f"{key}_{k}": float(v) for k, v in d.items()}
            passed &= abs(d["growth_ratio"] - 1) <= NORM_TOLERANCE
            passed &= LOSS_SLOPE[0] <= d["loss_slope"] <= LOSS_SLOPE[1]
            passed &= d["angle_end_deg"] < d["angle_decade_before_deg"]
        reason = (
            f"per dataset over the last decade of steps: norm growth / (||w_svm|| ln 10) within 1 +- {NORM_TOLERANCE}, "
            f"loss slope in [{LOSS_SLOPE[0]}, {LOSS_SLOPE[1]}], angle smaller than a decade earlier"
        )
        notes = tuple(
            f"{_label(r)}: final angle to w_svm {r.curves['angle_deg'][-1]:.3g} degrees after {int(r.final['steps'])} steps"
            for r in records
            if r.status == "ok" and r not in gd and "angle_deg" in r.curves
        )
        return Verdict(FINDING, bool(passed), numbers, reason, notes)


CATALOG.add(NAME, MaxMargin())
