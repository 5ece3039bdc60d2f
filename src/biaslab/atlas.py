"""The bias atlas: catalog experiments re-run under other optimizers and architectures, judged by their own claims.

Each catalog entry that admits the atlas declares `Experiment.axes` (which optimizers and architectures it may be
trained with, its effect sizes, and the `--set` overrides that cut each preset to what the atlas runs). A cell of
the atlas is (experiment, optimizer, architecture); it runs in three steps, all through the store, so a killed
atlas resumes where it stopped:

1. the learning-rate pilot: one run of the cell (the experiment's `axes.pilot` run) at each rate of the
   optimizer's grid (`OPTIMIZERS`), PILOT_FRACTION of its step budget and no stopping rule; the rate with the
   lowest final training loss wins (a tie goes to the smaller rate; a diverged pilot never wins);
2. the cell's sweep: the experiment's preset with the axes' overrides, the optimizer's fields and the chosen
   rate, stored as an ordinary sweep (its label is the `biaslab run` command that repeats it);
3. the verdict: the experiment's own claim check on the cell's records, with each effect size on all seeds and
   on each seed alone (the interval shown is the per-seed range).

What each cell changed, its pilot losses and its sweep are kept in STORE/atlas/PRESET.json (the report's atlas
page reads it); verdicts are always computed again from the records.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from biaslab.experiments import CATALOG
from biaslab.experiments.base import Experiment
from biaslab.spec import RunSpec, SpecError, Sweep, with_values
from biaslab.store import RunRecord, Store, SweepEntry


@dataclass(frozen=True)
class OptimizerRule:
    """An atlas optimizer: the spec fields it sets and the learning rates its pilot tries."""

    label: str  # shown in the matrix
    optimizer: str  # train.optimizer ('sgd' becomes 'gd' where the experiment trains full-batch)
    momentum: float  # train.momentum (SGD family only)
    lr_grid: tuple[float, ...]  # half-decade steps around the rates common for it on small nets


OPTIMIZERS: dict[str, OptimizerRule] = {
    "sgd": OptimizerRule("SGD", "sgd", 0.0, (0.03, 0.1, 0.3)),
    "sgd+momentum": OptimizerRule("SGD+momentum 0.9", "sgd", 0.9, (0.01, 0.03, 0.1)),
    "adam": OptimizerRule("Adam", "adam", 0.0, (3e-4, 1e-3, 3e-3)),
    "adamw": OptimizerRule("AdamW", "adamw", 0.0, (3e-4, 1e-3, 3e-3)),
    "sam": OptimizerRule("SAM (rho 0.05, momentum 0.9)", "sam", 0.9, (0.01, 0.03, 0.1)),
}
ARCHITECTURES = {"mlp": "MLP", "cnn": "CNN", "token_mlp": "token MLP", "transformer": "transformer"}
SGD_FAMILY = ("gd", "sgd", "sam", "asam")
PILOT_FRACTION = 0.25  # of the cell's step budget, for each pilot run
PILOT_MAX_STEPS = 1000  # and at most this many steps


@dataclass(frozen=True)
class AtlasPreset:
    """Which experiments and cells an atlas preset runs, at which experiment preset. None: every entry with axes."""

    experiments: tuple[str, ...] | None
    optimizers: tuple[str, ...]
    architectures: tuple[str, ...]
    note: str  # what it costs and what it leaves out, in a line
    only: dict[str, tuple[str, ...]] = field(default_factory=dict)  # experiment -> the optimizers it runs at this preset


PRESETS: dict[str, AtlasPreset] = {
    "tiny": AtlasPreset(("width-sweep", "grokking"), ("sgd", "adam"), ("mlp", "token_mlp"), "seconds: for tests; verdicts at tiny mean nothing"),
    "quick": AtlasPreset(
        ("width-sweep", "grokking"), tuple(OPTIMIZERS), ("mlp", "cnn", "token_mlp"),
        "about 45 minutes on 2 CPU cores: the width sweep on clean labels at 4 widths and 3 seeds with MLPs and CNNs "
        "under all five optimizers; grokking's MLP with and without weight decay (one seed, 8k full-batch steps) under "
        "GD with momentum, Adam and AdamW (plain GD and SAM, which takes two gradients a step, and the transformer "
        "need the paper preset, as do the other entries)",
        only={"grokking": ("sgd+momentum", "adam", "adamw")},
    ),  # fmt: skip
    "paper": AtlasPreset(None, tuple(OPTIMIZERS), tuple(ARCHITECTURES), "every entry with axes at its paper preset: for a GPU or a Ray cluster"),
}


@dataclass(frozen=True)
class Cell:
    experiment: str
    optimizer: str  # a key of OPTIMIZERS
    architecture: str  # a model.kind

    @property
    def label(self) -> str:
        return f"{self.experiment} / {OPTIMIZERS[self.optimizer].label} / {ARCHITECTURES[self.architecture]}"


@dataclass
class CellPlan:
    """What the atlas did for one cell (kept in STORE/atlas/PRESET.json)."""

    experiment: str
    optimizer: str
    architecture: str
    status: str = "planned"  # run | same as CELL | no stable rate | refused: WHY
    overrides: dict[str, Any] = field(default_factory=dict)  # the cell sweep's --set values, rate included
    pilot: dict[str, float] = field(default_factory=dict)  # rate -> final training loss of its pilot run (nan: diverged)
    lr: float | None = None
    sweep_id: str | None = None
    seconds: float = 0.0

    @property
    def cell(self) -> Cell:
        return Cell(self.experiment, self.optimizer, self.architecture)


# ----------------------------------------------------------------------------- planning


def atlas_experiments(names: Sequence[str] | None = None) -> list[Experiment]:
    """The catalog entries with axes, in catalog order (or those named, each checked to have axes)."""
    if names is None:
        return [e for e in (CATALOG.get(n) for n in CATALOG.names()) if e.axes is not None]
    chosen = []
    for name in names:
        if name not in CATALOG:
            admitted = ", ".join(e.name for e in atlas_experiments())
            raise SpecError(f"experiments: {name!r} is not a catalog experiment; the atlas admits: {admitted}")
        experiment = CATALOG.get(name)
        if experiment.axes is None:
            raise SpecError(f"experiments: {name} is not in the atlas ({experiment.axes_note or 'it declares no axes'})")
        chosen.append(experiment)
    return chosen


def plan_cells(preset: str, experiments: Sequence[str] | None = None, optimizers: Sequence[str] | None = None, architectures: Sequence[str] | None = None) -> list[CellPlan]:
    """Every cell the preset (or the given subsets) asks for that its experiment admits, in matrix order."""
    if preset not in PRESETS:
        raise SpecError(f"preset: the atlas has no preset {preset!r}; allowed: {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    for name in optimizers or ():
        if name not in OPTIMIZERS:
            raise SpecError(f"optimizers: {name!r} is not an atlas optimizer; allowed: {', '.join(OPTIMIZERS)}")
    for name in architectures or ():
        if name not in ARCHITECTURES:
            raise SpecError(f"architectures: {name!r} is not a model.kind; allowed: {', '.join(ARCHITECTURES)}")
    cells = []
    for experiment in atlas_experiments(experiments if experiments is not None else chosen.experiments):
        axes = experiment.axes
        for architecture in [a for a in (architectures or chosen.architectures) if a in axes.architectures]:
            allowed = chosen.only.get(experiment.name, axes.optimizers) if not optimizers else axes.optimizers
            for optimizer in [o for o in (optimizers or chosen.optimizers) if o in allowed]:
                cells.append(CellPlan(experiment.name, optimizer, architecture))
    return cells


def cell_sweep(experiment: Experiment, preset: str, overrides: dict[str, Any]) -> Sweep:
    """The experiment's preset with the atlas's overrides for that preset and `overrides` on top."""
    reduce = experiment.axes.reduce.get(preset, {}) if experiment.axes else {}
    return experiment.sweep(preset).override(reduce | overrides)


def optimizer_fields(rule: OptimizerRule, base: RunSpec) -> dict[str, Any]:
    """The --set values that train `base` with the rule's optimizer, leaving every other field as the experiment set it
    (weight decay included); fields the new optimizer does not read go back to their defaults."""
    optimizer = "gd" if rule.optimizer == "sgd" and base.train.batch_size is None else rule.optimizer
    fields: dict[str, Any] = {"train.optimizer": optimizer}
    if optimizer in SGD_FAMILY:
        fields["train.momentum"] = rule.momentum
        if base.train.betas != (0.9, 0.999):
            fields["train.betas"] = [0.9, 0.999]
    else:
        if base.train.momentum != 0.0:
            fields["train.momentum"] = 0.0
        if base.train.nesterov:
            fields["train.nesterov"] = False
    if optimizer not in ("sam", "asam") and base.train.rho != 0.05:
        fields["train.rho"] = 0.05
    return fields


def cell_overrides(experiment: Experiment, cell: Cell, preset: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The --set values of a cell, before its rate: the user's `extra` values, the optimizer's fields and the
    architecture."""
    extra = dict(extra or {})
    base = cell_sweep(experiment, preset, extra).expand()[0]
    overrides = extra | optimizer_fields(OPTIMIZERS[cell.optimizer], base)
    if base.model.kind != cell.architecture:
        overrides["model.kind"] = cell.architecture
    return overrides


