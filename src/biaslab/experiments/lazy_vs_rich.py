"""Lazy vs rich training: the output scale decides whether a network learns features (Chizat, Oyallon & Bach 2019).

Chizat et al. train the centered, rescaled model f_alpha(x) = alpha (f(x; w) - f(x; w0))
on the loss divided by alpha^2. In function space the dynamics then do not depend
on alpha to first order, but the weights needed to move the outputs by O(1) shrink
like 1/alpha: for large alpha training is *lazy*, the weights stay at their
initialization, the tangent kernel stays fixed and the network behaves like its
linearization f(x; w0) + J(x; w0)(w - w0) (the NTK regime); for small alpha it is
*rich*: the weights travel, the kernel changes and features are learned.
Woodworth et al. (2020) show the same transition driven by the init scale.

Each run trains one alpha (`problem.alpha`) with full-batch GD on the squared loss
0.5 ||f_alpha(x) - onehot(y)||^2 / alpha^2 (mean over examples), and, beside it,
the linearized model alpha J(x; w0)(w - w0) (a forward-mode product, `torch.func.jvp`)
from the same w0 with the same step and budget. The step is train.lr / lambda_max,
with lambda_max the top eigenvalue of the Gauss-Newton matrix at init (Lanczos), which
is the curvature of the scaled loss in the lazy limit for every alpha.

Measured at the end: relative weight change ||w_T - w0|| / ||w0||; the alignment
<K0, KT>_F / (||K0|| ||KT||) of the empirical tangent kernels (trace over outputs,
`torch.func.jacrev`) at init and at the end, on `problem.kernel_points` test
inputs (kernel change = 1 - alignment); test error of the network and of the
linearized model; and the relative distance ||f_net - f_lin|| / ||f_net|| of their
outputs on the test set.

Figure: the three measures against alpha on log axes, and test error of the network
and of the linearized model against alpha. Claim: the relative weight change, the
kernel change and the net-to-linearization distance all fall as alpha grows (Spearman
rank correlation with alpha <= -0.9 each; Chizat et al.'s analysis (Section 2) bounds the
weight change by O(1/alpha), so the fall is monotone up to noise), and at the largest
alpha the linearized model's test outputs are within 10% (relative) of the network's.
Test error is reported, not judged: Chizat et al. found the lazy regime worse for
CNNs on CIFAR-10, which a small MLP on MNIST-1D need not reproduce.

Reduced from the paper: an MLP (two hidden ReLU layers of 128 at `quick`) on 1000
MNIST-1D examples instead of VGG-11/ResNet on CIFAR-10; full-batch GD for a fixed
budget instead of SGD to convergence; the kernel on 128 test points. With ReLU the
linearization error falls more slowly than 1/alpha (units whose sign flips are not
differentiable); the measured slope is reported.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.func import functional_call

from biaslab.claims import Verdict, spearman
from biaslab.experiments.supervised import setup
from biaslab.experiments.base import CATALOG, Experiment, Result
from biaslab.plot import mean_band, new_figure
from biaslab.probes.curvature import top_eigenvalues
from biaslab.probes.core import snapshot
from biaslab.probes.ntk import empirical_ntk, kernel_alignment, linearized_outputs, relative_change
from biaslab.runtime import generator
from biaslab.spec import DataSpec, LazyScaling, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord, finished_table
from biaslab.train import MINIMIZE_READS, minimize, squared_error

NAME = "lazy-vs-rich"
FINDING = (
    "As alpha grows, the relative weight change and the tangent-kernel change fall and the network's predictions "
    "approach those of its linearization around w0."
)
TREND = -0.9  # Spearman rank correlation with alpha that counts as "falls as alpha grows"
LINEARIZED_AT_LARGEST = 0.1  # relative distance of test outputs that counts as "behaves like its linearization"
MEASURES = ("rel_weight_change", "kernel_change", "linearization_distance")


def _sweep(data: DataSpec, model: ModelSpec, alphas, steps: int, kernel_points: int, seeds=(0,)) -> Sweep:
    train = TrainSpec(optimizer="gd", lr=1.0, batch_size=None, loss="mse", max_steps=steps, eval_every=max(steps // 10, 1))
    base = RunSpec(experiment=NAME, data=data, model=model, train=train, problem=LazyScaling(alpha=alphas[0], kernel_points=kernel_points))
    return Sweep(base=base, grid={"problem.alpha": tuple(alphas), "seed": tuple(seeds)})


def tiny() -> Sweep:
    return _sweep(DataSpec(n_train=100, n_test=50), ModelSpec(width=16, depth=1), (0.1, 1.0, 10.0), 30, 16)


def quick() -> Sweep:
    return _sweep(DataSpec(n_train=1000, n_test=500), ModelSpec(width=128, depth=2), (0.01, 0.03, 0.1, 1.0, 10.0, 100.0), 1000, 128)


def paper() -> Sweep:
    alphas = tuple(10.0**e for e in np.arange(-2.0, 3.01, 0.5))
    return _sweep(DataSpec(), ModelSpec(width=512, depth=2), alphas, 10000, 200, seeds=(0, 1, 2))


def run(spec: RunSpec) -> Result:
    alpha, problem = spec.problem.alpha, spec.problem
    data, model = setup(spec)
    top = top_eigenvalues(model, squared_error, [(data.x_train, data.y_train)], kind="ggn", tol=1e-3, generator=generator(spec.seed, "lanczos")).values[0]
    train = spec.train.model_copy(update={"lr": spec.train.lr / top})  # train.lr in units of 1 / lambda_max(GGN at init)
    params0 = snapshot(model)
    outputs = lambda params, x: functional_call(model, params, (x,))  # noqa: E731
    with torch.no_grad():
        start_train, start_test = outputs(params0, data.x_train), outputs(params0, data.x_test)

    def scaled_net(params, x, start):  # alpha (f(x; w) - f(x; w0))
        return alpha * (outputs(params, x) - start)

    def scaled_linear(params, x, start):  # alpha J(x; w0) (w - w0)
        return alpha * linearized_outputs(model, params0, params, x)

    def train_model(predict):
        params = {name: p.clone().requires_grad_(True) for name, p in params0.items()}

        def on_eval(step: int) -> dict[str, float]:
            with torch.no_grad():
                test = predict(params, data.x_test, start_test)
                return {
                    "train_loss": squared_error(predict(params, data.x_train, start_train), data.y_train).item(),
                    "test_error": (test.argmax(dim=1) != data.y_test).double().mean().item(),
                    "rel_weight_change": relative_change(params, params0),
                }

        objective = lambda: squared_error(predict(params, data.x_train, start_train), data.y_train) / alpha**2  # noqa: E731
        return minimize(list(params.values()), objective, train, on_eval), params

    fit, trained = train_model(scaled_net)
    x_kernel = data.x_test[: problem.kernel_points]
    extra = {"alpha": alpha, "lr": train.lr, "ggn_top_at_init": top}
    extra["kernel_alignment"] = kernel_alignment(empirical_ntk(model, params0, x_kernel), empirical_ntk(model, trained, x_kernel))
    extra["kernel_change"] = 1.0 - extra["kernel_alignment"]
    if problem.linearized and fit.status == "ok":
        linear_fit, linear = train_model(scaled_linear)
        with torch.no_grad():
            net, lin = scaled_net(trained, data.x_test, start_test), scaled_linear(linear, data.x_test, start_test)
        extra |= {
            "linearization_distance": ((net - lin).norm() / net.norm()).item(),
            "test_error_linearized": linear_fit.final["test_error"],
            "train_loss_linearized": linear_fit.final["train_loss"],
            "rel_weight_change_linearized": linear_fit.final["rel_weight_change"],
        }
    return Result.of(fit, extra)


class LazyVsRich(Experiment):
    """Training alpha (f(w) - f(w0)) on the loss divided by alpha^2 moves the weights by O(1/alpha): for large alpha
    the tangent kernel stays at its initial value and the network is its own linearization (lazy, the NTK regime);
    for small alpha the weights travel and the kernel changes (rich, feature learning)."""

    title = "Large output scale makes training lazy: weights and tangent kernel freeze and the net behaves like its linearization"
    axes_note = 'trained by gradient flow on the alpha-scaled model: the claim is about the scale alpha, not the optimizer'
    reference = "Chizat, Oyallon & Bach 2019, On Lazy Training in Differentiable Programming (NeurIPS); Woodworth et al. 2020 (COLT)"
    reads = ("problem", "data", "model", "train.loss", "dtype", "device", *MINIMIZE_READS)
    allows = {"problem.kind": ("lazy_scaling",), "train.optimizer": ("gd",), "train.loss": ("mse",)}  # full-batch GD on Chizat et al.'s scaled squared loss

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        table = finished_table(records)
        fig, (ax_measures, ax_error) = new_figure(ncols=2)
        labels = {"rel_weight_change": "||w_T - w0|| / ||w0||", "kernel_change": "1 - alignment(K0, K_T)", "linearization_distance": "||f_net - f_lin|| / ||f_net|| (test)"}
        for column, label in labels.items():
            if column in table:
                mean_band(ax_measures, table, "problem.alpha", column, label=label)
        ax_measures.set(xscale="log", yscale="log", xlabel="output scale alpha", ylabel="relative change (unitless)", title="lazy as alpha grows")
        ax_measures.legend(fontsize=7)
        if "test_error" in table:
            mean_band(ax_error, table, "problem.alpha", "test_error", label="network")
        if "test_error_linearized" in table:
            mean_band(ax_error, table, "problem.alpha", "test_error_linearized", label="linearized model", linestyle="--")
        ax_error.set(xscale="log", xlabel="output scale alpha", ylabel="test error", title="test error")
        ax_error.legend(fontsize=7)
        return {"lazy-vs-rich": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        table = finished_table(records)
        if table.empty or table["problem.alpha"].nunique() < 3 or not set(MEASURES) <= set(table):
            return Verdict(FINDING, False, {}, "needs finished runs at three or more alphas, with the linearized model trained")
        means = table.groupby("problem.alpha")[[*MEASURES, "test_error", "test_error_linearized"]].mean()
        alphas = list(means.index)
        rhos = {m: spearman(alphas, list(means[m])) for m in MEASURES}
        largest, smallest = means.iloc[-1], means.iloc[0]
        large_half = means.iloc[len(means) // 2 :]
        numbers = {f"spearman_alpha_vs_{m}": rhos[m] for m in MEASURES}
        numbers |= {f"{m}_at_smallest_alpha": float(smallest[m]) for m in MEASURES} | {f"{m}_at_largest_alpha": float(largest[m]) for m in MEASURES}
        numbers |= {
            "smallest_alpha": float(alphas[0]),
            "largest_alpha": float(alphas[-1]),
            "test_error_at_smallest_alpha": float(smallest["test_error"]),
            "test_error_at_largest_alpha": float(largest["test_error"]),
            "test_error_linearized_at_largest_alpha": float(largest["test_error_linearized"]),
            "log_slope_weight_change_large_alpha": _log_slope(large_half.index, large_half["rel_weight_change"]),
            "log_slope_linearization_distance_large_alpha": _log_slope(large_half.index, large_half["linearization_distance"]),
        }
        trends = all(not math.isnan(r) and r <= TREND for r in rhos.values())
        passed = trends and largest["linearization_distance"] <= LINEARIZED_AT_LARGEST
        reason = (
            f"rank correlations with alpha: weight change {rhos['rel_weight_change']:+.2f}, kernel change {rhos['kernel_change']:+.2f}, "
            f"net-to-linearization distance {rhos['linearization_distance']:+.2f} (each needs <= {TREND}); at alpha = {alphas[-1]:g} the "
            f"linearized model is {largest['linearization_distance']:.3f} (relative) from the net (needs <= {LINEARIZED_AT_LARGEST})"
        )
        notes = (
            f"weight change falls with log-log slope {numbers['log_slope_weight_change_large_alpha']:.2f} over the larger alphas "
            f"(theory: -1); the linearization distance with slope {numbers['log_slope_linearization_distance_large_alpha']:.2f}",
            f"test error {smallest['test_error']:.3f} at alpha = {alphas[0]:g} (rich) vs {largest['test_error']:.3f} at alpha = {alphas[-1]:g} "
            f"(lazy; linearized model {largest['test_error_linearized']:.3f})",
        )
        return Verdict(FINDING, passed, numbers, reason, notes)


def _log_slope(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or (y <= 0).any():
        return math.nan
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


CATALOG.add(NAME, LazyVsRich())
