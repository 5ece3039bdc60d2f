"""Benign overfitting: the min-norm interpolant of noisy labels can still predict well, if the covariance allows it.

Bartlett, Long, Lugosi & Tsigler (2020, PNAS, "Benign overfitting in linear regression") show that the
minimum-norm interpolant of n noisy labels in Gaussian linear regression has excess risk tending to 0 exactly
when the covariance Sigma has many small eigenvalues in a heavy enough tail: with the effective ranks
r_k = sum_{i>k} lambda_i / lambda_{k+1} and R_k = (sum_{i>k} lambda_i)^2 / sum_{i>k} lambda_i^2 and
k* = min{k : r_k >= b n}, the excess risk is, up to constants, ||beta||^2 r_0 / n (bias) plus
sigma^2 (k*/n + n / R_k*) (variance), and it vanishes iff r_0 = o(n), k* = o(n) and R_k* = omega(n). The tail
absorbs the label noise (it acts as an implicit ridge of size sum_tail / n) while the few large directions carry
the signal.

Setup (`problem.kind=benign_regression`): p = n^2 dimensions. `spiked`: eigenvalue 1 in 5 directions, where beta
(norm 1) lives, and n^-1.5 in the other p - 5, so r_0 ~ 5 + n^0.5 = o(n), k* = 5, R_k* ~ p = n^2: benign.
`isotropic`: Sigma = I_p with the same beta and the same p: the interpolant spreads its weight over p >> n
directions and learns almost nothing (bias -> ||beta||^2 (1 - n/p)), so the excess risk stays near 1. Labels
y = <x, beta> + 0.5 eps. Each run draws `draws` training sets X and computes the exact excess risk given X,
E_eps[(beta_hat - beta)^T Sigma (beta_hat - beta)] = bias (beta^T (I - P) Sigma (I - P) beta, P the projection
on the row space of X) + variance (sigma^2 ||Sigma^1/2 X^T (X X^T)^-1||_F^2), and reports their mean and s.e.

Figure: (a) excess risk against n on log-log axes for both spectra, with bias and variance dashed; (b) the
quantities of the paper's bound, r_0 / n, k*/n and n / R_k*, against n for each spectrum.

Claim (the paper's dichotomy): on the spiked spectrum the excess risk falls with n (rank correlation <= -0.9
over n) to below a quarter of its value at the smallest n; on the isotropic one it stays bounded away from 0
(at the largest n at least half its value at the smallest n).

Reduced from the paper: the theorem is asymptotic and about constants; here n goes from 10 to 160 (p to 25,600)
and the bound is shown as its shape (constants left out), beside the exact risk, not as a number to compare.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from biaslab.claims import Verdict, spearman
from biaslab.experiments.base import Experiment, Result, CATALOG, require
from biaslab.plot import new_figure, plain_log_ticks
from biaslab.runtime import numpy_generator
from biaslab.spec import BenignRegression, RunSpec, SpecError, Sweep
from biaslab.store import RunRecord, finished_table

NAME = "benign-overfitting"
FINDING = (
    "The min-norm interpolant of noisy labels has excess risk falling toward 0 with n on a spiked covariance "
    "with a heavy tail (benign), and bounded away from 0 on an isotropic one of the same dimension."
)
BOUND_B = 1.0  # the constant b in k* = min{k : r_k >= b n}; the paper's theorem holds for some universal b
FALLS_TO = 0.25  # spiked: the risk at the largest n must be below this share of the risk at the smallest n
STAYS_ABOVE = 0.5  # isotropic: the risk at the largest n must be at least this share of the risk at the smallest n
FALLS_RANK = -0.9  # spiked: Spearman correlation of the mean risk with n at most this


def spectrum(problem: BenignRegression) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues of Sigma, beta) for the problem's n: (p,) each, eigenvalues in decreasing order."""
    p = round(problem.n**problem.p_exponent)
    beta = np.zeros(p)
    beta[: problem.spikes] = 1.0 / math.sqrt(problem.spikes)
    if problem.spectrum == "isotropic":
        return np.ones(p), beta
    eigenvalues = np.full(p, float(problem.n) ** -problem.tail_exponent)
    eigenvalues[: problem.spikes] = 1.0
    return eigenvalues, beta


