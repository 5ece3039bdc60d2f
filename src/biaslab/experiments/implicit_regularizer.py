"""Estimating the implicit regularizer: which explicit penalty makes an implicit procedure's solution stationary?

Gradient matching: a procedure (early-stopped GD, dropout) produces weights w.
If w were the minimizer of L + lambda R, then grad L(w) + lambda grad R(w) = 0.
The least-squares coefficient is lambda = -<grad L, grad R> / ||grad R||^2 and
the fit quality R^2 = 1 - ||grad L + lambda grad R||^2 / ||grad L||^2 (1: the
penalty explains the procedure exactly; 0: not at all). For a convex L + lambda R
stationarity means w *is* the penalized solution, so this recovers lambda exactly
where the correspondence is exact.

(a) Early stopping (linear regression, L = ||X w - y||^2 / 2n, GD from 0 with step
eta): GD at step t is compared with ridge at lambda = 1/(eta t) (the correspondence
of e.g. Ali, Kolter & Tibshirani 2019). In the eigenbasis of S = X^T X / n, GD keeps
1 - (1 - eta s)^t of each component of the least-squares solution and ridge
s / (s + lambda); they agree to first order in u = eta t s, so the recovered lambda
is 1/(eta t) times about u/(e^u - 1) (for discrete steps the first-order
relative error is (u + eta s)/2): the approximation holds while eta t s_max <= 0.25
(regime of the verdict; predicted error at most about 0.13), and the
recovered lambda falls below 1/(eta t) after it (the curves show by how much).
Also reported: lambda fitted to the solution, argmin ||w_ridge(lambda) - w_t||.

(b) Dropout on the inputs of linear regression (rate p, kept inputs scaled by
1/(1-p), a fresh mask per example and step): in expectation over the masks the
loss is L(w) + (1/2) (p/(1-p)) sum_j (X^T X / n)_jj w_j^2 (Wager, Wang & Liang
2013, exact for the squared loss: Var(delta_j / (1-p)) = p/(1-p)). Because the
expected gradient is affine in w, the mean of the dropout-GD iterates follows GD
on that expected loss, so the time average of the iterates (after a burn-in of
40% of the steps) estimates its minimizer. R = (1/2) sum_j D_jj w_j^2 with
D = diag(X^T X / n) should give lambda = p/(1-p) and fit better than plain L2.

(c) Early stopping of a one-hidden-layer tanh MLP (regression, same data): the
recovered lambda for R = ||w - w0||^2 / 2 (ridge around the init) and for
R = ||w||^2 / 2, with the fit quality R^2 along training. No known answer: it is
reported, not judged.

Figures: recovered lambda against 1/(eta t) for (a), with the regime boundary and
R^2 along t; recovered lambda per p against p/(1-p) for (b); lambda * eta t and R^2
along t for (c). Claim: in (a) every recovered lambda in the regime is within 15%
of 1/(eta t); in (b) lambda is within 10% of p/(1-p) for every p and the
data-dependent penalty fits better than plain L2. Features have scales spread
log-uniformly over [0.5, 2] so the dropout penalty's weighting matters.
Reduced from the papers: small synthetic regression (n = 200, d = 20 at `quick`)
instead of document classification (Wager et al.); steps in units of 1/s_max.

Seeds: `problem.seed` draws the regression data (X, w*, label noise), the run's
`seed` the dropout masks and the MLP's init. The presets leave problem.seed
unset, so the run's seed draws both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar

from biaslab import models
from biaslab.data.problems import problem_seed
from biaslab.claims import Verdict
from biaslab.experiments.base import CATALOG, Experiment, Result
from biaslab.plot import new_figure
from biaslab.probes.curvature import top_eigenvalues
from biaslab.runtime import generator
from biaslab.spec import ImplicitRegularizer, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord, finished_table, records_table
from biaslab.train import Fit, MINIMIZE_READS, minimize

NAME = "estimate-implicit-regularizer"
FINDING = (
    "Gradient matching recovers lambda = 1/(eta t) for early-stopped GD on linear regression while eta t s_max is small, "
    "and lambda = p/(1-p) for dropout with Wager et al.'s data-dependent L2 penalty, which fits better than plain L2."
)
REGIME = 0.25  # eta t s_max at most this: early stopping ~ ridge(1/(eta t)) to first order (error about u/2)
EARLY_TOLERANCE = 0.15  # relative error allowed in (a) within the regime
DROPOUT_TOLERANCE = 0.10  # relative error allowed in (b)
BURN_IN = 0.4  # fraction of dropout steps before the iterates are averaged


def _sweep(sections: list[ImplicitRegularizer], steps: int, lr: float = 0.02, seeds=(0,)) -> Sweep:
    train = TrainSpec(optimizer="gd", lr=lr, batch_size=None, loss="mse", max_steps=steps, eval_spacing="log", eval_points=60)
    base = RunSpec(experiment=NAME, problem=sections[0], train=train, dtype="float64")
    return Sweep(base=base, grid={"problem": tuple(s.model_dump(mode="json") for s in sections), "seed": tuple(seeds)})


def _procedures(n: int, d: int, width: int, rates) -> list[ImplicitRegularizer]:
    common = {"n": n, "d": d}
    dropout = [ImplicitRegularizer(procedure="dropout", dropout=p, **common) for p in rates]
    return [ImplicitRegularizer(**common), *dropout, ImplicitRegularizer(procedure="mlp_early_stopping", width=width, **common)]


def tiny() -> Sweep:
    return _sweep(_procedures(50, 5, 8, (0.3,)), 1000, lr=0.05)


def quick() -> Sweep:
    return _sweep(_procedures(200, 20, 32, (0.1, 0.3, 0.5)), 50000)


def paper() -> Sweep:
    return _sweep(_procedures(1000, 50, 128, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)), 200000, seeds=(0, 1, 2))


# --- gradient matching -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """lambda minimizing ||grad L + lambda grad R||, and the share of ||grad L||^2 it explains."""
    coefficient: float
    r_squared: float


def match_penalty(loss_grad: torch.Tensor, penalty_grad: torch.Tensor) -> Match:
    """Least-squares lambda with grad L + lambda grad R ~ 0, and R^2 = 1 - residual^2 / ||grad L||^2."""
    coefficient = -(loss_grad @ penalty_grad / (penalty_grad @ penalty_grad)).item()
    residual = loss_grad + coefficient * penalty_grad
    return Match(coefficient, 1.0 - (residual.square().sum() / loss_grad.square().sum()).item())


def ridge_path(X: torch.Tensor, y: torch.Tensor):
    """lambda -> argmin ||X w - y||^2 / 2n + lambda ||w||^2 / 2, by one eigendecomposition of X^T X / n."""
    s, V = torch.linalg.eigh(X.T @ X / X.shape[0])
    projected = V.T @ (X.T @ y / X.shape[0])
    return lambda lam: V @ (projected / (s + lam))


def solution_lambda(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> float:
    """The ridge lambda whose solution is nearest to w (searched over log10 lambda in [-8, 4])."""
    path = ridge_path(X, y)
    found = minimize_scalar(lambda e: (path(10.0**e) - w).square().sum().item(), bounds=(-8.0, 4.0), method="bounded", options={"xatol": 1e-6})
    return float(10.0**found.x)


def expected_dropout_penalty(X: torch.Tensor, w: torch.Tensor, p: float) -> torch.Tensor:
    """Wager et al. 2013 for the squared loss: E_mask[loss] - loss = (1/2) (p/(1-p)) sum_j (X^T X / n)_jj w_j^2."""
    return 0.5 * p / (1.0 - p) * (X.square().mean(dim=0) * w.square()).sum()


# --- data and procedures ----------------------------------------------------------------------------------


def regression(problem: ImplicitRegularizer, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """X (n, d) Gaussian with column scales log-spaced in [0.5, 2], y = X w* + noise, w* ~ N(0, I/d), drawn from
    problem.seed when set, else from the run's `seed`."""
    rng = np.random.default_rng(problem_seed(problem, seed))
    scales = np.exp(np.linspace(np.log(0.5), np.log(2.0), problem.d))
    X = rng.standard_normal((problem.n, problem.d)) * scales
    y = X @ (rng.standard_normal(problem.d) / np.sqrt(problem.d)) + problem.noise * rng.standard_normal(problem.n)
    return torch.as_tensor(X), torch.as_tensor(y)


