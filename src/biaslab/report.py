"""The HTML report: an index of every sweep in a store, a page per sweep, a page per run.

`write_report(store, directory)` writes, under `directory` (default STORE/report):

- `index.html`: every sweep (experiment and preset) with its verdict, PASS or FAIL and the reason in one line,
  linking to its page;
- `<experiment>-<sweep_id>.html`: title, reference, summary, the verdict with its numbers, the figures (PNG, with
  the SVG beside them) each with a caption that says what its shaded bands are, and the run table: sortable by a
  click on a column header, filterable as you type, numbers written for people, settings shared by every run said
  once above the table;
- `runs/<run_id>.html`: one run's status, error, final metrics, every curve as a small plot, spec and provenance.

The pages are rendered from the Jinja2 templates in `biaslab/templates/report/` with autoescaping on: no text
from a store reaches a page unescaped. Each page carries one fixed inline script (sorting and filtering) and
needs no network. Only this module and `store` write files, and only under the paths they are given.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel

from biaslab import atlas
from biaslab.claims import Verdict
from biaslab.experiments import CATALOG
from biaslab.experiments.base import covers
from biaslab.spec import RunSpec, SpecError
from biaslab.spec.rules import is_read
from biaslab.store import RunRecord, Store, SweepEntry, flatten

TEMPLATES = Path(__file__).with_name("templates") / "report"
SPEC_SECTIONS = ("data", "model", "train", "problem", "estimator")  # dotted spec fields of these sections can vary
METRICS_FIRST = ("steps", "train_error", "test_error", "train_loss", "test_loss")  # final metrics, in this order first
MAX_METRIC_COLUMNS = 6  # final metrics shown in the run table; every one is on the run's own page
MAX_CURVE_POINTS = 400  # points per curve on a run page (evenly thinned, the last kept)
REASON_CHARACTERS = 140  # the index's one-line reason is cut here, the whole reason in its tooltip
# matplotlib fills a `fill_between` band with a PolyCollection; every band in biaslab's figures comes from
# plot.mean_band, which shades the min-max range over the runs (seeds) sharing an x value
BAND_CAPTION = ("Shaded band: the minimum to the maximum over the runs (seeds) that share an x value; the line is their "
                "mean. It is a range, not a confidence interval, and it appears only where an x has more than one run.")  # fmt: skip
ERRORBAR_CAPTION = "Error bars: the standard error of each plotted estimate, or the multiple of it that the legend names."
_INTEGER_NAMES = re.compile(r"(^|[._])(steps?|seed|width|depth|epochs?|batch_size|n_\w+|population|\w*count|params|n)$")
# a fraction in [0, 1] shown as a percentage: train_error, test_accuracy, error, test_error_at_widest,
# max_test_accuracy (not spearman_width_vs_test_error, a correlation, nor error_ratio)
_FRACTION_NAMES = re.compile(
    r"^((max|min|best|final|mean)_)?((train|test|val|valid|validation|holdout)_)?(error|accuracy|acc|zero_one)(_at_\w+|_(mean|min|max|best|final|start|end))?$"
)
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


# ----------------------------------------------------------------------------- numbers for people


def human(name: str, value: Any) -> str:
    """`value` of the column or number called `name`, written for a person: counts with thousands separators
    (12,000, never 1.2e+04), errors and accuracies in [0, 1] as percentages to 3 significant digits, seconds to
    0.1 s, everything else to 3 significant digits with a written power of ten (1.23×10⁻⁵)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "seconds" or leaf.endswith("_seconds"):
        return f"{value:,.1f}"
    if _FRACTION_NAMES.search(leaf) and 0.0 <= value <= 1.0:
        return f"{_significant(100 * value)}%"
    if value.is_integer() and (abs(value) < 1e15) and (_INTEGER_NAMES.search(leaf) or abs(value) >= 1):
        return f"{value:,.0f}"
    return _significant(value)


