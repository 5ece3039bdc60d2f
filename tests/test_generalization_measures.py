"""generalization-measures: the scores (Kendall, granulated) and the claim, on made-up records that pass and fail."""

from __future__ import annotations

import itertools
import math

import pytest

from biaslab.claims import granulated_kendall, kendall
from biaslab.experiments import CATALOG
from biaslab.experiments import generalization_measures as gm
from biaslab.spec import RunSpec, with_values
from biaslab.store import RunRecord


def test_kendall_matches_a_hand_count():
    # pairs: (1,2) concordant, (1,3) concordant, (2,3) discordant -> (2 - 1) / 3
    assert kendall([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert math.isnan(kendall([1, 1, 1], [1, 2, 3]))


def test_granulated_kendall_separates_axes():
    """The measure follows the gap along w and goes against it along d: psi_w = 1, psi_d = -1, Psi = 0."""
    rows = [{"w": w, "d": d, "seed": s, "m": w - d, "gap": w + 0.1 * d + 0.01 * s} for w, d, s in itertools.product((1, 2), (1, 2), (0, 1))]
    psi = granulated_kendall(rows, "m", "gap", ("w", "d"))
    assert psi == {"w": 1.0, "d": -1.0, "all": 0.0}
    assert kendall([r["m"] for r in rows], [r["gap"] for r in rows]) > 0  # overall tau hides the disagreement


def _record(width: int, lr: float, seed: int, gap: float, flatness: float, spectral: float, stopped: str = "loss") -> RunRecord:
    spec = with_values(RunSpec(experiment=gm.NAME, seed=seed), {"model.width": width, "train.lr": lr})
    final = {"train_error": 0.0, "test_error": gap, "pacbayes_flatness": flatness, "norm_spectral_product": spectral}
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="ok", final=final, env={"stopped": stopped})


def _grid(flatness_of, spectral_of, stopped="loss") -> list[RunRecord]:
    records = []
    for width, lr, seed in itertools.product((16, 64), (0.01, 0.1), (0, 1)):
        gap = 0.3 - 0.001 * width + 0.2 * lr + 0.001 * seed
        records.append(_record(width, lr, seed, gap, flatness_of(gap), spectral_of(gap), stopped))
    return records


def test_claim_passes_when_flatness_tracks_the_gap_and_spectral_does_not():
    verdict = gm.claim(_grid(lambda gap: 10 * gap, lambda gap: -gap))
    assert verdict.passed and verdict.numbers["tau_pacbayes_flatness"] == pytest.approx(1.0)
    assert verdict.numbers["psi_spectral_product"] == pytest.approx(-1.0)


def test_claim_fails_when_flatness_is_anti_correlated():
    verdict = gm.claim(_grid(lambda gap: -gap, lambda gap: gap))
    assert not verdict.passed and verdict.numbers["tau_pacbayes_flatness"] < 0


def test_runs_that_missed_the_criterion_are_left_out():
    verdict = gm.claim(_grid(lambda gap: gap, lambda gap: -gap, stopped="max_steps"))
    assert not verdict.passed and verdict.numbers["n_models"] == 0.0 and "too few" in verdict.reason


def test_quick_has_at_least_48_models_over_five_hyperparameters():
    specs = CATALOG.get(gm.NAME).sweep("quick").expand()
    assert len(specs) >= 48
    for axis in gm.AXES:
        section, name = axis.split(".")
        assert len({getattr(getattr(s, section), name) for s in specs}) >= 2, axis