def squared_loss(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return 0.5 * (X @ w - y).square().mean()


def early_stopping(spec: RunSpec, X: torch.Tensor, y: torch.Tensor) -> Result:
    top = torch.linalg.eigvalsh(X.T @ X / X.shape[0])[-1].item()
    eta = spec.train.lr / top
    w = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)

    def on_eval(step: int) -> dict[str, float]:
        if step == 0:
            return {}
        with torch.no_grad():
            grad = X.T @ (X @ w - y) / X.shape[0]
            match = match_penalty(grad, w.detach())  # R = ||w||^2 / 2: grad R = w
            known = 1.0 / (eta * step)
            return {
                "lambda_known": known,
                "lambda_grad": match.coefficient,
                "lambda_solution": solution_lambda(X, y, w.detach()),
                "r_squared": match.r_squared,
                "u_max": eta * step * top,  # eta t s_max: the approximation holds while this is small
                "ratio": match.coefficient / known,
            }

    fit = minimize([w], lambda: squared_loss(X, y, w), spec.train.model_copy(update={"lr": eta}), on_eval)
    in_regime = [row for row in fit.history if row.get("u_max", math.inf) <= REGIME]
    extra = {"eta": eta, "s_max": top, "evals_in_regime": float(len(in_regime))}
    if in_regime:
        extra["max_rel_error_in_regime"] = max(abs(row["ratio"] - 1.0) for row in in_regime)
    return Result.of(fit, extra)


