"""Grokking phase diagram: training fraction x weight decay (Power et al. 2022 Fig. 2; Liu et al. 2022).

Many small grokking runs, one per cell of a grid over the fraction of the
table a + b mod p used for training and the AdamW weight decay, run by the
ordinary sweep executor (so an interrupted diagram resumes where it stopped).
Each cell is classified from its accuracy curves, with the thresholds of the
`grokking` experiment (99% accuracy, a delay of at least 10x):

- no learning: training accuracy never reaches 99% within the budget;
- memorization: training accuracy reaches 99%, test accuracy never does;
- grokking: both do, test at least 10x later than train;
- comprehension: both do, test less than 10x later (generalizing while fitting).

Liu et al. ("Towards understanding grokking", NeurIPS 2022) name the same four
phases (confusion, memorization, grokking, comprehension) with a threshold on the
gap between the two steps; a ratio suits log-spaced evaluations. The figure is
the grid coloured by phase, each cell annotated with the steps to 99% test
accuracy. Power et al.'s finding: below some training fraction nothing
generalizes within the budget, and above it the steps to generalize fall
steeply as the fraction grows.

Reduced from the papers: `quick` uses the MLP on concatenated embeddings
(p = 59, embedding 64, 128 ReLU units) with 2k full-batch AdamW steps at lr
3e-3 (Power et al.: 1e-3; the grokking time scales roughly as 1 / (lr x wd), and
at lr 1e-3 the 12 cells would not fit 2 cores: measured, half of the pairs
with wd 1 generalize after ~5k steps at lr 1e-3 and ~1.6k at 3e-3), betas
(0.9, 0.98), fractions 0.3, 0.5, 0.65, 0.8 and weight decay 0, 1, 3, one seed
per cell; Power et al. used a 2-layer transformer, p = 97, 1e5 steps and more
fractions. `paper` uses Nanda et al.'s transformer at p = 113 with 20k steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from biaslab.claims import Verdict, spearman
from biaslab.experiments.base import CATALOG, Experiment, SUPERVISED_READS
from biaslab.experiments.grokking import DELAY_FACTOR, LEVEL, run_grokking, summarize
from biaslab.plot import new_figure
from biaslab.spec import DataSpec, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord

NAME = "grokking-phase-diagram"
FINDING = "Below some training fraction nothing generalizes within the budget; above it, the steps to generalize fall as the fraction grows."
PHASES = ("no learning", "memorization", "grokking", "comprehension")
PHASE_COLORS = ("#bdbdbd", "#fdae61", "#d7191c", "#2c7bb6")


def classify(train_99_step: float, test_99_step: float, delay_factor: float = DELAY_FACTOR) -> str:
    """The phase of a run from the first steps at which train and test accuracy reach 99% (NaN: never)."""
    if math.isnan(train_99_step):
        return "no learning"
    if math.isnan(test_99_step):
        return "memorization"
    return "grokking" if test_99_step >= delay_factor * train_99_step else "comprehension"


def cells(records: list[RunRecord]) -> dict[tuple[float, float], list[dict[str, float]]]:
    """(train fraction, weight decay) -> the curve summaries of its finished runs (one per seed)."""
    table: dict[tuple[float, float], list[dict[str, float]]] = {}
    for r in records:
        if r.status == "ok" and r.curves:
            key = (float(r.run_spec.data.train_fraction), float(r.run_spec.train.weight_decay))
            table.setdefault(key, []).append(summarize(r.curves))
    return table


def cell_phase(summaries: list[dict[str, float]]) -> str:
    """A cell's phase: that of the seed-median steps (NaN counts as 'never', so a majority of failures wins)."""
    return classify(_median_steps(summaries, "train_99_step"), _median_steps(summaries, "test_99_step"))


def _median_steps(summaries: list[dict[str, float]], key: str) -> float:
    values = sorted((s[key] if math.isfinite(s[key]) else math.inf) for s in summaries)
    middle = values[(len(values) - 1) // 2]
    return middle if math.isfinite(middle) else math.nan


def _sweep(data: DataSpec, model: ModelSpec, train: TrainSpec, fractions: Sequence[float], decays: Sequence[float], seeds: Sequence[int]) -> Sweep:
    base = RunSpec(experiment=NAME, data=data.model_copy(update={"train_fraction": fractions[0]}), model=model, train=train, probes=("norms",))
    return Sweep(base=base, grid={"data.train_fraction": tuple(fractions), "train.weight_decay": tuple(decays), "seed": tuple(seeds)})


def _adamw(max_steps: int, eval_points: int, lr: float = 1e-3) -> TrainSpec:
    return TrainSpec(
        optimizer="adamw", lr=lr, betas=(0.9, 0.98), weight_decay=1.0, batch_size=None,
        max_steps=max_steps, eval_spacing="log", eval_points=eval_points,
    )  # fmt: skip


def tiny() -> Sweep:
    """Seconds: p = 23, a 2 x 2 grid, 300 steps."""
    data = DataSpec(name="modular", modulus=23)
    model = ModelSpec(kind="token_mlp", embed_dim=16, width=32, init="normal")
    return _sweep(data, model, _adamw(300, 20), (0.3, 0.6), (0.0, 1.0), (0,))


def quick() -> Sweep:
    """p = 59, the MLP, lr 3e-3, 2k steps, fractions 0.3..0.8 x weight decay 0, 1, 3: 12 runs, a few minutes on 2 cores."""
    data = DataSpec(name="modular", modulus=59)
    model = ModelSpec(kind="token_mlp", embed_dim=64, width=128, init="normal")
    return _sweep(data, model, _adamw(2_000, 60, lr=3e-3), (0.3, 0.5, 0.65, 0.8), (0.0, 1.0, 3.0), (0,))


def paper() -> Sweep:
    """Nanda et al.'s transformer at p = 113, 20k steps, fractions 0.1..0.8 x weight decay 0..3 (a GPU helps)."""
    data = DataSpec(name="modular", modulus=113)
    model = ModelSpec(kind="transformer", embed_dim=128, heads=4, width=512, depth=1, init="normal")
    return _sweep(data, model, _adamw(20_000, 120), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8), (0.0, 0.3, 1.0, 3.0), (0,))


