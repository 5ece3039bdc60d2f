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
from biaslab.spec import RunSpec, SpecError, settable_fields, with_values
from biaslab.store import RunRecord
from field_variants import field_changes

NAMES_A_FIELD = re.compile(r"^[a-z_0-9]+(\.[a-z_0-9]+)*[: ]")


def kinds_of_run(experiment: Experiment) -> list[RunSpec]:
    """The first tiny spec of each kind of run: problem kind, estimator kind, model kind and dataset."""
    first: dict[tuple, RunSpec] = {}
    for spec in experiment.sweep("tiny").expand():
        kind = (getattr(spec.problem, "kind", None), getattr(spec.estimator, "kind", None), spec.model.kind, spec.data.name)
        first.setdefault(kind, spec)
    return list(first.values())


def numbers(record: RunRecord) -> str:
    """What a run measured, NaN-safe for comparison (provenance and timing left out)."""
    return json.dumps([record.status, record.final, record.curves, record.arrays], sort_keys=True, default=str)


def outcome(experiment: Experiment, spec: RunSpec, path: str, value: object, baseline: str) -> str | None:
    """None when the change is honoured (the numbers change) or refused with a line naming a field; else what went wrong."""
    try:
        changed = with_values(spec, {path: value})
        experiment.check(changed)
    except SpecError as error:
        return None if NAMES_A_FIELD.match(str(error)) else f"{path}={value!r}: refused with a line naming no field: {error}"
    record = experiment.run(changed)
    if record.status != "ok":
        return f"{path}={value!r}: accepted, then the run failed: {(record.error or '').strip().splitlines()[-1]}"
    if numbers(record) == baseline:
        return f"{path}={value!r}: accepted and ignored (the run's numbers are unchanged)"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("name", CATALOG.names())
def test_every_field_is_honoured_or_refused(name):
    experiment = CATALOG.get(name)
    problems = []
    for spec in kinds_of_run(experiment):
        baseline = experiment.run(spec)
        assert baseline.status == "ok", baseline.error
        assert numbers(experiment.run(spec)) == numbers(baseline), "the tiny run is not deterministic: the test cannot tell"
        for path, value in field_changes(spec):
            problem = outcome(experiment, spec, path, value, numbers(baseline))
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", CATALOG.names())
def test_the_fields_an_experiment_reads_exist(name):
    """`reads` names real fields or sections, so a typo cannot quietly admit or refuse a field."""
    paths = {row["path"] for row in _all_paths()}
    sections = {p.split(".")[0] for p in paths if "." in p}
    for read in CATALOG.get(name).reads:
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
