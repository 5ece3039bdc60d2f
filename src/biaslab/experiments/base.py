"""What every catalog entry provides, and the catalog itself.

An experiment is a set of presets (functions returning a `Sweep`), a runner
that turns one `RunSpec` into a `RunRecord`, figures drawn from records, and a
claim check that computes a `Verdict` from the records' numbers.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from biaslab.claims import Verdict
from biaslab.registry import Registry
from biaslab.spec import RunSpec, SpecError, Sweep
from biaslab.store import RunRecord, curves_from_rows
from biaslab.train import Fit


class Experiment:
    """Base class of a catalog entry; subclasses fill in the class attributes and methods."""

    name: str = ""
    title: str = ""  # what it shows, in a short line
    reference: str = ""  # the paper it reproduces
    summary: str = ""  # two or three sentences for the report
    presets: dict[str, Callable[[], Sweep]] = {}
    default_preset = "quick"
    trains_populations = False  # True when `run` is the standard supervised run, so specs can share a population

    def sweep(self, preset: str | None = None) -> Sweep:
        """The sweep of a preset; an unknown preset is a SpecError naming the allowed ones."""
        preset = preset or self.default_preset
        if preset not in self.presets:
            raise SpecError(f"preset: {self.name} has no preset {preset!r}; allowed: {', '.join(self.presets)}")
        return self.presets[preset]()

    def check(self, spec: RunSpec) -> None:
        """Raise SpecError for a spec this experiment's runner would not honour (checked before a sweep starts)."""

    runner: Callable[[RunSpec], RunRecord] | None = None  # the module's run function; set as staticmethod(run)

    def run(self, spec: RunSpec) -> RunRecord:
        """Train and measure one run. Never raises for a run that fails: it returns a 'failed' record."""
        if self.runner is None:
            raise NotImplementedError(f"experiment {self.name} has no runner")
        return self.runner(spec)

    def figures(self, records: list[RunRecord]) -> dict[str, Figure]:
        """Named figures from the records (finished runs only are drawn)."""
        raise NotImplementedError

    def claim(self, records: list[RunRecord]) -> Verdict:
        """The published finding as a test on the records' numbers."""
        raise NotImplementedError


CATALOG: Registry[Experiment] = Registry("experiment")


def fit_record(
    spec: RunSpec, result: Fit, env: dict, seconds: float, extra: dict[str, float] | None = None, arrays: dict[str, list[float]] | None = None
) -> RunRecord:
    """The record of a finished training: curves from its History, final metrics, why it stopped."""
    return RunRecord(
        spec=spec.model_dump(mode="json"),
        spec_id=spec.spec_id,
        status=result.status,
        curves=curves_from_rows(result.history),
        final=dict(result.final) | {"steps": float(result.steps)} | (extra or {}),
        env=env | {"stopped": result.stopped},
        seconds=seconds,
        arrays=arrays or {},
    )


def failed_record(spec: RunSpec, error: str, seconds: float = 0.0, env: dict | None = None) -> RunRecord:
    """The record of a run that raised: its traceback instead of results."""
    return RunRecord(spec=spec.model_dump(mode="json"), spec_id=spec.spec_id, status="failed", env=env or {}, seconds=seconds, error=error)


def guarded(spec: RunSpec, body: Callable[[], tuple]) -> RunRecord:
    """Run `body() -> (fit, env, extra final metrics[, arrays])` and build its record; a raise becomes a 'failed' record."""
    started = time.perf_counter()
    try:
        result, env, extra, *arrays = body()
    except Exception:  # a failed run is a result: record it, let the sweep go on
        return failed_record(spec, traceback.format_exc(), time.perf_counter() - started)
    return fit_record(spec, result, env, time.perf_counter() - started, extra, arrays[0] if arrays else None)


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
