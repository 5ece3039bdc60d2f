"""The card's sections, how much work each may do, and what that work will cost before it is done.

`measure(subject, options, sections)` runs the chosen sections (fit, norms,
margins, curvature, sharpness, spectra, calibration, bounds) and returns a
`Card`. A section that raises is reported in the notes; the rest still run.
Curvature and sharpness use a random subset of `options.examples` training
examples (drawn from `options.seed`, never "the first ones", which may all be
one class in a sorted file); the card states the subset's size.

`estimate(subject, options, sections)` predicts each section's seconds from one
measured forward pass, one gradient and one Hessian-vector product on this model
and data, and `fit_budget` picks the largest settings whose estimate fits a time
budget, so a large model gets a card in the time the user has, with the error
bars that time allows (each estimate on the card carries its standard error).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace

import torch

from biaslab import probes
from biaslab.card.result import Card
from biaslab.card.subjects import Subject
from biaslab.plot import new_figure, reliability_diagram
from biaslab.probes import bounds, calibration, curvature, sharpness, spectra
from biaslab.runtime import generator
from biaslab.spec import SpecError

Progress = Callable[[str, int, int], None]  # (section, index, total)


@dataclass(frozen=True)
class CardOptions:
    """How much work each probe may do; the defaults suit a model of ~1e5 parameters on a few thousand examples."""

    examples: int = 4096  # training examples (a random subset) that curvature and sharpness use
    top_k: int = 3  # Hessian eigenvalues
    tol: float = 1e-4  # Lanczos: residual <= tol * |eigenvalue|
    lanczos_max: int = 100  # Lanczos: at most this many Hessian-vector products
    trace_probes: int = 60  # operator products for Hutch++
    density_probes: int = 3
    density_steps: int = 60
    sharpness_steps: int = 20
    sharpness_samples: int = 20
    keskar_epsilon: float = 1e-3
    adaptive_rho: float = 0.05
    average_sigma: float = 0.01
    effective_dim_z: float = 1.0  # z of the effective dimensionality sum lambda / (lambda + z) over the mean loss's Hessian
    calibration_bins: int = 15
    pacbayes_steps: int = 2000  # posterior optimization steps (Dziugaite & Roy used 1000 epochs of a far larger set)
    pacbayes_samples: int = 1000  # Monte-Carlo draws of the posterior's training error
    compression_levels: int = 16  # k-means quantization levels of the compression bound
    seed: int = 0  # for the example subset and every random probe vector and perturbation


BUDGETS = {  # named CardOptions: 'small' for a first look in seconds, 'full' for numbers to report
    "full": {},
    "small": {"examples": 1024, "trace_probes": 15, "density_probes": 2, "density_steps": 30, "sharpness_steps": 10,
              "sharpness_samples": 10, "pacbayes_steps": 200, "pacbayes_samples": 200},
}  # fmt: skip

# the least work a time budget may cut each count to: below these the estimates stop meaning anything
FLOORS = {"examples": 128, "trace_probes": 6, "density_probes": 1, "density_steps": 10, "sharpness_steps": 3,
          "sharpness_samples": 4, "pacbayes_steps": 50, "pacbayes_samples": 50, "lanczos_max": 20}  # fmt: skip
SCALABLE = tuple(FLOORS)


def card_options(budget: str = "full", **overrides) -> CardOptions:
    """The options of a named budget, with any field overridden; a bad name is one clear line."""
    if budget not in BUDGETS:
        raise SpecError(f"budget: {budget!r} is not one of {', '.join(BUDGETS)}")
    known = {f.name for f in fields(CardOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SpecError(f"card option {unknown[0]!r} is unknown; allowed: {', '.join(sorted(known))}")
    options = CardOptions(**(BUDGETS[budget] | overrides))
    if options.examples < 1:
        raise SpecError(f"examples: must be at least 1, got {options.examples}")
    return options


# --- the example subset -----------------------------------------------------------------------------------------


def subset(subject: Subject, options: CardOptions) -> list[curvature.Batch]:
    """One batch of `options.examples` training examples drawn at random (all of them when there are fewer)."""
    x, y = subject.data.x_train, subject.data.y_train
    n = x.shape[0]
    if options.examples >= n:
        return [(x, y)]
    index = torch.randperm(n, generator=generator(options.seed, "card-subset"))[: options.examples].to(x.device)
    return [(x[index], y[index])]


def subset_size(subject: Subject, options: CardOptions) -> int:
    return min(options.examples, subject.data.x_train.shape[0])


# --- sections ---------------------------------------------------------------------------------------------------


def fit_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    d, loss_fn = subject.data, subject.loss_fn
    row = probes.error_and_loss(subject.model, loss_fn, d.x_train, d.y_train, "train")
    row |= probes.error_and_loss(subject.model, loss_fn, d.x_test, d.y_test, "test")
    n_params = sum(p.numel() for p in subject.model.parameters())
    gap = {"gap_error": row["test_error"] - row["train_error"], "gap_loss": row["test_loss"] - row["train_loss"]}
    _check_expected_train_error(subject, row["train_error"], d.x_train.shape[0], card)
    return row | gap | {"n_train": float(d.x_train.shape[0]), "n_test": float(d.x_test.shape[0]), "n_params": float(n_params)}


def train_error_tolerance(expected: float, n: int) -> float:
    """How far a measured training error may sit from the stated one by sampling alone: 3 binomial s.e. plus one example."""
    p = min(max(expected, 1.0 / n), 1.0 - 1.0 / n)
    return 3.0 * math.sqrt(p * (1.0 - p) / n) + 1.0 / n


def _check_expected_train_error(subject: Subject, measured: float, n: int, card: Card) -> None:
    expected = subject.expected_train_error
    if expected is None or math.isnan(measured):
        return
    tolerance = train_error_tolerance(expected, n)
    if abs(measured - expected) > tolerance:
        card.warnings.append(
            f"The training error measured here ({measured:.4f} on {n} examples) is not the one stated for this model "
            f"({expected:.4f}; sampling allows ±{tolerance:.4f}). The card is probably scored on other data, another split "
            "or other preprocessing than the model was trained on: every gap, bound and calibration number below is then "
            "about that data, not the model's own."
        )


def norms_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    row = probes.norms(subject.model) | probes.path_norm(subject.model)
    if subject.init is not None:
        row |= probes.distance_from(subject.model, subject.init)
    else:
        card.notes.append("norms: no initialization known (give init= or --init), so no distance from init.")
    if "path_norm" not in row:
        card.notes.append("norms: the path norm is defined here for chains of Linear layers only.")
    return row


def margins_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    d = subject.data
    raw = probes.margins(subject.model, d.x_train, d.y_train)
    row = probes.normalized_margin(subject.model, d.x_train, d.y_train)
    quantiles = torch.quantile(raw.double().cpu(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    card.arrays["margins"] = raw.double().cpu().tolist()
    card.figures["margins"] = _margin_figure(card.arrays["margins"])
    row |= bounds.spectral_margin_distribution(subject.model, d.x_train, d.y_train, reference=subject.init)
    return row | {"margin_raw_q10": quantiles[0], "margin_raw_median": quantiles[1], "margin_raw_q90": quantiles[2]}


def curvature_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    batches = subset(subject, options)
    model, loss_fn = subject.model, subject.loss_fn
    eigen = curvature.top_eigenvalues(
        model, loss_fn, batches, k=options.top_k, tol=options.tol, max_iter=options.lanczos_max,
        generator=generator(options.seed, "card-lanczos"),
    )  # fmt: skip
    if not eigen.converged:
        card.notes.append(f"curvature: Lanczos did not reach tol {options.tol:g} in {eigen.iterations} products; see the residual.")
    row = eigen.metrics("hessian")
    row |= curvature.trace(model, loss_fn, batches, options.trace_probes, "hutch++", generator(options.seed, "card-trace")).metrics("hessian_trace")
    density = curvature.spectral_density(
        model, loss_fn, batches, options.density_probes, options.density_steps, generator(options.seed, "card-slq")
    )
    with curvature.curvature_operator(model, loss_fn, batches) as (matvec, dim):  # N_eff: the top-k found above, SLQ on the rest
        like = curvature.trainable(model)[0]
        row |= curvature.effective_dimensionality_of(
            matvec, dim, like, eigen, options.effective_dim_z, options.density_probes, options.density_steps, generator(options.seed, "card-neff")
        )  # fmt: skip
    card.arrays["density_nodes"] = density.nodes.reshape(-1).tolist()
    card.arrays["density_weights"] = density.weights.reshape(-1).tolist()
    card.figures["hessian_density"] = _density_figure(density, eigen.values[0])
    card.notes.append("curvature: Hessian eigenvalues and trace change under the ReLU rescaling symmetry (Dinh et al. 2017).")
    return row | {"examples": float(subset_size(subject, options))}


def sharpness_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    batches, model, loss_fn = subset(subject, options), subject.model, subject.loss_fn
    seed, samples = options.seed, options.sharpness_samples
    results = [
        sharpness.keskar(model, loss_fn, batches, options.keskar_epsilon, options.sharpness_steps),
        sharpness.adaptive(model, loss_fn, batches, options.adaptive_rho, options.sharpness_steps),
        sharpness.average(model, loss_fn, batches, options.average_sigma, samples, False, generator(seed, "card-avg")),
        sharpness.average(model, loss_fn, batches, options.average_sigma, samples, True, generator(seed, "card-avg-rel")),
        sharpness.pacbayes_flatness(model, batches, samples=samples, generator=generator(seed, "card-flat")),
        sharpness.pacbayes_flatness(model, batches, relative=True, samples=samples, generator=generator(seed, "card-flat-rel")),
    ]
    row: dict[str, float] = {}
    for result in results:
        row |= result.metrics()
        if not result.rescaling_invariant:
            card.notes.append(f"sharpness: {result.name} is not invariant to the ReLU rescaling symmetry.")
    return row | {"examples": float(subset_size(subject, options))}


def spectra_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    matrices = probes.weight_matrices(subject.model)
    if matrices:
        card.figures["layer_spectra"] = _spectra_figure(matrices)
    return spectra.weight_spectra(subject.model)


def calibration_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    d, bins = subject.data, options.calibration_bins
    row = calibration.calibration_metrics(subject.model, d.x_test, d.y_test, bins, prefix="test")
    row |= calibration.calibration_metrics(subject.model, d.x_train, d.y_train, bins, prefix="train")
    table = calibration.reliability_table(calibration.softmax_outputs(subject.model, d.x_test), d.y_test, bins)
    card.figures["reliability"] = reliability_diagram(table, title="Reliability on the test set")
    return row


def bounds_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    """The bounds menu on the whole training set; each bound's assumptions go to the notes."""
    model, d = subject.model, subject.data
    menu = [
        bounds.compression_bound(model, d.x_train, d.y_train, levels=options.compression_levels),
        bounds.spectral_bound(model, d.x_train, d.y_train, reference=subject.init),
        bounds.path_norm_bound(model, d.x_train, d.y_train),
    ]
    if subject.init is not None:
        menu.insert(0, bounds.pac_bayes_bound(
            model, d.x_train, d.y_train, subject.init, generator(options.seed, "card-pacbayes"),
            steps=options.pacbayes_steps, mc_samples=options.pacbayes_samples,
        ))  # fmt: skip
    else:
        card.notes.append("bounds: the PAC-Bayes bound needs the initialization as its prior's centre; none known (give init= or --init).")
    for bound in menu:
        card.notes.append(f"bounds: {bound.name}: {bound.assumptions}")
    return bounds.bound_metrics(menu)


