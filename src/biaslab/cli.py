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

from biaslab.spec import SpecError, parse_override
from biaslab.store import DEFAULT_PATH, RunNotFound, Store, StoreError, StoreWarning

BAD_INPUT = 2


class InputError(Exception):
    """Bad user input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + traceback
        raise InputError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="biaslab", description="Measure the implicit regularization of deep learning.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("list", help="the catalog of experiments")

    run = commands.add_parser("run", help="run an experiment's sweep, print its verdict, write the report")
    run.add_argument("experiment")
    run.add_argument("--preset", default=None, help="tiny, quick (default) or paper")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="e.g. train.lr=0.05")
    run.add_argument("--store", type=Path, default=DEFAULT_PATH)
    run.add_argument("--executor", default="auto", help="auto (default), inprocess, processes or population")
    run.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    run.add_argument("--backend", default="local", help="local (default) or ray")
    run.add_argument("--address", default=None, help="with --backend ray: HOST:PORT of a running Ray cluster (default: start one here)")
    run.add_argument("--no-report", action="store_true", help="skip writing the HTML report")

    report = commands.add_parser("report", help="write STORE/report/index.html for every sweep in the store")
    report.add_argument("--store", type=Path, default=DEFAULT_PATH)
    report.add_argument("--out", type=Path, default=None)

    export = commands.add_parser("export", help="write one row per run to CSV or Parquet")
    export.add_argument("destination", type=Path)
    export.add_argument("--store", type=Path, default=DEFAULT_PATH)
    export.add_argument("--format", default=None, help="csv or parquet (default: from the file name)")

    probe = commands.add_parser("probe", help="the generalization report card of a trained model: probes, error bars, bounds")
    probe.add_argument("run_id", nargs="?", help="a stored run whose weights were kept (--set save_weights=true)")
    probe.add_argument("--store", type=Path, default=DEFAULT_PATH)
    probe.add_argument("--model", default=None, metavar="MODULE:FUNCTION", help="your model instead of a run: a function returning it")
    probe.add_argument("--weights", type=Path, default=None, help="with --model: its state_dict (.safetensors, or .pt read weights-only)")
    probe.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="with --model: dataset fields, e.g. name=digits")
    probe.add_argument("--loss", default="cross_entropy", help="with --model: cross_entropy (default) or mse")
    probe.add_argument("--out", type=Path, default=None, help="directory for card.json, card.html, figures (default: STORE/cards/RUN)")
    probe.add_argument("--examples", type=int, default=4096, help="training examples the curvature, sharpness and bounds use")
    probe.add_argument("--seed", type=int, default=0, help="for the random probe vectors and perturbations")
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
    commands = {"list": cmd_list, "run": cmd_run, "report": cmd_report, "export": cmd_export, "show": cmd_show, "probe": cmd_probe, "store": cmd_store}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StoreWarning)
        try:
            args = _parser().parse_args(argv)
            return commands[args.command](args)
        except (InputError, SpecError, RunNotFound, StoreError) as error:
            one_line = str(error).replace("\r", "\\r").replace("\n", "\\n")  # user input echoed in it may hold newlines
            print(f"biaslab: error: {one_line}", file=sys.stderr)
            return BAD_INPUT
        finally:
            _show_warnings(caught)


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Each distinct StoreWarning as one `biaslab: warning:` line; other warnings as Python shows them."""
    shown: set[str] = set()
    for item in caught:
        if issubclass(item.category, StoreWarning):
            if str(item.message) not in shown:
                shown.add(str(item.message))
                print(f"biaslab: warning: {item.message}", file=sys.stderr)
        else:
            warnings.showwarning(item.message, item.category, item.filename, item.lineno, item.file, item.line)


def cmd_list(args: argparse.Namespace) -> int:
    from biaslab.experiments import CATALOG

    width = max(len(name) for name in CATALOG)
    for name in CATALOG:
        experiment = CATALOG.get(name)
        print(f"{name:<{width}}  {experiment.title}  [{experiment.reference}]  presets: {', '.join(experiment.presets)}")
    return 0


def _store(path: Path, must_exist: bool = True, readonly: bool = True) -> Store:
    """The store at `path` for a command; read-only by default (nothing is written, so archived stores work)."""
    if must_exist and not (path / "runs.sqlite").exists():
        raise InputError(f"--store: no biaslab store at {path} (run `biaslab run EXPERIMENT --store {path}` first)")
    return Store(path, readonly=readonly)  # a StoreError (not a store, damaged) is one line and exit 2 in `main`


