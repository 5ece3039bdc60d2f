"""A check every probe test shares: the probe left the model exactly as it found it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def leaves_unchanged(model: torch.nn.Module) -> Iterator[None]:
    """Fail unless mode, parameters, buffers and `.grad` (present or absent) are the same after the block."""
    training = model.training
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    yield
    assert model.training == training, "the probe changed train/eval mode"
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), params[name]), f"the probe changed parameter {name}"
        if grads[name] is None:
            assert p.grad is None, f"the probe left a .grad on {name}"
        else:
            assert torch.equal(p.grad, grads[name]), f"the probe changed the .grad of {name}"
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name]), f"the probe changed buffer {name}"
