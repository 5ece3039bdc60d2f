"""Large batches find sharper minima (Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017), with the Dinh et al. 2017 caveat.

Keskar et al. trained the same network for the same number of epochs with a
small batch (256) and a large one (10% of the training set) and found the
large-batch solution sharper -- by their epsilon-sharpness, the largest relative
rise of the loss in a small box around the weights -- and worse on test data.
Dinh, Pascanu, Bengio & Bengio 2017 objected that such sharpness is not a
property of the function: rescaling consecutive ReLU layers (w1 -> a w1,
w2 -> w2 / a) leaves the network's function unchanged but moves the top
Hessian eigenvalue and the box-sharpness at will. So beside the Hessian top
eigenvalue and Keskar's epsilon-sharpness this experiment reports the adaptive
sharpness (Kwon et al. 2021), which is invariant to that rescaling, and, as a
demonstration of the caveat, the top eigenvalue of the small-batch solution
after a function-preserving rescaling of its first two layers.

One run is one seed: from one initialization it trains a copy of the network
for each batch size in `train.batch_sizes` (small, large = 10% of the data, and
full batch by default) for the same number of epochs, then measures every
solution on the full training set and evaluates the loss along the straight
line w(alpha) = (1 - alpha) w_small + alpha w_other for alpha in [-1, 2]
(Keskar Fig. 3), stored in the record's arrays. The epoch budget is
`train.max_steps` steps of `train.batch_size` (which must be the smallest batch
size); each batch size b gets ceil(epochs * n / b) steps and evaluations at the
same epochs.

Learning-rate rule: the same optimizer and learning rate for every batch size
(Adam, lr 1e-3, as Keskar et al. used one Adam setting for small and large
batches); no scaling with batch size. Scaling lr with the batch (Goyal et al.
2017) is known to shrink the gap; it is not tested here.

Figures: (1) Keskar's Fig. 3: training and test loss (and test error) along the
line from the small-batch solution (alpha = 0) to the large- and full-batch
solutions (alpha = 1), one line per seed; (2) each sharpness measure and the
test error per batch size, one dot per seed.

A confound the protocol shares with Keskar et al.'s: at the same epochs the
small batch takes many more steps and ends at a lower training loss, and the
cross-entropy's curvature falls with the loss; the mean final training losses
are reported beside the verdict.

Claim check, per seed (not only on means): every larger batch's solution is
sharper than the small batch's on every measure (Hessian top eigenvalue,
epsilon-sharpness, adaptive sharpness). The test-accuracy difference is
reported in the notes as mean and seed range; its sign is stated only when
every seed agrees, and it is not part of the verdict.

Reduced from the paper: MNIST-1D (2000 train / 1000 test) instead of MNIST,
TIMIT and CIFAR; a two-hidden-layer ReLU MLP of width 256 instead of their F1/F2
(5 and 7 layers of 512 with batch norm); small batch 32 (their 256) against 10%
of the data (200) and the full batch; 100 epochs; 4 seeds; epsilon-sharpness by
projected sign ascent (20 steps) instead of L-BFGS-B, epsilon 1e-3 as theirs.
`paper` uses MNIST (set data.root) with batch 256 vs 6000.
"""

from __future__ import annotations

import copy
import math
import statistics

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from biaslab import data as datasets
from biaslab.claims import Verdict
from biaslab.experiments.supervised import fresh_model
from biaslab.experiments.base import CATALOG, Experiment, Result, SUPERVISED_READS
from biaslab.experiments.memory import default_working_memory, hessian_memory
from biaslab.plot import figure_legend, new_figure, plain_log_ticks
from biaslab.probes import curvature, landscape, sharpness
from biaslab.probes.core import snapshot
from biaslab.runtime import generator, resolve_device, resolve_dtype
from biaslab.spec import DataSpec, ModelSpec, RunSpec, SpecError, Sweep, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import LOSSES, Fit, fit

NAME = "batch-size-sharpness"
FINDING = "The large-batch solution is sharper than the small-batch one on every measure (Hessian top eigenvalue, epsilon-sharpness, adaptive sharpness)."
MEASURES = ("hessian_top", "sharpness_keskar", "sharpness_adaptive")
ALPHAS = tuple(round(-1.0 + 0.1 * i, 10) for i in range(31))  # -1 .. 2: alpha = 0 small batch, 1 the other
KESKAR_EPSILON = 1e-3  # Keskar et al.'s box half-width factor
ADAPTIVE_RHO = 0.05
ASCENT_STEPS = 20
RESCALE = 4.0  # Dinh et al.'s function-preserving rescaling factor for the demonstration


