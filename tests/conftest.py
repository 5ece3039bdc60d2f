"""Shared fixtures: small data and models, in float64 where tests compare with independent computations."""

from __future__ import annotations

import pytest
import torch

from biaslab import models
from biaslab.runtime import generator
from biaslab.spec import ModelSpec


@pytest.fixture
def tiny_mlp() -> torch.nn.Module:
    """A 2-hidden-layer ReLU MLP, 5 -> 4 -> 4 -> 3, float64."""
    spec = ModelSpec(kind="mlp", width=4, depth=1)
    model = models.MLP(5, 4, 2, 3, "relu", bias=True).to(torch.float64)
    return models.initialize(model, spec, generator(0, "init"))


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (32,), generator=g)