SectionFn = Callable[[Subject, CardOptions, Card], dict[str, float]]
SECTIONS: dict[str, SectionFn] = {
    "fit": fit_section,
    "norms": norms_section,
    "margins": margins_section,
    "curvature": curvature_section,
    "sharpness": sharpness_section,
    "spectra": spectra_section,
    "calibration": calibration_section,
    "bounds": bounds_section,
}


def choose_sections(only: Iterable[str] | None = None, skip: Iterable[str] = ()) -> list[str]:
    """The sections to run, in card order: `only` (default all) minus `skip`; unknown names are one clear line."""
    only, skip = (list(only) if only is not None else list(SECTIONS)), list(skip)
    for name in [*only, *skip]:
        if name not in SECTIONS:
            raise SpecError(f"sections: {name!r} is not a section; allowed: {', '.join(SECTIONS)}")
    chosen = [name for name in SECTIONS if name in only and name not in skip]
    if not chosen:
        raise SpecError("sections: nothing left to measure after --sections/--skip")
    return chosen


def measure(
    subject: Subject, options: CardOptions = CardOptions(), on_progress: Progress | None = None, sections: Sequence[str] | None = None
) -> Card:
    """Run the chosen sections (default: all) on the subject; a section that raises is noted, the rest still run."""
    names = choose_sections(sections)
    card = Card(source=subject.source, data_note=subject.data_note, warnings=list(subject.warnings))
    card.subject = subject_facts(subject, options)
    card.options = {f.name: getattr(options, f.name) for f in fields(options)}
    with probes.one_forward_pass():  # fit, margins and calibration run the model over each data set once
        for index, name in enumerate(names):
            if on_progress is not None:
                on_progress(name, index, len(names))
            started = time.perf_counter()
            try:
                card.sections[name] = SECTIONS[name](subject, options, card)
            except Exception as error:  # one probe failing must not lose the others; the card says which and why
                card.notes.append(f"{name}: failed ({type(error).__name__}: {error})")
            card.seconds[name] = time.perf_counter() - started
    card.skipped = [name for name in SECTIONS if name not in names]
    return card


