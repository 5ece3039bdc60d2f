"""The `train` section of a run: optimizer, schedule, loss, evaluation and stopping rule.

Contract: `TrainSpec` holds every field `biaslab.train.fit` (and `train.minimize`) reads. A setting of one method
(momentum for the SGD family, betas for Adam, the step schedule's decay, SAM's rho, ...) is refused away from its
default under another, by the section's rule table and validators.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from biaslab.spec.rules import _Frozen, read_only_when_validator

SGD_FAMILY = ("gd", "sgd", "sam", "asam")  # optimizers that step with torch SGD: momentum and nesterov apply
# steepest descent w.r.t. a norm other than L2 on a linear model (Gunasekar et al. 2018): sign_descent for L-infinity
# (step ||g||_1 sign(g)), coordinate_descent for L1 (the coordinate of largest |g|). Full batch, written out in numpy by
# the margin_geometry problem (optimizer-geometry); no network trainer takes them.
STEEPEST_DESCENT = ("sign_descent", "coordinate_descent")
FULL_BATCH_OPTIMIZERS = ("gd", *STEEPEST_DESCENT)


class TrainSpec(_Frozen):
    """Optimizer, schedule, loss and stopping rule."""

    optimizer: Literal["gd", "sgd", "adam", "adamw", "sam", "asam", "sign_descent", "coordinate_descent"] = "sgd"  # sam/asam: sharpness-aware
    # steps on SGD (momentum, nesterov, weight decay); sign_descent, coordinate_descent: see STEEPEST_DESCENT
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

    READ_ONLY_WHEN = (
        ("momentum", "optimizer", SGD_FAMILY), ("nesterov", "optimizer", SGD_FAMILY), ("betas", "optimizer", ("adam", "adamw")),
        ("lr_decay", "schedule", ("step",)), ("decay_every", "schedule", ("step",)),
        ("eval_every", "eval_spacing", ("linear",)), ("eval_points", "eval_spacing", ("log",)),
        ("crop_padding", "augment", ("random_crop",)),
    )  # fmt: skip

    _settings_match_their_method = read_only_when_validator("train")

    @model_validator(mode="after")
    def _rho_needs_sam(self) -> "TrainSpec":
        if self.rho != 0.05 and self.optimizer not in ("sam", "asam"):
            raise ValueError(f"train.rho: only optimizer 'sam' or 'asam' reads it, got optimizer {self.optimizer!r}")
        if self.optimizer in ("sam", "asam") and self.betas != (0.9, 0.999):
            raise ValueError("train.betas: sam and asam step with SGD, which has no betas")
        return self

    @model_validator(mode="after")
    def _gd_is_full_batch(self) -> "TrainSpec":
        if self.optimizer in FULL_BATCH_OPTIMIZERS and self.batch_size is not None:
            raise ValueError(f"optimizer {self.optimizer!r} is full-batch: set batch_size to null")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov needs momentum > 0")
        return self

