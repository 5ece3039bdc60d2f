"""Training: determinism, GD against hand-written updates, stopping rules, divergence and failure records."""

from __future__ import annotations

import math

import pytest
import torch

from biaslab import data as datasets
from biaslab import models
from biaslab.experiments import run_spec
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, TrainSpec
from biaslab.train import fit, lr_factor, squared_error

SMALL = RunSpec(
    data=DataSpec(name="teacher", n_train=200, n_test=100, dim=8, n_classes=3),
    model=ModelSpec(width=16),
    train=TrainSpec(lr=0.1, momentum=0.9, batch_size=50, max_steps=120, eval_every=20),
    probes=("norms", "margin", "path_norm"),
)


def test_same_spec_and_seed_give_identical_numbers():
    first, second = run_spec(SMALL), run_spec(SMALL)
    assert first.status == second.status == "ok"
    assert first.curves == second.curves
    assert first.final == second.final


def test_a_different_seed_gives_different_numbers():
    other = run_spec(SMALL.model_copy(update={"seed": 1}))
    assert other.curves["train_loss"] != run_spec(SMALL).curves["train_loss"]


def test_full_batch_gd_matches_hand_written_updates():
    spec = TrainSpec(optimizer="gd", lr=0.3, batch_size=None, loss="mse", max_steps=3, eval_every=1)
    data = datasets.load(DataSpec(name="teacher", n_train=30, n_test=10, dim=4, n_classes=3), dtype=torch.float64)
    model = models.build(ModelSpec(width=5), data.in_shape, 3, generator(0, "init"), dtype=torch.float64)
    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    w1, b1, w2, b2 = params
    for _ in range(3):
        out = torch.relu(data.x_train @ w1.T + b1) @ w2.T + b2
        grads = torch.autograd.grad(squared_error(out, data.y_train), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.3 * g
    result = fit(model, data, spec, generator(0, "batches"))
    assert result.steps == 3 and len(result.history) == 4  # step 0 and three evaluations
    for p, q in zip(model.parameters(), params):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-12)


def test_stops_once_training_error_is_zero_for_k_evaluations():
    spec = SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"max_steps": 4000, "stop_zero_error_evals": 2})})
    record = run_spec(spec)
    train_error = record.curves["train_error"]
    assert record.env["stopped"] == "zero_error"
    assert train_error[-1] == train_error[-2] == 0.0 and record.final["steps"] < 4000


def test_budget_is_respected_and_the_last_step_is_evaluated():
    record = run_spec(SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"max_steps": 45})}))
    assert record.curves["step"] == [0.0, 20.0, 40.0, 45.0]
    assert record.env["stopped"] == "budget"


def test_a_diverging_run_is_recorded_as_diverged():
    spec = SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"lr": 1e6, "max_steps": 400})})
    record = run_spec(spec)
    assert record.status == "diverged"
    assert not math.isfinite(record.final["train_loss"])
    assert record.final["steps"] < 400


def test_a_crashing_run_is_recorded_as_failed_with_its_traceback():
    spec = SMALL.model_copy(update={"model": ModelSpec(kind="cnn")})  # a CNN cannot read flat vectors
    record = run_spec(spec)
    assert record.status == "failed"
    assert "model.kind: cnn needs inputs shaped" in record.error


def test_schedules():
    step = lr_factor(TrainSpec(schedule="step", lr_decay=0.5, decay_every=10, max_steps=100))
    cosine = lr_factor(TrainSpec(schedule="cosine", max_steps=100))
    assert [step(s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimizer_lowers_the_training_loss(optimizer):
    lr = 0.1 if optimizer == "sgd" else 0.01
    spec = SMALL.model_copy(update={"train": SMALL.train.model_copy(update={"optimizer": optimizer, "lr": lr, "weight_decay": 1e-4})})
    record = run_spec(spec)
    assert record.curves["train_loss"][-1] < 0.5 * record.curves["train_loss"][0]


def test_probe_curves_are_recorded_at_every_evaluation():
    record = run_spec(SMALL)
    n = len(record.curves["step"])
    for name in ("norm_frobenius", "dist_init", "path_norm", "margin_min", "norm_spectral_product"):
        assert len(record.curves[name]) == n
    assert record.curves["dist_init"][0] == 0.0 < record.curves["dist_init"][-1]