def _significant(value: float, digits: int = 3) -> str:
    """3 significant digits: 0.0123, 12.3, 12,346 (no exponent from 1e-3 to 1e15), 1.23×10⁻⁵ below."""
    if value == 0:
        return "0"
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"
    if abs(value) >= 1e-3:
        return f"{value:.{digits}g}"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def sort_key(value: Any) -> float | None:
    """The exact number a table cell sorts by (None: the cell sorts as text)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


@dataclass(frozen=True)
class Cell:
    text: str
    value: float | None = None  # the exact number it sorts by; NaN sorts last either way
    title: str = ""  # a tooltip: the exact value, or what the cell's text leaves out
    href: str = ""
    css: str = ""

    @property
    def data_value(self) -> str | None:
        if self.value is None:
            return None
        return "NaN" if math.isnan(self.value) else repr(self.value)


def number_cell(name: str, value: Any) -> Cell:
    key = sort_key(value)
    exact = "" if key is None or isinstance(value, bool) else repr(value)
    return Cell(human(name, value), key, exact if exact != human(name, value) else "")


# ----------------------------------------------------------------------------- what the pages show


@dataclass
class Column:
    name: str
    numeric: bool
    title: str = ""


@dataclass
class RunTable:
    columns: list[Column]
    rows: list[list[Cell]]
    shared: list[tuple[str, str]]  # (field, value written for people) the same in every run
    population_note: str = ""
    hidden_metrics: int = 0


@dataclass
class FigureView:
    name: str
    png: str
    svg: str
    alt: str
    caption: list[str]


@dataclass
class SweepPage:
    entry: SweepEntry
    file: str
    records: list[RunRecord]
    title: str = ""
    reference: str = ""
    summary: str = ""
    in_catalog: bool = False
    verdict: Verdict | None = None
    figure_error: str | None = None
    figures: list[FigureView] = field(default_factory=list)
    table: RunTable | None = None

    @property
    def label(self) -> str:
        return self.verdict.label if self.verdict is not None else "none"

    @property
    def one_line(self) -> str:
        """The verdict's reason on one line (cut to REASON_CHARACTERS), or why there is no verdict."""
        if not self.in_catalog:
            return f"no verdict: {self.entry.experiment!r} is not in the catalog"
        if self.verdict is None:
            return "no verdict: no successful (ok) run yet"
        return _one_line(self.verdict.reason)

    @property
    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.records) for status in ("ok", "diverged", "failed")}


def _one_line(text: str) -> str:
    text = re.sub(r"^(PASS|FAIL):\s*", "", " ".join(text.split()))
    if len(text) <= REASON_CHARACTERS:
        return text
    return text[: text.rfind(" ", 0, REASON_CHARACTERS)].rstrip(",;: ") + " …"


def _slug(text: str, limit: int = 40) -> str:
    """A file-name-safe form of a name from the store (letters, digits, '-', '_' only)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit] or "x"


# ----------------------------------------------------------------------------- writing


def write_report(store: Store, directory: str | Path | None = None) -> Path:
    """Write the report for every sweep in `store` to `directory` (default: STORE/report); return index.html."""
    directory = Path(directory) if directory is not None else store.path / "report"
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    (directory / "runs").mkdir(exist_ok=True)
    environment = _environment()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    common = {"store": str(store.path.resolve()), "stamp": stamp}

    pages = [_sweep_page(entry, store.records_of(entry.spec_ids), directory) for entry in store.sweeps()]
    sweeps_of: dict[str, list[SweepPage]] = {}
    for page in pages:
        for record in page.records:
            sweeps_of.setdefault(record.spec_id, []).append(page)
        _write(directory / page.file, environment.get_template("sweep.html").render(page=page, root="", **common))
    runs = {r.spec_id: r for page in pages for r in page.records}
    for spec_id, record in runs.items():
        html = environment.get_template("run.html").render(run=_run_view(record), sweeps=sweeps_of[spec_id], root="../", **common)
        _write(directory / "runs" / f"{spec_id}.html", html)
    atlases = [_atlas_view(preset, cells, store, pages, directory) for preset, cells in atlas.load_manifests(store).items()]
    for view in atlases:
        _write(directory / view["file"], environment.get_template("atlas.html").render(view=view, root="", **common))
    index = directory / "index.html"
    _write(index, environment.get_template("index.html").render(pages=pages, atlases=atlases, root="", **common))
    return index


def _atlas_view(preset: str, cells: list, store: Store, pages: list[SweepPage], directory: Path) -> dict[str, Any]:
    """What the atlas page of one preset shows: the matrix figure and a row per cell linking to its sweep's page."""
    judged = atlas.judge_all(cells, store)
    figure = atlas.matrix_figure(judged, preset)
    png = f"figures/atlas-{preset}.png"
    figure.savefig(directory / png, dpi=110)
    page_of = {page.entry.sweep_id: page.file for page in pages}
    groups = []
    for name in dict.fromkeys(j.plan.experiment for j in judged):
        rows = [_atlas_row(j, page_of) for j in judged if j.plan.experiment == name]
        groups.append({"experiment": name, "effects": CATALOG.get(name).axes.effect_sizes, "rows": rows})
    note = atlas.PRESETS[preset].note
    return {"preset": preset, "file": f"atlas-{preset}.html", "png": png, "groups": groups,
            "note": note, "pilot_steps": atlas.PILOT_MAX_STEPS, "cells": len(judged), "passed": sum(j.label == "PASS" for j in judged)}  # fmt: skip


