"""What the loss looks like around the solutions SGD finds (Li et al. 2018; Goodfellow et al. 2015; Lucas et al. 2021).

Narrow and wide one-hidden-layer ReLU MLPs are trained on MNIST-1D with small-
and large-batch SGD, snapshots of the weights kept at every evaluation. Around
each solution theta* the training loss is measured (`probes.landscape`) on:

- 1-D slices L(theta* + a d) along random *filter-normalized* directions
  (Li et al. 2018: every row of a weight matrix rescaled to the norm of the
  same row of the weights, biases zeroed as with their `--xignore biasbn`),
  a in [-1, 1]; their second difference at a = 0, averaged over directions, is
  the "1-D slice curvature" compared across widths;
- a 1-D slice along the top Hessian eigenvector (unit norm, not normalized);
- a 2-D filter-normalized slice, drawn as contours;
- the plane of the first two principal components of the trajectory
  (snapshots minus theta*), with the trajectory projected onto it (Li et al.
  Sec. 7);
- the straight line (1 - t) theta_0 + t theta* from the initialization
  (Goodfellow, Vinyals & Saxe 2015), and whether the loss along it is monotone:
  no rise above the best value so far larger than 1e-3 x L(theta_0).

Figures: `slices_1d` (random filter-normalized and top-eigenvector slices, one
panel per batch size, one line per width); `slices_2d` (contours, rows = batch
setting, columns = width, seed 0); `trajectories` (PCA plane with the path,
same layout, explained variance in the titles); `interpolation` (loss along
init -> solution for every run); `curvature` (the slice curvature per run).

Claim: (1) the straight path from init to solution is monotone in *every* run
(Goodfellow et al. saw it for every network they tried; Lucas et al. 2021
found failures chiefly with adaptive optimizers, large learning rates and
batch norm, none of which is used here, so the standard SGD settings should
show it in all runs; the fraction is reported); and (2) at each batch setting,
the wide network's 1-D slice curvature is lower than the narrow one's in the
seed mean, with the seed ranges not overlapping (max over wide seeds < min over
narrow seeds). PASS needs both.

Reduced from the papers: Li et al. used ResNets/VGG on CIFAR-10 with
51 x 51 grids; here MLPs (widths 32 and 512) on MNIST-1D (4000 train), 17 x 17
grids on a 2000-example subset of the training set for the 2-D views, 41-point
1-D slices over 4 random directions on the full training set, SGD lr 0.05
momentum 0.9 with batch 32 vs 512 (Keskar et al.'s small vs large batch at
1% vs 13% of the data) for at most 60 and 200 epochs (the large batch takes
16x fewer steps per epoch), stopping at zero training error, 3 seeds. Goodfellow et al. used MNIST/CIFAR maxout nets; the line is
sampled at 51 points of [0, 1]. Models with batch norm are refused by the
landscape functions (their running statistics are not recomputed).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from biaslab import data as datasets
from biaslab.claims import Verdict
from biaslab.experiments.supervised import setup, with_probes
from biaslab.experiments.base import CATALOG, Experiment, Result, SUPERVISED_READS
from biaslab.experiments.memory import LANCZOS_MAX_ITER, default_working_memory, hessian_memory
from biaslab.plot import figure_legend, landscape_contour, legend_once, new_figure, plain_log_ticks
from biaslab.probes import landscape
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import LOSSES, fit

NAME = "loss-landscape"
FINDING = (
    "The loss decreases monotonically along the straight line from initialization to the solution, and the wide network's "
    "solution has a lower filter-normalized 1-D slice curvature than the narrow one's."
)
SLICE_ALPHAS = np.linspace(-1.0, 1.0, 41)  # 1-D filter-normalized slices; step 0.05 for the second difference
RANDOM_DIRECTIONS = 4  # 1-D slices averaged for the curvature
GRID = 17  # points per axis of the 2-D views
GRID_EXAMPLES = 2000  # training examples the 2-D views are evaluated on (the first ones; the set is already shuffled)
LINE_TS = np.linspace(0.0, 1.0, 51)  # Goodfellow et al.'s path from init (t=0) to solution (t=1)
MONOTONE_TOLERANCE = 1e-3  # a rise above the best value so far larger than this x L(init) breaks monotonicity
HESSIAN_ALPHAS = np.linspace(-1.0, 1.0, 21)  # along the unit top eigenvector


def _landscape(model, loss_fn, data: datasets.Dataset, init: dict, snapshots: list[dict], seed: int) -> tuple[dict, dict]:
    """Every view of one solution: (final metrics, arrays for the figures)."""
    x, y = data.x_train, data.y_train
    x_grid, y_grid = x[:GRID_EXAMPLES], y[:GRID_EXAMPLES]
    center = landscape.parameters(model)
    g = generator(seed, "landscape-directions")
    directions = [landscape.random_direction(center, g) for _ in range(RANDOM_DIRECTIONS)]
    slices = [landscape.slice_1d(model, loss_fn, x, y, d, SLICE_ALPHAS, center) for d in directions]
    curvatures = [landscape.second_difference(SLICE_ALPHAS, s.loss) for s in slices]
    path = landscape.line(model, loss_fn, x, y, init, center, LINE_TS)
    plane = landscape.slice_2d(model, loss_fn, x_grid, y_grid, (directions[0], directions[1]), _axis(1.0), _axis(1.0), center)
    pca = landscape.trajectory_directions(snapshots, center, k=2)
    a_range, b_range = _padded(pca.coordinates[:, 0]), _padded(pca.coordinates[:, 1])
    pca_plane = landscape.slice_2d(model, loss_fn, x_grid, y_grid, tuple(pca.directions), a_range, b_range, center)
    (top,), (eigenvalue,) = landscape.hessian_directions(model, loss_fn, [(x, y)], k=1, generator=generator(seed, "landscape-lanczos"))
    along_top = landscape.slice_1d(model, loss_fn, x, y, top, HESSIAN_ALPHAS, center)
    final = {
        "slice_curvature": float(np.mean(curvatures)),
        "slice_curvature_min": float(np.min(curvatures)),
        "slice_curvature_max": float(np.max(curvatures)),
        "line_monotone": float(landscape.is_monotone(path.loss, MONOTONE_TOLERANCE)),
        "line_largest_bump": landscape.largest_bump(path.loss),
        "line_loss_init": float(path.loss[0]),
        "line_loss_end": float(path.loss[-1]),
        "hessian_top": float(eigenvalue),
        "pca_explained_1": pca.explained[0],
        "pca_explained_2": pca.explained[1],
        "n_params": float(sum(t.numel() for t in center.values())),
    }
    arrays = {
        "slice_alphas": SLICE_ALPHAS.tolist(),
        "slice_loss_mean": np.mean([s.loss for s in slices], axis=0).tolist(),
        "hessian_alphas": HESSIAN_ALPHAS.tolist(),
        "hessian_loss": along_top.loss.tolist(),
        "line_t": LINE_TS.tolist(),
        "line_loss": path.loss.tolist(),
        "line_error": path.error.tolist(),
        "plane_alphas": plane.alphas.tolist(),
        "plane_betas": plane.betas.tolist(),
        "plane_loss": plane.loss.ravel().tolist(),
        "pca_alphas": pca_plane.alphas.tolist(),
        "pca_betas": pca_plane.betas.tolist(),
        "pca_loss": pca_plane.loss.ravel().tolist(),
        "pca_path_a": pca.coordinates[:, 0].tolist(),
        "pca_path_b": pca.coordinates[:, 1].tolist(),
    }
    return final, arrays


def _axis(extent: float) -> np.ndarray:
    return np.linspace(-extent, extent, GRID)


def _padded(values: np.ndarray) -> np.ndarray:
    """An evenly spaced axis covering the trajectory's coordinates with a 20% margin (and 0)."""
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    margin = 0.2 * max(high - low, 1e-6)
    return np.linspace(low - margin, high + margin, GRID)


