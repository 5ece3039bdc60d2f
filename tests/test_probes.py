"""Probes against independent computations, and the rule that a probe never changes its model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from unchanged import leaves_unchanged
import torch.nn.functional as F

from biaslab import probes
from biaslab.train import cross_entropy


def _all_probes(model, x, y) -> dict[str, float]:
    init = probes.snapshot(model)
    return (
        probes.error_and_loss(model, cross_entropy, x, y, "train")
        | probes.norms(model)
        | probes.distance_from(model, init)
        | probes.path_norm(model)
        | probes.normalized_margin(model, x, y)
    )


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("with_grads", [True, False])
def test_probes_leave_mode_parameters_and_grads_unchanged(tiny_mlp, batch, training, with_grads):
    x, y = batch
    tiny_mlp.train(training)
    if with_grads:
        cross_entropy(tiny_mlp(x), y).backward()
    with leaves_unchanged(tiny_mlp):
        _all_probes(tiny_mlp, x, y)


def test_error_and_loss_match_a_direct_computation(tiny_mlp, batch):
    x, y = batch
    out = tiny_mlp(x).detach()
    got = probes.error_and_loss(tiny_mlp, cross_entropy, x, y, "test")
    assert got["test_error"] == pytest.approx((out.argmax(1) != y).double().mean().item())
    assert got["test_loss"] == pytest.approx(F.cross_entropy(out, y).item())


def test_norms_match_numpy(tiny_mlp):
    weights = [l.weight.detach().numpy() for l in tiny_mlp.layers]
    everything = np.concatenate([p.detach().numpy().ravel() for p in tiny_mlp.parameters()])
    got = probes.norms(tiny_mlp)
    assert got["norm_frobenius"] == pytest.approx(np.linalg.norm(everything))
    assert got["norm_spectral_product"] == pytest.approx(np.prod([np.linalg.svd(w, compute_uv=False)[0] for w in weights]))
    assert got["norm_frobenius.layers.0.weight"] == pytest.approx(np.linalg.norm(weights[0]))


def test_path_norm_equals_the_sum_over_enumerated_paths(tiny_mlp):
    w = [l.weight.detach().numpy() for l in tiny_mlp.layers]  # (out, in) each
    total = 0.0
    for i, a, b, o in itertools.product(range(5), range(4), range(4), range(3)):
        total += (w[0][a, i] * w[1][b, a] * w[2][o, b]) ** 2
    assert probes.path_norm(tiny_mlp)["path_norm"] == pytest.approx(np.sqrt(total))


def test_path_norm_is_not_reported_for_a_model_with_other_layers():
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(6, 2))
    assert probes.path_norm(model) == {}


def test_distance_from_init_is_zero_then_grows(tiny_mlp):
    init = probes.snapshot(tiny_mlp)
    assert probes.distance_from(tiny_mlp, init)["dist_init"] == 0.0
    with torch.no_grad():
        tiny_mlp.layers[0].weight[0, 0] += 3.0
    assert probes.distance_from(tiny_mlp, init)["dist_init"] == pytest.approx(3.0)


def test_margins_on_hand_made_outputs():
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.eye(3, dtype=torch.float64) * 2.0)  # spectral norm 2

        def forward(self, x):
            return x @ self.w

    x = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 2.5]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    # outputs [[6, 2, 0], [0, 4, 5]]: margins 6 - 2 = 4 and 4 - 5 = -1; divided by 2
    assert probes.margins(Fixed(), x, y).tolist() == [4.0, -1.0]
    got = probes.normalized_margin(Fixed(), x, y)
    assert got["margin_min"] == pytest.approx(-0.5)
    assert got["margin_q10"] == pytest.approx(-0.5 + 0.1 * 2.5)
