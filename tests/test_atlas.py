"""The bias atlas: what each entry admits, how a cell is built and its rate chosen, and a tiny atlas end to end."""

from __future__ import annotations

import json
import math

import pytest

from biaslab import atlas
from biaslab.cli import main
from biaslab.experiments import CATALOG
from biaslab.spec import SpecError
from biaslab.store import RunRecord, Store
from biaslab.sweep import preflight

ADMITTED = [(e.name, o, a) for e in atlas.atlas_experiments() for o in e.axes.optimizers for a in e.axes.architectures]


def test_every_entry_admits_axes_or_says_why_not_in_one_line():
    for name in CATALOG.names():
        experiment = CATALOG.get(name)
        if experiment.axes is None:
            assert experiment.axes_note.strip() and "\n" not in experiment.axes_note, name
        else:
            assert experiment.axes.effect_sizes and set(experiment.axes.optimizers) <= set(atlas.OPTIMIZERS), name
            assert set(experiment.axes.architectures) <= set(atlas.ARCHITECTURES), name


@pytest.mark.parametrize(("name", "optimizer", "architecture"), ADMITTED)
def test_every_admitted_cell_is_a_valid_sweep_that_trains_with_its_optimizer_and_architecture(name, optimizer, architecture):
    experiment = CATALOG.get(name)
    cell = atlas.Cell(name, optimizer, architecture)
    overrides = atlas.cell_overrides(experiment, cell, "tiny") | {"train.lr": 0.01}
    sweep = atlas.cell_sweep(experiment, "tiny", overrides)
    preflight(sweep)  # the experiment's own check accepts every run
    rule = atlas.OPTIMIZERS[optimizer]
    for spec in sweep.expand():
        full_batch = spec.train.batch_size is None
        assert spec.train.optimizer == ("gd" if rule.optimizer == "sgd" and full_batch else rule.optimizer)
        assert spec.model.kind == architecture and spec.train.lr == 0.01
        if spec.train.optimizer in atlas.SGD_FAMILY:
            assert spec.train.momentum == rule.momentum


def test_the_width_sweeps_effect_size_is_the_test_error_drop_past_interpolation():
    width = CATALOG.get("width-sweep")
    records = []
    for spec in width.sweep("tiny").expand():  # widths 8, 64, 256; noise 0 and 0.15; one seed
        fits = spec.model.width >= 64
        test = {8: 0.5, 64: 0.40, 256: 0.31}[spec.model.width]
        final = {"train_error": 0.0 if fits else 0.2, "test_error": test, "train_loss": 0.01, "test_loss": 1.0}
        records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final))
    verdict = width.verdict(records)
    assert verdict.numbers["test_error_drop"] == pytest.approx(0.40 - 0.31) and verdict.passed
    assert {e.number for e in width.axes.effect_sizes} <= set(verdict.numbers)


def test_adam_replaces_the_momentum_of_an_sgd_experiment_and_full_batch_sgd_is_gd():
    width = CATALOG.get("width-sweep")  # SGD with momentum 0.9, batch 100
    assert atlas.cell_overrides(width, atlas.Cell("width-sweep", "adam", "mlp"), "tiny") == {"train.optimizer": "adam", "train.momentum": 0.0}
    assert atlas.cell_overrides(width, atlas.Cell("width-sweep", "sgd", "cnn"), "tiny") == {"train.optimizer": "sgd", "train.momentum": 0.0, "model.kind": "cnn"}
    grokking = CATALOG.get("grokking")  # full-batch AdamW with betas (0.9, 0.98)
    fields = atlas.cell_overrides(grokking, atlas.Cell("grokking", "sgd+momentum", "token_mlp"), "tiny")
    assert fields == {"train.optimizer": "gd", "train.momentum": 0.9, "train.betas": [0.9, 0.999]}


def test_adamw_without_weight_decay_is_the_adam_cell_and_with_it_is_its_own():
    assert atlas.same_as(CATALOG.get("width-sweep"), atlas.Cell("width-sweep", "adamw", "mlp"), "tiny") == atlas.Cell("width-sweep", "adam", "mlp")
    assert atlas.same_as(CATALOG.get("grokking"), atlas.Cell("grokking", "adamw", "token_mlp"), "tiny") is None


def test_the_pilot_trains_one_run_a_quarter_of_its_budget_at_each_rate_without_stopping():
    width = CATALOG.get("width-sweep")
    sweep = atlas.cell_sweep(width, "quick", {"train.optimizer": "adam", "train.momentum": 0.0})
    pilot = atlas.pilot_sweep(sweep, {"model.width": 128}, (1e-4, 1e-3))
    specs = pilot.expand()
    assert [s.train.lr for s in specs] == [1e-4, 1e-3]
    for spec in specs:
        assert spec.model.width == 128 and spec.seed == 0 and spec.data.label_noise == 0.0
        assert spec.train.max_steps == 1000  # a quarter of 12000 is 3000, capped at PILOT_MAX_STEPS
        assert spec.train.stop_zero_error_evals is None and spec.train.stop_loss is None
    with pytest.raises(SpecError, match="axes.pilot"):
        atlas.pilot_sweep(sweep, {"model.width": 3}, (1e-3,))


