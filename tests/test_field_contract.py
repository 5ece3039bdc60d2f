"""No spec field is accepted and ignored: for every experiment, each settable field, changed on its own at tiny
scale, either changes the run's numbers or is refused before the run with a line that names a field.

The changed values come from the fields' types and bounds (tests/field_variants.py), so a field added to the spec
is covered here without editing this file. One spec per kind of run in the tiny sweep (a problem, an estimator
kind, a network on a dataset) is varied, since one experiment's studies read different fields.
"""

from __future__ import annotations

import json
import re
import typing

import pytest
from pydantic import BaseModel

from biaslab.experiments import CATALOG, Experiment
from biaslab.experiments.base import covers
from biaslab.spec import RunSpec, SpecError, settable_fields, with_values
from biaslab.store import RunRecord
from field_variants import field_changes

# accepted, and rightly unchanged in these tiny runs: why, and the test that this is the case (the changed spec's
# field value, the experiment's tiny spec and its baseline record)
def _steps(record: RunRecord) -> float:
    return record.final.get("steps", float("inf"))


UNCHANGED_ALLOWED = {
    "train.stop_zero_error_evals": ("stops a run at zero training error, which this tiny run never reaches (tested in test_train)",
                                    lambda value, spec, record: min(record.curves.get("train_error") or [1.0]) > 0),
    "train.max_steps": ("the run stopped by its own rule before either budget",
                        lambda value, spec, record: _steps(record) <= value and record.env.get("stopped") != "budget"),
    "train.decay_every": ("the run ended before the first decay at either period",
                          lambda value, spec, record: _steps(record) < min(value, spec.train.decay_every)),
    "train.schedule": ("a step schedule's first decay comes after the run ended",
                       lambda value, spec, record: value == "step" and _steps(record) < spec.train.decay_every),
    "train.lr_decay": ("the run ended before the first decay",
                       lambda value, spec, record: _steps(record) < spec.train.decay_every),
    "seed": ("the run draws nothing at random: a deterministic estimator on data drawn by data.seed, or IGR's two-parameter model",
             lambda value, spec, record: getattr(spec.estimator, "kind", None) in ("kernel_ridge", "min_norm", "polynomial") and spec.problem is None
             or getattr(spec.problem, "model", None) == "two_parameter"),
    "data.inputs": ("an RBF kernel sees distances only, which a fixed permutation of the positions keeps (the paper's point)",
                    lambda value, spec, record: getattr(spec.estimator, "kind", None) == "kernel_ridge" and value == "shuffled_pixels"),
    "estimator.axis": ("names the curve a run is drawn on (model- or sample-wise); it decides no number",
                       lambda value, spec, record: True),
    "data.standardize": ("trees split on per-feature thresholds, which a per-feature affine map leaves in place",
                         lambda value, spec, record: spec.estimator is not None and spec.estimator.kind in ("random_forest", "boosting")),
}  # fmt: skip

NAMES_A_FIELD = re.compile(r"^[a-z_0-9]+(\.[a-z_0-9]+)*[: ]")


def kinds_of_run(experiment: Experiment) -> list[RunSpec]:
    """The first tiny spec of each kind of run: the fields it reads, its problem kind and its estimator kind (whose
    settings differ by kind); datasets and architectures of one kind go through the same code, so one is varied."""
    first: dict[tuple, RunSpec] = {}
    for spec in experiment.sweep("tiny").expand():
        kind = (experiment.reads_of(spec), getattr(spec.problem, "kind", None), getattr(spec.estimator, "kind", None))
        first.setdefault(kind, spec)
    return list(first.values())


def numbers(record: RunRecord) -> str:
    """What a run measured, NaN-safe for comparison (provenance and timing left out)."""
    return json.dumps([record.status, record.final, record.curves, record.arrays], sort_keys=True, default=str)


