"""Model classes on one protocol: scikit-learn estimators for linear models, random features, trees and nets.

Double descent and benign overfitting are not special to networks (Belkin et al.
2019; Wilson 2025), so biaslab fits every model class the same way: a
scikit-learn estimator (parameters only in `__init__`, `fit(X, y)` returns
`self`, fitted state ends in `_`, `get_params`/`set_params` from
`BaseEstimator`). Forests and boosting are scikit-learn's own; this module adds

- `MinNormRegressor(ridge)`: least squares, the minimum-norm solution X^+ y at
  ridge 0 (what gradient descent from zero reaches), ridge regression otherwise.
- `RandomFourierRegressor(n_features, bandwidth, ridge, random_state)`: Rahimi &
  Recht's random Fourier features of the Gaussian kernel, fitted by
  `MinNormRegressor` (Belkin et al. 2019's RFF model).
- `SquaredLossClassifier(regressor)`: a classifier that regresses one-hot
  targets with squared loss and predicts the argmax (Belkin et al.'s multi-class
  fits); its `decision_function` is the regression output.
- `NeuralNetClassifier(model, train, random_state)`: biaslab's MLP or CNN
  (`models.build`) trained by `train.fit`; `history_` keeps the training curves.
- `GPRegressionClassifier(length_scale, signal, noise, learn_noise, restarts, random_state)`: exact
  Gaussian-process regression on centred one-hot targets (one-vs-rest) with an RBF kernel whose hyperparameters
  maximize the log marginal likelihood (Wilson & Izmailov 2020's Occam's razor); predicts the largest posterior mean.
- `PolynomialRegressor(degree, ridge, order_penalty)`: 1-D regression on the
  Legendre basis P_0..P_K with a ridge penalty whose weight grows with the order
  (Wilson 2025's soft inductive bias: a flexible space, a preference for low order).
- `make_estimator(spec, ...)`: the estimator an `EstimatorSpec` names; `fit_estimator(run_spec, ...)`: the one a
  run's spec names, fitted (every estimator experiment fits through it).

Determinism: every random draw comes from `random_state` (an int gives the same
fit every time); nothing seeds a global generator.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from biaslab import models
from biaslab.data import Dataset
from biaslab.runtime import generator, resolve_device, resolve_dtype
from biaslab.spec import EstimatorSpec, ModelSpec, RunSpec, TrainSpec
from biaslab.train import Fit, fit

GP_BOUNDS = (1e-5, 1e5)  # the range of every GP hyperparameter in its marginal-likelihood fit (scikit-learn's default)
KERNEL_RIDGE_FLOOR = 1e-10  # KernelRidge solves (K + alpha I); alpha 0 on a singular K is a pseudo-inverse we do not get


def least_squares(X: np.ndarray, Y: np.ndarray, ridge: float) -> np.ndarray:
    """argmin ||Y - X W||^2 + ridge ||W||^2; at ridge 0 the minimum-norm minimizer X^+ Y.  X (n, p), Y (n, k) -> W (p, k)."""
    if ridge == 0.0:
        return np.linalg.lstsq(X, Y, rcond=None)[0]  # SVD: the minimum-norm least-squares solution
    n, p = X.shape
    if p <= n:  # primal: (X^T X + ridge I)^-1 X^T Y
        return np.linalg.solve(X.T @ X + ridge * np.eye(p), X.T @ Y)
    return X.T @ np.linalg.solve(X @ X.T + ridge * np.eye(n), Y)  # dual: X^T (X X^T + ridge I)^-1 Y


class _MultiOutputRegressor(RegressorMixin, BaseEstimator):
    """Regressors here fit several targets at once (one-hot classes): tell scikit-learn so."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MinNormRegressor(_MultiOutputRegressor):
    """Linear least squares without intercept: X^+ y at ridge 0 (the interpolant of least norm when p >= n)."""

    def __init__(self, ridge: float = 0.0) -> None:
        self.ridge = ridge

    def fit(self, X, y) -> "MinNormRegressor":
        if self.ridge < 0:
            raise ValueError(f"ridge: must be >= 0, got {self.ridge}")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        Y = y.reshape(len(y), -1)  # (n, k)
        W = least_squares(X, Y, float(self.ridge))  # (p, k)
        self.coef_ = W[:, 0] if y.ndim == 1 else W.T  # sklearn shapes: (p,) or (k, p)
        self.coef_norm_ = float(np.linalg.norm(W))
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_.T


