"""Width sweep past interpolation (Neyshabur, Tomioka & Srebro 2014, Fig. 1-2).

One-hidden-layer ReLU networks of growing width H are trained with SGD and no
explicit regularizer until they fit the training set. The paper's finding: test
error keeps falling as H grows past the width that first reaches zero training
error, also with label noise, so what limits capacity is not the number of
parameters but a norm that the optimizer keeps small.

Figure 1 is theirs: train and test error against H on a log axis, one panel per
label-noise level, the mean over seeds with the min-max range shaded, the first
interpolating width marked. Figure 2 shows what stays controlled while H grows:
Frobenius norm, distance from init, path norm, spectral-norm product and the
normalized margin against H.

Reduced from the paper: `quick` uses MNIST-1D (4000 train / 1000 test, 40
inputs) instead of 10x10 MNIST and CIFAR-10, widths 8..1024 instead of 4..4096,
3 seeds, 15% label noise instead of ~5%, a constant SGD step (lr 0.05, momentum
0.9, batch 100: the setting measured to reach zero training error at H >= 128 on
clean labels) and a 300-epoch budget, stopping at the first evaluation (every 5
epochs) with zero training error. `paper` uses MNIST and CIFAR-10 at full
resolution with the paper's lr 0.1, decayed x 0.99 every 600 steps (an MNIST
epoch; 1.2 CIFAR-10 epochs) and batch 100, momentum fixed at 0.9 (the paper
ramps it from 0.5), 5% label noise, widths 4..4096. Seeds vary the init and
batch order; the label-noise draw is fixed by data.seed, so the seed spread
leaves out the variance over noise draws.
"""

from __future__ import annotations

import math

import numpy as np

from matplotlib.figure import Figure

from biaslab.claims import Verdict, interpolation_width, spearman
from biaslab.experiments.base import CATALOG, SUPERVISED_READS, Axes, EffectSize, Experiment
from biaslab.experiments.supervised import run_supervised
from biaslab.plot import mean_band, new_figure
from biaslab.spec import DataSpec, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord, finished_table

NAME = "width-sweep"
FINDING = "On clean labels, test error does not rise with width past the narrowest width that fits the training set."
PROBES = ("norms", "path_norm", "margin")


def _sweep(data: DataSpec, train: TrainSpec, widths, noise, seeds) -> Sweep:
    base = RunSpec(experiment=NAME, data=data, model=ModelSpec(kind="mlp", depth=1, width=widths[0]), train=train, probes=PROBES)
    return Sweep(base=base, grid={"data.label_noise": tuple(noise), "seed": tuple(seeds), "model.width": tuple(widths)})


def tiny() -> Sweep:
    """Seconds: a small MNIST-1D and three widths; for tests and smoke checks."""
    data = DataSpec(name="mnist1d", n_train=400, n_test=200, standardize=False)
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=100, max_steps=400, eval_every=40, stop_zero_error_evals=1)
    return _sweep(data, train, (8, 64, 256), (0.0, 0.15), (0,))


def quick() -> Sweep:
    """MNIST-1D 4000/1000, widths 8..1024, clean and 15% noise, 3 seeds: about 2 minutes on 2 cores."""
    data = DataSpec(name="mnist1d", n_train=4000, n_test=1000, standardize=False)
    epoch = 40  # steps per epoch at batch 100
    train = TrainSpec(
        optimizer="sgd", lr=0.05, momentum=0.9, batch_size=100, max_steps=300 * epoch, eval_every=5 * epoch, stop_zero_error_evals=1
    )
    return _sweep(data, train, tuple(2**k for k in range(3, 11)), (0.0, 0.15), (0, 1, 2))


def paper() -> Sweep:
    """MNIST (set data.root) at the paper's widths and optimizer; for a GPU and the real files."""
    data = DataSpec(name="mnist", standardize=True)
    epoch = 600  # steps per epoch: 60000 examples at batch 100
    train = TrainSpec(
        optimizer="sgd", lr=0.1, momentum=0.9, batch_size=100, schedule="step", lr_decay=0.99, decay_every=epoch,
        max_steps=1000 * epoch, eval_every=5 * epoch, stop_zero_error_evals=1,
    )  # fmt: skip
    sweep = _sweep(data, train, tuple(2**k for k in range(2, 13)), (0.0, 0.05), (0, 1))
    return Sweep(base=sweep.base, grid={"data.name": ("mnist", "cifar10")} | dict(sweep.grid))