def run(spec: RunSpec) -> Result:
    """Train with snapshots at every evaluation, then take every landscape view of the solution."""
    data, model = setup(spec)
    init = landscape.parameters(model)
    snapshots: list[dict] = []

    def keep(model, step: int) -> dict[str, float]:
        snapshots.append(landscape.parameters(model))
        return {}

    result = fit(model, data, spec.train, generator(spec.seed, "batches"), with_probes(spec, model, data, keep))
    if result.status != "ok":
        return Result.of(result, model=model)
    final, arrays = _landscape(model, LOSSES[spec.train.loss], data, init, snapshots, spec.seed)
    return Result.of(result, final, arrays, model=model)


# ---------------------------------------------------------------- presets


def _train(batch_size: int, epochs: int, n_train: int, lr: float = 0.05) -> TrainSpec:
    """SGD with momentum, at most `epochs` epochs, stopping at zero training error (checked every epochs/12)."""
    per_epoch = math.ceil(n_train / batch_size)
    every = max(1, epochs // 12) * per_epoch  # about a dozen snapshots for the PCA
    return TrainSpec(optimizer="sgd", lr=lr, momentum=0.9, batch_size=batch_size, max_steps=epochs * per_epoch, eval_every=every, stop_zero_error_evals=1)


def _sweep(data: DataSpec, model: ModelSpec, widths, trains: list[TrainSpec], seeds) -> Sweep:
    base = RunSpec(experiment=NAME, data=data, model=model, train=trains[0])
    grid = {"train": tuple(t.model_dump(mode="json") for t in trains), "model.width": tuple(widths), "seed": tuple(seeds)}
    return Sweep(base=base, grid=grid)


def tiny() -> Sweep:
    """Seconds: 400 examples, widths 8 and 64, one batch size, 2 seeds."""
    data = DataSpec(name="mnist1d", n_train=400, n_test=200, standardize=False)
    return _sweep(data, ModelSpec(kind="mlp", depth=1), (8, 64), [_train(50, 12, 400)], (0, 1))


def quick() -> Sweep:
    """MNIST-1D 4000/1000, widths 32 and 512, batch 32 vs 512, 3 seeds: 12 runs."""
    data = DataSpec(name="mnist1d", n_train=4000, n_test=1000, standardize=False)
    return _sweep(data, ModelSpec(kind="mlp", depth=1), (32, 512), [_train(32, 60, 4000), _train(512, 200, 4000)], (0, 1, 2))


def paper() -> Sweep:
    """CIFAR-10 (set data.root), CNNs of width 16 and 64 (no batch norm), batch 128 vs 8192, 300 epochs; for a GPU."""
    data = DataSpec(name="cifar10", standardize=True)
    trains = [_train(128, 300, 50000, lr=0.1), _train(8192, 300, 50000, lr=0.1)]
    return _sweep(data, ModelSpec(kind="cnn", depth=3, kernel_size=3), (16, 64), trains, (0, 1, 2))


# ---------------------------------------------------------------- figures and claim


def _finished(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status == "ok" and "slice_curvature" in r.final]


def _setting(record: RunRecord) -> int:
    return int(record.run_spec.train.batch_size or 0)


def _width(record: RunRecord) -> int:
    return int(record.run_spec.model.width)


def _grid(record: RunRecord, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = np.asarray(record.arrays[f"{prefix}_alphas"]), np.asarray(record.arrays[f"{prefix}_betas"])
    return a, b, np.asarray(record.arrays[f"{prefix}_loss"]).reshape(len(b), len(a))


class LossLandscape(Experiment):
    """Filter-normalized 1-D and 2-D slices, Hessian-eigenvector slices and the PCA plane of the training trajectory
    show the loss around SGD's solutions for narrow and wide MLPs at small and large batch. The straight line from
    initialization to the solution is tested for monotone loss, and the wide solution's slice curvature is compared
    with the narrow one's."""

    title = "Loss landscapes of narrow vs wide, small- vs large-batch solutions; the straight path from init"
    axes_note = "not yet cut for the atlas (its runs compare SGD's batch sizes and widths on one MLP grid)"
    reference = (
        "Li, Xu, Taylor, Studer & Goldstein 2018, Visualizing the Loss Landscape of Neural Nets (NeurIPS); "
        "Goodfellow, Vinyals & Saxe 2015 (ICLR); Lucas, Bae, Zhang, Fort, Zemel & Grosse 2021 (ICML)"
    )
    reads = SUPERVISED_READS
    trains_model = True

    def working_memory(self, spec: RunSpec) -> int:
        """The standard run's memory and its top Hessian direction on the whole training set."""
        return default_working_memory(spec) + hessian_memory(spec, iterations=LANCZOS_MAX_ITER)

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        done = _finished(records)
        settings, widths = sorted({_setting(r) for r in done}), sorted({_width(r) for r in done})
        return {
            "slices_1d": _slice_figure(done, settings, widths),
            "slices_2d": _plane_figure(done, settings, widths, "plane", "filter-normalized directions"),
            "trajectories": _plane_figure(done, settings, widths, "pca", "PCA of the trajectory"),
            "interpolation": _line_figure(done),
            "curvature": _curvature_figure(done, settings, widths),
        }

    def claim(self, records: list[RunRecord]) -> Verdict:
        return landscape_claim(records)


def _slice_figure(done, settings, widths) -> Figure:
    fig, axes = new_figure(ncols=max(1, len(settings)), nrows=2)
    for column, setting in enumerate(settings):
        top, bottom = axes[column], axes[len(settings) + column]
        for i, width in enumerate(widths):
            for record in (r for r in done if _setting(r) == setting and _width(r) == width):
                label = f"H={width}"
                top.plot(record.arrays["slice_alphas"], record.arrays["slice_loss_mean"], color=f"C{i}", label=label, linewidth=1)
                bottom.plot(record.arrays["hessian_alphas"], record.arrays["hessian_loss"], color=f"C{i}", label=label, linewidth=1)
        top.set(yscale="log", xlabel="a (filter-normalized)", ylabel=f"train loss, mean of {RANDOM_DIRECTIONS} directions", title=f"batch {setting}: random directions")
        bottom.set(yscale="log", xlabel="a (unit top Hessian eigenvector)", ylabel="train loss", title=f"batch {setting}: top Hessian eigenvector")
        for ax in (top, bottom):
            plain_log_ticks(ax, "y")
            legend_once(ax)
    return fig


def _plane_figure(done, settings, widths, prefix: str, title: str) -> Figure:
    fig, axes = new_figure(ncols=max(1, len(widths)), nrows=max(1, len(settings)))
    for row, setting in enumerate(settings):
        for column, width in enumerate(widths):
            ax = axes[row * len(widths) + column]
            runs = sorted((r for r in done if _setting(r) == setting and _width(r) == width), key=lambda r: r.run_spec.seed)
            if not runs:
                continue
            record = runs[0]
            a, b, loss = _grid(record, prefix)
            path = np.stack([record.arrays["pca_path_a"], record.arrays["pca_path_b"]], axis=1) if prefix == "pca" else None
            landscape_contour(ax, a, b, loss, trajectory=path)
            extra = f", PC1 {record.final['pca_explained_1']:.0%}, PC2 {record.final['pca_explained_2']:.0%}" if prefix == "pca" else ""
            ax.set(xlabel="a", ylabel="b", title=f"H={width}, batch {setting}: {title}{extra}")
            ax.title.set_fontsize(8)
    return fig


def _line_figure(done) -> Figure:
    fig, (loss_ax, error_ax) = new_figure(ncols=2)
    configs = sorted({(_width(r), _setting(r)) for r in done})
    for i, config in enumerate(configs):
        for record in (r for r in done if (_width(r), _setting(r)) == config):
            label = f"H={config[0]}, batch {config[1]}"
            loss_ax.plot(record.arrays["line_t"], record.arrays["line_loss"], color=f"C{i}", label=label, linewidth=1)
            error_ax.plot(record.arrays["line_t"], record.arrays["line_error"], color=f"C{i}", label=label, linewidth=1)
    monotone = sum(r.final["line_monotone"] for r in done)
    loss_ax.set(yscale="log", xlabel="t: (1-t) init + t solution", ylabel="train loss", title=f"loss along the line: monotone in {monotone:.0f} of {len(done)} runs")
    plain_log_ticks(loss_ax, "y")
    error_ax.set(xlabel="t: (1-t) init + t solution", ylabel="train error", title="error along the line")
    figure_legend(fig)  # one line per run (seed)
    return fig


def _curvature_figure(done, settings, widths) -> Figure:
    fig, (ax,) = new_figure()
    for i, setting in enumerate(settings):
        for record in (r for r in done if _setting(r) == setting):
            ax.scatter(_width(record), record.final["slice_curvature"], color=f"C{i}", s=12, label=f"batch {setting}: seeds")
        means = [np.mean([r.final["slice_curvature"] for r in done if _setting(r) == setting and _width(r) == w] or [np.nan]) for w in widths]
        ax.plot(widths, means, color=f"C{i}", label=f"batch {setting}: seed mean")
    ax.set(xscale="log", yscale="log", xlabel="hidden units H", ylabel="second difference at 0 (filter-normalized)", title="1-D slice curvature")
    ax.set_xticks(widths, [str(w) for w in widths], minor=False)
    ax.xaxis.set_minor_formatter(NullFormatter())  # the widths run are the x ticks
    plain_log_ticks(ax, "y")
    legend_once(ax)
    return fig


def landscape_claim(records: list[RunRecord]) -> Verdict:
    """PASS when every run's init -> solution line is monotone and, at every batch setting, wide curvature < narrow on all seeds."""
    done = _finished(records)
    if not done:
        return Verdict(FINDING, False, {"n_runs": 0.0}, "no finished runs to judge")
    monotone = [r.final["line_monotone"] for r in done]
    fraction = float(np.mean(monotone))
    numbers = {
        "n_runs": float(len(done)),
        "fraction_monotone": fraction,
        "largest_bump_relative": float(max(r.final["line_largest_bump"] / max(r.final["line_loss_init"], 1e-12) for r in done)),
    }
    line_ok = fraction == 1.0
    curvature_ok, parts = True, []
    widths = sorted({_width(r) for r in done})
    for setting in sorted({_setting(r) for r in done}):
        narrow = [r.final["slice_curvature"] for r in done if _setting(r) == setting and _width(r) == widths[0]]
        wide = [r.final["slice_curvature"] for r in done if _setting(r) == setting and _width(r) == widths[-1]]
        if len(widths) < 2 or len(narrow) < 2 or len(wide) < 2:
            curvature_ok = False
            parts.append(f"batch {setting}: needs two widths with at least 2 seeds each")
            continue
        numbers |= {
            f"curvature_narrow_mean.batch{setting}": float(np.mean(narrow)),
            f"curvature_wide_mean.batch{setting}": float(np.mean(wide)),
            f"curvature_narrow_min.batch{setting}": float(np.min(narrow)),
            f"curvature_wide_max.batch{setting}": float(np.max(wide)),
        }
        holds = np.mean(wide) < np.mean(narrow) and max(wide) < min(narrow)
        curvature_ok = curvature_ok and holds
        parts.append(
            f"batch {setting}: H={widths[-1]} curvature {np.mean(wide):.3g} [{min(wide):.3g}, {max(wide):.3g}] vs "
            f"H={widths[0]} {np.mean(narrow):.3g} [{min(narrow):.3g}, {max(narrow):.3g}] ({'lower, ranges apart' if holds else 'not lower on every seed'})"
        )
    numbers |= {"line_claim_passed": float(line_ok), "curvature_claim_passed": float(curvature_ok)}
    reason = (
        f"(1) straight path monotone (no rise > {MONOTONE_TOLERANCE:g} x L(init) above the best value so far) in "
        f"{sum(monotone):.0f} of {len(done)} runs (PASS needs all); (2) " + "; ".join(parts) + " (PASS needs wide mean lower and "
        "max over wide seeds < min over narrow seeds at every batch setting)"
    )
    notes = tuple(
        f"H={w}, batch {s}: top Hessian eigenvalue {np.mean([r.final['hessian_top'] for r in done if _width(r) == w and _setting(r) == s]):.3g} "
        f"(not scale-invariant), train error {np.mean([r.final['train_error'] for r in done if _width(r) == w and _setting(r) == s]):.3f}, "
        f"test error {np.mean([r.final['test_error'] for r in done if _width(r) == w and _setting(r) == s]):.3f}"
        for w in widths
        for s in sorted({_setting(r) for r in done})
        if any(_width(r) == w and _setting(r) == s for r in done)
    )
    return Verdict(FINDING, bool(line_ok and curvature_ok), numbers, reason, notes)


CATALOG.add(NAME, LossLandscape())