class RandomFourierRegressor(_MultiOutputRegressor):
    """Random Fourier features of the Gaussian kernel (Rahimi & Recht 2007) fitted by least squares.

    phi(x) = sqrt(2 / N) cos(W^T x + b), W ~ N(0, I / bandwidth^2), b ~ U[0, 2 pi), so
    phi(x) . phi(x') -> exp(-||x - x'||^2 / (2 bandwidth^2)) as N grows. The weights
    on the features are the minimum-norm least-squares fit at ridge 0.
    """

    def __init__(self, n_features: int = 100, bandwidth: float = 1.0, ridge: float = 0.0, random_state=None) -> None:
        self.n_features = n_features
        self.bandwidth = bandwidth
        self.ridge = ridge
        self.random_state = random_state

    def fit(self, X, y) -> "RandomFourierRegressor":
        if self.n_features < 1 or self.bandwidth <= 0:
            raise ValueError(f"n_features must be >= 1 and bandwidth > 0, got {self.n_features}, {self.bandwidth}")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        rng = check_random_state(self.random_state)
        self.weights_ = rng.standard_normal((X.shape[1], self.n_features)) / self.bandwidth  # (d, N)
        self.offsets_ = rng.uniform(0.0, 2.0 * math.pi, self.n_features)  # (N,)
        self.linear_ = MinNormRegressor(self.ridge).fit(self.features(X), y)
        self.coef_norm_ = self.linear_.coef_norm_
        return self

    def features(self, X) -> np.ndarray:
        """phi(X): (n, d) -> (n, N)."""
        return math.sqrt(2.0 / self.n_features) * np.cos(np.asarray(X, dtype=np.float64) @ self.weights_ + self.offsets_)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.linear_.predict(self.features(X))


def order_weights(degree: int, order_penalty: str) -> np.ndarray:
    """Relative ridge weight of each Legendre order k = 0..degree: 1, (k + 1)^2 or e^k. -> (degree + 1,)"""
    k = np.arange(degree + 1, dtype=np.float64)
    if order_penalty == "none":
        return np.ones_like(k)
    if order_penalty == "quadratic":
        return (k + 1.0) ** 2
    if order_penalty == "exponential":
        return np.exp(k)
    raise ValueError(f"order_penalty: allowed 'none', 'quadratic', 'exponential'; got {order_penalty!r}")


class PolynomialRegressor(RegressorMixin, BaseEstimator):
    """y ~ sum_k c_k P_k(x) on x in [-1, 1] (Legendre polynomials, well conditioned there), fitted by

    argmin_c ||y - Phi c||^2 + ridge * sum_k w_k c_k^2,   w_k from `order_weights`,

    i.e. the MAP estimate under c_k ~ N(0, noise^2 / (ridge w_k)): higher orders are shrunk more. At ridge 0 it is
    least squares, the minimum-norm interpolant when degree + 1 >= n.
    """

    def __init__(self, degree: int = 3, ridge: float = 0.0, order_penalty: str = "none") -> None:
        self.degree = degree
        self.ridge = ridge
        self.order_penalty = order_penalty

    def basis(self, X) -> np.ndarray:
        """Phi: (n, 1) or (n,) inputs -> (n, degree + 1) values of P_0..P_degree."""
        x = np.asarray(X, dtype=np.float64).reshape(len(X), -1)[:, 0]
        return np.polynomial.legendre.legvander(x, self.degree)

    def fit(self, X, y) -> "PolynomialRegressor":
        if self.ridge < 0 or self.degree < 0:
            raise ValueError(f"ridge and degree must be >= 0, got {self.ridge}, {self.degree}")
        X, y = validate_data(self, np.asarray(X, dtype=np.float64).reshape(len(X), -1), y, y_numeric=True, dtype=np.float64)
        Phi = self.basis(X)  # (n, K + 1)
        if self.ridge == 0.0:
            self.coef_ = np.linalg.lstsq(Phi, y, rcond=None)[0]
        else:  # scaled coordinates b = sqrt(w) c turn the weighted ridge into plain ridge on Phi / sqrt(w)
            scale = np.sqrt(order_weights(self.degree, self.order_penalty))  # (K + 1,)
            self.coef_ = least_squares(Phi / scale, y[:, None], float(self.ridge))[:, 0] / scale
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, np.asarray(X, dtype=np.float64).reshape(len(X), -1), reset=False, dtype=np.float64)
        return self.basis(X) @ self.coef_