class WidthSweep(Experiment):
    """One-hidden-layer ReLU networks are trained by SGD without explicit regularization until they fit the training
    set. If parameter count controlled capacity, test error would rise once the network is wide enough to
    interpolate; instead it keeps falling, while norms that the optimizer keeps small stay controlled."""

    title = "Test error keeps falling as width grows past interpolation"
    reference = "Neyshabur, Tomioka & Srebro 2014, In Search of the Real Inductive Bias (arXiv:1412.6614)"
    runner = run_supervised
    reads = SUPERVISED_READS
    trains_model = True
    trains_populations = True
    axes = Axes(
        optimizers=("sgd", "sgd+momentum", "adam", "adamw", "sam"),
        architectures=("mlp", "cnn"),  # width: hidden units of the MLP, channels of the CNN
        effect_sizes=(
            EffectSize("test_error_drop", "clean test error at the first width that fits every seed minus at the widest (> 0: wider generalizes better)"),
            EffectSize("spearman_width_vs_test_error", "rank correlation of test error with width past interpolation (< 0: falls with width)"),
        ),
        reduce={"tiny": {"data.label_noise": 0.0, "model.width": [8, 128]}, "quick": {"data.label_noise": 0.0, "model.width": [8, 32, 128, 512]}},
        pilot={"model.width": 128},
    )

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        table = finished_table(records)
        noise_levels = sorted(table["data.label_noise"].unique())
        errors, axes = new_figure(ncols=len(noise_levels))
        for ax, noise in zip(axes, noise_levels):
            part = table[table["data.label_noise"] == noise]
            mean_band(ax, part, "model.width", "train_error", label="train")
            mean_band(ax, part, "model.width", "test_error", label="test")
            width = interpolation_width(part)
            if width is not None:
                ax.axvline(width, color="grey", linestyle="--", linewidth=1, label=f"zero train error (H={width})")
            ax.set(xscale="log", xlabel="hidden units H", ylabel="0/1 error", title=f"label noise {noise:.0%}")
            ax.set_xscale("log", base=2)
            ax.legend(fontsize=8)
        norms, axes = new_figure(ncols=5, width=3.3)
        measures = [  # (column, title, y-axis label with its unit)
            ("norm_frobenius", "Frobenius norm", "||W||_F, all parameters"),
            ("dist_init", "distance from init", "||W - W0||_F"),
            ("path_norm", "path norm", "l2 path norm"),
            ("norm_spectral_product", "spectral-norm product", "prod_l ||W_l||_2"),
            ("margin_q10", "normalized margin (10th pct)", "margin / prod_l ||W_l||_2"),
        ]
        for ax, (column, label, unit) in zip(axes, measures):
            for noise in noise_levels:
                if column in table:
                    mean_band(ax, table[table["data.label_noise"] == noise], "model.width", column, label=f"noise {noise:.0%}")
            ax.set_xscale("log", base=2)
            ax.set(xlabel="hidden units H", ylabel=unit, title=label)
            ax.legend(fontsize=7)
        norms.suptitle("Norms at the end of training (mean over seeds)", fontsize=9)
        return {"errors": errors, "norms": norms}

    def claim(self, records: list[RunRecord]) -> Verdict:
        table = finished_table(records)
        clean = table[table["data.label_noise"] == 0.0] if len(table) else table
        if len(clean) == 0:
            return Verdict(FINDING, False, {}, "no finished clean-label runs to judge")
        width = interpolation_width(clean)
        numbers: dict[str, float] = {"n_seeds": float(clean["seed"].nunique())}
        notes = _noise_notes(table)
        if width is None:
            numbers["min_train_error"] = float(clean.groupby("model.width")["train_error"].mean().min())
            return Verdict(FINDING, False, numbers, "no width reached zero training error on every seed", notes)
        test = clean.groupby("model.width")["test_error"].mean()
        past = test[test.index >= width]
        numbers |= {
            "interpolation_width": float(width),
            "widest_width": float(past.index.max()),
            "test_error_at_interpolation": float(past.iloc[0]),
            "test_error_at_widest": float(past.iloc[-1]),
            "test_error_drop": float(past.iloc[0] - past.iloc[-1]),
        }
        if len(past) < 2:
            return Verdict(FINDING, False, numbers, "only the widest width fits the training set: nothing past interpolation to compare", notes)
        rho = spearman(list(past.index), list(past.values)) if len(past) >= 3 else float(np.sign(past.iloc[-1] - past.iloc[0]))
        rho = 0.0 if math.isnan(rho) else rho  # constant test error does not rise
        numbers["spearman_width_vs_test_error"] = rho
        passed = past.iloc[-1] <= past.iloc[0] and rho <= 0
        reason = (
            f"test error {past.iloc[0]:.4f} at H={width} (first to interpolate) vs {past.iloc[-1]:.4f} at H={past.index.max()}; "
            f"rank correlation of test error with width past interpolation {rho:+.2f} (PASS needs widest <= first and rho <= 0)"
        )
        return Verdict(FINDING, bool(passed), numbers, reason, notes)


def _noise_notes(table) -> tuple[str, ...]:
    """For each noisy level: does test error bump up near the interpolation width?"""
    notes = []
    for noise in sorted(n for n in table["data.label_noise"].unique() if n > 0) if len(table) else []:
        part = table[table["data.label_noise"] == noise]
        width = interpolation_width(part)
        test = part.groupby("model.width")["test_error"].mean()
        if width is None:
            notes.append(f"label noise {noise:.0%}: no width reached zero training error; test error {test.min():.3f}..{test.max():.3f}")
            continue
        near = test[(test.index >= width / 2) & (test.index <= width * 2)]
        before, after = test[test.index < width / 2], test[test.index > width * 2]
        peak = float(near.max())
        bump = len(before) > 0 and len(after) > 0 and peak > before.min() and peak > after.min()
        notes.append(
            f"label noise {noise:.0%}: interpolation at H={width}; test error near it {peak:.3f}, "
            f"best narrower {before.min() if len(before) else math.nan:.3f}, best wider {after.min() if len(after) else math.nan:.3f}: "
            + ("a bump near the interpolation width" if bump else "no bump near the interpolation width")
        )
    return tuple(notes)


CATALOG.add(NAME, WidthSweep())
