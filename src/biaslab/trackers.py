"""Send a sweep's runs to the trackers researchers already use: TensorBoard, Weights & Biases (offline), MLflow, or your own.

Trackers are fed from finished records, not from inside the training loop: the process that writes the store
hands each record to them as it commits it. So every executor (in-process, worker processes, populations,
Ray) and every resume feeds them the same way, and a store written without trackers can be sent later
(`biaslab track`, `biaslab.track`).

What a run carries to every sink (one mapping for all three):
- params: every field of the resolved spec by its dotted path (`model.width`, `train.lr`, lists as JSON
  text): the columns of `Store.table()`;
- tags: `biaslab.spec_id` (the id `biaslab show` takes), `biaslab.experiment`, `biaslab.preset`,
  `biaslab.sweep_id`, `biaslab.status` (ok or diverged), `biaslab.seconds`, `biaslab.created`, and the
  provenance as `env.*` (versions, git commit, device, host, seed);
- curves: every metric of the record's curves (`train_loss`, `test_error`, `lr`, probes...) against the
  training step of each evaluation (the record's `step` curve; the evaluation's index without one), the
  values exactly as stored, NaN included;
- final metrics as `final/<name>`;
- at the sweep's end its verdict (PASS/FAIL, the claim, the reason, the numbers as `verdict/<name>`) on the
  sweep: MLflow's parent run, a W&B run of job type `verdict` in the sweep's group, TensorBoard's
  `_sweep-<preset>-<sweep_id>` run.

Once each: a tracker says which runs it already holds (`logged`); a run it holds is not sent again unless
asked (`again=True`). A sweep sends each run as it finishes, then, at its end, the sweep's other finished
runs the tracker lacks (stored by an earlier sweep without trackers, or run meanwhile by another process):
the tracker ends with every finished run of the sweep, once. Failed runs are not sent: a resume reruns them
and sends them then; the sweep's verdict says how many failed.

A tracker that raises does not stop the sweep: it is dropped for the rest of the sweep with a
`TrackerWarning` naming it and the error; the store keeps the records and `biaslab track` sends them later.

The libraries are optional extras, imported when a sink is made (before any run): a missing one raises
`TrackerUnavailable`, one line naming the extra (`pip install 'biaslab[tensorboard]'`). Nothing here goes to
the network: W&B runs offline (`wandb sync` uploads them), MLflow writes a local store.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from biaslab.store import FINISHED, RunRecord, SweepEntry, flatten, unwritable_directory

if TYPE_CHECKING:
    from biaslab.claims import Verdict

TRACKERS: tuple[str, ...] = ("tensorboard", "wandb", "mlflow")
DEFAULT_DIRS = {"tensorboard": "tensorboard", "wandb": "", "mlflow": "mlruns"}  # under the store when no place is given (W&B adds its own wandb/)
TARGETS = "tensorboard[:DIR], wandb[:DIR], mlflow[:DIR or URI]"
LABEL_LENGTH = 100  # characters of a run's readable name made of its swept values


class TrackerError(ValueError):
    """A tracker that cannot be made as asked (unknown name, a place it cannot write); the message is one line."""


class TrackerUnavailable(TrackerError):
    """A tracker whose library is not installed; the message names the extra to install."""


class TrackerWarning(UserWarning):
    """A tracker raised and was dropped for the rest of the sweep; the message names it and the error."""


@dataclass(frozen=True)
class SweepInfo:
    """The sweep whose runs a tracker receives: what `on_sweep_start` gets.

    `varying` lists the spec fields (dotted paths) whose values differ between the sweep's runs; run names
    are made of them (`width=64 label_noise=0.15 seed=0`).
    """

    experiment: str
    preset: str
    overrides: dict[str, Any]
    spec_ids: tuple[str, ...]
    varying: tuple[str, ...] = ()

    @classmethod
    def of(cls, entry: SweepEntry, specs: Iterable[dict[str, Any]]) -> SweepInfo:
        """The sweep of a store entry, with the fields that vary among `specs` (the sweep's resolved specs)."""
        return cls(entry.experiment, entry.preset, dict(entry.overrides), tuple(dict.fromkeys(entry.spec_ids)), varying_fields(specs))

    @property
    def entry(self) -> SweepEntry:
        return SweepEntry(self.experiment, self.preset, self.overrides, self.spec_ids)

    @property
    def sweep_id(self) -> str:
        """The store's id of this sweep (experiment, preset and overrides hashed)."""
        return self.entry.sweep_id

    @property
    def label(self) -> str:
        """How to ask for this sweep again: `width-sweep --preset tiny --set train.lr=0.1`."""
        return self.entry.label

    @property
    def n_runs(self) -> int:
        return len(self.spec_ids)

    def run_name(self, record: RunRecord) -> str:
        """A readable name for a run of this sweep: its values of the varying fields, else its spec_id."""
        return run_label(flatten(record.spec), self.varying) or record.spec_id


@dataclass(frozen=True)
class SweepEnd:
    """What `on_sweep_end` gets: the sweep, all its records (failed ones included) and its verdict (None when no
    run finished or the experiment is not in the catalog)."""

    sweep: SweepInfo
    records: list[RunRecord]
    verdict: Verdict | None

    @property
    def finished(self) -> int:
        return sum(r.status in FINISHED for r in self.records)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.records)