class SquaredLossClassifier(ClassifierMixin, BaseEstimator):
    """Classification by regressing one-hot targets (squared loss) and predicting the largest output."""

    def __init__(self, regressor=None) -> None:
        self.regressor = regressor

    def fit(self, X, y) -> "SquaredLossClassifier":
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        targets = (y[:, None] == self.classes_[None, :]).astype(np.float64)  # (n, classes) one-hot, also for 2 classes
        self.regressor_ = clone(self.regressor if self.regressor is not None else MinNormRegressor()).fit(X, targets)
        return self

    def outputs(self, X) -> np.ndarray:
        """The regression outputs, one column per class: (n, classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.regressor_.predict(X).reshape(len(X), -1)

    def decision_function(self, X) -> np.ndarray:
        """scikit-learn's shape: (n, classes), or (n,) for two classes (positive favours classes_[1])."""
        return _decision(self.outputs(X))

    def predict(self, X) -> np.ndarray:
        scores = self.outputs(X)  # raises NotFittedError before classes_ is read
        return self.classes_[scores.argmax(axis=1)]


class GPRegressionClassifier(SquaredLossClassifier):
    """Exact Gaussian-process regression on one-vs-rest targets; predicts the class of the largest posterior mean.

    Each class k has a latent f_k ~ GP(0, signal * exp(-||x - x'||^2 / (2 length_scale^2))) and targets
    y_k = [y = k] - 1/K + eps, eps ~ N(0, noise): the one-hot code centred by its mean 1/K (so the zero prior mean
    fits it), with the hyperparameters shared by the K outputs. (length_scale, signal, noise), or (length_scale,
    signal) with learn_noise False, maximize the log marginal likelihood summed over the K outputs, each output's

        log p(y_k | X) = -1/2 y_k^T (K_theta + noise I)^-1 y_k - 1/2 log |K_theta + noise I| - n/2 log 2 pi

    (scikit-learn's GaussianProcessRegressor: L-BFGS-B on the log-hyperparameters within GP_BOUNDS, no jitter added).
    The first fit starts at the given values; each of `restarts` more starts at them times 10^z, z ~ N(0, 1) drawn per
    hyperparameter from `random_state`; the fit of highest marginal likelihood is kept (the noise stays at `noise`
    in every start when it is not learned).

    Fitted: `regressor_` (the kept GaussianProcessRegressor), `log_marginal_likelihood_` (nats, summed over the K
    outputs), `length_scale_`, `signal_`, `noise_`, `start_lml_` (each start's optimum, in order) and
    `optimizer_warnings_` (scikit-learn's ConvergenceWarnings: a hyperparameter at its bound, a line search that
    stopped; the fitted values are kept, the messages say which).
    """

    def __init__(self, length_scale: float = 1.0, signal: float = 1.0, noise: float = 1e-3, learn_noise: bool = True, restarts: int = 0, random_state=None) -> None:
        self.length_scale = length_scale
        self.signal = signal
        self.noise = noise
        self.learn_noise = learn_noise
        self.restarts = restarts
        self.random_state = random_state

    def kernel(self, length_scale: float, signal: float, noise: float):
        """signal * RBF(length_scale) + noise * [x = x'], each learned within GP_BOUNDS (the noise fixed unless learned)."""
        white = WhiteKernel(noise, GP_BOUNDS if self.learn_noise else "fixed")
        return ConstantKernel(signal, GP_BOUNDS) * RBF(length_scale, GP_BOUNDS) + white

    def fit(self, X, y) -> "GPRegressionClassifier":
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        targets = (y[:, None] == self.classes_[None, :]) - 1.0 / len(self.classes_)  # (n, K) centred one-hot
        rng = check_random_state(self.random_state)
        start = np.array([self.length_scale, self.signal, self.noise], dtype=np.float64)
        starts = [start] + [np.clip(start * 10.0 ** rng.standard_normal(3), *GP_BOUNDS) for _ in range(self.restarts)]
        fits = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            for length_scale, signal, noise in starts:
                kernel = self.kernel(length_scale, signal, noise if self.learn_noise else self.noise)
                fits.append(GaussianProcessRegressor(kernel, alpha=0.0).fit(X, targets))
        self.optimizer_warnings_ = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
        for w in caught:  # only the optimizer's reports are kept here; any other warning goes on to the caller
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.start_lml_ = [float(f.log_marginal_likelihood_value_) for f in fits]
        self.regressor_ = fits[int(np.argmax(self.start_lml_))]
        self.log_marginal_likelihood_ = max(self.start_lml_)
        learned = self.regressor_.kernel_
        self.signal_ = float(learned.k1.k1.constant_value)
        self.length_scale_ = float(learned.k1.k2.length_scale)
        self.noise_ = float(learned.k2.noise_level)
        return self