def cmd_run(args: argparse.Namespace) -> int:
    from biaslab.experiments import CATALOG
    from biaslab.registry import UnknownName
    from biaslab.sweep import BACKENDS, EXECUTORS, preflight

    try:
        experiment = CATALOG.get(args.experiment)
    except UnknownName as error:
        raise InputError(str(error)) from None
    if args.executor not in EXECUTORS:
        raise InputError(f"--executor: {args.executor!r} is not one of {', '.join(EXECUTORS)}")
    if args.backend not in BACKENDS:
        raise InputError(f"--backend: {args.backend!r} is not one of {', '.join(BACKENDS)}")
    if args.address is not None and args.backend != "ray":
        raise InputError("--address: only with --backend ray")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers: must be at least 1, got {args.workers}")
    if args.preset is not None and not args.preset.strip():
        raise InputError(f"--preset: an empty name is not a preset; allowed: {', '.join(experiment.presets)}")
    overrides = dict(parse_override(item) for item in args.overrides)
    preset = args.preset or experiment.default_preset
    sweep = experiment.sweep(preset).override(overrides)
    try:
        preflight(sweep)
    except (OSError, ValueError) as error:
        raise InputError(str(error)) from None
    store = Store(args.store)
    outcome = _run_with_progress(sweep, store, preset, overrides, args)
    failed = [r for r in outcome.records if r.status == "failed"]
    diverged = sum(r.status == "diverged" for r in outcome.records)
    print(f"{experiment.name} ({preset}): {outcome.ran} runs now, {outcome.skipped} already in {args.store}"
          f" [{outcome.executor}]; {diverged} diverged, {len(failed)} failed")  # fmt: skip
    for record in failed[:3]:
        print(f"failed run {record.spec_id}: {(record.error or '').strip().splitlines()[-1]}  (biaslab show {record.spec_id})")
    if any(r.status == "ok" for r in outcome.records):
        print(experiment.claim(outcome.records).summary())
    if not args.no_report:
        from biaslab.report import write_report

        print(f"report: {write_report(store)}")
    return 1 if failed else 0


def _run_with_progress(sweep, store: Store, preset: str, overrides: dict, args: argparse.Namespace):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from biaslab.sweep import run_sweep

    total = len({s.spec_id for s in sweep.expand()} - store.finished_ids())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(f"{sweep.base.experiment} runs", total=total)
        return run_sweep(
            sweep, store, preset, overrides, args.executor, args.workers,
            on_record=lambda r: progress.advance(task), backend=args.backend, address=args.address,
        )  # fmt: skip


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
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{what} ({error.strerror}: {error.filename}){hint}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"{what} (not writable){hint}")


def cmd_export(args: argparse.Namespace) -> int:
    destination: Path = args.destination
    if destination.is_dir():
        raise InputError(f"export: {destination} is a directory; give a file name, e.g. {destination / 'runs.csv'}")
    fmt = args.format or destination.suffix.lstrip(".")
    if fmt not in ("csv", "parquet"):
        raise InputError(f"--format: {fmt!r} is not supported; allowed: csv, parquet")
    store = _store(args.store)
    try:
        path = store.export(destination, fmt)
    except OSError as error:
        raise InputError(f"export: cannot write {destination} ({error.strerror}: {error.filename})") from None
    print(path)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from biaslab import card
    from biaslab.spec import RunSpec, with_values

    if (args.run_id is None) == (args.model is None):
        raise InputError("probe: give either a RUN_ID from the store or --model MODULE:FUNCTION with --weights and --data")
    if args.examples < 1:
        raise InputError(f"--examples: must be at least 1, got {args.examples}")
    if args.budget not in card.BUDGETS:
        raise InputError(f"--budget: {args.budget!r} is not one of {', '.join(card.BUDGETS)}")
    if args.model is not None:
        if args.weights is None or not args.data:
            raise InputError("--model: also give --weights FILE and --data name=... (the dataset to probe on)")
        data = with_values(RunSpec(), dict(parse_override(f"data.{item}") for item in args.data)).data
        subject = card.subject_from_module(args.model, args.weights, data, args.loss, args.device)
        out = args.out or Path("biaslab-card")
    else:
        store = _store(args.store, must_exist=True)
        subject = card.subject_from_run(store, args.run_id, args.device)
        out = args.out or store.path / "cards" / subject.source["run"]

    def progress(name: str, index: int, total: int) -> None:
        print(f"[{index + 1}/{total}] {name} ...", file=sys.stderr, flush=True)

    options = card.CardOptions(examples=args.examples, seed=args.seed, **card.BUDGETS[args.budget])
    result = card.measure(subject, options, progress)
    fit = result.sections.get("fit", {})
    if fit:
        print(f"train error {fit['train_error']:.4f}  test error {fit['test_error']:.4f}  gap {fit['gap_error']:.4f}")
    failed = [note for note in result.notes if ": failed (" in note]
    for note in failed:
        print(f"probe {note}", file=sys.stderr)
    print(f"card: {card.write_card(result, out)}")
    return 1 if failed else 0


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
