"""Effective dimensionality tracks test loss where the parameter count does not (Maddox, Benton & Wilson 2020).

N_eff(H, z) = sum_i lambda_i / (lambda_i + z) over the eigenvalues of the loss
Hessian at the trained weights counts the directions in weight space that the
data determine more sharply than a prior of precision z. The paper's finding:
through model-wise double descent, past the interpolation threshold the
effective dimensionality *falls* as width grows while the parameter count
rises, and N_eff follows test loss (it peaks with it and falls with it) where
the parameter count cannot.

Paper setup (REFERENCES.md section 16; details unverified): width sweeps of
CNNs and ResNets on CIFAR-100 through the double-descent regime, N_eff from the
top eigenvalues of the Hessian found by Lanczos (about 100), at a fixed z.
Their N_eff is the top-k truncation; the probe here (`probes.curvature.
effective_dimensionality`) adds the rest of the spectrum by stochastic Lanczos
quadrature on the Hessian with the top k projected out, with its standard error,
and also records the truncation as `n_eff_top`.

Here (`quick`): one-hidden-layer ReLU MLPs of width 4..512 on MNIST-1D reduced to
1000 training examples (1000 test) with 15% of the training labels replaced
at random, so that a width of a few tens interpolates; SGD lr 0.05, momentum
0.9, batch 100 for a fixed 300 epochs (3000 steps, no early stop: the wide nets
train on past interpolation, as in the paper), 2 seeds. N_eff of the Hessian of
the *mean* training cross-entropy (noisy labels included, all 1000 examples) at
z = 1 (`probe_options.n_eff_z`), the top 10 eigenvalues by Lanczos and 3 x 20
quadrature steps for the rest; the probe is measured at each evaluation, which
`train.eval_every = max_steps` makes the initialization and the end only. The
eigenvalues of the mean loss are those of the summed loss divided by n: a z for
the summed loss is n times this one. `paper` runs CIFAR-10 (the files in
data.root; biaslab has no CIFAR-100) with the CNN at widths 2..64, 20% label
noise, Adam lr 1e-4 for 1000 epochs and 100 eigenvalues: for a GPU. `tiny` is a
smoke test of seconds whose verdict means nothing.

Figure: test loss, parameter count and N_eff (seed mean, min-max band; n_eff_top
dashed) against width on a log axis, the widths of the test-loss peak and of the
first zero training error marked.

Claim, from the paper's finding: let the peak be the width with the largest
mean test loss. (1) Past the peak N_eff falls while the parameter count grows:
N_eff at the widest width is below N_eff at the peak, and the rank correlation
of N_eff with width over the widths from the peak on is negative (<= -0.5, a
fall over most of those widths, not one step). (2) Across all widths, the
Spearman rank correlation of N_eff with test loss (seed means) exceeds that of
the parameter count with test loss. (3) The peak is not the widest width (there
is a regime past it to judge).

Measured at `quick` (README): (1) holds (N_eff 86 at the peak H = 32, 10 at
H = 512, rank correlation with width -1.00) but (2) FAILs, +0.14 for N_eff
against +0.52 for the parameter count: the test cross-entropy past the peak falls
only to 3.7, above the narrow nets' 2.0-2.6, whose N_eff is higher than the wide
nets'. N_eff tracks test loss across *all* widths only where the second descent
goes below the first, which the paper reports for CNNs and ResNets on CIFAR
trained long (`paper`; not run here); on MNIST-1D at this size it does not.
`tiny` FAILs for want of widths (three widths: the rank correlations tie).
"""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from biaslab.claims import Checks, Verdict, interpolation_width, spearman
from biaslab.experiments.base import CATALOG, Experiment, SUPERVISED_READS
from biaslab.experiments.supervised import run_supervised
from biaslab.plot import mean_band, new_figure
from biaslab.spec import DataSpec, ModelSpec, ProbeOptions, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord, finished_table

NAME = "effective-dimensionality"
FINDING = (
    "Past the test-loss peak, N_eff falls as width grows while the parameter count grows, and N_eff's rank "
    "correlation with test loss across widths is higher than the parameter count's."
)
PROBES = ("effective_dim",)
FALL_RHO = -0.5  # N_eff "falls" past the peak: its rank correlation with width there is at most this