def subject_facts(subject: Subject, options: CardOptions) -> dict:
    """What was measured, for the card's header: model size, layers, weights hash, data, subset size."""
    from biaslab.card.subjects import layer_summary, weights_hash

    d = subject.data
    return {
        "parameters": sum(p.numel() for p in subject.model.parameters()),
        "weights_sha256": weights_hash(subject.model),
        "layers": layer_summary(subject.model),
        "model_type": type(subject.model).__name__,
        "loss": subject.loss,
        "n_train": int(d.x_train.shape[0]),
        "n_test": int(d.x_test.shape[0]),
        "input_shape": list(d.in_shape),
        "outputs": int(d.n_classes),
        "subset": subset_size(subject, options),
        "init_known": subject.init is not None,
        "expected_train_error": subject.expected_train_error,
        "device": str(d.x_train.device),
    }


# --- estimates and budgets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitCosts:
    """Seconds for one pass of each kind, measured on this model, data and device."""

    subset_examples: int  # the examples the subset passes below were timed on
    forward_subset: float  # a forward pass over the subset, no graph
    gradient_subset: float  # forward + backward over the subset
    hvp_subset: float  # one Hessian-vector product over the subset (graph already built)
    forward_train: float  # a forward pass over the whole training set
    pacbayes_step: float  # one posterior-optimization step of the PAC-Bayes bound (nan: no init, no bound)
    pacbayes_sample: float  # one Monte-Carlo draw of the PAC-Bayes posterior's training error
    spectra: float  # the singular values of every weight matrix
    probe_product: float = 0.0  # the probes' own cost per Hessian-vector product beyond the product (Lanczos, bookkeeping)
    probe_evaluation: float = 0.0  # the sharpness probes' own cost per perturbed evaluation beyond the forward pass