def same_as(experiment: Experiment, cell: Cell, preset: str, extra: dict[str, Any] | None = None) -> Cell | None:
    """Another cell this one would repeat exactly: AdamW is Adam where no run of the experiment has weight decay."""
    if cell.optimizer == "adamw" and "adam" in experiment.axes.optimizers:
        try:
            specs = cell_sweep(experiment, preset, dict(extra or {})).expand()
        except SpecError:  # the cell is refused when it runs, with the line that says why
            return None
        if all(spec.train.weight_decay == 0.0 for spec in specs):
            return Cell(cell.experiment, "adam", cell.architecture)
    return None


def pilot_sweep(sweep: Sweep, pilot: dict[str, Any], grid: tuple[float, ...]) -> Sweep:
    """The pilot: the sweep's first run matching `pilot`, at each rate of `grid`, for PILOT_FRACTION of its budget
    (at most PILOT_MAX_STEPS), without a stopping rule, so every rate trains the same number of steps."""
    specs = sweep.expand()
    matching = [s for s in specs if all(_value(s, path) == value for path, value in pilot.items())]
    if not matching:
        raise SpecError(f"axes.pilot: no run of the sweep has {pilot}")
    spec = matching[0]
    steps = max(1, min(PILOT_MAX_STEPS, int(spec.train.max_steps * PILOT_FRACTION)))
    changes: dict[str, Any] = {"train.max_steps": steps, "train.stop_zero_error_evals": None, "train.stop_loss": None}
    if spec.train.eval_spacing == "linear":
        changes["train.eval_every"] = min(spec.train.eval_every, steps)
    if spec.train.eval_spacing == "log":
        changes["train.eval_points"] = min(spec.train.eval_points, steps + 1)
    return Sweep(base=with_values(spec, changes), grid={"train.lr": tuple(grid)})


