"""Calibration measures against hand computations on a made-up probability table."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure

from biaslab import plot
from biaslab.probes import calibration

from unchanged import leaves_unchanged

# confidences 0.9 (right), 0.75 (wrong), 0.65 (right), 0.55 (right)
PROBS = torch.tensor([[0.9, 0.1], [0.75, 0.25], [0.35, 0.65], [0.55, 0.45]], dtype=torch.float64)
LABELS = torch.tensor([0, 1, 1, 0])


def test_equal_width_table_and_ece_by_hand():
    table = calibration.reliability_table(PROBS, LABELS, n_bins=5, binning="equal_width")
    assert table.count == [0, 0, 1, 2, 1]
    assert table.confidence[2:] == pytest.approx([0.55, 0.7, 0.9])
    assert table.accuracy[2:] == pytest.approx([1.0, 0.5, 1.0])
    assert math.isnan(table.confidence[0]) and math.isnan(table.accuracy[1])
    got = calibration.calibration_from_probs(PROBS, LABELS, n_bins=5, binning="equal_width")
    assert got["ece"] == pytest.approx(0.25 * 0.45 + 0.5 * 0.2 + 0.25 * 0.1)
    assert got["mce"] == pytest.approx(0.45)


def test_equal_mass_bins_by_hand():
    table = calibration.reliability_table(PROBS, LABELS, n_bins=2, binning="equal_mass")
    assert table.count == [2, 2]
    assert table.confidence == pytest.approx([0.6, 0.825])
    assert table.lower == pytest.approx([0.55, 0.75]) and table.upper == pytest.approx([0.65, 0.9])
    got = calibration.calibration_from_probs(PROBS, LABELS, n_bins=2, binning="equal_mass")
    assert got["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.325)


def test_nll_brier_and_accuracy_by_hand():
    got = calibration.calibration_from_probs(PROBS, LABELS)
    assert got["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.25) + math.log(0.65) + math.log(0.55)) / 4)
    assert got["brier"] == pytest.approx((0.02 + 1.125 + 0.245 + 0.405) / 4)
    assert got["accuracy"] == pytest.approx(0.75)


def test_a_perfectly_calibrated_table_has_zero_ece():
    # two examples at confidence 0.5 in the same bin, one right and one wrong
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    assert calibration.calibration_from_probs(probs, torch.tensor([0, 1]), n_bins=10)["ece"] == pytest.approx(0.0)


def test_bad_binning_is_a_clear_error():
    with pytest.raises(ValueError, match="binning.*equal_width, equal_mass"):
        calibration.reliability_table(PROBS, LABELS, binning="quantile")


def test_calibration_of_a_model_matches_its_softmax_and_leaves_it_unchanged(tiny_mlp, batch):
    x, y = batch
    tiny_mlp.train(True)
    torch.nn.functional.cross_entropy(tiny_mlp(x), y).backward()
    with leaves_unchanged(tiny_mlp):
        got = calibration.calibration_metrics(tiny_mlp, x, y, n_bins=4, binning="equal_mass")
    tiny_mlp.eval()
    expected = calibration.calibration_from_probs(tiny_mlp(x).detach().softmax(1), y, n_bins=4, binning="equal_mass")
    assert got == pytest.approx({f"calibration_{k}": v for k, v in expected.items()})


def test_reliability_diagram_is_a_returned_figure():
    fig = plot.reliability_diagram(calibration.reliability_table(PROBS, LABELS, n_bins=5))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "ECE = 0.237" in fig.axes[0].get_title() or "ECE = 0.238" in fig.axes[0].get_title()
