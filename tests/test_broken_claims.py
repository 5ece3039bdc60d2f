"""A claim check or a figure that raises is shown as FAIL with its error, in the CLI and in the report, and the
report still renders every other experiment. Records give back their typed spec."""

from __future__ import annotations

import pytest

from biaslab.cli import main
from biaslab.experiments import CATALOG
from biaslab.report import pages_of, write_report
from biaslab.spec import RunSpec
from biaslab.store import Store
from biaslab.sweep import run_sweep


@pytest.mark.slow
def test_grokking_without_its_probes_prints_fail_naming_the_missing_probes(tmp_path, capsys):
    """grokking's claim reads the weight norm and Fourier concentration that the `norms` and `fourier` probes record:
    without them the check cannot be made, and it says which probes are missing instead of crashing."""
    code = main(["run", "grokking", "--preset", "tiny", "--set", "probes=[]", "--set", "seed=[0]", "--store", str(tmp_path), "--executor", "inprocess"])
    out = capsys.readouterr().out
    assert code == 0
    assert "FAIL: grokking reads the probes fourier, norms, which these runs did not measure" in out
    (page,) = [p.read_text() for p in pages_of(tmp_path / "report")]  # the experiment's page
    assert page.count("grokking reads the probes fourier, norms") == 2  # the verdict and, in place of the figures, the reason


@pytest.mark.slow
def test_the_report_renders_other_experiments_beside_a_broken_one(tmp_path, monkeypatch):
    store = Store(tmp_path)
    for name in ("min-norm", "max-margin"):
        run_sweep(CATALOG.get(name).sweep("tiny"), store, "tiny", executor="inprocess")
    broken = CATALOG.get("min-norm")

    def raises(records):
        raise ValueError("a bug in the check")

    monkeypatch.setattr(broken, "claim", raises)
    monkeypatch.setattr(broken, "figures", raises)
    index = write_report(store, tmp_path / "out")
    page = "".join(p.read_text() for p in [index, *pages_of(index.parent)])  # the index and every experiment's page
    assert "the claim check raised ValueError: a bug in the check" in page
    assert "drawing the figures raised ValueError: a bug in the check" in page
    assert CATALOG.get("max-margin").title in page and "max-margin" in page and "figures/" in page  # the other one is drawn


def test_a_record_gives_back_its_validated_spec(tmp_path):
    store = Store(tmp_path)
    outcome = run_sweep(CATALOG.get("min-norm").sweep("tiny"), store, "tiny", executor="inprocess")
    for record in store.records_of(r.spec_id for r in outcome.records):
        assert isinstance(record.run_spec, RunSpec) and record.run_spec.spec_id == record.spec_id


def test_a_stored_spec_that_no_longer_validates_raises_on_access():
    from biaslab.store import RunRecord

    record = RunRecord(spec={"experiment": "min-norm", "train": {"lr": -1.0}}, spec_id="x", status="ok")
    with pytest.raises(ValueError):
        record.run_spec


@pytest.mark.parametrize("name", CATALOG.names())
def test_every_entry_states_its_finding_and_every_verdict_is_on_it(name, monkeypatch):
    """The module's FINDING is the statement of every verdict: with no runs to judge, and when the check raises."""
    experiment = CATALOG.get(name)
    assert len(experiment.finding) > 40, "a sentence stating the published finding the claim tests"
    empty = experiment.verdict([])
    assert empty.claim == experiment.finding and not empty.passed

    def raises(records):
        raise ValueError("a bug in the check")

    monkeypatch.setattr(experiment, "claim", raises)
    broken = experiment.verdict([])
    assert broken.claim == experiment.finding and "the claim check raised ValueError: a bug in the check" in broken.reason


def test_a_verdict_without_numbers_prints_no_empty_numbers_line():
    from biaslab.claims import Verdict

    assert Verdict("a finding", False, {}, "FAIL: no runs").summary() == "FAIL: a finding\n  FAIL: no runs"
    assert "  numbers: n=3" in Verdict("a finding", True, {"n": 3.0}, "ok").summary()
