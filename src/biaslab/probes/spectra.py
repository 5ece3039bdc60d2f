"""Weight spectra of any `nn.Module`: singular values, stable and effective rank, power-law tails.

Every parameter with two or more dimensions is a layer here (`core.weight_matrices`:
conv kernels are flattened to (out, in * k)). For each layer W (shape (n, p)):

- singular values s_1 >= s_2 >= ... (float64).
- stable rank ||W||_F^2 / ||W||_2^2 = sum s_i^2 / s_1^2: between 1 and rank(W).
- effective rank (Roy & Vetterli 2007): exp of the Shannon entropy of s_i / sum_j s_j;
  n for an n x n identity, 1 for a rank-1 matrix.
- the heavy-tailed exponent alpha of the empirical spectral density of X = W^T W / N,
  N = max(n, p), the quantity WeightWatcher reports (Martin & Mahoney 2021). It is fitted by
  the method of Clauset, Shalizi & Newman 2009 (SIAM Review 51): for every candidate xmin
  among the eigenvalues, the continuous power-law MLE on the tail x >= xmin,
  alpha = 1 + n_tail / sum log(x / xmin), and the Kolmogorov-Smirnov distance between
  the tail's empirical CDF and the fitted CDF 1 - (x / xmin)^(1 - alpha); the xmin with the
  smallest KS distance wins. Reported with its xmin, KS distance, tail size and the
  asymptotic standard error (alpha - 1) / sqrt(n_tail) (CSN eq. 3.2). alpha does not
  depend on the 1/N scaling; xmin does.

The KS distance is the two-sided supremum over x (at each sorted tail point both
i/n - F and F - (i-1)/n are checked); WeightWatcher checks only F - (i-1)/n, which
can pick a different xmin on a noisy spectrum, often a tail of a few points with a large
alpha. `ks="weightwatcher"` reproduces its choice (tests/test_probe_spectra.py checks both). Eigenvalues below `1e-12 * max` are dropped as numerical zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from biaslab.probes.core import Metrics, weight_matrices

KSConvention = Literal["two_sided", "weightwatcher"]
ZERO_EIGENVALUE = 1e-12  # eigenvalues below this fraction of the largest are numerical zeros


def singular_values(w: torch.Tensor) -> torch.Tensor:
    """Singular values of a matrix (conv kernels flattened to (out, rest)), descending, float64."""
    return torch.linalg.svdvals(w.detach().flatten(1).to(torch.float64))


def singular_values_by_layer(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight matrix's singular values (descending, float64), by parameter name: for histograms."""
    return {name: singular_values(w) for name, w in weight_matrices(model)}


def stable_rank(s: torch.Tensor) -> float:
    """||W||_F^2 / ||W||_2^2 from the singular values `s` (nan for a zero matrix)."""
    top = s.max().item() if s.numel() else 0.0
    return (s.square().sum().item() / top**2) if top > 0 else float("nan")


def effective_rank(s: torch.Tensor) -> float:
    """exp(entropy of s / sum s), Roy & Vetterli 2007 (nan for a zero matrix)."""
    total = s.sum().item() if s.numel() else 0.0
    if total <= 0:
        return float("nan")
    p = s[s > 0] / total
    return math.exp(-(p * p.log()).sum().item())


def layer_eigenvalues(w: torch.Tensor) -> np.ndarray:
    """Eigenvalues of W^T W / N, N = max(n, p), ascending, without numerical zeros."""
    s = singular_values(w)
    evals = (s.square() / max(w.flatten(1).shape)).numpy()[::-1].copy()
    return evals[evals > ZERO_EIGENVALUE * evals.max()] if evals.size and evals.max() > 0 else evals[:0]


