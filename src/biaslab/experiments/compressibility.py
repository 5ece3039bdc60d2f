"""How much of a trained network can be removed: pruning, quantization and lottery tickets across widths.

One-hidden-layer ReLU MLPs of several widths are trained on MNIST-1D (the width
sweep's protocol: SGD, momentum 0.9, batch 100, stopping at zero training
error). Each trained network is then compressed without retraining:

(a) magnitude pruning of the weight matrices (biases kept), global (one
    threshold over all layers) and layer-wise (the same fraction per layer);
(b) post-training uniform quantization of each weight matrix to 2^k levels
    between its min and max, k = 1..8 bits;

and the *largest sparsity* / *fewest bits* whose test accuracy stays within 1
point of the dense network's is read off (scanning up from sparsity 0 / down
from 8 bits, the last level before the first one that loses more). Measured
sizes (32-bit kept values plus log2 C(n, kept) bits of positions; k bits per
weight plus min/max per layer) are reported beside `probes.bounds.
compression_bound`, the Occam bound of the network quantized with one shared
uniform codebook of 2^k levels (k the fewest bits found; the 8 settings tried are
paid for in its code length), which is about the *training* sample.

(c) Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning,
    layer-wise, the same rate in every layer (the paper halves it for the
    output layer), 4 rounds of 43.8% of the remaining weights so the last round
    reaches 90% sparsity; after each round the kept weights are *rewound to
    their initial values* (to init, not to an early iteration) and retrained
    with the same batch order. The control: random masks with the same number
    of kept weights per layer, from the same init.

Figures: `pruning` (test accuracy vs sparsity, global and layer-wise, one line
per width: seed mean, min-max shaded), `quantization` (accuracy vs bits),
`tickets` (ticket vs random-mask accuracy vs sparsity, one panel per width),
`removable` (largest sparsity and fewest bits within 1 point vs width; measured
size vs compression bound's code length).

Claim: (1) at 90% sparsity winning tickets beat random masks by at least 2
points of test accuracy, mean over widths and seeds (spread reported); (2) the
fraction of weights removable (global pruning) without losing more than 1
point grows with width: Spearman rank correlation of the seed-mean largest
sparsity with width > 0. PASS needs both.

Reduced from the papers: Frankle & Carbin used LeNet-300-100 on MNIST (Adam
1.2e-3, 50K iterations, pruning 20% per round for up to ~20 rounds) and conv
nets on CIFAR-10; here 4 rounds, MNIST-1D (4000 train; 4000 test examples, so
that the 1-point window is not lost in the test set's sampling noise), widths
16..1024, 3 seeds, SGD with the width sweep's settings and a 40-epoch budget
(every training, dense or masked, gets the same budget and stopping rule).
Pruning and quantization are one-shot, without fine-tuning (Han et al. 2015
retrain after pruning, which removes more).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn.utils import prune

from biaslab import data as datasets
from biaslab.claims import Verdict, spearman
from biaslab.experiments.supervised import fresh_model, setup, with_probes
from biaslab.experiments.base import CATALOG, Experiment, Result, SUPERVISED_READS
from biaslab.plot import legend_once, mean_band, new_figure, plain_log_ticks
from biaslab.probes import compression, landscape
from biaslab.probes.bounds import compression_bound
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, Sweep, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import LOSSES, Fit, fit

NAME = "compressibility"
FINDING = (
    "At about 90% sparsity, winning tickets (iterative magnitude pruning, rewound to init) beat random masks of the same "
    "sparsity by a clear margin, and the fraction of weights removable without losing accuracy grows with width."
)
SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
BITS = (8, 7, 6, 5, 4, 3, 2, 1)
TOLERANCE = 0.01  # "within 1 point" of test accuracy
ROUNDS = 4
TARGET_SPARSITY = 0.9
ROUND_RATE = 1.0 - (1.0 - TARGET_SPARSITY) ** (1.0 / ROUNDS)  # fraction of the remaining weights pruned per round
TICKET_MARGIN = 0.02  # tickets must beat random masks by 2 points at the target sparsity


def _module_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, attr = name.split(".")
    module = model
    for part in path:
        module = getattr(module, part)
    return module, attr


def rewind(model: nn.Module, init: dict[str, torch.Tensor], masks: compression.Masks) -> nn.Module:
    """Set every parameter to its initial value and fix the masks on the pruned tensors (forward uses init * mask)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(init[name])
    for name, mask in masks.items():
        module, attr = _module_of(model, name)
        prune.custom_from_mask(module, attr, mask.to(init[name].dtype))
    return model


