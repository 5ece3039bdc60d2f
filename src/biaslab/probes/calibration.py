"""Calibration of a classifier's softmax probabilities: ECE, NLL, Brier score, reliability table.

For probabilities p (n, K) and labels y (n,), the confidence of an example is max_k p_k and
it is correct when argmax_k p_k == y. Examples are grouped into bins by confidence:

- equal_width: B bins (b/B, (b+1)/B] (the first one closed at 0), as in Guo et al. 2017;
- equal_mass: the examples sorted by confidence and cut into B groups of sizes differing by
  at most one (ties are split by sort order), as in Nixon et al. 2019's adaptive binning.

ECE = sum_b (n_b / n) |accuracy_b - confidence_b| (empty bins contribute nothing);
MCE = max over non-empty bins of the same gap. NLL = mean -log p_y (probabilities clamped
at the smallest positive float). Brier score = mean over examples of sum_k (p_k - 1[k = y])^2,
Brier's (1950) multiclass form, between 0 and 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from biaslab.probes.core import Metrics, measuring, predict

Binning = Literal["equal_width", "equal_mass"]


@dataclass(frozen=True)
class ReliabilityTable:
    """Per-bin data of a reliability diagram; empty bins have count 0 and nan confidence/accuracy."""

    lower: list[float]  # bin edges in confidence (equal_mass: smallest confidence in the bin)
    upper: list[float]
    confidence: list[float]  # mean confidence of the bin's examples
    accuracy: list[float]  # fraction of the bin's examples that are correct
    count: list[int]
    binning: str

    @property
    def ece(self) -> float:
        n = sum(self.count)
        return sum(c / n * abs(a - f) for c, a, f in zip(self.count, self.accuracy, self.confidence) if c > 0)

    @property
    def mce(self) -> float:
        return max(abs(a - f) for c, a, f in zip(self.count, self.accuracy, self.confidence) if c > 0)


def _bin_index(confidence: torch.Tensor, n_bins: int, binning: Binning) -> torch.Tensor:
    """The bin of each example, (n,) int64 in [0, n_bins)."""
    if binning == "equal_width":
        edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=confidence.dtype, device=confidence.device)
        return (torch.bucketize(confidence, edges[1:-1], right=False)).clamp_(0, n_bins - 1)
    if binning == "equal_mass":
        n = confidence.shape[0]
        ranks = torch.empty(n, dtype=torch.long, device=confidence.device)
        ranks[confidence.argsort(stable=True)] = torch.arange(n, device=confidence.device)
        return ranks * n_bins // n  # group sizes differ by at most one
    raise ValueError(f"binning: unknown binning {binning!r}; allowed: equal_width, equal_mass")


def reliability_table(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15, binning: Binning = "equal_width") -> ReliabilityTable:
    """Per-bin confidence, accuracy and count for probabilities `probs` (n, K) and labels `y` (n,)."""
    if n_bins < 1:
        raise ValueError(f"n_bins: must be at least 1, got {n_bins}")
    confidence, predicted = probs.detach().max(dim=1)
    correct = (predicted == y).to(confidence.dtype)
    index = _bin_index(confidence, n_bins, binning)
    count = torch.bincount(index, minlength=n_bins)
    conf_sum = torch.zeros(n_bins, dtype=confidence.dtype, device=confidence.device).index_add_(0, index, confidence)
    acc_sum = torch.zeros_like(conf_sum).index_add_(0, index, correct)
    safe = count.clamp_min(1).to(confidence.dtype)
    empty = count == 0
    mean_conf = (conf_sum / safe).masked_fill(empty, float("nan"))
    mean_acc = (acc_sum / safe).masked_fill(empty, float("nan"))
    if binning == "equal_width":
        edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
        lower, upper = edges[:-1].tolist(), edges[1:].tolist()
    else:
        lows = torch.full((n_bins,), float("inf"), dtype=confidence.dtype, device=confidence.device).scatter_reduce(0, index, confidence, "amin")
        highs = torch.full((n_bins,), float("-inf"), dtype=confidence.dtype, device=confidence.device).scatter_reduce(0, index, confidence, "amax")
        lower, upper = lows.masked_fill(empty, float("nan")).tolist(), highs.masked_fill(empty, float("nan")).tolist()
    return ReliabilityTable(lower, upper, mean_conf.tolist(), mean_acc.tolist(), count.tolist(), binning)


def calibration_from_probs(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15, binning: Binning = "equal_width") -> Metrics:
    """ece, mce, nll, brier and accuracy of probabilities `probs` (n, K) for labels `y` (n,)."""
    probs = probs.detach()
    table = reliability_table(probs, y, n_bins, binning)
    p_true = probs.gather(1, y[:, None]).squeeze(1)
    nll = -p_true.clamp_min(torch.finfo(probs.dtype).tiny).log().mean()
    onehot = torch.zeros_like(probs).scatter_(1, y[:, None], 1.0)
    brier = (probs - onehot).square().sum(dim=1).mean()
    accuracy = (probs.argmax(dim=1) == y).to(probs.dtype).mean()
    values = torch.stack([nll, brier, accuracy]).tolist()
    return {"ece": table.ece, "mce": table.mce, "nll": values[0], "brier": values[1], "accuracy": values[2]}


def softmax_outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's softmax probabilities on `x` (n, K), in eval mode, the caller's mode restored."""
    with measuring(model):
        return predict(model, x).softmax(dim=1)


def calibration_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_bins: int = 15, binning: Binning = "equal_width", prefix: str = "calibration") -> Metrics:
    """{prefix}_ece, _mce, _nll, _brier, _accuracy of the model's softmax on (x, y)."""
    got = calibration_from_probs(softmax_outputs(model, x), y, n_bins, binning)
    return {f"{prefix}_{key}": value for key, value in got.items()}