def _sweep(data: DataSpec, model: ModelSpec, train: TrainSpec, widths, seeds, options: ProbeOptions = ProbeOptions()) -> Sweep:
    base = RunSpec(experiment=NAME, data=data, model=model.model_copy(update={"width": widths[0]}), train=train, probes=PROBES, probe_options=options)
    return Sweep(base=base, grid={"seed": tuple(seeds), "model.width": tuple(widths)})


def tiny() -> Sweep:
    """Seconds: 200 MNIST-1D examples, three widths, one seed; the probe at its default settings."""
    data = DataSpec(name="mnist1d", n_train=200, n_test=200, standardize=False, label_noise=0.15)
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=50, max_steps=200, eval_every=100)  # a mid-run evaluation: a stopping rule can act
    return _sweep(data, ModelSpec(kind="mlp", depth=1), train, (4, 16, 64), (0,))


def quick() -> Sweep:
    """MNIST-1D 1000/1000 with 15% label noise, widths 4..512, 300 epochs, 2 seeds: about 10 minutes on 2 cores."""
    data = DataSpec(name="mnist1d", n_train=1000, n_test=1000, standardize=False, label_noise=0.15)
    steps = 300 * 10  # 300 epochs of 10 batches of 100
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=100, max_steps=steps, eval_every=steps)
    return _sweep(data, ModelSpec(kind="mlp", depth=1), train, tuple(2**k for k in range(2, 10)), (0, 1))


def paper() -> Sweep:
    """CIFAR-10 (set data.root) with the CNN, widths 2..64, 20% label noise, 100 eigenvalues: for a GPU."""
    data = DataSpec(name="cifar10", standardize=True, label_noise=0.2)
    steps = 1000 * 391  # 1000 epochs at batch 128
    train = TrainSpec(optimizer="adam", lr=1e-4, batch_size=128, max_steps=steps, eval_every=steps)
    options = ProbeOptions(n_eff_k=100, n_eff_probes=5, n_eff_steps=50, n_eff_examples=10000)
    return _sweep(data, ModelSpec(kind="cnn", depth=3), train, tuple(2**k for k in range(1, 7)), (0, 1), options)