def effective_ranks(eigenvalues: np.ndarray, n: int, b: float = BOUND_B) -> dict[str, float]:
    """r_0, k* = min{k : r_k >= b n}, r_k* and R_k* of a decreasing spectrum (Bartlett et al. 2020, Def. 3)."""
    tails = np.cumsum(eigenvalues[::-1])[::-1]  # tails[k] = sum_{i >= k} lambda_i (0-based: i > k in 1-based)
    squares = np.cumsum((eigenvalues**2)[::-1])[::-1]
    r = tails / eigenvalues
    reached = np.nonzero(r >= b * n)[0]
    k = int(reached[0]) if len(reached) else len(eigenvalues)
    if k >= len(eigenvalues):
        return {"r_0": float(r[0]), "k_star": float(k), "r_k_star": math.nan, "R_k_star": math.nan}
    return {"r_0": float(r[0]), "k_star": float(k), "r_k_star": float(r[k]), "R_k_star": float(tails[k] ** 2 / squares[k])}


def excess_risk(eigenvalues: np.ndarray, beta: np.ndarray, noise: float, n: int, rng: np.random.Generator) -> tuple[float, float]:
    """(bias, variance) of the min-norm interpolant's excess risk given one draw of X, exactly over the label noise."""
    x = rng.standard_normal((n, len(eigenvalues))) * np.sqrt(eigenvalues)  # (n, p): rows ~ N(0, Sigma)
    gram = x @ x.T  # (n, n)
    solve = np.linalg.solve(gram, x)  # (n, p) = (X X^T)^-1 X
    residual = beta - x.T @ (solve @ beta)  # (I - P) beta, P = X^T (X X^T)^-1 X
    bias = float(np.sum(eigenvalues * residual**2))
    variance = noise**2 * float(np.sum(eigenvalues[:, None] * solve.T**2))  # ||Sigma^1/2 X^T (X X^T)^-1||_F^2
    return bias, variance


def run(spec: RunSpec) -> Result:
    """The mean exact excess risk (bias + variance) over `problem.draws` training sets, with its s.e."""
    problem = spec.problem
    eigenvalues, beta = spectrum(problem)
    rng = numpy_generator(spec.seed, "benign_regression")
    parts = np.array([excess_risk(eigenvalues, beta, problem.noise, problem.n, rng) for _ in range(problem.draws)])  # (draws, 2)
    risks = parts.sum(axis=1)
    se = float(risks.std(ddof=1) / math.sqrt(len(risks))) if len(risks) > 1 else math.nan
    row = {"excess_risk": float(risks.mean()), "excess_risk_se": se, "bias": float(parts[:, 0].mean()), "variance": float(parts[:, 1].mean()),
           "n": float(problem.n), "p": float(len(eigenvalues))} | effective_ranks(eigenvalues, problem.n)  # fmt: skip
    return Result.estimate([row], row, {"risks": risks.tolist()})


def _sweep(ns, seeds, draws: int) -> Sweep:
    base = RunSpec(experiment=NAME, problem=BenignRegression(n=ns[0], draws=draws), dtype="float64")
    return Sweep(base=base, grid={"problem.spectrum": ("spiked", "isotropic"), "problem.n": tuple(ns), "seed": tuple(seeds)})


def tiny() -> Sweep:
    return _sweep((8, 16, 32), (0,), 3)


def quick() -> Sweep:
    return _sweep((10, 20, 40, 80, 160), (0, 1), 20)


def paper() -> Sweep:
    return _sweep((10, 20, 40, 80, 160, 320), (0, 1, 2, 3, 4), 50)


def _table(records: list[RunRecord]):
    table = finished_table(records)
    return table.groupby(["problem.spectrum", "problem.n"], as_index=False).mean(numeric_only=True) if len(table) else table


