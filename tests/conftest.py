"""Shared fixtures: small data and models, in float64 where tests compare with independent computations."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

from biaslab import models
from biaslab.runtime import generator
from biaslab.spec import ModelSpec


if "BIASLAB_CACHE" not in os.environ:  # the tests' generated data go to one directory of their own, shared by the
    _cache = tempfile.mkdtemp(prefix="biaslab-test-cache-")  # xdist workers and subprocesses (they inherit it),
    os.environ["BIASLAB_CACHE"] = _cache  # never to the user's ~/.cache; removed when the process that made it ends
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (scripts/test.sh runs two workers) each worker trains with one torch thread: two workers
    with two OpenMP threads each on two cores spin against each other (measured: twice the CPU time, 430 s wall
    against 340 s serial; with one thread each, 210 s)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


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
