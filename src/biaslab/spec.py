"""Typed, frozen, validated run specifications.

A `RunSpec` says everything that decides a run's numbers: data, model, training,
probes and seed. It is a frozen pydantic model with ``extra="forbid"``, so an
unknown key or a wrong type is an error that names the field. Its `spec_id` is
the SHA-256 of its canonical JSON, which is how the store recognises a run it
has already done. A `Sweep` is a base spec plus a grid over dotted paths.

This module never imports torch: specs are plain data.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class SpecError(ValueError):
    """A bad field in a spec or an override; the message names the field and what is allowed."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


DatasetName = Literal["mnist1d", "digits", "teacher", "mnist", "cifar10", "modular", "chebyshev"]
REGRESSION_DATASETS = ("chebyshev",)  # real-valued targets: squared loss only, no 0-1 error
InputCorruption = Literal["none", "shuffled_pixels", "random_pixels", "gaussian"]
ModularOperation = Literal["add", "sub", "mul", "div"]
TOKEN_MODELS = ("token_mlp", "transformer")  # models whose inputs are token ids (the modular dataset)


def is_prime(n: int) -> bool:
    """Trial division; moduli here are small (at most a few thousand)."""
    return n >= 2 and all(n % k for k in range(2, int(n**0.5) + 1))



def _read_only_when(section: BaseModel, prefix: str, rules: tuple[tuple[str, str, tuple[Any, ...]], ...]) -> None:
    """ValueError for a field set away from its default while the field that decides whether it is read says it is
    not: no field is accepted and then ignored. A rule (field, deciding field, values under which it is read)."""
    for name, decider, values in rules:
        field = type(section).model_fields[name]
        if getattr(section, name) != field.default and getattr(section, decider) not in values:
            allowed = " or ".join(repr(v) for v in values)
            raise ValueError(
                f"{prefix}.{name}: read only when {prefix}.{decider} is {allowed}, got {decider} {getattr(section, decider)!r}; "
                f"leave it at its default {field.default!r}"
            )


DATASET_FIELDS = (  # fields that one dataset reads: (field, the deciding field, values under which it is read)
    *((name, "name", ("teacher",)) for name in ("dim", "n_classes", "teacher_width")),
    ("modulus", "name", ("modular",)), ("operation", "name", ("modular",)),
    ("degree", "name", ("chebyshev",)),
    ("root", "name", ("mnist", "cifar10")), ("download", "name", ("mnist", "cifar10")),
    ("standardize", "name", ("mnist1d", "digits", "teacher", "mnist", "cifar10", "chebyshev")),  # not token ids
    ("seed", "name", ("mnist1d", "digits", "teacher", "mnist", "cifar10", "modular")),  # chebyshev: a fixed grid
    ("inputs", "name", ("mnist1d", "digits", "teacher", "mnist", "cifar10")),  # not token ids, not a 1-D grid
)
SPATIAL_DATASETS = ("mnist1d", "digits", "mnist", "cifar10")  # inputs shaped (channels, *positions): crops apply