class BenignOverfitting(Experiment):
    """The minimum-norm interpolant of noisy labels in high-dimensional linear regression: with a few large
    directions and a heavy tail of small ones its excess risk falls toward 0 as n grows; with an isotropic
    covariance of the same dimension it stays near the signal's size."""

    title = "Benign overfitting: interpolating noisy labels is harmless when the covariance has a heavy small-eigenvalue tail"
    axes_note = 'a closed-form min-norm interpolant in numpy: no optimizer and no network'
    reference = "Bartlett, Long, Lugosi & Tsigler 2020, Benign overfitting in linear regression (PNAS)"
    reads = ("problem", "dtype")  # dtype: float64, the precision of its numpy closed form

    def refuse(self, spec: RunSpec) -> None:
        if spec.problem is None or spec.problem.kind != "benign_regression":
            raise SpecError(f"problem.kind: {NAME} runs on problem.kind='benign_regression', got {getattr(spec.problem, 'kind', None)!r}")
        require(spec, {"dtype": ("float64",)})

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        table = _table(records)
        fig, (risk, bound) = new_figure(ncols=2, width=6.4)
        for i, name in enumerate(("spiked", "isotropic")):
            rows = table[table["problem.spectrum"] == name] if len(table) else table
            if not len(rows):
                continue
            ns = rows["problem.n"].to_numpy()
            risk.errorbar(ns, rows["excess_risk"], yerr=2 * rows["excess_risk_se"], color=f"C{i}", marker="o", label=f"{name}: excess risk (±2 s.e.)")
            risk.plot(ns, rows["bias"], color=f"C{i}", ls="--", lw=1, label=f"{name}: bias")
            risk.plot(ns, rows["variance"], color=f"C{i}", ls=":", lw=1, label=f"{name}: variance")
            bound.plot(ns, rows["r_0"] / ns, color=f"C{i}", marker="o", label=f"{name}: r_0 / n")
            bound.plot(ns, rows["k_star"] / ns, color=f"C{i}", marker="s", ls="--", label=f"{name}: k* / n")
            bound.plot(ns, ns / rows["R_k_star"], color=f"C{i}", marker="^", ls=":", label=f"{name}: n / R_k*")
        risk.set(xscale="log", yscale="log", xlabel="training examples n (p = n²)", ylabel="excess risk (exact given X, mean over draws)",
                 title="min-norm interpolation of noisy labels")  # fmt: skip
        bound.set(xscale="log", yscale="log", xlabel="training examples n", ylabel="term of the bound (constants left out)",
                  title="Bartlett et al.'s effective-rank terms: -> 0 iff benign")  # fmt: skip
        for ax in (risk, bound):  # beside the panel: inside, the legend covers lines
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
            plain_log_ticks(ax, "x")
        return {"risk": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        table = _table(records)
        numbers: dict[str, float] = {}
        curves = {}
        for name in ("spiked", "isotropic"):
            rows = table[table["problem.spectrum"] == name].sort_values("problem.n") if len(table) else table
            if len(rows) < 3:
                return Verdict(FINDING, False, numbers, f"need at least 3 sample sizes per spectrum; {name} has {len(rows)}")
            curves[name] = rows
            risks = rows["excess_risk"].to_numpy()
            numbers |= {f"{name}_risk_smallest_n": float(risks[0]), f"{name}_risk_largest_n": float(risks[-1]),
                        f"{name}_ratio": float(risks[-1] / risks[0]), f"{name}_spearman_n": spearman(rows["problem.n"].tolist(), risks.tolist())}  # fmt: skip
        falls = numbers["spiked_spearman_n"] <= FALLS_RANK and numbers["spiked_ratio"] < FALLS_TO
        stays = numbers["isotropic_ratio"] >= STAYS_ABOVE
        reason = (f"spiked: risk {numbers['spiked_risk_smallest_n']:.3g} -> {numbers['spiked_risk_largest_n']:.3g} (ratio "
                  f"{numbers['spiked_ratio']:.3f}, PASS needs < {FALLS_TO}; Spearman {numbers['spiked_spearman_n']:+.2f}, needs <= {FALLS_RANK}); "
                  f"isotropic: {numbers['isotropic_risk_smallest_n']:.3g} -> {numbers['isotropic_risk_largest_n']:.3g} (ratio "
                  f"{numbers['isotropic_ratio']:.3f}, needs >= {STAYS_ABOVE})")  # fmt: skip
        largest, flat = curves["spiked"].iloc[-1], curves["isotropic"].iloc[-1]
        notes = (f"at n = {int(largest['problem.n'])} the spiked spectrum has r_0/n = {largest['r_0'] / largest['problem.n']:.3f}, "
                 f"k*/n = {largest['k_star'] / largest['problem.n']:.3f}, n/R_k* = {largest['problem.n'] / largest['R_k_star']:.4f} "
                 f"(all -> 0: benign by the theorem); the isotropic one has r_0/n = {flat['r_0'] / flat['problem.n']:.0f} (growing "
                 f"like n), so its bias term does not vanish: bias {flat['bias']:.3f} of its risk {flat['excess_risk']:.3f}",)  # fmt: skip
        return Verdict(FINDING, falls and stays, numbers, reason, notes)


CATALOG.add(NAME, BenignOverfitting())
