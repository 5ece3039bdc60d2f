"""What every catalog entry provides, the catalog itself, and the framework that turns a runner's result into a record.

An experiment is a set of presets (functions returning a `Sweep`), a runner
that computes one `RunSpec` into a `Result`, figures drawn from records, and a
claim check that computes a `Verdict` from the records' numbers.

A runner only computes: it never times itself, catches its own failures,
writes provenance or builds a record. `execute(runner, spec)` does all of that
in one place, so every record carries the same provenance (seed included), a
raise becomes a 'failed' record with its traceback, and the trained weights
are kept whenever the spec asks for them and the result carries a model.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from pydantic import BaseModel
from torch import nn

from biaslab.claims import Verdict
from biaslab.registry import Registry
from biaslab.runtime import provenance, resolve_device
from biaslab.spec import RunSpec, SpecError, Sweep
from biaslab.store import RunRecord, curves_from_rows
from biaslab.train import Fit, Row, Status


@dataclass
class Result:
    """What a runner computed for one spec; `execute` turns it into the run's RunRecord.

    history -> record.curves (one row of named scalars per evaluation), final ->
    record.final, arrays -> record.arrays (named vectors a figure needs); status
    and stopped say how training ended; model is the trained network, whose
    weights are kept when the spec sets save_weights (None where there is none).
    """

    history: list[Row] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, list[float]] = field(default_factory=dict)
    status: Status = "ok"
    stopped: str = "budget"
    model: nn.Module | None = field(default=None, repr=False)

    @classmethod
    def of(cls, fit: Fit, final: dict[str, float] | None = None, arrays: dict[str, list[float]] | None = None, model: nn.Module | None = None) -> Result:
        """A training's result: its History, and as final metrics its last row, its step count and `final`."""
        metrics = dict(fit.final) | {"steps": float(fit.steps)} | (final or {})
        return cls(list(fit.history), metrics, dict(arrays or {}), fit.status, fit.stopped, model)

    @classmethod
    def estimate(cls, history: list[Row], final: dict[str, float] | None = None, arrays: dict[str, list[float]] | None = None) -> Result:
        """A computation without a training loop of its own (a closed form, a fitted estimator, a Monte Carlo mean).

        Its final metrics are the last history row, `steps` 0 and `final` (the
        `steps` entry keeps these records equal to the ones earlier code stored).
        """
        return cls.of(Fit(history=list(history)), final, arrays)


Runner = Callable[[RunSpec], Result]


@dataclass(frozen=True)
class EffectSize:
    """One number of an experiment's verdict that says how strongly its phenomenon shows, and which way is stronger."""

    number: str  # a key of the claim's Verdict.numbers
    meaning: str  # what the number is and its sign convention, in one line (shown under the atlas matrix)


@dataclass(frozen=True)
class Axes:
    """What an experiment admits in the atlas (`biaslab atlas`): the optimizers and architectures its runs may be
    trained with (atlas labels: see `biaslab.atlas.OPTIMIZERS`; `model.kind` values), its effect sizes, and for
    each atlas preset the `--set` overrides that cut its preset of the same name to what the atlas runs (so every
    atlas cell is a sweep a user can run again: `biaslab run NAME --preset P --set ...`). `pilot` fixes swept
    fields to pick the run whose learning-rate pilot chooses the cell's rate (default: the sweep's first run)."""

    optimizers: tuple[str, ...]
    architectures: tuple[str, ...]
    effect_sizes: tuple[EffectSize, ...]
    reduce: dict[str, dict[str, Any]] = field(default_factory=dict)
    pilot: dict[str, Any] = field(default_factory=dict)


PRESET_NAMES = ("tiny", "quick", "paper")  # the module-level preset functions an experiment module defines, in order
MODULE_METHODS = ("figures", "claim")  # methods a module may define as plain functions of the records


