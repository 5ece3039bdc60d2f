"""batch-size-sharpness: the linear path's endpoints, the epoch-matched schedules, the function-preserving rescaling,
the spec checks, and the claim on made-up records that pass and that fail."""

from __future__ import annotations

import pytest
import torch

from biaslab import data as datasets
from biaslab import models
from biaslab.experiments import CATALOG
from biaslab.experiments.batch_size_sharpness import MEASURES, claim, label, measure, rescaled, schedule_for
from biaslab.probes import error_and_loss
from biaslab.probes.core import snapshot
from biaslab.probes.landscape import line
from biaslab.runtime import generator
from biaslab.spec import DataSpec, ModelSpec, RunSpec, SpecError, TrainSpec, with_values
from biaslab.store import RunRecord
from biaslab.train import LOSSES

SPEC = ModelSpec(kind="mlp", width=16, depth=2, activation="relu")


def _two_models():
    data = datasets.load(DataSpec(name="mnist1d", n_train=60, n_test=40))
    a = models.build(SPEC, data.in_shape, 10, generator(0, "init"))
    b = models.build(SPEC, data.in_shape, 10, generator(1, "init"))
    return data, a, b


# ---------------------------------------------------------------- the linear path


def test_interpolation_endpoints_are_the_two_solutions_losses():
    data, a, b = _two_models()
    loss_fn = LOSSES["cross_entropy"]
    path = line(a, loss_fn, data.x_train, data.y_train, snapshot(a), snapshot(b), [0.0, 1.0])
    at_a = error_and_loss(a, loss_fn, data.x_train, data.y_train, "t")
    at_b = error_and_loss(b, loss_fn, data.x_train, data.y_train, "t")
    assert path.loss.tolist() == [pytest.approx(at_a["t_loss"], rel=1e-6), pytest.approx(at_b["t_loss"], rel=1e-6)]
    assert path.error.tolist() == [pytest.approx(at_a["t_error"]), pytest.approx(at_b["t_error"])]


def test_interpolation_midpoint_is_the_averaged_network_and_the_model_is_untouched():
    data, a, b = _two_models()
    before = snapshot(a)
    loss_fn = LOSSES["cross_entropy"]
    path = line(a, loss_fn, data.x_train, data.y_train, snapshot(a), snapshot(b), [0.5])
    average = models.build(SPEC, data.in_shape, 10, generator(0, "init"))
    with torch.no_grad():
        for p, q in zip(average.parameters(), b.parameters()):
            p.copy_(0.5 * p + 0.5 * q)
    assert path.loss[0] == pytest.approx(loss_fn(average(data.x_train), data.y_train).item(), rel=1e-5)
    assert all(torch.equal(before[name], p) for name, p in a.named_parameters())


def test_interpolation_needs_one_architecture():
    data, a, _ = _two_models()
    with pytest.raises(ValueError, match="same parameter names"):
        line(a, LOSSES["cross_entropy"], data.x_train, data.y_train, snapshot(a), {"x": torch.zeros(1)}, [0.0])


# ---------------------------------------------------------------- schedules, rescaling, measures


def test_every_batch_size_gets_the_same_epochs():
    train = TrainSpec(optimizer="adam", batch_size=32, batch_sizes=(32, 200, None), max_steps=630, eval_every=63)
    n = 2000  # 630 steps of 32, at ceil(2000 / 32) = 63 steps per epoch: 10 epochs
    small, large, full = (schedule_for(train, b, n) for b in (32, 200, None))
    assert (small.max_steps, small.eval_every, small.batch_size) == (630, 63, 32)
    assert (large.max_steps, large.eval_every, large.batch_size) == (100, 10, 200)  # 10 epochs of 10 steps, one eval per epoch
    assert (full.max_steps, full.eval_every, full.batch_size) == (10, 1, None)
    assert large.batch_sizes == () and large.lr == train.lr  # same lr for every batch size


def test_rescaling_keeps_the_function_and_moves_the_hessian_but_not_adaptive_sharpness():
    data, a, _ = _two_models()
    twin = rescaled(a, 4.0)
    assert torch.allclose(a(data.x_train), twin(data.x_train), atol=1e-5)
    loss_fn, batches = LOSSES["cross_entropy"], [(data.x_train, data.y_train)]
    original, moved = measure(a, loss_fn, batches, 0), measure(twin, loss_fn, batches, 0)
    assert abs(moved["hessian_top"] / original["hessian_top"] - 1) > 0.5
    assert moved["sharpness_adaptive"] == pytest.approx(original["sharpness_adaptive"], rel=0.05)


