"""Figure helpers. Figures are returned, never saved or shown here (no pyplot state, no backend set)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4) -> tuple[Figure, list]:
    """A figure and its axes as a flat list, laid out with constrained layout."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def mean_band(ax, frame, x: str, y: str, label: str | None = None, **style):
    """Mean of `y` against `x` over repeated rows (seeds), with the min-max range shaded in the line's colour where
    an x has more than one row. `style` goes to `ax.plot` and may override the default small round markers.
    Returns the means (a Series indexed by sorted x), for a fit or error bars drawn on top."""
    groups = frame.groupby(x)[y]
    mean, low, high = groups.mean(), groups.min(), groups.max()
    (line,) = ax.plot(mean.index, mean.values, label=label, **({"marker": "o", "markersize": 3} | style))
    if (groups.count() > 1).any():
        ax.fill_between(mean.index, low.values, high.values, color=line.get_color(), alpha=0.2, linewidth=0)
    return mean


def seed_bars(ax, frame, x: str, hue: str, y: str, xs: Sequence, hues: Sequence, labels: Mapping | None = None) -> dict[tuple, tuple[float, float]]:
    """Grouped bars of a seed mean: at each category of `x` (in the order `xs`, at 0, 1, ...), one bar per value of
    `hue` (in the order `hues`, coloured C0, C1, ..., named by `labels`) at the mean of `y` over its rows, and each
    row (seed) as a black dot on its bar. Returns {(x value, hue value): (bar centre, mean)}, for annotations."""
    step = 0.8 / len(hues)
    bars = {}
    for i, value in enumerate(hues):
        centres = np.arange(len(xs)) + (i - (len(hues) - 1) / 2) * step
        groups = [frame[(frame[x] == at) & (frame[hue] == value)][y] for at in xs]
        means = [float(g.mean()) if len(g) else math.nan for g in groups]
        ax.bar(centres, means, width=step, color=f"C{i}", alpha=0.7, label=(labels or {}).get(value, value))
        for at, centre, group, mean in zip(xs, centres, groups, means):
            ax.plot(np.full(len(group), centre), group, "k.", markersize=3)
            bars[(at, value)] = (float(centre), mean)
    return bars


def legend_once(ax, **options) -> None:
    """A legend with one entry per label (several lines may share a label)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), **({"fontsize": 8} | options))


class _PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (30, 0.2, 2.05). Decades only where the axis spans more than 2 decades,
    also 2x and 5x where it spans more than 1, also 3x where it spans more than 0.4; on a shorter axis (whose ticks
    matplotlib places linearly) every tick, or every second or third one where there are more than `MOST`."""

    MOST = 5
    _shown = None

    def set_locs(self, locs=None):
        low, high = sorted(self.axis.get_view_interval())
        decades = math.log10(high / low) if low > 0 else math.inf
        self._sublabels = {1} if decades > 2 else {1, 2, 5} if decades > 1 else {1, 2, 3, 5} if decades > 0.4 else set(range(1, 11))
        shown = sorted(x for x in (locs if locs is not None else ()) if low <= x <= high)
        step = math.ceil(len(shown) / self.MOST) if decades <= 0.4 and shown else 1
        self._shown = set(shown[::step]) if step > 1 else None

    def __call__(self, x, pos=None):
        if self._shown is not None and not any(math.isclose(x, y) for y in self._shown):
            return ""
        return super().__call__(x, pos)

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:.6g}" if 1 <= abs(x) < 1e6 else f"{x:.3g}"


def plain_log_ticks(ax, axis: str = "both") -> None:
    """Plain numbers (30, 0.2, 2.05) rather than 3x10^1 on the log-scaled `axis` ("x", "y" or "both") of `ax`, with the
    ticks between decades labelled only on a short axis (see `_PlainLogFormatter`): a short log axis still shows
    numbers, and the labels of a long one do not collide."""
    for name in ("x", "y") if axis == "both" else (axis,):
        if getattr(ax, f"get_{name}scale")() == "log":
            target = getattr(ax, f"{name}axis")
            target.set_major_formatter(_PlainLogFormatter(labelOnlyBase=False))
            target.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))