class Experiment:
    """Base class of a catalog entry, declared once in its module.

    A subclass states what is its own (`title`, `reference`, `reads`, figures, claim; its docstring is the summary
    the report shows); what its module already says it takes from there (`module_defaults`): `name` from the
    module's `NAME`, `presets` from its functions `tiny`, `quick` and `paper`, `runner` from its function `run`,
    `figures` and `claim` from its functions of those names, `finding` from its `FINDING`. What the class body sets
    wins (`runner = run_supervised`).
    """

    name: str = ""
    title: str = ""  # what it shows, in a short line
    reference: str = ""  # the paper it reproduces
    summary: str = ""  # two or three sentences for the report: the subclass's docstring, as one paragraph
    finding: str = ""  # the published finding the claim tests, in a sentence: the module's FINDING
    presets: dict[str, Callable[[], Sweep]] = {}
    default_preset = "quick"
    trains_populations = False  # True when `run` is the standard supervised run, so specs can share a population
    needs_probes: tuple[str, ...] = ()  # probes the claim and figures read: runs without them get a FAIL naming them
    trains_model = False  # True when the runner trains one network: it measures spec.probes (supervised.with_probes)
    # at every evaluation and returns the network in its Result, for spec.save_weights; False: both fields are refused
    reads: tuple[str, ...] | Callable[[RunSpec], tuple[str, ...]] = ()  # the spec fields the runner reads: dotted
    # paths, or a section ('train') for all its fields; or a function of the spec giving them, where a study reads
    # others (`estimator_reads`). Set away from its default, any other field is refused (`refuse_unread_fields`):
    # `device` too, where the runner computes in numpy, scikit-learn or a convex solver whatever it says. seed,
    # probes and save_weights are the contract's own (see ALWAYS_READ and trains_model).
    allows: dict[str, tuple] = {}  # dotted field -> the only values the runner computes with (a fixed method, one
    # problem kind): any other value is refused naming the field (`require`), before the experiment's own `refuse`

    def sweep(self, preset: str | None = None) -> Sweep:
        """The sweep of a preset; an unknown preset is a SpecError naming the allowed ones."""
        preset = preset or self.default_preset
        if preset not in self.presets:
            raise SpecError(f"preset: {self.name} has no preset {preset!r}; allowed: {', '.join(self.presets)}")
        return self.presets[preset]()

    def check(self, spec: RunSpec) -> None:
        """Raise SpecError for a spec this experiment's runner would not honour (checked before a sweep starts):
        no field may be accepted and then ignored. The contract's fields first, then the experiment's own `refuse`."""
        if not self.trains_model:
            refuse_model_fields(spec, f"{self.name} trains no single network")
        refuse_unread_fields(spec, self.all_reads(spec), self.name)
        require(spec, self.allows)
        self.refuse(spec)

    def all_reads(self, spec: RunSpec) -> tuple[str, ...]:
        """Every field a run of `spec` reads beside the contract's own (ALWAYS_READ, which `covers` always counts):
        `reads_of`, and the probes' settings where the runner trains a network (read with the probes they set,
        spec.PROBE_OPTIONS). `check` refuses any other field set away from its default; the report lists only these."""
        probe_settings = ("probe_options",) if self.trains_model else ()
        return (*self.reads_of(spec), *probe_settings)

    def reads_of(self, spec: RunSpec) -> tuple[str, ...]:
        """The fields the runner reads for this spec: `reads`, or what it says for this spec where it is a function."""
        return self.reads(spec) if callable(self.reads) else self.reads

    def refuse(self, spec: RunSpec) -> None:
        """Raise SpecError for a spec outside what this experiment's runner computes (its own rules; none here)."""

    axes: Axes | None = None  # what the atlas may vary; None: the entry is not in the atlas, and `axes_note` says why
    axes_note: str = ""  # why the entry admits no atlas axis (or only some), in one line

    runner: Runner | None = None  # computes one spec: the module's `run`, or a function assigned in the class body

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Fill in what the subclass's module declares (`module_defaults`), and keep a plain function assigned to
        `runner` or `reads` unbound, so subclasses need no staticmethod."""
        super().__init_subclass__(**kwargs)
        for attribute, value in module_defaults(cls).items():
            setattr(cls, attribute, value)
        for attribute in ("runner", "reads"):
            if inspect.isfunction(cls.__dict__.get(attribute)):
                setattr(cls, attribute, staticmethod(cls.__dict__[attribute]))

    def run(self, spec: RunSpec) -> RunRecord:
        """Train and measure one run. Never raises for a run that fails: it returns a 'failed' record."""
        if self.runner is None:
            raise NotImplementedError(f"experiment {self.name} has no runner")
        return execute(self.runner, spec)

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        """Named figures from the records (finished runs only are drawn)."""
        raise NotImplementedError

    def claim(self, records: list[RunRecord]) -> Verdict:
        """The published finding as a test on the records' numbers."""
        raise NotImplementedError

    def verdict(self, records: list[RunRecord]) -> Verdict:
        """The claim check, never raising: a check that raises is a FAIL whose reason is the error, so a report or a
        command that shows it goes on (a missing probe or a broken check must not hide the other results)."""
        missing = self.missing_probes(records)
        statement = self.finding or self.title or self.name
        if missing is not None:
            return Verdict(statement, False, {}, f"FAIL: {missing}")
        try:
            return self.claim(records)
        except Exception as error:  # shown as FAIL with the error, never swallowed
            return Verdict(statement, False, {}, f"FAIL: the claim check raised {error_line(error)}")

    def drawn_figures(self, records: list[RunRecord]) -> tuple[dict[str, Figure], str | None]:
        """The figures, and None; or no figures and why not (probes missing, or drawing them raised)."""
        missing = self.missing_probes(records)
        if missing is not None:
            return {}, missing
        try:
            return self.figures(records), None
        except Exception as error:  # shown beside the verdict, never swallowed
            return {}, f"drawing the figures raised {error_line(error)}"

    def missing_probes(self, records: list[RunRecord]) -> str | None:
        """Which of `needs_probes` the finished runs did not measure, in one line; None when none is missing."""
        lacking = sorted({p for r in records if r.status == "ok" for p in self.needs_probes if p not in r.run_spec.probes})
        if not lacking:
            return None
        return f"{self.name} reads the probes {', '.join(lacking)}, which these runs did not measure (their spec's probes lack them)"

    def working_memory(self, spec: RunSpec) -> int:
        """Bytes a run of `spec` holds at its peak beyond a worker process's baseline, estimated before it runs so a
        sweep runs at once only what fits (see `experiments.memory`). The default sizes the standard supervised run
        from the spec; override it where the runner holds more (a convex solver, a dense matrix) or less."""
        from biaslab.experiments.memory import default_working_memory

        return default_working_memory(spec)