@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power law p(x) ~ x^-alpha on x >= xmin, fitted by Clauset-Shalizi-Newman."""

    alpha: float
    xmin: float
    ks_distance: float
    n_tail: int
    alpha_stderr: float  # (alpha - 1) / sqrt(n_tail), the MLE's asymptotic standard error

    @classmethod
    def failed(cls) -> PowerLawFit:
        nan = float("nan")
        return cls(nan, nan, nan, 0, nan)


def power_law_mle(tail: np.ndarray, xmin: float) -> float:
    """Continuous power-law MLE alpha = 1 + n / sum log(x / xmin) for samples x >= xmin (CSN eq. 3.1)."""
    return 1.0 + tail.size / float(np.sum(np.log(tail / xmin)))


def ks_distance(tail: np.ndarray, xmin: float, alpha: float, convention: KSConvention = "two_sided") -> float:
    """Distance between the sorted tail's empirical CDF and the fitted 1 - (x / xmin)^(1 - alpha).

    two_sided: the supremum over x, checking both sides of each step (i/n and (i-1)/n, 1-based);
    weightwatcher: only the value just below each step, |F(x_i) - (i-1)/n| (WeightWatcher 0.7's WWFit).
    """
    n = tail.size
    fitted = 1.0 - (tail / xmin) ** (1.0 - alpha)
    below = fitted - np.arange(n) / n
    if convention == "weightwatcher":
        return float(np.abs(below).max())
    above = np.arange(1, n + 1) / n - fitted
    return float(max(above.max(), below.max()))


def fit_power_law(samples: np.ndarray | torch.Tensor, min_tail: int = 2, ks: KSConvention = "two_sided") -> PowerLawFit:
    """Clauset-Shalizi-Newman fit: the xmin among the samples minimizing the KS distance, and its MLE.

    Candidates are the distinct sample values whose tail has at least `min_tail` points; ties
    in the KS distance go to the smallest xmin. `ks` picks the KS convention (`ks_distance`).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    x = x[x > 0]
    if x.size < max(min_tail, 2):
        return PowerLawFit.failed()
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[i] = sum_{j >= i} log x_j
    best = PowerLawFit.failed()
    _, first = np.unique(x, return_index=True)  # first index of each distinct value
    for i in first:
        n_tail = x.size - i
        if n_tail < min_tail:
            break
        spread = suffix[i] - n_tail * logs[i]
        if spread <= 0:
            continue
        alpha = 1.0 + n_tail / spread
        distance = ks_distance(x[i:], x[i], alpha, ks)
        if not distance >= best.ks_distance:  # true for the first candidate (nan) and any improvement
            best = PowerLawFit(float(alpha), float(x[i]), distance, int(n_tail), float((alpha - 1.0) / math.sqrt(n_tail)))
    return best


def layer_spectrum(w: torch.Tensor, min_tail: int = 2, ks: KSConvention = "two_sided") -> Metrics:
    """Stable rank, effective rank, spectral norm and the power-law fit of one weight matrix."""
    s = singular_values(w)
    fit = fit_power_law(layer_eigenvalues(w), min_tail, ks)
    top_eigenvalue = s[0].item() ** 2 / max(w.flatten(1).shape) if s.numel() else float("nan")
    return {
        "spectral_norm": s[0].item() if s.numel() else float("nan"),
        "stable_rank": stable_rank(s),
        "effective_rank": effective_rank(s),
        "alpha": fit.alpha,
        "alpha_xmin": fit.xmin,
        "alpha_ks": fit.ks_distance,
        "alpha_n_tail": float(fit.n_tail),
        "alpha_stderr": fit.alpha_stderr,
        "alpha_weighted": fit.alpha * math.log10(top_eigenvalue) if top_eigenvalue > 0 else float("nan"),
    }


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def weight_spectra(model: nn.Module, min_tail: int = 2, ks: KSConvention = "two_sided") -> Metrics:
    """Per-layer spectra as `{quantity}.{parameter name}` plus means over layers.

    Summaries: stable_rank_mean, effective_rank_mean, alpha_mean (over layers whose fit
    succeeded) and alpha_weighted_mean (Martin & Mahoney's alpha-hat: mean of
    alpha * log10(largest eigenvalue of W^T W / N)). A layer's fit fails (nan) when it has
    fewer than two nonzero eigenvalues.
    """
    per_layer = {name: layer_spectrum(w, min_tail, ks) for name, w in weight_matrices(model)}
    metrics: Metrics = {f"{key}.{name}": value for name, row in per_layer.items() for key, value in row.items()}
    for key in ("stable_rank", "effective_rank", "alpha", "alpha_weighted"):
        metrics[f"{key}_mean"] = _finite_mean([row[key] for row in per_layer.values()])
    return metrics