def _timed(work: Callable[[], object], device: torch.device, repeats: int = 2, patience: float = 0.2) -> float:
    """The least wall time of `work()` after a warm-up call: at least `repeats` timings, more while under `patience`
    seconds in all (short passes are timed many times, so a busy machine's stalls do not inflate them)."""
    best, spent, attempt = math.inf, 0.0, 0
    while attempt <= repeats or (spent < patience and attempt <= 20):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - started
        spent += elapsed
        if attempt:
            best = min(best, elapsed)
        attempt += 1
    return best


TIMED_FORWARD_EXAMPLES = 2048  # a full forward pass is timed on at most this many examples and scaled (it is linear there)


def unit_costs(subject: Subject, options: CardOptions) -> UnitCosts:
    """Time a forward pass, a gradient and a Hessian-vector product on the subset the card will use, and a training pass."""
    model, loss_fn = subject.model, subject.loss_fn
    (x, y), = subset(subject, options)
    device = x.device
    x_train = subject.data.x_train
    with curvature.evaluating(model):
        params = curvature.trainable(model)

        with torch.no_grad():
            forward = _timed(lambda: model(x), device)
            timed = min(TIMED_FORWARD_EXAMPLES, x_train.shape[0])
            forward_train = _timed(lambda: model(x_train[:timed]), device, 1) * x_train.shape[0] / timed
        gradient_subset = _timed(lambda: torch.autograd.grad(loss_fn(model(x), y), params), device)
    with curvature.curvature_operator(model, loss_fn, [(x, y)]) as (matvec, dim):
        vector = torch.randn(dim, generator=generator(0, "card-cost"), dtype=params[0].dtype).to(params[0].device)
        hvp = _timed(lambda: matvec(vector), device)
    step, sample = _pacbayes_costs(subject, device)
    matrices = [w for _, w in probes.weight_matrices(model)]
    spectra_seconds = _timed(lambda: [torch.linalg.svdvals(w.detach().double().cpu()) for w in matrices], torch.device("cpu"), 1)
    per_product, per_evaluation = _probe_overheads(subject, device)
    return UnitCosts(x.shape[0], forward, gradient_subset, hvp, forward_train, step, sample, spectra_seconds, per_product, per_evaluation)


