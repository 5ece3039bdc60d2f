"""sam-flatness: the claim compares SAM with SGD seed by seed at equal training loss, and says why it fails."""

from __future__ import annotations

import pytest

from biaslab.experiments import CATALOG
from biaslab.experiments.sam_flatness import claim
from biaslab.store import RunRecord

EXPERIMENT = CATALOG.get("sam-flatness")
SPECS = EXPERIMENT.sweep("tiny").expand()  # sgd and sam on seeds 0 and 1, then asam on both
STOP = SPECS[0].train.stop_loss


def _records(sharper: dict[tuple[str, int], float], train_loss: float = STOP / 2) -> list[RunRecord]:
    """Finished records of the tiny specs whose Hessian top eigenvalue and adaptive sharpness are `sharper` (default 1)."""
    records = []
    for spec in SPECS:
        value = sharper.get((spec.train.optimizer, spec.seed), 1.0)
        final = {"hessian_top": value, "sharpness_keskar": value, "sharpness_adaptive": value, "train_loss": train_loss, "test_error": 0.2}
        records.append(RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final))
    return records


def test_the_tiny_sweep_pairs_sgd_sam_and_asam_on_each_init():
    arms = sorted((s.train.optimizer, s.train.rho, s.seed) for s in SPECS)
    assert arms == [("asam", 1.0, 0), ("asam", 1.0, 1), ("sam", 0.05, 0), ("sam", 0.05, 1), ("sgd", 0.05, 0), ("sgd", 0.05, 1)]


def test_sam_flatter_than_sgd_on_every_seed_passes():
    verdict = claim(_records({("sam", 0): 0.5, ("sam", 1): 0.9}))
    assert verdict.passed, verdict.reason
    assert verdict.numbers["sam_over_sgd.hessian_top.max"] == pytest.approx(0.9)
    assert "below SGD's on 2 of 2 seeds" in verdict.reason


def test_one_seed_where_sam_is_not_flatter_fails_naming_the_count():
    verdict = claim(_records({("sam", 0): 0.5, ("sam", 1): 1.2}))
    assert not verdict.passed
    assert "Hessian top eigenvalue below SGD's on 1 of 2 seeds" in verdict.reason and verdict.reason.startswith("FAIL: ")


def test_a_run_that_did_not_reach_the_stopping_loss_voids_the_comparison():
    verdict = claim(_records({("sam", 0): 0.5, ("sam", 1): 0.5}, train_loss=STOP * 2))
    assert not verdict.passed and "not at equal training loss" in verdict.reason and "raise train.max_steps" in verdict.reason


def test_asam_and_test_error_are_reported_not_judged():
    verdict = claim(_records({("sam", 0): 0.5, ("sam", 1): 0.5, ("asam", 0): 2.0, ("asam", 1): 2.0}))
    assert verdict.passed  # ASAM sharper than SGD does not fail SAM's claim
    assert any("ASAM (rho 1) below SGD on 0 of 2 seeds" in note for note in verdict.notes)
    assert any("test error, sam minus SGD: +0.0 points" in note for note in verdict.notes)


def test_without_paired_runs_the_verdict_says_so():
    verdict = claim([r for r in _records({}) if r.run_spec.train.optimizer != "sam"])
    assert not verdict.passed and "no seed has finished SGD and SAM runs" in verdict.reason


@pytest.mark.parametrize(
    ("change", "field"),
    [({"optimizer": "adam"}, "train.optimizer"), ({"stop_loss": None}, "train.stop_loss"), ({"stop_zero_error_evals": 1}, "train.stop_zero_error_evals")],
)
def test_what_would_break_the_equal_loss_comparison_is_refused(change, field):
    from biaslab.spec import SpecError

    with pytest.raises(SpecError, match=f"^{field}"):
        EXPERIMENT.check(SPECS[0].model_copy(update={"train": SPECS[0].train.model_copy(update=change)}))


def test_tiny_fails_because_sam_is_not_flatter_in_adaptive_sharpness_on_every_seed():
    records = [EXPERIMENT.run(spec) for spec in SPECS]
    assert all(r.status == "ok" for r in records)
    assert all(r.final["train_loss"] <= STOP for r in records)  # every arm reached the same stopping loss
    verdict = EXPERIMENT.verdict(records)
    assert not verdict.passed
    assert verdict.reason == (
        "FAIL: SAM's adaptive sharpness (Kwon) below SGD's on 1 of 2 seeds (needs all; SAM/SGD 0.96 to 1.66)"
    )
