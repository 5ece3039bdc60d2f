"""The generalization report card of one trained classifier: every probe, its error bar, and the bounds.

A *subject* is a trained `nn.Module` with its loss, its data and (when known)
its initialization. It comes from a run in the store (`subject_from_run`: the
model is rebuilt from the run's spec, its init regenerated from the spec's seed,
its trained weights read from the run's safetensors file) or from a user's own
code (`subject_from_module`: `package.module:factory` returning the module, and a
state_dict file: safetensors, or a torch file read with `weights_only=True`).

`measure(subject, options)` runs the probes section by section (fit, norms,
margins, curvature, sharpness, ...) and returns a `Card`: named scalars per
section, each stochastic estimate with its standard error, notes (what a
measure is not invariant to, what did not converge) and figures.
`write_card(card, directory)` writes `card.json`, `card.html` and the figures.
Probes never change the subject's model (each probe restores mode and leaves no
`.grad`).
"""

from __future__ import annotations

import html
import importlib
import json
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from biaslab import data as datasets
from biaslab import models, probes
from biaslab.plot import new_figure, reliability_diagram
from biaslab.probes import bounds, calibration, curvature, sharpness, spectra
from biaslab.runtime import generator, resolve_device, resolve_dtype
from biaslab.spec import DataSpec, RunSpec, SpecError
from biaslab.store import Store
from biaslab.train import LOSSES

Progress = Callable[[str, int, int], None]  # (section, index, total)


@dataclass
class Subject:
    """What a card measures: a trained classifier, its loss and data, and its init when known."""

    model: nn.Module
    data: datasets.Dataset
    loss: str  # a name in train.LOSSES
    init: dict[str, torch.Tensor] | None
    source: dict[str, Any]  # where it came from (run id and spec, or module and weights file)

    @property
    def loss_fn(self):
        return LOSSES[self.loss]


@dataclass(frozen=True)
class CardOptions:
    """How much work each probe may do; the defaults suit a model of ~1e5 parameters on a few thousand examples."""

    examples: int = 4096  # training examples the curvature, sharpness and bounds use (the first ones)
    top_k: int = 3  # Hessian eigenvalues
    tol: float = 1e-4  # Lanczos: residual <= tol * |eigenvalue|
    trace_probes: int = 60  # operator products for Hutch++
    density_probes: int = 3
    density_steps: int = 60
    sharpness_steps: int = 20
    sharpness_samples: int = 20
    keskar_epsilon: float = 1e-3
    adaptive_rho: float = 0.05
    average_sigma: float = 0.01
    calibration_bins: int = 15
    pacbayes_steps: int = 2000  # posterior optimization steps (Dziugaite & Roy used 1000 epochs of a far larger set)
    pacbayes_samples: int = 1000  # Monte-Carlo draws of the posterior's training error
    compression_levels: int = 16  # k-means quantization levels of the compression bound
    seed: int = 0  # for every random probe vector and perturbation


BUDGETS = {  # named CardOptions for the CLI: 'small' for a first look in seconds, 'full' for numbers to report
    "full": {},
    "small": {"trace_probes": 15, "density_probes": 2, "density_steps": 30, "sharpness_steps": 10, "sharpness_samples": 10,
              "pacbayes_steps": 200, "pacbayes_samples": 200},
}  # fmt: skip


@dataclass
class Card:
    source: dict[str, Any]
    sections: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    arrays: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        clean = {s: {k: _finite_or_text(v) for k, v in row.items()} for s, row in self.sections.items()}
        return {"source": self.source, "sections": clean, "notes": self.notes, "seconds": self.seconds, "arrays": self.arrays}


