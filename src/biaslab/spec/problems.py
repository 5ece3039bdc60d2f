"""The `problem` section of a run: solvable problems, each a kind of one discriminated union, `Problem`.

Contract: a problem kind holds every number its generator (`biaslab.data.problems`) and its experiment's runner
read, with `kind` as the discriminator that picks the class (and that `canonical_json` always keeps). A setting of
one variant of a kind (BackwardError's mlp fields, ImplicitRegularizer's per-procedure fields) is refused away from
its default under another, by the class's rule table and validators.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from biaslab.spec.rules import _Frozen, read_only_when_validator

# One seed, one job. A problem drawn at random has a `seed` field, the problem draw: None (the default, which keeps
# every older spec and its spec_id) lets the run's `seed` draw the instance as well as the init, as before the field
# existed; an integer fixes the instance, so runs that differ only in `seed` share the problem and differ in their
# init and batch order. `biaslab.data.problems.problem_seed` resolves it for every generator.


class LeastSquares(_Frozen):
    """Under-determined least squares: A (n x d, d > n) Gaussian, b = A w* + 0, GD from w0 of norm init_norm.

    problem.seed draws A and w*; the direction of w0 is the init, drawn from the run's seed (with problem.seed
    None, from the one draw of the run's seed that makes A and w* too, as before the field existed).
    """

    kind: Literal["least_squares"] = "least_squares"
    n: int = Field(20, gt=0)  # equations
    d: int = Field(60, gt=0)  # unknowns
    init_norm: float = Field(0.0, ge=0.0)  # ||w0||: 0 starts at the origin
    seed: int | None = Field(None, ge=0)  # problem draw (A, w*); None: the run's seed draws it (see the note above)

    @model_validator(mode="after")
    def _under_determined(self) -> "LeastSquares":
        if self.d <= self.n:
            raise ValueError(f"problem.d must exceed problem.n (under-determined), got d={self.d}, n={self.n}")
        return self


class Separable(_Frozen):
    """Linearly separable binary data through the origin, for logistic regression."""

    kind: Literal["separable"] = "separable"
    points: Literal["gaussian", "soudry"] = "gaussian"  # two Gaussian clouds, or Soudry et al.'s Fig. 1 data
    lr_unit: Literal["inverse_sigma_max_squared", "absolute"] | None = None  # what train.lr counts in, for every
    # optimizer: 'inverse_sigma_max_squared': the step is train.lr / sigma_max(X)^2 (the summed logistic loss is
    # sigma_max^2 / 4-smooth, so GD is stable below train.lr = 8); 'absolute': the step is train.lr itself.
    # None: by optimizer, as the presets use it: 1 / sigma_max(X)^2 for GD and momentum, absolute for Adam
    n_points: int = Field(40, ge=4)  # even: n_points / 2 of each class
    seed: int | None = Field(None, ge=0)  # problem draw (the points); None: the run's seed draws them (see the note above)

    @field_validator("n_points")
    @classmethod
    def _two_equal_classes(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"problem.n_points: half the points are each class, so it must be even, got {value}")
        return value


class MarginGeometry(_Frozen):
    """Separable data through the origin on which the L1, L2 and L-infinity max-margin directions lie far apart, and
    the step rules of the optimizers run on it (optimizer-geometry; Gunasekar, Lee, Soudry & Srebro 2018).

    x ~ N(0, I_d), n points; labels y = sign(x_1) (sparse_teacher: a 1-sparse teacher) or y = sign(<s, x>) with s a
    random sign vector (dense_teacher). With n < d any labels are separable; a teacher's labels always are.
    """

    kind: Literal["margin_geometry"] = "margin_geometry"
    labels: Literal["sparse_teacher", "dense_teacher"] = "sparse_teacher"
    n: int = Field(20, ge=2)  # points
    d: int = Field(50, ge=2)  # dimensions
    decay: float = Field(0.5, ge=0.0, le=1.0)  # every optimizer's step falls like (t + 2)^-decay (t = 1, 2, ...)
    normalize: bool = True  # gd, sign_descent, coordinate_descent: the step is train.lr (t + 2)^-decay / (B^2 L(w_t)),
    # B the largest dual norm of a point, L the mean exponential loss (False: without the 1 / L(w_t)); adam: train.lr (t + 2)^-decay
    adam_eps: float = Field(0.0, ge=0.0)  # adam: epsilon, in gradient units (0: the sign-like limit Zhang et al. analyse)
    seed: int | None = Field(None, ge=0)  # problem draw (the points, the teacher); None: the run's seed draws them


class SparseRegression(_Frozen):
    """y = A w* with w* sparse, fewer samples than dimensions."""

    kind: Literal["sparse_regression"] = "sparse_regression"
    n: int = Field(40, gt=0)
    d: int = Field(100, gt=0)
    sparsity: int = Field(5, gt=0)  # nonzeros of w*
    seed: int | None = Field(None, ge=0)  # problem draw (A, w*); None: the run's seed draws it (see the note above)


class MatrixCompletion(_Frozen):
    """A rank-r n x n matrix, `observed` entries seen uniformly at random (scaled to ||W*||_F = n)."""

    kind: Literal["matrix_completion"] = "matrix_completion"
    n: int = Field(20, ge=2)
    rank: int = Field(2, ge=1)
    observed: int = Field(120, gt=0)
    seed: int | None = Field(None, ge=0)  # problem draw (W*, observed entries); None: the run's seed draws it (see the note above)

    @model_validator(mode="after")
    def _observed_entries_exist(self) -> "MatrixCompletion":
        if self.observed > self.n * self.n:
            raise ValueError(f"problem.observed: at most n^2 = {self.n * self.n} entries exist, got {self.observed}")
        return self


class GaussianFeatures(_Frozen):
    """Belkin, Hsu & Xu 2019's Gaussian model: x ~ N(0, I_d), y = <x, beta> + noise * eps, ||beta|| = signal.

    beta has equal energy in every coordinate, so the first p coordinates carry
    signal^2 * p / d of it. The learner (estimator.n_features = p) sees only the
    first p coordinates; the rest act as extra noise. Each run averages `draws`
    independent training sets of n examples and reports the mean risk and its SE.
    """

    kind: Literal["gaussian_features"] = "gaussian_features"
    n: int = Field(40, ge=2)  # training examples
    d: int = Field(120, ge=1)  # coordinates of the data distribution (the learner uses the first p <= d)
    signal: float = Field(1.0, ge=0.0)  # ||beta||
    noise: float = Field(0.5, ge=0.0)  # standard deviation of the label noise
    draws: int = Field(100, ge=2)  # independent training sets per run (Monte Carlo over X and noise)


class BackwardError(_Frozen):
    """GD with step h (train.lr) against the gradient flows of L and of the modified loss, over flow time `horizon`."""

    kind: Literal["backward_error"] = "backward_error"
    model: Literal["two_parameter", "mlp"] = "two_parameter"  # (y - a b x)^2 / 2, or a one-hidden-layer tanh MLP
    horizon: float = Field(1.6, gt=0.0)  # flow time T; GD takes T / h steps
    substeps: int = Field(8, ge=1)  # RK4 steps per interval of length h
    n_points: int = Field(16, ge=2)  # mlp: training points
    dim: int = Field(4, gt=0)  # mlp: input dimension
    width: int = Field(8, gt=0)  # mlp: hidden units
    batches: int = Field(4, ge=1)  # mlp SGD: minibatches per epoch (a fixed partition of the points)
    sgd_paths: int = Field(0, ge=0)  # mlp SGD: sample paths averaged for the mean iterate; 0 skips SGD
    seed: int | None = Field(None, ge=0)  # mlp: problem draw (points, labelling direction); None: the run's seed (see the note above)
    x: float = 1.0  # two_parameter: the input of the single data point
    y: float = 1.0  # two_parameter: its target; the loss is (y - a b x)^2 / 2
    a0: float = 2.0  # two_parameter: a at the start
    b0: float = 0.2  # two_parameter: b at the start

    @model_validator(mode="after")
    def _sgd_needs_batches(self) -> "BackwardError":
        if self.sgd_paths > 0 and self.model != "mlp":
            raise ValueError("problem.sgd_paths: the SGD comparison needs problem.model 'mlp' (the two-parameter model has one data point)")
        if self.n_points % self.batches:
            raise ValueError(f"problem.batches must divide problem.n_points, got {self.batches} and {self.n_points}")
        return self

    READ_ONLY_WHEN = tuple((name, "model", ("mlp",)) for name in ("n_points", "dim", "width", "batches"))

    _mlp_fields_need_the_mlp = read_only_when_validator("problem")

    @model_validator(mode="after")
    def _fields_of_the_other_model(self) -> "BackwardError":
        if self.model == "mlp":
            for name in ("x", "y", "a0", "b0"):
                default = BackwardError.model_fields[name].default
                if getattr(self, name) != default:
                    raise ValueError(f"problem.{name}: read by problem.model 'two_parameter' only; with 'mlp' leave it at {default}")
        elif self.seed is not None:
            raise ValueError("problem.seed: the two-parameter model draws nothing at random; allowed with problem.model 'two_parameter': null")
        return self


class LazyScaling(_Frozen):
    """Chizat et al.'s output scaling: train alpha (f(x; w) - f(x; w0)) on the loss divided by alpha^2."""

    kind: Literal["lazy_scaling"] = "lazy_scaling"
    alpha: float = Field(1.0, gt=0.0)  # output scale; large alpha is the lazy (kernel) regime
    kernel_points: int = Field(128, ge=2)  # test examples on which the empirical tangent kernel is compared
    linearized: bool = True  # also train the first-order Taylor model around w0 and compare predictions


