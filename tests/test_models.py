"""Architectures and initializations."""

from __future__ import annotations

import math

import pytest
import torch

from biaslab import models
from biaslab.runtime import generator
from biaslab.spec import ModelSpec


def _build(spec: ModelSpec, in_shape=(1, 40), seed: int = 0) -> torch.nn.Module:
    return models.build(spec, in_shape, 10, generator(seed, "init"))


def test_same_seed_same_weights_and_no_global_rng_use():
    state = torch.random.get_rng_state()
    a, b = _build(ModelSpec(width=64)), _build(ModelSpec(width=64))
    assert torch.equal(torch.random.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c = _build(ModelSpec(width=64), seed=1)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


@pytest.mark.parametrize(
    "init, std",
    [("kaiming", math.sqrt(2 / 400)), ("xavier", math.sqrt(2) * math.sqrt(2 / (400 + 2000))), ("normal", math.sqrt(1 / 400))],
)
def test_init_scales(init, std):
    model = models.build(ModelSpec(width=2000, init=init), (400,), 10, generator(0, "init"))
    weight = model.layers[0].weight
    assert weight.std().item() == pytest.approx(std, rel=0.02)
    assert torch.count_nonzero(model.layers[0].bias) == 0


def test_torch_default_init_is_uniform_in_its_bound():
    weight = models.build(ModelSpec(width=500, init="torch"), (100,), 10, generator(0, "init")).layers[0].weight
    bound = 1 / math.sqrt(100)
    assert weight.abs().max().item() <= bound and weight.abs().max().item() > 0.95 * bound


def test_init_scale_multiplies_every_weight():
    base, scaled = _build(ModelSpec(width=32)), _build(ModelSpec(width=32, init_scale=0.1))
    for (name, p), q in zip(base.named_parameters(), scaled.parameters()):
        if name.endswith("weight"):
            torch.testing.assert_close(q, 0.1 * p)


def test_mlp_depth_and_width():
    model = _build(ModelSpec(width=7, depth=3))
    assert [tuple(l.weight.shape) for l in model.layers] == [(7, 40), (7, 7), (7, 7), (10, 7)]
    assert model(torch.zeros(5, 1, 40)).shape == (5, 10)


def test_cnn_on_mnist1d_is_greydanus_and_kobaks_shape():
    model = _build(ModelSpec(kind="cnn", width=25, depth=3, kernel_size=5))
    assert model.readout.in_features == 125
    assert model(torch.zeros(4, 1, 40)).shape == (4, 10)


def test_cnn_in_two_dimensions():
    model = _build(ModelSpec(kind="cnn", width=8, depth=2), in_shape=(3, 32, 32))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_cnn_on_flat_inputs_is_a_clear_error():
    with pytest.raises(ValueError, match="model.kind: cnn needs inputs shaped"):
        _build(ModelSpec(kind="cnn"), in_shape=(20,))


def test_float64_build():
    assert next(models.build(ModelSpec(), (1, 40), 10, generator(0, "init"), dtype=torch.float64).parameters()).dtype == torch.float64
