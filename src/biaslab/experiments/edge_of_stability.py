"""Gradient descent at the edge of stability (Cohen, Kaur, Li, Kolter & Talwalkar 2021, Fig. 1).

Full-batch gradient descent with step size eta is stable on a quadratic only
while the curvature stays below 2/eta. Cohen et al. found that on neural
networks the sharpness (the top eigenvalue of the training-loss Hessian) first
rises during training ("progressive sharpening") until it reaches 2/eta, and
then hovers right at (for the squared loss, just above) 2/eta instead of
blowing up, while the training loss keeps falling, non-monotonically, over long
time scales. A small enough eta never reaches its 2/eta within the budget.

Each run is one step size on one task. At every evaluation (every
`train.eval_every` steps) the trainer records the training loss and the hook
here records the sharpness: Lanczos on the full training set, warm-started from
the previous top eigenvector mixed with an equal-norm random direction (a few
Hessian-vector products per check; from the old vector alone Lanczos can stay on
an eigenvector that another has overtaken); every `COLD_EVERY`-th check also
solves from a random start and keeps the larger of the two (the largest
warm/cold disagreement is recorded).

Figure (as their Fig. 1): per task, the training loss on top and the sharpness
below, one color per eta, each with its 2/eta as a dashed line.

Claim check, per task, from the curves. A run *reaches* 2/eta when a check
measures sharpness >= 0.95 * 2/eta (the onset). For every run that reaches it:
(i) progressive sharpening: the sharpness at onset is at least 1.5x its value
at initialization; (ii) the edge: over the late phase (the second half of the
checks after onset) the median of sharpness / (2/eta) lies within 1 +- 0.1 and
at least 90% of the checks lie within 1 +- 0.2 -- the band that Cohen et al.'s
MSE panels (Fig. 1, Appendix figures for fc-tanh and the Chebyshev net) stay
inside after onset; (iii) the loss keeps falling: it ends below its value at
onset, and rises between consecutive checks at least once after onset
(non-monotone; the number of rises is reported). The largest eta of each task
must reach 2/eta, and the smallest must stay below 2/eta at every check.

Reduced from the paper: (a) is their synthetic regression exactly
(`chebyshev-5-20`: 20 points evenly spaced on [-1, 1] labelled by T_5, a
1-100-1 tanh net with Xavier-normal gain 1.9 on the hidden layer, gain 1 on the
read-out, zero hidden bias and no output bias, squared loss), with step sizes
0.05-0.4 and 20k steps. (b) replaces CIFAR-10-5k with 1000 MNIST-1D examples
(standardized) and keeps their fc-tanh net (two hidden tanh layers of 200,
PyTorch's default init) and their loss 1/2 ||f(x) - onehot(y)||^2 averaged
over examples; step sizes 0.02-0.1 for 5000 steps instead of running to a
loss threshold. Sharpness is checked every 100 steps (their `eig_freq` was
50-100, with SciPy's Lanczos from a random start each time). `paper` uses
CIFAR-10-5k (set data.root) with fc-tanh and four step sizes as in their Fig. 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from biaslab.claims import Verdict
from biaslab.experiments.supervised import setup, with_probes
from biaslab.experiments.base import CATALOG, Experiment, Result, SUPERVISED_READS
from biaslab.experiments.memory import LANCZOS_MAX_ITER, default_working_memory, hessian_memory
from biaslab.plot import new_figure, plain_log_ticks
from biaslab.probes import curvature
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, Sweep, TrainSpec, with_values
from biaslab.store import RunRecord
from biaslab.train import LOSSES, fit

NAME = "edge-of-stability"
FINDING = (
    "Under full-batch GD the sharpness rises (progressive sharpening) until it reaches 2/eta, then hovers in a narrow "
    "band around 2/eta while the loss keeps falling non-monotonically; a small enough eta stays below 2/eta."
)
COLD_EVERY = 5  # every 5th sharpness check also solves from a random start
LANCZOS_TOL = 1e-3  # relative residual of the top Ritz pair
REACH = 0.95  # sharpness >= REACH * 2/eta: the run has reached the edge
SHARPENING = 1.5  # progressive sharpening: sharpness at onset >= 1.5x its initial value
BAND_MEDIAN = 0.10  # late-phase median of sharpness/(2/eta) within 1 +- 0.10
BAND_WIDTH = 0.20  # ... and at least BAND_SHARE of the late checks within 1 +- 0.20
BAND_SHARE = 0.90
MIN_LATE_CHECKS = 5  # fewer late-phase checks than this cannot show hovering


# ---------------------------------------------------------------- the run


def sharpness_hook(model: nn.Module, loss_fn, batches, seed: int, cold_every: int = COLD_EVERY) -> Callable[[nn.Module, int], dict]:
    """An `on_eval` callback: the top Hessian eigenvalue, warm-started from the last check's eigenvector.

    Every `cold_every`-th check also solves from a fresh random start; the larger Ritz value wins (and its
    vector is kept), and `hessian_warm_gap` = (cold - warm) / cold is recorded at those checks.
    """
    state: dict = {"vector": None, "checks": 0}
    draws = generator(seed, "eos-lanczos")

    def warm_start() -> torch.Tensor | None:
        """The last top eigenvector plus an equal-norm random direction: a new eigenvalue that overtakes the old
        top one is then in the Krylov space from the first product (measured on the Chebyshev net: a start from
        the old vector alone stayed on it, 25% low, for 1500 steps)."""
        last = state["vector"]
        if last is None:
            return None
        noise = torch.randn(last.shape, generator=draws, dtype=last.dtype).to(last.device)
        return last / last.norm() + noise / noise.norm()

    def on_eval(model: nn.Module, step: int) -> dict[str, float]:
        warm = curvature.top_eigenvalues(model, loss_fn, batches, tol=LANCZOS_TOL, start=warm_start(), generator=draws)
        best, row = warm, {}
        if state["vector"] is not None and state["checks"] % cold_every == 0:
            cold = curvature.top_eigenvalues(model, loss_fn, batches, tol=LANCZOS_TOL, generator=draws)
            row["hessian_warm_gap"] = (cold.values[0] - warm.values[0]) / abs(cold.values[0])
            best = cold if cold.values[0] > warm.values[0] else warm
        state["vector"], state["checks"] = best.vectors[0], state["checks"] + 1
        return best.metrics("hessian") | row

    return on_eval


def run(spec: RunSpec) -> Result:
    """Full-batch GD on the spec's data and model, with the sharpness tracked at every evaluation."""
    data, model = setup(spec)
    hook = sharpness_hook(model, LOSSES[spec.train.loss], [(data.x_train, data.y_train)], spec.seed)
    result = fit(model, data, spec.train, generator(spec.seed, "batches"), with_probes(spec, model, data, hook))
    n_params = float(sum(p.numel() for p in model.parameters()))
    return Result.of(result, {"n_params": n_params, "two_over_eta": 2.0 / spec.train.lr}, model=model)