CATALOG: Registry[Experiment] = Registry("experiment")


def module_defaults(cls: type[Experiment]) -> dict[str, Any]:
    """What an experiment class takes from its module and docstring, for each attribute its body does not set: `name`
    (the module's NAME), `presets` (its functions named in PRESET_NAMES, in that order), `runner` (its function
    `run`), `figures` and `claim` (its functions of those names), `finding` (its FINDING) and `summary` (the class
    docstring as one paragraph). `catalog.read_entries` reads the name and presets the same way from source."""
    module, own = sys.modules.get(cls.__module__), cls.__dict__
    found: dict[str, Any] = {}
    if "name" not in own and isinstance(getattr(module, "NAME", None), str):
        found["name"] = module.NAME
    presets = {p: getattr(module, p) for p in PRESET_NAMES if inspect.isfunction(getattr(module, p, None))}
    if "presets" not in own and presets:
        found["presets"] = presets
    if "runner" not in own and inspect.isfunction(getattr(module, "run", None)):
        found["runner"] = module.run
    for method in MODULE_METHODS:  # a module-level figures(records) / claim(records) serves as the method
        if method not in own and inspect.isfunction(getattr(module, method, None)):
            found[method] = staticmethod(getattr(module, method))
    if "finding" not in own and isinstance(getattr(module, "FINDING", None), str):
        found["finding"] = module.FINDING
    if "summary" not in own and cls.__doc__:
        found["summary"] = " ".join(inspect.cleandoc(cls.__doc__).split())
    return found


def refuse_model_fields(spec: RunSpec, why: str) -> None:
    """SpecError for `probes` or `save_weights` on a run that has no network to measure or keep (`why` says so)."""
    if spec.probes:
        raise SpecError(f"probes: {why}, so it measures no probes; got {list(spec.probes)}, allowed: []")
    if spec.save_weights:
        raise SpecError(f"save_weights: {why}, so it has no weights to keep; allowed: false")


SUPERVISED_READS = ("data", "model", "train", "dtype", "device")  # a network trained by `train.fit` on a dataset


def estimator_reads(spec: RunSpec) -> tuple[str, ...]:
    """What a fit through `biaslab.estimators` reads: the estimator, where its examples come from (the problem, else the
    dataset), its dtype (fixed per kind by spec.ESTIMATOR_DTYPES but for neural_net), and for estimator.kind
    'neural_net' the network's model, training and device (the other kinds compute in numpy or scikit-learn)."""
    source = ("problem",) if spec.problem is not None else ("data",)
    network = ("model", "train", "device") if spec.estimator is not None and spec.estimator.kind == "neural_net" else ()
    return ("estimator", *source, "dtype", *network)


