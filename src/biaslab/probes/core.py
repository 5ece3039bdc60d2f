"""Measurements of any `nn.Module`: each returns named scalars, `dict[str, float]`.

A probe never changes what it measures: it runs under `torch.no_grad()`, puts
the module in eval mode only while it measures, restores the caller's mode and
leaves parameters and `.grad` untouched. Probes take a model, a loss function
and tensors; they know nothing of how the model was built or trained.

Definitions:
- error: fraction of examples whose argmax prediction differs from the label (NaN for real-valued targets).
- norm_frobenius: sqrt of the sum of squares of all parameters; per layer too.
- norm_spectral_product: product over weight matrices of their largest singular
  value (conv kernels are flattened to (out, in * k): an upper-bound proxy, not
  the convolution's operator norm).
- dist_init: Frobenius distance of all parameters from a reference (the init).
- path_norm: the l2 path norm of Neyshabur et al. 2015 for a chain of Linear
  layers, sqrt(sum over input-output paths of the product of squared weights),
  computed as a forward pass of squared weights on ones; biases are left out.
- margin_min / margin_q10: the margin f_y(x) - max_{j != y} f_j(x), divided by
  the spectral-norm product, minimum and 10th percentile over the given examples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Metrics = dict[str, float]


@contextmanager
def measuring(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the duration; the caller's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


_shared_outputs: ContextVar[dict | None] = ContextVar("shared_outputs", default=None)  # inside `one_forward_pass`


@contextmanager
def one_forward_pass() -> Iterator[None]:
    """Within the block, `predict` runs a model over a given input tensor once: the error, loss, margin and
    calibration probes of one evaluation share that forward pass. A weight or buffer changed in place (its version
    counter moves) or replaced means a new forward pass; the outputs are dropped when the block ends. Nested blocks
    share."""
    if _shared_outputs.get() is not None:
        yield
        return
    token = _shared_outputs.set({})
    try:
        yield
    finally:
        _shared_outputs.reset(token)


def _state_versions(model: nn.Module) -> tuple[tuple[int, int], ...]:
    """Where each parameter and buffer lives and how often it was changed in place: equal only for equal weights."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Model outputs for `x`, in chunks so large sets fit in memory. Call inside `measuring`."""
    shared = _shared_outputs.get()
    if shared is None:
        return _forward(model, x, batch_size)
    key = (id(model), id(x), x._version, batch_size, torch.is_grad_enabled(), model.training, _state_versions(model))
    if key not in shared:
        shared[key] = (model, x, _forward(model, x, batch_size))  # the model and the tensor are held: their ids stay theirs
    return shared[key][2]


def _forward(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def error_and_loss(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, prefix: str) -> Metrics:
    """{prefix}_error and {prefix}_loss on (x, y), as one host sync.

    Real-valued targets (regression) have no 0-1 error: {prefix}_error is NaN there.
    """
    with measuring(model):
        out = predict(model, x)
        if y.is_floating_point():
            error = torch.full((), float("nan"), dtype=out.dtype, device=out.device)
        else:
            error = (out.argmax(dim=1) != y).to(out.dtype).mean()
        values = torch.stack([error, loss_fn(out, y).to(out.dtype)]).tolist()
    return {f"{prefix}_error": values[0], f"{prefix}_loss": values[1]}


def weight_matrices(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter with two or more dimensions, flattened to (out, rest)."""
    return [(name, p.detach().flatten(1)) for name, p in model.named_parameters() if p.ndim >= 2]


def norms(model: nn.Module) -> Metrics:
    """Total and per-parameter Frobenius norms and the product of spectral norms."""
    with torch.no_grad():
        per_param = {f"norm_frobenius.{name}": p.detach().norm() for name, p in model.named_parameters()}
        total = torch.stack(list(per_param.values())).square().sum().sqrt()
        spectral = [torch.linalg.matrix_norm(w, ord=2) for _, w in weight_matrices(model)]
        product = torch.stack(spectral).prod() if spectral else torch.tensor(float("nan"))
        values = torch.stack([total, product, *per_param.values()]).tolist()
    return {"norm_frobenius": values[0], "norm_spectral_product": values[1], **dict(zip(per_param, values[2:]))}


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the parameters, to measure distances from later."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def distance_from(model: nn.Module, reference: dict[str, torch.Tensor]) -> Metrics:
    """Frobenius distance of the parameters from `reference` (e.g. the init), total and relative."""
    with torch.no_grad():
        squared = sum((p.detach() - reference[name]).square().sum() for name, p in model.named_parameters())
        ref_norm = torch.stack([r.norm() for r in reference.values()]).square().sum().sqrt()
        values = torch.stack([torch.as_tensor(squared).sqrt(), ref_norm]).tolist()
    return {"dist_init": values[0], "dist_init_relative": values[0] / values[1] if values[1] > 0 else float("nan")}


def linear_chain(model: nn.Module) -> list[nn.Linear] | None:
    """The model's Linear layers in registration order if they are its only parametrized modules, else None."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    owned = sum(p.numel() for layer in layers for p in layer.parameters())
    return layers if layers and owned == sum(p.numel() for p in model.parameters()) else None


def path_norm(model: nn.Module) -> Metrics:
    """l2 path norm of a chain of Linear layers (empty dict for other models: it is not defined there)."""
    layers = linear_chain(model)
    if layers is None:
        return {}
    with torch.no_grad():
        signal = torch.ones(1, layers[0].in_features, dtype=layers[0].weight.dtype, device=layers[0].weight.device)
        for layer in layers:
            signal = signal @ layer.weight.detach().square().T
        return {"path_norm": signal.sum().sqrt().item()}


def margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margin f_y(x) - max_{j != y} f_j(x): positive where the prediction is right."""
    with measuring(model):
        out = predict(model, x)
        true = out.gather(1, y[:, None]).squeeze(1)
        others = out.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return true - others


def normalized_margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Metrics:
    """Margins divided by the spectral-norm product: minimum and 10th percentile."""
    matrices = weight_matrices(model)
    if not matrices:
        return {}
    with torch.no_grad():
        spectral = torch.stack([torch.linalg.matrix_norm(w, ord=2) for _, w in matrices]).prod()
    scaled = margins(model, x, y) / spectral
    values = torch.stack([scaled.min(), torch.quantile(scaled.float(), 0.1).to(scaled.dtype)]).tolist()
    return {"margin_min": values[0], "margin_q10": values[1]}