class DataSpec(_Frozen):
    """Which data, how much of it, and which corruptions to apply (in the order: labels, then inputs)."""

    name: DatasetName = "mnist1d"
    n_train: int | None = Field(None, gt=0)  # None: the dataset's standard training size
    n_test: int | None = Field(None, gt=0)  # None: the dataset's standard test size
    label_noise: float = Field(0.0, ge=0.0, le=1.0)  # fraction of training labels replaced by uniform random ones
    inputs: InputCorruption = "none"  # what to do to the training and test inputs
    standardize: bool = True  # per-feature standardization with training statistics
    seed: int = Field(0, ge=0)  # data draw: split, generator, corruption; separate from the model seed
    root: str | None = None  # directory with the standard files (mnist, cifar10)
    download: bool = False  # fetch missing files (mnist, cifar10); needs a network
    # teacher: Gaussian inputs labelled by a random one-hidden-layer network
    dim: int = Field(20, gt=0)  # teacher input dimension
    n_classes: int = Field(10, ge=2)  # teacher classes
    teacher_width: int = Field(32, gt=0)
    # modular: every pair (a, b) of Z_p x Z_p (b != 0 for div) labelled c = a op b mod p, split by train_fraction
    modulus: int = Field(97, ge=3, le=10007)  # p, a prime (so that every b != 0 has an inverse)
    operation: ModularOperation = "add"  # add: a+b, sub: a-b, mul: a*b, div: a*b^(p-2) (b's modular inverse)
    train_fraction: float | None = Field(None, gt=0.0, lt=1.0)  # modular only: share of all pairs trained on; None: 0.5

    @field_validator("modulus")
    @classmethod
    def _modulus_is_prime(cls, value: int) -> int:
        if not is_prime(value):
            raise ValueError(f"the modulus must be a prime (Z_p a field, so division is defined), got {value}")
        return value

    @model_validator(mode="after")
    def _split_fields_match_the_dataset(self) -> "DataSpec":
        if self.name == "modular":
            if self.n_train is not None or self.n_test is not None:
                raise ValueError("data.n_train / data.n_test: the modular dataset splits its whole table by data.train_fraction; leave them unset")
            if self.inputs != "none":
                raise ValueError(f"data.inputs: the modular dataset's inputs are token ids; only 'none' is allowed, got {self.inputs!r}")
        elif self.train_fraction is not None:
            raise ValueError(f"data.train_fraction: only the modular dataset splits by fraction; {self.name} uses data.n_train / data.n_test")
        return self

    # chebyshev: x evenly spaced on [-1, 1], y = T_degree(x) (Cohen et al. 2021's chebyshev-5-20 regression)
    degree: int = Field(5, ge=0)  # degree of the Chebyshev polynomial of the first kind

    @model_validator(mode="after")
    def _dataset_fields_match_the_dataset(self) -> "DataSpec":
        _read_only_when(self, "data", DATASET_FIELDS)
        return self

    @model_validator(mode="after")
    def _regression_has_no_labels(self) -> "DataSpec":
        if self.name in REGRESSION_DATASETS and self.label_noise > 0:
            raise ValueError(f"data.label_noise: {self.name} is a regression dataset with no labels to corrupt; set it to 0")
        return self


class ModelSpec(_Frozen):
    """Architecture and initialization."""

    kind: Literal["mlp", "cnn", "token_mlp", "transformer"] = "mlp"
    width: int = Field(100, gt=0)  # hidden units per layer (MLP, token_mlp), channels (CNN), or d_mlp (transformer)
    depth: int = Field(1, ge=1)  # hidden layers (MLP, token_mlp), conv layers (CNN) or blocks (transformer)
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    init: Literal["kaiming", "xavier", "normal", "torch"] = "kaiming"
    init_scale: float = Field(1.0, gt=0.0)  # multiplies every initial weight
    bias: bool = True
    kernel_size: int = Field(5, ge=1)  # CNN first-layer kernel; later layers use 3
    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # drop probability after each hidden activation (training only); > 0 runs alone, not in a population
    embed_dim: int = Field(128, gt=0)  # token models: embedding size per token (d_model of the transformer)
    heads: int = Field(4, gt=0)  # transformer: attention heads, each of size embed_dim / heads

    @model_validator(mode="after")
    def _heads_divide_embed_dim(self) -> "ModelSpec":
        if self.kind == "transformer" and self.embed_dim % self.heads:
            raise ValueError(f"model.heads must divide model.embed_dim, got embed_dim={self.embed_dim}, heads={self.heads}")
        return self

    gain: float | None = Field(None, gt=0.0)  # kaiming/xavier gain of the hidden layers; None: the activation's (sqrt 2, 5/3)
    readout_gain: float | None = Field(None, gt=0.0)  # kaiming/xavier gain of the output layer; None: as the hidden layers
    readout_bias: bool = True  # a bias on the output layer (when `bias`); Cohen et al.'s regression net has none

    @model_validator(mode="after")
    def _architecture_fields_match_the_kind(self) -> "ModelSpec":
        _read_only_when(self, "model", (
            ("kernel_size", "kind", ("cnn",)), ("embed_dim", "kind", TOKEN_MODELS), ("heads", "kind", ("transformer",)),
            ("dropout", "kind", ("mlp", "cnn")), ("readout_bias", "kind", ("mlp", "cnn")),
        ))  # fmt: skip
        return self

    @model_validator(mode="after")
    def _gains_need_a_scaled_init(self) -> "ModelSpec":
        if (self.gain is not None or self.readout_gain is not None) and self.init not in ("kaiming", "xavier"):
            raise ValueError(f"model.gain and model.readout_gain apply to init 'kaiming' or 'xavier' only, got init {self.init!r}")
        return self


SGD_FAMILY = ("gd", "sgd", "sam", "asam")  # optimizers that step with torch SGD: momentum and nesterov apply