@runtime_checkable
class Tracker(Protocol):
    """What a sweep calls on a tracker, in this order: `on_sweep_start`, then `logged` and `on_run` per run, then
    `on_sweep_end` when the sweep completes, and `close` always (also after an interrupted sweep, without
    `on_sweep_end`). A tracker may serve several sweeps, one after another; `close` ends one sweep's logging."""

    name: str

    def on_sweep_start(self, sweep: SweepInfo) -> None: ...

    def logged(self, spec_id: str) -> bool: ...

    def on_run(self, record: RunRecord) -> None: ...

    def on_sweep_end(self, end: SweepEnd) -> None: ...

    def close(self) -> None: ...


class BaseTracker:
    """Do-nothing defaults for a tracker of your own: keep `self.sweep`, and override what you need."""

    name = "tracker"
    where = ""  # where the runs go, for messages

    def __init__(self) -> None:
        self.sweep: SweepInfo | None = None

    def on_sweep_start(self, sweep: SweepInfo) -> None:
        self.sweep = sweep

    def logged(self, spec_id: str) -> bool:
        return False

    def on_run(self, record: RunRecord) -> None:
        pass

    def on_sweep_end(self, end: SweepEnd) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def current(self) -> SweepInfo:
        """The sweep being logged (a record sent outside a sweep is a bug of the caller)."""
        if self.sweep is None:
            raise RuntimeError(f"{self.name}: on_run before on_sweep_start")
        return self.sweep


# --- what every sink logs of a run: pure functions of the record --------------------------------------------


