"""The `biaslab` command: parses, calls the library, prints, sets exit codes.

Exit codes: 0 done; 1 some runs failed (crashed), or `store check` found
damage; 2 bad input (the one-line message names the field, file or path and
what is allowed). Records a damaged store could not decode are skipped with a
`biaslab: warning:` line each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from biaslab.spec import SpecError, parse_override
from biaslab.store import DEFAULT_PATH, RunNotFound, Store, StoreError, StoreWarning, unwritable_directory
from biaslab.trackers import TARGETS, TrackerError, TrackerWarning
from biaslab.workers import available_cores, start_worker_server

BAD_INPUT = 2
CARD_SECTIONS = ("fit", "norms", "margins", "curvature", "sharpness", "spectra", "calibration", "bounds")  # biaslab.card.SECTIONS, without importing torch for --help


class InputError(Exception):
    """Bad user input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise InputError(message)


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """What names a sweep, for `run` and `config` alike: the experiment, its preset, a config file, --set overrides."""
    parser.add_argument("experiment")
    parser.add_argument("--preset", default=None, help="tiny, quick (default) or paper")
    parser.add_argument("--config", dest="config_file", type=Path, default=None, metavar="FILE.yaml", help="overrides from a YAML file (before --set)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="e.g. train.lr=0.05")


def _execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the runs go and how they are spread, for `run` and `atlas` alike."""
    parser.add_argument("--store", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--executor", default="auto", help="auto (default), inprocess, processes or population")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--backend", default="local", help="local (default) or ray")
    parser.add_argument("--address", default=None, help="with --backend ray: HOST:PORT of a running Ray cluster (default: start one here)")
    parser.add_argument("--no-report", action="store_true", help="skip writing the HTML report")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="biaslab", description="Measure the implicit regularization of deep learning.")
    parser.add_argument("--version", action="version", version=_version_text())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    listing = commands.add_parser("list", help="the catalog of experiments")
    listing.add_argument("--long", action="store_true", help="full titles, references and presets")

    config = commands.add_parser("config", help="print an experiment's resolved sweep as YAML, or with --fields every settable field")
    _sweep_arguments(config)
    config.add_argument("--fields", action="store_true", help="every settable field with its type, value, default and allowed values")

    run = commands.add_parser("run", help="run an experiment's sweep, print its verdict, write the report")
    _sweep_arguments(run)
    _execution_arguments(run)
    run.add_argument("--track", action="append", default=[], metavar="NAME[:DIR]",
                     help=f"also send the runs to a tracker (repeatable): {TARGETS}; default DIR: a folder of the store")  # fmt: skip

    atlas = commands.add_parser("atlas", help="run experiments under every optimizer and architecture they admit; write the verdict matrix")
    atlas.add_argument("--preset", default="quick", help="tiny (tests), quick (default: about 45 min on 2 cores) or paper (a GPU or Ray)")
    atlas.add_argument("--experiments", default=None, metavar="A,B", help="only these experiments (default: the preset's)")
    atlas.add_argument("--optimizers", default=None, metavar="A,B", help="only these: sgd, sgd+momentum, adam, adamw, sam")
    atlas.add_argument("--architectures", default=None, metavar="A,B", help="only these model kinds: mlp, cnn, token_mlp, transformer")
    atlas.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="for every cell, e.g. data.root=/data/mnist (not the optimizer, its rate or model.kind: the atlas sets them)")  # fmt: skip
    _execution_arguments(atlas)

    track = commands.add_parser("track", help="send a store's runs (and each sweep's verdict) to TensorBoard, W&B offline or MLflow")
    track.add_argument("targets", nargs="+", metavar="NAME[:DIR]", help=f"{TARGETS}; default DIR: a folder of the store")
    track.add_argument("--store", type=Path, default=DEFAULT_PATH)
    track.add_argument("--experiment", default=None, help="only this experiment's sweeps")
    track.add_argument("--again", action="store_true", help="also send runs the tracker already holds (as new runs)")

    report = commands.add_parser("report", help="write STORE/report/index.html for every sweep in the store")
    report.add_argument("--store", type=Path, default=DEFAULT_PATH)
    report.add_argument("--out", type=Path, default=None)

    export = commands.add_parser("export", help="write one row per run to CSV or Parquet (and the curves, in long format, with --curves)")
    export.add_argument("destination", type=Path)
    export.add_argument("--store", type=Path, default=DEFAULT_PATH)
    export.add_argument("--format", default=None, help="csv or parquet (default: from each file's name)")
    export.add_argument("--curves", type=Path, default=None, metavar="DEST", help="also write every curve in long format (run_id, metric, step, value) to DEST")
    export.add_argument("--drop-constant", action="store_true", help="leave out the runs table's columns that are the same in every exported run")

    probe = commands.add_parser("probe", help="the generalization report card of a trained model: probes, error bars, bounds")
    probe.add_argument("run_id", nargs="?", help="a stored run whose weights were kept (--set save_weights=true)")
    probe.add_argument("--store", type=Path, default=DEFAULT_PATH)
    probe.add_argument("--model", default=None, metavar="MODULE:FUNCTION", help="your model: a function returning it (module or file.py, found from the current directory), or a torch.export program (.pt2)")
    probe.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE", help="keyword argument for the model function, e.g. width=128")
    probe.add_argument("--weights", type=Path, default=None, help="with --model: its state_dict (.safetensors, or .pt read weights-only)")
    probe.add_argument("--init", type=Path, default=None, help="with --model: the state_dict at initialization (enables distance from init and the PAC-Bayes bound)")
    probe.add_argument("--trust-exported", action="store_true", help="read a .pt2 torch.export program (torch unpickles it: only for files you made)")
    probe.add_argument("--data-file", type=Path, default=None, help="your split: .npz, .safetensors or .pt with x_train, y_train, x_test, y_test")
    probe.add_argument("--data-factory", default=None, metavar="MODULE:FUNCTION", help="your split from a function returning x_train, y_train, x_test, y_test")
    probe.add_argument("--data-arg", action="append", default=[], metavar="NAME=VALUE", help="keyword argument for the data function")
    probe.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="a biaslab dataset instead (its own split; the card says so), e.g. name=digits")
    probe.add_argument("--expect-train-error", type=float, default=None, help="the training error you measured; the card warns when its own differs")
    probe.add_argument("--loss", default="cross_entropy", help="with --model: cross_entropy (default) or mse")
    probe.add_argument("--sections", default=None, help=f"comma-separated sections to run (default all: {', '.join(CARD_SECTIONS)})")
    probe.add_argument("--skip", default="", help="comma-separated sections to leave out")
    probe.add_argument("--time-budget", default=None, help="e.g. 90s or 10m: scale the probe counts to fit (error bars say what it cost)")
    probe.add_argument("--estimate", action="store_true", help="print the estimated seconds per section and stop")
    probe.add_argument("--out", type=Path, default=None, help="directory for card.json, card.html, figures (default: STORE/cards/RUN or ./biaslab-card)")
    probe.add_argument("--examples", type=int, default=None, help="training examples (a random subset) for curvature and sharpness")
    probe.add_argument("--seed", type=int, default=0, help="for the example subset, random probe vectors and perturbations")
    probe.add_argument("--budget", default="full", help="full (default: numbers to report) or small (a first look in seconds)")
    probe.add_argument("--device", default="cpu")

    show = commands.add_parser("show", help="one run: spec, status, curves summary, provenance")
    show.add_argument("run_id")
    show.add_argument("--store", type=Path, default=DEFAULT_PATH)

    store = commands.add_parser("store", help="check a store for damage, or salvage its readable records into a new one")
    store_commands = store.add_subparsers(dest="store_command", required=True, parser_class=_Parser)
    check = store_commands.add_parser("check", help="read every record without writing; list damage (exit 1 if any)")
    check.add_argument("--store", type=Path, default=DEFAULT_PATH)
    repair = store_commands.add_parser("repair", help="copy every readable record, sweep and weights file into a new store")
    repair.add_argument("--store", type=Path, default=DEFAULT_PATH)
    repair.add_argument("--out", type=Path, required=True, help="directory for the new store (must not hold a store)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    commands = {"list": cmd_list, "config": cmd_config, "run": cmd_run, "atlas": cmd_atlas, "report": cmd_report, "export": cmd_export,
                "show": cmd_show, "probe": cmd_probe, "store": cmd_store, "track": cmd_track}  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        warnings.simplefilter("always", TrackerWarning)
        try:
            args = _parser().parse_args(argv)
            return commands[args.command](args)
        except (InputError, SpecError, RunNotFound, StoreError) as error:
            one_line = str(error).replace("\r", "\\r").replace("\n", "\\n")  # user input echoed in it may hold newlines
            print(f"biaslab: error: {one_line}", file=sys.stderr)
            return BAD_INPUT
        except BrokenPipeError:  # `biaslab config X --fields | head`: the reader left; not an error of ours
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (Python flushes stdout at exit; give it somewhere to go)
            return 0
        finally:
            _show_warnings(caught)


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Each distinct StoreWarning, TrackerWarning or SweepWarning as one `biaslab: warning:` line; other warnings as
    Python shows them."""
    sweep = sys.modules.get("biaslab.sweep")  # imported only by commands that run sweeps, the only source of SweepWarning
    one_line = (StoreWarning, TrackerWarning) + ((sweep.SweepWarning,) if sweep is not None else ())
    shown: set[str] = set()
    for item in caught:
        if issubclass(item.category, one_line):
            if str(item.message) not in shown:
                shown.add(str(item.message))
                print(f"biaslab: warning: {item.message}", file=sys.stderr)
        else:
            warnings.showwarning(item.message, item.category, item.filename, item.lineno, item.file, item.line)


def _version_text() -> str:
    from biaslab import __version__

    return f"biaslab {__version__}"


LIST_WIDTH = 100  # `biaslab list` fits a terminal of this many columns; --long prints everything


def cmd_list(args: argparse.Namespace) -> int:
    from biaslab.catalog import INDEX  # plain data: listing imports no experiment, torch or scipy

    width = max(len(name) for name in INDEX)
    for name, (title, reference, presets) in INDEX.items():
        if args.long:
            print(f"{name:<{width}}  {title}  [{reference}]  presets: {', '.join(presets)}")
        else:
            print(_clip(f"{name:<{width}}  {title}", LIST_WIDTH))
    if not args.long:
        print(_clip("(biaslab list --long: references and presets; biaslab config NAME --fields: what you can set)", LIST_WIDTH))
    return 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _overrides(args: argparse.Namespace) -> dict:
    """--config FILE.yaml first, then each --set on top: one dict of dotted paths, validated by the sweep."""
    values = _config_file(args.config_file) if args.config_file is not None else {}
    return values | dict(parse_override(item) for item in args.overrides)


def _config_file(path: Path) -> dict:
    """A YAML mapping of dotted paths (`train.lr: 0.05`) or nested sections (`train: {lr: 0.05}`), flattened."""
    import yaml

    if not path.is_file():
        raise InputError(f"--config: no such file {path}")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first = str(error).strip().splitlines()[0]
        raise InputError(f"--config: {path} is not valid YAML ({first})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise InputError(f"--config: {path} must hold a mapping of field paths to values, got a {type(content).__name__}")
    flat: dict = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if not isinstance(key, str):
                raise InputError(f"--config: {path}: key {key!r} is not a field name")
            if isinstance(value, dict) and not _takes_a_whole_section(prefix + key):
                walk(value, f"{prefix}{key}.")
            else:
                flat[prefix + key] = value

    walk(content, "")
    return flat


def _takes_a_whole_section(path: str) -> bool:
    """`problem` and `estimator` are set whole (their `kind` decides the fields); `train`, `data`, `model` by field."""
    return path in ("problem", "estimator")


def _experiment(name: str):
    from biaslab.experiments import CATALOG
    from biaslab.registry import UnknownName

    try:
        return CATALOG.get(name)
    except UnknownName as error:
        raise InputError(str(error)) from None


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from biaslab.spec import settable_fields

    experiment = _experiment(args.experiment)
    preset = args.preset if args.preset is not None else experiment.default_preset
    sweep = experiment.sweep(preset).override(_overrides(args))
    if args.fields:
        swept = sweep.swept_paths()
        for row in settable_fields(sweep.base):
            value = "swept: " + ", ".join(map(json.dumps, sweep.grid[row["path"]])) if row["path"] in sweep.grid else json.dumps(row["value"])
            marker = " (swept)" if row["path"] in swept else ""
            allowed = f"  [{row['allowed']}]" if row["allowed"] else ""
            print(f"{row['path']:<28} {row['type']:<14} = {value}{marker}{allowed}")
        return 0
    resolved = {"experiment": experiment.name, "preset": preset, "runs": len(sweep.expand()),
                "base": sweep.base.model_dump(mode="json"), "grid": {k: list(v) for k, v in sweep.grid.items()}}  # fmt: skip
    if sweep.also:
        resolved["also"] = [{"base": part.base.model_dump(mode="json"), "grid": {k: list(v) for k, v in part.grid.items()}} for part in sweep.also]
    print(yaml.safe_dump(resolved, sort_keys=False, default_flow_style=False, width=100), end="")
    return 0


def _store(path: Path, must_exist: bool = True, readonly: bool = True) -> Store:
    """The store at `path` for a command; read-only by default (nothing is written, so archived stores work)."""
    if must_exist and not (path / "runs.sqlite").exists():
        raise InputError(f"--store: no biaslab store at {path} (run `biaslab run EXPERIMENT --store {path}` first)")
    return Store(path, readonly=readonly)  # a StoreError (not a store, damaged) is one line and exit 2 in `main`


def _check_execution(args: argparse.Namespace) -> None:
    """InputError for an executor, backend, address or worker count that `run_sweep` would refuse."""
    from biaslab.sweep import BACKENDS, EXECUTORS

    if args.executor not in EXECUTORS:
        raise InputError(f"--executor: {args.executor!r} is not one of {', '.join(EXECUTORS)}")
    if args.backend not in BACKENDS:
        raise InputError(f"--backend: {args.backend!r} is not one of {', '.join(BACKENDS)}")
    if args.address is not None and args.backend != "ray":
        raise InputError("--address: only with --backend ray")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers: must be at least 1, got {args.workers}")


def cmd_run(args: argparse.Namespace) -> int:
    if args.backend == "local" and args.executor in ("auto", "processes"):  # may use worker processes: their fork
        start_worker_server()  # server imports torch and biaslab beside this process's imports, not after them
    from biaslab.sweep import preflight

    experiment = _experiment(args.experiment)
    _check_execution(args)
    if args.preset is not None and not args.preset.strip():
        raise InputError(f"--preset: an empty name is not a preset; allowed: {', '.join(experiment.presets)}")
    overrides = _overrides(args)
    preset = args.preset or experiment.default_preset
    sweep = experiment.sweep(preset).override(overrides)
    try:
        preflight(sweep)
    except (OSError, ValueError) as error:
        raise InputError(str(error)) from None
    from biaslab.sweep import BackendUnavailable

    trackers = _trackers(args.track, args.store, "--track")  # before the store is made: a missing library leaves nothing behind
    store = Store(args.store)
    try:
        outcome = _run_with_progress(sweep, store, preset, overrides, args, trackers)
    except BackendUnavailable as error:
        raise InputError(str(error)) from None
    failed = [r for r in outcome.records if r.status == "failed"]
    diverged = sum(r.status == "diverged" for r in outcome.records)
    stored = outcome.skipped - outcome.elsewhere
    others = f", {outcome.elsewhere} by another sweep on the store meanwhile" if outcome.elsewhere else ""
    print(f"{experiment.name} ({preset}): {outcome.ran} runs now, {stored} already in {args.store}{others}"
          f" [{outcome.executor}]; {diverged} diverged, {len(failed)} failed")  # fmt: skip
    for record in failed[:3]:
        print(f"failed run {record.spec_id}: {(record.error or '').strip().splitlines()[-1]}  (biaslab show {record.spec_id})")
    if any(r.status == "ok" for r in outcome.records):
        print(experiment.verdict(outcome.records).summary())
    for tracker in trackers:
        print(f"{tracker.name}: {tracker.where}  (view: {tracker.view})")
    if not args.no_report:
        from biaslab.report import write_report

        print(f"report: {write_report(store)}")
    return 1 if failed else 0


def cmd_atlas(args: argparse.Namespace) -> int:
    """Run the atlas's cells into the store, one line per cell; print the matrix; write its figure, table and report."""
    from biaslab import atlas
    from biaslab.sweep import BackendUnavailable

    _check_execution(args)
    chosen = {flag: _names(getattr(args, flag)) if getattr(args, flag) is not None else None for flag in ("experiments", "optimizers", "architectures")}
    overrides = dict(parse_override(item) for item in args.overrides)
    for path in overrides:
        if path in atlas.ATLAS_FIELDS:
            raise InputError(f"--set {path}: the atlas sets it in every cell (the optimizer, its rate and the architecture); set other fields")
    cells = atlas.plan_cells(args.preset, **chosen)  # a SpecError names the bad preset, experiment, optimizer or architecture
    if not cells:
        raise InputError("--experiments/--optimizers/--architectures: no experiment admits any of the chosen cells; see `biaslab atlas --help`")
    experiments = len({c.experiment for c in cells})
    print(f"atlas ({args.preset}): {len(cells)} cell{'s' * (len(cells) != 1)} of {experiments} experiment{'s' * (experiments != 1)} into {args.store}; "
          f"{atlas.PRESETS[args.preset].note}", file=sys.stderr)  # fmt: skip
    busy = _busy_note()
    if busy:
        print(busy, file=sys.stderr)

    from rich.console import Console
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    store = Store(args.store)
    options = {"executor": args.executor, "workers": args.workers, "backend": args.backend, "address": args.address}
    columns = (TextColumn("{task.description}:"), TextColumn("{task.completed} runs stored (pilots included)"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        running = bar.add_task(f"[1/{len(cells)}] {cells[0].cell.label}", total=None)

        def progress(plan, index: int, total: int) -> None:  # a line per finished cell above the bar; the bar: the next
            rate = f"lr {plan.lr:g} (pilot: {_pilot_text(plan.pilot)})" if plan.lr is not None else plan.status
            rate += f"; {plan.status}: its runs, not run again" if plan.status.startswith("same as") else ""
            bar.console.print(f"[{index}/{total}] {plan.cell.label}: {rate}; {plan.seconds:.0f} s", markup=False, highlight=False, soft_wrap=True)
            if index < total:
                bar.update(running, description=f"[{index + 1}/{total}] {cells[index].cell.label}", completed=0)

        try:
            cells = atlas.run_atlas(args.preset, store, on_cell=progress, overrides=overrides, on_record=lambda r: bar.advance(running), **chosen, **options)
        except BackendUnavailable as error:
            raise InputError(str(error)) from None
    refused = [c for c in cells if c.status.startswith("refused: ")]
    if len(refused) == len(cells):
        raise InputError(f"every cell was refused; the first: {refused[0].cell.label}: {refused[0].status.removeprefix('refused: ')}")
    judged = atlas.judge_all(cells, store)
    print(atlas.text_matrix(judged))
    figure, table = atlas.write_outputs(judged, args.preset, store)
    print(f"matrix: {figure}\ntable: {table}")
    if not args.no_report:
        from biaslab.report import write_report

        print(f"report: {write_report(store)}")
    return 0


def _pilot_text(pilot: dict[str, float]) -> str:
    """'0.01 -> 0.41, 0.03 -> 0.22, 0.1 -> diverged': each pilot rate and its final training loss."""
    from biaslab.atlas import pilot_lines

    return ", ".join(pilot_lines(pilot))


def _trackers(targets: list[str], root: Path, flag: str) -> list:
    """The sinks `--track` names, made before any run (a missing library is one line naming the extra, exit 2)."""
    from biaslab.trackers import tracker_from_target

    try:
        return [tracker_from_target(target, root) for target in targets]
    except TrackerError as error:
        raise InputError(f"{flag}: {error}") from None


def cmd_track(args: argparse.Namespace) -> int:
    """Send a store's runs to trackers, sweep by sweep; print what each got and where to look."""
    from biaslab.api import track
    from biaslab.trackers import tracker_key

    store = _store(args.store)
    trackers = _trackers(args.targets, store.path, "track")
    if args.experiment is not None and args.experiment not in store.experiments():
        raise InputError(f"--experiment: no runs of {args.experiment!r} in {args.store}; it has: {', '.join(store.experiments()) or 'none'}")
    done = track(trackers, store, args.experiment, args.again)
    for tracker in trackers:
        key = tracker_key(tracker)
        sweeps = f"{done.sweeps} sweep" + ("" if done.sweeps == 1 else "s")
        print(f"{tracker.name}: {done.sent[key]} runs sent, {done.held[key]} already there, from {sweeps}; {tracker.where}  (view: {tracker.view})")
    return 0


def _run_with_progress(sweep, store: Store, preset: str, overrides: dict, args: argparse.Namespace, trackers: Sequence = ()):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from biaslab.sweep import run_sweep

    total = len({s.spec_id for s in sweep.expand()} - store.finished_ids())
    print(_plan_line(sweep, store, preset, args), file=sys.stderr)
    busy = _busy_note()
    if busy:
        print(busy, file=sys.stderr)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    labels = run_labels(sweep)
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(f"{sweep.base.experiment} runs", total=total)
        running: dict[str, Any] = {}  # a job's first spec_id -> its line: steps done of its budget, its training loss

        def show(live) -> None:  # a line per job in training: its run, steps done of its budget, its training loss
            more = f" +{live.members - 1}" if live.members > 1 else ""
            description = f"  {labels.get(live.spec_id, live.spec_id[:12])}{more} loss {live.loss:.3g}"
            if (line := running.get(live.spec_id)) is None:
                running[live.spec_id] = progress.add_task(description, total=live.max_steps, completed=live.step)
            else:
                progress.update(line, completed=live.step, description=description)

        def done(record) -> None:
            progress.advance(task)
            if (line := running.pop(record.spec_id, None)) is not None:
                progress.remove_task(line)

        return run_sweep(
            sweep, store, preset, overrides, args.executor, args.workers, on_record=done,
            backend=args.backend, address=args.address, trackers=trackers, on_progress=show,
        )  # fmt: skip


def run_labels(sweep) -> dict[str, str]:
    """spec_id -> the run's values of the sweep's swept fields ('label_noise=0.15 width=512 seed=1'), for progress
    lines (a population's line names its first member and how many more train with it: '+11')."""
    paths = sorted(sweep.swept_paths())
    labels = {}
    for spec in sweep.expand():
        values = spec.model_dump(mode="json")
        parts = []
        for path in paths:
            value = values
            for key in path.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            parts.append(f"{path.rsplit('.', 1)[-1]}={json.dumps(value) if isinstance(value, (dict, list)) else value}")
        labels[spec.spec_id] = " ".join(parts)[:48]
    return labels


def _plan_line(sweep, store: Store, preset: str, args: argparse.Namespace) -> str:
    """The run's first line: how many runs, how many are stored already, and how the rest will be spread."""
    from biaslab.sweep import default_workers, memory_budget, memory_note, plan

    specs = sweep.expand()
    done = store.finished_ids()
    todo = list({s.spec_id: s for s in specs if s.spec_id not in done}.values())
    workers = args.workers or default_workers()
    budget = memory_budget()
    jobs, use_processes = plan(todo, args.executor, workers, budget)
    populations = sum(len(job) > 1 for job in jobs)
    where = "on Ray" if args.backend == "ray" else f"in {min(workers, len(jobs))} worker processes" if use_processes else "in this process"
    pooled = f" ({populations} populations of runs trained together)" if populations else ""
    parallel = min(workers, len(jobs)) if use_processes else 1
    memory = memory_note(jobs, parallel, budget if args.backend == "local" else None)  # Ray schedules by CPU only
    small = args.executor == "auto" and args.backend == "local" and not use_processes and workers > 1 and len(jobs) > 1
    why = ": too little work to pay for starting worker processes" if small else ""
    return (f"{sweep.base.experiment} ({preset}): {len(specs)} runs, {len(specs) - len(todo)} already in the store; {len(todo)} to run as "
            f"{len(jobs)} jobs{pooled} {where}{_work_note(todo)}{why}; {memory}")  # fmt: skip


def _work_note(specs) -> str:
    """' (at most 4.8 TFLOP: the step budgets)': the estimated work the executor was chosen by; '' when none is known."""
    from biaslab.sweep import sweep_work

    flops, steps = sweep_work(specs)
    if not flops:
        return f" ({steps} steps)" if steps else ""
    unknown = f" and {steps} steps without an estimate" if steps else ""
    return f" (at most {_flops_text(flops)} at the full step budgets{unknown})"


def _flops_text(flops: float) -> str:
    for unit, size in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= size:
            return f"{flops / size:.3g} {unit}"
    return f"{flops:.3g} FLOP"


BUSY_LOAD_PER_CORE = 0.5  # a 1-minute load average above this many per core means other work shares the cores


def _busy_note() -> str | None:
    """A line saying the machine is busy (from the load average), so a slow run explains itself; None when quiet."""
    if not hasattr(os, "getloadavg"):
        return None
    load = os.getloadavg()[0]
    cores = available_cores()
    if load <= BUSY_LOAD_PER_CORE * cores:
        return None
    return (f"note: the machine is busy (load average {load:.1f} on {cores} cores): other processes share the cores, "
            "so runs take longer than the times in the README, which were measured on a quiet machine")  # fmt: skip


def cmd_report(args: argparse.Namespace) -> int:
    from biaslab.report import write_report

    store = _store(args.store)
    out = args.out if args.out is not None else store.path / "report"
    flag = "--out" if args.out is not None else "--store"
    _writable_directory(out, f"{flag}: cannot write the report to {out}", "; give --out DIR" if args.out is None else "")
    try:
        print(write_report(store, out))
    except OSError as error:
        raise InputError(f"{flag}: cannot write the report to {out} ({error.strerror}: {error.filename})") from None
    return 0


def _writable_directory(path: Path, what: str, hint: str = "") -> None:
    """Create `path` if missing; InputError (one line: `what`, the reason, `hint`) unless it is a writable directory."""
    problem = unwritable_directory(path)
    if problem:
        raise InputError(f"{what} ({problem}){hint}")


def cmd_export(args: argparse.Namespace) -> int:
    """Write the runs table (and, with --curves, the curves in long format); every destination is checked before anything is written."""
    runs_format = _export_format(args.destination, args.format, "runs.csv")
    curves_format = _export_format(args.curves, args.format, "curves.csv") if args.curves is not None else None
    if args.curves is not None and args.curves.resolve() == args.destination.resolve():
        raise InputError(f"--curves: {args.curves} is also the runs table's destination; give the curves their own file")
    store = _store(args.store)
    written = [_write_export(store, args.destination, runs_format, drop_constant=args.drop_constant)]
    if args.curves is not None:
        written.append(_write_export(store, args.curves, curves_format, curves=True))
    print("\n".join(str(path) for path in written))  # only once every file is written: a failure prints one error line alone
    return 0


def _export_format(destination: Path, given: str | None, example: str) -> str:
    """The format to write `destination` in (--format, else its suffix); InputError if it is a directory or not csv/parquet."""
    from biaslab.store import EXPORT_FORMATS

    if destination.is_dir():
        raise InputError(f"export: {destination} is a directory; give a file name, e.g. {destination / example}")
    fmt = given or destination.suffix.lstrip(".")
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"--format: {fmt!r} is not supported for {destination}; allowed: {', '.join(EXPORT_FORMATS)}")
    return fmt


def _write_export(store: Store, destination: Path, fmt: str, curves: bool = False, drop_constant: bool = False) -> Path:
    """Write the runs table (or the curves) to `destination`; a file system error is one line naming it (exit 2)."""
    try:
        return store.export_curves(destination, fmt) if curves else store.export(destination, fmt, drop_constant=drop_constant)
    except OSError as error:
        raise InputError(f"export: cannot write {destination} ({error.strerror}: {error.filename})") from None


def cmd_probe(args: argparse.Namespace) -> int:
    from biaslab import card

    if args.budget not in card.BUDGETS:
        raise InputError(f"--budget: {args.budget!r} is not one of {', '.join(card.BUDGETS)}")
    if args.examples is not None and args.examples < 1:
        raise InputError(f"--examples: must be at least 1, got {args.examples}")
    if args.time_budget is not None:
        card.parse_duration(args.time_budget)  # a bad duration is refused before any work
    sections = card.choose_sections(_names(args.sections) if args.sections else None, _names(args.skip))
    extra = {"examples": args.examples} if args.examples is not None else {}
    options = card.card_options(args.budget, seed=args.seed, **extra)
    subject = _probe_subject(args)
    costs = None
    try:
        costs = card.unit_costs(subject, options)
        predicted = card.estimate(subject, options, sections, costs)
        print("estimated seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in predicted.items()) + f"; total {sum(predicted.values()):.0f}", file=sys.stderr)
    except Exception as error:  # a model whose gradient or Hessian products fail: the sections will say so too
        print(f"estimate unavailable ({type(error).__name__}: {str(error)[:160]})", file=sys.stderr)
    if args.estimate:
        return 0

    def progress(name: str, index: int, total: int) -> None:
        print(f"[{index + 1}/{total}] {name} ...", file=sys.stderr, flush=True)

    result = card.run_card(subject, options, sections, args.time_budget, progress, costs)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    fit = result.sections.get("fit", {})
    if fit:
        print(f"train error {fit['train_error']:.4f}  test error {fit['test_error']:.4f}  gap {fit['gap_error']:.4f}")
    failed = [note for note in result.notes if ": failed (" in note]
    for note in failed:
        print(f"probe {note}", file=sys.stderr)
    out = args.out or (Path("biaslab-card") if args.run_id is None else args.store / "cards" / subject.source["run"])
    print(f"card: {card.write_card(result, out)}")
    return 1 if failed else 0


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _probe_subject(args: argparse.Namespace):
    """The subject a probe command names: a stored run, or the user's model on their data (or a named dataset)."""
    from biaslab import card
    from biaslab.card import subjects
    from biaslab.spec import RunSpec, with_values

    if (args.run_id is None) == (args.model is None):
        raise InputError("probe: give either a RUN_ID from the store or --model MODULE:FUNCTION with --weights and your data (--data-file)")
    if args.run_id is not None:
        user_only = {"--weights": args.weights, "--init": args.init, "--data-file": args.data_file, "--data-factory": args.data_factory}
        given = [flag for flag, value in user_only.items() if value is not None] + (["--data"] if args.data else []) + (["--model-arg"] if args.model_arg else [])
        if given:
            raise InputError(f"{given[0]}: only with --model; a stored run is probed on its own data with its own weights")
        subject = card.subject_from_run(_store(args.store, must_exist=True), args.run_id, args.device)
        if args.expect_train_error is not None:
            subject.expected_train_error = args.expect_train_error
        return subject
    sources = [flag for flag, given in (("--data-file", args.data_file), ("--data-factory", args.data_factory), ("--data", args.data)) if given]
    if len(sources) != 1:
        raise InputError("--model: give the data to probe on: --data-file FILE (your split), --data-factory MODULE:FUNCTION, or --data name=... (a biaslab dataset)")
    if args.data_arg and not args.data_factory:
        raise InputError("--data-arg: only with --data-factory")
    model, source = _user_model(args)
    init = None
    if args.init is not None:
        init = card.load_state_file(args.init)
        subjects.check_fits(model, init, str(args.init))  # the init must fit the model too
        source["init"] = str(args.init)
    if args.data:
        spec = with_values(RunSpec(), dict(parse_override(f"data.{item}") for item in args.data)).data
        subject = subjects.subject_on_named_data(model, spec, args.loss, args.device, source | {"data": spec.model_dump(mode="json")})
        subject.expected_train_error = args.expect_train_error
        subject.init = {name: tensor.to(subject.data.x_train.device) for name, tensor in init.items()} if init is not None else None
        return subject
    if args.data_file is not None:
        arrays = subjects.read_data_file(args.data_file)
        train, test = (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
        where = {"data_file": str(args.data_file)}
    else:
        split = subjects.data_from_factory(args.data_factory, subjects.factory_arguments(args.data_arg))
        train, test = split["train"], split["test"]
        where = {"data_factory": args.data_factory, "data_args": subjects.factory_arguments(args.data_arg)}
    return subjects.user_subject(
        model, train, test, loss=args.loss, init=init, device=args.device, source=source | where,
        data_note=f"your data from {next(iter(where.values()))}", expected_train_error=args.expect_train_error,
    )  # fmt: skip


def _user_model(args: argparse.Namespace):
    """The user's model with its weights loaded, and a description of where both came from."""
    from biaslab import card
    from biaslab.card import subjects

    kwargs = subjects.factory_arguments(args.model_arg)
    if args.model.endswith(".pt2"):
        if args.weights is not None or kwargs:
            raise InputError("--model: a .pt2 program carries its own weights; leave out --weights and --model-arg")
        return subjects.load_exported(Path(args.model), args.trust_exported), {"exported": args.model}
    if args.weights is None:
        raise InputError("--model: also give --weights FILE (the trained state_dict: .safetensors or .pt)")
    model = subjects.model_from_factory(args.model, kwargs)
    subjects.load_state(model, card.load_state_file(args.weights), str(args.weights))
    return model, {"model": args.model, "model_args": kwargs, "weights": str(args.weights)}


def cmd_store(args: argparse.Namespace) -> int:
    """`store check`: exit 0 if sound, 1 with a line per problem; `store repair`: the salvage, and what was lost."""
    from biaslab.store import check_store, repair_store

    if args.store_command == "check":
        health = check_store(args.store)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(health.statuses.items())) or "none"
        print(f"store {args.store}: {health.records} readable records ({counts}), {health.sweeps} sweeps")
        for problem in health.problems:
            print(f"problem: {problem}")
        if health.problems:
            print(f"salvage the readable records with: biaslab store repair --store {args.store} --out NEW")
        return 1 if health.problems else 0
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out: {args.out} is a file; give a new directory for the repaired store")
    salvage = repair_store(args.store, args.out)
    print(f"repaired store {salvage.destination}: {salvage.records} records, {salvage.sweeps} sweeps, {salvage.weights} weights files")
    for line in salvage.lost:
        print(f"lost: {line}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    record = _store(args.store).get(args.run_id)
    print(f"run {record.spec_id}  status {record.status}  {record.seconds:.2f} s  created {record.created}")
    print("spec:", json.dumps(record.spec, indent=2, sort_keys=True))
    if record.curves:
        print(f"curves ({len(next(iter(record.curves.values())))} evaluations): first / min / max / last")
        for name, values in record.curves.items():
            finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
            if finite:
                print(f"  {name:<32} {values[0]:>11.4g} {min(finite):>11.4g} {max(finite):>11.4g} {values[-1]:>11.4g}")
    print("provenance:", json.dumps(record.env, indent=2, sort_keys=True))
    if record.error:
        print("error:\n" + record.error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
