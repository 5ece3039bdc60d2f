"""Mode connectivity: are two SGD solutions joined by a low-loss path? (Garipov et al. 2018; Ainsworth et al. 2023; Frankle et al. 2020)

Each run trains, at one width and seed, three networks with SGD: A (init stream "init", batch order "batches"),
B (its own init and batch order: an independently trained solution) and C (A's initialization, B's batch order:
two copies spawned from one initialization, Frankle et al. 2020's instability test at k = 0). Along four paths the
training loss and error and the test error are measured at 25 points of t in [0, 1] (`probes.landscape` and
`probes.connectivity`, functional_call on interpolated parameters). A `connection_paths` problem section chooses
which of the four paths a run measures (`problem.paths`; the presets set none, which measures all four): leaving
out 'bezier' skips the curve's training, leaving out 'spawned' skips training C, leaving out 'matched' skips weight
matching.

- linear: (1 - t) A + t B, the naive straight line;
- bezier: the quadratic Bezier curve A -> theta -> B whose bend point theta is trained by SGD on
  E_{t ~ U[0,1]} L(phi_theta(t)) from the midpoint (Garipov et al. 2018), with the endpoints' optimizer settings
  and epoch budget;
- matched: the straight line from A to B with B's hidden units permuted by weight matching (Ainsworth et al. 2023,
  Hungarian assignment per hidden layer on the incoming plus outgoing weight similarities, iterated over layers);
- spawned: the straight line from A to C.

The barrier of a path is max_t v(t) - (v(0) + v(1)) / 2, for the training loss (the claim's quantity) and the
test error. Figures: `paths` (training loss and test error along each path, one line per width, first seed) and
`barriers` (loss barrier of each path against width, seed means with the seeds as points).

Claim, computed on the seed mean per width: (1) the naive linear loss barrier exceeds 0.1 nats at every width
(Garipov et al. and Draxler et al. 2018 find the straight line between independent solutions passes through
high loss; Frankle et al. call a pair unstable above a 2% error barrier, reported beside); (2) the Bezier curve's
barrier is at most half the linear one at every width (Garipov et al.: the curve's train loss stays near the
endpoints'); (3) the matched barrier is at most half the linear one at every width (Ainsworth et al.: weight
matching brings MLPs on MNIST to near-zero barrier); (4) the matched barrier shrinks with width: Spearman
correlation of width and matched barrier < 0 and the widest width's barrier below the narrowest's (Ainsworth
et al. Fig. 5: wider models are linearly mode connected after alignment). PASS needs all four; a part whose
paths a run did not measure (problem.paths) is reported as not measured and fails.

Reduced from the papers: MLPs with 2 hidden layers (Ainsworth used 3 x 512 on MNIST) of widths 16-256 on
MNIST-1D (4000 train, 1000 test) at `quick`, trained by SGD with momentum (batch 128) for 30 epochs (Ainsworth: Adam;
Garipov: 200-600 epochs of SGD on CIFAR for the endpoints and curves); 2 seeds. `paper`: CNNs without batch norm
on CIFAR-10 (set data.root). Supported architectures: biaslab's MLP and CNN (channels permuted); other model
kinds are refused before the sweep starts, and batch normalization is refused (its statistics would have to be
recomputed at every point of a path; not implemented).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from biaslab import data as datasets
from biaslab import models
from biaslab.claims import Verdict, spearman
from biaslab.experiments.base import CATALOG, Experiment, Result, SUPERVISED_READS
from biaslab.plot import figure_legend, legend_once, new_figure, plain_log_ticks
from biaslab.probes import connectivity, landscape
from biaslab.runtime import generator, resolve_device, resolve_dtype
from biaslab.spec import CONNECTION_PATHS, ConnectionPaths, DataSpec, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import LOSSES, fit

NAME = "mode-connectivity"
FINDING = (
    "The straight line between independently trained networks crosses a clear loss barrier; a trained Bezier curve and "
    "weight-matching permutation alignment each remove most of it, and the matched barrier shrinks as the network widens."
)
PATH_TS = np.linspace(0.0, 1.0, 25)  # points along every path
PATHS = CONNECTION_PATHS  # ("linear", "bezier", "matched", "spawned")
NAIVE_MIN_BARRIER = 0.1  # nats of training loss: "clearly positive"
CUT_FACTOR = 0.5  # Bezier and matched barriers at most this fraction of the linear one
FITTED_ERROR = 0.01  # endpoints with train error below this count as fitted (for a note on the width trend)
FRANKLE_STABLE_ERROR = 0.02  # Frankle et al.'s stability threshold on the error barrier (reported, not judged)


def _train(spec: RunSpec, data: datasets.Dataset, init: str, batches: str, device, dtype):
    """Build a model from the seed's `init` stream and train it with the `batches` stream's order."""
    model = models.build(spec.model, data.in_shape, data.n_classes, generator(spec.seed, init), device, dtype)
    return model, fit(model, data, spec.train, generator(spec.seed, batches))


def measured_paths(spec: RunSpec) -> tuple[str, ...]:
    """The paths a run measures: problem.paths of a connection_paths section, all four without one."""
    return (spec.problem or ConnectionPaths()).paths


def _bend(spec: RunSpec, data: datasets.Dataset, model, a: dict, b: dict) -> dict:
    """The Bezier curve's bend point, trained with the endpoints' optimizer settings and epoch budget."""
    epochs = math.ceil(spec.train.max_steps / math.ceil(data.x_train.shape[0] / (spec.train.batch_size or data.x_train.shape[0])))
    bend, _ = connectivity.train_bend(
        model, LOSSES[spec.train.loss], data.x_train, data.y_train, a, b, generator(spec.seed, "bend"),
        epochs=epochs, batch_size=spec.train.batch_size or data.x_train.shape[0], lr=spec.train.lr, momentum=spec.train.momentum,
    )  # fmt: skip
    return bend


def _paths(spec: RunSpec, data: datasets.Dataset, model, a: dict, b: dict, c: dict | None) -> dict[str, tuple]:
    """The measured paths (`measured_paths`), each as (train slice, test slice); c is None unless 'spawned' is measured."""
    loss_fn = LOSSES[spec.train.loss]
    sets = ((data.x_train, data.y_train), (data.x_test, data.y_test))
    wanted = measured_paths(spec)
    paths = {}
    if "linear" in wanted:
        paths["linear"] = tuple(landscape.line(model, loss_fn, x, y, a, b, PATH_TS) for x, y in sets)
    if "bezier" in wanted:
        bend = _bend(spec, data, model, a, b)
        paths["bezier"] = tuple(connectivity.bezier_path(model, loss_fn, x, y, a, bend, b, PATH_TS) for x, y in sets)
    if "matched" in wanted:
        aligned = connectivity.weight_matching(model, a, b, generator(spec.seed, "matching")).aligned
        paths["matched"] = tuple(landscape.line(model, loss_fn, x, y, a, aligned, PATH_TS) for x, y in sets)
    if "spawned" in wanted:
        paths["spawned"] = tuple(landscape.line(model, loss_fn, x, y, a, c, PATH_TS) for x, y in sets)
    return paths


def run(spec: RunSpec) -> Result:
    """Train A, B (independent) and, when 'spawned' is measured, C (A's init, B's batch order); measure the paths."""
    device, dtype = resolve_device(spec.device), resolve_dtype(spec.dtype)
    data = datasets.load(spec.data, device, dtype)
    model_a, fit_a = _train(spec, data, "init", "batches", device, dtype)
    model_b, fit_b = _train(spec, data, "init-second", "batches-second", device, dtype)
    model_c, fit_c = _train(spec, data, "init", "batches-second", device, dtype) if "spawned" in measured_paths(spec) else (None, None)
    for result in (fit_a, fit_b, fit_c):
        if result is not None and result.status != "ok":
            return Result.of(result)
    a, b = landscape.parameters(model_a), landscape.parameters(model_b)
    paths = _paths(spec, data, model_a, a, b, landscape.parameters(model_c) if model_c is not None else None)
    final = {"train_error_b": fit_b.final["train_error"]}
    if fit_c is not None:
        final["train_error_spawned"] = fit_c.final["train_error"]
    final |= {"test_error_b": fit_b.final["test_error"], "n_params": float(sum(t.numel() for t in a.values()))}
    arrays = {"t": PATH_TS.tolist()}
    for name, (train, test) in paths.items():
        final[f"barrier_loss.{name}"] = connectivity.barrier(train.loss)
        final[f"barrier_train_error.{name}"] = connectivity.barrier(train.error)
        final[f"barrier_test_error.{name}"] = connectivity.barrier(test.error)
        arrays[f"loss.{name}"] = train.loss.tolist()
        arrays[f"test_error.{name}"] = test.error.tolist()
    return Result.of(fit_a, final, arrays)


# ---------------------------------------------------------------- presets


def _sgd(batch_size: int, epochs: int, n_train: int, lr: float = 0.05) -> TrainSpec:
    """SGD with momentum 0.9 for `epochs` epochs (a row every 5 epochs)."""
    per_epoch = math.ceil(n_train / batch_size)
    return TrainSpec(optimizer="sgd", lr=lr, momentum=0.9, batch_size=batch_size, max_steps=epochs * per_epoch, eval_every=max(1, epochs // 8) * per_epoch)


def _sweep(data: DataSpec, model: ModelSpec, train: TrainSpec, widths, seeds) -> Sweep:
    base = RunSpec(experiment=NAME, data=data, model=model, train=train)
    return Sweep(base=base, grid={"model.width": tuple(widths), "seed": tuple(seeds)})


def tiny() -> Sweep:
    """Seconds: MNIST-1D 400/200, 2-hidden-layer MLPs of widths 8, 16 and 32, 10 epochs, one seed."""
    data = DataSpec(name="mnist1d", n_train=400, n_test=200, standardize=False)
    return _sweep(data, ModelSpec(kind="mlp", depth=2), _sgd(50, 10, 400), (8, 16, 32), (0,))


def quick() -> Sweep:
    """MNIST-1D 4000/1000, 2-hidden-layer MLPs of widths 16-256, batch 128 for 30 epochs, 2 seeds: 10 runs of 3 nets and a curve."""
    data = DataSpec(name="mnist1d", n_train=4000, n_test=1000, standardize=False)
    return _sweep(data, ModelSpec(kind="mlp", depth=2), _sgd(128, 30, 4000), (16, 32, 64, 128, 256), (0, 1))


def paper() -> Sweep:
    """CIFAR-10 (set data.root), 3-layer CNNs of widths 16-128 without batch norm, batch 128 for 100 epochs, 3 seeds; for a GPU."""
    data = DataSpec(name="cifar10", standardize=True)
    return _sweep(data, ModelSpec(kind="cnn", depth=3, kernel_size=3), _sgd(128, 100, 50000), (16, 32, 64, 128), (0, 1, 2))


# ---------------------------------------------------------------- figures and claim


def _finished(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status == "ok" and any(f"barrier_loss.{path}" in r.final for path in PATHS)]


def _measured(done: list[RunRecord]) -> tuple[str, ...]:
    """The paths every finished run measured (problem.paths), in the canonical order."""
    return tuple(path for path in PATHS if done and all(f"barrier_loss.{path}" in r.final for r in done))


def _width(record: RunRecord) -> int:
    return record.run_spec.model.width


def _seed_means(done: list[RunRecord], key: str) -> dict[int, float]:
    """width -> mean over seeds of final[key]."""
    return {w: float(np.mean([r.final[key] for r in done if _width(r) == w])) for w in sorted({_width(r) for r in done})}


class ModeConnectivity(Experiment):
    """Two independently trained networks are separated by a loss barrier along the straight line between them, yet
    a trained quadratic Bezier curve joins them at low loss, and permuting one network's hidden units by weight
    matching removes most of the straight-line barrier, more so the wider the network. Two copies spawned from one
    initialization with different batch orders are measured beside them."""

    title = "Barriers between SGD solutions: straight line, trained Bezier curve, weight matching, spawned copies"
    axes_note = 'not yet cut for the atlas (three networks and a curve per run, all trained by SGD)'
    reference = (
        "Garipov, Izmailov, Podoprikhin, Vetrov & Wilson 2018 (NeurIPS); Ainsworth, Hayase & Srinivasa 2023, Git Re-Basin (ICLR); "
        "Frankle, Dziugaite, Roy & Carbin 2020, Linear Mode Connectivity and the Lottery Ticket Hypothesis (ICML)"
    )
    reads = (*SUPERVISED_READS, "problem")  # problem: which connections are measured (ConnectionPaths)
    allows = {
        "model.kind": ("mlp", "cnn"),  # the architectures whose layer graph weight matching follows
        "problem.kind": (None, "connection_paths"),  # a problem section here only chooses the paths
    }

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        done = _finished(records)
        return {"paths": _path_figure(done), "barriers": _barrier_figure(done)}

    def claim(self, records: list[RunRecord]) -> Verdict:
        return connectivity_claim(records)


def _path_figure(done: list[RunRecord]) -> Figure:
    paths = _measured(done) or PATHS
    fig, axes = new_figure(ncols=len(paths), nrows=2)
    widths = sorted({_width(r) for r in done})
    first = {w: min((r for r in done if _width(r) == w), key=lambda r: r.run_spec.seed) for w in widths}
    for column, path in enumerate(paths):
        top, bottom = axes[column], axes[len(paths) + column]
        for i, width in enumerate(widths):
            record = first[width]
            top.plot(record.arrays["t"], record.arrays[f"loss.{path}"], color=f"C{i}", label=f"H={width}", linewidth=1)
            bottom.plot(record.arrays["t"], record.arrays[f"test_error.{path}"], color=f"C{i}", label=f"H={width}", linewidth=1)
        top.set(yscale="log", xlabel="t", ylabel="train loss", title=f"{path} path")
        plain_log_ticks(top, "y")
        bottom.set(xlabel="t", ylabel="test error")
    figure_legend(fig)  # the same widths in every panel
    return fig


def _barrier_figure(done: list[RunRecord]) -> Figure:
    fig, (ax,) = new_figure()
    for i, path in enumerate(PATHS):
        if path not in _measured(done):
            continue
        means = _seed_means(done, f"barrier_loss.{path}")
        ax.plot(list(means), list(means.values()), color=f"C{i}", marker="o", markersize=3, label=path)
        ax.scatter([_width(r) for r in done], [r.final[f"barrier_loss.{path}"] for r in done], color=f"C{i}", s=8, alpha=0.5)
    ax.axhline(NAIVE_MIN_BARRIER, color="gray", linestyle=":", linewidth=1, label=f"{NAIVE_MIN_BARRIER:g}: a clear barrier")
    ax.set(xscale="log", xlabel="hidden units H", ylabel="train-loss barrier (max - mean of ends)", title="barrier against width")
    widths = sorted({_width(r) for r in done})
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    legend_once(ax)
    return fig


def connectivity_claim(records: list[RunRecord]) -> Verdict:
    """PASS when the naive barrier is > 0.1 at every width, Bezier and matching each at most halve it, and the matched one falls with width."""
    done = _finished(records)
    if not done:
        return Verdict(FINDING, False, {"n_runs": 0.0}, "no finished runs to judge")
    measured = _measured(done)
    means = {path: _seed_means(done, f"barrier_loss.{path}") for path in measured}
    widths = sorted({_width(r) for r in done})
    numbers = {"n_runs": float(len(done)), "n_widths": float(len(widths))}
    for path in measured:
        numbers |= {f"barrier_loss.{path}.H{w}": v for w, v in means[path].items()}
    naive_ok = "linear" in means and all(v > NAIVE_MIN_BARRIER for v in means["linear"].values())
    bezier_ok = {"linear", "bezier"} <= means.keys() and all(means["bezier"][w] <= CUT_FACTOR * means["linear"][w] for w in widths)
    matched_ok = {"linear", "matched"} <= means.keys() and all(means["matched"][w] <= CUT_FACTOR * means["linear"][w] for w in widths)
    rho = spearman([float(w) for w in widths], list(means["matched"].values())) if "matched" in means else math.nan
    shrinks = len(widths) >= 3 and not math.isnan(rho) and rho < 0 and means["matched"][widths[-1]] < means["matched"][widths[0]]
    numbers |= {
        "spearman_width_vs_matched_barrier": rho,
        "naive_claim_passed": float(naive_ok),
        "bezier_claim_passed": float(bezier_ok),
        "matching_claim_passed": float(matched_ok),
        "width_claim_passed": float(shrinks),
    }
    fmt = lambda path: ", ".join(f"H={w}: {v:.3g}" for w, v in means[path].items()) if path in means else "not measured (problem.paths)"  # noqa: E731
    reason = (
        f"(1) linear loss barrier {fmt('linear')} (PASS needs > {NAIVE_MIN_BARRIER:g} at every width): {'yes' if naive_ok else 'no'}; "
        f"(2) Bezier {fmt('bezier')} (<= {CUT_FACTOR:g} x linear at every width): {'yes' if bezier_ok else 'no'}; "
        f"(3) matched {fmt('matched')} (<= {CUT_FACTOR:g} x linear at every width): {'yes' if matched_ok else 'no'}; "
        f"(4) Spearman(width, matched barrier) = {rho:.3g} over {len(widths)} widths (PASS needs >= 3 widths, < 0, and widest < narrowest): "
        f"{'yes' if shrinks else 'no'}. Barriers are seed means of max_t L(t) - (L(0) + L(1)) / 2 on the training loss."
    )
    notes = _notes(done, measured, widths, fmt)
    if "matched" in means:
        notes += (_fitted_note(done, means["matched"]),)
    return Verdict(FINDING, bool(naive_ok and bezier_ok and matched_ok and shrinks), numbers, reason, notes)


def _notes(done: list[RunRecord], measured: tuple[str, ...], widths: list[int], fmt) -> tuple[str, ...]:
    """The spawned pair's barriers (Frankle et al.'s stability), the test-error barriers and the endpoints' train errors."""
    error = {path: _seed_means(done, f"barrier_test_error.{path}") for path in measured}
    notes = ()
    if "spawned" in error:
        notes += (
            f"spawned copies (A's init, another batch order) loss barrier: {fmt('spawned')}; test-error barrier "
            + ", ".join(f"H={w}: {v:.3f}" for w, v in error["spawned"].items())
            + f" (Frankle et al. call a pair stable below {FRANKLE_STABLE_ERROR:.0%})",
        )
    independent = [path for path in PATHS[:3] if path in error]
    if independent:
        notes += ("test-error barriers: " + "; ".join(f"{path} " + ", ".join(f"H={w}: {v:.3f}" for w, v in error[path].items()) for path in independent),)
    return notes + (
        "endpoint train error (A, B): "
        + ", ".join(f"H={w}: {np.mean([r.final['train_error'] for r in done if _width(r) == w]):.3f}, "
                    f"{np.mean([r.final['train_error_b'] for r in done if _width(r) == w]):.3f}" for w in widths),
    )  # fmt: skip


def _fitted_note(done: list[RunRecord], matched: dict[int, float]) -> str:
    """The width trend of the matched barrier among widths whose endpoints fit the training set (a diagnostic, not judged):
    underfit narrow networks sit at high loss, which caps their barriers, so the trend over all widths mixes two regimes."""
    fitted = [w for w in matched if max(max(r.final["train_error"], r.final["train_error_b"]) for r in done if _width(r) == w) < FITTED_ERROR]
    values = ", ".join(f"H={w}: {matched[w]:.3g}" for w in fitted) or "none"
    rho = spearman([float(w) for w in fitted], [matched[w] for w in fitted])
    return f"widths whose endpoints reach train error < {FITTED_ERROR:.0%}: matched barrier {values}; Spearman(width, matched barrier) among them = {rho:.3g}"


CATALOG.add(NAME, ModeConnectivity())
