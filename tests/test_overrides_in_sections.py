"""Overrides inside grid axes of whole sections, unset sections, and fields a runner would ignore."""

from __future__ import annotations

import pytest

from biaslab.cli import main
from biaslab.experiments import CATALOG
from biaslab.spec import RunSpec, SpecError, parse_override, with_values


def test_a_field_inside_a_section_axis_is_set_in_every_value():
    sweep = CATALOG.get("max-margin").sweep("tiny").override({"train.max_steps": 7})
    assert {spec.train.max_steps for spec in sweep.expand()} == {7}
    assert {spec.train.optimizer for spec in sweep.expand()} == {"gd", "adam"}  # the axis keeps its values


def test_setting_inside_an_unset_section_names_it():
    with pytest.raises(SpecError, match="problem is not set"):
        with_values(RunSpec(), {"problem.n": 5})


def test_null_resets_an_optional_text_field():
    assert parse_override("data.root=null") == ("data.root", None)
    assert parse_override("data.root=2024") == ("data.root", "2024")


@pytest.mark.parametrize(
    "experiment, assignment, field",
    [("max-margin", "train.optimizer=adamw", "train.optimizer"), ("diagonal-networks", "train.momentum=0.9", "train.momentum"), ("max-margin", "train.weight_decay=0.1", "train.weight_decay")],
)
def test_fields_a_runner_would_ignore_are_refused_before_the_sweep(experiment, assignment, field, tmp_path, capsys):
    assert main(["run", experiment, "--preset", "tiny", "--set", assignment, "--store", str(tmp_path / "s")]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and field in message and ("supports" in message or "read" in message)
