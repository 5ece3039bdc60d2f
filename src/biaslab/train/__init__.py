"""Training: `fit(model, loss_fn, data, spec, generator, on_eval) -> Fit`.

Batches are index slices of a fresh permutation each epoch, drawn from the
generator (no DataLoader); full batch when `batch_size` is None. Every
`eval_every` steps, and at the end, a History row is written with step, epoch,
learning rate, train/test error and loss, and whatever `on_eval` returns. The
host reads values only at those points, never per step.

Sharpness-aware minimization (`optimizer` sam or asam, Foret et al. 2021; Kwon et al. 2021): each step
computes the batch gradient g, moves the weights to w + e with e = rho g / ||g|| (asam: e = rho T^2 g /
||T g|| with T = |w| elementwise, which makes the step invariant to rescaling), takes the gradient there on
the same batch, returns to w and lets SGD (momentum, nesterov, weight decay from the spec) step with it.

Explicit penalties: AdamW's decoupled weight decay lives in the optimizer;
`spec.l1 > 0` adds l1 * sum_i |theta_i| over every trained parameter to the
objective that is differentiated at each step (the loss written to History stays
the data loss alone). Both `fit` and `minimize` apply it, in their shared loop.

Stopping: the step budget `max_steps`; optionally "stop once training error has
been 0 for k evaluations in a row"; and divergence: a non-finite training loss
at an evaluation ends the run with status "diverged".

Augmentation (`spec.augment`) transforms each training batch with draws from
the same generator as the batch order; evaluations use the unaugmented data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from biaslab import probes
from biaslab.data import Dataset
from biaslab.data.augment import augment
from biaslab.spec import TrainSpec

Row = dict[str, float]
OnEval = Callable[[nn.Module, int], dict[str, float]]
Reporter = Callable[[int, int, float], None]  # (step, step budget, training loss) after each evaluation
_reporter: Reporter | None = None  # set by `reporting` around a job (a sweep's live progress); None: nothing reported


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Within the block, every training loop (`fit`, `minimize`, `fit_population`) calls `reporter(step, max_steps,
    training loss)` after each evaluation, so a sweep can show how a run is doing while it trains."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous


def report(step: int, max_steps: int, loss: float) -> None:
    """Tell the active reporter (if any) that training reached `step` of `max_steps` with this training loss."""
    if _reporter is not None:
        _reporter(step, max_steps, loss)
Status = Literal["ok", "diverged"]


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy."""
    return F.cross_entropy(out, y)


def squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """0.5 * ||f(x) - target||^2 averaged over examples (Cohen et al. 2021's MSE).

    The target is onehot(y) for integer labels y (batch,), and y itself for real-valued targets (batch, outputs).
    """
    if y.is_floating_point():
        target = y.reshape(out.shape)
    else:
        target = torch.zeros_like(out).scatter(1, y[:, None], 1.0)  # one-hot; F.one_hot cannot run under vmap
    return 0.5 * (out - target).square().sum(dim=1).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"cross_entropy": cross_entropy, "mse": squared_error}


SHARPNESS_AWARE = ("sam", "asam")


def make_optimizer(params, spec: TrainSpec) -> torch.optim.Optimizer:
    """gd, sgd (and sam/asam's base step) are torch SGD; adam couples weight decay to the gradient, adamw decouples it."""
    if spec.optimizer in ("gd", "sgd", *SHARPNESS_AWARE):
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov, weight_decay=spec.weight_decay)
    optimizer = torch.optim.Adam if spec.optimizer == "adam" else torch.optim.AdamW
    return optimizer(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)


def lr_factor(spec: TrainSpec) -> Callable[[int], float]:
    """Multiplier of the base learning rate after `step` steps."""
    if spec.schedule == "step":
        return lambda step: spec.lr_decay ** (step // spec.decay_every)
    if spec.schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, spec.max_steps) / spec.max_steps))
    return lambda step: 1.0


class _Constant:
    """The schedule of a constant learning rate: nothing to do per step (LambdaLR costs microseconds each step)."""

    def step(self) -> None:
        pass


def make_schedule(optimizer: torch.optim.Optimizer, spec: TrainSpec):
    """A per-step scheduler for `spec.schedule` (call `.step()` after each optimizer step)."""
    if spec.schedule == "constant":
        return _Constant()
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(spec))


