"""The one runner of the estimator experiments: a classifier from `biaslab.estimators` fitted on a dataset.

double-descent and kernels-vs-convolutions fit every model class (min-norm and
random-feature regressions on one-hot targets, kernel ridge, forests, boosting,
networks) through `run_classifier`: load `spec.data`, fit the estimator that
`spec.estimator` names (`estimators.fit_estimator`, which trees-vs-nets and
soft-inductive-bias use on their own synthetic problems), and measure squared
loss against one-hot targets and zero-one error on train and test. The run also
says where it sits on its model class's complexity axis and where that axis's
interpolation threshold is, so double-descent curves can be drawn across classes.

This module registers no experiment (it is listed in `HELPER_MODULES`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from biaslab import data as datasets
from biaslab.estimators import class_scores, fit_estimator, risk_and_error
from biaslab.experiments.base import Result
from biaslab.runtime import blas_threads_as_torch, resolve_device
from biaslab.spec import EstimatorSpec, RunSpec

DIGITS_BANDWIDTH = 3.0  # kernel bandwidth at the median pairwise distance of digits pixels / 16
MNIST1D_BANDWIDTH = 8.4  # kernel bandwidth at the median pairwise distance of raw MNIST-1D inputs


def run_classifier(spec: RunSpec) -> Result:
    """Fit one estimator on the dataset; squared loss (one-hot) and zero-one error on train and test.

    A network measures the test set over training (its History is the record's curves); the other classes give
    one row. Final metrics: the risks, `n_train`, `complexity` and `threshold`, and `coef_norm` for linear fits.
    """
    with blas_threads_as_torch():
        neural = spec.estimator.kind == "neural_net"
        data = datasets.load(spec.data, resolve_device(spec.device), torch.float32 if neural else torch.float64)
        x_train, y_train, x_test, y_test = numpy_arrays(data, flat=not neural)
        model = fit_estimator(spec, x_train, y_train, validation=(x_test, y_test))
        n = len(y_train)
        extra = {"complexity": float(spec.model.width), "threshold": math.nan} if neural else complexity(spec.estimator, n)
        row = {}
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            row[f"{split}_risk"], row[f"{split}_error"] = risk_and_error(model.classes_, class_scores(model, x), y)
    extra |= {"train_risk": row["train_risk"], "test_risk": row["test_risk"], "n_train": float(n)}
    regressor = getattr(model, "regressor_", None)
    if regressor is not None and hasattr(regressor, "coef_norm_"):
        extra["coef_norm"] = float(regressor.coef_norm_)
    return Result.of(model.fit_, extra) if neural else Result.estimate([row], extra)


def numpy_arrays(data: datasets.Dataset, flat: bool) -> tuple[np.ndarray, ...]:
    """x_train, y_train, x_test, y_test as numpy; inputs flattened to (n, features) for the non-network classes."""
    inputs = (lambda t: t.flatten(1)) if flat else (lambda t: t)
    x_train, x_test = (inputs(t).cpu().numpy() for t in (data.x_train, data.x_test))
    return x_train, data.y_train.cpu().numpy(), x_test, data.y_test.cpu().numpy()


def complexity(est: EstimatorSpec, n: int) -> dict[str, float]:
    """Where a run of a non-network class sits on its class's axis, and where that axis's interpolation threshold is."""
    if est.kind == "random_forest":  # Belkin et al.: N_leaf x N_tree; one tree of n leaves interpolates
        leaves = est.max_leaf_nodes or n
        return {"complexity": float(leaves * est.n_trees), "threshold": float(n)}
    if est.kind in ("random_features", "min_norm"):
        return {"complexity": float(est.n_features), "threshold": float(n)}
    if est.kind == "boosting":  # leaves per tree x iterations, as for forests; no sharp threshold
        return {"complexity": float((est.max_leaf_nodes or 31) * est.n_trees), "threshold": math.nan}
    return {"complexity": float(n), "threshold": float(n)}  # kernel ridge: one coefficient per example