def _value(spec: RunSpec, path: str) -> Any:
    value: Any = spec
    for part in path.split("."):
        value = getattr(value, part)
    return value


def chosen_rate(records: Sequence[RunRecord]) -> tuple[float | None, dict[str, float]]:
    """The pilot's winner (lowest final training loss; smaller rate on a tie; None if every pilot diverged or
    failed) and each rate's final training loss (nan where it diverged or failed)."""
    losses = {}
    for record in records:
        loss = record.final.get("train_loss", math.nan) if record.status == "ok" else math.nan
        losses[record.run_spec.train.lr] = loss if math.isfinite(loss) else math.nan
    finite = sorted((loss, lr) for lr, loss in losses.items() if not math.isnan(loss))
    return (finite[0][1] if finite else None), {f"{lr:g}": losses[lr] for lr in sorted(losses)}


# ----------------------------------------------------------------------------- running


ATLAS_FIELDS = ("train.optimizer", "train.lr", "train.momentum", "train.betas", "train.nesterov", "train.rho", "model.kind")


def run_atlas(
    preset: str,
    store: Store,
    experiments: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    architectures: Sequence[str] | None = None,
    on_cell: Callable[[CellPlan, int, int], None] | None = None,
    overrides: dict[str, Any] | None = None,
    **sweep_options: Any,
) -> list[CellPlan]:
    """Run every cell of the atlas into `store` (pilots, then the cell's sweep), skipping what the store holds, and
    write STORE/atlas/PRESET.json after each cell. `overrides`: --set values for every cell (`data.root`, say; not
    the fields the atlas sets itself, ATLAS_FIELDS); a cell whose experiment does not take one is refused, with why.
    `sweep_options` go to `run_sweep` (executor, workers, backend, address, on_record). `on_cell(plan, index,
    total)` is called after each cell."""
    for path in overrides or {}:
        if path in ATLAS_FIELDS:
            raise SpecError(f"{path}: the atlas sets it in every cell (the optimizer, its rate and the architecture); set the others")
    cells = plan_cells(preset, experiments, optimizers, architectures)
    done: dict[Cell, CellPlan] = {}
    for index, plan in enumerate(cells, 1):
        started = time.perf_counter()
        experiment = CATALOG.get(plan.experiment)
        twin = same_as(experiment, plan.cell, preset, overrides)
        if twin is not None and twin in done:  # the same runs: judged from the twin's sweep, not run again
            source = done[twin]
            plan.status = f"same as {OPTIMIZERS[twin.optimizer].label}"
            plan.overrides, plan.lr, plan.sweep_id, plan.pilot = dict(source.overrides), source.lr, source.sweep_id, dict(source.pilot)
        else:
            _run_cell(plan, experiment, preset, store, overrides or {}, sweep_options)
        plan.seconds = time.perf_counter() - started
        done[plan.cell] = plan
        save_manifest(store, preset, cells)
        if on_cell is not None:
            on_cell(plan, index, len(cells))
    return cells