class TrainSpec(_Frozen):
    """Optimizer, schedule, loss and stopping rule."""

    optimizer: Literal["gd", "sgd", "adam", "adamw", "sam", "asam"] = "sgd"  # sam/asam: sharpness-aware steps on SGD (momentum, nesterov, weight decay)
    lr: float = Field(0.05, gt=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int | None = Field(100, gt=0)  # None: full batch
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    schedule: Literal["constant", "step", "cosine"] = "constant"
    lr_decay: float = Field(0.99, gt=0.0, le=1.0)  # step schedule: lr *= lr_decay every decay_every steps
    decay_every: int = Field(40, gt=0)  # steps between step-schedule decays
    max_steps: int = Field(1000, gt=0)  # the step budget
    eval_every: int = Field(100, gt=0)  # steps between History rows
    stop_zero_error_evals: int | None = Field(None, gt=0)  # stop once train error is 0 for k evals in a row
    stop_loss: float | None = Field(None, ge=0.0)  # stop once the training loss is at most this
    l1: float = Field(0.0, ge=0.0)  # adds l1 * sum_i |theta_i| (all parameters) to the training objective
    eval_spacing: Literal["linear", "log"] = "linear"  # linear: every eval_every steps; log: eval_points log-spaced steps
    eval_points: int = Field(60, ge=2)  # evaluations with eval_spacing=log
    augment: Literal["none", "random_crop"] = "none"  # training batches only; random_crop: zero-pad, crop back at a random offset
    crop_padding: int = Field(4, ge=1)  # random_crop: pixels of zero padding on each side of every spatial axis
    rho: float = Field(0.05, gt=0.0)  # sam/asam: radius of the ascent step (Foret et al. 2021: 0.05; ASAM, Kwon et al. 2021: 0.5-2)
    # batch sizes that an experiment compares from one init (batch-size-sharpness); empty: only batch_size.
    # null in the list means full batch. `fit` itself always uses batch_size.
    batch_sizes: tuple[Annotated[int, Field(gt=0)] | None, ...] = ()

    @model_validator(mode="after")
    def _settings_match_their_method(self) -> "TrainSpec":
        _read_only_when(self, "train", (
            ("momentum", "optimizer", SGD_FAMILY), ("nesterov", "optimizer", SGD_FAMILY), ("betas", "optimizer", ("adam", "adamw")),
            ("lr_decay", "schedule", ("step",)), ("decay_every", "schedule", ("step",)),
            ("eval_every", "eval_spacing", ("linear",)), ("eval_points", "eval_spacing", ("log",)),
            ("crop_padding", "augment", ("random_crop",)),
        ))  # fmt: skip
        return self

    @model_validator(mode="after")
    def _rho_needs_sam(self) -> "TrainSpec":
        if self.rho != 0.05 and self.optimizer not in ("sam", "asam"):
            raise ValueError(f"train.rho: only optimizer 'sam' or 'asam' reads it, got optimizer {self.optimizer!r}")
        if self.optimizer in ("sam", "asam") and self.betas != (0.9, 0.999):
            raise ValueError("train.betas: sam and asam step with SGD, which has no betas")
        return self

    @model_validator(mode="after")
    def _gd_is_full_batch(self) -> "TrainSpec":
        if self.optimizer == "gd" and self.batch_size is not None:
            raise ValueError("optimizer 'gd' is full-batch: set batch_size to null")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov needs momentum > 0")
        return self


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

    @model_validator(mode="after")
    def _mlp_fields_need_the_mlp(self) -> "BackwardError":
        _read_only_when(self, "problem", tuple((name, "model", ("mlp",)) for name in ("n_points", "dim", "width", "batches")))
        return self

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

    @model_validator(mode="after")
    def _settings_of_the_procedure(self) -> "ImplicitRegularizer":
        _read_only_when(self, "problem", (("dropout", "procedure", ("dropout",)), ("width", "procedure", ("mlp_early_stopping",))))
        return self


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
        LeastSquares, Separable, SparseRegression, MatrixCompletion, GaussianFeatures, BackwardError, LazyScaling, ImplicitRegularizer,
        Tabular, Polynomial, PowerLawFeatures, BenignRegression, OrthogonalInputs, ConnectionPaths,
    ], Field(discriminator="kind")
]
EstimatorKind = Literal["min_norm", "random_features", "random_forest", "boosting", "kernel_ridge", "neural_net", "polynomial"]


