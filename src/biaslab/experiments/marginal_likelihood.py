"""Occam's razor by marginal likelihood: a GP fits random labels, and its marginal likelihood says they are worse.

Wilson & Izmailov (2020, Sec. 5 and Fig. 7a; Wilson 2025) answer Zhang et al.'s randomization test with a Gaussian
process: with an RBF kernel whose hyperparameters are learned by maximizing the marginal likelihood, the GP, like a
network, fits training sets whose labels are partly or wholly random, yet its marginal likelihood falls as the
fraction of random labels grows. A model can be flexible enough to fit noise and still prefer structure; fitting
noise is no sign that a model has no inductive bias. Their code (izmailovpavel/understandingbdl,
`experiments/rethinking_generalization`): binary CIFAR-10 (airplane vs car, 10000 images, pixels / 5000), a
variational GP classifier (Bernoulli likelihood, ScaleKernel(RBF), constant mean, Adam lr 0.1 for 100 steps), a
fraction of the labels flipped, training accuracy and the ELBO per example reported.

Here, offline and exact: scikit-learn's digits (8x8, pixels / 16, not standardized: pixels constant in a training
subset would blow up), a fraction p = 0, 0.2, ..., 1 of the training labels replaced by uniformly random classes
(`data.label_noise`: round(p n) labels, chosen without replacement, redrawn from the 10 classes, so a redrawn label
can equal the true one; test labels are never changed). The model is exact GP regression used as classification
(`estimators.GPRegressionClassifier`, `estimator.kind=gp`): one-vs-rest targets, the one-hot code centred by 1/10,
one latent GP per class with shared hyperparameters, prediction by the largest posterior mean; kernel
s^2 exp(-||x - x'||^2 / (2 l^2)) plus the likelihood's noise variance sigma^2. The length scale l and signal variance
s^2 maximize the log marginal likelihood (summed over the 10 outputs) from l = 3 (the median pairwise distance of
digits) and s^2 = 1, under two likelihoods:

- `fixed` noise, sigma^2 = 1e-3 (1% of a target's variance 0.09): the analogue of the paper's noise-free Bernoulli
  likelihood, under which the latent function itself must carry the labels;
- `learned` noise: sigma^2 learned with l and s^2 (from 1e-3), with 2 further starts drawn by the run's seed, the
  best kept (the marginal likelihood of corrupted labels has several optima: memorize with a short length scale,
  or smooth with the corrupted labels as noise).

Per run: training error of the posterior mean's argmax on the (corrupted) training labels, and on the redrawn ones;
test error, and the test squared loss of the posterior mean against the centred one-hot targets; the log marginal
likelihood per training example, log p(Y | X) / n in nats, summed over the 10 one-vs-rest outputs, at the learned
hyperparameters; the learned l, s^2 and sigma^2. The band in every panel is
the min-max over 3 draws of the training subset and its random labels (`data.seed`).

Figures: `occam`: training error, test error (chance 0.9 marked) and log marginal likelihood per example against
the fraction of random labels, a line per likelihood; `hyperparameters`: the learned length scale, signal and noise
variance against the fraction.

Claim check (per dataset; thresholds from the finding): (1) with the paper's noise-free likelihood (`fixed`) the GP
fits the training labels at every fraction: training error at most 0.01 in every run (the paper's "fits", near 100%
training accuracy, as Zhang et al.'s networks; 0.01 leaves a handful of ties among 500); (2) for both likelihoods
test error rises with the fraction (Spearman rho of the seed means with p at least 0.9: at most one swapped pair of
six) and at p = 1 is within 0.05 of chance 0.9 (four binomial standard deviations at 597 test examples); (3) for
both likelihoods the log marginal likelihood per example falls monotonically with p: the seed means strictly
decrease at every step of the grid. With the noise learned the GP does not fit the corrupted labels (it explains
them as noise: sigma^2 rises with p and the training error follows the fraction of redrawn labels); that is
reported in the notes, not judged, since the paper's likelihood has no noise to learn.

Which scale shows what: `tiny` (100 examples, p = 0, 0.5, 1) passes. At `quick` (1) and (2) pass for both
likelihoods, and so does (3) with the noise learned, but (3) FAILs with the noise fixed: at p = 0.8 and at p = 1
the noise-free GP memorizes (length scale 0.18, a nearly diagonal kernel), and a memorizing GP's evidence depends
on the labels only through the class frequencies, so the two means tie at -2.149 nats per example (the step is
+1e-4). The same tie held at all 1200 digits training examples (one draw, by hand): it is not a small-sample
effect of this check but the floor of the noise-free model, which random labels reach before p = 1.

Reduced from the paper: digits (500 training, 597 test examples at `quick`) instead of binary CIFAR-10 (10000; not
offline), 10-class one-vs-rest exact GP regression instead of a variational Bernoulli classifier (so the marginal
likelihood is exact, not an ELBO), fractions of random instead of flipped labels, and no network beside it
(`random-labels` is that half). `paper`: all 1200 digits training examples and MNIST-1D at 1000 / 1000 (the
one-vs-rest GP at 4000 would hold 1.3 GB arrays per marginal-likelihood gradient), 5 draws, 4 further starts.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from biaslab import data as datasets
from biaslab.claims import Checks, Verdict, spearman
from biaslab.data.sources import n_classes
from biaslab.estimators import fit_estimator
from biaslab.experiments.base import CATALOG, Experiment, Result
from biaslab.experiments.estimator_runs import DIGITS_BANDWIDTH, MNIST1D_BANDWIDTH, numpy_arrays
from biaslab.experiments.memory import default_working_memory
from biaslab.plot import figure_legend, mean_band, new_figure
from biaslab.runtime import blas_threads_as_torch
from biaslab.spec import DataSpec, EstimatorSpec, RunSpec, Sweep
from biaslab.store import RunRecord

NAME = "marginal-likelihood"
FINDING = (
    "A GP with an RBF kernel and hyperparameters by maximum marginal likelihood fits training labels at every "
    "fraction of random labels while its test error rises to chance, and its marginal likelihood per example falls "
    "monotonically with the fraction: it can fit noise and still prefers structure."
)
FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
FIXED_NOISE = 1e-3  # noise variance of the noise-free arm: 1% of a centred one-vs-rest target's variance (0.09)
CHANCE_ERROR = 0.9  # 10 classes
FIT = 0.01  # (1) training error at most this in every noise-free run ("fits": near 100% training accuracy)
RISE_RHO = 0.9  # (2) Spearman of the mean test error with the fraction: at most one swapped pair of six
NEAR_CHANCE = 0.05  # (2) |test error at p = 1 - chance|: four binomial standard deviations at 597 test examples
ARMS = ("fixed", "learned")
ARM_LABELS = {"fixed": f"noise fixed at {FIXED_NOISE:g}", "learned": "noise learned"}
BANDWIDTHS = {"digits": DIGITS_BANDWIDTH, "mnist1d": MNIST1D_BANDWIDTH}  # start of the length scale: median distance


def run(spec: RunSpec) -> Result:
    """One GP fit on the (label-corrupted) dataset: errors, log marginal likelihood per example, learned hyperparameters."""
    with blas_threads_as_torch():
        data = datasets.load(spec.data, torch.device("cpu"), torch.float64)
        x_train, y_train, x_test, y_test = numpy_arrays(data, flat=True)
        gp = fit_estimator(spec, x_train, y_train)
        train_predicted, test_predicted = gp.predict(x_train), gp.predict(x_test)
        test_mean = gp.outputs(x_test)  # (n_test, K) posterior means of the centred one-vs-rest targets
    n = len(y_train)
    test_targets = (y_test[:, None] == gp.classes_[None, :]) - 1.0 / len(gp.classes_)
    noisy = data.noisy.cpu().numpy()
    row = {
        "train_error": float(np.mean(train_predicted != y_train)),
        "test_error": float(np.mean(test_predicted != y_test)),
        "lml_per_example": gp.log_marginal_likelihood_ / n,  # nats per example, summed over the one-vs-rest outputs
    }
    final = {
        "train_error_noisy": float(np.mean(train_predicted[noisy] != y_train[noisy])) if noisy.any() else math.nan,
        "length_scale": gp.length_scale_,
        "signal_variance": gp.signal_,
        "noise_variance": gp.noise_,
        "test_risk": float(np.square(test_mean - test_targets).sum(axis=1).mean()),  # squared loss of the posterior mean
        "n_train": float(n),
        "n_test": float(len(y_test)),
        "starts": float(len(gp.start_lml_)),
        "optimizer_warnings": float(len(gp.optimizer_warnings_)),
    }
    return Result.estimate([row], final, {"start_lml_per_example": [v / n for v in gp.start_lml_]})


# ---------------------------------------------------------------- presets


def _estimators(restarts: int, bandwidth: float) -> tuple[dict, ...]:
    """The two likelihoods as estimator sections: noise learned (with restarts) first, then noise fixed."""
    learned = EstimatorSpec(kind="gp", bandwidth=bandwidth, noise=FIXED_NOISE, learn_noise=True, restarts=restarts)
    fixed = EstimatorSpec(kind="gp", bandwidth=bandwidth, noise=FIXED_NOISE, learn_noise=False)
    return tuple(e.model_dump(mode="json") for e in (learned, fixed))


def _dataset(data: DataSpec, fractions, seeds, restarts: int) -> Sweep:
    estimators = _estimators(restarts, BANDWIDTHS[data.name])
    base = RunSpec(experiment=NAME, data=data, estimator=EstimatorSpec.model_validate(estimators[0]), dtype="float64")
    return Sweep(base=base, grid={"estimator": estimators, "data.seed": tuple(seeds), "data.label_noise": tuple(fractions)})


def _preset(datasets_: list[DataSpec], fractions, seeds, restarts: int) -> Sweep:
    first, *more = (_dataset(d, fractions, seeds, restarts) for d in datasets_)
    return first.model_copy(update={"also": tuple(more)})


def tiny() -> Sweep:
    """Seconds: 100 digits, three fractions, one draw, one further start."""
    return _preset([DataSpec(name="digits", n_train=100, n_test=100, standardize=False)], (0.0, 0.5, 1.0), (0,), 1)


def quick() -> Sweep:
    """500 digits (597 test), six fractions, three draws, two further starts with the noise learned."""
    return _preset([DataSpec(name="digits", n_train=500, n_test=597, standardize=False)], FRACTIONS, (0, 1, 2), 2)


def paper() -> Sweep:
    """All 1200 digits training examples and MNIST-1D at 1000 / 1000, five draws, four further starts."""
    digits = DataSpec(name="digits", n_train=1200, n_test=597, standardize=False)
    mnist1d = DataSpec(name="mnist1d", n_train=1000, n_test=1000, standardize=False)
    return _preset([digits, mnist1d], FRACTIONS, range(5), 4)


# ---------------------------------------------------------------- reading the records

COLUMNS = ["dataset", "arm", "fraction", "data_seed", "train_error", "train_error_noisy", "test_error", "lml_per_example",
           "length_scale", "signal_variance", "noise_variance"]  # fmt: skip


def run_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per finished run: its dataset, likelihood arm, fraction of random labels, draw and measurements."""
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        s = r.run_spec
        row = {"dataset": s.data.name, "arm": "learned" if s.estimator.learn_noise else "fixed", "fraction": s.data.label_noise, "data_seed": s.data.seed}
        rows.append(row | {k: r.final.get(k, math.nan) for k in COLUMNS[4:]})
    return pd.DataFrame(rows, columns=COLUMNS)