OVERHEAD_PRODUCTS = 8  # products and evaluations timed on two examples to find what the probes cost beyond the passes


def _probe_overheads(subject: Subject, device: torch.device) -> tuple[float, float]:
    """Seconds per product of the curvature probe and per evaluation of the sharpness probe on two examples, where
    the passes themselves cost almost nothing: what Lanczos, the trace estimator and the perturbations add to each."""
    model, loss_fn = subject.model, subject.loss_fn
    tiny = [(subject.data.x_train[:2], subject.data.y_train[:2])]
    product = _timed(lambda: curvature.trace(model, loss_fn, tiny, OVERHEAD_PRODUCTS, "hutch++", generator(0, "card-cost")), device, 1)
    evaluation = _timed(lambda: sharpness.average(model, loss_fn, tiny, 0.01, OVERHEAD_PRODUCTS, False, generator(0, "card-cost")), device, 1)
    return product / OVERHEAD_PRODUCTS, evaluation / (OVERHEAD_PRODUCTS + 1)


def _pacbayes_costs(subject: Subject, device: torch.device) -> tuple[float, float]:
    """Seconds per posterior step and per Monte-Carlo draw, from two short runs of the bound itself (5+1 and 1+5)."""
    if subject.init is None:
        return math.nan, math.nan
    d = subject.data

    def run(steps: int, samples: int) -> Callable[[], object]:
        return lambda: bounds.pac_bayes_bound(subject.model, d.x_train, d.y_train, subject.init, generator(0, "card-cost"), steps=steps, mc_samples=samples)

    a, b = _timed(run(5, 1), device, 1), _timed(run(1, 5), device, 1)  # a = 5 s + m, b = s + 5 m (set-up folded in)
    return max((5 * a - b) / 24, 0.0), max((5 * b - a) / 24, 0.0)


LANCZOS_TYPICAL = 40  # products Lanczos usually needs for 3 eigenvalues at tol 1e-4 (measured on MLPs: 12-60)
FLATNESS_EVALUATIONS = 17  # pacbayes_flatness: two bracket checks, 14 bisection steps, one base loss


def estimate(subject: Subject, options: CardOptions, sections: Sequence[str] | None = None, costs: UnitCosts | None = None) -> dict[str, float]:
    """Predicted seconds per section, from measured unit costs and the work each section does at `options`.

    Subset passes scale linearly from the subset they were timed on to the subset `options` asks for
    (exact for large models; an underestimate for tiny ones, where per-call overhead dominates and
    everything takes seconds anyway).
    """
    costs = costs or unit_costs(subject, options)
    n, t = subject.data.x_train.shape[0], subject.data.x_test.shape[0]
    share = subset_size(subject, options) / costs.subset_examples
    fwd = costs.forward_subset * share + costs.probe_evaluation
    grad = costs.gradient_subset * share + costs.probe_evaluation
    hvp = costs.hvp_subset * share + costs.probe_product
    train_pass, test_pass = costs.forward_train, costs.forward_train * t / n
    lanczos = min(options.lanczos_max, LANCZOS_TYPICAL)
    pac_bayes = 0.0 if math.isnan(costs.pacbayes_step) else costs.pacbayes_step * options.pacbayes_steps + costs.pacbayes_sample * options.pacbayes_samples
    seconds = {
        "fit": train_pass + test_pass,
        "norms": costs.spectra,
        "margins": 3 * train_pass + costs.spectra,
        "curvature": 4 * grad + hvp * (lanczos + options.trace_probes + 2 * options.density_probes * options.density_steps),  # density and N_eff's tail
        "sharpness": grad * 2 * options.sharpness_steps + fwd * (2 * options.sharpness_samples + 2)
        + fwd * 2 * options.sharpness_samples * FLATNESS_EVALUATIONS,
        "spectra": costs.spectra,
        "calibration": 2 * (train_pass + test_pass),
        "bounds": pac_bayes + 4 * train_pass + 2 * costs.spectra,
    }  # fmt: skip
    return {name: seconds[name] for name in choose_sections(sections)}


