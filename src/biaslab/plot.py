"""Figure helpers. Figures are returned, never saved or shown here (no pyplot state, no backend set)."""

from __future__ import annotations

from matplotlib.figure import Figure


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list]:
    """A figure and its axes as a flat list, laid out with constrained layout."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def mean_band(ax, frame, x: str, y: str, label: str | None = None, **style) -> None:
    """Mean of `y` against `x` over repeated rows (seeds), with the min-max range shaded."""
    groups = frame.groupby(x)[y]
    mean, low, high = groups.mean(), groups.min(), groups.max()
    (line,) = ax.plot(mean.index, mean.values, marker="o", markersize=3, label=label, **style)
    if (groups.count() > 1).any():
        ax.fill_between(mean.index, low.values, high.values, color=line.get_color(), alpha=0.2, linewidth=0)


def legend_once(ax, **options) -> None:
    """A legend with one entry per label (several lines may share a label)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), **({"fontsize": 8} | options))