def seed_means(table: pd.DataFrame, dataset: str, arm: str, column: str) -> pd.Series:
    """The mean of `column` over draws at each fraction (sorted), for one dataset and arm."""
    part = table[(table["dataset"] == dataset) & (table["arm"] == arm)]
    return part.groupby("fraction")[column].mean().sort_index()


def judge(table: pd.DataFrame) -> Verdict:
    checks, numbers, notes = Checks(), {"runs": float(len(table))}, []
    if not len(table):
        checks.fail("no finished runs")
        return checks.verdict(FINDING, numbers)
    for dataset in sorted(table["dataset"].unique()):
        for arm in ARMS:
            tag, key = f"{dataset}/{arm}", f"{dataset}_{arm}"
            part = table[(table["dataset"] == dataset) & (table["arm"] == arm)]
            if not len(part):
                checks.fail(f"{tag}: no finished runs")
                continue
            test, lml = seed_means(table, dataset, arm, "test_error"), seed_means(table, dataset, arm, "lml_per_example")
            train_max = float(part["train_error"].max())
            numbers |= {f"{key}_train_error_max": train_max, f"{key}_test_error_at_1": float(test.get(1.0, math.nan))}
            numbers |= {f"{key}_lml_per_example_at_{p:g}": float(v) for p, v in lml.items()}
            if arm == "fixed":
                checks.check(train_max <= FIT, f"(1) {tag}: largest training error {train_max:.3f} (need <= {FIT:g})")
            else:
                train = seed_means(table, dataset, arm, "train_error")
                noise = seed_means(table, dataset, arm, "noise_variance")
                notes.append(f"{tag}: training error by fraction " + ", ".join(f"{p:g}: {v:.3f}" for p, v in train.items())
                             + "; learned noise variance " + ", ".join(f"{p:g}: {v:.3g}" for p, v in noise.items()))  # fmt: skip
            rho = spearman(list(test.index), list(test.values))
            numbers[f"{key}_test_rho"] = rho
            checks.check(rho >= RISE_RHO, f"(2) {tag}: Spearman of mean test error with the fraction {rho:.2f} (need >= {RISE_RHO})")
            at_one = float(test.get(1.0, math.nan))
            ok = abs(at_one - CHANCE_ERROR) <= NEAR_CHANCE
            checks.check(ok, f"(2) {tag}: test error at p = 1 {at_one:.3f} (need within {NEAR_CHANCE} of {CHANCE_ERROR})")
            steps = np.diff(lml.values)
            numbers[f"{key}_lml_largest_step"] = float(steps.max()) if len(steps) else math.nan
            ok = len(lml) >= 3 and bool((steps < 0).all())
            said = ", ".join(f"{v:.3f}" for v in lml.values)
            checks.check(ok, f"(3) {tag}: mean log marginal likelihood per example over p = {', '.join(f'{p:g}' for p in lml.index)}: {said} (need strictly decreasing)")
    return checks.verdict(FINDING, numbers, notes)