# the precision each estimator computes in, which its runs' `dtype` must state (neural_net: the spec's dtype is used)
ESTIMATOR_DTYPES = {
    "min_norm": "float64", "random_features": "float64", "kernel_ridge": "float64", "polynomial": "float64",
    "random_forest": "float32", "boosting": "float32",  # scikit-learn's trees cast their inputs to float32
}  # fmt: skip


class EstimatorSpec(_Frozen):
    """A model class fitted through the scikit-learn protocol (`biaslab.estimators`) and its complexity knobs.

    Only the fields of the chosen kind are read: min_norm (n_features, ridge, ridge_rule), random_features
    (n_features, bandwidth, ridge), random_forest (max_leaf_nodes, n_trees), boosting (max_leaf_nodes,
    n_trees = iterations), kernel_ridge (bandwidth, ridge), neural_net (the run's model and train sections),
    polynomial (degree, ridge, order_penalty: a Legendre expansion fitted by weighted ridge).
    """

    kind: EstimatorKind = "min_norm"
    n_features: int = Field(100, gt=0)  # min_norm: coordinates used, p; random_features: random features, N
    ridge: float = Field(0.0, ge=0.0)  # lambda in ||y - Z w||^2 + lambda ||w||^2 (sum over examples); 0: min-norm
    ridge_rule: Literal["fixed", "optimal"] = "fixed"  # optimal: the risk-minimizing ridge of gaussian_features (min_norm)
    bandwidth: float = Field(1.0, gt=0.0)  # Gaussian-kernel width sigma: k(x, x') = exp(-||x - x'||^2 / (2 sigma^2))
    max_leaf_nodes: int | None = Field(None, ge=2)  # leaves per tree; None: grown until pure
    n_trees: int = Field(1, ge=1)  # random_forest trees; boosting iterations
    axis: Literal["model_size", "train_size"] = "model_size"  # the curve the run belongs to: model-wise or sample-wise
    degree: int = Field(3, ge=0, le=200)  # polynomial: highest Legendre order K (K + 1 coefficients)
    order_penalty: Literal["none", "quadratic", "exponential"] = "none"  # polynomial: ridge weight of order k is
    # ridge * 1 (none), ridge * (k + 1)^2 (quadratic) or ridge * e^k (exponential); ridge 0: least squares / min-norm

    @model_validator(mode="after")
    def _settings_match_the_kind(self) -> "EstimatorSpec":
        _read_only_when(self, "estimator", (
            ("n_features", "kind", ("min_norm", "random_features")), ("ridge_rule", "kind", ("min_norm",)),
            ("ridge", "kind", ("min_norm", "random_features", "kernel_ridge", "polynomial")),
            ("bandwidth", "kind", ("random_features", "kernel_ridge")), ("degree", "kind", ("polynomial",)),
            ("max_leaf_nodes", "kind", ("random_forest", "boosting")), ("n_trees", "kind", ("random_forest", "boosting")),
        ))  # fmt: skip
        return self

    @model_validator(mode="after")
    def _order_penalty_needs_polynomial(self) -> "EstimatorSpec":
        if self.order_penalty != "none" and self.kind != "polynomial":
            raise ValueError(f"estimator.order_penalty: only estimator.kind 'polynomial' reads it, got kind {self.kind!r}")
        if self.order_penalty != "none" and self.ridge == 0.0:
            raise ValueError("estimator.order_penalty: weights the ridge per order, so it needs estimator.ridge > 0 (with ridge 0 it changes nothing)")
        return self



ProbeName = Literal["norms", "margin", "path_norm", "fourier", "effective_dim"]  # fourier: token models only (the embedding's spectrum over Z_p)


class ProbeOptions(_Frozen):
    """Settings of the probes that have any; each is read only when `probes` names its probe.

    effective_dim: N_eff(H, z) = sum_i lambda_i / (lambda_i + z) over the eigenvalues of the Hessian of the mean
    training loss (Maddox, Benton & Wilson 2020), the top n_eff_k by Lanczos plus stochastic Lanczos quadrature
    (n_eff_probes vectors x n_eff_steps steps) for the rest, on n_eff_examples training examples.
    """

    n_eff_z: float = Field(1.0, gt=0.0)  # z, the prior precision an eigenvalue is compared with (nats / weight^2)
    n_eff_k: int = Field(10, ge=1)  # top Hessian eigenvalues found exactly by Lanczos
    n_eff_probes: int = Field(3, ge=2)  # Rademacher vectors of the tail's quadrature (>= 2 for a standard error)
    n_eff_steps: int = Field(20, ge=1)  # Lanczos steps per quadrature vector
    n_eff_examples: int | None = Field(None, gt=0)  # a random subset of the training set (drawn from seed); None: all


