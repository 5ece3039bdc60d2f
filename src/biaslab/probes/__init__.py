"""Measurements of any `nn.Module` with its loss and data: named scalars, `dict[str, float]`.

`core` holds the cheap probes a training run calls at every evaluation (error,
loss, norms, distance from init, path norm, margins). The other modules hold the
probes of the report card: curvature of the loss, sharpness, weight spectra,
calibration and generalization bounds; `fourier` the Fourier progress measure
of a token embedding (grokking). No probe imports `train` or `models`.
"""

from biaslab.probes.core import (
    LossFn,
    Metrics,
    distance_from,
    error_and_loss,
    linear_chain,
    margins,
    measuring,
    norms,
    normalized_margin,
    path_norm,
    one_forward_pass,
    predict,
    snapshot,
    weight_matrices,
)
from biaslab.probes.spectra import PowerLawFit, fit_power_law, layer_spectrum, singular_values, singular_values_by_layer, weight_spectra
from biaslab.probes.calibration import ReliabilityTable, calibration_from_probs, calibration_metrics, reliability_table
from biaslab.probes.bounds import (
    Bound,
    bound_metrics,
    compression_bound,
    kl_inverse_upper,
    pac_bayes_bound,
    path_norm_bound,
    spectral_bound,
    spectral_complexity,
    spectral_margin_distribution,
    spectral_normalized_margins,
)
from biaslab.probes.fourier import fourier_concentration, frequency_energy

__all__ = [
    "LossFn",
    "Metrics",
    "distance_from",
    "error_and_loss",
    "fourier_concentration",
    "frequency_energy",
    "linear_chain",
    "margins",
    "measuring",
    "norms",
    "normalized_margin",
    "path_norm",
    "one_forward_pass",
    "predict",
    "snapshot",
    "weight_matrices",
    # spectra
    "PowerLawFit",
    "fit_power_law",
    "layer_spectrum",
    "singular_values",
    "singular_values_by_layer",
    "weight_spectra",
    # calibration
    "ReliabilityTable",
    "calibration_from_probs",
    "calibration_metrics",
    "reliability_table",
    # bounds
    "Bound",
    "bound_metrics",
    "compression_bound",
    "kl_inverse_upper",
    "pac_bayes_bound",
    "path_norm_bound",
    "spectral_bound",
    "spectral_complexity",
    "spectral_margin_distribution",
    "spectral_normalized_margins",
]