def _pilot_record(lr: float, loss: float, status: str = "ok") -> RunRecord:
    spec = CATALOG.get("width-sweep").sweep("tiny").expand()[0]
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"lr": lr})})
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=f"{lr}", status=status, final={"train_loss": loss})


def test_the_rate_with_the_lowest_final_training_loss_wins_and_a_diverged_one_never():
    lr, losses = atlas.chosen_rate([_pilot_record(0.01, 0.5), _pilot_record(0.03, 0.2), _pilot_record(0.1, math.inf, "diverged")])
    assert lr == 0.03 and losses["0.01"] == 0.5 and math.isnan(losses["0.1"])
    assert atlas.chosen_rate([_pilot_record(0.01, 0.2), _pilot_record(0.03, 0.2)])[0] == 0.01  # a tie: the smaller rate
    assert atlas.chosen_rate([_pilot_record(0.1, math.nan, "diverged")])[0] is None


def test_a_bad_preset_experiment_or_optimizer_is_refused_naming_it():
    with pytest.raises(SpecError, match="preset: the atlas has no preset 'huge'"):
        atlas.plan_cells("huge")
    with pytest.raises(SpecError, match="max-margin is not in the atlas"):
        atlas.plan_cells("tiny", experiments=["max-margin"])
    with pytest.raises(SpecError, match="'lion' is not an atlas optimizer"):
        atlas.plan_cells("tiny", optimizers=["lion"])


@pytest.mark.slow
def test_a_tiny_atlas_runs_resumes_and_judges_each_cell_by_its_experiments_claim(tmp_path):
    store = Store(tmp_path / "store")
    options = {"experiments": ["width-sweep"], "optimizers": ["sgd", "adam", "adamw"], "executor": "inprocess"}
    cells = atlas.run_atlas("tiny", store, **options)
    assert [(c.optimizer, c.status) for c in cells] == [("sgd", "run"), ("adam", "run"), ("adamw", "same as Adam")]
    assert cells[2].sweep_id == cells[1].sweep_id and cells[2].lr == cells[1].lr
    entries = {e.sweep_id: e for e in store.sweeps()}
    assert set(entries) == {cells[0].sweep_id, cells[1].sweep_id}  # the pilots' runs are stored without a sweep entry
    pilot_runs = len(store.records()) - sum(len(set(e.spec_ids)) for e in entries.values())
    assert pilot_runs == 2 * len(atlas.OPTIMIZERS["sgd"].lr_grid)
    for cell in cells[:2]:
        assert cell.lr in atlas.OPTIMIZERS[cell.optimizer].lr_grid
        assert entries[cell.sweep_id].overrides["train.lr"] == cell.lr and entries[cell.sweep_id].preset == "tiny"
        best = min((loss, float(rate)) for rate, loss in cell.pilot.items() if not math.isnan(loss))
        assert cell.lr == best[1]
    stored = len(store.records())
    again = atlas.run_atlas("tiny", store, **options)
    assert len(store.records()) == stored and [c.sweep_id for c in again] == [c.sweep_id for c in cells]  # resumed: nothing ran twice
    judged = atlas.judge_all(atlas.load_manifests(store)["tiny"], store)
    width = CATALOG.get("width-sweep")
    for j in judged:
        verdict = width.verdict(store.records_of(entries[j.plan.sweep_id].spec_ids))
        assert j.effects["test_error_drop"] == verdict.numbers.get("test_error_drop", math.nan) or math.isnan(j.effects["test_error_drop"])
        assert j.label == verdict.label and j.seeds == 1 and not j.ranges  # one seed at tiny: no interval
    assert judged[2].reason.startswith("the runs of the Adam cell (no run of this experiment has weight decay): ")
    table = atlas.atlas_table(judged, "tiny")
    assert len(table) == 3 * len(width.axes.effect_sizes) and list(table["status"])[-1] == "same as Adam"


@pytest.mark.slow
def test_the_per_seed_range_brackets_the_effect_judged_on_each_seed_alone(tmp_path):
    store = Store(tmp_path / "store")
    cells = atlas.run_atlas("tiny", store, experiments=["width-sweep"], optimizers=["adam"], executor="inprocess")
    entry = next(e for e in store.sweeps())
    # a second seed of the same cell, as if the preset had two: judged again from the store
    from biaslab.sweep import run_sweep

    sweep = atlas.cell_sweep(CATALOG.get("width-sweep"), "tiny", cells[0].overrides | {"seed": [0, 1]})
    run_sweep(sweep, store, "tiny", dict(entry.overrides) | {"seed": [0, 1]}, executor="inprocess")
    plan = atlas.CellPlan(**{**cells[0].__dict__, "sweep_id": next(e.sweep_id for e in store.sweeps() if "seed" in e.overrides)})
    judged = atlas.judge(plan, store, {e.sweep_id: e for e in store.sweeps()})
    width = CATALOG.get("width-sweep")
    records = store.records_of(next(e for e in store.sweeps() if "seed" in e.overrides).spec_ids)
    per_seed = [width.verdict([r for r in records if r.run_spec.seed == s]).numbers.get("test_error_drop", math.nan) for s in (0, 1)]
    finite = [v for v in per_seed if math.isfinite(v)]
    assert judged.seeds == 2
    if finite:
        assert judged.ranges["test_error_drop"] == (min(finite), max(finite))


