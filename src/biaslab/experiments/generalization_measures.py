"""Which complexity measure predicts the generalization gap? (Jiang et al. 2020, "Fantastic Generalization Measures")

A grid of small networks is trained to the same stopping criterion, every
measure is computed on each trained model, and each measure is scored by how
well it ranks the models' generalization gaps (test error - train error):
Kendall's tau over all models, and the *granulated* tau Psi of Jiang et al.
(for each hyperparameter, the mean tau within groups of models that differ in
that hyperparameter only; then the mean over hyperparameters). Granulation is
what keeps a measure from scoring well merely because one hyperparameter moves
both it and the gap.

The paper's finding tested here: sharpness-based measures, PAC-Bayes flatness
first, correlate positively with the gap and rank above the spectral-norm
product, which correlated negatively in their study. Claim check: tau of
`pacbayes_flatness` > 0 and its Psi > Psi of `norm_spectral_product`.

Figures: (1) each measure against the gap, one panel per measure, colored by
the hyperparameter with the largest |psi| for that measure; (2) tau and Psi per
measure as bars, sorted by Psi.

Reduced from the paper: Jiang et al. trained 7,000+ networks (NiN-style CNNs on
CIFAR-10 and SVHN) over 7 hyperparameters with 3 values each, stopping at
cross-entropy 0.01; `quick` trains 64 one- and two-hidden-layer ReLU MLPs on
MNIST-1D (2000 train / 1000 test) over 5 hyperparameters with 2 values each
(width, depth, lr, batch size, weight decay) x 2 seeds; weight decay is 0 or
5e-5, because at Jiang et al.'s 5e-4 these MLPs (no batch norm) settle at a
training cross-entropy of about 0.04 and never meet the criterion (measured), with SGD (momentum 0.9)
to the same cross-entropy 0.01 within a step budget; runs that miss the
criterion are left out of the scores, as in the paper. Measures are computed
on the full training set; the sharpness probes use fewer ascent steps and
Monte-Carlo samples than the paper's search. `paper` is the same protocol on
MNIST at the full 3-values-per-axis grid.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from biaslab import data as datasets
from biaslab import probes
from biaslab.claims import Verdict, granulated_kendall, kendall
from biaslab.experiments.supervised import setup, with_probes
from biaslab.experiments.base import CATALOG, Experiment, Result, SUPERVISED_READS
from biaslab.experiments.memory import LANCZOS_MAX_ITER, default_working_memory, hessian_memory
from biaslab.plot import new_figure, plain_log_ticks
from biaslab.probes import curvature, sharpness
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import LOSSES, fit

NAME = "generalization-measures"
FINDING = "PAC-Bayes flatness correlates positively with the generalization gap and ranks above the spectral-norm product."
AXES = ("model.width", "model.depth", "train.lr", "train.batch_size", "train.weight_decay")
STOP_LOSS = 0.01  # Jiang et al.'s stopping criterion: training cross-entropy 0.01
MEASURES = (  # each oriented so that larger should mean a larger gap
    "norm_spectral_product",
    "norm_frobenius",
    "dist_init",
    "path_norm",
    "inverse_margin",
    "spectral_over_margin",
    "hessian_top",
    "hessian_trace",
    "sharpness_keskar",
    "sharpness_adaptive",
    "pacbayes_flatness",
    "pacbayes_mag_flatness",
    "steps",
)


def final_measures(model, data: datasets.Dataset, loss: str, init: dict, seed: int) -> dict[str, float]:
    """Every measure of one trained model, on its full training set."""
    batches = [(data.x_train, data.y_train)]
    loss_fn = LOSSES[loss]
    row = probes.norms(model) | probes.distance_from(model, init) | probes.path_norm(model)
    margin = float(np.quantile(probes.margins(model, data.x_train, data.y_train).double().cpu().numpy(), 0.1))
    row["inverse_margin"] = 1.0 / margin**2 if margin > 0 else math.inf
    row["spectral_over_margin"] = row["norm_spectral_product"] ** 2 / margin**2 if margin > 0 else math.inf
    eigen = curvature.top_eigenvalues(model, loss_fn, batches, tol=1e-3, generator=generator(seed, "measure-lanczos"))
    row |= {"hessian_top": eigen.values[0], "hessian_converged": float(eigen.converged)}
    row["hessian_trace"] = curvature.trace(model, loss_fn, batches, 30, "hutch++", generator(seed, "measure-trace")).value
    row["sharpness_keskar"] = sharpness.keskar(model, loss_fn, batches, epsilon=1e-3, steps=10).value
    row["sharpness_adaptive"] = sharpness.adaptive(model, loss_fn, batches, rho=0.05, steps=10).value
    for relative in (False, True):
        flat = sharpness.pacbayes_flatness(model, batches, 0.1, relative, samples=8, generator=generator(seed, "measure-flatness"))
        row[flat.name] = flat.value
    return {k: v for k, v in row.items() if not k.startswith("norm_frobenius.")}


def run(spec: RunSpec) -> Result:
    """Train to cross-entropy 0.01 (or the budget), then compute every measure."""
    data, model = setup(spec)
    init = probes.snapshot(model)
    result = fit(model, data, spec.train, generator(spec.seed, "batches"), with_probes(spec, model, data))
    measured = final_measures(model, data, spec.train.loss, init, spec.seed) if result.status == "ok" else {}
    return Result.of(result, measured, model=model)


def _sweep(data: DataSpec, train: TrainSpec, grid: dict) -> Sweep:
    base = RunSpec(experiment=NAME, data=data, model=ModelSpec(kind="mlp", width=64, depth=1), train=train)
    return Sweep(base=base, grid=grid)


def tiny() -> Sweep:
    """Seconds: 8 small models on 300 examples, a loose budget; for tests."""
    data = DataSpec(name="mnist1d", n_train=200, n_test=200, standardize=False)
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=50, max_steps=2000, eval_every=100, stop_loss=STOP_LOSS)
    return _sweep(data, train, {"model.width": (16, 64), "train.lr": (0.02, 0.1), "seed": (0, 1)})


def quick() -> Sweep:
    """64 MLPs on MNIST-1D 2000/1000: 2 values of 5 hyperparameters x 2 seeds."""
    data = DataSpec(name="mnist1d", n_train=2000, n_test=1000, standardize=False)
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=50, max_steps=8000, eval_every=200, stop_loss=STOP_LOSS)
    grid = {
        "model.width": (128, 256),
        "model.depth": (1, 2),
        "train.lr": (0.03, 0.06),
        "train.batch_size": (32, 128),
        "train.weight_decay": (0.0, 5e-5),  # Jiang's 5e-4 holds these MLPs at cross-entropy ~0.04: they never reach 0.01
        "seed": (0, 1),
    }
    return _sweep(data, train, grid)


def paper() -> Sweep:
    """MNIST (set data.root), 3 values per hyperparameter, 2 seeds: 486 models; for a GPU."""
    data = DataSpec(name="mnist", standardize=True)
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64, max_steps=60000, eval_every=1000, stop_loss=STOP_LOSS)
    grid = {
        "model.width": (128, 512, 2048),
        "model.depth": (1, 2, 3),
        "train.lr": (0.01, 0.03, 0.1),
        "train.batch_size": (32, 128, 512),
        "train.weight_decay": (0.0, 1e-4, 5e-4),
        "seed": (0, 1),
    }
    return _sweep(data, train, grid)


def _hyper(spec: RunSpec, path: str):
    """The value at a dotted path ('train.lr') of a run's spec."""
    section, name = path.split(".")
    return getattr(getattr(spec, section), name)