def outcome(experiment: Experiment, spec: RunSpec, path: str, value: object, baseline: RunRecord) -> str | None:
    """None when the change is honoured (the numbers change) or refused with a line naming a field; else what went wrong."""
    try:
        changed = with_values(spec, {path: value})
        experiment.check(changed)
    except SpecError as error:
        return None if NAMES_A_FIELD.match(str(error)) else f"{path}={value!r}: refused with a line naming no field: {error}"
    record = experiment.run(changed)
    if record.status == "failed":  # a diverged run is a run whose numbers the field changed
        return f"{path}={value!r}: accepted, then the run failed: {(record.error or 'no error recorded').strip().splitlines()[-1]}"
    if numbers(record) != numbers(baseline) or path in UNCHANGED_ALLOWED and UNCHANGED_ALLOWED[path][1](value, spec, baseline):
        return None
    if path != "seed" and _differs_at_another_seed(experiment, spec, changed):
        return None  # a coarse measure (an accuracy on a few hundred points) can coincide once, not at two seeds
    return f"{path}={value!r}: accepted and ignored (the run's numbers are unchanged, at two seeds)"


def _differs_at_another_seed(experiment: Experiment, spec: RunSpec, changed: RunSpec) -> bool:
    """Whether the change shows at seed + 1 (with the spec's other fields as they are)."""
    other = {"seed": spec.seed + 1}
    return numbers(experiment.run(with_values(spec, other))) != numbers(experiment.run(with_values(changed, other)))


@pytest.mark.parametrize("name", CATALOG.names())
def test_every_field_it_does_not_read_is_refused(name):
    """Fast half of the contract (validation only, no run): each field outside what the experiment reads, changed
    on its own, is refused before the run with a line that names a field."""
    experiment = CATALOG.get(name)
    for spec in kinds_of_run(experiment):
        reads = experiment.reads_of(spec)
        for path, value in field_changes(spec):
            if covers(reads, path):
                continue
            with pytest.raises(SpecError) as refused:
                experiment.check(with_values(spec, {path: value}))
            assert NAMES_A_FIELD.match(str(refused.value)), str(refused.value)


@pytest.mark.contract
@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", CATALOG.names())
def test_every_field_is_honoured_or_refused(name):
    """The whole contract: hundreds of tiny runs (about 25 minutes on two loaded cores), so it runs on demand:
    `pytest -m contract tests/test_field_contract.py`."""
    experiment = CATALOG.get(name)
    problems = []
    for spec in kinds_of_run(experiment):
        baseline = experiment.run(spec)
        assert baseline.status == "ok", baseline.error
        assert numbers(experiment.run(spec)) == numbers(baseline), "the tiny run is not deterministic: the test cannot tell"
        for path, value in field_changes(spec):
            problem = outcome(experiment, spec, path, value, baseline)
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", CATALOG.names())
def test_the_fields_an_experiment_reads_exist(name):
    """`reads` names real fields or sections, so a typo cannot quietly admit or refuse a field (where `reads` is a
    function of the spec, what it gives for each spec of the tiny preset)."""
    paths = {row["path"] for row in _all_paths()}
    sections = {p.split(".")[0] for p in paths if "." in p}
    experiment = CATALOG.get(name)
    for read in {read for spec in experiment.sweep("tiny").expand() for read in experiment.reads_of(spec)}:
        assert read in paths or read in sections, f"{name} reads {read!r}, which is no field or section of a RunSpec"


def _all_paths() -> list[dict]:
    """Every field of a RunSpec, and every field of every problem kind."""
    full = RunSpec.model_validate({"problem": {"kind": "least_squares"}, "estimator": {"kind": "min_norm"}, "dtype": "float64"})
    problems = _models_in(RunSpec.model_fields["problem"].annotation)
    return settable_fields(full) + [{"path": f"problem.{field}"} for cls in problems for field in cls.model_fields]


def _models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic classes inside a (possibly Annotated, Optional or Union) annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]