class ImplicitRegularizer(_Frozen):
    """An implicit procedure whose explicit penalty is estimated by gradient matching."""

    kind: Literal["implicit_regularizer"] = "implicit_regularizer"
    procedure: Literal["early_stopping", "dropout", "mlp_early_stopping"] = "early_stopping"
    n: int = Field(200, ge=2)  # training points
    d: int = Field(20, gt=0)  # input dimension
    noise: float = Field(0.5, ge=0.0)  # standard deviation of the label noise
    dropout: float = Field(0.3, gt=0.0, lt=1.0)  # dropout rate p (procedure 'dropout')
    width: int = Field(32, gt=0)  # hidden units (procedure 'mlp_early_stopping')
    seed: int | None = Field(None, ge=0)  # problem draw (X, w*, label noise); None: the run's seed draws it (see the note above)

    READ_ONLY_WHEN = (("dropout", "procedure", ("dropout",)), ("width", "procedure", ("mlp_early_stopping",)))

    _settings_of_the_procedure = read_only_when_validator("problem")


class Tabular(_Frozen):
    """Synthetic tabular classification built to isolate one reason trees beat nets (Grinsztajn et al. 2022).

    x ~ U[-1, 1]^n_features. checkerboard: label = (floor(cells (x_0 + 1) / 2) + floor(cells (x_1 + 1) / 2)) mod 2,
    an irregular, axis-aligned target on two features (the rest carry nothing). smooth: label = 1[f(x) > 0] with
    f(x) = u.x + sin(pi v.x), u and v random unit vectors over all n_features (smooth and oblique). rotation
    'random' multiplies the inputs by a random orthogonal matrix (part of the problem draw) after labelling;
    `uninformative` appends that many further U[-1, 1] features that do not enter the label.
    """

    kind: Literal["tabular"] = "tabular"
    target: Literal["checkerboard", "smooth"] = "checkerboard"
    rotation: Literal["none", "random"] = "none"  # random: x -> Q x, Q Haar-distributed orthogonal over all features
    n_features: int = Field(10, ge=2)  # features before the uninformative ones (checkerboard: labels use the first two)
    uninformative: int = Field(0, ge=0)  # extra features independent of the label
    cells: int = Field(4, ge=2)  # checkerboard cells per axis
    n_train: int = Field(2000, ge=10)
    n_test: int = Field(2000, ge=10)
    seed: int | None = Field(None, ge=0)  # problem draw (inputs, target, rotation); None: the run's seed draws it (see the note above)