def test_labels_name_batch_sizes():
    assert label(32) == "b32" and label(None) == "full"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"train.batch_sizes": [32]}, "at least two"),
        ({"train.batch_sizes": [64, 200]}, "train.batch_size: must be the first"),
        ({"train.batch_sizes": [32, 16]}, "the first must be the smallest"),
        ({"train.batch_sizes": [32, 200, 200]}, "repeated"),
    ],
)
def test_check_rejects_batch_sizes_it_cannot_compare(values, message):
    experiment = CATALOG.get("batch-size-sharpness")
    spec = with_values(experiment.sweep("tiny").expand()[0], {"train.batch_size": 32} | values)
    with pytest.raises(SpecError, match=message):
        experiment.check(spec)


def test_batch_sizes_must_be_positive_or_null():
    with pytest.raises(SpecError, match=r"train\.batch_sizes"):
        with_values(RunSpec(), {"train.batch_sizes": [32, 0]})
    assert with_values(RunSpec(), {"train.batch_sizes": [32, None]}).train.batch_sizes == (32, None)


# ---------------------------------------------------------------- the claim on made-up records


def _record(seed: int, small: dict[str, float], large: dict[str, float], full: dict[str, float]) -> RunRecord:
    spec = RunSpec(experiment="batch-size-sharpness", seed=seed, train=TrainSpec(optimizer="adam", batch_size=32, batch_sizes=(32, 200, None)))
    final = {}
    for name, values in (("b32", small), ("b200", large), ("full", full)):
        final |= {f"{name}.{k}": v for k, v in values.items()}
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final)


def _values(scale: float, test_error: float) -> dict[str, float]:
    return {"hessian_top": 10 * scale, "sharpness_keskar": 2 * scale, "sharpness_adaptive": 0.1 * scale, "test_error": test_error}


def test_claim_passes_when_larger_batches_are_sharper_on_every_measure_and_seed():
    records = [_record(s, _values(1, 0.30), _values(2 + s, 0.31 - 0.02 * s), _values(3, 0.35)) for s in range(3)]
    verdict = claim(records)
    assert verdict.passed, verdict.reason
    assert verdict.numbers["b200.hessian_top.min_ratio"] == pytest.approx(2.0)
    assert verdict.numbers["full.sharpness_adaptive.mean_ratio"] == pytest.approx(3.0)
    assert verdict.numbers["b200.test_error_diff.mean"] == pytest.approx(-0.01)
    assert any("b200" in n and "covers zero: no sign is asserted" in n for n in verdict.notes)
    assert any("full is worse on every seed" in n for n in verdict.notes)


def test_claim_fails_when_one_seed_has_one_flatter_measure():
    records = [_record(s, _values(1, 0.3), _values(2, 0.3), _values(3, 0.3)) for s in range(3)]
    flatter = _values(2, 0.3) | {"sharpness_keskar": 1.5}
    records[1] = _record(1, _values(1, 0.3), flatter, _values(3, 0.3))
    verdict = claim(records)
    assert not verdict.passed and "b200 vs b32 seed 1: sharpness_keskar ratio 0.750" in verdict.reason


def test_claim_test_accuracy_difference_does_not_decide_the_verdict():
    records = [_record(s, _values(1, 0.40), _values(2, 0.30), _values(3, 0.30)) for s in range(2)]  # larger batches better
    verdict = claim(records)
    assert verdict.passed and any("b200 is better on every seed" in n for n in verdict.notes)


def test_claim_without_finished_runs_fails():
    empty = claim([])
    assert not empty.passed and empty.reason == "no finished runs to compare" and empty.numbers == {"n_seeds": 0.0}
    assert set(MEASURES) == {"hessian_top", "sharpness_keskar", "sharpness_adaptive"}


def test_a_run_stores_a_path_whose_endpoints_are_the_two_solutions_training_losses():
    experiment = CATALOG.get("batch-size-sharpness")
    spec = with_values(experiment.sweep("tiny").expand()[0], {"train.max_steps": 40, "train.eval_every": 20})
    record = experiment.run(spec)
    assert record.status == "ok", record.error
    alphas = record.arrays["interp_alpha"]
    start, end = alphas.index(0.0), alphas.index(1.0)
    for other in ("b100", "full"):
        path = record.arrays[f"interp.{other}.train_loss"]
        assert path[start] == pytest.approx(record.final["b30.train_loss"], rel=1e-5)
        assert path[end] == pytest.approx(record.final[f"{other}.train_loss"], rel=1e-5)
    assert record.final["b30.steps"] == 40 and record.final["b100.steps"] == 12 and record.final["full.steps"] == 4  # 4 epochs each
    assert all(f"{size}.{m}" in record.final for size in ("b30", "b100", "full") for m in MEASURES)