def varying_fields(specs: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """The dotted spec fields whose values differ between `specs`, in the spec's field order."""
    flat = [flatten(spec) for spec in specs]
    keys = list(dict.fromkeys(key for spec in flat for key in spec))
    return tuple(key for key in keys if len({json.dumps(spec.get(key), sort_keys=True) for spec in flat}) > 1)


def run_label(params: dict[str, Any], varying: Sequence[str]) -> str:
    """`width=64 label_noise=0.15 seed=0`: the varying fields by their last name (the full path where two share it)."""
    leaves = [path.rsplit(".", 1)[-1] for path in varying]
    names = [leaf if leaves.count(leaf) == 1 else path for leaf, path in zip(leaves, varying)]
    return " ".join(f"{name}={params.get(path)}" for name, path in zip(names, varying))[:LABEL_LENGTH]


def run_params(record: RunRecord) -> dict[str, Any]:
    """Every spec field by its dotted path, as in `Store.table()` (lists and tuples as JSON text)."""
    return flatten(record.spec)


def run_tags(record: RunRecord, sweep: SweepInfo) -> dict[str, str]:
    """The run's identity and provenance as text: `biaslab.*` and `env.*`."""
    tags = {
        "biaslab.spec_id": record.spec_id,
        "biaslab.experiment": record.experiment,
        "biaslab.preset": sweep.preset,
        "biaslab.sweep_id": sweep.sweep_id,
        "biaslab.sweep": sweep.label,
        "biaslab.status": record.status,
        "biaslab.seconds": f"{record.seconds:.3f}",
        "biaslab.created": record.created,
    }
    return tags | {f"env.{key}": str(value) for key, value in flatten(record.env).items()}


def run_series(record: RunRecord) -> dict[str, list[tuple[int, float]]]:
    """Each curve but `step` as (training step, value) pairs, values as stored (NaN where not measured)."""
    steps = record.curves.get("step")
    series: dict[str, list[tuple[int, float]]] = {}
    for metric, values in record.curves.items():
        if metric == "step":
            continue
        axis = [int(steps[i]) if steps is not None and i < len(steps) and math.isfinite(steps[i]) else i for i in range(len(values))]
        series[metric] = [(step, float(value)) for step, value in zip(axis, values)]
    return series


def run_rows(record: RunRecord) -> list[dict[str, float]]:
    """The curves as one row per evaluation, `step` first (what a tracker that logs rows, like W&B, takes)."""
    series = run_series(record)
    n = max((len(points) for points in series.values()), default=0)
    rows: list[dict[str, float]] = []
    for i in range(n):
        row: dict[str, float] = {}
        for metric, points in series.items():
            if i < len(points):
                row.setdefault("step", points[i][0])
                row[metric] = points[i][1]
        rows.append(row)
    return rows


def final_metrics(record: RunRecord) -> dict[str, float]:
    """The record's final metrics as `final/<name>` (kept apart from the curves' last values)."""
    return {f"final/{name}": float(value) for name, value in record.final.items() if isinstance(value, (int, float))}


def run_times(record: RunRecord) -> tuple[float, float]:
    """(start, end) of the run in Unix seconds: it ended when its record was made, `seconds` after it began."""
    try:
        end = datetime.fromisoformat(record.created).timestamp()
    except ValueError:
        end = datetime.now(timezone.utc).timestamp()
    return end - record.seconds, end


def verdict_numbers(verdict: Verdict) -> dict[str, float]:
    """The verdict's finite numbers as `verdict/<name>`, and `verdict/passed` (1 or 0)."""
    numbers = {f"verdict/{k}": float(v) for k, v in verdict.numbers.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
    return numbers | {"verdict/passed": float(verdict.passed)}


def verdict_text(end: SweepEnd) -> str:
    """The verdict as Markdown: label and claim, the reason, the numbers, the notes, what the sweep holds."""
    counts = f"{end.finished} finished runs, {end.failed} failed, of {end.sweep.n_runs} in `{end.sweep.label}`"
    if end.verdict is None:
        return f"**no verdict** (no run finished, or the experiment is not in the catalog)\n\n{counts}"
    verdict = end.verdict
    lines = [f"**{verdict.label}**: {verdict.claim}", "", verdict.reason, ""]
    lines += [f"- {name} = {value}" for name, value in verdict.numbers.items()]
    lines += [f"- note: {note}" for note in verdict.notes]
    return "\n".join(lines + ["", counts])


def _error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def tracker_key(tracker: Tracker) -> str:
    """How a tracker is named in counts and messages: `tensorboard (runs/tensorboard)`."""
    where = getattr(tracker, "where", "")
    return f"{tracker.name} ({where})" if where else tracker.name


# --- one sweep's logging: order, once-each, failures ---------------------------------------------------------


class Tracking:
    """One sweep's runs sent to trackers: start, each finished run once, the rest at the end, close.

        with Tracking(trackers, sweep) as tracking:
            ... tracking.on_run(record) for each record as it is stored ...
            tracking.end(all_records, verdict)

    `sent[name]` counts the runs each tracker got; `held[name]` those it already had. A tracker that raises is
    dropped with a TrackerWarning; the others go on.
    """

    def __init__(self, trackers: Sequence[Tracker], sweep: SweepInfo, again: bool = False) -> None:
        self.sweep = sweep
        self.again = again
        self.live: list[Tracker] = []
        self._given = list(trackers)
        self._handled: dict[int, set[str]] = {id(t): set() for t in self._given}
        self.sent: dict[str, int] = {tracker_key(t): 0 for t in self._given}
        self.held: dict[str, int] = {tracker_key(t): 0 for t in self._given}

    def __enter__(self) -> Tracking:
        self.live = list(self._given)
        self._started = [t for t in self._given if self._attempt(t, "start", lambda t=t: t.on_sweep_start(self.sweep))[0]]
        return self

    def __exit__(self, *exc: object) -> None:
        for tracker in self._started:
            self._attempt(tracker, "close", tracker.close)

    def on_run(self, record: RunRecord) -> None:
        """Send one stored record to every live tracker that lacks it (failed runs are not sent)."""
        if record.status not in FINISHED:
            return
        for tracker in list(self.live):
            handled = self._handled[id(tracker)]
            if record.spec_id in handled:
                continue
            handled.add(record.spec_id)
            if not self.again:
                ok, has = self._attempt(tracker, "check", lambda t=tracker: t.logged(record.spec_id))
                if not ok or has:
                    self.held[tracker_key(tracker)] += bool(ok)
                    continue
            if self._attempt(tracker, f"run {record.spec_id}", lambda t=tracker: t.on_run(record))[0]:
                self.sent[tracker_key(tracker)] += 1

    def end(self, records: Sequence[RunRecord], verdict: Verdict | None) -> None:
        """The sweep completed: send its finished runs the trackers lack, then its verdict."""
        for record in records:
            self.on_run(record)
        summary = SweepEnd(self.sweep, list(records), verdict)
        for tracker in list(self.live):
            self._attempt(tracker, "the verdict", lambda t=tracker: t.on_sweep_end(summary))

    def chain(self, on_record: Callable[[RunRecord], None] | None) -> Callable[[RunRecord], None]:
        """A record callback that calls `on_record` (if any), then sends the record."""

        def both(record: RunRecord) -> None:
            if on_record is not None:
                on_record(record)
            self.on_run(record)

        return both

    def _attempt(self, tracker: Tracker, what: str, action: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, `action()`), or (False, None) after a TrackerWarning and dropping the tracker when it raises."""
        try:
            return True, action()
        except Exception as error:  # a sink's failure must not stop the sweep; it is reported, not swallowed
            if tracker in self.live:
                self.live.remove(tracker)
            warnings.warn(
                f"tracker {tracker.name}: {what} failed ({_error_line(error)}); it gets no more runs of this sweep "
                "(the store keeps them: `biaslab track` sends them later)",
                TrackerWarning,
                stacklevel=3,
            )
            return False, None


# --- making sinks -----------------------------------------------------------------------------------------


def tracker_from_target(target: str, default_root: str | Path) -> Tracker:
    """A sink from `NAME[:PLACE]` (what `--track` takes): tensorboard, wandb or mlflow, writing to PLACE or to
    `default_root/<tensorboard|wandb|mlruns>`. For mlflow PLACE may be a tracking URI (`sqlite:///runs.db`)."""
    name, colon, place = target.strip().partition(":")
    if name not in TRACKERS:
        raise TrackerError(f"{target!r} is not a tracker; allowed: {TARGETS}")
    if colon and not place:
        raise TrackerError(f"{target!r}: give a place after the colon, or leave the colon out (default {Path(default_root) / DEFAULT_DIRS[name]})")
    where: str | Path = place or Path(default_root) / DEFAULT_DIRS[name]
    if name == "tensorboard":
        return TensorBoardTracker(where)
    if name == "wandb":
        return WandbTracker(where)
    return MLflowTracker(where)


def resolve_trackers(trackers: Iterable[Tracker | str], default_root: str | Path) -> list[Tracker]:
    """Trackers from objects or `NAME[:PLACE]` strings; TrackerError for anything else."""
    resolved: list[Tracker] = []
    for item in trackers:
        if isinstance(item, str):
            resolved.append(tracker_from_target(item, default_root))
        elif isinstance(item, Tracker):
            resolved.append(item)
        else:
            raise TrackerError(f"{item!r} is not a tracker: give one of {TARGETS}, or an object with on_sweep_start, logged, on_run, on_sweep_end, close")
    return resolved


def _require(module: str, extra: str, tracker: str) -> Any:
    """Import `module` for `tracker`, or TrackerUnavailable naming the extra that brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TrackerUnavailable(f"tracker {tracker} needs the {extra} extra ({_error_line(error)}): pip install 'biaslab[{extra}]'") from None


def _directory(path: str | Path, tracker: str) -> Path:
    """`path` created if missing, absolute; TrackerError (one line) unless it is a writable directory."""
    directory = Path(path).expanduser().absolute()
    problem = unwritable_directory(directory)
    if problem:
        raise TrackerError(f"tracker {tracker}: cannot write to {directory} ({problem})")
    return directory


_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+-]+")
_TRAILING_ID = re.compile(r"(?:^|-)([0-9a-f]{16})$")


def _file_name(text: str) -> str:
    """`text` as one path component: runs of other characters become `_`."""
    return _UNSAFE.sub("_", text).strip("._") or "_"


# --- TensorBoard ----------------------------------------------------------------------------------------------


class TensorBoardTracker(BaseTracker):
    """Event files for TensorBoard, one run directory per biaslab run: `LOG_DIR/<experiment>/<swept values>-<spec_id>`.

    Each run holds its curves as scalars against the training step, `final/<name>` at the last step, the spec
    in the HParams dashboard (fields that are None are left out: TensorBoard has no null) with the final
    metrics as its metrics, and its tags as a Markdown table (Text dashboard, tag `biaslab`). A run is written
    to a hidden folder and renamed when complete, so a run directory is never half written. The verdict goes
    to `LOG_DIR/<experiment>/_sweep-<preset>-<sweep_id>`: text `verdict` and scalars `verdict/*` at a step equal
    to the number of finished runs, once per number (a sweep resumed with more runs adds a point). View:
    `tensorboard --logdir LOG_DIR`. Needs `pip install 'biaslab[tensorboard]'` (torch.utils.tensorboard writes).
    """

    name = "tensorboard"

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__()
        _require("tensorboard", "tensorboard", self.name)
        self._writer = _require("torch.utils.tensorboard", "tensorboard", self.name).SummaryWriter
        self._hparams = _require("torch.utils.tensorboard.summary", "tensorboard", self.name).hparams
        self.log_dir = _directory(log_dir, self.name)
        self.where = str(self.log_dir)
        self._have: set[str] = set()

    @property
    def view(self) -> str:
        return f"tensorboard --logdir {self.log_dir}"

    def _experiment_dir(self, experiment: str) -> Path:
        return self.log_dir / _file_name(experiment)

    def on_sweep_start(self, sweep: SweepInfo) -> None:
        super().on_sweep_start(sweep)
        folder = self._experiment_dir(sweep.experiment)
        names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        self._have = {m.group(1) for n in names if (m := _TRAILING_ID.search(n))}

    def logged(self, spec_id: str) -> bool:
        return spec_id in self._have

    def run_dir(self, record: RunRecord) -> Path:
        """Where a run's events go: `<experiment>/<swept values>-<spec_id>` (the spec_id alone for a one-run sweep)."""
        label = run_label(run_params(record), self.current.varying)
        prefix = f"{_file_name(label.replace(' ', ','))}-" if label else ""
        folder = self._experiment_dir(record.experiment)
        names = (f"{prefix}{record.spec_id}", *(f"{prefix}again{k}-{record.spec_id}" for k in range(1, 1000)))
        return next(folder / name for name in names if not (folder / name).exists())  # sent again (`again=True`): a new run

    def on_run(self, record: RunRecord) -> None:
        _, end = run_times(record)
        final = self.run_dir(record)
        partial = final.with_name(f".{final.name}.partial")
        if partial.exists():  # left by a run whose writing was interrupted: ours, and incomplete
            shutil.rmtree(partial)
        writer = self._writer(log_dir=str(partial))
        try:
            series = run_series(record)
            for metric, points in series.items():
                for step, value in points:
                    writer.add_scalar(metric, value, step, walltime=end)
            last = max((points[-1][0] for points in series.values() if points), default=0)
            finals = final_metrics(record)
            for metric, value in finals.items():
                writer.add_scalar(metric, value, last, walltime=end)
            params = {k: v for k, v in run_params(record).items() if isinstance(v, (bool, int, float, str))}
            for summary in self._hparams(params, finals):
                writer.file_writer.add_summary(summary, walltime=end)
            writer.add_text("biaslab", _markdown_table(run_tags(record, self.current)), walltime=end)
        except BaseException:
            writer.close()
            shutil.rmtree(partial, ignore_errors=True)  # TensorBoard would show the half-written run: remove it, so it is sent again
            raise
        writer.close()
        partial.rename(final)
        self._have.add(record.spec_id)

    def on_sweep_end(self, end: SweepEnd) -> None:
        sweep = end.sweep
        folder = self._experiment_dir(sweep.experiment) / f"_sweep-{_file_name(sweep.preset)}-{sweep.sweep_id}"
        suffix = f".finished{end.finished}"  # one event file per number of finished runs: sending the same state again adds nothing
        if folder.is_dir() and any(p.name.endswith(suffix) for p in folder.iterdir()):
            return
        writer = self._writer(log_dir=str(folder), filename_suffix=suffix)
        try:
            writer.add_text("verdict", verdict_text(end), end.finished)
            if end.verdict is not None:
                for name, value in verdict_numbers(end.verdict).items():
                    writer.add_scalar(name, value, end.finished)
        finally:
            writer.close()


def _markdown_table(values: dict[str, str]) -> str:
    rows = "\n".join(f"| {key} | {str(value).replace('|', '/')} |" for key, value in values.items())
    return f"| tag | value |\n|---|---|\n{rows}"


# --- Weights & Biases ---------------------------------------------------------------------------------------


class WandbTracker(BaseTracker):
    """Offline W&B runs under `DIR/wandb/offline-run-*-<spec_id>`, one per biaslab run; `wandb sync` uploads them.

    A run's id is its spec_id, its name the swept values, its group the sweep (`width-sweep --preset tiny`),
    its project `project` (default: the experiment's name), its tags experiment, preset and status. Config: the
    spec's dotted fields, `biaslab.*` and `env.*`. History: one row per evaluation with `step` as the x-axis
    (`define_metric`), so charts plot against the training step. Summary: `final/<name>`, status, seconds.
    The verdict is a run of job type `verdict` in the group (summary: verdict, claim, reason, `verdict/*`), id
    `<sweep_id>-v<finished runs>`: once per number of finished runs, so sending the same sweep again adds none.
    W&B's console capture, system metrics, code and git saving are off. Needs `pip install 'biaslab[wandb]'`.
    """

    name = "wandb"
    _RUN_DIR = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(.+)$")

    def __init__(self, dir: str | Path, project: str | None = None, entity: str | None = None) -> None:
        super().__init__()
        self._wandb = _require("wandb", "wandb", self.name)
        self.dir = _directory(dir, self.name)
        self.where = str(self.dir)
        self.project = project
        self.entity = entity
        self._have: set[str] = set()

    @property
    def view(self) -> str:
        return f"wandb sync {self.dir / 'wandb'}/offline-run-*"

    def _settings(self) -> Any:
        return self._wandb.Settings(
            mode="offline", silent=True, console="off", save_code=False, disable_git=True, disable_job_creation=True,
            x_disable_stats=True, x_disable_meta=True,
        )  # fmt: skip

    def on_sweep_start(self, sweep: SweepInfo) -> None:
        super().on_sweep_start(sweep)
        runs = self.dir / "wandb"
        names = [p.name for p in runs.iterdir() if p.is_dir()] if runs.is_dir() else []
        self._have = {m.group(1) for n in names if (m := self._RUN_DIR.match(n))}

    def logged(self, spec_id: str) -> bool:
        return spec_id in self._have

    def _init(self, **options: Any) -> Any:
        sweep = self.current
        return self._wandb.init(
            dir=str(self.dir), project=self.project or sweep.experiment, entity=self.entity, group=sweep.label,
            settings=self._settings(), reinit="create_new", **options,
        )  # fmt: skip

    def on_run(self, record: RunRecord) -> None:
        sweep = self.current
        config = run_params(record) | run_tags(record, sweep)
        run = self._init(id=record.spec_id, name=sweep.run_name(record), job_type="run", tags=[record.experiment, sweep.preset, record.status], config=config)
        try:
            run.define_metric("step")
            run.define_metric("*", step_metric="step")
            for row in run_rows(record):
                run.log(row)
            run.summary.update(final_metrics(record) | {"status": record.status, "seconds": record.seconds})
        except BaseException:
            run.finish(exit_code=1)
            shutil.rmtree(Path(run.dir).parent, ignore_errors=True)  # a half-written run would read as held: remove it, so it is sent again
            raise
        run.finish()
        self._have.add(record.spec_id)

    def on_sweep_end(self, end: SweepEnd) -> None:
        sweep = end.sweep
        verdict_id = f"{sweep.sweep_id}-v{end.finished}"
        if verdict_id in self._have:
            return
        label = "no verdict" if end.verdict is None else end.verdict.label
        config = {"biaslab.experiment": sweep.experiment, "biaslab.preset": sweep.preset, "biaslab.sweep_id": sweep.sweep_id,
                  "biaslab.sweep": sweep.label, "biaslab.overrides": json.dumps(sweep.overrides, sort_keys=True)}  # fmt: skip
        run = self._init(id=verdict_id, name=f"verdict: {sweep.label}", job_type="verdict", tags=[sweep.experiment, sweep.preset, label], config=config)
        try:
            summary: dict[str, Any] = {"verdict": label, "finished": end.finished, "failed": end.failed, "runs": sweep.n_runs, "text": verdict_text(end)}
            if end.verdict is not None:
                summary |= {"claim": end.verdict.claim, "reason": end.verdict.reason} | verdict_numbers(end.verdict)
            run.summary.update(summary)
        finally:
            run.finish()
        self._have.add(verdict_id)

    def close(self) -> None:
        if getattr(self._wandb, "run", None) is None:  # stop W&B's service unless the caller has a run of their own open
            self._wandb.teardown()


# --- MLflow ---------------------------------------------------------------------------------------------------


@contextmanager
def _file_store_allowed(allowed: bool) -> Iterator[None]:
    """Let MLflow open a file store (MLflow 3 refuses one unless MLFLOW_ALLOW_FILE_STORE is set) for the calls
    made here, restoring the environment after: asking for a directory is asking for a file store."""
    key = "MLFLOW_ALLOW_FILE_STORE"
    previous = os.environ.get(key)
    if allowed and previous is None:
        os.environ[key] = "true"
    try:
        yield
    finally:
        if allowed and previous is None:
            os.environ.pop(key, None)


def _is_uri(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) is not None


class MLflowTracker(BaseTracker):
    """MLflow runs in a local store: a directory (MLflow's file store) or any tracking URI (`sqlite:///runs.db`).

    The MLflow experiment is `experiment_name` (default: the biaslab experiment's name). Each sweep is a parent
    run (name: the sweep, tag `biaslab.kind=sweep`), reused when the sweep is resumed; each biaslab run a
    child run (tag `mlflow.parentRunId`, name: the swept values) with the spec's dotted fields as params,
    `biaslab.*` and `env.*` tags, every curve as a metric history against the training step and
    `final/<name>`; start and end times are the run's own. At the sweep's end the parent gets tags
    `biaslab.verdict` (PASS/FAIL), `biaslab.claim`, `biaslab.reason`, the verdict as its description, and
    metrics `verdict/*` at a step equal to the number of finished runs (once per number). A run that fails to log
    is deleted, so it is sent again later. MLflow status: FINISHED for ok and
    diverged runs (`biaslab.status` tells them apart); the parent FAILED when runs failed, KILLED when the sweep
    was interrupted. Needs `pip install 'biaslab[mlflow]'` (mlflow-skinny); a database URI needs full mlflow.
    View a file store with `MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri DIR` (full mlflow).
    """

    name = "mlflow"
    BATCH = 900  # MLflow takes at most 1000 metrics, 100 params and 100 tags per log_batch call
    SMALL_BATCH = 100

    def __init__(self, tracking_uri: str | Path, experiment_name: str | None = None) -> None:
        super().__init__()
        _require("mlflow", "mlflow", self.name)
        tracking = _require("mlflow.tracking", "mlflow", self.name)
        self._entities = _require("mlflow.entities", "mlflow", self.name)
        text = str(tracking_uri)
        self.file_store = not _is_uri(text) or text.startswith("file:")
        self.uri = _directory(text, self.name).as_uri() if not _is_uri(text) else text
        self.where = self.uri
        self.experiment_name = experiment_name
        with self._access():
            self.client = tracking.MlflowClient(tracking_uri=self.uri)
        self._have: set[str] = set()
        self._experiment_id: str | None = None
        self._parent: str | None = None

    @property
    def view(self) -> str:
        prefix = "MLFLOW_ALLOW_FILE_STORE=true " if self.file_store else ""
        return f"{prefix}mlflow ui --backend-store-uri {self.uri}"

    def _access(self) -> Any:
        return _file_store_allowed(self.file_store)

    def _search(self, experiment_id: str, query: str) -> Iterator[Any]:
        """Every run of the experiment matching `query`, page by page."""
        token = None
        while True:
            page = self.client.search_runs([experiment_id], query, max_results=1000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def on_sweep_start(self, sweep: SweepInfo) -> None:
        super().on_sweep_start(sweep)
        with self._access():
            name = self.experiment_name or sweep.experiment
            found = self.client.get_experiment_by_name(name)
            self._experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)
            runs = self._search(self._experiment_id, "tags.`biaslab.kind` = 'run'")
            self._have = {run.data.tags.get("biaslab.spec_id") for run in runs}
            self._parent = self._sweep_run(sweep)

    def _sweep_run(self, sweep: SweepInfo) -> str:
        """The sweep's parent run, reopened when a resumed sweep finds it, else made."""
        query = f"tags.`biaslab.kind` = 'sweep' and tags.`biaslab.sweep_id` = '{sweep.sweep_id}'"
        for run in self._search(self.experiment_id, query):
            self.client.update_run(run.info.run_id, status="RUNNING")
            return run.info.run_id
        tags = {"biaslab.kind": "sweep", "biaslab.sweep_id": sweep.sweep_id, "biaslab.sweep": sweep.label, "biaslab.experiment": sweep.experiment,
                "biaslab.preset": sweep.preset, "biaslab.overrides": json.dumps(sweep.overrides, sort_keys=True)}  # fmt: skip
        return self.client.create_run(self.experiment_id, tags=tags, run_name=sweep.label).info.run_id

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            raise RuntimeError("mlflow: on_run before on_sweep_start")
        return self._experiment_id

    def logged(self, spec_id: str) -> bool:
        return spec_id in self._have

    def on_run(self, record: RunRecord) -> None:
        sweep = self.current
        start, end = run_times(record)
        tags = run_tags(record, sweep) | {"biaslab.kind": "run", "mlflow.parentRunId": str(self._parent)}
        with self._access():
            run_id = self.client.create_run(self.experiment_id, start_time=int(start * 1000), tags=tags, run_name=sweep.run_name(record)).info.run_id
            try:
                self._log(run_id, self._metrics(record, int(end * 1000)), {k: str(v) for k, v in run_params(record).items()})
                self.client.set_terminated(run_id, "FINISHED", end_time=int(end * 1000))
            except BaseException:
                self.client.delete_run(run_id)  # a half-logged run would read as held: remove it, so it is sent again
                raise
        self._have.add(record.spec_id)

    def _metrics(self, record: RunRecord, timestamp: int) -> list[Any]:
        Metric = self._entities.Metric
        series = run_series(record)
        metrics = [Metric(name, value, timestamp, step) for name, points in series.items() for step, value in points]
        last = max((points[-1][0] for points in series.values() if points), default=0)
        return metrics + [Metric(name, value, timestamp, last) for name, value in final_metrics(record).items()]

    def _log(self, run_id: str, metrics: list[Any], params: dict[str, str]) -> None:
        """log_batch within MLflow's limits per call."""
        Param = self._entities.Param
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), self.SMALL_BATCH):
            self.client.log_batch(run_id, params=items[i : i + self.SMALL_BATCH])
        for i in range(0, len(metrics), self.BATCH):
            self.client.log_batch(run_id, metrics=metrics[i : i + self.BATCH])

    def on_sweep_end(self, end: SweepEnd) -> None:
        if self._parent is None:
            return
        with self._access():
            tags = {"mlflow.note.content": verdict_text(end), "biaslab.finished": str(end.finished), "biaslab.failed": str(end.failed)}
            if end.verdict is not None:
                tags |= {"biaslab.verdict": end.verdict.label, "biaslab.claim": end.verdict.claim, "biaslab.reason": end.verdict.reason}
                Metric = self._entities.Metric
                now = int(datetime.now(timezone.utc).timestamp() * 1000)
                if not any(m.step == end.finished for m in self.client.get_metric_history(self._parent, "verdict/passed")):  # once per state
                    self._log(self._parent, [Metric(k, v, now, end.finished) for k, v in verdict_numbers(end.verdict).items()], {})
            for key, value in tags.items():
                self.client.set_tag(self._parent, key, value)
            self.client.set_terminated(self._parent, "FAILED" if end.failed else "FINISHED")
        self._parent = None

    def close(self) -> None:
        if self._parent is not None:  # the sweep stopped before its end
            with self._access():
                self.client.set_terminated(self._parent, "KILLED")
            self._parent = None