def label(batch_size: int | None) -> str:
    """Name of a batch size in metrics: 'b32', or 'full' for the full batch."""
    return "full" if batch_size is None else f"b{batch_size}"


def schedule_for(train: TrainSpec, batch_size: int | None, n: int) -> TrainSpec:
    """The train spec of one batch size: the epochs of (train.batch_size, train.max_steps), at the same epochs' evaluations."""
    steps_per_epoch = lambda b: 1 if b is None or b >= n else math.ceil(n / b)  # noqa: E731  (as `fit` slices epochs)
    epochs, eval_epochs = train.max_steps / steps_per_epoch(train.batch_size), train.eval_every / steps_per_epoch(train.batch_size)
    per_epoch = steps_per_epoch(batch_size)
    return train.model_copy(
        update={
            "batch_size": batch_size,
            "max_steps": max(1, math.ceil(epochs * per_epoch)),
            "eval_every": max(1, round(eval_epochs * per_epoch)),
            "batch_sizes": (),
        }
    )


def measure(model: nn.Module, loss_fn, batches, seed: int) -> dict[str, float]:
    """Hessian top eigenvalue, Keskar's epsilon-sharpness and adaptive sharpness on `batches`."""
    eigen = curvature.top_eigenvalues(model, loss_fn, batches, tol=1e-3, max_iter=200, generator=generator(seed, "bss-lanczos"))
    return {
        "hessian_top": eigen.values[0],
        "hessian_converged": float(eigen.converged),
        "sharpness_keskar": sharpness.keskar(model, loss_fn, batches, KESKAR_EPSILON, ASCENT_STEPS).value,
        "sharpness_adaptive": sharpness.adaptive(model, loss_fn, batches, ADAPTIVE_RHO, ASCENT_STEPS).value,
    }