def scored_rows(records: list[RunRecord]) -> list[dict]:
    """One row per model that reached the stopping criterion: hyperparameters, seed, gap and measures."""
    rows = []
    for record in records:
        if record.status != "ok" or record.env.get("stopped") != "loss":
            continue
        final = record.final
        row = {axis: _hyper(record.run_spec, axis) for axis in AXES} | {"seed": record.run_spec.seed}
        row["gap"] = final["test_error"] - final["train_error"]
        row |= {m: final[m] for m in MEASURES if m in final and math.isfinite(final[m])}
        rows.append(row)
    return rows


def scores(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per measure: tau over all models and the granulated psi per axis and Psi ('all')."""
    table = {}
    for measure in MEASURES:
        usable = [r for r in rows if measure in r]
        if len(usable) < 3:
            continue
        axes = [a for a in AXES if len({r[a] for r in usable}) > 1]
        table[measure] = {"tau": kendall([r[measure] for r in usable], [r["gap"] for r in usable])}
        table[measure] |= {f"psi.{k}": v for k, v in granulated_kendall(usable, measure, "gap", axes).items()}
    return table


def claim(records: list[RunRecord]) -> Verdict:
    rows = scored_rows(records)
    table = scores(rows)
    flat, spectral = table.get("pacbayes_flatness"), table.get("norm_spectral_product")
    if flat is None or spectral is None:
        return Verdict(FINDING, False, {"n_models": float(len(rows))}, f"only {len(rows)} models reached the stopping criterion: too few to score")
    numbers = {
        "n_models": float(len(rows)),
        "n_trained": float(len(records)),
        "tau_pacbayes_flatness": flat["tau"],
        "psi_pacbayes_flatness": flat["psi.all"],
        "tau_spectral_product": spectral["tau"],
        "psi_spectral_product": spectral["psi.all"],
    }
    passed = flat["tau"] > 0 and flat["psi.all"] > spectral["psi.all"]
    reason = (
        f"tau(flatness, gap) = {flat['tau']:.3f} ({'>' if flat['tau'] > 0 else '<='} 0); "
        f"Psi(flatness) = {flat['psi.all']:.3f} vs Psi(spectral product) = {spectral['psi.all']:.3f}"
    )
    best = sorted(((v["psi.all"], m) for m, v in table.items() if not math.isnan(v["psi.all"])), reverse=True)
    notes = (f"ranking by Psi: {', '.join(f'{m} {p:.2f}' for p, m in best)}",)
    return Verdict(FINDING, passed, numbers, reason, notes)


def figures(records: list[RunRecord]) -> dict[str, Figure]:
    rows = scored_rows(records)
    table = scores(rows)
    measures = [m for m in MEASURES if m in table]
    if not measures:
        return {}
    cols = 4
    figure, axes = new_figure(ncols=cols, nrows=math.ceil(len(measures) / cols), width=3.2, height=2.8)
    for ax, measure in zip(axes, measures):
        axis = max((a for a in AXES if f"psi.{a}" in table[measure] and not math.isnan(table[measure][f"psi.{a}"])),
                   key=lambda a: abs(table[measure][f"psi.{a}"]), default=AXES[0])  # fmt: skip
        values = sorted({r[axis] for r in rows if measure in r})
        for i, value in enumerate(values):
            chosen = [r for r in rows if measure in r and r[axis] == value]
            ax.scatter([r[measure] for r in chosen], [r["gap"] for r in chosen], s=12, color=f"C{i}", label=f"{axis.split('.')[1]} {value}")
        if all(r[measure] > 0 for r in rows if measure in r):
            ax.set_xscale("log")
            plain_log_ticks(ax, "x")
        # colour: the hyperparameter along which this measure's granulated Psi is largest, which differs between panels
        title = f"tau {table[measure]['tau']:.2f}  Psi {table[measure]['psi.all']:.2f}; colour: {axis.split('.')[1]}"
        ax.set(xlabel=measure, ylabel="gap (test - train error)", title=title)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=6)
    for ax in axes[len(measures) :]:
        ax.remove()
    bars, (ax,) = new_figure(width=7.5, height=3.6)
    order = sorted(measures, key=lambda m: table[m]["psi.all"] if not math.isnan(table[m]["psi.all"]) else -9)
    positions = np.arange(len(order))
    ax.barh(positions - 0.2, [table[m]["tau"] for m in order], height=0.4, label="Kendall tau")
    ax.barh(positions + 0.2, [table[m]["psi.all"] for m in order], height=0.4, label="granulated Psi")
    ax.set_yticks(positions, order, fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel="rank correlation with the generalization gap", ylabel="complexity measure", title=f"{len(rows)} models at cross-entropy {STOP_LOSS}")
    ax.legend(fontsize=7)
    return {"measures_vs_gap": figure, "rank_correlations": bars}


class GeneralizationMeasures(Experiment):
    """A grid of networks trained to the same loss is scored measure by measure: how well does each rank the
    generalization gap, overall and within single-hyperparameter changes (granulated Kendall tau)? The paper found
    sharpness and PAC-Bayes flatness the best predictors and norm products among the worst."""

    title = "Which complexity measure ranks the generalization gap (sharpness vs norms)"
    axes_note = 'its grid already varies lr, batch size and weight decay under SGD to rank measures; an optimizer axis changes what the ranking is over'
    reference = "Jiang, Neyshabur, Mobahi, Krishnan & Bengio 2020"
    reads = SUPERVISED_READS
    trains_model = True

    def working_memory(self, spec: RunSpec) -> int:
        """The standard run's memory and its measures: the Hessian's top eigenvalue and trace on the whole training set."""
        return default_working_memory(spec) + hessian_memory(spec, iterations=LANCZOS_MAX_ITER)


CATALOG.add(NAME, GeneralizationMeasures())