def draw(table: pd.DataFrame) -> dict[str, Figure]:
    panels = (("train_error", "training error (corrupted labels)"), ("test_error", "test error"), ("lml_per_example", "log marginal likelihood / n (nats)"))
    occam, axes = new_figure(ncols=4, width=4.0)
    hyper, hyper_axes = new_figure(ncols=3, width=4.0)
    for dataset in sorted(table["dataset"].unique()):
        for i, arm in enumerate(ARMS):
            part = table[(table["dataset"] == dataset) & (table["arm"] == arm)]
            if not len(part):
                continue
            label = ARM_LABELS[arm] + (f" ({dataset})" if table["dataset"].nunique() > 1 else "")
            for ax, (column, _) in zip(axes, panels):
                mean_band(ax, part, "fraction", column, label=label, color=f"C{i}")
            # the first step dominates panel 3's scale: each step's fall on its own (symlog) axis shows the later ones
            lml = part.groupby("fraction")["lml_per_example"].mean()
            axes[3].plot(lml.index[1:], -np.diff(lml.values), color=f"C{i}", marker="o", markersize=3, label=label)
            for ax, column in zip(hyper_axes, ("length_scale", "signal_variance", "noise_variance")):
                mean_band(ax, part, "fraction", column, label=label, color=f"C{i}")
    for ax, (_, ylabel) in zip(axes, panels):
        ax.set(xlabel="fraction of random training labels", ylabel=ylabel)
    axes[1].axhline(CHANCE_ERROR, color="gray", linestyle="--", linewidth=1, label="chance")
    axes[0].set_title("the GP's fit to the training labels")
    axes[2].set_title("marginal likelihood (Occam's razor)")
    axes[3].axhline(0.0, color="k", linewidth=0.8)
    axes[3].set_yscale("symlog", linthresh=1e-2)
    axes[3].set(xlabel="fraction of random training labels", ylabel="fall of log ML / n (nats, symlog)", title="fall from the previous fraction (0: a tie)")
    for ax, title in zip(hyper_axes, ("length scale l", "signal variance s^2", "noise variance sigma^2")):
        ax.set(xlabel="fraction of random training labels", ylabel=title, yscale="log", title=f"learned {title}")
    figure_legend(occam)  # the same arms in every panel
    figure_legend(hyper)
    return {"occam": occam, "hyperparameters": hyper}


