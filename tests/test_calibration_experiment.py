"""calibration experiment: what a run records against the probe, the claim on made-up records, bad specs."""

from __future__ import annotations

import pytest

from biaslab.experiments import CATALOG, run_spec
from biaslab.experiments.calibration import NAME, PREFIX, interpolation_row, summary_table
from biaslab.spec import DataSpec, ModelSpec, RunSpec, SpecError, TrainSpec
from biaslab.store import RunRecord

experiment = CATALOG.get(NAME)


def test_a_run_records_calibration_at_every_evaluation_and_a_consistent_reliability_table():
    data = DataSpec(name="mnist1d", n_train=100, n_test=150, standardize=False)
    train = TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=50, max_steps=60, eval_every=20)
    record = run_spec(RunSpec(experiment=NAME, data=data, model=ModelSpec(width=32), train=train))
    assert record.status == "ok"
    assert len(record.curves[f"{PREFIX}_ece"]) == len(record.curves["step"]) == 4  # steps 0, 20, 40, 60
    counts = record.arrays["reliability_count"]
    assert sum(counts) == 150
    # the final reliability table's ECE is the last recorded ECE (same probabilities, same 15 bins)
    ece = sum(c / 150 * abs(a - f) for c, a, f in zip(counts, record.arrays["reliability_accuracy"], record.arrays["reliability_confidence"]) if c > 0)
    assert ece == pytest.approx(record.curves[f"{PREFIX}_ece"][-1], abs=1e-6)
    assert 1.0 - record.curves[f"{PREFIX}_accuracy"][-1] == pytest.approx(record.curves["test_error"][-1], abs=1e-6)


def _record(width: int, seed: int, train_errors, eces, nlls, accuracy=0.6) -> RunRecord:
    spec = RunSpec(experiment=NAME, model=ModelSpec(width=width), seed=seed)
    steps = [float(10 * i) for i in range(len(train_errors))]
    curves = {"step": steps, "train_error": list(train_errors), f"{PREFIX}_ece": list(eces), f"{PREFIX}_nll": list(nlls), f"{PREFIX}_accuracy": [accuracy] * len(steps)}
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", curves=curves)


def _records(rise: float, widths=(32, 128), seeds=(0, 1, 2)) -> list[RunRecord]:
    return [
        _record(w, s, [0.5, 0.1, 0.0, 0.0], [0.3, 0.1, 0.1, 0.1 + rise + 0.01 * s], [2.0, 1.2, 1.0, 1.0 + 5 * rise + 0.02 * s])
        for w in widths
        for s in seeds
    ]


def test_interpolation_row_is_the_first_zero_training_error():
    assert interpolation_row(_record(8, 0, [0.3, 0.0, 0.1, 0.0], [0] * 4, [0] * 4)) == 1
    assert interpolation_row(_record(8, 0, [0.3, 0.2], [0] * 2, [0] * 2)) is None
    table = summary_table(_records(0.1))
    assert table["ece_interp"].tolist() == pytest.approx([0.1] * 6) and table["ece_end"].iloc[0] == pytest.approx(0.2)


def test_claim_passes_when_ece_and_nll_rise_past_interpolation():
    verdict = experiment.claim(_records(0.1))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["widths_judged"] == 2.0


def test_claim_fails_when_calibration_does_not_change_past_interpolation():
    verdict = experiment.claim(_records(-0.01))
    assert not verdict.passed and "ECE" in verdict.reason


def test_claim_fails_when_no_width_interpolates_and_notes_widths_that_do_not():
    never = [_record(16, s, [0.5, 0.2, 0.1], [0.1, 0.2, 0.3], [1, 2, 3]) for s in (0, 1)]
    verdict = experiment.claim(never)
    assert not verdict.passed and "no width" in verdict.reason
    assert any("width 16: not every seed" in n for n in experiment.claim(never + _records(0.1)).notes)


def test_the_experiment_refuses_token_models():
    with pytest.raises(SpecError, match="model.kind: .*'mlp', 'cnn'"):
        experiment.check(RunSpec(experiment=NAME, data=DataSpec(name="modular"), model=ModelSpec(kind="transformer")))