def _atlas_row(judged: atlas.Judged, page_of: dict[str, str]) -> dict[str, Any]:
    """One cell of the atlas page's table: its verdict, effect sizes with their per-seed range, rate and pilot."""
    plan = judged.plan
    return {
        "architecture": atlas.ARCHITECTURES[plan.architecture], "optimizer": atlas.OPTIMIZERS[plan.optimizer].label,
        "verdict": judged.label, "twin": f"(the runs of the {plan.status.removeprefix('same as ')} cell)" if plan.status.startswith("same as") else "",
        "page": page_of.get(plan.sweep_id or ""),
        "effects": {n: atlas.effect_text(v, judged.ranges.get(n)) for n, v in judged.effects.items()},
        "numbers": {n: v for n, v in judged.effects.items() if math.isfinite(v)},
        "lr": f"{plan.lr:g}" if plan.lr is not None else "", "lr_value": plan.lr if plan.lr is not None else "",
        "pilot": atlas.pilot_lines(plan.pilot, "→"),
        "seeds": judged.seeds, "reason": judged.reason, "short_reason": _one_line(judged.reason),
    }  # fmt: skip


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every page and include, whatever its name: no store text reaches a page unescaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["human"] = lambda value, name="": human(name, value)
    environment.globals["geometry"] = {"W": _W, "H": _H, "LEFT": _LEFT, "RIGHT": _RIGHT, "TOP": _TOP, "BOTTOM": _BOTTOM}
    return environment


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _sweep_page(entry: SweepEntry, records: list[RunRecord], directory: Path) -> SweepPage:
    page = SweepPage(entry, f"{_slug(entry.experiment)}-{entry.sweep_id}.html", records)
    experiment = CATALOG.get(entry.experiment) if entry.experiment in CATALOG else None
    if experiment is not None:
        page.in_catalog = True
        page.title, page.reference, page.summary = experiment.title, experiment.reference, experiment.summary
        if any(r.status == "ok" for r in records):
            page.verdict = experiment.verdict(records)
            figures, page.figure_error = experiment.drawn_figures(records)
            for name, figure in figures.items():
                page.figures.append(_save_figure(figure, f"{entry.sweep_id}-{_slug(name)}", directory, entry.experiment, name))
    page.table = run_table(records, _read_fields(experiment, records)) if records else None
    return page


def _read_fields(experiment, records: list[RunRecord]) -> Callable[[str], bool] | None:
    """Whether a spec field is one any of these runs reads (the experiment's `all_reads`), so the shared settings leave
    out the fields nothing read; None (show all) when the experiment is unknown or a stored spec no longer validates."""
    if experiment is None:
        return None
    try:
        specs = [r.run_spec for r in records]
    except SpecError:
        return None
    reads = tuple({field for spec in specs for field in experiment.all_reads(spec)})
    return lambda path: covers(reads, path) and _section_reads(specs[0], path)