# ---------------------------------------------------------------- presets


def _task(data: DataSpec, model: ModelSpec, steps: int, every: int, lrs: Sequence[float]) -> list[dict]:
    """One case per step size: the data, model and budget that go with them."""
    section = {"data": data.model_dump(mode="json"), "model": model.model_dump(mode="json")}
    return [section | {"train.max_steps": steps, "train.eval_every": every, "train.lr": lr} for lr in lrs]


CHEBYSHEV = DataSpec(name="chebyshev", n_train=20, n_test=100, degree=5, standardize=False)
REGRESSION_NET = ModelSpec(kind="mlp", width=100, depth=1, activation="tanh", init="xavier", gain=1.9, readout_gain=1.0, readout_bias=False)
FC_TANH = ModelSpec(kind="mlp", width=200, depth=2, activation="tanh", init="torch")


def _sweep(cases: list[dict]) -> Sweep:
    """One run per case (a dataset with its model, budget and step size), joined as the parts of one sweep."""
    train = TrainSpec(optimizer="gd", batch_size=None, loss="mse", lr=0.1, max_steps=1000, eval_every=100)
    first, *rest = (Sweep(base=with_values(RunSpec(experiment=NAME, train=train), case)) for case in cases)
    return first.model_copy(update={"also": tuple(rest)})