def make_permanent(model: nn.Module, masks: compression.Masks) -> nn.Module:
    """Bake the masks into the weights (weight = weight_orig * mask) and drop the pruning hooks."""
    for name in masks:
        module, attr = _module_of(model, name)
        prune.remove(module, attr)
    return model


def train_masked(spec: RunSpec, data: datasets.Dataset, init: dict[str, torch.Tensor], masks: compression.Masks) -> tuple[nn.Module, Fit]:
    """Train the architecture from `init` with `masks` fixed (masked weights get no gradient, stay 0)."""
    model = fresh_model(spec, data)
    rewind(model, init, masks)
    result = fit(model, data, spec.train, generator(spec.seed, "batches"))
    return make_permanent(model, masks), result


def _within(errors: list[float], base: float) -> list[bool]:
    return [e <= base + TOLERANCE for e in errors]


def _last_before_failure(levels, ok: list[bool]) -> float:
    """The last level of the scan before the first that loses more than the tolerance (nan if the first already does)."""
    best = math.nan
    for level, good in zip(levels, ok):
        if not good:
            break
        best = level
    return float(best)


def _compress(model: nn.Module, loss_fn, data: datasets.Dataset) -> tuple[dict, dict]:
    """(a) and (b) on the trained model, with sizes and the compression bound."""
    trained = landscape.parameters(model)
    names = compression.prunable(model)
    weights = {n: trained[n] for n in names}
    others = sum(p.numel() for n, p in trained.items() if n not in names)
    x, y = data.x_test, data.y_test
    base = landscape.loss_and_error(model, loss_fn, x, y, trained)[1]
    final: dict[str, float] = {"dense_bits": 32.0 * sum(p.numel() for p in trained.values())}
    arrays: dict[str, list[float]] = {"sparsities": list(SPARSITIES), "bits": list(BITS)}
    for scope in ("global", "layer"):
        masks = [compression.magnitude_masks(weights, s, scope) for s in SPARSITIES]
        errors = [landscape.loss_and_error(model, loss_fn, x, y, compression.apply_masks(trained, m))[1] for m in masks]
        arrays[f"prune_{scope}_test_error"] = errors
        best = _last_before_failure(SPARSITIES, _within(errors, base))
        final[f"max_sparsity_{scope}"] = best
        if scope == "global" and not math.isnan(best):
            final["pruned_bits"] = compression.sparse_bits(masks[SPARSITIES.index(best)], others)
    errors = [landscape.loss_and_error(model, loss_fn, x, y, compression.quantized_params(trained, k, names))[1] for k in BITS]
    arrays["quant_test_error"] = errors
    fewest = _last_before_failure(BITS, _within(errors, base))
    final["min_bits"] = fewest
    if not math.isnan(fewest):
        final["quantized_bits"] = compression.quantized_bits(trained, int(fewest), names)
        bound = compression_bound(model, data.x_train, data.y_train, levels=2 ** int(fewest), method="uniform", configurations=len(BITS))
        final |= {
            "compression_bound": bound.value,
            "compression_bound_bits": bound.ingredients["bits"],
            "compression_bound_train_error_quantized": bound.ingredients["train_error_quantized"],
        }
    return final, arrays


