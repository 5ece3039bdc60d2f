"""The `estimator` section of a run: a model class fitted through the scikit-learn protocol (`biaslab.estimators`).

Contract: `EstimatorSpec` holds the kind and its complexity knobs; a knob of one kind is refused away from its
default under another, by the section's rule table. `ESTIMATOR_DTYPES` is the precision each kind computes in,
which a run's `dtype` must state (`RunSpec` fills it in when the spec does not say).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from biaslab.spec.rules import _Frozen, read_only_when_validator

EstimatorKind = Literal["min_norm", "random_features", "random_forest", "boosting", "kernel_ridge", "neural_net", "polynomial", "gp"]


# the precision each estimator computes in, which its runs' `dtype` must state (neural_net: the spec's dtype is used)
ESTIMATOR_DTYPES = {
    "min_norm": "float64", "random_features": "float64", "kernel_ridge": "float64", "polynomial": "float64", "gp": "float64",
    "random_forest": "float32", "boosting": "float32",  # scikit-learn's trees cast their inputs to float32
}  # fmt: skip


class EstimatorSpec(_Frozen):
    """A model class fitted through the scikit-learn protocol (`biaslab.estimators`) and its complexity knobs.

    Only the fields of the chosen kind are read: min_norm (n_features, ridge, ridge_rule), random_features
    (n_features, bandwidth, ridge), random_forest (max_leaf_nodes, n_trees), boosting (max_leaf_nodes,
    n_trees = iterations), kernel_ridge (bandwidth, ridge), neural_net (the run's model and train sections),
    polynomial (degree, ridge, order_penalty: a Legendre expansion fitted by weighted ridge), gp (exact Gaussian-process
    regression on one-vs-rest targets with hyperparameters by maximum marginal likelihood: bandwidth, signal and noise
    are where that fit starts; learn_noise, restarts).
    """

    kind: EstimatorKind = "min_norm"
    n_features: int = Field(100, gt=0)  # min_norm: coordinates used, p; random_features: random features, N
    ridge: float = Field(0.0, ge=0.0)  # lambda in ||y - Z w||^2 + lambda ||w||^2 (sum over examples); 0: min-norm
    ridge_rule: Literal["fixed", "optimal"] = "fixed"  # optimal: the risk-minimizing ridge of gaussian_features (min_norm)
    bandwidth: float = Field(1.0, gt=0.0)  # Gaussian-kernel width sigma: k(x, x') = exp(-||x - x'||^2 / (2 sigma^2)); gp: its start
    max_leaf_nodes: int | None = Field(None, ge=2)  # leaves per tree; None: grown until pure
    n_trees: int = Field(1, ge=1)  # random_forest trees; boosting iterations
    axis: Literal["model_size", "train_size"] = "model_size"  # the curve the run belongs to: model-wise or sample-wise
    degree: int = Field(3, ge=0, le=200)  # polynomial: highest Legendre order K (K + 1 coefficients)
    order_penalty: Literal["none", "quadratic", "exponential"] = "none"  # polynomial: ridge weight of order k is
    # ridge * 1 (none), ridge * (k + 1)^2 (quadratic) or ridge * e^k (exponential); ridge 0: least squares / min-norm
    # gp: k(x, x') = signal exp(-||x - x'||^2 / (2 bandwidth^2)) + noise [x = x'], hyperparameters that maximize the log
    # marginal likelihood, each fit starting from (bandwidth, signal, noise)
    signal: float = Field(1.0, gt=0.0)  # gp: start of the signal variance s^2 (units of the targets squared)
    noise: float = Field(1e-3, gt=0.0)  # gp: start of the likelihood's noise variance; its value when learn_noise is false
    learn_noise: bool = True  # gp: fit the noise variance with the kernel's; false: hold it at `noise`
    restarts: int = Field(0, ge=0, le=50)  # gp: further fits from the start times 10^z per hyperparameter, z ~ N(0, 1)
    # drawn from the run's seed; the fit of highest marginal likelihood is kept

    READ_ONLY_WHEN = (
        ("n_features", "kind", ("min_norm", "random_features")), ("ridge_rule", "kind", ("min_norm",)),
        ("ridge", "kind", ("min_norm", "random_features", "kernel_ridge", "polynomial")),
        ("bandwidth", "kind", ("random_features", "kernel_ridge", "gp")), ("degree", "kind", ("polynomial",)),
        ("max_leaf_nodes", "kind", ("random_forest", "boosting")), ("n_trees", "kind", ("random_forest", "boosting")),
        *((name, "kind", ("gp",)) for name in ("signal", "noise", "learn_noise", "restarts")),
    )  # fmt: skip

    _settings_match_the_kind = read_only_when_validator("estimator")

    @model_validator(mode="after")
    def _order_penalty_needs_polynomial(self) -> "EstimatorSpec":
        if self.order_penalty != "none" and self.kind != "polynomial":
            raise ValueError(f"estimator.order_penalty: only estimator.kind 'polynomial' reads it, got kind {self.kind!r}")
        if self.order_penalty != "none" and self.ridge == 0.0:
            raise ValueError("estimator.order_penalty: weights the ridge per order, so it needs estimator.ridge > 0 (with ridge 0 it changes nothing)")
        return self
