"""How much arithmetic a run does at most, estimated from its spec before it runs, so `auto` weighs work, not steps.

A standard supervised run (a dataset, a model, `train`) costs per step a forward and a backward pass over its batch
(backward about twice the forward: the gradients of the weights and of the activations), twice for SAM and ASAM
(a second gradient at the perturbed point), plus a forward pass over the training and test sets at every
evaluation. The forward pass's FLOPs per example come from PyTorch's FlopCounterMode on the model built on the
`meta` device (shapes only: nothing is allocated or computed). The step budget is an upper bound: a run that stops
at zero training error does less. Runs of solvable problems and estimators have no estimate (None): `auto` counts
their steps as before.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from biaslab.data.sources import n_classes
from biaslab.experiments.memory import data_size
from biaslab.spec import ModelSpec, RunSpec
from biaslab.train import evaluation_steps

BACKWARD_OVER_FORWARD = 2  # a backward pass costs about twice the forward (weights' and activations' gradients)
GRADIENTS_PER_STEP = {"sam": 2, "asam": 2}  # sharpness-aware steps take a second gradient; every other optimizer one


@lru_cache(maxsize=256)
def forward_flops(model: ModelSpec, in_shape: tuple[int, ...], n_out: int) -> int:
    """FLOPs of one example's forward pass through the model a spec builds (counted on the meta device)."""
    from biaslab.models import ARCHITECTURES

    network = ARCHITECTURES.get(model.kind)(model, in_shape, n_out).to("meta")
    dtype = torch.int64 if model.kind in ("token_mlp", "transformer") else torch.float32
    with FlopCounterMode(display=False) as counter:
        network(torch.zeros((1, *in_shape), dtype=dtype, device="meta"))
    return counter.get_total_flops()


def run_flops(spec: RunSpec) -> float | None:
    """The most FLOPs a standard supervised run of `spec` does (training at its full step budget, and its
    evaluations); None for a run that is not one (a solvable problem, an estimator) or whose model cannot be built."""
    if spec.problem is not None or spec.estimator is not None:
        return None
    size = data_size(spec.data)
    try:
        forward = forward_flops(spec.model, size.in_shape, n_classes(spec.data))
    except (ValueError, RuntimeError):  # a model that does not fit its data fails when the run builds it
        return None
    batch = spec.train.batch_size or size.n_train
    gradients = GRADIENTS_PER_STEP.get(spec.train.optimizer, 1)
    training = (1 + BACKWARD_OVER_FORWARD) * forward * batch * spec.train.max_steps * gradients
    evaluations = forward * (size.n_train + size.n_test) * len(evaluation_steps(spec.train))
    return float(training + evaluations)