def _lottery(spec: RunSpec, data: datasets.Dataset, init: dict, trained: dict, names: list[str]) -> tuple[dict, dict]:
    """(c): iterative magnitude pruning with rewinding to init, and same-sparsity random masks."""
    loss_fn = LOSSES[spec.train.loss]
    masks: compression.Masks | None = None
    current = {n: trained[n] for n in names}
    sparsity, ticket, random = [], [], []
    for round_ in range(ROUNDS):
        masks = compression.magnitude_masks(current, ROUND_RATE, "layer", among=masks)
        model, _ = train_masked(spec, data, init, masks)
        ticket.append(landscape.loss_and_error(model, loss_fn, data.x_test, data.y_test, landscape.parameters(model))[1])
        current = {n: p.detach() for n, p in model.named_parameters() if n in names}
        control = compression.random_masks(masks, generator(spec.seed, f"random-mask-{round_}"))
        model, _ = train_masked(spec, data, init, control)
        random.append(landscape.loss_and_error(model, loss_fn, data.x_test, data.y_test, landscape.parameters(model))[1])
        sparsity.append(compression.sparsity_of(masks))
    final = {
        "ticket_sparsity": sparsity[-1],
        "ticket_test_error": ticket[-1],
        "random_mask_test_error": random[-1],
        "ticket_margin": random[-1] - ticket[-1],  # accuracy gained by the ticket over the random mask
    }
    return final, {"ticket_sparsity": sparsity, "ticket_test_error": ticket, "random_mask_test_error": random}


def run(spec: RunSpec) -> Result:
    """Train dense; prune and quantize it one-shot; find lottery tickets and their random controls."""
    data, model = setup(spec)
    init = landscape.parameters(model)
    result = fit(model, data, spec.train, generator(spec.seed, "batches"), with_probes(spec, model, data))
    if result.status != "ok":
        return Result.of(result, model=model)
    final, arrays = _compress(model, LOSSES[spec.train.loss], data)
    lottery_final, lottery_arrays = _lottery(spec, data, init, landscape.parameters(model), compression.prunable(model))
    n_params = {"n_params": float(sum(p.numel() for p in model.parameters()))}
    return Result.of(result, final | lottery_final | n_params, arrays | lottery_arrays, model=model)  # the dense network


# ---------------------------------------------------------------- presets


def _sweep(data: DataSpec, train: TrainSpec, widths, seeds, depth: int = 1) -> Sweep:
    base = RunSpec(experiment=NAME, data=data, model=ModelSpec(kind="mlp", depth=depth, width=widths[0]), train=train)
    return Sweep(base=base, grid={"seed": tuple(seeds), "model.width": tuple(widths)})


def tiny() -> Sweep:
    """Seconds: 400 examples, widths 16 and 64, one seed, short training."""
    data = DataSpec(name="mnist1d", n_train=400, n_test=200, standardize=False)
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=100, max_steps=120, eval_every=40, stop_zero_error_evals=1)
    return _sweep(data, train, (16, 64), (0,))


def quick() -> Sweep:
    """MNIST-1D 4000 train / 4000 test, widths 16..1024, 3 seeds, at most 40 epochs per training (9 trainings per run)."""
    data = DataSpec(name="mnist1d", n_train=4000, n_test=4000, standardize=False)  # 4000 test: a 1-point window is ~1.3 s.e.
    epoch = 40
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=100, max_steps=40 * epoch, eval_every=5 * epoch, stop_zero_error_evals=1)
    return _sweep(data, train, (16, 64, 256, 1024), (0, 1, 2))


def paper() -> Sweep:
    """MNIST (set data.root), LeNet-300-100-like two-layer MLPs scaled by width, Adam 1.2e-3, batch 60, 50K iterations."""
    data = DataSpec(name="mnist", standardize=True)
    train = TrainSpec(optimizer="adam", lr=1.2e-3, batch_size=60, max_steps=50_000, eval_every=1000)
    return _sweep(data, train, (75, 150, 300, 600, 1200), (0, 1, 2, 3, 4), depth=2)


# ---------------------------------------------------------------- figures and claim


def _finished(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status == "ok" and "ticket_margin" in r.final]


def _width(record: RunRecord) -> int:
    return int(record.run_spec.model.width)