def test_a_manifest_entry_with_an_unknown_name_or_a_path_for_a_sweep_id_is_dropped(tmp_path):
    store = Store(tmp_path / "store")
    good = {"experiment": "width-sweep", "optimizer": "adam", "architecture": "mlp", "sweep_id": "0123456789abcdef"}
    bad = [good | {"sweep_id": "../../etc/passwd"}, good | {"experiment": "nope"}, good | {"optimizer": "lion"}]
    (store.path / "atlas").mkdir()
    (store.path / "atlas" / "tiny.json").write_text(json.dumps({"preset": "tiny", "cells": [good, *bad]}))
    (store.path / "atlas" / "quick.json").write_text("not json")
    assert [(c.experiment, c.sweep_id) for c in atlas.load_manifests(store)["tiny"]] == [("width-sweep", "0123456789abcdef")]
    assert "quick" not in atlas.load_manifests(store)


def test_effect_text_is_signed_with_the_per_seed_range():
    assert atlas.effect_text(0.0213, (0.011, 0.034)) == "+0.0213 [+0.011, +0.034]"
    assert atlas.effect_text(-1.0, None) == "-1"
    assert atlas.effect_text(math.nan, None) == "n/a"


@pytest.mark.slow
def test_the_atlas_command_prints_the_matrix_and_writes_figure_table_and_report_page(tmp_path, capsys):
    store = tmp_path / "store"
    rc = main(["atlas", "--preset", "tiny", "--experiments", "width-sweep", "--optimizers", "sgd", "--store", str(store), "--executor", "inprocess"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "[1/1] width-sweep / SGD / MLP: lr " in err and "pilot: 0.03 -> " in err
    assert "width-sweep" in out and "test_error_drop = " in out
    assert (store / "atlas" / "tiny.png").stat().st_size > 0
    assert "test_error_drop" in (store / "atlas" / "tiny.csv").read_text()
    page = (store / "report" / "atlas-tiny.html").read_text()
    sweep_id = json.loads((store / "atlas" / "tiny.json").read_text())["cells"][0]["sweep_id"]
    assert f"width-sweep-{sweep_id}.html" in page and "figures/atlas-tiny.png" in page
    assert "atlas-tiny.html" in (store / "report" / "index.html").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "huge"], "preset: the atlas has no preset 'huge'; allowed: tiny, quick, paper"),
        (["--experiments", "min-norm"], "experiments: min-norm is not in the atlas ("),
        (["--architectures", "resnet"], "architectures: 'resnet' is not a model.kind"),
        (["--experiments", "width-sweep", "--architectures", "transformer"], "no experiment admits any of the chosen cells"),
        (["--workers", "0"], "--workers: must be at least 1"),
        (["--set", "train.lr=0.1"], "--set train.lr: the atlas sets it in every cell"),
        (["--set", "nonsense"], "nonsense"),
    ],
)
def test_bad_atlas_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    rc = main(["atlas", "--store", str(tmp_path / "s"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()  # refused before a store is made


def test_the_quick_preset_runs_grokking_under_three_optimizers_unless_others_are_named():
    cells = [(c.experiment, c.optimizer, c.architecture) for c in atlas.plan_cells("quick")]
    assert [c for c in cells if c[0] == "grokking"] == [("grokking", o, "token_mlp") for o in ("sgd+momentum", "adam", "adamw")]
    assert len([c for c in cells if c[0] == "width-sweep"]) == 10  # five optimizers x MLP and CNN
    named = [(c.experiment, c.optimizer) for c in atlas.plan_cells("quick", optimizers=["sam"])]
    assert named == [("width-sweep", "sam"), ("width-sweep", "sam"), ("grokking", "sam")]


def test_set_values_reach_every_cell_and_a_cell_that_cannot_take_one_is_refused_with_why(tmp_path, capsys):
    store = Store(tmp_path / "store")
    cells = atlas.run_atlas("tiny", store, optimizers=["adam", "adamw"], overrides={"data.n_train": 200}, executor="inprocess")
    width, width_adamw, grokking, grokking_adamw = cells  # width-sweep reads MNIST-1D's n_train; modular data has none
    assert width_adamw.status == "same as Adam" and grokking_adamw.status.startswith("refused: data.n_train")
    assert width.status == "run" and width.overrides["data.n_train"] == 200
    assert all(r.run_spec.data.n_train == 200 for r in store.records("width-sweep"))
    assert grokking.status.startswith("refused: data.n_train") and not store.records("grokking")
    rc = main(["atlas", "--preset", "tiny", "--experiments", "width-sweep", "--store", str(tmp_path / "s2"), "--set", "data.root=/nowhere", "--executor", "inprocess"])
    err = capsys.readouterr().err
    assert rc == 2 and "biaslab: error: every cell was refused; the first: width-sweep / SGD / MLP: data.root" in err