def dropout(spec: RunSpec, X: torch.Tensor, y: torch.Tensor) -> Result:
    p, n = spec.problem.dropout, X.shape[0]
    top = torch.linalg.eigvalsh(X.T @ X / n)[-1].item()
    eta, steps = spec.train.lr / top, spec.train.max_steps
    g = generator(spec.seed, "dropout")
    w, total, counted = torch.zeros(X.shape[1], dtype=X.dtype), torch.zeros(X.shape[1], dtype=X.dtype), 0
    for step in range(1, steps + 1):
        kept = (torch.rand(X.shape, generator=g, dtype=X.dtype) >= p).to(X.dtype) / (1.0 - p)  # (n, d) inverted dropout mask
        dropped = X * kept
        w = w - eta * dropped.T @ (dropped @ w - y) / n
        if step > BURN_IN * steps:
            total, counted = total + w, counted + 1
    mean = total / counted
    grad = X.T @ (X @ mean - y) / n
    diagonal = X.square().mean(dim=0)  # D = diag(X^T X / n)
    weighted, plain = match_penalty(grad, diagonal * mean), match_penalty(grad, mean)
    known = p / (1.0 - p)
    per_coordinate = -grad / (diagonal * mean)  # lambda_j with grad_j + lambda_j D_jj w_j = 0
    expected_minimizer = torch.linalg.solve(X.T @ X / n + known * torch.diag(diagonal), X.T @ y / n)
    row = {
        "lambda_known": known,
        "lambda_grad": weighted.coefficient,
        "r_squared": weighted.r_squared,
        "lambda_plain_l2": plain.coefficient,
        "r_squared_plain_l2": plain.r_squared,
        "rel_error": weighted.coefficient / known - 1.0,
        "median_rel_error_per_coordinate": (per_coordinate / known - 1.0).abs().median().item(),
        "dist_to_expected_minimizer": ((mean - expected_minimizer).norm() / expected_minimizer.norm()).item(),
    }
    fit = Fit(history=[{"step": float(steps), "loss": squared_loss(X, y, w).item()} | row], steps=steps)
    return Result.of(fit, {"eta": eta, "s_max": top}, {"lambda_per_coordinate": per_coordinate.tolist(), "diagonal": diagonal.tolist()})


def mlp_early_stopping(spec: RunSpec, X: torch.Tensor, y: torch.Tensor) -> Result:
    model = models.build(ModelSpec(width=spec.problem.width, depth=1, activation="tanh"), (X.shape[1],), 1, generator(spec.seed, "init"), dtype=X.dtype)
    loss_fn = lambda out, target: 0.5 * (out[:, 0] - target).square().mean()  # noqa: E731
    top = top_eigenvalues(model, loss_fn, [(X, y)], kind="ggn", tol=1e-4, generator=generator(spec.seed, "lanczos")).values[0]
    eta = spec.train.lr / top
    params = list(model.parameters())
    start = torch.cat([p.detach().flatten() for p in params])

    def on_eval(step: int) -> dict[str, float]:
        if step == 0:
            return {}
        grads = torch.autograd.grad(loss_fn(model(X), y), params)
        grad = torch.cat([g.flatten() for g in grads])
        w = torch.cat([p.detach().flatten() for p in params])
        around_init, around_zero = match_penalty(grad, w - start), match_penalty(grad, w)
        return {
            "lambda_known": 1.0 / (eta * step),
            "lambda_grad": around_init.coefficient,
            "r_squared": around_init.r_squared,
            "lambda_l2_zero": around_zero.coefficient,
            "r_squared_l2_zero": around_zero.r_squared,
            "ratio": around_init.coefficient * eta * step,
        }

    fit = minimize(params, lambda: loss_fn(model(X), y), spec.train.model_copy(update={"lr": eta}), on_eval)
    return Result.of(fit, {"eta": eta, "ggn_top_at_init": top})