class Polynomial(_Frozen):
    """1-D regression for Wilson 2025's polynomial example: x ~ U[-1, 1], y = f(x) + noise * eps.

    simple: f(x) = x^3 - x / 2 (low order); complex: f(x) = |x| + sin(3 pi x) / 2 (non-smooth, high frequency).
    The test error is the mean of (prediction - f)^2 over `n_test` evenly spaced points of [-1, 1].
    """

    kind: Literal["polynomial"] = "polynomial"
    target: Literal["simple", "complex"] = "simple"
    n: int = Field(20, ge=2)  # training points
    noise: float = Field(0.1, ge=0.0)  # standard deviation of the label noise
    n_test: int = Field(1000, ge=10)
    seed: int | None = Field(None, ge=0)  # problem draw (x, noise); None: the run's seed draws it (see the note above)


class PowerLawFeatures(_Frozen):
    """Maloney, Roberts & Sully 2022's solvable model: latent x ~ N(0, diag(lambda)), lambda_i = i^-(1 + alpha),
    i = 1..latent; a linear teacher y = beta.x + noise eps with beta ~ N(0, I); the learner regresses on
    estimator.n_features random projections of x (all of x when n_features = latent). Each run averages `draws`
    training sets and reports the exact excess test loss (beta - beta_hat)^T diag(lambda) (beta - beta_hat).
    """

    kind: Literal["power_law_features"] = "power_law_features"
    n: int = Field(100, ge=1)  # training examples
    latent: int = Field(1000, ge=2)  # latent dimension M (take it >= 10 x the largest n or n_features)
    alpha: float = Field(1.0, gt=0.0)  # spectrum exponent: lambda_i = i^-(1 + alpha); predicted loss ~ n^-alpha, N^-alpha
    noise: float = Field(0.0, ge=0.0)  # label noise standard deviation
    draws: int = Field(10, ge=1)  # independent training sets (and teachers) per run