ALWAYS_READ = ("experiment", "seed", "probes", "save_weights")  # checked by the framework, not by `reads`
NAMED_ONLY = ("train.batch_sizes",)  # one experiment's fields: a section in `reads` does not cover them


def refuse_unread_fields(spec: RunSpec, reads: tuple[str, ...], name: str) -> None:
    """SpecError for the first field set away from its default that `reads` does not cover: no field is accepted and
    then ignored. A section in `reads` covers its fields (not those in NAMED_ONLY); an unset section is at its default."""
    for path, default in set_fields(spec):
        if not covers(reads, path):
            what = "section" if "." not in path and default is None else "field"
            raise SpecError(f"{path}: {name} does not read this {what}; leave it at its default ({json.dumps(default)}). It reads: {', '.join(reads)}")


def covers(reads: tuple[str, ...], path: str) -> bool:
    """Whether a runner that reads `reads` reads the field or section `path`: `reads` names it, a section holding it
    (except the NAMED_ONLY fields), or (for a section) a field inside it; the framework's own fields always."""
    if path in ALWAYS_READ or path in reads or any(r.startswith(f"{path}.") for r in reads):
        return True
    return path not in NAMED_ONLY and any(path.startswith(f"{r}.") for r in reads)


def set_fields(spec: BaseModel, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, default) of every field of `spec` not at its default, inside sections too; a section set where
    its default is None (problem, estimator) is an entry of its own before its fields (compared with its class's)."""
    found: list[tuple[str, Any]] = []
    for name, info in type(spec).model_fields.items():
        value, path = getattr(spec, name), f"{prefix}{name}"
        if isinstance(value, BaseModel):
            if info.default is None:
                found.append((path, None))
            found += set_fields(value, f"{path}.")
        elif value != info.default:
            found.append((path, list(info.default) if isinstance(info.default, tuple) else info.default))
    return found


def error_line(error: BaseException) -> str:
    """An exception in one line: its type and message."""
    return f"{type(error).__name__}: {error}"


def run_env(spec: RunSpec) -> dict[str, Any]:
    """The provenance of a run of `spec`: versions, git commit, device, host and the seed."""
    return provenance(resolve_device(spec.device)) | {"seed": spec.seed}


def record_of(spec: RunSpec, result: Result, env: dict[str, Any], seconds: float) -> RunRecord:
    """The record of a finished run: curves from its history, its final metrics and arrays, why it stopped, and its
    trained weights when the spec asks for them and the run finished with a model."""
    record = RunRecord(
        spec=spec.model_dump(mode="json"),
        spec_id=spec.spec_id,
        status=result.status,
        curves=curves_from_rows(result.history),
        final=dict(result.final),
        env=env | {"stopped": result.stopped},
        seconds=seconds,
        arrays=dict(result.arrays),
    )
    if spec.save_weights and result.status == "ok" and result.model is not None:
        record.weights = state_arrays(result.model)
    return record


def failed_record(spec: RunSpec, error: str, seconds: float = 0.0, env: dict | None = None) -> RunRecord:
    """The record of a run that raised: its traceback instead of results."""
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="failed", env=env or {}, seconds=seconds, error=error)


def execute(runner: Runner, spec: RunSpec) -> RunRecord:
    """Run `runner(spec)`, timed, and build its record; a raise becomes a 'failed' record with the traceback."""
    started = time.perf_counter()
    try:
        env = run_env(spec)
        result = runner(spec)
    except Exception:  # a failed run is a result: record it, let the sweep go on
        return failed_record(spec, traceback.format_exc(), time.perf_counter() - started)
    return record_of(spec, result, env, time.perf_counter() - started)


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's state_dict as numpy arrays on the CPU, for `RunRecord.weights`."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}


def require(spec: RunSpec, allowed: dict[str, tuple]) -> None:
    """SpecError unless each dotted field of `spec` has one of its allowed values (for runners with a fixed method).

    A field inside an unset section (no `problem`, say) reads as None.
    """
    values = spec.model_dump(mode="json")
    for path, options in allowed.items():
        value = values
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in options and not (isinstance(value, list) and tuple(value) in options):
            raise SpecError(f"{path}: {spec.experiment} supports {', '.join(map(repr, options))} only, got {value!r}")