@dataclass
class Fit:
    """What training produced: History rows, the final status, and why it stopped."""

    history: list[Row] = field(default_factory=list)
    status: Status = "ok"
    stopped: Literal["budget", "zero_error", "loss", "diverged"] = "budget"
    steps: int = 0

    @property
    def final(self) -> Row:
        return self.history[-1] if self.history else {}

    def stop(self, reason: str | None) -> bool:
        """Record why training stops (None: it goes on); True when it stops."""
        if reason is not None:
            self.stopped = reason
            self.status = "diverged" if reason == "diverged" else self.status
        return reason is not None


def stop_reason(loss: float, zero_error_streak: int, spec: TrainSpec) -> str | None:
    """Why training stops after an evaluation: 'diverged', 'zero_error', 'loss', or None to go on."""
    if not math.isfinite(loss):
        return "diverged"
    if spec.stop_zero_error_evals is not None and zero_error_streak >= spec.stop_zero_error_evals:
        return "zero_error"
    if spec.stop_loss is not None and loss <= spec.stop_loss:
        return "loss"
    return None


def batches(n: int, batch_size: int | None, g: torch.Generator, device: torch.device):
    """Endless index batches: a new permutation each epoch, slices of it; None means the whole set."""
    while True:
        if batch_size is None or batch_size >= n:
            yield None
            continue
        order = torch.randperm(n, generator=g).to(device)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def fit(
    model: nn.Module,
    data: Dataset,
    spec: TrainSpec,
    g: torch.Generator,
    on_eval: OnEval | None = None,
) -> Fit:
    """Train `model` in place on `data` as `spec` says; return its History and status."""
    loss_fn = LOSSES[spec.loss]
    optimizer = make_optimizer(model.parameters(), spec)
    schedule = make_schedule(optimizer, spec)
    n = data.x_train.shape[0]
    steps_per_epoch = 1 if spec.batch_size is None else math.ceil(n / spec.batch_size)
    result = Fit()
    zero_error_streak = 0

    def evaluate(step: int) -> Row:
        row: Row = {"step": float(step), "epoch": step / steps_per_epoch, "lr": optimizer.param_groups[0]["lr"]}
        with probes.one_forward_pass():  # the probes' margins on the training set reuse this evaluation's outputs
            row |= probes.error_and_loss(model, loss_fn, data.x_train, data.y_train, "train")
            row |= probes.error_and_loss(model, loss_fn, data.x_test, data.y_test, "test")
            if math.isfinite(row["train_loss"]) and on_eval is not None:
                row |= on_eval(model, step)
        result.history.append(row)
        return row

    evaluate(0)
    model.train()
    index_stream = batches(n, spec.batch_size, g, data.x_train.device)

    def batch_objective() -> Callable[[], torch.Tensor]:
        """Draw the next batch; return the loss on it (called twice per step by sam, once otherwise)."""
        idx = next(index_stream)
        x, y = (data.x_train, data.y_train) if idx is None else (data.x_train[idx], data.y_train[idx])
        x = augment(x, spec.augment, spec.crop_padding, g)  # training batches only; evaluations see the data as is
        return lambda: loss_fn(model(x), y)

    def should_stop(row: Row) -> str | None:
        nonlocal zero_error_streak
        zero_error_streak = zero_error_streak + 1 if row["train_error"] == 0.0 else 0
        return stop_reason(row["train_loss"], zero_error_streak, spec)

    return _descend(optimizer, schedule, batch_objective, evaluate, should_stop, spec, result)