def _run_cell(plan: CellPlan, experiment: Experiment, preset: str, store: Store, extra: dict[str, Any], options: dict) -> None:
    """Pilot, choose the rate, run the cell's sweep; a cell the experiment refuses is recorded with why."""
    from biaslab.sweep import preflight, run_sweep

    try:
        overrides = cell_overrides(experiment, plan.cell, preset, extra)
        pilot = pilot_sweep(cell_sweep(experiment, preset, overrides | {"train.lr": OPTIMIZERS[plan.optimizer].lr_grid[0]}), experiment.axes.pilot, OPTIMIZERS[plan.optimizer].lr_grid)
        preflight(pilot)  # the experiment's check, the device, data files that must be there
    except (SpecError, OSError, ValueError) as error:  # e.g. the paper preset's MNIST without data.root: said, not raised
        plan.status = f"refused: {' '.join(str(error).split())}"
        return
    pilot_outcome = run_sweep(pilot, store, preset, {}, listed=False, **options)
    plan.lr, plan.pilot = chosen_rate(pilot_outcome.records)
    if plan.lr is None:
        plan.status = "no stable rate"
        return
    plan.overrides = overrides | {"train.lr": plan.lr}
    sweep = cell_sweep(experiment, preset, plan.overrides)
    preflight(sweep)
    reduce = experiment.axes.reduce.get(preset, {})
    run_sweep(sweep, store, preset, reduce | plan.overrides, **options)
    plan.sweep_id = SweepEntry(experiment.name, preset, reduce | plan.overrides, ()).sweep_id
    plan.status = "run"


# ----------------------------------------------------------------------------- the manifest


def manifest_path(store: Store, preset: str) -> Path:
    return store.path / "atlas" / f"{preset}.json"


def save_manifest(store: Store, preset: str, cells: Sequence[CellPlan]) -> Path:
    path = manifest_path(store, preset)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"preset": preset, "cells": [asdict(c) for c in cells]}, indent=1, allow_nan=True))
    return path


def load_manifests(store: Store) -> dict[str, list[CellPlan]]:
    """Every atlas manifest in the store, by preset; a file that is not a manifest is skipped with no error (the
    report must render whatever else the store holds)."""
    found = {}
    for path in sorted((store.path / "atlas").glob("*.json")):
        if path.stem not in PRESETS:
            continue
        try:
            cells = [CellPlan(**c) for c in json.loads(path.read_text())["cells"]]
        except (ValueError, KeyError, TypeError):
            continue
        found[path.stem] = [c for c in cells if _known(c)]
    return found


def _known(plan: CellPlan) -> bool:
    """A manifest entry names a catalog experiment, an atlas optimizer and architecture, and a hex sweep_id or none."""
    sweep_ok = plan.sweep_id is None or re.fullmatch(r"[0-9a-f]{16}", str(plan.sweep_id)) is not None
    return plan.experiment in CATALOG and plan.optimizer in OPTIMIZERS and plan.architecture in ARCHITECTURES and sweep_ok