def _section_reads(spec: RunSpec, path: str) -> bool:
    """Whether the spec's own rules read the field at `path` (train.betas only for Adam, say: spec.rules.is_read)."""
    *sections, name = path.split(".")
    section: Any = spec
    for part in sections:
        section = getattr(section, part, None)
    return not isinstance(section, BaseModel) or name not in type(section).model_fields or is_read(section, name)


def _save_figure(figure, stem: str, directory: Path, experiment: str, name: str) -> FigureView:
    figure.savefig(directory / "figures" / f"{stem}.png", dpi=110)
    figure.savefig(directory / "figures" / f"{stem}.svg")
    return FigureView(name, f"figures/{stem}.png", f"figures/{stem}.svg", f"{experiment}: {name}", figure_caption(figure))


def figure_caption(figure) -> list[str]:
    """What the figure's marks mean that its legend does not say: shaded bands (plot.mean_band) and error bars."""
    from matplotlib.collections import PolyCollection
    from matplotlib.container import ErrorbarContainer

    axes = figure.get_axes()
    lines = []
    if any(isinstance(c, PolyCollection) for ax in axes for c in ax.collections):
        lines.append(BAND_CAPTION)
    if any(isinstance(c, ErrorbarContainer) for ax in axes for c in ax.containers):
        lines.append(ERRORBAR_CAPTION)
    return lines


# ----------------------------------------------------------------------------- the run table


def run_table(records: Sequence[RunRecord], read: Callable[[str], bool] | None = None) -> RunTable:
    """Every run of a sweep, one row each: run id (linking to its page), status, the spec fields that differ
    between runs, the final metrics and seconds. Fields with one value in every run are said once, in `shared`:
    those the runs read (`read`; None: every field), so a sweep of a matrix problem does not list dataset defaults."""
    specs = [{k: v for k, v in flatten(r.spec).items() if k != "experiment"} for r in records]
    finals = [r.final for r in records]
    populations = [int(r.env.get("population", 1) or 1) for r in records]
    spec_fields = list(dict.fromkeys(k for s in specs for k in s))
    varied = [k for k in spec_fields if len({_hashable(s.get(k)) for s in specs}) > 1]
    shared = [(k, human(k, specs[0][k])) for k in spec_fields if k not in varied and specs[0].get(k) is not None and (read is None or read(k))]
    metric_names = list(dict.fromkeys([m for m in METRICS_FIRST if any(m in f for f in finals)] + [m for f in finals for m in f]))
    # a metric with the same value in every run that measured it says nothing per row: it goes to the shared line
    constant = [m for m in metric_names if len(records) > 1 and all(m in f for f in finals) and len({_hashable(f[m]) for f in finals}) == 1]
    shared += [(f"final {m}", human(m, finals[0][m])) for m in constant]
    metrics = [m for m in metric_names if m not in constant]
    hidden = max(0, len(metrics) - MAX_METRIC_COLUMNS)
    metrics = metrics[:MAX_METRIC_COLUMNS]
    pooled = max(populations) > 1

    columns = [Column("run_id", False, "the run's id: click for its curves, spec and provenance"), Column("status", False)]
    columns += [Column(k, all(sort_key(s.get(k)) is not None for s in specs), f"spec field {k}") for k in varied]
    columns += [Column(m, True, "final metric") for m in metrics]
    columns.append(Column("seconds", True, "wall time of the run; for population members, their share of the population's"))
    if pooled:
        columns.append(Column("population", True, "runs trained together as one batched computation"))
    rows = []
    for record, spec, final, population in zip(records, specs, finals, populations):
        status_title = _last_line(record.error) if record.error else ""
        row = [Cell(record.spec_id, href=f"runs/{record.spec_id}.html", title="curves, spec and provenance of this run"),
               Cell(record.status, title=status_title, css=f"status-{_slug(record.status)}")]  # fmt: skip
        row += [number_cell(k, spec.get(k)) if sort_key(spec.get(k)) is not None else Cell(human(k, spec.get(k))) for k in varied]
        row += [number_cell(m, final.get(m, math.nan)) for m in metrics]
        seconds = number_cell("seconds", record.seconds)
        if population > 1:
            seconds = Cell(f"{seconds.text} ÷", seconds.value, f"1/{population} of the population's wall time, "
                           f"{human('seconds', record.seconds * population)} s for its {population} members together")  # fmt: skip
        row.append(seconds)
        if pooled:
            row.append(number_cell("population", population))
        rows.append(row)
    note = ""
    if pooled:
        note = ("Runs with a population above 1 were trained together, as one batched computation, so no run has a time "
                "of its own: their seconds (marked ÷) are the population's wall time divided evenly among its members. "
                "Hover over a cell for the population's total.")  # fmt: skip
    return RunTable(columns, rows, shared, note, hidden)


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