def _band(ax, runs: list[RunRecord], x_key: str, y_key: str, label: str, color: str, accuracy: bool = True) -> None:
    """Seed mean of an array against another (the first run's x for all), min-max shaded; error arrays shown as accuracy."""
    x = runs[0].arrays[x_key]
    frame = pd.DataFrame([(at, 1.0 - v if accuracy else v) for r in runs for at, v in zip(x, r.arrays[y_key])], columns=["x", "y"])
    mean_band(ax, frame, "x", "y", label=label, color=color)


def _nanmean(values) -> float:
    """Mean of the non-nan values; nan (without a warning) when there are none."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    return float(np.mean(kept)) if kept else math.nan


def _rank_trend(widths: list[int], values: list[float]) -> float:
    """Spearman of values with width (3+ widths), the sign of last - first for 2; 0 for constant values, nan if any is nan."""
    if len(widths) < 2 or any(math.isnan(v) for v in values):
        return math.nan
    if len(widths) == 2:
        return float(np.sign(values[-1] - values[0]))
    rho = spearman(widths, values)
    return 0.0 if math.isnan(rho) else rho


class Compressibility(Experiment):
    """MLPs of several widths trained on MNIST-1D are pruned by magnitude and quantized without retraining, and the
    largest sparsity and fewest bits that keep test accuracy within a point are read off per width. Lottery tickets
    found by iterative pruning with rewinding to init are compared with random masks of the same sparsity."""

    title = "Trained networks compress: pruning, quantization and lottery tickets across widths"
    axes_note = "pruning and lottery tickets rewind to SGD's init and retrain with the same optimizer inside the run: not yet cut for the atlas"
    reference = (
        "Frankle & Carbin 2019, The Lottery Ticket Hypothesis (ICLR); Han, Mao & Dally 2016, Deep Compression (ICLR); "
        "Arora, Ge, Neyshabur & Zhang 2018, Stronger Generalization Bounds via a Compression Approach (ICML)"
    )
    reads = SUPERVISED_READS
    trains_model = True

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        done = _finished(records)
        widths = sorted({_width(r) for r in done})
        by_width = {w: [r for r in done if _width(r) == w] for w in widths}
        pruning, axes = new_figure(ncols=2)
        for ax, scope in zip(axes, ("global", "layer")):
            for i, w in enumerate(widths):
                _band(ax, by_width[w], "sparsities", f"prune_{scope}_test_error", f"H={w}", f"C{i}")
            ax.set(xlabel="sparsity (fraction of weights removed)", ylabel="test accuracy", title=f"magnitude pruning, {scope}, no retraining")
            legend_once(ax)
        quantization, (ax,) = new_figure()
        for i, w in enumerate(widths):
            _band(ax, by_width[w], "bits", "quant_test_error", f"H={w}", f"C{i}")
        ax.set(xlabel="bits per weight (uniform, per layer)", ylabel="test accuracy", title="post-training quantization")
        legend_once(ax)
        tickets, axes = new_figure(ncols=max(1, len(widths)))
        for ax, w in zip(axes, widths):
            _band(ax, by_width[w], "ticket_sparsity", "ticket_test_error", "winning ticket (rewound to init)", "C0")
            _band(ax, by_width[w], "ticket_sparsity", "random_mask_test_error", "random mask, same sparsity", "C3")
            ax.set(xlabel="sparsity", ylabel="test accuracy", title=f"H={w}")
            legend_once(ax)
        removable, axes = new_figure(ncols=3)
        panels = ((axes[0], "max_sparsity_global", "largest sparsity within 1 pt", "fraction of weights pruned (global)"),
                  (axes[1], "min_bits", "fewest bits within 1 pt", "bits per weight"))  # fmt: skip
        for ax, key, label, unit in panels:
            for r in done:
                ax.scatter(_width(r), r.final.get(key, math.nan), color="C0", s=12, label="seeds")
            ax.plot(widths, [_nanmean([r.final.get(key, math.nan) for r in by_width[w]]) for w in widths], color="C0", label="seed mean")
            ax.set(xscale="log", xlabel="hidden units H", ylabel=unit, title=label)
            plain_log_ticks(ax, "x")
            legend_once(ax)
        for key, label, color in (("dense_bits", "dense (32 bit)", "C7"), ("pruned_bits", "pruned, measured", "C0"),
                                  ("quantized_bits", "quantized, measured", "C1"), ("compression_bound_bits", "compression-bound code", "C2")):  # fmt: skip
            axes[2].plot(widths, [_nanmean([r.final.get(key, math.nan) for r in by_width[w]]) for w in widths], marker="o", color=color, label=label)
        axes[2].set(xscale="log", yscale="log", xlabel="hidden units H", ylabel="bits", title="compressed sizes")
        plain_log_ticks(axes[2], "x")
        legend_once(axes[2])
        return {"pruning": pruning, "quantization": quantization, "tickets": tickets, "removable": removable}

    def claim(self, records: list[RunRecord]) -> Verdict:
        return compressibility_claim(records)


def compressibility_claim(records: list[RunRecord]) -> Verdict:
    """PASS when tickets beat random masks by >= 2 points at 90% sparsity (mean) and removable fraction rises with width."""
    done = _finished(records)
    if not done:
        return Verdict(FINDING, False, {"n_runs": 0.0}, "no finished runs to judge")
    margins = [r.final["ticket_margin"] for r in done]
    widths = sorted({_width(r) for r in done})
    removable = [float(_nanmean([r.final["max_sparsity_global"] for r in done if _width(r) == w])) for w in widths]
    rho = _rank_trend(widths, removable)
    numbers = {
        "n_runs": float(len(done)),
        "ticket_sparsity": float(np.mean([r.final["ticket_sparsity"] for r in done])),
        "ticket_margin_mean": float(np.mean(margins)),
        "ticket_margin_min": float(np.min(margins)),
        "ticket_margin_max": float(np.max(margins)),
        "ticket_test_error_mean": float(np.mean([r.final["ticket_test_error"] for r in done])),
        "random_mask_test_error_mean": float(np.mean([r.final["random_mask_test_error"] for r in done])),
        "spearman_width_vs_removable": float(rho),
    }
    numbers |= {f"max_sparsity_global.H{w}": v for w, v in zip(widths, removable)}
    tickets_ok = numbers["ticket_margin_mean"] >= TICKET_MARGIN
    width_ok = not math.isnan(rho) and rho > 0
    numbers |= {"ticket_claim_passed": float(tickets_ok), "width_claim_passed": float(width_ok)}
    reason = (
        f"(1) at sparsity {numbers['ticket_sparsity']:.3f} tickets' test accuracy exceeds random masks' by "
        f"{100 * numbers['ticket_margin_mean']:.2f} points on average (range {100 * min(margins):.2f}..{100 * max(margins):.2f} over "
        f"{len(done)} runs; PASS needs >= {100 * TICKET_MARGIN:.0f}); (2) largest global sparsity within {100 * TOLERANCE:.0f} point of the "
        f"dense accuracy, seed mean per width {', '.join(f'H={w}: {v:.2f}' for w, v in zip(widths, removable))}: Spearman {rho:+.2f} "
        "(PASS needs > 0)"
    )
    notes = []
    for w in widths:
        runs = [r for r in done if _width(r) == w]
        mean = lambda key: float(_nanmean([r.final.get(key, math.nan) for r in runs]))  # noqa: E731
        notes.append(
            f"H={w}: dense test error {mean('test_error'):.3f}; ticket margin {100 * mean('ticket_margin'):.2f} pts; "
            f"layer-wise max sparsity {mean('max_sparsity_layer'):.2f}; fewest bits {mean('min_bits'):.1f}; sizes: dense "
            f"{mean('dense_bits'):.3g} b, pruned {mean('pruned_bits'):.3g} b, quantized {mean('quantized_bits'):.3g} b, compression-bound "
            f"code {mean('compression_bound_bits'):.3g} b with bound {mean('compression_bound'):.3f} on the 0-1 error of the shared-codebook "
            f"quantized net (its train error {mean('compression_bound_train_error_quantized'):.3f})"
        )
    return Verdict(FINDING, bool(tickets_ok and width_ok), numbers, reason, tuple(notes))


CATALOG.add(NAME, Compressibility())