PROCEDURES = {"early_stopping": early_stopping, "dropout": dropout, "mlp_early_stopping": mlp_early_stopping}


def run(spec: RunSpec) -> Result:
    """The spec's regression problem, then its procedure (early stopping, dropout, or the MLP)."""
    X, y = regression(spec.problem, spec.seed)
    return PROCEDURES[spec.problem.procedure](spec, X, y)


class EstimateImplicitRegularizer(Experiment):
    """An implicit procedure is expressed as an explicit penalty by finding the lambda for which its weights are
    stationary for L + lambda R. Early-stopped GD matches ridge with lambda = 1/(eta t) while eta t s_max is small,
    dropout matches Wager et al.'s data-weighted L2 with lambda = p/(1-p), and a small MLP is reported with its fit
    quality."""

    title = "Gradient matching recovers the explicit penalty behind early stopping (ridge, 1/(eta t)) and dropout (Wager's L2)"
    axes_note = 'it fits the explicit penalty that matches a given procedure (early stopping, dropout): the procedure is the subject'
    reference = (
        "Wager, Wang & Liang 2013, Dropout Training as Adaptive Regularization (NeurIPS); Ali, Kolter & Tibshirani 2019, "
        "A Continuous-Time View of Early Stopping for Least Squares (AISTATS)"
    )
    reads = ("problem", "train.loss", "dtype", *MINIMIZE_READS)
    allows = {
        "problem.kind": ("implicit_regularizer",), "dtype": ("float64",), "train.optimizer": ("gd",), "train.loss": ("mse",),
        "train.momentum": (0.0,), "train.weight_decay": (0.0,), "train.schedule": ("constant",),
    }  # fmt: skip

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        finished = [r for r in records if r.status == "ok"]
        fig, (ax_early, ax_dropout, ax_mlp) = new_figure(ncols=3)
        for r in (r for r in finished if r.run_spec.problem.procedure == "early_stopping"):
            known, u = np.asarray(r.curves["lambda_known"][1:]), np.asarray(r.curves["u_max"][1:])
            ax_early.plot(known, known, color="grey", linestyle="--", linewidth=1, label="lambda = 1/(eta t)")
            ax_early.plot(known, r.curves["lambda_grad"][1:], marker="o", markersize=3, label="gradient matching")
            ax_early.plot(known, r.curves["lambda_solution"][1:], marker="x", markersize=3, linestyle=":", label="nearest ridge solution")
            edge = known[u <= REGIME].min() if (u <= REGIME).any() else None
            if edge is not None:
                ax_early.axvline(edge, color="k", linewidth=0.8, label=f"eta t s_max = {REGIME} (regime: right of it)")
            ax_early.set_ylim(bottom=known.min() * 1e-3)  # after convergence the match collapses toward 0; keep the scale readable
        ax_early.set(xscale="log", yscale="log", xlabel="1 / (eta t)", ylabel="recovered lambda", title="(a) early stopping vs ridge")
        ax_early.legend(fontsize=7)
        table = records_table(r for r in finished if r.run_spec.problem.procedure == "dropout")
        if len(table):
            ax_dropout.plot(table["lambda_known"], table["lambda_grad"], "o", label="weighted L2 (Wager)")
            ax_dropout.plot(table["lambda_known"], table["lambda_plain_l2"], "x", label="plain L2")
            line = np.linspace(0, table["lambda_known"].max() * 1.1, 10)
            ax_dropout.plot(line, line, color="grey", linestyle="--", linewidth=1, label="p / (1 - p)")
        ax_dropout.set(xlabel="p / (1 - p)", ylabel="recovered lambda", title="(b) dropout vs data-dependent L2")
        ax_dropout.legend(fontsize=7)
        for r in (r for r in finished if r.run_spec.problem.procedure == "mlp_early_stopping"):
            steps = np.asarray(r.curves["step"][1:])
            ax_mlp.plot(steps, r.curves["ratio"][1:], label="lambda * eta t, R = |w - w0|^2/2")
            ax_mlp.plot(steps, r.curves["r_squared"][1:], linestyle="--", label="R^2, around init")
            ax_mlp.plot(steps, r.curves["r_squared_l2_zero"][1:], linestyle=":", label="R^2, around zero")
        ax_mlp.axhline(1.0, color="grey", linewidth=0.8, label="1: lambda = 1/(eta t), or a perfect fit")
        ax_mlp.set(xscale="log", xlabel="step t", ylabel="lambda * eta t, or R^2", title="(c) MLP early stopping")
        ax_mlp.legend(fontsize=7, loc="center right")
        return {"recovered-lambda": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        table = finished_table(records)
        if table.empty or not {"early_stopping", "dropout"} <= set(table["problem.procedure"]):
            return Verdict(FINDING, False, {}, "needs finished early-stopping and dropout runs")
        early = table[table["problem.procedure"] == "early_stopping"]
        dropout_runs = table[table["problem.procedure"] == "dropout"]
        if "max_rel_error_in_regime" not in early or early["max_rel_error_in_regime"].isna().any():
            return Verdict(FINDING, False, {}, f"no evaluation of early stopping with eta t s_max <= {REGIME}: lower train.lr or log-space the evaluations")
        early_error = float(early["max_rel_error_in_regime"].max())
        dropout_error = float(dropout_runs["rel_error"].abs().max())
        better = bool((dropout_runs["r_squared"] > dropout_runs["r_squared_plain_l2"]).all())
        numbers = {
            "early_max_rel_error_in_regime": early_error,
            "early_evals_in_regime": float(early["evals_in_regime"].min()),
            "early_ratio_at_end": float(early["ratio"].mean()),
            "early_r_squared_at_end": float(early["r_squared"].mean()),
            "dropout_max_rel_error": dropout_error,
            "dropout_min_r_squared_weighted": float(dropout_runs["r_squared"].min()),
            "dropout_max_r_squared_plain_l2": float(dropout_runs["r_squared_plain_l2"].max()),
        }
        for _, row in dropout_runs.iterrows():
            numbers[f"dropout_p{row['problem.dropout']:g}_lambda"] = float(row["lambda_grad"])
            numbers[f"dropout_p{row['problem.dropout']:g}_known"] = float(row["lambda_known"])
            numbers[f"dropout_p{row['problem.dropout']:g}_median_rel_error_per_coordinate"] = float(row["median_rel_error_per_coordinate"])
        mlp = table[table["problem.procedure"] == "mlp_early_stopping"]
        notes = ()
        if len(mlp):
            numbers |= {"mlp_ratio_at_end": float(mlp["ratio"].mean()), "mlp_r_squared_at_end": float(mlp["r_squared"].mean()), "mlp_r_squared_l2_zero_at_end": float(mlp["r_squared_l2_zero"].mean())}
            notes = (
                f"MLP early stopping at the end: lambda * eta t = {numbers['mlp_ratio_at_end']:.3f} for R = |w - w0|^2/2 with R^2 = "
                f"{numbers['mlp_r_squared_at_end']:.3f} (around zero R^2 = {numbers['mlp_r_squared_l2_zero_at_end']:.3f}); not judged",
            )
        notes += (f"early stopping after the regime: at the last step lambda = {numbers['early_ratio_at_end']:.3g} x 1/(eta t)",)
        passed = early_error <= EARLY_TOLERANCE and dropout_error <= DROPOUT_TOLERANCE and better
        reason = (
            f"(a) largest relative error of lambda against 1/(eta t) over {numbers['early_evals_in_regime']:.0f} evaluations with eta t s_max <= {REGIME}: "
            f"{early_error:.3f} (needs <= {EARLY_TOLERANCE}); (b) largest relative error against p/(1-p): {dropout_error:.3f} (needs <= {DROPOUT_TOLERANCE}), "
            f"weighted L2 fits better than plain L2 for every p: {better}"
        )
        return Verdict(FINDING, passed, numbers, reason, notes)


CATALOG.add(NAME, EstimateImplicitRegularizer())
