"""The report card: weights kept by runs, subjects from the store or a user's module, the CLI, bad input."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from unchanged import leaves_unchanged

from biaslab import card
from biaslab.cli import main
from biaslab.experiments import CATALOG
from biaslab.spec import DataSpec, SpecError, Sweep
from biaslab.store import RunNotFound, Store
from biaslab.sweep import run_sweep

SMALL = card.CardOptions(
    examples=200, trace_probes=9, density_probes=2, density_steps=10, sharpness_steps=3, sharpness_samples=3, pacbayes_steps=20, pacbayes_samples=50
)


def tiny_sweep(seeds=(0,)) -> Sweep:
    sweep = CATALOG.get("width-sweep").sweep("tiny")
    return sweep.override({"save_weights": True, "model.width": [16], "data.label_noise": [0.0], "seed": list(seeds)})


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("card"))
    outcome = run_sweep(tiny_sweep(), store, "tiny", executor="inprocess")
    return store, outcome.records[0]


def test_a_stored_run_reloads_to_the_same_errors(stored):
    store, record = stored
    subject = card.subject_from_run(store, record.spec_id)
    row = card.fit_section(subject, SMALL, card.Card(source={}))
    assert row["train_error"] == pytest.approx(record.final["train_error"], abs=1e-9)
    assert row["test_error"] == pytest.approx(record.final["test_error"], abs=1e-9)
    assert subject.init is not None  # regenerated from the spec's seed
    assert not all(torch.equal(subject.init[n], p) for n, p in subject.model.named_parameters())


def test_population_runs_keep_weights_too(tmp_path):
    store = Store(tmp_path)
    outcome = run_sweep(tiny_sweep(seeds=(0, 1)), store, "tiny", executor="population")
    assert all(r.env.get("population") == 2 for r in outcome.records)
    for record in outcome.records:
        row = card.fit_section(card.subject_from_run(store, record.spec_id), SMALL, card.Card(source={}))
        assert row["test_error"] == pytest.approx(record.final["test_error"], abs=1e-9)


def test_measure_fills_every_section_and_leaves_the_model_unchanged(stored):
    store, record = stored
    subject = card.subject_from_run(store, record.spec_id)
    subject.model.train()
    with leaves_unchanged(subject.model):
        result = card.measure(subject, SMALL)
    assert set(result.sections) == set(card.SECTIONS), result.notes
    assert result.sections["curvature"]["hessian_top"] >= result.sections["curvature"]["hessian_eig2"]
    assert result.sections["curvature"]["hessian_trace_se"] > 0
    assert result.sections["sharpness"]["pacbayes_mag_flatness_rescaling_invariant"] == 1.0
    assert any("not invariant" in note for note in result.notes)


@pytest.mark.slow
def test_cli_probe_writes_the_card_for_a_run(stored, tmp_path, capsys):
    store, record = stored
    assert main(["probe", record.spec_id[:8], "--store", str(store.path), "--out", str(tmp_path / "c"), "--examples", "100", "--budget", "small"]) == 0
    saved = json.loads((tmp_path / "c" / "card.json").read_text())
    assert set(card.SECTIONS) == set(saved["sections"]), saved["notes"]
    assert saved["sections"]["bounds"]["pac_bayes_vacuous"] in (0.0, 1.0)
    page = (tmp_path / "c" / "card.html").read_text()
    assert "hessian_top" in page and "figures/hessian_density.svg" in page
    assert (tmp_path / "c" / "figures" / "margins.png").exists() and (tmp_path / "c" / "figures" / "reliability.svg").exists()
    assert "[4/" in capsys.readouterr().err  # progress


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def small():
            torch.manual_seed(0)
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

        def not_a_module():
            return 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_models", None)
    import my_models

    return my_models


@pytest.mark.slow
def test_cli_probe_measures_a_users_module(user_module, tmp_path, capsys):
    torch.save(user_module.small().state_dict(), tmp_path / "w.pt")
    args = ["probe", "--model", "my_models:small", "--weights", str(tmp_path / "w.pt"), "--data", "name=digits", "--data", "n_train=300",
            "--data", "n_test=100", "--out", str(tmp_path / "c"), "--budget", "small"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((tmp_path / "c" / "card.json").read_text())
    assert saved["source"]["model"] == "my_models:small" and saved["sections"]["fit"]["n_train"] == 300.0
    assert any("no initialization known" in note for note in saved["notes"])


def test_safetensors_weights_load(user_module, tmp_path):
    from safetensors.torch import save_file

    model = user_module.small()
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    subject = card.subject_from_module("my_models:small", tmp_path / "w.safetensors", DataSpec(name="digits", n_train=100, n_test=50))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), subject.model.parameters()))


class Payload:
    """Something that is not a tensor: weights_only must refuse to rebuild it."""


def test_a_pickled_object_is_refused(user_module, tmp_path):
    torch.save({"1.weight": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(SpecError, match="refused"):
        card.subject_from_module("my_models:small", tmp_path / "evil.pt", DataSpec(name="digits"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["probe"], "either a RUN_ID"),
        (["probe", "abcd", "--model", "m:f"], "either a RUN_ID"),
        (["probe", "--model", "my_models:small"], "give the data to probe on"),
        (["probe", "--model", "my_models:small", "--data", "name=digits"], "also give --weights"),
        (["probe", "--model", "my_models", "--weights", "w.pt", "--data", "name=digits"], "should be 'module:function'"),
        (["probe", "--model", "my_models:nope", "--weights", "w.pt", "--data", "name=digits"], "cannot find"),
        (["probe", "--model", "my_models:not_a_module", "--weights", "w.pt", "--data", "name=digits"], "not an nn.Module"),
        (["probe", "--model", "my_models:small", "--weights", "missing.pt", "--data", "name=digits"], "no such file"),
        (["probe", "--model", "my_models:small", "--weights", "w.pt", "--data", "name=imagenet"], "data.name"),
        (["probe", "--model", "my_models:small", "--weights", "w.pt", "--data", "name=digits", "--loss", "hinge"], "allowed: cross_entropy"),
        (["probe", "abcd", "--budget", "huge"], "--budget: 'huge' is not one of full, small"),
    ],
)
def test_bad_probe_input_is_one_clear_line(user_module, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    torch.save(user_module.small().state_dict(), tmp_path / "w.pt")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_weights_that_do_not_fit_the_model(user_module, tmp_path):
    torch.save({"1.weight": torch.zeros(3, 3)}, tmp_path / "w.pt")
    with pytest.raises(SpecError, match="does not fit the model"):
        card.subject_from_module("my_models:small", tmp_path / "w.pt", DataSpec(name="digits"))


def test_a_run_without_kept_weights_says_how_to_keep_them(tmp_path):
    store = Store(tmp_path)
    sweep = CATALOG.get("width-sweep").sweep("tiny").override({"model.width": [8], "data.label_noise": [0.0]})
    record = run_sweep(sweep, store, "tiny", executor="inprocess").records[0]
    with pytest.raises(RunNotFound, match="save_weights=true"):
        card.subject_from_run(store, record.spec_id)


def test_data_that_does_not_fit_the_model_is_one_line(user_module, tmp_path, capsys):
    """The teacher's 8 inputs do not fit a model built for 64: refused before any probe runs."""
    torch.save(user_module.small().state_dict(), tmp_path / "w.pt")
    args = ["probe", "--model", "my_models:small", "--weights", str(tmp_path / "w.pt"), "--data", "name=teacher", "--data", "dim=8",
            "--out", str(tmp_path / "c")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "cannot take inputs of shape (8,)" in err and err.count("\n") == 1


def test_a_section_that_fails_is_noted_and_the_cli_says_so(user_module, tmp_path, capsys, monkeypatch):
    from biaslab.card import sections

    def broken(subject, options, result):
        raise RuntimeError("spectra broke")

    monkeypatch.setitem(sections.SECTIONS, "spectra", broken)
    torch.save(user_module.small().state_dict(), tmp_path / "w.pt")
    args = ["probe", "--model", "my_models:small", "--weights", str(tmp_path / "w.pt"), "--data", "name=digits", "--budget", "small",
            "--sections", "fit,spectra,calibration", "--out", str(tmp_path / "c")]  # fmt: skip
    assert main(args) == 1
    assert "spectra: failed (RuntimeError: spectra broke)" in capsys.readouterr().err
    saved = json.loads((tmp_path / "c" / "card.json").read_text())
    assert set(saved["sections"]) == {"fit", "calibration"}