# ---------------------------------------------------------------- the experiment


class MarginalLikelihood(Experiment):
    """Exact GP regression (RBF kernel, hyperparameters by maximum marginal likelihood) on digits with 0-100% random
    labels: with a noise-free likelihood it fits every training set while test error climbs to chance, and the log
    marginal likelihood per example falls with every step of corruption, with the noise learned too."""

    title = "Occam's razor by marginal likelihood: a GP fits random labels, its marginal likelihood falls"
    axes_note = 'exact Gaussian processes: no optimizer and no network'
    reference = "Wilson & Izmailov 2020 (NeurIPS), Sec. 5, Fig. 7a; Wilson 2025"
    reads = ("estimator", "data", "dtype")  # the dtype is float64, fixed by estimator.kind gp; no device: scikit-learn fits on the CPU
    allows = {"estimator.kind": ("gp",), "data.name": ("digits", "mnist1d"), "data.inputs": ("none",)}

    def working_memory(self, spec: RunSpec) -> int:
        """The dataset, and the dense float64 arrays of one marginal-likelihood gradient: K, its Cholesky factor and
        inverse, the kernel's gradient (3 hyperparameters) and alpha alpha^T per output, each n x n."""
        n = spec.data.n_train or 1200
        return default_working_memory(spec) + 8 * n * n * (n_classes(spec.data) + 3 + 4)

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        return draw(run_table(records))

    def claim(self, records: list[RunRecord]) -> Verdict:
        return judge(run_table(records))


CATALOG.add(NAME, MarginalLikelihood())
