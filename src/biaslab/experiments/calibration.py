"""Calibration against width and training time: does a network that fits its data become overconfident?

The seed discussion asks to "know when a model is confident vs when it's just
pattern matching". Guo, Pleiss, Sun & Weinberger (2017, ICML) found that modern
networks are miscalibrated (overconfident) and that the test NLL keeps rising
after the test error has stopped changing: continued training past zero training
error sharpens the softmax on the training set and, with it, on test examples
the network gets wrong. Here one-hidden-layer ReLU MLPs of growing width are
trained on MNIST-1D by SGD (lr 0.05, momentum 0.9, batch 100) far past the step
where they first reach zero training error, and at every evaluation (log-spaced
steps) the test expected calibration error (15 equal-width bins), NLL, Brier
score and accuracy are measured by `probes.calibration` through the trainer's
`on_eval` hook; the final reliability table of every run is kept.

Figures: test ECE and NLL against steps per width (seed mean, the first
zero-training-error step of each width marked); ECE and NLL at the end against
width (mean, min-max over seeds); reliability diagrams at the end for the
narrowest and the widest width (first seed).

Claim check (what is claimed is only what Guo et al. report, checked on the
numbers): at every width that reaches zero training error in every seed, the
test ECE and the test NLL at the end of training exceed their values at the
first zero-training-error evaluation, by more than 2 standard errors of the
seed-paired difference. ECE against width at the end (Spearman over widths) and
the accuracy change past interpolation are reported as notes, not claimed.

Reduced from Guo et al.: MNIST-1D (2000 train / 1000 test at `quick`) and
one-hidden-layer MLPs of widths 32..512 instead of ResNets on CIFAR-100; 5000
steps (250 epochs); 3 seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biaslab.claims import Checks, Verdict, spearman
from biaslab.experiments.base import CATALOG, Experiment, Result, SUPERVISED_READS
from biaslab.experiments.supervised import setup, with_probes
from biaslab.plot import legend_once, mean_band, new_figure, reliability_diagram
from biaslab.probes.calibration import ReliabilityTable, calibration_metrics, reliability_table, softmax_outputs
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import fit

NAME = "calibration"
FINDING = "Training past zero training error makes the network more overconfident: test ECE and NLL at the end exceed their values at interpolation (Guo et al. 2017)."
PREFIX = "test_calibration"
RISE_SE = 2.0  # the end-of-training value exceeds the value at interpolation by more than this many SE (seed-paired)
TABLE_FIELDS = ("lower", "upper", "confidence", "accuracy", "count")


def run(spec: RunSpec) -> Result:
    """Train the MLP with calibration measured on the test set at every evaluation; keep the final reliability table."""
    data, model = setup(spec)
    on_eval = lambda m, step: calibration_metrics(m, data.x_test, data.y_test, prefix=PREFIX)  # noqa: E731
    result = fit(model, data, spec.train, generator(spec.seed, "batches"), with_probes(spec, model, data, on_eval))
    table = reliability_table(softmax_outputs(model, data.x_test), data.y_test)
    arrays = {f"reliability_{name}": [float(v) for v in getattr(table, name)] for name in TABLE_FIELDS}
    return Result.of(result, arrays=arrays, model=model)


# ---------------------------------------------------------------- presets


def _sweep(n_train: int, n_test: int, widths, seeds, max_steps: int, eval_points: int) -> Sweep:
    data = DataSpec(name="mnist1d", n_train=n_train, n_test=n_test, standardize=False)
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=100, max_steps=max_steps, eval_spacing="log", eval_points=eval_points)
    base = RunSpec(experiment=NAME, data=data, model=ModelSpec(kind="mlp", depth=1, width=widths[0]), train=train)
    return Sweep(base=base, grid={"seed": tuple(seeds), "model.width": tuple(widths)})


def tiny() -> Sweep:
    return _sweep(200, 200, (16, 128), (0, 1), 300, 8)


def quick() -> Sweep:
    return _sweep(2000, 1000, (32, 128, 512), (0, 1, 2), 5000, 30)


def paper() -> Sweep:
    return _sweep(4000, 1000, (16, 32, 64, 128, 256, 512, 1024, 2048), (0, 1, 2, 3, 4), 40000, 60)


# ---------------------------------------------------------------- reading the records


def interpolation_row(record: RunRecord) -> int | None:
    """Index of the first evaluation with zero training error, or None."""
    errors = record.curves.get("train_error", [])
    return next((i for i, e in enumerate(errors) if e == 0.0), None)


def summary_table(records: list[RunRecord]) -> pd.DataFrame:
    """Per run: width, seed, ECE/NLL/accuracy at the first zero-training-error evaluation and at the end."""
    rows = []
    for r in records:
        if r.status != "ok" or f"{PREFIX}_ece" not in r.curves:
            continue
        at = interpolation_row(r)
        row = {"width": r.run_spec.model.width, "seed": r.run_spec.seed, "interpolates": at is not None}
        for key in ("ece", "nll", "accuracy"):
            curve = r.curves[f"{PREFIX}_{key}"]
            row[f"{key}_end"] = float(curve[-1])
            row[f"{key}_interp"] = float(curve[at]) if at is not None else math.nan
        row["interp_step"] = float(r.curves["step"][at]) if at is not None else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["width", "seed", "interpolates", "ece_end", "ece_interp", "nll_end", "nll_interp", "accuracy_end", "accuracy_interp", "interp_step"])


def judge(table: pd.DataFrame) -> Verdict:
    numbers: dict[str, float] = {}
    checks, notes = Checks(), []
    judged = 0
    for width, rows in table.groupby("width") if len(table) else []:
        if not rows["interpolates"].all():
            notes.append(f"width {width}: not every seed reaches zero training error; not judged")
            continue
        judged += 1
        for key in ("ece", "nll"):
            diff = rows[f"{key}_end"] - rows[f"{key}_interp"]
            mean = float(diff.mean())
            se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
            numbers |= {f"w{width}_{key}_interp": float(rows[f"{key}_interp"].mean()), f"w{width}_{key}_end": float(rows[f"{key}_end"].mean()), f"w{width}_{key}_rise_se": se}
            ok = len(diff) > 1 and mean > RISE_SE * se
            checks.check(ok, f"width {width}: test {key.upper()} {rows[f'{key}_interp'].mean():.3f} at interpolation -> {rows[f'{key}_end'].mean():.3f} at the end ({mean:+.3f} +- {se:.3f} SE, need > {RISE_SE:g} SE)")
        change = float((rows["accuracy_end"] - rows["accuracy_interp"]).mean())
        notes.append(f"width {width}: test accuracy changes {change:+.3f} past interpolation (first zero train error at step {rows['interp_step'].mean():.0f})")
    if judged == 0:
        checks.fail("no width reaches zero training error in every seed")
    if len(table):
        ends = table.groupby("width")["ece_end"].mean()
        rho = spearman(list(ends.index), list(ends.values))
        numbers["spearman_width_vs_ece_end"] = rho
        notes.append(f"ECE at the end against width: {', '.join(f'{w}: {v:.3f}' for w, v in ends.items())} (Spearman {rho:.2f}); not claimed")
    numbers["widths_judged"] = float(judged)
    return checks.verdict(FINDING, numbers, notes)


# ---------------------------------------------------------------- the experiment


class Calibration(Experiment):
    """MLPs of growing width trained on MNIST-1D far past zero training error, with the test ECE, NLL and
    reliability diagrams measured along training. Checks whether continued training makes them overconfident, and
    reports how calibration depends on width."""

    title = "Calibration against width and training time: ECE and NLL past interpolation"
    axes_note = 'not yet cut for the atlas (it could admit both axes: one MLP grid on MNIST-1D); run it with --set train.optimizer=... meanwhile'
    reference = "Guo, Pleiss, Sun & Weinberger 2017, On Calibration of Modern Neural Networks (ICML)"
    reads = SUPERVISED_READS
    trains_model = True
    allows = {"model.kind": ("mlp", "cnn")}

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        ok = [r for r in records if r.status == "ok" and f"{PREFIX}_ece" in r.curves]
        widths = sorted({r.run_spec.model.width for r in ok})
        fig, axes = new_figure(ncols=2, nrows=2)
        for i, width in enumerate(widths):
            runs = [r for r in ok if r.run_spec.model.width == width]
            for ax, key in zip(axes[:2], ("ece", "nll")):
                length = min(len(r.curves["step"]) for r in runs)
                steps = np.maximum(np.array(runs[0].curves["step"][:length]), 1)
                mean = np.mean([r.curves[f"{PREFIX}_{key}"][:length] for r in runs], axis=0)
                ax.plot(steps, mean, color=f"C{i}", label=f"H={width}")
                at = [interpolation_row(r) for r in runs]
                if all(a is not None for a in at):
                    ax.axvline(max(runs[0].curves["step"][a] for a in at), color=f"C{i}", linestyle=":", linewidth=1)
                ax.set(xscale="log", xlabel="step", ylabel=f"test {key.upper()}", title=f"test {key.upper()} over training")
        for ax in axes[:2]:
            if any(line.get_linestyle() == ":" for line in ax.lines):
                ax.plot([], [], color="grey", linestyle=":", linewidth=1, label="zero train error")
            legend_once(ax)
        table = summary_table(records)
        for ax, key in zip(axes[2:], ("ece", "nll")):
            if len(table):
                mean_band(ax, table, "width", f"{key}_end", label="end of training", markersize=6)
                interp = table.groupby("width")[f"{key}_interp"].mean()
                ax.plot(interp.index, interp.values, "s--", label="at interpolation")
            ax.set(xscale="log", xlabel="hidden units H", ylabel=f"test {key.upper()}", title=f"test {key.upper()} against width")
            ax.set_xticks(widths, [str(w) for w in widths], minor=False)
            ax.minorticks_off()
            legend_once(ax)
        figures = {"calibration": fig}
        for width in {widths[0], widths[-1]} if widths else ():
            first = min((r for r in ok if r.run_spec.model.width == width), key=lambda r: r.run_spec.seed)
            if first.arrays.get("reliability_count"):
                fields = {name: first.arrays[f"reliability_{name}"] for name in TABLE_FIELDS}
                fields["count"] = [int(c) for c in fields["count"]]
                table_w = ReliabilityTable(**fields, binning="equal_width")
                figures[f"reliability-width-{width}"] = reliability_diagram(table_w, f"H={width}, end of training: ECE = {table_w.ece:.3f}")
        return figures

    def claim(self, records: list[RunRecord]) -> Verdict:
        return judge(summary_table(records))


CATALOG.add(NAME, Calibration())