def figure_legend(fig, axes=None, ncols: int | None = None, **options) -> None:
    """One legend for the whole figure, below its panels, with one entry per label over all `axes` (default: all of
    the figure's): for panels whose lines all mean the same thing, where a legend inside one panel would cover data.
    Needs a constrained-layout figure (`new_figure`), which makes room for it."""
    unique = {}
    for ax in fig.get_axes() if axes is None else axes:
        handles, labels = ax.get_legend_handles_labels()
        for handle, label in zip(handles, labels):
            unique.setdefault(label, handle)
    if unique:
        fig.legend(unique.values(), unique.keys(), loc="outside lower center", ncols=ncols or min(len(unique), 4), **({"fontsize": 8} | options))


def reliability_diagram(table, title: str | None = None) -> Figure:
    """A reliability diagram from a `probes.calibration.ReliabilityTable`: accuracy per confidence bin
    as bars against the diagonal of perfect calibration, with the bin counts below and the ECE in the title."""
    fig, (top, bottom) = new_figure(nrows=2, width=5.4, height=2.4)
    filled = [i for i, c in enumerate(table.count) if c > 0]
    centers = [table.confidence[i] for i in filled]
    widths = [max(table.upper[i] - table.lower[i], 0.01) for i in filled]
    left = [table.lower[i] for i in filled]
    top.bar(left, [table.accuracy[i] for i in filled], width=widths, align="edge", edgecolor="black", linewidth=0.5, label="accuracy")
    top.plot(centers, [table.accuracy[i] for i in filled], "o", color="black", markersize=3, label="at mean confidence")
    top.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="calibrated")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title or f"reliability ({table.binning}), ECE = {table.ece:.3f}")
    top.tick_params(labelbottom=False)  # the same confidence axis as the counts below, labelled there
    legend_once(top, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: the bars fill the whole unit square
    bottom.bar(left, [table.count[i] for i in filled], width=widths, align="edge", edgecolor="black", linewidth=0.5)
    bottom.set(xlim=(0, 1), xlabel="confidence (max softmax probability)", ylabel="examples")
    return fig


def landscape_contour(ax, alphas, betas, values, trajectory=None, levels: int = 20, log: bool = True, label: str = "loss") -> None:
    """Contours of a 2-D landscape slice (values shaped (len(betas), len(alphas))), the solution at (0, 0) marked,
    and a projected trajectory (points, 2) drawn on top when given. `log` contours log10 of the values."""
    grid = np.log10(np.maximum(np.asarray(values, dtype=float), 1e-12)) if log else np.asarray(values, dtype=float)
    filled = ax.contourf(alphas, betas, grid, levels=levels, cmap="viridis")
    ax.contour(alphas, betas, grid, levels=levels, colors="white", linewidths=0.3)
    ax.figure.colorbar(filled, ax=ax, label=f"log10 {label}" if log else label)
    if trajectory is not None:
        path = np.asarray(trajectory, dtype=float)
        ax.plot(path[:, 0], path[:, 1], "-o", color="red", markersize=2, linewidth=1, label="trajectory")
    ax.plot([0], [0], marker="*", color="orange", markersize=10, linestyle="none", label="solution")


def landscape_surface(fig, position, alphas, betas, values, title: str = "", log: bool = True):
    """A 3-D surface of a 2-D landscape slice in the subplot `position` (e.g. (1, 4, 2)) of `fig`; returns the axes."""
    ax = fig.add_subplot(*position, projection="3d")
    a, b = np.meshgrid(alphas, betas)
    z = np.log10(np.maximum(np.asarray(values, dtype=float), 1e-12)) if log else np.asarray(values, dtype=float)
    ax.plot_surface(a, b, z, cmap="viridis", linewidth=0, antialiased=True)
    ax.set(xlabel="a", ylabel="b", zlabel="log10 loss" if log else "loss", title=title)
    return ax
