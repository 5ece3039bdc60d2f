"""The standard supervised run: data -> model -> fit with probes -> RunRecord.

Most catalog entries train a classifier and measure it; they share this runner.
A run that raises is returned as a 'failed' record with its traceback, so a
sweep goes on; a run whose loss stops being finite is 'diverged'.
"""

from __future__ import annotations

import time
import traceback

from torch import nn

from biaslab import data as datasets
from biaslab import models, probes
from biaslab.runtime import generator, provenance, resolve_device, resolve_dtype
from biaslab.spec import RunSpec
from biaslab.store import RunRecord, curves_from_rows
from biaslab.train import fit


def probe_hook(spec: RunSpec, model: nn.Module, data: datasets.Dataset):
    """The on_eval callback that measures the probes the spec names."""
    init = probes.snapshot(model)

    def on_eval(model: nn.Module, step: int) -> dict[str, float]:
        row: dict[str, float] = {}
        if "norms" in spec.probes:
            row |= probes.norms(model) | probes.distance_from(model, init)
        if "path_norm" in spec.probes:
            row |= probes.path_norm(model)
        if "margin" in spec.probes:
            row |= probes.normalized_margin(model, data.x_train, data.y_train)
        return row

    return on_eval


def run_supervised(spec: RunSpec) -> RunRecord:
    """Train and measure one classifier as `spec` says; never raises."""
    started = time.perf_counter()
    env: dict = {}
    try:
        device, dtype = resolve_device(spec.device), resolve_dtype(spec.dtype)
        env = provenance(device) | {"seed": spec.seed}
        data = datasets.load(spec.data, device, dtype)
        model = models.build(spec.model, data.in_shape, data.n_classes, generator(spec.seed, "init"), device, dtype)
        result = fit(model, data, spec.train, generator(spec.seed, "batches"), probe_hook(spec, model, data))
    except Exception:  # a failed run is a result: record it, let the sweep go on
        return RunRecord(
            spec=spec.model_dump(mode="json"),
            spec_id=spec.spec_id,
            status="failed",
            env=env,
            seconds=time.perf_counter() - started,
            error=traceback.format_exc(),
        )
    final = dict(result.final) | {"steps": float(result.steps), "n_params": float(sum(p.numel() for p in model.parameters()))}
    env["stopped"] = result.stopped
    return RunRecord(
        spec=spec.model_dump(mode="json"),
        spec_id=spec.spec_id,
        status=result.status,
        curves=curves_from_rows(result.history),
        final=final,
        env=env,
        seconds=time.perf_counter() - started,
    )