class GrokkingPhaseDiagram(Experiment):
    """A grid of small modular-addition runs over training fraction and weight decay, each classified as no
    learning, memorization, grokking or comprehension. Below a critical training fraction nothing generalizes within
    the budget; above it the steps to generalize fall as the fraction grows."""

    title = "Grokking phase diagram: training fraction x weight decay"
    axes_note = "grokking's row of the atlas carries the optimizer and architecture axes; the phase diagram stays with AdamW"
    reference = (
        "Power et al. 2022, Grokking (arXiv:2201.02177), Fig. 2; Liu et al. 2022, Towards Understanding Grokking: "
        "An Effective Theory of Representation Learning (NeurIPS)"
    )
    runner = run_grokking
    reads = SUPERVISED_READS
    trains_model = True

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        table = cells(records)
        fractions = sorted({f for f, _ in table})
        decays = sorted({d for _, d in table})
        fig, (ax,) = new_figure(width=max(4.5, 0.9 * len(fractions) + 2.5), height=max(3.0, 0.7 * len(decays) + 1.8))
        grid = np.full((len(decays), len(fractions)), np.nan)
        for (f, d), summaries in table.items():
            i, j = decays.index(d), fractions.index(f)
            grid[i, j] = PHASES.index(cell_phase(summaries))
            steps = _median_steps(summaries, "test_99_step")
            ax.text(j, i, f"{steps:.0f}" if math.isfinite(steps) else "-", ha="center", va="center", fontsize=8)
        ax.imshow(grid, cmap=ListedColormap(PHASE_COLORS), vmin=-0.5, vmax=len(PHASES) - 0.5, origin="lower", aspect="auto")
        ax.set_xticks(range(len(fractions)), [f"{f:g}" for f in fractions])
        ax.set_yticks(range(len(decays)), [f"{d:g}" for d in decays])
        ax.set(xlabel="training fraction", ylabel="weight decay", title=f"phase; number: steps to {LEVEL:.0%} test accuracy")
        ax.legend(handles=[Patch(color=c, label=p) for p, c in zip(PHASES, PHASE_COLORS)], fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return {"phases": fig}

    def claim(self, records: list[RunRecord]) -> Verdict:
        return phase_verdict(records)


def phase_verdict(records: list[RunRecord]) -> Verdict:
    """(a) no cell at the smallest fraction generalizes while some cell does; (b) in every weight-decay row with
    at least 3 generalizing fractions, the steps to generalize fall with the fraction (Spearman < 0), and there is such a row."""
    table = cells(records)
    if not table:
        return Verdict(FINDING, False, {"cells": 0.0}, "no finished runs")
    steps = {key: _median_steps(summaries, "test_99_step") for key, summaries in table.items()}
    fractions = sorted({f for f, _ in table})
    generalizing = sorted(f for (f, _), s in steps.items() if math.isfinite(s))
    numbers: dict[str, float] = {"cells": float(len(table)), "generalizing_cells": float(len(generalizing))}
    numbers["smallest_fraction"] = fractions[0]
    numbers["smallest_generalizing_fraction"] = generalizing[0] if generalizing else math.nan
    threshold = bool(generalizing) and generalizing[0] > fractions[0]
    rows = {}
    for d in sorted({d for _, d in table}):
        row = sorted((f, s) for (f, dd), s in steps.items() if dd == d and math.isfinite(s))
        if len(row) >= 3:
            rows[d] = spearman([f for f, _ in row], [s for _, s in row])
            numbers[f"spearman_wd{d:g}"] = rows[d]
    falling = bool(rows) and all(rho < 0 for rho in rows.values())  # NaN (constant steps) is not a fall
    reason = (
        f"smallest fraction {fractions[0]:g}: "
        + ("no cell generalizes" if threshold else "some cell generalizes" if generalizing else "no cell generalizes at any fraction")
        + "; "
        f"first generalizing fraction {numbers['smallest_generalizing_fraction']:g} [{'ok' if threshold else 'FAILS'}]; "
        + (
            "rank correlation of steps-to-generalize with fraction per weight decay: "
            + ", ".join(f"wd {d:g}: {rho:+.2f}" for d, rho in rows.items())
            if rows
            else "no weight decay generalizes at 3 or more fractions"
        )
        + f" (needs all < 0) [{'ok' if falling else 'FAILS'}]"
    )
    notes = tuple(
        f"weight decay {d:g}: " + ", ".join(f"{f:g}: {cell_phase(table[(f, d)])}" + (f" ({steps[(f, d)]:.0f})" if math.isfinite(steps[(f, d)]) else "") for f in fractions if (f, d) in table)
        for d in sorted({d for _, d in table})
    )
    return Verdict(FINDING, threshold and falling, numbers, reason, notes)


CATALOG.add(NAME, GrokkingPhaseDiagram())
