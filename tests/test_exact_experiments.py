"""The solvable experiments: fast numpy paths against torch's optimizers, and claim checks on made-up numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biaslab.experiments import CATALOG
from biaslab.experiments.diagonal_networks import descend as diagonal_descend
from biaslab.experiments.max_margin import descend as margin_descend
from biaslab.spec import ModelSpec, RunSpec, TrainSpec
from biaslab.store import RunRecord
from biaslab.train import evaluation_steps, minimize


@pytest.mark.parametrize(
    "train",
    [
        TrainSpec(optimizer="gd", lr=4.0, batch_size=None, max_steps=50, eval_every=50),
        TrainSpec(optimizer="gd", lr=4.0, momentum=0.9, batch_size=None, max_steps=50, eval_every=50),
        TrainSpec(optimizer="adam", lr=1e-2, batch_size=None, max_steps=50, eval_every=50),
    ],
    ids=["gd", "momentum", "adam"],
)
def test_max_margin_numpy_updates_match_torch_optim(train):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((12, 2)) + np.array([2.0, 0.5])
    final = {}
    margin_descend(Z, train, lambda w: final.update(w=w.copy()) or {})
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    Zt = torch.from_numpy(Z)
    torch_train = train.model_copy(update={"lr": train.lr / np.linalg.norm(Z, 2) ** 2}) if train.optimizer != "adam" else train
    minimize([w], lambda: F.softplus(-(Zt @ w)).sum(), torch_train)
    np.testing.assert_allclose(final["w"], w.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_diagonal_network_updates_match_autograd():
    rng = np.random.default_rng(1)
    A, b = rng.standard_normal((6, 10)), rng.standard_normal(6)
    train = TrainSpec(optimizer="gd", lr=0.5, batch_size=None, max_steps=30, eval_every=30)
    _, w_numpy = diagonal_descend(A, b, 0.3, train, lambda w: {})
    u = torch.full((10,), 0.3, dtype=torch.float64, requires_grad=True)
    v = torch.full((10,), 0.3, dtype=torch.float64, requires_grad=True)
    At, bt = torch.from_numpy(A), torch.from_numpy(b)
    step = 0.5 * 6 / (4 * np.linalg.norm(A, 2) ** 2 * 1.0)
    minimize([u, v], lambda: (At @ (u * u - v * v) - bt).square().sum() / 12, train.model_copy(update={"lr": step}))
    np.testing.assert_allclose(w_numpy, (u * u - v * v).detach().numpy(), rtol=1e-9, atol=1e-12)


def test_log_spaced_evaluation_steps():
    steps = evaluation_steps(TrainSpec(max_steps=10_000, eval_spacing="log", eval_points=5))
    assert steps == [1, 10, 100, 1000, 10_000]
    assert evaluation_steps(TrainSpec(max_steps=25, eval_every=10)) == [10, 20, 25]


def test_minimize_stops_at_the_loss_threshold_and_flags_divergence():
    w = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    done = minimize([w], lambda: (w**2).sum(), TrainSpec(optimizer="gd", lr=0.25, batch_size=None, max_steps=1000, eval_every=1, stop_loss=1e-10))
    assert done.stopped == "loss" and done.steps < 100
    w = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    blown = minimize([w], lambda: (w**2).sum(), TrainSpec(optimizer="gd", lr=5.0, batch_size=None, max_steps=5000, eval_every=10))
    assert blown.status == "diverged"


def _diagonal(alpha: float, seed: int, d1: float, d2: float) -> RunRecord:
    spec = RunSpec(experiment="diagonal-networks", seed=seed, model=ModelSpec(init_scale=alpha))
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"dist_l1": d1, "dist_l2": d2})


def test_diagonal_claim_follows_the_numbers():
    claim = CATALOG.get("diagonal-networks").claim
    good = [_diagonal(a, s, d1=a / 20, d2=1 / (a + 1)) for a in (1e-3, 1e-2, 1e-1, 1.0, 10.0) for s in (0, 1)]
    assert claim(good).passed
    flipped = [_diagonal(a, s, d1=1 / (a + 1), d2=a / 20) for a in (1e-3, 1e-2, 1e-1, 1.0, 10.0) for s in (0, 1)]
    verdict = claim(flipped)
    assert not verdict.passed and verdict.numbers["spearman_alpha_vs_dist_l1"] == pytest.approx(-1.0)


def _min_norm(init_norm: float, nearest: float, min_norm: float) -> RunRecord:
    spec = RunSpec(experiment="min-norm", problem={"kind": "least_squares", "init_norm": init_norm})
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"dist_to_nearest": nearest, "dist_to_min_norm": min_norm})


def test_min_norm_claim_needs_numerical_precision():
    claim = CATALOG.get("min-norm").claim
    assert claim([_min_norm(0.0, 1e-13, 1e-13), _min_norm(1.0, 1e-12, 1.3)]).passed
    verdict = claim([_min_norm(0.0, 1e-13, 1e-13), _min_norm(1.0, 1e-4, 1.3)])  # 1e-4 from the predicted interpolant
    assert not verdict.passed and verdict.numbers["max_dist_to_nearest"] == 1e-4
    assert f"largest relative distance to the predicted interpolant {1e-4:.2e} (PASS needs <= 1e-08" in verdict.reason


def test_max_margin_diagnostics_on_an_exact_trajectory():
    from biaslab.experiments.max_margin import gd_diagnostics

    steps = [float(10**k) for k in range(7)]
    svm_norm = 2.0
    curves = {
        "step": steps,
        "norm": [svm_norm * math.log(t) + 0.3 for t in steps],
        "loss": [5.0 / t for t in steps],
        "angle_deg": [10.0 / (1 + math.log(t)) for t in steps],
    }
    spec = RunSpec(experiment="max-margin", problem={"kind": "separable"})
    record = RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", curves=curves, final={"svm_norm": svm_norm})
    d = gd_diagnostics(record)
    assert d["growth_ratio"] == pytest.approx(1.0) and d["loss_slope"] == pytest.approx(-1.0)
    assert d["angle_end_deg"] < d["angle_decade_before_deg"]


def test_require_reads_a_field_of_an_unset_section_as_none():
    from biaslab.experiments.base import require
    from biaslab.spec import RunSpec, SpecError

    with pytest.raises(SpecError, match=r"problem.kind: custom supports 'tabular' only, got None"):
        require(RunSpec(), {"problem.kind": ("tabular",)})