class EffectiveDimensionality(Experiment):
    """MLPs of growing width are trained on MNIST-1D with noisy labels past interpolation, and the effective
    dimensionality N_eff = sum lambda / (lambda + z) of the loss Hessian is measured at the end. Past the test-loss
    peak the parameter count keeps growing while N_eff falls, and N_eff ranks the widths by test loss better than
    the parameter count does."""

    title = "Past the interpolation peak, effective dimensionality falls as width grows and tracks test loss"
    axes_note = 'not yet cut for the atlas (it could admit both axes; each run pays a Hessian per evaluation)'
    reference = "Maddox, Benton & Wilson 2020, Rethinking Parameter Counting in Deep Models: Effective Dimensionality Revisited (arXiv:2003.02139)"
    runner = run_supervised
    reads = (*SUPERVISED_READS, "probe_options")
    trains_model = True
    trains_populations = True
    needs_probes = PROBES

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        table = finished_table(records)
        figure, axes = new_figure(ncols=3, width=3.6)
        panels = [("test_loss", "test loss", "nats"), ("n_params", "parameter count", "parameters"), ("n_eff", "effective dimensionality", "N_eff (directions)")]
        peak, width = _peak(table), interpolation_width(table)
        for ax, (column, title, unit) in zip(axes, panels):
            mean_band(ax, table, "model.width", column, label=column)
            if column == "n_eff":
                mean_band(ax, table, "model.width", "n_eff_top", label="n_eff_top (top-k only)", linestyle="--")
                z = table["probe_options.n_eff_z"].iloc[0] if "probe_options.n_eff_z" in table else math.nan
                title = f"{title} (z = {z:g})"
            if peak is not None:
                ax.axvline(peak, color="grey", linestyle=":", linewidth=1, label=f"test-loss peak (H={peak})")
            if width is not None:
                ax.axvline(width, color="grey", linestyle="--", linewidth=1, label=f"zero train error (H={width})")
            ax.set_xscale("log", base=2)
            ax.set(xlabel="hidden units H", ylabel=unit, title=title)
            ax.legend(fontsize=7)
        figure.suptitle("At the end of training (line: mean over seeds; band: min to max over seeds)", fontsize=9)
        return {"neff_vs_width": figure}

    def claim(self, records: list[RunRecord]) -> Verdict:
        table = finished_table(records)
        checks = Checks()
        if len(table) == 0 or "n_eff" not in table:
            checks.fail("no finished runs with N_eff to judge")
            return checks.verdict(FINDING, {})
        means = table.groupby("model.width")[["test_loss", "n_params", "n_eff", "n_eff_top", "train_error"]].mean()
        widths = list(means.index)
        peak = _peak(table)
        past = means[means.index >= peak]
        numbers: dict[str, float] = {
            "peak_width": float(peak),
            "widest_width": float(widths[-1]),
            "n_eff_at_peak": float(means.loc[peak, "n_eff"]),
            "n_eff_at_widest": float(means["n_eff"].iloc[-1]),
            "params_at_peak": float(means.loc[peak, "n_params"]),
            "params_at_widest": float(means["n_params"].iloc[-1]),
            "test_loss_at_peak": float(means.loc[peak, "test_loss"]),
            "test_loss_at_widest": float(means["test_loss"].iloc[-1]),
            "n_seeds": float(table["seed"].nunique()),
        }
        width = interpolation_width(table)
        if width is not None:
            numbers["interpolation_width"] = float(width)
        if not checks.check(len(past) >= 2, f"test loss peaks at H={peak}, {len(past) - 1} wider width(s) to judge (needs >= 1)"):
            return checks.verdict(FINDING, numbers, _notes(means))
        fall = spearman(list(past.index), list(past["n_eff"])) if len(past) >= 3 else float(math.copysign(1.0, past["n_eff"].iloc[-1] - past["n_eff"].iloc[0]))
        numbers["spearman_width_vs_n_eff_past_peak"] = fall
        checks.check(
            numbers["n_eff_at_widest"] < numbers["n_eff_at_peak"] and fall <= FALL_RHO,
            f"past the peak N_eff goes {numbers['n_eff_at_peak']:.1f} -> {numbers['n_eff_at_widest']:.1f} while the parameters go "
            f"{numbers['params_at_peak']:.0f} -> {numbers['params_at_widest']:.0f}; rank correlation of N_eff with width there "
            f"{fall:+.2f} (needs a fall and <= {FALL_RHO})",
        )
        rho_neff = spearman(list(means["n_eff"]), list(means["test_loss"]))
        rho_params = spearman(list(means["n_params"]), list(means["test_loss"]))
        numbers |= {"spearman_n_eff_vs_test_loss": rho_neff, "spearman_params_vs_test_loss": rho_params}
        checks.check(
            rho_neff > rho_params,
            f"rank correlation with test loss over {len(widths)} widths: N_eff {rho_neff:+.2f} vs parameter count {rho_params:+.2f} (needs N_eff's higher)",
        )
        return checks.verdict(FINDING, numbers, _notes(means))


def _peak(table) -> int | None:
    """The width with the largest test loss (mean over seeds)."""
    if len(table) == 0:
        return None
    return int(table.groupby("model.width")["test_loss"].mean().idxmax())


def _notes(means) -> tuple[str, ...]:
    rho_top = spearman(list(means["n_eff_top"]), list(means["test_loss"]))
    rows = ", ".join(f"H={w}: loss {r.test_loss:.2f}, N_eff {r.n_eff:.1f} (top-k {r.n_eff_top:.1f})" for w, r in means.iterrows())
    return (
        f"the top-k truncation alone (Maddox et al.'s computation) has rank correlation {rho_top:+.2f} with test loss",
        f"seed means: {rows}",
    )


CATALOG.add(NAME, EffectiveDimensionality())