PROBE_OPTIONS = {"effective_dim": ("n_eff_z", "n_eff_k", "n_eff_probes", "n_eff_steps", "n_eff_examples")}  # probe -> its settings


class RunSpec(_Frozen):
    """One run: everything that decides its numbers."""

    experiment: str = "custom"
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    problem: Problem | None = None  # a solvable problem (experiments with exact references); None: data + model
    estimator: EstimatorSpec | None = None  # a model class fitted through biaslab.estimators; None: model + train
    probes: tuple[ProbeName, ...] = ()  # measured at every evaluation, beside errors and losses
    probe_options: ProbeOptions = ProbeOptions()  # settings of the probes named in `probes` (effective_dim)
    seed: int = Field(0, ge=0)  # model init and batch order
    save_weights: bool = False  # keep the trained weights in the store (safetensors), for `biaslab probe`
    device: str = "cpu"  # where the run trains: cpu, cuda, cuda:1, mps
    dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _tokens_need_token_models(self) -> "RunSpec":
        if self.problem is None and (self.data.name == "modular") != (self.model.kind in TOKEN_MODELS):
            raise ValueError(
                f"model.kind: the modular dataset's inputs are token ids, read by {' or '.join(TOKEN_MODELS)} only; "
                f"got data.name={self.data.name!r} with model.kind={self.model.kind!r}"
            )
        if "fourier" in self.probes and self.model.kind not in TOKEN_MODELS:
            raise ValueError(f"probes: 'fourier' measures a token embedding; it needs model.kind {' or '.join(TOKEN_MODELS)}, got {self.model.kind!r}")
        return self

    @model_validator(mode="after")
    def _probe_options_need_their_probe(self) -> "RunSpec":
        for probe, names in PROBE_OPTIONS.items():
            for name in names:
                field = ProbeOptions.model_fields[name]
                if getattr(self.probe_options, name) != field.default and probe not in self.probes:
                    raise ValueError(f"probe_options.{name}: read only when probes holds {probe!r}, got probes {list(self.probes)}; leave it at its default {field.default!r}")
        return self

    @model_validator(mode="after")
    def _crops_and_convolutions_need_positions(self) -> "RunSpec":
        if self.problem is not None or self.data.name in SPATIAL_DATASETS:
            return self
        if self.train.augment == "random_crop":
            raise ValueError(f"train.augment: random_crop shifts inputs along their positions; {self.data.name} has none (allowed with data.name {', '.join(SPATIAL_DATASETS)})")
        if self.model.kind == "cnn":
            raise ValueError(f"model.kind: a cnn convolves along the inputs' positions; {self.data.name} has none (allowed with data.name {', '.join(SPATIAL_DATASETS)})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _estimator_precision_by_default(cls, data: Any) -> Any:
        """A spec that does not say its dtype gets the precision its estimator computes in, so it says the truth."""
        if isinstance(data, dict) and "dtype" not in data and data.get("estimator") is not None:
            estimator = data["estimator"]
            kind = estimator.get("kind", "min_norm") if isinstance(estimator, dict) else getattr(estimator, "kind", None)
            if kind in ESTIMATOR_DTYPES:
                data = data | {"dtype": ESTIMATOR_DTYPES[kind]}
        return data

    @model_validator(mode="after")
    def _estimators_compute_in_their_own_precision(self) -> "RunSpec":
        fixed = ESTIMATOR_DTYPES.get(self.estimator.kind) if self.estimator is not None else None
        if fixed is not None and self.dtype != fixed:
            raise ValueError(f"dtype: estimator.kind {self.estimator.kind!r} computes in {fixed} (scikit-learn / numpy), whatever the spec says; allowed: {fixed!r}")
        return self

    @model_validator(mode="after")
    def _regression_needs_squared_loss(self) -> "RunSpec":
        if self.data.name in REGRESSION_DATASETS and self.train.loss != "mse":
            raise ValueError(f"train.loss: {self.data.name} has real-valued targets; allowed: 'mse' (got {self.train.loss!r})")
        if self.data.name in REGRESSION_DATASETS and self.problem is None and self.train.stop_zero_error_evals is not None:
            raise ValueError(f"train.stop_zero_error_evals: {self.data.name} has real-valued targets and no 0-1 error to reach; leave it null")
        return self

    @property
    def spec_id(self) -> str:
        """SHA-256 (first 16 hex digits) of the canonical JSON of the fields that decide numbers; identical specs share an id.

        The UNHASHED_FIELDS decide no number, so they are left out: asking for weights does not rerun a finished
        run, and specs without them keep the ids they always had (a default is left out of the canonical JSON anyway).
        """
        hashed = self.model_copy(update={name: RunSpec.model_fields[name].default for name in UNHASHED_FIELDS})
        return hashlib.sha256(canonical_json(hashed).encode()).hexdigest()[:16]


UNHASHED_FIELDS = ("save_weights",)  # RunSpec fields that decide no number: not part of the spec_id


def canonical_json(spec: BaseModel) -> str:
    """Sorted keys, no whitespace, fields at their defaults left out: the same spec always gives the same string.

    Leaving defaults out is what keeps ids stable when a field is added later
    with a default that reproduces the old behaviour: old specs keep their ids
    and stores written before the addition still resume. A discriminator (`kind`)
    is always kept, so two problem kinds with default settings stay apart.
    """
    return json.dumps(_non_default(spec), sort_keys=True, separators=(",", ":"))


def _non_default(model: BaseModel) -> dict:
    """The model's JSON dump without fields equal to their defaults (recursively; `kind` kept)."""
    dumped = model.model_dump(mode="json")
    kept = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested = _non_default(value)
            if nested or value != field.default:
                kept[name] = nested
        elif name == "kind" or field.is_required() or value != field.default:
            kept[name] = dumped[name]
    return kept


NAMES_ITS_FIELD = re.compile(r"^[a-z_0-9]+\.[a-z_0-9.]+[: ]")  # a validator's message that starts with its dotted field


def describe_error(error: ValidationError, prefix: str = "") -> str:
    """One line per bad field: 'train.lr: Input should be greater than 0 (got -1)'."""
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        message = item["msg"]
        if item["type"] == "value_error":  # our validators' messages name their own field: no second prefix
            message = message.removeprefix("Value error, ")
            if NAMES_ITS_FIELD.match(message) or not path:
                lines.append(message)
                continue
        if item["type"] == "extra_forbidden":
            message = f"unknown field; allowed: {', '.join(_allowed_fields(path))}"
        elif "input" in item and not isinstance(item["input"], dict):
            message += f" (got {item['input']!r})"
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


def _allowed_fields(path: str) -> list[str]:
    fields = RunSpec.model_fields
    for part in path.split(".")[:-1]:
        field = fields.get(part)
        models = _models_in(field.annotation) if field is not None else []
        if not models:
            break
        fields = {name: f for m in models for name, f in m.model_fields.items()}
    return sorted(fields)


def parse_value(text: str) -> Any:
    """A command-line value: JSON where it parses (numbers, true/false/null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


NOT_SETTABLE = ("experiment",)  # chosen on the command line (`biaslab run EXPERIMENT`), never by --set


def parse_override(assignment: str) -> tuple[str, Any]:
    """'train.lr=0.05' -> ('train.lr', 0.05); text fields keep the text as written ('data.root=2024').

    Stricter than pydantic's coercion, which would read `true` as 1.0 and `1`
    as True: a boolean for a number field, or a number for a boolean field, is
    a SpecError, and so is a key in NOT_SETTABLE.
    """
    key, sep, value = assignment.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise SpecError(f"override {assignment!r}: expected KEY=VALUE, e.g. train.lr=0.05")
    if key in NOT_SETTABLE:
        raise SpecError(f"{key}: not settable with --set; name the experiment on the command line (biaslab run EXPERIMENT)")
    annotation = check_path(key)
    parsed = parse_value(value)
    if _is_text(annotation) and not isinstance(parsed, (str, list)) and parsed is not None:
        return key, value
    _check_booleans(key, annotation, parsed)
    return key, parsed


def _check_booleans(path: str, annotation: Any, value: Any) -> None:
    """SpecError where `value` (or an item of a list of values) is a boolean for a number field or a number for a boolean field."""
    if isinstance(value, list):
        for item in value:
            _check_booleans(path, annotation, item)
        return
    takes_bool = _admits(annotation, bool)
    takes_number = _admits(annotation, int) or _admits(annotation, float)
    if isinstance(value, bool) and takes_number and not takes_bool:
        raise SpecError(f"{path}: {json.dumps(value)} is a boolean, not a number; {path} takes a number")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and takes_bool and not takes_number:
        raise SpecError(f"{path}: {value!r} is a number, not a boolean; allowed: true, false")


def _admits(annotation: Any, kind: type) -> bool:
    """Whether `kind` is the annotation or one of its members (through unions, Optional, Annotated, tuples)."""
    if annotation is kind:
        return True
    return any(_admits(arg, kind) for arg in getattr(annotation, "__args__", ()) if not isinstance(arg, (str, int, float)))


def _is_text(annotation: Any) -> bool:
    """str, str | None, or a Literal of strings."""
    args = getattr(annotation, "__args__", ())
    return annotation is str or (bool(args) and all(a is str or a is type(None) or isinstance(a, str) for a in args) and str in args)


def check_path(path: str) -> Any:
    """The annotation of the field a dotted path names; SpecError unless it names a field of RunSpec."""
    fields = RunSpec.model_fields
    parts = path.split(".")
    annotation: Any = None
    for depth, part in enumerate(parts):
        field = fields.get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "the spec"
            raise SpecError(f"{path}: unknown field {part!r} in {where}; allowed: {', '.join(sorted(fields))}")
        annotation = field.annotation
        models = _models_in(annotation)
        if depth < len(parts) - 1 and not models:
            raise SpecError(f"{path}: {'.'.join(parts[: depth + 1])} has no sub-fields")
        fields = {name: f for m in models for name, f in m.model_fields.items()}
    return annotation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names: itself, or the members of a (possibly Annotated) union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def with_values(spec: RunSpec, values: dict[str, Any]) -> RunSpec:
    """A copy of `spec` with dotted-path values set, validated (strings coerced by the field's type)."""
    data = spec.model_dump(mode="json")
    for path, value in values.items():
        check_path(path)
        node = data
        *parents, leaf = path.split(".")
        for depth, part in enumerate(parents):
            where = ".".join(parents[: depth + 1])
            if node[part] is None:
                raise SpecError(f"{path}: {where} is not set in this spec; set {where} as a whole first (e.g. {where}.kind)")
            if not isinstance(node[part], dict):  # the section itself was set to a plain value just before
                raise SpecError(f"{path}: {where} is a section, not a value ({where}={json.dumps(node[part])})")
            node = node[part]
        node[leaf] = value
    try:
        return RunSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(describe_error(error)) from None


def _set_inside(option: Any, subpath: str, value: Any, path: str) -> Any:
    """A copy of a grid value (a section as a dict) with `subpath` set."""
    if not isinstance(option, dict):
        raise SpecError(f"{path}: cannot set a field inside the grid axis value {option!r}")
    option = json.loads(json.dumps(option))
    node = option
    *parents, leaf = subpath.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return option


class Sweep(_Frozen):
    """A base spec and a grid: every combination of the grid's values is one run.

    `also` adds further sweeps of the same experiment whose runs join this one's,
    for experiments whose runs are not one grid product (a union of grids).
    """

    base: RunSpec
    grid: dict[str, tuple[Any, ...]] = {}
    also: tuple["Sweep", ...] = ()

    @model_validator(mode="after")
    def _grid_paths_exist(self) -> "Sweep":
        for path, values in self.grid.items():
            check_path(path)
            if len(values) == 0:
                raise ValueError(f"grid axis {path} has no values")
        for part in self.also:
            if part.base.experiment != self.base.experiment:
                raise ValueError(f"also: every part must be of experiment {self.base.experiment!r}, got {part.base.experiment!r}")
        return self

    def expand(self) -> list[RunSpec]:
        """All runs, in grid order (the last axis varies fastest), then those of each part of `also`."""
        paths = list(self.grid)
        combos = itertools.product(*(self.grid[p] for p in paths))
        own = [with_values(self.base, dict(zip(paths, combo))) for combo in combos]
        return own + [spec for part in self.also for spec in part.expand()]

    def swept_paths(self) -> set[str]:
        """The grid axes of this sweep and of every part of `also`."""
        return set(self.grid).union(*(part.swept_paths() for part in self.also))

    def override(self, values: dict[str, Any], swept: set[str] | None = None) -> "Sweep":
        """Apply --set values: a path on the grid replaces that axis (a list sets several values).

        With parts (`also`): a path swept by any part is an axis in every part
        that takes it (where it was fixed, the values become its axis); a part
        whose base spec lacks the path's section (no `problem`, say), or whose
        runs do not read the field (a forest has no ridge), leaves it out; a
        value that no part can take is an error naming the section or field.
        """
        swept = self.swept_paths() if swept is None else swept
        if not self.also:
            return self._override_one(values, swept)
        own = self.model_copy(update={"also": ()})
        parts = (own, *self.also)
        for path, value in values.items():
            if not any(part._takes(path, value, swept) for part in parts):
                own._override_one({path: value}, swept)  # raises the error that names the unset section or the field
        chosen = [{path: value for path, value in values.items() if part._takes(path, value, swept)} for part in parts]
        done = [own._override_one(chosen[0], swept)] + [part.override(mine, swept) for part, mine in zip(self.also, chosen[1:])]
        return done[0].model_copy(update={"also": tuple(done[1:])})

    def _takes(self, path: str, value: Any = None, swept: set[str] | None = None) -> bool:
        """Whether every section on `path` is set in this sweep's base spec, or the path is inside a grid axis; and,
        given the value, whether this part's runs read the field (an estimator kind that has no ridge does not)."""
        if value is not None and self._takes(path):
            try:
                self._override_one({path: value}, swept if swept is not None else self.swept_paths())
            except SpecError as error:
                return not str(error).startswith(f"{path}: read only when")
            return True
        check_path(path)
        if any(path == axis or path.startswith(axis + ".") for axis in self.grid):
            return True
        node: Any = self.base.model_dump(mode="json")
        for part in path.split(".")[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                return False
        return True

    def _override_one(self, values: dict[str, Any], swept: set[str]) -> "Sweep":
        grid = dict(self.grid)
        fixed = {}
        for path, value in values.items():
            check_path(path)
            axis = next((a for a in grid if path.startswith(a + ".")), None)
            if path in grid or (path in swept and axis is None):
                if isinstance(value, list) and not value:
                    raise SpecError(f"{path}: a grid axis needs at least one value, got []")
                grid[path] = tuple(value) if isinstance(value, list) else (value,)
            elif axis is not None:  # a field inside a grid axis of whole sections: set it in every value of the axis
                grid[axis] = tuple(_set_inside(option, path[len(axis) + 1 :], value, path) for option in grid[axis])
            else:
                fixed[path] = value
        sweep = Sweep(base=with_values(self.base, fixed), grid=grid)
        sweep.expand()  # validate every combination now, not mid-sweep
        return sweep


def settable_fields(spec: RunSpec) -> list[dict[str, Any]]:
    """Every field `--set` can reach in this spec: dotted path, type, current value, default and what is allowed.

    Sections that are unset in this spec (no `problem`, say) are listed by their own path only.
    """
    rows: list[dict[str, Any]] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            path, value = f"{prefix}{name}", getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, f"{path}.")
                continue
            rows.append({"path": path, "type": _type_name(field.annotation), "value": _plain(value),
                         "default": _plain(field.default), "allowed": _allowed(field)})  # fmt: skip

    walk(spec, "")
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return list(value) if isinstance(value, tuple) else value


def _type_name(annotation: Any) -> str:
    args = getattr(annotation, "__args__", ())
    origin = getattr(annotation, "__origin__", None)
    if origin is Literal:
        return "choice"
    if origin is tuple:
        return "list of " + " | ".join(dict.fromkeys(_type_name(a) for a in args if a is not Ellipsis))
    sections = _models_in(annotation)
    if sections:
        kinds = [m.model_fields["kind"].default for m in sections if "kind" in m.model_fields] if len(sections) > 1 else []
        return "section" + (f" (kind: {', '.join(kinds)})" if kinds else "") + (" | null" if type(None) in args else "")
    if isinstance(annotation, type):
        return annotation.__name__
    names = [_type_name(a) for a in args if a is not type(None) and a is not Ellipsis]
    text = " | ".join(dict.fromkeys(names)) if names else str(annotation)
    return text + (" | null" if type(None) in args else "")


def _allowed(field: Any) -> str:
    """'one of a, b', a numeric range, or '' for free values."""
    choices = [a for a in getattr(field.annotation, "__args__", ()) if isinstance(a, str)]
    for member in getattr(field.annotation, "__args__", ()):
        choices += [a for a in getattr(member, "__args__", ()) if isinstance(a, str)]
    if choices:
        return "one of " + ", ".join(dict.fromkeys(choices))
    bounds = []
    for item in field.metadata:
        for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(item, attribute, None) is not None:
                bounds.append(f"{symbol} {getattr(item, attribute)}")
    return ", ".join(bounds)
