"""The contract every catalog entry keeps, run at `tiny` scale, one experiment per test (select one with -k NAME);
every module of the catalog registers an experiment; and the width-sweep claim on made-up numbers."""

from __future__ import annotations

import importlib
import math
import pkgutil

import pytest
from matplotlib.figure import Figure

import biaslab.experiments
from biaslab.claims import Verdict
from biaslab.experiments import CATALOG
from biaslab.spec import RunSpec
from biaslab.store import RunRecord, Store
from biaslab.sweep import run_sweep



@pytest.mark.slow
@pytest.mark.parametrize("name", CATALOG.names())
def test_catalog_entry_contract(name, tmp_path):
    experiment = CATALOG.get(name)
    assert experiment.title and experiment.reference and experiment.summary
    assert {"tiny", "quick", "paper"} <= set(experiment.presets)
    assert experiment.__module__ and CATALOG.get(name).__class__.__module__.startswith("biaslab.experiments.")
    assert len((__import__(experiment.__class__.__module__, fromlist=["_"]).__doc__ or "")) > 300  # explains figure and reductions
    specs = experiment.sweep("tiny").expand()
    for spec in specs:  # spec round trip, and the experiment admits its own presets
        again = RunSpec.model_validate_json(spec.model_dump_json())
        assert again == spec and again.spec_id == spec.spec_id
        experiment.check(spec)
    store = Store(tmp_path)
    outcome = run_sweep(experiment.sweep("tiny"), store, "tiny", executor="inprocess")
    assert len(outcome.records) == len({s.spec_id for s in specs})  # records written
    assert {r.spec_id for r in store.records(name)} >= {s.spec_id for s in specs}
    assert all(r.status == "ok" for r in outcome.records)
    assert experiment.missing_probes(outcome.records) is None  # the presets measure what the claim reads
    figures = experiment.figures(outcome.records)
    assert figures and all(isinstance(f, Figure) and any(ax.has_data() for ax in f.axes) for f in figures.values())
    verdict = experiment.claim(outcome.records)
    assert isinstance(verdict, Verdict) and verdict.reason
    assert verdict.numbers and all(isinstance(v, float) for v in verdict.numbers.values())
    for preset in experiment.presets:  # every preset expands to valid specs
        assert experiment.sweep(preset).expand()


def _record(width: int, seed: int, noise: float, train_error: float, test_error: float) -> RunRecord:
    spec = RunSpec(experiment="width-sweep", seed=seed)
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"width": width}), "data": spec.data.model_copy(update={"label_noise": noise})})
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final={"train_error": train_error, "test_error": test_error})


def _records(test_errors: dict[int, float], train_errors: dict[int, float], noise: float = 0.0) -> list[RunRecord]:
    return [_record(w, s, noise, train_errors[w], test_errors[w] + 0.001 * s) for w in test_errors for s in (0, 1)]


TRAIN = {8: 0.3, 16: 0.1, 32: 0.0, 64: 0.0, 128: 0.0}
claim = CATALOG.get("width-sweep").claim


def test_width_sweep_passes_when_test_error_falls_past_interpolation():
    verdict = claim(_records({8: 0.5, 16: 0.45, 32: 0.44, 64: 0.43, 128: 0.42}, TRAIN))
    assert verdict.passed
    assert verdict.numbers["interpolation_width"] == 32 and verdict.numbers["spearman_width_vs_test_error"] == -1.0


def test_width_sweep_fails_when_test_error_rises_past_interpolation():
    verdict = claim(_records({8: 0.5, 16: 0.45, 32: 0.40, 64: 0.43, 128: 0.46}, TRAIN))
    assert not verdict.passed and verdict.numbers["test_error_at_widest"] > verdict.numbers["test_error_at_interpolation"]


def test_width_sweep_fails_when_no_width_interpolates():
    verdict = claim(_records({8: 0.5, 16: 0.45, 32: 0.44}, {8: 0.3, 16: 0.2, 32: 0.01}))
    assert not verdict.passed and "no width" in verdict.reason


def test_width_sweep_ignores_noisy_runs_for_the_verdict_and_notes_the_bump():
    clean = _records({8: 0.5, 16: 0.45, 32: 0.44, 64: 0.43, 128: 0.42}, TRAIN)
    noisy = _records({8: 0.5, 16: 0.48, 32: 0.60, 64: 0.50, 128: 0.47}, TRAIN, noise=0.15)
    verdict = claim(clean + noisy)
    assert verdict.passed
    assert any("a bump near the interpolation width" in note for note in verdict.notes)


def test_width_sweep_uses_the_seed_mean():
    records = _records({8: 0.5, 32: 0.44, 64: 0.43, 128: 0.42}, TRAIN)
    records.append(_record(128, 2, 0.0, 0.0, 0.9))  # one bad seed at the widest width moves the mean above the first
    verdict = claim(records)
    assert not verdict.passed and verdict.numbers["test_error_at_widest"] > verdict.numbers["test_error_at_interpolation"]
    assert verdict.numbers["n_seeds"] == 3.0 and "(PASS needs widest <= first and rho <= 0)" in verdict.reason  # the bad seed counted


def test_every_module_of_the_catalog_registers_an_experiment():
    registered = {CATALOG.get(name).__class__.__module__ for name in CATALOG}
    helpers = biaslab.experiments.HELPER_MODULES
    modules = {f"biaslab.experiments.{m.name}" for m in pkgutil.iter_modules(biaslab.experiments.__path__) if m.name not in helpers}
    for module in modules:
        importlib.import_module(module)
    assert modules == registered, f"modules without an experiment: {sorted(modules - registered)}"