def _descend(optimizer, schedule, next_objective, evaluate, should_stop, spec: TrainSpec, result: Fit) -> Fit:
    """The loop `fit` and `minimize` share: step, evaluate at `evaluation_steps`, stop when `should_stop` says why.

    `next_objective()` draws the step's batch and returns a function computing the loss on it.
    """
    pending = evaluation_steps(spec)
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def objective_with_penalty(objective: Callable[[], torch.Tensor]) -> torch.Tensor:
        loss = objective()
        return loss + spec.l1 * l1_norm(params) if spec.l1 > 0.0 else loss

    for step in range(1, spec.max_steps + 1):
        objective = next_objective()
        optimizer.zero_grad(set_to_none=True)
        if spec.optimizer in SHARPNESS_AWARE:
            sharpness_aware_gradient(params, lambda: objective_with_penalty(objective), spec.rho, spec.optimizer == "asam")
        else:
            objective_with_penalty(objective).backward()
        optimizer.step()
        schedule.step()
        result.steps = step
        if step != pending[0]:
            continue
        pending.pop(0)
        row = evaluate(step)
        report(step, spec.max_steps, row.get("train_loss", row.get("loss", math.nan)))
        if result.stop(should_stop(row)):
            break
    optimizer.zero_grad(set_to_none=True)  # leave no gradients behind
    return result


def sharpness_aware_gradient(params: list[torch.Tensor], objective: Callable[[], torch.Tensor], rho: float, adaptive: bool) -> None:
    """Leave in `.grad` the gradient at w + e, e = rho T^2 g / ||T g|| (T = |w| when adaptive, else 1), with w unchanged."""
    grads = torch.autograd.grad(objective(), params)
    with torch.no_grad():
        scales = [p.abs() if adaptive else torch.ones_like(p) for p in params]
        norm = torch.sqrt(sum((s * g).square().sum() for s, g in zip(scales, grads)))
        ascent = [rho * s.square() * g / (norm + 1e-12) for s, g in zip(scales, grads)]
        for p, e in zip(params, ascent):
            p.add_(e)
    objective().backward()
    with torch.no_grad():
        for p, e in zip(params, ascent):
            p.sub_(e)


def l1_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """sum_i |theta_i| over all entries of all tensors (differentiable; its gradient is sign(theta))."""
    return torch.stack([p.abs().sum() for p in params]).sum()


def evaluation_steps(spec: TrainSpec) -> list[int]:
    """The steps after which a History row is written (the last step always is)."""
    if spec.eval_spacing == "log":
        exponents = [math.log10(spec.max_steps) * i / (spec.eval_points - 1) for i in range(spec.eval_points)]
        grid = {min(spec.max_steps, max(1, round(10**e))) for e in exponents}
        return sorted(grid | {spec.max_steps})
    return sorted(set(range(spec.eval_every, spec.max_steps + 1, spec.eval_every)) | {spec.max_steps})


# the TrainSpec fields `minimize` reads (batch_size must be null: it is full-batch; it ignores loss, augmentation and
# l1: the objective is given);
# it steps with these optimizers only (sam/asam need a second gradient at a perturbed point, which it does not take)
MINIMIZE_READS = tuple(f"train.{name}" for name in (
    "optimizer", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "betas", "schedule", "lr_decay", "decay_every", "max_steps",
    "eval_every", "eval_spacing", "eval_points", "stop_loss",
))  # fmt: skip
MINIMIZE_OPTIMIZERS = ("gd", "sgd", "adam", "adamw")
MINIMIZE_ONLY = {"train.batch_size": (None,), "train.optimizer": MINIMIZE_OPTIMIZERS}  # what a run by `minimize` allows


def minimize(
    params: list[torch.Tensor],
    objective: Callable[[], torch.Tensor],
    spec: TrainSpec,
    on_eval: Callable[[int], dict[str, float]] | None = None,
) -> Fit:
    """Full-batch minimization of `objective()` over raw tensors (factorizations, linear models).

    The optimizer and schedule come from `spec` (its batch size is ignored). At
    each evaluation step (`evaluation_steps`, log-spaced if asked) a row with the
    loss after the step and `on_eval(step)` is written. Stops at the budget, at
    `spec.stop_loss`, or when the loss is no longer finite (status 'diverged').
    """
    optimizer = make_optimizer(params, spec)
    schedule = make_schedule(optimizer, spec)
    result = Fit()

    def evaluate(step: int) -> Row:
        with torch.no_grad():
            row: Row = {"step": float(step), "lr": optimizer.param_groups[0]["lr"], "loss": objective().item()}
        if math.isfinite(row["loss"]) and on_eval is not None:
            row |= on_eval(step)
        result.history.append(row)
        return row

    evaluate(0)
    return _descend(optimizer, schedule, lambda: objective, evaluate, lambda row: stop_reason(row["loss"], 0, spec), spec, result)
