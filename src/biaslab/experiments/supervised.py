"""The standard supervised run: data -> model -> fit with probes -> Result.

Most catalog entries train a classifier and measure it; they share this runner.
`execute` turns its Result into a record (a raise: a 'failed' record with its
traceback, so a sweep goes on); a run whose loss stops being finite is
'diverged'. A population of such runs trains together and still gives one
record per member.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

import torch
from torch import nn

from biaslab import data as datasets
from biaslab import models, probes
from biaslab.probes import curvature
from biaslab.registry import Registry
from biaslab.runtime import generator, resolve_device, resolve_dtype
from biaslab.spec import RunSpec
from biaslab.experiments.base import Result, execute, record_of, run_env
from biaslab.store import RunRecord
from biaslab.train import LOSSES, OnEval, fit
from biaslab.train.population import fit_population


FOURIER_TOP_K = 5  # frequencies counted by the Fourier probe: Nanda et al. 2023 found 5 key frequencies at p = 113


Probe = Callable[[nn.Module, datasets.Dataset, dict[str, torch.Tensor], RunSpec], dict[str, float]]  # (model, data, init, spec) -> scalars


def effective_dim(model: nn.Module, data: datasets.Dataset, init: dict[str, torch.Tensor], spec: RunSpec) -> dict[str, float]:
    """N_eff of the training loss's Hessian (probes.curvature.effective_dimensionality) with the spec's probe_options,
    on the training set the run fits (its noisy labels included), or a random subset of it drawn from the seed."""
    options = spec.probe_options
    x, y = data.x_train, data.y_train
    if options.n_eff_examples is not None and options.n_eff_examples < x.shape[0]:
        index = torch.randperm(x.shape[0], generator=generator(spec.seed, "effective-dim-examples"))[: options.n_eff_examples].to(x.device)
        x, y = x[index], y[index]
    return curvature.effective_dimensionality(
        model, LOSSES[spec.train.loss], [(x, y)], z=options.n_eff_z, k=options.n_eff_k, probes=options.n_eff_probes,
        steps=options.n_eff_steps, generator=generator(spec.seed, "effective-dim"),
    )  # fmt: skip


PROBES: Registry[Probe] = Registry("probe")  # the names `spec.probes` may hold, in the order they are measured
PROBES.add("norms", lambda model, data, init, spec: probes.norms(model) | probes.distance_from(model, init))
PROBES.add("path_norm", lambda model, data, init, spec: probes.path_norm(model))
PROBES.add("margin", lambda model, data, init, spec: probes.normalized_margin(model, data.x_train, data.y_train))
PROBES.add("fourier", lambda model, data, init, spec: probes.fourier_concentration(models.token_embedding(model), FOURIER_TOP_K))
PROBES.add("effective_dim", effective_dim)  # a Hessian probe: tens of Hessian-vector products per evaluation


def probe_hook(spec: RunSpec, model: nn.Module, data: datasets.Dataset) -> OnEval:
    """The on_eval callback that measures the probes the spec names (distances from the model as it is now, at init)."""
    init = probes.snapshot(model)
    chosen = [PROBES.get(name) for name in PROBES if name in spec.probes]

    def on_eval(model: nn.Module, step: int) -> dict[str, float]:
        row: dict[str, float] = {}
        for probe in chosen:
            row |= probe(model, data, init, spec)
        return row

    return on_eval


def with_probes(spec: RunSpec, model: nn.Module, data: datasets.Dataset, own: OnEval | None = None) -> OnEval | None:
    """A runner's own measurements at each evaluation (`own`, if any) with the spec's probes added: the one hook
    through which every runner that trains a network honours `spec.probes`. Call it before training starts."""
    if not spec.probes:
        return own
    measure = probe_hook(spec, model, data)
    if own is None:
        return measure
    return lambda model, step: own(model, step) | measure(model, step)


def setup(spec: RunSpec) -> tuple[datasets.Dataset, nn.Module]:
    """The spec's data and its model freshly initialized from the seed: every runner that trains a classifier starts here."""
    device, dtype = resolve_device(spec.device), resolve_dtype(spec.dtype)
    data = datasets.load(spec.data, device, dtype)
    return data, fresh_model(spec, data)


def fresh_model(spec: RunSpec, data: datasets.Dataset) -> nn.Module:
    """The spec's model at its seed's initialization, on the data's device (the same weights every call)."""
    return models.build(spec.model, data.in_shape, data.n_classes, generator(spec.seed, "init"), data.x_train.device, resolve_dtype(spec.dtype))


def _n_params(model: nn.Module) -> dict[str, float]:
    return {"n_params": float(sum(p.numel() for p in model.parameters()))}


def run_supervised(spec: RunSpec) -> Result:
    """Train and measure one classifier as `spec` says."""
    data, model = setup(spec)
    result = fit(model, data, spec.train, generator(spec.seed, "batches"), probe_hook(spec, model, data))
    return Result.of(result, _n_params(model), model=model)


def run_supervised_population(specs: list[RunSpec]) -> list[RunRecord]:
    """Train the specs as one population (see `train.population`); each member gets its own record.

    The wall time of the population is split evenly over its members. If the
    population cannot be set up or crashes, each member is run alone instead, so
    a failure is recorded against the run that causes it.
    """
    started = time.perf_counter()
    try:
        envs = [run_env(spec) | {"population": len(specs)} for spec in specs]
        setups = [setup(spec) for spec in specs]
        hooks = [probe_hook(spec, model, data) for spec, (data, model) in zip(specs, setups)]
        results = fit_population(
            [model for _, model in setups],
            [data for data, _ in setups],
            [spec.train for spec in specs],
            [generator(spec.seed, "batches") for spec in specs],
            hooks,
        )
    except Exception:
        reason = traceback.format_exc().strip().splitlines()[-1]
        records = [execute(run_supervised, spec) for spec in specs]
        for record in records:  # say why these ran alone: a population bug must not hide behind the fallback
            record.env["population_error"] = reason
        return records
    share = (time.perf_counter() - started) / len(specs)
    return [
        record_of(spec, Result.of(result, _n_params(model), model=model), env, share)
        for spec, result, (_, model), env in zip(specs, results, setups, envs)
    ]
