"""plot.mean_band: the drawn mean and band against pandas' own group statistics; plot.seed_bars; plot.plain_log_ticks."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from matplotlib.backends.backend_agg import FigureCanvasAgg

from biaslab.plot import mean_band, new_figure, plain_log_ticks, seed_bars


def test_mean_band_draws_the_group_mean_and_shades_min_to_max_in_the_line_colour():
    frame = pd.DataFrame({"w": [4, 4, 1, 1, 2], "err": [0.2, 0.4, 0.9, 0.5, 0.3]})  # x unsorted; x=2 has one row
    _, (ax,) = new_figure()
    mean = mean_band(ax, frame, "w", "err", label="test", color="C3", linestyle=":", markersize=6)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [1, 2, 4])
    np.testing.assert_allclose(line.get_ydata(), [0.7, 0.3, 0.3])
    assert list(mean.index) == [1, 2, 4] and line.get_label() == "test"
    assert (line.get_linestyle(), line.get_marker(), line.get_markersize()) == (":", "o", 6)
    (band,) = ax.collections
    lower_and_upper = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(lower_and_upper.min(), 0.2) and np.isclose(lower_and_upper.max(), 0.9)
    np.testing.assert_allclose(band.get_facecolor()[0][:3], to_rgb("C3"))


def test_mean_band_leaves_out_the_band_when_every_x_has_one_row():
    _, (ax,) = new_figure()
    mean_band(ax, pd.DataFrame({"x": [1, 2], "y": [0.5, 0.25]}), "x", "y")
    assert not ax.collections and len(ax.get_lines()) == 1


def test_seed_bars_put_one_bar_per_hue_at_each_category_at_the_seed_mean_with_every_seed_as_a_dot():
    frame = pd.DataFrame(
        {"task": ["a", "a", "b", "a", "a", "b"], "model": ["m", "m", "m", "n", "n", "n"], "acc": [0.6, 0.8, 0.5, 0.9, 0.7, 0.4]}
    )
    _, (ax,) = new_figure()
    bars = seed_bars(ax, frame, "task", "model", "acc", ["a", "b"], ["m", "n"], {"m": "model M"})
    assert bars == {("a", "m"): (-0.2, 0.7), ("b", "m"): (0.8, 0.5), ("a", "n"): (0.2, 0.8), ("b", "n"): (1.2, 0.4)}
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [0.7, 0.5, 0.8, 0.4])
    dots = [(list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()]
    assert dots[0] == ([-0.2, -0.2], [0.6, 0.8]) and dots[3] == ([1.2], [0.4])
    assert [t.get_text() for t in ax.legend().get_texts()] == ["model M", "n"]


def _tick_texts(fig, axis) -> list[str]:
    FigureCanvasAgg(fig).draw()
    low, high = sorted(axis.get_view_interval())
    ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    return sorted((t.get_loc(), t.label1.get_text()) for t in ticks if low <= t.get_loc() <= high and t.label1.get_text())


def test_plain_log_ticks_write_plain_numbers_and_label_between_decades_only_on_a_short_axis():
    fig, (ax,) = new_figure()
    ax.set(xscale="log", xlim=(30, 80), yscale="log", ylim=(1e-3, 10))  # x: 0.43 decades; y: 4 decades
    plain_log_ticks(ax)
    assert [text for _, text in _tick_texts(fig, ax.xaxis)] == ["30", "50"]
    assert [text for _, text in _tick_texts(fig, ax.yaxis)] == ["0.001", "0.01", "0.1", "1", "10"]
    ax.set(xlim=(1.95, 2.2))  # a short axis: matplotlib places six linear ticks, every second one is labelled
    assert [text for _, text in _tick_texts(fig, ax.xaxis)] == ["1.95", "2.05", "2.15"]
