"""The read-only-when rule tables of the spec sections, and the union override that asks them which parts read a field.

Each rule is checked against the validator it feeds: a field set away from its default is refused exactly where the
rule says it is not read. A union sweep sends an override only to the parts whose runs read the field, decided from
the tables (not from error text) and without validating any grid twice.
"""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel, ValidationError

from biaslab.spec import BackwardError, DataSpec, EstimatorSpec, ImplicitRegularizer, ModelSpec, RunSpec, SpecError, Sweep, TrainSpec
from biaslab.spec.rules import is_read

SECTIONS = (DataSpec, ModelSpec, TrainSpec, EstimatorSpec, BackwardError, ImplicitRegularizer)
SPECIAL = {  # where one step from the default is not valid on its own: 98 is no prime, 4 batches must divide the points
    (DataSpec, "modulus"): 101, (TrainSpec, "betas"): (0.8, 0.99), (DataSpec, "root"): "files",
    (BackwardError, "n_points"): 20, (BackwardError, "batches"): 8,
}  # fmt: skip


def _choices(annotation: typing.Any) -> tuple:
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()


def _changed(model: type[BaseModel], name: str) -> typing.Any:
    """A valid value of field `name` that is not its default."""
    if (model, name) in SPECIAL:
        return SPECIAL[(model, name)]
    field = model.model_fields[name]
    default, choices = field.default, _choices(field.annotation)
    if choices:
        return next(c for c in choices if c != default)
    if isinstance(default, bool):
        return not default
    if default is None:
        return 4
    return default + 1 if isinstance(default, int) else (default / 2 if default else 0.5)


RULES = [(model, rule) for model in SECTIONS for rule in model.READ_ONLY_WHEN]


def test_every_section_with_a_rule_validator_has_a_table():
    assert all(model.READ_ONLY_WHEN for model in SECTIONS)


@pytest.mark.parametrize("model, rule", RULES, ids=[f"{m.__name__}.{r[0]}" for m, r in RULES])
def test_a_field_is_refused_exactly_where_its_rule_says_it_is_not_read(model, rule):
    name, decider, values = rule
    assert name in model.model_fields and decider in model.model_fields
    for choice in _choices(model.model_fields[decider].annotation):
        settings = {decider: choice, name: _changed(model, name)}
        assert is_read(model.model_construct(**settings), name) == (choice in values)
        try:
            model(**settings)
        except ValidationError as error:  # refused: for this rule where it is not read; perhaps by another check where it is
            assert choice not in values or f".{name}: read only when" not in str(error), (settings, str(error))
            continue
        assert choice in values, settings  # accepted: the field is read


def _union(*parts: Sweep) -> Sweep:
    return parts[0].model_copy(update={"also": parts[1:]})


def test_an_override_goes_only_to_the_parts_that_read_it(monkeypatch):
    base = RunSpec(experiment="e", data=DataSpec(name="teacher"))
    teacher = Sweep(base=base, grid={"seed": (0, 1), "data.dim": (3, 4)})
    mixed = Sweep(base=base, grid={"data.name": ("teacher", "mnist1d")})
    digits = Sweep(base=RunSpec(experiment="e", data=DataSpec(name="digits")))
    union = _union(teacher, mixed, digits)
    expands = []
    monkeypatch.setattr(Sweep, "expand", lambda self, _expand=Sweep.expand: expands.append(1) or _expand(self))
    done = union.override({"data.dim": 7, "train.lr": 0.01, "data.teacher_width": 32})
    assert len(expands) == 3  # each part's result validated once; deciding who takes what validates nothing
    own, *also = (done, *done.also)
    assert {spec.data.dim for spec in Sweep.expand(own.model_copy(update={"also": ()}))} == {7}
    assert {spec.data.dim for part in also for spec in part.expand()} == {20}  # mnist1d runs read no dim
    assert {spec.train.lr for spec in done.expand()} == {0.01}
    swept = union.override({"seed": [3], "data.dim": [5, 6]})  # a swept path's values become an axis where taken
    assert swept.grid["data.dim"] == (5, 6) and "data.dim" not in swept.also[0].grid


def test_an_override_no_part_reads_names_the_field():
    union = _union(*(Sweep(base=RunSpec(experiment="e", estimator=EstimatorSpec(kind=kind))) for kind in ("random_forest", "boosting")))
    with pytest.raises(SpecError, match=r"estimator.ridge: read only when estimator.kind is"):
        union.override({"estimator.ridge": 0.5})
    assert union.override({"estimator.ridge": 0.0}).expand() == union.expand()  # the default is no change anywhere