def _finite_or_text(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


# --- subjects -------------------------------------------------------------------------------------------------


def subject_from_run(store: Store, run_id: str, device: str = "cpu") -> Subject:
    """The trained model of a stored run (its spec must have had save_weights=true)."""
    record = store.get(run_id)
    spec = RunSpec.model_validate(record.spec)
    if spec.problem is not None:
        raise SpecError(f"run {record.spec_id}: a {spec.problem.kind} problem run has no classifier to probe")
    weights = store.weights(record.spec_id)
    torch_device, dtype = resolve_device(device), resolve_dtype(spec.dtype)
    data = datasets.load(spec.data, torch_device, dtype)
    model = models.build(spec.model, data.in_shape, data.n_classes, generator(spec.seed, "init"), torch_device, dtype)
    init = probes.snapshot(model)
    _load_state(model, {name: torch.from_numpy(array) for name, array in weights.items()})
    source = {"run": record.spec_id, "experiment": record.experiment, "spec": record.spec}
    return Subject(model, data, spec.train.loss, init, source)


def subject_from_module(factory: str, weights: Path, data: DataSpec, loss: str = "cross_entropy", device: str = "cpu") -> Subject:
    """A user's model: `package.module:function` builds it, `weights` holds its state_dict; `data` says what to probe on."""
    if loss not in LOSSES:
        raise SpecError(f"loss: {loss!r} is not a loss; allowed: {', '.join(LOSSES)}")
    model = _call_factory(factory)
    torch_device = resolve_device(device)
    dtype = next(model.parameters()).dtype
    model.to(torch_device)
    _load_state(model, load_state_file(weights))
    dataset = datasets.load(data, torch_device, dtype)
    source = {"model": factory, "weights": str(weights), "data": data.model_dump(mode="json")}
    return Subject(model, dataset, loss, None, source)


def _call_factory(factory: str) -> nn.Module:
    module_name, sep, attribute = factory.partition(":")
    if not sep or not module_name or not attribute:
        raise SpecError(f"model: {factory!r} should be 'package.module:function' (a function returning an nn.Module)")
    try:
        builder = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise SpecError(f"model: cannot find {factory!r} ({error})") from None
    model = builder()
    if not isinstance(model, nn.Module):
        raise SpecError(f"model: {factory} returned {type(model).__name__}, not an nn.Module")
    return model


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from .safetensors, or from a torch file read with weights_only=True (no arbitrary unpickling)."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"weights: no such file {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise SpecError(f"weights: {path} holds more than tensors; refused (read with weights_only=True): {str(error)[:200]}") from None
    if not isinstance(state, dict):
        raise SpecError(f"weights: {path} holds a {type(state).__name__}, not a state_dict")
    return state


def _load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    reference = model.state_dict()
    missing, unexpected = set(reference) - set(state), set(state) - set(reference)
    if missing or unexpected:
        raise SpecError(f"weights: do not fit the model (missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    with torch.no_grad():
        for name, tensor in reference.items():
            tensor.copy_(state[name].to(tensor.dtype))


# --- sections -------------------------------------------------------------------------------------------------


def _batches(subject: Subject, options: CardOptions) -> list[curvature.Batch]:
    x, y = subject.data.x_train[: options.examples], subject.data.y_train[: options.examples]
    return [(x, y)]


def fit_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    d, loss_fn = subject.data, subject.loss_fn
    row = probes.error_and_loss(subject.model, loss_fn, d.x_train, d.y_train, "train")
    row |= probes.error_and_loss(subject.model, loss_fn, d.x_test, d.y_test, "test")
    n_params = sum(p.numel() for p in subject.model.parameters())
    gap = {"gap_error": row["test_error"] - row["train_error"], "gap_loss": row["test_loss"] - row["train_loss"]}
    return row | gap | {"n_train": float(d.x_train.shape[0]), "n_params": float(n_params)}


def norms_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    row = probes.norms(subject.model) | probes.path_norm(subject.model)
    if subject.init is not None:
        row |= probes.distance_from(subject.model, subject.init)
    else:
        card.notes.append("norms: no initialization known (a user's model), so no distance from init.")
    if "path_norm" not in row:
        card.notes.append("norms: the path norm is defined here for chains of Linear layers only.")
    return row


def margins_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    d = subject.data
    raw = probes.margins(subject.model, d.x_train, d.y_train)
    row = probes.normalized_margin(subject.model, d.x_train, d.y_train)
    quantiles = torch.quantile(raw.double().cpu(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    card.arrays["margins"] = raw.double().cpu().tolist()
    row |= bounds.spectral_margin_distribution(subject.model, d.x_train, d.y_train, reference=subject.init)
    return row | {"margin_raw_q10": quantiles[0], "margin_raw_median": quantiles[1], "margin_raw_q90": quantiles[2]}


def curvature_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    batches = _batches(subject, options)
    model, loss_fn = subject.model, subject.loss_fn
    eigen = curvature.top_eigenvalues(
        model, loss_fn, batches, k=options.top_k, tol=options.tol, generator=generator(options.seed, "card-lanczos")
    )
    if not eigen.converged:
        card.notes.append(f"curvature: Lanczos did not reach tol {options.tol:g} in {eigen.iterations} products; see the residuals.")
    row = eigen.metrics("hessian")
    row |= curvature.trace(model, loss_fn, batches, options.trace_probes, "hutch++", generator(options.seed, "card-trace")).metrics("hessian_trace")
    density = curvature.spectral_density(
        model, loss_fn, batches, options.density_probes, options.density_steps, generator(options.seed, "card-slq")
    )
    card.arrays["density_nodes"] = density.nodes.reshape(-1).tolist()
    card.arrays["density_weights"] = density.weights.reshape(-1).tolist()
    card.figures["hessian_density"] = _density_figure(density, eigen.values[0])
    card.notes.append("curvature: Hessian eigenvalues and trace change under the ReLU rescaling symmetry (Dinh et al. 2017).")
    return row


def sharpness_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
    batches, model, loss_fn = _batches(subject, options), subject.model, subject.loss_fn
    results = [
        sharpness.keskar(model, loss_fn, batches, options.keskar_epsilon, options.sharpness_steps),
        sharpness.adaptive(model, loss_fn, batches, options.adaptive_rho, options.sharpness_steps),
        sharpness.average(model, loss_fn, batches, options.average_sigma, options.sharpness_samples, False, generator(options.seed, "card-avg")),
        sharpness.average(model, loss_fn, batches, options.average_sigma, options.sharpness_samples, True, generator(options.seed, "card-avg-rel")),
        sharpness.pacbayes_flatness(model, batches, samples=options.sharpness_samples, generator=generator(options.seed, "card-flat")),
        sharpness.pacbayes_flatness(model, batches, relative=True, samples=options.sharpness_samples, generator=generator(options.seed, "card-flat-rel")),
    ]
    row: dict[str, float] = {}
    for result in results:
        row |= result.metrics()
        if not result.rescaling_invariant:
            card.notes.append(f"sharpness: {result.name} is not invariant to the ReLU rescaling symmetry.")
    return row


def spectra_section(subject: Subject, options: CardOptions, card: Card) -> dict[str, float]:
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
        card.notes.append("bounds: the PAC-Bayes bound needs the initialization as its prior's centre; none known.")
    for bound in menu:
        card.notes.append(f"bounds: {bound.name}: {bound.assumptions}")
    return bounds.bound_metrics(menu)


SECTIONS: dict[str, Callable[[Subject, CardOptions, Card], dict[str, float]]] = {
    "fit": fit_section,
    "norms": norms_section,
    "margins": margins_section,
    "curvature": curvature_section,
    "sharpness": sharpness_section,
    "spectra": spectra_section,
    "calibration": calibration_section,
    "bounds": bounds_section,
}


def measure(subject: Subject, options: CardOptions = CardOptions(), on_progress: Progress | None = None) -> Card:
    """Run every section on the subject; a section that raises is reported in the notes, the rest still run."""
    card = Card(source=subject.source)
    for index, (name, section) in enumerate(SECTIONS.items()):
        if on_progress is not None:
            on_progress(name, index, len(SECTIONS))
        started = time.perf_counter()
        try:
            card.sections[name] = section(subject, options, card)
        except Exception as error:  # one probe failing must not lose the others; the card says which and why
            card.notes.append(f"{name}: failed ({type(error).__name__}: {error})")
        card.seconds[name] = time.perf_counter() - started
    if "margins" in card.arrays:
        card.figures["margins"] = _margin_figure(card.arrays["margins"])
    return card


# --- figures and files ----------------------------------------------------------------------------------------


def _density_figure(density: curvature.Density, top: float) -> Figure:
    figure, (ax,) = new_figure(width=5.0)
    low, high = float(density.nodes.min()), float(density.nodes.max())
    pad = 0.05 * (high - low or 1.0)
    grid = torch.linspace(low - pad, high + pad, 800, dtype=torch.float64)
    values = density.on_grid(grid).clamp_min(1e-12)
    ax.semilogy(grid.numpy(), values.numpy())
    ax.axvline(top, color="C3", ls="--", label=f"top eigenvalue {top:.3g}")
    ax.set(xlabel="eigenvalue", ylabel="density (SLQ, Gaussian-broadened)", title="Hessian spectral density")
    ax.legend(fontsize=8)
    return figure


def _margin_figure(margins: list[float]) -> Figure:
    figure, (ax,) = new_figure(width=5.0)
    ax.hist(margins, bins=50, color="C0", alpha=0.8)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set(xlabel="margin f_y(x) - max_{j != y} f_j(x)", ylabel="training examples", title="Margin distribution")
    return figure


def write_card(card: Card, directory: str | Path) -> Path:
    """Write card.json, card.html and the figures (SVG and PNG) under `directory`; return card.html."""
    directory = Path(directory)
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    (directory / "card.json").write_text(json.dumps(card.to_json(), indent=2, sort_keys=True), encoding="utf-8")
    images = []
    for name, figure in card.figures.items():
        for suffix in ("svg", "png"):
            figure.savefig(directory / "figures" / f"{name}.{suffix}", bbox_inches="tight", dpi=110)
        images.append(f"<img src='figures/{name}.svg' alt='{html.escape(name)}'>")
    page = directory / "card.html"
    page.write_text(_card_html(card, images), encoding="utf-8")
    return page


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin-bottom: 1.5em; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f5f5f5; text-align: left; }
.muted { color: #666; font-size: 0.9em; } img { max-width: 48%; margin: 0.5em 1%; } li { margin: 0.2em 0; }
"""


def _card_html(card: Card, images: list[str]) -> str:
    parts = [f"<h1>Generalization report card</h1><p class='muted'>{html.escape(json.dumps(_short_source(card.source)))}</p>"]
    for name, row in card.sections.items():
        parts.append(f"<h2>{html.escape(name)} <span class='muted'>({card.seconds.get(name, 0):.1f} s)</span></h2>")
        parts.append(_metrics_table(row))
    if card.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in card.notes) + "</ul>")
    parts.append("<h2>Figures</h2>" + "".join(images))
    return f"<!doctype html><html><head><meta charset='utf-8'><title>biaslab card</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"


def _short_source(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if k != "spec"}


def _metrics_table(row: dict[str, float]) -> str:
    """One line per measure: value, and its standard error from the matching `_se` entry when there is one."""
    lines = ["<table><tr><th>measure</th><th>value</th><th>standard error</th></tr>"]
    for name, value in row.items():
        if name.endswith("_se"):
            continue
        se = row.get(f"{name}_se")
        se_text = f"{se:.3g}" if se is not None else ""
        lines.append(f"<tr><td>{html.escape(name)}</td><td class='num'>{value:.5g}</td><td class='num'>{se_text}</td></tr>")
    return "".join(lines) + "</table>"
