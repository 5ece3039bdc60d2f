"""The experiment contract: a runner returns a Result; `execute` alone times it, records failures, writes
provenance (seed included), keeps weights when asked, and builds the RunRecord."""

from __future__ import annotations

import sys
import types
import typing

import pytest
import torch

from biaslab.experiments import CATALOG, Experiment, Result, execute
from biaslab.experiments.supervised import PROBES
from biaslab.spec import ProbeName, RunSpec, SpecError
from biaslab.train import Fit

SPEC = RunSpec(seed=7)


def _linear_result(spec: RunSpec) -> Result:
    model = torch.nn.Linear(2, 1)
    fit = Fit(history=[{"step": 0.0, "loss": 2.0}, {"step": 5.0, "loss": 1.0}], stopped="loss", steps=5)
    return Result.of(fit, {"extra": 3.0}, {"w": [1.0, 2.0]}, model=model)


def test_a_result_becomes_a_record_with_curves_final_arrays_and_provenance():
    record = execute(_linear_result, SPEC)
    assert record.status == "ok" and record.spec_id == SPEC.spec_id
    assert record.curves == {"step": [0.0, 5.0], "loss": [2.0, 1.0]}
    assert record.final == {"step": 5.0, "loss": 1.0, "steps": 5.0, "extra": 3.0}
    assert record.arrays == {"w": [1.0, 2.0]}
    assert record.env["seed"] == 7 and record.env["stopped"] == "loss" and "git_commit" in record.env
    assert record.weights is None  # not asked for


def test_weights_are_kept_only_when_the_spec_asks():
    record = execute(_linear_result, SPEC.model_copy(update={"save_weights": True}))
    assert set(record.weights) == {"weight", "bias"}


def test_a_runner_that_raises_gives_a_failed_record_with_its_traceback():
    def broken(spec: RunSpec) -> Result:
        raise RuntimeError("the solver blew up")

    record = execute(broken, SPEC)
    assert record.status == "failed" and "RuntimeError: the solver blew up" in record.error and record.seconds >= 0.0


def test_an_estimate_has_its_row_as_final_metrics_and_no_steps():
    result = Result.estimate([{"test_mse": 0.5}], {"n_train": 10.0})
    assert result.final == {"test_mse": 0.5, "steps": 0.0, "n_train": 10.0} and result.history == [{"test_mse": 0.5}]


def test_every_experiment_declares_its_runner_as_a_plain_function():
    for name in CATALOG:
        runner = CATALOG.get(name).runner
        assert callable(runner) and not hasattr(runner, "__self__"), name  # unbound: no per-class staticmethod needed


def test_a_class_takes_name_presets_runner_claim_and_summary_from_its_module_unless_its_body_sets_them(monkeypatch):
    module = types.ModuleType("an_experiment_module")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # a class reads its module while it is being defined
    source = '''
NAME = "from-module"
def paper(): return "p"
def tiny(): return "t"
def run(spec): return spec
def claim(records): return len(records)
class Declared(Experiment):
    """Line one
    and two."""
    title = "T"
class Overridden(Experiment):
    name = "own"
    summary = "own summary"
    runner = tiny
'''
    module.Experiment = Experiment
    exec(source, module.__dict__)
    declared, overridden = module.Declared, module.Overridden
    assert declared.name == "from-module" and declared.summary == "Line one and two."
    assert list(declared.presets) == ["tiny", "paper"] and declared.presets["paper"]() == "p"  # PRESET_NAMES order
    assert declared().runner("s") == "s" and declared().claim([1, 2]) == 2  # the module's run and claim, unbound
    assert overridden.name == "own" and overridden.summary == "own summary" and overridden().runner() == "t"


def test_save_weights_leaves_the_spec_id_unchanged():
    assert SPEC.model_copy(update={"save_weights": True}).spec_id == SPEC.spec_id
    assert RunSpec().spec_id == RunSpec(save_weights=False).spec_id


def test_the_probe_registry_holds_exactly_the_names_a_spec_accepts():
    assert set(PROBES.names()) == set(typing.get_args(ProbeName))


def test_every_dataset_and_model_kind_a_spec_accepts_has_a_builder_and_no_other():
    """The spec's Literals and the registries that build them name the same things, so neither can drift alone."""
    from biaslab.data import SOURCES
    from biaslab.models import ARCHITECTURES
    from biaslab.spec import DatasetName, ModelSpec

    assert set(SOURCES.names()) == set(typing.get_args(DatasetName))
    assert set(ARCHITECTURES.names()) == set(typing.get_args(ModelSpec.model_fields["kind"].annotation))


def test_every_estimator_kind_a_spec_accepts_is_made():
    from biaslab.estimators import make_estimator
    from biaslab.spec import EstimatorKind, EstimatorSpec, ModelSpec, TrainSpec

    for kind in typing.get_args(EstimatorKind):
        assert make_estimator(EstimatorSpec(kind=kind), ModelSpec(), TrainSpec(), seed=0) is not None, kind


@pytest.mark.slow
@pytest.mark.parametrize("name", CATALOG.names())
def test_probes_and_save_weights_are_honoured_or_refused(name):
    """No field accepted and ignored: with probes and save_weights set, a tiny run either measures the probe and
    keeps the weights, or the experiment refuses the spec at validation with a SpecError naming the field."""
    experiment = CATALOG.get(name)
    admitted = []
    for spec in experiment.sweep("tiny").expand():
        asked = spec.model_copy(update={"probes": ("norms",), "save_weights": True})
        try:
            experiment.check(RunSpec.model_validate(asked.model_dump()))
        except SpecError as error:
            assert str(error).startswith(("probes:", "save_weights:")), error
            with pytest.raises(SpecError, match="^save_weights:"):
                experiment.check(spec.model_copy(update={"save_weights": True}))
            with pytest.raises(SpecError, match="^probes:"):
                experiment.check(spec.model_copy(update={"probes": ("norms",)}))
        else:
            admitted.append(asked)
    assert bool(admitted) == experiment.trains_model
    if admitted:
        record = experiment.run(admitted[0])
        assert record.status == "ok", record.error
        assert "norm_frobenius" in record.curves and "dist_init" in record.curves  # the probe was measured
        assert record.weights, "save_weights was set but no weights were kept"


def test_interpolation_width_is_the_narrowest_width_every_seed_fits():
    import pandas as pd

    from biaslab.claims import interpolation_width

    table = pd.DataFrame({"model.width": [8, 8, 16, 16, 32, 32], "train_error": [0.1, 0.0, 0.0, 0.01, 0.0, 0.0]})
    assert interpolation_width(table) == 32  # at 16 one seed still errs
    assert interpolation_width(table[table["model.width"] < 32]) is None and interpolation_width(table.iloc[0:0]) is None


@pytest.mark.parametrize("name", CATALOG.names())
def test_device_is_refused_where_the_runner_computes_on_the_cpu_whatever_it_says(name):
    experiment = CATALOG.get(name)
    for spec in experiment.sweep("tiny").expand():
        on_gpu = spec.model_copy(update={"device": "cuda"})
        if "device" in experiment.reads_of(spec):
            try:
                experiment.check(on_gpu)
            except SpecError as error:  # a runner may still refuse it for its own reason, never as unread
                assert "does not read" not in str(error), (name, str(error))
        else:
            with pytest.raises(SpecError, match=r"^device: .* does not read this field; leave it at its default \(\"cpu\"\)"):
                experiment.check(on_gpu)
