"""edge-of-stability: the Chebyshev data, squared loss on real targets, Cohen et al.'s init, Sweep cases, the sharpness
hook against a dense Hessian, and the claim on made-up curves that pass and that fail."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from biaslab import data as datasets
from biaslab import models
from biaslab.experiments.edge_of_stability import claim, edge_numbers, quick, sharpness_hook, tiny
from biaslab.probes import error_and_loss
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, SpecError, Sweep, TrainSpec, with_values
from biaslab.store import RunRecord
from biaslab.train import LOSSES, cross_entropy, squared_error

CHEB = DataSpec(name="chebyshev", standardize=False)
COHEN_NET = ModelSpec(kind="mlp", width=100, depth=1, activation="tanh", init="xavier", gain=1.9, readout_gain=1.0, readout_bias=False)


# ---------------------------------------------------------------- data and loss


def test_chebyshev_points_are_evenly_spaced_and_labelled_by_t5():
    data = datasets.load(CHEB)
    x = data.x_train[:, 0].double()
    assert data.x_train.shape == (20, 1) and data.y_train.shape == (20, 1) and data.x_test.shape == (100, 1)
    assert torch.allclose(x, torch.linspace(-1, 1, 20, dtype=torch.float64), atol=1e-7)
    t5 = 16 * x**5 - 20 * x**3 + 5 * x  # T_5 in closed form
    assert torch.allclose(data.y_train[:, 0].double(), t5, atol=1e-6)
    assert data.n_classes == 1 and data.y_train.is_floating_point() and not data.noisy.any()


def test_chebyshev_degree_is_the_polynomial_degree():
    data = datasets.load(CHEB.model_copy(update={"degree": 3, "n_train": 7}))
    x = data.x_train[:, 0].double()
    assert torch.allclose(data.y_train[:, 0].double(), 4 * x**3 - 3 * x, atol=1e-6)


def test_squared_loss_on_real_targets_and_no_0_1_error():
    out, y = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])
    assert squared_error(out, y).item() == pytest.approx(0.5 * (1 + 4) / 2)
    metrics = error_and_loss(torch.nn.Identity(), squared_error, out, y, "train")
    assert math.isnan(metrics["train_error"]) and metrics["train_loss"] == pytest.approx(1.25)


def test_squared_loss_on_labels_is_still_one_hot_and_error_still_counts():
    out, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    assert squared_error(out, y).item() == pytest.approx(0.5 * ((1 + 0) + (1 + 1)) / 2)
    assert error_and_loss(torch.nn.Identity(), cross_entropy, out, y, "test")["test_error"] == 0.5


# ---------------------------------------------------------------- spec fields and their errors


def test_regression_data_needs_the_squared_loss():
    with pytest.raises(SpecError, match=r"train\.loss.*mse"):
        with_values(RunSpec(), {"data.name": "chebyshev"})  # default loss: cross_entropy
    assert with_values(RunSpec(), {"data.name": "chebyshev", "train.loss": "mse"}).data.name == "chebyshev"


def test_regression_data_has_no_label_noise():
    with pytest.raises(SpecError, match=r"data\.label_noise"):
        with_values(RunSpec(), {"data.name": "chebyshev", "train.loss": "mse", "data.label_noise": 0.1})


@pytest.mark.parametrize(
    "values, field",
    [
        ({"model.gain": 1.9, "model.init": "torch"}, "model.gain"),
        ({"model.gain": 0.0}, "model.gain"),
        ({"model.readout_gain": -1.0}, "model.readout_gain"),
        ({"data.degree": -1}, "data.degree"),
        ({"data.name": "chebyshv"}, "data.name"),
    ],
)
def test_bad_new_fields_name_the_field(values, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        with_values(RunSpec(), values)


def test_cohen_init_has_the_stated_scales_and_no_output_bias():
    model = models.build(COHEN_NET, (1,), 1, generator(0, "init"))
    hidden, readout = model.layers
    assert readout.bias is None and torch.all(hidden.bias == 0)
    assert hidden.weight.std().item() == pytest.approx(1.9 * math.sqrt(2 / 101), rel=0.2)
    assert readout.weight.std().item() == pytest.approx(math.sqrt(2 / 101), rel=0.2)


def test_default_gain_gives_the_same_weights_as_before():
    plain = models.build(ModelSpec(activation="tanh", init="xavier"), (40,), 10, generator(0, "init"))
    explicit = models.build(ModelSpec(activation="tanh", init="xavier", gain=5 / 3, readout_gain=5 / 3), (40,), 10, generator(0, "init"))
    for a, b in zip(plain.parameters(), explicit.parameters()):
        assert torch.equal(a, b)


def test_presets_pair_each_dataset_with_its_model_and_step_sizes():
    specs = quick().expand()
    pairs = {(s.data.name, s.train.lr) for s in specs}
    assert pairs == {("chebyshev", lr) for lr in (0.05, 0.1, 0.2, 0.4)} | {("mnist1d", lr) for lr in (0.02, 0.05, 0.1)}
    assert {s.model.width for s in specs if s.data.name == "chebyshev"} == {100}
    overridden = quick().override({"train.lr": 0.2, "train.max_steps": 7}).expand()
    assert {(s.train.lr, s.train.max_steps) for s in overridden} == {(0.2, 7)}


def test_preset_cases_accept_a_setting_inside_their_sections():
    specs = quick().override({"data.n_test": 50}).expand()
    assert {s.data.n_test for s in specs} == {50} and {s.data.name for s in specs} == {"chebyshev", "mnist1d"}
    assert all(s.train.optimizer == "gd" and s.train.batch_size is None for s in tiny().expand())


# ---------------------------------------------------------------- the sharpness hook


def _dense_top_eigenvalue(model, loss_fn, x, y) -> float:
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().reshape(-1) for p in params]).double()

    def loss_of(vector):
        chunks, start = [], 0
        for shape in shapes:
            size = math.prod(shape)
            chunks.append(vector[start : start + size].reshape(shape))
            start += size
        names = [name for name, _ in model.named_parameters()]
        out = torch.func.functional_call(model, dict(zip(names, chunks)), (x.double(),))
        return loss_fn(out, y.double())

    hessian = torch.autograd.functional.hessian(loss_of, flat)
    return torch.linalg.eigvalsh(hessian).max().item()


def test_sharpness_hook_tracks_the_dense_hessian_through_training():
    data = datasets.load(CHEB.model_copy(update={"n_train": 12}))
    model = models.build(COHEN_NET.model_copy(update={"width": 16}), data.in_shape, 1, generator(0, "init"))
    loss_fn = LOSSES["mse"]
    hook = sharpness_hook(model, loss_fn, [(data.x_train, data.y_train)], seed=0, cold_every=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    for check in range(4):  # a cold check at 0, warm at 1 and 3, warm + cold at 2
        row = hook(model, check)
        dense = _dense_top_eigenvalue(model.double(), loss_fn, data.x_train, data.y_train)
        model.float()
        assert row["hessian_top"] == pytest.approx(dense, rel=2e-3)
        for _ in range(50):
            optimizer.zero_grad()
            loss_fn(model(data.x_train), data.y_train).backward()
            optimizer.step()


# ---------------------------------------------------------------- the claim on made-up curves


def _curves(lr: float, initial: float, onset: int, steps: int = 100, wobble: float = 0.04, rises: bool = True, plateau: float = 1.0):
    """Sharpness rising linearly from `initial` to plateau * 2/eta at check `onset`, then wobbling; the loss falling
    with a bump every 7 checks after onset."""
    edge = 2.0 / lr
    sharp, loss = [], []
    for i in range(steps):
        if i < onset:
            sharp.append(initial + (plateau * edge - initial) * i / onset)
        else:
            sharp.append(plateau * edge * (1 + wobble * math.sin(i)))
        value = 1.0 / (1 + 0.05 * i)
        loss.append(value * (1.3 if rises and i > onset and i % 7 == 0 else 1.0))
    return {"step": [10.0 * i for i in range(steps)], "hessian_top": sharp, "train_loss": loss}


def _record(name: str, lr: float, curves: dict, status: str = "ok") -> RunRecord:
    spec = RunSpec(experiment="edge-of-stability", data=DataSpec(name="mnist1d"), train=TrainSpec(optimizer="gd", batch_size=None, loss="mse", lr=lr))
    spec = with_values(spec, {"data.name": name, "data.standardize": False})
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id + str(lr), status=status, curves=curves)


def _below(lr: float, top: float) -> dict:
    return {"step": [10.0 * i for i in range(50)], "hessian_top": list(np.linspace(1.0, top, 50)), "train_loss": list(np.linspace(1, 0.5, 50))}


def _good_task(name: str) -> list[RunRecord]:
    return [_record(name, 0.05, _below(0.05, 20.0)), _record(name, 0.2, _curves(0.2, 3.0, 30)), _record(name, 0.4, _curves(0.4, 2.0, 20))]


def test_claim_passes_on_sharpening_then_hovering_with_a_falling_bumpy_loss():
    verdict = claim(_good_task("chebyshev") + _good_task("mnist1d"))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["chebyshev.eta=0.4.onset_step"] == 190.0  # 2 + 3 * 19/20 = 4.85 >= 0.95 * 5 first at check 19
    assert verdict.numbers["chebyshev.eta=0.2.sharpening"] == pytest.approx((3 + 7 * 28 / 30) / 3)  # onset at check 28
    assert verdict.numbers["mnist1d.eta=0.4.loss_rises"] >= 5 and verdict.numbers["mnist1d.edge_runs"] == 2.0


def test_claim_fails_when_sharpness_overshoots_the_band():
    records = _good_task("chebyshev")
    records[-1] = _record("chebyshev", 0.4, _curves(0.4, 2.0, 20, plateau=1.3))
    verdict = claim(records)
    assert not verdict.passed and "eta=0.4: late phase" in verdict.reason


def test_claim_fails_without_progressive_sharpening():
    records = _good_task("chebyshev")
    records[-1] = _record("chebyshev", 0.4, _curves(0.4, 4.5, 5))  # starts at 0.9 of 2/eta
    verdict = claim(records)
    assert not verdict.passed and "its initial value" in verdict.reason


def test_claim_fails_when_the_loss_falls_monotonically():
    records = _good_task("chebyshev")
    records[1] = _record("chebyshev", 0.2, _curves(0.2, 3.0, 30, rises=False))
    verdict = claim(records)
    assert not verdict.passed and "0 rises" in verdict.reason


def test_claim_fails_when_the_small_step_reaches_its_edge_too():
    records = _good_task("chebyshev")
    records[0] = _record("chebyshev", 0.05, _curves(0.05, 3.0, 30))
    verdict = claim(records)
    assert not verdict.passed and "smallest eta 0.05 reached" in verdict.reason


def test_claim_fails_when_the_largest_step_never_reaches_its_edge():
    records = _good_task("chebyshev")
    records[-1] = _record("chebyshev", 0.4, _below(0.4, 3.0))
    verdict = claim(records)
    assert not verdict.passed and "never reached" in verdict.reason


def test_edge_numbers_of_a_run_that_never_reaches():
    numbers = edge_numbers([0, 1, 2], [1.0, 2.0, 3.0], [1.0, 0.9, 0.8], lr=0.1)
    assert not numbers.reached and numbers.max_ratio == pytest.approx(0.15) and numbers.sharpening == 3.0


def test_claim_without_runs_fails_with_a_reason():
    verdict = claim([_record("chebyshev", 0.1, {}, status="diverged")])
    assert not verdict.passed and verdict.reason == "no finished runs with a sharpness curve"


def test_a_run_records_the_sharpness_at_every_evaluation_and_only_gd_is_accepted():
    from biaslab.experiments import CATALOG

    experiment = CATALOG.get("edge-of-stability")
    spec = with_values(experiment.sweep("tiny").expand()[-1], {"train.max_steps": 200, "train.eval_every": 50})
    record = experiment.run(spec)
    assert record.status == "ok", record.error
    assert record.curves["step"] == [0.0, 50.0, 100.0, 150.0, 200.0]
    assert all(value > 0 for value in record.curves["hessian_top"]) and record.final["two_over_eta"] == pytest.approx(2 / spec.train.lr)
    assert all(math.isnan(value) for value in record.curves["train_error"])  # regression: no 0-1 error
    with pytest.raises(SpecError, match=r"train\.optimizer"):
        experiment.check(with_values(spec, {"train.optimizer": "sgd", "train.batch_size": 10}))