# ----------------------------------------------------------------------------- judging


@dataclass
class Judged:
    """A cell's verdict and its effect sizes: on all seeds, and the range over seeds judged one at a time."""

    plan: CellPlan
    label: str  # PASS, FAIL, or what the cell is instead (not run, same as, no stable rate, refused)
    reason: str = ""
    effects: dict[str, float] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    seeds: int = 0
    runs: int = 0


def judge(plan: CellPlan, store: Store, entries: dict[str, SweepEntry]) -> Judged:
    """The cell's verdict from its stored records (the experiment's own claim check)."""
    entry = entries.get(plan.sweep_id or "")
    if entry is None:
        return Judged(plan, "not run" if plan.status in ("planned", "run") else plan.status.split(":")[0], plan.status)
    experiment = CATALOG.get(plan.experiment)
    records = store.records_of(entry.spec_ids)
    finished = [r for r in records if r.status == "ok"]
    if not finished:
        return Judged(plan, "not run", f"{len(records)} of {len(entry.spec_ids)} runs stored, none finished", runs=len(records))
    verdict = experiment.verdict(records)
    names = [e.number for e in experiment.axes.effect_sizes]
    judged = Judged(plan, verdict.label, verdict.reason, {n: verdict.numbers.get(n, math.nan) for n in names}, runs=len(records))
    seeds = sorted({r.run_spec.seed for r in finished})
    judged.seeds = len(seeds)
    if len(seeds) > 1:
        per_seed = [experiment.verdict([r for r in records if r.run_spec.seed == s]).numbers for s in seeds]
        for name in names:
            values = [n.get(name, math.nan) for n in per_seed]
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                judged.ranges[name] = (min(finite), max(finite))
    if plan.status.startswith("same as"):  # the twin's runs, judged again: the same verdict, said to be shared
        judged.reason = f"the runs of the {plan.status.removeprefix('same as ')} cell (no run of this experiment has weight decay): {verdict.reason}"
    return judged


def judge_all(cells: Sequence[CellPlan], store: Store) -> list[Judged]:
    entries = {e.sweep_id: e for e in store.sweeps()}
    return [judge(plan, store, entries) for plan in cells]


# ----------------------------------------------------------------------------- showing


def effect_text(value: float, interval: tuple[float, float] | None) -> str:
    """'+0.123 [+0.101, +0.150]': three significant digits, signed; the bracket is the per-seed range."""
    if not math.isfinite(value):
        return "n/a"
    text = f"{value:+.3g}"
    return text + (f" [{interval[0]:+.3g}, {interval[1]:+.3g}]" if interval else "")


def pilot_lines(pilot: dict[str, float], arrow: str = "->") -> list[str]:
    """Each pilot rate with its final training loss ('0.01 -> 0.41', '0.1 -> diverged'), for the terminal and the report."""
    return [f"{rate} {arrow} {'diverged' if math.isnan(loss) else f'{loss:.3g}'}" for rate, loss in pilot.items()]


def rows_of(judged: Sequence[Judged]) -> list[tuple[str, str]]:
    """(experiment, architecture) rows present, in the order the cells were planned."""
    return list(dict.fromkeys((j.plan.experiment, j.plan.architecture) for j in judged))


def columns_of(judged: Sequence[Judged]) -> list[str]:
    """The optimizers present, in the order of OPTIMIZERS."""
    present = {j.plan.optimizer for j in judged}
    return [o for o in OPTIMIZERS if o in present]


