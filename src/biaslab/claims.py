"""Verdicts: a published finding stated as a falsifiable test on measured numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Verdict:
    """PASS or FAIL for one claim, with the numbers it was decided on."""

    claim: str  # the finding, as the paper states it, in one sentence
    passed: bool
    numbers: dict[str, float] = field(default_factory=dict)
    reason: str = ""  # how the numbers decide the verdict
    notes: tuple[str, ...] = ()  # observations reported beside the verdict, not part of it

    @property
    def label(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict:
        return {"claim": self.claim, "verdict": self.label, "numbers": self.numbers, "reason": self.reason, "notes": list(self.notes)}

    def summary(self) -> str:
        """A few lines for a terminal."""
        numbers = ", ".join(f"{k}={_fmt(v)}" for k, v in self.numbers.items())
        lines = [f"{self.label}: {self.claim}", f"  {self.reason}", *([f"  numbers: {numbers}"] if numbers else [])]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])

    def _repr_html_(self) -> str:
        """The verdict in a notebook: label, claim, reason, the numbers as a table, the notes."""
        import html

        colour = "#2e7d32" if self.passed else "#c62828"
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{html.escape(_fmt(v))}</td></tr>" for k, v in self.numbers.items())
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<div style='border-left:4px solid {colour};padding:0.3em 0.8em'><b style='color:{colour}'>{self.label}</b>: "
            f"{html.escape(self.claim)}<br><span style='color:#555'>{html.escape(self.reason)}</span>"
            f"<table>{rows}</table>" + (f"<ul>{notes}</ul>" if notes else "") + "</div>"
        )


class Checks:
    """The parts of a claim, each decided on measured numbers and said in one line. The verdict passes when every
    part passes; its reason is the failed parts after 'FAIL: ', or every part when none failed."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []

    def check(self, ok: bool, said: str) -> bool:
        """Record one part: `said` states what was measured against what the claim needs. Returns `ok`."""
        (self.passed if ok else self.failed).append(said)
        return ok

    def fail(self, said: str) -> None:
        """Record a part that cannot pass (its runs are missing, say)."""
        self.failed.append(said)

    def verdict(self, claim: str, numbers: dict[str, float], notes: Sequence[str] = ()) -> Verdict:
        """The claim's verdict on these parts, with its numbers as floats and the notes reported beside it."""
        reason = "FAIL: " + "; ".join(self.failed) if self.failed else "; ".join(self.passed)
        return Verdict(claim, not self.failed, {k: float(v) for k, v in numbers.items()}, reason, tuple(notes))


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def interpolation_width(table: pd.DataFrame) -> int | None:
    """The narrowest `model.width` at which every run (every seed) ends with zero `train_error`; None if none does."""
    if not len(table):
        return None
    worst = table.groupby("model.width")["train_error"].max()  # over seeds
    zero = worst[worst == 0.0]
    return int(zero.index.min()) if len(zero) else None


def last_decade(steps: Sequence[float], values: Sequence[float]) -> tuple[float, float, float, float]:
    """(t_end, value at t_end, the evaluation step nearest t_end / 10, value there) of a log-spaced curve: how a
    quantity moved over the last decade of steps."""
    t, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    earlier = int(np.argmin(np.abs(np.log10(np.maximum(t, 1.0)) - (np.log10(t[-1]) - 1.0))))
    return float(t[-1]), float(v[-1]), float(t[earlier]), float(v[earlier])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation; NaN when fewer than 3 points or a constant input."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b; NaN when fewer than 2 points or a constant input."""
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(stats.kendalltau(x, y).statistic)


def granulated_kendall(rows: Sequence[dict], measure: str, target: str, axes: Sequence[str]) -> dict[str, float]:
    """Jiang et al. 2020's granulated Kendall coefficient: per hyperparameter axis, the mean tau within groups of
    rows that differ only in that axis (psi_axis), and their mean over axes (Psi, key 'all').

    Each row maps hyperparameter names (the `axes`, plus anything else that must match, e.g. the seed) and
    measure names to values. Groups with fewer than two distinct values of the axis are skipped.
    """
    psi: dict[str, float] = {}
    for axis in axes:
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            key = tuple(sorted((k, v) for k, v in row.items() if k in axes and k != axis or k == "seed"))
            groups.setdefault(key, []).append(row)
        taus = [kendall([r[measure] for r in g], [r[target] for r in g]) for g in groups.values() if len({r[axis] for r in g}) > 1]
        taus = [t for t in taus if not math.isnan(t)]
        psi[axis] = sum(taus) / len(taus) if taus else math.nan
    finite = [v for v in psi.values() if not math.isnan(v)]
    return psi | {"all": sum(finite) / len(finite) if finite else math.nan}