# ----------------------------------------------------------------------------- a run's page


@dataclass
class CurveView:
    name: str
    points: list[str]  # SVG polyline point lists, one per stretch of finite values
    x_label: str
    x_low: str
    x_high: str
    y_low: str
    y_high: str
    last: str
    log: bool
    count: int


def _run_view(record: RunRecord) -> dict[str, Any]:
    curves = record.curves
    x_name = "step" if "step" in curves else ""
    xs = curves.get("step") or []
    views = [_curve(name, values, xs if x_name else None) for name, values in curves.items() if name != x_name]
    return {
        "record": record,
        "error_line": _last_line(record.error),
        "final": [(k, number_cell(k, v)) for k, v in record.final.items()],
        "curves": [v for v in views if v is not None],
        "flat_curves": [n for n, v in zip([n for n in curves if n != x_name], views) if v is None],
        "spec": [(k, human(k, v)) for k, v in flatten(record.spec).items()],
        "env": [(k, json.dumps(v) if isinstance(v, (dict, list)) else human(k, v)) for k, v in flatten(record.env).items()],
        "arrays": [(k, len(v)) for k, v in record.arrays.items()],
        "seconds": human("seconds", record.seconds),
        "population": int(record.env.get("population", 1) or 1),
    }


# the plot area of a curve's SVG, in its own units (the SVG scales to its box)
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 320, 150, 58, 10, 8, 30


def _curve(name: str, values: Sequence[float], steps: Sequence[float] | None) -> CurveView | None:
    """A small line plot of one curve against the step (or the evaluation's index); None if nothing is finite."""
    ys = [float(v) if isinstance(v, (int, float)) else math.nan for v in values]
    xs = [float(s) for s in steps] if steps is not None and len(steps) == len(ys) else [float(i) for i in range(len(ys))]
    finite = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    if not finite:
        return None
    positive = all(y > 0 for _, y in finite)
    low, high = min(y for _, y in finite), max(y for _, y in finite)
    log = positive and high / low > 100
    transform = math.log10 if log else (lambda y: y)
    y0, y1 = transform(low), transform(high)
    x0, x1 = min(x for x, _ in finite), max(x for x, _ in finite)
    keep = _thin(len(ys))
    stretches: list[list[str]] = [[]]
    for i in keep:
        x, y = xs[i], ys[i]
        if not (math.isfinite(x) and math.isfinite(y)):
            stretches.append([])
            continue
        px = _LEFT + (x - x0) / (x1 - x0 or 1) * (_W - _LEFT - _RIGHT)
        py = _TOP + (1 - ((transform(y) - y0) / (y1 - y0) if y1 > y0 else 0.5)) * (_H - _TOP - _BOTTOM)
        stretches[-1].append(f"{px:.1f},{py:.1f}")
    last = next((y for y in reversed(ys) if math.isfinite(y)), math.nan)
    return CurveView(
        name, [" ".join(s) for s in stretches if s], "step" if steps is not None else "evaluation",
        human("steps", x0), human("steps", x1), human(name, low), human(name, high), human(name, last), log, len(ys),
    )  # fmt: skip


def _thin(n: int) -> list[int]:
    if n <= MAX_CURVE_POINTS:
        return list(range(n))
    step = n / MAX_CURVE_POINTS
    return sorted({int(i * step) for i in range(MAX_CURVE_POINTS)} | {n - 1})


def pages_of(directory: str | Path) -> Iterable[Path]:
    """Every sweep page of a written report (for tests and tools): the HTML files beside index.html."""
    return sorted(p for p in Path(directory).glob("*.html") if p.name != "index.html")
