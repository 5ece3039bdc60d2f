"""Scaling laws from the data's spectrum: a solvable model whose test loss is a power law in data and parameters.

Maloney, Roberts & Sully (2022, "A Solvable Model of Neural Scaling Laws") show
that power-law scaling comes from power-law structure in the data: with latent
features x ~ N(0, diag(lambda)), lambda_i = i^-(1 + alpha), a linear teacher
y = beta.x with beta ~ N(0, I), and a learner that regresses (least squares,
ridge -> 0) on N random projections of x, the test loss falls as n^-alpha in
the number of training examples n (when N and the latent dimension M are much
larger than n) and as N^-alpha in the number of features N (when n >> N), the
exponent set by the spectrum alone. `problem.kind=power_law_features` draws this
model; the fit is `MinNormRegressor`'s least squares (`estimator.kind=min_norm`,
`estimator.n_features` = N, `estimator.axis` = which curve the run is on).

Each run averages `problem.draws` independent teachers and training sets and
records the exact excess test loss (beta - beta_hat)^T diag(lambda) (beta -
beta_hat) (no test sampling). Seeds are independent replicates.

Figure: excess test loss against n (N = M) and against N (n fixed), log-log,
seed mean with min-max band, the fitted power law and a line of the predicted
slope -alpha through the first point.

Claim check: on each axis, the slope of log loss against log size fitted per
seed (least squares) has a mean whose 95% confidence interval (Student t over
seeds) contains the predicted -alpha. Latent dimension 10 x the largest n on the
data axis; n >= 15 x the largest N on the parameter axis.

Reduced from the paper: alpha = 1, M = 4000, n up to 400 and N up to 128 at
`quick` (the paper goes to M ~ 10^5 and compares with its closed-form loss).
Part (b) of the issue, MLP width and data sweeps on MNIST-1D, is not done here.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import stats
from threadpoolctl import threadpool_limits

from biaslab.claims import Verdict
from biaslab.estimators import least_squares
from biaslab.experiments.base import CATALOG, Experiment, guarded, require
from biaslab.plot import legend_once, new_figure
from biaslab.runtime import numpy_generator, provenance
from biaslab.spec import EstimatorSpec, PowerLawFeatures, RunSpec, SpecError, Sweep
from biaslab.store import RunRecord, records_table
from biaslab.train import Fit

NAME = "scaling-laws"
CONFIDENCE = 0.95
AXES = {"train_size": "training examples n", "model_size": "features N"}


def spectrum(problem: PowerLawFeatures) -> np.ndarray:
    """lambda_i = i^-(1 + alpha), i = 1..M. -> (M,)"""
    return np.arange(1, problem.latent + 1, dtype=np.float64) ** -(1.0 + problem.alpha)


def excess_loss(problem: PowerLawFeatures, n_features: int, ridge: float, rng: np.random.Generator) -> float:
    """One teacher and training set: the exact excess test loss of least squares on n_features projections."""
    lam = spectrum(problem)
    M = problem.latent
    beta = rng.standard_normal(M)
    X = rng.standard_normal((problem.n, M)) * np.sqrt(lam)  # (n, M)
    y = X @ beta + problem.noise * rng.standard_normal(problem.n)
    if n_features >= M:
        beta_hat = least_squares(X, y[:, None], ridge)[:, 0]
    else:
        P = rng.standard_normal((n_features, M)) / math.sqrt(M)  # (N, M) random projection
        beta_hat = P.T @ least_squares(X @ P.T, y[:, None], ridge)[:, 0]
    d = beta - beta_hat
    return float(np.sum(lam * d * d))


def run(spec: RunSpec) -> RunRecord:
    def body():
        with threadpool_limits(limits=torch.get_num_threads()):
            problem, est = spec.problem, spec.estimator
            rng = numpy_generator(spec.seed, "power_law_features")
            losses = np.array([excess_loss(problem, est.n_features, est.ridge, rng) for _ in range(problem.draws)])
        size = problem.n if est.axis == "train_size" else est.n_features
        row = {"test_loss": float(losses.mean()), "test_loss_se": float(losses.std(ddof=1) / math.sqrt(len(losses))) if len(losses) > 1 else math.nan, "size": float(size)}
        return Fit(history=[row]), provenance(torch.device("cpu")) | {"seed": spec.seed}, row, {"losses": losses.tolist()}

    return guarded(spec, body)


# ---------------------------------------------------------------- presets


def _sweep(alpha: float, latent: int, ns, model_n: int, features, seeds, draws: int) -> Sweep:
    problem = PowerLawFeatures(alpha=alpha, latent=latent, n=ns[0], draws=draws)
    data_axis = RunSpec(experiment=NAME, problem=problem, estimator=EstimatorSpec(kind="min_norm", n_features=latent, axis="train_size"), dtype="float64")
    model_axis = data_axis.model_copy(update={
        "problem": problem.model_copy(update={"n": model_n}),
        "estimator": EstimatorSpec(kind="min_norm", n_features=features[0], axis="model_size"),
    })
    return Sweep(
        base=data_axis,
        grid={"seed": tuple(seeds), "problem.n": tuple(ns)},
        also=(Sweep(base=model_axis, grid={"seed": tuple(seeds), "estimator.n_features": tuple(features)}),),
    )


def tiny() -> Sweep:
    return _sweep(1.0, 200, (5, 10, 20), 200, (4, 8, 16), (0, 1), 3)


def quick() -> Sweep:
    return _sweep(1.0, 4000, (10, 20, 40, 80, 160, 400), 2000, (4, 8, 16, 32, 64, 128), (0, 1, 2, 3, 4), 10)


def paper() -> Sweep:
    return _sweep(1.0, 20000, (10, 20, 40, 80, 160, 320, 640, 1280, 2000), 10000, (4, 8, 16, 32, 64, 128, 256, 512), tuple(range(10)), 20)


# ---------------------------------------------------------------- reading the records


def _table(records: list[RunRecord]) -> pd.DataFrame:
    table = records_table(r for r in records if r.status == "ok" and (r.spec.get("problem") or {}).get("kind") == "power_law_features")
    return table


def fitted_slopes(frame: pd.DataFrame) -> pd.Series:
    """Per seed, the least-squares slope of log test loss against log size."""
    slopes = {}
    for seed, rows in frame.groupby("seed"):
        if rows["size"].nunique() >= 2:
            slopes[seed] = float(np.polyfit(np.log(rows["size"]), np.log(rows["test_loss"]), 1)[0])
    return pd.Series(slopes, dtype=float)


def slope_interval(slopes: pd.Series) -> tuple[float, float, float]:
    """Mean slope and its CONFIDENCE interval (Student t over seeds)."""
    mean = float(slopes.mean())
    if len(slopes) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(slopes) - 1) * slopes.std(ddof=1) / math.sqrt(len(slopes)))
    return mean, mean - half, mean + half


def judge(table: pd.DataFrame) -> Verdict:
    claim = "Test loss falls as a power law in n and in N with the exponent -alpha set by the data's spectrum (Maloney et al. 2022)."
    numbers: dict[str, float] = {}
    passes, failures = [], []
    for axis in AXES:
        frame = table[table["estimator.axis"] == axis] if len(table) else table
        if not len(frame):
            failures.append(f"no runs on the {axis} axis")
            continue
        alpha = float(frame["problem.alpha"].iloc[0])
        mean, low, high = slope_interval(fitted_slopes(frame))
        numbers |= {f"{axis}_slope": mean, f"{axis}_slope_low": low, f"{axis}_slope_high": high, f"{axis}_predicted": -alpha}
        ok = low <= -alpha <= high
        (passes if ok else failures).append(f"{axis}: fitted slope {mean:.3f} [{low:.3f}, {high:.3f}] ({CONFIDENCE:.0%} CI over seeds) vs predicted {-alpha:g}")
    reason = "; ".join(failures) if failures else "; ".join(passes)
    return Verdict(claim, not failures, numbers, ("FAIL: " if failures else "") + reason)


class ScalingLaws(Experiment):
    name = NAME
    title = "Scaling laws in a solvable model: test loss ~ n^-alpha and N^-alpha from a power-law spectrum"
    reference = "Maloney, Roberts & Sully 2022, A Solvable Model of Neural Scaling Laws (arXiv:2210.16859)"
    summary = (
        "Least squares on random projections of Gaussian data with a power-law covariance spectrum and a linear teacher: "
        "the test loss is a power law in the number of examples and of features, with the exponent fixed by the spectrum."
    )
    presets = {"tiny": tiny, "quick": quick, "paper": paper}
    runner = staticmethod(run)

    def check(self, spec: RunSpec) -> None:
        if spec.problem is None or spec.problem.kind != "power_law_features":
            raise SpecError(f"problem.kind: {NAME} runs on problem.kind='power_law_features', got {spec.problem.kind if spec.problem else None!r}")
        if spec.estimator is None:
            raise SpecError(f"estimator: {NAME} needs estimator.kind='min_norm'")
        require(spec, {"estimator.kind": ("min_norm",), "device": ("cpu",)})
        if spec.estimator.n_features > spec.problem.latent:
            raise SpecError(f"estimator.n_features: at most problem.latent = {spec.problem.latent}, got {spec.estimator.n_features}")

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        table = _table(records)
        fig, axes = new_figure(ncols=2)
        for ax, (axis, label) in zip(axes, AXES.items()):
            frame = table[table["estimator.axis"] == axis] if len(table) else table
            if not len(frame):
                continue
            groups = frame.groupby("size")["test_loss"]
            mean = groups.mean()
            ax.plot(mean.index, mean.values, "o", color="C0", label="excess test loss (seed mean)")
            ax.fill_between(mean.index, groups.min().values, groups.max().values, color="C0", alpha=0.2, linewidth=0)
            slope, intercept = np.polyfit(np.log(mean.index), np.log(mean.values), 1)
            sizes = np.array(mean.index, dtype=float)
            ax.plot(sizes, np.exp(intercept) * sizes**slope, color="C1", label=f"fit: slope {slope:.2f}")
            alpha = float(frame["problem.alpha"].iloc[0])
            ax.plot(sizes, mean.values[0] * (sizes / sizes[0]) ** -alpha, "k--", linewidth=1, label=f"predicted slope {-alpha:g}")
            ax.set(xscale="log", yscale="log", xlabel=label, ylabel="excess test loss", title=f"loss vs {label}")
            legend_once(ax)
        return {"scaling": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        return judge(_table(records))


CATALOG.add(NAME, ScalingLaws())