def scaled(options: CardOptions, factor: float) -> CardOptions:
    """Options with every work count multiplied by `factor` (never below its floor, never above its value)."""
    changes = {}
    for name in SCALABLE:
        value = getattr(options, name)
        changes[name] = max(min(value, FLOORS[name]), min(value, int(round(value * factor))))
    return replace(options, **changes)


def fit_budget(
    subject: Subject, options: CardOptions, seconds: float, sections: Sequence[str] | None = None, costs: UnitCosts | None = None
) -> tuple[CardOptions, dict[str, float], bool]:
    """The largest scaling of `options` whose estimate fits `seconds`: (options, estimate, fits)."""
    costs = costs or unit_costs(subject, options)
    chosen, predicted = options, estimate(subject, options, sections, costs)
    for factor in (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.0):
        chosen = scaled(options, factor)
        predicted = estimate(subject, chosen, sections, costs)
        if sum(predicted.values()) <= seconds:
            return chosen, predicted, True
    return chosen, predicted, False


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds; one clear line for anything else."""
    text = text.strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1.0)
    try:
        value = float(number) * unit
    except ValueError:
        raise SpecError(f"time budget: {text!r} is not a duration; write e.g. 90s, 10m or 1.5h") from None
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"time budget: must be a positive duration, got {text!r}")
    return value


# --- figures ----------------------------------------------------------------------------------------------------


def _density_figure(density: curvature.Density, top: float):
    figure, (ax,) = new_figure(width=5.0)
    low, high = float(density.nodes.min()), float(density.nodes.max())
    pad = 0.05 * (high - low or 1.0)
    grid = torch.linspace(low - pad, high + pad, 800, dtype=torch.float64)
    values = density.on_grid(grid).clamp_min(1e-12)
    ax.semilogy(grid.numpy(), values.numpy())
    ax.axvline(top, color="C3", ls="--", label=f"top eigenvalue {top:.3g}")
    ax.set(xlabel="Hessian eigenvalue", ylabel="density (SLQ, Gaussian-broadened)", title="Hessian spectral density")
    ax.legend(fontsize=8)
    return figure


def _margin_figure(margins: list[float]):
    figure, (ax,) = new_figure(width=5.0)
    ax.hist(margins, bins=50, color="C0", alpha=0.8)
    ax.axvline(0.0, color="k", lw=0.8, label="0: misclassified to the left")
    ax.set(xlabel="margin f_y(x) - max_{j != y} f_j(x) (logit units)", ylabel="training examples", title="Margin distribution (training set)")
    ax.legend(fontsize=8)
    return figure


def _spectra_figure(matrices: list[tuple[str, torch.Tensor]]):
    """Each layer's singular values, largest first, on log axes: a heavy tail shows as a straight, shallow line."""
    figure, (ax,) = new_figure(width=5.0)
    for i, (name, weight) in enumerate(matrices[:12]):
        values = torch.linalg.svdvals(weight.detach().double().cpu()).clamp_min(1e-12).numpy()
        ax.loglog(range(1, len(values) + 1), values, label=name, color=f"C{i % 10}")
    ax.set(xlabel="rank", ylabel="singular value", title="Layer spectra (weight matrices)")
    ax.legend(fontsize=7, ncol=2)
    return figure