def tiny() -> Sweep:
    """Seconds: the Chebyshev task, a large and a small step size, 3000 steps."""
    return _sweep(_task(CHEBYSHEV, REGRESSION_NET, 3000, 50, (0.05, 0.4)))


def quick() -> Sweep:
    """Chebyshev (4 step sizes, 20k steps) and MNIST-1D 1000 examples with fc-tanh (3 step sizes, 5000 steps)."""
    mnist1d = DataSpec(name="mnist1d", n_train=1000, n_test=500)
    return _sweep(_task(CHEBYSHEV, REGRESSION_NET, 20000, 100, (0.05, 0.1, 0.2, 0.4)) + _task(mnist1d, FC_TANH, 5000, 100, (0.02, 0.05, 0.1)))


def paper() -> Sweep:
    """Chebyshev as in quick, and CIFAR-10-5k (set data.root) with fc-tanh at Cohen et al.'s Fig. 1 step sizes."""
    cifar = DataSpec(name="cifar10", n_train=5000, n_test=1000)
    lrs = (2 / 200, 2 / 100, 2 / 70, 2 / 50, 2 / 30)
    return _sweep(_task(CHEBYSHEV, REGRESSION_NET, 20000, 100, (0.05, 0.1, 0.2, 0.4)) + _task(cifar, FC_TANH, 20000, 100, lrs))


# ---------------------------------------------------------------- claim


@dataclass(frozen=True)
class EdgeNumbers:
    """What one run's curves say about the edge of stability."""
    lr: float
    threshold: float  # 2 / eta
    initial: float  # sharpness at step 0
    max_ratio: float  # max over checks of sharpness / (2/eta)
    onset_step: float  # first step with sharpness >= REACH * 2/eta (NaN: never)
    sharpening: float  # sharpness at onset (or its maximum, if never reached) / initial
    late_checks: int
    late_median_ratio: float
    late_share_in_band: float
    loss_at_onset: float
    loss_final: float
    loss_rises: int  # rises between consecutive checks after onset

    @property
    def reached(self) -> bool:
        return not math.isnan(self.onset_step)

    @property
    def sharpened(self) -> bool:
        return self.sharpening >= SHARPENING

    @property
    def hovers(self) -> bool:
        return (
            self.late_checks >= MIN_LATE_CHECKS
            and abs(self.late_median_ratio - 1.0) <= BAND_MEDIAN
            and self.late_share_in_band >= BAND_SHARE
        )

    @property
    def loss_falls_non_monotonically(self) -> bool:
        return self.loss_final < self.loss_at_onset and self.loss_rises >= 1