def rescaled(model: nn.Module, factor: float) -> nn.Module:
    """A copy with the first layer (weight and bias) times `factor` and the second layer's weight divided by it:
    the same function for a ReLU network (Dinh et al. 2017), different curvature."""
    twin = copy.deepcopy(model)
    layers = [m for m in twin.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        layers[0].weight.mul_(factor)
        if layers[0].bias is not None:
            layers[0].bias.mul_(factor)
        layers[1].weight.div_(factor)
    return twin


def run(spec: RunSpec) -> Result:
    """Train one copy per batch size from one init, measure each, and interpolate from the small-batch solution."""
    device, dtype = resolve_device(spec.device), resolve_dtype(spec.dtype)
    data = datasets.load(spec.data, device, dtype)
    loss_fn = LOSSES[spec.train.loss]
    n = data.x_train.shape[0]
    train_batches = [(data.x_train, data.y_train)]
    extra: dict[str, float] = {}
    arrays: dict[str, list[float]] = {"interp_alpha": list(ALPHAS)}
    solutions, fits = {}, {}
    for batch_size in spec.train.batch_sizes:
        name = label(batch_size)
        model = fresh_model(spec, data)
        result = fit(model, data, schedule_for(spec.train, batch_size, n), generator(spec.seed, f"batches-{name}"))
        fits[name], solutions[name] = result, model
        final = result.final
        extra |= {f"{name}.{k}": float(final[k]) for k in ("train_loss", "train_error", "test_loss", "test_error")}
        extra[f"{name}.steps"] = float(result.steps)
        arrays |= {f"{name}.epoch": [r["epoch"] for r in result.history], f"{name}.train_loss": [r["train_loss"] for r in result.history]}
        if result.status == "ok":
            extra |= {f"{name}.{k}": v for k, v in measure(model, loss_fn, train_batches, spec.seed).items()}
    small = label(spec.train.batch_sizes[0])
    if all(f.status == "ok" for f in fits.values()):
        start = snapshot(solutions[small])
        for name, model in solutions.items():
            if name == small:
                continue
            end = snapshot(model)
            for split, (x, y) in {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}.items():
                path = landscape.line(model, loss_fn, x, y, start, end, ALPHAS)
                arrays[f"interp.{name}.{split}_loss"], arrays[f"interp.{name}.{split}_error"] = path.loss.tolist(), path.error.tolist()
        if spec.model.activation == "relu" and spec.model.kind == "mlp":
            twin = rescaled(solutions[small], RESCALE)
            extra[f"{small}.rescaled_hessian_top"] = measure(twin, loss_fn, train_batches, spec.seed)["hessian_top"]
            extra[f"{small}.rescaled_sharpness_adaptive"] = sharpness.adaptive(twin, loss_fn, train_batches, ADAPTIVE_RHO, ASCENT_STEPS).value
    main = fits[small]
    status = "ok" if all(f.status == "ok" for f in fits.values()) else "diverged"
    combined = Fit(history=main.history, status=status, stopped="diverged" if status == "diverged" else main.stopped, steps=main.steps)
    return Result.of(combined, extra, arrays)


# ---------------------------------------------------------------- presets


def _sweep(data: DataSpec, model: ModelSpec, train: TrainSpec, seeds) -> Sweep:
    return Sweep(base=RunSpec(experiment=NAME, data=data, model=model, train=train), grid={"seed": tuple(seeds)})


MLP = ModelSpec(kind="mlp", width=256, depth=2, activation="relu", init="kaiming")


def tiny() -> Sweep:
    """Seconds: 300 examples, small batch 30 vs 100 vs full, 20 epochs, 2 seeds."""
    data = DataSpec(name="mnist1d", n_train=300, n_test=200)
    train = TrainSpec(optimizer="adam", lr=1e-3, batch_size=30, batch_sizes=(30, 100, None), max_steps=200, eval_every=50)
    return _sweep(data, ModelSpec(kind="mlp", width=64, depth=2, activation="relu"), train, (0, 1))


def quick() -> Sweep:
    """MNIST-1D 2000/1000, MLP 2x256, batch 32 vs 200 (10%) vs full, 100 epochs, 4 seeds."""
    data = DataSpec(name="mnist1d", n_train=2000, n_test=1000)
    epoch = 63  # steps per epoch at batch 32 (2000 / 32, rounded up)
    train = TrainSpec(optimizer="adam", lr=1e-3, batch_size=32, batch_sizes=(32, 200, None), max_steps=100 * epoch, eval_every=10 * epoch)
    return _sweep(data, MLP, train, (0, 1, 2, 3))


def paper() -> Sweep:
    """MNIST (set data.root), MLP 2x512, batch 256 vs 6000 (10%), 100 epochs, 5 seeds; for a GPU."""
    data = DataSpec(name="mnist", standardize=True)
    epoch = 235  # 60000 / 256, rounded up
    train = TrainSpec(optimizer="adam", lr=1e-3, batch_size=256, batch_sizes=(256, 6000), max_steps=100 * epoch, eval_every=10 * epoch)
    return _sweep(data, MLP.model_copy(update={"width": 512}), train, (0, 1, 2, 3, 4))


# ---------------------------------------------------------------- claim


def _sizes(record: RunRecord) -> list[str]:
    return [label(b) for b in record.run_spec.train.batch_sizes]


def comparisons(records: list[RunRecord]) -> list[dict]:
    """Per finished seed and larger batch size: each measure of the larger batch over the small batch's."""
    rows = []
    for record in records:
        if record.status != "ok":
            continue
        small, *others = _sizes(record)
        for other in others:
            row = {"seed": float(record.run_spec.seed), "other": other, "small": small}
            for m in MEASURES:
                row[m] = record.final.get(f"{other}.{m}", math.nan) / record.final.get(f"{small}.{m}", math.nan)
            row["test_error_diff"] = record.final[f"{other}.test_error"] - record.final[f"{small}.test_error"]
            rows.append(row)
    return rows


def _spread_note(other: str, small: str, diffs: list[float]) -> str:
    mean = statistics.fmean(diffs)
    low, high = min(diffs), max(diffs)
    if low > 0:
        sign = f"{other} is worse on every seed"
    elif high < 0:
        sign = f"{other} is better on every seed"
    else:
        sign = "the seed range covers zero: no sign is asserted"
    return f"test accuracy of {small} minus {other}: mean {mean:+.4f}, seed range {low:+.4f} .. {high:+.4f} ({len(diffs)} seeds); {sign}"


def claim(records: list[RunRecord]) -> Verdict:
    rows = comparisons(records)
    if not rows:
        return Verdict(FINDING, False, {"n_seeds": 0.0}, "no finished runs to compare")
    numbers: dict[str, float] = {"n_seeds": float(len({r["seed"] for r in rows}))}
    failures, notes = [], []
    for other in dict.fromkeys(r["other"] for r in rows):
        part = [r for r in rows if r["other"] == other]
        small = part[0]["small"]
        for m in MEASURES:
            ratios = [r[m] for r in part]
            numbers[f"{other}.{m}.min_ratio"] = float(min(ratios))
            numbers[f"{other}.{m}.mean_ratio"] = float(statistics.fmean(ratios))
            failures += [f"{other} vs {small} seed {int(r['seed'])}: {m} ratio {r[m]:.3f}" for r in part if not r[m] > 1.0]
        diffs = [r["test_error_diff"] for r in part]
        numbers[f"{other}.test_error_diff.mean"] = float(statistics.fmean(diffs))
        numbers[f"{other}.test_error_diff.min"] = float(min(diffs))
        numbers[f"{other}.test_error_diff.max"] = float(max(diffs))
        notes.append(_spread_note(other, small, diffs))
    notes += _loss_notes(records, numbers)
    notes += _rescaling_notes(records)
    reason = "PASS needs every larger batch's solution / the small batch's > 1 on every measure for every seed (ratios are per seed)"
    reason += ": all hold" if not failures else ". Failed: " + "; ".join(failures)
    return Verdict(FINDING, not failures, numbers, reason, tuple(notes))


def _loss_notes(records: list[RunRecord], numbers: dict[str, float]) -> list[str]:
    """The training loss each batch size ended at: curvature of the cross-entropy falls with the loss, so a solution
    trained to a lower loss is flatter for that reason too (a confound Keskar et al.'s protocol shares)."""
    done = [r for r in records if r.status == "ok"]
    means = {}
    for size in _sizes(done[0]) if done else []:
        values = [r.final.get(f"{size}.train_loss", math.nan) for r in done]
        means[size] = numbers[f"{size}.train_loss.mean"] = float(statistics.fmean(values))
    if not means:
        return []
    listed = ", ".join(f"{size} {value:.3g}" for size, value in means.items())
    return [f"mean final training loss: {listed} (lower loss also means lower cross-entropy curvature)"]


def _rescaling_notes(records: list[RunRecord]) -> list[str]:
    """Dinh et al.'s caveat, measured: the small-batch solution rescaled (same function) vs as trained."""
    notes = []
    for record in records:
        small = _sizes(record)[0] if record.status == "ok" else None
        twin = record.final.get(f"{small}.rescaled_hessian_top") if small else None
        if twin is None:
            continue
        largest = max(record.final.get(f"{s}.hessian_top", math.nan) for s in _sizes(record)[1:])
        notes.append(
            f"seed {record.run_spec.seed}: rescaling the {small} solution's first two layers by {RESCALE:g} / 1/{RESCALE:g} "
            f"(same function) moves its Hessian top eigenvalue {record.final[f'{small}.hessian_top']:.3g} -> {twin:.3g} "
            f"(largest of the larger batches: {largest:.3g}); adaptive sharpness {record.final[f'{small}.sharpness_adaptive']:.3g} -> "
            f"{record.final[f'{small}.rescaled_sharpness_adaptive']:.3g}"
        )
        break  # one seed shows it
    return notes


# ---------------------------------------------------------------- figures


READABLE = {  # column: (panel title, y-axis label with its unit)
    "hessian_top": ("Hessian top eigenvalue", "top eigenvalue of the train-loss Hessian"),
    "sharpness_keskar": (f"epsilon-sharpness (eps {KESKAR_EPSILON:g})", "% rise of 1 + train loss in the box"),
    "sharpness_adaptive": (f"adaptive sharpness (rho {ADAPTIVE_RHO:g})", "rise of the train loss"),
    "test_error": ("test error", "test 0/1 error"),
}


def figures(records: list[RunRecord]) -> dict[str, Figure]:
    done = [r for r in records if r.status == "ok"]
    if not done:
        return {}
    sizes = _sizes(done[0])
    others = sizes[1:]
    lines, axes = new_figure(ncols=len(others), width=4.6)
    seeds = sorted({r.run_spec.seed for r in done})
    styles = dict(zip(seeds, ["-", "--", "-.", (0, (1, 1)), (0, (5, 1, 1, 1, 1, 1))] * len(seeds)))  # colour: quantity, style: seed
    for ax, other in zip(axes, others):
        error_ax = ax.twinx()
        for record in done:
            alphas = record.arrays.get("interp_alpha", [])
            if f"interp.{other}.train_loss" not in record.arrays:
                continue
            style = {"linestyle": styles[record.run_spec.seed]}
            ax.plot(alphas, record.arrays[f"interp.{other}.train_loss"], color="C0", linewidth=1, label="train loss", **style)
            ax.plot(alphas, record.arrays[f"interp.{other}.test_loss"], color="C1", linewidth=1, label="test loss", **style)
            error_ax.plot(alphas, record.arrays[f"interp.{other}.test_error"], color="C2", linewidth=0.8, label="test error (right axis)", **style)
        ax.set(yscale="log", xlabel=f"alpha (0: {sizes[0]}, 1: {other})", ylabel="loss", title=f"line from {sizes[0]} to {other}")
        plain_log_ticks(ax, "y")
        error_ax.set(ylabel="test error")
    if len(seeds) > 1:
        for seed in seeds:
            axes[0].plot([], [], color="k", linewidth=1, linestyle=styles[seed], label=f"seed {seed}")
    figure_legend(lines, ncols=3 + min(len(seeds), 3))  # over the twin (error) axes too
    measures, axes = new_figure(ncols=len(MEASURES) + 1, width=3.3)
    for ax, column in zip(axes, (*MEASURES, "test_error")):
        for i, size in enumerate(sizes):
            values = [r.final.get(f"{size}.{column}", math.nan) for r in done]
            ax.scatter([i] * len(values), values, s=14, color=f"C{i}")
            ax.plot([i - 0.2, i + 0.2], [np.nanmean(values)] * 2, color="k", linewidth=1)
        ax.set_xticks(range(len(sizes)), sizes)
        title, unit = READABLE[column]
        ax.set(xlabel="batch size (dots: seeds, bar: mean)", ylabel=unit, title=title)
        if column != "test_error":
            ax.set_yscale("log")
            plain_log_ticks(ax, "y")
    return {"interpolation": lines, "sharpness_by_batch": measures}


class BatchSizeSharpness(Experiment):
    """The same network is trained from one init with a small batch, 10% of the data and the full batch for the same
    epochs, and each solution's sharpness is measured three ways, with the loss along the line between solutions.
    Keskar et al. found large-batch solutions sharper and worse on test data; Dinh et al. showed raw sharpness is
    not invariant to reparametrization, so an invariant (adaptive) measure is reported beside it."""

    title = "Large-batch training reaches sharper minima (and Dinh et al.'s caveat)"
    axes_note = "its subject is SGD's batch size (one init trained at several batch sizes): the optimizer is the variable it studies, not an axis to add"
    reference = "Keskar et al. 2017, On Large-Batch Training for Deep Learning (ICLR); Dinh et al. 2017, Sharp Minima Can Generalize for Deep Nets (ICML)"
    reads = (*SUPERVISED_READS, "train.batch_sizes")

    def refuse(self, spec: RunSpec) -> None:
        sizes = spec.train.batch_sizes
        if len(sizes) < 2:
            raise SpecError(f"train.batch_sizes: {NAME} compares at least two batch sizes, got {list(sizes)}")
        if sizes[0] != spec.train.batch_size or sizes[0] is None:
            raise SpecError(f"train.batch_size: must be the first (small) entry of train.batch_sizes, got {spec.train.batch_size} and {list(sizes)}")
        if any(b is not None and b <= sizes[0] for b in sizes[1:]):
            raise SpecError(f"train.batch_sizes: the first must be the smallest, got {list(sizes)}")
        if len(set(sizes)) != len(sizes):
            raise SpecError(f"train.batch_sizes: repeated batch size in {list(sizes)}")

    def working_memory(self, spec: RunSpec) -> int:
        """The standard run's memory and its Hessian top eigenvalue on the whole training set (`measure`: Lanczos capped at 200 steps)."""
        return default_working_memory(spec) + hessian_memory(spec, iterations=200)


CATALOG.add(NAME, BatchSizeSharpness())

__all__ = ["claim", "comparisons", "figures", "label", "measure", "rescaled", "run", "schedule_for"]