class NeuralNetClassifier(ClassifierMixin, BaseEstimator):
    """biaslab's network (`model`, a ModelSpec) trained by `biaslab.train.fit` as `train` (a TrainSpec) says.

    `fit(X, y, X_val=None, y_val=None)`: X is (n, features) or (n, channels, *spatial);
    the validation set, if given, is what the History's test columns measure (the
    training set otherwise). `history_` is the list of History rows, `fit_` the `Fit`.
    """

    def __init__(self, model: ModelSpec | None = None, train: TrainSpec | None = None, random_state: int = 0, device: str = "cpu", dtype: str = "float32") -> None:
        self.model = model
        self.train = train
        self.random_state = random_state
        self.device = device
        self.dtype = dtype

    def _tensor(self, X) -> torch.Tensor:
        return torch.as_tensor(np.asarray(X), dtype=resolve_dtype(self.dtype), device=resolve_device(self.device))

    def fit(self, X, y, X_val=None, y_val=None) -> "NeuralNetClassifier":
        X, y = validate_data(self, X, y, allow_nd=True, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if X_val is None:
            X_val, val_codes = X, codes
        else:
            X_val = np.asarray(X_val, dtype=np.float64)
            val_codes = np.searchsorted(self.classes_, np.asarray(y_val))
        device = resolve_device(self.device)
        labels = lambda c: torch.as_tensor(c, dtype=torch.int64, device=device)  # noqa: E731
        data = Dataset(self._tensor(X), labels(codes), self._tensor(X_val), labels(val_codes), len(self.classes_), torch.zeros(len(y), dtype=torch.bool), "arrays")
        seed = int(self.random_state or 0)
        spec = self.model or ModelSpec()
        self.module_ = models.build(spec, data.in_shape, max(len(self.classes_), 2), generator(seed, "init"), device, resolve_dtype(self.dtype))
        self.fit_: Fit = fit(self.module_, data, self.train or TrainSpec(), generator(seed, "batches"))
        self.history_ = self.fit_.history
        self.module_.eval()
        return self

    def outputs(self, X) -> np.ndarray:
        """The network's outputs (logits): (n, classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=np.float64)
        with torch.no_grad():
            out = self.module_(self._tensor(X)).double().cpu().numpy()
        return out[:, : max(len(self.classes_), 2)]

    def decision_function(self, X) -> np.ndarray:
        """scikit-learn's shape: (n, classes), or (n,) for two classes."""
        return _decision(self.outputs(X))

    def predict_proba(self, X) -> np.ndarray:
        out = self.outputs(X)
        out = np.exp(out - out.max(axis=1, keepdims=True))
        return (out / out.sum(axis=1, keepdims=True))[:, : len(self.classes_)]

    def predict(self, X) -> np.ndarray:
        scores = self.outputs(X)  # raises NotFittedError before classes_ is read
        return self.classes_[scores[:, : len(self.classes_)].argmax(axis=1)]


def _decision(out: np.ndarray) -> np.ndarray:
    """(n, classes) outputs in scikit-learn's decision_function shape: one column (margin) for two classes."""
    return out[:, 1] - out[:, 0] if out.shape[1] == 2 else out


def class_scores(estimator, X) -> np.ndarray:
    """What a classifier's squared loss is measured on: outputs of a squared-loss fit, else class probabilities."""
    if isinstance(estimator, SquaredLossClassifier):
        return estimator.outputs(X)
    return estimator.predict_proba(X)


def squared_risk(estimator, X, y) -> float:
    """Mean over examples of ||scores(x) - onehot(y)||^2 (Belkin et al.'s squared loss for K classes)."""
    return risk_and_error(estimator.classes_, class_scores(estimator, X), y)[0]


def risk_and_error(classes: np.ndarray, scores: np.ndarray, y) -> tuple[float, float]:
    """(squared loss against one-hot targets, zero-one error of the argmax) from scores (n, classes) computed once."""
    y = np.asarray(y)
    target = (y[:, None] == classes[None, :]).astype(np.float64)  # (n, classes)
    risk = float(np.square(scores - target).sum(axis=1).mean())
    return risk, float(np.mean(classes[scores.argmax(axis=1)] != y))


def make_estimator(spec: EstimatorSpec, model: ModelSpec, train: TrainSpec, seed: int, device: str = "cpu", dtype: str = "float32") -> BaseEstimator:
    """The classifier an EstimatorSpec names (min_norm is a regressor: see MinNormRegressor for regression;
    polynomial returns the 1-D PolynomialRegressor)."""
    if spec.kind == "polynomial":
        return PolynomialRegressor(spec.degree, spec.ridge, spec.order_penalty)
    if spec.kind == "min_norm":
        return SquaredLossClassifier(MinNormRegressor(spec.ridge))
    if spec.kind == "random_features":
        return SquaredLossClassifier(RandomFourierRegressor(spec.n_features, spec.bandwidth, spec.ridge, seed))
    if spec.kind == "kernel_ridge":
        gamma = 1.0 / (2.0 * spec.bandwidth**2)
        return SquaredLossClassifier(KernelRidge(alpha=max(spec.ridge, KERNEL_RIDGE_FLOOR), kernel="rbf", gamma=gamma))
    if spec.kind == "random_forest":  # Belkin et al.: no bootstrap, so one tree with n leaves interpolates
        return RandomForestClassifier(n_estimators=spec.n_trees, max_leaf_nodes=spec.max_leaf_nodes, bootstrap=False, max_features="sqrt", random_state=seed)
    if spec.kind == "boosting":
        leaves = spec.max_leaf_nodes or 31
        return HistGradientBoostingClassifier(max_iter=spec.n_trees, max_leaf_nodes=leaves, early_stopping=False, random_state=seed)
    if spec.kind == "neural_net":
        return NeuralNetClassifier(model, train, seed, device, dtype)
    if spec.kind == "gp":
        return GPRegressionClassifier(spec.bandwidth, spec.signal, spec.noise, spec.learn_noise, spec.restarts, seed)
    raise ValueError(f"estimator.kind: unknown {spec.kind!r}")


def fit_estimator(spec: RunSpec, x_train, y_train, validation: tuple | None = None) -> BaseEstimator:
    """The estimator `spec.estimator` names, built from the run's spec (a network from `spec.model` and `spec.train`,
    every random draw from `spec.seed`) and fitted on the training arrays.

    A network given `validation` (x, y) measures it at every evaluation of its `history_`; without it the History's
    test columns measure the training set. The other classes fit on the training arrays alone.
    """
    estimator = make_estimator(spec.estimator, spec.model, spec.train, spec.seed, spec.device, spec.dtype)
    if validation is not None and isinstance(estimator, NeuralNetClassifier):
        return estimator.fit(x_train, y_train, *validation)
    return estimator.fit(x_train, y_train)