def matrix_figure(judged: Sequence[Judged], preset: str) -> Figure:
    """Rows experiment x architecture, columns optimizers (every architecture family is its own rows, so no cell is
    empty for a model an experiment's data cannot take); each cell coloured by its verdict, with its first effect
    size, the per-seed range and the chosen rate; a cell an experiment does not admit says so."""
    rows, columns = rows_of(judged), columns_of(judged)
    at = {(j.plan.experiment, j.plan.architecture, j.plan.optimizer): j for j in judged}
    figure = Figure(figsize=(2.4 + 1.5 * len(columns), 1.2 + 0.8 * len(rows)), layout="constrained")
    ax = figure.subplots()
    for r, (name, architecture) in enumerate(rows):
        effect = CATALOG.get(name).axes.effect_sizes[0].number
        for c, optimizer in enumerate(columns):
            cell = at.get((name, architecture, optimizer))
            if cell is None:
                ax.add_patch(_rect(c, r, "#ffffff"))
                ax.text(c, r, "not in this atlas", ha="center", va="center", fontsize=7, color="#888888")
                continue
            ax.add_patch(_rect(c, r, VERDICT_COLOURS.get(cell.label, "#e0e0e0")))
            label = f"{cell.label} (= {cell.plan.status.removeprefix('same as ')})" if cell.plan.status.startswith("same as") else cell.label
            ax.text(c, r - 0.24, label, ha="center", va="center", fontsize=8, weight="bold")
            ax.text(c, r + 0.02, effect_text(cell.effects.get(effect, math.nan), cell.ranges.get(effect)), ha="center", va="center", fontsize=7.5)
            ax.text(c, r + 0.27, f"lr {cell.plan.lr:g}" if cell.plan.lr is not None else "", ha="center", va="center", fontsize=6.5, color="#444444")
    ax.set_xlim(-0.5, len(columns) - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xticks(range(len(columns)), [OPTIMIZERS[o].label.replace(" (", "\n(") for o in columns], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), [f"{n}, {ARCHITECTURES[a]}\n{CATALOG.get(n).axes.effect_sizes[0].number}" for n, a in rows], fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    figure.suptitle(f"bias atlas ({preset}): each experiment's own claim per cell\neffect size on all seeds [range over seeds judged one by one]; rate from the pilot", fontsize=9)
    return figure


VERDICT_COLOURS = {"PASS": "#a5d6a7", "FAIL": "#ef9a9a"}  # anything else (same as, not run, no stable rate): grey


def _rect(column: int, row: int, colour: str):
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.48, row - 0.46), 0.96, 0.92, facecolor=colour, edgecolor="#9e9e9e", linewidth=0.6)


def atlas_table(judged: Sequence[Judged], preset: str):
    """The atlas as a tidy table: one row per cell and effect size."""
    import pandas as pd

    rows = []
    for j in judged:
        names = [e.number for e in CATALOG.get(j.plan.experiment).axes.effect_sizes]
        for name in names:
            low, high = j.ranges.get(name, (math.nan, math.nan))
            rows.append({
                "preset": preset, "experiment": j.plan.experiment, "optimizer": j.plan.optimizer, "architecture": j.plan.architecture,
                "verdict": j.label, "lr": j.plan.lr if j.plan.lr is not None else math.nan, "effect": name,
                "value": j.effects.get(name, math.nan), "seed_min": low, "seed_max": high, "seeds": j.seeds, "runs": j.runs,
                "pilot": json.dumps(j.plan.pilot), "sweep_id": j.plan.sweep_id or "", "status": j.plan.status, "seconds": j.plan.seconds,
            })  # fmt: skip
    return pd.DataFrame(rows)


def text_matrix(judged: Sequence[Judged]) -> str:
    """The matrix for a terminal: one line per cell."""
    lines = []
    for j in judged:
        effect = CATALOG.get(j.plan.experiment).axes.effect_sizes[0].number
        value = effect_text(j.effects.get(effect, math.nan), j.ranges.get(effect))
        rate = f"lr {j.plan.lr:g}" if j.plan.lr is not None else j.plan.status
        lines.append(f"{j.plan.experiment:<14} {OPTIMIZERS[j.plan.optimizer].label.split(' (')[0]:<18} {ARCHITECTURES[j.plan.architecture]:<11} "
                     f"{j.label:<6} {effect} = {value}  ({rate}, {j.seeds} seed{'s' if j.seeds != 1 else ''})")  # fmt: skip
    return "\n".join(lines)


def write_outputs(judged: Sequence[Judged], preset: str, store: Store) -> tuple[Path, Path]:
    """STORE/atlas/PRESET.png (the matrix) and PRESET.csv (the tidy table)."""
    from biaslab.store import write_table

    directory = store.path / "atlas"
    directory.mkdir(exist_ok=True)
    figure = directory / f"{preset}.png"
    matrix_figure(judged, preset).savefig(figure, dpi=120)
    table = write_table(atlas_table(judged, preset), directory / f"{preset}.csv", "csv")
    return figure, table