def edge_numbers(steps: Sequence[float], sharpness: Sequence[float], loss: Sequence[float], lr: float) -> EdgeNumbers:
    """The edge-of-stability summary of one run's curves (checks where sharpness is NaN are skipped)."""
    rows = [(s, h, l) for s, h, l in zip(steps, sharpness, loss) if not math.isnan(h)]
    steps_, sharp, losses = (np.array(column, dtype=float) for column in zip(*rows)) if rows else (np.zeros(0),) * 3
    threshold = 2.0 / lr
    ratio = sharp / threshold
    initial = float(sharp[0]) if len(sharp) else math.nan
    reached = np.flatnonzero(ratio >= REACH)
    if len(reached) == 0:
        peak = float(sharp.max()) if len(sharp) else math.nan
        nan = math.nan
        return EdgeNumbers(lr, threshold, initial, float(ratio.max()) if len(ratio) else nan, nan, peak / initial, 0, nan, nan, nan, nan, 0)
    onset = int(reached[0])
    late = ratio[onset + (len(ratio) - onset) // 2 :]
    after = losses[onset:]
    rises = int(np.sum(np.diff(after) > 1e-7 * np.abs(after[:-1])))  # rises beyond float rounding
    return EdgeNumbers(
        lr=lr,
        threshold=threshold,
        initial=initial,
        max_ratio=float(ratio.max()),
        onset_step=float(steps_[onset]),
        sharpening=float(sharp[onset] / initial),
        late_checks=len(late),
        late_median_ratio=float(np.median(late)),
        late_share_in_band=float(np.mean(np.abs(late - 1.0) <= BAND_WIDTH)),
        loss_at_onset=float(after[0]),
        loss_final=float(after[-1]),
        loss_rises=rises,
    )


def _record_numbers(record: RunRecord) -> EdgeNumbers:
    curves = record.curves
    return edge_numbers(curves["step"], curves.get("hessian_top", [math.nan] * len(curves["step"])), curves["train_loss"], record.run_spec.train.lr)


def _tasks(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Finished runs grouped by dataset, each group sorted by step size."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        if record.status == "ok" and "hessian_top" in record.curves:
            groups.setdefault(record.run_spec.data.name, []).append(record)
    return {name: sorted(group, key=lambda r: r.run_spec.train.lr) for name, group in sorted(groups.items())}


def _judge_task(name: str, group: list[RunRecord]) -> tuple[bool, dict[str, float], list[str]]:
    """PASS/FAIL of one task, its numbers and the reasons it fails."""
    measured = [_record_numbers(r) for r in group]
    numbers: dict[str, float] = {}
    problems: list[str] = []
    for m in measured:
        key = f"{name}.eta={m.lr:g}"
        numbers |= {f"{key}.max_ratio": m.max_ratio, f"{key}.sharpening": m.sharpening}
        if not m.reached:
            continue
        numbers |= {
            f"{key}.onset_step": m.onset_step,
            f"{key}.late_median_ratio": m.late_median_ratio,
            f"{key}.late_share_in_band": m.late_share_in_band,
            f"{key}.loss_at_onset": m.loss_at_onset,
            f"{key}.loss_final": m.loss_final,
            f"{key}.loss_rises": float(m.loss_rises),
        }
        if not m.sharpened:
            problems.append(f"{key}: sharpness at onset only {m.sharpening:.2f}x its initial value (< {SHARPENING})")
        if not m.hovers:
            problems.append(
                f"{key}: late phase ({m.late_checks} checks) median {m.late_median_ratio:.3f} x 2/eta, "
                f"{m.late_share_in_band:.0%} within +-{BAND_WIDTH:.0%}"
            )
        if not m.loss_falls_non_monotonically:
            problems.append(f"{key}: loss {m.loss_at_onset:.3g} at onset -> {m.loss_final:.3g}, {m.loss_rises} rises")
    largest, smallest = measured[-1], measured[0]
    if not largest.reached:
        problems.append(f"{name}: the largest eta {largest.lr:g} never reached 2/eta (max {largest.max_ratio:.2f} x 2/eta)")
    if len(measured) < 2:
        problems.append(f"{name}: one step size only; need a small one that stays below 2/eta")
    elif smallest.max_ratio >= 1.0:
        problems.append(f"{name}: the smallest eta {smallest.lr:g} reached {smallest.max_ratio:.2f} x 2/eta")
    numbers[f"{name}.edge_runs"] = float(sum(m.reached for m in measured))
    return not problems, numbers, problems


def claim(records: list[RunRecord]) -> Verdict:
    tasks = _tasks(records)
    if not tasks:
        return Verdict(FINDING, False, {"n_runs": 0.0}, "no finished runs with a sharpness curve")
    numbers: dict[str, float] = {"n_runs": float(sum(len(g) for g in tasks.values()))}
    problems: list[str] = []
    for name, group in tasks.items():
        _, task_numbers, task_problems = _judge_task(name, group)
        numbers |= task_numbers
        problems += task_problems
    gaps = [abs(v) for r in records if r.status == "ok" for v in r.curves.get("hessian_warm_gap", []) if not math.isnan(v)]
    numbers["max_warm_cold_gap"] = float(max(gaps)) if gaps else math.nan
    diverged = [f"{r.run_spec.data.name} eta={r.run_spec.train.lr:g}" for r in records if r.status == "diverged"]
    notes = (f"diverged (left out): {', '.join(diverged)}",) if diverged else ()
    if gaps:
        off = sum(g > 0.01 for g in gaps)
        notes += (
            f"warm-started Lanczos vs a cold solve at {len(gaps)} checks: {off} differ by more than 1% (largest {max(gaps):.1%}); "
            f"the larger value is kept, so a stale warm start lasts at most {COLD_EVERY} checks",
        )
    rule = (
        f"PASS needs, per task, sharpness at onset >= {SHARPENING}x initial, late-phase median within 1 +- {BAND_MEDIAN} "
        f"and >= {BAND_SHARE:.0%} of late checks within 1 +- {BAND_WIDTH} of 2/eta, the loss below its onset value "
        f"with >= 1 rise, for every run reaching 2/eta; the largest eta reaching it and the smallest staying below"
    )
    reason = rule + (": all hold" if not problems else ". Failed: " + "; ".join(problems))
    return Verdict(FINDING, not problems, numbers, reason, notes)


# ---------------------------------------------------------------- figure


def figures(records: list[RunRecord]) -> dict[str, Figure]:
    tasks = _tasks(records)
    if not tasks:
        return {}
    figure, axes = new_figure(ncols=len(tasks), nrows=2, width=5.0, height=3.0)
    for column, (name, group) in enumerate(tasks.items()):
        loss_ax, sharp_ax = axes[column], axes[len(tasks) + column]
        for i, record in enumerate(group):
            lr, color = record.run_spec.train.lr, f"C{i}"
            steps = record.curves["step"]
            loss_ax.plot(steps, record.curves["train_loss"], color=color, linewidth=1, label=f"eta={lr:g}")
            sharp_ax.plot(steps, record.curves["hessian_top"], color=color, linewidth=1, label=f"eta={lr:g}")
            sharp_ax.axhline(2.0 / lr, color=color, linestyle="--", linewidth=0.8, label=f"2/eta = {2.0 / lr:g}")
        loss_ax.set(yscale="log", xlabel="step", ylabel="training loss", title=f"{name}: training loss")
        plain_log_ticks(loss_ax, "y")
        sharp_ax.set(xlabel="step", ylabel="top Hessian eigenvalue", title=f"{name}: sharpness")
        loss_ax.legend(fontsize=7)
        sharp_ax.legend(fontsize=7, ncols=2)
    return {"edge_of_stability": figure}


class EdgeOfStability(Experiment):
    """Full-batch gradient descent with step size eta is tracked with the top Hessian eigenvalue: it rises during
    training until it reaches the stability limit 2/eta and then hovers there while the loss keeps falling, non-
    monotonically. Shown on Cohen et al.'s Chebyshev regression and on an MLP on MNIST-1D with squared loss."""

    title = "Full-batch GD drives sharpness up to 2/eta and then trains at the edge of stability"
    axes_note = "its claim is about full-batch GD's step size (sharpness settles at 2/lr): other optimizers have another threshold"
    reference = "Cohen, Kaur, Li, Kolter & Talwalkar 2021, Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability (ICLR)"
    reads = SUPERVISED_READS
    trains_model = True
    allows = {"train.optimizer": ("gd",)}

    def working_memory(self, spec: RunSpec) -> int:
        """The standard run's memory and its sharpness checks: the Hessian of the loss on the whole training set, by Lanczos."""
        return default_working_memory(spec) + hessian_memory(spec, iterations=LANCZOS_MAX_ITER)


CATALOG.add(NAME, EdgeOfStability())

__all__ = ["edge_numbers", "EdgeNumbers", "sharpness_hook", "run", "claim", "figures"]
