"""What each number on a card means: a plain name, one line of meaning, its unit, which way is simpler or flatter.

The probes return named scalars (`hessian_top`, `compression.bits_choice`,
`alpha.net.3.weight`); a person needs to know what they are. `describe(key)`
finds the description of any key a card can hold: exact keys first, then a
per-layer measure (`alpha.<layer>`) or a bound's ingredient (`pac_bayes.kl`).
`format_value` turns a value into text a person reads: flags as yes/no, counts
as integers, and `inf`/`nan` with what they mean there. `headline` picks the
handful of numbers a reader wants first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Info:
    """How to read one measure."""

    label: str  # a plain name
    meaning: str  # one line: what it measures
    unit: str = ""  # '' for a pure number
    better: str = ""  # which direction means simpler / flatter / better calibrated, when one does
    kind: str = "number"  # number | flag | count | ingredient


def _flag(label: str, meaning: str) -> Info:
    return Info(label, meaning, kind="flag")


def _count(label: str, meaning: str) -> Info:
    return Info(label, meaning, kind="count")


LOWER_FLAT = "lower = flatter"
LOWER = "lower = better"
HIGHER_MARGIN = "higher = larger margin (more confident, more robust)"

EXACT: dict[str, Info] = {
    # fit
    "train_error": Info("training error", "fraction of training examples misclassified (argmax of the outputs)", "fraction", LOWER),
    "test_error": Info("test error", "fraction of test examples misclassified", "fraction", LOWER),
    "train_loss": Info("training loss", "mean loss on the training set", "nats", LOWER),
    "test_loss": Info("test loss", "mean loss on the test set", "nats", LOWER),
    "gap_error": Info("generalization gap (error)", "test error minus training error: what the bounds below try to bound", "fraction", "lower = generalizes better"),
    "gap_loss": Info("generalization gap (loss)", "test loss minus training loss", "nats", "lower = generalizes better"),
    "n_train": _count("training examples", "examples the card scores as the training set"),
    "n_test": _count("test examples", "examples the card scores as the test set"),
    "n_params": _count("parameters", "trainable and frozen parameters of the model"),
    # norms
    "norm_frobenius": Info("Frobenius norm", "Euclidean norm of all parameters together", "", "lower = smaller weights (changes under rescaling)"),
    "norm_spectral_product": Info("spectral-norm product", "product over weight matrices of their largest singular value (a Lipschitz bound)", "", "lower = smoother function"),
    "path_norm": Info("path norm", "l2 path norm of a Linear chain: sqrt of the sum over input-output paths of the squared weight products", "", "lower = simpler (invariant to ReLU rescaling)"),
    "dist_init": Info("distance from init", "Frobenius distance of the weights from their initialization", "", "lower = closer to init (lazier)"),
    "dist_init_relative": Info("relative distance from init", "distance from init divided by the norm of the init", "fraction", "lower = closer to init"),
    # margins
    "margin_min": Info("smallest normalized margin", "smallest training margin divided by the spectral-norm product", "", HIGHER_MARGIN),
    "margin_q10": Info("normalized margin, 10th percentile", "10th percentile of training margins / spectral-norm product", "", HIGHER_MARGIN),
    "margin_raw_q10": Info("margin, 10th percentile", "10th percentile of f_y(x) - max_{j != y} f_j(x) on the training set", "logits", HIGHER_MARGIN),
    "margin_raw_median": Info("margin, median", "median of f_y(x) - max_{j != y} f_j(x) on the training set (negative: misclassified)", "logits", HIGHER_MARGIN),
    "margin_raw_q90": Info("margin, 90th percentile", "90th percentile of the raw training margins", "logits", HIGHER_MARGIN),
    "margin_spectral_mean": Info("Bartlett-normalized margin, mean", "mean training margin divided by the spectral complexity and the data norm (Bartlett et al. 2017)", "", HIGHER_MARGIN),
    "margin_spectral_negative": Info("misclassified share", "fraction of training examples with margin <= 0", "fraction", LOWER),
    # curvature
    "hessian_top": Info("top Hessian eigenvalue", "largest eigenvalue of the training-loss Hessian (Lanczos); changes under ReLU rescaling", "nats / weight²", LOWER_FLAT),
    "hessian_top_residual": Info("its residual bound", "|true eigenvalue - reported| is at most this (Lanczos residual norm)", "nats / weight²"),
    "hessian_eig2": Info("2nd Hessian eigenvalue", "second largest eigenvalue of the training-loss Hessian", "nats / weight²", LOWER_FLAT),
    "hessian_eig3": Info("3rd Hessian eigenvalue", "third largest eigenvalue of the training-loss Hessian", "nats / weight²", LOWER_FLAT),
    "hessian_iterations": _count("Lanczos products", "Hessian-vector products Lanczos used"),
    "hessian_converged": _flag("Lanczos converged", "whether every eigenvalue met the tolerance"),
    "hessian_trace": Info("Hessian trace", "sum of all Hessian eigenvalues (Hutch++ estimate; ± its standard error)", "nats / weight²", LOWER_FLAT),
    "hessian_trace_samples": _count("trace products", "Hessian-vector products the trace estimate used"),
    "n_eff": Info("effective dimensionality N_eff", "sum of lambda / (lambda + z) over the training-loss Hessian's eigenvalues (Maddox et al. 2020): about how many weight directions the data pin down more tightly than a prior of precision z (z below); top-k eigenvalues by Lanczos plus Lanczos quadrature for the rest, an estimate ± its s.e.", "directions", "lower = simpler (fewer determined directions)"),
    "n_eff_top": Info("N_eff of the top-k eigenvalues", "the same sum over the k largest eigenvalues only: the truncation Maddox et al. compute, a lower bound of N_eff", "directions"),
    "n_eff_z": Info("N_eff's z", "the prior precision an eigenvalue is compared with in lambda / (lambda + z)", "nats / weight²"),
    "n_eff_k": _count("N_eff's top eigenvalues", "largest eigenvalues found by Lanczos (the rest estimated by quadrature)"),
    "n_eff_converged": _flag("N_eff's Lanczos converged", "whether every top eigenvalue met the tolerance"),
    "n_eff_samples": _count("N_eff probes", "random probe vectors of the quadrature for the eigenvalues past the top k"),
    "n_eff_products": _count("N_eff products", "Hessian-vector products the N_eff estimate used"),
    "examples": _count("examples used", "training examples (a random subset) this section measured on"),
    # sharpness
    "sharpness_keskar": Info("ε-sharpness (Keskar)", "largest loss rise within a box of half-width ε(|w| + 1) around the weights", "nats", LOWER_FLAT),
    "sharpness_adaptive": Info("adaptive sharpness", "largest loss rise within an ρ-ball in |w|-scaled coordinates (ASAM): invariant to ReLU rescaling", "nats", LOWER_FLAT),
    "sharpness_average": Info("average sharpness", "mean loss rise under Gaussian weight noise of std σ (± s.e.)", "nats", LOWER_FLAT),
    "sharpness_average_relative": Info("relative average sharpness", "mean loss rise under noise of std σ|w| (± s.e.): rescaling-invariant", "nats", LOWER_FLAT),
    "pacbayes_flatness": Info("PAC-Bayes flatness", "1/σ² for the largest noise σ that raises the training error by <= 0.1 (Jiang et al. 2020)", "1 / weight²", LOWER_FLAT),
    "pacbayes_mag_flatness": Info("magnitude-aware PAC-Bayes flatness", "as PAC-Bayes flatness with noise σ|w|: rescaling-invariant; Jiang et al.'s best predictor", "", LOWER_FLAT),
    # spectra (summaries)
    "stable_rank_mean": Info("stable rank, mean over layers", "||W||_F² / ||W||_2²: how many directions carry the weight", "", "lower = lower-rank weights"),
    "effective_rank_mean": Info("effective rank, mean over layers", "exp of the entropy of the normalized singular values", "", "lower = lower-rank weights"),
    "alpha_mean": Info("power-law α, mean over layers", "tail exponent of each layer's eigenvalue density (WeightWatcher's α)", "", "2-6 typical of trained layers; lower = heavier tail"),
    "alpha_weighted_mean": Info("weighted α (α̂)", "mean of α · log10(largest eigenvalue of WᵀW / N) (Martin & Mahoney)", "", "lower = better, by their study"),
    # calibration
    "test_ece": Info("test ECE", "expected calibration error on the test set: mean |confidence - accuracy| over confidence bins", "fraction", "lower = better calibrated"),
    "test_mce": Info("test MCE", "largest |confidence - accuracy| over bins on the test set", "fraction", "lower = better calibrated"),
    "test_nll": Info("test NLL", "negative log-likelihood of the true label on the test set", "nats", LOWER),
    "test_brier": Info("test Brier score", "mean squared error of the predicted probabilities on the test set", "", LOWER),
    "test_accuracy": Info("test accuracy", "fraction of test examples classified correctly", "fraction", "higher = better"),
    "train_ece": Info("training ECE", "expected calibration error on the training set", "fraction", "lower = better calibrated"),
    "train_mce": Info("training MCE", "largest bin calibration gap on the training set", "fraction", "lower = better calibrated"),
    "train_nll": Info("training NLL", "negative log-likelihood on the training set", "nats", LOWER),
    "train_brier": Info("training Brier score", "Brier score on the training set", "", LOWER),
    "train_accuracy": Info("training accuracy", "fraction of training examples classified correctly", "fraction", "higher = better"),
}

TIGHTER = "lower = tighter; >= 1 says nothing"
BOUND_INFO: dict[str, Info] = {  # the bounds section's own keys (its `path_norm` is a bound, not the norm)
    "pac_bayes": Info("PAC-Bayes bound", "upper bound on the test error of a Gaussian posterior around the weights (Dziugaite & Roy 2017), 96.5% confidence", "", TIGHTER),
    "compression": Info("compression bound", "upper bound on the test error of the quantized network from its code length (Occam), 95% confidence", "", TIGHTER),
    "spectral": Info("spectral bound", "Bartlett et al. 2017's margin bound from the spectral complexity (a lower estimate of the rigorous one)", "", TIGHTER),
    "path_norm": Info("path-norm measure", "path norm x input radius / (margin x sqrt m) with constants set to 1: ranks models, guarantees nothing", "", "lower = simpler"),
}

PER_LAYER: dict[str, Info] = {  # keys `<measure>.<parameter name>`
    "norm_frobenius": Info("Frobenius norm", "norm of this parameter"),
    "spectral_norm": Info("spectral norm", "largest singular value"),
    "stable_rank": Info("stable rank", "||W||_F² / ||W||_2²"),
    "effective_rank": Info("effective rank", "exp(entropy of normalized singular values)"),
    "alpha": Info("α", "power-law exponent of the eigenvalue tail"),
    "alpha_xmin": Info("α's xmin", "eigenvalue where the fitted tail starts"),
    "alpha_ks": Info("α's KS distance", "Kolmogorov-Smirnov distance of the fit (lower = better fit)"),
    "alpha_n_tail": Info("tail size", "eigenvalues in the fitted tail"),
    "alpha_stderr": Info("α's s.e.", "standard error of α"),
    "alpha_weighted": Info("α̂", "α · log10(largest eigenvalue)"),
}

BOUNDS = ("pac_bayes", "compression", "spectral", "path_norm")
BOUND_FLAGS = {
    "vacuous": "the bound is >= 1, so it says nothing about this classifier",
    "above_chance": "the bound is no better than guessing (>= 1 - 1/classes)",
}
FLAG_SUFFIXES = ("_rescaling_invariant", "_converged", "_vacuous", "_above_chance")


def describe(key: str, section: str = "") -> Info:
    """The description of a card key (in its section); a key without one gets its own name, so nothing is hidden."""
    if section == "bounds" and key in BOUND_INFO:
        return BOUND_INFO[key]
    if key in EXACT:
        return EXACT[key]
    for bound in BOUNDS:
        for flag, meaning in BOUND_FLAGS.items():
            if key == f"{bound}_{flag}":
                return _flag(f"{bound.replace('_', ' ')}: {flag.replace('_', ' ')}", meaning)
    if key.endswith("_rescaling_invariant"):
        return _flag("rescaling-invariant", "whether the measure is unchanged by the ReLU rescaling symmetry (Dinh et al. 2017)")
    if key.startswith("margin_spectral_q"):
        return Info(f"Bartlett-normalized margin, {key[len('margin_spectral_q'):]}th percentile", "training margin / (spectral complexity x data norm / m)", "", HIGHER_MARGIN)
    measure, _, layer = key.partition(".")
    if layer and measure in PER_LAYER:
        info = PER_LAYER[measure]
        return Info(f"{info.label} of {layer}", info.meaning, info.unit, info.better)
    if layer and measure in BOUNDS:
        return Info(f"{measure.replace('_', ' ')}: {layer.replace('_', ' ')}", f"an ingredient of the {measure.replace('_', ' ')} bound", kind="ingredient")
    if key.endswith("_samples"):
        return _count(key.replace("_", " "), "samples the estimate used")
    return Info(key.replace("_", " "), "")


def is_per_layer(key: str) -> bool:
    measure, _, layer = key.partition(".")
    return bool(layer) and measure in PER_LAYER


def is_ingredient(key: str) -> bool:
    measure, _, layer = key.partition(".")
    return bool(layer) and measure in BOUNDS


def format_value(key: str, value: float, section: str = "") -> str:
    """A value as a person reads it: yes/no for flags, integers for counts, inf/nan explained."""
    info = describe(key, section)
    if isinstance(value, str):  # inf/nan stored as text in JSON
        value = float(value)
    if info.kind == "flag":
        return "n/a (relative measure)" if math.isnan(value) else ("yes" if value >= 0.5 else "no")
    if math.isnan(value):
        return "not defined here (nan: the measure does not apply to this model or data)"
    if math.isinf(value):
        if section == "bounds":
            return "∞ (vacuous: the bound exceeds 1)"
        return "∞ (unbounded at this setting)" if value > 0 else "-∞"
    if info.kind == "count":
        return f"{value:,.0f}"
    if section == "bounds" and key in BOUNDS and value >= 1.0:
        return f"{value:.4g} (vacuous: exceeds 1)"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Headline:
    """One of the numbers a reader wants first."""

    label: str
    value: str
    meaning: str
    better: str


def _get(sections: dict, section: str, key: str) -> float | None:
    value = sections.get(section, {}).get(key)
    return None if value is None else float(value)


def _with_se(sections: dict, section: str, key: str) -> str:
    value, se = _get(sections, section, key), _get(sections, section, f"{key}_se")
    text = format_value(key, value, section)
    return f"{text} ± {se:.2g}" if se is not None and math.isfinite(se) and se > 0 else text


def best_bound(sections: dict) -> tuple[str, str]:
    """(kind, text) of the tightest bound with an explicit constant; says so when every one is vacuous."""
    row = sections.get("bounds", {})
    candidates = [(float(row[name]), name) for name in ("pac_bayes", "compression", "spectral") if name in row and not math.isnan(float(row[name]))]
    if not candidates:
        return "", "no bound computed"
    value, name = min(candidates)
    label = name.replace("_", "-")
    if value >= 1.0:
        return label, f"all vacuous (best: {label} {format_value(name, value, 'bounds')})"
    above = float(row.get(f"{name}_above_chance", math.nan))
    verdict = "no better than guessing" if above >= 0.5 else "non-vacuous"
    return label, f"{value:.3f} ({label}, {verdict})"


def headline(sections: dict) -> list[Headline]:
    """The 6-8 numbers that matter, in reading order; a section not measured is left out."""
    rows: list[Headline] = []
    if "fit" in sections:
        fit = sections["fit"]
        text = f"{float(fit['train_error']):.4f} / {float(fit['test_error']):.4f} / {float(fit['gap_error']):+.4f}"
        rows.append(Headline("train / test error / gap", text, "how well it fits and how much worse it does on unseen data", "gap: lower = generalizes better"))
    if "curvature" in sections:
        rows.append(_line(sections, "curvature", "hessian_top"))
        rows.append(_line(sections, "curvature", "hessian_trace"))
        if "n_eff" in sections["curvature"]:
            line = _line(sections, "curvature", "n_eff")
            z, k = _get(sections, "curvature", "n_eff_z"), _get(sections, "curvature", "n_eff_k")
            said = f" at z = {z:g}, top {k:.0f} eigenvalues exact, the rest estimated" if z is not None and k is not None else ""
            rows.append(replace(line, value=line.value + said))
    if "sharpness" in sections:
        rows.append(_line(sections, "sharpness", "sharpness_adaptive"))
    if "margins" in sections and "margin_raw_median" in sections["margins"]:
        rows.append(_line(sections, "margins", "margin_raw_median"))
    if "bounds" in sections:
        _, text = best_bound(sections)
        rows.append(Headline("best generalization bound", text, "the tightest guaranteed upper bound on the test error", "lower = tighter; >= 1 says nothing"))
    if "calibration" in sections:
        rows.append(_line(sections, "calibration", "test_ece"))
    return rows


def _line(sections: dict, section: str, key: str) -> Headline:
    info = describe(key, section)
    value = _with_se(sections, section, key)
    unit = f" {info.unit}" if info.unit and info.unit != "fraction" else ""
    return Headline(info.label, value + unit, info.meaning, info.better)
