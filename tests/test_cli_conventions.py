"""CLI conventions: --version, a list that fits 100 columns, `config` (resolved sweep as YAML, settable fields), --config FILE.yaml."""

from __future__ import annotations

import pytest
import yaml

from biaslab import __version__
from biaslab.cli import LIST_WIDTH, main
from biaslab.experiments import CATALOG
from biaslab.store import Store


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"biaslab {__version__}"


def test_list_fits_a_100_column_terminal_and_long_says_more(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(list(CATALOG)) + 1 and max(map(len, lines)) <= LIST_WIDTH
    assert main(["list", "--long"]) == 0
    long_text = capsys.readouterr().out
    assert "presets: tiny, quick, paper" in long_text and CATALOG.get("min-norm").reference in long_text


def test_config_prints_the_resolved_sweep_as_yaml(capsys):
    assert main(["config", "width-sweep", "--preset", "tiny", "--set", "train.lr=0.2"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    sweep = CATALOG.get("width-sweep").sweep("tiny").override({"train.lr": 0.2})
    assert resolved["base"] == sweep.base.model_dump(mode="json") and resolved["base"]["train"]["lr"] == 0.2
    assert resolved["runs"] == len(sweep.expand()) and resolved["grid"] == {k: list(v) for k, v in sweep.grid.items()}


def test_config_fields_lists_type_value_and_allowed_values(capsys):
    assert main(["config", "width-sweep", "--preset", "tiny", "--fields"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "float" in lines["train.lr"] and "[> 0.0]" in lines["train.lr"]
    assert "(swept)" in lines["model.width"] and "one of sgd" not in lines["model.width"]
    assert "[one of gd, sgd, adam, adamw, sam, asam, sign_descent, coordinate_descent]" in lines["train.optimizer"]


@pytest.mark.parametrize("text", ["train:\n  lr: 0.2\n  max_steps: 50\n", "train.lr: 0.2\ntrain.max_steps: 50\n"])
def test_a_config_file_sets_what_set_would(tmp_path, capsys, text):
    (tmp_path / "c.yaml").write_text(text)
    assert main(["config", "min-norm", "--preset", "tiny", "--config", str(tmp_path / "c.yaml")]) == 0
    from_file = yaml.safe_load(capsys.readouterr().out)
    assert main(["config", "min-norm", "--preset", "tiny", "--set", "train.lr=0.2", "--set", "train.max_steps=50"]) == 0
    assert from_file == yaml.safe_load(capsys.readouterr().out)


def test_set_wins_over_the_config_file_and_run_honours_both(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  max_steps: 30\n  lr: 0.5\n")
    store = tmp_path / "store"
    args = ["run", "min-norm", "--preset", "tiny", "--config", str(tmp_path / "c.yaml"), "--set", "train.lr=0.25", "--store", str(store), "--no-report"]
    assert main(args) == 0
    trains = {(r.spec["train"]["max_steps"], r.spec["train"]["lr"]) for r in Store(store).records()}
    assert trains == {(30, 0.25)}


@pytest.mark.parametrize(
    "text, message",
    [
        ("train: [1, 2\n", "is not valid YAML"),
        ("- 1\n- 2\n", "must hold a mapping of field paths to values, got a list"),
        ("train:\n  speed: 3\n", "train.speed: unknown field 'speed'"),
        ("train:\n  lr: -1\n", "train.lr"),
    ],
)
def test_a_bad_config_file_is_one_line(tmp_path, capsys, text, message):
    (tmp_path / "c.yaml").write_text(text)
    assert main(["config", "min-norm", "--preset", "tiny", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    assert main(["run", "min-norm", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "--config: no such file" in capsys.readouterr().err


def test_run_says_its_plan_first_and_what_is_stored_already(tmp_path, capsys):
    args = ["run", "min-norm", "--preset", "tiny", "--store", str(tmp_path), "--no-report", "--executor", "inprocess"]
    assert main(args) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("min-norm (tiny): 2 runs, 0 already in the store; 2 to run as 2 jobs in this process (4000 steps); memory: up to ")
    assert "GB per run (estimated), 1 at a time within" in first  # the largest estimate; in-process: one at a time
    assert main(args) == 0
    assert capsys.readouterr().err.splitlines()[0].startswith("min-norm (tiny): 2 runs, 2 already in the store; 0 to run")


def test_a_busy_machine_is_said_in_one_line(monkeypatch):
    import os

    from biaslab import cli

    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 0.0, 0.0))
    assert "the machine is busy (load average 64.0" in cli._busy_note()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert cli._busy_note() is None