class BenignRegression(_Frozen):
    """Bartlett, Long, Lugosi & Tsigler 2020's setting: y = <x, beta> + noise eps, x ~ N(0, Sigma) in p = n^p_exponent
    dimensions, fitted by the minimum-norm interpolant of the n noisy labels.

    spiked: Sigma has eigenvalue 1 in `spikes` directions (beta, of norm 1, spread evenly over them) and
    n^-tail_exponent in the other p - spikes (a tail of total mass ~ n^(p_exponent - tail_exponent)); isotropic:
    Sigma = I_p, the same beta. Each run averages `draws` training sets and reports the exact excess risk given X
    (the expectation over the label noise), split into bias and variance.
    """

    kind: Literal["benign_regression"] = "benign_regression"
    spectrum: Literal["spiked", "isotropic"] = "spiked"
    n: int = Field(40, ge=2)  # training examples
    p_exponent: float = Field(2.0, gt=1.0)  # p = round(n ** p_exponent) dimensions (more than n: interpolation)
    spikes: int = Field(5, ge=1)  # spiked: directions of eigenvalue 1
    tail_exponent: float = Field(1.5, gt=0.0)  # spiked: the tail eigenvalue is n^-tail_exponent
    noise: float = Field(0.5, ge=0.0)  # standard deviation of the label noise
    draws: int = Field(20, ge=1)  # independent training sets per run

    @model_validator(mode="after")
    def _more_dimensions_than_spikes(self) -> "BenignRegression":
        if round(self.n**self.p_exponent) <= max(self.n, self.spikes):
            raise ValueError(f"problem.p_exponent: p = n^{self.p_exponent} must exceed n = {self.n} and the spikes ({self.spikes})")
        return self


class OrthogonalInputs(_Frozen):
    """Boursier, Pillaud-Vivien & Flammarion 2022's data: n orthonormal inputs in d dimensions, the first n // 2
    labelled +1 and the rest -1. The inputs are the rows of Q^T, Q from the QR decomposition of a d x n Gaussian
    matrix (the problem draw). small-init-relu runs on it; a spec without a problem means OrthogonalInputs()."""

    kind: Literal["orthogonal_inputs"] = "orthogonal_inputs"
    n: int = Field(20, ge=2)  # inputs
    d: int = Field(40, ge=2)  # dimension; at least n, so that n inputs can be orthonormal
    seed: int | None = Field(None, ge=0)  # problem draw (the inputs); None: the run's seed draws them (see the note above)

    @model_validator(mode="after")
    def _room_for_orthonormal_inputs(self) -> "OrthogonalInputs":
        if self.d < self.n:
            raise ValueError(f"problem.d: n = {self.n} orthonormal inputs need d >= n, got d = {self.d}")
        return self


ConnectionPath = Literal["linear", "bezier", "matched", "spawned"]
CONNECTION_PATHS: tuple[ConnectionPath, ...] = ("linear", "bezier", "matched", "spawned")


class ConnectionPaths(_Frozen):
    """Which paths mode-connectivity measures between its networks; a spec without a problem measures all four.

    linear: the straight line from A to B; bezier: a quadratic Bezier curve A -> theta -> B whose bend is trained
    (one more training); matched: the straight line from A to B with B's units permuted by weight matching;
    spawned: the straight line from A to C, trained from A's init with B's batch order (a third network).
    """

    kind: Literal["connection_paths"] = "connection_paths"
    paths: tuple[ConnectionPath, ...] = CONNECTION_PATHS  # measured in this order, whatever order they are given in

    @field_validator("paths")
    @classmethod
    def _distinct_in_canonical_order(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        if not paths or len(set(paths)) != len(paths):
            raise ValueError(f"problem.paths: one or more distinct paths of {', '.join(CONNECTION_PATHS)}, got {list(paths)}")
        return tuple(p for p in CONNECTION_PATHS if p in paths)


Problem = Annotated[
    Union[
        LeastSquares, Separable, MarginGeometry, SparseRegression, MatrixCompletion, GaussianFeatures, BackwardError, LazyScaling, ImplicitRegularizer,
        Tabular, Polynomial, PowerLawFeatures, BenignRegression, OrthogonalInputs, ConnectionPaths,
    ], Field(discriminator="kind")
]
